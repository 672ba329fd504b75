r"""The Rosenbrock (linearly implicit) step, for any
:class:`~pysciml.native.rosenbrock_tableaus.RosenbrockTableau`.

With :math:`J = \partial f/\partial u`, :math:`T = \partial f/\partial t` at :math:`(t_n, u_n)`
and :math:`W = I/(h\gamma) - J` (one batched LU per step),

.. math::
    U_i = u_n + \sum_{j<i} a_{ij} k_j, \qquad
    W k_i = f(t_n + c_i h, U_i) + \sum_{j<i} \frac{C_{ij}}{h} k_j + h d_i T,

.. math::
    u_{n+1} = u_n + \sum_i b_i k_i, \qquad \mathrm{err} = \sum_i \tilde b_i k_i,

and the dense output
:math:`u(t_n+\theta h) = (1-\theta)u_n + \theta\big(u_{n+1} + (1-\theta)(\kappa_1 + \theta\kappa_2
+ \theta^2\kappa_3)\big)` with :math:`\kappa_l = \sum_i H_{li} k_i` (Hairer & Wanner II, IV.7;
the transformed form of OrdinaryDiffEq.jl). The Jacobian is exact (torch.func, or the problem's
``jac``) and recomputed at every step; :math:`T` comes from one forward-mode product in ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jvp as func_jvp

from .jacobian import jacobian_and_time_derivative
from .linsolve import lu_factor, lu_solve, w_matrix
from .rosenbrock_tableaus import RosenbrockTableau
from .stepper import AbstractTableauStepper, CountedRHS, StepResult
from .tableau import combine

__all__ = ["Rosenbrock", "time_derivative", "jacobian_of"]


def time_derivative(f: CountedRHS, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial f/\partial t` at ``(t, u)`` per member, by forward mode (one call).

    Autonomous right-hand sides are recognised once per solve: when the autograd graph of
    ``f(t, u)`` has no path from ``t`` (``f`` does not use ``t``, or uses it only through
    non-differentiable operations such as a switch ``t >= t_on``, whose derivative is zero
    anyway), :math:`\partial f/\partial t = 0` and later steps skip the forward-mode call.
    (A right-hand side whose use of ``t`` depends on Python control flow over the state is
    judged at the first step.)
    """
    if f.autonomous is None:
        f.autonomous = _has_no_time_dependence(f, t, u)
    if f.autonomous:
        return torch.zeros_like(u)
    with torch.no_grad():
        t = t.detach().clone()
        return func_jvp(lambda s: f(s, u.detach()), (t,), (torch.ones_like(t),))[1]


def _has_no_time_dependence(f: CountedRHS, t: torch.Tensor, u: torch.Tensor) -> bool:
    """Whether ``f(t, u)``'s autograd graph has no path from ``t`` (one counted call)."""
    with torch.enable_grad():
        t_probe = t.detach().clone().requires_grad_(True)
        out = f(t_probe, u.detach())
        if not out.requires_grad:
            return True
        (grad,) = torch.autograd.grad(out.sum(), t_probe, allow_unused=True)
    return grad is None


def jacobian_of(f: CountedRHS, t: torch.Tensor,
                u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(J, ∂f/∂t)``: the problem's ``jac`` if given, else both from one forward-mode pass
    (:func:`~pysciml.native.jacobian.jacobian_and_time_derivative`). Counted in ``f.njac``."""
    f.add(njac=1)
    if f.jac is not None:
        with torch.no_grad():
            return f.jac(t.detach(), u.detach()), time_derivative(f, t, u)
    return jacobian_and_time_derivative(f, t, u)


@dataclass(frozen=True)
class Rosenbrock(AbstractTableauStepper):
    """The step of a Rosenbrock method given by ``tableau``.

    The cache is unused: the derivative, Jacobian and factorisation are computed afresh at every
    step (a rejected step's ``h`` changes ``W`` anyway).
    """

    tableau: RosenbrockTableau
    capturable = True  # no host synchronisation in a step

    def init(self, f, t, u, f0):
        return None

    def step(self, f: CountedRHS, t, u, h, cache) -> StepResult:
        tab = self.tableau.tensors(u.dtype, u.device)
        s = len(self.tableau.c)
        B, N = u.shape
        # members that do not move (h = 0) take a dummy unit step, discarded by the loop
        h_safe = torch.where(h != 0, h, torch.ones_like(h))
        hcol = h_safe[:, None]
        J, dfdt = jacobian_of(f, t, u)
        factors = lu_factor(w_matrix(J, 1.0 / (h_safe * tab.gamma)))
        f.add(nfactor=1)
        stages = u.new_empty(s, B, N)
        flat = stages.view(s, B * N)
        inv_h = 1.0 / hcol
        c, d = self.tableau.c, self.tableau.d
        h_dfdt = None if f.autonomous else hcol * dfdt  # (∂f/∂t = 0 for autonomous f)
        for i in range(s):
            if i == 0:
                rhs = f(t, u)
            else:
                # one product for both sums: sum_j a_ij k_j and sum_j C_ij k_j
                sums = combine(tab.aC_rows[i], flat[:i]).view(2, B, N)
                rhs = torch.addcmul(f(torch.add(t, h_safe, alpha=c[i]), u + sums[0]), inv_h,
                                    sums[1])
            if d[i] != 0 and h_dfdt is not None:
                rhs = torch.add(rhs, h_dfdt, alpha=d[i])
            stages[i] = lu_solve(factors, rhs)
        f.add(nlinsolve=s)
        combined = combine(tab.b_and_error.T, flat).view(2, B, N)
        u_new = u + combined[0]
        err = combined[1]
        singular = factors.singular[:, None]
        err = torch.where(singular, torch.full_like(err, float("nan")), err)
        return StepResult(u_new, err, stages, None)

    def merge(self, cache, new, accept):
        return None

    def dense_stages(self, f, t, u, h, result: StepResult) -> torch.Tensor:
        tab = self.tableau.tensors(u.dtype, u.device)
        s, B, N = result.stages.shape
        kappa = combine(tab.H, result.stages.view(s, B * N)).view(-1, B, N)
        return torch.cat([result.u_new[None], kappa])

    def interpolate(self, u, h, stages, theta):
        r""":math:`(1-\theta)u_n + \theta(u_{n+1} + (1-\theta)\sum_l \theta^{l-1}\kappa_l)`."""
        th = theta[..., None]
        u_new, kappa = stages[0], stages[1:]
        poly = kappa[-1]
        for row in range(kappa.shape[0] - 2, -1, -1):  # Horner in theta
            poly = kappa[row] + th * poly
        return (1 - th) * u + th * (u_new + (1 - th) * poly)
