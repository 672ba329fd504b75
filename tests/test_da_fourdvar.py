"""Strong-constraint 4DVar (pysciml.da.FourDVar): cost, gradient, minimisers, against
independent references (matrix exponentials, the closed-form BLUE, central differences)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import expm

import pysciml as ps
from pysciml import da

TIGHT = dict(rtol=1e-11, atol=1e-12)


def lorenz96(t, u, p):
    """dx_i/dt = (x_{i+1} − x_{i−2}) x_{i−1} − x_i + F; p = F (a tensor) or None (F = 8)."""
    forcing = 8.0 if p is None else p[..., None] if p.ndim else p
    return (torch.roll(u, -1, -1) - torch.roll(u, 2, -1)) * torch.roll(u, 1, -1) - u + forcing


def _truth_l96(n, T, seed=0, spin=2.0):
    g = torch.Generator().manual_seed(seed)
    x = 8.0 + torch.randn(n, generator=g)
    x = ps.solve(ps.ODEProblem(lorenz96, x, (0.0, spin)), ps.Tsit5(), saveat=[spin],
                 rtol=1e-10, atol=1e-10).u[-1]
    return x


class LinearSetup:
    r"""u' = A u with obs y_k = H u(t_k) + ε: G = [H expm(A t_k)]_k; BLUE in closed form."""

    def __init__(self, n=4, seed=0, H_rows=2, times=(0.0, 0.3, 0.7, 1.0)):
        g = torch.Generator().manual_seed(seed)
        self.A = 0.5 * torch.randn(n, n, generator=g) - 0.3 * torch.eye(n)
        self.H = torch.randn(H_rows, n, generator=g)
        self.times = torch.tensor(times)
        self.xt = torch.randn(n, generator=g)
        self.G = torch.cat([self.H @ torch.tensor(expm((self.A * t).numpy())) for t in self.times])
        self.r = torch.tensor([0.1, 0.3])
        K = len(times)
        self.y = (self.G @ self.xt).reshape(K, H_rows) + 0.2 * torch.randn(K, H_rows, generator=g)
        self.xb = self.xt + 0.5 * torch.randn(n, generator=g)
        self.bvar = torch.tensor([0.5, 1.0, 2.0, 0.3])[:n]

    def f(self, t, u, p):
        return u @ self.A.T

    def blue(self):
        Rinv = torch.diag(1 / self.r.repeat(len(self.times)))
        d = self.y.reshape(-1) - self.G @ self.xb
        return self.xb + torch.linalg.solve(torch.diag(1 / self.bvar) + self.G.T @ Rinv @ self.G,
                                            self.G.T @ Rinv @ d)

    def cost(self, x):
        Rinv = 1 / self.r.repeat(len(self.times))
        d = self.y.reshape(-1) - self.G @ x
        return 0.5 * ((x - self.xb) ** 2 / self.bvar).sum() + 0.5 * (d ** 2 * Rinv).sum()

    def fourdvar(self, alg=None, **kw):
        prob = ps.ODEProblem(self.f, self.xb.clone(), (0.0, float(self.times[-1])))
        obs = da.Observations(self.times, self.y, variance=self.r,
                              operator=da.LinearObservation(self.H))
        return da.FourDVar(prob, alg or ps.Vern7(), obs, background=da.Background(self.xb,
                                                                                  self.bvar),
                           solve_kwargs=kw or TIGHT)


def test_cost_matches_matrix_exponential():
    s = LinearSetup()
    x = torch.randn(4, generator=torch.Generator().manual_seed(3))
    J = s.fourdvar().cost(u0=x)
    torch.testing.assert_close(J.total, s.cost(x), rtol=1e-9, atol=0)
    torch.testing.assert_close(J.background + J.observation, J.total.reshape(()))


def test_lbfgs_minimiser_is_the_blue():
    s = LinearSetup()
    an = s.fourdvar().minimize(gtol=1e-10)
    xa = s.blue()
    assert float((an.u0 - xa).abs().max()) < 1e-7
    assert an.cost.total <= s.cost(xa) + 1e-10


def test_incremental_4dvar_is_the_blue_and_agrees_with_lbfgs():
    s = LinearSetup()
    fdv = s.fourdvar()
    gn = fdv.minimize(method="gauss_newton", outer_loops=3, inner_tol=1e-12)
    lb = fdv.minimize(gtol=1e-10)
    xa = s.blue()
    assert float((gn.u0 - xa).abs().max()) < 1e-9
    assert float((gn.u0 - lb.u0).abs().max()) < 1e-7
    # a linear model: the first outer loop already gives the minimiser
    assert abs(gn.history[1] - float(s.cost(xa))) < 1e-9 * float(s.cost(xa))


def test_implicit_solver_4dvar_is_the_blue():
    """Through a Rosenbrock solver (LU factorisations in the recorded solve, differentiated
    twice by incremental 4DVar) both minimisers reach the BLUE to the solver's tolerance."""
    s = LinearSetup()
    fdv = s.fourdvar(ps.Rodas5P(), rtol=1e-8, atol=1e-10)
    xa = s.blue()
    gn = fdv.minimize(method="gauss_newton", outer_loops=2, inner_tol=1e-12)
    lb = fdv.minimize(gtol=1e-9)
    assert float((gn.u0 - xa).abs().max()) < 1e-7
    assert float((lb.u0 - xa).abs().max()) < 1e-7


def _l96_partial(dtype=torch.float64, n=8, batch=()):
    g = torch.Generator().manual_seed(1)
    times = torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=dtype)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[::2] = True
    x = _truth_l96(n, 0.3).to(dtype).expand(*batch, n).clone()
    truth = ps.solve(ps.ODEProblem(lorenz96, x, (0.0, 0.3), batch_ndim=len(batch)), ps.Tsit5(),
                     saveat=times, **TIGHT).u
    y = truth[..., mask] + 0.1 * torch.randn(4, *batch, int(mask.sum()), generator=g,
                                              dtype=dtype)
    y[1, ..., 0] = float("nan")  # a missing value
    return times, mask, y, x


@pytest.mark.parametrize("case", ["rk4_direct", "tsit5_interpolating", "dp5_quadrature"])
def test_gradient_matches_central_differences(case):
    """dJ/dx0 (diffusion B, mask operator, a NaN observation) against central differences."""
    times, mask, y, x = _l96_partial()
    n = x.numel()
    if case == "rk4_direct":
        alg, kw = ps.RK4(), dict(dt=0.01)
    elif case == "tsit5_interpolating":
        alg, kw = ps.Tsit5(), dict(TIGHT, sensealg=ps.InterpolatingAdjoint())
    else:
        alg, kw = ps.DP5(), dict(TIGHT, sensealg=ps.QuadratureAdjoint())
    cov = da.DiffusionCovariance((n,), length_scale=1.5, variance=2.0, steps=4)
    prob = ps.ODEProblem(lorenz96, x.clone(), (0.0, 0.3))
    obs = da.Observations(times, y, variance=0.01, operator=da.MaskObservation(mask))
    fdv = da.FourDVar(prob, alg, obs, background=da.Background(x + 0.3, cov), solve_kwargs=kw)
    x0 = (x + 0.2 * torch.sin(torch.arange(n))).requires_grad_(True)
    J = fdv.cost(u0=x0).total
    (grad,) = torch.autograd.grad(J, x0)
    eps = 1e-5
    fd = torch.zeros(n)
    ref = da.FourDVar(prob, ps.RK4() if case == "rk4_direct" else ps.Vern7(), obs,
                      background=da.Background(x + 0.3, cov),
                      solve_kwargs=dict(dt=0.01) if case == "rk4_direct" else dict(
                          rtol=1e-13, atol=1e-13))
    with torch.no_grad():
        for i in range(n):
            e = torch.zeros(n)
            e[i] = eps
            fd[i] = (ref.cost(u0=x0 + e).total - ref.cost(u0=x0 - e).total) / (2 * eps)
    rel = float((grad - fd).norm() / fd.norm())
    assert rel < (1e-8 if case == "rk4_direct" else 1e-6), rel


def test_gradient_with_respect_to_parameters():
    """p (the forcing F) as a control variable: dJ/dF against central differences."""
    times, mask, y, x = _l96_partial()
    prob = ps.ODEProblem(lorenz96, x.clone(), (0.0, 0.3), p=torch.tensor(7.0))
    obs = da.Observations(times, y, variance=0.01, operator=da.MaskObservation(mask))
    fdv = da.FourDVar(prob, ps.RK4(), obs, control=("u0", "p"), solve_kwargs=dict(dt=0.01),
                      parameter_background=da.Background(torch.tensor(8.0), 4.0))
    F = torch.tensor(7.5, requires_grad=True)
    (g,) = torch.autograd.grad(fdv.cost(u0=x, p=F).total, F)
    eps = 1e-6
    with torch.no_grad():
        fd = (fdv.cost(u0=x, p=F + eps).total - fdv.cost(u0=x, p=F - eps).total) / (2 * eps)
    assert abs(float(g - fd)) < 1e-7 * abs(float(fd))


def test_lorenz96_full_noiseless_observations_recover_the_truth():
    n, T = 40, 0.2
    x = _truth_l96(n, T, seed=2)
    times = torch.linspace(0.0, T, 5)
    truth = ps.solve(ps.ODEProblem(lorenz96, x, (0.0, T)), ps.Vern7(), saveat=times,
                     rtol=1e-10, atol=1e-10).u
    g = torch.Generator().manual_seed(5)
    first_guess = x + 1.0 * torch.randn(n, generator=g)
    prob = ps.ODEProblem(lorenz96, first_guess, (0.0, T))
    fdv = da.FourDVar(prob, ps.Tsit5(), da.Observations(times, truth, variance=1.0),
                      solve_kwargs=dict(rtol=1e-9, atol=1e-9))
    an = fdv.minimize(max_iter=100, gtol=1e-9)
    err = float((an.u0 - x).abs().max())
    assert err < 1e-5, err
    assert float((first_guess - x).abs().max()) > 1.0


def test_batched_windows_equal_separate_analyses():
    times, mask, y, x = _l96_partial(batch=(2,))
    x = x + torch.tensor([[0.0], [0.5]])
    prob = ps.ODEProblem(lorenz96, x.clone(), (0.0, 0.3), batch_ndim=1)
    obs = da.Observations(times, y, variance=0.01, operator=da.MaskObservation(mask))
    bg = da.Background(x + 0.2, 1.0)
    kw = dict(dt=0.02)
    batched = da.FourDVar(prob, ps.RK4(), obs, background=bg, solve_kwargs=kw)
    cost = batched.cost(u0=x + 0.1)
    assert cost.observation.shape == (2,)
    an = batched.minimize(method="gauss_newton", outer_loops=3, inner_tol=1e-9, gtol=1e-9)
    for b in range(2):
        single = da.FourDVar(ps.ODEProblem(lorenz96, x[b].clone(), (0.0, 0.3)), ps.RK4(),
                             da.Observations(times, y[:, b], 0.01, da.MaskObservation(mask)),
                             background=da.Background(x[b] + 0.2, 1.0), solve_kwargs=kw)
        torch.testing.assert_close(single.cost(u0=x[b] + 0.1).total, cost.observation[b]
                                   + cost.background[b])
        one = single.minimize(method="gauss_newton", outer_loops=3, inner_tol=1e-9, gtol=1e-9)
        torch.testing.assert_close(one.u0, an.u0[b], rtol=1e-7, atol=1e-8)


def test_nan_and_masks_are_missing_observations():
    """NaN values, ``observed=False`` and a fixed mask operator give the same cost; the values
    at missing entries do not matter."""
    times, mask, y_masked, x = _l96_partial()
    n = x.numel()
    full = torch.full((4, n), float("nan"))
    full[:, mask] = y_masked
    prob = ps.ODEProblem(lorenz96, x.clone(), (0.0, 0.3))
    kw = dict(solve_kwargs=dict(dt=0.01))
    J_mask = da.FourDVar(prob, ps.RK4(), da.Observations(times, y_masked, 0.04,
                                                         da.MaskObservation(mask)), **kw).cost()
    J_nan = da.FourDVar(prob, ps.RK4(), da.Observations(times, full, 0.04), **kw).cost()
    garbage = torch.where(torch.isnan(full), torch.full_like(full, 1e6), full)
    J_obs = da.FourDVar(prob, ps.RK4(), da.Observations(times, garbage, 0.04,
                                                        observed=~torch.isnan(full)),
                        **kw).cost()
    torch.testing.assert_close(J_nan.total, J_mask.total)
    torch.testing.assert_close(J_obs.total, J_mask.total)
    # by hand: only finite entries count
    u = ps.solve(prob, ps.RK4(), saveat=times, dt=0.01).u
    r = (full - u)[~torch.isnan(full)]
    torch.testing.assert_close(J_nan.total, 0.5 * (r ** 2).sum() / 0.04)


def test_subsampling_operator_in_space_and_time():
    """Every other point at every other time: the cost equals the hand-computed one."""
    n = 10
    x = _truth_l96(n, 0.4)
    times = torch.tensor([0.1, 0.3])  # a subset of a finer model grid
    prob = ps.ODEProblem(lorenz96, x, (0.0, 0.4))
    u = ps.solve(prob, ps.RK4(), saveat=times, dt=0.01).u
    y = u[:, 1::2] + 0.3
    obs = da.Observations(times, y, 0.5, da.SubsampleObservation(2, offset=1))
    J = da.FourDVar(prob, ps.RK4(), obs, solve_kwargs=dict(dt=0.01)).cost()
    torch.testing.assert_close(J.total, torch.tensor(0.5 * 0.09 * y.numel() / 0.5))


def _bad(**over):
    s = LinearSetup()
    args = dict(times=s.times, values=s.y, variance=s.r, operator=da.LinearObservation(s.H))
    args.update(over)
    obs = da.Observations(**args)
    prob = ps.ODEProblem(s.f, s.xb.clone(), (0.0, 1.0))
    return da.FourDVar(prob, ps.Tsit5(), obs)


@pytest.mark.parametrize("over,exc,match", [
    (dict(times=torch.tensor([0.0, 0.3, 0.7, 1.5])), ValueError, "times"),
    (dict(times=torch.tensor([-0.1, 0.3, 0.7, 1.0])), ValueError, "times"),
    (dict(times=torch.tensor([0.0, 0.7, 0.3, 1.0])), ValueError, "times"),
    (dict(values=torch.zeros(3, 2)), ValueError, "values"),
    (dict(values=torch.zeros(4, 3)), ValueError, "values"),
    (dict(variance=torch.tensor([0.1, 0.0])), ValueError, "variance"),
    (dict(variance=-1.0), ValueError, "variance"),
    (dict(variance=torch.ones(3)), ValueError, "variance"),
    (dict(operator=da.LinearObservation(torch.zeros(2, 5))), ValueError, "matrix"),
    (dict(operator=da.MaskObservation(torch.ones(5, dtype=torch.bool))), ValueError, "mask"),
    (dict(values=torch.full((4, 2), float("inf"))), ValueError, "values"),
    (dict(operator="identity"), TypeError, "operator"),
])
def test_bad_input_names_the_argument(over, exc, match):
    with pytest.raises(exc, match=match):
        _bad(**over)


def test_bad_background_and_control():
    s = LinearSetup()
    prob = ps.ODEProblem(s.f, s.xb.clone(), (0.0, 1.0))
    obs = da.Observations(s.times, s.y, s.r, da.LinearObservation(s.H))
    with pytest.raises(ValueError, match="background"):
        da.FourDVar(prob, ps.Tsit5(), obs, background=da.Background(torch.zeros(5), 1.0))
    with pytest.raises(ValueError, match="variance"):
        da.Background(torch.zeros(4), -2.0)
    with pytest.raises(ValueError, match="background"):
        da.FourDVar(prob, ps.Tsit5(), obs, background=da.Background(
            torch.zeros(4), da.DiffusionCovariance((6,), 1.0)))
    with pytest.raises(ValueError, match="control"):
        da.FourDVar(prob, ps.Tsit5(), obs, control=("x",))
    with pytest.raises(TypeError, match="problem.p"):
        da.FourDVar(prob, ps.Tsit5(), obs, control=("p",))
    with pytest.raises(ValueError, match="method"):
        da.FourDVar(prob, ps.Tsit5(), obs).minimize(method="newton")
    with pytest.raises(ValueError, match="saveat"):
        da.FourDVar(prob, ps.Tsit5(), obs, solve_kwargs=dict(saveat=[0.5]))
    with pytest.raises(TypeError, match="observations"):
        da.FourDVar(prob, ps.Tsit5(), s.y)


def test_float32_runs():
    s = LinearSetup()
    f32 = {k: getattr(s, k).float() for k in ("A", "H", "times", "y", "xb", "bvar", "r")}
    A = f32["A"]
    prob = ps.ODEProblem(lambda t, u, p: u @ A.T, f32["xb"].clone(), (0.0, 1.0))
    obs = da.Observations(f32["times"], f32["y"], f32["r"], da.LinearObservation(f32["H"]))
    fdv = da.FourDVar(prob, ps.Tsit5(), obs, background=da.Background(f32["xb"], f32["bvar"]),
                      solve_kwargs=dict(rtol=1e-6, atol=1e-7))
    an = fdv.minimize(gtol=1e-5)
    assert an.u0.dtype == torch.float32
    np.testing.assert_allclose(an.u0.double().numpy(), s.blue().numpy(), atol=2e-3)


def test_parameter_estimation_recovers_the_forcing():
    """p alone as the control (F of Lorenz-96, no background): noiseless observations give
    back the true F."""
    n, T = 12, 0.3
    x = _truth_l96(n, T, seed=4)
    times = torch.linspace(0.05, T, 6)
    F_true = torch.tensor(8.0)
    y = ps.solve(ps.ODEProblem(lorenz96, x, (0.0, T), p=F_true), ps.RK4(), saveat=times,
                 dt=0.01).u
    prob = ps.ODEProblem(lorenz96, x, (0.0, T), p=torch.tensor(6.5))
    fdv = da.FourDVar(prob, ps.RK4(), da.Observations(times, y, 0.01), control=("p",),
                      solve_kwargs=dict(dt=0.01))
    an = fdv.minimize(gtol=1e-10)
    assert abs(float(an.p) - 8.0) < 1e-7
    torch.testing.assert_close(an.u0, x)  # not a control: unchanged


def test_module_rhs_velocity_of_an_advection_model():
    """The velocity field of pysciml.physics.AdvectionDiffusion2D as the control (through
    da.module_rhs), diffusion-based B: a uniform flow is recovered from tracer images."""
    from pysciml import physics
    from pysciml.physics.base import smooth_random_field

    n = 12
    model = physics.AdvectionDiffusion2D(size=n, length=1.0, velocity=(0.0, 0.0),
                                         diffusivity=1e-3, learnable=(), dtype=torch.float64)
    f = da.module_rhs(model, "velocity")
    v_true = torch.tensor([0.4, -0.2]).reshape(2, 1, 1).expand(2, n, n).clone()
    c0 = smooth_random_field((1,), (n, n), correlation=2.0,
                             generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = torch.tensor([0.0, 0.1, 0.2])
    y = ps.solve(ps.ODEProblem(f, c0, (0.0, 0.2), p=v_true), ps.RK4(), saveat=times,
                 dt=0.02).u
    bv = da.DiffusionCovariance((n, n), 0.3, 0.25, spacing=1.0 / n)
    prob = ps.ODEProblem(f, c0, (0.0, 0.2), p=torch.zeros(2, n, n))
    fdv = da.FourDVar(prob, ps.RK4(), da.Observations(times, y, 1e-4), control=("p",),
                      parameter_background=da.Background(torch.zeros(2, n, n), bv),
                      solve_kwargs=dict(dt=0.02))
    an = fdv.minimize(max_iter=80, gtol=1e-6)
    rel = float((an.p - v_true).norm() / v_true.norm())
    assert rel < 0.05, rel
    with pytest.raises(ValueError, match="name"):
        da.module_rhs(model, "speed")


@pytest.mark.cuda
def test_cuda_matches_cpu(cuda_device):
    """Cost, gradient and an incremental analysis on CUDA equal those on the CPU."""
    times, mask, y, x = _l96_partial()
    n = x.numel()

    def build(device):
        prob = ps.ODEProblem(lorenz96, x.to(device), (0.0, 0.3))
        obs = da.Observations(times.to(device), y.to(device), 0.01,
                              da.MaskObservation(mask.to(device)))
        cov = da.DiffusionCovariance((n,), 1.5, 2.0, steps=4)
        return da.FourDVar(prob, ps.RK4(), obs, background=da.Background(x.to(device) + 0.3,
                                                                          cov),
                           solve_kwargs=dict(dt=0.01))

    results = []
    for device in (torch.device("cpu"), cuda_device):
        fdv = build(device)
        x0 = (x.to(device) + 0.1).requires_grad_(True)
        J = fdv.cost(u0=x0).total
        (g,) = torch.autograd.grad(J, x0)
        an = fdv.minimize(method="gauss_newton", outer_loops=2)
        assert an.u0.device.type == device.type
        results.append((J.detach().cpu(), g.cpu(), an.u0.cpu()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gauss_newton_with_parameter_control_agrees_with_lbfgs():
    """Initial state and forcing F controlled together on a nonlinear model: both minimisers
    find the same analysis."""
    times, mask, y, x = _l96_partial()
    prob = ps.ODEProblem(lorenz96, x.clone(), (0.0, 0.3), p=torch.tensor(7.5))
    obs = da.Observations(times, y, variance=0.01, operator=da.MaskObservation(mask))
    fdv = da.FourDVar(prob, ps.RK4(), obs, control=("u0", "p"), solve_kwargs=dict(dt=0.02),
                      background=da.Background(x + 0.3, 0.5),
                      parameter_background=da.Background(torch.tensor(7.5), 1.0))
    gn = fdv.minimize(method="gauss_newton", outer_loops=6, inner_tol=1e-10, gtol=1e-9)
    lb = fdv.minimize(gtol=1e-9, ftol=1e-14, max_iter=300)
    assert abs(float(gn.p) - float(lb.p)) < 1e-6
    torch.testing.assert_close(gn.u0, lb.u0, rtol=0, atol=1e-6)
    assert gn.history[-1] < gn.history[0]
    # the gradient vanishes at the analysis
    v = fdv.controls(gn.u0, gn.p)
    v = {k: t.requires_grad_(True) for k, t in v.items()}
    grads = torch.autograd.grad(fdv.cost_of_controls(v).total, list(v.values()))
    assert max(float(g.abs().max()) for g in grads) < 1e-6


@pytest.mark.parametrize("op,expected", [
    (da.LinearObservation(torch.arange(24.0, dtype=torch.float64).reshape(2, 12) / 10),
     lambda x: x.reshape(*x.shape[:-2], 12) @ (torch.arange(24.0).reshape(2, 12) / 10).T),
    (da.SubsampleObservation((2, 3), offset=(1, 0)), lambda x: x[..., 1::2, 0::3]),
    (da.MaskObservation(torch.tensor([[True, False, True, False, False, True]] * 2)),
     lambda x: torch.stack([x[..., 0, 0], x[..., 0, 2], x[..., 0, 5], x[..., 1, 0],
                            x[..., 1, 2], x[..., 1, 5]], -1)),
    (da.IdentityObservation(), lambda x: x),
])
def test_observation_operators_on_a_batched_2d_state(op, expected):
    x = torch.randn(3, 5, 2, 6)  # (K, batch, *state) with state (2, 6)
    out = op(x, 2)
    torch.testing.assert_close(out, expected(x))
    assert tuple(out.shape[2:]) == op.output_shape((2, 6))


def test_observations_subset_selects_windows():
    y = torch.randn(3, 5, 4)
    var = torch.rand(1, 5, 1) + 0.1
    obs = da.Observations([0.0, 0.1, 0.2], y, var, observed=torch.rand(3, 5, 4) > 0.3)
    idx = torch.tensor([4, 1])
    sub = obs.subset(idx)
    torch.testing.assert_close(sub.values, y[:, idx])
    torch.testing.assert_close(sub.variance, var[:, idx])
    torch.testing.assert_close(sub.observed, obs.observed[:, idx])
    bg = da.Background(torch.randn(5, 4), 2.0)
    torch.testing.assert_close(bg.subset(idx, 1, 2).mean, bg.mean[idx])
