"""Time and peak memory of one gradient through a solve, per sensitivity algorithm, as the
number of steps grows; and the cost of a stiff gradient (ROBER) relative to its forward solve.

Cases:

* ``steps``: a neural ODE (MLP 8 → 32 → 8, tanh, float64, t ∈ [0, 1]) by RK4 with a fixed step,
  ``n`` steps for ``n`` in 1e2 … 1e5, loss on the final state. Every sensealg (checkpointed
  adjoints with one checkpoint per 100 steps), and torchdiffeq ``odeint`` (backprop) and
  ``odeint_adjoint`` as peers. Goal: the checkpointed adjoints' peak memory flat, ≤ 1.5× from
  1e3 to 1e5 steps.
* ``rober``: Robertson's kinetics on [0, 1e5] (log rate constants), Rodas5P at rtol 1e-6 /
  atol 1e-10, loss on the final state and on 20 log-spaced observations. Goal: one gradient by
  QuadratureAdjoint or GaussAdjoint ≤ 3× the forward solve. With observations, each one's
  jump of the adjoint state (weight 1e4 on y2) starts a fast transient (rate ~1e4) that the
  backward solve resolves to its tolerance: ~35 steps per observation, ~700 backward steps
  against the forward's 107, each about as costly as a forward step.

Each measurement runs in a fresh subprocess, so that one case's peak does not pollute another's:
peak memory is the process's resident set (``ru_maxrss``) on CPU, reported as the rise above the
peak after imports and set-up, or ``torch.cuda.max_memory_allocated`` with ``--device cuda``.
Times are single calls (after one small warm-up solve): on the shared 2-core machine they vary by
±40 %; ratios are taken within one subprocess (gradient / forward of the same problem).

Usage: ``.venv/bin/python benchmarks/adjoint.py`` (long: one gradient over 1e5 RK4 steps takes
several minutes per sensealg in eager mode on a shared core), ``--quick`` (1e2 and 1e3 steps,
~3 min), ``--steps 1000 10000``, ``--only NAME ...``, ``--no-rober``, ``--device cuda``,
``--out DIR``. Writes ``adjoint.json`` (``adjoint_quick.json``) under
``benchmarks/results/`` (or ``--out``) and prints the tables and the goal checks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS_DIR,
    busy_warning,
    environment,
    print_table,
    resolve_device,
    write_json_atomic,
)

SENSEALGS = ["DirectBackprop", "BacksolveAdjoint", "InterpolatingAdjoint",
             "InterpolatingAdjoint-ckpt", "QuadratureAdjoint", "GaussAdjoint", "GaussAdjoint-ckpt"]
PEERS = ["torchdiffeq-odeint", "torchdiffeq-odeint_adjoint"]
CHECKPOINTED = ["InterpolatingAdjoint-ckpt", "GaussAdjoint-ckpt"]


# --------------------------------------------------------------------------- worker side


def _sensealg(name: str, steps: int | None):
    import pysciml as ps
    from pysciml.sensealg import GaussAdjoint

    checkpoints = max(1, (steps or 100) // 100)
    return {
        "DirectBackprop": lambda: ps.DirectBackprop(),
        "BacksolveAdjoint": lambda: ps.BacksolveAdjoint(),
        "InterpolatingAdjoint": lambda: ps.InterpolatingAdjoint(),
        "InterpolatingAdjoint-ckpt": lambda: ps.InterpolatingAdjoint(
            checkpointing=True, checkpoints=checkpoints),
        "QuadratureAdjoint": lambda: ps.QuadratureAdjoint(),
        "GaussAdjoint": lambda: GaussAdjoint(),
        "GaussAdjoint-ckpt": lambda: GaussAdjoint(checkpointing=True, checkpoints=checkpoints),
    }[name]()


def _peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MLP:
    """Built lazily inside the worker (torch imported there)."""

    @staticmethod
    def make(device):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(),
                                               torch.nn.Linear(32, 8))

            def forward(self, t, u, p=None):
                return self.net(u)

        torch.manual_seed(0)
        return Net().to(device=device, dtype=torch.float64)


def _steps_worker(spec: dict) -> dict:
    import torch

    import pysciml as ps

    device = torch.device(spec["device"])
    n, name = spec["steps"], spec["name"]
    model = MLP.make(device)
    u0 = torch.linspace(-1, 1, 8, dtype=torch.float64, device=device)
    dt = 1.0 / n
    ts = torch.tensor([1.0], dtype=torch.float64, device=device)

    def gradient(steps_dt):
        if name.startswith("torchdiffeq"):
            import torchdiffeq

            odeint = (torchdiffeq.odeint_adjoint if name.endswith("adjoint")
                      else torchdiffeq.odeint)
            t = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)
            u = odeint(model, u0, t, method="rk4", options={"step_size": steps_dt})[-1]
        else:
            sa = _sensealg(name, round(1.0 / steps_dt))
            sol = ps.solve(ps.ODEProblem(model, u0, (0.0, 1.0)), ps.RK4(), dt=steps_dt,
                           saveat=ts, sensealg=sa, max_steps=10 * n + 10)
            u = sol.u[-1]
        loss = (u ** 2).sum()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        return float(torch.cat([g.reshape(-1) for g in grads]).norm())

    def forward():
        with torch.no_grad():
            ps.solve(ps.ODEProblem(model, u0, (0.0, 1.0)), ps.RK4(), dt=dt, saveat=ts,
                     max_steps=10 * n + 10)

    gradient(0.05)  # warm-up: 20 steps
    _sync(device)
    _reset_peak(device)
    base = _peak_bytes(device)
    start = time.perf_counter()
    norm = gradient(dt)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = _peak_bytes(device)
    start = time.perf_counter()
    forward()
    _sync(device)
    forward_seconds = time.perf_counter() - start
    return {"case": "steps", "name": name, "steps": n, "grad_s": seconds,
            "forward_s": forward_seconds, "peak_rise_mb": (peak - base) / 2 ** 20,
            "peak_mb": peak / 2 ** 20, "grad_norm": norm}


def _rober_worker(spec: dict) -> dict:
    import numpy as np
    import torch

    import pysciml as ps

    device = torch.device(spec["device"])
    name, saves = spec["name"], spec["saves"]

    def robertson(t, u, log_k):
        k = log_k.exp()
        k1, k2, k3 = k[..., 0:1], k[..., 1:2], k[..., 2:3]
        y1, y2, y3 = u[..., 0:1], u[..., 1:2], u[..., 2:3]
        return torch.cat([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2 ** 2,
                          k2 * y2 ** 2], -1)

    f64 = dict(dtype=torch.float64, device=device)
    ts = (torch.logspace(-5, 5, saves, **f64) if saves > 1 else torch.tensor([1e5], **f64))
    weights = torch.tensor([1.0, 1e4, 1.0], **f64)

    def solve(log_k, sensealg=None):
        prob = ps.ODEProblem(robertson, torch.tensor([1.0, 0.0, 0.0], **f64), (0.0, 1e5), log_k)
        return ps.solve(prob, ps.Rodas5P(), saveat=ts, rtol=1e-6, atol=1e-10, sensealg=sensealg)

    log_k0 = torch.tensor(np.log([0.04, 3e7, 1e4]), **f64)
    times_f, times_g = [], []
    for _ in range(2):  # the first round warms up
        start = time.perf_counter()
        with torch.no_grad():
            sol = solve(log_k0)
        _sync(device)
        times_f.append(time.perf_counter() - start)
        log_k = log_k0.clone().requires_grad_(True)
        start = time.perf_counter()
        out = solve(log_k, _sensealg(name, None))
        (g,) = torch.autograd.grad((out.u * weights).sum(), log_k)
        _sync(device)
        times_g.append(time.perf_counter() - start)
    return {"case": "rober", "name": name, "saves": saves, "forward_s": times_f[-1],
            "grad_s": times_g[-1], "ratio": times_g[-1] / times_f[-1],
            "steps": int(sol.stats.naccept), "gradient": g.tolist()}


# --------------------------------------------------------------------------- driver side


def _run(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {**spec, "error": done.stderr.strip().splitlines()[-1] if done.stderr else
                f"exit {done.returncode}"}
    return {**spec, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1e2 and 1e3 steps only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, nargs="*", default=None,
                        help="step counts (default 100 1000 10000 100000)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed to one measurement")
    parser.add_argument("--only", nargs="*", default=None,
                        help="measure only these sensealgs / peers (names as in the table)")
    parser.add_argument("--no-rober", action="store_true", help="skip the ROBER case")
    parser.add_argument("--out", default=None, help="directory of the JSON record")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        import torch

        torch.set_num_threads(1)
        spec = json.loads(args.worker)
        result = _steps_worker(spec) if spec["case"] == "steps" else _rober_worker(spec)
        print(json.dumps(result))
        return 0

    import torch

    device = resolve_device(args.device)
    if device is None:
        print(f"--device {args.device}: not available here; nothing measured")
        return 0
    warning = busy_warning()
    if warning:
        print(warning)
    steps = args.steps or ([100, 1000] if args.quick else [100, 1000, 10_000, 100_000])
    records = []
    rows = []
    for n in steps:
        # the full set up to 1e4 steps; beyond, the adjoints whose memory should stay flat
        names = SENSEALGS + PEERS if n <= 10_000 else (
            CHECKPOINTED + ["BacksolveAdjoint", "torchdiffeq-odeint_adjoint"])
        for name in [x for x in names if args.only is None or x in args.only]:
            r = _run({"case": "steps", "name": name, "steps": n, "device": str(device)},
                     args.timeout)
            records.append(r)
            rows.append([n, name, r.get("error") or f"{r['grad_s']:.2f}",
                         "" if "error" in r else f"{r['forward_s']:.2f}",
                         "" if "error" in r else f"{r['peak_rise_mb']:.1f}",
                         "" if "error" in r else f"{r['grad_norm']:.6e}"])
            print(f"steps={n:>6} {name:28s} " + " ".join(str(x) for x in rows[-1][2:]),
                  flush=True)
    print_table(["steps", "sensealg", "gradient s", "forward s", "peak rise MiB",
                 "|grad|"], rows, title="One gradient, neural ODE by RK4, n fixed steps")

    rober_rows = []
    for saves in () if args.no_rober else (1, 20):
        for name in [x for x in ["DirectBackprop", "InterpolatingAdjoint",
                                  "QuadratureAdjoint", "GaussAdjoint"]
                     if args.only is None or x in args.only]:
            r = _run({"case": "rober", "name": name, "saves": saves, "device": str(device)},
                     args.timeout)
            records.append(r)
            rober_rows.append([saves, name, r.get("error") or f"{r['forward_s']:.3f}",
                               "" if "error" in r else f"{r['grad_s']:.3f}",
                               "" if "error" in r else f"{r['ratio']:.1f}×",
                               "" if "error" in r else r["steps"]])
            print("rober", *rober_rows[-1], flush=True)
    print_table(["saves", "sensealg", "forward s", "forward+gradient s", "ratio", "steps"],
                rober_rows, title="ROBER on [0, 1e5], Rodas5P rtol 1e-6: gradient / forward")

    goals = []
    for name in CHECKPOINTED:
        at = {r["steps"]: r for r in records if r.get("case") == "steps"
              and r.get("name") == name and "error" not in r}
        if 1000 in at and max(at) > 1000:
            top = max(at)
            base = max(at[1000]["peak_mb"], 1e-9)
            ratio = at[top]["peak_mb"] / base
            goals.append(f"{name}: peak RSS at {top} steps / at 1000 steps = {ratio:.2f} "
                         f"(goal ≤ 1.5: {'met' if ratio <= 1.5 else 'NOT met'}); rise above "
                         f"set-up {at[1000]['peak_rise_mb']:.1f} → {at[top]['peak_rise_mb']:.1f}"
                         " MiB")
    for r in records:
        if r.get("case") == "rober" and r.get("name") in ("QuadratureAdjoint", "GaussAdjoint") \
                and "error" not in r:
            verdict = "met" if r["ratio"] <= 3 else "NOT met"
            goals.append(f"ROBER ({r['saves']} saves) {r['name']}: forward+gradient / forward "
                         f"= {r['ratio']:.1f} (goal ≤ 3: {verdict})")
    print("\nGoals:")
    for line in goals:
        print("  " + line)
    out_dir = Path(args.out) if args.out else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("adjoint_quick.json" if args.quick else
                      f"adjoint{'' if device.type == 'cpu' else '_' + device.type}.json")
    write_json_atomic(path, {"environment": environment(device, ["torchdiffeq"]),
                             "records": records, "goals": goals,
                             "memory": "peak RSS (ru_maxrss) of a fresh process per record"
                             if device.type == "cpu" else "torch.cuda.max_memory_allocated"})
    print(f"wrote {path}")
    return 0 if all(math.isfinite(r.get("grad_s", 0.0)) for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
