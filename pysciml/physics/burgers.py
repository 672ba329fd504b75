r"""The viscous Burgers equation in 1D.

.. math::
    \partial_t u + \partial_x (u^2/2) = \nu\,\partial_x^2 u ,

on a grid of ``N`` cell centres, state ``(*batch, 1, N)``. Two discretisations of the flux:

* ``"centred"`` (second order): the skew-symmetric split form
  :math:`\partial_x(u^2/2) \approx \tfrac13\big[\delta_x(u^2) + u\,\delta_x u\big]`,
  :math:`\delta_x` the centred difference, which conserves :math:`\tfrac12\sum u^2` without
  viscosity (periodic grid), so that :math:`\frac{d}{dt}\tfrac12\sum u_i^2 h = -\nu\sum
  |\nabla^+ u|^2 h`;
* ``"upwind"`` (first order): the conservative Rusanov (local Lax–Friedrichs) flux
  :math:`F_{i+1/2} = \tfrac14(u_i^2 + u_{i+1}^2) - \tfrac12\max(|u_i|, |u_{i+1}|)(u_{i+1} - u_i)`,
  stable through shocks.

The viscous term is the three-point Laplacian. ``"closed"`` boundaries are walls where
:math:`u = 0`, by odd ghost cells (:math:`u_{-1} = -u_0`): the closed problem on :math:`[0, L]`
is exactly the periodic one on :math:`[0, 2L]` with the odd extension of the state. Periodic
solutions by the Cole–Hopf transform, :math:`u = -2\nu\,\partial_x\log\varphi` with
:math:`\varphi_t = \nu\varphi_{xx}`, check the model in ``tests/test_physics_pde.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from . import operators
from .base import smooth_random_field
from .grid import GridModel, check_scheme

__all__ = ["Burgers1D"]


class Burgers1D(GridModel):
    r"""Burgers, state ``(*batch, 1, N)``.

    Args:
        size: ``N`` (default 128); length: the extent (default :math:`2\pi`).
        viscosity: :math:`\nu \ge 0`.
        boundary: ``"periodic"`` or ``"closed"`` (:math:`u = 0` on the walls).
        scheme: ``"centred"`` (skew-symmetric, second order) or ``"upwind"`` (Rusanov).
        learnable: the parameters that require gradients (default: all).

    Random initial states: a periodic Gaussian random field (correlation length :math:`N/16`
    cells, zero mean, unit variance, :func:`~pysciml.physics.base.smooth_random_field`).
    """

    name = "burgers"
    ndim = 1
    default_tspan = (0.0, 2.0)
    stiff = False
    parameter_names = ("viscosity",)
    parameter_ranges = {"viscosity": (0.01, 0.1)}

    def __init__(self, size=128, length=2 * math.pi, viscosity=0.05, *,
                 boundary: str = "periodic", spacing=None, scheme: str = "centred",
                 learnable: Iterable[str] | None = None, dtype=None, device=None):
        super().__init__(size, length, boundary, 1, spacing=spacing, dtype=dtype,
                         device=device)
        self.scheme = check_scheme(scheme)
        self._init_parameters({"viscosity": viscosity}, learnable, nonnegative=("viscosity",))

    def flux_divergence(self, u: torch.Tensor) -> torch.Tensor:
        r"""The discrete :math:`\partial_x(u^2/2)`."""
        h, b = self.spacing[0], self.boundary
        if self.scheme == "centred":
            return (operators.derivative(u * u, 0, h, b, parity=1)
                    + u * operators.derivative(u, 0, h, b, parity=-1)) / 3
        right = operators.shift(u, 1, -1, b, parity=-1)
        flux = _rusanov(u, right)  # at i + 1/2
        if b == "periodic":
            left_flux = torch.roll(flux, 1, -1)
        else:  # the west wall's face sees the mirror image -u_0 of the first cell
            first = u[..., :1]
            left_flux = torch.cat([_rusanov(-first, first), flux[..., :-1]], -1)
        return (flux - left_flux) / h

    def forward(self, t, u, p=None):
        self._check_state(u)
        nu = self._value("viscosity", p, trailing=2)
        if self.boundary == "periodic":
            lap = operators.laplacian(u, self.spacing, "periodic")
        else:
            lap = self._dirichlet_laplacian(u)
        return -self.flux_divergence(u) + nu * lap

    def _dirichlet_laplacian(self, u: torch.Tensor) -> torch.Tensor:
        h = self.spacing[0]
        return (operators.shift(u, 1, -1, "closed", parity=-1) - 2 * u
                + operators.shift(u, -1, -1, "closed", parity=-1)) / h ** 2

    def energy(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`\tfrac12\sum_i u_i^2 h` per member."""
        return 0.5 * self.integral(u[..., 0, :] * u[..., 0, :])

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape) + (1,)
        return smooth_random_field(shape, self.size, self.size[0] / 16, generator, self.dtype,
                                   self.device)


def _rusanov(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    r"""The Rusanov flux of :math:`u^2/2` between two states."""
    speed = torch.maximum(left.abs(), right.abs())
    return (left * left + right * right) / 4 - speed * (right - left) / 2
