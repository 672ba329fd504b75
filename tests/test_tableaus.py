"""Independent checks of the Runge–Kutta tableaus in :mod:`pysciml.native.tableaus`.

Nothing here uses a pysciml solver: each test reads the tableau's fields and either

* evaluates the Butcher order conditions on rooted trees (exact up to rounding), or
* takes steps of the method with a small numpy implementation written here and measures the
  observed order of convergence on problems with known solutions (or a tight scipy DOP853
  reference), for the propagated solution ``b``, the embedded method ``b - b_error`` and the
  dense output.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pysciml.native.tableau import ButcherTableau
from pysciml.native.tableaus import DP5, EULER, RK4, TSIT5, VERN7

TABLEAUS = [EULER, RK4, TSIT5, DP5, VERN7]
ADAPTIVE = [t for t in TABLEAUS if t.b_error is not None]
IDS = [t.name for t in TABLEAUS]
SLOPE_TOL = 0.3


# --------------------------------------------------------------------------------------------
# The tableau as dense numpy arrays (stages then extra stages)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrays:
    s: int  # stages of the step
    n: int  # stages including the interpolant's extra ones
    c: np.ndarray  # (n,)
    a: np.ndarray  # (n, n) strictly lower triangular
    b: np.ndarray  # (s,)
    b_hat: np.ndarray | None  # (s,) embedded weights b - b_error
    interp: np.ndarray  # (n, d): b_i(theta) = sum_m interp[i, m] theta^(m+1)


@functools.cache
def arrays(tab: ButcherTableau) -> Arrays:
    s, e = len(tab.c), len(tab.extra_c)
    n = s + e
    a = np.zeros((n, n))
    for i, row in enumerate(tab.a):
        a[i, : len(row)] = row
    for j, row in enumerate(tab.extra_a):
        a[s + j, : len(row)] = row  # over all s + j earlier stages
    c = np.array(list(tab.c) + list(tab.extra_c))
    b = np.array(tab.b)
    b_hat = None if tab.b_error is None else b - np.array(tab.b_error)
    return Arrays(s, n, c, a, b, b_hat, np.array(tab.interp, dtype=float))


def rk_stages(arr: Arrays, f, t: float, u: np.ndarray, h: float, n: int) -> np.ndarray:
    """The first ``n`` stage derivatives k_i = f(t + c_i h, u + h sum_{j<i} a_ij k_j)."""
    k = np.zeros((n,) + np.shape(u))
    for i in range(n):
        k[i] = f(t + arr.c[i] * h, u + h * np.tensordot(arr.a[i, :i], k[:i], axes=1))
    return k


def rk_step(arr: Arrays, f, t: float, u: np.ndarray, h: float, weights: np.ndarray):
    k = rk_stages(arr, f, t, u, h, arr.s)
    return u + h * np.tensordot(weights, k, axes=1)


def dense(arr: Arrays, f, t: float, u: np.ndarray, h: float, theta: float) -> np.ndarray:
    """u(t + theta h) from the interpolant of one step, extra stages included."""
    k = rk_stages(arr, f, t, u, h, arr.n)
    powers = theta ** np.arange(1, arr.interp.shape[1] + 1)
    return u + h * np.tensordot(arr.interp @ powers, k, axes=1)


def integrate(arr: Arrays, f, t0: float, u0: np.ndarray, t1: float, steps: int, weights):
    h = (t1 - t0) / steps
    u = np.asarray(u0, dtype=float)
    for m in range(steps):
        u = rk_step(arr, f, t0 + m * h, u, h, weights)
    return u


def slope(hs, errs) -> float:
    """Least-squares slope of log(err) against log(h)."""
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# --------------------------------------------------------------------------------------------
# Test problems
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    name: str
    f: Callable
    t0: float
    t1: float
    u0: np.ndarray
    exact: Callable  # t -> u(t)


def _limit_cycle(t, u):
    r2 = u[0] ** 2 + u[1] ** 2
    return np.array([-u[1] + u[0] * (1.0 - r2), u[0] + u[1] * (1.0 - r2)])


def _limit_cycle_exact(t, r0=0.5, phi0=0.3):
    # r' = r (1 - r^2), phi' = 1
    r = 1.0 / math.sqrt(1.0 + (1.0 / r0**2 - 1.0) * math.exp(-2.0 * t))
    return np.array([r * math.cos(phi0 + t), r * math.sin(phi0 + t)])


def _lotka_volterra(t, u):
    return np.array([1.5 * u[0] - u[0] * u[1], -3.0 * u[1] + u[0] * u[1]])


@functools.cache
def _lotka_volterra_reference():
    u0 = np.array([1.0, 1.0])
    sol = solve_ivp(
        _lotka_volterra, (0.0, 2.0), u0, method="DOP853", rtol=1e-13, atol=1e-14,
        dense_output=True,
    )
    assert sol.success
    return sol.sol


def _lotka_volterra_exact(t):
    return np.array([1.0, 1.0]) if t == 0.0 else _lotka_volterra_reference()(t)


PROBLEMS = [
    # linear, autonomous: u' = λu
    Problem("linear", lambda t, u: -2.0 * u, 0.0, 1.0, np.array([1.0]),
            lambda t: np.array([math.exp(-2.0 * t)])),
    # nonlinear and t-dependent: u' = -2 t u², u = 1 / (1 + t²)
    Problem("riccati_t", lambda t, u: -2.0 * t * u**2, 0.0, 2.0, np.array([1.0]),
            lambda t: np.array([1.0 / (1.0 + t * t)])),
    # a pure quadrature with t-dependence: u' = cos(3t) + t², u = sin(3t)/3 + t³/3
    Problem("quadrature", lambda t, u: np.full_like(u, math.cos(3 * t) + t * t), 0.0, 1.0,
            np.array([0.0]), lambda t: np.array([math.sin(3 * t) / 3 + t**3 / 3])),
    # nonlinear 2-d system with a closed-form solution
    Problem("limit_cycle", _limit_cycle, 0.0, 2.0, _limit_cycle_exact(0.0), _limit_cycle_exact),
    # nonlinear 2-d system against scipy's DOP853 at rtol = 1e-13
    Problem("lotka_volterra", _lotka_volterra, 0.0, 2.0, np.array([1.0, 1.0]),
            _lotka_volterra_exact),
]
PIDS = [p.name for p in PROBLEMS]

# step counts per method for the global-error slopes: the errors stay well above rounding and
# the reference's error, and well inside the asymptotic regime
STEPS = {
    "Euler": (200, 400, 800, 1600),
    "RK4": (20, 40, 80, 160),
    "Tsit5": (10, 20, 40, 80),
    "DP5": (10, 20, 40, 80),
    "Vern7": (6, 12, 24, 48),
}
EMBEDDED_STEPS = {"Tsit5": (10, 20, 40, 80), "DP5": (10, 20, 40, 80), "Vern7": (6, 12, 24, 48)}
# one-step sizes for the local error of the dense output
DENSE_H = {
    "Euler": (0.02, 0.01, 0.005, 0.0025),
    "RK4": (0.2, 0.1, 0.05, 0.025),
    "Tsit5": (0.2, 0.1, 0.05, 0.025),
    "DP5": (0.2, 0.1, 0.05, 0.025),
    "Vern7": (0.4, 0.2, 0.1, 0.05),
}
THETAS = (0.3, 0.5, 0.77)


def global_errors(arr, prob, steps, weights):
    ref = prob.exact(prob.t1)
    return [
        float(np.max(np.abs(integrate(arr, prob.f, prob.t0, prob.u0, prob.t1, n, weights) - ref)))
        for n in steps
    ]


# --------------------------------------------------------------------------------------------
# Order conditions on rooted trees
# --------------------------------------------------------------------------------------------


@functools.cache
def trees(order: int) -> tuple:
    """All rooted trees with ``order`` vertices, each a sorted tuple of its subtrees."""
    if order == 1:
        return ((),)
    return tuple(
        tuple(sorted(trees(k)[i] for k, i in forest)) for forest in _forests(order - 1, (1, 0))
    )


def _forests(total: int, smallest: tuple):
    """Non-decreasing sequences of tree keys (order, index) with orders summing to ``total``."""
    if total == 0:
        yield ()
        return
    for k in range(smallest[0], total + 1):
        for i in range(smallest[1] if k == smallest[0] else 0, len(trees(k))):
            for rest in _forests(total - k, (k, i)):
                yield ((k, i),) + rest


def tree_order(t) -> int:
    return 1 + sum(tree_order(u) for u in t)


def gamma(t) -> int:
    return tree_order(t) * math.prod(gamma(u) for u in t)


def phi(a: np.ndarray, t) -> np.ndarray:
    """Stage vector of the elementary weight: Φ(t)_i = Π_children (A Φ(child))_i."""
    out = np.ones(a.shape[0])
    for u in t:
        out = out * (a @ phi(a, u))
    return out


def condition_residuals(a: np.ndarray, weights: np.ndarray, order: int) -> list:
    """|w·Φ(t) - 1/γ(t)| relative to the size of the terms, for all trees up to ``order``."""
    res = []
    for p in range(1, order + 1):
        for t in trees(p):
            terms = weights * phi(a, t)
            scale = max(1.0, float(np.sum(np.abs(terms))) * gamma(t))
            res.append((abs(float(np.sum(terms)) - 1.0 / gamma(t)) * gamma(t) / scale, p, t))
    return res


def test_tree_counts():
    # A000081: 1, 1, 2, 4, 9, 20, 48, 115 rooted trees of orders 1..8
    assert [len(trees(p)) for p in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_order_conditions(tab):
    arr = arrays(tab)
    s = arr.s
    a = arr.a[:s, :s]
    bad = [(r, p, t) for r, p, t in condition_residuals(a, arr.b, tab.order) if r > 1e-12]
    assert not bad, f"{tab.name}: order conditions fail: {bad[:3]}"
    # and the stated order is the actual one: some condition of order + 1 fails
    nxt = [r for r, p, _ in condition_residuals(a, arr.b, tab.order + 1) if p == tab.order + 1]
    assert max(nxt) > 1e-6


@pytest.mark.parametrize("tab", ADAPTIVE, ids=[t.name for t in ADAPTIVE])
def test_embedded_order_conditions(tab):
    arr = arrays(tab)
    s = arr.s
    a = arr.a[:s, :s]
    res = condition_residuals(a, arr.b_hat, tab.error_order + 1)
    assert max(r for r, p, _ in res if p <= tab.error_order) < 1e-12
    assert max(r for r, p, _ in res if p == tab.error_order + 1) > 1e-6


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_dense_output_order_conditions(tab):
    """b(θ)·Φ(t) = θ^|t| / γ(t) for |t| ≤ interp_order, i.e. per power of θ."""
    arr = arrays(tab)
    d = arr.interp.shape[1]
    for p in range(1, tab.interp_order + 1):
        for t in trees(p):
            ph = phi(arr.a, t)
            for m in range(1, d + 1):
                terms = arr.interp[:, m - 1] * ph
                want = 1.0 / gamma(t) if m == p else 0.0
                scale = max(1.0, float(np.sum(np.abs(terms))) * gamma(t))
                err = abs(float(np.sum(terms)) - want) * gamma(t) / scale
                assert err < 1e-11, (tab.name, p, t, m, err)


# --------------------------------------------------------------------------------------------
# Observed orders of convergence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", PROBLEMS, ids=PIDS)
@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_convergence_order(tab, prob):
    arr = arrays(tab)
    steps = STEPS[tab.name]
    errs = global_errors(arr, prob, steps, arr.b)
    hs = [(prob.t1 - prob.t0) / n for n in steps]
    p = slope(hs, errs)
    assert abs(p - tab.order) <= SLOPE_TOL, f"{tab.name} on {prob.name}: slope {p:.3f}, {errs}"


@pytest.mark.parametrize("prob", PROBLEMS, ids=PIDS)
@pytest.mark.parametrize("tab", ADAPTIVE, ids=[t.name for t in ADAPTIVE])
def test_embedded_convergence_order(tab, prob):
    arr = arrays(tab)
    steps = EMBEDDED_STEPS[tab.name]
    errs = global_errors(arr, prob, steps, arr.b_hat)
    hs = [(prob.t1 - prob.t0) / n for n in steps]
    p = slope(hs, errs)
    assert abs(p - tab.error_order) <= SLOPE_TOL, (
        f"{tab.name} embedded on {prob.name}: slope {p:.3f}, {errs}"
    )


@pytest.mark.parametrize("prob", PROBLEMS, ids=PIDS)
@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_dense_output_order(tab, prob):
    """Local error of the interpolant within one step from the exact solution ~ h^(q+1)."""
    arr = arrays(tab)
    t0 = prob.t0 + 0.25 * (prob.t1 - prob.t0)  # away from t = 0, where some terms vanish
    u0 = prob.exact(t0)
    hs = DENSE_H[tab.name]
    for theta in THETAS:
        errs = [
            float(np.max(np.abs(dense(arr, prob.f, t0, u0, h, theta) - prob.exact(t0 + theta * h))))
            for h in hs
        ]
        p = slope(hs, errs)
        assert abs(p - (tab.interp_order + 1)) <= SLOPE_TOL, (
            f"{tab.name} dense output on {prob.name} at θ={theta}: slope {p:.3f}, {errs}"
        )


# --------------------------------------------------------------------------------------------
# Structure: FSAL, extra stages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_dense_output_matches_step_ends(tab):
    arr = arrays(tab)
    prob = PROBLEMS[3]
    h = 0.1
    u1 = rk_step(arr, prob.f, 0.3, prob.exact(0.3), h, arr.b)
    np.testing.assert_allclose(dense(arr, prob.f, 0.3, prob.exact(0.3), h, 1.0), u1, atol=1e-14)
    np.testing.assert_allclose(dense(arr, prob.f, 0.3, prob.exact(0.3), h, 0.0), prob.exact(0.3))


@pytest.mark.parametrize("tab", [t for t in TABLEAUS if t.fsal], ids=[t.name for t in TABLEAUS if t.fsal])
def test_fsal_last_stage_is_next_first(tab):
    arr = arrays(tab)
    prob = PROBLEMS[4]
    t, h = 0.2, 0.1
    u = prob.exact(t)
    k = rk_stages(arr, prob.f, t, u, h, arr.s)
    u1 = u + h * np.tensordot(arr.b, k, axes=1)
    np.testing.assert_allclose(k[-1], prob.f(t + h, u1), rtol=1e-14, atol=1e-14)


def test_vern7_extra_stages():
    """Vern7's six lazy stages are computed from all previous stages, per ``extra_a``."""
    tab = VERN7
    arr = arrays(tab)
    s, e = len(tab.c), len(tab.extra_c)
    assert (s, e, arr.n) == (10, 6, 16)
    assert [len(row) for row in tab.extra_a] == [s + j for j in range(e)]
    # stage 11 is f(t + h, u_{n+1}); later extra stages also use the earlier extra stages
    np.testing.assert_allclose(tab.extra_a[0], tab.b, rtol=0, atol=1e-15)
    assert tab.extra_c[0] == 1.0
    for j in range(1, e):
        assert any(x != 0.0 for x in tab.extra_a[j][s:]), f"extra stage {j} ignores extra stages"
    # computed stage by stage, directly from the definition
    prob = PROBLEMS[4]
    t, h = 0.4, 0.15
    u = prob.exact(t)
    k = []
    for i in range(s):
        k.append(prob.f(t + tab.c[i] * h, u + h * sum(x * kk for x, kk in zip(tab.a[i], k, strict=True))))
    u1 = u + h * sum(x * kk for x, kk in zip(tab.b, k, strict=True))
    for j in range(e):
        row = tab.extra_a[j]
        assert len(row) == len(k)
        k.append(prob.f(t + tab.extra_c[j] * h, u + h * sum(x * kk for x, kk in zip(row, k, strict=True))))
    np.testing.assert_allclose(np.array(k), rk_stages(arr, prob.f, t, u, h, arr.n), rtol=1e-14)
    np.testing.assert_allclose(k[s], prob.f(t + h, u1), rtol=1e-13)
    # the 7th-order dense output needs them: without the extra stages it is of low order
    no_extra = Arrays(arr.s, arr.n, arr.c, arr.a.copy(), arr.b, arr.b_hat, arr.interp)
    no_extra.a[s:] = 0.0
    hs = DENSE_H["Vern7"]
    theta = 0.5
    errs_full = [np.max(np.abs(dense(arr, prob.f, t, u, hh, theta) - prob.exact(t + theta * hh))) for hh in hs]
    errs_cut = [np.max(np.abs(dense(no_extra, prob.f, t, u, hh, theta) - prob.exact(t + theta * hh))) for hh in hs]
    assert slope(hs, errs_full) > slope(hs, errs_cut) + 2
