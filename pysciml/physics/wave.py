r"""The damped wave equation in 2D.

.. math::
    \partial_t^2 w + \gamma\,\partial_t w = c^2 \Delta w, \qquad
    u = (w, \partial_t w),

by the method of lines with the five-point Laplacian :math:`\Delta_h` (second order). The
semi-discrete energy

.. math::
    E = \tfrac12 \sum_{ij} \big(\dot w_{ij}^2 + c^2 |\nabla^+_h w|_{ij}^2\big)\, h_x h_y,
    \qquad |\nabla^+_h w|^2 = \Big(\frac{w_{i+1,j} - w_{ij}}{h_x}\Big)^2
    + \Big(\frac{w_{i,j+1} - w_{ij}}{h_y}\Big)^2

(forward differences; :math:`\sum |\nabla^+_h w|^2 = -\sum w\,\Delta_h w` on periodic and
closed grids) obeys :math:`dE/dt = -\gamma \sum \dot w^2 h_x h_y` exactly: it is conserved
without damping. A discrete Fourier mode with :math:`\Delta_h`-eigenvalue :math:`-\lambda` is a
damped oscillator of frequency :math:`\sqrt{c^2\lambda - \gamma^2/4}`. On a closed grid the
walls reflect (zero normal derivative, :mod:`pysciml.physics.operators`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import operators
from .grid import GridModel

__all__ = ["DampedWave2D"]


class DampedWave2D(GridModel):
    r"""The damped wave equation, state ``(*batch, 2, H, W)`` = :math:`(w, \partial_t w)`.

    Args:
        size, length: the grid (default 64 points on the unit square).
        speed: the wave speed :math:`c > 0`.
        damping: the damping rate :math:`\gamma \ge 0`.
        boundary: ``"periodic"`` or ``"closed"`` (reflecting walls).
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`w` one Gaussian bump (centre uniform, width
    :math:`\sigma \sim U[0.05, 0.1]\min(L)`, height 1), :math:`\partial_t w = 0`.
    """

    name = "wave"
    default_tspan = (0.0, 1.0)
    stiff = False
    parameter_names = ("speed", "damping")
    parameter_ranges = {"speed": (0.5, 2.0), "damping": (0.0, 1.0)}

    def __init__(self, size=64, length=1.0, speed=1.0, damping=0.0, *,
                 boundary: str = "periodic", spacing=None, learnable: Iterable[str] | None = None,
                 dtype=None, device=None):
        super().__init__(size, length, boundary, 2, spacing=spacing, dtype=dtype,
                         device=device)
        self._init_parameters({"speed": speed, "damping": damping}, learnable,
                              positive=("speed",), nonnegative=("damping",))

    def forward(self, t, u, p=None):
        self._check_state(u)
        w, wt = u[..., 0, :, :], u[..., 1, :, :]
        c = self._value("speed", p, trailing=2)
        gamma = self._value("damping", p, trailing=2)
        return torch.stack([wt, c * c * self.laplacian(w) - gamma * wt], -3)

    def energy(self, u: torch.Tensor) -> torch.Tensor:
        r"""The semi-discrete energy :math:`E` (one value per member)."""
        w, wt = u[..., 0, :, :], u[..., 1, :, :]
        c = self.speed.reshape(self.speed.shape + (1, 1)) if self.speed.ndim else self.speed
        grad2 = 0
        for k in range(2):
            dim = k - 2
            forward = (operators.shift(w, 1, dim, self.boundary) - w) / self.spacing[k]
            grad2 = grad2 + forward * forward
        return 0.5 * self.integral(wt * wt + c * c * grad2)

    def initial_state(self, batch_shape=(), generator=None):
        w = self.gaussian_bumps(batch_shape, generator, (0.05, 0.1))
        return torch.stack([w, torch.zeros_like(w)], -3)
