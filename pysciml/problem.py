r"""Problem definitions: what to solve, independent of how.

An :class:`ODEProblem` is the initial value problem

.. math::
    \frac{du}{dt} = f(t, u, p), \qquad u(t_0) = u_0, \qquad t \in [t_0, t_1],

with ``u`` a tensor of shape ``(*batch, *state)``. The first ``batch_ndim`` dimensions of ``u0``
index independent members of a batch (each takes its own adaptive steps); the rest is the state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ODEProblem", "SplitODEProblem"]


@dataclass(frozen=True, eq=False)
class ODEProblem:
    r"""The initial value problem :math:`u' = f(t, u, p)`, :math:`u(t_0) = u_0`.

    Args:
        f: the right-hand side ``f(t, u, p) -> du/dt``, a callable or an ``nn.Module``. ``u`` has
            the shape of ``u0``; ``t`` is a tensor of shape ``batch_shape`` (0-d when unbatched),
            so write time dependence as ``t[..., None] * u`` to broadcast over the state. The
            parameters of an ``nn.Module`` right-hand side receive gradients like ``p``.
        u0: the initial state, a floating-point tensor of shape ``(*batch, *state)``.
        tspan: ``(t0, t1)`` as numbers or 0-d tensors (tensors may require grad); ``t1 < t0``
            integrates backwards in time.
        p: parameters passed to ``f`` unchanged: a tensor, a pytree of tensors, or ``None``.
        batch_ndim: how many leading dimensions of ``u0`` are batch dimensions.
        jac: optionally the Jacobian ``jac(t, u, p) -> ∂f/∂u`` of shape
            ``(*batch, *state, *state)`` for the implicit methods (by default they differentiate
            ``f`` with torch.func).
    """

    f: Callable[..., torch.Tensor]
    u0: torch.Tensor
    tspan: tuple[Any, Any]
    p: Any = None
    batch_ndim: int = 0
    jac: Callable[..., torch.Tensor] | None = None
    kwargs: dict = field(default_factory=dict)

    @property
    def batch_shape(self) -> torch.Size:
        """The leading batch dimensions of ``u0``."""
        return self.u0.shape[: self.batch_ndim]

    @property
    def state_shape(self) -> torch.Size:
        """The shape of one member's state."""
        return self.u0.shape[self.batch_ndim :]

    def remake(self, **changes: Any) -> ODEProblem:
        """A copy with some fields replaced, as SciML's ``remake``."""
        out = copy.copy(self)
        for name, value in changes.items():
            if not hasattr(self, name):
                raise TypeError(f"remake: {type(self).__name__} has no field {name!r}")
            object.__setattr__(out, name, value)
        return out


class SplitODEProblem(ODEProblem):
    r"""An ODE with a stiff and a non-stiff part, :math:`u' = f_S(t, u, p) + f_N(t, u, p)`, for
    IMEX methods (``KenCarp4``): the stiff part is treated implicitly, the other explicitly.
    Every other method solves it as the ODEProblem of the sum.

    Args:
        f_stiff, f_nonstiff: the two parts, each ``f(t, u, p)`` as for :class:`ODEProblem`.
        u0, tspan, p, batch_ndim: as for :class:`ODEProblem`.
        jac: optionally the Jacobian of ``f_stiff`` (the only one the IMEX step needs).
    """

    def __init__(self, f_stiff: Callable, f_nonstiff: Callable, u0: torch.Tensor,
                 tspan: tuple[Any, Any], p: Any = None, batch_ndim: int = 0,
                 jac: Callable | None = None):
        for name, fn in (("f_stiff", f_stiff), ("f_nonstiff", f_nonstiff)):
            if not callable(fn):
                raise TypeError(f"{name}: expected a callable f(t, u, p), got "
                                f"{type(fn).__name__}")

        def f(t, u, p):
            return f_stiff(t, u, p) + f_nonstiff(t, u, p)

        super().__init__(f, u0, tspan, p, batch_ndim, jac)
        object.__setattr__(self, "f_stiff", f_stiff)
        object.__setattr__(self, "f_nonstiff", f_nonstiff)
