"""The hybrid-model examples run end to end (tiny settings: a smoke test of the scripts; the
findings themselves need the default settings, see each example's docstring)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,argv,columns", [
    ("aphynity_pendulum", ["--steps", "3", "--train", "3", "--test", "2", "--hidden", "8"],
     ["test MSE (20 s)", "omega0", "APHYNITY", "data only (neural ODE)"]),
    ("aphynity_reaction_diffusion", ["--size", "6", "--steps", "2", "--train", "2", "--test",
                                     "2", "--batch", "4", "--hidden", "4"],
     ["test MSE (2 s)", "err a", "APHYNITY", "true physics (a, b, k)"]),
    ("ude_lotka_volterra", ["--steps", "3", "--lbfgs", "0", "--train", "2", "--hidden", "8"],
     ["term err (data)", "UDE (known growth/death + MLP)"]),
])
def test_example_runs_and_writes_its_table_and_png(name, argv, columns, tmp_path, capsys):
    code = _load(name).main(argv + ["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code in (0, 1)          # 1: the finding is not reproduced with so few steps
    for column in columns:
        assert column in out
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert (tmp_path / "model0" / "metrics.csv").is_file() or name == "ude_lotka_volterra"


@pytest.mark.slow
def test_reaction_diffusion_example_recovers_the_diffusion_coefficients(tmp_path, capsys):
    """The example's defaults (16x16 grid, 800 steps; about 2.5 CPU minutes): APHYNITY forecasts
    better than the data-only and physics-only models (exit code 0) and recovers a = 1e-3 and
    b = 5e-3, neither of which it is given, to within 5 %."""
    module = _load("aphynity_reaction_diffusion")
    code = module.main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("  APHYNITY   ")]
    assert len(rows) == 1                     # the table's row (errors of a, then of b)
    errors = [float(cell) for cell in re.findall(r"([\d.]+) %", rows[0])]
    assert len(errors) == 2 and max(errors) < 5.0
