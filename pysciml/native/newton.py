r"""Simplified Newton iteration for the implicit stage equations of SDIRK and BDF methods.

Every implicit stage of these families has the form

.. math::
    G(Y) = Y - \psi - h\gamma\, f(t, Y) = 0,

solved per batch member by the simplified Newton iteration

.. math::
    W\, \Delta_k = \psi + h\gamma f(t, Y_k) - Y_k, \qquad Y_{k+1} = Y_k + \Delta_k, \qquad
    W = I - h\gamma J,

with one LU factorisation of :math:`W` reused over iterations, stages and, while it converges
well, steps. Convergence is judged as in Hairer & Wanner II, IV.8: with the rate
:math:`\theta_k = \|\Delta_k\| / \|\Delta_{k-1}\|` and :math:`\eta_k = \theta_k/(1-\theta_k)`,
stop when :math:`\eta_k \|\Delta_k\| \le \kappa` (norms scaled by the tolerances, so
:math:`\kappa = 10^{-2}` asks for the iteration error to be 1 % of the local error allowed);
declare divergence when :math:`\theta_k \ge 1` (:math:`\theta_1 \ge 4`: the first correction
may overshoot on a nonlinear problem) or when the iterations run out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["NewtonResult", "newton_solve", "scaled_norm"]


class NewtonResult(NamedTuple):
    """The stage values, which members converged, and the worst contraction rate seen."""

    y: torch.Tensor  # (B, N)
    fy: torch.Tensor  # (B, N) f at the final iterate
    converged: torch.Tensor  # (B,) bool
    rate: torch.Tensor  # (B,) the last contraction rate theta
    iterations: int


def scaled_norm(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """RMS norm of ``x / scale`` per member."""
    return torch.linalg.vector_norm(x / scale, dim=-1) * x.shape[-1] ** -0.5


def newton_solve(f: Callable, t: torch.Tensor, guess: torch.Tensor, psi: torch.Tensor,
                 hg: torch.Tensor, solve_w: Callable[[torch.Tensor], torch.Tensor],
                 scale: torch.Tensor, *, kappa: float = 1e-2,
                 max_iter: int = 10) -> NewtonResult:
    r"""Solve :math:`Y = \psi + h\gamma f(t, Y)` for every member.

    Args:
        f: the flattened right-hand side.
        t: stage times ``(B,)``.
        guess: the starting iterate ``(B, N)`` (a predictor).
        psi: the explicit part ``(B, N)``.
        hg: :math:`h\gamma` per member ``(B,)``.
        solve_w: ``r -> W^{-1} r`` with the current factorisation of :math:`W`.
        scale: ``atol + rtol |u|``, ``(B, N)``: the norm of the convergence test.
        kappa: the convergence tolerance relative to the local error allowed.
        max_iter: the iteration budget.

    Members that do not converge come back with ``converged = False`` (their step is to be
    rejected with a smaller step and a fresh Jacobian). Costs one host synchronisation per
    iteration (to stop as soon as every member has converged).
    """
    y = guess
    hgc = hg[:, None]
    B = y.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=y.device)
    failed = torch.zeros_like(done)
    rate = torch.zeros(B, dtype=y.dtype, device=y.device)
    prev = torch.full_like(rate, float("inf"))
    fy = f(t, y)
    iterations = 0
    for k in range(max_iter):
        iterations = k + 1
        delta = solve_w(psi + hgc * fy - y)
        active = ~(done | failed)
        y = torch.where(active[:, None], y + delta, y)
        norm = scaled_norm(delta, scale)
        norm = torch.nan_to_num(norm, nan=float("inf"))
        if k > 0:
            theta = norm / prev
            eta = theta / (1 - theta).clamp_min(1e-12)
        else:
            theta = torch.zeros_like(norm)
            eta = torch.ones_like(norm)  # first iterate: no rate yet, use the norm alone
        # a correction far below the tolerance has converged, whatever its ratio to the last
        # (both may be round-off)
        now = active & torch.isfinite(norm) & ((eta * norm <= kappa) | (norm <= 1e-3 * kappa))
        rate = torch.where(active & (k > 0) & torch.isfinite(theta), theta, rate)
        # the first correction may overshoot on a nonlinear problem: tolerate one growth,
        # up to a factor 4, before calling it divergence
        diverging = (theta >= 4) if k == 1 else (theta >= 1)
        failed = failed | (active & ~now & (diverging | ~torch.isfinite(norm)))
        done = done | now
        prev = norm
        fy_new = f(t, y)
        fy = torch.where(active[:, None], fy_new, fy)
        if not bool((~(done | failed)).any()):
            break
    return NewtonResult(y, fy, done & ~failed, rate, iterations)
