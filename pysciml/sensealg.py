r"""Sensitivity algorithms: how ``solve`` differentiates, shared by both runtimes.

For a loss :math:`L(u(s_1), \dots, u(s_S))` of the saved values, the continuous adjoint
:math:`\lambda(t)` solves, backwards from :math:`t_1` to :math:`t_0`,

.. math::
    \dot\lambda = -\Big(\frac{\partial f}{\partial u}\Big)^{\!\top}\lambda, \qquad
    \lambda(s_k^-) = \lambda(s_k^+) + \frac{\partial L}{\partial u(s_k)},

and the gradients are

.. math::
    \frac{dL}{du_0} = \lambda(t_0), \quad
    \frac{dL}{dp} = \int_{t_0}^{t_1} \lambda^\top \frac{\partial f}{\partial p}\,dt, \quad
    \frac{dL}{ds_k} = \frac{\partial L}{\partial u(s_k)}^{\!\top} f(s_k, u(s_k)), \quad
    \frac{dL}{dt_0} = -\lambda(t_0)^\top f(t_0, u_0).

Which to choose:

* :class:`DirectBackprop` (the default): autograd records every step. The exact gradient of the
  computed solution, the fastest for small and medium problems; memory grows with the number of
  steps times the state size.
* :class:`InterpolatingAdjoint`: solves the adjoint ODE backwards using the forward solution's
  dense output for :math:`u(t)`. Memory O(steps × state) without autograd graphs, or
  O(checkpoints × state) with ``checkpointing=True`` (the forward is re-solved between
  checkpoints). The robust choice for long or large solves and ``nn.Module`` right-hand sides.
* :class:`QuadratureAdjoint`: solves only for :math:`\lambda` and computes
  :math:`dL/dp` by Gauss–Legendre quadrature afterwards. Cheapest when there are many parameters
  and the state is small; needs the forward dense output in memory.
* :class:`GaussAdjoint`: like :class:`QuadratureAdjoint`, but each step of the backward solve
  adds its Gauss–Legendre share of :math:`dL/dp` as it is taken, so the backward dense output
  is never stored; with ``checkpointing=True`` the forward dense output is not stored either.
  The recommended adjoint for stiff problems: the implicit backward solve is for
  :math:`\lambda` alone, per batch member, with Jacobian :math:`-J^\top`
  (:math:`O(n^3 + p)` per factorisation, against :math:`O((n + p)^3)` for the interpolating
  and backsolve adjoints, whose packed state carries the parameter integral).
* :class:`BacksolveAdjoint`: re-integrates :math:`u` backwards alongside :math:`\lambda` (memory
  O(state)); unstable for stiff or dissipative problems, where the backward :math:`u` diverges.
  The state is reset to the saved forward values at each save time.

The adjoint methods give the gradient of the exact solution up to the tolerances of the
backward solve (``rtol``/``atol``, by default those of the forward solve). The backward solve uses
the forward algorithm unless ``alg`` says otherwise: an implicit forward method (Rosenbrock,
ESDIRK, BDF) gives an implicit backward solve, as the adjoint of a stiff problem is stiff (an
IMEX method runs fully implicit there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AbstractSensitivityAlgorithm", "AbstractAdjoint", "DirectBackprop",
           "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint"]


class AbstractSensitivityAlgorithm:
    """How gradients flow through a solve."""


@dataclass(frozen=True)
class DirectBackprop(AbstractSensitivityAlgorithm):
    """Differentiate through the solver's operations with autograd (discretise-then-optimise).

    The step-size decisions are treated as constants (as in every adaptive solver's autograd).
    """


@dataclass(frozen=True)
class AbstractAdjoint(AbstractSensitivityAlgorithm):
    """A continuous adjoint (optimise-then-discretise).

    Args:
        rtol, atol: tolerances of the backward solve; ``None`` uses the forward solve's.
        alg: the algorithm of the backward solve; ``None`` uses the forward algorithm.
    """

    rtol: float | None = None
    atol: float | None = None
    alg: Any = None


@dataclass(frozen=True)
class BacksolveAdjoint(AbstractAdjoint):
    """Solve ``[u, λ, ∫λᵀ∂f/∂p]`` backwards from the final state (Chen et al. 2018).

    Memory O(state); the backward ``u`` is reset to the forward values at each save time.
    """


def _check_checkpoints(checkpointing: Any, checkpoints: Any) -> None:
    if not isinstance(checkpointing, bool):
        raise TypeError(f"checkpointing: expected a bool, got {checkpointing!r}")
    if checkpoints is not None and (not isinstance(checkpoints, int)
                                    or isinstance(checkpoints, bool) or checkpoints < 1):
        raise ValueError(f"checkpoints: expected a positive int or None, got {checkpoints!r}")
    if checkpoints is not None and not checkpointing:
        raise ValueError("checkpoints: only meaningful with checkpointing=True")


def _check_nodes(nodes: Any) -> None:
    if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= 8:
        raise ValueError(f"nodes: expected an int in [1, 8], got {nodes!r}")


@dataclass(frozen=True)
class InterpolatingAdjoint(AbstractAdjoint):
    """Solve ``[λ, ∫λᵀ∂f/∂p]`` backwards, with ``u(t)`` from the forward dense output
    (SciMLSensitivity's ``InterpolatingAdjoint``).

    Args:
        checkpointing: store only the states at checkpoints during the forward solve and
            re-solve each interval (with dense output) during the backward pass.
        checkpoints: the number of evenly spaced checkpoints (in addition to the save times), or
            ``None`` for the save times alone.
    """

    checkpointing: bool = False
    checkpoints: int | None = None

    def __post_init__(self) -> None:
        _check_checkpoints(self.checkpointing, self.checkpoints)


@dataclass(frozen=True)
class QuadratureAdjoint(AbstractAdjoint):
    """Solve ``λ`` backwards with ``u(t)`` from the forward dense output, then
    ``dL/dp = ∫ λᵀ ∂f/∂p dt`` by Gauss–Legendre quadrature on each backward step
    (SciMLSensitivity's ``QuadratureAdjoint``).

    Args:
        nodes: Gauss–Legendre nodes per step (exact for polynomials of degree ``2 nodes - 1``).
    """

    nodes: int = 3

    def __post_init__(self) -> None:
        _check_nodes(self.nodes)


@dataclass(frozen=True)
class GaussAdjoint(AbstractAdjoint):
    r"""Solve :math:`\lambda` backwards and accumulate
    :math:`dL/dp = \int \lambda^\top \partial f/\partial p\,dt` by Gauss–Legendre quadrature on
    each step of the backward solve as it is accepted, with :math:`\lambda` from that step's
    interpolant and :math:`u(t)` from the forward dense output (SciMLSensitivity's
    ``GaussAdjoint``). Neither the backward dense output nor a parameter part of the adjoint
    state is kept: memory O(forward steps × state), or O(checkpoints × state) with
    ``checkpointing``; the implicit backward solve of a stiff problem factorises only
    :math:`I - h\gamma(-J^\top)` per member.

    Args:
        nodes: Gauss–Legendre nodes per step (exact for polynomials of degree
            ``2 nodes - 1``).
        checkpointing: store only the states at checkpoints during the forward solve and
            re-solve each interval (with dense output) during the backward pass.
        checkpoints: the number of evenly spaced checkpoints (in addition to the save times), or
            ``None`` for the save times alone.
    """

    nodes: int = 3
    checkpointing: bool = False
    checkpoints: int | None = None

    def __post_init__(self) -> None:
        _check_nodes(self.nodes)
        _check_checkpoints(self.checkpointing, self.checkpoints)
