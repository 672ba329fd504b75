r"""The explicit Runge–Kutta step, for any :class:`~pysciml.native.tableau.ButcherTableau`.

.. math::
    k_i = f\Big(t + c_i h,\; u + h \sum_{j<i} a_{ij} k_j\Big), \quad
    u_{new} = u + h \sum_i b_i k_i, \quad \mathrm{err} = h \sum_i e_i k_i .

A step costs ``s`` calls of ``f`` (``s - 1`` for FSAL methods) and, for the combinations of
stages, one of two forms of the same sums:

* without autograd (the forward pass of an adjoint, inference under ``torch.no_grad``), the
  stages live in one ``(s, B, N)`` buffer and each combination is one matrix–vector product
  with a tableau row (one pass through memory, however many stages);
* while autograd records the step (``DirectBackprop``) or ``torch.compile`` traces it, the
  stages are a list and each combination is written out term by term
  (:func:`~pysciml.native.tableau.weighted_sum`): the backward pass then scales each term once,
  instead of a transposed product, a zero-filled slice gradient and a buffer copy-back per
  stage, which made it about 10 % slower for a small neural vector field. The error estimate
  is not recorded (the controller reads it detached).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .stepper import RHS, AbstractTableauStepper, StageWeightInterpolation, StepResult
from .tableau import ButcherTableau, combine, weighted_sum

__all__ = ["ExplicitRungeKutta"]


@dataclass(frozen=True)
class ExplicitRungeKutta(StageWeightInterpolation, AbstractTableauStepper):
    """The step of an explicit Runge–Kutta method given by ``tableau``.

    The cache is the derivative at the current point when the method is FSAL (first same as
    last), so an accepted step costs ``s - 1`` new evaluations; otherwise it is empty.
    """

    tableau: ButcherTableau
    capturable = True  # no host synchronisation in a step

    def init(self, f: RHS, t, u, f0):
        return f0 if self.tableau.fsal else None

    def step(self, f: RHS, t, u, h, cache) -> StepResult:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self._step_by_terms(f, t, u, h, cache)
        tab = self.tableau.tensors(u.dtype, u.device)
        s = self.tableau.stages
        B, N = u.shape
        hcol = h[:, None]
        stages = u.new_empty(s, B, N)  # written stage by stage
        stages[0] = cache if cache is not None else f(t, u)
        flat = stages.view(s, B * N)
        c = self.tableau.c
        for i in range(1, s):
            increment = combine(tab.a_rows[i], flat[:i]).view(B, N)
            stages[i] = f(torch.add(t, h, alpha=c[i]), torch.addcmul(u, hcol, increment))
        if self.tableau.adaptive:
            combined = combine(tab.b_and_error.T, flat).view(2, B, N)
            u_new = torch.addcmul(u, hcol, combined[0])
            err = hcol * combined[1]
        else:
            u_new = torch.addcmul(u, hcol, combine(tab.b, flat).view(B, N))
            err = None
        return StepResult(u_new, err, stages, stages[-1] if self.tableau.fsal else None)

    def _step_by_terms(self, f: RHS, t, u, h, cache) -> StepResult:
        """The same step with the stages as a list and the sums written out term by term (see
        the module docstring)."""
        tableau = self.tableau
        hcol = h[:, None]
        ks = [cache if cache is not None else f(t, u)]
        for i in range(1, tableau.stages):
            increment = weighted_sum(tableau.a[i], ks)
            ks.append(f(torch.add(t, h, alpha=tableau.c[i]), torch.addcmul(u, hcol, increment)))
        u_new = torch.addcmul(u, hcol, weighted_sum(tableau.b, ks))
        err = None
        if tableau.adaptive:
            with torch.no_grad():
                err = hcol * weighted_sum(tableau.b_error, ks)
        return StepResult(u_new, err, torch.stack(ks), ks[-1] if tableau.fsal else None)

    def merge(self, cache, new, accept):
        if cache is None:
            return None
        return torch.where(accept[:, None], new, cache)

    def dense_stages(self, f: RHS, t, u, h, result: StepResult) -> torch.Tensor:
        n_extra = len(self.tableau.extra_c)
        if not n_extra:
            return result.stages
        tab = self.tableau.tensors(u.dtype, u.device)
        s = self.tableau.stages
        B, N = u.shape
        stages = torch.cat([result.stages, u.new_empty(n_extra, B, N)])
        flat = stages.view(s + n_extra, B * N)
        for j in range(n_extra):
            increment = (tab.extra_a[j, : s + j] @ flat[: s + j]).view(B, N)
            stages[s + j] = f(t + tab.extra_c[j] * h, torch.addcmul(u, h[:, None], increment))
        return stages
