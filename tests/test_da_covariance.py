"""Background-error covariances of pysciml.da against dense matrices built independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pysciml import da


def _laplacian_1d(n: int, h: float, boundary: str) -> np.ndarray:
    """The second-order Laplacian matrix: periodic, or cell-centred zero-flux (ghost = edge)."""
    L = np.zeros((n, n))
    for i in range(n):
        L[i, i] = -2.0
        for j in (i - 1, i + 1):
            if 0 <= j < n:
                L[i, j] += 1.0
            elif boundary == "periodic":
                L[i, j % n] += 1.0
            else:
                L[i, i] += 1.0  # ghost value equals the edge value
    return L / h ** 2


def _dense_diffusion_b(shape, spacing, length, steps, boundary, std):
    """B = Σ Λ (I − κΔ)^{−M} Λ Σ from explicit matrices (Kronecker sums for 2D)."""
    kappa = length ** 2 / (2 * steps)
    lap = np.zeros((1, 1))
    for n, h in zip(shape, spacing):
        L1 = _laplacian_1d(n, h, boundary)
        lap = np.kron(lap, np.eye(n)) + np.kron(np.eye(lap.shape[0]), L1)
    A = np.eye(lap.shape[0]) - kappa * lap
    Lm = np.linalg.matrix_power(np.linalg.inv(A), steps)
    lam = 1 / np.sqrt(np.diag(Lm))
    C = lam[:, None] * Lm * lam[None, :]
    return std[:, None] * C * std[None, :]


def _dense_from(op, n, shape):
    eye = torch.eye(n).reshape(n, *shape)
    return op(eye).reshape(n, n).T.numpy()  # column j = op(e_j)


@pytest.mark.parametrize("boundary", ["periodic", "closed"])
@pytest.mark.parametrize("shape,spacing", [((12,), (0.5,)), ((6, 5), (1.0, 0.7))])
def test_diffusion_covariance_matches_dense_matrix(boundary, shape, spacing):
    n = math.prod(shape)
    std = np.linspace(0.5, 2.0, n)
    cov = da.DiffusionCovariance(shape, length_scale=1.3, variance=torch.tensor(
        std.reshape(shape)) ** 2, steps=6, spacing=spacing, boundary=boundary)
    S = _dense_from(cov.sqrt, n, shape)
    B = S @ S.T
    ref = _dense_diffusion_b(shape, spacing, 1.3, 6, boundary, std)
    np.testing.assert_allclose(B, ref, rtol=1e-10, atol=1e-12)
    Sinv = _dense_from(cov.inv_sqrt, n, shape)
    np.testing.assert_allclose(Sinv @ S, np.eye(n), atol=1e-10)
    # correlations are 1 on the diagonal
    np.testing.assert_allclose(np.diag(B) / std ** 2, 1.0, rtol=1e-12)


def test_diffusion_correlation_approaches_gaussian():
    """Weaver & Courtier: with κ = ℓ²/(2M) the correlation tends to exp(−r²/(2ℓ²))."""
    n, h, ell = 200, 0.1, 1.0
    cov = da.DiffusionCovariance((n,), length_scale=ell, steps=200, spacing=h)
    e0 = torch.zeros(n)
    e0[0] = 1.0
    corr = cov.sqrt(cov.sqrt(e0))  # B e0 (B^{1/2} symmetric up to the constant Λ)
    r = torch.arange(n) * h
    r = torch.minimum(r, n * h - r)
    gauss = torch.exp(-r ** 2 / (2 * ell ** 2))
    assert float((corr - gauss).abs().max()) < 0.01


def test_diagonal_covariance():
    var = torch.tensor([0.5, 2.0, 4.0])
    cov = da.DiagonalCovariance(var)
    x = torch.randn(7, 3)
    torch.testing.assert_close(cov.sqrt(x), x * var.sqrt())
    torch.testing.assert_close(cov.inv_sqrt(cov.sqrt(x)), x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(shape=(4,), length_scale=-1.0), "length_scale"),
    (dict(shape=(4,), length_scale=1.0, steps=3), "steps"),
    (dict(shape=(4,), length_scale=1.0, boundary="open"), "boundary"),
    (dict(shape=(4,), length_scale=1.0, variance=0.0), "variance"),
    (dict(shape=(4, 4), length_scale=1.0, spacing=(1.0,)), "spacing"),
])
def test_diffusion_covariance_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        da.DiffusionCovariance(**kwargs)


def test_diagonal_covariance_bad_input():
    with pytest.raises(ValueError, match="variance"):
        da.DiagonalCovariance(torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match="variance"):
        da.DiagonalCovariance("big")
