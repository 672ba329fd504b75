r"""The adjoint ODE, assembled in one place for every continuous sensealg.

Backwards in time from the last save time to :math:`t_0`, the packed state

.. math::
    y = [\,u \text{ (Backsolve only)},\; \lambda,\; \mu \text{ (unless by quadrature)}\,]

obeys :math:`\dot u = f`, :math:`\dot\lambda = -(\partial f/\partial u)^\top\lambda` and
:math:`\dot\mu = -(\partial f/\partial p)^\top\lambda`, with one vector–Jacobian product of
``f`` per evaluation (reverse-mode autograd). The whole batch is packed into one member,
``(1, M)``, so it takes one shared step: the parameter part :math:`\mu` is shared by the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = ["ParameterSet", "AdjointEquations"]


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

    def f(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.rhs(t.expand(self.B), u, self.params.with_tensors(
                [x.detach() for x in self.params.tensors]))

    def vjp(self, t: torch.Tensor, u: torch.Tensor, lam: torch.Tensor, *,
            wrt_u: bool = True, wrt_p: bool = True) -> tuple[torch.Tensor, ...]:
        r"""``(f, λᵀ∂f/∂u, λᵀ∂f/∂p (flat, length P))`` at ``(t, u)``; parts not asked for are
        ``None``."""
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
        grads = list(grads)
        vjp_u = None
        if wrt_u:
            vjp_u = grads.pop(0)
            vjp_u = torch.zeros_like(u) if vjp_u is None else vjp_u
        vjp_p = None
        if wrt_p:
            all_params = [*p_tensors, *self.params.module_params]
            parts = [torch.zeros(x.numel(), dtype=u.dtype, device=u.device) if g is None
                     else g.reshape(-1).to(u.dtype) for g, x in zip(grads, all_params)]
            vjp_p = torch.cat(parts) if parts else u.new_zeros(0)
        return (fx if outer else fx.detach()), vjp_u, vjp_p

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
            fx, vjp_u, vjp_p = self.vjp(t, u, lam, wrt_p=with_mu)
            parts = ([fx.reshape(-1)] if u_of_t is None else []) + [-vjp_u.reshape(-1)]
            if with_mu:
                parts.append(-vjp_p)
            return torch.cat(parts)[None, :]

        return rhs
