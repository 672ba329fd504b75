"""Data-set generation throughput: trajectories per second, batched against one at a time.

For each model (Lorenz-96 with N = 40, F = 8; the damped pendulum with sampled parameters),
over t in [0, 5] with 51 save times, Tsit5 at rtol = 1e-6, atol = 1e-8, float64:

* one at a time: ``simulate(..., batch_size=1)``: one ``solve`` per trajectory;
* batched: ``simulate(..., batch_size=B)`` (B = 256): one ``solve`` for B trajectories, each
  member with its own adaptive steps;
* to HDF5: ``generate(..., chunk_size=B)``: the batched solve plus gzip-compressed HDF5 writing
  (atomic, resumable).

Then ``TrajectoryDataset`` reads 2000 random windows (history 10, horizon 20) of that file in one
process: ``windows/s``.

All three include drawing the random initial states and parameters. Members 0..k-1 are the same
in every mode (per-member seeds), so the table also gives the largest difference between the
batched and one-at-a-time results for them. Prints a table with the ratio batched / one at a
time and writes ``benchmarks/results/data_generation.json`` (``--quick``:
``data_generation_quick.json``).

    .venv/bin/python benchmarks/data_generation.py            # ~1 min on 2 busy cores
    .venv/bin/python benchmarks/data_generation.py --quick    # a smoke test, ~10 s
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    RESULTS_DIR,
    busy_warning,
    environment,
    print_table,
    resolve_device,
    synchronize,
    write_json_atomic,
)

from pysciml.data import TrajectoryDataset, generate, simulate  # noqa: E402

CASES = {
    "lorenz96": {"model_kwargs": {"n": 40, "forcing": 8.0}, "sample_parameters": False},
    "pendulum": {"model_kwargs": {}, "sample_parameters": True},
}


def _timed(fn, device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def run_case(name: str, batch: int, single: int, t: torch.Tensor, device: torch.device,
             workdir: Path) -> dict:
    settings = dict(t=t, seed=0, rtol=1e-6, atol=1e-8, device=device, dtype=torch.float64,
                    **CASES[name])
    simulate(name, 2, batch_size=2, **settings)                      # warm-up
    t_single, one = _timed(lambda: simulate(name, single, batch_size=1, **settings), device)
    t_batch, many = _timed(lambda: simulate(name, batch, batch_size=batch, **settings), device)
    path = workdir / f"{name}.h5"
    t_h5, _ = _timed(lambda: generate(name, path, batch, chunk_size=batch, progress=False,
                                      **settings), device)
    diff = float((many.u[:single] - one.u).abs().max())
    dataset = TrajectoryDataset(path, history=10, horizon=20)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:2000]
    start = time.perf_counter()
    for index in order.tolist():
        dataset[index]
    windows_per_s = order.numel() / (time.perf_counter() - start)
    row = {
        "model": name, "state_shape": list(one.u.shape[2:]), "save_times": int(t.numel()),
        "batch_size": batch,
        "single": {"trajectories": single, "seconds": t_single,
                   "traj_per_s": single / t_single},
        "batched": {"trajectories": batch, "seconds": t_batch, "traj_per_s": batch / t_batch},
        "hdf5": {"trajectories": batch, "seconds": t_h5, "traj_per_s": batch / t_h5,
                 "file_bytes": path.stat().st_size},
        "max_abs_diff_batched_vs_single": diff,
        "dataset_random_windows_per_s": windows_per_s,
    }
    row["ratio_batched_over_single"] = row["batched"]["traj_per_s"] / row["single"]["traj_per_s"]
    row["ratio_hdf5_over_single"] = row["hdf5"]["traj_per_s"] / row["single"]["traj_per_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batch", type=int, default=256, help="batch / chunk size (256)")
    parser.add_argument("--single", type=int, default=8,
                        help="trajectories solved one at a time (8)")
    parser.add_argument("--t1", type=float, default=5.0)
    parser.add_argument("--nt", type=int, default=51)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: these small states are bound by "
                        "per-step overhead, and extra threads only add synchronisation)")
    parser.add_argument("--quick", action="store_true", help="batch 32, 4 single, t1 = 2")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.single, args.t1 = 32, 4, 2.0
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device is None:
        print(f"device {args.device} is not available here; nothing to run")
        return 0
    warning = busy_warning()
    if warning:
        print(warning)
    t = torch.linspace(0.0, args.t1, args.nt, dtype=torch.float64)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pysciml_bench_") as tmp:
        for name in args.models:
            rows.append(run_case(name, args.batch, args.single, t, device, Path(tmp)))
    table = [[r["model"], f"{r['single']['traj_per_s']:.1f}", f"{r['batched']['traj_per_s']:.1f}",
              f"{r['hdf5']['traj_per_s']:.1f}", f"{r['ratio_batched_over_single']:.1f}×",
              f"{r['ratio_hdf5_over_single']:.1f}×", f"{r['max_abs_diff_batched_vs_single']:.1e}",
              f"{r['dataset_random_windows_per_s']:.0f}"] for r in rows]
    print_table(["model", "one at a time [traj/s]", f"batched {args.batch} [traj/s]",
                 f"to HDF5, chunk {args.batch} [traj/s]", "batched / one", "HDF5 / one",
                 "max |batched − one|", "windows/s"], table,
                title=f"data generation on {device} (t in [0, {args.t1:g}], {args.nt} save "
                      f"times, Tsit5, rtol 1e-6, float64)")
    record = {"benchmark": "data_generation", "quick": args.quick, "device": str(device),
              "t1": args.t1, "nt": args.nt, "threads": args.threads, "busy_warning": warning,
              "rows": rows,
              "environment": environment(device, ["torch", "h5py", "numpy"])}
    name = "data_generation_quick.json" if args.quick else "data_generation.json"
    if device.type != "cpu":
        name = name.replace(".json", f"_{device.type}.json")
    path = write_json_atomic(args.out / name, record)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
