r"""The Van der Pol oscillator.

.. math::
    \ddot x - \mu (1 - x^2)\,\dot x + x = 0, \qquad u = (x, y), \quad x' = y, \quad
    y' = \mu (1 - x^2)\, y - x .

A limit cycle of period :math:`\approx (3 - 2\ln 2)\mu` for large :math:`\mu`, where the problem
is stiff. With :math:`\tau = t/\mu`, :math:`\varepsilon = \mu^{-2}` it is the scaled form of
Hairer & Wanner (VDPOL of the IVP test set): :math:`x_\tau = z`,
:math:`z_\tau = ((1 - x^2) z - x)/\varepsilon`, with :math:`z = \mu y`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform

__all__ = ["VanDerPol"]


class VanDerPol(PhysicalModel):
    r"""Van der Pol, state ``(*batch, 2)`` = :math:`(x, \dot x)`.

    Args:
        mu: the nonlinearity and damping :math:`\mu > 0`.
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`x, y \sim U[-3, 3]`. ``default_algorithm()`` is ``Tsit5()``
    while :math:`\mu \le 10` and ``Rodas5P()`` beyond (stiff).
    """

    name = "van_der_pol"
    default_tspan = (0.0, 20.0)
    stiff = False
    parameter_names = ("mu",)
    parameter_ranges = {"mu": (0.5, 5.0)}

    def __init__(self, mu=1.0, *, learnable: Iterable[str] | None = None, dtype=None,
                 device=None):
        super().__init__(dtype=dtype, device=device)
        self._init_parameters({"mu": mu}, learnable, positive=("mu",))

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        x, y = u[..., 0], u[..., 1]
        mu = self._value("mu", p)
        return torch.stack([y, mu * (1 - x * x) * y - x], -1)

    def default_algorithm(self):
        from ..algorithms import Rodas5P, Tsit5

        return Rodas5P() if float(self.mu.detach().max()) > 10 else Tsit5()

    def initial_state(self, batch_shape=(), generator=None):
        return 6 * _uniform(tuple(batch_shape) + (2,), generator, self.dtype, self.device) - 3
