r"""The ESDIRK step and its additive (IMEX) form, for any
:class:`~pysciml.native.sdirk_tableaus.SDIRKTableau`.

Stage 1 is explicit, :math:`k_1 = f(t_n, u_n)`; for :math:`i \ge 2`

.. math::
    \tilde u_i = u_n + h \sum_{j<i} a_{ij} k_j, \qquad
    Y_i = \tilde u_i + h\gamma\, f(t_n + c_i h, Y_i), \qquad
    k_i = (Y_i - \tilde u_i)/(h\gamma),

each implicit stage solved by simplified Newton (:mod:`.newton`) with :math:`W = I - h\gamma J`;
then :math:`u_{n+1} = u_n + h\sum_i b_i k_i`, :math:`\mathrm{err} = h \sum_i e_i k_i`
(filtered as :math:`W^{-1}\mathrm{err}` for TRBDF2, Hosea & Shampine 1996), and the dense output
:math:`u_n + h\sum_i b_i(\theta) k_i`.

IMEX (a :class:`~pysciml.SplitODEProblem`, :math:`f = f_I + f_E`): the stiff part is implicit,
the other explicit with its own coefficients :math:`\hat a_{ij}`:

.. math::
    \tilde u_i = u_n + h \sum_{j<i} \big(a_{ij} k^I_j + \hat a_{ij} k^E_j\big), \quad
    Y_i = \tilde u_i + h\gamma f_I(t_i, Y_i), \quad k^E_i = f_E(t_i, Y_i),

and :math:`k = k^I + k^E` in the weights (KenCarp4's parts share them).

The Jacobian (of :math:`f_I` in IMEX mode) is kept across steps while Newton converges fast
(rate < 0.2) and recomputed after a slow or failed iteration; :math:`W` is refactorised when
:math:`h\gamma` has moved by more than 30 % or the Jacobian is new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..linear_solvers import GMRES
from .jacobian import jacobian_and_time_derivative
from .linsolve import LUFactors, krylov_solve, lu_factor, lu_solve, w_matrix
from .newton import newton_solve
from .sdirk_tableaus import SDIRKTableau
from .stepper import AbstractTableauStepper, CountedRHS, StageWeightInterpolation, StepResult

__all__ = ["SDIRK", "SDIRKCache"]

_REFACTOR = 0.3  # refactorise W when h*gamma moves by more than this fraction
_SLOW = 0.2  # recompute J after a Newton contraction rate above this


class SDIRKCache(NamedTuple):
    """The Jacobian and the factorisation of ``W`` shared by the batch."""

    J: torch.Tensor
    factors: LUFactors
    hg: torch.Tensor  # (B,) the h*gamma that W was factorised for
    needs_jacobian: bool


class KrylovCache(NamedTuple):
    """The point of the Jacobian–vector products of a Newton–Krylov step."""

    t: torch.Tensor
    u: torch.Tensor
    fu: torch.Tensor
    hg: torch.Tensor
    needs_jacobian: bool = False


def _jacobian(f: CountedRHS, t, u) -> torch.Tensor:
    f.add(njac=1)
    fi = f.parts[0] if f.parts is not None else f
    if f.jac is not None:
        with torch.no_grad():
            return f.jac(t.detach(), u.detach())
    return jacobian_and_time_derivative(fi, t, u)[0]


@dataclass(frozen=True)
class SDIRK(StageWeightInterpolation, AbstractTableauStepper):
    r"""The step of an ESDIRK method (or an additive ESDIRK/ERK pair in IMEX mode).

    Args:
        tableau: the coefficients.
        imex: use the explicit companion table for the non-stiff part (needs a
            ``SplitODEProblem``).
        filter_error: estimate the error as :math:`(I - h\gamma J)^{-1} \mathrm{err}` (needed
            by TRBDF2, whose embedded method is not A-stable).
        linsolve: ``None`` (dense LU) or :class:`~pysciml.GMRES` (Newton–Krylov).
        kappa: the Newton convergence tolerance, relative to the local error allowed.
        max_iter: Newton iterations per stage.
    """

    tableau: SDIRKTableau
    imex: bool = False
    filter_error: bool = False
    linsolve: Any = None
    kappa: float = 1e-2
    max_iter: int = 10

    def init(self, f, t, u, f0):
        return None

    def _factorised(self, f: CountedRHS, t, u, hg, cache):
        if isinstance(self.linsolve, GMRES):
            fi = f.parts[0] if self.imex else f
            return KrylovCache(t, u, fi(t, u), hg)
        if cache is None or cache.needs_jacobian:
            J = _jacobian(f, t, u)
            refactor = True
        else:
            J = cache.J
            refactor = bool(((hg / cache.hg - 1).abs() > _REFACTOR).any())
        if not refactor:
            return cache
        f.add(nfactor=1)
        return SDIRKCache(J, lu_factor(w_matrix(J, 1.0 / hg)), hg, False)

    def step(self, f: CountedRHS, t, u, h, cache) -> StepResult:
        if self.imex and f.parts is None:
            raise ValueError("an IMEX method needs a SplitODEProblem (f_stiff, f_nonstiff)")
        h_safe = torch.where(h != 0, h, torch.ones_like(h))
        hg = h_safe * self.tableau.gamma
        fresh = cache is None or cache.needs_jacobian
        cache = self._factorised(f, t, u, hg, cache)
        result, any_failed, any_slow = self._stages(f, t, u, h_safe, cache)
        if any_failed and not fresh:
            # Newton failed with a Jacobian from an earlier step: retry once with a fresh one
            # before giving up on the step size
            cache = self._factorised(f, t, u, hg, cache._replace(needs_jacobian=True))
            result, any_failed, any_slow = self._stages(f, t, u, h_safe, cache)
        f.add(nnonlinfail=int(any_failed))
        return result._replace(cache=cache._replace(needs_jacobian=any_failed or any_slow))

    def _stages(self, f: CountedRHS, t, u, h_safe, cache: SDIRKCache):
        """All stages with one factorisation: ``(StepResult, any failed, any slow)``."""
        tab = self.tableau.tensors(u.dtype, u.device)
        s = len(self.tableau.c)
        B, N = u.shape
        imex = self.imex
        f_i, f_e = f.parts if imex else (f, None)
        hcol = h_safe[:, None]
        hg = h_safe * tab.gamma
        hg_w = cache.hg[:, None]

        scale = f.atol + f.rtol * u.abs()
        if isinstance(cache, KrylovCache):
            def solve_w(r):
                f.add(nlinsolve=1)
                return self._krylov_solve(f_i, f, cache, r, scale)
        else:
            def solve_w(r):
                f.add(nlinsolve=1)
                return lu_solve(cache.factors, r / hg_w)

        k_i = u.new_empty(s, B, N)  # implicit-part stage derivatives (all of f without IMEX)
        flat_i = k_i.view(s, B * N)
        if imex:
            k_e = u.new_empty(s, B, N)
            flat_e = k_e.view(s, B * N)
            k_i[0] = f_i(t, u)
            k_e[0] = f_e(t, u)
        else:
            k_i[0] = f(t, u)
        failed = torch.zeros(B, dtype=torch.bool, device=u.device)
        worst_rate = torch.zeros(B, dtype=u.dtype, device=u.device)
        for i in range(1, s):
            increment = (tab.A_strict[i, :i] @ flat_i[:i]).view(B, N)
            if imex:
                increment = increment + (tab.A_explicit[i, :i] @ flat_e[:i]).view(B, N)
            psi = torch.addcmul(u, hcol, increment)
            if tab.predictor is not None:
                guess = psi + hcol * tab.gamma * (tab.predictor[i, :i] @ flat_i[:i]).view(B, N)
            else:
                guess = psi + hcol * tab.gamma * k_i[i - 1]
            t_stage = t + tab.c[i] * h_safe
            result = newton_solve(f_i, t_stage, guess, psi, hg, solve_w, scale,
                                  kappa=self.kappa, max_iter=self.max_iter)
            failed = failed | ~result.converged
            worst_rate = torch.maximum(worst_rate, result.rate)
            k_i[i] = (result.y - psi) / hg[:, None]
            if imex:
                k_e[i] = f_e(t_stage, result.y)
        flat = flat_i + flat_e if imex else flat_i
        combined = (tab.b_and_error.T @ flat).view(2, B, N)
        u_new = torch.addcmul(u, hcol, combined[0])
        err = hcol * combined[1]
        if self.filter_error:
            err = solve_w(err)  # (I - h gamma J)^{-1} err
        any_failed, any_slow = torch.stack([failed.any(), (worst_rate > _SLOW).any()]).tolist()
        stages = flat.view(s, B, N) if imex else k_i
        return (StepResult(u_new, err, stages, cache, failed=failed), bool(any_failed),
                bool(any_slow))

    def _krylov_solve(self, f_i, f: CountedRHS, cache: KrylovCache, r, scale):
        r"""GMRES on :math:`(I - h\gamma J)x = r` (see :func:`.linsolve.krylov_solve`)."""
        precond = f.precond if self.linsolve.precond is not None else None
        return krylov_solve(f_i, cache.t, cache.u, cache.fu, cache.hg, r, scale,
                            tol=self.linsolve.tol * self.kappa, restart=self.linsolve.restart,
                            max_restarts=self.linsolve.max_restarts, precond=precond)[0]

    def merge(self, cache, new, accept):
        return new  # the Jacobian and factorisation are the batch's, whoever accepted
