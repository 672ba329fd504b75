r"""Neural-ODE training step: pysciml against torchdiffeq and torchode, in one run.

The workload (the peers' baseline in ``/work/shared/reference/peer_baselines.md``): an MLP
vector field :math:`f(u) = W_3 \tanh(W_2 \tanh(W_1 u + b_1) + b_2) + b_3` with two hidden layers
of 64, a batch of 256 initial states of dimension ``dim`` (2 and 64), :math:`t \in [0, T]` with
20 save points (``t = 0`` included), ``rtol = atol = 1e-6`` (the baseline's "tol 1e-6"), float32.
One training step is the solve, ``loss = mean(u_saved ** 2)`` and one ``loss.backward()``.

Every solver gets the same weights and initial states. For each it reports the median (and
the fastest) wall time over repeats, timed in interleaved rounds after warm-up rounds so
that load from other processes hits every solver alike, the ratios pysciml / peer, the
right-hand-side evaluations in the forward and the backward pass (counted inside the MLP, so
every package is counted the same way; one evaluation = the whole batch), the largest error
at ``t = T`` against a float64 reference (SciPy DOP853, ``rtol = atol = 1e-10``), and the
relative error of the parameter gradient against a float64 reference (torchdiffeq dopri5
backpropagation at ``1e-10``).

pysciml runs in two modes:

* ``per-member``: ``batch_ndim=1``, each of the 256 members takes its own adaptive steps;
* ``one state``: ``batch_ndim=0``, the ``(256, dim)`` tensor is one state with one step size
  and an RMS error norm over all of it, as torchdiffeq does.

torchode always steps per member (its design); it runs eagerly (no ``torch.compile``) with its
``IntegralController``. torchdiffeq's ``dopri5`` is a one-state solver.

Goals from the issue: with direct backprop pysciml ≤ 1.0× torchdiffeq ``odeint`` and torchode
(same tableau: Tsit5↔Tsit5, DP5↔Dopri5); with ``InterpolatingAdjoint`` ≤ 0.5× torchdiffeq's
``odeint_adjoint``.

Usage::

    .venv/bin/python benchmarks/neural_ode.py --quick          # smoke test, ~1 min
    .venv/bin/python benchmarks/neural_ode.py                  # full run, 1-2 min when quiet
    .venv/bin/python benchmarks/neural_ode.py --dims 64 --T 10 --device cuda

Writes ``benchmarks/results/neural_ode.json`` and ``neural_ode.png`` (``--quick``:
``neural_ode_quick.*``, so a smoke test never overwrites a full record).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import pysciml as ps  # noqa: E402

BATCH = 256
HIDDEN = 64
N_SAVE = 20
SEED_WEIGHTS = 0
SEED_STATE = 1
REF_TOL = 1e-10


# --------------------------------------------------------------------------- the workload


class MLPField(nn.Module):
    """The vector field ``f(t, u, p) = MLP(u)``; ``nfe`` counts its calls."""

    def __init__(self, dim: int, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, dim))
        self.nfe = 0

    def forward(self, t, u, p=None):
        self.nfe += 1
        return self.net(u)


class TimeFirstField(nn.Module):
    """``f(t, y)`` as torchdiffeq and torchode call it; shares the weights of ``field``."""

    def __init__(self, field: MLPField):
        super().__init__()
        self.field = field

    def forward(self, t, y):
        return self.field(t, y)


@dataclass
class Case:
    """One problem size: the MLP, the initial states, the save times and the references."""

    dim: int
    T: float
    rtol: float
    atol: float
    device: torch.device
    controller: str  # pysciml's step-size controller: a key of CONTROLLERS
    field: MLPField
    u0: torch.Tensor  # (BATCH, dim), float32
    ts: torch.Tensor  # (N_SAVE,), float32
    ref_end: torch.Tensor  # (BATCH, dim), float64: u(T)
    ref_grad: torch.Tensor  # flattened d loss / d weights, float64

    def params(self) -> list[torch.Tensor]:
        return list(self.field.parameters())


def make_case(dim: int, T: float, rtol: float, atol: float, device: torch.device,
              controller: str = "PI") -> Case:
    torch.manual_seed(SEED_WEIGHTS)
    field = MLPField(dim).to(device)
    gen = torch.Generator().manual_seed(SEED_STATE)
    u0 = torch.randn(BATCH, dim, generator=gen).to(device)
    ts = torch.linspace(0.0, T, N_SAVE, device=device)
    ref_end = reference_end_state(field, u0, T)
    ref_grad = reference_gradient(field, u0, ts)
    return Case(dim, T, rtol, atol, device, controller, field, u0, ts, ref_end.to(device),
                ref_grad.to(device))


def reference_end_state(field: MLPField, u0: torch.Tensor, T: float) -> torch.Tensor:
    """``u(T)`` in float64 by SciPy's DOP853 at ``rtol = atol = 1e-10`` (same weights)."""
    from scipy.integrate import solve_ivp

    net64 = copy.deepcopy(field.net).double().cpu()
    shape = u0.shape

    def rhs(t, y):
        with torch.no_grad():
            return net64(torch.from_numpy(y).reshape(shape)).reshape(-1).numpy()

    y0 = u0.detach().double().cpu().reshape(-1).numpy()
    sol = solve_ivp(rhs, (0.0, T), y0, method="DOP853", rtol=REF_TOL, atol=REF_TOL,
                    t_eval=[T])
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).reshape(shape)


def reference_gradient(field: MLPField, u0: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """``d loss / d weights`` in float64: torchdiffeq dopri5 backpropagation at ``1e-10``."""
    from torchdiffeq import odeint

    field64 = TimeFirstField(copy.deepcopy(field).double().cpu())
    us = odeint(field64, u0.detach().double().cpu(), ts.double().cpu(), rtol=REF_TOL,
                atol=REF_TOL, method="dopri5")
    grads = torch.autograd.grad(us.pow(2).mean(), list(field64.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


# --------------------------------------------------------------------------- measuring


@dataclass
class Settings:
    repeats: int
    warmup: int
    max_seconds: float | None  # per case: fewer rounds (at least 3) on a loaded machine
    settle: int = 1  # untimed calls of the same solver before each timed call


@dataclass
class Measurement:
    """One solver on one case: what a runner returns. ``times_ms`` is filled in by
    :func:`run_case`, which times every runner of a case in interleaved rounds."""

    label: str  # the row name in the table
    package: str
    method: str
    gradient: str  # "direct" or "adjoint"
    mode: str  # "per-member" or "one state"
    nfe_fwd: int
    nfe_bwd: int
    end_error: float  # max |u(T) - reference|
    grad_error: float  # ||g - g_ref|| / ||g_ref||
    solver_stats: dict
    train_step: Callable[[], None]  # one forward + backward, what is timed
    times_ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return common.summarize(self.times_ms)["median_ms"] if self.times_ms else math.nan

    def record(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "train_step"}
        out.update(common.summarize(self.times_ms) if self.times_ms else {})
        return out


def measure(case: Case, forward: Callable[[], torch.Tensor], *, label: str, package: str,
            method: str, gradient: str, mode: str,
            stats: Callable[[], dict] | None = None) -> Measurement:
    """Run ``forward() -> (N_SAVE, BATCH, dim)``, the loss and one backward once, counting
    right-hand-side calls and measuring the errors; return them with the timed step."""
    params = case.params()

    def train_step() -> None:
        for q in params:
            q.grad = None
        us = forward()
        us.pow(2).mean().backward()

    for q in params:
        q.grad = None
    case.field.nfe = 0
    us = forward()
    nfe_fwd = case.field.nfe
    us.pow(2).mean().backward()
    nfe_bwd = case.field.nfe - nfe_fwd
    end_error = float((us[-1].detach().double() - case.ref_end).abs().max())
    grad = torch.cat([q.grad.reshape(-1) for q in params]).double()
    grad_error = float((grad - case.ref_grad).norm() / case.ref_grad.norm())
    return Measurement(label, package, method, gradient, mode, nfe_fwd, nfe_bwd, end_error,
                       grad_error, stats() if stats is not None else {}, train_step)


# --------------------------------------------------------------------------- runners


PYSCIML_ALGS = {"Tsit5": ps.Tsit5, "DP5": ps.DP5}
PYSCIML_SENSEALGS = {"direct": ps.DirectBackprop, "adjoint": ps.InterpolatingAdjoint}
MODES = {"per-member": 1, "one state": 0}
# None: solve's default (the explicit methods' PI gains k_P = 0.4, k_I = 1)
CONTROLLERS = {"PI": None, "DOPRI5": ps.PIController, "I": ps.IController}


def run_pysciml(case: Case, alg: str, gradient: str, mode: str) -> Measurement:
    """pysciml ``Tsit5``/``DP5`` with ``DirectBackprop`` or ``InterpolatingAdjoint``."""
    prob = ps.ODEProblem(case.field, case.u0, (0.0, case.T), batch_ndim=MODES[mode])
    controller = CONTROLLERS[case.controller]
    last: dict = {}

    def forward() -> torch.Tensor:
        sol = ps.solve(prob, PYSCIML_ALGS[alg](), saveat=case.ts, rtol=case.rtol,
                       atol=case.atol, sensealg=PYSCIML_SENSEALGS[gradient](),
                       controller=controller if controller is None else controller())
        last["stats"] = sol.stats
        last["ok"] = sol.successful
        return sol.u

    sensealg = "DirectBackprop" if gradient == "direct" else "InterpolatingAdjoint"
    return measure(case, forward, label=f"pysciml {alg} {sensealg} ({mode})",
                   package="pysciml", method=alg, gradient=gradient, mode=mode,
                   stats=lambda: {**asdict(last["stats"]), "successful": last["ok"]})


def run_torchdiffeq(case: Case, adjoint: bool) -> Measurement:
    """torchdiffeq ``dopri5``: ``odeint`` (backprop) or ``odeint_adjoint``."""
    from torchdiffeq import odeint, odeint_adjoint

    func = TimeFirstField(case.field)
    solver = odeint_adjoint if adjoint else odeint

    def forward() -> torch.Tensor:
        return solver(func, case.u0, case.ts, rtol=case.rtol, atol=case.atol, method="dopri5")

    name = "odeint_adjoint" if adjoint else "odeint"
    return measure(case, forward, label=f"torchdiffeq dopri5 {name}",
                   package="torchdiffeq", method="dopri5",
                   gradient="adjoint" if adjoint else "direct", mode="one state")


def run_torchode(case: Case, method: str) -> Measurement:
    """torchode ``Tsit5``/``Dopri5`` with ``AutoDiffAdjoint`` (backprop), per-member steps."""
    import torchode as to

    term = to.ODETerm(TimeFirstField(case.field))
    step_method = {"Tsit5": to.Tsit5, "Dopri5": to.Dopri5}[method](term=term)
    controller = to.IntegralController(atol=case.atol, rtol=case.rtol, term=term)
    solver = to.AutoDiffAdjoint(step_method, controller).to(case.device)
    t_eval = case.ts.expand(BATCH, -1)
    last: dict = {}

    def forward() -> torch.Tensor:
        sol = solver.solve(to.InitialValueProblem(y0=case.u0, t_eval=t_eval))
        last["sol"] = sol
        return sol.ys.transpose(0, 1)  # (BATCH, N_SAVE, dim) -> (N_SAVE, BATCH, dim)

    def stats() -> dict:
        sol = last["sol"]
        out = {k: int(v.max()) for k, v in sol.stats.items()
               if isinstance(v, torch.Tensor) and v.numel() >= 1}
        out["successful"] = bool((sol.status == 0).all())
        return out

    return measure(case, forward, label=f"torchode {method}", package="torchode",
                   method=method, gradient="direct", mode="per-member", stats=stats)


def run_case(case: Case, settings: Settings) -> list[Measurement]:
    """Every solver on one case: prepare each (counts and errors), then time all of them in
    interleaved rounds (:func:`common.time_interleaved`)."""
    runners: list[Callable[[], Measurement]] = [
        lambda: run_torchdiffeq(case, adjoint=False),
        lambda: run_torchdiffeq(case, adjoint=True),
        lambda: run_torchode(case, "Tsit5"),
        lambda: run_torchode(case, "Dopri5"),
    ]
    for gradient in PYSCIML_SENSEALGS:
        for alg in PYSCIML_ALGS:
            for mode in MODES:
                runners.append(lambda a=alg, g=gradient, m=mode: run_pysciml(case, a, g, m))
    results = [runner() for runner in runners]
    print(f"  {len(results)} solvers ready; timing {settings.warmup} warm-up + "
          f"{settings.repeats} rounds ...", flush=True)
    times = common.time_interleaved([m.train_step for m in results], settings.repeats,
                                    settings.warmup, case.device,
                                    max_seconds=settings.max_seconds, settle=settings.settle)
    if len(times[0]) < settings.repeats:
        print(f"  stopped after {len(times[0])} rounds (--max-seconds {settings.max_seconds:g})",
              flush=True)
    for m, ts in zip(results, times, strict=True):
        m.times_ms = ts
    return results


# --------------------------------------------------------------------------- reporting


TORCHODE_PEER = {"Tsit5": "torchode Tsit5", "DP5": "torchode Dopri5"}
NOISY_SPREAD = 1.3  # median / min of a typical solver above which a case is flagged noisy


def ratios(results: list[Measurement]) -> dict[str, dict[str, float]]:
    """For each pysciml row: time / torchdiffeq (same kind of gradient) and time / torchode
    (same tableau; torchode's gradient is always direct)."""
    by_label = {m.label: m for m in results}
    out = {}
    for m in results:
        if m.package != "pysciml":
            continue
        tdq = by_label["torchdiffeq dopri5 " +
                       ("odeint" if m.gradient == "direct" else "odeint_adjoint")]
        tode = by_label[TORCHODE_PEER[m.method]]
        out[m.label] = {"torchdiffeq": m.median_ms / tdq.median_ms,
                        "torchode": m.median_ms / tode.median_ms,
                        "torchdiffeq_min": min(m.times_ms) / min(tdq.times_ms),
                        "torchode_min": min(m.times_ms) / min(tode.times_ms)}
    return out


def like_for_like(m: Measurement, peer_package: str) -> bool:
    """Whether a pysciml row and a peer run the same computation: the same tableau and the
    same stepping model. torchdiffeq has ``dopri5`` only and steps the batch as one state;
    torchode is matched by tableau (its per-member steps do at least the work of one state)."""
    if peer_package == "torchdiffeq":
        return m.method == "DP5" and m.mode == "one state"
    return True


def goals(results: list[Measurement], r: dict[str, dict[str, float]]) -> list[dict]:
    """The issue's targets, one line per pysciml row and peer, each marked like-for-like (same
    tableau and stepping model, :func:`like_for_like`) or cross (another tableau or stepping
    model: Tsit5 against ``dopri5``, per-member steps against one state)."""
    lines = []
    for m in results:
        if m.package != "pysciml":
            continue
        rr = r[m.label]
        if m.gradient == "direct":
            checks = [("torchdiffeq odeint", "torchdiffeq", 1.0),
                      (TORCHODE_PEER[m.method], "torchode", 1.0)]
        else:
            checks = [("torchdiffeq odeint_adjoint", "torchdiffeq", 0.5)]
        for peer, key, target in checks:
            lines.append({"solver": m.label, "peer": peer, "ratio": rr[key],
                          "ratio_of_min": rr[f"{key}_min"], "target": target,
                          "met": rr[key] <= target, "like_for_like": like_for_like(m, key)})
    return lines


def report(case: Case, results: list[Measurement]) -> tuple[dict, dict, list[dict]]:
    r = ratios(results)
    g = goals(results, r)
    headers = ["solver", "ms (median)", "ms (min)", "×torchdiffeq", "×torchode", "nfe fwd",
               "nfe bwd", "max err u(T)", "grad rel err"]
    rows = []
    for m in results:
        rr = r.get(m.label, {})
        rows.append([m.label, common.fmt_ms(m.median_ms), common.fmt_ms(min(m.times_ms)),
                     common.fmt_ratio(rr.get("torchdiffeq")),
                     common.fmt_ratio(rr.get("torchode")), m.nfe_fwd, m.nfe_bwd,
                     common.fmt_sci(m.end_error), common.fmt_sci(m.grad_error)])
    title = (f"### dim {case.dim}, T = {case.T:g}, batch {BATCH}, {N_SAVE} save points, "
             f"rtol {case.rtol:g}, atol {case.atol:g}, float32, {case.device}, pysciml "
             f"controller {case.controller}")
    text = common.print_table(headers, rows, title=title)
    spread = common.spread([m.times_ms for m in results])
    noisy = spread > NOISY_SPREAD
    goal_lines = ["", "Goals (pysciml / peer ≤ target; by medians, ratio of the minima in "
                  "brackets):"]
    for line in g:
        kind = "like-for-like" if line["like_for_like"] else "cross"
        goal_lines.append(f"  {'met ' if line['met'] else 'MISS'}  {line['solver']:<50} vs "
                          f"{line['peer']:<27} {line['ratio']:5.2f}× "
                          f"(min {line['ratio_of_min']:4.2f}×; target ≤ {line['target']:.1f}×; "
                          f"{kind})")
    same = [line for line in g if line["like_for_like"]]
    goal_lines.append(f"  like-for-like: {sum(line['met'] for line in same)} of {len(same)} met; "
                      f"cross: {sum(line['met'] for line in g if not line['like_for_like'])} of "
                      f"{len(g) - len(same)} met")
    if noisy:
        goal_lines.append(f"NOISY: the median time is {spread:.2f}× the fastest for a typical "
                          "solver here: other processes were competing for the cores; the "
                          "medians and their ratios are unreliable, the ratios of the minima "
                          "less so. Rerun on a quiet machine.")
    print("\n".join(goal_lines) + "\n", flush=True)
    record = {"dim": case.dim, "T": case.T, "rtol": case.rtol, "atol": case.atol,
              "pysciml_controller": case.controller, "spread": spread, "noisy": noisy,
              "results": [m.record() for m in results], "ratios": r, "goals": g,
              "table": text}
    return record, r, g


def plot(path: Path, records: list[dict], title: str) -> None:
    groups = [f"dim {rec['dim']}, T={rec['T']:g}" for rec in records]
    labels = [m["label"] for m in records[0]["results"]]
    series = {lab: [next((m["median_ms"] for m in rec["results"] if m["label"] == lab), None)
                    for rec in records] for lab in labels}
    palette = {"torchdiffeq": "#7f7f7f", "torchode": "#bcbd22"}
    colors = {}
    py_colors = iter(["#1f77b4", "#aec7e8", "#2ca02c", "#98df8a",
                      "#d62728", "#ff9896", "#9467bd", "#c5b0d5"])
    for lab in labels:
        pkg = lab.split()[0]
        colors[lab] = palette.get(pkg) if pkg != "pysciml" else next(py_colors)
    # Peers: distinct shades of their package colour.
    for lab, shade in (("torchdiffeq dopri5 odeint_adjoint", "#c7c7c7"),
                       ("torchode Dopri5", "#dbdb8d")):
        if lab in colors:
            colors[lab] = shade
    common.bar_plot(path, groups, series, title=title, colors=colors)


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 64],
                    help="state dimensions (default: 2 64)")
    ap.add_argument("--T", type=float, nargs="+", default=[1.0],
                    help="end time(s) of the span [0, T] (default: 1)")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=None, help="default: rtol")
    ap.add_argument("--controller", choices=sorted(CONTROLLERS), default="PI",
                    help="pysciml's step-size controller: PI (its default), DOPRI5 "
                         "(PI with Hairer's DOPRI5 gains) or I (as "
                         "torchdiffeq and torchode use)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (skipped if unavailable)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, for smoke testing; writes neural_ode_quick.*")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 15; "
                    "quick: 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls (default 2; "
                    "quick: 1)")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="time budget of each case's timed rounds; on a loaded machine it "
                         "stops early, after at least 3 rounds (default 60; 0: no limit)")
    ap.add_argument("--settle", type=int, default=1,
                    help="untimed calls of the same solver before each timed call, so each is "
                         "timed in its own steady state, as in a training loop (default 1)")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR,
                    help="results directory (default: benchmarks/results)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.resolve_device(args.device)
    if device is None:
        print(f"neural_ode: device {args.device!r} is not available here; skipping.")
        return 0
    atol = args.rtol if args.atol is None else args.atol
    settings = Settings(
        repeats=args.repeats or (2 if args.quick else 15),
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        max_seconds=args.max_seconds or None,
        settle=args.settle,
    )
    print(f"neural_ode: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device}, repeats {settings.repeats}, warm-up {settings.warmup}", flush=True)
    warning = common.busy_warning()
    if warning:
        print(warning, flush=True)
    t_start = time.perf_counter()
    records = []
    for T in args.T:
        for dim in args.dims:
            print(f"\n== dim {dim}, T {T:g}: reference solves ...", flush=True)
            case = make_case(dim, T, args.rtol, atol, device, args.controller)
            results = run_case(case, settings)
            print()
            record, _, _ = report(case, results)
            records.append(record)
    elapsed = time.perf_counter() - t_start

    stem = "neural_ode_quick" if args.quick else "neural_ode"
    if args.controller != "PI":
        stem += f"_{args.controller}"
    record = {
        "benchmark": "neural_ode",
        "quick": args.quick,
        "workload": {"mlp": f"{HIDDEN}x{HIDDEN} tanh, 2 hidden layers", "batch": BATCH,
                     "n_save": N_SAVE, "dtype": "float32",
                     "loss": "mean(u_saved**2), one backward",
                     "reference": f"SciPy DOP853 rtol=atol={REF_TOL:g} (u(T)); torchdiffeq "
                                  f"dopri5 backprop float64 {REF_TOL:g} (gradient)",
                     "seeds": {"weights": SEED_WEIGHTS, "state": SEED_STATE},
                     "torchode": "eager, IntegralController, AutoDiffAdjoint",
                     "pysciml_controller": args.controller},
        "settings": asdict(settings),
        "elapsed_s": elapsed,
        "environment": common.environment(device, ("torchdiffeq", "torchode", "scipy")),
        "cases": records,
    }
    json_path = common.write_json_atomic(args.out / f"{stem}.json", record)
    png_path = args.out / f"{stem}.png"
    plot(png_path, records, f"Neural-ODE training step (fwd+bwd), batch {BATCH}, "
                            f"rtol {args.rtol:g}, float32, {device}")
    print(f"wrote {json_path} and {png_path} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
