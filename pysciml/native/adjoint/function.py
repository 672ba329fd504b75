r"""The continuous adjoints as one ``torch.autograd.Function`` around the whole solve.

Forward: the solve without autograd, keeping what the sensealg needs (dense output, checkpoint
states, or nothing). Backward: the adjoint ODE of :mod:`.equations`, integrated backwards by the
same time loop (:mod:`.backward`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ...sensealg import AbstractAdjoint, BacksolveAdjoint, QuadratureAdjoint
from ..integrate import IntegrationResult, integrate
from ..stepper import AbstractStepper
from .backward import adjoint_backward, checkpointed
from .equations import ParameterSet

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
        checkpointing = checkpointed(sensealg)
        ts_all = ts.detach()
        if checkpointing and sensealg.checkpoints:
            grid = torch.linspace(float(t0), float(ts[-1]), sensealg.checkpoints + 2,
                                  dtype=ts.dtype, device=ts.device)[1:-1]
            ts_all = _union_times(ts_all, grid, direction)
        # every adjoint but backsolve reads u(t) from the forward dense output (or, checkpointed,
        # from re-solves between checkpoints)
        need_dense = isinstance(sensealg, QuadratureAdjoint) or (
            not checkpointing and not isinstance(sensealg, BacksolveAdjoint))
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
        needs = ctx.needs_input_grad  # (setup, u0, t0, t1, ts, *params)
        grads = adjoint_backward(setup, u0, t0, ts, us, grad_us, want_t0=needs[2],
                                 want_ts=needs[4])
        n_in = len(needs)
        out = [None, grads["u0"], grads["t0"], None, grads["ts"], *grads["params"]]
        return tuple(out[:n_in])


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
