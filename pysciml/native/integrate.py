"""The one time loop of the native runtime: steps, accept/reject, saves, stops, return codes.

Every solver family plugs in through :class:`~pysciml.native.stepper.AbstractStepper`; the loop
knows nothing of adjoints, runtimes or problem types. It advances a batch of ``B`` members with
flattened states ``(B, N)``, each with its own time and step size (or one shared step), and
synchronises with the host once per iteration (to decide whether to go on and how many save
points to interpolate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..solution import ReturnCode, Stats
from .controller import AbstractController, PIController, error_norm, initial_step
from .interpolation import DenseHistory
from .stepper import RHS, AbstractStepper, CountedRHS

__all__ = ["integrate", "IntegrationResult", "JumpFn"]

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


def _save_rows(ts_dir: torch.Tensor, t_dir: torch.Tensor) -> torch.Tensor:
    """How many save times lie at or before each member's (directed) time."""
    return torch.searchsorted(ts_dir, t_dir.contiguous(), right=True)


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
    """
    controller = controller or PIController()
    fc = CountedRHS(f, jac, rtol, atol, parts, precond, error_components)
    B, _ = u0.shape
    dtype, device = u0.dtype, u0.device
    direction = 1.0 if float(t1) >= float(t0) else -1.0
    span = (t1 - t0).abs().detach().expand(B)
    eps = torch.finfo(dtype).eps
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
    ctrl_state = controller.init_state(h)

    ts_dir = (direction * ts).contiguous()
    S = ts.shape[0]
    n_stops = 0 if tstops is None else tstops.shape[0]
    stop_ptr = torch.zeros(B, dtype=torch.int64, device=device)
    target_end = t1.expand(B)

    rows: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    batch_index = torch.arange(B, device=device)
    save_ptr = _save_rows(ts_dir, direction * t.detach())
    n_initial = int(save_ptr[0])
    for j in range(n_initial):
        rows.append(torch.full((B,), j, dtype=torch.int64, device=device))
        values.append(u0)

    history = DenseHistory(stepper, direction) if dense else None
    n_steps = torch.zeros(B, dtype=torch.int64, device=device)
    n_accept = torch.zeros(B, dtype=torch.int64, device=device)
    n_reject = torch.zeros(B, dtype=torch.int64, device=device)
    dtmin_t = torch.as_tensor(dtmin, dtype=dtype, device=device)
    iterations = 0
    running_any = bool((status == 0).any())

    zero = torch.zeros(B, dtype=dtype, device=device)
    zero_i = torch.zeros(B, dtype=torch.int64, device=device)
    reach = 1 + 1e-6  # a step within this factor of the target ends exactly on it
    error_order = stepper.error_order or stepper.order
    while running_any:
        iterations += 1
        running = status == 0
        if n_stops:
            target = torch.where(stop_ptr < n_stops, tstops[stop_ptr.clamp_max(n_stops - 1)],
                                 target_end)
        else:
            target = target_end
        if dtmax is not None:
            h = h.clamp(-dtmax, dtmax)
        remaining = target - t
        last = direction * remaining.detach() <= h.abs() * reach
        h_step = torch.where(running, torch.where(last, remaining, h), zero)

        result = stepper.step(fc, t, u, h_step, cache)
        u_new = result.u_new
        t_new = torch.where(last, target, t + h_step)
        # NaN/inf anywhere in u_new makes this sum non-finite (0 * inf = NaN)
        poison = u_new.detach().sum(-1) * 0

        if adaptive:
            if error_components is None:
                errn = error_norm(result.err.detach(), u.detach(), u_new.detach(), rtol, atol)
            else:
                k = error_components
                errn = error_norm(result.err.detach()[:, :k], u.detach()[:, :k],
                                  u_new.detach()[:, :k], rtol, atol)
            errn = errn + poison
            if result.failed is not None:
                errn = torch.where(result.failed, float("inf"), errn)
            if shared_step:
                errn = torch.where(running, errn, zero).max().expand(B)
            accept = running & (errn <= 1)  # False for NaN
            h_next, new_ctrl = controller.adapt(h_step.detach(), errn, ctrl_state, accept,
                                                error_order)
            if result.h_next is not None:
                h_next = result.h_next.detach()
                if shared_step:  # the stepper chose per member; the batch takes the smallest
                    h_next = direction * torch.where(running, h_next.abs(),
                                                     float("inf")).amin().expand(B)
            h_next = torch.where(running, h_next, h)
            ctrl_state = torch.where(running, new_ctrl, ctrl_state)
            floor = torch.maximum(dtmin_t, 8 * eps * t.detach().abs())
            # the proposed step cannot resolve t any more (or is below dtmin), accepted or not
            stuck = running & ~(accept & last) & (h_next.abs() <= floor)
            # DtLessThanMin (3); Unstable (4) when the last trial was not finite;
            # ConvergenceFailure (5) when the nonlinear solver failed on it
            code = stuck * (3 + torch.isnan(errn))
            if result.failed is not None:
                code = torch.where(stuck & result.failed, ReturnCode.ConvergenceFailure.value,
                                   code)
        else:
            accept = running & (poison == 0)
            h_next = h
            code = (running & ~accept) * ReturnCode.Unstable.value

        n_steps = n_steps + running
        n_accept = n_accept + accept
        n_reject = n_reject + (running & ~accept)
        if n_stops:
            at_stop = accept & last & (stop_ptr < n_stops)
            finished = accept & last & (stop_ptr >= n_stops)
        else:
            finished = accept & last
        code = code + finished  # Success (1); disjoint from stuck, which needs ~accept
        code = code + (running & (code == 0) & (n_steps >= max_steps)) * 2  # MaxIters
        status = status + code

        hi = _save_rows(ts_dir, direction * t_new.detach())
        n_cross = torch.where(accept, hi - save_ptr, zero_i)
        checks = [n_cross.max(), (status == 0).any()]
        if n_stops:
            checks.append(at_stop.any())
        synced = torch.stack([c.to(torch.int64) for c in checks]).tolist()
        max_cross, running_any = synced[0], bool(synced[1])
        any_stop = bool(synced[2]) if n_stops else False

        if max_cross > 0 or history is not None:
            stages = stepper.dense_stages(fc, t, u, h_step, result)
            if history is not None:
                history.append(t, torch.where(accept, h_step, zero), u, stages)
            if max_cross > 0:
                # every save time crossed by this step at once: rows (M, B), values (M, B, N)
                h_safe = torch.where(h_step != 0, h_step, torch.ones_like(h_step))
                j = torch.arange(max_cross, device=device)[:, None]
                row = (save_ptr + j).clamp_max(S - 1)
                value = stepper.interpolate(u, h_step, stages, (ts[row] - t) / h_safe)
                rows.append(torch.where(j < n_cross, row, S).reshape(-1))
                values.append(value.reshape(-1, value.shape[-1]))
            save_ptr = save_ptr + n_cross

        u = torch.where(accept[:, None], u_new, u)
        t = torch.where(accept, t_new, t)
        cache = stepper.merge(cache, result.cache, accept)
        h = h_next.detach()

        if any_stop:
            stop_ptr = stop_ptr + at_stop
            if on_tstop is not None:
                u = on_tstop(stop_ptr - 1, at_stop, t, u)
                cache = stepper.merge(cache, stepper.init(fc, t, u, fc(t, u)), at_stop)

    us = torch.full((S + 1, B, u0.shape[1]), float("nan"), dtype=dtype, device=device)
    if rows:
        row_index = torch.cat(rows)
        # every block of rows is (rows, B), member-minor
        col_index = batch_index.repeat(row_index.shape[0] // B)
        us = us.index_put((row_index, col_index), torch.cat(values))
    if history is not None:
        history.finish(t0.detach(), t.detach())
    stats = Stats(nf=int(fc.calls), naccept=int(n_accept.sum()), nreject=int(n_reject.sum()),
                  nsteps=iterations, njac=fc.njac, nfactor=fc.nfactor, nlinsolve=fc.nlinsolve,
                  nnonlinfail=fc.nnonlinfail)
    return IntegrationResult(us=us[:S], t=t, u=u, status=status, h=h, stats=stats,
                             dense=history)
