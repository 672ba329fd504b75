r"""The Gray–Scott reaction–diffusion system in 2D (Gray & Scott 1984; Pearson, "Complex
patterns in a simple system", Science 261, 1993).

.. math::
    \partial_t u = D_u \Delta u - u v^2 + F (1 - u), \qquad
    \partial_t v = D_v \Delta v + u v^2 - (F + k) v,

with Pearson's :math:`D_u = 2\cdot10^{-5}`, :math:`D_v = 10^{-5}` on :math:`[0, 2.5]^2`
(periodic), feed :math:`F` and kill rate :math:`k` (default :math:`F = 0.04, k = 0.06`:
spots). Five-point Laplacian (second order). Spatially uniform states follow the two-variable
ODE; :math:`(u, v) = (1, 0)` is a steady state, and for :math:`F > 4(F + k)^2` so are
:math:`v_\pm = \frac{F \pm \sqrt{F^2 - 4F(F+k)^2}}{2(F+k)}`, :math:`u_\pm = 1 - \frac{(F+k)
v_\pm}{F}`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import _uniform
from .grid import GridModel

__all__ = ["GrayScott2D"]


class GrayScott2D(GridModel):
    r"""Gray–Scott, state ``(*batch, 2, H, W)`` (channels :math:`u`, :math:`v`).

    Args:
        size: ``H`` or ``(H, W)`` (default 64); length: the extent (default 2.5).
        du, dv: the diffusion coefficients (non-negative).
        feed, kill: :math:`F` and :math:`k` (non-negative).
        boundary: ``"periodic"`` or ``"closed"`` (no flux).
        learnable: the parameters that require gradients (default: all).

    Random initial states (Pearson's): :math:`u = 1, v = 0` except in one square of side
    :math:`L/5` at a uniformly random position, where :math:`u = 1/2, v = 1/4`; then each value
    is multiplied by an independent :math:`1 + U[-0.01, 0.01]` factor.
    """

    name = "gray_scott"
    default_tspan = (0.0, 1000.0)
    stiff = False
    parameter_names = ("du", "dv", "feed", "kill")
    parameter_ranges = {"du": (1.5e-5, 2.5e-5), "dv": (0.7e-5, 1.3e-5), "feed": (0.02, 0.06),
                        "kill": (0.05, 0.065)}

    def __init__(self, size=64, length=2.5, du=2e-5, dv=1e-5, feed=0.04, kill=0.06, *,
                 boundary: str = "periodic", spacing=None, learnable: Iterable[str] | None = None,
                 dtype=None, device=None):
        super().__init__(size, length, boundary, 2, spacing=spacing, dtype=dtype,
                         device=device)
        values = {"du": du, "dv": dv, "feed": feed, "kill": kill}
        self._init_parameters(values, learnable, nonnegative=values)

    def diffusion(self, t, u, p=None) -> torch.Tensor:
        r""":math:`(D_u\Delta u, D_v\Delta v)`."""
        lap = self.laplacian(u)
        du = self._value("du", p, trailing=2)
        dv = self._value("dv", p, trailing=2)
        return torch.stack([du * lap[..., 0, :, :], dv * lap[..., 1, :, :]], -3)

    def reaction(self, t, u, p=None) -> torch.Tensor:
        r""":math:`(-uv^2 + F(1-u),\; uv^2 - (F+k)v)`."""
        F = self._value("feed", p, trailing=2)
        k = self._value("kill", p, trailing=2)
        U, V = u[..., 0, :, :], u[..., 1, :, :]
        uvv = U * V * V
        return torch.stack([-uvv + F * (1 - U), uvv - (F + k) * V], -3)

    def forward(self, t, u, p=None):
        self._check_state(u)
        return self.diffusion(t, u, p) + self.reaction(t, u, p)

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape)
        corner = _uniform(shape + (2,), generator, self.dtype, self.device)
        x, y = self.coordinates()
        inside = None
        for k, coord in enumerate((x, y)):
            L = self.length[k]
            lo = (corner[..., k] * L).reshape(shape + (1, 1))
            d = torch.remainder(coord - lo, L)
            cond = d < L / 5
            inside = cond if inside is None else inside & cond
        inside = inside.to(self.dtype)
        U = 1 - 0.5 * inside
        V = 0.25 * inside
        noise = 1 + 0.02 * (_uniform(shape + self.state_shape, generator, self.dtype,
                                     self.device) - 0.5)
        return torch.stack([U, V], -3) * noise
