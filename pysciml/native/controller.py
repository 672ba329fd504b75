r"""Step-size control: the error norm, the PI controller, and the initial step.

All functions act on a batch of members at once: times and step sizes have shape ``(B,)``,
states ``(B, N)``. Nothing here synchronises with the host.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["AbstractController", "PIController", "IController", "EXPLICIT_DEFAULT",
           "error_norm", "initial_step"]


def error_norm(err: torch.Tensor, u: torch.Tensor, u_new: torch.Tensor,
               rtol: torch.Tensor | float, atol: torch.Tensor | float) -> torch.Tensor:
    r"""The scaled RMS norm of a local error estimate, one value per member:

    .. math::
        \|e\| = \sqrt{\frac1N \sum_i \Big(\frac{e_i}{\mathrm{atol}_i + \mathrm{rtol}_i
        \max(|u_i|, |\tilde u_i|)}\Big)^2}

    (Hairer, Nørsett & Wanner I, II.4). A step is acceptable when :math:`\|e\| \le 1`.
    """
    scale = atol + rtol * torch.maximum(u.abs(), u_new.abs())
    return (err / scale).square().mean(-1).sqrt()


class AbstractController(abc.ABC):
    """A step-size controller: settings only; its state (the previous error) is passed in."""

    @abc.abstractmethod
    def init_state(self, like: torch.Tensor) -> torch.Tensor:
        """The controller state at the start, shaped like ``like`` ``(B,)``."""

    @abc.abstractmethod
    def adapt(self, h: torch.Tensor, errn: torch.Tensor, state: torch.Tensor,
              accept: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next step size and state from the step taken, its error norm and acceptance."""


@dataclass(frozen=True)
class PIController(AbstractController):
    r"""Proportional–integral step-size control (Gustafsson 1991; Hairer & Wanner II, IV.2;
    Söderlind 2002):

    .. math::
        h_{n+1} = h_n \cdot \mathrm{clip}\Big(s\, \|e_n\|^{-\beta_1} \|e_{n-1}\|^{\beta_2},\;
        f_{\min},\; f_{\max}\Big), \qquad
        \beta_1 = \frac{k_I + k_P}{k}, \quad \beta_2 = \frac{k_P}{k},

    with :math:`k` one more than the order of the error estimator. The integral gain
    :math:`k_I` sets how fast the step follows the error (:math:`k_I = 1, k_P = 0` is I control,
    :math:`h_{n+1} = h_n s \|e_n\|^{-1/k}`); the proportional gain :math:`k_P` reacts to the
    change of the error from step to step, damping the oscillation of step sizes that I control
    shows where stability limits the step. The previous error is floored at ``1e-4`` (as in
    Hairer's DOPRI5) and is 1 before the first step.

    Defaults :math:`k_P = 0.2`, :math:`k_I = 0.65`: Hairer's DOPRI5 rule (:math:`\beta_2 =
    0.2/k`, :math:`\beta_1 = 1/k - 0.75\beta_2`; :math:`\beta_1 = 0.17`, :math:`\beta_2 =
    0.04` at :math:`k = 5`), the default of the stiff families. The explicit Runge–Kutta
    methods default to :data:`EXPLICIT_DEFAULT`, :math:`k_P = 0.4`, :math:`k_I = 1` (a PI
    controller with the integral gain of I control, diffrax's advice for smoothly varying
    problems): on short smooth solves, such as a neural ODE's, the smaller integral gain of the
    DOPRI5 rule grows the step from its cautious first value more slowly and costs one or two
    steps more.

    After a rejection the step only shrinks (by :math:`f_{\min}` when the trial step was not
    finite).

    Args:
        pcoeff, icoeff: the gains :math:`k_P \ge 0` and :math:`k_I > 0`.
        beta1, beta2: the exponents themselves, overriding the gains (``None``: from them).
        safety: the factor :math:`s`.
        factor_min, factor_max: bounds of the change of step size in one step.
    """

    pcoeff: float = 0.2
    icoeff: float = 0.65
    beta1: float | None = None
    beta2: float | None = None
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pcoeff) and self.pcoeff >= 0):
            raise ValueError(f"pcoeff: expected a finite number >= 0, got {self.pcoeff}")
        if not (math.isfinite(self.icoeff) and self.icoeff > 0):
            raise ValueError(f"icoeff: expected a finite number > 0, got {self.icoeff}")
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety: expected a number in (0, 1], got {self.safety}")
        if not 0 < self.factor_min < 1 < self.factor_max:
            raise ValueError("factor_min, factor_max: expected 0 < factor_min < 1 < factor_max, "
                             f"got {self.factor_min}, {self.factor_max}")

    def exponents(self, order: int) -> tuple[float, float]:
        """:math:`(\beta_1, \beta_2)` for an error estimator of order ``order``."""
        k = order + 1
        beta2 = self.pcoeff / k if self.beta2 is None else self.beta2
        beta1 = (self.icoeff + self.pcoeff) / k if self.beta1 is None else self.beta1
        return beta1, beta2

    def init_state(self, like: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(like)

    def adapt(self, h, errn, state, accept, order):
        beta1, beta2 = self.exponents(order)
        # NaN or inf (a non-finite trial step) becomes a huge error: the largest cut
        e = torch.nan_to_num(errn, nan=1e30, posinf=1e30).clamp_min(1e-10)
        proportional = self.safety * e.pow(-beta1)
        grow = proportional * state.pow(beta2) if beta2 else proportional
        grow = grow.clamp(self.factor_min, self.factor_max)
        shrink = proportional.clamp(self.factor_min, 1.0)
        factor = torch.where(accept, grow, shrink)
        new_state = torch.where(accept, e.clamp_min(1e-4), state)
        return h * factor, new_state


@dataclass(frozen=True)
class IController(PIController):
    r"""Integral (elementary) control, :math:`h_{n+1} = h_n\, s \|e_n\|^{-1/k}`: the
    controller of SciPy's RK45, torchdiffeq and diffrax's default."""

    pcoeff: float = 0.0
    icoeff: float = 1.0


EXPLICIT_DEFAULT = PIController(pcoeff=0.4, icoeff=1.0)
"""The explicit Runge–Kutta methods' default step-size control (see :class:`PIController`)."""


def initial_step(f: Callable, t0: torch.Tensor, u0: torch.Tensor, f0: torch.Tensor,
                 direction: float, order: int, rtol, atol,
                 span: torch.Tensor) -> torch.Tensor:
    r"""Hairer & Wanner's starting step size (Hairer, Nørsett & Wanner I, II.4, p. 169).

    With :math:`d_0 = \|u_0\|`, :math:`d_1 = \|f_0\|` (scaled norms), :math:`h_0 = 0.01 d_0/d_1`,
    one explicit Euler step gives :math:`d_2 = \|f(t_0+h_0, u_0+h_0 f_0) - f_0\| / h_0`, and
    :math:`h = \min(100 h_0, (0.01/\max(d_1, d_2))^{1/(q+1)}, |t_1 - t_0|)`.

    Returns the signed step, shape ``(B,)``; costs one call of ``f``.
    """
    scale = atol + rtol * u0.abs()
    d0 = (u0 / scale).square().mean(-1).sqrt()
    d1 = (f0 / scale).square().mean(-1).sqrt()
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    h0 = torch.minimum(h0, span)
    u1 = u0 + (direction * h0)[:, None] * f0
    f1 = f(t0 + direction * h0, u1)
    d2 = ((f1 - f0) / scale).square().mean(-1).sqrt() / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.clamp_min(h0 * 1e-3, 1e-6),
                     (0.01 / dmax.clamp_min(1e-300)).pow(1.0 / (order + 1)))
    h = torch.minimum(torch.minimum(100 * h0, h1), span)
    h = torch.where(torch.isfinite(h) & (h > 0), h, span * 1e-6)
    return direction * h
