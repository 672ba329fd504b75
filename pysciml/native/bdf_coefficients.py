r"""Coefficients of the variable-order BDF / NDF family (orders 1 to 5), as validated float64 data.

In the difference form of Shampine & Reichelt (1997), order :math:`k` takes a step from
:math:`t_n` to :math:`t_{n+1} = t_n + h` by solving

.. math::
    \alpha_k (y_{n+1} - y^{(0)}_{n+1}) + \sum_{j=1}^{k} \Gamma_j \nabla^j y_n
    = h f(t_{n+1}, y_{n+1}),

.. math::
    \Gamma_j = \sum_{i=1}^{j} \frac1i, \qquad \alpha_k = (1 - \kappa_k)\Gamma_k, \qquad
    y^{(0)}_{n+1} = \sum_{j=0}^{k} \nabla^j y_n ,

which is the backward-difference formula :math:`\sum_{j=1}^k \frac1j \nabla^j y_{n+1} -
\kappa_k \Gamma_k \nabla^{k+1} y_{n+1} = h f_{n+1}` (:math:`\kappa_k = 0`: the BDF of order
:math:`k`; Klopfenstein–Shampine's :math:`\kappa_k`: the NDF of ode15s and SciPy's ``BDF``).
Its local truncation error is :math:`-C_k \nabla^{k+1} y_{n+1}` with

.. math::
    C_k = \kappa_k \Gamma_k + \frac{1}{k+1},

estimated by :math:`C_k\,(y_{n+1} - y^{(0)}_{n+1})`.

:class:`BDFCoefficients` checks itself on creation: it applies the formula to the polynomial
:math:`y = t^{k+1}` with exact history and checks that the residual is
:math:`-C_k \nabla^{k+1} y` (this ties :math:`\Gamma`, :math:`\alpha` and :math:`C` to the form
the step solves). It also holds the constant matrix :math:`U` of the step-size change
(:func:`change_matrix`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["MAX_ORDER", "BDF_KAPPA", "NDF_KAPPA", "BDFCoefficients", "BDFTensors", "change_matrix",
           "PLAIN", "NDF"]

MAX_ORDER = 5
ROWS = MAX_ORDER + 3
"""Rows of the difference array: :math:`\\nabla^0 y_n, \\dots, \\nabla^{k+2} y_n` at order 5."""

BDF_KAPPA = (0.0,) * (MAX_ORDER + 1)
NDF_KAPPA = (0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0)
"""Shampine & Reichelt's NDF coefficients (ode15s; SciPy's ``BDF``), indexed by order."""

_TOL = 1e-12


def change_matrix(order: int, factor: float) -> np.ndarray:
    r"""SciPy's ``compute_R``: :math:`R_{ij} = \prod_{m=1}^{i} \frac{m - 1 - \rho j}{m}`
    (:math:`R_{0j} = 1`, :math:`R_{i0} = 0` for :math:`i \ge 1`), of size ``order + 1``.

    With :math:`U = R(\rho = 1)` (:math:`U^2 = I`), the differences of the interpolating
    polynomial at the spacing :math:`\rho h` are :math:`(RU)^\top D` (Shampine & Reichelt 1997).
    """
    i = np.arange(1, order + 1)[:, None]
    j = np.arange(1, order + 1)
    M = np.zeros((order + 1, order + 1))
    M[1:, 1:] = (i - 1 - factor * j) / i
    M[0] = 1
    return np.cumprod(M, axis=0)


class BDFTensors(NamedTuple):
    """The coefficients cast to one dtype and device, laid out for the batched step."""

    alpha: torch.Tensor  # (K+1,) alpha_k
    error_const: torch.Tensor  # (K+2,) C_k (C_{K+1} padded, never used)
    predict: torch.Tensor  # (K+1, 2, ROWS): rows sum_{j<=k} nabla^j (predictor), predictor - psi
    update: torch.Tensor  # (K+1, ROWS, ROWS): D_new = update[k] D + update_d[k] d
    update_d: torch.Tensor  # (K+1, ROWS)
    keep: torch.Tensor  # (K+1, ROWS, ROWS) bool: entries (i, j <= k) that change_D rewrites
    dense: torch.Tensor  # (K+1, K+1) 1 where row j <= k of D enters the interpolant
    U: torch.Tensor  # (K+1, K+1)
    M0: torch.Tensor  # (K+1, K+1): compute_R's factors are M0 - rho * M1 before the cumprod
    M1: torch.Tensor  # (K+1, K+1)
    offsets: torch.Tensor  # (3,) 0, 1, 2: orders k-1, k, k+1 relative to k-1
    eye: torch.Tensor  # (ROWS, ROWS)


@dataclass(frozen=True)
class BDFCoefficients:
    r"""The BDF/NDF coefficients for orders 1 to :data:`MAX_ORDER` given :math:`\kappa`.

    Attributes:
        kappa: :math:`\kappa_0, \dots, \kappa_5` (:math:`\kappa_0` unused, must be 0);
            zeros for the BDF, :data:`NDF_KAPPA` for the NDF.
        gamma: :math:`\Gamma_k` (:math:`\Gamma_0 = 0`).
        alpha: :math:`\alpha_k = (1 - \kappa_k)\Gamma_k`.
        error_const: :math:`C_k = \kappa_k\Gamma_k + 1/(k+1)`, ``k = 0 .. 6``.
    """

    kappa: tuple[float, ...] = BDF_KAPPA
    gamma: tuple[float, ...] = field(init=False)
    alpha: tuple[float, ...] = field(init=False)
    error_const: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        kappa = tuple(float(x) for x in self.kappa)
        if len(kappa) != MAX_ORDER + 1:
            raise ValueError(f"kappa: expected {MAX_ORDER + 1} numbers (orders 0 to {MAX_ORDER}),"
                             f" got {len(kappa)}")
        if kappa[0] != 0 or not all(math.isfinite(x) and abs(x) < 0.5 for x in kappa):
            raise ValueError(f"kappa: expected kappa[0] = 0 and |kappa_k| < 0.5, got {kappa}")
        gamma = tuple(sum(1.0 / i for i in range(1, k + 1)) for k in range(MAX_ORDER + 1))
        alpha = tuple((1 - kp) * g for kp, g in zip(kappa, gamma, strict=True))
        error_const = tuple([kp * g + 1.0 / (k + 1) for k, (kp, g) in
                             enumerate(zip(kappa, gamma, strict=True))] + [1.0 / (MAX_ORDER + 2)])
        object.__setattr__(self, "kappa", kappa)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "error_const", error_const)
        self._check()

    def _check(self) -> None:
        """Residual of the difference form on ``y = t^(k+1)`` with exact history (h = 1)."""
        for k in range(1, MAX_ORDER + 1):
            ts = -np.arange(k + 3, dtype=np.float64)  # t_{n+1} = 0, t_n = -1, ...
            y = ts ** (k + 1)
            nab_new = [y[0]]  # nabla^j y_{n+1}
            nab_old = [y[1]]  # nabla^j y_n
            diff_new, diff_old = y.copy(), y[1:].copy()
            for _ in range(k + 1):
                diff_new = diff_new[:-1] - diff_new[1:]
                diff_old = diff_old[:-1] - diff_old[1:]
                nab_new.append(diff_new[0])
                nab_old.append(diff_old[0])
            predictor = sum(nab_old[: k + 1])
            dy = (k + 1) * 0.0 ** k  # y'(0)
            residual = (self.alpha[k] * (y[0] - predictor)
                        + sum(self.gamma[j] * nab_old[j] for j in range(1, k + 1)) - dy)
            expected = -self.error_const[k] * nab_new[k + 1]
            if abs(residual - expected) > _TOL * abs(nab_new[k + 1]):
                raise ValueError(f"BDF coefficients of order {k} fail the consistency check: "
                                 f"residual {residual}, expected {expected}")
            if abs(nab_new[k + 1] - (y[0] - predictor)) > _TOL * abs(nab_new[k + 1]):
                raise ValueError("the predictor does not reproduce nabla^(k+1) y_(n+1)")

    def tensors(self, dtype: torch.dtype, device: torch.device) -> BDFTensors:
        """The coefficients as tensors of ``dtype`` on ``device`` (cached)."""
        return _tensors(self, dtype, device)


@functools.lru_cache(maxsize=32)
def _tensors(coefs: BDFCoefficients, dtype: torch.dtype, device: torch.device) -> BDFTensors:
    K, R = MAX_ORDER, ROWS
    predict = np.zeros((K + 1, 2, R))
    update = np.zeros((K + 1, R, R))
    update_d = np.zeros((K + 1, R))
    keep = np.zeros((K + 1, R, R), dtype=bool)
    dense = np.zeros((K + 1, K + 1))
    for k in range(1, K + 1):
        predict[k, :, : k + 1] = 1.0
        for j in range(1, k + 1):
            predict[k, 1, j] -= coefs.gamma[j] / coefs.alpha[k]
        # D_new[j] = sum_{i=j..k} D[i] + d (j <= k); D_new[k+1] = d; D_new[k+2] = d - D[k+1]
        for j in range(k + 1):
            update[k, j, j: k + 1] = 1.0
            update_d[k, j] = 1.0
        update_d[k, k + 1] = 1.0
        update[k, k + 2, k + 1] = -1.0
        update_d[k, k + 2] = 1.0
        for j in range(k + 3, R):
            update[k, j, j] = 1.0
        keep[k, : k + 1, : k + 1] = True
        dense[k, : k + 1] = 1.0
    i = np.arange(1, K + 1)[:, None]
    j = np.arange(1, K + 1)[None, :]
    M0 = np.zeros((K + 1, K + 1))
    M0[0] = 1.0
    M0[1:, 1:] = (i - 1) / i + 0 * j
    M1 = np.zeros((K + 1, K + 1))
    M1[1:, 1:] = j / i
    kw = dict(dtype=dtype, device=device)
    return BDFTensors(
        alpha=torch.tensor(coefs.alpha, **kw),
        error_const=torch.tensor(coefs.error_const, **kw),
        predict=torch.tensor(predict, **kw),
        update=torch.tensor(update, **kw),
        update_d=torch.tensor(update_d, **kw),
        keep=torch.tensor(keep, device=device),
        dense=torch.tensor(dense, **kw),
        U=torch.tensor(change_matrix(K, 1.0), **kw),
        eye=torch.eye(R, **kw),
        M0=torch.tensor(M0, **kw),
        M1=torch.tensor(M1, **kw),
        offsets=torch.arange(3, **kw),
    )


PLAIN = BDFCoefficients(BDF_KAPPA)
"""The backward differentiation formulas (FBDF/CVODE-like accuracy)."""
NDF = BDFCoefficients(NDF_KAPPA)
"""The numerical differentiation formulas of ode15s / SciPy's ``BDF``."""
