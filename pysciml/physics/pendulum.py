r"""The damped pendulum.

.. math::
    \ddot\theta + \alpha\,\dot\theta + \omega_0^2 \sin\theta = 0, \qquad
    u = (\theta, \omega), \quad \theta' = \omega, \quad
    \omega' = -\omega_0^2 \sin\theta - \alpha\,\omega .

For small angles it is the damped harmonic oscillator
:math:`\theta(t) = e^{-\alpha t/2}(A\cos\omega_d t + B\sin\omega_d t)`,
:math:`\omega_d = \sqrt{\omega_0^2 - \alpha^2/4}`; without damping the energy
:math:`\tfrac12\omega^2 + \omega_0^2(1 - \cos\theta)` is conserved. (The pendulum of APHYNITY,
Yin et al. 2021, with the friction term as the part a network learns.)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform

__all__ = ["DampedPendulum"]


class DampedPendulum(PhysicalModel):
    r"""The damped pendulum, state ``(*batch, 2)`` = :math:`(\theta, \omega)`.

    Args:
        omega0: the natural angular frequency :math:`\omega_0 > 0` (rad/s).
        alpha: the damping rate :math:`\alpha \ge 0` (1/s).
        learnable: the parameters that require gradients (default: all).

    Random initial states: :math:`\theta \sim U[-\pi/2, \pi/2]`, :math:`\omega \sim U[-1, 1]`.
    """

    name = "pendulum"
    default_tspan = (0.0, 10.0)
    stiff = False
    parameter_names = ("omega0", "alpha")
    parameter_ranges = {"omega0": (0.5, 2.0), "alpha": (0.0, 0.5)}

    def __init__(self, omega0=2 * torch.pi / 6, alpha=0.2, *,
                 learnable: Iterable[str] | None = None, dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        self._init_parameters({"omega0": omega0, "alpha": alpha}, learnable,
                              positive=("omega0",), nonnegative=("alpha",))

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2,)

    def forward(self, t, u, p=None):
        self._check_state(u)
        theta, omega = u[..., 0], u[..., 1]
        w0, alpha = self._value("omega0", p), self._value("alpha", p)
        return torch.stack([omega, -w0 * w0 * torch.sin(theta) - alpha * omega], -1)

    def energy(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`\tfrac12\omega^2 + \omega_0^2 (1 - \cos\theta)` per member."""
        theta, omega = u[..., 0], u[..., 1]
        return 0.5 * omega ** 2 + self.omega0 ** 2 * (1 - torch.cos(theta))

    def initial_state(self, batch_shape=(), generator=None):
        r = _uniform(tuple(batch_shape) + (2,), generator, self.dtype, self.device)
        scale = torch.tensor([torch.pi, 2.0], dtype=self.dtype, device=self.device)
        return (r - 0.5) * scale
