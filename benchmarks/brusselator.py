r"""The 2D Brusselator (DifferentialEquations.jl's "solving large stiff equations" tutorial):
pysciml on a CPU or GPU against SciPy's BDF with an analytic sparse Jacobian on the CPU.

The problem (:class:`pysciml.physics.Brusselator2D`): α = 10, periodic unit square, forcing on
for t ≥ 1.1, t ∈ [0, 11.5], grids n × n (state 2n²). pysciml runs

* ``KenCarp4 IMEX``: ``SplitODEProblem(diffusion, reaction)``; the stage systems
  :math:`(I - h\gamma\alpha\Delta) x = r` solved by GMRES with the FFT preconditioner, which
  inverts them exactly (one Krylov product per solve);
* ``QNDF Krylov``: the whole right-hand side implicit, Newton–Krylov (GMRES with JVPs),
  preconditioned by the diffusion's inverse (FFT).

The peer is SciPy's ``solve_ivp(method="BDF")`` with the exact Jacobian as a sparse CSR matrix
(the five-point Laplacian in each channel plus the pointwise reaction coupling), integrated in
two pieces at the forcing switch. Every run's error is measured against a reference solution by
KenCarp4 IMEX at rtol 1e-9 (``max|u - u_ref| / max|u_ref|`` over the save times), so the time
ratios compare runs of known accuracy.

Run::

    .venv/bin/python benchmarks/brusselator.py --device cuda --grids 32 64 128
    .venv/bin/python benchmarks/brusselator.py --quick          # 32² only, CPU, no SciPy 128²

Issue goal (c): the 128² grid on a GPU at least 10× faster than SciPy BDF on the CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sparse
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import pysciml as ps  # noqa: E402
from pysciml.physics.brusselator import Brusselator2D  # noqa: E402

T1 = 11.5
T_FORCING = Brusselator2D.t_forcing
SAVEAT = (1.0, 3.0, 6.0, T1)


def periodic_laplacian(n: int) -> sparse.csr_matrix:
    """The five-point periodic Laplacian on the ``n × n`` grid of spacing 1/n (row-major)."""
    d = sparse.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1],
                     shape=(n, n), format="lil")
    d[0, n - 1] = d[n - 1, 0] = 1
    d = d.tocsr() * n ** 2
    eye = sparse.identity(n, format="csr")
    return (sparse.kron(d, eye) + sparse.kron(eye, d)).tocsr()


def scipy_run(n: int, rtol: float) -> tuple[np.ndarray, float, int]:
    """SciPy BDF with the analytic sparse Jacobian: ``(u at SAVEAT, seconds, steps)``."""
    m = Brusselator2D(n)
    nn = n * n
    lap = m.alpha.item() * periodic_laplacian(n)
    diffusion = sparse.block_diag([lap, lap], format="csr")
    forcing = m.forcing.numpy().ravel()

    def rhs(on):
        def f(t, y):
            U, V = y[:nn], y[nn:]
            uuv = U * U * V
            r = np.concatenate([1 + uuv - 4.4 * U + forcing * on, 3.4 * U - uuv])
            return diffusion @ y + r
        return f

    def jac(t, y):
        U, V = y[:nn], y[nn:]
        reaction = sparse.bmat([[sparse.diags(2 * U * V - 4.4), sparse.diags(U * U)],
                                [sparse.diags(3.4 - 2 * U * V), sparse.diags(-U * U)]])
        return (diffusion + reaction).tocsc()

    y = m.u0().numpy().ravel()
    out = []
    start = time.perf_counter()
    for on, t0, t1 in ((0.0, 0.0, T_FORCING), (1.0, T_FORCING, T1)):
        ts = [s for s in SAVEAT if t0 < s <= t1]
        sol = solve_ivp(rhs(on), (t0, t1), y, method="BDF", rtol=rtol, atol=rtol / 100,
                        jac=jac, t_eval=ts + ([t1] if t1 not in ts else []))
        if sol.status != 0:
            raise RuntimeError(f"SciPy BDF failed at n={n}, rtol={rtol}: {sol.message}")
        y = sol.y[:, -1]
        out.extend(sol.y[:, i] for i, s in enumerate(sol.t) if s in ts)
    return np.stack(out).reshape(len(SAVEAT), 2, n, n), time.perf_counter() - start, sol.nfev


def pysciml_run(n: int, solver: str, rtol: float, device: torch.device,
                dtype: torch.dtype) -> tuple[np.ndarray, float, ps.Stats]:
    """One pysciml solve: ``(u at SAVEAT, seconds, stats)``."""
    m = Brusselator2D(n, dtype=dtype, device=device)
    gmres = ps.GMRES(precond=m.precondition)
    if solver == "KenCarp4 IMEX":
        prob = ps.SplitODEProblem(m.diffusion, m.reaction, m.u0(), (0.0, T1))
        alg = ps.KenCarp4(linsolve=gmres)
    elif solver == "QNDF Krylov":
        prob = ps.ODEProblem(m, m.u0(), (0.0, T1))
        alg = ps.QNDF(linsolve=gmres)
    else:
        raise ValueError(f"solver: unknown {solver!r}")
    common.synchronize(device)
    start = time.perf_counter()
    sol = ps.solve(prob, alg, saveat=list(SAVEAT), rtol=rtol, atol=rtol / 100,
                   tstops=[T_FORCING])
    common.synchronize(device)
    wall = time.perf_counter() - start
    if not sol.successful:
        raise RuntimeError(f"{solver} failed at n={n}, rtol={rtol}: {sol.retcode}")
    return sol.u.double().cpu().numpy(), wall, sol.stats


def rel_error(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(u - ref).max() / np.abs(ref).max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--rtols", type=float, nargs="+", default=[1e-4, 1e-6])
    ap.add_argument("--device", default="cpu", help="device of the pysciml runs (cpu, cuda)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--scipy-grids", type=int, nargs="*", default=None,
                    help="grids on which SciPy runs (default: all; 128² takes 1–2 min a run)")
    ap.add_argument("--quick", action="store_true", help="32² only, one rtol")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    args = ap.parse_args(argv)
    if args.quick:
        args.grids, args.rtols = [32], [1e-4]
    device = common.resolve_device(args.device)
    if device is None:
        print(f"device {args.device!r} is not available here; nothing to do")
        return 0
    dtype = getattr(torch, args.dtype)
    scipy_grids = args.grids if args.scipy_grids is None else args.scipy_grids
    torch.set_num_threads(1 if device.type == "cpu" else torch.get_num_threads())

    # warm-up (CUDA context, FFT plans, kernels) on a small grid
    pysciml_run(16, "KenCarp4 IMEX", 1e-3, device, dtype)

    rows, records = [], []
    for n in args.grids:
        ref, ref_s, _ = pysciml_run(n, "KenCarp4 IMEX", 1e-9, device, torch.float64)
        print(f"{n}²: reference (KenCarp4 IMEX, rtol 1e-9, float64) in {ref_s:.1f} s", flush=True)
        for rtol in args.rtols:
            peer = None
            if n in scipy_grids:
                u, wall, nfev = scipy_run(n, rtol)
                peer = wall
                rows.append([f"{n}²", f"{rtol:g}", "SciPy BDF (sparse J, CPU)", f"{wall:.2f}",
                             "1", common.fmt_sci(rel_error(u, ref)), f"nfev {nfev}"])
                records.append(dict(n=n, rtol=rtol, solver="scipy_bdf", seconds=wall,
                                    error=rel_error(u, ref), nfev=nfev))
            for solver in ("KenCarp4 IMEX", "QNDF Krylov"):
                u, wall, stats = pysciml_run(n, solver, rtol, device, dtype)
                speedup = None if peer is None else peer / wall
                rows.append([f"{n}²", f"{rtol:g}", f"pysciml {solver} ({device.type})",
                             f"{wall:.2f}", common.fmt_ratio(speedup),
                             common.fmt_sci(rel_error(u, ref)),
                             f"steps {stats.naccept}+{stats.nreject}, nf {stats.nf}, "
                             f"lin {stats.nlinsolve}"])
                records.append(dict(n=n, rtol=rtol, solver=solver, device=str(device),
                                    seconds=wall, speedup_vs_scipy=speedup,
                                    error=rel_error(u, ref), stats=stats.__dict__))
            print(common.format_table(
                ["grid", "rtol", "solver", "s", "SciPy s / s", "rel. error", "work"],
                rows[-3:]), flush=True)

    common.print_table(["grid", "rtol", "solver", "s", "SciPy s / s", "rel. error", "work"], rows,
                       title=f"2D Brusselator, t in [0, 11.5], {args.dtype}, pysciml on {device}")
    best128 = [r for r in records if r["n"] == 128 and r.get("speedup_vs_scipy")]
    if best128:
        for rtol in args.rtols:
            sp = max((r["speedup_vs_scipy"] for r in best128 if r["rtol"] == rtol), default=None)
            if sp is not None:
                verdict = "met" if sp >= 10 and device.type == "cuda" else "NOT met"
                print(f"goal (c) at rtol {rtol:g}: best pysciml {sp:.1f}x SciPy BDF "
                      f"(goal >= 10x on a GPU): {verdict}")
    name = "brusselator_quick" if args.quick else f"brusselator_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    common.write_json_atomic(args.out / f"{name}.json",
                             dict(environment=common.environment(device, ["scipy"]),
                                  dtype=args.dtype, records=records))
    groups = [f"{r['n']}² {r['rtol']:g}" for r in records if r["solver"] == "KenCarp4 IMEX"]
    series: dict[str, list[float]] = {}
    for r in records:
        series.setdefault(r["solver"], []).append(r["seconds"] * 1e3)
    if all(len(v) == len(groups) for v in series.values()):
        common.bar_plot(args.out / f"{name}.png", groups, series, ylabel="wall time [ms]",
                        title=f"2D Brusselator ({device.type})")
    return 0 if math.isfinite(sum(r["seconds"] for r in records)) else 1


if __name__ == "__main__":
    sys.exit(main())
