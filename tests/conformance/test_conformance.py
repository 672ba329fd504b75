"""The conformance suite: the same problem / solver / sensealg cases on every runtime.

A runtime is correct when it passes them all. Each case compares with an independent
reference: a closed-form solution (and its derivative by autograd of the formula), or SciPy's
Radau at tight tolerance for the stiff problem. The Julia cases run wherever the Julia runtime
starts and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.julia import JuliaFunction


def solve(runtime: str, prob: ps.ODEProblem, alg, **kw) -> ps.ODESolution:
    """``ps.solve`` on ``runtime``. A batch of a torch right-hand side is one system on the
    Julia runtime, so batched cases use shared steps there."""
    if runtime == "julia" and prob.batch_ndim > 0:
        kw.setdefault("shared_step", True)
    return ps.solve(prob, alg, backend=runtime, **kw)


# ----------------------------------------------------------------------------- problems

def logistic(t, u, p):
    """u' = r u (1 - u)."""
    return p[..., 0:1] * u * (1 - u)


def logistic_exact(t, u0, r):
    """u(t) = 1 / (1 + (1/u0 - 1) e^{-r t})."""
    return 1 / (1 + (1 / u0 - 1) * torch.exp(-r * t))


def oscillator(t, u, p):
    x, v = u[..., 0:1], u[..., 1:2]
    return torch.cat([v, -4.0 * x], -1)


def forced(t, u, p):
    return -u + torch.sin(t[..., None])


def robertson(t, u, p):
    y1, y2, y3 = u[..., 0:1], u[..., 1:2], u[..., 2:3]
    return torch.cat([-0.04 * y1 + 1e4 * y2 * y3,
                      0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2,
                      3e7 * y2 ** 2], -1)


ROBER_TS = (0.4, 4.0, 40.0)


@functools.lru_cache(maxsize=1)
def robertson_reference() -> np.ndarray:
    def fun(t, y):
        y1, y2, y3 = y
        return [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2,
                3e7 * y2 ** 2]

    def jac(t, y):
        y1, y2, y3 = y
        return [[-0.04, 1e4 * y3, 1e4 * y2],
                [0.04, -1e4 * y3 - 6e7 * y2, -1e4 * y2],
                [0.0, 6e7 * y2, 0.0]]

    r = solve_ivp(fun, (0.0, 40.0), [1.0, 0.0, 0.0], method="Radau", t_eval=ROBER_TS,
                  jac=jac, rtol=1e-12, atol=1e-16)
    assert r.success
    return r.y.T


# ----------------------------------------------------------------------------- accuracy

NONSTIFF = [
    ("logistic", ps.Tsit5()), ("logistic", ps.DP5()), ("oscillator", ps.Vern7()),
    ("forced", ps.Tsit5()),
]


def _nonstiff_case(name):
    ts = torch.linspace(0.0, 3.0, 7)
    if name == "logistic":
        u0, p = torch.tensor([0.1, 0.5]), torch.tensor([1.3])
        return ps.ODEProblem(logistic, u0, (0.0, 3.0), p), ts, logistic_exact(ts[:, None], u0, 1.3)
    if name == "oscillator":
        exact = torch.stack([torch.cos(2 * ts), -2 * torch.sin(2 * ts)], -1)
        return ps.ODEProblem(oscillator, torch.tensor([1.0, 0.0]), (0.0, 3.0)), ts, exact
    exact = ((torch.sin(ts) - torch.cos(ts)) / 2 + 1.5 * torch.exp(-ts))[:, None]
    return ps.ODEProblem(forced, torch.tensor([1.0]), (0.0, 3.0)), ts, exact


@pytest.mark.parametrize("name,alg", NONSTIFF, ids=lambda x: getattr(x, "name", x))
def test_nonstiff_accuracy(runtime, name, alg):
    prob, ts, exact = _nonstiff_case(name)
    sol = solve(runtime, prob, alg, saveat=ts, rtol=1e-9, atol=1e-11)
    assert sol.successful and sol.backend == runtime
    assert torch.allclose(sol.u, exact, rtol=1e-6, atol=1e-8), (sol.u - exact).abs().max()


STIFF = [ps.Rodas5P(), ps.Rodas4(), ps.Kvaerno5(), ps.KenCarp4(), ps.QNDF(), ps.TRBDF2()]


@pytest.mark.parametrize("alg", STIFF, ids=lambda a: a.name)
def test_stiff_accuracy(runtime, alg):
    prob = ps.ODEProblem(robertson, torch.tensor([1.0, 0.0, 0.0]), (0.0, 40.0))
    rtol = 1e-5 if alg.name == "TRBDF2" else 1e-7
    sol = solve(runtime, prob, alg, saveat=list(ROBER_TS), rtol=rtol, atol=1e-12)
    ref = torch.from_numpy(robertson_reference())
    assert sol.successful
    err = ((sol.u - ref).abs() / (ref.abs() + 1e-9)).max()
    assert err < 300 * rtol, float(err)


def test_batch_members_each_solved(runtime):
    u0 = torch.tensor([[0.1], [0.5], [0.9]])
    r = torch.tensor([1.3])
    ts = torch.tensor([0.0, 1.0, 2.5])
    prob = ps.ODEProblem(logistic, u0, (0.0, 2.5), r, batch_ndim=1)
    sol = solve(runtime, prob, ps.Tsit5(), saveat=ts, rtol=1e-9, atol=1e-11)
    assert sol.u.shape == (3, 3, 1) and sol.status.shape == (3,) and sol.successful
    exact = logistic_exact(ts[:, None, None], u0[None], 1.3)
    assert torch.allclose(sol.u, exact, rtol=1e-7)


def test_step_budget_gives_max_iters(runtime):
    prob = ps.ODEProblem(oscillator, torch.tensor([1.0, 0.0]), (0.0, 100.0))
    with pytest.warns(RuntimeWarning, match="MaxIters"):
        sol = solve(runtime, prob, ps.Tsit5(), saveat=[0.0, 50.0, 100.0], max_steps=20)
    assert sol.retcode is ps.ReturnCode.MaxIters
    assert torch.isnan(sol.u[-1]).all() and torch.equal(sol.u[0], torch.tensor([1.0, 0.0]))


def test_dense_output(runtime):
    u0 = torch.tensor([0.2])
    prob = ps.ODEProblem(logistic, u0, (0.0, 2.0), torch.tensor([1.1]))
    sol = solve(runtime, prob, ps.Tsit5(), rtol=1e-9, atol=1e-11)
    tq = torch.tensor([0.3, 1.7])
    assert torch.allclose(sol(tq), logistic_exact(tq[:, None], u0, 1.1), rtol=1e-6)


# ----------------------------------------------------------------------------- gradients

SENSEALGS = [ps.InterpolatingAdjoint(), ps.InterpolatingAdjoint(checkpointing=True),
             ps.QuadratureAdjoint(), ps.BacksolveAdjoint()]


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P()], ids=lambda a: a.name)
@pytest.mark.parametrize("sensealg", SENSEALGS,
                         ids=lambda s: type(s).__name__ + ("-ckpt" if getattr(
                             s, "checkpointing", False) else ""))
def test_adjoint_gradients(runtime, alg, sensealg):
    u0 = torch.tensor([0.1, 0.4], requires_grad=True)
    r = torch.tensor([1.2], requires_grad=True)
    ts = torch.tensor([0.5, 1.0, 2.0])
    w = torch.tensor([[1.0, -0.5], [2.0, 0.3], [-1.0, 1.5]])
    prob = ps.ODEProblem(logistic, u0, (0.0, 2.0), r)
    tol = dict(rtol=1e-10, atol=1e-12) if alg.name == "Tsit5" else dict(rtol=1e-9, atol=1e-11)
    sol = solve(runtime, prob, alg, saveat=ts, sensealg=sensealg, **tol)
    (w * sol.u).sum().backward()

    u0_ref = u0.detach().clone().requires_grad_(True)
    r_ref = r.detach().clone().requires_grad_(True)
    (w * logistic_exact(ts[:, None], u0_ref, r_ref)).sum().backward()
    assert torch.allclose(u0.grad, u0_ref.grad, rtol=1e-5), (u0.grad, u0_ref.grad)
    assert torch.allclose(r.grad, r_ref.grad, rtol=1e-5), (r.grad, r_ref.grad)


def test_module_parameters_get_gradients(runtime):
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2).double()

    class RHS(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, u, p=None):
            return torch.tanh(self.net(u)) - 0.5 * u

    u0 = torch.tensor([0.3, -0.2])
    f = RHS()
    sol = solve(runtime, ps.ODEProblem(f, u0, (0.0, 1.0)), ps.Tsit5(), saveat=[1.0],
                rtol=1e-10, atol=1e-12, sensealg=ps.InterpolatingAdjoint())
    sol.u.sum().backward()
    grad = net.weight.grad.clone()

    # central differences of the loss in float64, through the native runtime
    h = 1e-6
    fd = torch.zeros_like(grad)
    for i, j in np.ndindex(2, 2):
        vals = []
        for s in (1, -1):
            with torch.no_grad():
                net.weight[i, j] += s * h
                vals.append(ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0)), ps.Tsit5(),
                                     saveat=[1.0], rtol=1e-12, atol=1e-14).u.sum().item())
                net.weight[i, j] -= s * h
        fd[i, j] = (vals[0] - vals[1]) / (2 * h)
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-8), (grad, fd)


# ----------------------------------------------------------------------------- Julia sources

JULIA_LOGISTIC = """
function logistic!(du, u, p, t)
    @. du = p[1] * u * (1 - u)
    return nothing
end
"""


def test_julia_source_rhs_values_and_gradients(julia_runtime):
    u0 = torch.tensor([[0.1], [0.6]], requires_grad=True)
    r = torch.tensor([1.4], requires_grad=True)
    ts = torch.tensor([0.5, 1.5])
    f = JuliaFunction(JULIA_LOGISTIC, "logistic!", vjp="enzyme")
    prob = ps.ODEProblem(f, u0, (0.0, 1.5), r, batch_ndim=1)
    sol = ps.solve(prob, ps.Tsit5(), saveat=ts, rtol=1e-10, atol=1e-12,
                   sensealg=ps.InterpolatingAdjoint())
    assert sol.backend == "julia"
    exact = logistic_exact(ts[:, None, None], u0[None], r)
    assert torch.allclose(sol.u, exact, rtol=1e-7)
    sol.u.sum().backward()
    u0_ref = u0.detach().clone().requires_grad_(True)
    r_ref = r.detach().clone().requires_grad_(True)
    logistic_exact(ts[:, None, None], u0_ref[None], r_ref).sum().backward()
    assert torch.allclose(u0.grad, u0_ref.grad, rtol=1e-5)
    assert math.isclose(float(r.grad), float(r_ref.grad), rel_tol=1e-5)


def test_hybrid_julia_physics_and_torch_network(julia_runtime):
    class Network(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.lin = torch.nn.Linear(2, 2).double()

        def forward(self, t, u, p=None):
            return torch.tanh(self.lin(u))

    network = Network()
    net = network.lin
    physics = JuliaFunction("decay(u, p, t) = -p[1] .* u", "decay")
    k = torch.tensor([0.6], requires_grad=True)
    u0 = torch.tensor([0.4, -0.3])
    hybrid = ps.julia.HybridFunction(physics, network)
    sol = ps.solve(ps.ODEProblem(hybrid, u0, (0.0, 1.0), k), ps.Tsit5(), saveat=[0.5, 1.0],
                   rtol=1e-10, atol=1e-12, sensealg=ps.InterpolatingAdjoint())
    sol.u.sum().backward()
    got = [k.grad.clone(), net.weight.grad.clone()]
    k.grad = None
    net.zero_grad()

    # the same model in torch alone, on the native runtime
    def torch_only(t, u, p):
        return -p * u + network(t, u, p)

    ref = ps.solve(ps.ODEProblem(torch_only, u0, (0.0, 1.0), k), ps.Tsit5(),
                   saveat=[0.5, 1.0], rtol=1e-10, atol=1e-12, backend="native")
    assert torch.allclose(sol.u, ref.u, rtol=1e-7)
    ref.u.sum().backward()
    assert torch.allclose(got[0], k.grad, rtol=1e-5)
    assert torch.allclose(got[1], net.weight.grad, rtol=1e-5, atol=1e-9)


def test_gpu_ensemble_of_a_julia_function(julia_runtime):
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    f = JuliaFunction("decay(u, p, t) = -p[1] .* u", "decay", gpu="kernel")
    u0 = torch.rand(64, 2, dtype=torch.float64, device="cuda") + 0.5
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, device="cuda")
    prob = ps.ODEProblem(f, u0, (0.0, 1.0), torch.tensor([0.9], device="cuda"), batch_ndim=1)
    sol = ps.solve(prob, ps.Tsit5(), saveat=ts, rtol=1e-8, atol=1e-10)
    assert sol.u.device.type == "cuda" and sol.u.shape == (3, 64, 2)
    assert torch.allclose(sol.u, u0[None] * torch.exp(-0.9 * ts)[:, None, None], rtol=1e-6)


def test_float32(runtime):
    u0 = torch.tensor([0.2, 0.7], dtype=torch.float32)
    r = torch.tensor([1.1], dtype=torch.float32, requires_grad=True)
    ts = torch.tensor([0.5, 1.0], dtype=torch.float32)
    sol = solve(runtime, ps.ODEProblem(logistic, u0, (0.0, 1.0), r), ps.Tsit5(), saveat=ts,
                rtol=1e-6, atol=1e-7, sensealg=ps.InterpolatingAdjoint())
    assert sol.u.dtype == torch.float32
    exact = logistic_exact(ts[:, None].double(), u0.double(), 1.1)
    assert torch.allclose(sol.u.double(), exact, rtol=1e-5)
    sol.u.sum().backward()
    r_ref = torch.tensor([1.1], dtype=torch.float64, requires_grad=True)
    logistic_exact(ts[:, None].double(), u0.double(), r_ref).sum().backward()
    assert r.grad.dtype == torch.float32
    assert torch.allclose(r.grad.double(), r_ref.grad, rtol=1e-4)


def test_torch_rhs_state_on_cuda(runtime):
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    u0 = torch.tensor([[0.1, 0.5], [0.3, 0.9]], device="cuda")
    r = torch.tensor([1.3], device="cuda", requires_grad=True)
    ts = torch.tensor([0.0, 1.0, 2.0], device="cuda")
    prob = ps.ODEProblem(logistic, u0, (0.0, 2.0), r, batch_ndim=1)
    sol = solve(runtime, prob, ps.Tsit5(), saveat=ts, rtol=1e-9, atol=1e-11,
                sensealg=ps.InterpolatingAdjoint())
    assert sol.u.device.type == "cuda"
    exact = logistic_exact(ts[:, None, None], u0[None], r.detach())
    assert torch.allclose(sol.u, exact, rtol=1e-7)
    sol.u.sum().backward()
    r_ref = r.detach().clone().requires_grad_(True)
    logistic_exact(ts[:, None, None], u0[None], r_ref).sum().backward()
    assert torch.allclose(r.grad, r_ref.grad, rtol=1e-5)
