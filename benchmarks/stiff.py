"""Stiff work–precision benchmark: every pysciml stiff method against SciPy (BDF, Radau, LSODA)
and diffrax (Kvaerno5, KenCarp4; JAX on CPU, float64, jit-compiled, timed after compilation) on
ROBER, HIRES and Van der Pol, plus a batch of 1024 ROBER instances.

Run::

    .venv/bin/python benchmarks/stiff.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/stiff.py --quick    # smoke test: rtol 1e-6 only, 1 repeat, batch 64
    .venv/bin/python benchmarks/stiff.py --problems ROBER HIRES --batch 0
    .venv/bin/python benchmarks/stiff.py --device cuda --problems --batch 1024   # GPU batch only
    .venv/bin/python benchmarks/stiff.py --profile  # cProfile of one pysciml Rodas5P ROBER solve

What it measures (see ``benchmarks/README.md``, section ``stiff.py``):

* **work–precision**: for each problem, the max relative error at the end time against the
  published reference (Mazzia & Magherini's Test Set, ``tests/data/ivp_testset.json``; for ROBER
  on [0, 1e5] SciPy Radau at rtol 1e-12) versus the median wall time. pysciml runs at
  rtol ∈ {1e-4, 1e-6, 1e-8}; the peers run on a denser grid (1e-3 … 1e-10) so that their
  work–precision curves can be read at pysciml's achieved error ("equal achieved error":
  log–log interpolation on the peer's Pareto front). atol = rtol·1e-4 for ROBER and HIRES,
  atol = rtol for Van der Pol.
* **goal (a)**: pysciml's best method ≤ 1.0× SciPy Radau and BDF at equal achieved error, at
  rtol 1e-6 and 1e-8, on at least one problem (the ratio to LSODA reported too).
* **goal (b)**: throughput (solves/s) of 1024 ROBER instances with rate constants
  ×10^U(−0.5, 0.5) on [0, 1e5] at rtol 1e-6: pysciml (``batch_ndim=1``, per-member steps,
  the fastest method of the ROBER [0, 1e5] run) against a Python loop of SciPy LSODA (64
  members timed, extrapolated) and diffrax Kvaerno5 under ``jax.vmap``.
* **(c)** the 2D Brusselator is a separate script, ``benchmarks/brusselator.py``.

Every pysciml run is capped (``--cap``, 60 s) by a SIGALRM timer; a run past it is recorded as
a timeout, and so are the tighter tolerances of the same method (and of any solver whose run at
a looser tolerance failed, or whose predicted time ``t_prev·(rtol_prev/rtol)^(1/(order+1))``
exceeds the cap): they are recorded as skipped, never hang the run.

JAX / diffrax are imported lazily; when missing, the script prints ``diffrax: not installed``
and runs without them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR,
    busy_warning,
    environment,
    fmt_ms,
    fmt_ratio,
    fmt_sci,
    print_table,
    resolve_device,
    summarize,
    time_call,
    time_interleaved,
    write_json_atomic,
)
from stiff_problems import (  # noqa: E402
    ROBER_K,
    jax_rhs,
    numpy_rhs,
    rober_jac_np,
    rober_jac_t,
    rober_np,
    rober_t,
    torch_rhs,
)

import pysciml as ps  # noqa: E402

F64 = torch.float64
ROOT = Path(__file__).resolve().parent.parent
TESTSET = ROOT / "tests" / "data" / "ivp_testset.json"


PYSCIML_RTOLS = (1e-4, 1e-6, 1e-8)
PEER_RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
QUICK_PYSCIML_RTOLS = (1e-6,)
QUICK_PEER_RTOLS = (1e-5, 1e-6, 1e-7)
GOAL_RTOLS = (1e-6, 1e-8)
SLOW_RUN_S = 2.0  # runs at least this long are timed once (the probe); faster ones >= 3 times
# the interleaved rounds of one problem (all its sub-2 s runs, every rtol) stop after this many
# seconds (at least 3 rounds). This machine's speed drifts by 2x for seconds at a time: timed
# in separate groups per rtol, a pysciml run at 1e-8 and the Radau run at 1e-6 it is matched
# with read 1.0x; timed in the same rounds, 0.5x
CASE_BUDGET_S = 90.0

# pysciml methods (name, order used only to predict the time at a tighter tolerance)
PYSCIML_METHODS = [("Rosenbrock23", 2), ("Rodas4", 4), ("Rodas5P", 5), ("TRBDF2", 2),
                   ("KenCarp4", 4), ("Kvaerno5", 5), ("FBDF", 3)]
SCIPY_METHODS = [("BDF", 3), ("Radau", 5), ("LSODA", 3)]
# (method, order, Newton root finder): Kvaerno5 as diffrax ships it (the peers' figures);
# KenCarp4 only works with Newton here; Kvaerno5 with Newton shows what the root finder costs.
DIFFRAX_METHODS = [("Kvaerno5", 5, False), ("KenCarp4", 4, True), ("Kvaerno5", 5, True)]
DIFFRAX_MAX_STEPS = 50_000

BRUSSELATOR_NOTE = ("(c) 2D Brusselator: run benchmarks/brusselator.py --device cuda (pysciml "
                    "on the GPU against SciPy BDF with an analytic sparse Jacobian on the CPU).")


# ============================================================================ problems


@dataclass
class Case:
    key: str
    title: str
    family: str
    t_end: float
    y0: list[float]
    ref: np.ndarray
    atol_factor: float
    pysciml_rtols: tuple[float, ...]
    peer_rtols: tuple[float, ...]
    ref_source: str
    in_goal: bool = True

    def atol(self, rtol: float) -> float:
        return rtol * self.atol_factor


def rober_1e5_reference() -> np.ndarray:
    r = solve_ivp(rober_np, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", rtol=1e-12,
                  atol=1e-20, jac=rober_jac_np)
    assert r.status == 0, r.message
    return r.y[:, -1].copy()


def build_cases(names: Sequence[str], quick: bool) -> list[Case]:
    with open(TESTSET) as fh:
        testset = json.load(fh)["problems"]
    ps_rtols = QUICK_PYSCIML_RTOLS if quick else PYSCIML_RTOLS
    peer_rtols = QUICK_PEER_RTOLS if quick else PEER_RTOLS
    cases = []
    for name in names:
        if name == "ROBER_1e11":
            d = testset["ROBER"]
            cases.append(Case("ROBER", "ROBER [0, 1e11]", "ROBER", d["t_end"], d["y0"],
                              np.array(d["reference"]), 1e-4, ps_rtols, peer_rtols,
                              "Test Set 2.4 (Mazzia & Magherini)"))
        elif name == "ROBER_1e5":
            print("ROBER [0, 1e5] reference: SciPy Radau rtol 1e-12 …", flush=True)
            cases.append(Case("ROBER_1e5", "ROBER [0, 1e5]", "ROBER", 1e5, [1.0, 0.0, 0.0],
                              rober_1e5_reference(), 1e-4, (1e-6,), peer_rtols,
                              "SciPy Radau rtol 1e-12, atol 1e-20", in_goal=False))
        elif name == "HIRES":
            d = testset["HIRES"]
            cases.append(Case("HIRES", "HIRES [0, 321.8122]", "HIRES", d["t_end"], d["y0"],
                              np.array(d["reference"]), 1e-4, ps_rtols, peer_rtols,
                              "Test Set 2.4 (Mazzia & Magherini)"))
        elif name == "VDPOL":
            d = testset["VDPOL"]
            cases.append(Case("VDPOL", "Van der Pol ε=1e-6 [0, 2]", "VDPOL", d["t_end"],
                              d["y0"], np.array(d["reference"]), 1.0, ps_rtols, peer_rtols,
                              "Test Set 2.4 (Mazzia & Magherini)"))
        else:
            raise KeyError(name)
    return cases


def max_rel_error(y, ref) -> float:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    if y.shape != ref.shape or not np.all(np.isfinite(y)):
        return math.nan
    return float(np.max(np.abs(y - ref) / np.abs(ref)))


# ============================================================================ time limit


class RunTimeout(BaseException):
    """Raised inside a run by the SIGALRM timer (a BaseException, so that no ``except
    Exception`` inside the library swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def handler(signum, frame):
        raise RunTimeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ============================================================================ solvers


@dataclass
class Prepared:
    """One solver on one problem at one tolerance: ``fn()`` runs it, ``finish(raw)`` reads the
    end state, success flag, return code and statistics from what ``fn`` returned."""

    fn: Callable[[], Any]
    finish: Callable[[Any], tuple[np.ndarray, bool, str, dict]]


class Solver:
    package: str
    method: str
    order: int
    capped: bool = False  # under the SIGALRM cap (pysciml: Python code, interruptible)

    @property
    def label(self) -> str:
        return f"{self.package} {self.method}"

    def rtols(self, case: Case) -> tuple[float, ...]:
        return case.peer_rtols

    def setup(self, case: Case) -> dict:
        """One-off preparation per problem (diffrax: jit compilation); returns notes."""
        return {}

    def prepare(self, case: Case, rtol: float, atol: float) -> Prepared:
        raise NotImplementedError


def _quiet(fn):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return run


class PyscimlSolver(Solver):
    package = "pysciml"
    capped = True

    def __init__(self, method: str, order: int, device: torch.device, jac: str,
                 max_steps: int, loop: str = "eager"):
        self.method, self.order, self.device = method, order, device
        self.alg = getattr(ps, method)()
        self.jac = jac
        self.max_steps = max_steps
        self.loop = loop

    @property
    def label(self) -> str:
        return super().label + ("" if self.loop == "eager" else f" ({self.loop})")

    def setup(self, case: Case) -> dict:
        """``loop='compile'``: compile the iteration for this problem before timing (as
        diffrax's jit compilation is); the seconds it took are reported."""
        if self.loop == "eager":
            return {}
        rtol = max(case.pysciml_rtols)
        start = time.perf_counter()
        self.prepare(case, rtol, case.atol(rtol)).fn()
        return {"compile_s": time.perf_counter() - start}

    def rtols(self, case: Case) -> tuple[float, ...]:
        return case.pysciml_rtols

    def prepare(self, case: Case, rtol: float, atol: float) -> Prepared:
        f, jac = torch_rhs(case.family, self.device)
        u0 = torch.tensor(case.y0, dtype=F64, device=self.device)
        prob = ps.ODEProblem(f, u0, (0.0, case.t_end),
                             jac=jac if self.jac == "analytic" else None)
        alg, max_steps, loop = self.alg, self.max_steps, self.loop
        # the save time as a float64 tensor, exactly the problem's t_end
        saveat = torch.tensor([case.t_end], dtype=F64, device=self.device)

        def fn():
            return ps.solve(prob, alg, saveat=saveat, rtol=rtol, atol=atol, max_steps=max_steps,
                            loop=loop)

        def finish(sol):
            y = sol.u[-1].detach().cpu().numpy()
            code = sol.retcode
            return y, bool(sol.successful), getattr(code, "name", str(code)), \
                dataclasses.asdict(sol.stats)

        return Prepared(_quiet(fn), finish)


class ScipySolver(Solver):
    package = "SciPy"

    def __init__(self, method: str, order: int, jac: str):
        self.method, self.order, self.jac = method, order, jac

    def prepare(self, case: Case, rtol: float, atol: float) -> Prepared:
        f, jac = numpy_rhs(case.family)
        y0 = np.array(case.y0, dtype=np.float64)
        kw = {"jac": jac} if self.jac == "analytic" else {}
        method, t_end = self.method, case.t_end

        def fn():
            return solve_ivp(f, (0.0, t_end), y0, method=method, rtol=rtol, atol=atol, **kw)

        def finish(r):
            ok = r.status == 0 and r.t[-1] == t_end
            return r.y[:, -1].copy(), bool(ok), "success" if ok else f"failed: {r.message}", \
                {"nfev": int(r.nfev), "njev": int(r.njev), "nlu": int(r.nlu),
                 "nsteps": int(r.t.size - 1)}

        return Prepared(_quiet(fn), finish)


# ---------------------------------------------------------------------------- diffrax


_JAX: dict[str, Any] = {}


def load_jax() -> tuple[Any, Any, Any] | None:
    """``(jax, jax.numpy, diffrax)`` with float64 enabled, or ``None`` when not installed."""
    if "mods" in _JAX:
        return _JAX["mods"]
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import diffrax
        import jax.numpy as jnp
        mods = (jax, jnp, diffrax)
    except Exception as exc:  # ImportError, or a broken install
        _JAX["reason"] = f"{type(exc).__name__}: {exc}"
        mods = None
    _JAX["mods"] = mods
    return mods


def make_diffrax_run(family: str, method: str, newton: bool = False,
                     max_steps: int = DIFFRAX_MAX_STEPS):
    """``run(y0, args, t1, rtol, atol) -> (y(t1), ok, steps, rejected)`` (to be jit-compiled;
    tolerances and the end time are traced, so one compilation serves every tolerance).

    ``newton``: optimistix's Newton root finder at the step-size controller's tolerances instead
    of diffrax's default VeryChord (which, with diffrax 0.7.2 / jax 0.10.2, never converges for
    KenCarp4, not even on a linear decay, and stalls Kvaerno5 at t0 on Van der Pol)."""
    jax, jnp, dfx = load_jax()
    f = jax_rhs(family, jnp)
    term = dfx.ODETerm(f)
    if method == "KenCarp4":  # an IMEX method: everything in the implicit term
        term = dfx.MultiTerm(dfx.ODETerm(lambda t, y, args: jnp.zeros_like(y)), term)

    def run(y0, args, t1, rtol, atol):
        if newton:
            import optimistix as optx
            solver = getattr(dfx, method)(root_finder=optx.Newton(rtol=rtol, atol=atol))
        else:
            solver = getattr(dfx, method)()
        sol = dfx.diffeqsolve(term, solver, 0.0, t1, None, y0, args=args,
                              stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
                              saveat=dfx.SaveAt(t1=True), max_steps=max_steps, throw=False)
        return (sol.ys[-1], sol.result == dfx.RESULTS.successful,
                sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"])

    return run


class DiffraxSolver(Solver):
    package = "diffrax"

    def __init__(self, method: str, order: int, newton: bool = False):
        self.method, self.order, self.newton = method, order, newton
        self._runs: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return f"diffrax {self.method}" + (" (Newton)" if self.newton else "")

    def _args(self, case: Case):
        jax, jnp, _ = load_jax()
        return jnp.asarray(ROBER_K) if case.family == "ROBER" else None

    def setup(self, case: Case) -> dict:
        if case.family in self._runs:
            return {}
        jax, jnp, _ = load_jax()
        run = jax.jit(make_diffrax_run(case.family, self.method, self.newton))
        y0 = jnp.asarray(case.y0, dtype=jnp.float64)
        t0 = time.perf_counter()
        jax.block_until_ready(run(y0, self._args(case), case.t_end, 1e-6, 1e-6 * case.atol_factor))
        compile_s = time.perf_counter() - t0
        self._runs[case.family] = run
        print(f"    {self.label}: jit compile + first run {compile_s:.1f} s", flush=True)
        return {"compile_s": compile_s}

    def prepare(self, case: Case, rtol: float, atol: float) -> Prepared:
        jax, jnp, _ = load_jax()
        run = self._runs[case.family]
        y0 = jnp.asarray(case.y0, dtype=jnp.float64)
        args = self._args(case)
        t_end = case.t_end

        def fn():
            return jax.block_until_ready(run(y0, args, t_end, rtol, atol))

        def finish(out):
            y, ok, nacc, nrej = out
            ok = bool(ok)
            return np.asarray(y), ok, "successful" if ok else "failed (max_steps or diverged)", \
                {"naccept": int(nacc), "nreject": int(nrej)}

        return Prepared(fn, finish)


# ============================================================================ measurement


@dataclass
class Point:
    """One solver on one problem at one tolerance."""

    solver: str
    package: str
    method: str
    rtol: float
    atol: float
    status: str = "ok"  # ok | failed | timeout | error | skipped
    message: str = ""
    retcode: str = ""
    error: float = math.nan
    probe_ms: float = math.nan
    times_ms: list[float] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return self.summary.get("median_ms", math.nan) if self.summary else math.nan

    @property
    def usable(self) -> bool:
        return self.status == "ok" and math.isfinite(self.error) and math.isfinite(self.median_ms)


def run_case(case: Case, solvers: list[Solver], args, device) -> tuple[list[Point], dict]:
    """Every solver at every one of its tolerances (loose to tight); then every sub-2 s run of
    the problem, all tolerances together, timed in interleaved rounds: the matched-error ratio
    sets a pysciml run at one rtol against peer runs at others, so they must be timed under
    the same load."""
    print(f"\n== {case.title}: reference {case.ref_source}", flush=True)
    notes: dict[str, Any] = {}
    for s in solvers:
        notes[s.label] = s.setup(case)
    points: list[Point] = []
    last: dict[str, Point] = {}  # the last run (not skipped) of each solver
    grid = sorted({r for s in solvers for r in s.rtols(case)}, reverse=True)
    timed: list[tuple[Point, Prepared]] = []
    for rtol in grid:
        atol = case.atol(rtol)
        for s in solvers:
            if rtol not in s.rtols(case):
                continue
            pt = Point(s.label, s.package, s.method, rtol, atol)
            points.append(pt)
            prev = last.get(s.label)
            if prev is not None and prev.status in ("timeout", "failed", "error"):
                pt.status, pt.message = "skipped", (f"{prev.status} at rtol {prev.rtol:.0e}")
                print(f"  rtol {rtol:.0e} {s.label:<26} skipped ({pt.message})", flush=True)
                continue
            if prev is not None and s.capped and math.isfinite(prev.probe_ms):
                predicted = prev.probe_ms / 1e3 * (prev.rtol / rtol) ** (1 / (s.order + 1))
                if predicted > args.cap:
                    pt.status = "skipped"
                    pt.message = f"predicted {predicted:.0f} s > cap {args.cap:.0f} s"
                    print(f"  rtol {rtol:.0e} {s.label:<26} skipped ({pt.message})", flush=True)
                    continue
            prep = s.prepare(case, rtol, atol)
            try:
                with time_limit(args.cap if s.capped else None):
                    start = time.perf_counter()
                    raw = prep.fn()
                    common._synchronize(device if s.package == "pysciml" else None)
                    pt.probe_ms = (time.perf_counter() - start) * 1e3
            except RunTimeout:
                pt.status, pt.message = "timeout", f"> cap {args.cap:.0f} s"
                pt.probe_ms = args.cap * 1e3
                last[s.label] = pt
                print(f"  rtol {rtol:.0e} {s.label:<26} TIMEOUT (> {args.cap:.0f} s)", flush=True)
                continue
            except Exception as exc:  # a crash of one solver must not end the benchmark
                pt.status, pt.message = "error", f"{type(exc).__name__}: {exc}"[:300]
                last[s.label] = pt
                print(f"  rtol {rtol:.0e} {s.label:<26} ERROR {pt.message}", flush=True)
                continue
            last[s.label] = pt
            y, ok, code, stats = prep.finish(raw)
            pt.retcode, pt.stats = code, stats
            if ok:
                pt.error = max_rel_error(y, case.ref)
                if not math.isfinite(pt.error):
                    pt.status, pt.message = "failed", "non-finite end state"
            else:
                pt.status, pt.message = "failed", code
            if pt.status == "ok" and pt.probe_ms < SLOW_RUN_S * 1e3 and args.repeats > 1:
                timed.append((pt, prep))
            else:
                pt.times_ms = [pt.probe_ms]
                pt.summary = summarize(pt.times_ms)
            print(f"  rtol {rtol:.0e} {s.label:<26} {pt.probe_ms / 1e3:8.3f} s  "
                  f"err {fmt_sci(pt.error):>8}  {pt.status if pt.status != 'ok' else ''}",
                  flush=True)
    if timed:
        print(f"  timing {len(timed)} runs in up to {args.repeats} interleaved rounds "
              f"({CASE_BUDGET_S:.0f} s budget) ...", flush=True)
        times = time_interleaved([p.fn for _, p in timed], args.repeats, warmup=0, settle=1,
                                 device=device, max_seconds=CASE_BUDGET_S)
        for (pt, _), ts in zip(timed, times, strict=True):
            pt.times_ms = ts
            pt.summary = summarize(ts)
    return points, notes


# ---------------------------------------------------------------------------- matched error


def pareto_front(points: Sequence[Point]) -> list[tuple[float, float]]:
    """The (error, ms) points that no faster point beats on error, fastest first (so error
    decreases as time grows)."""
    pts = sorted((p.median_ms, p.error) for p in points if p.usable and p.error > 0)
    front: list[tuple[float, float]] = []
    for ms, err in pts:
        if not front or err < front[-1][0]:
            front.append((err, ms))
    return front


def time_at_error(points: Sequence[Point], target: float) -> tuple[float, str]:
    """The peer's time at achieved error ``target``: log–log interpolation on its Pareto
    front. Flags: ``""`` interpolated; ``"†"`` the peer's fastest run is already at least as
    accurate (the issue's rule: the peer's time at the tolerance where its error is at least as
    small; it overstates the peer's time, so the ratio pysciml / peer is a lower bound);
    ``"*"`` no run of the peer got that accurate: its most accurate run's time is used (it
    understates the peer's time, so the ratio is an upper bound). No extrapolation."""
    front = pareto_front(points)
    if not front or not (target > 0 and math.isfinite(target)):
        return math.nan, "n/a"
    if target >= front[0][0]:
        return front[0][1], "†"
    for (e_a, t_a), (e_b, t_b) in zip(front, front[1:], strict=False):
        if e_a > target >= e_b:
            w = (math.log(target) - math.log(e_a)) / (math.log(e_b) - math.log(e_a))
            return math.exp(math.log(t_a) + w * (math.log(t_b) - math.log(t_a))), ""
    return front[-1][1], "*"


def peer_point_at_rtol(points: Sequence[Point], solver: str, rtol: float) -> Point | None:
    for p in points:
        if p.solver == solver and p.rtol == rtol:
            return p
    return None


def compare(case: Case, points: list[Point], peers: Sequence[str]) -> list[dict]:
    """For each usable pysciml point: the peers' times at equal achieved error and at the same
    rtol, and the ratios pysciml / peer."""
    out = []
    for p in points:
        if p.package != "pysciml" or not p.usable:
            continue
        row: dict[str, Any] = {"method": p.method, "solver": p.solver, "rtol": p.rtol,
                               "ms": p.median_ms,
                               "error": p.error, "matched": {}, "same_rtol": {}}
        for peer in peers:
            curve = [q for q in points if q.solver == peer]
            if not curve:
                continue
            ms, flag = time_at_error(curve, p.error)
            row["matched"][peer] = {"peer_ms": ms, "flag": flag,
                                    "ratio": p.median_ms / ms if math.isfinite(ms) else math.nan}
            q = peer_point_at_rtol(points, peer, p.rtol)
            if q is not None and q.usable:
                row["same_rtol"][peer] = {"peer_ms": q.median_ms, "peer_error": q.error,
                                          "ratio": p.median_ms / q.median_ms}
        out.append(row)
    return out


# ============================================================================ reporting


def ratio_cell(m: dict | None) -> str:
    if m is None or not math.isfinite(m.get("ratio", math.nan)):
        return "—"
    return fmt_ratio(m["ratio"]) + m["flag"]


def cell(p: Point | None) -> str:
    if p is None:
        return ""
    if p.status == "ok":
        return f"{fmt_ms(p.median_ms)} ({p.error:.0e})"
    if p.status == "skipped":
        return "skip"
    if p.status == "timeout":
        return "timeout"
    return p.status


def print_case_tables(case: Case, points: list[Point], comparisons: list[dict],
                      solver_labels: Sequence[str]) -> list[str]:
    texts = []
    grid = sorted({p.rtol for p in points}, reverse=True)
    rows = []
    for label in solver_labels:
        pts = {p.rtol: p for p in points if p.solver == label}
        if pts:
            rows.append([label] + [cell(pts.get(r)) for r in grid])
    texts.append(print_table(
        ["solver"] + [f"rtol {r:.0e}" for r in grid], rows,
        title=(f"\n### {case.title} — median ms (max rel error at t_end); atol = rtol·"
               f"{case.atol_factor:g}; reference: {case.ref_source}")))
    rows = []
    peers = ["SciPy Radau", "SciPy BDF", "SciPy LSODA", "diffrax Kvaerno5"]
    for c in comparisons:
        p = next(q for q in points if q.solver == c["solver"] and q.rtol == c["rtol"])
        st = p.stats
        r = [c["solver"].removeprefix("pysciml "), f"{c['rtol']:.0e}", fmt_ms(c["ms"]),
             fmt_sci(c["error"]),
             f"{st.get('naccept', '')}/{st.get('nreject', '')}", st.get("nf", ""),
             st.get("njac", ""), st.get("nfactor", "")]
        for peer in peers:
            r.append(ratio_cell(c["matched"].get(peer)))
        rows.append(r)
    if rows:
        texts.append(print_table(
            ["pysciml", "rtol", "ms", "error", "acc/rej", "nf", "njac", "nfactor",
             "×Radau", "×BDF", "×LSODA", "×diffrax Kv5"], rows,
            title=(f"\n{case.title}: pysciml time / peer time at equal achieved error "
                   "(log–log interpolation on the peer's Pareto front; † the peer's fastest run is "
                   "already as accurate: ratio is a lower bound; * no peer run that accurate: "
                   "its most accurate run's time, ratio is an upper bound)")))
    return texts


def best_pysciml(comparisons: list[dict], rtol: float) -> dict | None:
    rows = [c for c in comparisons if c["rtol"] == rtol]
    if not rows:
        return None

    def key(c):
        rs = [c["matched"].get(p, {}).get("ratio", math.nan) for p in ("SciPy Radau", "SciPy BDF")]
        rs = [x for x in rs if math.isfinite(x)]
        return (max(rs) if rs else math.inf, c["ms"])

    return min(rows, key=key)


def verdict_table(cases: list[Case], comparisons: dict[str, list[dict]]) -> tuple[str, dict]:
    rows, record = [], []
    passed_cases = []
    for case in cases:
        comp = comparisons.get(case.key, [])
        rtols = [r for r in case.pysciml_rtols if r in GOAL_RTOLS or not case.in_goal]
        case_pass = case.in_goal and all(r in case.pysciml_rtols for r in GOAL_RTOLS)
        for rtol in rtols:
            best = best_pysciml(comp, rtol)
            if best is None:
                rows.append([case.title, f"{rtol:.0e}", "none succeeded"] + [""] * 8 + ["FAIL"])
                case_pass = False
                record.append({"case": case.key, "rtol": rtol, "best": None, "pass": False})
                continue
            m = best["matched"]

            def peer_cells(name, m=m):
                x = m.get(name)
                if x is None:
                    return ["—", "—"]
                return [fmt_ms(x["peer_ms"]), ratio_cell(x)]

            rr = m.get("SciPy Radau", {}).get("ratio", math.nan)
            rb = m.get("SciPy BDF", {}).get("ratio", math.nan)
            ok = math.isfinite(rr) and math.isfinite(rb) and rr <= 1.0 and rb <= 1.0
            if not ok:
                case_pass = False
            verdict = "PASS" if ok else "FAIL"
            if not case.in_goal:
                verdict += " (info)"
            rows.append([case.title, f"{rtol:.0e}", best["solver"].removeprefix("pysciml "),
                         fmt_ms(best["ms"]),
                         fmt_sci(best["error"]), *peer_cells("SciPy Radau"),
                         *peer_cells("SciPy BDF"), *peer_cells("SciPy LSODA"), verdict])
            record.append({"case": case.key, "rtol": rtol, "best": best["solver"],
                           "ms": best["ms"], "error": best["error"], "matched": m, "pass": ok})
        if case_pass:
            passed_cases.append(case.title)
    text = print_table(
        ["problem", "rtol", "best pysciml", "ms", "error", "Radau ms", "×Radau", "BDF ms",
         "×BDF", "LSODA ms", "×LSODA", "≤1.0× Radau & BDF"], rows,
        title=("\n## Goal (a): pysciml's best method ≤ 1.0× SciPy Radau and BDF at equal "
               "achieved error (peer ms = its time interpolated at pysciml's error), at rtol "
               "1e-6 and 1e-8, on at least one problem"))
    goal_in = [c for c in cases if c.in_goal and all(r in c.pysciml_rtols for r in GOAL_RTOLS)]
    if not goal_in:
        line = ("Goal (a): not assessed (needs rtol 1e-6 and 1e-8 on ROBER [0, 1e11], HIRES or "
                "Van der Pol; a --quick run has rtol 1e-6 only)")
        status = "not assessed"
    elif passed_cases:
        line = f"Goal (a): PASS on {', '.join(passed_cases)}"
        status = "PASS"
    else:
        line = ("Goal (a): FAIL — no problem where the best pysciml method is ≤ 1.0× Radau "
                "and BDF at both rtol 1e-6 and 1e-8")
        status = "FAIL"
    print(line, flush=True)
    return text + "\n" + line, {"rows": record, "status": status, "passed": passed_cases}


# ============================================================================ plot


def work_precision_plot(path: Path, cases: list[Case], points: dict[str, list[Point]],
                        solver_labels: Sequence[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cases)
    ncol = min(n, 2)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 4.6 * nrow + 1.0), squeeze=False)
    ps_colors = iter(plt.get_cmap("tab10").colors)
    peer_colors = iter(["black", "0.5", "tab:olive", "tab:cyan", "magenta", "tab:brown",
                        "gold", "navy"] * 3)
    colors = {label: next(ps_colors if label.startswith("pysciml") else peer_colors)
              for label in solver_labels}
    handles = {}
    for ax, case in zip(axes.flat, cases, strict=False):
        for label in solver_labels:
            # errors above 1 (BDF at rtol 1e-3 on ROBER: 3e13) carry no information and
            # would squash the axis
            pts = sorted((p for p in points[case.key] if p.solver == label and p.usable
                          and p.error <= 1.0), key=lambda p: -p.rtol)
            if not pts:
                continue
            is_ps = label.startswith("pysciml")
            (h,) = ax.plot([p.median_ms for p in pts], [p.error for p in pts],
                           "-" if is_ps else "--", marker="o" if is_ps else "s",
                           ms=5 if is_ps else 3.5, lw=1.6 if is_ps else 1.0,
                           color=colors[label], label=label)
            handles[label] = h
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("median wall time [ms]")
        ax.set_ylabel("max relative error at t_end")
        ax.set_title(case.title, fontsize=10)
        ax.grid(which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.legend([handles[k] for k in solver_labels if k in handles],
               [k for k in solver_labels if k in handles], loc="lower center",
               ncol=min(4, max(1, len(handles))), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.02 + 0.022 * math.ceil(len(handles) / 4), 1, 0.97))

    def write(tmp: str) -> None:
        fig.savefig(tmp, dpi=120, format="png")

    try:
        common._replace_atomically(path, write, ".png.tmp")
    finally:
        plt.close(fig)
    return path


# ============================================================================ batch (goal b)


def run_batch(args, device, method: str, have_jax: bool,
              no_jax_reason: str = "diffrax: not installed") -> tuple[str, dict]:
    B = args.batch
    T, rtol, atol = 1e5, 1e-6, 1e-10
    rng = np.random.default_rng(args.seed)
    k = np.array(ROBER_K) * 10 ** rng.uniform(-0.5, 0.5, (B, 3))
    n_ref = min(8, B)
    print(f"\n== batch: {B} ROBER instances, k × 10^U(-0.5, 0.5) (seed {args.seed}), [0, 1e5], "
          f"rtol {rtol:g}, atol {atol:g}; references for the first {n_ref} members: SciPy "
          "Radau rtol 1e-10", flush=True)
    refs = []
    for i in range(n_ref):
        kk = tuple(k[i])
        r = solve_ivp(lambda t, y, kk=kk: rober_np(t, y, kk), (0.0, T), [1.0, 0.0, 0.0],
                      method="Radau", rtol=1e-10, atol=1e-18,
                      jac=lambda t, y, kk=kk: rober_jac_np(t, y, kk))
        refs.append(r.y[:, -1].copy())

    def err_of(ys) -> float:
        return max(max_rel_error(ys[i], refs[i]) for i in range(n_ref))

    results: dict[str, dict] = {}

    def batch_times(fn, probe_ms: float, dev=None) -> list[float]:
        """The batch runs are the ones most disturbed by other processes (torch's intra-op
        threads wait for a busy core), so they get >= 3 timed repeats unless a run is slow
        (over a third of the cap) or --quick asked for one."""
        if args.repeats <= 1 or probe_ms > args.cap * 1e3 / 3:
            return [probe_ms]
        return time_call(fn, max(3, args.repeats), warmup=0, device=dev)

    # pysciml: one batched solve, per-member steps; with torch's default thread count and,
    # when that is above 1, once more with 1 thread (on a loaded machine torch's intra-op
    # threads wait for a busy core, which can slow a batched solve down by 10x or more)
    u0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64, device=device).expand(B, 3).contiguous()
    p = torch.tensor(k, dtype=F64, device=device)
    alg = getattr(ps, method)()
    saveat = torch.tensor([T], dtype=F64, device=device)

    def make_fn(jac, graph=False):
        prob = ps.ODEProblem(rober_t, u0, (0.0, T), p=p, batch_ndim=1, jac=jac)
        loop = "cuda_graph" if graph else "eager"
        return _quiet(lambda: ps.solve(prob, alg, saveat=saveat, rtol=rtol, atol=atol,
                                       max_steps=args.max_steps, loop=loop))

    def pysciml_batch(threads: int, graph: bool = False) -> tuple[str, dict]:
        label = (f"pysciml {method} (batch_ndim=1, {device.type}"
                 f"{', cuda_graph' if graph else ''}, {threads} thr)")
        res: dict[str, Any] = {"members": B, "members_timed": B, "jac": args.jac,
                               "torch_threads": threads, "cuda_graph": graph}
        fn = make_fn(rober_jac_t if args.jac == "analytic" else None, graph)
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with time_limit(args.cap):
                start = time.perf_counter()
                try:
                    sol = fn()
                except Exception as exc:
                    if args.jac != "analytic":
                        raise
                    res["jac"] = "auto"
                    res["note"] = (f"with the analytic Jacobian the batched solve raised "
                                   f"{type(exc).__name__}: {str(exc)[:160]}; fell back to the "
                                   "automatic Jacobian")
                    print(f"  note: {res['note']}", flush=True)
                    fn = make_fn(None, graph)
                    start = time.perf_counter()
                    sol = fn()
                common._synchronize(device)
                probe = (time.perf_counter() - start) * 1e3
            ys = sol.u[-1].detach().cpu().numpy()
            res.update(error=err_of(ys), n_failed=int((sol.status != 1).sum()),
                       stats=dataclasses.asdict(sol.stats))
            times = batch_times(fn, probe, device)
            res.update(times_ms=times, summary=summarize(times))
            res["solves_per_s"] = B / (res["summary"]["median_ms"] / 1e3)
        except RunTimeout:
            res.update(status="timeout", solves_per_s=math.nan, error=math.nan)
        except Exception as exc:
            res.update(status="error", message=f"{type(exc).__name__}: {exc}"[:300],
                       solves_per_s=math.nan, error=math.nan)
            print(f"  pysciml batch ERROR {res['message']}", flush=True)
        finally:
            torch.set_num_threads(saved)
        print(f"  {label}: {fmt_ms(res.get('summary', {}).get('median_ms'))} ms", flush=True)
        return label, res

    default_threads = torch.get_num_threads()
    ps_labels = []
    if device.type == "cuda":  # the loop captured in a CUDA graph first, then eager
        variants = [(default_threads, True), (default_threads, False)]
    else:
        variants = [(default_threads, False)] + ([(1, False)] if default_threads > 1 else [])
    for threads, graph in variants:
        lab, res = pysciml_batch(threads, graph)
        results[lab] = res
        ps_labels.append(lab)
    label = ps_labels[0]

    # SciPy LSODA in a Python loop over the first 64 members, extrapolated
    n_loop = min(64, B)
    analytic = args.jac == "analytic"

    def lsoda_loop():
        out = []
        for i in range(n_loop):
            kk = tuple(k[i])
            jac = (lambda t, y, kk=kk: rober_jac_np(t, y, kk)) if analytic else None
            r = solve_ivp(lambda t, y, kk=kk: rober_np(t, y, kk), (0.0, T), [1.0, 0.0, 0.0],
                          method="LSODA", rtol=rtol, atol=atol, jac=jac)
            out.append(r.y[:, -1].copy() if r.status == 0 else np.full(3, np.nan))
        return out

    lsoda = _quiet(lsoda_loop)
    start = time.perf_counter()
    ys = lsoda()
    probe = (time.perf_counter() - start) * 1e3
    times = batch_times(lsoda, probe)
    s = summarize(times)
    results["SciPy LSODA (Python loop)"] = {
        "members": B, "members_timed": n_loop, "times_ms": times, "summary": s,
        "error": err_of(ys), "n_failed": int(sum(not np.all(np.isfinite(y)) for y in ys)),
        "solves_per_s": n_loop / (s["median_ms"] / 1e3),
        "extrapolated_ms": s["median_ms"] * B / n_loop}
    print(f"  SciPy LSODA loop of {n_loop}: {fmt_ms(s['median_ms'])} ms", flush=True)

    # diffrax Kvaerno5 under vmap
    if have_jax:
        jax, jnp, _ = load_jax()
        run = make_diffrax_run("ROBER", "Kvaerno5")
        vrun = jax.jit(jax.vmap(run, in_axes=(None, 0, None, None, None)))
        y0 = jnp.asarray([1.0, 0.0, 0.0])
        kj = jnp.asarray(k)

        def dfx_fn():
            return jax.block_until_ready(vrun(y0, kj, T, rtol, atol))

        start = time.perf_counter()
        dfx_fn()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        out = dfx_fn()
        probe = (time.perf_counter() - start) * 1e3
        times = batch_times(dfx_fn, probe)
        s = summarize(times)
        ys = np.asarray(out[0])
        results["diffrax Kvaerno5 (vmap, jit)"] = {
            "members": B, "members_timed": B, "times_ms": times, "summary": s,
            "compile_s": compile_s, "error": err_of(ys),
            "n_failed": int(B - np.asarray(out[1]).sum()),
            "solves_per_s": B / (s["median_ms"] / 1e3)}
        print(f"  diffrax Kvaerno5 vmap: {fmt_ms(s['median_ms'])} ms (compile {compile_s:.1f} s)",
              flush=True)
    else:
        print(f"  {no_jax_reason}", flush=True)

    ps_rate = results[label].get("solves_per_s", math.nan)
    rows = []
    for name, r in results.items():
        ms = r.get("summary", {}).get("median_ms", math.nan)
        rows.append([name, f"{r['members_timed']}/{r['members']}", fmt_ms(ms),
                     fmt_ms(r.get("summary", {}).get("min_ms", math.nan)),
                     fmt_ms(r.get("extrapolated_ms", ms)),
                     f"{r['solves_per_s']:.1f}" if math.isfinite(r["solves_per_s"]) else "—",
                     r.get("n_failed", "—"), fmt_sci(r.get("error")),
                     fmt_ratio(ps_rate / r["solves_per_s"]) if math.isfinite(ps_rate)
                     and math.isfinite(r["solves_per_s"]) else "—"])
    text = print_table(
        ["solver", "timed/members", "ms (median)", "ms (min)", f"ms for {B}", "solves/s",
         "failed",
         f"max err (first {n_ref})", "pysciml (first row) solves/s ÷ this"], rows,
        title=(f"\n## Goal (b): {B} ROBER instances, throughput on {device.type} "
               "(pysciml per-member steps, torch threads: default and 1; LSODA extrapolated "
               "from its loop; solves/s from the median)"))
    lines = [f"note: {results[label]['note']}"] if "note" in results[label] else []
    for lab in ps_labels:
        rate = results[lab].get("solves_per_s", math.nan)
        threads = results[lab]["torch_threads"]
        for name, r in results.items():
            if name in ps_labels:
                continue
            x = rate / r["solves_per_s"] if math.isfinite(rate) else math.nan
            word = "faster" if x >= 1 else "slower"
            how = f"{threads} thr" + (", cuda_graph" if results[lab]["cuda_graph"] else "")
            lines.append(f"Goal (b): pysciml {method} ({how}) {rate:.1f} solves/s vs "
                         f"{name} {r['solves_per_s']:.1f} solves/s → {fmt_ratio(x)} ({word})"
                         if math.isfinite(x) else f"Goal (b): pysciml run failed vs {name}")
    if not have_jax:
        lines.append(f"Goal (b): {no_jax_reason}")
    if device.type == "cpu":
        lines.append("GPU figure: run with --device cuda (peer: diffrax Kvaerno5 vmap on one "
                     "H100, 445 solves/s in peer_baselines.md)")
    print("\n".join(lines), flush=True)
    return text + "\n" + "\n".join(lines), {
        "members": B, "seed": args.seed, "rtol": rtol, "atol": atol, "t_end": T,
        "method": method, "device": str(device), "results": results, "verdicts": lines}


# ============================================================================ profile


def profile_one(args, device) -> None:
    import cProfile
    import pstats

    f, jac = torch_rhs("ROBER", device)
    prob = ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0], dtype=F64, device=device),
                         (0.0, 1e5), jac=jac if args.jac == "analytic" else None)
    alg = ps.Rodas5P()
    saveat = torch.tensor([1e5], dtype=F64, device=device)
    ps.solve(prob, alg, saveat=saveat, rtol=1e-6, atol=1e-10)  # warm-up
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    sol = ps.solve(prob, alg, saveat=saveat, rtol=1e-6, atol=1e-10)
    prof.disable()
    print(f"pysciml Rodas5P, ROBER [0, 1e5], rtol 1e-6, atol 1e-10, jac {args.jac}: "
          f"{time.perf_counter() - start:.2f} s under cProfile; {sol.stats}")
    st = pstats.Stats(prof)
    st.sort_stats("tottime").print_stats(25)
    st.sort_stats("cumulative").print_stats(30)


def replot(json_path: Path, png_path: Path) -> Path:
    """Redraw the work–precision plot from a JSON record of this script."""
    with open(json_path) as fh:
        record = json.load(fh)
    cases, points, labels = [], {}, []
    for key, c in record["cases"].items():
        cases.append(Case(key, c["title"], "", c["t_end"], c["y0"], np.array(c["reference"]),
                          1.0, (), (), c["reference_source"]))
        pts = []
        for d in c["points"]:
            d = {k: (math.nan if v is None and k in ("error", "probe_ms") else v)
                 for k, v in d.items()}
            pts.append(Point(**d))
            if d["solver"] not in labels:
                labels.append(d["solver"])
        points[key] = pts
    ps_first = [lab for lab in labels if lab.startswith("pysciml")]
    labels = ps_first + [lab for lab in labels if lab not in ps_first]
    settings = record.get("settings", {})
    return work_precision_plot(png_path, cases, points, labels,
                               f"Stiff work–precision (pysciml solid, peers dashed); "
                               f"jac {settings.get('jac', '?')}; "
                               f"{record['environment'].get('device', '?')}")


# ============================================================================ main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: pysciml at rtol 1e-6 only, peers at 1e-5..1e-7, 1 repeat, "
                         "batch 64")
    ap.add_argument("--problems", nargs="*", default=None,
                    help="ROBER (= ROBER_1e11 and ROBER_1e5), ROBER_1e11, ROBER_1e5, HIRES, "
                         "VDPOL (default: all; none: only the batch)")
    ap.add_argument("--methods", nargs="*", default=None,
                    help="pysciml methods (default: every stiff method pysciml has)")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size of goal (b) (default 1024; quick 64; 0 skips it)")
    ap.add_argument("--batch-method", default=None,
                    help="pysciml method of the batch (default: the fastest on ROBER [0, 1e5], "
                         "else Rodas5P)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats of runs under 2 s, in interleaved rounds that stop "
                         f"after {CASE_BUDGET_S:.0f} s per problem (default 9; "
                         "quick 1)")
    ap.add_argument("--cap", type=float, default=60.0, help="seconds per pysciml run")
    ap.add_argument("--max-steps", type=int, default=100_000)
    ap.add_argument("--compile", nargs="*", default=["Rodas5P"], metavar="METHOD",
                    help="pysciml methods also run with loop='compile' (the time loop's "
                         "iteration compiled by torch.compile; compiled once per problem before "
                         "timing); no value: none")
    ap.add_argument("--jac", choices=("analytic", "auto"), default="analytic",
                    help="pysciml and SciPy get the analytic Jacobian (default) or build their "
                         "own (pysciml: autodiff; SciPy: finite differences); diffrax always "
                         "differentiates f")
    ap.add_argument("--no-diffrax", action="store_true")
    ap.add_argument("--device", default="cpu", help="pysciml's device (cpu or cuda)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's default; on a loaded 2-core "
                         "machine a batched solve can run several times faster with 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--replot", type=Path, default=None, metavar="JSON",
                    help="redraw the PNG beside a JSON record of this script, and exit")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one pysciml Rodas5P ROBER [0, 1e5] rtol 1e-6 solve and exit")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 9
    if args.batch is None:
        args.batch = 64 if args.quick else 1024
    all_names = ["ROBER_1e11", "ROBER_1e5", "HIRES", "VDPOL"]
    if args.problems is None:
        names = all_names
    else:
        names = []
        for n in args.problems:
            n = n.upper().replace("ROBER_1E", "ROBER_1e")
            expanded = ["ROBER_1e11", "ROBER_1e5"] if n == "ROBER" else [n]
            for e in expanded:
                if e not in all_names:
                    ap.error(f"--problems: unknown {n!r} (choose from ROBER, "
                             f"{', '.join(all_names)})")
                if e not in names:
                    names.append(e)
        names = [n for n in all_names if n in names]
    args.names = names
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot is not None:
        print(f"wrote {replot(args.replot, args.replot.with_suffix('.png'))}")
        return 0
    device = resolve_device(args.device)
    if device is None:
        print(f"--device {args.device}: not available on this machine; nothing to run.")
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.profile:
        profile_one(args, device)
        return 0
    warn = busy_warning()
    if warn:
        print(warn, flush=True)

    have_jax = False
    if not args.no_diffrax:
        have_jax = load_jax() is not None
        if not have_jax:
            print(f"diffrax: not installed ({_JAX.get('reason')}); running without it",
                  flush=True)
    else:
        print("diffrax: disabled (--no-diffrax)", flush=True)

    methods = [(m, o) for m, o in PYSCIML_METHODS if hasattr(ps, m)]
    if args.methods:
        unknown = [m for m in args.methods if not hasattr(ps, m)]
        if unknown:
            print(f"--methods: pysciml has no {', '.join(unknown)}")
            return 2
        methods = [(m, dict(PYSCIML_METHODS).get(m, 3)) for m in args.methods]
    unknown = [m for m in args.compile if not hasattr(ps, m)]
    if unknown:
        print(f"--compile: pysciml has no {', '.join(unknown)}")
        return 2
    solvers: list[Solver] = [PyscimlSolver(m, o, device, args.jac, args.max_steps)
                             for m, o in methods]
    solvers += [PyscimlSolver(m, dict(PYSCIML_METHODS).get(m, 3), device, args.jac,
                              args.max_steps, loop="compile") for m in args.compile]
    solvers += [ScipySolver(m, o, args.jac) for m, o in SCIPY_METHODS]
    if have_jax:
        solvers += [DiffraxSolver(m, o, n) for m, o, n in DIFFRAX_METHODS]
    labels = [s.label for s in solvers]

    stem = "stiff"
    if args.quick:
        stem += "_quick"
    if device.type != "cpu":
        stem += f"_{device.type}"
    if args.names and args.names != ["ROBER_1e11", "ROBER_1e5", "HIRES", "VDPOL"]:
        stem += "_" + "_".join(args.names)
    elif not args.names:
        stem += "_batch"
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"

    print(f"pysciml methods: {', '.join(m for m, _ in methods)}; peers: SciPy "
          f"{', '.join(m for m, _ in SCIPY_METHODS)}"
          + (f"; diffrax {', '.join(m + (' (Newton)' if n else '') for m, _, n in DIFFRAX_METHODS)}"
             if have_jax else "")
          + f"; Jacobian: {args.jac}; device {device}; torch threads {torch.get_num_threads()};"
          f" cap {args.cap:.0f} s per pysciml run", flush=True)
    t_start = time.perf_counter()

    # warm-up: the first solve of each method pays one-off costs (imports, vmap tracing)
    f, jac = torch_rhs("ROBER", device)
    wprob = ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0], dtype=F64, device=device),
                          (0.0, 1e-2), jac=jac if args.jac == "analytic" else None)
    for s in solvers:
        if isinstance(s, PyscimlSolver):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ps.solve(wprob, s.alg, saveat=torch.tensor([1e-2], dtype=F64, device=device),
                         rtol=1e-4, atol=1e-8)

    cases = build_cases(args.names, args.quick)
    record: dict[str, Any] = {
        "benchmark": "stiff",
        "complete": False,
        "environment": environment(device, ("scipy", "numpy", "jax", "jaxlib", "diffrax",
                                            "equinox")),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "protocol": {
            "error": "max_i |y_i - ref_i| / |ref_i| at t_end",
            "timing": ("first run untimed (probe); runs under 2 s then timed `repeats` times "
                       "in interleaved rounds with every other sub-2 s run of the same "
                       f"problem, all tolerances (rounds stop after {CASE_BUDGET_S:.0f} s, at "
                       "least 3), each timed call right after an untimed call of the same "
                       "run; median reported; runs of 2 s or more: the probe"),
            "matched_error": ("peer time at pysciml's achieved error: log-log interpolation on "
                              "the peer's Pareto front; flag † = the peer's fastest run is "
                              "already as accurate (its time; ratio is a lower bound), * = no "
                              "peer run that accurate (its most accurate run's time; ratio is "
                              "an upper bound)"),
            "cap_s": args.cap,
            "diffrax": ("jit-compiled once per problem (tolerances traced), timed after "
                        "compilation; default PIDController and dt0=None; KenCarp4 given "
                        "MultiTerm(zero explicit term, f) and optimistix Newton (its default "
                        "VeryChord does not converge); Kvaerno5 run both ways"),
        },
        "cases": {}, "notes": [BRUSSELATOR_NOTE],
    }
    all_points: dict[str, list[Point]] = {}
    comparisons: dict[str, list[dict]] = {}
    texts: list[str] = []
    peer_labels = [s.label for s in solvers if s.package != "pysciml"]

    def save(complete: bool) -> None:
        record["complete"] = complete
        record["elapsed_s"] = time.perf_counter() - t_start
        record["printed"] = "\n".join(texts)
        write_json_atomic(json_path, record)

    for case in cases:
        points, notes = run_case(case, solvers, args, device)
        all_points[case.key] = points
        comparisons[case.key] = compare(case, points, peer_labels)
        texts += print_case_tables(case, points, comparisons[case.key], labels)
        record["cases"][case.key] = {
            "title": case.title, "t_end": case.t_end, "y0": case.y0,
            "reference": case.ref.tolist(), "reference_source": case.ref_source,
            "atol": f"rtol*{case.atol_factor:g}", "setup": notes,
            "points": [dataclasses.asdict(p) for p in points],
            "comparisons": comparisons[case.key],
        }
        save(False)

    if cases:
        text, verdict = verdict_table(cases, comparisons)
        texts.append(text)
        record["goal_a"] = verdict
        best_by_case = {}
        for case in cases:
            per_rtol = {f"{r:.0e}": (b["method"] if (b := best_pysciml(comparisons[case.key], r))
                                     else None) for r in case.pysciml_rtols}
            best_by_case[case.key] = per_rtol
        record["best_pysciml"] = best_by_case
        line = "Best pysciml method per problem and rtol (lowest max(×Radau, ×BDF)): " + "; ".join(
            f"{k}: " + ", ".join(f"{r} {m}" for r, m in v.items()) for k, v in best_by_case.items())
        print(line, flush=True)
        texts.append(line)
        work_precision_plot(png_path, cases, all_points, labels,
                            f"Stiff work–precision (pysciml solid, peers dashed); "
                            f"jac {args.jac}; {device.type}")
        record["plot"] = str(png_path)
        save(False)

    if args.batch > 0:
        method = args.batch_method
        if method is None:
            rb = [p for p in all_points.get("ROBER_1e5", []) if p.package == "pysciml"
                  and p.usable]
            method = min(rb, key=lambda p: p.median_ms).method if rb else "Rodas5P"
        text, batch = run_batch(args, device, method, have_jax,
                                "diffrax: disabled (--no-diffrax)" if args.no_diffrax
                                else "diffrax: not installed")
        texts.append(text)
        record["goal_b"] = batch

    print("\n" + BRUSSELATOR_NOTE, flush=True)
    texts.append(BRUSSELATOR_NOTE)
    save(True)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if cases else "")
          + f" ({time.perf_counter() - t_start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
