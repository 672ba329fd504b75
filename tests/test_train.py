"""pysciml.train: data order, atomic files, RNG states, the loop, early stopping, metrics files,
and exact resume (a run interrupted and resumed ends bit for bit where an uninterrupted one does).
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pysciml.train import (
    AbstractObjective,
    EarlyStopping,
    EpochBatchSampler,
    ProgressBar,
    Trainer,
    atomic_savefig,
    atomic_write,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ fixtures
class RegressionObjective(AbstractObjective):
    """Mean squared error of ``model(x)`` against ``y``; a step counter as its state."""

    def __init__(self):
        self.steps = 0

    def loss(self, model, batch):
        mse = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return mse, {"loss": mse, "mse": mse}

    def evaluate(self, model, batch):
        mse = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return {"loss": mse}

    def end_step(self, metrics):
        self.steps += 1
        return {"objective_steps": torch.tensor(float(self.steps))}

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def regression_data(n=40, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    w = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, 1.5]])
    y = x @ w.T + 0.7 + noise * torch.randn(n, 2, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def make_run(tmp, seed_model=0, dropout=0.2, **kwargs):
    """A model with dropout (so the RNG matters), Adam and a step-LR scheduler."""
    torch.manual_seed(seed_model)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    options = dict(val_data=regression_data(16, seed=1), scheduler=sched, epochs=5, batch_size=6,
                   seed=3, out_dir=tmp, progress=False)
    options.update(kwargs)
    return Trainer(model, RegressionObjective(), opt, regression_data(), **options), model, opt


def params_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def strip_times(history):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


# ------------------------------------------------------------------------------ sampler
def test_sampler_shards_union_is_the_single_process_global_batch():
    n, b, w = 23, 3, 2
    single = list(EpochBatchSampler(n, b * w, seed=5, epoch=2))
    shards = [list(EpochBatchSampler(n, b, seed=5, epoch=2, rank=r, world_size=w))
              for r in range(w)]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for k, batch in enumerate(single):
        union = sorted(shards[0][k] + shards[1][k])
        # the padded tail wraps around; up to it, the global batch is the same set of samples
        assert union == sorted(batch) or k == len(single) - 1
    # each epoch is a permutation (plus padding) and differs between epochs
    flat = [i for s in shards for batch in s for i in batch]
    assert sorted(set(flat)) == list(range(n))
    other = list(EpochBatchSampler(n, b * w, seed=5, epoch=3))
    assert other != single


def test_sampler_start_batch_skips_and_validation_covers_once():
    full = list(EpochBatchSampler(20, 4, seed=1, epoch=0))
    assert list(EpochBatchSampler(20, 4, seed=1, epoch=0, start_batch=3)) == full[3:]
    seen = [i for r in range(3) for batch in EpochBatchSampler(
        10, 4, shuffle=False, rank=r, world_size=3, pad=False) for i in batch]
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        EpochBatchSampler(10, 0)
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(10, 2, rank=2, world_size=2)


# ------------------------------------------------------------------------- files and RNG
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"a": torch.arange(3)})

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert torch.equal(load_checkpoint(path)["a"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left


def test_atomic_savefig_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = atomic_savefig(fig, tmp_path / "sub" / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["plot.png"]  # no temporary left
    assert not plt.fignum_exists(fig.number)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would create it


def test_rng_states_round_trip():
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    with pytest.raises(ValueError, match="state"):
        restore_rng_state({"torch": torch.get_rng_state()})


# ------------------------------------------------------------------------ the loop itself
def test_training_reduces_the_loss_and_writes_metrics(tmp_path):
    trainer, model, _ = make_run(tmp_path, dropout=0.0, epochs=8)
    result = trainer.fit()
    h = result.history
    assert len(h) == 8 and result.epochs_completed == 8 and not result.interrupted
    assert h[-1]["train_loss"] < 0.2 * h[0]["train_loss"]
    assert h[-1]["val_loss"] < 0.2 * h[0]["val_loss"]
    assert h[-1]["objective_steps"] == result.global_step == 8 * 7  # ceil(40 / 6) steps/epoch
    assert h[2]["lr"] == pytest.approx(1.5e-2) and h[4]["lr"] == pytest.approx(7.5e-3)  # StepLR
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["train_loss"] for r in doc["history"]] == [r["train_loss"] for r in h]
    assert doc["summary"]["best_epoch"] == result.best_epoch
    csv_rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 9 and csv_rows[0].startswith("epoch,step,train_loss")
    assert float(csv_rows[-1].split(",")[2]) == h[-1]["train_loss"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == result.best_epoch
    assert best["val_loss"] == min(r["val_loss"] for r in h)


def test_lbfgs_through_the_closure_reaches_least_squares(tmp_path):
    data = regression_data(30, noise=0.3)
    x = torch.stack([d["x"] for d in data])
    y = torch.stack([d["y"] for d in data])
    design = torch.cat([x, torch.ones(30, 1)], 1)
    exact = torch.linalg.lstsq(design, y).solution          # independent reference
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=50, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")
    Trainer(model, RegressionObjective(), opt, data, epochs=2, batch_size=30, shuffle=False,
            progress=False).fit()
    assert torch.allclose(model.weight.detach().T, exact[:3], atol=1e-8)
    assert torch.allclose(model.bias.detach(), exact[3], atol=1e-8)


def test_early_stopping_stops_after_patience(tmp_path):
    trainer, _, opt = make_run(tmp_path, epochs=20, dropout=0.0,
                               early_stopping=EarlyStopping("val_loss", patience=3))
    for g in opt.param_groups:
        g["lr"] = 0.0  # nothing changes: only the first epoch is an improvement
    result = trainer.fit()
    assert result.stopped_early and result.epochs_completed == 4
    assert result.best_epoch == 1 and result.history[-1]["stopped_early"]


def test_early_stopping_unit():
    es = EarlyStopping("val_loss", patience=2, min_delta=0.1)
    assert es.update(1, {"val_loss": 1.0}) == (True, False)
    assert es.update(2, {"val_loss": 0.95}) == (False, False)   # within min_delta
    assert es.update(3, {"val_loss": 0.5}) == (True, False)
    assert es.update(4, {"val_loss": 0.6}) == (False, False)
    assert es.update(5, {"val_loss": 0.7}) == (False, True)
    with pytest.raises(ValueError, match="monitor"):
        es.update(6, {"train_loss": 1.0})
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


def test_progress_bar_prints_a_line_per_epoch():
    stream = io.StringIO()
    bar = ProgressBar(stream=stream)
    bar.start_epoch()
    bar.update(1, 2, 1, 3, lambda: {"loss": 1.0})   # not a terminal: no redraws
    bar.end_epoch(1, 2, 3, {"train_loss": 0.5})
    text = stream.getvalue()
    assert text.startswith("epoch 1/2 |") and "train_loss 5.000e-01" in text
    assert text.count("\n") == 1


# ------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("stop_at", [9, 14])   # inside epoch 2, and exactly at its end
def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path, stop_at):
    reference, ref_model, ref_opt = make_run(tmp_path / "ref")
    ref = reference.fit()

    def stop(trainer, metrics):
        if trainer.global_step == stop_at:
            trainer.request_stop()

    first, _, _ = make_run(tmp_path / "run", on_step_end=stop)
    partial = first.fit()
    assert partial.interrupted and partial.global_step == stop_at
    torch.rand(5)  # disturb the global RNG: resume must restore it
    resumed, model, opt = make_run(tmp_path / "run", seed_model=1, resume=True)
    assert not params_equal(model, ref_model)   # a different initialisation before loading
    done = resumed.fit()
    assert params_equal(model, ref_model)
    assert strip_times(done.history) == strip_times(ref.history)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"],
                       ref_opt.state_dict()["state"][0]["exp_avg"])
    assert resumed.objective.steps == reference.objective.steps


def test_sigterm_checkpoints_and_resume_is_exact(tmp_path):
    reference, ref_model, _ = make_run(tmp_path / "ref", epochs=3)
    reference.fit()

    def terminate(trainer, metrics):
        if trainer.global_step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    first, _, _ = make_run(tmp_path / "run", epochs=3, on_step_end=terminate)
    assert first.fit().interrupted
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL   # handlers restored
    resumed, model, _ = make_run(tmp_path / "run", epochs=3, seed_model=7, resume="auto")
    resumed.fit()
    assert params_equal(model, ref_model)


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    from test_train import make_run

    def kill(trainer, metrics):
        if trainer.global_step == 11:      # after the checkpoint of step 8, before the next
            os.kill(os.getpid(), signal.SIGKILL)

    trainer, _, _ = make_run({out!r}, epochs=3, checkpoint_every_steps=4, on_step_end=kill)
    trainer.fit()
""")


def test_hard_killed_process_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    code = KILLED_RUN.format(tests=str(ROOT / "tests"), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(out / "checkpoint.pt")["global_step"] == 8
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    reference, ref_model, _ = make_run(tmp_path / "ref", epochs=3)
    reference.fit()
    resumed, model, _ = make_run(out, epochs=3, seed_model=5, checkpoint_every_steps=4,
                                 resume=True)
    resumed.fit()
    assert params_equal(model, ref_model)


def test_finished_run_resumes_to_more_epochs(tmp_path):
    reference, ref_model, _ = make_run(tmp_path / "ref", epochs=5)
    reference.fit()
    first, _, _ = make_run(tmp_path / "run", epochs=2)
    first.fit()
    longer, model, _ = make_run(tmp_path / "run", epochs=5, resume=True)
    result = longer.fit()
    assert result.epochs_completed == 5 and params_equal(model, ref_model)


def test_resume_exactness_on_cuda(tmp_path, cuda_device):
    def run(out, stop_at=None, resume=False, seed_model=0):
        torch.manual_seed(seed_model)
        model = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(),
                                    torch.nn.Dropout(0.2), torch.nn.Linear(32, 2)).to(cuda_device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)

        def stop(trainer, metrics):
            if trainer.global_step == stop_at:
                trainer.request_stop()

        Trainer(model, RegressionObjective(), opt, regression_data(), epochs=3, batch_size=8,
                out_dir=out, progress=False, on_step_end=stop if stop_at else None,
                resume=resume, deterministic=True).fit()
        return model

    ref = run(tmp_path / "ref")
    run(tmp_path / "run", stop_at=7)
    torch.rand(3, device=cuda_device)
    resumed = run(tmp_path / "run", resume=True, seed_model=3)
    assert params_equal(resumed, ref)


# ------------------------------------------------------------------------ bad configurations
def test_bad_configurations_raise_clear_errors(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = regression_data(8)
    with pytest.raises(TypeError, match="objective"):
        Trainer(model, lambda m, b: 0, opt, data)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(model, RegressionObjective(), torch.optim.SGD(torch.nn.Linear(1, 1).parameters(),
                                                              lr=0.1), data)
    with pytest.raises(ValueError, match="monitor.*val_data"):
        Trainer(model, RegressionObjective(), opt, data,
                early_stopping=EarlyStopping("val_loss"))
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(model, RegressionObjective(), opt, data, batch_size=0)
    with pytest.raises(ValueError, match="train_data"):
        Trainer(model, RegressionObjective(), opt, [])
    with pytest.raises(ValueError, match="resume"):
        Trainer(model, RegressionObjective(), opt, data, resume=True)
    with pytest.raises(FileNotFoundError):
        Trainer(model, RegressionObjective(), opt, data, out_dir=tmp_path / "none",
                resume=True, progress=False).fit()
    with pytest.raises(ValueError, match="monitor.*'train_nope'"):
        Trainer(model, RegressionObjective(), opt, data, monitor="train_nope",
                progress=False).fit()
    trainer, _, _ = make_run(tmp_path / "a", epochs=1)
    trainer.fit()
    other, _, _ = make_run(tmp_path / "a", epochs=2, batch_size=5, resume=True)
    with pytest.raises(ValueError, match="batch_size=6"):
        other.fit()
