"""The Python half of the Julia runtime end to end, against a NumPy/SciPy stand-in for
PySciMLBridge.

The stand-in implements the bridge's entry points with the bridge's conventions (Julia layout:
column-major ``N × B`` states and ``N × B × S`` saved values; the torch callbacks called with
those arrays; the adjoint's reverse pass as a closure) using SciPy's DOP853 and its own
continuous adjoint (λ' = -Λᵀ∂f/∂u, μ' = -Λᵀ∂f/∂θ, jumps at the save times). So everything
``solve(..., backend="julia")`` does on the Python side — layout, callbacks, the autograd
Function and its gradients to ``u0``, ``p``, module parameters, ``t0`` and the save times,
return codes, dense output — is checked here against analytic solutions and the native
runtime, without Julia. Julia itself is exercised by tests/conformance and the bridge's
runtests.jl wherever it is installed."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.julia import JuliaFunction, entry_points, runtime


class StandInBridge:
    """PySciMLBridge's entry points in NumPy/SciPy (see the module docstring)."""

    def __init__(self, retcode: str = "Success"):
        self.retcode = retcode
        self.calls: list[str] = []

    def __getattribute__(self, name):
        if name in entry_points.ENTRY_POINTS:
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    def torch_rhs(self, f, vjp, jac):
        return SimpleNamespace(f=f, vjp=vjp, jac=jac)

    def julia_rhs(self, source, name):
        f, vjp = JULIA_EQUIVALENTS[(source, name)]
        return SimpleNamespace(f=f, vjp=vjp, jac=None)

    def hybrid_rhs(self, physics, network):
        def f(U, p, t):
            return np.asfortranarray(physics.f(U, p, t) + np.asarray(network.f(U, p, t)))

        def vjp(U, p, t, lam):
            (du1, dp1), (du2, dp2) = physics.vjp(U, p, t, lam), network.vjp(U, p, t, lam)
            return np.asfortranarray(du1 + np.asarray(du2)), dp1 + np.asarray(dp2)

        return SimpleNamespace(f=f, vjp=vjp, jac=None)

    def evaluate_rhs(self, rhs, u, p, t):
        return np.asfortranarray(rhs.f(np.asarray(u), np.asarray(p), t))

    @staticmethod
    def _fun(rhs, p, N, B):
        def fun(t, y):
            U = y.reshape((N, B), order="F")          # a column-major N × B array, as Julia's
            out = np.asarray(rhs.f(U, p, t))
            assert out.shape == (N, B) and out.flags.f_contiguous
            return out.reshape(-1, order="F")
        return fun

    def _solve(self, rhs, u0, p, tspan, options):
        U0 = np.asarray(u0)
        assert U0.flags.f_contiguous
        N, B = U0.shape
        sol = solve_ivp(self._fun(rhs, np.asarray(p), N, B), tuple(tspan),
                        U0.reshape(-1, order="F"), method="DOP853", dense_output=True,
                        rtol=options["rtol"], atol=options["atol"])
        return sol, N, B

    def _result(self, sol, N, B, ts):
        values = sol.sol(np.asarray(ts)).reshape(N, B, len(ts), order="F")
        values = np.asfortranarray(values)
        if self.retcode != "Success":
            values[:, :, 1:] = np.nan
        stats = SimpleNamespace(nf=int(sol.nfev), naccept=len(sol.t) - 1, nreject=0,
                                nsteps=len(sol.t) - 1, njac=0, nfactor=0, nlinsolve=0,
                                nnonlinfail=0)
        return SimpleNamespace(u=values, retcodes=[self.retcode] * B,
                               t_end=[float(sol.t[-1])] * B, stats=stats,
                               solutions=(sol.sol, N, B))

    def solve_forward(self, rhs, u0, p, tspan, ts, alg_name, alg_options, options):
        sol, N, B = self._solve(rhs, u0, p, tspan, options)
        return self._result(sol, N, B, ts)

    def solve_pullback(self, rhs, u0, p, tspan, ts, alg_name, alg_options, options,
                       sensealg_name, sensealg_options):
        sol, N, B = self._solve(rhs, u0, p, tspan, options)
        out = self._result(sol, N, B, ts)
        theta = np.asarray(p)
        P, NB = theta.size, N * B
        ts = np.asarray(ts)

        def adjoint(t, y):
            U = np.asfortranarray(sol.sol(t).reshape(N, B, order="F"))
            lam = np.asfortranarray(y[:NB].reshape(N, B, order="F"))
            du, dp = rhs.vjp(U, theta, t, lam)
            return -np.concatenate([np.asarray(du).reshape(-1, order="F"), np.asarray(dp)])

        def pullback(cot):
            G = np.asarray(cot)
            assert G.shape == (N, B, len(ts)) and G.flags.f_contiguous
            y = np.zeros(NB + P)
            t_now = float(tspan[1])
            for k in reversed(range(len(ts))):
                if ts[k] != t_now:
                    y = solve_ivp(adjoint, (t_now, ts[k]), y, method="DOP853", rtol=1e-11,
                                  atol=1e-13).y[:, -1]
                    t_now = float(ts[k])
                y[:NB] += G[:, :, k].reshape(-1, order="F")
            if t_now != float(tspan[0]):
                y = solve_ivp(adjoint, (t_now, float(tspan[0])), y, method="DOP853",
                              rtol=1e-11, atol=1e-13).y[:, -1]
            return np.asfortranarray(y[:NB].reshape(N, B, order="F")), y[NB:]

        out.pullback = pullback
        return out

    def apply_pullback(self, pullback, cotangent):
        return pullback(cotangent)

    def interpolate(self, solutions, ts):
        dense, N, B = solutions
        tq = np.asarray(ts)
        return np.asfortranarray(dense(tq).reshape(N, B, len(tq), order="F"))

    def supported_algorithms(self):
        return ["Tsit5"]


JULIA_DECAY = "decay(u, p, t) = -p[1] .* u"


def _decay_f(U, p, t):
    return np.asfortranarray(-p[0] * U)


def _decay_vjp(U, p, t, lam):
    dp = np.zeros_like(p)
    dp[0] = -np.sum(lam * U)
    return np.asfortranarray(-p[0] * lam), dp


JULIA_EQUIVALENTS = {(JULIA_DECAY, "decay"): (_decay_f, _decay_vjp)}
"""What the stand-in "compiles" a Julia source into: NumPy f and VJP on the N × B state."""


@pytest.fixture
def standin(monkeypatch):
    bridge = StandInBridge()
    monkeypatch.setattr(runtime, "_bridge", bridge)
    return bridge


def _decay(t, u, p):
    return -p[..., None] * u if p.ndim else -p * u


TIGHT = dict(rtol=1e-10, atol=1e-12)


def test_forward_values_status_and_stats(standin):
    u0 = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]])       # batch of 3, state 2
    k = torch.tensor(0.8)
    prob = ps.ODEProblem(_decay, u0, (0.0, 2.0), k, batch_ndim=1)
    ts = torch.linspace(0.0, 2.0, 5)
    sol = ps.solve(prob, ps.Tsit5(), saveat=ts, backend="julia", shared_step=True, **TIGHT)
    assert sol.backend == "julia" and sol.u.shape == (5, 3, 2)
    exact = u0[None] * torch.exp(-0.8 * ts)[:, None, None]
    assert torch.allclose(sol.u, exact, rtol=1e-9, atol=1e-12)
    assert sol.successful and sol.status.shape == (3,)
    assert sol.stats.nf > 0
    assert "solve_forward" in standin.calls and "solve_pullback" not in standin.calls


def test_gradients_reach_u0_p_t0_and_save_times(standin):
    u0 = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    k = torch.tensor(0.7, requires_grad=True)
    t0 = torch.tensor(0.1, requires_grad=True)
    ts = torch.tensor([0.1, 0.6, 1.3, 2.0], requires_grad=True)
    w = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]]) * torch.arange(1.0, 5.0)[:, None, None]
    prob = ps.ODEProblem(_decay, u0, (t0, 2.0), k, batch_ndim=1)
    sol = ps.solve(prob, ps.Tsit5(), saveat=ts, backend="julia", shared_step=True,
                   sensealg=ps.InterpolatingAdjoint(), **TIGHT)
    (w * sol.u).sum().backward()
    assert "solve_pullback" in standin.calls and "apply_pullback" in standin.calls

    s = ts.detach() - 0.1
    e = torch.exp(-0.7 * s)[:, None, None]
    u = u0.detach()[None] * e
    assert torch.allclose(u0.grad, (w * e).sum(0), rtol=1e-8)
    assert math.isclose(float(k.grad), float((w * -s[:, None, None] * u).sum()), rel_tol=1e-8)
    assert math.isclose(float(t0.grad), float((w * 0.7 * u).sum()), rel_tol=1e-8)
    assert torch.allclose(ts.grad, (w * -0.7 * u).sum((1, 2)), rtol=1e-8)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.lin = torch.nn.Linear(2, 2).double()

    def forward(self, t, u, p=None):
        return torch.tanh(self.lin(u)) - p["damping"] * u


@pytest.mark.parametrize("sensealg", [ps.InterpolatingAdjoint(), ps.QuadratureAdjoint(),
                                      ps.BacksolveAdjoint()])
def test_module_gradients_match_the_native_runtime(standin, sensealg):
    def run(backend, sensealg):
        net = Net()
        damping = torch.tensor(0.3, requires_grad=True)
        u0 = torch.tensor([[0.5, -1.0], [1.5, 0.2]], requires_grad=True)
        prob = ps.ODEProblem(net, u0, (0.0, 1.5), {"damping": damping}, batch_ndim=1)
        sol = ps.solve(prob, ps.Tsit5(), saveat=[0.5, 1.0, 1.5], backend=backend,
                       shared_step=True, sensealg=sensealg, **TIGHT)
        (sol.u ** 2).sum().backward()
        return [u0.grad, damping.grad, net.lin.weight.grad, net.lin.bias.grad]

    julia = run("julia", sensealg)
    native = run("native", ps.DirectBackprop())
    for a, b in zip(julia, native):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9), (a, b)


def test_dense_output_and_its_missing_gradient(standin):
    prob = ps.ODEProblem(_decay, torch.tensor([1.0, 2.0]), (0.0, 1.0), torch.tensor(1.2))
    sol = ps.solve(prob, ps.Tsit5(), backend="julia", **TIGHT)
    tq = torch.tensor([0.3, 0.9])
    assert torch.allclose(sol(tq), torch.tensor([1.0, 2.0]) * torch.exp(-1.2 * tq)[:, None],
                          rtol=1e-9)

    k = torch.tensor(1.2, requires_grad=True)
    prob = ps.ODEProblem(_decay, torch.tensor([1.0, 2.0]), (0.0, 1.0), k)
    sol = ps.solve(prob, ps.Tsit5(), backend="julia", sensealg=ps.InterpolatingAdjoint(),
                   **TIGHT)
    assert torch.allclose(sol(torch.tensor(0.5)), torch.tensor([1.0, 2.0]) * math.exp(-0.6),
                          rtol=1e-9)
    with pytest.raises(RuntimeError, match="dense output of a Julia solve carries no gradient"):
        sol(torch.tensor(0.5)).sum().backward()
    sol.u[-1].sum().backward()                       # the saved values do have gradients
    assert math.isclose(float(k.grad), -3.0 * math.exp(-1.2), rel_tol=1e-8)


def test_a_failed_julia_solve_is_reported_like_a_native_one(monkeypatch):
    monkeypatch.setattr(runtime, "_bridge", StandInBridge(retcode="MaxIters"))
    prob = ps.ODEProblem(_decay, torch.tensor([1.0]), (0.0, 1.0), torch.tensor(1.0))
    with pytest.warns(RuntimeWarning, match="MaxIters"):
        sol = ps.solve(prob, ps.Tsit5(), saveat=[0.0, 0.5, 1.0], backend="julia")
    assert sol.retcode is ps.ReturnCode.MaxIters
    assert torch.isnan(sol.u[1:]).all() and not torch.isnan(sol.u[0]).any()
    with pytest.raises(ps.SolveFailedError):
        ps.solve(prob, ps.Tsit5(), saveat=[0.0, 0.5, 1.0], backend="julia", throw=True)


def test_entry_point_calls_are_checked():
    bridge = StandInBridge()
    with pytest.raises(TypeError, match=r"apply_pullback: expected 2 arguments"):
        entry_points.call(bridge, "apply_pullback", None)
    with pytest.raises(ValueError, match="name: 'solve' is not an entry point"):
        entry_points.call(bridge, "solve", 1)
    assert entry_points.call(bridge, "supported_algorithms") == ["Tsit5"]


def test_julia_function_plumbing(standin):
    k = torch.tensor([0.9], requires_grad=True)
    u0 = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    prob = ps.ODEProblem(JuliaFunction(JULIA_DECAY, "decay"), u0, (0.0, 1.0), k, batch_ndim=1)
    sol = ps.solve(prob, ps.Tsit5(), saveat=[0.5, 1.0], sensealg=ps.InterpolatingAdjoint(),
                   **TIGHT)
    assert sol.backend == "julia"                    # auto: a Julia function needs Julia
    assert torch.allclose(sol.u[-1], u0 * math.exp(-0.9), rtol=1e-9)
    sol.u[-1].sum().backward()
    assert math.isclose(float(k.grad), -float(u0.sum()) * math.exp(-0.9), rel_tol=1e-8)
    assert standin.calls.count("julia_rhs") == 1      # compiled once per function
    with pytest.raises(RuntimeError, match="evaluated from Python carries no gradient"):
        prob.f(torch.zeros(2), u0, k).sum().backward()


def test_hybrid_plumbing_matches_the_torch_only_model(standin):
    class Network(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.lin = torch.nn.Linear(2, 2).double()

        def forward(self, t, u, p=None):
            return torch.tanh(self.lin(u))

    def run(use_julia):
        network = Network()
        k = torch.tensor([0.6], requires_grad=True)
        u0 = torch.tensor([0.4, -0.3])
        if use_julia:
            f = ps.julia.HybridFunction(JuliaFunction(JULIA_DECAY, "decay"), network)
        else:
            def f(t, u, p):
                return -p * u + network(t, u, p)
        sensealg = ps.InterpolatingAdjoint() if use_julia else ps.DirectBackprop()
        sol = ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0), k), ps.Tsit5(), saveat=[0.5, 1.0],
                       sensealg=sensealg, **TIGHT)
        assert sol.backend == ("julia" if use_julia else "native")
        (sol.u ** 2).sum().backward()
        return [sol.u.detach(), k.grad, network.lin.weight.grad, network.lin.bias.grad]

    for a, b in zip(run(True), run(False)):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-10), (a, b)


def test_float32_problem_keeps_its_dtype(standin):
    u0 = torch.tensor([1.0, 2.0], dtype=torch.float32, requires_grad=True)
    k = torch.tensor(0.5, dtype=torch.float32, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(_decay, u0, (0.0, 1.0), k), ps.Tsit5(), saveat=[1.0],
                   sensealg=ps.QuadratureAdjoint(), rtol=1e-8, atol=1e-10)
    assert sol.u.dtype == torch.float32
    sol.u.sum().backward()
    assert u0.grad.dtype == torch.float32 and k.grad.dtype == torch.float32
    assert math.isclose(float(k.grad), -3.0 * math.exp(-0.5), rel_tol=1e-6)
