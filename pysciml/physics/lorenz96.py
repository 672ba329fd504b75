r"""The Lorenz (1996) model: ``n`` variables on a ring, forced and damped.

.. math::
    \frac{dx_i}{dt} = (x_{i+1} - x_{i-2})\,x_{i-1} - x_i + F, \qquad i = 1 \dots n,
    \quad x_{i+n} = x_i .

For :math:`n = 40, F = 8` the system is chaotic with leading Lyapunov exponent
:math:`\lambda_1 \approx 1.68` per time unit (Lorenz & Emanuel, J. Atmos. Sci. 55, 1998;
Karimi & Paul, Chaos 20, 2010). E. N. Lorenz, "Predictability: a problem partly solved" (1996).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _normal, check_int

__all__ = ["Lorenz96"]


class Lorenz96(PhysicalModel):
    r"""Lorenz-96, state ``(*batch, n)``.

    Args:
        n: the number of variables, ``n >= 4``.
        forcing: the forcing :math:`F` (a number, or one value per batch member).
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`x_i = F + \xi_i`, :math:`\xi_i \sim N(0, 1)` i.i.d.
    """

    name = "lorenz96"
    default_tspan = (0.0, 10.0)
    stiff = False
    parameter_names = ("forcing",)
    parameter_ranges = {"forcing": (6.0, 10.0)}

    def __init__(self, n: int = 40, forcing=8.0, *, learnable: Iterable[str] | None = None,
                 dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        self.n = check_int("n", n, 4)
        self._init_parameters({"forcing": forcing}, learnable)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        forcing = self._value("forcing", p, trailing=1)
        ahead = torch.roll(u, -1, -1)  # x_{i+1}
        behind = torch.roll(u, 1, -1)  # x_{i-1}
        behind2 = torch.roll(u, 2, -1)  # x_{i-2}
        return (ahead - behind2) * behind - u + forcing

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape)
        forcing = self.forcing.detach().reshape(self.forcing.shape + (1,))
        return forcing + _normal(shape + (self.n,), generator, self.dtype, self.device)

    def extra_repr(self) -> str:
        return f"n={self.n}, " + super().extra_repr()
