r"""The Julia solve as one ``torch.autograd.Function``: forward in Julia, backward by the adjoint.

Forward: the bridge's ``solve_pullback`` solves the problem and keeps SciMLSensitivity's
reverse pass (a Julia closure). Backward: ``apply_pullback`` with the cotangent
:math:`G_k = \partial L/\partial u(s_k)` of the saved values returns :math:`dL/du_0` and
:math:`dL/d\theta` (the flat parameters: leaves of ``p``, then module parameters). The
gradients with respect to the save times and the initial time follow from the adjoint
identities (see :mod:`pysciml.sensealg`),

.. math::
    \frac{dL}{ds_k} = G_k^\top f(s_k, u(s_k)), \qquad
    \frac{dL}{dt_0} = -\lambda(t_0)^\top f(t_0, u_0), \quad \lambda(t_0) = \frac{dL}{du_0},

evaluated in torch only when those times require gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import convert
from .entry_points import call

__all__ = ["JuliaSolvePlan", "JuliaSolveResult", "JuliaDense", "solve_with_adjoint"]


@dataclass
class JuliaSolveResult:
    """What a Julia solve returned, converted: saved values ``(S, *batch, *state)``, status
    ``batch_shape``, end times, counters and the Julia solutions (for dense output)."""

    us: torch.Tensor
    status: torch.Tensor
    t_end: torch.Tensor
    stats: Any
    solutions: Any


class JuliaSolvePlan:
    """Everything one solve passes to the bridge, prepared once.

    Args:
        bridge: the ``PySciMLBridge`` module.
        prob: the problem (its ``f`` a torch callable, a JuliaFunction or a HybridFunction).
        rhs: the bridge's right-hand side object.
        params: the flat parameters (:class:`~pysciml.julia.callbacks.FlatParameters`).
        alg: the algorithm's Julia name and options; ``options``: the solve options.
        sensealg: the adjoint's Julia name and options, or ``None`` without gradients.
    """

    def __init__(self, bridge: Any, prob: Any, rhs: Any, params: Any, alg: Any,
                 options: dict[str, Any], sensealg: Any = None):
        self.bridge = bridge
        self.prob = prob
        self.rhs = rhs
        self.params = params
        self.alg = alg
        self.options = options
        self.sensealg = sensealg
        self.batch_shape = prob.batch_shape
        self.state_shape = prob.state_shape
        self.device = prob.u0.device
        self.dtype = prob.u0.dtype
        self.cuda = self.device.type == "cuda"

    # ------------------------------------------------------------------ conversions
    def _to_julia(self, x: torch.Tensor) -> Any:
        wrap = (lambda y: call(self.bridge, "wrap_cuda", y)) if self.cuda else None
        return convert.to_julia(x, wrap_cuda=wrap)

    def _state(self, u: torch.Tensor) -> Any:
        B = int(torch.Size(self.batch_shape).numel())
        return self._to_julia(u.reshape(B, -1))

    def _theta(self) -> Any:
        return self._to_julia(self.params.flatten(self.dtype, self.device))

    def _result(self, res: Any) -> JuliaSolveResult:
        share = (lambda a: call(self.bridge, "share_cuda", a)) if self.cuda else None
        us = convert.saved_from_julia(res.u, self.batch_shape, self.state_shape,
                                      device=self.device, dtype=self.dtype, share_cuda=share)
        status = convert.retcodes_from_julia(res.retcodes, self.batch_shape, self.device)
        t_end = torch.tensor([float(x) for x in res.t_end], dtype=self.dtype,
                             device=self.device).reshape(self.batch_shape)
        return JuliaSolveResult(us=us, status=status, t_end=t_end,
                                stats=convert.stats_from_julia(res.stats),
                                solutions=res.solutions)

    def _span(self, t0: torch.Tensor, t1: torch.Tensor) -> tuple[float, float]:
        return (float(t0.detach()), float(t1.detach()))

    # ------------------------------------------------------------------ solves
    def forward(self, u0: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, ts: torch.Tensor,
                *, dense: bool = False) -> JuliaSolveResult:
        """Solve without derivatives (``dense``: keep the solutions for dense output)."""
        options = dict(self.options, dense=bool(dense))
        res = call(self.bridge, "solve_forward", self.rhs, self._state(u0), self._theta(),
                   self._span(t0, t1), convert.to_julia(ts.detach().cpu()), self.alg.name,
                   self.alg.options, options)
        return self._result(res)

    def forward_with_pullback(self, u0: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor,
                              ts: torch.Tensor) -> tuple[JuliaSolveResult, Any]:
        """Solve and keep the Julia reverse pass."""
        res = call(self.bridge, "solve_pullback", self.rhs, self._state(u0), self._theta(),
                   self._span(t0, t1), convert.to_julia(ts.detach().cpu()), self.alg.name,
                   self.alg.options, dict(self.options, dense=False), self.sensealg.name,
                   self.sensealg.options)
        return self._result(res), res.pullback

    def pullback(self, pullback: Any, grad_us: torch.Tensor) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """``(dL/du0, dL/dθ)`` from the cotangent of the saved values."""
        S = grad_us.shape[0]
        B = int(torch.Size(self.batch_shape).numel())
        cot = self._to_julia(grad_us.reshape(S, B, -1).to(self.dtype))
        du0, dtheta = call(self.bridge, "apply_pullback", pullback, cot)
        share = (lambda a: call(self.bridge, "share_cuda", a)) if self.cuda else None
        du0_t = convert.from_julia(du0, device=self.device, share_cuda=share)
        dtheta_t = convert.from_julia(dtheta, device=self.device, share_cuda=share)
        return (du0_t.reshape(*self.batch_shape, *self.state_shape).to(self.dtype),
                dtheta_t.reshape(-1).to(self.dtype))

    def interpolate(self, solutions: Any, tq: torch.Tensor) -> torch.Tensor:
        """Dense output of forward solutions at the times ``tq``, ``(Q, *batch, *state)``."""
        values = call(self.bridge, "interpolate", solutions, convert.to_julia(tq.detach().cpu()))
        return convert.saved_from_julia(values, self.batch_shape, self.state_shape,
                                        device=self.device, dtype=self.dtype)

    def rhs_at(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``f(t, u, p)`` for ``u`` of shape ``(*batch, *state)`` (no gradient)."""
        with torch.no_grad():
            return self.prob.f(t.expand(self.batch_shape), u, self.prob.p)


class _JuliaSolveFunction(torch.autograd.Function):
    """Saved values of a Julia solve; their backward is SciMLSensitivity's adjoint."""

    @staticmethod
    def forward(ctx, plan, u0, t0, t1, ts, *tensors):
        result, pullback = plan.forward_with_pullback(u0, t0, t1, ts)
        plan.result = result
        ctx.plan, ctx.pullback = plan, pullback
        ctx.n_tensors = len(tensors)
        us = result.us
        ctx.save_for_backward(u0, t0, ts, us)
        return us

    @staticmethod
    def backward(ctx, grad_us):
        plan = ctx.plan
        u0, t0, ts, us = ctx.saved_tensors
        du0, dtheta = plan.pullback(ctx.pullback, grad_us)
        grads = [g.to(t.dtype) for g, t in zip(plan.params.split(dtheta), plan.params.tensors)]
        dt0 = dts = None
        if ctx.needs_input_grad[2]:
            dt0 = -(du0 * plan.rhs_at(t0, u0)).sum().reshape(t0.shape)
        if ctx.needs_input_grad[4]:
            dts = torch.stack([(grad_us[k] * plan.rhs_at(ts[k], us[k])).nan_to_num().sum()
                               for k in range(ts.shape[0])])
        return (None, du0, dt0, None, dts, *grads)


def solve_with_adjoint(plan: JuliaSolvePlan, u0: torch.Tensor, t0: torch.Tensor,
                       t1: torch.Tensor, ts: torch.Tensor) -> JuliaSolveResult:
    """The Julia solve in torch autograd: gradients reach ``u0``, ``t0``, the save times, the
    tensor leaves of ``p`` and the module parameters."""
    us = _JuliaSolveFunction.apply(plan, u0, t0, t1, ts, *plan.params.tensors)
    result = plan.result
    return JuliaSolveResult(us=us, status=result.status, t_end=result.t_end,
                            stats=result.stats, solutions=result.solutions)


class _DenseWithoutGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, anchor):
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(
            "sol(t): the dense output of a Julia solve carries no gradient; put these times in "
            "saveat to differentiate through them")


class JuliaDense:
    """Dense output ``sol(t)`` of a Julia solve, by the solver's own interpolant.

    Without gradients it interpolates the forward solutions; after a solve with an adjoint it
    re-solves once with dense output on first use, and its values carry no gradient.
    """

    def __init__(self, plan: JuliaSolvePlan, solutions: Any, inputs: Any, u0: torch.Tensor,
                 anchor: torch.Tensor | None):
        self.plan = plan
        self.solutions = solutions
        self.inputs = inputs
        self.u0 = u0
        self.anchor = anchor

    def __call__(self, tq: torch.Tensor) -> torch.Tensor:
        if self.solutions is None:
            res = self.plan.forward(self.u0, self.inputs.t0, self.inputs.t1, self.inputs.ts,
                                    dense=True)
            self.solutions = res.solutions
        values = self.plan.interpolate(self.solutions, tq)
        if self.anchor is not None:
            return _DenseWithoutGradient.apply(values, self.anchor)
        return values
