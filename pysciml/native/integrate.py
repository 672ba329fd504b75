"""The one time loop of the native runtime: steps, accept/reject, saves, stops, return codes.

Every solver family plugs in through :class:`~pysciml.native.stepper.AbstractStepper`; the loop
knows nothing of adjoints, runtimes or problem types. It advances a batch of ``B`` members with
flattened states ``(B, N)``, each with its own time and step size (or one shared step), and
synchronises with the host once per iteration (to decide whether to go on and how many save
points to interpolate).

One iteration is :func:`trial` (a trial step of every running member, its acceptance, the new
step size and return codes) followed by :func:`commit` (the accepted members move). Both are
pure tensor code without host synchronisation, so :mod:`pysciml.native.device_loop` can run
the same iteration as one unit: replayed from a CUDA graph or compiled (``integrate(..., loop=)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..solution import ReturnCode, Stats
from .controller import AbstractController, PIController, error_norm, initial_step
from .interpolation import DenseHistory
from .stepper import RHS, AbstractStepper, CountedRHS, StepResult

__all__ = ["integrate", "IntegrationResult", "JumpFn", "LoopState", "Trial", "trial", "commit",
           "crossed_saves"]

JumpFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``on_tstop(stop_index (B,), hit (B,), t (B,), u (B, N)) -> u``: a jump of the state at a stop."""


@dataclass
class IntegrationResult:
    """What the loop returns; ``us`` holds NaN where a member failed before a save time."""

    us: torch.Tensor  # (S, B, N)
    t: torch.Tensor  # (B,) where each member ended
    u: torch.Tensor  # (B, N) the state there
    status: torch.Tensor  # (B,) ReturnCode values
    h: torch.Tensor  # (B,) the last proposed step (to warm-start a continuation)
    stats: Stats
    dense: DenseHistory | None


@dataclass
class LoopContext:
    """What stays fixed during one integration (settings, targets, save times, constants)."""

    stepper: AbstractStepper
    fc: CountedRHS
    controller: AbstractController
    rtol: Any
    atol: Any
    direction: float
    shared_step: bool
    error_components: int | None
    error_order: int
    max_steps: int
    dtmin: torch.Tensor
    dtmax: float | None
    eps: float
    target_end: torch.Tensor  # (B,)
    tstops: torch.Tensor | None
    ts: torch.Tensor  # (S,)
    ts_dir: torch.Tensor  # (S,) directed
    zero: torch.Tensor  # (B,) of the state's dtype
    zero_i: torch.Tensor  # (B,) int64
    reach: float = 1 + 1e-6  # a step within this factor of the target ends exactly on it

    @property
    def n_stops(self) -> int:
        return 0 if self.tstops is None else self.tstops.shape[0]

    @property
    def S(self) -> int:
        return self.ts.shape[0]


class LoopState(NamedTuple):
    """The state of the loop between iterations; every field is a tensor of leading size ``B``
    (``cache``: whatever the stepper carries)."""

    t: torch.Tensor
    u: torch.Tensor
    h: torch.Tensor  # the next step to try (signed)
    ctrl: torch.Tensor  # the controller's state
    status: torch.Tensor  # 0 while running, else a ReturnCode value
    save_ptr: torch.Tensor  # save times at or before t
    stop_ptr: torch.Tensor  # tstops reached
    n_steps: torch.Tensor
    n_accept: torch.Tensor
    n_reject: torch.Tensor
    cache: Any


class Trial(NamedTuple):
    """One trial step of every member from a :class:`LoopState`, judged but not yet taken."""

    result: StepResult
    h_step: torch.Tensor  # (B,) the step tried (0 for members not running)
    t_new: torch.Tensor
    h_next: torch.Tensor
    ctrl: torch.Tensor
    accept: torch.Tensor
    status: torch.Tensor
    n_steps: torch.Tensor
    n_accept: torch.Tensor
    n_reject: torch.Tensor
    n_cross: torch.Tensor  # (B,) save times crossed by the accepted step
    at_stop: torch.Tensor | None  # (B,) members that reached their next tstop


def _save_rows(ts_dir: torch.Tensor, t_dir: torch.Tensor) -> torch.Tensor:
    """How many save times lie at or before each member's (directed) time."""
    return torch.searchsorted(ts_dir, t_dir.contiguous(), right=True)


def trial(ctx: LoopContext, st: LoopState) -> Trial:
    """Try one step for every running member: accept or reject it by its error norm, choose the
    next step size, and set the return codes of members that finish or fail. No host
    synchronisation."""
    stepper, fc, direction = ctx.stepper, ctx.fc, ctx.direction
    t, u, h, zero = st.t, st.u, st.h, ctx.zero
    running = st.status == 0
    n_stops = ctx.n_stops
    if n_stops:
        target = torch.where(st.stop_ptr < n_stops,
                             ctx.tstops[st.stop_ptr.clamp_max(n_stops - 1)], ctx.target_end)
    else:
        target = ctx.target_end
    if ctx.dtmax is not None:
        h = h.clamp(-ctx.dtmax, ctx.dtmax)
    remaining = target - t
    last = direction * remaining.detach() <= h.abs() * ctx.reach
    h_step = torch.where(running, torch.where(last, remaining, h), zero)

    result = stepper.step(fc, t, u, h_step, st.cache)
    u_new = result.u_new
    t_new = torch.where(last, target, t + h_step)
    # NaN/inf anywhere in u_new makes this sum non-finite (0 * inf = NaN)
    poison = u_new.detach().sum(-1) * 0
    ctrl_state = st.ctrl

    if stepper.adaptive:
        errn = error_norm(fc.controlled(result.err.detach()), fc.controlled(u.detach()),
                          fc.controlled(u_new.detach()), ctx.rtol, ctx.atol)
        errn = errn + poison
        if result.failed is not None:
            errn = torch.where(result.failed, float("inf"), errn)
        if ctx.shared_step:
            errn = torch.where(running, errn, zero).max().expand_as(errn)
        accept = running & (errn <= 1)  # False for NaN
        h_next, new_ctrl = ctx.controller.adapt(h_step.detach(), errn, ctrl_state, accept,
                                                ctx.error_order)
        if result.h_next is not None:
            h_next = result.h_next.detach()
            if ctx.shared_step:  # the stepper chose per member; the batch takes the smallest
                h_next = direction * torch.where(running, h_next.abs(),
                                                 float("inf")).amin().expand_as(h_next)
        h_next = torch.where(running, h_next, h)
        ctrl_state = torch.where(running, new_ctrl, ctrl_state)
        floor = torch.maximum(ctx.dtmin, 8 * ctx.eps * t.detach().abs())
        # the proposed step cannot resolve t any more (or is below dtmin), accepted or not
        stuck = running & ~(accept & last) & (h_next.abs() <= floor)
        # DtLessThanMin (3); Unstable (4) when the last trial was not finite;
        # ConvergenceFailure (5) when the nonlinear solver failed on it
        code = stuck * (3 + torch.isnan(errn))
        if result.failed is not None:
            code = torch.where(stuck & result.failed, ReturnCode.ConvergenceFailure.value, code)
    else:
        accept = running & (poison == 0)
        h_next = h
        code = (running & ~accept) * ReturnCode.Unstable.value

    n_steps = st.n_steps + running
    n_accept = st.n_accept + accept
    n_reject = st.n_reject + (running & ~accept)
    at_stop = None
    if n_stops:
        at_stop = accept & last & (st.stop_ptr < n_stops)
        finished = accept & last & (st.stop_ptr >= n_stops)
    else:
        finished = accept & last
    code = code + finished  # Success (1); disjoint from stuck, which needs ~accept
    code = code + (running & (code == 0) & (n_steps >= ctx.max_steps)) * 2  # MaxIters
    status = st.status + code

    hi = _save_rows(ctx.ts_dir, direction * t_new.detach())
    n_cross = torch.where(accept, hi - st.save_ptr, ctx.zero_i)
    return Trial(result, h_step, t_new, h_next, ctrl_state, accept, status, n_steps, n_accept,
                 n_reject, n_cross, at_stop)


def commit(ctx: LoopContext, st: LoopState, tr: Trial) -> LoopState:
    """The state after a trial: accepted members move to ``t_new``; every member takes its next
    step size, controller state, return code and counters."""
    accept = tr.accept
    u = torch.where(accept[:, None], tr.result.u_new, st.u)
    t = torch.where(accept, tr.t_new, st.t)
    cache = ctx.stepper.merge(st.cache, tr.result.cache, accept)
    return LoopState(t, u, tr.h_next.detach(), tr.ctrl, tr.status, st.save_ptr + tr.n_cross,
                     st.stop_ptr, tr.n_steps, tr.n_accept, tr.n_reject, cache)


def crossed_saves(ctx: LoopContext, st: LoopState, tr: Trial, stages: torch.Tensor,
                  M: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense output at the first ``M`` save times past each member's ``save_ptr``, all in
    one call of the interpolant: rows ``(M, B)`` (``S``, a discarded row, where the accepted step
    crossed fewer than ``M`` save times) and values ``(M, B, N)``."""
    h_step, S = tr.h_step, ctx.S
    h_safe = torch.where(h_step != 0, h_step, torch.ones_like(h_step))
    j = torch.arange(M, device=h_step.device)[:, None]
    row = (st.save_ptr + j).clamp_max(S - 1)
    value = ctx.stepper.interpolate(st.u, h_step, stages, (ctx.ts[row] - st.t) / h_safe)
    return torch.where(j < tr.n_cross, row, S), value


def integrate(
    stepper: AbstractStepper,
    f: RHS,
    t0: torch.Tensor,
    t1: torch.Tensor,
    u0: torch.Tensor,
    *,
    ts: torch.Tensor,
    rtol: torch.Tensor | float = 1e-6,
    atol: torch.Tensor | float = 1e-8,
    dt: torch.Tensor | float | None = None,
    controller: AbstractController | None = None,
    max_steps: int = 100_000,
    shared_step: bool = False,
    dense: bool = False,
    tstops: torch.Tensor | None = None,
    on_tstop: JumpFn | None = None,
    dtmin: float = 0.0,
    dtmax: float | None = None,
    jac: Callable | None = None,
    parts: tuple[RHS, RHS] | None = None,
    precond: Callable | None = None,
    error_components: int | None = None,
    f0: torch.Tensor | None = None,
    loop: str = "eager",
) -> IntegrationResult:
    """Integrate ``u' = f(t, u)`` from ``t0`` to ``t1`` for a batch of members.

    Args:
        stepper: the solver family's step.
        f: the flattened right-hand side ``f(t (B,), u (B, N)) -> (B, N)``.
        t0, t1: 0-d tensors (may carry autograd history: the last step ends exactly at ``t1``).
        u0: ``(B, N)``.
        ts: save times, sorted in the direction of integration, within ``[t0, t1]``.
        rtol, atol: tolerances (numbers or tensors broadcastable to ``(B, N)``).
        dt: the fixed step of a non-adaptive method, or the first step of an adaptive one
            (a number or a tensor of shape ``(B,)``; ``None`` chooses it automatically).
        controller: the step-size controller (adaptive methods); PI control by default.
        max_steps: the step budget of each member (accepted and rejected steps).
        shared_step: one step size for the whole batch (the error norm is the worst member's).
        dense: keep every step for dense output.
        tstops: times the integration must step to exactly (sorted, strictly inside the span);
            ``on_tstop`` may then change the state (a jump), after which the step restarts.
        dtmin, dtmax: bounds of the step size's magnitude.
        jac: the user's Jacobian ``jac(t (B,), u (B, N)) -> (B, N, N)`` for implicit methods.
        parts: ``(f_stiff, f_nonstiff)`` of a split problem (``f`` is their sum), for IMEX.
        precond: a flattened preconditioner for Newton–Krylov (see ``CountedRHS``).
        error_components: control the error of the first ``k`` components only (a seminorm:
            the rest are quadratures that do not feed back into the dynamics).
        f0: ``f(t0, u0)`` ``(B, N)`` if the caller has evaluated it already (counted as one
            call of ``f``).
        loop: ``"eager"``; ``"cuda_graph"`` (on a CUDA device: one iteration captured in a
            CUDA graph and replayed; ignored on the CPU) or ``"compile"`` (the iteration
            compiled by ``torch.compile``), when the integration allows it
            (:mod:`pysciml.native.device_loop`).
    """
    controller = controller or PIController()
    fc = CountedRHS(f, jac, rtol, atol, parts, precond, error_components)
    B, N = u0.shape
    dtype, device = u0.dtype, u0.device
    direction = 1.0 if float(t1) >= float(t0) else -1.0
    span = (t1 - t0).abs().detach().expand(B)
    adaptive = stepper.adaptive

    t = t0.expand(B).clone()  # its own memory per member (functorch transforms need it)
    u = u0
    if f0 is None:
        f0 = fc(t, u)
    else:
        fc.calls += 1
    cache = stepper.init(fc, t, u, f0)
    status = torch.zeros(B, dtype=torch.int64, device=device)
    initially_bad = ~(torch.isfinite(u0).all(-1) & torch.isfinite(f0).all(-1))
    status = torch.where(initially_bad, ReturnCode.InitialFailure, status)

    if dt is not None:
        h = direction * torch.as_tensor(dt, dtype=dtype, device=device).abs().expand(B).clone()
    elif adaptive:
        order = min(stepper.order, stepper.error_order or stepper.order)
        h = initial_step(fc, t.detach(), u.detach(), f0.detach(), direction, order,
                         rtol, atol, span)
    else:
        raise ValueError("dt: a fixed-step method needs a step size dt")
    if shared_step:
        h = direction * h.abs().min().expand(B)
    h = h.detach()

    ctx = LoopContext(
        stepper=stepper, fc=fc, controller=controller, rtol=rtol, atol=atol,
        direction=direction, shared_step=shared_step, error_components=error_components,
        error_order=stepper.error_order or stepper.order, max_steps=max_steps,
        dtmin=torch.as_tensor(dtmin, dtype=dtype, device=device), dtmax=dtmax,
        eps=torch.finfo(dtype).eps, target_end=t1.expand(B), tstops=tstops, ts=ts,
        ts_dir=(direction * ts).contiguous(),
        zero=torch.zeros(B, dtype=dtype, device=device),
        zero_i=torch.zeros(B, dtype=torch.int64, device=device))
    S = ctx.S
    zero_i = ctx.zero_i
    save_ptr = _save_rows(ctx.ts_dir, direction * t.detach())
    st = LoopState(t, u, h, controller.init_state(h), status, save_ptr, zero_i, zero_i, zero_i,
                   zero_i, cache)

    rows: list[torch.Tensor] = []  # blocks (M, B) of save rows and (M, B, N) of values
    values: list[torch.Tensor] = []
    n_initial = int(save_ptr[0])
    if n_initial:
        rows.append(torch.arange(n_initial, device=device)[:, None].expand(n_initial, B))
        values.append(u0.expand(n_initial, B, N))

    history = DenseHistory(stepper, direction) if dense else None
    running_any = bool((status == 0).any())
    us = None  # the save buffer of a captured loop
    if loop != "eager" and running_any:
        from . import device_loop

        reason = device_loop.unsupported_reason(ctx, u0, f0, t0, t1, dense, on_tstop)
        if not device_loop.available(loop, device):
            pass  # a CUDA graph on the CPU: nothing to capture
        elif reason is None:
            us = torch.full((S + 1, B, N), float("nan"), dtype=dtype, device=device)
            run = device_loop.run_compiled if loop == "compile" else device_loop.run_captured
            st = run(ctx, st, us)
            running_any = bool((st.status == 0).any())
        else:
            import warnings

            warnings.warn(f"loop={loop!r}: not used, {reason}; the loop runs eagerly",
                          RuntimeWarning, stacklevel=2)

    while running_any:
        tr = trial(ctx, st)
        checks = [tr.n_cross.max(), (tr.status == 0).any()]
        if tr.at_stop is not None:
            checks.append(tr.at_stop.any())
        synced = torch.stack([c.to(torch.int64) for c in checks]).tolist()
        max_cross, running_any = synced[0], bool(synced[1])
        any_stop = bool(synced[2]) if tr.at_stop is not None else False

        if max_cross > 0 or history is not None:
            stages = stepper.dense_stages(fc, st.t, st.u, tr.h_step, tr.result)
            if history is not None:
                history.append(st.t, torch.where(tr.accept, tr.h_step, ctx.zero), st.u, stages)
            if max_cross > 0:  # every save time crossed by this step at once
                row, value = crossed_saves(ctx, st, tr, stages, max_cross)
                rows.append(row)
                values.append(value)

        st = commit(ctx, st, tr)
        if any_stop:
            stop_ptr = st.stop_ptr + tr.at_stop
            u, cache = st.u, st.cache
            if on_tstop is not None:
                u = on_tstop(stop_ptr - 1, tr.at_stop, st.t, u)
                cache = stepper.merge(cache, stepper.init(fc, st.t, u, fc(st.t, u)), tr.at_stop)
            st = st._replace(stop_ptr=stop_ptr, u=u, cache=cache)

    if us is None:
        us = torch.full((S + 1, B, N), float("nan"), dtype=dtype, device=device)
    if rows:
        # each member's saved rows are distinct, except row S, which collects the discarded
        # ones and is dropped below
        row_index = torch.cat(rows)
        us = us.scatter(0, row_index[..., None].expand(-1, -1, N), torch.cat(values))
    if history is not None:
        history.finish(t0.detach(), st.t.detach())
    naccept, nreject, nsteps = torch.stack(
        [st.n_accept.sum(), st.n_reject.sum(), st.n_steps.max()]).tolist()
    stats = Stats(nf=int(fc.calls), naccept=naccept, nreject=nreject, nsteps=nsteps,
                  njac=fc.njac, nfactor=fc.nfactor, nlinsolve=fc.nlinsolve,
                  nnonlinfail=fc.nnonlinfail)
    return IntegrationResult(us=us[:S], t=st.t, u=st.u, status=st.status, h=st.h, stats=stats,
                             dense=history)
