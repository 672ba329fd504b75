r"""The parameter gradient of the quadrature adjoints,

.. math::
    \frac{dL}{dp} = \int_{t_0}^{t_1} \lambda(t)^\top \frac{\partial f}{\partial p}(t, u(t))\,dt
    = \sum_{\text{steps } [t, t+h]} (-h) \sum_{q=1}^{n} w_q\,
      \lambda(t + \theta_q h)^\top \frac{\partial f}{\partial p}\big(t + \theta_q h,
      u(t + \theta_q h)\big),

by :math:`n`-point Gauss–Legendre quadrature (nodes :math:`\theta_q`, weights :math:`w_q` on
:math:`[0, 1]`; exact for polynomials of degree :math:`2n - 1`) on every step of the backward
solve (whose steps :math:`h` are negative: hence :math:`-h`), with :math:`\lambda` from the
backward step's interpolant and :math:`u` from the forward dense output.

* ``QuadratureAdjoint`` keeps the backward solve's dense output and integrates afterwards
  (:func:`gauss_legendre_integral`).
* ``GaussAdjoint`` integrates each accepted step as the backward solve takes it
  (:class:`GaussIntegratingStepper`), so the backward dense output is never stored
  (SciMLSensitivity's ``GaussAdjoint``, whose integrating callback does the same).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from ..interpolation import DenseHistory
from ..stepper import AbstractStepper, StepResult, WrappingStepper
from .equations import AdjointEquations

__all__ = ["gauss_legendre_integral", "GaussIntegratingStepper", "gauss_legendre_nodes"]


@functools.lru_cache(maxsize=32)
def _nodes_on_device(nodes: int, dtype: torch.dtype,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(nodes)
    return (torch.as_tensor((x + 1) / 2, dtype=dtype, device=device),
            torch.as_tensor(w / 2, dtype=dtype, device=device))


def gauss_legendre_nodes(nodes: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Legendre nodes and weights on ``[0, 1]`` in ``like``'s dtype and device."""
    return _nodes_on_device(nodes, like.dtype, like.device)


def gauss_legendre_integral(lam_history: DenseHistory, u_of_times: Callable,
                            eq: AdjointEquations, nodes: int) -> torch.Tensor:
    """``∫ λᵀ ∂f/∂p dt`` over the steps of ``lam_history`` (a backward solve of ``B`` members
    with one shared step); ``u_of_times((Q,)) -> (Q, B, N)``. All nodes of all steps are
    evaluated in stacked calls of ``f``."""
    t, h = lam_history.member_steps(0)  # the step is shared: member 0's times
    taken = h != 0
    t, h = t[taken], h[taken]
    theta, weights = gauss_legendre_nodes(nodes, h)
    times = (t[:, None] + theta[None, :] * h[:, None]).reshape(-1)  # (M * n,)
    scale = (-h[:, None] * weights[None, :]).reshape(-1)
    lam = lam_history.evaluate(times)  # (Q, B, N)
    u = u_of_times(times)  # (Q, B, N)
    return eq.parameter_vjp_sum(times, u, scale[:, None, None] * lam)


class _Carry(NamedTuple):
    """The wrapped stepper's cache and the trial step to integrate if it is accepted."""

    inner: Any
    trial: tuple | None


class GaussIntegratingStepper(WrappingStepper):
    r"""A stepper that also integrates :math:`\int \lambda^\top \partial f/\partial p\,dt` over
    every step it takes, as the loop accepts it (:meth:`merge`): the Gauss–Legendre sum of the
    module docstring with :math:`\lambda` from the step's own interpolant. The running total is
    :attr:`total` (flat, length ``P``). The step, its error and its dense output are the
    wrapped stepper's.

    The accepted steps' interpolation data are kept for up to ``batch`` steps and integrated
    together (one interpolation of the forward solution at all their nodes, one stacked
    parameter product), so the memory stays bounded by ``batch`` steps while the per-step
    overhead of those calls is shared; :attr:`total` integrates what is pending first.

    Args:
        inner: the backward solve's stepper.
        eq: the adjoint equations.
        u_of_times: ``(Q,) -> (Q, B, N)``, the forward solution.
        nodes: Gauss–Legendre nodes per step.
        total: the running total to add to (flat, length ``P``).
        batch: the most accepted steps kept before they are integrated.
    """

    def __init__(self, inner: AbstractStepper, eq: AdjointEquations,
                 u_of_times: Callable[[torch.Tensor], torch.Tensor], nodes: int,
                 total: torch.Tensor, batch: int = 64):
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: expected a positive int, got {batch!r}")
        self.inner = inner
        self.eq = eq
        self.u_of_times = u_of_times
        self.nodes = nodes
        self.batch = batch
        self._total = total
        self._pending: list[tuple[torch.Tensor, ...]] = []

    @property
    def total(self) -> torch.Tensor:
        """``∫ λᵀ ∂f/∂p dt`` over every accepted step so far (flat, length ``P``)."""
        self._flush()
        return self._total

    def init(self, f, t, u, f0):
        return _Carry(self.inner.init(f, t, u, f0), None)

    def step(self, f, t, u, h, cache) -> StepResult:
        inner = None if cache is None else cache.inner
        result = self.inner.step(f, t, u, h, inner)
        return result._replace(cache=_Carry(result.cache, (f, t, u, h, result)))

    def merge(self, cache, new, accept):
        merged = self.inner.merge(None if cache is None else cache.inner, new.inner, accept)
        if new.trial is not None and bool(accept.any()):
            f, t, u, h, result = new.trial
            stages = self.inner.dense_stages(f, t, u, h, result)
            self._pending.append((t, torch.where(accept, h, torch.zeros_like(h)), u, stages))
            if len(self._pending) >= self.batch:
                self._flush()
        return _Carry(merged, None)

    def _flush(self) -> None:
        """Integrate the pending steps: ``K`` steps, ``n`` nodes each, all at once."""
        if not self._pending:
            return
        t, h, u, stages = (torch.stack(x) for x in zip(*self._pending))
        self._pending = []
        K, B, N = u.shape
        m = stages.shape[1]
        theta, weights = gauss_legendre_nodes(self.nodes, h)
        n = theta.shape[0]
        lead = h.abs().argmax(1, keepdim=True)  # a member that took each (shared) step
        t_lead, h_lead = t.gather(1, lead)[:, 0], h.gather(1, lead)[:, 0]
        times = (t_lead[:, None] + theta[None, :] * h_lead[:, None]).reshape(-1)  # (K n,)
        # every node of every step in one call of the interpolant: (K, n, B) flattened
        lam = self.inner.interpolate(
            u[:, None].expand(K, n, B, N).reshape(-1, N),
            h[:, None].expand(K, n, B).reshape(-1),
            stages[:, :, None].expand(K, m, n, B, N).transpose(0, 1).reshape(m, -1, N),
            theta[None, :, None].expand(K, n, B).reshape(-1)).reshape(K, n, B, N)
        w = (-h[:, None, :, None] * weights[None, :, None, None]) * lam
        self._total += self.eq.parameter_vjp_sum(times, self.u_of_times(times),
                                                 w.reshape(K * n, B, N))

    def dense_stages(self, f, t, u, h, result: StepResult) -> torch.Tensor:
        return self.inner.dense_stages(f, t, u, h, result._replace(cache=result.cache.inner))

    def interpolate(self, u, h, stages, theta):
        return self.inner.interpolate(u, h, stages, theta)
