"""`pysciml generate`, `pysciml inspect`, `pysciml models`: results, errors, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_data import _assert_same_file_data, _Interrupt, exact

from pysciml import cli
from pysciml.data import generate, load, partial_path

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_then_inspect(tmp_path, capsys):
    path = tmp_path / "decay.h5"
    rc, out, err = _run(["generate", "test_data:RotatingDecay", "--n", 5, "--out", path,
                         "--t1", 1, "--nt", 11, "--param", "k=0.5", "--param", "w=1.5",
                         "--chunk-size", 2, "--rtol", 1e-9, "--atol", 1e-11, "--quiet"], capsys)
    assert rc == 0 and out == "" and err == ""
    traj = load(path)
    assert torch.equal(traj.t, torch.linspace(0, 1, 11, dtype=torch.float64))
    assert torch.equal(traj.parameters["k"], torch.full((5,), 0.5))
    assert traj.meta["model_kwargs"] == {"k": 0.5, "w": 1.5} and traj.meta["chunk_size"] == 2
    assert (traj.u - exact(traj)).abs().max() < 1e-7

    rc, out, err = _run(["inspect", path], capsys)
    assert rc == 0 and err == ""
    for text in ("rotating_decay", "complete", "(5, 11, 2, 3)", "float64", "gzip(4)+shuffle",
                 "Success 5", "Tsit5()", "nt=11", "k", "fixed"):
        assert text in out, text
    rc, out, _ = _run(["inspect", path, "--json"], capsys)
    info = json.loads(out)
    assert rc == 0 and info["complete"] and info["members"] == 5
    u = info["datasets"]["u"]
    assert u["shape"] == [5, 11, 2, 3] and u["dtype"] == "float64" and u["compression"] == "gzip"
    with h5py.File(path) as f:
        assert u["chunks"] == list(f["u"].chunks)
    assert info["status"] == {"Success": 5} and info["attributes"]["seed"] == 0
    assert info["parameters"]["w"] == {"min": 1.5, "max": 1.5, "mean": 1.5}


def test_generate_registry_model_matches_the_python_api(tmp_path, capsys):
    path = tmp_path / "cli.h5"
    rc, _, _ = _run(["generate", "pendulum", "--n", 6, "--out", path, "--t1", 3, "--nt", 16,
                     "--seed", 3, "--chunk-size", 4, "--sample-parameters", "omega0",
                     "--alg", "Vern7", "--dtype", "float32", "--compression", "lzf",
                     "--progress", "none"], capsys)
    assert rc == 0
    api = tmp_path / "api.h5"
    import pysciml as ps

    generate("pendulum", api, 6, t=torch.linspace(0, 3, 16, dtype=torch.float64), seed=3,
             chunk_size=4, sample_parameters=["omega0"], alg=ps.Vern7(), dtype=torch.float32,
             compression="lzf", progress=False)
    _assert_same_file_data(path, api)
    traj = load(path)
    assert traj.u.dtype == torch.float32 and traj.meta["solver"] == "Vern7()"
    assert float(traj.parameters["omega0"].std()) > 0.05
    assert torch.equal(traj.parameters["alpha"], torch.full((6,), 0.2, dtype=torch.float64))


def test_progress_lines_and_resume_message(tmp_path, capsys, monkeypatch):
    path = tmp_path / "p.h5"
    argv = ["generate", "test_data:RotatingDecay", "--n", 6, "--out", path, "--chunk-size", 2,
            "--nt", 5, "--progress", "lines"]
    _Interrupt(at=2).install(monkeypatch)
    rc, _, err = _run(argv, capsys)
    assert rc == 130
    assert "chunk 1/3 done, 2/6 trajectories" in err
    assert f"finished chunks are kept in {partial_path(path)}" in err
    assert not path.exists() and partial_path(path).exists()

    rc, out, err = _run(["inspect", partial_path(path)], capsys)
    assert rc == 0 and "PARTIAL: 1 of 3 chunks done" in out and "NotGenerated 4" in out
    monkeypatch.undo()
    rc, _, err = _run(argv, capsys)
    assert rc == 0
    assert "resuming p.h5.partial: 1 of 3 chunks already done" in err
    assert "chunk 3/3 done, 6/6 trajectories" in err and f"wrote {path}" in err


def test_sigterm_stops_like_ctrl_c(tmp_path, capsys, monkeypatch):
    path = tmp_path / "term.h5"
    calls = []
    original = __import__("pysciml.data.trajectories", fromlist=["x"]).GenerationPlan.solve

    def solve(plan, members):
        calls.append(members)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)       # arrives while the second chunk solves
        return original(plan, members)

    monkeypatch.setattr("pysciml.data.trajectories.GenerationPlan.solve", solve)
    before = signal.getsignal(signal.SIGTERM)
    rc, _, err = _run(["generate", "test_data:RotatingDecay", "--n", 6, "--out", path,
                       "--chunk-size", 2, "--nt", 5, "--quiet"], capsys)
    assert rc == 143 and "terminated; finished chunks are kept in" in err
    assert signal.getsignal(signal.SIGTERM) == before
    assert not path.exists()
    with h5py.File(partial_path(path)) as f:
        assert f["chunks_done"][0] == 1 and f["chunks_done"][2] == 0


def test_models_lists_the_registry(capsys):
    rc, out, _ = _run(["models"], capsys)
    assert rc == 0
    for name in ("pendulum", "lorenz96", "robertson", "hires"):
        assert name in out
    rc, out, _ = _run(["models", "--json"], capsys)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["lorenz96"]["parameter_ranges"] == {"forcing": [6.0, 10.0]}
    assert rows["robertson"]["stiff"] is True


def _bad_cases():
    cases = [
        (["generate", "nonexistent"], "unknown model 'nonexistent'"),
        (["generate", "lorenz96", "--param", "G=1"], "no parameter 'G'"),
        (["generate", "lorenz96", "--param", "forcing=abc"], "forcing"),
        (["generate", "lorenz96", "--param", "n=2"], "n: expected an int >= 4"),
        (["generate", "lorenz96", "--param", "forcing"], "expected NAME=VALUE"),
        (["generate", "lorenz96", "--alg", "NotASolver"], "unknown algorithm 'NotASolver'"),
        (["generate", "lorenz96", "--n", "0"], "n: expected a positive int"),
        (["generate", "lorenz96", "--nt", "1"], "--nt"),
        (["generate", "lorenz96", "--t0", "5", "--t1", "1"], "t1 > t0"),
        (["generate", "lorenz96", "--sample-parameters", "nope"], "no range for 'nope'"),
        (["generate", "lorenz96", "--chunk-size", "0"], "chunk_size"),
        (["generate", "lorenz96", "--rtol", "-1"], "rtol"),
    ]
    if not torch.cuda.is_available():
        cases.append((["generate", "lorenz96", "--device", "cuda"], "CUDA is not available"))
    return cases


@pytest.mark.parametrize("argv, match", _bad_cases())
def test_bad_generate_arguments_exit_2_with_one_line(tmp_path, capsys, argv, match):
    out_path = tmp_path / "bad.h5"
    if "--n" not in argv:
        argv = argv + ["--n", "3"]
    argv = argv + ["--out", str(out_path), "--quiet"]
    rc, out, err = _run(argv, capsys)
    assert rc == 2
    assert err.startswith("pysciml generate: error: ") and err.count("\n") == 1, err
    assert match in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_bad_files_exit_2_with_one_line(tmp_path, capsys):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"keep me")
    for argv, match in [
        (["inspect", tmp_path / "missing.h5"], "no such file"),
        (["inspect", plain], "not a pysciml trajectory file"),
        (["inspect", text], "not a readable HDF5 file"),
        (["generate", "lorenz96", "--n", 2, "--out", existing], "exists; pass"),
        (["generate", "lorenz96", "--n", 2, "--out", tmp_path / "no" / "x.h5"],
         "does not exist"),
    ]:
        rc, _, err = _run(argv, capsys)
        command = argv[0]
        assert rc == 2 and err.startswith(f"pysciml {command}: error: "), err
        assert err.count("\n") == 1 and match in err, err
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5", "plain.h5", "text.h5"]


def test_failed_solves_exit_1_or_are_kept(tmp_path, capsys):
    path = tmp_path / "f.h5"
    argv = ["generate", "test_data:RotatingDecay", "--n", 2, "--out", path, "--max-steps", 2,
            "--quiet"]
    rc, _, err = _run(argv, capsys)
    assert rc == 1 and "MaxIters" in err and err.count("\n") == 1 and not path.exists()
    rc, _, _ = _run(argv + ["--keep-failed"], capsys)
    assert rc == 0 and load(path).meta["status"].tolist() == [2, 2]


# --------------------------------------------------------------------------- real interrupts

L96 = ["generate", "lorenz96", "--n", "24", "--chunk-size", "4", "--t1", "2", "--nt", "21",
       "--seed", "5", "--sample-parameters", "--progress", "lines"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), str(TESTS),
                                                      env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def _start(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pysciml", *L96, "--out", str(path)],
                            cwd=path.parent, env=_env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


def _chunks_done(path: Path) -> int:
    with h5py.File(partial_path(path)) as f:
        return int(f["chunks_done"][...].sum())


def test_interrupted_and_killed_generation_resumes_to_identical_data(tmp_path, capsys):
    """Ctrl-C (SIGINT) after the first chunk, a resumed run killed (SIGKILL) after its first
    chunk, a third run to finish: the file equals an uninterrupted generation bit for bit.
    (The first two runs are real processes receiving real signals.)"""
    path = tmp_path / "l96.h5"
    first = _start(path)
    line = first.stderr.readline()
    assert "chunk 1/6 done" in line, line + first.stderr.read()
    first.send_signal(signal.SIGINT)
    rest = first.communicate(timeout=120)[1]
    assert first.returncode == 130 and "Traceback" not in rest, rest
    assert "finished chunks are kept in" in rest
    assert not path.exists(), "the generation finished before it could be interrupted"
    done = _chunks_done(path)
    assert 1 <= done < 6

    second = _start(path)
    line = second.stderr.readline()
    assert f"resuming l96.h5.partial: {done} of 6 chunks already done" in line, line
    line = second.stderr.readline()
    assert f"chunk {done + 1}/6 done" in line, line + second.stderr.read()
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=120)
    assert second.returncode == -signal.SIGKILL and not path.exists()
    killed_at = _chunks_done(path)
    assert done < killed_at < 6

    rc, _, err = _run([*L96, "--out", path], capsys)              # the last run in-process
    assert rc == 0, err
    assert f"resuming l96.h5.partial: {killed_at} of 6 chunks already done" in err
    assert err.count(" done, ") == 6 - killed_at                 # only the missing chunks ran
    assert path.exists() and not partial_path(path).exists()

    reference = tmp_path / "reference.h5"
    generate("lorenz96", reference, 24, chunk_size=4, seed=5, sample_parameters=True,
             t=torch.linspace(0, 2, 21, dtype=torch.float64), progress=False)
    _assert_same_file_data(reference, path)
