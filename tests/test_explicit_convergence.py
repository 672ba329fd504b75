"""Observed convergence orders of the explicit Runge–Kutta methods, through pysciml's loop.

The error of a method of order p behaves as C h^p; the slope of a least-squares fit of
log(error) against log(h) over several step sizes must be within ±0.25 of p. The fixed-step
methods (Euler, RK4) run through ``ps.solve(..., dt=h)``. The adaptive ones (Tsit5, DP5, Vern7)
run with the same tableau stripped of its error estimate (a fixed-step method of the same
coefficients) through pysciml's time loop ``integrate`` — an adaptive ``solve`` would choose its
own steps. References are analytic (DETEST A3 and a Riccati equation): nothing here compares
pysciml with itself. Step sizes keep the smallest errors above ~1e-13 so that float64 round-off
does not flatten the high orders.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from problems import A3, RICCATI, Problem

import pysciml as ps
from pysciml.native.explicit import ExplicitRungeKutta
from pysciml.native.integrate import integrate

ALGS = [ps.Euler(), ps.RK4(), ps.Tsit5(), ps.DP5(), ps.Vern7()]
IDS = [a.name for a in ALGS]
ADAPTIVE = [a for a in ALGS if a.adaptive]
SLOPE_TOL = 0.25

# numbers of steps over the span, by method order (chosen so the error is in the asymptotic
# regime and well above round-off; see the module docstring)
STEPS_A3 = {1: [256, 512, 1024, 2048], 4: [64, 128, 256, 512], 5: [64, 128, 256, 512],
            7: [48, 64, 96, 128]}
STEPS_RICCATI = {1: [256, 512, 1024, 2048], 4: [32, 64, 128, 256], 5: [32, 64, 128, 256],
                 7: [24, 32, 48, 64]}
T_A3 = 10.0


def slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


def fixed_step_stepper(alg: ps.AbstractAlgorithm) -> ExplicitRungeKutta:
    """The method's step with a fixed step size (no error estimate), same coefficients."""
    tab = alg.tableau
    if tab.adaptive:
        tab = dataclasses.replace(tab, b_error=None, error_order=None)
    stepper = ExplicitRungeKutta(tab)
    assert not stepper.adaptive
    return stepper


def flat_rhs(problem: Problem):
    p = problem.p_tensor()

    def rhs(t, y):  # loop convention: t (B,), y (B, N); one member
        return problem.f(t[0], y[0], p)[None]

    return rhs


def solve_fixed(alg, problem: Problem, t1: float, n: int, ts: torch.Tensor, dense=False):
    """Values at ``ts`` with ``n`` equal steps over ``(t0, t1)``; and the dense output (or None)."""
    t0 = problem.tspan[0]
    h = (t1 - t0) / n
    if not alg.adaptive:
        sol = ps.solve(problem.ode_problem(tspan=(t0, t1)), alg, dt=h, saveat=ts, dense=dense)
        assert sol.retcode == ps.ReturnCode.Success
        assert sol.stats.naccept == n, "a fixed-step solve must take exactly (t1 - t0)/dt steps"
        return sol.u.numpy(), (sol if dense else None)
    res = integrate(fixed_step_stepper(alg), flat_rhs(problem), torch.tensor(t0),
                    torch.tensor(t1), problem.u0_tensor()[None], ts=ts, dt=h, dense=dense)
    assert int(res.status[0]) == ps.ReturnCode.Success
    assert res.stats.naccept == n
    dense_fn = None
    if dense:
        def dense_fn(tq, _d=res.dense):
            return _d.evaluate(tq)[:, 0]
    return res.us[:, 0].numpy(), dense_fn


# the explicit step has two forms of the same sums: term by term while autograd records it,
# matrix products over a stage buffer without autograd (see pysciml.native.explicit)
STEP_FORMS = pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "no_grad"])


@STEP_FORMS
@pytest.mark.parametrize("alg", ALGS, ids=IDS)
def test_order_of_the_solution_A3(alg, recorded):
    """Global error at 8 times in (0, 10] on DETEST A3 (y' = y cos t): slope = order ± 0.25."""
    ts = torch.linspace(0, T_A3, 9)[1:]
    ref = A3.reference(ts.numpy())
    ns = STEPS_A3[alg.tableau.order]
    with torch.set_grad_enabled(recorded):
        errs = [np.abs(solve_fixed(alg, A3, T_A3, n, ts)[0] - ref).max() for n in ns]
    hs = [T_A3 / n for n in ns]
    assert min(errs) > 1e-13, "round-off would flatten the slope: use larger steps"
    assert all(e1 < e0 for e0, e1 in zip(errs, errs[1:], strict=False)), errs
    assert slope(hs, errs) == pytest.approx(alg.tableau.order, abs=SLOPE_TOL), errs


@pytest.mark.parametrize("alg", ALGS, ids=IDS)
def test_order_of_the_solution_nonlinear(alg):
    """Global error at 8 times on the nonlinear y' = -2 t y^2 (y = 1/(1 + t^2)): at least the
    order (Vern7's h^7 coefficient happens to be small here, so its slope is higher)."""
    T = RICCATI.tspan[1]
    ts = torch.linspace(0, T, 9)[1:]
    ref = RICCATI.reference(ts.numpy())
    ns = STEPS_RICCATI[alg.tableau.order]
    errs = [np.abs(solve_fixed(alg, RICCATI, T, n, ts)[0] - ref).max() for n in ns]
    hs = [T / n for n in ns]
    assert min(errs) > 1e-13
    assert slope(hs, errs) >= alg.tableau.order - SLOPE_TOL, errs


@pytest.mark.parametrize("alg", ALGS, ids=IDS)
def test_order_of_the_dense_output_global(alg):
    """Dense output at off-grid times (theta = 0.37 in every step) of a fixed-step solve: the
    error is the global error plus the interpolant's local error, slope min(p, q + 1) ± 0.25 for
    order p and interpolant order q."""
    tab = alg.tableau
    expected = min(tab.order, tab.interp_order + 1)
    ns = STEPS_A3[tab.order]
    errs, hs = [], []
    for n in ns:
        h = T_A3 / n
        _, dense = solve_fixed(alg, A3, T_A3, n, torch.tensor([T_A3]), dense=True)
        tq = torch.tensor((np.arange(n) + 0.37) * h)
        values = dense(tq).numpy()
        errs.append(np.abs(values - A3.reference(tq.numpy())).max())
        hs.append(h)
    assert min(errs) > 1e-13
    assert slope(hs, errs) == pytest.approx(expected, abs=SLOPE_TOL), errs


LOCAL_H = {"Euler": [0.02, 0.01, 0.005, 0.0025], "RK4": [0.4, 0.2, 0.1, 0.05],
           "Tsit5": [0.2, 0.1, 0.05, 0.025], "DP5": [0.2, 0.1, 0.05, 0.025],
           "Vern7": [0.8, 0.4, 0.3, 0.2]}


def one_step(stepper, problem: Problem, t0: float, h: float):
    """One trial step of ``stepper`` from the exact solution at ``t0``: the StepResult."""
    rhs = flat_rhs(problem)
    u = torch.tensor(problem.reference([t0]))
    t = torch.tensor([t0])
    cache = stepper.init(rhs, t, u, rhs(t, u))
    return stepper.step(rhs, t, u, torch.tensor([h]), cache)


def one_step_solve(alg, problem: Problem, t0: float, h: float) -> ps.ODESolution:
    """A solve of exactly one step h from the exact value at t0, with dense output. Adaptive
    methods get dt = dtmax = h and tolerances loose enough to accept it."""
    prob = problem.ode_problem(u0=torch.tensor(problem.reference([t0])[0]),
                               tspan=(t0, t0 + h))
    kw = dict(rtol=1e6, atol=1e6, dtmax=h) if alg.adaptive else {}
    sol = ps.solve(prob, alg, dt=h, dense=True, **kw)
    assert sol.retcode == ps.ReturnCode.Success and sol.stats.naccept == 1
    return sol


@pytest.mark.parametrize("alg", ALGS, ids=IDS)
def test_order_of_the_interpolant_local(alg):
    """One step from the exact value: the dense output's error at theta in {0.2, 0.5, 0.8} is
    O(h^(q+1)) for interpolant order q; at theta = 1 it is the step's result."""
    q = alg.tableau.interp_order
    thetas = np.array([0.2, 0.5, 0.8])
    t0 = 0.7
    errs, hs = [], LOCAL_H[alg.name]
    for h in hs:
        sol = one_step_solve(alg, A3, t0, h)
        tq = torch.tensor(t0 + thetas * h)
        values = sol(tq).numpy()
        errs.append(np.abs(values - A3.reference(tq.numpy())).max())
        torch.testing.assert_close(sol(t0 + h), sol.u[-1], rtol=1e-13, atol=1e-14)
    assert min(errs) > 1e-14
    assert slope(hs, errs) >= q + 1 - SLOPE_TOL, errs


@STEP_FORMS
@pytest.mark.parametrize("alg", ADAPTIVE, ids=[a.name for a in ADAPTIVE])
def test_order_of_the_error_estimate(alg, recorded):
    """The embedded error estimate of one step from the exact value is O(h^(q+1)) for the
    embedded order q, and it estimates the true local error of the embedded method: the true
    error of the step itself is O(h^(p+1)), much smaller."""
    stepper = alg.stepper()
    t0 = 0.7
    hs = {"Tsit5": [0.4, 0.2, 0.1, 0.05], "DP5": [0.4, 0.2, 0.1, 0.05],
          "Vern7": [0.8, 0.4, 0.3, 0.2]}[alg.name]
    est, true = [], []
    for h in hs:
        with torch.set_grad_enabled(recorded):
            result = one_step(stepper, A3, t0, h)
        est.append(float(result.err.abs().max()))
        true.append(np.abs(result.u_new.numpy() - A3.reference([t0 + h])).max())
    q = alg.tableau.error_order
    assert slope(hs, est) == pytest.approx(q + 1, abs=0.35), est
    assert all(t < e for t, e in zip(true, est, strict=True)), (true, est)


@pytest.mark.parametrize("alg", ADAPTIVE, ids=[a.name for a in ADAPTIVE])
def test_solve_with_dtmax_and_loose_tolerances_is_the_fixed_step_method(alg):
    """Through the public API, an adaptive method with dt = dtmax = h and tolerances so loose
    that every step is accepted takes exactly the fixed steps h: the same values as the
    fixed-step version of its tableau."""
    n = 64
    h = T_A3 / n
    ts = torch.linspace(0, T_A3, 9)[1:]
    fixed, _ = solve_fixed(alg, A3, T_A3, n, ts)
    sol = ps.solve(A3.ode_problem(tspan=(0.0, T_A3)), alg, dt=h, dtmax=h, rtol=1e6, atol=1e6,
                   saveat=ts)
    assert sol.retcode == ps.ReturnCode.Success
    assert sol.stats.naccept == n and sol.stats.nreject == 0
    np.testing.assert_allclose(sol.u.numpy(), fixed, rtol=1e-12, atol=1e-13)
