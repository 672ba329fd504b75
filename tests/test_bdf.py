"""The variable-order BDF stepper (``pysciml.native.bdf.BDF``): coefficients, the change of step
size, accuracy on the stiff test set (Mazzia & Magherini's published references), agreement
with SciPy's Radau, convergence order of each fixed order, batching, dense output, order
limits and the Newton-failure path.

Digits are significant correct digits, ``scd = -log10(max_i |y_i - ref_i| / |ref_i|)``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
import pysciml.native.bdf as bdf_module
from pysciml.algorithms import AbstractAlgorithm
from pysciml.native.bdf import BDF
from pysciml.native.bdf_coefficients import (
    MAX_ORDER,
    NDF,
    NDF_KAPPA,
    PLAIN,
    BDFCoefficients,
    change_matrix,
)
from pysciml.native.integrate import integrate
from pysciml.native.newton import NewtonResult
from pysciml.native.stepper import AbstractStepper, CountedRHS
from pysciml.solution import ReturnCode

F64 = torch.float64
TESTSET = json.load(open(os.path.join(os.path.dirname(__file__), "data", "ivp_testset.json")))


class _BDFAlg(AbstractAlgorithm):
    """A local descriptor, so that ``ps.solve`` can run the stepper."""

    adaptive = True

    def __init__(self, **options):
        self.options = options

    def stepper(self) -> BDF:
        return BDF(**self.options)


# ---------------------------------------------------------------- problems (leading dims allowed)

def rober(t, u, p=None):
    k1, k2, k3 = (0.04, 3e7, 1e4) if p is None else p.unbind(-1)
    y1, y2, y3 = u.unbind(-1)
    return torch.stack([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2 ** 2,
                        k2 * y2 ** 2], -1)


def rober_jac(t, u):
    y1, y2, y3 = u.unbind(-1)
    z = torch.zeros_like(y1)
    return torch.stack([torch.stack([z - 0.04, 1e4 * y3, 1e4 * y2], -1),
                        torch.stack([z + 0.04, -1e4 * y3 - 6e7 * y2, -1e4 * y2], -1),
                        torch.stack([z, 6e7 * y2, z], -1)], -2)


def rober_np(t, y):
    y1, y2, y3 = y
    return [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2,
            3e7 * y2 ** 2]


def hires(t, u):
    y = u.unbind(-1)
    return torch.stack([
        -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
        1.71 * y[0] - 8.75 * y[1],
        -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
        8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
        -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
        -280 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
        280 * y[5] * y[7] - 1.81 * y[6],
        -280 * y[5] * y[7] + 1.81 * y[6]], -1)


def vdpol(t, u):
    y1, y2 = u.unbind(-1)
    return torch.stack([y2, ((1 - y1 ** 2) * y2 - y1) / 1e-6], -1)


# name -> (rhs, atol / rtol)
TESTSET_RHS = {"ROBER": (rober, 1e-4), "HIRES": (hires, 1e-4), "VDPOL": (vdpol, 1.0)}


@functools.cache
def _testset_run(name: str, rtol: float, kappa: tuple = (0.0,) * 6):
    """Solve a test-set problem to its end time: ``(scd, stats, wall seconds)``."""
    fn, atol_factor = TESTSET_RHS[name]
    spec = TESTSET["problems"][name]
    u0 = torch.tensor(spec["y0"], dtype=F64)[None]
    t1 = torch.tensor(float(spec["t_end"]), dtype=F64)
    start = time.perf_counter()
    r = integrate(BDF(kappa=kappa), fn, torch.tensor(0.0, dtype=F64), t1, u0, ts=t1[None],
                  rtol=rtol, atol=rtol * atol_factor)
    wall = time.perf_counter() - start
    assert int(r.status[0]) == ReturnCode.Success
    ref = np.array(spec["reference"])
    y = r.us[-1, 0].numpy()
    return float(-np.log10(np.max(np.abs(y - ref) / np.abs(ref)))), r.stats, wall


# ---------------------------------------------------------------- coefficients and change_D

def test_coefficients():
    """Plain BDF: alpha_k = sum 1/j, C_k = 1/(k+1); the NDF's alpha and C are SciPy's."""
    for k in range(1, MAX_ORDER + 1):
        assert PLAIN.alpha[k] == pytest.approx(sum(1 / j for j in range(1, k + 1)), abs=1e-15)
        assert PLAIN.error_const[k] == pytest.approx(1 / (k + 1), abs=1e-15)
    kappa = np.array(NDF_KAPPA)
    gamma = np.hstack((0, np.cumsum(1 / np.arange(1, MAX_ORDER + 1))))
    np.testing.assert_allclose(NDF.alpha, (1 - kappa) * gamma, atol=1e-15)
    np.testing.assert_allclose(NDF.error_const[: MAX_ORDER + 1],
                               kappa * gamma + 1 / np.arange(1, MAX_ORDER + 2), atol=1e-15)
    with pytest.raises(ValueError, match="kappa"):
        BDFCoefficients((0.0, 0.1))
    with pytest.raises(ValueError, match="max_order"):
        BDF(max_order=6)


def test_bdf2_coefficients_from_the_difference_form():
    """At constant step, order 2 is y_{n+1} = 4/3 y_n - 1/3 y_{n-1} + 2/3 h f_{n+1}."""
    tab = PLAIN.tensors(F64, torch.device("cpu"))
    # D = (y_n, y_n - y_{n-1}, ...): psi = predictor - sum Gamma_j D_j / alpha_2
    psi_weights = tab.predict[2, 1, :2]
    np.testing.assert_allclose(psi_weights.numpy(), [1.0, 1.0 / 3.0])  # y_n + (y_n - y_{n-1})/3
    assert 1 / PLAIN.alpha[2] == pytest.approx(2 / 3)


@pytest.mark.parametrize("order", range(1, MAX_ORDER + 1))
def test_change_D_matches_scipy(order):
    """The batched change of spacing equals SciPy's change_D per member; factor 1 is exact."""
    torch.manual_seed(order)
    tab = PLAIN.tensors(F64, torch.device("cpu"))
    D = torch.randn(3, MAX_ORDER + 3, 4, dtype=F64)
    orders = torch.tensor([order, max(order - 1, 1), order])
    factors = torch.tensor([0.3, 2.5, 1.0], dtype=F64)
    out = bdf_module._change_D(tab, D, orders, factors)
    for b in range(3):
        k, rho = int(orders[b]), float(factors[b])
        expected = D[b].numpy().copy()
        RU = change_matrix(k, rho) @ change_matrix(k, 1.0)
        expected[: k + 1] = RU.T @ expected[: k + 1]
        np.testing.assert_allclose(out[b].numpy(), expected, rtol=1e-13, atol=1e-13)
    assert torch.equal(out[2], D[2])


def test_change_D_reexpresses_the_same_polynomial():
    """Differences of a degree-k polynomial at spacing h, rescaled by rho, are its differences at
    spacing rho h."""
    tab = PLAIN.tensors(F64, torch.device("cpu"))
    coefs = np.array([0.3, -1.0, 0.5, 2.0, -0.7, 0.1])

    def diffs(h, k):
        ys = np.polyval(coefs[-(k + 1):], -h * np.arange(k + 1))
        rows, d = [ys[0]], ys
        for _ in range(k):
            d = d[:-1] - d[1:]
            rows.append(d[0])
        return np.array(rows)

    for k in range(1, MAX_ORDER + 1):
        D = torch.zeros(1, MAX_ORDER + 3, 1, dtype=F64)
        D[0, : k + 1, 0] = torch.tensor(diffs(0.1, k))
        out = bdf_module._change_D(tab, D, torch.tensor([k]), torch.tensor([0.37], dtype=F64))
        np.testing.assert_allclose(out[0, : k + 1, 0].numpy(), diffs(0.037, k), rtol=1e-10,
                                   atol=1e-13)


# ---------------------------------------------------------------- the step itself

def test_stopped_members_come_back_unchanged():
    """Members with h = 0 return u itself and finite errors."""
    u = torch.tensor([[1.0, 0.0, 0.0], [0.9, 1e-5, 0.1]], dtype=F64)
    t = torch.zeros(2, dtype=F64)
    f = CountedRHS(lambda t, y: rober(t, y), rtol=1e-6, atol=1e-10)
    stepper = BDF()
    cache = stepper.init(f, t, u, f(t, u))
    r = stepper.step(f, t, u, torch.tensor([1e-4, 0.0], dtype=F64), cache)
    assert torch.equal(r.u_new[1], u[1])
    assert torch.isfinite(r.u_new).all() and torch.isfinite(r.err).all()
    assert not bool(r.failed.any())
    merged = stepper.merge(cache, r.cache, torch.tensor([True, False]))
    assert torch.equal(merged.D[1], cache.D[1]) and merged.h_D[0] == 1e-4


def test_interpolant_endpoints():
    """The dense output is u_n at theta = 0 and u_{n+1} at theta = 1."""
    u = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    t = torch.zeros(1, dtype=F64)
    f = CountedRHS(lambda t, y: rober(t, y), rtol=1e-6, atol=1e-10)
    stepper = BDF()
    cache = stepper.init(f, t, u, f(t, u))
    h = torch.tensor([1e-5], dtype=F64)
    for _ in range(6):  # a few steps so that the order and history are non-trivial
        r = stepper.step(f, t, u, h, cache)
        stages = stepper.dense_stages(f, t, u, h, r)
        np.testing.assert_allclose(stepper.interpolate(u, h, stages, torch.zeros(1)), u,
                                   rtol=1e-14, atol=1e-20)
        assert torch.equal(stepper.interpolate(u, h, stages, torch.ones(1)), r.u_new)
        cache = stepper.merge(cache, r.cache, torch.tensor([True]))
        t, u, h = t + h, r.u_new, r.h_next


# ---------------------------------------------------------------- accuracy on the test set

def test_rober_published_reference():
    """ROBER to t = 1e11 (atol = 1e-4 rtol). BDF's global error here is bounded by the absolute
    tolerance on y1 ~ 2e-8: about 3.8 digits at rtol 1e-8 (SciPy's BDF: 4.2, LSODA: 4.2), 5.4
    at rtol 1e-10 (see the slow test)."""
    scd, stats, _ = _testset_run("ROBER", 1e-8)
    assert scd >= 3.5, scd
    assert stats.nnonlinfail == 0 and stats.njac < stats.naccept / 10


@pytest.mark.slow
def test_rober_published_reference_tight():
    scd, _, _ = _testset_run("ROBER", 1e-10)
    assert scd >= 5.0, scd


def test_hires_published_reference():
    scd, _, _ = _testset_run("HIRES", 1e-8)
    assert scd >= 5.0, scd


def test_vdpol_published_reference():
    """VDPOL (eps = 1e-6, atol = rtol): 4.5 digits at rtol 1e-6 (6.5 at 1e-8, slow test)."""
    scd, _, _ = _testset_run("VDPOL", 1e-6)
    assert scd >= 4.0, scd


@pytest.mark.slow
def test_vdpol_published_reference_tight():
    scd, _, _ = _testset_run("VDPOL", 1e-8)
    assert scd >= 5.0, scd


def test_work_precision():
    """Tightening rtol from 1e-4 to 1e-8 gains at least two digits, for at most ~8x the steps
    (an order <= 5 method: steps grow like rtol^(-1/(k+1)))."""
    scd_loose, stats_loose, _ = _testset_run("HIRES", 1e-4)
    scd_tight, stats_tight, _ = _testset_run("HIRES", 1e-8)
    assert scd_tight - scd_loose >= 2.0
    assert stats_tight.naccept <= 8 * stats_loose.naccept


def test_ndf_option():
    """The NDF (kappa of ode15s) is as accurate as the BDF on HIRES."""
    scd, _, _ = _testset_run("HIRES", 1e-6, NDF_KAPPA)
    assert scd >= 4.0, scd


# ---------------------------------------------------------------- against SciPy's Radau

LOGSPACED = tuple(np.logspace(-5, 5, 41).tolist())
OFFGRID = tuple(np.logspace(-4.3, 4.7, 23).tolist())


@functools.cache
def _rober_radau() -> dict[float, np.ndarray]:
    """SciPy's Radau at rtol 1e-12 on [0, 1e5], at the save and off-grid times."""
    def jac(t, y):
        return np.array([[-0.04, 1e4 * y[2], 1e4 * y[1]],
                         [0.04, -1e4 * y[2] - 6e7 * y[1], -1e4 * y[1]],
                         [0.0, 6e7 * y[1], 0.0]])
    times = np.array(sorted(set(LOGSPACED) | set(OFFGRID)))
    sol = solve_ivp(rober_np, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", rtol=1e-12,
                    atol=1e-20, t_eval=times, jac=jac)
    return dict(zip(times.tolist(), sol.y.T, strict=True))


def rober_radau(ts) -> np.ndarray:
    ref = _rober_radau()
    return np.stack([ref[t] for t in ts])


@functools.cache
def _rober_1e5():
    """ROBER on [0, 1e5] through ``ps.solve`` at rtol 1e-8, atol 1e-12, with dense output."""
    prob = ps.ODEProblem(rober, torch.tensor([1.0, 0.0, 0.0], dtype=F64), (0.0, 1e5))
    return ps.solve(prob, _BDFAlg(), saveat=torch.tensor(LOGSPACED, dtype=F64), rtol=1e-8,
                    atol=1e-12, dense=True)


def test_rober_saveat_against_radau():
    """ROBER on [0, 1e5] at 41 log-spaced save times (interpolated): within 50 tolerances,
    |y - ref| <= 50 (rtol |ref| + atol) (measured: 32; SciPy's BDF: 14)."""
    ref = rober_radau(LOGSPACED)
    sol = _rober_1e5()
    assert sol.successful
    y = sol.u.numpy()
    ratio = np.abs(y - ref) / (1e-8 * np.abs(ref) + 1e-12)
    assert ratio.max() <= 50, ratio.max(0)
    assert (np.abs(y[:, 0] - ref[:, 0]) / ref[:, 0]).max() < 2e-6  # SciPy's BDF: 1.4e-7


def test_dense_output_against_radau():
    """The dense output at off-grid times matches Radau as well, and equals the saved values
    at the save times."""
    ref = rober_radau(OFFGRID)
    sol = _rober_1e5()
    y = sol(torch.tensor(OFFGRID, dtype=F64)).numpy()
    ratio = np.abs(y - ref) / (1e-8 * np.abs(ref) + 1e-12)
    assert ratio.max() <= 50, ratio.max(0)
    np.testing.assert_allclose(sol(sol.t).numpy(), sol.u.numpy(), rtol=1e-12, atol=1e-20)


# ---------------------------------------------------------------- convergence order

def _linear_rhs(t, u):
    return torch.stack([-2 * (u[..., 0] - torch.sin(t)) + torch.cos(t), -u[..., 2], u[..., 1]],
                       -1)


def _linear_exact(t):
    t = torch.as_tensor(t, dtype=F64)
    return torch.stack([torch.sin(t) + torch.exp(-2 * t), torch.cos(t), torch.sin(t)], -1)


class _FixedStepOrder(AbstractStepper):
    """BDF of one order at a fixed step from an exact history (no start-up phase): every step
    accepted, the order and step size kept."""

    order = 1
    error_order = 1
    adaptive = True

    def __init__(self, k: int, h: float):
        self.bdf, self.k, self.h = BDF(max_order=k), k, h

    def init(self, f, t, u, f0):
        cache = self.bdf.init(f, t, u, f0)
        ys = _linear_exact(t[0] - self.h * torch.arange(self.k + 2, dtype=F64))
        rows, diff = [ys[0]], ys
        for _ in range(self.k + 1):
            diff = diff[:-1] - diff[1:]
            rows.append(diff[0])
        D = cache.D.clone()
        D[:, : self.k + 2] = torch.stack(rows)[None]
        B = u.shape[0]
        return cache._replace(D=D, order=torch.full((B,), self.k),
                              h_D=torch.full((B,), self.h, dtype=F64))

    def step(self, f, t, u, h, cache):
        r = self.bdf.step(f, t, u, h, cache)
        assert not bool(r.failed.any())
        new = r.cache._replace(n_equal=torch.zeros_like(r.cache.n_equal))
        return r._replace(err=torch.zeros_like(r.err), h_next=torch.full_like(h, self.h),
                          cache=new)

    def merge(self, cache, new, accept):
        return self.bdf.merge(cache, new, accept)

    def interpolate(self, u, h, stages, theta):
        return self.bdf.interpolate(u, h, stages, theta)


@pytest.mark.parametrize("k", range(1, MAX_ORDER + 1))
def test_fixed_order_convergence(k):
    """BDF-k at a fixed step on a smooth linear problem: observed order k +- 0.3 at the end,
    and the dense output (at mid-steps) converges with order >= k - 0.3."""
    T = 1.0
    hs = [0.05, 0.025, 0.0125]
    end_errors, dense_errors = [], []
    for h in hs:
        n = round(T / h)
        mids = torch.tensor([(i + 0.5) * h for i in range(n // 2, n)], dtype=F64)
        ts = torch.cat([mids, torch.tensor([T], dtype=F64)])
        r = integrate(_FixedStepOrder(k, h), _linear_rhs, torch.tensor(0.0, dtype=F64),
                      torch.tensor(T, dtype=F64), _linear_exact(0.0)[None], ts=ts, rtol=1e-10,
                      atol=1e-10, dt=h, max_steps=2 * n)
        assert int(r.status[0]) == ReturnCode.Success
        assert r.stats.naccept == n
        err = (r.us[:, 0] - _linear_exact(ts)).abs().amax(-1)
        end_errors.append(float(err[-1]))
        dense_errors.append(float(err[:-1].max()))
    slopes = np.diff(np.log(end_errors)) / np.diff(np.log(hs))
    assert np.all(np.abs(slopes - k) <= 0.3), slopes
    dense_slopes = np.diff(np.log(dense_errors)) / np.diff(np.log(hs))
    assert np.all(dense_slopes >= k - 0.3), dense_slopes


# ---------------------------------------------------------------- batch, options, failures

RATES = torch.tensor([[0.04, 3e7, 1e4], [0.02, 1e7, 1e4], [0.08, 3e7, 3e3],
                      [0.04, 1e6, 3e4]], dtype=F64)


def test_batch_equals_members_alone():
    """Four ROBER members with different rates (each with its own order, history and steps)
    equal the members solved alone."""
    ts = torch.logspace(-4, 1.5, 12, dtype=F64)
    u0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    kw = dict(saveat=ts, rtol=1e-6, atol=1e-10)
    batch = ps.solve(ps.ODEProblem(rober, u0.expand(4, 3).clone(), (0.0, 40.0), RATES,
                                   batch_ndim=1), _BDFAlg(), **kw)
    assert batch.successful
    for b in range(4):
        alone = ps.solve(ps.ODEProblem(rober, u0, (0.0, 40.0), RATES[b]), _BDFAlg(), **kw)
        np.testing.assert_allclose(batch.u[:, b].numpy(), alone.u.numpy(), rtol=1e-10,
                                   atol=1e-22)


def _orders_spy(monkeypatch):
    seen = []
    merge = BDF.merge

    def spy(self, cache, new, accept):
        seen.append(int(torch.where(accept, new.order, 0).max()))
        return merge(self, cache, new, accept)

    monkeypatch.setattr(BDF, "merge", spy)
    return seen


@pytest.mark.parametrize("max_order", [2, 5])
def test_max_order_respected(monkeypatch, max_order):
    seen = _orders_spy(monkeypatch)
    u0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    r = integrate(BDF(max_order=max_order), rober, torch.tensor(0.0, dtype=F64),
                  torch.tensor(10.0, dtype=F64), u0, ts=torch.tensor([10.0], dtype=F64),
                  rtol=1e-6, atol=1e-10)
    assert int(r.status[0]) == ReturnCode.Success
    assert max(seen) == max_order  # reached, never exceeded


def test_user_jacobian_and_reuse():
    """With the problem's Jacobian the result is the same; Jacobians are reused over many
    steps."""
    u0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    args = (torch.tensor(0.0, dtype=F64), torch.tensor(1e3, dtype=F64), u0)
    kw = dict(ts=torch.tensor([1e3], dtype=F64), rtol=1e-6, atol=1e-10)
    auto = integrate(BDF(), rober, *args, **kw)
    user = integrate(BDF(), rober, *args, jac=rober_jac, **kw)
    np.testing.assert_allclose(user.us.numpy(), auto.us.numpy(), rtol=1e-6)
    assert 0 < user.stats.njac < user.stats.naccept / 5
    assert user.stats.nfactor < user.stats.naccept


def test_backward_in_time():
    """y' = -y from t = 1 back to t = 0: y(0) = e y(1)."""
    r = integrate(BDF(), lambda t, y: -y, torch.tensor(1.0, dtype=F64),
                  torch.tensor(0.0, dtype=F64), torch.ones(1, 1, dtype=F64),
                  ts=torch.tensor([0.5, 0.0], dtype=F64), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(r.us[:, 0, 0].numpy(), [math.exp(0.5), math.e], rtol=1e-6)


def test_tstop_with_jump_restarts_the_history():
    """y' = -y with u doubled at the stop t = 0.5 (the history restarts at order 1 there):
    y(1) = 2 e^{-1}; the tolerance may be a tensor of the state's shape."""

    def jump(index, hit, t, u):
        return torch.where(hit[:, None], 2 * u, u)

    r = integrate(BDF(), lambda t, y: -y, torch.tensor(0.0, dtype=F64),
                  torch.tensor(1.0, dtype=F64), torch.ones(2, 1, dtype=F64),
                  ts=torch.tensor([0.25, 1.0], dtype=F64), rtol=torch.tensor([1e-8]),
                  atol=1e-10, tstops=torch.tensor([0.5], dtype=F64), on_tstop=jump)
    assert (r.status == ReturnCode.Success).all()
    np.testing.assert_allclose(r.us[:, :, 0].numpy(),
                               [[math.exp(-0.25)] * 2, [2 * math.exp(-1.0)] * 2], rtol=1e-6)


def test_gradient_direct_backprop():
    """Gradients through the steps (DirectBackprop): d y(1)/d p for y' = -p y."""
    p = torch.tensor([3.0], dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(lambda t, u, p: -p * u, torch.ones(1, dtype=F64), (0.0, 1.0), p)
    sol = ps.solve(prob, _BDFAlg(), saveat=torch.tensor([1.0], dtype=F64), rtol=1e-9,
                   atol=1e-12)
    sol.u.sum().backward()
    assert p.grad.item() == pytest.approx(-math.exp(-3.0), rel=1e-5)


def test_newton_failure_ends_with_convergence_failure(monkeypatch):
    """A Newton iteration that never converges: the step shrinks until it cannot, and the
    member ends with ConvergenceFailure, promptly."""

    def never(f, t, guess, psi, hg, solve_w, scale, **kw):
        fy = f(t, guess)
        return NewtonResult(guess, fy, torch.zeros_like(hg, dtype=torch.bool),
                            torch.zeros_like(hg), 1)

    monkeypatch.setattr(bdf_module, "newton_solve", never)
    u0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    start = time.perf_counter()
    for dtmin in (1e-9, 0.0):
        r = integrate(BDF(), rober, torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64),
                      u0, ts=torch.tensor([1.0], dtype=F64), rtol=1e-6, atol=1e-10,
                      dtmin=dtmin)
        assert int(r.status[0]) == ReturnCode.ConvergenceFailure
        assert r.stats.nnonlinfail > 0 and r.stats.naccept == 0
    assert time.perf_counter() - start < 30


def test_nonfinite_rhs_ends_with_convergence_failure():
    """f is NaN beyond t = 0.5: Newton fails there, the step shrinks to the floor and the
    member stops near 0.5 with ConvergenceFailure (the values before it are kept)."""

    def f(t, y):
        return torch.where((t > 0.5)[..., None], float("nan"), -y)

    r = integrate(BDF(), f, torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64),
                  torch.ones(1, 1, dtype=F64), ts=torch.tensor([0.25, 1.0], dtype=F64),
                  rtol=1e-6, atol=1e-9)
    assert int(r.status[0]) == ReturnCode.ConvergenceFailure
    assert r.stats.nnonlinfail > 0
    assert float(r.t[0]) == pytest.approx(0.5, abs=1e-6)
    assert float(r.us[0, 0, 0]) == pytest.approx(math.exp(-0.25), rel=1e-4)
    assert torch.isnan(r.us[1]).all()
