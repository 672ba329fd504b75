r"""The variable-order (1–5), variable-step BDF step, batched: every member has its own order,
difference array and step size.

The quasi-constant step formulation of Shampine & Reichelt (1997), as in SciPy's ``BDF`` and
MATLAB's ode15s. Each member carries the backward differences of its past solution at a
constant spacing :math:`h`, :math:`D_j = \nabla^j y_n` (:math:`j = 0, \dots, k+2`). A step of
order :math:`k` predicts :math:`y^{(0)}_{n+1} = \sum_{j=0}^k D_j` and solves

.. math::
    \alpha_k\,(y_{n+1} - y^{(0)}_{n+1}) + \sum_{j=1}^{k} \Gamma_j D_j = h f(t_{n+1}, y_{n+1}),
    \qquad \Gamma_j = \sum_{i=1}^j \frac1i, \quad \alpha_k = (1 - \kappa_k)\Gamma_k,

i.e. :math:`\sum_{j=1}^k \frac1j \nabla^j y_{n+1} - \kappa_k\Gamma_k\nabla^{k+1}y_{n+1} = h
f_{n+1}`: the BDF of order :math:`k` for :math:`\kappa = 0` (the default: OrdinaryDiffEq's
``QBDF``), the NDF of ode15s, SciPy's ``BDF`` and OrdinaryDiffEq's ``QNDF`` with
Klopfenstein–Shampine's :math:`\kappa` (:data:`~pysciml.native.bdf_coefficients.NDF_KAPPA`).
In the form of :func:`~pysciml.native.newton.newton_solve`,

.. math::
    Y = \psi + c\, f(t_{n+1}, Y), \qquad \psi = y^{(0)}_{n+1} - \frac{1}{\alpha_k}
    \sum_{j=1}^k \Gamma_j D_j, \qquad c = \frac{h}{\alpha_k},

solved by simplified Newton with :math:`W = I - cJ` (LU of :math:`I/c - J`), at most 4
iterations, to SciPy's tolerance :math:`\max(10\epsilon/\mathrm{rtol}, \min(0.03,
\sqrt{\mathrm{rtol}}))` in the norm scaled by :math:`\mathrm{atol} + \mathrm{rtol}|y^{(0)}|`.
:math:`J` is kept across
steps and recomputed (at :math:`(t_{n+1}, y^{(0)})`) only when Newton fails with a stale one;
the step is then retried once with the fresh :math:`J`. The LU is kept while
:math:`c` does not change. With ``linsolve=GMRES(...)`` no Jacobian is formed (Newton–Krylov,
for large states): each Newton correction solves :math:`(I - cJ)\,\delta = r` by GMRES
(:func:`~pysciml.native.linsolve.krylov_solve`) with :math:`Jv` a directional difference of
:math:`f` at
:math:`(t_{n+1}, y^{(0)}_{n+1})` (the point of Newton's first evaluation of :math:`f`, so the
base value costs no extra call) and the user's preconditioner called with
:math:`h\gamma = c`; the Jacobian is then never stale and a Newton failure halves the step.
With :math:`d = y_{n+1} - y^{(0)}_{n+1} = \nabla^{k+1} y_{n+1}`,

.. math::
    \mathrm{err} = C_k\, d, \qquad C_k = \kappa_k \Gamma_k + \frac{1}{k+1},

and on acceptance the differences are updated: :math:`D_{k+2} \leftarrow d - D_{k+1}`,
:math:`D_{k+1} \leftarrow d`, :math:`D_j \leftarrow D_j + D_{j+1}` for :math:`j = k, \dots, 0`.

**Step size and order** (Shampine & Reichelt; SciPy). The step stays constant for :math:`k+1`
accepted steps at the same order; then, with the error estimates of orders :math:`k-1`,
:math:`k`, :math:`k+1`, :math:`e_{k-1} = \|C_{k-1} D_k\|`, :math:`e_k = \|C_k d\|`,
:math:`e_{k+1} = \|C_{k+1} D_{k+2}\|` (after the update), the order with the largest
:math:`\rho_m = e_m^{-1/(m+1)}` is chosen and :math:`h \leftarrow h \min(10, 0.9 \max_m
\rho_m)`. A rejected step (error norm :math:`> 1`) is retried with :math:`h \max(0.2, 0.9
e_k^{-1/(k+1)})`; a Newton failure (after the retry with a fresh :math:`J`) with :math:`h/2`.
(SciPy also scales the safety factor 0.9 by the Newton iteration count; ``newton_solve``
reports no per-member count, and a batch-wide one would couple the members.)
When the step size changes (a rejection, a new order/step, or the loop clamping the step to hit
the end), the differences are re-expressed at the new spacing :math:`\rho h`:
:math:`D_{0..k} \leftarrow (R(\rho) U)^\top D_{0..k}` (SciPy's ``change_D``; see
:func:`~pysciml.native.bdf_coefficients.change_matrix`).

**Dense output** on an accepted step is the interpolating polynomial of degree :math:`k`
through :math:`y_{n+1}, y_n, \dots, y_{n+1-k}` in Newton's backward form (SciPy's
``BdfDenseOutput``): with the updated differences,

.. math::
    y(t_n + \theta h) = D_0 + \sum_{j=1}^{k} D_j \prod_{m=0}^{j-1} \frac{\theta - 1 + m}{m + 1},

which is :math:`y_{n+1}` at :math:`\theta = 1` and :math:`y_n` at :math:`\theta = 0`.

References: G. D. Byrne & A. C. Hindmarsh, "A polyalgorithm for the numerical solution of
ordinary differential equations", ACM TOMS 1 (1975); L. F. Shampine & M. W. Reichelt, "The
MATLAB ODE Suite", SIAM J. Sci. Comput. 18 (1997); SciPy's ``scipy/integrate/_ivp/bdf.py``;
Hairer & Wanner, Solving ODEs I, III.1–2 (error constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..linear_solvers import GMRES, LUFactorization
from .bdf_coefficients import MAX_ORDER, ROWS, BDFCoefficients, BDFTensors
from .controller import error_norm
from .linsolve import LUFactors, krylov_solve, lu_factor, lu_solve, w_matrix
from .newton import newton_solve
from .rosenbrock import jacobian_of
from .stepper import AbstractStepper, CountedRHS, StepResult

__all__ = ["BDF", "BDFCache"]

NEWTON_MAXITER = 4
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
SAFETY = 0.9
NEWTON_FAIL_FACTOR = 0.5


class BDFCache(NamedTuple):
    """What a member carries from step to step (leading dimension ``B`` everywhere)."""

    D: torch.Tensor  # (B, ROWS, N) differences at spacing h_D, D[0] = current state
    order: torch.Tensor  # (B,) int64, the order of the next step
    h_D: torch.Tensor  # (B,) the spacing D is expressed at
    n_equal: torch.Tensor  # (B,) int64 accepted steps at this order and step size
    J: torch.Tensor  # (B, N, N); (B, 0, 0) on the Newton–Krylov path (no Jacobian is kept)
    LU: torch.Tensor  # (B, N, N) factors of I/c_LU - J; (B, 0, 0) on the Krylov path
    P: torch.Tensor  # (B, N, N) the LU's permutation; (B, 0, 0) on the Krylov path
    singular: torch.Tensor  # (B,) bool
    c_LU: torch.Tensor  # (B,) the c = h/alpha_k the LU was built for (NaN: none)
    jac_current: torch.Tensor  # (B,) bool: J was evaluated since the member last moved
    newton_tol: torch.Tensor  # (B,) Newton's convergence tolerance (SciPy's rule)


def _change_D(tab: BDFTensors, D: torch.Tensor, order: torch.Tensor,
              factor: torch.Tensor) -> torch.Tensor:
    r"""Re-express each member's differences at the spacing ``factor`` times the old one:
    :math:`D_{0..k} \leftarrow (R U)^\top D_{0..k}`, other rows unchanged; exactly ``D`` where
    ``factor == 1``."""
    K = MAX_ORDER
    M = tab.M0 - factor[:, None, None] * tab.M1  # (B, K+1, K+1)
    RU = torch.bmm(torch.cumprod(M, 1), tab.U.expand(M.shape))  # (B, K+1, K+1)
    A = torch.nn.functional.pad(RU.transpose(1, 2), (0, ROWS - K - 1, 0, ROWS - K - 1))
    A = torch.where(tab.keep[order], A, tab.eye)
    return torch.where((factor != 1)[:, None, None], A @ D, D)


@dataclass(frozen=True)
class BDF(AbstractStepper):
    r"""Variable-order, variable-step BDF (orders 1 to ``max_order``), batched per member.

    See the module docstring for the maths. Orders 1 to 5 (1 to start), one Newton solve
    per step (one LU per change of :math:`h/\alpha_k`, :math:`J` reused over many steps),
    dense output of the step's order :math:`k`. The step size and order are chosen here
    (``StepResult.h_next``); the loop only accepts or rejects.

    Args:
        max_order: the highest order used (1 to 5).
        kappa: the NDF coefficients :math:`\kappa_0..\kappa_5`; zeros (default) give the
            plain BDF, :data:`~pysciml.native.bdf_coefficients.NDF_KAPPA` the NDF of ode15s.
        linsolve: ``None`` / :class:`~pysciml.LUFactorization` (dense Jacobian and LU) or
            :class:`~pysciml.GMRES` (matrix-free Newton–Krylov; its ``tol`` is relative to
            the Newton tolerance).
    """

    max_order: int = MAX_ORDER
    kappa: tuple[float, ...] = (0.0,) * (MAX_ORDER + 1)
    linsolve: Any = None

    order = 1  # for the loop's initial step: the method starts at order 1
    error_order = 1
    adaptive = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_order, int) or not 1 <= self.max_order <= MAX_ORDER:
            raise ValueError(f"max_order: expected an integer from 1 to {MAX_ORDER}, "
                             f"got {self.max_order!r}")
        if self.linsolve is not None and not isinstance(self.linsolve, (LUFactorization, GMRES)):
            raise TypeError(f"linsolve: expected None, LUFactorization() or GMRES(...), got "
                            f"{type(self.linsolve).__name__}")
        object.__setattr__(self, "kappa", tuple(float(x) for x in self.kappa))
        object.__setattr__(self, "_coefs", BDFCoefficients(self.kappa))

    @property
    def coefficients(self) -> BDFCoefficients:
        return self._coefs  # type: ignore[attr-defined]

    @property
    def krylov(self) -> bool:
        """Whether the Newton iterations solve their linear systems by GMRES."""
        return isinstance(self.linsolve, GMRES)

    def init(self, f: CountedRHS, t, u, f0) -> BDFCache:
        """Order 1, ``D = (u, 1 * f0)`` at the spacing 1 (rescaled to the first step), ``J``
        at ``(t, u)`` (none on the Newton–Krylov path)."""
        B, N = u.shape
        D = torch.cat([u[:, None], f0[:, None], u.new_zeros(B, ROWS - 2, N)], 1)
        if self.krylov:
            J = u.new_zeros(B, 0, 0)
        else:
            J, _ = jacobian_of(f, t, u)
            J = J.to(u.dtype)
        rtol = torch.as_tensor(f.rtol, dtype=u.dtype, device=u.device)
        rtol = rtol.detach().expand(B, N).amin(-1) if rtol.ndim else rtol.detach().expand(B)
        eps = torch.finfo(u.dtype).eps
        newton_tol = torch.maximum(10 * eps / rtol, rtol.sqrt().clamp_max(0.03))
        ones = torch.ones(B, dtype=u.dtype, device=u.device)
        return BDFCache(
            D=D, order=torch.ones(B, dtype=torch.int64, device=u.device), h_D=ones,
            n_equal=torch.zeros(B, dtype=torch.int64, device=u.device), J=J,
            LU=torch.zeros_like(J),
            P=torch.zeros_like(J),
            singular=torch.ones(B, dtype=torch.bool, device=u.device),
            c_LU=torch.full_like(ones, float("nan")),
            jac_current=torch.ones(B, dtype=torch.bool, device=u.device),
            newton_tol=newton_tol)

    def _newton(self, f: CountedRHS, t_new, y_predict, psi, c, running,
                factors: LUFactors | None, newton_tol):
        """One Newton solve; members not running converge at once (zero residual).

        ``factors`` of :math:`I/c - J`, or ``None`` for Newton–Krylov: GMRES on
        :math:`I - cJ` with :math:`J` at ``(t_new, y_predict)``, where ``newton_solve`` first
        evaluates ``f`` (that value is kept as the base of the difference quotients).
        """
        scale = f.atol + f.rtol * y_predict.detach().abs()
        psi = torch.where(running[:, None], psi, y_predict)
        hg = torch.where(running, c, torch.zeros_like(c))
        rhs = f
        if factors is None:
            settings: GMRES = self.linsolve
            precond = f.precond if settings.precond is not None else None
            base: list[torch.Tensor] = []  # f(t_new, y_predict), from newton_solve's first call

            def rhs(t_, y_):
                out = f(t_, y_)
                if not base:
                    base.append(out)
                return out

            def solve_w(r):
                f.add(nlinsolve=1)
                return krylov_solve(f, t_new, y_predict, base[0], hg, r, scale,
                                    tol=settings.tol * newton_tol, restart=settings.restart,
                                    max_restarts=settings.max_restarts, precond=precond)[0]
        else:
            def solve_w(r):
                f.add(nlinsolve=1)
                return lu_solve(factors, r / c[:, None])

        return newton_solve(rhs, t_new, y_predict, psi, hg, solve_w, scale, kappa=newton_tol,
                            max_iter=NEWTON_MAXITER)

    def step(self, f: CountedRHS, t, u, h, cache: BDFCache) -> StepResult:
        tab = self.coefficients.tensors(u.dtype, u.device)
        running = h != 0
        h_safe = torch.where(running, h, cache.h_D)  # stopped members: no rescale, dummy step
        factor = h_safe / cache.h_D
        changed = factor != 1
        k = cache.order
        n_equal = torch.where(changed, 0, cache.n_equal)
        select = running & (n_equal >= k)  # the (k+1)-th step at this order and step size
        c = h_safe / tab.alpha[k]
        need_lu = running & (c != cache.c_LU) & (not self.krylov)
        any_lu, any_changed, any_select = torch.stack([need_lu, changed, select]).any(1).tolist()

        D = _change_D(tab, cache.D, k, factor) if any_changed else cache.D
        pred = tab.predict[k] @ D  # (B, 2, N): the predictor and the explicit part psi
        y_predict, psi = pred[:, 0], pred[:, 1]
        t_new = t + h  # stopped members (h = 0) are evaluated where they are
        J, jac_current = cache.J, cache.jac_current
        factors, c_LU = LUFactors(cache.LU, cache.P, cache.singular), cache.c_LU
        if any_lu:
            factors, c_LU = lu_factor(w_matrix(J, 1.0 / c)), c
            f.add(nfactor=1)
        res = self._newton(f, t_new, y_predict, psi, c, running,
                           None if self.krylov else factors, cache.newton_tol)
        converged, y_new = res.converged, res.y
        failed = running & ~converged
        # Newton–Krylov differentiates f afresh at every step: its Jacobian is never stale
        stale = failed & ~(jac_current | self.krylov)
        any_failed, any_stale = torch.stack([failed, stale]).any(1).tolist()
        if any_stale:
            # retry the members that failed with an old Jacobian, with a fresh one
            J_new, _ = jacobian_of(f, t_new, y_predict)
            J = torch.where(stale[:, None, None], J_new.to(J.dtype), J)
            jac_current = jac_current | stale
            factors, c_LU = lu_factor(w_matrix(J, 1.0 / c)), c
            f.add(nfactor=1)
            retry = self._newton(f, t_new, y_predict, psi, c, stale, factors, cache.newton_tol)
            y_new = torch.where(stale[:, None], retry.y, y_new)
            converged = torch.where(stale, retry.converged, converged)
            failed = running & ~converged
            any_failed = bool(failed.any())
        if any_failed:
            f.add(nnonlinfail=1)

        # the error estimate C_k d; stopped members come back unchanged
        d = torch.where(running[:, None], y_new - y_predict, 0.0)
        y_new = torch.where(running[:, None], y_new, u)
        C = tab.error_const
        err = C[k][:, None] * d
        # errors of the controlled components only (all but in an adjoint's seminorm)
        sel = f.controlled
        u_d, y_d = sel(u.detach()), sel(y_new.detach())
        errn = torch.nan_to_num(error_norm(sel(err.detach()), u_d, y_d, f.rtol, f.atol),
                                nan=float("inf"))
        ok = converged & (errn <= 1)
        kf = k.to(u.dtype)
        shrink = (SAFETY * errn.pow(-1.0 / (kf + 1))).clamp_min(MIN_FACTOR)
        step_factor = torch.where(converged, shrink, NEWTON_FAIL_FACTOR)

        # the differences after an accepted step, and the order / step-size selection
        D_new = tab.update[k] @ D + tab.update_d[k][:, :, None] * d[:, None, :]
        order_new, n_equal_new = k, n_equal + 1
        if any_select:
            rows = torch.stack([k, k + 2], 1)[:, :, None].expand(-1, -1, D.shape[-1])
            D_m, D_p = (sel(x) for x in D_new.detach().gather(1, rows).unbind(1))
            inf = torch.full_like(errn, float("inf"))
            err_m = torch.where(k > 1, error_norm(C[k - 1][:, None] * D_m, u_d, y_d, f.rtol,
                                                  f.atol), inf)
            err_p = torch.where(k < self.max_order, error_norm(C[k + 1][:, None] * D_p, u_d,
                                                               y_d, f.rtol, f.atol), inf)
            norms = torch.nan_to_num(torch.stack([err_m, errn, err_p], 1), nan=float("inf"))
            exponents = -1.0 / (kf[:, None] + tab.offsets)  # orders k-1, k, k+1
            best, choice = norms.pow(exponents).max(1)  # 0 for infinite errors
            order_new = torch.where(select, k + choice - 1, k)
            n_equal_new = torch.where(select, 0, n_equal_new)
            grow = torch.where(select, (SAFETY * best).clamp_max(MAX_FACTOR), 1.0)
            step_factor = torch.where(ok, grow, step_factor)
        else:
            step_factor = torch.where(ok, 1.0, step_factor)
        h_next = h_safe * step_factor

        new_cache = BDFCache(
            D=D_new, order=order_new, h_D=h_safe, n_equal=n_equal_new, J=J, LU=factors.LU,
            P=factors.P, singular=factors.singular, c_LU=c_LU,
            jac_current=jac_current, newton_tol=cache.newton_tol)
        stages = (tab.dense[k][:, :, None] * D_new[:, : MAX_ORDER + 1]).transpose(0, 1)
        return StepResult(y_new, err, stages, new_cache, failed=failed, h_next=h_next)

    def merge(self, cache: BDFCache, new: BDFCache, accept: torch.Tensor) -> BDFCache:
        """Accepted members take the new history; all keep the newest ``J`` and LU."""
        a1, a3 = accept, accept[:, None, None]
        return BDFCache(
            D=torch.where(a3, new.D, cache.D), order=torch.where(a1, new.order, cache.order),
            h_D=torch.where(a1, new.h_D, cache.h_D),
            n_equal=torch.where(a1, new.n_equal, cache.n_equal),
            J=new.J, LU=new.LU, P=new.P, singular=new.singular, c_LU=new.c_LU,
            jac_current=new.jac_current & ~a1, newton_tol=new.newton_tol)

    def interpolate(self, u, h, stages, theta):
        r""":math:`D_0 + \sum_{j \ge 1} D_j \prod_{m<j} (\theta - 1 + m)/(m + 1)` (rows beyond
        the step's order are zero in ``stages``)."""
        m = torch.arange(MAX_ORDER, dtype=stages.dtype, device=stages.device)
        x = (theta[..., None] - 1 + m) / (m + 1)  # (*M, B, K)
        p = torch.cumprod(x, -1)
        return stages[0] + torch.einsum("...bj,jbn->...bn", p, stages[1:])
