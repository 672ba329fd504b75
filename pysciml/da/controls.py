r"""Control variables of 4DVar: the initial state and, optionally, the model parameters.

Each control variable :math:`x` with a background (prior) :math:`x_b, B` is optimised through the
transform :math:`x = x_b + B^{1/2} v`, whose background cost is :math:`\tfrac12\|v\|^2`; without a
background, :math:`v = x` and there is no background term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .covariance import Covariance, DiagonalCovariance

__all__ = ["Background", "module_rhs"]


@dataclass(frozen=True, eq=False)
class Background:
    r"""A background (prior) :math:`x_b` with error covariance :math:`B`.

    Args:
        mean: :math:`x_b`, a tensor broadcastable to the control variable's shape
            (``(*batch, *state)`` for the initial state).
        covariance: a :class:`~pysciml.da.Covariance`, or a positive number / tensor taken as the
            variance of a :class:`~pysciml.da.DiagonalCovariance`.
    """

    mean: torch.Tensor
    covariance: Covariance | float | torch.Tensor = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.mean, torch.Tensor) or not self.mean.is_floating_point():
            raise TypeError("mean: expected a floating-point tensor (the background state)")
        if not bool(torch.isfinite(self.mean).all()):
            raise ValueError("mean: expected finite values")
        if not isinstance(self.covariance, Covariance):
            object.__setattr__(self, "covariance", DiagonalCovariance(self.covariance))

    def subset(self, index: torch.Tensor, batch_ndim: int, control_ndim: int) -> Background:
        """The background of some batch members (only when ``mean`` carries the batch)."""
        if batch_ndim == 0 or self.mean.ndim < control_ndim:
            return self
        return Background(self.mean.index_select(0, index.to(self.mean.device)),
                          self.covariance)


class ControlVariable:
    r"""One control variable: its shape, background and the map :math:`v \mapsto x`."""

    def __init__(self, name: str, reference: torch.Tensor, background: Background | None,
                 state_ndim: int):
        self.name, self.background, self.state_ndim = name, background, state_ndim
        self.shape = tuple(reference.shape)
        if background is not None:
            if background.mean.dtype != reference.dtype:
                raise TypeError(f"{name}: background mean has dtype {background.mean.dtype}, "
                                f"expected {reference.dtype}")
            try:
                shape = torch.broadcast_shapes(background.mean.shape, reference.shape)
            except RuntimeError:
                raise ValueError(f"{name}: background mean of shape "
                                 f"{tuple(background.mean.shape)} does not broadcast to "
                                 f"{self.shape}") from None
            if tuple(shape) != self.shape:
                raise ValueError(f"{name}: background mean of shape "
                                 f"{tuple(background.mean.shape)} is larger than {self.shape}")
            background.covariance.check(self.shape[len(self.shape) - state_ndim:],
                                        f"{name}: background covariance")

    def to_state(self, v: torch.Tensor) -> torch.Tensor:
        if self.background is None:
            return v
        return self.background.mean.to(v.device) + self.background.covariance.sqrt(v)

    def to_control(self, x: torch.Tensor) -> torch.Tensor:
        if self.background is None:
            return x
        return self.background.covariance.inv_sqrt(x - self.background.mean.to(x.device))

    def background_cost(self, v: torch.Tensor, batch_ndim: int) -> torch.Tensor:
        r""":math:`\tfrac12\|v\|^2` over the non-batch dimensions (0 without a background)."""
        if self.background is None:
            return v.new_zeros(v.shape[:batch_ndim])
        return 0.5 * v.square().reshape(*v.shape[:batch_ndim], -1).sum(-1)


def module_rhs(module: torch.nn.Module, name: str) -> Callable:
    r"""A right-hand side ``f(t, u, p)`` that runs ``module(t, u)`` with its parameter ``name``
    replaced by ``p`` (``torch.func.functional_call``), so that ``p`` can be a 4DVar control
    variable, e.g. the velocity field of an advection model::

        prob = ps.ODEProblem(module_rhs(model, "velocity"), c0, (0, T), p=model.velocity.detach())
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module).__name__}")
    names = dict(module.named_parameters()) | dict(module.named_buffers())
    if name not in names:
        raise ValueError(f"name: {type(module).__name__} has no parameter or buffer {name!r} "
                         f"(it has {sorted(names)})")

    def f(t, u, p):
        return torch.func.functional_call(module, {name: p}, (t, u))

    return f
