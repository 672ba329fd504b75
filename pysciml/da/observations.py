r"""Observations and observation operators for variational data assimilation.

An observation at time :math:`t_k` is

.. math::
    y_k = \mathcal H\big(x(t_k)\big) + \varepsilon_k, \qquad
    \varepsilon_k \sim \mathcal N(0, R_k), \quad R_k = \operatorname{diag}(\sigma_k^2),

with :math:`\mathcal H` an observation operator mapping a state of shape ``(*batch, *state)`` to
``(*batch, *obs)``. The operators here are linear:

* :class:`IdentityObservation` — the whole state (``obs = state``);
* :class:`MaskObservation` — the state entries where a fixed boolean mask is true, gathered into a
  vector (``obs = (mask.sum(),)``): sparse or partial observing networks;
* :class:`SubsampleObservation` — every ``stride``-th grid point in each spatial dimension
  (``obs`` = the subsampled grid): coarse observations of a field;
* :class:`LinearObservation` — a matrix :math:`H` of shape ``(m, n)`` applied to the flattened
  state (``obs = (m,)``).

Any callable ``x -> y`` that maps ``(*batch, *state)`` to ``(*batch, *obs)`` may be used as well;
incremental 4DVar linearises it by automatic differentiation.

**Missing data.** An entry of ``values`` that is NaN counts as *missing*: its residual is zero,
it adds nothing to the cost, and it does not need a variance. An optional boolean ``observed``
tensor of ``values``' shape marks further entries as missing (``False``). Time-varying observing
networks are written this way (an identity or mask operator with NaN where nothing was
observed). Subsampling in time is the choice of ``times``.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "ObservationOperator", "IdentityObservation", "MaskObservation", "SubsampleObservation",
    "LinearObservation", "Observations",
]


class ObservationOperator(abc.ABC):
    r"""An observation operator :math:`\mathcal H`: ``(*batch, *state) -> (*batch, *obs)``.

    ``__call__(x, state_ndim)`` receives the number of state dimensions (the rest are batch);
    ``output_shape(state_shape)`` checks the state shape and gives ``obs`` (``None`` when the
    operator cannot tell without being applied).
    """

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor, state_ndim: int) -> torch.Tensor:
        """Apply the operator to ``x`` of shape ``(*batch, *state)``."""

    def output_shape(self, state_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """``obs`` for a state of shape ``state_shape``; raises ``ValueError`` if it does not
        fit."""
        return None


class IdentityObservation(ObservationOperator):
    r""":math:`\mathcal H(x) = x`: every state entry is observed (NaN values mark gaps)."""

    def __call__(self, x: torch.Tensor, state_ndim: int) -> torch.Tensor:
        return x

    def output_shape(self, state_shape):
        return tuple(state_shape)

    def __repr__(self) -> str:
        return "IdentityObservation()"


class MaskObservation(ObservationOperator):
    r""":math:`\mathcal H(x) = x[\text{mask}]`: the entries where a boolean ``mask`` of the state's
    shape is true, as a vector of length ``mask.sum()`` (a fixed sparse network)."""

    def __init__(self, mask: torch.Tensor):
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask: expected a boolean tensor of the state's shape, got {got}")
        if int(mask.sum()) == 0:
            raise ValueError("mask: observes nothing (no True entry)")
        self.mask = mask
        self._index = mask.reshape(-1).nonzero().squeeze(-1)

    def __call__(self, x: torch.Tensor, state_ndim: int) -> torch.Tensor:
        flat = x.reshape(*x.shape[: x.ndim - state_ndim], -1)
        return flat.index_select(-1, self._index.to(x.device))

    def output_shape(self, state_shape):
        if tuple(self.mask.shape) != tuple(state_shape):
            raise ValueError(f"mask: shape {tuple(self.mask.shape)}, expected the state shape "
                             f"{tuple(state_shape)}")
        return (int(self._index.numel()),)

    def __repr__(self) -> str:
        return f"MaskObservation({int(self._index.numel())} of {self.mask.numel()} entries)"


class SubsampleObservation(ObservationOperator):
    r""":math:`\mathcal H(x) = x[\dots, o_1::s_1, \dots, o_d::s_d]`: every ``stride``-th point of
    the last ``d = len(stride)`` (spatial) dimensions, starting at ``offset``."""

    def __init__(self, stride: tuple[int, ...] | int, offset: tuple[int, ...] | int = 0):
        stride = (stride,) if isinstance(stride, int) else tuple(stride)
        offset = (offset,) * len(stride) if isinstance(offset, int) else tuple(offset)
        if not stride or not all(isinstance(s, int) and s >= 1 for s in stride):
            raise ValueError(f"stride: expected positive ints, got {stride!r}")
        if len(offset) != len(stride) or not all(isinstance(o, int) and 0 <= o < s
                                                  for o, s in zip(offset, stride)):
            raise ValueError(f"offset: expected one int in [0, stride) per strided dimension, "
                             f"got {offset!r} for stride {stride!r}")
        self.stride, self.offset = stride, offset

    def __call__(self, x: torch.Tensor, state_ndim: int) -> torch.Tensor:
        index = (Ellipsis,) + tuple(slice(o, None, s) for o, s in zip(self.offset, self.stride))
        return x[index]

    def output_shape(self, state_shape):
        d = len(self.stride)
        if len(state_shape) < d:
            raise ValueError(f"stride: {d} strided dimensions for a state of shape "
                             f"{tuple(state_shape)}")
        lead, grid = tuple(state_shape[:-d]), state_shape[-d:]
        return lead + tuple(len(range(o, n, s)) for n, o, s in
                            zip(grid, self.offset, self.stride))

    def __repr__(self) -> str:
        return f"SubsampleObservation(stride={self.stride}, offset={self.offset})"


class LinearObservation(ObservationOperator):
    r""":math:`\mathcal H(x) = H\,\operatorname{vec}(x)` with a matrix ``H`` of shape ``(m, n)``,
    ``n`` the number of state entries (row-major flattening)."""

    def __init__(self, matrix: torch.Tensor):
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 \
                or not matrix.is_floating_point():
            raise TypeError("matrix: expected a floating-point tensor of shape (m, n)")
        self.matrix = matrix

    def __call__(self, x: torch.Tensor, state_ndim: int) -> torch.Tensor:
        flat = x.reshape(*x.shape[: x.ndim - state_ndim], -1)
        return flat @ self.matrix.to(dtype=x.dtype, device=x.device).transpose(0, 1)

    def output_shape(self, state_shape):
        n = math.prod(state_shape)
        if self.matrix.shape[1] != n:
            raise ValueError(f"matrix: has {self.matrix.shape[1]} columns, expected one per "
                             f"state entry ({n} for the state shape {tuple(state_shape)})")
        return (int(self.matrix.shape[0]),)

    def __repr__(self) -> str:
        return f"LinearObservation({tuple(self.matrix.shape)})"


class _CallableObservation(ObservationOperator):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, x, state_ndim):
        return self.fn(x)


def as_operator(operator: Any) -> ObservationOperator:
    """An :class:`ObservationOperator` from ``None`` (identity), an operator, or a callable."""
    if operator is None:
        return IdentityObservation()
    if isinstance(operator, ObservationOperator):
        return operator
    if callable(operator):
        return _CallableObservation(operator)
    raise TypeError(f"operator: expected an ObservationOperator, a callable or None, got "
                    f"{type(operator).__name__}")


@dataclass(frozen=True, eq=False)
class Observations:
    r"""Observations :math:`y_k` at times :math:`t_k` of a window, with diagonal error
    covariance :math:`R_k = \operatorname{diag}(\sigma_k^2)`.

    Args:
        times: the observation times, a 1-d strictly increasing sequence inside the window.
        values: shape ``(K, *batch, *obs)`` with ``K = len(times)``; NaN marks a missing value.
        variance: :math:`\sigma^2`, a positive number or a tensor broadcastable to ``values``
            (e.g. ``(K, 1, ..., 1)`` per time or ``obs``-shaped per component).
        operator: the observation operator (``None``: identity), see the module docstring.
        observed: optional boolean tensor broadcastable to ``values``; ``False`` marks missing.
    """

    times: Any
    values: torch.Tensor
    variance: Any = 1.0
    operator: Any = None
    observed: torch.Tensor | None = None

    def __post_init__(self) -> None:
        values = self.values
        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            got = values.dtype if isinstance(values, torch.Tensor) else type(values).__name__
            raise TypeError(f"values: expected a floating-point tensor of shape (K, *batch, "
                            f"*obs), got {got}")
        if bool(torch.isinf(values).any()):
            raise ValueError("values: contains inf (use NaN for missing observations)")
        try:
            times = torch.as_tensor(self.times, dtype=values.dtype).to(values.device)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"times: expected a 1-d sequence of numbers, got "
                            f"{type(self.times).__name__}") from None
        if times.ndim != 1 or times.numel() == 0:
            raise ValueError(f"times: expected a non-empty 1-d sequence, got shape "
                             f"{tuple(times.shape)}")
        if not bool(torch.isfinite(times).all()):
            raise ValueError("times: expected finite times")
        if times.numel() > 1 and not bool((times[1:] > times[:-1]).all()):
            raise ValueError("times: expected strictly increasing times")
        if values.ndim < 1 or values.shape[0] != times.numel():
            raise ValueError(f"values: leading dimension {values.shape[0] if values.ndim else 0} "
                             f"does not match the {times.numel()} observation times")
        object.__setattr__(self, "times", times.detach())
        object.__setattr__(self, "operator", as_operator(self.operator))
        variance = self.variance
        if isinstance(variance, bool) or not isinstance(variance, (numbers.Real, torch.Tensor)):
            raise TypeError(f"variance: expected a positive number or tensor, got "
                            f"{type(variance).__name__}")
        variance = torch.as_tensor(variance, dtype=values.dtype).to(values.device)
        if not bool(torch.isfinite(variance).all()) or not bool((variance > 0).all()):
            raise ValueError("variance: expected finite values > 0 (R must be positive definite)")
        try:
            torch.broadcast_shapes(variance.shape, values.shape)
        except RuntimeError:
            raise ValueError(f"variance: shape {tuple(variance.shape)} does not broadcast to "
                             f"values' shape {tuple(values.shape)}") from None
        object.__setattr__(self, "variance", variance)
        if self.observed is not None:
            obs = self.observed
            if not isinstance(obs, torch.Tensor) or obs.dtype != torch.bool:
                raise TypeError("observed: expected a boolean tensor (True where observed)")
            try:
                torch.broadcast_shapes(obs.shape, values.shape)
            except RuntimeError:
                raise ValueError(f"observed: shape {tuple(obs.shape)} does not broadcast to "
                                 f"values' shape {tuple(values.shape)}") from None

    @property
    def available(self) -> torch.Tensor:
        """Boolean tensor of ``values``' shape: observed and not NaN."""
        mask = ~torch.isnan(self.values)
        if self.observed is not None:
            mask = mask & self.observed.to(mask.device)
        return mask

    @property
    def filled(self) -> torch.Tensor:
        """``values`` with the missing entries set to zero."""
        return torch.where(self.available, self.values, torch.zeros_like(self.values))

    def subset(self, index: torch.Tensor | slice, batch_dim: int = 0) -> Observations:
        """The observations of some batch members (index along batch dimension ``batch_dim``,
        i.e. dimension ``1 + batch_dim`` of ``values``)."""
        dim = 1 + batch_dim

        def pick(x):
            if x is None or x.ndim <= dim or x.shape[dim] == 1:
                return x
            if isinstance(index, slice):
                return x[(slice(None),) * dim + (index,)]
            return x.index_select(dim, index.to(x.device))

        return Observations(self.times, pick(self.values), pick(self.variance), self.operator,
                            pick(self.observed))

    def residual(self, forecast_obs: torch.Tensor) -> torch.Tensor:
        r"""Normalised innovations :math:`R^{-1/2}(y - \mathcal H x)` with zeros where missing."""
        r = (self.values - forecast_obs) / self.variance.sqrt()
        return torch.where(self.available, r, torch.zeros_like(r))
