"""The same small solves and gradients on CUDA as on CPU, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import LOTKA_VOLTERRA, lotka_volterra, scipy_reference

import pysciml as ps

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available"),
]

P = ((1.5, 1.0, 1.0, 3.0), (1.0, 0.5, 0.8, 2.0), (2.0, 1.2, 1.0, 1.0))
U0 = ((1.0, 1.0), (2.0, 0.5), (0.5, 1.5))
TS = (0.0, 0.5, 1.0, 2.0, 3.0)
# tolerances of the solve, and of the CPU/CUDA comparison, by dtype
SETTINGS = {torch.float32: dict(rtol=1e-5, atol=1e-7, compare=2e-4),
            torch.float64: dict(rtol=1e-9, atol=1e-11, compare=1e-7)}


def batch_problem(device, dtype, requires_grad=False):
    u0 = torch.tensor(U0, dtype=dtype, device=device, requires_grad=requires_grad)
    p = torch.tensor(P, dtype=dtype, device=device, requires_grad=requires_grad)
    return ps.ODEProblem(lotka_volterra, u0, (0.0, 3.0), p, batch_ndim=1), u0, p


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Vern7()], ids=["Tsit5", "Vern7"])
def test_solve_on_cuda_matches_cpu(alg, dtype):
    s = SETTINGS[dtype]
    results = {}
    for device in ("cpu", "cuda"):
        prob, _, _ = batch_problem(device, dtype)
        ts = torch.tensor(TS, dtype=dtype, device=device)
        sol = ps.solve(prob, alg, saveat=ts, rtol=s["rtol"], atol=s["atol"])
        assert sol.successful
        assert sol.u.device.type == device and sol.u.dtype == dtype
        assert sol.t.device.type == device
        results[device] = sol
    cpu, cuda = results["cpu"].u, results["cuda"].u.cpu()
    torch.testing.assert_close(cuda, cpu, rtol=s["compare"], atol=s["compare"])
    for i in range(3):
        ref = scipy_reference(lambda t, y, _p=P[i]: lotka_volterra(
            torch.tensor(t, dtype=torch.float64), torch.from_numpy(y),
            torch.tensor(_p, dtype=torch.float64)).numpy(), U0[i], 0.0, np.asarray(TS))
        err = np.abs(cuda[:, i].double().numpy() - ref).max() / (1 + np.abs(ref).max())
        assert err < 100 * s["rtol"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_dense_output_on_cuda(dtype):
    s = SETTINGS[dtype]
    out = {}
    for device in ("cpu", "cuda"):
        prob = LOTKA_VOLTERRA.ode_problem(dtype=dtype, device=device)
        sol = ps.solve(prob, ps.Tsit5(), rtol=s["rtol"], atol=s["atol"])
        values = sol(torch.linspace(0, 10, 21, dtype=dtype, device=device))
        assert values.device.type == device and values.dtype == dtype
        out[device] = values.cpu()
    torch.testing.assert_close(out["cuda"], out["cpu"], rtol=s["compare"] * 10,
                               atol=s["compare"] * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("sensealg", [ps.DirectBackprop(), ps.InterpolatingAdjoint(),
                                      ps.InterpolatingAdjoint(checkpointing=True),
                                      ps.BacksolveAdjoint(), ps.QuadratureAdjoint()],
                         ids=["Direct", "Interpolating", "Interpolating-ckpt", "Backsolve",
                              "Quadrature"])
def test_gradients_on_cuda_match_cpu(sensealg, dtype):
    s = SETTINGS[dtype]
    weights = torch.randn(len(TS), 3, 2, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)
    grads = {}
    for device in ("cpu", "cuda"):
        prob, u0, p = batch_problem(device, dtype, requires_grad=True)
        sol = ps.solve(prob, ps.Tsit5(), saveat=torch.tensor(TS, dtype=dtype, device=device),
                       rtol=s["rtol"], atol=s["atol"], sensealg=sensealg)
        loss = (sol.u * weights.to(device=device, dtype=dtype)).sum()
        gu0, gp = torch.autograd.grad(loss, (u0, p))
        assert gu0.device.type == device and gp.dtype == dtype
        grads[device] = torch.cat([gu0.reshape(-1), gp.reshape(-1)]).cpu().double()
    scale = grads["cpu"].abs().max()
    assert (grads["cuda"] - grads["cpu"]).abs().max() / scale < s["compare"] * 10


def test_failure_codes_on_cuda():
    u0 = torch.tensor([[0.2], [1.0]], device="cuda")
    prob = ps.ODEProblem(lambda t, u, p: u ** 2, u0, (0.0, 2.0), batch_ndim=1)
    with pytest.warns(RuntimeWarning):
        sol = ps.solve(prob, ps.Tsit5())
    assert sol.status.device.type == "cuda"
    assert sol.retcode[0] is ps.ReturnCode.Success
    assert sol.retcode[1] in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable)
