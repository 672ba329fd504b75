"""The interface between the time loop and a solver family: take one step, interpolate in it.

A stepper holds settings only. The loop owns the state: the time ``t`` and step ``h`` of shape
``(B,)``, the state ``u`` of shape ``(B, N)``, and the stepper's ``cache`` (whatever the family
carries from step to step: the FSAL derivative, a Jacobian, a factorisation, a history).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .tableau import combine

__all__ = ["AbstractStepper", "AbstractTableauStepper", "WrappingStepper", "StepResult", "RHS",
           "StageWeightInterpolation", "CountedRHS"]

RHS = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""The flattened right-hand side ``f(t: (B,), u: (B, N)) -> (B, N)`` the loop works with."""


class CountedRHS:
    """The right-hand side as steppers see it: callable, with the solve's work counters.

    ``jac``: an optional user Jacobian ``jac(t (B,), u (B, N)) -> (B, N, N)``; ``rtol``,
    ``atol``: the solve's tolerances (implicit methods scale their nonlinear-solver tests by
    them); ``parts``: ``(f_stiff, f_nonstiff)`` of a split problem, for IMEX methods (``f``
    is then their sum); ``precond``: a flattened Krylov preconditioner
    ``(t (B,), u (B, N), hgamma (B,), r (B, N)) -> (B, N)``. Steppers add to ``njac``,
    ``nfactor``, ``nlinsolve`` and ``nnonlinfail``; calls are counted in ``calls``.
    ``error_components``: the error of the first ``k`` components only is controlled (a
    seminorm; the rest are quadratures that do not feed back); :meth:`controlled` selects them
    for steppers that measure errors themselves (BDF's order selection).
    """

    def __init__(self, f: RHS, jac: Callable | None = None, rtol=1e-3, atol=1e-6,
                 parts: tuple[RHS, RHS] | None = None, precond: Callable | None = None,
                 error_components: int | None = None):
        self.f = f
        self.error_components = error_components
        self.precond = precond
        self.jac = jac
        self.parts = None if parts is None else tuple(self._counted(g) for g in parts)
        self.rtol = rtol
        self.atol = atol
        self.calls = 0
        self.njac = 0
        self.nfactor = 0
        self.nlinsolve = 0
        self.nnonlinfail = 0
        self.stacked_jacobian: bool | None = None  # see jacobian_and_time_derivative
        self.autonomous: bool | None = None  # see rosenbrock.time_derivative

    counting = True
    """Whether calls and :meth:`add` update the counters (a compiled or captured loop turns
    counting off and multiplies the increments of one eager iteration instead)."""

    def __call__(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self.counting:
            self.calls += 1
        return self.f(t, u)

    def add(self, njac: int = 0, nfactor: int = 0, nlinsolve: int = 0,
            nnonlinfail: int = 0) -> None:
        """Count work done by a stepper (a no-op while ``counting`` is off)."""
        if self.counting:
            self.njac += njac
            self.nfactor += nfactor
            self.nlinsolve += nlinsolve
            self.nnonlinfail += nnonlinfail

    def controlled(self, x: torch.Tensor) -> torch.Tensor:
        """The error-controlled components of ``x`` ``(B, N)`` (all unless
        ``error_components`` is set)."""
        k = self.error_components
        return x if k is None else x[..., :k]

    def _counted(self, g: RHS) -> RHS:
        """A part of a split right-hand side; a call of each part counts half of ``nf``."""
        def part(t, u):
            if self.counting:
                self.calls += 0.5
            return g(t, u)
        part.stacked_jacobian = None  # this part's own verdict (see jacobian_and_time_derivative)
        return part


class StepResult(NamedTuple):
    """One trial step from ``(t, u)`` over ``h``.

    ``u_new``: the proposed state; ``err``: the local error estimate (``None`` for fixed-step
    methods); ``stages``: what the interpolant needs, shape ``(s, B, N)``; ``cache``: the cache to
    keep if the step is accepted; ``failed``: ``(B,)`` members whose nonlinear solve did not
    converge (the loop rejects them with the largest cut, and ends them with
    ``ConvergenceFailure`` when the step size can shrink no further); ``h_next``: ``(B,)`` the
    next step size, for families that choose it themselves (BDF with its order selection),
    used instead of the loop's controller.
    """

    u_new: torch.Tensor
    err: torch.Tensor | None
    stages: torch.Tensor
    cache: Any
    failed: torch.Tensor | None = None
    h_next: torch.Tensor | None = None


class AbstractStepper(abc.ABC):
    """One solver family's step. Subclasses are final; see ``explicit.ExplicitRungeKutta``."""

    order: int
    error_order: int | None
    adaptive: bool
    capturable = False
    """Whether a step is pure device work, without host synchronisation, so that the loop can
    be run as one unit: captured in a CUDA graph or compiled (:mod:`pysciml.native.device_loop`)."""

    @abc.abstractmethod
    def init(self, f: RHS, t: torch.Tensor, u: torch.Tensor, f0: torch.Tensor) -> Any:
        """The cache at the start of an integration (or after a jump of ``u``)."""

    @abc.abstractmethod
    def step(self, f: RHS, t: torch.Tensor, u: torch.Tensor, h: torch.Tensor,
             cache: Any) -> StepResult:
        """A trial step. Members with ``h = 0`` must come back unchanged and finite."""

    @abc.abstractmethod
    def merge(self, cache: Any, new: Any, accept: torch.Tensor) -> Any:
        """The cache after the step: ``new`` for accepted members, ``cache`` for the rest."""

    def dense_stages(self, f: RHS, t: torch.Tensor, u: torch.Tensor, h: torch.Tensor,
                     result: StepResult) -> torch.Tensor:
        """The stages the interpolant needs (a method may add extra ones here, lazily)."""
        return result.stages

    @abc.abstractmethod
    def interpolate(self, u: torch.Tensor, h: torch.Tensor, stages: torch.Tensor,
                    theta: torch.Tensor) -> torch.Tensor:
        """The dense output at ``t + theta * h``: ``u`` ``(B, N)``, ``h`` ``(B,)``, ``stages``
        ``(s, B, N)`` from :meth:`dense_stages`, ``theta`` of shape ``(*M, B)`` (several
        fractions per member at once) → ``(*M, B, N)``."""

    def interpolation_coefficients(self, u: torch.Tensor, h: torch.Tensor,
                                   stages: torch.Tensor) -> torch.Tensor | None:
        r"""The dense output over one step as a polynomial in :math:`\theta`,
        :math:`u(t + \theta h) = \sum_{j=0}^{d} C_j \theta^j`: ``C`` of shape ``(B, d + 1, N)``
        (arguments as in :meth:`interpolate`), so that repeated queries inside the step cost one
        small product each; ``None`` when the family does not provide it."""
        return None


class StageWeightInterpolation:
    r"""The dense output of a Runge–Kutta tableau with polynomial weights (its ``interp``
    rows :math:`B_{ij}`):

    .. math::
        u(t + \theta h) = u + h \sum_i b_i(\theta) k_i, \qquad
        b_i(\theta) = \sum_{j=1}^{d} B_{ij} \theta^j

    (Hairer, Nørsett & Wanner I, II.6). Mixed into the explicit and the SDIRK steppers."""

    def _weight_sums(self, stages: torch.Tensor) -> torch.Tensor:
        r""":math:`c_j = \sum_i B_{ij} k_i` for :math:`j = 1, \dots, d`: ``(d, B, N)`` from
        ``stages`` ``(s, B, N)``, one product over the stages."""
        tab = self.tableau.tensors(stages.dtype, stages.device)
        s, B, N = stages.shape
        return combine(tab.interp.T, stages.reshape(s, B * N)).view(-1, B, N)

    def interpolate(self, u, h, stages, theta):
        r"""``stages`` ``(s, B, N)``, ``theta`` ``(*M, B)`` → ``(*M, B, N)``, by Horner's scheme
        in :math:`\theta` over the step's coefficients :math:`c_j = \sum_i B_{ij} k_i`:

        .. math::
            u(t + \theta h) = u + h\theta\,(c_1 + \theta(c_2 + \dots + \theta c_d))

        (one product over the stages, then ``d`` multiply-adds on the output's shape; no
        powers of :math:`\theta`, no per-member matrix products)."""
        c = self._weight_sums(stages)
        th = theta[..., None]  # (*M, B, 1)
        acc = c[-1]
        for j in range(c.shape[0] - 2, -1, -1):
            acc = torch.addcmul(c[j], th, acc)
        return torch.addcmul(u, h[:, None] * th, acc)

    def interpolation_coefficients(self, u, h, stages):
        r""":math:`C_0 = u`, :math:`C_j = h c_j` (:meth:`_weight_sums`): ``(B, d + 1, N)``."""
        higher = self._weight_sums(stages).transpose(0, 1) * h[:, None, None]
        return torch.cat([u[:, None], higher], 1)


class AbstractTableauStepper(AbstractStepper):
    """A one-step family whose orders come from its coefficient table (``self.tableau``)."""

    tableau: Any

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def error_order(self) -> int | None:
        return self.tableau.error_order

    @property
    def adaptive(self) -> bool:
        return getattr(self.tableau, "adaptive", True)


class WrappingStepper(AbstractStepper):
    """A stepper built around another one (``self.inner``), whose orders and adaptivity it
    keeps (the adjoint's steppers that add a quadrature or a linear step to a family's own)."""

    inner: AbstractStepper

    @property
    def order(self) -> int:
        return self.inner.order

    @property
    def error_order(self) -> int | None:
        return self.inner.error_order

    @property
    def adaptive(self) -> bool:
        return self.inner.adaptive

