r"""The Lotka–Volterra predator–prey equations.

.. math::
    x' = \alpha x - \beta x y, \qquad y' = \delta x y - \gamma y,

with the conserved quantity :math:`V = \delta x - \gamma \ln x + \beta y - \alpha \ln y`
(Lotka 1925, Volterra 1926; the values of SciML's tutorial by default).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform

__all__ = ["LotkaVolterra"]


class LotkaVolterra(PhysicalModel):
    r"""Lotka–Volterra, state ``(*batch, 2)`` = (prey :math:`x`, predator :math:`y`).

    Args:
        alpha: prey growth rate; beta: predation rate; gamma: predator death rate;
            delta: predator growth per prey (all positive).
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`x, y \sim U[0.5, 2]` independently.
    """

    name = "lotka_volterra"
    default_tspan = (0.0, 10.0)
    stiff = False
    parameter_names = ("alpha", "beta", "gamma", "delta")
    parameter_ranges = {"alpha": (1.0, 2.0), "beta": (0.5, 1.5), "gamma": (2.0, 4.0),
                        "delta": (0.5, 1.5)}

    def __init__(self, alpha=1.5, beta=1.0, gamma=3.0, delta=1.0, *,
                 learnable: Iterable[str] | None = None, dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        values = {"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta}
        self._init_parameters(values, learnable, positive=values)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        x, y = u[..., 0], u[..., 1]
        a, b = self._value("alpha", p), self._value("beta", p)
        g, d = self._value("gamma", p), self._value("delta", p)
        xy = x * y
        return torch.stack([a * x - b * xy, d * xy - g * y], -1)

    def invariant(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`V = \delta x - \gamma\ln x + \beta y - \alpha\ln y`, constant on
        trajectories."""
        x, y = u[..., 0], u[..., 1]
        return (self.delta * x - self.gamma * torch.log(x) + self.beta * y
                - self.alpha * torch.log(y))

    def initial_state(self, batch_shape=(), generator=None):
        return 0.5 + 1.5 * _uniform(tuple(batch_shape) + (2,), generator, self.dtype,
                                    self.device)
