"""Accuracy of the adaptive methods against independent references.

References are analytic solutions (DETEST A2, A3, A4, D3 Kepler and others, see ``problems.py``)
or SciPy's DOP853 at rtol 1e-13 (which never calls pysciml). The error, relative to the size of
the solution, must stay below 100 × rtol, and shrink as rtol tightens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import (
    A2,
    A3,
    A4,
    B1,
    DECAY,
    FORCED,
    KEPLER,
    LOTKA_VOLTERRA,
    NONSTIFF,
    OSCILLATOR,
    RICCATI,
    Problem,
    kepler_exact,
    numpy_rhs,
    scipy_reference,
)

import pysciml as ps

ADAPTIVE = [ps.Tsit5(), ps.DP5(), ps.Vern7()]
ADAPTIVE_IDS = [a.name for a in ADAPTIVE]
BOUND = 100.0  # error <= BOUND * rtol * (1 + max |u|)


def rel_error(values, ref) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.abs(values - ref).max() / (1 + np.abs(ref).max()))


def save_times(problem: Problem, n: int = 10) -> torch.Tensor:
    return torch.linspace(*problem.tspan, n + 1)[1:]


@pytest.mark.parametrize("problem", [p for p in NONSTIFF if p.exact is not None],
                         ids=lambda p: p.name)
def test_analytic_references_agree_with_scipy(problem):
    """The test references themselves: each closed form matches DOP853 at rtol 1e-13."""
    ts = np.linspace(*problem.tspan, 7)[1:]
    ref = scipy_reference(numpy_rhs(problem.f, problem.p), problem.u0, problem.tspan[0], ts)
    assert rel_error(problem.reference(ts), ref) < 1e-10


def test_kepler_is_detest_d3():
    """D3 initial values: y1 = 1 - e, y2 = y3 = 0, y4 = sqrt((1 + e)/(1 - e)) for e = 0.5; the
    orbit is periodic with period 2 pi."""
    e = KEPLER.meta["ecc"]
    np.testing.assert_allclose(KEPLER.u0, [1 - e, 0, 0, np.sqrt((1 + e) / (1 - e))], atol=1e-15)
    np.testing.assert_allclose(kepler_exact(2 * np.pi, e), kepler_exact(0.0, e), atol=1e-12)


ACCURACY_PROBLEMS = [DECAY, OSCILLATOR, FORCED, A2, A3, A4, RICCATI, KEPLER, B1, LOTKA_VOLTERRA]


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
@pytest.mark.parametrize("problem", ACCURACY_PROBLEMS, ids=lambda p: p.name)
def test_error_is_proportional_to_the_tolerance(problem, alg):
    """At rtol 1e-8 and 1e-10 (atol = rtol/100) the error at 10 save times is below
    100 × rtol, and tightening rtol by 100 reduces the error at least 10-fold."""
    ts = save_times(problem)
    ref = problem.reference(ts.numpy())
    errors = []
    for rtol in (1e-8, 1e-10):
        sol = ps.solve(problem.ode_problem(), alg, saveat=ts, rtol=rtol, atol=rtol / 100)
        assert sol.retcode == ps.ReturnCode.Success
        assert sol.u.shape == (ts.shape[0], problem.N)
        err = rel_error(sol.u.numpy(), ref)
        assert err < BOUND * rtol, f"rtol={rtol}: error {err:.2e}"
        errors.append(err)
    assert errors[1] < errors[0] / 10, errors


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
def test_saveat_at_arbitrary_times(alg):
    """Save times at irregular points (not step points, t0 and t1 included) on Kepler D3."""
    gen = torch.Generator().manual_seed(0)
    inner = torch.sort(torch.rand(23, generator=gen) * 20).values
    ts = torch.cat([torch.tensor([0.0]), inner, torch.tensor([20.0])])
    sol = ps.solve(KEPLER.ode_problem(), alg, saveat=ts, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sol.t, ts, rtol=0, atol=0)
    np.testing.assert_array_equal(sol.u[0].numpy(), np.asarray(KEPLER.u0))
    assert rel_error(sol.u.numpy(), KEPLER.reference(ts.numpy())) < BOUND * 1e-10


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
def test_saveat_a_spacing(alg):
    """saveat=0.3 on (0, 2): times 0, 0.3, …, 1.8 and the end 2.0; values accurate."""
    sol = ps.solve(FORCED.ode_problem(tspan=(0.0, 2.0)), alg, saveat=0.3, rtol=1e-9,
                   atol=1e-11)
    expected = np.append(np.arange(7) * 0.3, 2.0)
    np.testing.assert_allclose(sol.t.numpy(), expected, rtol=0, atol=1e-14)
    assert rel_error(sol.u.numpy(), FORCED.reference(expected)) < BOUND * 1e-9


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
@pytest.mark.parametrize("problem", [A3, KEPLER, LOTKA_VOLTERRA], ids=lambda p: p.name)
def test_dense_output(problem, alg):
    """sol(t) at 200 random times (the default dense output of a solve without saveat) has the
    accuracy of the solution at the steps: its error is at most twice the largest error at the
    step points, or 10 × rtol where those are more accurate still (an interpolant of the wrong
    order or with wrong weights is off by orders of magnitude more). sol(scalar) drops the
    time dimension. (The size of the error at the steps is the subject of
    ``test_error_is_proportional_to_the_tolerance``: on Kepler D3 over [0, 20], three orbits,
    it grows to ~120-150 × rtol with the explicit methods' default step control.)"""
    rtol = 1e-9
    sol = ps.solve(problem.ode_problem(), alg, rtol=rtol, atol=rtol / 100)
    gen = torch.Generator().manual_seed(1)
    t0, t1 = problem.tspan
    tq = torch.sort(t0 + (t1 - t0) * torch.rand(200, generator=gen)).values
    values = sol(tq)
    assert values.shape == (200, problem.N)
    starts, sizes = sol.dense.member_steps()
    starts = starts[sizes > 0]  # h = 0: a rejected trial, no step
    assert len(starts) > 10
    # at theta = 0 the interpolant is the step's own state
    at_steps = rel_error(sol(starts).numpy(), problem.reference(starts.numpy()))
    allowed = max(2 * at_steps, 10 * rtol)
    assert rel_error(values.numpy(), problem.reference(tq.numpy())) < allowed
    mid = 0.5 * (t0 + t1)
    assert sol(mid).shape == (problem.N,)
    assert rel_error(sol(mid).numpy(), problem.reference([mid])[0]) < allowed
    # the ends of the span are the saved values
    torch.testing.assert_close(sol(torch.tensor([t0, t1])), sol.u, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
@pytest.mark.parametrize("problem", [A3, KEPLER, FORCED], ids=lambda p: p.name)
def test_backwards_in_time(problem, alg):
    """tspan = (t1, t0) from the exact u(t1) reproduces the forward analytic solution at
    decreasing save times, and in the dense output: within 100 × rtol, or at most twice the
    error of SciPy's RK45 (Dormand–Prince 5(4)) solving the same backward problem at the same
    tolerances (Kepler D3 run backwards ends at perihelion after three orbits, where the phase
    error that builds up shows most: ~130 × rtol for RK45)."""
    from scipy.integrate import solve_ivp

    t0, t1 = problem.tspan
    u_end = torch.tensor(problem.reference([t1])[0])
    ts = torch.linspace(t1, t0, 11)
    rtol = 1e-10
    prob = problem.ode_problem(tspan=(t1, t0), u0=u_end)
    sol = ps.solve(prob, alg, saveat=ts, rtol=rtol, atol=rtol / 100, dense=True)
    assert sol.retcode == ps.ReturnCode.Success
    torch.testing.assert_close(sol.t, ts, rtol=0, atol=0)
    ref = problem.reference(ts.numpy())
    peer = solve_ivp(numpy_rhs(problem.f, problem.p), (t1, t0), u_end.numpy(), method="RK45",
                     t_eval=ts.numpy(), rtol=rtol, atol=rtol / 100)
    assert peer.status == 0
    # FORCED decays forwards, so it grows backwards: allow the amplification e^(t1 - t0)
    growth = np.exp(t1 - t0) if problem is FORCED else 1.0
    allowed = max(BOUND * rtol * growth, 2 * rel_error(peer.y.T, ref))
    assert rel_error(sol.u.numpy(), ref) < allowed
    tq = torch.linspace(t1, t0, 37)[1:-1]
    assert rel_error(sol(tq).numpy(), problem.reference(tq.numpy())) < allowed


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
@pytest.mark.parametrize("problem", [A3, KEPLER, LOTKA_VOLTERRA], ids=lambda p: p.name)
def test_float32(problem, alg):
    """float32 in, float32 out (t, u, dense output), and the error at rtol 1e-5 below 100 ×
    rtol (float32's epsilon is 1.2e-7). Kepler over one orbit: over D3's three orbits the
    global error at rtol 1e-5 exceeds 100 × rtol in float64 as well."""
    rtol = 1e-5
    tspan = (0.0, 2 * np.pi) if problem is KEPLER else problem.tspan
    prob = problem.ode_problem(dtype=torch.float32, tspan=tspan)
    ts = torch.linspace(*tspan, 11)[1:].to(torch.float32)
    sol = ps.solve(prob, alg, saveat=ts, rtol=rtol, atol=1e-7, dense=True)
    assert sol.retcode == ps.ReturnCode.Success
    assert sol.u.dtype == torch.float32 and sol.t.dtype == torch.float32
    assert sol(ts[3]).dtype == torch.float32
    assert rel_error(sol.u.numpy(), problem.reference(ts.numpy().astype(np.float64))) < (
        BOUND * rtol)


def _step_forcing(t, u, p):
    """u' = -u + H(t - 1.1): a jump of the forcing at t = 1.1."""
    return -u + (t[..., None] >= 1.1).to(u.dtype)


def _kink_forcing(t, u, p):
    """u' = -u + max(t - 1.1, 0): a kink of the forcing at t = 1.1."""
    return -u + torch.clamp(t[..., None] - 1.1, min=0)


@pytest.mark.parametrize("alg", ADAPTIVE, ids=ADAPTIVE_IDS)
def test_tstops_at_a_discontinuity(alg):
    """With tstops=[1.1] at a jump of f the solver steps to 1.1 exactly (f is evaluated there)
    and matches SciPy solving the two smooth halves separately."""
    calls = []

    def f(t, u, p):
        calls.append(t.detach().clone())
        return _step_forcing(t, u, p)

    left = scipy_reference(lambda t, y: -y, [1.0], 0.0, [1.1])[-1]
    ts = np.array([1.5, 2.0, 3.0])
    ref = scipy_reference(lambda t, y: 1.0 - y, left, 1.1, ts)
    prob = ps.ODEProblem(f, torch.tensor([1.0]), (0.0, 3.0))
    rtol = 1e-10
    sol = ps.solve(prob, alg, saveat=torch.tensor(ts), rtol=rtol, atol=1e-12, tstops=[1.1])
    assert sol.retcode == ps.ReturnCode.Success
    assert rel_error(sol.u.numpy(), ref) < BOUND * rtol
    stop = torch.tensor(1.1)
    assert any(bool((c == stop).any()) for c in calls), "f was never evaluated at the tstop"


def test_tstops_fixed_step_kink():
    """RK4 with dt = 0.25 across a kink of f at 1.1: stepping to the stop keeps fourth-order
    accuracy on both smooth pieces; straddling it (no tstops) loses it."""
    left = scipy_reference(lambda t, y: -y, [1.0], 0.0, [1.1])[-1]
    ts = np.array([2.0, 3.0])
    ref = scipy_reference(lambda t, y: -y + (t - 1.1), left, 1.1, ts)
    prob = ps.ODEProblem(_kink_forcing, torch.tensor([1.0]), (0.0, 3.0))
    with_stop = ps.solve(prob, ps.RK4(), dt=0.25, saveat=torch.tensor(ts), tstops=[1.1])
    without = ps.solve(prob, ps.RK4(), dt=0.25, saveat=torch.tensor(ts))
    assert with_stop.stats.naccept == without.stats.naccept + 1
    err_with = rel_error(with_stop.u.numpy(), ref)
    err_without = rel_error(without.u.numpy(), ref)
    assert err_with < 3e-5 and err_without > 5 * err_with, (err_with, err_without)


def test_tolerance_tensor_per_component():
    """atol as a tensor over the state: a component with a loose atol gets a larger error than
    with a tight one, and the tight component stays accurate."""
    ts = save_times(KEPLER)
    ref = KEPLER.reference(ts.numpy())
    loose = torch.tensor([1e-4, 1e-4, 1e-4, 1e-4])
    tight = torch.full((4,), 1e-12)
    e_loose = rel_error(ps.solve(KEPLER.ode_problem(), ps.Tsit5(), saveat=ts, rtol=1e-12,
                                 atol=loose).u.numpy(), ref)
    e_tight = rel_error(ps.solve(KEPLER.ode_problem(), ps.Tsit5(), saveat=ts, rtol=1e-10,
                                 atol=tight).u.numpy(), ref)
    assert e_tight < BOUND * 1e-10 < e_loose
