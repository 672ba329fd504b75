"""Linear-solver descriptors for the implicit methods (LinearSolve.jl's names).

An implicit method solves :math:`(I - h\\gamma J)\\,x = r` in every Newton iteration. By default
it forms the Jacobian and factorises (``LUFactorization``); for large states (method-of-lines
PDEs with ≥ 10⁴ unknowns) pass ``linsolve=GMRES(...)`` to the algorithm: Newton–Krylov, with
Jacobian–vector products by a directional difference of ``f`` and an optional preconditioner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AbstractLinearSolver", "LUFactorization", "GMRES"]


class AbstractLinearSolver:
    """How the implicit methods solve their linear systems."""


@dataclass(frozen=True)
class LUFactorization(AbstractLinearSolver):
    """The dense batched Jacobian and its LU factorisation (reused across steps)."""


@dataclass(frozen=True)
class GMRES(AbstractLinearSolver):
    r"""Matrix-free restarted GMRES on :math:`(I - h\gamma J)x = r`.

    :math:`Jv` is the directional difference :math:`(f(t, u + \epsilon v) - f(t, u))/\epsilon`
    with :math:`\epsilon = \sqrt{\epsilon_{mach}}\,\max(\|u\|, 1)/\|v\|` (one call of ``f``
    per product, as CVODE's default).

    Args:
        restart: Krylov vectors kept before a restart.
        max_restarts: restarts before giving up (the Newton iteration then fails and the step
            is retried smaller).
        precond: an optional right preconditioner ``precond(t, u, hgamma, r) -> z`` with
            ``z ≈ (I - hγ J)^{-1} r``; ``t``, ``hgamma`` of shape ``batch_shape``, ``u`` and
            ``r`` of the shape of ``u0``.
        tol: the residual tolerance, relative to the Newton convergence tolerance.
    """

    restart: int = 30
    max_restarts: int = 10
    precond: Callable | None = None
    tol: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.restart, int) or self.restart < 1:
            raise ValueError(f"restart: expected a positive int, got {self.restart!r}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts: expected an int >= 0, got {self.max_restarts!r}")
        if self.precond is not None and not callable(self.precond):
            raise TypeError("precond: expected a callable precond(t, u, hgamma, r)")
        if not 0 < self.tol <= 1:
            raise ValueError(f"tol: expected a number in (0, 1], got {self.tol!r}")
