r"""The Rosenbrock step of the per-member adjoint ODE, which is *linear* in :math:`\lambda`:

.. math::
    \dot\lambda = A(t)\,\lambda, \qquad A(t) = -J\big(t, u(t)\big)^{\!\top},

with :math:`J = \partial f/\partial u` along the forward solution :math:`u(t)` (its dense
output). A Rosenbrock step (see :mod:`pysciml.native.rosenbrock_tableaus`) from
:math:`(t_n, \lambda_n)` over :math:`h` needs :math:`f` of the adjoint ODE only at the stage
times :math:`t_n + c_i h`, its Jacobian at :math:`t_n` and its time derivative there:

.. math::
    W = \frac{I}{h\gamma} - A(t_n), \qquad
    W k_i = A(t_n + c_i h)\,U_i + \sum_{j<i} \frac{C_{ij}}{h} k_j + h d_i\, \dot A(t_n)\lambda_n.

All of it comes from the matrices :math:`A` at a handful of times, known before the step
starts: the distinct nodes :math:`t_n + c_i h` (6 for ``Rodas5P``) and two points
:math:`t_n + \delta_1, t_n + \delta_2` (:math:`\delta_1 \approx \epsilon^{1/3} h`,
:math:`\delta_2 \approx 2\delta_1`, in the direction of the step, so inside the forward step
the backward step starts into; each the difference of the rounded times, so that rounding of
:math:`t_n + \delta` does not bias it) for the one-sided, second-order difference

.. math::
    \dot A(t_n) \approx -\frac{\delta_1 + \delta_2}{\delta_1\delta_2} A(t_n)
    + \frac{\delta_2}{\delta_1(\delta_2 - \delta_1)} A(t_n + \delta_1)
    - \frac{\delta_1}{\delta_2(\delta_2 - \delta_1)} A(t_n + \delta_2)

(:math:`-3A_0 + 4A_1 - A_2` over :math:`2\delta` for equal spacing; truncation
:math:`O(\delta^2)`, rounding :math:`O(\epsilon/\delta)`: both about
:math:`\epsilon^{2/3} \approx 4\cdot 10^{-11}` relative in float64). A step too short to
separate those times from :math:`t_n` takes :math:`\dot A = 0` (its :math:`h\,d_i\,\dot A`
terms are then below rounding anyway). One interpolation of the
forward dense output at all those times, one call of ``f`` on ``Q N`` stacked copies of the
batch (``Q`` times, ``N`` output cotangents :math:`e_i`) and one backward pass give every
:math:`J(t_q, u(t_q))` at once; each stage is then a batched matrix–vector product. The generic
path (:class:`~pysciml.native.adjoint.equations.AdjointStateRHS` through the Rosenbrock step)
costs one vector–Jacobian product and one interpolation per stage plus a second-order
derivative for the Jacobian: several times more per step for a small stiff system.

The stacked call needs ``f`` to broadcast over a leading dimension, with a different time per
copy; the first step checks the stacked Jacobians at all its times against ``N`` reverse-mode
products through one graph of ``f`` per time and, when they disagree (or ``f`` refuses the
shape), every step takes the generic path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..jacobian import jacobian
from ..linsolve import lu_factor, lu_solve, w_matrix
from ..rosenbrock import Rosenbrock
from ..stepper import StepResult, WrappingStepper
from .equations import AdjointEquations

__all__ = ["LinearAdjointRosenbrock", "STACK_ELEMENTS"]

STACK_ELEMENTS = 1 << 21
"""The most state elements (``Q N B N``) one stacked Jacobian call may hold; beyond it the
generic path is taken."""


class LinearAdjointRosenbrock(WrappingStepper):
    r"""A Rosenbrock step of :math:`\dot\lambda = -J(t, u(t))^\top\lambda` from the forward
    Jacobians at the step's times (module docstring); the same arithmetic as
    :class:`~pysciml.native.rosenbrock.Rosenbrock` on the adjoint right-hand side, with the
    same dense output.

    Args:
        inner: the Rosenbrock stepper (its tableau; its step is the fallback).
        eq: the adjoint equations (``f`` and its parameters).
        u_of_times: ``(Q,) -> (Q, B, N)``, the forward solution.
    """

    def __init__(self, inner: Rosenbrock, eq: AdjointEquations,
                 u_of_times: Callable[[torch.Tensor], torch.Tensor]):
        self.inner = inner
        self.eq = eq
        self.u_of_times = u_of_times
        c = inner.tableau.c
        if c[0] != 0:
            raise ValueError(f"inner: a Rosenbrock method's first stage is at c = 0, got {c[0]}")
        self._nodes = sorted(set(c))  # distinct stage nodes; the first is t_n itself (c = 0)
        self._node_of_stage = [self._nodes.index(ci) for ci in c]
        self._fractions_cache: dict = {}

    def init(self, f, t, u, f0):
        return self.inner.init(f, t, u, f0)

    def merge(self, cache, new, accept):
        return self.inner.merge(cache, new, accept)

    def dense_stages(self, f, t, u, h, result: StepResult) -> torch.Tensor:
        return self.inner.dense_stages(f, t, u, h, result)

    def interpolate(self, u, h, stages, theta):
        return self.inner.interpolate(u, h, stages, theta)

    def _fractions(self, like: torch.Tensor) -> torch.Tensor:
        """The distinct stage nodes as a tensor like ``like`` (made once per dtype and
        device)."""
        key = (like.dtype, like.device)
        if self._fractions_cache.get(key) is None:
            self._fractions_cache[key] = torch.tensor(self._nodes, dtype=like.dtype,
                                                      device=like.device)
        return self._fractions_cache[key]

    def _usable(self, B: int, N: int) -> bool:
        Q = len(self._nodes) + 2
        return Q * N * B * N <= STACK_ELEMENTS and self.eq.stacked_adjoint_jacobian is not False

    def _jacobians(self, times: torch.Tensor, states: torch.Tensor) -> torch.Tensor | None:
        r""":math:`J(t_q, u_q)` ``(Q, B, N, N)`` for times ``(Q,)`` and states ``(Q, B, N)``,
        by one stacked call of ``f`` and one backward pass; ``None`` if ``f`` cannot take the
        stacked shape."""
        Q, B, N = states.shape
        eq = self.eq
        try:
            with torch.enable_grad():
                y = states[:, None].expand(Q, N, B, N).reshape(Q * N, B, N).detach()
                y = y.clone().requires_grad_(True)
                s = times.detach()[:, None, None].expand(Q, N, B).reshape(Q * N, B)
                out = eq.rhs(s, y, eq.p_detached)
                if out.shape != y.shape:
                    return None
                if not out.requires_grad:
                    return states.new_zeros(Q, B, N, N)
                seed = torch.eye(N, dtype=y.dtype, device=y.device)[None, :, None, :]
                seed = seed.expand(Q, N, B, N).reshape(Q * N, B, N)
                (g,) = torch.autograd.grad(out, y, seed, allow_unused=True)
        except (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError):
            return None
        if g is None:
            return states.new_zeros(Q, B, N, N)
        return g.reshape(Q, N, B, N).transpose(1, 2)  # [q, b, i, j] = df_i/du_j

    def _check(self, times: torch.Tensor, states: torch.Tensor, J: torch.Tensor | None) -> bool:
        """Whether the stacked Jacobians agree, at every one of the step's times, with ``N``
        reverse-mode products through one graph of ``f`` per time (once per backward pass:
        ``f`` may not broadcast over a leading dimension, or may read ``t`` as one number)."""
        if J is None:
            return False
        eq = self.eq
        B = states.shape[1]
        rtol = 1e-10 if states.dtype == torch.float64 else 1e-4
        for q in range(times.shape[0]):
            rows = jacobian(lambda s, y: eq.rhs(s, y, eq.p_detached), times[q].expand(B),
                            states[q], mode="reverse")
            if not bool((J[q] - rows).abs().max() <= rtol * rows.abs().max()):
                return False
        return True

    def step(self, f, t, u, h, cache) -> StepResult:
        B, N = u.shape
        if not self._usable(B, N):
            return self.inner.step(f, t, u, h, cache)
        tab = self.inner.tableau.tensors(u.dtype, u.device)
        c, d = self.inner.tableau.c, self.inner.tableau.d
        s = len(c)
        h_safe = torch.where(h != 0, h, torch.ones_like(h))
        lead = h.abs().argmax()  # the step is shared: one member that moves
        t_lead, h_lead = t[lead], h_safe[lead]
        eps = torch.finfo(u.dtype).eps
        delta = eps ** (1.0 / 3.0) * h_lead
        fractions = self._fractions(u)
        probes = torch.stack([t_lead + delta, t_lead + 2 * delta])
        times = torch.cat([t_lead + fractions * h_lead, probes])
        states = self.u_of_times(times)  # (Q, B, N)
        J = self._jacobians(times, states)
        if self.eq.stacked_adjoint_jacobian is None:
            self.eq.stacked_adjoint_jacobian = self._check(times, states, J)
        if not self.eq.stacked_adjoint_jacobian:
            return self.inner.step(f, t, u, h, cache)
        At = -J.transpose(-1, -2)  # (Q, B, N, N): A = -J^T
        f.njac += 1
        f.calls += s
        A0 = At[0]
        d1, d2 = probes - t_lead  # the spacings as rounded
        separated = (d1 != 0) & (d2 != d1)
        d1 = torch.where(separated, d1, 1.0)
        d2 = torch.where(separated, d2, 2.0)
        dA = (-(d1 + d2) / (d1 * d2) * A0 + d2 / (d1 * (d2 - d1)) * At[-2]
              - d1 / (d2 * (d2 - d1)) * At[-1])
        dA = torch.where(separated, dA, torch.zeros_like(dA))
        T = (dA @ u[..., None])[..., 0]  # (B, N)
        hcol = h_safe[:, None]
        factors = lu_factor(w_matrix(A0, 1.0 / (h_safe * tab.gamma)))
        f.nfactor += 1
        stages = u.new_empty(s, B, N)
        flat = stages.view(s, B * N)
        inv_h = 1.0 / hcol
        h_T = hcol * T
        for i in range(s):
            Ai = At[self._node_of_stage[i]]
            if i == 0:
                rhs = (Ai @ u[..., None])[..., 0]
            else:
                sums = (tab.aC_rows[i] @ flat[:i]).view(2, B, N)
                rhs = torch.addcmul((Ai @ (u + sums[0])[..., None])[..., 0], inv_h, sums[1])
            if d[i] != 0:
                rhs = torch.add(rhs, h_T, alpha=d[i])
            stages[i] = lu_solve(factors, rhs)
        f.nlinsolve += s
        combined = (tab.b_and_error.T @ flat).view(2, B, N)
        u_new = u + combined[0]
        err = combined[1]
        err = torch.where(factors.singular[:, None], torch.full_like(err, float("nan")), err)
        return StepResult(u_new, err, stages, None)
