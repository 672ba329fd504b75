"""The time loop's iteration as one unit (``solve(..., loop="cuda_graph" | "compile")``).

On the CPU the device-side iteration itself (saves, commit, stop pointer) is run without a graph
and compared with the eager loop, and the compiled iteration is compared with the eager loop;
on CUDA the replayed graph is compared with the eager loop and with SciPy."""

from __future__ import annotations

import functools
import shutil
import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.native import device_loop as graphs
from pysciml.native import linsolve

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


def solve_case(name, device, loop, B=8, dtype=torch.float64, **kw):
    make, alg, ts, rtol, atol = CASES[name]
    prob = make(B, device, dtype)
    saveat = torch.tensor(ts, dtype=dtype, device=device)
    with torch.no_grad():
        return ps.solve(prob, alg(), saveat=saveat, rtol=rtol, atol=atol,
                        loop=loop, **kw)


def radau_error(u: torch.Tensor, B: int, members) -> float:
    """The largest deviation of ``u`` ``(S, B, 3)`` (a ROBER batch from ``rober_batch(B)``) from
    SciPy Radau at rtol 1e-12 over the given members and the case's save times."""
    prob = rober_batch(B)
    ts = CASES["Rodas5P-rober"][2]
    worst = 0.0
    for i in members:
        k = prob.p[i].numpy()

        def rhs(t, y, k=k):
            return rober(t, torch.from_numpy(y), torch.from_numpy(k)).numpy()

        ref = solve_ivp(rhs, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", t_eval=ts,
                        rtol=1e-12, atol=1e-14).y.T
        worst = max(worst, float(np.abs(u[:, i].cpu().numpy() - ref).max()))
    return worst


@pytest.fixture
def graph_on_cpu(monkeypatch):
    """Let the loop take the capture path on the CPU, running its iterations without a graph."""
    monkeypatch.setattr(graphs, "available", lambda loop, device: True)
    monkeypatch.setattr(graphs, "run_captured",
                        functools.partial(graphs.run_captured, capture=False))


@pytest.mark.parametrize("name", sorted(CASES))
def test_device_side_iteration_equals_eager_loop(graph_on_cpu, name):
    eager = solve_case(name, "cpu", loop="eager")
    static = solve_case(name, "cpu", loop="cuda_graph")
    assert eager.successful and static.successful
    torch.testing.assert_close(static.u, eager.u, rtol=1e-12, atol=1e-14)
    for field in ("naccept", "nreject", "nsteps", "nf", "njac"):
        assert getattr(static.stats, field) == getattr(eager.stats, field), field


def test_device_side_iteration_with_tstops_and_shared_step(graph_on_cpu):
    for kw in (dict(tstops=[2.5, 7.0]), dict(shared_step=True)):
        eager = solve_case("DP5-oscillator", "cpu", loop="eager", **kw)
        static = solve_case("DP5-oscillator", "cpu", loop="cuda_graph", **kw)
        torch.testing.assert_close(static.u, eager.u, rtol=1e-12, atol=1e-14)
        assert static.stats.nsteps == eager.stats.nsteps


def test_device_side_iteration_keeps_failures(graph_on_cpu):
    """A member that runs out of steps ends MaxIters with NaN after its last save, as eagerly."""
    eager = solve_case("Rodas5P-rober", "cpu", loop="eager", max_steps=40)
    static = solve_case("Rodas5P-rober", "cpu", loop="cuda_graph", max_steps=40)
    assert torch.equal(static.status, eager.status)
    assert (static.status == ps.ReturnCode.MaxIters).any()
    torch.testing.assert_close(static.u, eager.u, rtol=1e-12, atol=1e-14, equal_nan=True)


@pytest.mark.parametrize("why, kwargs, match", [
    ("dense output", dict(dense=True), "dense output"),
    ("an implicit Newton method", dict(alg=ps.KenCarp4()), "synchronise with the host"),
])
@pytest.mark.parametrize("loop", ["cuda_graph", "compile"])
def test_unsupported_solves_warn_and_run_eagerly(monkeypatch, why, kwargs, match, loop):
    monkeypatch.setattr(graphs, "available", lambda loop, device: True)
    prob = oscillator_batch(4)
    kwargs = dict(kwargs)
    alg = kwargs.pop("alg", ps.DP5())
    ts = torch.linspace(0.0, 10.0, 5, dtype=torch.float64)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match=match):
        sol = ps.solve(prob, alg, saveat=ts, rtol=1e-6, loop=loop, **kwargs)
    assert sol.successful


def test_gradient_through_the_steps_is_not_captured(monkeypatch):
    monkeypatch.setattr(graphs, "available", lambda loop, device: True)
    prob = oscillator_batch(4)
    prob.p.requires_grad_(True)
    ts = torch.linspace(0.0, 10.0, 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="differentiated through its steps"):
        sol = ps.solve(prob, ps.DP5(), saveat=ts, rtol=1e-6, loop="cuda_graph")
    sol.u.sum().backward()
    assert torch.isfinite(prob.p.grad).all()


def test_unknown_loop_is_rejected():
    with pytest.raises(ValueError, match="loop: expected one of"):
        solve_case("DP5-oscillator", "cpu", loop="graph")


@pytest.mark.parametrize("loop", ["compile", "cuda_graph"])
def test_adjoint_sensealg_runs_eagerly_with_a_warning(loop):
    prob = oscillator_batch(2)
    prob.p.requires_grad_(True)
    ts = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="not used with an adjoint sensealg"):
        sol = ps.solve(prob, ps.DP5(), saveat=ts, rtol=1e-6, loop=loop,
                       sensealg=ps.InterpolatingAdjoint())
    sol.u.sum().backward()
    assert torch.isfinite(prob.p.grad).all()


needs_compiler = pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile's CPU backend needs a C++ compiler (none on PATH)")


@needs_compiler
def test_compiled_loop_matches_eager_loop_and_scipy():
    """Rodas5P on a ROBER batch with the iteration compiled by torch.compile (CPU, float64)."""
    eager = solve_case("Rodas5P-rober", "cpu", loop="eager", B=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager loop
        compiled = solve_case("Rodas5P-rober", "cpu", loop="compile", B=4)
        again = solve_case("Rodas5P-rober", "cpu", loop="compile", B=4)  # reuses the compilation
    assert compiled.successful
    torch.testing.assert_close(compiled.u, eager.u, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(again.u, compiled.u, rtol=0, atol=0)
    assert compiled.stats.naccept == eager.stats.naccept
    assert compiled.stats.nsteps == eager.stats.nsteps
    # several iterations per compiled call: the ones past the end are not counted
    assert (compiled.stats.nf, compiled.stats.njac, compiled.stats.nfactor) == (
        eager.stats.nf, eager.stats.njac, eager.stats.nfactor)
    assert radau_error(compiled.u, 4, range(4)) < 1e-6


@pytest.mark.parametrize("N", [1, 2, 3, 5, 8])
def test_unrolled_lu_matches_lapack(N):
    """The element-by-element LU (used while torch.compile traces a step) pivots as LAPACK's
    getrf does: same P, same factors, same solutions, also with tiny and zero pivots."""
    g = torch.Generator().manual_seed(N)
    W = torch.randn(32, N, N, dtype=torch.float64, generator=g)
    W[0] = torch.eye(N, dtype=torch.float64)[torch.randperm(N, generator=g)]
    W[1, :, 0] *= 1e-12
    W[2, :, -1] = 0.0  # singular
    r = torch.randn(32, N, dtype=torch.float64, generator=g)
    lapack = linsolve.lu_factor(W)
    unrolled = linsolve._lu_factor_unrolled(W)
    assert torch.equal(unrolled.P, lapack.P)
    torch.testing.assert_close(unrolled.LU, lapack.LU, rtol=1e-12, atol=1e-12)
    assert torch.equal(unrolled.singular, lapack.singular)
    assert bool(unrolled.singular[2]) and not bool(unrolled.singular[3:].any())
    x = linsolve._lu_solve_unrolled(unrolled, r)
    ok = ~lapack.singular
    torch.testing.assert_close(x[ok], linsolve.lu_solve(lapack, r)[ok], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x[3:], torch.linalg.solve(W[3:], r[3:]), rtol=1e-8, atol=1e-10)


def test_cpu_ignores_the_option():
    eager = solve_case("DP5-oscillator", "cpu", loop="eager")
    asked = solve_case("DP5-oscillator", "cpu", loop="cuda_graph")
    assert torch.equal(asked.u, eager.u)


# ------------------------------------------------------------------------------------- CUDA


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_captured_loop_equals_eager_loop_on_cuda(name, dtype):
    eager = solve_case(name, "cuda", loop="eager", B=64, dtype=dtype)
    captured = solve_case(name, "cuda", loop="cuda_graph", B=64, dtype=dtype)
    assert captured.successful
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(captured.u, eager.u, rtol=tol, atol=tol)
    assert captured.stats.naccept == eager.stats.naccept
    assert captured.stats.nsteps == eager.stats.nsteps
    # replays past the end are not counted (the bound: a few iterations' evaluations)
    per_step = max(1, (eager.stats.nf - 1) // max(eager.stats.nsteps, 1))
    assert eager.stats.nf <= captured.stats.nf <= eager.stats.nf + 8 * per_step


@cuda
@pytest.mark.cuda
def test_captured_rober_matches_scipy():
    sol = solve_case("Rodas5P-rober", "cuda", loop="cuda_graph", B=16)
    assert radau_error(sol.u, 16, (0, 7, 15)) < 1e-6


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
        sol = ps.solve(prob, ps.DP5(), saveat=ts, rtol=1e-8, atol=1e-10, loop="cuda_graph")
    with torch.no_grad():
        ref = ps.solve(reference, ps.DP5(), saveat=ts, rtol=1e-8, atol=1e-10)
    assert sol.successful
    torch.testing.assert_close(sol.u, ref.u, rtol=1e-12, atol=1e-12)
    assert sol.stats.nf == ref.stats.nf


@cuda
@pytest.mark.cuda
def test_compiled_loop_on_cuda():
    eager = solve_case("Rodas5P-rober", "cuda", loop="eager", B=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager loop
        compiled = solve_case("Rodas5P-rober", "cuda", loop="compile", B=64)
    # the generated GPU kernels contract multiply-adds differently from the eager kernels, so
    # a member whose error norm sits near 1 may take a different (equally valid) step sequence:
    # the two solutions agree to the solve's tolerance (rtol 1e-7), not to rounding
    torch.testing.assert_close(compiled.u, eager.u, rtol=1e-6, atol=1e-12)
    assert abs(compiled.stats.naccept - eager.stats.naccept) <= 0.02 * eager.stats.naccept
    assert radau_error(compiled.u, 64, (0, 31, 63)) < 1e-6

