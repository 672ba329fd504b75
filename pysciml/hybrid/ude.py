r"""The Lotka–Volterra universal differential equation of Rackauckas et al. (2020, §2.1,
"Universal differential equations for scientific machine learning").

The true system (pysciml's :class:`~pysciml.physics.LotkaVolterra` convention) is

.. math::
    x' = \alpha x - \beta x y, \qquad y' = \delta x y - \gamma y .

Only the growth of the prey and the death of the predator are assumed known; a network
:math:`U_\theta: \mathbb{R}^2 \to \mathbb{R}^2` stands for the interaction:

.. math::
    x' = \alpha x + U_{\theta,1}(x, y), \qquad y' = -\gamma y + U_{\theta,2}(x, y),

so that after training :math:`U_\theta(x, y) \approx (-\beta x y,\; \delta x y)`. The paper's
values: :math:`\alpha = 1.3`, :math:`\beta = 0.9`, :math:`\gamma = 1.8`, :math:`\delta = 0.8`
(their :math:`\gamma` and :math:`\delta` are swapped with respect to this convention), a network
2–5–5–5–2 with Gaussian RBF activations, ADAM then BFGS.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import UniversalDifferentialEquation
from .networks import MLP

__all__ = ["LotkaVolterraKnownTerms", "lotka_volterra_ude", "lotka_volterra_interaction"]


class LotkaVolterraKnownTerms(nn.Module):
    r"""The known part of the Lotka–Volterra UDE: :math:`(\alpha x, -\gamma y)`, state
    ``(*batch, 2)``. ``alpha`` and ``gamma`` are ``nn.Parameter`` attributes (fixed unless named in
    ``learnable``)."""

    state_shape = (2,)

    def __init__(self, alpha: float = 1.3, gamma: float = 1.8, *, learnable=(), dtype=None,
                 device=None):
        super().__init__()
        if isinstance(learnable, str):
            learnable = (learnable,)
        unknown = set(learnable) - {"alpha", "gamma"}
        if unknown:
            raise ValueError(f"learnable: unknown parameter name(s) {sorted(unknown)}; expected "
                             "names among ['alpha', 'gamma']")
        for name, value in (("alpha", alpha), ("gamma", gamma)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
            setattr(self, name, nn.Parameter(
                torch.tensor(float(value), dtype=dtype or torch.get_default_dtype(),
                             device=device), requires_grad=name in learnable))

    def forward(self, t, u: torch.Tensor, p=None) -> torch.Tensor:
        if u.shape[-1] != 2:
            raise ValueError(f"u: expected shape (*batch, 2), got {tuple(u.shape)}")
        return torch.stack([self.alpha * u[..., 0], -self.gamma * u[..., 1]], -1)

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        return {"alpha": self.alpha, "gamma": self.gamma}


def lotka_volterra_ude(alpha: float = 1.3, gamma: float = 1.8, *, hidden: int = 5,
                       depth: int = 3, activation: str = "rbf", learnable=(), dtype=None,
                       device=None) -> UniversalDifferentialEquation:
    r"""The Lotka–Volterra UDE: known terms :math:`(\alpha x, -\gamma y)` plus an MLP
    :math:`2 \to` ``hidden`` (× ``depth``) :math:`\to 2` (the paper's 2–5–5–5–2 with RBF
    activations by default)."""
    known = LotkaVolterraKnownTerms(alpha, gamma, learnable=learnable, dtype=dtype, device=device)
    net = MLP(2, 2, hidden=hidden, depth=depth, activation=activation, dtype=dtype, device=device)
    return UniversalDifferentialEquation(known, net)


def lotka_volterra_interaction(u: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    r"""The true missing term :math:`(-\beta x y,\; \delta x y)` at states ``u`` ``(*batch, 2)``."""
    xy = u[..., 0] * u[..., 1]
    return torch.stack([-beta * xy, delta * xy], -1)
