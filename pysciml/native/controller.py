r"""Step-size control: the error norm, the PI controller, and the initial step.

All functions act on a batch of members at once: times and step sizes have shape ``(B,)``,
states ``(B, N)``. Nothing here synchronises with the host.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["AbstractController", "PIController", "IController", "error_norm", "initial_step"]


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
    r"""Proportional–integral step-size control (Gustafsson 1991; Hairer & Wanner II, IV.2):

    .. math::
        h_{n+1} = h_n \cdot \mathrm{clip}\Big(s\, \|e_n\|^{-\beta_1} \|e_{n-1}\|^{\beta_2},\;
        f_{\min},\; f_{\max}\Big)

    with :math:`k` one more than the order of the error estimator and by default
    :math:`\beta_2 = 0.2/k`, :math:`\beta_1 = 1/k - 0.75\beta_2`: the rule of Hairer's DOPRI5
    code (:math:`\beta_1 = 0.17`, :math:`\beta_2 = 0.04` at :math:`k = 5`), scaled to other
    orders; ``beta2 = 0`` gives I control with :math:`\beta_1 = 1/k`.
    After a rejection the step only shrinks (by :math:`f_{\min}` when the trial step was not
    finite).

    Args:
        beta1, beta2: the exponents (``None``: the defaults above); ``beta2 = 0`` is I control.
        safety: the factor :math:`s`.
        factor_min, factor_max: bounds of the change of step size in one step.
    """

    beta1: float | None = None
    beta2: float | None = None
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety: expected a number in (0, 1], got {self.safety}")
        if not 0 < self.factor_min < 1 < self.factor_max:
            raise ValueError("factor_min, factor_max: expected 0 < factor_min < 1 < factor_max, "
                             f"got {self.factor_min}, {self.factor_max}")

    def init_state(self, like: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(like)

    def adapt(self, h, errn, state, accept, order):
        k = order + 1
        beta2 = 0.2 / k if self.beta2 is None else self.beta2
        beta1 = 1.0 / k - 0.75 * beta2 if self.beta1 is None else self.beta1
        # NaN or inf (a non-finite trial step) becomes a huge error: the largest cut
        e = torch.nan_to_num(errn, nan=1e30, posinf=1e30).clamp_min(1e-10)
        proportional = self.safety * e.pow(-beta1)
        grow = (proportional * state.pow(beta2)).clamp(self.factor_min, self.factor_max)
        shrink = proportional.clamp(self.factor_min, 1.0)
        factor = torch.where(accept, grow, shrink)
        new_state = torch.where(accept, e.clamp_min(1e-4), state)
        return h * factor, new_state


@dataclass(frozen=True)
class IController(PIController):
    r"""Integral (elementary) control, :math:`h_{n+1} = h_n\, s \|e_n\|^{-1/k}`: the
    controller of SciPy's RK45, torchdiffeq and diffrax's default."""

    beta2: float | None = 0.0



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
