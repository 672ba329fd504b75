r"""The backward pass of the continuous adjoints: the adjoint ODE integrated from the last save
time back to :math:`t_0` by the same time loop, over one or more *segments*
:math:`(b_j, b_{j+1}]` (one, or one per checkpoint interval), with the jumps
:math:`\lambda \mathrel{+}= \partial L/\partial u(s_k)` at the save times (``tstops`` of the
loop). Then

.. math::
    \frac{dL}{du_0} = \lambda(t_0),\quad \frac{dL}{dp} = \mu(t_0),\quad
    \frac{dL}{dt_0} = -\lambda(t_0)^\top f(t_0, u_0),\quad
    \frac{dL}{ds_k} = \frac{\partial L}{\partial u(s_k)}^{\!\top} f(s_k, u(s_k)).

Two layouts of the backward state:

* *packed* (``BacksolveAdjoint``, ``InterpolatingAdjoint``): ``[u,] λ, μ`` of the whole batch
  as one member ``(1, M)``; an implicit backward method differentiates this packed system
  (a dense ``M x M`` Jacobian, ``M = BN + P`` or ``2BN + P``).
* *per member* (``QuadratureAdjoint``, ``GaussAdjoint``): :math:`\lambda` alone, ``(B, N)``,
  one shared step, Jacobian :math:`-J_b^\top` per member from the forward Jacobian; :math:`\mu`
  is a Gauss–Legendre quadrature, after the solve or during it. With a Rosenbrock method the
  step uses the linearity of :math:`\dot\lambda = -J(t, u(t))^\top\lambda`: the forward
  Jacobians at all the step's times from one stacked call of ``f``
  (:mod:`.linear_rosenbrock`), instead of one vector–Jacobian product per stage and a second
  derivative for the step's Jacobian.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from ...sensealg import BacksolveAdjoint, GaussAdjoint, QuadratureAdjoint
from ...solution import ReturnCode
from ..integrate import integrate
from ..rosenbrock import Rosenbrock
from .equations import AdjointEquations, AdjointStateRHS
from .linear_rosenbrock import LinearAdjointRosenbrock
from .quadrature import GaussIntegratingStepper, gauss_legendre_integral

__all__ = ["adjoint_backward", "checkpointed"]


def checkpointed(sensealg: Any) -> bool:
    """Whether ``sensealg`` re-solves the forward problem between checkpoints."""
    return bool(getattr(sensealg, "checkpointing", False))


class MaskedHistory:
    """A forward dense output as the backward solve reads it: failed members read as their
    (finite) initial state, and no query is masked with NaN (the backward solve stays inside
    the forward span; where it rounds past an end, the last piece's polynomial answers)."""

    def __init__(self, history, ok: torch.Tensor, u0: torch.Tensor, all_ok: bool):
        self.history, self.ok, self.u0, self.all_ok = history, ok, u0, all_ok

    def evaluate(self, tq: torch.Tensor) -> torch.Tensor:
        # a member that failed reads as u0 whatever its interpolant says beyond its end
        values = self.history.evaluate(tq, outside="extrapolate")
        if self.all_ok:
            return values
        return torch.where(self.ok[None, :, None], values, self.u0[None])


def _segments(setup, t0: torch.Tensor, ts: torch.Tensor):
    """``(t_hi, t_lo, interior save rows, start-of-segment save row or None, u(t_lo) or None)``
    from the last save time back to ``t0``."""
    d = setup.saved["direction"]
    ts_d = (d * ts).tolist()
    t0_d = d * float(t0)
    rows_after = [k for k, s in enumerate(ts_d) if s > t0_d]
    if not rows_after:
        return []
    if not checkpointed(setup.sensealg):
        if not isinstance(setup.sensealg, (QuadratureAdjoint, GaussAdjoint)):
            last = rows_after[-1]
            return [(ts[last], t0, rows_after[:-1], last, None)]
        # per-member adjoints restart their solve at every save time: the jump of lambda
        # there starts a fast transient, which a fresh initial step meets better than the
        # large step carried over from before the jump (fewer rejected steps)
        times = sorted({ts_d[k] for k in rows_after})
        segments = []
        for j in range(len(times) - 1, -1, -1):
            rows = [k for k in rows_after if ts_d[k] == times[j]]
            t_lo = t0 if j == 0 else ts[[k for k in rows_after if ts_d[k] == times[j - 1]][0]]
            segments.append((ts[rows[0]], t_lo, [], rows, None))
        return segments
    ts_all, us_all = setup.saved["ts_all"], setup.saved["us_all"]
    bounds = [(t0, None)] + [(ts_all[i], us_all[i]) for i, s in
                             enumerate((d * ts_all).tolist()) if s > t0_d]
    save_row_of = {s: k for k, s in enumerate(ts_d)}
    segments = []
    for j in range(len(bounds) - 1, 0, -1):
        t_hi, _ = bounds[j]
        t_lo, u_lo = bounds[j - 1]
        segments.append((t_hi, t_lo, [], save_row_of.get(d * float(t_hi)), u_lo))
    return segments


def _segment_kwargs(loop_kwargs: dict, t_lo: torch.Tensor, t_hi: torch.Tensor) -> dict:
    """The forward solve's options for a re-solve over ``(t_lo, t_hi)``: its stops inside."""
    kwargs = dict(loop_kwargs)
    stops = kwargs.get("tstops")
    if stops is not None:
        lo, hi = sorted((float(t_lo), float(t_hi)))
        inside = stops[(stops > lo) & (stops < hi)]
        kwargs["tstops"] = inside if inside.numel() else None
    return kwargs


def _backward_options(setup) -> tuple[Any, dict]:
    """The backward solve's stepper and loop options: the sensealg's tolerances and ``alg`` (or
    the forward ones), one shared step, no forward Jacobian, preconditioner or split."""
    sensealg = setup.sensealg
    kwargs = dict(setup.loop_kwargs)
    for key in ("dt", "tstops", "jac", "precond", "parts"):
        kwargs.pop(key, None)
    kwargs["shared_step"] = True
    if sensealg.rtol is not None:
        kwargs["rtol"] = sensealg.rtol
    if sensealg.atol is not None:
        kwargs["atol"] = sensealg.atol
    if isinstance(kwargs.get("rtol"), torch.Tensor) or isinstance(kwargs.get("atol"),
                                                                   torch.Tensor):
        # per-component tolerances of the state do not apply to the adjoint state
        kwargs["rtol"] = float(torch.as_tensor(kwargs["rtol"]).min())
        kwargs["atol"] = float(torch.as_tensor(kwargs["atol"]).min())
    stepper = setup.stepper if sensealg.alg is None else sensealg.alg.stepper()
    if getattr(stepper, "imex", False):  # the adjoint ODE is not split: fully implicit
        stepper = dataclasses.replace(stepper, imex=False)
    if not stepper.adaptive:
        kwargs["dt"] = setup.loop_kwargs.get("dt")
    return stepper, kwargs


def _forward_on_segment(setup, history, ok, all_ok, u0, p_det, t_lo, t_hi, u_lo):
    """The forward solution on a segment: ``(Q,) -> (Q, B, N)`` — the stored dense output, or
    a re-solve from the segment's checkpoint with dense output (checkpointing)."""
    if history is None:
        start = u0 if u_lo is None else torch.where(ok[:, None], u_lo, u0)
        with torch.no_grad():
            seg = integrate(setup.stepper, lambda t, y: setup.rhs(t, y, p_det), t_lo, t_hi,
                            start, ts=t_hi.reshape(1), dense=True,
                            **_segment_kwargs(setup.loop_kwargs, t_lo, t_hi))
        history = MaskedHistory(seg.dense, ok, u0, all_ok)
    return history.evaluate


def adjoint_backward(setup, u0, t0, ts, us, grad_us, *, want_t0: bool = True,
                     want_ts: bool = True) -> dict:
    """The gradients of every input of the solve from ``grad_us``, the loss's gradient with
    respect to the saved values ``(S, B, N)``. The time gradients cost one call of ``f`` per
    time: ``want_t0``/``want_ts`` false skips them (``None``) when no time requires grad."""
    B, N = setup.B, setup.N
    sensealg = setup.sensealg
    params = setup.params
    eq = AdjointEquations(setup.rhs, params, B, N)
    g = torch.nan_to_num(grad_us.detach(), nan=0.0)
    dtype, device = u0.dtype, u0.device
    P = params.numel()
    backsolve = isinstance(sensealg, BacksolveAdjoint)
    per_member = isinstance(sensealg, (QuadratureAdjoint, GaussAdjoint))
    stepper, kwargs = _backward_options(setup)
    history = setup.saved["history"]
    p_det = setup.saved["p"]

    # members whose forward solve failed get no gradient (NaN); they must not spoil the others
    ok = setup.result.status == ReturnCode.Success  # (B,)
    all_ok = bool(ok.all())
    if not all_ok:
        g = torch.where(ok[None, :, None], g, 0)
        us = torch.where(ok[None, :, None], us, u0[None])
    history = MaskedHistory(history, ok, u0, all_ok) if history is not None else None

    lam = torch.zeros(B, N, dtype=dtype, device=device)
    mu = torch.zeros(P, dtype=dtype, device=device)
    failed: ReturnCode | None = None
    for t_hi, t_lo, interior, start_row, u_lo in _segments(setup, t0, ts):
        for row in ([start_row] if isinstance(start_row, int) else start_row or []):
            lam = lam + g[row]
        u_of_times = None if backsolve else _forward_on_segment(
            setup, history, ok, all_ok, u0, p_det, t_lo, t_hi, u_lo)
        interior = interior[::-1]  # the backward solve meets the save times in reverse
        stops = ts[interior].detach() if interior else None
        g_interior = g[interior] if interior else None  # (K, B, N)
        us_interior = us[interior] if interior else None
        if per_member:
            lam, mu, status = _per_member_segment(
                eq, stepper, kwargs, sensealg, lam, mu, t_hi, t_lo, u_of_times, stops,
                g_interior)
        else:
            start_u = us[start_row] if backsolve else None
            lam, mu, status, u_back = _packed_segment(eq, stepper, kwargs, backsolve, lam, mu,
                                                      t_hi, t_lo, u_of_times, start_u, stops,
                                                      g_interior, us_interior)
            if backsolve and status is ReturnCode.Success:
                _check_backsolved_state(u_back, u0 if u_lo is None else u_lo, ok, kwargs)
        if status is not ReturnCode.Success:
            failed = status

    if failed is not None:
        warnings.warn(f"the adjoint (backward) solve ended with {failed.name}: {failed.message}; "
                      "the gradient is unreliable", RuntimeWarning, stacklevel=5)
    d = setup.saved["direction"]
    at_t0 = [k for k, s in enumerate((d * ts).tolist()) if s <= d * float(t0)]
    for k in at_t0:
        lam = lam + g[k]
    lam_u0 = lam
    if not all_ok:
        lam_u0 = torch.where(ok[:, None], lam_u0, float("nan"))
    grad_t0 = -(lam_u0 * eq.f(t0, u0)).sum() if want_t0 else None
    grad_ts = torch.stack([(g[k] * eq.f(ts[k], us[k])).sum()
                           for k in range(ts.shape[0])]) if want_ts else None
    grads = params.split(mu) if P else []
    return {"u0": lam_u0, "t0": grad_t0, "ts": grad_ts, "params": grads}


def _per_member_segment(eq, stepper, kwargs, sensealg, lam, mu, t_hi, t_lo, u_of_times,
                        stops, g_interior):
    """``λ`` per member over one segment; ``μ`` by quadrature (after or during the solve)."""
    gauss = isinstance(sensealg, GaussAdjoint)
    rhs = AdjointStateRHS(eq, lambda t: u_of_times(t)[0])
    if isinstance(stepper, Rosenbrock):
        stepper = LinearAdjointRosenbrock(stepper, eq, u_of_times)
    if gauss:
        stepper = GaussIntegratingStepper(stepper, eq, u_of_times, sensealg.nodes,
                                          torch.zeros_like(mu))

    def jump(stop_index, hit, t, y):
        k = stop_index.clamp_min(0)[0]
        return y + torch.where(hit[:, None], g_interior[k], torch.zeros_like(y))

    with torch.no_grad():
        res = integrate(stepper, rhs, t_hi.detach(), t_lo.detach(), lam,
                        ts=t_lo.detach().reshape(1), dense=not gauss,
                        tstops=stops, on_tstop=jump if stops is not None else None, **kwargs)
        if gauss:
            mu = mu + stepper.total
        elif eq.P:
            mu = mu + gauss_legendre_integral(res.dense, u_of_times, eq, sensealg.nodes)
    status = ReturnCode(int(res.status.max()))
    return res.u, mu, status


def _packed_segment(eq, stepper, kwargs, backsolve, lam, mu, t_hi, t_lo, u_of_times, start_u,
                    stops, g_interior, us_interior):
    """``[u,] λ, μ`` of the whole batch as one member over one segment."""
    BN = eq.B * eq.N
    parts = ([start_u.reshape(-1)] if backsolve else []) + [lam.reshape(-1), mu]
    y0 = torch.cat(parts)[None, :]
    offset = BN if backsolve else 0
    g_flat = g_interior.reshape(-1, BN) if g_interior is not None else None
    us_flat = us_interior.reshape(-1, BN) if us_interior is not None else None

    def jump(stop_index, hit, t, y):
        k = stop_index.clamp_min(0)[0]
        add = torch.where(hit[:, None], g_flat[k][None, :], torch.zeros_like(g_flat[k])[None])
        y = torch.cat([y[:, :offset], y[:, offset:offset + BN] + add, y[:, offset + BN:]], 1)
        if backsolve:
            y = torch.cat([torch.where(hit[:, None], us_flat[k][None, :], y[:, :BN]),
                           y[:, BN:]], 1)
        return y

    u_of_t = None if u_of_times is None else (lambda t: u_of_times(t.reshape(1))[0])
    rhs = eq.packed_rhs(u_of_t, with_mu=True)
    with torch.no_grad():
        # the parameter part mu is a quadrature: it does not feed back into u or lambda, so
        # the step size is controlled on [u,] lambda alone (a seminorm; Kidger, Chen & Lyons
        # 2021, "Hey, that's not an ODE")
        res = integrate(stepper, rhs, t_hi.detach(), t_lo.detach(), y0,
                        ts=t_lo.detach().reshape(1), error_components=offset + BN,
                        tstops=stops, on_tstop=jump if stops is not None else None, **kwargs)
    y = res.u[0]
    status = ReturnCode(int(res.status[0]))
    u_back = y[:BN].reshape(eq.B, eq.N) if backsolve else None
    return (y[offset:offset + BN].reshape(eq.B, eq.N), y[offset + BN:], status, u_back)


def _check_backsolved_state(u_back: torch.Tensor, u_forward: torch.Tensor, ok: torch.Tensor,
                            kwargs: dict) -> None:
    r"""Warn when the state re-integrated backwards (``BacksolveAdjoint``) ends far from the
    forward one: on a stiff or dissipative problem the backward :math:`u` is unstable, and so is
    the gradient built along it. "Far" is a relative gap above :math:`\sqrt{\mathrm{rtol}}`
    (the backward solve's), far beyond the global error of a stable re-integration."""
    gap = torch.where(ok[:, None], u_back - u_forward, 0).abs().max()
    scale = torch.where(ok[:, None], u_forward, 0).abs().max().clamp_min(
        float(kwargs.get("atol", 0.0)) or torch.finfo(u_back.dtype).tiny)
    limit = max(float(kwargs.get("rtol", 1e-6)) ** 0.5, 1e3 * torch.finfo(u_back.dtype).eps)
    relative = float(gap / scale)
    if not relative <= limit:
        warnings.warn(f"BacksolveAdjoint: the state re-integrated backwards ends a relative "
                      f"{relative:.1e} away from the forward solution (limit {limit:.1e}); the "
                      "problem is likely stiff or dissipative, and the gradient is unreliable: "
                      "use GaussAdjoint or InterpolatingAdjoint", RuntimeWarning, stacklevel=5)
