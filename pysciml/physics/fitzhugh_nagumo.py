r"""The 2D FitzHugh–Nagumo reaction–diffusion system in the setting of APHYNITY (Yin et al.,
"Augmenting physical models with deep networks for complex dynamics forecasting", ICLR 2021):

.. math::
    \partial_t u = a\,\Delta u + R_u(u, v; k), \qquad \partial_t v = b\,\Delta v + R_v(u, v),
    \qquad R_u = u - u^3 - k - v, \quad R_v = u - v,

with :math:`a = 10^{-3}`, :math:`b = 5\cdot10^{-3}`, :math:`k = 5\cdot10^{-3}` on
:math:`[-1, 1]^2` (a 32 × 32 periodic grid), initial states uniform in :math:`[0, 1]`, and
:math:`t \in [0, 2.5]`. In APHYNITY the physical model is the diffusion (:meth:`diffusion`) and
the network learns the reaction (:meth:`reaction`). Five-point Laplacian (second order).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import _uniform
from .grid import GridModel

__all__ = ["FitzHughNagumo2D"]


class FitzHughNagumo2D(GridModel):
    r"""FitzHugh–Nagumo, state ``(*batch, 2, H, W)`` (channels :math:`u`, :math:`v`).

    Args:
        size: ``H`` or ``(H, W)`` (default 32); length: the domain's extent (default 2).
        a, b: the diffusion coefficients of :math:`u` and :math:`v` (non-negative).
        k: the reaction's threshold constant.
        boundary: ``"periodic"`` (APHYNITY's) or ``"closed"`` (no flux).
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`u, v \sim U[0, 1]` independently at each grid point (APHYNITY).
    """

    name = "fitzhugh_nagumo"
    default_tspan = (0.0, 2.5)
    stiff = False
    parameter_names = ("a", "b", "k")
    parameter_ranges = {"a": (5e-4, 2e-3), "b": (2.5e-3, 1e-2), "k": (2.5e-3, 1e-2)}

    def __init__(self, size=32, length=2.0, a=1e-3, b=5e-3, k=5e-3, *,
                 boundary: str = "periodic", spacing=None, learnable: Iterable[str] | None = None,
                 dtype=None, device=None):
        super().__init__(size, length, boundary, 2, spacing=spacing, dtype=dtype,
                         device=device)
        self._init_parameters({"a": a, "b": b, "k": k}, learnable, nonnegative=("a", "b"))

    def diffusion(self, t, u, p=None) -> torch.Tensor:
        r""":math:`(a\Delta u, b\Delta v)`: the physical model of APHYNITY."""
        a = self._value("a", p, trailing=2)
        b = self._value("b", p, trailing=2)
        lap = self.laplacian(u)
        return torch.stack([a * lap[..., 0, :, :], b * lap[..., 1, :, :]], -3)

    def reaction(self, t, u, p=None) -> torch.Tensor:
        r""":math:`(u - u^3 - k - v,\; u - v)`."""
        k = self._value("k", p, trailing=2)
        U, V = u[..., 0, :, :], u[..., 1, :, :]
        return torch.stack([U - U ** 3 - k - V, U - V], -3)

    def forward(self, t, u, p=None):
        self._check_state(u)
        return self.diffusion(t, u, p) + self.reaction(t, u, p)

    def initial_state(self, batch_shape=(), generator=None):
        return _uniform(tuple(batch_shape) + self.state_shape, generator, self.dtype,
                        self.device)
