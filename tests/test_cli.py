"""The `pysciml` command (doctor) and the Julia environment detection behind it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pysciml import cli
from pysciml.julia import environment
from pysciml.julia.environment import JuliaStatus, julia_status

REPO_ROOT = Path(__file__).resolve().parents[1]
_real_find_spec = importlib.util.find_spec


@pytest.fixture
def no_julia_anywhere(monkeypatch, tmp_path):
    """An environment where no Julia executable can be found by any route."""
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "JULIA_EXE", "CONDA_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "empty_path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("JULIA_DEPOT_PATH", str(tmp_path / "depot"))
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "juliapkg_project"))
    return tmp_path


def _fake_find_spec(juliacall_present: bool):
    def find_spec(name, package=None):
        if name == "juliacall":
            if juliacall_present:
                return importlib.machinery.ModuleSpec("juliacall", loader=None)
            return None
        return _real_find_spec(name, package)

    return find_spec


@pytest.fixture
def without_juliacall(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _fake_find_spec(False))


@pytest.fixture
def with_juliacall(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _fake_find_spec(True))


def _fake_julia(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / ("julia.exe" if os.name == "nt" else "julia")
    exe.write_text("#!/bin/sh\nexit 1\n")  # never run: detection must not start Julia
    exe.chmod(0o755)
    return exe


# --------------------------------------------------------------------------- julia_status


def test_julia_status_without_juliacall(without_juliacall, no_julia_anywhere):
    status = julia_status()
    assert isinstance(status, JuliaStatus)
    assert status.available is False
    assert "juliacall" in status.reason
    assert status.executable is None
    assert status.juliacall_version is None
    assert "pysciml[julia]" in status.hint


def test_julia_status_juliacall_but_no_executable(with_juliacall, no_julia_anywhere):
    status = julia_status()
    assert status.available is False
    assert "executable" in status.reason
    assert status.executable is None
    assert "PYTHON_JULIACALL_EXE" in status.hint


def test_julia_status_finds_julia_on_path(with_juliacall, no_julia_anywhere, monkeypatch):
    exe = _fake_julia(no_julia_anywhere / "bin")
    monkeypatch.setenv("PATH", str(exe.parent))
    status = julia_status()
    assert status.available is True
    assert status.reason == ""
    assert Path(status.executable) == exe


def test_julia_status_explicit_executable(with_juliacall, no_julia_anywhere, monkeypatch):
    exe = _fake_julia(no_julia_anywhere / "custom")
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(exe))
    assert julia_status().executable == str(exe)

    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(no_julia_anywhere / "missing" / "julia"))
    status = julia_status()
    assert status.available is False
    assert "PYTHON_JULIACALL_EXE" in status.reason


def test_julia_status_finds_juliapkg_install(with_juliacall, no_julia_anywhere):
    prefix = no_julia_anywhere / "juliapkg_project" / "pyjuliapkg" / "install"
    exe = _fake_julia(prefix / "bin")
    status = julia_status()
    assert status.available is True
    assert Path(status.executable) == exe


def test_julia_status_never_raises(with_juliacall, no_julia_anywhere, monkeypatch):
    def boom():
        raise RuntimeError("broken")

    monkeypatch.setattr(environment, "_find_executable", boom)
    status = julia_status()
    assert status.available is False
    assert "broken" in status.reason


def test_julia_status_does_not_import_juliacall():
    already = "juliacall" in sys.modules
    julia_status()
    assert ("juliacall" in sys.modules) == already


def test_julia_status_is_frozen():
    status = julia_status()
    with pytest.raises(AttributeError):
        status.available = True  # type: ignore[misc]


# --------------------------------------------------------------------------- doctor


def test_doctor_text(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert torch.__version__ in out
    assert "native: available" in out
    assert "julia: " in out


def test_doctor_json(capsys):
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = {
        "pysciml",
        "python",
        "python_executable",
        "platform",
        "torch",
        "cpu_threads",
        "cuda",
        "mps",
        "default_dtype",
        "runtimes",
    }
    assert expected <= set(report)
    assert report["torch"] == torch.__version__
    assert report["cpu_threads"] == torch.get_num_threads()
    assert report["default_dtype"] == str(torch.get_default_dtype())
    assert report["cuda"]["available"] == torch.cuda.is_available()
    assert len(report["cuda"]["devices"]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert report["runtimes"]["native"]["available"] is True
    julia = report["runtimes"]["julia"]
    assert set(julia) == {"available", "reason", "executable", "juliacall_version", "hint"}


def test_doctor_reports_missing_juliacall(without_juliacall, no_julia_anywhere, capsys):
    assert cli.main(["doctor", "--json"]) == 0
    julia = json.loads(capsys.readouterr().out)["runtimes"]["julia"]
    assert julia["available"] is False
    assert "juliacall" in julia["reason"]

    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "julia: unavailable" in out
    assert "juliacall" in out
    assert "pysciml[julia]" in out


def test_no_subcommand_prints_help(capsys):
    assert cli.main([]) == 2
    assert "doctor" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pysciml", "doctor", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["torch"] == torch.__version__
