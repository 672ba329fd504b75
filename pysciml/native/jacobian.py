r"""Jacobians, Jacobian–vector and vector–Jacobian products of the flattened right-hand side.

For ``f(t (B,), u (B, N)) -> (B, N)`` whose members are independent, the batched Jacobian
:math:`J_b = \partial f_b / \partial u_b` (shape ``(B, N, N)``) comes from ``N`` forward-mode
products with the basis directions :math:`e_j` applied to every member at once,
:math:`J_{b,:,j} = (\partial f/\partial u)\,e_j`, vectorised with ``torch.func.vmap``; or, when
``f`` cannot be vmapped (data-dependent Python control flow, ``.item()``), from a loop of
reverse-mode products (rows). Costs: ``N`` JVPs (one vmapped call) or ``N`` VJPs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp as func_jvp
from torch.func import vmap

__all__ = ["jacobian", "jacobian_and_time_derivative", "jvp", "vjp"]

RHS = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_REVERSE_MAX_N = 32


def jvp(f: RHS, t: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r""":math:`(\partial f/\partial u)(t, u)\, v` for every member (forward mode)."""
    return func_jvp(lambda y: f(t, y), (u,), (v,))[1]


def vjp(f: RHS, t: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r""":math:`w^\top (\partial f/\partial u)(t, u)` for every member (reverse mode)."""
    with torch.enable_grad():
        y = u.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(t, y), y, w, allow_unused=True)
    return torch.zeros_like(u) if g is None else g


def jacobian_and_time_derivative(f: RHS, t: torch.Tensor,
                                 u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(J, ∂f/∂t)`` from one reverse-mode pass over ``N`` stacked copies of the batch.

    Copy ``i`` of ``(t, u)`` is seeded with the output cotangent :math:`e_i`, so the gradient
    with respect to copy ``i`` of ``u`` is row ``i`` of every member's Jacobian, and with
    respect to copy ``i`` of ``t`` it is :math:`\partial f_i/\partial t`. Cost: one call of ``f``
    on ``N`` times the batch and one backward pass. Needs ``f`` to accept a leading dimension
    (``f(t (N, B), u (N, B, N)) -> (N, B, N)``); otherwise falls back to :func:`jacobian` plus
    one forward-mode product in ``t``.
    """
    B, N = u.shape
    u, t = u.detach(), t.detach()
    try:
        with torch.enable_grad():
            u_rep = u.expand(N, B, N).clone().requires_grad_(True)
            t_rep = t.expand(N, B).clone().requires_grad_(True)
            out = f(t_rep, u_rep)
            if out.shape != (N, B, N):
                raise RuntimeError("f does not broadcast over a leading dimension")
            seed = torch.eye(N, dtype=u.dtype, device=u.device)[:, None, :].expand(N, B, N)
            g_u, g_t = torch.autograd.grad(out, (u_rep, t_rep), seed, allow_unused=True)
    except (RuntimeError, ValueError, TypeError, IndexError):
        J = jacobian(f, t, u)
        with torch.no_grad():
            dfdt = func_jvp(lambda s: f(s, u), (t,), (torch.ones_like(t),))[1]
        return J, dfdt
    J = torch.zeros(B, N, N, dtype=u.dtype, device=u.device) if g_u is None else g_u.transpose(0, 1)
    dfdt = torch.zeros_like(u) if g_t is None else g_t.T
    return J, dfdt


def _jacobian_forward(f: RHS, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    B, N = u.shape
    basis = torch.eye(N, dtype=u.dtype, device=u.device)[:, None, :].expand(N, B, N)
    columns = vmap(lambda v: jvp(f, t, u, v))(basis)  # (N, B, N): columns j
    return columns.permute(1, 2, 0)


def _jacobian_reverse(f: RHS, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    B, N = u.shape
    with torch.enable_grad():
        y = u.detach().requires_grad_(True)
        fy = f(t, y)
        rows = []
        for i in range(N):
            w = torch.zeros_like(fy)
            w[:, i] = 1
            (g,) = torch.autograd.grad(fy, y, w, retain_graph=i < N - 1, allow_unused=True)
            rows.append(torch.zeros_like(u) if g is None else g)
    return torch.stack(rows, 1)  # (B, N, N): rows i


def jacobian(f: RHS, t: torch.Tensor, u: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """The batched Jacobian ``(B, N, N)`` of ``f`` with respect to ``u`` at ``(t, u)``.

    ``mode``: ``"forward"`` (vmapped JVPs), ``"reverse"`` (a loop of VJPs) or ``"auto"``: reverse
    for ``N <= 32`` (one graph, ``N`` cheap backward passes beat vmap's fixed overhead there),
    forward otherwise, falling back to reverse when ``f`` cannot be vmapped. No autograd history
    is kept.
    """
    u = u.detach()
    t = t.detach()
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode: expected 'auto', 'forward' or 'reverse', got {mode!r}")
    with torch.no_grad():
        if mode == "reverse" or (mode == "auto" and u.shape[-1] <= _REVERSE_MAX_N):
            return _jacobian_reverse(f, t, u)
        try:
            return _jacobian_forward(f, t, u)
        except (RuntimeError, NotImplementedError, TypeError):
            if mode == "forward":
                raise
            return _jacobian_reverse(f, t, u)
