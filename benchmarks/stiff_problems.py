r"""The stiff problems of ``stiff.py`` in the three forms its solvers take: torch (pysciml),
NumPy (SciPy) and JAX (diffrax), each with its analytic Jacobian.

* ROBER (Robertson's chemical kinetics; rate constants ``k1, k2, k3``, per batch member in the
  torch form), HIRES (Schäfer's 8-species plant-physiology model), Van der Pol in the Test Set's
  stiff scaling (ε = 1e-6) — definitions as in the Test Set for IVP Solvers (Mazzia &
  Magherini, Bari), the same systems as :mod:`pysciml.physics`'s ``Robertson``, ``HIRES`` and
  ``VanDerPol`` (those are ``nn.Module`` s with learnable parameters; the benchmark needs plain
  functions with hand-written Jacobians for all three packages).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

ROBER_K = (0.04, 3e7, 1e4)  # k1, k2, k3
VDP_EPS = 1e-6
F64 = torch.float64



def _rober_k(p):
    if p is None:
        return ROBER_K
    return p[..., 0], p[..., 1], p[..., 2]


def rober_t(t, u, p):
    """ROBER; ``p`` (``(*batch, 3)`` rate constants k1, k2, k3) or ``None`` (the Test Set's)."""
    k1, k2, k3 = _rober_k(p)
    y1, y2, y3 = u.unbind(-1)
    r1 = k1 * y1
    r2 = k3 * y2 * y3
    r3 = k2 * y2 * y2
    return torch.stack([r2 - r1, r1 - r2 - r3, r3], -1)


def rober_jac_t(t, u, p):
    y1, y2, y3 = u.unbind(-1)
    z = torch.zeros_like(y1)
    k1, k2, k3 = _rober_k(p)
    k1 = k1 + z  # broadcast constants / per-member rates to the batch shape
    return torch.stack([
        torch.stack([-k1, k3 * y3, k3 * y2], -1),
        torch.stack([k1, -k3 * y3 - 2 * k2 * y2, -k3 * y2], -1),
        torch.stack([z, 2 * k2 * y2, z], -1),
    ], -2)


def rober_np(t, y, k=ROBER_K):
    k1, k2, k3 = k
    r1, r2, r3 = k1 * y[0], k3 * y[1] * y[2], k2 * y[1] ** 2
    return np.array([r2 - r1, r1 - r2 - r3, r3])


def rober_jac_np(t, y, k=ROBER_K):
    k1, k2, k3 = k
    return np.array([[-k1, k3 * y[2], k3 * y[1]],
                     [k1, -k3 * y[2] - 2 * k2 * y[1], -k3 * y[1]],
                     [0.0, 2 * k2 * y[1], 0.0]])


HIRES_A = np.array([
    [-1.71, 0.43, 8.32, 0, 0, 0, 0, 0],
    [1.71, -8.75, 0, 0, 0, 0, 0, 0],
    [0, 0, -10.03, 0.43, 0.035, 0, 0, 0],
    [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
    [0, 0, 0, 0, -1.745, 0.43, 0.43, 0],
    [0, 0, 0, 0.69, 1.71, -0.43, 0.69, 0],
    [0, 0, 0, 0, 0, 0, -1.81, 0],
    [0, 0, 0, 0, 0, 0, 1.81, 0],
])
HIRES_C = np.array([0.0007, 0, 0, 0, 0, 0, 0, 0])
HIRES_S = np.array([0, 0, 0, 0, 0, -280.0, 280.0, -280.0])  # times y6 y8


def hires_torch(device):
    A = torch.as_tensor(HIRES_A, dtype=F64, device=device)
    c = torch.as_tensor(HIRES_C, dtype=F64, device=device)
    s = torch.as_tensor(HIRES_S, dtype=F64, device=device)
    e6 = torch.zeros(8, dtype=F64, device=device)
    e6[5] = 1.0
    e8 = torch.zeros(8, dtype=F64, device=device)
    e8[7] = 1.0
    AT = A.T.contiguous()
    sc = s[:, None]

    def f(t, u, p):
        return u @ AT + c + (u[..., 5:6] * u[..., 7:8]) * s

    def jac(t, u, p):
        y6 = u[..., 5, None, None]
        y8 = u[..., 7, None, None]
        return A + sc * (y8 * e6 + y6 * e8)

    return f, jac


def hires_np(t, y):
    return HIRES_A @ y + HIRES_C + y[5] * y[7] * HIRES_S


def hires_jac_np(t, y):
    J = HIRES_A.copy()
    J[:, 5] += HIRES_S * y[7]
    J[:, 7] += HIRES_S * y[5]
    return J


def vdp_t(t, u, p):
    y1, y2 = u.unbind(-1)
    return torch.stack([y2, ((1 - y1 * y1) * y2 - y1) / VDP_EPS], -1)


def vdp_jac_t(t, u, p):
    y1, y2 = u.unbind(-1)
    z = torch.zeros_like(y1)
    return torch.stack([torch.stack([z, z + 1], -1),
                        torch.stack([(-2 * y1 * y2 - 1) / VDP_EPS, (1 - y1 * y1) / VDP_EPS], -1)],
                       -2)


def vdp_np(t, y):
    return np.array([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / VDP_EPS])


def vdp_jac_np(t, y):
    return np.array([[0.0, 1.0],
                     [(-2 * y[0] * y[1] - 1) / VDP_EPS, (1 - y[0] ** 2) / VDP_EPS]])


def torch_rhs(family: str, device) -> tuple[Callable, Callable]:
    if family == "ROBER":
        return rober_t, rober_jac_t
    if family == "HIRES":
        return hires_torch(device)
    if family == "VDPOL":
        return vdp_t, vdp_jac_t
    raise KeyError(family)


def numpy_rhs(family: str) -> tuple[Callable, Callable]:
    return {"ROBER": (rober_np, rober_jac_np), "HIRES": (hires_np, hires_jac_np),
            "VDPOL": (vdp_np, vdp_jac_np)}[family]


def jax_rhs(family: str, jnp):
    if family == "ROBER":
        def f(t, y, k):
            r1 = k[0] * y[0]
            r2 = k[2] * y[1] * y[2]
            r3 = k[1] * y[1] ** 2
            return jnp.stack([r2 - r1, r1 - r2 - r3, r3])
        return f
    if family == "HIRES":
        A, c, s = jnp.asarray(HIRES_A), jnp.asarray(HIRES_C), jnp.asarray(HIRES_S)

        def f(t, y, args):
            return A @ y + c + y[5] * y[7] * s
        return f
    if family == "VDPOL":
        def f(t, y, args):
            return jnp.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / VDP_EPS])
        return f
    raise KeyError(family)
