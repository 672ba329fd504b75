"""Data-parallel training with torch.distributed: two processes (torchrun, gloo, loopback) take
the same steps as one process with the doubled batch, and an interrupted distributed run resumes
bit for bit.

This file is also the worker script: ``torchrun --nproc_per_node=2 tests/test_train_distributed.py
--worker OUT``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch._dynamo  # noqa: F401  (the first optimizer imports it: do it once, before forking)
import torch.distributed as dist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_train import make_run  # noqa: E402  (imported before forking: the workers inherit it)

from pysciml.train import init_from_environment  # noqa: E402

PER_RANK_BATCH, WORLD, EPOCHS, N = 4, 2, 3, 24


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([q.detach().reshape(-1) for q in model.parameters()])


def worker(out: Path) -> None:
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    ctx = init_from_environment("gloo")
    assert ctx.world_size == WORLD
    # a different initialisation on each rank: the trainer broadcasts rank 0's
    full, model, _ = make_run(out / "full", seed_model=ctx.rank, dropout=0.0, epochs=EPOCHS,
                              batch_size=PER_RANK_BATCH, scheduler=None, val_data=None)
    result = full.fit()

    def stop(trainer, metrics):
        if trainer.global_step == 4 and ctx.rank == 1:   # one rank asks; both must stop
            trainer.request_stop()

    first, _, _ = make_run(out / "split", seed_model=ctx.rank, dropout=0.0, epochs=EPOCHS,
                           batch_size=PER_RANK_BATCH, scheduler=None, val_data=None,
                           on_step_end=stop)
    partial = first.fit()
    again, resumed, _ = make_run(out / "split", seed_model=10 + ctx.rank, dropout=0.0,
                                 epochs=EPOCHS, batch_size=PER_RANK_BATCH, scheduler=None,
                                 val_data=None, resume=True)
    again.fit()
    gathered = [torch.zeros_like(_flat(model)) for _ in range(WORLD)]
    dist.all_gather(gathered, _flat(model))
    if ctx.rank == 0:
        torch.save({"params": _flat(model), "resumed": _flat(resumed),
                    "ranks_agree": all(torch.equal(g, gathered[0]) for g in gathered),
                    "partial_step": partial.global_step, "interrupted": partial.interrupted,
                    "history": result.history}, out / "result.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forked_rank(rank: int, out: Path, port: int) -> None:
    """One process of the group, with the environment torchrun would give it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    try:
        worker(out)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _launch_forked(out: Path) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("fork")  # the children inherit the imported torch: no start-up cost
    port = _free_port()
    procs = [ctx.Process(target=_forked_rank, args=(r, out, port)) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * WORLD, f"worker exit codes {codes}"


def _launch_torchrun(out: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               MASTER_ADDR="127.0.0.1", PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
           f"--nproc_per_node={WORLD}", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(Path(__file__)), "--worker", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _check(out_dir: Path) -> None:
    out = torch.load(out_dir / "result.pt", weights_only=False)
    assert out["ranks_agree"] and out["interrupted"] and out["partial_step"] == 4
    assert torch.equal(out["resumed"], out["params"])          # exact resume, distributed

    # one process with the global batch takes the same steps (up to summation order)
    single, model, _ = make_run(out_dir / "single", seed_model=0, dropout=0.0, epochs=EPOCHS,
                                batch_size=PER_RANK_BATCH * WORLD, scheduler=None, val_data=None)
    history = single.fit().history
    assert torch.allclose(_flat(model), out["params"], rtol=0, atol=1e-10)
    assert not torch.allclose(_flat(model), _flat(make_run(out_dir / "x")[1]), atol=1e-3)
    for a, b in zip(history, out["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
    doc = json.loads((out_dir / "full" / "metrics.json").read_text())
    assert len(doc["history"]) == EPOCHS                        # the main process wrote it


def _need_gloo() -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")


def test_two_processes_match_one_process_and_resume_exactly(tmp_path):
    """Two processes on loopback (forked, with torchrun's environment variables)."""
    _need_gloo()
    _launch_forked(tmp_path)
    _check(tmp_path)


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """The same through the real launcher: ``python -m torch.distributed.run``."""
    _need_gloo()
    _launch_torchrun(tmp_path)
    _check(tmp_path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]))
    else:
        raise SystemExit("usage: torchrun --nproc_per_node=2 test_train_distributed.py "
                         "--worker OUT")
