r"""The explicit Runge–Kutta step, for any :class:`~pysciml.native.tableau.ButcherTableau`.

.. math::
    k_i = f\Big(t + c_i h,\; u + h \sum_{j<i} a_{ij} k_j\Big), \quad
    u_{new} = u + h \sum_i b_i k_i, \quad \mathrm{err} = h \sum_i e_i k_i .

Each stage's combination of earlier stages is one matrix product with the tableau row, and the
new state and the error estimate together are one more, so a step costs ``s`` calls of ``f``
plus about ``3 s`` tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .stepper import RHS, AbstractStepper, StepResult
from .tableau import ButcherTableau

__all__ = ["ExplicitRungeKutta"]


@dataclass(frozen=True)
class ExplicitRungeKutta(AbstractStepper):
    """The step of an explicit Runge–Kutta method given by ``tableau``.

    The cache is the derivative at the current point when the method is FSAL (first same as
    last), so an accepted step costs ``s - 1`` new evaluations; otherwise it is empty.
    """

    tableau: ButcherTableau

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def error_order(self) -> int | None:
        return self.tableau.error_order

    @property
    def adaptive(self) -> bool:
        return self.tableau.adaptive

    def init(self, f: RHS, t, u, f0):
        return f0 if self.tableau.fsal else None

    def step(self, f: RHS, t, u, h, cache) -> StepResult:
        tab = self.tableau.tensors(u.dtype, u.device)
        hcol = h[:, None]
        k = cache if cache is not None else f(t, u)
        ks = [k]
        for i in range(1, self.tableau.stages):
            if i == 1:
                increment = ks[0] * tab.a[1, 0]
            else:
                increment = torch.stack(ks, -1) @ tab.a[i, :i]
            ks.append(f(t + tab.c[i] * h, u + hcol * increment))
        stages = torch.stack(ks, -1)
        if self.tableau.adaptive:
            combined = stages @ tab.b_and_error
            u_new = u + hcol * combined[..., 0]
            err = hcol * combined[..., 1]
        else:
            u_new = u + hcol * (stages @ tab.b)
            err = None
        return StepResult(u_new, err, stages, ks[-1] if self.tableau.fsal else None)

    def merge(self, cache, new, accept):
        if cache is None:
            return None
        return torch.where(accept[:, None], new, cache)

    def dense_stages(self, f: RHS, t, u, h, result: StepResult) -> torch.Tensor:
        if not self.tableau.extra_c:
            return result.stages
        tab = self.tableau.tensors(u.dtype, u.device)
        ks = list(result.stages.unbind(-1))
        s = self.tableau.stages
        for j in range(len(self.tableau.extra_c)):
            increment = torch.stack(ks, -1) @ tab.extra_a[j, : s + j]
            ks.append(f(t + tab.extra_c[j] * h, u + h[:, None] * increment))
        return torch.stack(ks, -1)

    def interpolate(self, u, h, stages, theta):
        r""":math:`u + h \sum_i b_i(\theta) k_i` with the tableau's polynomial weights."""
        tab = self.tableau.tensors(u.dtype, u.device)
        degree = tab.interp.shape[1]
        powers = theta[..., None] ** torch.arange(1, degree + 1, device=u.device, dtype=u.dtype)
        weights = powers @ tab.interp.T  # (..., s_all)
        if theta.ndim == 1:  # (B,)
            return u + h[:, None] * (stages @ weights[..., None])[..., 0]
        # theta (B, Q): result (B, Q, N)
        return u[:, None, :] + h[:, None, None] * torch.einsum("bns,bqs->bqn", stages, weights)
