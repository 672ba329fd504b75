r"""Advection and diffusion of tracers by a given (learnable) velocity field, in 2D.

.. math::
    \partial_t c + v\cdot\nabla c = \kappa\,\Delta c \quad (\text{advective form}), \qquad
    \partial_t c + \nabla\cdot(v c) = \kappa\,\Delta c \quad (\text{conservative form}),

the two equal when :math:`\nabla\cdot v = 0`. Method of lines on a uniform grid
(:mod:`pysciml.physics.operators`): centred (second-order) or first-order upwind advection,
the five-point Laplacian. The conservative form on a closed domain conserves
:math:`\int c` exactly. With constant :math:`v` on a periodic domain a Gaussian is advected and
spread: :math:`c = \frac{\sigma_0^2}{\sigma_0^2 + 2\kappa t}
\exp\!\big(-\frac{|x - x_0 - v t|^2}{2(\sigma_0^2 + 2\kappa t)}\big)` (checked in
``tests/test_physics_pde.py``). This is the model of motion estimation from tracer images
(de Bézenac, Pajot & Gallinari, ICLR 2018), where the velocity is what is learned.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import operators
from .base import check_int
from .grid import GridModel, check_scheme

__all__ = ["AdvectionDiffusion2D"]


class AdvectionDiffusion2D(GridModel):
    r"""Tracers advected by ``velocity`` and diffused with ``diffusivity``; state
    ``(*batch, channels, H, W)`` (``H`` points along :math:`x`, ``W`` along :math:`y`).

    Args:
        size: ``H`` or ``(H, W)``, at least 4 points each.
        length: the domain's extent (a number or ``(Lx, Ly)``); or give ``spacing`` (a
            number or ``(hx, hy)``) and the extent is ``size * spacing``.
        velocity: the velocity :math:`(v_x, v_y)`: a pair of numbers or a tensor of shape
            ``(2,)`` (a constant, stored as the uniform field), ``(2, H, W)`` (a field), or
            ``(*batch, 2, H, W)`` (one field per member). Stored as the ``nn.Parameter``
            ``velocity`` of shape ``(..., 2, H, W)``.
        diffusivity: :math:`\kappa \ge 0` (a number or one per member).
        boundary: ``"periodic"`` or ``"closed"`` (no flux through the walls).
        scheme: ``"centred"`` (second order) or ``"upwind"`` (first order, monotone).
        form: ``"advective"`` (:math:`v\cdot\nabla c`) or ``"conservative"``
            (:math:`\nabla\cdot(vc)`).
        channels: the number of tracers advected by the same flow.
        learnable: the parameters that require gradients (default: both).

    Random initial states: one Gaussian bump per channel and member (centre uniform in the
    domain, width :math:`\sigma \sim U[0.05, 0.15]\min(L)`, amplitude 1).
    """

    name = "advection_diffusion"
    default_tspan = (0.0, 1.0)
    stiff = False
    parameter_names = ("velocity", "diffusivity")
    parameter_ranges = {"diffusivity": (1e-4, 1e-2)}

    def __init__(self, size=64, length=1.0, velocity=(1.0, 0.5), diffusivity=1e-3, *,
                 boundary: str = "periodic", spacing=None, scheme: str = "centred",
                 form: str = "advective",
                 channels: int = 1, learnable: Iterable[str] | None = None, dtype=None,
                 device=None):
        super().__init__(size, length, boundary, check_int("channels", channels, 1),
                         spacing=spacing, dtype=dtype, device=device)
        self.scheme = check_scheme(scheme)
        if form not in ("advective", "conservative"):
            raise ValueError(f"form: expected 'advective' or 'conservative', got {form!r}")
        self.form = form
        field = self._velocity_field(velocity)
        self._init_parameters({"velocity": field, "diffusivity": diffusivity}, learnable,
                              nonnegative=("diffusivity",))

    def _velocity_field(self, velocity) -> torch.Tensor:
        if not isinstance(velocity, torch.Tensor):
            try:
                velocity = torch.as_tensor(velocity, dtype=self.dtype, device=self.device)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"velocity: expected a pair of numbers or a tensor, got "
                                f"{type(velocity).__name__}") from None
        grid = tuple(self.size)
        if tuple(velocity.shape) == (2,):
            return velocity.detach().reshape(2, 1, 1).expand(2, *grid).clone()
        if velocity.ndim >= 3 and tuple(velocity.shape[-3:]) == (2, *grid):
            return velocity
        raise ValueError(f"velocity: expected shape (2,), (2, {grid[0]}, {grid[1]}) or "
                         f"(*batch, 2, {grid[0]}, {grid[1]}), got {tuple(velocity.shape)}")

    def advection(self, t, u, p=None) -> torch.Tensor:
        r""":math:`-v\cdot\nabla c` or :math:`-\nabla\cdot(vc)` (the sign of a tendency)."""
        v = self._value("velocity", p).unsqueeze(-4)  # (..., 1, 2, H, W): shared by channels
        if self.form == "conservative":
            return -operators.flux_divergence(u, v, self.spacing, self.boundary, self.scheme)
        if self.scheme == "upwind":
            return -operators.advection_upwind(u, v, self.spacing, self.boundary)
        return -operators.advection_centred(u, v, self.spacing, self.boundary)

    def diffusion(self, t, u, p=None) -> torch.Tensor:
        r""":math:`\kappa\Delta c`."""
        return self._value("diffusivity", p, trailing=3) * self.laplacian(u)

    def forward(self, t, u, p=None):
        self._check_state(u)
        return self.advection(t, u, p) + self.diffusion(t, u, p)

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape) + (self.n_channels,)
        return self.gaussian_bumps(shape, generator, (0.05, 0.15))
