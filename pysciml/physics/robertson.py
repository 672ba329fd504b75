r"""Robertson's chemical kinetics (the classic stiff test problem).

.. math::
    y_1' = -k_1 y_1 + k_3 y_2 y_3, \qquad
    y_2' = k_1 y_1 - k_2 y_2^2 - k_3 y_2 y_3, \qquad
    y_3' = k_2 y_2^2,

with :math:`k_1 = 0.04, k_2 = 3\cdot10^7, k_3 = 10^4`; the total :math:`y_1 + y_2 + y_3` is
conserved. H. H. Robertson (1966); Hairer & Wanner, *Solving ODEs II*, IV.10 (ROBER); the IVP
test set of Mazzia & Magherini.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform

__all__ = ["Robertson"]


class Robertson(PhysicalModel):
    r"""Robertson, state ``(*batch, 3)`` = :math:`(y_1, y_2, y_3)`.

    Args:
        k1, k2, k3: the positive rate constants.
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`y_1 = 1 - s`, :math:`y_2 = 0`, :math:`y_3 = s`,
    :math:`s \sim U[0, 0.2]` (total mass 1).
    """

    name = "robertson"
    default_tspan = (0.0, 1e5)
    stiff = True
    parameter_names = ("k1", "k2", "k3")
    parameter_ranges = {"k1": (0.02, 0.08), "k2": (1e7, 5e7), "k3": (5e3, 2e4)}

    def __init__(self, k1=0.04, k2=3e7, k3=1e4, *, learnable: Iterable[str] | None = None,
                 dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        values = {"k1": k1, "k2": k2, "k3": k3}
        self._init_parameters(values, learnable, positive=values)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (3,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
        k1, k2, k3 = self._value("k1", p), self._value("k2", p), self._value("k3", p)
        a, b, c = k1 * y1, k2 * y2 * y2, k3 * y2 * y3
        return torch.stack([c - a, a - b - c, b], -1)

    def initial_state(self, batch_shape=(), generator=None):
        s = 0.2 * _uniform(tuple(batch_shape), generator, self.dtype, self.device)
        return torch.stack([1 - s, torch.zeros_like(s), s], -1)
