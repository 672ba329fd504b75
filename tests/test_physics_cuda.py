"""Every physical model on CUDA gives CPU's right-hand sides, solves and gradients (float32 and
float64)."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml.physics import MODELS, AdvectionDiffusion2D

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available"),
]

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-11, atol=1e-12)}


def build(name: str, device, dtype):
    if name == "brusselator":
        return MODELS[name](8, dtype=dtype, device=device)
    if name in ("pendulum", "lotka_volterra", "lorenz63", "lorenz96", "robertson",
                "van_der_pol", "hires"):
        return MODELS[name](dtype=dtype, device=device)
    return MODELS[name](size=12, dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_on_cuda_matches_cpu(name, dtype):
    cpu, cuda = build(name, "cpu", dtype), build(name, "cuda", dtype)
    # the same generator draws give the same initial states on both devices
    u_cpu = cpu.initial_state((3,), generator=torch.Generator().manual_seed(0))
    u_cuda = cuda.initial_state((3,), generator=torch.Generator().manual_seed(0))
    assert u_cuda.device.type == "cuda" and u_cuda.dtype == dtype
    torch.testing.assert_close(u_cuda.cpu(), u_cpu)
    t = torch.zeros(3, dtype=dtype)
    with torch.no_grad():
        f_cpu, f_cuda = cpu(t, u_cpu), cuda(t.cuda(), u_cuda)
    scale = f_cpu.abs().max().clamp_min(1)
    torch.testing.assert_close(f_cuda.cpu() / scale, f_cpu / scale, **TOL[dtype])


@pytest.mark.parametrize("name", ["lorenz96", "advection_diffusion", "shallow_water", "wave",
                                  "burgers", "robertson"])
def test_solve_on_cuda_matches_cpu(name):
    results = []
    for device in ("cpu", "cuda"):
        model = build(name, device, torch.float64)
        model.requires_grad_(False)
        u0 = model.initial_state((2,), generator=torch.Generator().manual_seed(1))
        t1 = 1e2 if name == "robertson" else 0.2
        sol = ps.solve(model.ode_problem(u0, (0.0, t1)), model.default_algorithm(),
                       saveat=[t1], rtol=1e-8, atol=1e-10)
        assert sol.successful
        results.append(sol.u.cpu())
    torch.testing.assert_close(results[1], results[0], rtol=1e-6, atol=1e-8)


def test_velocity_gradient_on_cuda_matches_cpu():
    grads = []
    for device in ("cpu", "cuda"):
        g = torch.Generator().manual_seed(0)
        field = 0.5 * torch.randn(2, 12, 12, generator=g)
        model = AdvectionDiffusion2D(12, 1.0, field, 5e-3, device=device)
        u0 = model.initial_state((2,), generator=g)
        sol = ps.solve(model.ode_problem(u0, (0.0, 0.3)), ps.Tsit5(), saveat=[0.3],
                       rtol=1e-9, atol=1e-11, sensealg=ps.InterpolatingAdjoint())
        (sol.u ** 2).sum().backward()
        grads.append((model.velocity.grad.cpu(), model.diffusivity.grad.cpu()))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-6, atol=1e-9)
