"""The time loop captured in a CUDA graph (``solve(..., cuda_graph=True)``).

On the CPU the captured iteration itself (device-side saves, commit, stop pointer) is run
without a graph and compared with the eager loop; on CUDA the replayed graph is compared with
the eager loop and with SciPy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.native import cuda_graph as graphs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def rober(t, u, p):
    """Robertson's kinetics with per-member rate constants ``p`` ``(B, 3)``."""
    y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
    k1, k2, k3 = p[..., 0], p[..., 1], p[..., 2]
    return torch.stack([-k1 * y1 + k3 * y2 * y3,
                        k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3,
                        k2 * y2 * y2], -1)


def rober_batch(B, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    scale = torch.exp(0.4 * torch.randn(B, 3, generator=g, dtype=torch.float64))
    p = (torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64) * scale).to(device, dtype)
    u0 = torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device).expand(B, 3).clone()
    return ps.ODEProblem(rober, u0, (0.0, 1e5), p, batch_ndim=1)


def oscillator(t, u, p):
    """A forced, damped oscillator (not autonomous)."""
    return torch.stack([u[..., 1], -p * u[..., 0] - 0.1 * u[..., 1] + torch.sin(t)], -1)


def oscillator_batch(B, device="cpu", dtype=torch.float64):
    u0 = torch.linspace(0.5, 2.0, B, dtype=dtype, device=device)[:, None] * torch.tensor(
        [1.0, 0.0], dtype=dtype, device=device)
    p = torch.linspace(1.0, 4.0, B, dtype=dtype, device=device)
    return ps.ODEProblem(oscillator, u0, (0.0, 10.0), p, batch_ndim=1)


CASES = {
    "Rodas5P-rober": (rober_batch, ps.Rodas5P, np.logspace(-4, 5, 12), 1e-7, 1e-10),
    "DP5-oscillator": (oscillator_batch, ps.DP5, np.linspace(0.0, 10.0, 21), 1e-8, 1e-10),
    "Tsit5-oscillator": (oscillator_batch, ps.Tsit5, np.linspace(0.0, 10.0, 21), 1e-8, 1e-10),
}


def solve_case(name, device, cuda_graph, B=8, dtype=torch.float64, **kw):
    make, alg, ts, rtol, atol = CASES[name]
    prob = make(B, device, dtype)
    saveat = torch.tensor(ts, dtype=dtype, device=device)
    with torch.no_grad():
        return ps.solve(prob, alg(), saveat=saveat, rtol=rtol, atol=atol,
                        cuda_graph=cuda_graph, **kw)


@pytest.fixture
def graph_on_cpu(monkeypatch):
    """Let the loop take the capture path on the CPU, running its iterations without a graph."""
    monkeypatch.setattr(graphs, "available", lambda device: True)
    monkeypatch.setattr(graphs, "run_captured",
                        functools.partial(graphs.run_captured, capture=False))


@pytest.mark.parametrize("name", sorted(CASES))
def test_device_side_iteration_equals_eager_loop(graph_on_cpu, name):
    eager = solve_case(name, "cpu", cuda_graph=False)
    static = solve_case(name, "cpu", cuda_graph=True)
    assert eager.successful and static.successful
    torch.testing.assert_close(static.u, eager.u, rtol=1e-12, atol=1e-14)
    for field in ("naccept", "nreject", "nsteps", "nf", "njac"):
        assert getattr(static.stats, field) == getattr(eager.stats, field), field


def test_device_side_iteration_with_tstops_and_shared_step(graph_on_cpu):
    for kw in (dict(tstops=[2.5, 7.0]), dict(shared_step=True)):
        eager = solve_case("DP5-oscillator", "cpu", cuda_graph=False, **kw)
        static = solve_case("DP5-oscillator", "cpu", cuda_graph=True, **kw)
        torch.testing.assert_close(static.u, eager.u, rtol=1e-12, atol=1e-14)
        assert static.stats.nsteps == eager.stats.nsteps


def test_device_side_iteration_keeps_failures(graph_on_cpu):
    """A member that runs out of steps ends MaxIters with NaN after its last save, as eagerly."""
    eager = solve_case("Rodas5P-rober", "cpu", cuda_graph=False, max_steps=40)
    static = solve_case("Rodas5P-rober", "cpu", cuda_graph=True, max_steps=40)
    assert torch.equal(static.status, eager.status)
    assert (static.status == ps.ReturnCode.MaxIters).any()
    torch.testing.assert_close(static.u, eager.u, rtol=1e-12, atol=1e-14, equal_nan=True)


@pytest.mark.parametrize("why, kwargs, match", [
    ("dense output", dict(dense=True), "dense output"),
    ("an implicit Newton method", dict(alg=ps.KenCarp4()), "synchronise with the host"),
])
def test_unsupported_solves_warn_and_run_eagerly(monkeypatch, why, kwargs, match):
    monkeypatch.setattr(graphs, "available", lambda device: True)
    prob = oscillator_batch(4)
    alg = kwargs.pop("alg", ps.DP5())
    ts = torch.linspace(0.0, 10.0, 5, dtype=torch.float64)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match=match):
        sol = ps.solve(prob, alg, saveat=ts, rtol=1e-6, cuda_graph=True, **kwargs)
    assert sol.successful


def test_gradient_through_the_steps_is_not_captured(monkeypatch):
    monkeypatch.setattr(graphs, "available", lambda device: True)
    prob = oscillator_batch(4)
    prob.p.requires_grad_(True)
    ts = torch.linspace(0.0, 10.0, 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="differentiated through its steps"):
        sol = ps.solve(prob, ps.DP5(), saveat=ts, rtol=1e-6, cuda_graph=True)
    sol.u.sum().backward()
    assert torch.isfinite(prob.p.grad).all()


def test_cpu_ignores_the_option():
    eager = solve_case("DP5-oscillator", "cpu", cuda_graph=False)
    asked = solve_case("DP5-oscillator", "cpu", cuda_graph=True)
    assert torch.equal(asked.u, eager.u)


# ------------------------------------------------------------------------------------- CUDA


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_captured_loop_equals_eager_loop_on_cuda(name, dtype):
    eager = solve_case(name, "cuda", cuda_graph=False, B=64, dtype=dtype)
    captured = solve_case(name, "cuda", cuda_graph=True, B=64, dtype=dtype)
    assert captured.successful
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(captured.u, eager.u, rtol=tol, atol=tol)
    assert captured.stats.naccept == eager.stats.naccept
    assert captured.stats.nsteps == eager.stats.nsteps
    # at most `lookahead` replays past the end, each with the iteration's own evaluations
    per_step = max(1, (eager.stats.nf - 1) // max(eager.stats.nsteps, 1))
    assert eager.stats.nf <= captured.stats.nf <= eager.stats.nf + 8 * per_step


@cuda
@pytest.mark.cuda
def test_captured_rober_matches_scipy():
    sol = solve_case("Rodas5P-rober", "cuda", cuda_graph=True, B=16)
    prob = rober_batch(16)
    ts = CASES["Rodas5P-rober"][2]
    for i in (0, 7, 15):
        k = prob.p[i].numpy()
        def rhs(t, y, k=k):
            return rober(t, torch.from_numpy(y), torch.from_numpy(k)).numpy()

        ref = solve_ivp(rhs, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", t_eval=ts, rtol=1e-12,
                        atol=1e-14).y.T
        got = sol.u[:, i].cpu().numpy()
        assert np.abs(got - ref).max() < 1e-6


@cuda
@pytest.mark.cuda
def test_host_synchronising_rhs_falls_back_to_eager():
    def synchronising(t, u, p):
        if float(u[..., 0].max()) > 100.0:  # a host synchronisation: cannot be captured
            raise AssertionError("unreachable")
        return oscillator(t, u, p)

    prob = oscillator_batch(8, "cuda")
    reference = ps.ODEProblem(oscillator, prob.u0, prob.tspan, prob.p, batch_ndim=1)
    prob = ps.ODEProblem(synchronising, prob.u0, prob.tspan, prob.p, batch_ndim=1)
    ts = torch.linspace(0.0, 10.0, 11, dtype=torch.float64, device="cuda")
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="could not be captured"):
        sol = ps.solve(prob, ps.DP5(), saveat=ts, rtol=1e-8, atol=1e-10, cuda_graph=True)
    with torch.no_grad():
        ref = ps.solve(reference, ps.DP5(), saveat=ts, rtol=1e-8, atol=1e-10)
    assert sol.successful
    torch.testing.assert_close(sol.u, ref.u, rtol=1e-12, atol=1e-12)
    assert sol.stats.nf == ref.stats.nf
