r"""Background-error covariance models :math:`B` through their square roots.

4DVar minimises over the control variable :math:`v` with :math:`x = x_b + B^{1/2} v`, so that
:math:`\tfrac12\|x - x_b\|^2_{B^{-1}} = \tfrac12\|v\|^2` (the *control variable transform*, which
also preconditions the minimisation). A covariance model therefore provides :math:`B^{1/2}`
(:meth:`sqrt`) and its inverse :math:`B^{-1/2}` (:meth:`inv_sqrt`), both acting on tensors of
shape ``(*batch, *state)``.

* :class:`DiagonalCovariance`: :math:`B = \operatorname{diag}(\sigma_b^2)`.
* :class:`DiffusionCovariance`: the diffusion-operator correlation model of Weaver & Courtier
  (2001), :math:`B = \Sigma\,\Lambda\,L\,\Lambda\,\Sigma` with :math:`\Sigma = \operatorname{diag}
  (\sigma_b)`, :math:`L = (I - \kappa\Delta)^{-M}` (``M`` implicit diffusion steps) and
  :math:`\Lambda = \operatorname{diag}(L)^{-1/2}` normalising the correlations to 1 on the
  diagonal; :math:`B^{1/2} = \Sigma\Lambda(I - \kappa\Delta)^{-M/2}`.

Reference: A. Weaver and P. Courtier, "Correlation modelling on the sphere using a generalized
diffusion equation", Q. J. R. Meteorol. Soc. 127 (2001) 1815–1846.
"""

from __future__ import annotations

import abc
import itertools
import math
import numbers
from typing import Any

import torch

__all__ = ["Covariance", "DiagonalCovariance", "DiffusionCovariance"]


class Covariance(abc.ABC):
    r"""A symmetric positive-definite covariance :math:`B` given by :math:`B^{1/2}` and
    :math:`B^{-1/2}` (with :math:`B = B^{1/2} B^{1/2\top}`)."""

    @abc.abstractmethod
    def sqrt(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`B^{1/2} v` for ``v`` of shape ``(*batch, *state)``."""

    @abc.abstractmethod
    def inv_sqrt(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`B^{-1/2} x` for ``x`` of shape ``(*batch, *state)``."""

    @abc.abstractmethod
    def check(self, state_shape: tuple[int, ...], name: str) -> None:
        """Raise ``ValueError`` naming ``name`` if this covariance cannot act on the state."""


def _positive(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name}: expected a positive number or tensor, got "
                        f"{type(value).__name__}")
    t = torch.as_tensor(value)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.numel() == 0 or not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError(f"{name}: expected finite values > 0 (a covariance must be positive "
                         "definite)")
    return t


class DiagonalCovariance(Covariance):
    r""":math:`B = \operatorname{diag}(\sigma_b^2)`: uncorrelated background errors.

    Args:
        variance: :math:`\sigma_b^2`, a positive number or a tensor broadcastable to the state.
    """

    def __init__(self, variance: Any):
        self.variance = _positive(variance, "variance")
        self._std = self.variance.sqrt()

    def _s(self, x: torch.Tensor) -> torch.Tensor:
        return self._std.to(dtype=x.dtype, device=x.device)

    def sqrt(self, v):
        return v * self._s(v)

    def inv_sqrt(self, x):
        return x / self._s(x)

    def check(self, state_shape, name):
        try:
            torch.broadcast_shapes(self.variance.shape, tuple(state_shape))
        except RuntimeError:
            raise ValueError(f"{name}: variance of shape {tuple(self.variance.shape)} does not "
                             f"broadcast to the state shape {tuple(state_shape)}") from None

    def __repr__(self) -> str:
        v = self.variance
        return f"DiagonalCovariance({float(v) if v.numel() == 1 else tuple(v.shape)})"


class DiffusionCovariance(Covariance):
    r"""Gaussian-like correlations by implicit diffusion (Weaver & Courtier 2001).

    The correlation operator is :math:`C = \Lambda L \Lambda` with
    :math:`L = (I - \kappa\Delta_h)^{-M}`, :math:`\Delta_h` the second-order finite-difference
    Laplacian on the last ``d = len(spacing)`` dimensions of the state, and
    :math:`\kappa = \ell^2 / (2M)`: as :math:`M \to \infty` the correlation between points at
    distance :math:`r` tends to :math:`\exp(-r^2/(2\ell^2))` (Weaver & Courtier, eq. 13).
    Leading state dimensions (channels) are uncorrelated. :math:`\Lambda =
    \operatorname{diag}(L)^{-1/2}` is computed exactly.

    The implicit steps are solved exactly in Fourier space: ``boundary="periodic"`` by FFT,
    ``boundary="closed"`` (zero-flux, cell-centred: ghost value = edge value) by the FFT of the
    even extension of length ``2n`` (a DCT-II), which is diagonal for the Neumann Laplacian.

    Args:
        shape: the grid shape ``(n_1, …, n_d)`` (the last ``d`` state dimensions).
        length_scale: :math:`\ell` in the units of ``spacing``.
        variance: :math:`\sigma_b^2`, a positive number or a tensor broadcastable to the state.
        steps: ``M``, an even number of implicit diffusion steps (default 10).
        spacing: the grid spacing per dimension (default 1).
        boundary: ``"periodic"`` or ``"closed"``.
    """

    def __init__(self, shape: tuple[int, ...], length_scale: float, variance: Any = 1.0, *,
                 steps: int = 10, spacing: float | tuple[float, ...] = 1.0,
                 boundary: str = "periodic"):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape or not all(isinstance(n, int) and n >= 1 for n in shape):
            raise ValueError(f"shape: expected positive ints, got {shape!r}")
        spacing = (spacing,) * len(shape) if isinstance(spacing, numbers.Real) else tuple(spacing)
        if len(spacing) != len(shape) or not all(isinstance(h, numbers.Real) and h > 0
                                                  for h in spacing):
            raise ValueError(f"spacing: expected one positive number per grid dimension, got "
                             f"{spacing!r}")
        if isinstance(length_scale, bool) or not isinstance(length_scale, numbers.Real) \
                or not length_scale > 0 or not math.isfinite(length_scale):
            raise ValueError(f"length_scale: expected a finite number > 0, got {length_scale!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2 or steps % 2:
            raise ValueError(f"steps: expected an even int >= 2, got {steps!r}")
        if boundary not in ("periodic", "closed"):
            raise ValueError(f"boundary: expected 'periodic' or 'closed', got {boundary!r}")
        self.shape, self.spacing, self.boundary = shape, spacing, boundary
        self.length_scale, self.steps = float(length_scale), steps
        self.kappa = self.length_scale ** 2 / (2 * steps)
        self.variance = _positive(variance, "variance")
        self._cache: dict = {}

    # -- Fourier symbols -----------------------------------------------------------------------
    def _ext(self) -> tuple[int, ...]:
        return self.shape if self.boundary == "periodic" else tuple(2 * n for n in self.shape)

    def _symbol(self, dtype, device) -> torch.Tensor:
        r""":math:`1 - \kappa\lambda_k \ge 1` on the (extended) grid's rfft frequencies."""
        key = ("symbol", dtype, device)
        if key not in self._cache:
            ext = self._ext()
            lam = torch.zeros((), dtype=dtype, device=device)
            for i, (n, h) in enumerate(zip(ext, self.spacing)):
                k = (torch.fft.rfftfreq(n, device=device) if i == len(ext) - 1
                     else torch.fft.fftfreq(n, device=device)).to(dtype) * n
                eig = (2 * torch.cos(2 * math.pi * k / n) - 2) / h ** 2
                lam = lam[..., None] + eig
            self._cache[key] = 1 - self.kappa * lam
        return self._cache[key]

    def _apply_power(self, x: torch.Tensor, power: float) -> torch.Tensor:
        r""":math:`(I - \kappa\Delta)^{\text{power}} x` over the last ``d`` dimensions."""
        d = len(self.shape)
        dims = tuple(range(-d, 0))
        sym = self._symbol(x.dtype, x.device) ** power
        if self.boundary == "periodic":
            return torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * sym, s=self.shape, dim=dims)
        ext = x
        for dim in dims:
            ext = torch.cat([ext, ext.flip(dim)], dim)
        out = torch.fft.irfftn(torch.fft.rfftn(ext, dim=dims) * sym, s=self._ext(), dim=dims)
        return out[(Ellipsis,) + tuple(slice(0, n) for n in self.shape)]

    def _normaliser(self, dtype, device) -> torch.Tensor:
        r""":math:`\operatorname{diag}(L)^{-1/2}` on the grid, exactly.

        :math:`L` is a convolution on the (extended) periodic grid with kernel
        :math:`K = \mathcal F^{-1}[(1-\kappa\lambda)^{-M}]`; on the closed grid each point also
        sees its mirror images, at offsets :math:`0` or :math:`2i+1` per dimension, so
        :math:`\operatorname{diag}(L)_i = \sum_{S} K(\text{offsets}_S(i))` over the subsets
        :math:`S` of dimensions.
        """
        key = ("norm", dtype, device)
        if key not in self._cache:
            d = len(self.shape)
            dims = tuple(range(-d, 0))
            ext = self._ext()
            kernel = torch.fft.irfftn(self._symbol(dtype, device) ** (-self.steps), s=ext,
                                      dim=dims)
            if self.boundary == "periodic":
                diag = kernel[(0,) * d].expand(self.shape)
            else:
                grids = torch.meshgrid(*[torch.arange(n, device=device) for n in self.shape],
                                       indexing="ij")
                diag = torch.zeros(self.shape, dtype=dtype, device=device)
                for subset in itertools.product((False, True), repeat=d):
                    idx = tuple((2 * g + 1) if s else torch.zeros_like(g)
                                for g, s in zip(grids, subset))
                    diag = diag + kernel[idx]
            self._cache[key] = diag.rsqrt()
        return self._cache[key]

    def _std(self, x: torch.Tensor) -> torch.Tensor:
        return self.variance.to(dtype=x.dtype, device=x.device).sqrt()

    def sqrt(self, v):
        r""":math:`B^{1/2} v = \Sigma\Lambda(I - \kappa\Delta)^{-M/2} v`."""
        smooth = self._apply_power(v, -self.steps / 2)
        return self._std(v) * self._normaliser(v.dtype, v.device) * smooth

    def inv_sqrt(self, x):
        r""":math:`B^{-1/2} x = (I - \kappa\Delta)^{M/2}\Lambda^{-1}\Sigma^{-1} x`."""
        scaled = x / (self._std(x) * self._normaliser(x.dtype, x.device))
        return self._apply_power(scaled, self.steps / 2)

    def correlation_diagonal(self, dtype=torch.float64, device=None) -> torch.Tensor:
        r""":math:`\operatorname{diag}(L)` on the grid (the normalisation, before
        :math:`\Lambda`)."""
        return self._normaliser(dtype, device) ** -2

    def check(self, state_shape, name):
        d = len(self.shape)
        if tuple(state_shape[-d:]) != self.shape or len(state_shape) < d:
            raise ValueError(f"{name}: diffusion covariance on a grid of shape {self.shape}, "
                             f"but the state has shape {tuple(state_shape)} (the grid must be "
                             "its last dimensions)")
        try:
            torch.broadcast_shapes(self.variance.shape, tuple(state_shape))
        except RuntimeError:
            raise ValueError(f"{name}: variance of shape {tuple(self.variance.shape)} does not "
                             f"broadcast to the state shape {tuple(state_shape)}") from None

    def __repr__(self) -> str:
        return (f"DiffusionCovariance(shape={self.shape}, length_scale={self.length_scale}, "
                f"steps={self.steps}, boundary={self.boundary!r})")
