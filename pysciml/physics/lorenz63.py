r"""The Lorenz (1963) system.

.. math::
    x' = \sigma (y - x), \qquad y' = x(\rho - z) - y, \qquad z' = x y - \beta z,

chaotic for the classical :math:`\sigma = 10, \rho = 28, \beta = 8/3` (leading Lyapunov exponent
about 0.906). E. N. Lorenz, "Deterministic nonperiodic flow", J. Atmos. Sci. 20 (1963).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform

__all__ = ["Lorenz63"]


class Lorenz63(PhysicalModel):
    r"""Lorenz-63, state ``(*batch, 3)`` = :math:`(x, y, z)`.

    Args:
        sigma, rho, beta: the Prandtl number, the reduced Rayleigh number and the aspect factor
            (all positive).
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`x, y \sim U[-15, 15]`, :math:`z \sim U[5, 40]`.
    """

    name = "lorenz63"
    default_tspan = (0.0, 10.0)
    stiff = False
    parameter_names = ("sigma", "rho", "beta")
    parameter_ranges = {"sigma": (8.0, 12.0), "rho": (20.0, 35.0), "beta": (2.0, 3.0)}

    def __init__(self, sigma=10.0, rho=28.0, beta=8.0 / 3.0, *,
                 learnable: Iterable[str] | None = None, dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        values = {"sigma": sigma, "rho": rho, "beta": beta}
        self._init_parameters(values, learnable, positive=values)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (3,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        s, r, b = self._value("sigma", p), self._value("rho", p), self._value("beta", p)
        return torch.stack([s * (y - x), x * (r - z) - y, x * y - b * z], -1)

    def initial_state(self, batch_shape=(), generator=None):
        r = _uniform(tuple(batch_shape) + (3,), generator, self.dtype, self.device)
        low = torch.tensor([-15.0, -15.0, 5.0], dtype=self.dtype, device=self.device)
        width = torch.tensor([30.0, 30.0, 35.0], dtype=self.dtype, device=self.device)
        return low + r * width
