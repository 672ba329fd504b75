r"""Linear solves of the implicit methods: batched dense LU.

The implicit families solve :math:`W x = r` with :math:`W = \frac{1}{h\gamma} I - J` (or
:math:`I - h\gamma J`) for every batch member, one factorisation reused over a step's stages
and, where the method allows, over several steps. Factorisation and solves go through
``torch.linalg.lu_factor_ex`` / ``lu_solve`` (LAPACK on CPU, cuSOLVER/MAGMA on CUDA); ``info``
flags singular matrices without a host synchronisation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["LUFactors", "lu_factor", "lu_solve", "w_matrix"]


class LUFactors(NamedTuple):
    """The LU factors of a batch of matrices; ``singular`` is ``(B,)`` bool."""

    LU: torch.Tensor
    pivots: torch.Tensor
    singular: torch.Tensor


def w_matrix(J: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`W = \mathrm{diag}(s) - J`, per member: ``J`` ``(B, N, N)``, ``scale`` ``(B,)``
    (:math:`s = 1/(h\gamma)`)."""
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    return scale[:, None, None] * eye - J


def lu_factor(W: torch.Tensor) -> LUFactors:
    """Factorise ``W`` ``(B, N, N)`` without synchronising with the host."""
    LU, pivots, info = torch.linalg.lu_factor_ex(W)
    singular = (info != 0) | ~torch.isfinite(LU.diagonal(dim1=-2, dim2=-1)).all(-1)
    return LUFactors(LU, pivots, singular)


def lu_solve(factors: LUFactors, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``W x = rhs`` for ``rhs`` ``(B, N)`` with the factors of ``W``."""
    return torch.linalg.lu_solve(factors.LU, factors.pivots, rhs[..., None])[..., 0]
