r"""The continuous adjoints as one ``torch.autograd.Function`` around the whole solve.

Forward: the solve without autograd, keeping what the sensealg needs (dense output, checkpoint
states, or nothing). Backward: the adjoint ODE of :mod:`.equations`, integrated backwards by the
same time loop over one or more *segments* :math:`(b_j, b_{j+1}]`, with jumps
:math:`\lambda \mathrel{+}= \partial L/\partial u(s_k)` at the save times inside a segment
(``tstops`` of the loop). Then

.. math::
    \frac{dL}{du_0} = \lambda(t_0),\quad \frac{dL}{dp} = \mu(t_0),\quad
    \frac{dL}{dt_0} = -\lambda(t_0)^\top f(t_0, u_0),\quad
    \frac{dL}{ds_k} = \frac{\partial L}{\partial u(s_k)}^{\!\top} f(s_k, u(s_k)).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ...sensealg import AbstractAdjoint, BacksolveAdjoint, InterpolatingAdjoint, QuadratureAdjoint
from ...solution import ReturnCode
from ..integrate import IntegrationResult, integrate
from ..stepper import AbstractStepper
from .equations import AdjointEquations, ParameterSet
from .quadrature import gauss_legendre_integral

__all__ = ["adjoint_solve"]


@dataclass
class _Setup:
    """Everything the Function needs besides its tensor inputs."""

    rhs: Any  # flat.rhs(t, y, p)
    B: int
    N: int
    stepper: AbstractStepper
    sensealg: AbstractAdjoint
    params: ParameterSet
    dense: bool
    loop_kwargs: dict
    result: IntegrationResult | None = None
    saved: dict = field(default_factory=dict)


def _union_times(ts: torch.Tensor, extra: torch.Tensor, direction: float) -> torch.Tensor:
    both = torch.cat([ts, extra])
    directed = torch.unique(direction * both)  # sorted ascending, duplicates removed
    return direction * directed


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, setup: _Setup, u0, t0, t1, ts, *params):
        direction = 1.0 if float(t1) >= float(t0) else -1.0
        p_detached = setup.params.with_tensors([x.detach() for x in setup.params.tensors])

        def rhs(t, y):
            return setup.rhs(t, y, p_detached)

        sensealg = setup.sensealg
        checkpointing = isinstance(sensealg, InterpolatingAdjoint) and sensealg.checkpointing
        ts_all = ts.detach()
        if checkpointing and sensealg.checkpoints:
            grid = torch.linspace(float(t0), float(ts[-1]), sensealg.checkpoints + 2,
                                  dtype=ts.dtype, device=ts.device)[1:-1]
            ts_all = _union_times(ts_all, grid, direction)
        need_dense = isinstance(sensealg, QuadratureAdjoint) or (
            isinstance(sensealg, InterpolatingAdjoint) and not checkpointing)
        with torch.no_grad():
            result = integrate(setup.stepper, rhs, t0.detach(), t1.detach(), u0.detach(),
                               ts=ts_all, dense=need_dense or setup.dense, **setup.loop_kwargs)
        setup.result = result
        rows = torch.searchsorted(direction * ts_all, direction * ts.detach())
        us = result.us[rows]
        setup.saved.update(direction=direction, ts_all=ts_all, us_all=result.us,
                           history=result.dense if need_dense else None, p=p_detached)
        ctx.setup = setup
        ctx.save_for_backward(u0.detach(), t0.detach(), ts.detach(), us)
        return us

    @staticmethod
    def backward(ctx, grad_us):
        setup: _Setup = ctx.setup
        u0, t0, ts, us = ctx.saved_tensors
        grads = _adjoint_backward(setup, u0, t0, ts, us, grad_us)
        n_in = len(ctx.needs_input_grad)
        out = [None, grads["u0"], grads["t0"], None, grads["ts"], *grads["params"]]
        return tuple(out[:n_in])


class _MaskedHistory:
    """A forward dense output whose failed members read as their (finite) initial state."""

    def __init__(self, history, ok: torch.Tensor, u0: torch.Tensor):
        self.history, self.ok, self.u0 = history, ok, u0

    def evaluate(self, tq: torch.Tensor) -> torch.Tensor:
        return torch.where(self.ok[None, :, None], self.history.evaluate(tq), self.u0[None])


def _segments(setup: _Setup, t0: torch.Tensor, ts: torch.Tensor):
    """``(t_hi, t_lo, interior save rows, start-of-segment save row or None, u(t_lo) or None)``
    from the last save time back to ``t0``."""
    d = setup.saved["direction"]
    sensealg = setup.sensealg
    checkpointing = isinstance(sensealg, InterpolatingAdjoint) and sensealg.checkpointing
    ts_d = (d * ts).tolist()
    t0_d = d * float(t0)
    rows_after = [k for k, s in enumerate(ts_d) if s > t0_d]
    if not rows_after:
        return []
    if not checkpointing:
        last = rows_after[-1]
        return [(ts[last], t0, rows_after[:-1], last, None)]
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


def _adjoint_backward(setup: _Setup, u0, t0, ts, us, grad_us) -> dict:
    B, N = setup.B, setup.N
    BN = B * N
    sensealg = setup.sensealg
    params = setup.params
    eq = AdjointEquations(setup.rhs, params, B, N)
    g = torch.nan_to_num(grad_us.detach(), nan=0.0)
    dtype, device = u0.dtype, u0.device
    P = params.numel()
    backsolve = isinstance(sensealg, BacksolveAdjoint)
    quadrature = isinstance(sensealg, QuadratureAdjoint)
    with_mu = not quadrature
    kwargs = dict(setup.loop_kwargs)
    kwargs.pop("dt", None)
    kwargs.pop("tstops", None)
    kwargs["shared_step"] = True
    if sensealg.rtol is not None:
        kwargs["rtol"] = sensealg.rtol
    if sensealg.atol is not None:
        kwargs["atol"] = sensealg.atol
    if isinstance(kwargs.get("rtol"), torch.Tensor) or isinstance(kwargs.get("atol"),
                                                                   torch.Tensor):
        # per-component tolerances of the state do not apply to the packed adjoint state
        kwargs["rtol"] = float(torch.as_tensor(kwargs["rtol"]).min())
        kwargs["atol"] = float(torch.as_tensor(kwargs["atol"]).min())
    kwargs.pop("parts", None)  # the adjoint ODE is not split: an IMEX step runs fully implicit
    stepper = setup.stepper if sensealg.alg is None else sensealg.alg.stepper()
    if getattr(stepper, "imex", False):
        stepper = dataclasses.replace(stepper, imex=False)
    if not stepper.adaptive:
        stepper_dt = setup.loop_kwargs.get("dt")
        kwargs["dt"] = stepper_dt
    history = setup.saved["history"]
    p_det = setup.saved["p"]

    # members whose forward solve failed get no gradient (NaN); they must not spoil the others
    ok = setup.result.status == ReturnCode.Success  # (B,)
    all_ok = bool(ok.all())
    if not all_ok:
        g = torch.where(ok[None, :, None], g, 0)
        us = torch.where(ok[None, :, None], us, u0[None])
        history = _MaskedHistory(history, ok, u0) if history is not None else None

    lam = torch.zeros(BN, dtype=dtype, device=device)
    mu = torch.zeros(P, dtype=dtype, device=device)
    failed: ReturnCode | None = None
    for t_hi, t_lo, interior, start_row, u_lo in _segments(setup, t0, ts):
        if start_row is not None:
            lam = lam + g[start_row].reshape(-1)
        if history is not None:
            def u_of_t(t, _h=history):
                return _h.evaluate(t.reshape(1))[0]
        elif not backsolve:  # checkpointed: re-solve this segment with dense output
            start = u0 if u_lo is None else torch.where(ok[:, None], u_lo, u0)
            with torch.no_grad():
                seg = integrate(setup.stepper, lambda t, y: setup.rhs(t, y, p_det), t_lo,
                                t_hi, start, ts=t_hi.reshape(1), dense=True,
                                **_segment_kwargs(setup.loop_kwargs, t_lo, t_hi))
            hist = seg.dense if all_ok else _MaskedHistory(seg.dense, ok, u0)

            def u_of_t(t, _h=hist):
                return _h.evaluate(t.reshape(1))[0]
        else:
            u_of_t = None
        parts = ([us[start_row].reshape(-1)] if backsolve else []) + [lam] + (
            [mu] if with_mu else [])
        y0 = torch.cat(parts)[None, :]
        offset = BN if backsolve else 0
        interior = interior[::-1]  # the backward solve meets the save times in reverse
        stops = ts[interior].detach() if interior else None
        g_interior = g[interior].reshape(len(interior), BN) if interior else None
        us_interior = us[interior].reshape(len(interior), BN) if interior else None

        def jump(stop_index, hit, t, y, _g=g_interior, _us=us_interior, _off=offset):
            k = stop_index.clamp_min(0)[0]
            add = torch.where(hit[:, None], _g[k][None, :], torch.zeros_like(_g[k])[None, :])
            y = torch.cat([y[:, :_off], y[:, _off:_off + BN] + add, y[:, _off + BN:]], 1)
            if backsolve:
                y = torch.cat([torch.where(hit[:, None], _us[k][None, :], y[:, :BN]),
                               y[:, BN:]], 1)
            return y

        rhs = eq.packed_rhs(u_of_t, with_mu)
        with torch.no_grad():
            # the parameter part mu is a quadrature: it does not feed back into u or lambda, so
            # the step size is controlled on [u,] lambda alone (a seminorm; Kidger, Chen & Lyons
            # 2021, "Hey, that's not an ODE")
            res = integrate(stepper, rhs, t_hi.detach(), t_lo.detach(), y0,
                            ts=t_lo.detach().reshape(1), dense=quadrature,
                            error_components=offset + BN,
                            tstops=stops, on_tstop=jump if stops is not None else None,
                            **kwargs)
        status = ReturnCode(int(res.status[0]))
        if status is not ReturnCode.Success:
            failed = status
        y = res.u[0]
        lam = y[offset:offset + BN]
        if with_mu:
            mu = y[offset + BN:]
        elif P:
            mu = mu + gauss_legendre_integral(res.dense, history, eq, sensealg.nodes)

    if failed is not None:
        warnings.warn(f"the adjoint (backward) solve ended with {failed.name}: {failed.message}; "
                      "the gradient is unreliable", RuntimeWarning, stacklevel=4)
    d = setup.saved["direction"]
    at_t0 = [k for k, s in enumerate((d * ts).tolist()) if s <= d * float(t0)]
    for k in at_t0:
        lam = lam + g[k].reshape(-1)
    lam_u0 = lam.reshape(B, N)
    if not all_ok:
        lam_u0 = torch.where(ok[:, None], lam_u0, float("nan"))
    grad_t0 = -(lam_u0 * eq.f(t0, u0)).sum()
    grad_ts = torch.stack([(g[k] * eq.f(ts[k], us[k])).sum() for k in range(ts.shape[0])])
    grads = params.split(mu) if P else []
    return {"u0": lam_u0, "t0": grad_t0, "ts": grad_ts, "params": grads}


def adjoint_solve(flat, prob, stepper, inputs, sensealg, dense, loop_kwargs):
    """Solve with ``sensealg``'s backward pass attached; returns ``(us, IntegrationResult)``."""
    from ...backends.native import trainable_parameters

    p_leaves, module_params = trainable_parameters(prob)
    params = ParameterSet.of(prob.p, module_params)
    setup = _Setup(rhs=flat.rhs, B=flat.B, N=flat.N, stepper=stepper, sensealg=sensealg,
                   params=params, dense=dense, loop_kwargs=loop_kwargs)
    us = _AdjointSolve.apply(setup, flat.flatten(prob.u0), inputs.t0, inputs.t1, inputs.ts,
                             *params.tensors, *params.module_params)
    return us, setup.result
