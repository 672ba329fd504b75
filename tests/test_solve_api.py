"""The public ``solve`` interface: shapes, dense output, return codes, statistics, failures, and
the kinds of right-hand side and parameters it accepts."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from problems import (
    DECAY,
    FORCED,
    KEPLER,
    LOTKA_VOLTERRA,
    ROBERTSON,
    VAN_DER_POL_STIFF,
    lotka_volterra,
)

import pysciml as ps

ADAPTIVE = [ps.Tsit5(), ps.DP5(), ps.Vern7()]
IDS = [a.name for a in ADAPTIVE]


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("saveat, expected_t", [
    (None, [0.0, 2.0]),
    ([0.5, 1.0, 1.5], [0.5, 1.0, 1.5]),
    ([0.0], [0.0]),
    ([2.0], [2.0]),
    ([0, 1, 2], [0.0, 1.0, 2.0]),  # integers are times too
    (0.5, [0.0, 0.5, 1.0, 1.5, 2.0]),
    (0.75, [0.0, 0.75, 1.5, 2.0]),
    (5.0, [0.0, 2.0]),
])
def test_saveat_shapes(saveat, expected_t):
    """t has shape (S,), u (S, *state) for a state of shape (2,)."""
    saveat_arg = torch.tensor(saveat) if isinstance(saveat, list) and saveat and isinstance(
        saveat[0], float) else saveat
    sol = ps.solve(DECAY.ode_problem(), ps.Tsit5(), saveat=saveat_arg, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.t.numpy(), expected_t, rtol=0, atol=1e-14)
    assert sol.t.dtype == torch.float64
    assert sol.u.shape == (len(expected_t), 2)
    np.testing.assert_allclose(sol.u.numpy(), DECAY.reference(expected_t), rtol=1e-6)
    if saveat is not None and not isinstance(saveat, float) and saveat[0] == 0:
        assert torch.equal(sol.u[0], DECAY.u0_tensor()), "u at t0 is u0 exactly"


def test_matrix_state():
    """A state of shape (2, 3) (batch_ndim=0): f sees u of shape (2, 3) and a 0-d t."""
    A = torch.tensor([[-1.0, 0.5, 0.0], [0.2, -0.3, 0.1]])
    seen = []

    def f(t, u, p):
        seen.append((tuple(t.shape), tuple(u.shape), t.dtype))
        return A * u

    u0 = torch.ones(2, 3)
    sol = ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0)), ps.DP5(), saveat=torch.tensor([0.5, 1.0]),
                   rtol=1e-9, atol=1e-11)
    assert sol.u.shape == (2, 2, 3)
    assert set(seen) == {((), (2, 3), torch.float64)}
    torch.testing.assert_close(sol.u[-1], torch.exp(A), rtol=1e-7, atol=0)
    assert sol.status.shape == () and sol.retcode == ps.ReturnCode.Success


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_dense_call_shapes(alg):
    sol = ps.solve(KEPLER.ode_problem(tspan=(0.0, 3.0)), alg, rtol=1e-8, atol=1e-10)
    assert sol(1.0).shape == (4,)
    assert sol(torch.tensor(1.0)).shape == (4,)
    assert sol([0.5, 1.0]).shape == (2, 4)
    assert sol(torch.linspace(0, 3, 7)).shape == (7, 4)
    np.testing.assert_allclose(sol(torch.linspace(0, 3, 7)).numpy(),
                               KEPLER.reference(np.linspace(0, 3, 7)), atol=1e-6)
    with pytest.raises(ValueError, match="t"):
        sol(torch.zeros(2, 2))


def test_dense_output_only_when_asked():
    with_saveat = ps.solve(DECAY.ode_problem(), ps.Tsit5(), saveat=[1.0])
    with pytest.raises(ValueError, match="dense=True"):
        with_saveat(0.5)
    both = ps.solve(DECAY.ode_problem(), ps.Tsit5(), saveat=[1.0], dense=True, rtol=1e-8,
                    atol=1e-10)
    np.testing.assert_allclose(both(0.5).numpy(), DECAY.reference([0.5])[0], rtol=1e-6)
    off = ps.solve(DECAY.ode_problem(), ps.Tsit5(), dense=False)
    with pytest.raises(ValueError, match="dense"):
        off(0.5)


def test_dense_output_outside_the_span_is_nan():
    sol = ps.solve(DECAY.ode_problem(), ps.Tsit5())
    values = sol(torch.tensor([-1.0, 1.0, 3.0]))
    assert torch.isnan(values[0]).all() and torch.isnan(values[2]).all()
    assert torch.isfinite(values[1]).all()


# --------------------------------------------------------------------------------------------
# Return codes and statistics
# --------------------------------------------------------------------------------------------


def test_retcode_and_successful():
    sol = ps.solve(DECAY.ode_problem(), ps.Tsit5())
    assert sol.retcode is ps.ReturnCode.Success
    assert sol.successful and sol.retcode.successful
    assert int(sol.status) == ps.ReturnCode.Success
    assert "Success" in repr(sol)
    for code in ps.ReturnCode:
        assert isinstance(code.message, str) and code.message
    assert not ps.ReturnCode.MaxIters.successful


def test_batched_retcode_is_an_array():
    prob = ps.ODEProblem(lotka_volterra, torch.ones(3, 2), (0.0, 1.0),
                         torch.tensor(LOTKA_VOLTERRA.p).expand(3, 4), batch_ndim=1)
    sol = ps.solve(prob, ps.Tsit5())
    assert isinstance(sol.retcode, np.ndarray) and sol.retcode.shape == (3,)
    assert all(c is ps.ReturnCode.Success for c in sol.retcode)


@pytest.mark.parametrize("alg, stages, extra", [
    (ps.Tsit5(), 6, 0), (ps.DP5(), 6, 0),  # FSAL: s - 1 new evaluations per step
    (ps.Vern7(), 10, 6),  # 10 stages, and 6 lazy interpolation stages when interpolating
])
@pytest.mark.parametrize("rtol", [1e-4, 1e-9])
def test_stats_count_the_work(alg, stages, extra, rtol):
    """nf = stages × (accepted + rejected steps) + 2 (f(t0, u0) and the initial-step guess);
    with dense output every step also pays the interpolant's extra stages."""
    prob = KEPLER.ode_problem(tspan=(0.0, 7.0))
    sol = ps.solve(prob, alg, rtol=rtol, atol=rtol / 100, dense=True)
    s = sol.stats
    assert s.naccept + s.nreject == s.nsteps
    assert s.naccept > 0
    # the lazy stages are needed for accepted steps (computing them for rejected ones too is
    # allowed, only wasteful)
    lazy = s.nf - (stages * s.nsteps + 2)
    assert lazy % max(extra, 1) == 0
    assert extra * s.naccept <= lazy <= extra * s.nsteps
    assert s.njac == s.nfactor == s.nlinsolve == s.nnonlinfail == 0
    counted = []

    def f(t, u, p):
        counted.append(1)
        return KEPLER.f(t, u, p)

    sol2 = ps.solve(ps.ODEProblem(f, prob.u0, prob.tspan), alg, rtol=rtol, atol=rtol / 100,
                    dense=True)
    # solve may call f once more itself, to check its output before integrating
    assert len(counted) - sol2.stats.nf in (0, 1)
    assert sol2.stats == s


@pytest.mark.parametrize("alg, stages", [(ps.Euler(), 1), (ps.RK4(), 4)])
def test_fixed_step_counts(alg, stages):
    """dt = 0.3 on (0, 2): 7 steps, the last one shortened to end at t1 exactly."""
    sol = ps.solve(FORCED.ode_problem(tspan=(0.0, 2.0)), alg, dt=0.3)
    assert sol.stats.naccept == 7 and sol.stats.nreject == 0
    assert sol.stats.nf == stages * 7 + 1
    assert float(sol.t[-1]) == 2.0
    err = abs(float(sol.u[-1, 0]) - FORCED.reference([2.0])[0, 0])
    assert err < (0.05 if stages == 1 else 1e-4)


def test_first_step_dt_is_used():
    """For an adaptive method dt is the first step: a tiny dt costs extra steps early on."""
    free = ps.solve(DECAY.ode_problem(), ps.Tsit5(), rtol=1e-6)
    tiny = ps.solve(DECAY.ode_problem(), ps.Tsit5(), rtol=1e-6, dt=1e-8)
    assert tiny.stats.naccept > free.stats.naccept
    # no initial-step estimate: one evaluation of f fewer
    assert tiny.stats.nf == 6 * tiny.stats.nsteps + 1
    np.testing.assert_allclose(tiny.u[-1].numpy(), DECAY.reference([2.0])[0], rtol=1e-5)


def test_dtmax_bounds_the_step():
    sol = ps.solve(DECAY.ode_problem(), ps.Tsit5(), dtmax=0.05, rtol=1e-3)
    assert sol.stats.naccept >= 40
    assert ps.solve(DECAY.ode_problem(), ps.Tsit5(), rtol=1e-3).stats.naccept < 20


def test_max_iters_returns_the_partial_solution():
    ts = torch.linspace(0, 20, 11)
    with pytest.warns(RuntimeWarning, match="MaxIters"):
        sol = ps.solve(KEPLER.ode_problem(), ps.Tsit5(), saveat=ts, max_steps=50, rtol=1e-8,
                       atol=1e-10)
    assert sol.retcode is ps.ReturnCode.MaxIters and not sol.successful
    assert sol.stats.nsteps == 50
    t_end = float(sol.t_end)
    assert 0 < t_end < 20
    done = ts <= t_end
    assert done.sum() >= 2 and (~done).sum() >= 1
    assert torch.isnan(sol.u[~done]).all()
    np.testing.assert_allclose(sol.u[done].numpy(), KEPLER.reference(ts[done].numpy()),
                               atol=1e-6)


def test_throw_raises_with_the_solution():
    with pytest.raises(ps.SolveFailedError, match="MaxIters") as info:
        ps.solve(KEPLER.ode_problem(), ps.Tsit5(), max_steps=10, throw=True)
    assert isinstance(info.value, RuntimeError)
    sol = info.value.solution
    assert isinstance(sol, ps.ODESolution) and sol.retcode is ps.ReturnCode.MaxIters


def test_no_warning_on_success():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps.solve(DECAY.ode_problem(), ps.Tsit5(), throw=True)


@pytest.mark.parametrize("problem, alg, max_steps", [
    (VAN_DER_POL_STIFF, ps.Tsit5(), 2000),
    (ROBERTSON, ps.DP5(), 1000),
], ids=["vdp_1e6-Tsit5", "robertson-DP5"])
def test_explicit_method_on_a_stiff_problem_stops(problem, alg, max_steps):
    """An explicit method on a very stiff problem runs into its stability limit; with a step
    budget it ends MaxIters promptly instead of hanging (the first row is u0, later rows NaN)."""
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="MaxIters"):
        sol = ps.solve(problem.ode_problem(), alg, max_steps=max_steps)
    elapsed = time.perf_counter() - start
    assert sol.retcode is ps.ReturnCode.MaxIters
    assert sol.stats.nsteps == max_steps
    assert elapsed < 15.0
    assert torch.equal(sol.u[0], problem.u0_tensor())
    assert torch.isnan(sol.u[1]).all()
    assert float(sol.t_end) < problem.tspan[1]


def _square(t, u, p):
    return u ** 2


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_blow_up_fails(alg):
    """u' = u^2, u(0) = 1 blows up at t = 1: the solve fails (DtLessThanMin or Unstable), ends
    near t = 1, and is accurate before."""
    ts = torch.tensor([0.5, 0.9, 1.5, 2.0])
    with pytest.warns(RuntimeWarning):
        sol = ps.solve(ps.ODEProblem(_square, torch.tensor([1.0]), (0.0, 2.0)), alg, saveat=ts)
    assert sol.retcode in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable)
    assert float(sol.t_end) == pytest.approx(1.0, abs=1e-2)
    torch.testing.assert_close(sol.u[:2, 0], 1 / (1 - ts[:2]), rtol=1e-2, atol=0)
    assert torch.isnan(sol.u[2:]).all()


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_blow_up_stops_when_time_stops_advancing(alg):
    """At rtol 1e-8 the steps towards the singularity shrink below the resolution of t near 1
    (t + h == t). The solve must then stop with DtLessThanMin, not accept thousands of steps
    that do not advance t while u grows to overflow."""
    with pytest.warns(RuntimeWarning):
        sol = ps.solve(ps.ODEProblem(_square, torch.tensor([1.0]), (0.0, 2.0)), alg,
                       rtol=1e-8, atol=1e-10, max_steps=1500)
    assert sol.retcode is ps.ReturnCode.DtLessThanMin, (sol.retcode, sol.stats)


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_dtmin_is_a_bound_on_every_step(alg):
    """With dtmin = 1e-4, u' = u^2 must end DtLessThanMin once the step it needs is below 1e-4,
    i.e. well before the singularity at t = 1 (1 - t of order 1e-3), whether or not the
    shrinking steps are accepted."""
    with pytest.warns(RuntimeWarning):
        sol = ps.solve(ps.ODEProblem(_square, torch.tensor([1.0]), (0.0, 2.0)), alg,
                       rtol=1e-8, atol=1e-10, dtmin=1e-4, max_steps=1500)
    assert sol.retcode is ps.ReturnCode.DtLessThanMin, (sol.retcode, sol.stats)
    assert 1 - float(sol.t_end) > 1e-5


# --------------------------------------------------------------------------------------------
# Right-hand sides and parameters
# --------------------------------------------------------------------------------------------


class _MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.l1 = torch.nn.Linear(2, 16)
        self.l2 = torch.nn.Linear(16, 2)
        with torch.no_grad():
            for prm in self.parameters():
                prm.copy_(0.5 * torch.randn(prm.shape, generator=gen))

    def forward(self, t, u, p):
        return self.l2(torch.tanh(self.l1(u)))


def test_nn_module_rhs():
    """An nn.Module right-hand side gives the same solution as the same function written out,
    and its parameters get gradients."""
    mlp = _MLP()
    W1, b1, W2, b2 = (x.detach().clone() for x in (mlp.l1.weight, mlp.l1.bias, mlp.l2.weight,
                                                   mlp.l2.bias))

    def plain(t, u, p):
        return torch.tanh(u @ W1.T + b1) @ W2.T + b2

    u0 = torch.tensor([0.3, -0.2])
    ts = torch.linspace(0, 2, 5)
    sol = ps.solve(ps.ODEProblem(mlp, u0, (0.0, 2.0)), ps.Tsit5(), saveat=ts, rtol=1e-9,
                   atol=1e-11)
    ref = ps.solve(ps.ODEProblem(plain, u0, (0.0, 2.0)), ps.Tsit5(), saveat=ts, rtol=1e-9,
                   atol=1e-11)
    torch.testing.assert_close(sol.u, ref.u.detach(), rtol=1e-13, atol=1e-13)
    sol.u.sum().backward()
    assert all(prm.grad is not None and torch.isfinite(prm.grad).all()
               and prm.grad.abs().sum() > 0 for prm in mlp.parameters())


def test_pytree_parameters():
    """p as a dict of tensors gives the same solution as the same values in a tensor."""
    p_vec = torch.tensor(LOTKA_VOLTERRA.p)
    p_dict = dict(zip(["alpha", "beta", "delta", "gamma"], p_vec.unbind(), strict=True))
    ts = torch.linspace(0, 10, 6)
    a = ps.solve(LOTKA_VOLTERRA.ode_problem(), ps.Tsit5(), saveat=ts, rtol=1e-8, atol=1e-10)
    b = ps.solve(LOTKA_VOLTERRA.ode_problem(p=p_dict), ps.Tsit5(), saveat=ts, rtol=1e-8,
                 atol=1e-10)
    torch.testing.assert_close(a.u, b.u, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(a.u.numpy(), LOTKA_VOLTERRA.reference(ts.numpy()), atol=1e-6)


def test_parameters_in_a_nested_pytree_with_non_tensors():
    seen = []

    def f(t, u, p):
        seen.append(p["name"])
        return -p["rates"][0] * u + p["rates"][1] * p["scale"]

    p = {"rates": (torch.tensor(2.0), torch.tensor(1.0)), "scale": 3.0, "name": "x"}
    sol = ps.solve(ps.ODEProblem(f, torch.tensor([0.0]), (0.0, 1.0), p), ps.Tsit5(),
                   rtol=1e-10, atol=1e-12)
    assert set(seen) == {"x"}
    np.testing.assert_allclose(float(sol.u[-1, 0]), 1.5 * (1 - math.exp(-2.0)), rtol=1e-8)


def test_tspan_as_tensors_and_ints():
    ref = ps.solve(FORCED.ode_problem(), ps.Tsit5(), rtol=1e-8, atol=1e-10)
    as_tensors = ps.solve(FORCED.ode_problem(tspan=(torch.tensor(0.0), torch.tensor(5.0))),
                          ps.Tsit5(), rtol=1e-8, atol=1e-10)
    as_ints = ps.solve(FORCED.ode_problem(tspan=(0, 5)), ps.Tsit5(), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(as_tensors.u, ref.u, rtol=0, atol=0)
    torch.testing.assert_close(as_ints.u, ref.u, rtol=0, atol=0)


def test_u0_is_not_modified_and_autograd_follows_u0():
    u0 = torch.tensor([1.0, 2.0])
    copy = u0.clone()
    sol = ps.solve(DECAY.ode_problem(u0=u0), ps.Tsit5())
    assert torch.equal(u0, copy)
    assert not sol.u.requires_grad
    u0g = u0.clone().requires_grad_(True)
    assert ps.solve(DECAY.ode_problem(u0=u0g), ps.Tsit5()).u.requires_grad
    with torch.no_grad():
        assert not ps.solve(DECAY.ode_problem(u0=u0g), ps.Tsit5()).u.requires_grad


@pytest.mark.parametrize("controller", [None, ps.PIController(), ps.IController(),
                                        ps.PIController(pcoeff=0.3, icoeff=0.3),
                                        ps.PIController(beta1=0.1, beta2=0.05, safety=0.8)],
                         ids=["default", "PI", "I", "PI-gains", "PI-exponents"])
def test_controllers(controller):
    ts = torch.linspace(0, 20, 6)
    sol = ps.solve(KEPLER.ode_problem(), ps.Tsit5(), saveat=ts, rtol=1e-9, atol=1e-11,
                   controller=controller)
    assert sol.successful
    np.testing.assert_allclose(sol.u.numpy(), KEPLER.reference(ts.numpy()), atol=1e-6)


def test_remake():
    prob = DECAY.ode_problem()
    other = prob.remake(u0=torch.tensor([3.0, 4.0]))
    assert other.f is prob.f and other.tspan == prob.tspan and torch.equal(other.p, prob.p)
    sol = ps.solve(other, ps.Tsit5(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sol.u[-1].numpy(), np.array([3.0, 4.0]) * math.exp(-1.4),
                               rtol=1e-7)


def test_backend_native_and_auto_agree():
    a = ps.solve(DECAY.ode_problem(), ps.Tsit5(), backend="native")
    b = ps.solve(DECAY.ode_problem(), ps.Tsit5(), backend="auto")
    assert a.backend == b.backend == "native"
    torch.testing.assert_close(a.u, b.u, rtol=0, atol=0)


@settings(max_examples=15, deadline=None)
@given(rate=st.floats(-2.0, 2.0), t1=st.floats(0.1, 3.0).filter(lambda x: x != 0),
       backwards=st.booleans())
def test_linear_decay_any_rate_and_span(rate, t1, backwards):
    """u' = -rate u from u(t0) = 1 on (0, t1) or (t1, 0): u = exp(-rate (t - t0))."""
    t0, t_end = (t1, 0.0) if backwards else (0.0, t1)
    prob = ps.ODEProblem(lambda t, u, p: -p * u, torch.tensor([1.0]), (t0, t_end),
                         torch.tensor(rate))
    sol = ps.solve(prob, ps.Tsit5(), rtol=1e-9, atol=1e-12)
    assert sol.successful
    np.testing.assert_allclose(float(sol.u[-1, 0]), math.exp(-rate * (t_end - t0)), rtol=1e-7)


@pytest.mark.parametrize("controller, order, beta1, beta2", [
    (ps.PIController(), 4, 0.17, 0.04),  # Hairer's DOPRI5 rule at k = 5
    (ps.PIController(pcoeff=0.4, icoeff=1.0), 4, 0.28, 0.08),
    (ps.PIController(pcoeff=0.4, icoeff=1.0), 6, 1.4 / 7, 0.4 / 7),
    (ps.IController(), 4, 0.2, 0.0),
    (ps.PIController(beta1=0.1, beta2=0.05), 4, 0.1, 0.05),
])
def test_controller_step_rule(controller, order, beta1, beta2):
    """``adapt`` against the rule written out by hand: h s e^-b1 e_prev^b2 on acceptance
    (clipped to [f_min, f_max], the previous error floored at 1e-4), h min(1, s e^-b1) on
    rejection, and the new state e (floored) only where the step was accepted."""
    h = torch.tensor([0.1, 0.1, 0.2, 0.05], dtype=torch.float64)
    errn = torch.tensor([0.3, 1e-9, 2.5, 0.8], dtype=torch.float64)
    prev = torch.tensor([0.5, 1e-6, 0.9, 0.02], dtype=torch.float64)
    accept = errn <= 1
    h_next, state = controller.adapt(h, errn, prev, accept, order)
    s, fmin, fmax = controller.safety, controller.factor_min, controller.factor_max
    for i in range(4):
        e = max(float(errn[i]), 1e-10)
        if bool(accept[i]):
            factor = min(fmax, max(fmin, s * e ** -beta1 * float(prev[i]) ** beta2))
            assert float(state[i]) == pytest.approx(max(e, 1e-4), rel=1e-12)
        else:
            factor = min(1.0, max(fmin, s * e ** -beta1))
            assert float(state[i]) == float(prev[i])
        assert float(h_next[i]) == pytest.approx(float(h[i]) * factor, rel=1e-12)


def test_default_controllers_per_family():
    """The explicit Runge–Kutta methods use PI control with the integral gain of I control;
    the stiff families keep Hairer's DOPRI5 gains; solve uses the family's default."""
    for alg in (ps.Tsit5(), ps.DP5(), ps.Vern7()):
        assert (alg.default_controller.pcoeff, alg.default_controller.icoeff) == (0.4, 1.0)
    for alg in (ps.Rodas5P(), ps.KenCarp4(), ps.QNDF()):
        assert (alg.default_controller.pcoeff, alg.default_controller.icoeff) == (0.2, 0.65)
    ts = torch.linspace(0, 20, 6)
    kw = dict(saveat=ts, rtol=1e-6, atol=1e-8)
    default = ps.solve(KEPLER.ode_problem(), ps.Tsit5(), **kw)
    explicit = ps.solve(KEPLER.ode_problem(), ps.Tsit5(),
                        controller=ps.PIController(pcoeff=0.4, icoeff=1.0), **kw)
    hairer = ps.solve(KEPLER.ode_problem(), ps.Tsit5(), controller=ps.PIController(), **kw)
    assert default.stats == explicit.stats
    assert default.stats != hairer.stats
