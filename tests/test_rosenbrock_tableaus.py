"""Independent checks of the Rosenbrock tableaus in :mod:`pysciml.native.rosenbrock_tableaus`.

Nothing here uses a pysciml solver. Each test reads the tableau's fields and either

* evaluates the Rosenbrock order conditions on rooted trees (exact up to rounding), using the
  classical coefficients recovered from the transformed ones, or
* takes steps with a small dense-Jacobian numpy implementation of the step equations of the
  module docstring (written here) and measures observed orders of convergence against
  ``scipy.linalg.expm`` or a tight scipy DOP853 reference: the propagated solution, the
  embedded solution / error estimate, and the dense output.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from pysciml.native.rosenbrock_tableaus import (
    RODAS4,
    RODAS5P,
    ROSENBROCK23,
    ROSENBROCK23_D,
    ROSENBROCK23_E32,
    RosenbrockTableau,
)

TABLEAUS = [ROSENBROCK23, RODAS4, RODAS5P]
IDS = [t.name for t in TABLEAUS]
SLOPE_TOL = 0.3


# --------------------------------------------------------------------------------------------
# The tableau as numpy arrays, and the classical (Hairer–Wanner) coefficients
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrays:
    s: int
    gamma: float
    a: np.ndarray  # (s, s)
    C: np.ndarray  # (s, s)
    c: np.ndarray
    d: np.ndarray
    b: np.ndarray
    btilde: np.ndarray
    H: np.ndarray  # (m, s)
    Gamma: np.ndarray  # (s, s) lower triangular, (I/gamma - C)^-1
    alpha: np.ndarray  # (s, s) a Γ


@functools.cache
def arrays(tab: RosenbrockTableau) -> Arrays:
    s = len(tab.c)
    a = np.zeros((s, s))
    C = np.zeros((s, s))
    for i in range(s):
        a[i, :i] = tab.a[i]
        C[i, :i] = tab.C[i]
    Gamma = np.linalg.inv(np.eye(s) / tab.gamma - C)
    return Arrays(
        s, tab.gamma, a, C, np.array(tab.c), np.array(tab.d), np.array(tab.b),
        np.array(tab.btilde), np.array(tab.H), Gamma, a @ Gamma,
    )


# --------------------------------------------------------------------------------------------
# Order conditions on rooted trees
# --------------------------------------------------------------------------------------------
# A tree is the sorted tuple of its children's trees; () is the single node. For a Rosenbrock
# method with exact Jacobian (autonomous form; d = Γ 1 and c = α 1 make the non-autonomous
# case follow), the condition of tree t is  sum_j bHW_j Φ_j(t) = 1 / γ(t)  with
#   Φ(()) = 1,  Φ([t1]) = (α + Γ) Φ(t1)  (one child),  Φ([t1, ..., tm]) = Π_k α Φ(t_k)  (m ≥ 2).


@functools.cache
def trees(order: int) -> tuple:
    if order == 1:
        return ((),)
    out = set()
    for t in trees(order - 1):
        out.update(_grow(t))
    return tuple(sorted(out))


def _grow(t: tuple) -> set:
    """All trees made by attaching one leaf to some node of ``t``."""
    out = {tuple(sorted(t + ((),)))}
    for i, child in enumerate(t):
        for g in _grow(child):
            out.add(tuple(sorted(t[:i] + (g,) + t[i + 1 :])))
    return out


def density(t: tuple) -> int:
    return _size(t) * math.prod(density(ch) for ch in t)


def _size(t: tuple) -> int:
    return 1 + sum(_size(ch) for ch in t)


def phi(ar: Arrays, t: tuple) -> np.ndarray:
    if not t:
        return np.ones(ar.s)
    if len(t) == 1:
        return (ar.alpha + ar.Gamma) @ phi(ar, t[0])
    return np.prod([ar.alpha @ phi(ar, ch) for ch in t], axis=0)


def max_residual(ar: Arrays, weights: np.ndarray, order: int, theta: float = 1.0) -> float:
    """Largest |bHW·Φ(t) - θ^ρ/γ(t)| over the trees of exactly ``order`` nodes."""
    b_hw = weights @ ar.Gamma
    return max(
        abs(b_hw @ phi(ar, t) - theta ** _size(t) / density(t)) for t in trees(order)
    )


def dense_weights(ar: Arrays, theta: float) -> np.ndarray:
    """Transformed weights β(θ) of u(θ) = u_n + Σ β_i(θ) k_i (module docstring's formula)."""
    poly = sum(theta**m * ar.H[m] for m in range(len(ar.H)))
    return theta * ar.b + theta * (1 - theta) * poly


def test_tree_counts():
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_order_conditions(tab):
    ar = arrays(tab)
    for p in range(1, tab.order + 1):
        assert max_residual(ar, ar.b, p) < 1e-10, f"order {p}"
    assert max_residual(ar, ar.b, tab.order + 1) > 1e-6  # the order is sharp


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_order_conditions_embedded(tab):
    ar = arrays(tab)
    b_hat = ar.b - ar.btilde
    for p in range(1, tab.error_order + 1):
        assert max_residual(ar, b_hat, p) < 1e-10, f"order {p}"
    assert max_residual(ar, b_hat, tab.error_order + 1) > 1e-6


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("theta", [0.3, 0.6, 1.0])
def test_order_conditions_dense(tab, theta):
    ar = arrays(tab)
    w = dense_weights(ar, theta)
    for p in range(1, tab.interp_order + 1):
        assert max_residual(ar, w, p, theta) < 1e-10, f"order {p}"
    np.testing.assert_allclose(dense_weights(ar, 1.0), ar.b, atol=1e-12)


# --------------------------------------------------------------------------------------------
# A reference Rosenbrock step in numpy (the module docstring's equations, dense J)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    f: Callable[[float, np.ndarray], np.ndarray]
    jac: Callable[[float, np.ndarray], np.ndarray]
    dfdt: Callable[[float, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Step:
    u_new: np.ndarray
    err: np.ndarray
    kappa: np.ndarray  # (m, n) dense coefficients

    def dense(self, u0: np.ndarray, theta: float) -> np.ndarray:
        poly = sum(theta**m * self.kappa[m] for m in range(len(self.kappa)))
        return (1 - theta) * u0 + theta * (self.u_new + (1 - theta) * poly)


def rosenbrock_step(
    tab: RosenbrockTableau, prob: Problem, t: float, u: np.ndarray, h: float, jac=None
) -> Step:
    ar = arrays(tab)
    J = prob.jac(t, u) if jac is None else jac(t, u)
    T = prob.dfdt(t, u)
    W = np.eye(len(u)) / (h * ar.gamma) - J
    k = np.zeros((ar.s, len(u)))
    for i in range(ar.s):
        U = u + ar.a[i, :i] @ k[:i]
        rhs = prob.f(t + ar.c[i] * h, U) + (ar.C[i, :i] / h) @ k[:i] + h * ar.d[i] * T
        k[i] = np.linalg.solve(W, rhs)
    if tab.stiffly_accurate:  # the documented shortcut agrees with the weights
        U_s = u + ar.a[-1, :-1] @ k[:-1]
        np.testing.assert_allclose(U_s + k[-1], u + ar.b @ k, rtol=1e-12, atol=1e-14)
    return Step(u + ar.b @ k, ar.btilde @ k, ar.H @ k)


# Problem (a): linear stiff system, eigenvalues -1 (eigenvector (1, 1)) and -1000 ((1, -1)).
A_STIFF = np.array([[-500.5, 499.5], [499.5, -500.5]])
LINEAR = Problem(
    f=lambda t, u: A_STIFF @ u,
    jac=lambda t, u: A_STIFF,
    dfdt=lambda t, u: np.zeros_like(u),
)
LINEAR_U0 = np.array([1.0, 0.5])
LINEAR_T = 2.0

# Problem (b): smooth, nonlinear, non-autonomous scalar problem.
NONLIN = Problem(
    f=lambda t, u: -(u**2) + np.cos(t),
    jac=lambda t, u: np.array([[-2.0 * u[0]]]),
    dfdt=lambda t, u: np.full_like(u, -np.sin(t)),
)
NONLIN_U0 = np.array([0.5])
NONLIN_T0, NONLIN_T = 0.3, 2.3


def reference(t0: float, u0: np.ndarray, t1: float) -> np.ndarray:
    sol = solve_ivp(NONLIN.f, (t0, t1), u0, method="DOP853", rtol=1e-13, atol=1e-15)
    return sol.y[:, -1]


@functools.cache
def nonlin_exact() -> np.ndarray:
    return reference(NONLIN_T0, NONLIN_U0, NONLIN_T)


def integrate(tab, prob, t0, u0, t1, n, embedded=False, jac=None) -> np.ndarray:
    h = (t1 - t0) / n
    u = u0.copy()
    for i in range(n):
        st = rosenbrock_step(tab, prob, t0 + i * h, u, h, jac=jac)
        u = st.u_new - st.err if embedded else st.u_new
    return u


def slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# Step counts / sizes in the asymptotic regime (errors well above the references' accuracy).
STEPS_LINEAR = {
    "Rosenbrock23": [16, 32, 64, 128], "Rodas4": [8, 16, 32, 64], "Rodas5P": [8, 12, 16, 24]
}
STEPS = {"Rosenbrock23": [16, 32, 64, 128], "Rodas4": [16, 32, 64, 128], "Rodas5P": [8, 16, 32, 64]}
STEPS_EMBEDDED = {
    "Rosenbrock23": [16, 32, 64, 128], "Rodas4": [8, 16, 32, 64], "Rodas5P": [32, 64, 128, 256]
}
LOCAL_HS = {
    "Rosenbrock23": [0.2, 0.1, 0.05, 0.025],
    "Rodas4": [0.2, 0.1, 0.05, 0.025],
    "Rodas5P": [0.05, 0.025, 0.0125, 0.00625],
}
DENSE_HS = {
    "Rosenbrock23": [0.2, 0.1, 0.05, 0.025],
    "Rodas4": [0.2, 0.1, 0.05, 0.025],
    "Rodas5P": [0.4, 0.2, 0.1, 0.05],
}


def linear_order(tab: RosenbrockTableau) -> int:
    """The order of the stability function R(z) = 1 + z bHW (I - z(α + Γ))^-1 1 as an
    approximation of exp(z): the order on linear constant-coefficient problems u' = A u."""
    ar = arrays(tab)
    b_hw, B, v = ar.b @ ar.Gamma, ar.alpha + ar.Gamma, np.ones(ar.s)
    p = 0
    while abs(b_hw @ v - 1 / math.factorial(p + 1)) < 1e-12:
        p, v = p + 1, B @ v
    return p


def test_stability_function_order():
    """Rodas5P's R(z) matches exp(z) to order 6 (one more than the method's order), so on a
    linear autonomous problem with exact Jacobian it converges with order 6."""
    assert [linear_order(t) for t in TABLEAUS] == [2, 4, 6]


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_convergence_linear_stiff(tab):
    exact = expm(A_STIFF * LINEAR_T) @ LINEAR_U0
    ns = STEPS_LINEAR[tab.name]
    errs = [np.abs(integrate(tab, LINEAR, 0.0, LINEAR_U0, LINEAR_T, n) - exact).max() for n in ns]
    observed = slope([LINEAR_T / n for n in ns], errs)
    assert abs(observed - linear_order(tab)) < SLOPE_TOL, errs
    assert observed > tab.order - SLOPE_TOL


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_convergence_nonlinear_nonautonomous(tab):
    exact = nonlin_exact()
    ns = STEPS[tab.name]
    errs = [
        np.abs(integrate(tab, NONLIN, NONLIN_T0, NONLIN_U0, NONLIN_T, n) - exact).max()
        for n in ns
    ]
    assert abs(slope([1 / n for n in ns], errs) - tab.order) < SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_convergence_embedded(tab):
    """The embedded solution u_new - err, propagated on its own, has order `error_order`."""
    exact = nonlin_exact()
    ns = STEPS_EMBEDDED[tab.name]
    errs = [
        np.abs(
            integrate(tab, NONLIN, NONLIN_T0, NONLIN_U0, NONLIN_T, n, embedded=True) - exact
        ).max()
        for n in ns
    ]
    assert abs(slope([1 / n for n in ns], errs) - tab.error_order) < SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_error_estimate_local_order(tab):
    """|err| = |u_new - û_new| shrinks like h^(min(order, error_order) + 1) on one step."""
    hs = LOCAL_HS[tab.name]
    est = [np.abs(rosenbrock_step(tab, NONLIN, NONLIN_T0, NONLIN_U0, h).err).max() for h in hs]
    expected = min(tab.order, tab.error_order) + 1
    assert abs(slope(hs, est) - expected) < SLOPE_TOL, est


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("theta", [0.3, 0.6])
def test_dense_output_local_order(tab, theta):
    hs, errs = DENSE_HS[tab.name], []
    for h in hs:
        st = rosenbrock_step(tab, NONLIN, NONLIN_T0, NONLIN_U0, h)
        ref = reference(NONLIN_T0, NONLIN_U0, NONLIN_T0 + theta * h)
        errs.append(np.abs(st.dense(NONLIN_U0, theta) - ref).max())
    assert slope(hs, errs) > tab.interp_order + 1 - SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_dense_output_endpoints(tab):
    st = rosenbrock_step(tab, NONLIN, NONLIN_T0, NONLIN_U0, 0.1)
    np.testing.assert_allclose(st.dense(NONLIN_U0, 0.0), NONLIN_U0, rtol=1e-15)
    np.testing.assert_allclose(st.dense(NONLIN_U0, 1.0), st.u_new, rtol=1e-15)


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_l_stability(tab):
    lam = -1e8
    prob = Problem(
        f=lambda t, u: lam * u, jac=lambda t, u: np.array([[lam]]), dfdt=lambda t, u: 0 * u
    )
    u0 = np.array([1.0])
    st = rosenbrock_step(tab, prob, 0.0, u0, 1.0)
    assert np.abs(st.u_new).max() < 1e-3 * np.abs(u0).max()


# --------------------------------------------------------------------------------------------
# Rosenbrock23: the transformed form is Shampine & Reichelt's ode23s
# --------------------------------------------------------------------------------------------


def ode23s_step(prob: Problem, t: float, u: np.ndarray, h: float):
    """Shampine & Reichelt (1997) / MATLAB ode23s, in its own stage variables."""
    d, e32 = ROSENBROCK23_D, ROSENBROCK23_E32
    W = np.eye(len(u)) - h * d * prob.jac(t, u)
    T = prob.dfdt(t, u)
    F0 = prob.f(t, u)
    K1 = np.linalg.solve(W, F0 + h * d * T)
    F1 = prob.f(t + h / 2, u + h / 2 * K1)
    K2 = np.linalg.solve(W, F1 - K1) + K1
    u_new = u + h * K2
    F2 = prob.f(t + h, u_new)
    K3 = np.linalg.solve(W, F2 - e32 * (K2 - F1) - 2 * (K1 - F0) + h * d * T)
    err = h / 6 * (K1 - 2 * K2 + K3)

    def dense(theta):
        return u + h * (theta * (1 - theta) * K1 + theta * (theta - 2 * d) * K2) / (1 - 2 * d)

    return u_new, err, dense


@pytest.mark.parametrize("prob, u0", [(LINEAR, LINEAR_U0), (NONLIN, NONLIN_U0)])
def test_rosenbrock23_matches_ode23s(prob, u0):
    t, h = 0.3, 0.07
    u_ref, err_ref, dense_ref = ode23s_step(prob, t, u0, h)
    st = rosenbrock_step(ROSENBROCK23, prob, t, u0, h)
    np.testing.assert_allclose(st.u_new, u_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.err, -err_ref, rtol=1e-9, atol=1e-15)  # btilde = b - b_hat
    for theta in (0.3, 0.6):
        np.testing.assert_allclose(st.dense(u0, theta), dense_ref(theta), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_rosenbrock23_is_w_method(scale):
    """Order 2 even with a wrong Jacobian (a W-method); here J ≈ scale * ∂f/∂u."""
    exact = nonlin_exact()
    ns = STEPS["Rosenbrock23"]
    jac = lambda t, u: scale * NONLIN.jac(t, u)  # noqa: E731
    errs = [
        np.abs(
            integrate(ROSENBROCK23, NONLIN, NONLIN_T0, NONLIN_U0, NONLIN_T, n, jac=jac) - exact
        ).max()
        for n in ns
    ]
    assert abs(slope([1 / n for n in ns], errs) - 2) < SLOPE_TOL, errs


# --------------------------------------------------------------------------------------------
# The dataclass: validation and tensors
# --------------------------------------------------------------------------------------------


def test_constants_fields():
    assert (ROSENBROCK23.order, ROSENBROCK23.error_order, ROSENBROCK23.interp_order) == (2, 3, 2)
    assert (RODAS4.order, RODAS4.error_order, RODAS4.interp_order) == (4, 3, 3)
    assert (RODAS5P.order, RODAS5P.error_order, RODAS5P.interp_order) == (5, 4, 4)
    assert [t.stages for t in TABLEAUS] == [3, 6, 8]
    assert [t.dense_rows for t in TABLEAUS] == [1, 2, 3]
    assert [t.stiffly_accurate for t in TABLEAUS] == [False, True, True]
    assert ROSENBROCK23.gamma == pytest.approx(1 / (2 + math.sqrt(2)), rel=1e-15)


@pytest.mark.parametrize(
    "change",
    [
        dict(c=(0.0, 0.6358126895828704, 0.41, 0.9769306725060716, 0.4288403609558664, 1, 1, 1)),
        dict(d=RODAS5P.c),  # nodes and time-derivative coefficients swapped
        dict(c=RODAS5P.d),
        dict(gamma=0.2),
        dict(b=RODAS5P.btilde),
        dict(btilde=(0.0,) * 7 + (0.5,)),
        dict(H=RODAS5P.H[:2] + ((1.0,) + RODAS5P.H[2][1:],)),
        dict(a=RODAS5P.a[:-1] + (RODAS5P.a[-2] + (1.01,),)),
        dict(a=RODAS5P.a[:3]),
    ],
)
def test_validation_rejects(change):
    with pytest.raises(ValueError):
        replace(RODAS5P, **change)


def test_validation_rejects_ordinarydiffeq_k3_time_term():
    """OrdinaryDiffEq's Rosenbrock23 adds h·T (not h·d·T) in stage 3: d3 = 1 - 2d, not -d."""
    d = ROSENBROCK23_D
    with pytest.raises(ValueError):
        replace(ROSENBROCK23, d=(d, 0.0, 1.0 - 2.0 * d))


def test_validation_accepts_unchanged():
    assert replace(RODAS4) == RODAS4


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensors(tab, dtype):
    device = torch.device("cpu")
    tt = tab.tensors(dtype, device)
    assert tab.tensors(dtype, device) is tt  # cached
    s, m = tab.stages, tab.dense_rows
    shapes = dict(a=(s, s), C=(s, s), c=(s,), d=(s,), b=(s,), btilde=(s,), H=(m, s))
    shapes["b_and_error"] = (s, 2)
    shapes["gamma"] = ()
    for name, shape in shapes.items():
        x = getattr(tt, name)
        assert x.shape == shape and x.dtype == dtype and x.device == device, name
    ar = arrays(tab)
    tol = 1e-6 if dtype == torch.float32 else 0
    for name in ("a", "C", "c", "d", "b", "btilde", "H"):
        np.testing.assert_allclose(
            getattr(tt, name).double().numpy(), getattr(ar, name), rtol=tol, atol=tol
        )
    assert torch.triu(tt.a).abs().max() == 0 and torch.triu(tt.C).abs().max() == 0
    assert float(tt.gamma) == pytest.approx(tab.gamma, rel=tol or 1e-16)
