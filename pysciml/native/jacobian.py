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
from torch.func import vjp as func_vjp
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
    r"""``(J, ∂f/∂t)`` per member, by reverse mode.

    Fast path: one call of ``f`` on ``N`` stacked copies of the batch and one backward pass —
    copy ``i`` seeded with the output cotangent :math:`e_i` gives row ``i`` of every member's
    Jacobian and :math:`\partial f_i/\partial t`. It needs ``f`` to broadcast over a leading
    dimension, which not every ``f`` written for ``(*batch, *state)`` does correctly; so the
    first call of a solve (on a :class:`~pysciml.native.stepper.CountedRHS`) also computes the
    Jacobian by ``N`` backward passes through one graph of ``f`` and keeps the fast path only if
    both agree (``f.stacked_jacobian``).
    """
    if torch.is_grad_enabled():
        differentiable = _differentiable(f, t, u)
        if differentiable is not None:
            return differentiable
    u, t = u.detach(), t.detach().clone()
    verdict = getattr(f, "stacked_jacobian", None)
    if verdict is False:
        return _rows_and_time(f, t, u)
    stacked = _stacked(f, t, u)
    if verdict is True and stacked is not None:
        return stacked
    rows = _rows_and_time(f, t, u)
    agree = stacked is not None and all(
        torch.allclose(a, b, rtol=1e-10, atol=0) if a.dtype == torch.float64
        else torch.allclose(a, b, rtol=1e-4, atol=0) for a, b in zip(stacked, rows))
    if hasattr(f, "stacked_jacobian"):
        f.stacked_jacobian = bool(agree)
    return rows


def _differentiable(f: RHS, t, u) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""``(J, ∂f/∂t)`` that carry autograd history, for differentiating through the solver
    (``DirectBackprop``): a Rosenbrock step's result depends on :math:`J` itself, so its exact
    discrete gradient needs :math:`\partial J/\partial p` and :math:`\partial J/\partial u`.

    ``torch.func.vjp`` differentiates ``f`` at an inner level: the results have history only if
    ``f`` depends on tensors that require grad (parameters, or ``u``/``t`` themselves), so a solve
    that needs no gradient pays only the transform's overhead. The stacked layout is used once
    the first call has verified it (``f.stacked_jacobian``), else ``N`` products through one
    graph. ``None`` when ``f`` cannot be transformed (the caller then detaches).
    """
    verdict = getattr(f, "stacked_jacobian", None)
    if verdict is None:  # let the detached path decide (and record) whether stacking works
        with torch.no_grad():
            jacobian_and_time_derivative(f, t, u)
        verdict = getattr(f, "stacked_jacobian", None)
    B, N = u.shape
    try:
        if verdict:
            u_rep = u.expand(N, B, N).clone()
            t_rep = t.expand(N, B).clone()
            _, pullback = func_vjp(f, t_rep, u_rep)
            seed = torch.eye(N, dtype=u.dtype, device=u.device)[:, None, :].expand(N, B, N)
            g_t, g_u = pullback(seed)
            return g_u.transpose(0, 1), g_t.T
        fy, pullback = func_vjp(f, t.clone(), u)
        rows, dts = [], []
        for i in range(N):
            w = torch.zeros_like(fy)
            w[:, i] = 1
            g_t, g_u = pullback(w)
            rows.append(g_u)
            dts.append(g_t)
        return torch.stack(rows, 1), torch.stack(dts, 1)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None


def _rows_and_time(f: RHS, t, u):
    with torch.no_grad():
        J, dfdt = _jacobian_reverse(f, t, u, with_time=True)
    return J.detach(), dfdt.detach()


def _stacked(f: RHS, t, u) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The stacked-copies Jacobian and ``∂f/∂t``, or ``None`` if ``f`` cannot take them."""
    B, N = u.shape
    try:
        with torch.enable_grad():
            u_rep = u.expand(N, B, N).clone().requires_grad_(True)
            t_rep = t.expand(N, B).clone().requires_grad_(True)
            out = f(t_rep, u_rep)
            if out.shape != (N, B, N):
                return None
            seed = torch.eye(N, dtype=u.dtype, device=u.device)[:, None, :].expand(N, B, N)
            g_u, g_t = torch.autograd.grad(out, (u_rep, t_rep), seed, allow_unused=True)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None
    J = torch.zeros(B, N, N, dtype=u.dtype, device=u.device) if g_u is None else g_u.transpose(0, 1)
    dfdt = torch.zeros_like(u) if g_t is None else g_t.T
    return J, dfdt


def _jacobian_forward(f: RHS, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    B, N = u.shape
    basis = torch.eye(N, dtype=u.dtype, device=u.device)[:, None, :].expand(N, B, N)
    columns = vmap(lambda v: jvp(f, t, u, v))(basis)  # (N, B, N): columns j
    return columns.permute(1, 2, 0)


def _jacobian_reverse(f: RHS, t: torch.Tensor, u: torch.Tensor,
                      with_time: bool = False):
    """Rows of the Jacobian by ``N`` backward passes through one graph of ``f``; with
    ``with_time``, also ``∂f/∂t`` (each pass gives ``∂f_i/∂t`` too)."""
    B, N = u.shape
    with torch.enable_grad():
        y = u.detach().requires_grad_(True)
        s = t.detach().requires_grad_(with_time)
        fy = f(s, y)
        rows, dts = [], []
        inputs = (y, s) if with_time else (y,)
        for i in range(N):
            w = torch.zeros_like(fy)
            w[:, i] = 1
            g = torch.autograd.grad(fy, inputs, w, retain_graph=i < N - 1, allow_unused=True)
            rows.append(torch.zeros_like(u) if g[0] is None else g[0])
            if with_time:
                dts.append(torch.zeros_like(t) if g[1] is None else g[1])
    J = torch.stack(rows, 1)  # (B, N, N): rows i
    return (J, torch.stack(dts, 1)) if with_time else J


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
