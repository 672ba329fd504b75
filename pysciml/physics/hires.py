r"""HIRES: the "High Irradiance RESponse" of photomorphogenesis (Schäfer 1975), eight stiff
chemical reactions (Hairer & Wanner, *Solving ODEs II*, IV.10; the IVP test set of Mazzia &
Magherini):

.. math::
    \begin{aligned}
    y_1' &= -k_1 y_1 + k_2 y_2 + k_3 y_3 + k_4, &
    y_2' &= k_1 y_1 - k_5 y_2, \\
    y_3' &= -k_6 y_3 + k_2 y_4 + k_7 y_5, &
    y_4' &= k_3 y_2 + k_1 y_3 - k_8 y_4, \\
    y_5' &= -k_9 y_5 + k_2 y_6 + k_2 y_7, &
    y_6' &= -k_{10} y_6 y_8 + k_{11} y_4 + k_1 y_5 - k_2 y_6 + k_{11} y_7, \\
    y_7' &= k_{10} y_6 y_8 - k_{12} y_7, &
    y_8' &= -k_{10} y_6 y_8 + k_{12} y_7,
    \end{aligned}

with :math:`k = (1.71, 0.43, 8.32, 0.0007, 8.75, 10.03, 0.035, 1.12, 1.745, 280, 0.69, 1.81)`,
:math:`y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057)`, :math:`t \in [0, 321.8122]`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform

__all__ = ["HIRES"]

RATES = (1.71, 0.43, 8.32, 0.0007, 8.75, 10.03, 0.035, 1.12, 1.745, 280.0, 0.69, 1.81)
"""The reference rate constants :math:`k_1 \\dots k_{12}`."""

Y0 = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057)
"""The test set's initial state."""


class HIRES(PhysicalModel):
    r"""HIRES, state ``(*batch, 8)``; parameters ``k1`` … ``k12`` (positive rate constants,
    defaults :data:`RATES`).

    Random initial states: the reference :data:`Y0` with :math:`y_1` and :math:`y_8` each
    multiplied by an independent :math:`U[0.5, 1.5]` factor.
    """

    name = "hires"
    default_tspan = (0.0, 321.8122)
    stiff = True
    parameter_names = tuple(f"k{i}" for i in range(1, 13))
    parameter_ranges = {f"k{i}": (0.8 * k, 1.2 * k) for i, k in enumerate(RATES, 1)}

    def __init__(self, *, learnable: Iterable[str] | None = None, dtype=None, device=None,
                 **rates):
        super().__init__(dtype=dtype, device=device)
        unknown = set(rates) - set(self.parameter_names)
        if unknown:
            raise TypeError(f"HIRES: unexpected keyword(s) {sorted(unknown)}; the parameters "
                            f"are k1 ... k12")
        values = {name: rates.get(name, k) for name, k in zip(self.parameter_names, RATES,
                                                                strict=True)}
        self._init_parameters(values, learnable, positive=values)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (8,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        k = [self._value(name, p) for name in self.parameter_names]
        y = u.unbind(-1)
        r = k[9] * y[5] * y[7]
        return torch.stack([
            -k[0] * y[0] + k[1] * y[1] + k[2] * y[2] + k[3],
            k[0] * y[0] - k[4] * y[1],
            -k[5] * y[2] + k[1] * y[3] + k[6] * y[4],
            k[2] * y[1] + k[0] * y[2] - k[7] * y[3],
            -k[8] * y[4] + k[1] * y[5] + k[1] * y[6],
            -r + k[10] * y[3] + k[0] * y[4] - k[1] * y[5] + k[10] * y[6],
            r - k[11] * y[6],
            -r + k[11] * y[6],
        ], -1)

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape)
        y = torch.tensor(Y0, dtype=self.dtype, device=self.device).expand(shape + (8,)).clone()
        factors = 0.5 + _uniform(shape + (2,), generator, self.dtype, self.device)
        y[..., 0] = y[..., 0] * factors[..., 0]
        y[..., 7] = y[..., 7] * factors[..., 1]
        return y
