"""Independent checks of the (E)SDIRK tableaus in :mod:`pysciml.native.sdirk_tableaus`.

Nothing here uses a pysciml solver. Each test reads the tableau's fields and either

* evaluates Runge–Kutta order conditions on rooted trees (bicoloured trees for the IMEX pair,
  which include the coupling conditions), exact up to rounding, or
* takes steps with a small numpy implementation of the module docstring's step equations
  (written here; each implicit stage solved by Newton's method with a dense Jacobian to 1e-14)
  and measures observed orders of convergence against an exact solution or a tight scipy
  DOP853 reference: the propagated solution, the embedded solution, the error estimate, the
  dense output, and the IMEX pair on a split problem.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction as F

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from pysciml.native.sdirk_tableaus import KENCARP4, KVAERNO5, TRBDF2, SDIRKTableau

TABLEAUS = [TRBDF2, KENCARP4, KVAERNO5]
IDS = [t.name for t in TABLEAUS]
SLOPE_TOL = 0.3


# --------------------------------------------------------------------------------------------
# The tableau as numpy arrays
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrays:
    s: int
    gamma: float
    c: np.ndarray
    A: np.ndarray  # (s, s) lower triangular, diagonal included
    b: np.ndarray
    e: np.ndarray  # b - b_hat
    B: np.ndarray  # (s, d) dense output rows (own interpolant or Hermite)
    Ae: np.ndarray  # (s, s) explicit companion (zeros for a plain ESDIRK)
    be: np.ndarray
    ee: np.ndarray
    Be: np.ndarray
    P: np.ndarray | None  # (s, s) predictor

    @property
    def b_hat(self) -> np.ndarray:
        return self.b - self.e

    @property
    def be_hat(self) -> np.ndarray:
        return self.be - self.ee


def _lower(rows, s: int) -> np.ndarray:
    out = np.zeros((s, s))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@functools.cache
def arrays(tab: SDIRKTableau) -> Arrays:
    s = tab.stages
    b, e, B = np.array(tab.b), np.array(tab.b_error), np.array(tab.dense_interp)
    Ae = _lower(tab.A_explicit, s) if tab.imex else np.zeros((s, s))
    be = np.array(tab.b_explicit) if tab.b_explicit is not None else b
    ee = np.array(tab.b_error_explicit) if tab.b_error_explicit is not None else e
    Be = np.array(tab.interp_explicit) if tab.interp_explicit is not None else B
    P = _lower(tab.predictor, s) if tab.predictor is not None else None
    return Arrays(
        s, tab.gamma, np.array(tab.c), _lower(tab.A, s), b, e, B, Ae, be, ee, Be, P
    )


def dense_weights(B: np.ndarray, theta: float) -> np.ndarray:
    return B @ theta ** np.arange(1, B.shape[1] + 1)


# --------------------------------------------------------------------------------------------
# Order conditions on (bicoloured) rooted trees
# --------------------------------------------------------------------------------------------
# A tree is (colour, children) with children a sorted tuple of trees; colour 0 = implicit part
# (A, b), colour 1 = explicit part (A_explicit, b_explicit). The condition of tree t is
#   Σ_i w^{colour(root)}_i Φ_i(t) = θ^|t| / γ(t),   Φ(t) = Π_{children u} (A^{colour(u)} Φ(u)),
# with w = b (θ = 1), b_hat, or the dense weights b(θ). A plain method uses colour 0 only; the
# coupling conditions of the additive pair are the trees with both colours.


@functools.cache
def trees(order: int, colours: int = 1) -> tuple:
    """All (colour, children) trees with exactly ``order`` nodes."""
    out = set()
    for col in range(colours):
        for parts in _partitions(order - 1):
            for kids in itertools.product(*(trees(p, colours) for p in parts)):
                out.add((col, tuple(sorted(kids))))
    return tuple(sorted(out))


@functools.cache
def _partitions(n: int, largest: int | None = None) -> tuple:
    if n == 0:
        return ((),)
    largest = n if largest is None else largest
    return tuple(
        (p,) + rest for p in range(min(n, largest), 0, -1) for rest in _partitions(n - p, p)
    )


def size(t) -> int:
    return 1 + sum(size(ch) for ch in t[1])


def density(t) -> int:
    return size(t) * math.prod(density(ch) for ch in t[1])


def phi(mats, t) -> np.ndarray:
    v = np.ones(mats[0].shape[0])
    for ch in t[1]:
        v = v * (mats[ch[0]] @ phi(mats, ch))
    return v


def max_residual(mats, weights, order: int, theta: float = 1.0) -> float:
    """Largest |w·Φ(t) - θ^|t|/γ(t)| over the trees with ``order`` nodes (in as many colours as
    there are matrices)."""
    return max(
        abs(weights[t[0]] @ phi(mats, t) - theta ** size(t) / density(t))
        for t in trees(order, len(mats))
    )


def test_tree_counts():
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]
    assert [len(trees(n, 2)) for n in range(1, 5)] == [2, 4, 14, 52]


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_order_conditions(tab):
    ar = arrays(tab)
    for p in range(1, tab.order + 1):
        assert max_residual([ar.A], [ar.b], p) < 1e-13, f"order {p}"
    assert max_residual([ar.A], [ar.b], tab.order + 1) > 1e-6  # the order is sharp


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_order_conditions_embedded(tab):
    ar = arrays(tab)
    for p in range(1, tab.error_order + 1):
        assert max_residual([ar.A], [ar.b_hat], p) < 1e-13, f"order {p}"
    assert max_residual([ar.A], [ar.b_hat], tab.error_order + 1) > 1e-6


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("theta", [0.3, 0.6])
def test_order_conditions_dense(tab, theta):
    ar = arrays(tab)
    w = dense_weights(ar.B, theta)
    for p in range(1, tab.interp_order + 1):
        assert max_residual([ar.A], [w], p, theta) < 1e-11, f"order {p}"
    assert max_residual([ar.A], [w], tab.interp_order + 1, theta) > 1e-6
    np.testing.assert_allclose(dense_weights(ar.B, 1.0), ar.b, atol=1e-11)
    np.testing.assert_allclose(dense_weights(ar.B, 0.0), 0.0, atol=0)


def test_order_conditions_imex_pair():
    """KenCarp4 as an additive pair: all bicoloured trees (coupling conditions included) hold
    to order 4 for b, to order 3 for b_hat and for the dense output."""
    ar = arrays(KENCARP4)
    mats = [ar.A, ar.Ae]
    for p in range(1, 5):
        assert max_residual(mats, [ar.b, ar.be], p) < 1e-13, f"order {p}"
    assert max_residual(mats, [ar.b, ar.be], 5) > 1e-6
    for p in range(1, 4):
        assert max_residual(mats, [ar.b_hat, ar.be_hat], p) < 1e-13, f"embedded order {p}"
    assert max_residual(mats, [ar.b_hat, ar.be_hat], 4) > 1e-6
    for theta in (0.3, 0.6):
        w, we = dense_weights(ar.B, theta), dense_weights(ar.Be, theta)
        for p in range(1, 4):
            assert max_residual(mats, [w, we], p, theta) < 1e-11, f"dense order {p}"
    # the explicit part alone is a 4th-order explicit RK method
    for p in range(1, 5):
        assert max_residual([ar.Ae], [ar.be], p) < 1e-13


# --------------------------------------------------------------------------------------------
# Constants against their sources
# --------------------------------------------------------------------------------------------


def test_trbdf2_constants():
    r2 = math.sqrt(2)
    d, w = 1 - r2 / 2, r2 / 4
    assert TRBDF2.gamma == pytest.approx(d, rel=1e-15)
    assert TRBDF2.c[1] == pytest.approx(2 - r2, rel=1e-15)
    b_hat = np.array([(1 - w) / 3, (3 * w + 1) / 3, d / 3])  # OrdinaryDiffEq's comment
    np.testing.assert_allclose(arrays(TRBDF2).b_hat, b_hat, rtol=0, atol=1e-16)
    btilde_ode = np.array([(1 - r2) / 3, 1 / 3, (r2 - 2) / 3])  # bhat - b
    np.testing.assert_allclose(TRBDF2.b_error, -btilde_ode, rtol=0, atol=1e-16)


def test_kencarp4_constants():
    b = [F(82889, 524892), F(0), F(15625, 83664), F(69875, 102672), F(-2260, 8211), F(1, 4)]
    b_hat = [
        F(4586570599, 29645900160), F(0), F(178811875, 945068544), F(814220225, 1159782912),
        F(-3700637, 11593932), F(61727, 225920),
    ]
    assert sum(b) == 1 and sum(b_hat) == 1
    e = [float(x - y) for x, y in zip(b, b_hat, strict=True)]
    np.testing.assert_allclose(KENCARP4.b_error, e, rtol=1e-15, atol=1e-18)
    assert KENCARP4.A[1] == (0.25, 0.25) and KENCARP4.A[-1] == KENCARP4.b
    assert KENCARP4.b_explicit is None and KENCARP4.b_error_explicit is None


def test_kvaerno5_constants():
    btilde_ode = [  # OrdinaryDiffEq's Kvaerno5Tableau btilde (= b_hat - b)
        0.00195889053627933, 0.0, 0.01251571594786333, 0.06565284626324187,
        -0.01050265826535727, 0.19037520551797272, -0.26,
    ]
    np.testing.assert_allclose(KVAERNO5.b_error, -np.array(btilde_ode), rtol=0, atol=1e-16)
    assert KVAERNO5.c[1] == 2 * KVAERNO5.gamma


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_predictor_rows(tab):
    """Predictor rows reproduce h·f for constant f (rows sum to 1) and, except z_2 <- z_1 and
    Kvaerno5's last (embedded-increment) row, for f linear in t (Σ_j P_ij c_j = c_i)."""
    ar = arrays(tab)
    assert ar.P is not None
    np.testing.assert_allclose(ar.P[1:].sum(1), 1.0, atol=1e-14)
    linear = ar.P @ ar.c - ar.c
    skip = {0, 1} | ({6} if tab is KVAERNO5 else set())
    for i in range(ar.s):
        if i not in skip:
            assert abs(linear[i]) < 1e-14, i


# --------------------------------------------------------------------------------------------
# A reference (E)SDIRK / IMEX step in numpy (the module docstring's equations)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    f: Callable[[float, np.ndarray], np.ndarray]  # the implicit (or only) part
    jac: Callable[[float, np.ndarray], np.ndarray]
    f_explicit: Callable[[float, np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class Step:
    u_new: np.ndarray
    err: np.ndarray  # h Σ e_i k_i (raw)
    est: np.ndarray  # (I - hγJ)^-1 err (filtered)
    kI: np.ndarray  # (s, n)
    kE: np.ndarray  # (s, n)
    h: float

    def dense(self, ar: Arrays, u0: np.ndarray, theta: float) -> np.ndarray:
        w, we = dense_weights(ar.B, theta), dense_weights(ar.Be, theta)
        return u0 + self.h * (w @ self.kI + we @ self.kE)


NEWTON_TOL = 1e-14


def newton(g: Callable, dg: Callable, z0: np.ndarray) -> np.ndarray:
    z = z0.copy()
    for _ in range(50):
        dz = np.linalg.solve(dg(z), -g(z))
        z = z + dz
        if np.abs(dz).max() <= NEWTON_TOL * max(1.0, np.abs(z).max()):
            return z
    raise AssertionError("Newton did not converge")


def esdirk_step(
    tab: SDIRKTableau, prob: Problem, t: float, u: np.ndarray, h: float, imex: bool = False
) -> Step:
    ar = arrays(tab)
    n, g = len(u), ar.gamma
    kI, kE = np.zeros((ar.s, n)), np.zeros((ar.s, n))
    eye = np.eye(n)
    for i in range(ar.s):
        T = t + ar.c[i] * h
        tmp = u + h * (ar.A[i, :i] @ kI[:i] + ar.Ae[i, :i] @ kE[:i])
        if ar.A[i, i] == 0.0:
            U = tmp
            kI[i] = prob.f(T, U)
        else:
            guess = ar.P[i, :i] @ (h * kI[:i]) if ar.P is not None else np.zeros(n)
            z = newton(
                lambda z, T=T, tmp=tmp: z - h * prob.f(T, tmp + g * z),
                lambda z, T=T, tmp=tmp: eye - h * g * prob.jac(T, tmp + g * z),
                guess,
            )
            U = tmp + g * z
            kI[i] = z / h
        if imex:
            kE[i] = prob.f_explicit(T, U)
    u_new = u + h * (ar.b @ kI + ar.be @ kE)
    err = h * (ar.e @ kI + ar.ee @ kE)
    if tab.stiffly_accurate and not imex:  # u_new is the last stage value
        np.testing.assert_allclose(U, u_new, rtol=1e-13, atol=1e-15)
    est = np.linalg.solve(eye - h * g * prob.jac(t, u), err)
    return Step(u_new, err, est, kI, kE, h)


def integrate(tab, prob, t0, u0, t1, n, embedded=False, imex=False, exact=None):
    """Fixed steps from t0 to t1: the final value, or with ``exact(t)`` the largest error over
    the step points."""
    h = (t1 - t0) / n
    u = u0.copy()
    worst = 0.0
    for i in range(n):
        st = esdirk_step(tab, prob, t0 + i * h, u, h, imex=imex)
        u = st.u_new - st.err if embedded else st.u_new
        if exact is not None:
            worst = max(worst, float(np.abs(u - exact(t0 + (i + 1) * h)).max()))
    return u if exact is None else worst


def slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# Problem (a): Prothero–Robinson, u' = -λ(u - sin t) + cos t, λ = 10, exact u = sin t.
LAM = 10.0
PR = Problem(
    f=lambda t, u: -LAM * (u - np.sin(t)) + np.cos(t),
    jac=lambda t, u: np.array([[-LAM]]),
)
PR_T0, PR_T1 = 0.0, 2.0
PR_U0 = np.array([0.0])

# Problem (b): nonlinear, non-autonomous 2-d system u' = L u + N(t, u): a stiff-ish linear part
# (eigenvalues -3.6 and -10.4) and a non-stiff nonlinear part; split for the IMEX tests.
L_MAT = np.array([[-10.0, 1.0], [2.0, -4.0]])


def _n(t, u):
    return np.array([u[1] ** 2 + np.cos(t), -u[0] * u[1] + 0.5 * np.sin(2 * t)])


def _n_jac(t, u):
    return np.array([[0.0, 2 * u[1]], [-u[1], -u[0]]])


NONLIN = Problem(f=lambda t, u: L_MAT @ u + _n(t, u), jac=lambda t, u: L_MAT + _n_jac(t, u))
SPLIT = Problem(f=lambda t, u: L_MAT @ u, jac=lambda t, u: L_MAT, f_explicit=_n)
NL_T0, NL_T1 = 0.0, 2.0
NL_U0 = np.array([1.0, 0.5])


@functools.cache
def reference(t0: float, u0: tuple, t1: float) -> np.ndarray:
    sol = solve_ivp(NONLIN.f, (t0, t1), np.array(u0), method="DOP853", rtol=1e-13, atol=1e-15)
    return sol.y[:, -1]


# Step counts / sizes in the asymptotic regime (errors well above the references' accuracy).
STEPS = {"TRBDF2": [20, 40, 80, 160], "KenCarp4": [10, 20, 40, 80], "Kvaerno5": [10, 20, 40, 80]}
STEPS_EMBEDDED = {
    "TRBDF2": [20, 40, 80, 160], "KenCarp4": [20, 40, 80, 160], "Kvaerno5": [10, 20, 40, 80]
}
LOCAL_HS = {
    "TRBDF2": [0.04, 0.02, 0.01, 0.005],
    "KenCarp4": [0.04, 0.02, 0.01, 0.005],
    "Kvaerno5": [0.04, 0.02, 0.01, 0.005],
}
DENSE_HS = {
    "TRBDF2": [0.1, 0.05, 0.025, 0.0125],
    "KenCarp4": [0.1, 0.05, 0.025, 0.0125],
    "Kvaerno5": [0.1, 0.05, 0.025, 0.0125],
}


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_convergence_prothero_robinson(tab):
    ns = STEPS[tab.name]
    errs = [integrate(tab, PR, PR_T0, PR_U0, PR_T1, n, exact=np.sin) for n in ns]
    assert abs(slope([1 / n for n in ns], errs) - tab.order) < SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_convergence_nonlinear(tab):
    exact = reference(NL_T0, tuple(NL_U0), NL_T1)
    ns = STEPS[tab.name]
    errs = [np.abs(integrate(tab, NONLIN, NL_T0, NL_U0, NL_T1, n) - exact).max() for n in ns]
    assert abs(slope([1 / n for n in ns], errs) - tab.order) < SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("problem", ["prothero_robinson", "nonlinear"])
def test_convergence_embedded(tab, problem):
    """The embedded solution u_new - err, propagated on its own, has order `error_order`."""
    ns = STEPS_EMBEDDED[tab.name]
    if problem == "nonlinear":
        exact = reference(NL_T0, tuple(NL_U0), NL_T1)
        errs = [
            np.abs(integrate(tab, NONLIN, NL_T0, NL_U0, NL_T1, n, embedded=True) - exact).max()
            for n in ns
        ]
    else:
        errs = [
            integrate(tab, PR, PR_T0, PR_U0, PR_T1, n, embedded=True, exact=np.sin) for n in ns
        ]
    assert abs(slope([1 / n for n in ns], errs) - tab.error_order) < SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_error_estimate_local_order(tab):
    """Raw and filtered estimates shrink like h^(min(order, error_order) + 1) on one step."""
    hs = LOCAL_HS[tab.name]
    t0 = 0.3
    u0 = reference(NL_T0, tuple(NL_U0), t0)
    steps = [esdirk_step(tab, NONLIN, t0, u0, h) for h in hs]
    expected = min(tab.order, tab.error_order) + 1
    for label in ("err", "est"):
        sizes = [np.abs(getattr(st, label)).max() for st in steps]
        assert abs(slope(hs, sizes) - expected) < SLOPE_TOL, (label, sizes)
    # and the raw estimate is the true local error's leading term when error_order > order
    if tab.error_order > tab.order:
        for h, st in zip(hs, steps, strict=True):
            true = st.u_new - reference(t0, tuple(u0), t0 + h)
            assert np.abs(st.err - true).max() < 0.2 * np.abs(true).max()


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("theta", [0.3, 0.6])
def test_dense_output_local_order(tab, theta):
    ar = arrays(tab)
    hs, t0 = DENSE_HS[tab.name], 0.3
    u0 = reference(NL_T0, tuple(NL_U0), t0)
    errs = []
    for h in hs:
        st = esdirk_step(tab, NONLIN, t0, u0, h)
        ref = reference(t0, tuple(u0), t0 + theta * h)
        errs.append(np.abs(st.dense(ar, u0, theta) - ref).max())
    assert abs(slope(hs, errs) - (tab.interp_order + 1)) < SLOPE_TOL, errs


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_dense_output_endpoints(tab):
    ar = arrays(tab)
    st = esdirk_step(tab, NONLIN, 0.3, NL_U0, 0.1)
    np.testing.assert_allclose(st.dense(ar, NL_U0, 0.0), NL_U0, rtol=0, atol=0)
    np.testing.assert_allclose(st.dense(ar, NL_U0, 1.0), st.u_new, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("tab", [TRBDF2, KVAERNO5], ids=["TRBDF2", "Kvaerno5"])
def test_hermite_rows_are_cubic_hermite(tab):
    """dense_interp of the Hermite methods equals the cubic Hermite polynomial on u_n, u_{n+1},
    f_n, f_{n+1} (f_{n+1} evaluated afresh; equal to k_s up to the Newton tolerance)."""
    assert tab.interp is None and tab.hermite_dense
    ar = arrays(tab)
    t0, h, u0 = 0.3, 0.1, NL_U0
    st = esdirk_step(tab, NONLIN, t0, u0, h)
    f0, f1 = NONLIN.f(t0, u0), NONLIN.f(t0 + h, st.u_new)
    for theta in (0.0, 0.2, 0.5, 0.9, 1.0):
        u1 = st.u_new
        hermite = (1 - theta) * u0 + theta * u1 + theta * (theta - 1) * (
            (1 - 2 * theta) * (u1 - u0) + (theta - 1) * h * f0 + theta * h * f1
        )
        np.testing.assert_allclose(st.dense(ar, u0, theta), hermite, rtol=1e-13, atol=1e-14)


def test_trbdf2_is_trapezoid_then_bdf2():
    """The ESDIRK form reproduces the classical TR-BDF2 step with c2 = 2 - √2:
    TR to t + c2 h, then u_{n+1} = (U_2 - (1-c2)² u_n)/(c2(2-c2)) + (1-c2)/(2-c2) h f_{n+1}."""
    t, h, u = 0.3, 0.1, NL_U0
    c2 = 2 - math.sqrt(2)
    f0 = NONLIN.f(t, u)
    eye = np.eye(2)
    U2 = newton(
        lambda y: y - u - c2 * h / 2 * (f0 + NONLIN.f(t + c2 * h, y)),
        lambda y: eye - c2 * h / 2 * NONLIN.jac(t + c2 * h, y),
        u,
    )
    w = (1 - c2) / (2 - c2)
    u1 = newton(
        lambda y: y - (U2 - (1 - c2) ** 2 * u) / (c2 * (2 - c2)) - w * h * NONLIN.f(t + h, y),
        lambda y: eye - w * h * NONLIN.jac(t + h, y),
        U2,
    )
    assert w == pytest.approx(TRBDF2.gamma, rel=1e-15)
    st = esdirk_step(TRBDF2, NONLIN, t, u, h)
    np.testing.assert_allclose(st.u_new, u1, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------------------
# The IMEX pair on a split problem
# --------------------------------------------------------------------------------------------


def test_imex_convergence():
    """KenCarp4 with f_I = L u implicit and f_E = N(t, u) explicit converges with order 4 (all
    coupling conditions to order 4 hold), its embedded solution with order 3."""
    exact = reference(NL_T0, tuple(NL_U0), NL_T1)
    ns = [40, 80, 160, 320]  # observed slopes about 3.9 and 2.9 (pre-asymptotic below)
    hs = [1 / n for n in ns]
    errs = [
        np.abs(integrate(KENCARP4, SPLIT, NL_T0, NL_U0, NL_T1, n, imex=True) - exact).max()
        for n in ns
    ]
    assert abs(slope(hs, errs) - 4) < SLOPE_TOL, errs
    errs_hat = [
        np.abs(
            integrate(KENCARP4, SPLIT, NL_T0, NL_U0, NL_T1, n, imex=True, embedded=True) - exact
        ).max()
        for n in ns
    ]
    assert abs(slope(hs, errs_hat) - 3) < SLOPE_TOL, errs_hat


@pytest.mark.parametrize("theta", [0.3, 0.6])
def test_imex_dense_output_local_order(theta):
    ar = arrays(KENCARP4)
    hs, t0 = DENSE_HS["KenCarp4"], 0.3
    u0 = reference(NL_T0, tuple(NL_U0), t0)
    errs, est = [], []
    for h in hs:
        st = esdirk_step(KENCARP4, SPLIT, t0, u0, h, imex=True)
        ref = reference(t0, tuple(u0), t0 + theta * h)
        errs.append(np.abs(st.dense(ar, u0, theta) - ref).max())
        est.append(np.abs(st.err).max())
    assert abs(slope(hs, errs) - 4) < SLOPE_TOL, errs
    assert abs(slope(hs, est) - 4) < SLOPE_TOL, est


def test_imex_with_zero_explicit_part_is_the_esdirk():
    prob = Problem(f=NONLIN.f, jac=NONLIN.jac, f_explicit=lambda t, u: np.zeros_like(u))
    a = esdirk_step(KENCARP4, prob, 0.3, NL_U0, 0.1, imex=True)
    b = esdirk_step(KENCARP4, NONLIN, 0.3, NL_U0, 0.1)
    np.testing.assert_allclose(a.u_new, b.u_new, rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------------
# Linear stability
# --------------------------------------------------------------------------------------------


def stability(ar: Arrays, w: np.ndarray, z: complex) -> complex:
    """R(z) = 1 + z wᵀ (I - zA)^-1 1."""
    return 1 + z * w @ np.linalg.solve(np.eye(ar.s) - z * ar.A, np.ones(ar.s))


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_l_stability(tab):
    ar = arrays(tab)
    vals = [abs(stability(ar, ar.b, -(10.0**k))) for k in (3, 6, 9)]
    assert vals[0] < 2e-2 and vals[1] < 2e-5 and vals[2] < 1e-7, vals  # R(z) → 0 like 1/|z|
    # A-stability: |R| ≤ 1 on the imaginary axis and in the left half-plane (samples)
    ys = np.concatenate([-np.logspace(-3, 6, 200), np.logspace(-3, 6, 200)])
    assert max(abs(stability(ar, ar.b, 1j * y)) for y in ys) <= 1 + 1e-12
    xs = -np.logspace(-3, 4, 30)
    grid = [x + 1j * y for x in xs for y in np.linspace(-40, 40, 41)]
    assert max(abs(stability(ar, ar.b, z)) for z in grid) <= 1 + 1e-12
    # the reference step agrees: one step of u' = λu, λh = -1e8
    lam = -1e8
    prob = Problem(f=lambda t, u: lam * u, jac=lambda t, u: np.array([[lam]]))
    st = esdirk_step(tab, prob, 0.0, np.array([1.0]), 1.0)
    assert abs(st.u_new[0]) < 1e-6


def test_embedded_stability_and_filter():
    """TRBDF2's embedded method is not A-stable: R_hat(z) ~ -(√2/3) z, so the raw estimate of a
    stiff component grows like |hλ| while the filtered one, (1 - hγλ)^-1 err, stays bounded.
    KenCarp4's and Kvaerno5's embedded R_hat stay bounded, R_hat(∞) ≈ -0.15 and -0.75."""
    ar = arrays(TRBDF2)
    z = -1e6
    assert stability(ar, ar.b_hat, z) / z == pytest.approx(-math.sqrt(2) / 3, rel=1e-5)
    prob = Problem(f=lambda t, u: z * u, jac=lambda t, u: np.array([[z]]))
    st = esdirk_step(TRBDF2, prob, 0.0, np.array([1.0]), 1.0)
    assert abs(st.err[0]) > 1e5
    assert abs(st.est[0]) < 2.0
    for tab, r_inf in ((KENCARP4, -0.15), (KVAERNO5, -0.7483)):
        ar = arrays(tab)
        assert stability(ar, ar.b_hat, -1e9).real == pytest.approx(r_inf, abs=1e-3)
        ys = np.logspace(-3, 6, 200)
        assert max(abs(stability(ar, ar.b_hat, 1j * y)) for y in ys) <= 1 + 1e-12


# --------------------------------------------------------------------------------------------
# The dataclass: validation and tensors
# --------------------------------------------------------------------------------------------


def test_constants_fields():
    assert [(t.order, t.error_order, t.interp_order) for t in TABLEAUS] == [
        (2, 3, 2), (4, 3, 3), (5, 4, 3)
    ]
    assert [t.stages for t in TABLEAUS] == [3, 6, 7]
    assert all(t.explicit_first_stage and t.stiffly_accurate and t.adaptive for t in TABLEAUS)
    assert [t.imex for t in TABLEAUS] == [False, True, False]
    assert [t.hermite_dense for t in TABLEAUS] == [True, False, True]
    assert [t.gamma for t in TABLEAUS] == [pytest.approx(1 - math.sqrt(2) / 2), 0.25, 0.26]


def _kv5_row(i, new):
    return KVAERNO5.A[:i] + (new,) + KVAERNO5.A[i + 1 :]


def _kv5_predictor_row(i, new):
    return KVAERNO5.predictor[:i] + (new,) + KVAERNO5.predictor[i + 1 :]


def _kc4_explicit_row(i, new):
    return KENCARP4.A_explicit[:i] + (new,) + KENCARP4.A_explicit[i + 1 :]


@pytest.mark.parametrize(
    "tab, change",
    [
        (KVAERNO5, dict(c=(0.0, 0.26) + KVAERNO5.c[2:])),  # OrdinaryDiffEq's stage-2 time
        (KVAERNO5, dict(A=_kv5_row(3, KVAERNO5.A[3][:3] + (0.25,)))),  # diagonal
        (KVAERNO5, dict(A=_kv5_row(0, (0.26,)))),  # ESDIRK with a non-zero first stage
        (KVAERNO5, dict(b=KVAERNO5.A[5] + (0.0,))),  # not stiffly accurate any more
        (KVAERNO5, dict(b_error=KVAERNO5.b_error[:-1] + (0.3,))),
        (KVAERNO5, dict(b_error=None, error_order=None, stiffly_accurate=False)),  # no Hermite
        (KVAERNO5, dict(A=KVAERNO5.A[:-1])),
        (KVAERNO5, dict(predictor=_kv5_predictor_row(2, (1.0, 1.0)))),
        (KVAERNO5, dict(gamma=0.0)),
        (KENCARP4, dict(interp=KENCARP4.interp[:-1] + ((0.0, 0.0, 0.25),))),
        (KENCARP4, dict(A_explicit=_kc4_explicit_row(2, (0.2, 0.2)))),
        (KENCARP4, dict(b_explicit=(1.0,) + (0.0,) * 5)),  # interp no longer matches
        (KENCARP4, dict(A_explicit=None, interp_explicit=KENCARP4.interp)),  # no A_explicit
        (TRBDF2, dict(b_explicit=TRBDF2.b)),
        (TRBDF2, dict(b=(0.5, 0.5, 0.0))),
    ],
)
def test_validation_rejects(tab, change):
    with pytest.raises(ValueError):
        replace(tab, **change)


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
def test_validation_accepts_unchanged(tab):
    assert replace(tab) == tab


@pytest.mark.parametrize("tab", TABLEAUS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensors(tab, dtype):
    device = torch.device("cpu")
    tt = tab.tensors(dtype, device)
    assert tab.tensors(dtype, device) is tt  # cached
    s, d = tab.stages, len(tab.dense_interp[0])
    shapes = dict(A=(s, s), A_strict=(s, s), c=(s,), b=(s,), b_error=(s,), interp=(s, d))
    shapes.update(b_and_error=(s, 2), gamma=(), predictor=(s, s))
    if tab.imex:
        shapes.update(A_explicit=(s, s), b_explicit=(s,), b_error_explicit=(s,))
        shapes.update(interp_explicit=(s, d))
    else:
        for name in ("A_explicit", "b_explicit", "b_error_explicit", "interp_explicit"):
            assert getattr(tt, name) is None
    for name, shape in shapes.items():
        x = getattr(tt, name)
        assert x.shape == shape and x.dtype == dtype and x.device == device, name
    ar = arrays(tab)
    tol = 1e-6 if dtype == torch.float32 else 0
    pairs = dict(A=ar.A, c=ar.c, b=ar.b, b_error=ar.e, interp=ar.B, predictor=ar.P)
    if tab.imex:
        pairs.update(A_explicit=ar.Ae, b_explicit=ar.be, interp_explicit=ar.Be)
    for name, ref in pairs.items():
        np.testing.assert_allclose(getattr(tt, name).double().numpy(), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(
        tt.A_strict.double().numpy(), ar.A - np.diag(np.diag(ar.A)), rtol=tol, atol=tol
    )
    assert torch.triu(tt.A, 1).abs().max() == 0
    assert float(tt.gamma) == pytest.approx(tab.gamma, rel=tol or 1e-16)
