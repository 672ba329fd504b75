r"""A torch right-hand side as the three callbacks the Julia bridge calls.

Julia integrates the batch as one system, state :math:`U \in \mathbb{R}^{N \times B}`, with a
flat parameter vector :math:`\theta` (the tensor leaves of ``p`` followed by the trainable
parameters of ``nn.Module`` right-hand sides). It calls back:

* ``f(U, θ, t)`` → :math:`f(t, u, p)` in pysciml's convention (``u`` of shape
  ``(*batch, *state)``, ``t`` of shape ``batch_shape``);
* ``vjp(U, θ, t, Λ)`` → :math:`(\Lambda^\top \partial f/\partial u,\;
  \Lambda^\top \partial f/\partial \theta)` by ``torch.func.vjp`` (SciMLSensitivity's
  ``ZygoteVJP`` reaches it through the bridge's ``rrule``);
* ``jac(U, θ, t)`` → the Jacobian blocks :math:`\partial f_b/\partial u_b` (``(B, N, N)``) by
  ``torch.func.jacrev`` over the members, for implicit methods.

Arrays arrive and leave in Julia layout through :mod:`pysciml.julia.convert` only. Parameters
are rebuilt from views of :math:`\theta`, so gradients with respect to :math:`\theta` cover
every leaf; modules are called through ``torch.func.functional_call``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

from ..backends.native import right_hand_sides, trainable_parameters
from ..problem import ODEProblem
from . import convert

__all__ = ["FlatParameters", "TorchCallbacks"]


class FlatParameters:
    """The tensor leaves of ``p`` and the trainable module parameters as one flat vector."""

    def __init__(self, prob: ODEProblem):
        self.p_leaves, self.module_params = trainable_parameters(prob)
        self.tensors = [*self.p_leaves, *self.module_params]
        self.shapes = [x.shape for x in self.tensors]
        self.sizes = [x.numel() for x in self.tensors]
        self.treedef = pytree.tree_flatten(prob.p)[1]
        self.all_leaves = pytree.tree_leaves(prob.p)
        self.modules = [fn for fn in right_hand_sides(prob) if isinstance(fn, torch.nn.Module)]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def flatten(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The current values as one vector (detached)."""
        if not self.tensors:
            return torch.zeros(0, dtype=dtype, device=device)
        return torch.cat([x.detach().reshape(-1).to(dtype) for x in self.tensors])

    def unflatten(self, theta: torch.Tensor) -> tuple[Any, list[dict[str, torch.Tensor]]]:
        """``(p, module_parameters)`` with every tensor a view of ``theta``."""
        parts = list(torch.split(theta, self.sizes)) if self.tensors else []
        views = [part.view(shape) for part, shape in zip(parts, self.shapes)]
        n_p = len(self.p_leaves)
        replaced = iter(views[:n_p])
        leaves = [next(replaced) if isinstance(x, torch.Tensor) else x for x in self.all_leaves]
        p = pytree.tree_unflatten(leaves, self.treedef)
        module_views = iter(views[n_p:])
        per_module = []
        for module in self.modules:
            names = {}
            for name, q in module.named_parameters():
                if any(q is m for m in self.module_params):
                    names[name] = next(module_views)
            per_module.append(names)
        return p, per_module

    def split(self, grad: torch.Tensor) -> list[torch.Tensor]:
        """A gradient with respect to the flat vector, as one gradient per tensor."""
        if not self.tensors:
            return []
        return [g.view(shape) for g, shape in zip(torch.split(grad, self.sizes), self.shapes)]


class TorchCallbacks:
    """The torch right-hand side of ``prob`` as ``f``, ``vjp`` and ``jac`` callbacks.

    ``network_only``: ``prob.f`` is a :class:`~pysciml.julia.HybridFunction` whose physics
    runs in Julia; the callbacks evaluate its torch term alone.
    """

    def __init__(self, prob: ODEProblem, params: FlatParameters, *, network_only: bool = False):
        self.fn = prob.f
        self.call_kwargs = {"part": "network"} if network_only else {}
        self.batch_shape = prob.batch_shape
        self.state_shape = prob.state_shape
        self.dtype = prob.u0.dtype
        self.device = prob.u0.device
        self.params = params

    # ------------------------------------------------------------------ torch-side evaluation
    def rhs(self, t: torch.Tensor, u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``f(t, u, p)`` with ``p`` and the module parameters rebuilt from ``theta``;
        ``u`` and the result of shape ``(*batch, *state)``."""
        p, module_views = self.params.unflatten(theta)
        tb = t.expand(self.batch_shape)
        if isinstance(self.fn, torch.nn.Module):
            index = self.params.modules.index(self.fn)
            return torch.func.functional_call(self.fn, module_views[index], (tb, u, p),
                                              self.call_kwargs)
        return self.fn(tb, u, p)

    def _inputs(self, U: Any, theta: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor,
                                                            torch.Tensor]:
        flat = convert.from_julia(U, device=self.device)                      # (B, N)
        u = flat.reshape(*self.batch_shape, *self.state_shape)
        th = convert.from_julia(theta, device=self.device).to(self.dtype)
        tt = torch.as_tensor(float(t), dtype=self.dtype, device=self.device)
        return u, th, tt

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        B = int(torch.Size(self.batch_shape).numel())
        return x.reshape(B, -1)

    # ------------------------------------------------------------------ callbacks
    def f(self, U: Any, theta: Any, t: Any) -> Any:
        """Julia calls ``f(U, θ, t)`` and reads the result as an ``N × B`` array."""
        u, th, tt = self._inputs(U, theta, t)
        with torch.no_grad():
            out = self.rhs(tt, u, th)
        return convert.callback_result(self._flat(out))

    def vjp(self, U: Any, theta: Any, t: Any, lam: Any) -> tuple[Any, Any]:
        """``(Λᵀ∂f/∂u, Λᵀ∂f/∂θ)`` in Julia layout."""
        u, th, tt = self._inputs(U, theta, t)
        cot = convert.from_julia(lam, device=self.device).reshape(u.shape).to(self.dtype)
        with torch.enable_grad():
            _, pullback = torch.func.vjp(lambda uu, pp: self.rhs(tt, uu, pp), u, th)
            du, dth = pullback(cot)
        return convert.callback_result(self._flat(du)), convert.callback_result(dth.reshape(-1))

    def jac(self, U: Any, theta: Any, t: Any) -> Any:
        """The Jacobian blocks ``(B, N, N)`` of each member, in Julia layout."""
        u, th, tt = self._inputs(U, theta, t)
        B = int(torch.Size(self.batch_shape).numel())
        y = self._flat(u)

        def member_sum(yy: torch.Tensor) -> torch.Tensor:
            # the members are independent: the Jacobian of the sum over members of f_b with
            # respect to y (B, N) holds each member's block (one reverse pass per component)
            out = self.rhs(tt, yy.reshape(u.shape), th)
            return self._flat(out).sum(0)

        with torch.enable_grad():
            J = torch.func.jacrev(member_sum)(y)                 # (N, B, N): [i, b, j]
        blocks = J.permute(1, 0, 2).reshape(B, y.shape[1], y.shape[1])
        return convert.jacobian_blocks_to_julia(blocks.contiguous())
