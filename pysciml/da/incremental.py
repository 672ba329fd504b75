r"""Incremental 4DVar: Gauss–Newton outer loops with conjugate-gradient inner loops.

With the preconditioned controls :math:`v` (:mod:`pysciml.da.controls`) and the normalised
residual :math:`d(v) = R^{-1/2}\big(y - \mathcal H(\mathcal M(x(v)))\big)`, the cost is
:math:`J(v) = \tfrac12\|v\|^2_P + \tfrac12\|d(v)\|^2`, where :math:`P` is the identity on the
control variables that have a background and zero on the others. Outer loop :math:`k` linearises
:math:`d(v_k + \delta) \approx d_k - \hat G_k\delta` with the tangent-linear model
:math:`\hat G_k = -\partial d/\partial v|_{v_k}` and minimises the quadratic

.. math::
    q(\delta) = \tfrac12\|v_k + \delta\|^2_P + \tfrac12\|d_k - \hat G_k\delta\|^2,
    \qquad (P + \hat G_k^\top \hat G_k)\,\delta = \hat G_k^\top d_k - P v_k,

by conjugate gradients (Hestenes & Stiefel 1952), then :math:`v_{k+1} = v_k + \alpha\delta`
with :math:`\alpha` from Armijo backtracking on the nonlinear cost (:math:`\alpha = 1` when
the linearisation holds: a damped Gauss–Newton method).
:math:`\hat G_k^\top w` is a reverse-mode derivative through the solve recorded once per outer
loop (autograd of the solver's steps, whatever the ``sensealg``), and the tangent-linear
:math:`\hat G_k\delta` is the derivative of that adjoint with respect to :math:`w` (a second
reverse pass, "double backward"): both are exact derivatives of the same discrete model, so they
are exact transposes and the CG operator is symmetric. On a linear model with a linear
:math:`\mathcal H`, :math:`q = J` and one outer loop gives the exact minimiser (the BLUE).

For a batch of windows the inner problem is block-diagonal and one CG runs on all of it (inner
products over the whole batch): exact, though a window may need more iterations than alone.

Reference: P. Courtier, J.-N. Thépaut and A. Hollingsworth, "A strategy for operational
implementation of 4D-Var, using an incremental approach", Q. J. R. Meteorol. Soc. 120 (1994)
1367–1387.
"""

from __future__ import annotations

import torch

__all__ = ["gauss_newton", "conjugate_gradient"]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def conjugate_gradient(apply, b: list[torch.Tensor], max_iter: int, tol: float
                       ) -> tuple[list[torch.Tensor], int]:
    r"""Solve :math:`A x = b` for a symmetric positive (semi-)definite ``apply`` :math:`= A`,
    from :math:`x = 0`, until :math:`\|r\| \le` ``tol`` :math:`\|b\|` or ``max_iter``
    iterations. ``b`` and ``x`` are lists of tensors (one per control variable)."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    d = [t.clone() for t in b]
    rr = _dot(r, r)
    bound = (tol ** 2) * rr
    if float(rr) == 0.0:
        return x, 0
    for it in range(1, max_iter + 1):
        ad = apply(d)
        curvature = _dot(d, ad)
        if not float(curvature) > 0:
            return x, it - 1  # no descent direction left (semi-definite A, numerically)
        alpha = rr / curvature
        x = [xi + alpha * di for xi, di in zip(x, d)]
        r = [ri - alpha * ai for ri, ai in zip(r, ad)]
        rr_new = _dot(r, r)
        if float(rr_new) <= float(bound):
            return x, it
        d = [ri + (rr_new / rr) * di for ri, di in zip(r, d)]
        rr = rr_new
    return x, max_iter


class _Linearisation:
    r"""The tangent-linear model and its adjoint about the controls ``v`` (one outer loop)."""

    def __init__(self, fdv, v: dict[str, torch.Tensor]):
        self.fdv, self.v, self.names = fdv, v, list(v)
        vk = {n: x.clone().requires_grad_(True) for n, x in v.items()}
        self.leaves = [vk[n] for n in self.names]
        u0, p = fdv.states(vk)
        self.d = fdv.normalised_residual(u0, p, direct=True)  # graph recorded once
        self.solves = 1
        self._adjoint_of_dummy = None

    def adjoint(self, w: torch.Tensor) -> list[torch.Tensor]:
        r""":math:`\hat G^\top w = -(\partial d/\partial v)^\top w` (reverse mode)."""
        grads = torch.autograd.grad(self.d, self.leaves, grad_outputs=-w, retain_graph=True,
                                    allow_unused=True)
        return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, self.leaves)]

    def tangent(self, delta: list[torch.Tensor]) -> torch.Tensor:
        r""":math:`\hat G\delta = -(\partial d/\partial v)\,\delta`, by reverse mode over the
        adjoint: :math:`(\partial d/\partial v)\delta = \partial_w \langle
        (\partial d/\partial v)^\top w, \delta\rangle` (linear in the dummy :math:`w`)."""
        if self._adjoint_of_dummy is None:
            self._dummy = torch.zeros_like(self.d, requires_grad=True)
            grads = torch.autograd.grad(self.d, self.leaves, grad_outputs=self._dummy,
                                        retain_graph=True, create_graph=True, allow_unused=True)
            self._adjoint_of_dummy = grads
        pairs = [(g, t) for g, t in zip(self._adjoint_of_dummy, delta) if g is not None]
        if not pairs:
            return torch.zeros_like(self.d)
        (out,) = torch.autograd.grad([g for g, _ in pairs], self._dummy,
                                     grad_outputs=[t for _, t in pairs], retain_graph=True,
                                     allow_unused=True)
        return torch.zeros_like(self.d) if out is None else -out


def gauss_newton(fdv, v: dict[str, torch.Tensor], outer_loops: int, inner_max_iter: int,
                 inner_tol: float, gtol: float = 0.0):
    r"""Incremental 4DVar from the controls ``v`` of the :class:`~pysciml.da.FourDVar`
    ``fdv``; returns ``(v, history, iterations, model solves)`` (``iterations`` counts CG
    iterations over all outer loops; each costs two reverse passes, no model solve). Stops
    early when the gradient of :math:`J`, :math:`-(\hat G^\top d - P v)`, is at most ``gtol``
    in max-norm."""
    names = list(v)
    prior = {n: fdv.variables[n].background is not None for n in names}
    history: list[float] = []
    iterations = solves = 0
    v = {n: x.detach() for n, x in v.items()}
    for _ in range(outer_loops):
        lin = _Linearisation(fdv, v)
        jb = sum(0.5 * v[n].square().sum() for n in names if prior[n])
        history.append(float(0.5 * lin.d.detach().square().sum() + jb))

        def normal(delta: list[torch.Tensor], lin=lin) -> list[torch.Tensor]:
            gtg = lin.adjoint(lin.tangent(delta))
            return [g + t if prior[n] else g for n, g, t in zip(names, gtg, delta)]

        rhs = lin.adjoint(lin.d.detach())
        rhs = [g - v[n] if prior[n] else g for n, g in zip(names, rhs)]
        if max(float(g.abs().max()) for g in rhs) <= gtol:
            solves += lin.solves
            break
        step, used = conjugate_gradient(normal, rhs, inner_max_iter, inner_tol)
        iterations += used
        solves += lin.solves
        new, trials = _backtrack(fdv, v, step, rhs, history[-1])
        solves += trials
        if new is None:  # no decrease along the step: converged as far as it can go
            break
        v = new
    with torch.no_grad():
        history.append(float(fdv.cost_of_controls(v, direct=True).total))
    solves += 1
    return v, history, iterations, solves


def _backtrack(fdv, v, step, rhs, cost, max_halvings: int = 12):
    r"""Armijo backtracking on the nonlinear cost along the Gauss–Newton step :math:`\delta`:
    the first :math:`\alpha \in \{1, \tfrac12, \dots\}` with
    :math:`J(v + \alpha\delta) \le J(v) + 10^{-4}\alpha\,\nabla J\cdot\delta`
    (:math:`\nabla J = -`\ ``rhs``). A full step is taken whenever the linearisation is good
    (always on a linear model); strongly nonlinear windows get a damped step instead of a
    divergent one. Returns the new controls (``None`` when no step size decreases the cost)
    and the number of cost evaluations."""
    slope = -float(_dot(rhs, step))
    alpha, trials = 1.0, 0
    with torch.no_grad():
        for _ in range(max_halvings):
            trial = {n: v[n] + alpha * s for n, s in zip(v, step)}
            value = float(fdv.cost_of_controls(trial, direct=True).total)
            trials += 1
            if value <= cost + 1e-4 * alpha * slope:
                return trial, trials
            alpha *= 0.5
    return None, trials
