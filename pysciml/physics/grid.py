r"""The common part of the method-of-lines models: a uniform grid and its boundary.

A :class:`GridModel` holds ``size`` (points per dimension), ``length`` (the domain's extent),
``spacing = length / size`` (a model given ``spacing=`` instead takes
``length = size * spacing``) and ``boundary`` (``"periodic"`` or ``"closed"``, see
:mod:`pysciml.physics.operators`). Points are cell centres, :math:`x_i = (i + \tfrac12) h`,
:math:`i = 0 \dots n-1`, on :math:`[0, L]`; its state is ``(*batch, channels, *size)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from . import operators
from .base import PhysicalModel, _uniform, check_boundary, grid_spacing

__all__ = ["GridModel"]


class GridModel(PhysicalModel):
    """A model on a uniform ``ndim``-dimensional grid with ``n_channels`` fields."""

    ndim: ClassVar[int] = 2

    def __init__(self, size, length, boundary: str, n_channels: int, *, spacing=None,
                 dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        if spacing is not None:  # the grid spacing given instead of the domain's extent
            sizes, _, _ = grid_spacing(size, 1.0, self.ndim)
            h = (spacing,) * self.ndim if isinstance(spacing, (int, float)) else tuple(spacing)
            if len(h) != self.ndim or not all(isinstance(x, (int, float)) and x > 0 for x in h):
                raise ValueError(f"spacing: expected a positive number or {self.ndim} positive "
                                 f"numbers, got {spacing!r}")
            length = tuple(n * float(x) for n, x in zip(sizes, h, strict=True))
        self.size, self.length, self.spacing = grid_spacing(size, length, self.ndim)
        self.boundary = check_boundary(boundary)
        self.n_channels = n_channels

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n_channels, *self.size)

    def coordinates(self) -> tuple[torch.Tensor, ...]:
        r"""The cell centres :math:`(x_i, y_j)` as ``ndim`` tensors of shape ``size``
        (``indexing="ij"``)."""
        axes = [(torch.arange(n, dtype=self.dtype, device=self.device) + 0.5) * h
                for n, h in zip(self.size, self.spacing, strict=True)]
        return tuple(torch.meshgrid(*axes, indexing="ij"))

    def laplacian(self, f: torch.Tensor) -> torch.Tensor:
        """The (2·ndim+1)-point Laplacian over the grid dimensions (second order)."""
        return operators.laplacian(f, self.spacing, self.boundary)

    def cell_volume(self) -> float:
        return math.prod(self.spacing)

    def integral(self, f: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i f_i\,h^d`: the midpoint-rule integral over the grid dimensions."""
        return f.sum(tuple(range(-self.ndim, 0))) * self.cell_volume()

    def gaussian_bumps(self, batch_shape, generator, width: tuple[float, float]
                       ) -> torch.Tensor:
        r"""One Gaussian bump per member, :math:`\exp(-|x - x_0|^2 / 2\sigma^2)` of shape
        ``(*batch_shape, *size)``: centre :math:`x_0` uniform in the domain, width
        :math:`\sigma \sim U[\text{width}] \cdot \min L`; on a periodic grid the distance is
        the shortest one across the periodic boundary."""
        shape = tuple(batch_shape)
        r = _uniform(shape + (self.ndim + 1,), generator, self.dtype, self.device)
        coords = self.coordinates()
        sigma = (width[0] + (width[1] - width[0]) * r[..., -1]) * min(self.length)
        dist2 = 0
        for k, (x, L) in enumerate(zip(coords, self.length, strict=True)):
            centre = (r[..., k] * L).reshape(shape + (1,) * self.ndim)
            d = x - centre
            if self.boundary == "periodic":
                d = torch.remainder(d + L / 2, L) - L / 2
            dist2 = dist2 + d * d
        return torch.exp(-dist2 / (2 * sigma.reshape(shape + (1,) * self.ndim) ** 2))

    def extra_repr(self) -> str:
        grid = "x".join(map(str, self.size))
        return (f"size={grid}, length={self.length}, boundary={self.boundary!r}, "
                + super().extra_repr())


def check_scheme(scheme: str) -> str:
    if scheme not in ("centred", "upwind"):
        raise ValueError(f"scheme: expected 'centred' or 'upwind', got {scheme!r}")
    return scheme
