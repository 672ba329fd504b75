r"""The parameter gradient of the quadrature adjoint:
:math:`\frac{dL}{dp} = \int_{t_0}^{t_1} \lambda(t)^\top \frac{\partial f}{\partial p}(t, u(t))\,dt`,

by :math:`n`-point Gauss–Legendre quadrature on every step of the backward solve (exact for
polynomials of degree :math:`2n - 1`), with :math:`\lambda(t)` from the backward dense output and
:math:`u(t)` from the forward one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..interpolation import DenseHistory
from .equations import AdjointEquations

__all__ = ["gauss_legendre_integral"]


def gauss_legendre_integral(lam_history: DenseHistory, u_history: DenseHistory,
                            eq: AdjointEquations, nodes: int) -> torch.Tensor:
    """``∫ λᵀ ∂f/∂p dt`` over the span of ``lam_history`` (packed ``(1, B*N)`` steps)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    t, h, _, _ = lam_history._stack()  # (1, M)
    t, h = t[0], h[0]
    taken = h != 0
    t, h = t[taken], h[taken]
    ref = h
    theta = torch.as_tensor((x + 1) / 2, dtype=ref.dtype, device=ref.device)
    weights = torch.as_tensor(w / 2, dtype=ref.dtype, device=ref.device)
    times = (t[:, None] + theta[None, :] * h[:, None]).reshape(-1)  # (M * n,)
    # the backward solve runs from t1 to t0: each step contributes -h (its signed length)
    scale = (-h[:, None] * weights[None, :]).reshape(-1)
    lam = lam_history.evaluate(times)[:, 0, :]  # (Q, B*N)
    u = u_history.evaluate(times)  # (Q, B, N)
    total = torch.zeros(eq.P, dtype=ref.dtype, device=ref.device)
    for q in range(times.shape[0]):
        _, _, vjp_p = eq.vjp(times[q], u[q], lam[q].reshape(eq.B, eq.N), wrt_u=False)
        total = total + scale[q] * vjp_p
    return total
