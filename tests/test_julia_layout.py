"""torch ⇄ Julia conversions without Julia: a NumPy array in Fortran order is exactly what a
Julia array is in memory (and what PythonCall's PyArray / juliacall's ArrayValue expose), so
the layout rule, the absence of copies, return codes, counters and the torch callbacks Julia
calls are all checked against NumPy stand-ins."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml.julia import convert
from pysciml.julia.callbacks import FlatParameters, TorchCallbacks


def julia_index(a: np.ndarray, *index: int):
    """Julia's ``A[i1, ..., ik]`` (1-based, column-major) on the memory of ``a``."""
    flat = np.asarray(a).reshape(-1, order="A")
    assert a.flags.f_contiguous
    offset, stride = 0, 1
    for i, n in zip(index, a.shape):
        offset += (i - 1) * stride
        stride *= n
    return flat[offset]


@pytest.mark.parametrize("shape", [(3,), (4, 2), (5, 3, 2), (2, 3, 4, 5)])
def test_to_julia_reverses_dimensions_without_copying(shape):
    x = torch.arange(int(np.prod(shape)), dtype=torch.float64).reshape(shape)
    a = convert.to_julia(x)
    assert a.shape == shape[::-1]
    assert a.flags.f_contiguous
    assert np.shares_memory(a, x.numpy())
    for index in np.ndindex(*shape):
        jl = tuple(i + 1 for i in reversed(index))
        assert julia_index(a, *jl) == x[index].item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_identity_and_shares_memory(dtype):
    x = torch.randn(3, 4, 5, dtype=dtype)
    back = convert.from_julia(convert.to_julia(x))
    assert back.dtype == dtype and back.shape == x.shape
    assert torch.equal(back, x)
    assert back.data_ptr() == x.data_ptr()


def test_non_contiguous_and_grad_tensors_are_converted_correctly():
    x = torch.randn(4, 3, requires_grad=True)
    y = x.t()                                        # not contiguous
    a = convert.to_julia(y)
    assert a.shape == (4, 3) and np.array_equal(a.T, y.detach().numpy())


def test_julia_column_major_result_reads_as_saved_values_without_copy():
    # a Julia N × B × S array: A[n, b, s] = 100 s + 10 b + n
    N, B, S = 6, 2, 4
    A = np.zeros((N, B, S), order="F")
    for n, b, s in np.ndindex(N, B, S):
        A[n, b, s] = 100 * s + 10 * b + n
    us = convert.saved_from_julia(A, torch.Size([2]), torch.Size([2, 3]))
    assert us.shape == (S, 2, 2, 3)
    assert us.data_ptr() == A.__array_interface__["data"][0]
    for s, b, i, j in np.ndindex(S, 2, 2, 3):
        assert us[s, b, i, j] == 100 * s + 10 * b + (3 * i + j)


def test_state_to_julia_puts_each_member_in_a_column():
    u = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)  # batch (2,3)
    U = convert.state_to_julia(u, batch_ndim=2)
    assert U.shape == (4, 6)
    for b in range(6):
        assert np.array_equal(U[:, b], u.reshape(6, 4)[b].numpy())


def test_jacobian_blocks_arrive_transposed_per_block():
    J = torch.randn(3, 2, 2)                         # [b, i, j]
    A = convert.jacobian_blocks_to_julia(J)
    for b, i, j in np.ndindex(3, 2, 2):
        assert julia_index(A, j + 1, i + 1, b + 1) == J[b, i, j].item()
    with pytest.raises(ValueError, match=r"J: expected Jacobian blocks"):
        convert.jacobian_blocks_to_julia(torch.randn(3, 2, 4))


def test_to_julia_errors_name_the_argument():
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        convert.to_julia(np.zeros(3))
    with pytest.raises(ValueError, match="a: expected N × B × S"):
        convert.saved_from_julia(np.zeros((2, 3), order="F"), torch.Size([]), torch.Size([2]))


def test_retcodes_and_stats():
    status = convert.retcodes_from_julia(["Success", "MaxIters", "DtNaN", "DtLessThanMin"],
                                         torch.Size([2, 2]))
    assert status.tolist() == [[ps.ReturnCode.Success, ps.ReturnCode.MaxIters],
                               [ps.ReturnCode.Unstable, ps.ReturnCode.DtLessThanMin]]
    assert convert.retcodes_from_julia(["Success"], torch.Size([])).ndim == 0
    with pytest.raises(RuntimeError, match="unknown return code 'Stalled'"):
        convert.retcodes_from_julia(["Stalled"], torch.Size([1]))
    counters = SimpleNamespace(nf=10, naccept=4, nreject=1, nsteps=5, njac=2, nfactor=3,
                               nlinsolve=6, nnonlinfail=0)
    assert convert.stats_from_julia(counters) == ps.Stats(10, 4, 1, 5, 2, 3, 6, 0)


# ----------------------------------------------------------------------------- callbacks

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, t, u, p=None):
        return torch.tanh(self.lin(u)) * p["scale"] - p["rates"][0] * u * t[..., None]


def _problem():
    torch.manual_seed(0)
    p = {"scale": torch.tensor(1.5, requires_grad=True),
         "rates": [torch.tensor([0.3, 0.2, 0.1], requires_grad=True)], "label": "not a tensor"}
    return ps.ODEProblem(Net().double(), torch.randn(2, 3), (0.0, 1.0), p, batch_ndim=1)


def test_flat_parameters_round_trip():
    prob = _problem()
    params = FlatParameters(prob)
    theta = params.flatten(torch.float64, torch.device("cpu"))
    assert theta.numel() == params.numel == 1 + 3 + 9 + 3
    p, module_views = params.unflatten(theta)
    assert p["label"] == "not a tensor"
    assert torch.equal(p["scale"], prob.p["scale"]) and torch.equal(p["rates"][0],
                                                                     prob.p["rates"][0])
    assert set(module_views[0]) == {"lin.weight", "lin.bias"}
    assert torch.equal(module_views[0]["lin.weight"], prob.f.lin.weight)
    grads = params.split(torch.arange(theta.numel(), dtype=torch.float64))
    assert [g.shape for g in grads] == [x.shape for x in params.tensors]


def test_callbacks_compute_f_vjp_and_jacobian_in_julia_layout():
    prob = _problem()
    params = FlatParameters(prob)
    cb = TorchCallbacks(prob, params)
    theta = convert.to_julia(params.flatten(torch.float64, torch.device("cpu")))
    U = convert.state_to_julia(prob.u0, 1)                      # what Julia passes: N × B
    t = 0.7
    tt = torch.full((2,), t, dtype=torch.float64)

    du = cb.f(U, theta, t)
    assert du.shape == (3, 2) and du.flags.f_contiguous
    with torch.no_grad():
        expected = prob.f(tt, prob.u0, prob.p)
    assert np.allclose(du.T, expected.numpy(), rtol=1e-14)

    lam = np.asfortranarray(np.random.default_rng(1).standard_normal((3, 2)))
    du_vjp, dtheta = cb.vjp(U, theta, t, lam)
    u = prob.u0.clone().requires_grad_(True)
    out = prob.f(tt, u, prob.p)
    leaves = [*params.tensors]
    grads = torch.autograd.grad(out, [u, *leaves], torch.from_numpy(lam.T.copy()))
    assert np.allclose(du_vjp.T, grads[0].numpy(), rtol=1e-12, atol=1e-14)
    expected_theta = torch.cat([g.reshape(-1) for g in grads[1:]])
    assert np.allclose(dtheta, expected_theta.numpy(), rtol=1e-12, atol=1e-14)

    blocks = cb.jac(U, theta, t)
    assert blocks.shape == (3, 3, 2)
    for b in range(2):
        Jb = torch.autograd.functional.jacobian(
            lambda y, b=b: prob.f(tt[b:b + 1], y[None], prob.p)[0], prob.u0[b])
        assert np.allclose(blocks[:, :, b].T, Jb.numpy(), rtol=1e-12, atol=1e-14)
