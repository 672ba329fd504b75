r"""The adjoint ODE, assembled in one place for every continuous sensealg.

Backwards in time from the last save time to :math:`t_0`, the packed state

.. math::
    y = [\,u \text{ (Backsolve only)},\; \lambda,\; \mu \text{ (unless by quadrature)}\,]

obeys :math:`\dot u = f`, :math:`\dot\lambda = -(\partial f/\partial u)^\top\lambda` and
:math:`\dot\mu = -(\partial f/\partial p)^\top\lambda`, with one vector–Jacobian product of
``f`` per evaluation (reverse-mode autograd). The whole batch is packed into one member,
``(1, M)``, so it takes one shared step: the parameter part :math:`\mu` is shared by the batch.

The adjoints whose parameter gradient is a quadrature (``QuadratureAdjoint``, ``GaussAdjoint``)
solve for :math:`\lambda` alone, per member: :class:`AdjointStateRHS` on states ``(B, N)`` with
one shared step, and its Jacobian built from the forward one,
:math:`\partial\dot\lambda/\partial\lambda = -J^\top` (``B`` blocks of ``N x N``, not one dense
``BN x BN`` matrix of the packed system) — SciMLSensitivity's :math:`O(n^3 + p)` rather than
:math:`O((n + p)^3)` for implicit backward solves. Their parameter integrand is evaluated at many
quadrature nodes in one call of ``f`` (:meth:`AdjointEquations.parameter_vjp_sum`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = ["ParameterSet", "AdjointEquations", "AdjointStateRHS"]

_STACK_ELEMENTS = 1 << 20  # the most state elements one stacked call of f evaluates


@dataclass
class ParameterSet:
    """The tensors a gradient goes to: floating leaves of ``p`` and module parameters."""

    p_leaves: list[Any]  # every leaf of p (tensors and others), in pytree order
    p_spec: Any
    p_positions: list[int]  # positions of floating tensor leaves in p_leaves
    module_params: list[torch.Tensor]

    @classmethod
    def of(cls, p: Any, module_params: list[torch.Tensor]) -> ParameterSet:
        leaves, spec = pytree.tree_flatten(p)
        positions = [i for i, x in enumerate(leaves)
                     if isinstance(x, torch.Tensor) and x.is_floating_point()]
        return cls(leaves, spec, positions, list(module_params))

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.p_leaves[i] for i in self.p_positions]

    def with_tensors(self, tensors: list[torch.Tensor]) -> Any:
        """``p`` rebuilt with ``tensors`` in place of its floating leaves."""
        leaves = list(self.p_leaves)
        for i, x in zip(self.p_positions, tensors):
            leaves[i] = x
        return pytree.tree_unflatten(leaves, self.p_spec)

    def numel(self) -> int:
        return sum(x.numel() for x in self.tensors) + sum(x.numel() for x in self.module_params)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A flat vector of length ``numel()`` as tensors shaped like the parameters."""
        out, offset = [], 0
        for x in [*self.tensors, *self.module_params]:
            out.append(flat[offset:offset + x.numel()].reshape(x.shape))
            offset += x.numel()
        return out


class AdjointEquations:
    """Vector–Jacobian products of the flattened right-hand side, and the packed adjoint RHS.

    Args:
        rhs: ``rhs(t (B,), y (B, N), p) -> (B, N)``.
        params: the parameter set.
        B, N: the batch and state sizes.
    """

    def __init__(self, rhs: Callable, params: ParameterSet, B: int, N: int):
        self.rhs = rhs
        self.params = params
        self.B, self.N = B, N
        self.P = params.numel()
        self.nvjp = 0
        self.stacked_parameter_vjp: bool | None = None  # see parameter_vjp_sum
        self.stacked_adjoint_jacobian: bool | None = None  # see linear_rosenbrock
        self.p_detached = params.with_tensors([x.detach() for x in params.tensors])

    def f(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.rhs(t.expand(self.B), u, self.params.with_tensors(
                [x.detach() for x in self.params.tensors]))

    def vjp(self, t: torch.Tensor, u: torch.Tensor, lam: torch.Tensor, *,
            wrt_u: bool = True, wrt_p: bool = True) -> tuple[torch.Tensor, ...]:
        r"""``(f, λᵀ∂f/∂u, λᵀ∂f/∂p (flat, length P))`` at ``(t, u)``; parts not asked for are
        ``None``."""
        fx, flat = self.flat_vjp(t, u, lam, wrt_u=wrt_u, wrt_p=wrt_p)
        n_u = u.numel() if wrt_u else 0
        vjp_u = flat[:n_u].reshape(u.shape) if wrt_u else None
        vjp_p = flat[n_u:] if wrt_p else None
        return fx, vjp_u, vjp_p

    def flat_vjp(self, t: torch.Tensor, u: torch.Tensor, lam: torch.Tensor, *,
                 wrt_u: bool = True, wrt_p: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(f, [λᵀ∂f/∂u, λᵀ∂f/∂p])`` at ``(t, u)``: the products asked for, flattened and
        concatenated into one vector (one reverse pass, one concatenation)."""
        self.nvjp += 1
        # an implicit method differentiates this RHS again (its Jacobian): keep the graph then
        outer = torch.is_grad_enabled() and (lam.requires_grad or u.requires_grad
                                              or t.requires_grad)
        with torch.enable_grad():
            # u itself when an outer derivative needs its graph, else a fresh leaf
            u_ = u if (outer and u.requires_grad) else u.detach().requires_grad_(wrt_u)
            p_tensors = [x.detach().requires_grad_(wrt_p) for x in self.params.tensors]
            t_in = t if outer else t.detach()
            fx = self.rhs(t_in.expand(self.B), u_, self.params.with_tensors(p_tensors))
            inputs = ([u_] if wrt_u else []) + (
                [*p_tensors, *self.params.module_params] if wrt_p else [])
            if not inputs or not fx.requires_grad:
                grads = [None] * len(inputs)
            else:
                grads = torch.autograd.grad(fx, inputs, lam, allow_unused=True,
                                            create_graph=outer)
        parts = [torch.zeros(x.numel(), dtype=u.dtype, device=u.device) if g is None
                 else g.reshape(-1).to(u.dtype) for g, x in zip(grads, inputs)]
        flat = torch.cat(parts) if parts else u.new_zeros(0)
        return (fx if outer else fx.detach()), flat

    def parameter_vjp_sum(self, times: torch.Tensor, u: torch.Tensor,
                          w: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_q w_q^\top \frac{\partial f}{\partial p}(t_q, u_q)` (flat, length ``P``)
        for times ``(Q,)``, states and cotangents ``(Q, B, N)``.

        Fast path: one call of ``f`` on the ``Q`` states stacked as a leading dimension and one
        backward pass (the gradient of shared parameters sums over it). Whether ``f`` broadcasts
        correctly over a leading dimension is checked once, on the first call, against one
        product per node; otherwise one product per node.
        """
        Q = times.shape[0]
        if self.P == 0 or Q == 0:
            return u.new_zeros(self.P)
        if self.stacked_parameter_vjp is None:
            by_node = self._parameter_vjp_by_node(times, u, w)
            scale = by_node.abs().max()
            if not bool(scale > 0):  # nothing to compare yet (a zero adjoint state)
                return by_node
            stacked = self._parameter_vjp_stacked(times, u, w)
            rtol = 1e-10 if u.dtype == torch.float64 else 1e-4
            self.stacked_parameter_vjp = bool(
                stacked is not None and ((stacked - by_node).abs().max() <= rtol * scale))
            return by_node
        if not self.stacked_parameter_vjp:
            return self._parameter_vjp_by_node(times, u, w)
        chunk = max(1, _STACK_ELEMENTS // max(1, self.B * self.N))
        total = u.new_zeros(self.P)
        for start in range(0, Q, chunk):
            part = self._parameter_vjp_stacked(times[start:start + chunk],
                                               u[start:start + chunk], w[start:start + chunk])
            total = total + part
        return total

    def _parameter_vjp_by_node(self, times, u, w) -> torch.Tensor:
        total = u.new_zeros(self.P)
        for q in range(times.shape[0]):
            total = total + self.vjp(times[q], u[q], w[q], wrt_u=False)[2]
        return total

    def _parameter_vjp_stacked(self, times, u, w) -> torch.Tensor | None:
        Q = times.shape[0]
        self.nvjp += Q
        try:
            with torch.enable_grad():
                p_tensors = [x.detach().requires_grad_(True) for x in self.params.tensors]
                fx = self.rhs(times.detach()[:, None].expand(Q, self.B), u.detach(),
                              self.params.with_tensors(p_tensors))
                inputs = [*p_tensors, *self.params.module_params]
                if fx.shape != u.shape:
                    return None
                if not fx.requires_grad:
                    return u.new_zeros(self.P)
                grads = torch.autograd.grad(fx, inputs, w, allow_unused=True)
        except (RuntimeError, ValueError, TypeError, IndexError):
            return None
        parts = [torch.zeros(x.numel(), dtype=u.dtype, device=u.device) if g is None
                 else g.reshape(-1).to(u.dtype) for g, x in zip(grads, inputs)]
        return torch.cat(parts)

    def packed_rhs(self, u_of_t: Callable[[torch.Tensor], torch.Tensor] | None,
                   with_mu: bool) -> Callable:
        """The backward RHS on the packed state ``(1, M)``.

        ``u_of_t(t) -> (B, N)`` supplies the forward state (interpolating and quadrature
        adjoints); ``None`` means ``u`` is part of the packed state (backsolve).
        """
        B, N = self.B, self.N
        BN = B * N

        def rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if y.ndim != 2 or y.shape[0] != 1:
                raise ValueError("the packed adjoint state has shape (1, M)")
            t, y = t.reshape(1), y[0]
            if u_of_t is None:
                u, lam = y[:BN].reshape(B, N), y[BN:2 * BN].reshape(B, N)
            else:
                u, lam = u_of_t(t), y[:BN].reshape(B, N)
            # the cotangent -λ gives the right-hand side's signs directly
            fx, flat = self.flat_vjp(t, u, -lam, wrt_p=with_mu)
            if u_of_t is None:
                flat = torch.cat([fx.reshape(-1), flat])
            return flat[None, :]

        return rhs


class AdjointStateRHS:
    r"""The adjoint state's equation per member,
    :math:`\dot\lambda_b = -J_b(t, u_b(t))^\top \lambda_b` on states ``(B, N)``, with
    :math:`u(t)` from the forward dense output; one vector–Jacobian product of ``f`` per call.

    An implicit backward method takes its Jacobian :math:`-J_b^\top` (and, for Rosenbrock
    methods, :math:`\partial\dot\lambda/\partial t`) by differentiating this function again:
    it accepts leading dimensions ``(*lead, B, N)``, so that
    :func:`~pysciml.native.jacobian.jacobian_and_time_derivative` evaluates all ``N``
    directions in one stacked call and one backward pass (``N x N`` blocks per member, not one
    dense ``BN x BN`` matrix), falling back to ``N`` products when ``f`` does not broadcast.
    Inside that derivative the forward state moves with ``t`` as
    :math:`u(t) + \dot u\,\delta t`, :math:`\dot u` the derivative of the forward interpolant
    (not :math:`f(t, u(t))`: the step must see the time dependence of the very function it
    integrates, or a Rosenbrock method loses order and takes several times more steps).

    Args:
        eq: the adjoint equations (the flattened ``f`` and its parameters).
        u_of_t: ``t (1,) -> (B, N)``, the forward solution (a backward solve takes one shared
            step, so all members sit at the same time).
    """

    def __init__(self, eq: AdjointEquations, u_of_t: Callable[[torch.Tensor], torch.Tensor]):
        self.eq = eq
        self.u_of_t = u_of_t

    def _f(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.eq.rhs(t, u, self.eq.p_detached)

    def _interpolant_rate(self, tau: torch.Tensor) -> torch.Tensor:
        """:math:`du/dt` of the forward interpolant at ``tau`` (1,), ``(B, N)``: two reverse
        passes through one evaluation (the second extracts every component of the first)."""
        with torch.enable_grad():
            s = tau.detach().clone().requires_grad_(True)
            u = self.u_of_t(s)
            if not u.requires_grad:
                return torch.zeros_like(u)
            v = torch.zeros_like(u, requires_grad=True)
            (gs,) = torch.autograd.grad(u, s, v, create_graph=True)
            (rate,) = torch.autograd.grad(gs, v, torch.ones_like(gs), allow_unused=True)
        return torch.zeros_like(u) if rate is None else rate.detach()

    def __call__(self, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        B, N = self.eq.B, self.eq.N
        if lam.shape[-2:] != (B, N):
            raise ValueError(f"the adjoint state has shape (*lead, {B}, {N}), got "
                             f"{tuple(lam.shape)}")
        lead = tuple(lam.shape[:-2])
        tau = t.detach().reshape(-1)[:1]
        u = self.u_of_t(tau)  # (B, N)
        outer = torch.is_grad_enabled() and (t.requires_grad or lam.requires_grad)
        self.eq.nvjp += 1
        with torch.enable_grad():
            if outer and t.requires_grad:
                y = u + self._interpolant_rate(tau) * (t - t.detach()).expand(*lead, B)[..., None]
            else:
                y = u.expand(*lead, B, N).detach().requires_grad_(True)
            fx = self._f(t if outer else t.detach(), y)
            (g,) = torch.autograd.grad(fx, y, lam, create_graph=outer, allow_unused=True)
        if g is None:
            return torch.zeros_like(lam)
        return -g
