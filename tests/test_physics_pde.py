r"""The method-of-lines models of ``pysciml.physics`` against analytic solutions, conservation
laws and energy budgets; gradients w.r.t. their parameters; stability failures; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.physics import (
    MODELS,
    AdvectionDiffusion2D,
    Burgers1D,
    DampedWave2D,
    FitzHughNagumo2D,
    GrayScott2D,
    ShallowWater2D,
)

PDE_NAMES = ["advection_diffusion", "fitzhugh_nagumo", "gray_scott", "wave", "shallow_water",
             "burgers", "brusselator"]


def small(name: str, **kwargs):
    return MODELS[name](8, **kwargs) if name == "brusselator" else MODELS[name](size=8, **kwargs)


# ------------------------------------------------------------------------------ interface
@pytest.mark.parametrize("name", PDE_NAMES)
def test_interface(name):
    model = small(name)
    assert model.name == name
    g = torch.Generator().manual_seed(0)
    u = model.initial_state((3,), generator=g)
    assert u.shape == (3, *model.state_shape)
    assert torch.equal(u, model.initial_state((3,), generator=torch.Generator().manual_seed(0)))
    du = model(torch.zeros(3), u)
    assert du.shape == u.shape and bool(torch.isfinite(du).all())
    assert set(model.parameter_ranges) <= set(model.parameter_names)
    assert tuple(model.physical_parameters()) == model.parameter_names
    m32 = small(name, dtype=torch.float32)
    assert m32(torch.zeros(2), m32.initial_state((2,))).dtype == torch.float32


@pytest.mark.parametrize("name", ["advection_diffusion", "fitzhugh_nagumo", "gray_scott", "wave",
                                  "shallow_water", "burgers"])
def test_per_member_parameters(name):
    """Parameters of shape ``(batch,)`` act member by member, like separate models."""
    cls = MODELS[name]
    values = cls.sample_parameters((2,), generator=torch.Generator().manual_seed(1))
    batched = cls(size=8, **values)
    u = batched.initial_state((2,), generator=torch.Generator().manual_seed(2))
    du = batched(torch.zeros(2), u)
    for i in range(2):
        single = cls(size=8, **{k: float(v[i]) for k, v in values.items()})
        torch.testing.assert_close(du[i], single(torch.zeros(()), u[i]), rtol=1e-12,
                                   atol=1e-12)


def test_bad_parameters():
    with pytest.raises(ValueError, match="diffusivity: expected a non-negative"):
        AdvectionDiffusion2D(16, diffusivity=-1e-3)
    with pytest.raises(ValueError, match=r"velocity: expected shape \(2,\), \(2, 16, 16\)"):
        AdvectionDiffusion2D(16, velocity=torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="boundary: expected one of"):
        AdvectionDiffusion2D(16, boundary="open")
    with pytest.raises(ValueError, match="size: expected an int >= 4"):
        DampedWave2D(size=2)
    with pytest.raises(ValueError, match="scheme: expected"):
        Burgers1D(scheme="weno")
    with pytest.raises(ValueError, match="form: expected"):
        AdvectionDiffusion2D(16, form="flux")
    with pytest.raises(TypeError, match="linear: expected a bool"):
        ShallowWater2D(16, linear="yes")
    with pytest.raises(ValueError, match="depth: expected a positive"):
        ShallowWater2D(16, depth=0.0)
    with pytest.raises(ValueError, match="length: expected a positive"):
        GrayScott2D(16, length=(1.0, -1.0))
    with pytest.raises(ValueError, match="a: expected a non-negative"):
        FitzHughNagumo2D(a=torch.tensor([1e-3, -1e-3]))
    with pytest.raises(ValueError, match=r"u0: expected shape \(\*batch, 3, 16, 16\)"):
        ShallowWater2D(16).ode_problem(torch.zeros(2, 16, 16))


# ------------------------------------------------------------------------------ advection–diffusion
V, KAPPA, SIGMA0, X0, T = (0.7, -0.4), 2e-3, 0.06, (0.3, 0.6), 0.5


def translating_gaussian(model: AdvectionDiffusion2D, t: float) -> torch.Tensor:
    r""":math:`\frac{\sigma_0^2}{s} \exp(-|x - x_0 - vt|^2 / 2s)`, :math:`s = \sigma_0^2 +
    2\kappa t`, on the unit periodic square (nearest image: the others are below 1e-20)."""
    X, Y = model.coordinates()
    s = SIGMA0 ** 2 + 2 * KAPPA * t
    dx = torch.remainder(X - X0[0] - V[0] * t + 0.5, 1.0) - 0.5
    dy = torch.remainder(Y - X0[1] - V[1] * t + 0.5, 1.0) - 0.5
    return SIGMA0 ** 2 / s * torch.exp(-(dx * dx + dy * dy) / (2 * s))


def test_advection_diffusion_translating_gaussian():
    """Centred scheme: errors at t = 0.5 against the analytic solution fall at the observed
    order 2 (measured 1.87 then 1.98 on 32², 64², 128²; max error 0.0098 at 128² for a peak
    of 0.64). With a constant velocity the conservative form is the same semi-discretisation
    (checked on the right-hand side)."""
    errors = []
    for n in (32, 64, 128):
        model = AdvectionDiffusion2D(n, 1.0, V, KAPPA, learnable=())
        u0 = translating_gaussian(model, 0.0)[None]
        sol = ps.solve(model.ode_problem(u0, (0.0, T)), ps.Tsit5(), saveat=[T], rtol=1e-8,
                       atol=1e-10)
        errors.append(float((sol.u[-1, 0] - translating_gaussian(model, T)).abs().max()))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert abs(orders[-1] - 2) <= 0.25 and orders[0] > 1.6, (errors, orders)
    assert errors[-1] < 0.02, errors
    conservative = AdvectionDiffusion2D(32, 1.0, V, KAPPA, form="conservative", learnable=())
    advective = AdvectionDiffusion2D(32, 1.0, V, KAPPA, learnable=())
    u = translating_gaussian(advective, 0.1)[None]
    torch.testing.assert_close(conservative(0.0, u), advective(0.0, u), rtol=1e-12, atol=1e-12)


def test_advection_diffusion_upwind_converges():
    """First-order upwind on the same problem: the error falls with the grid and exceeds the
    centred scheme's (numerical diffusion |v| h / 2 adds to kappa)."""
    errors = []
    for n in (32, 64):
        model = AdvectionDiffusion2D(n, 1.0, V, KAPPA, scheme="upwind", learnable=())
        sol = ps.solve(model.ode_problem(translating_gaussian(model, 0.0)[None], (0.0, T)),
                       ps.Tsit5(), saveat=[T], rtol=1e-7, atol=1e-9)
        errors.append(float((sol.u[-1, 0] - translating_gaussian(model, T)).abs().max()))
    assert errors[1] < 0.8 * errors[0] and errors[1] > 0.1, errors


def test_closed_conservative_advection_conserves_mass():
    """The conservative form on a closed box with a divergent velocity field keeps the tracer
    mass to round-off through a solve (upwind and centred)."""
    n = 24
    model = AdvectionDiffusion2D(n, 1.0, (0.0, 0.0), 1e-3, boundary="closed",
                                 form="conservative", learnable=())
    X, Y = model.coordinates()
    field = torch.stack([torch.sin(2 * math.pi * X) * torch.cos(math.pi * Y),
                         torch.cos(3 * X) + 0.5 * Y])
    for scheme in ("centred", "upwind"):
        m = AdvectionDiffusion2D(n, 1.0, field, 1e-3, boundary="closed", form="conservative",
                                 scheme=scheme, learnable=())
        u0 = m.initial_state((2, 1), generator=torch.Generator().manual_seed(0))[:, 0]
        sol = ps.solve(m.ode_problem(u0, (0.0, 0.5)), ps.Tsit5(), saveat=[0.25, 0.5],
                       rtol=1e-6, atol=1e-9)
        mass = m.integral(sol.u).squeeze(-1)
        mass0 = m.integral(u0).squeeze(-1)
        assert float(((mass - mass0) / mass0).abs().max()) < 1e-12, scheme
        assert float((sol.u[-1] - u0).abs().max()) > 0.05  # the tracer did move


def test_advection_diffusion_gradients_fd():
    r"""d(loss)/d(diffusivity) and a directional derivative w.r.t. the velocity field through
    a solve (DirectBackprop) against central finite differences in float64."""
    n = 12
    g = torch.Generator().manual_seed(0)
    field = 0.5 * torch.randn(2, n, n, generator=g)
    direction = torch.randn(2, n, n, generator=g)
    base = AdvectionDiffusion2D(n, 1.0, field, 5e-3, learnable=())
    u0 = base.initial_state((1,), generator=g)
    w = torch.randn(1, 1, n, n, generator=g)

    def loss(model):
        sol = ps.solve(model.ode_problem(u0, (0.0, 0.3)), ps.Tsit5(), saveat=[0.3],
                       rtol=1e-10, atol=1e-12)
        return (sol.u[-1] * w).sum()

    model = AdvectionDiffusion2D(n, 1.0, field, 5e-3)
    loss(model).backward()
    eps = 1e-6
    fd = (loss(AdvectionDiffusion2D(n, 1.0, field, 5e-3 + eps, learnable=()))
          - loss(AdvectionDiffusion2D(n, 1.0, field, 5e-3 - eps, learnable=()))) / (2 * eps)
    assert abs(float(model.diffusivity.grad) - float(fd)) < 1e-6 * max(1.0, abs(float(fd)))
    fd_v = (loss(AdvectionDiffusion2D(n, 1.0, field + eps * direction, 5e-3, learnable=()))
            - loss(AdvectionDiffusion2D(n, 1.0, field - eps * direction, 5e-3, learnable=()))
            ) / (2 * eps)
    ad_v = (model.velocity.grad * direction).sum()
    assert abs(float(ad_v) - float(fd_v)) < 1e-6 * max(1.0, abs(float(fd_v)))


def test_explicit_method_past_stability_limit():
    r"""Diffusion with :math:`\kappa/h^2 \approx 100` has eigenvalues down to
    :math:`-8\kappa/h^2 \approx -820`: RK4 with :math:`dt = 0.01` (:math:`|\lambda dt| = 8.2 >
    2.79`, growth ~120 per step) blows up (``Unstable``, and a warning that names the stability
    limit); Tsit5 stays stable but needs ~250 steps, more than ``max_steps=50``
    (``MaxIters``, and a warning that suggests an implicit method); RK4 within its limit
    succeeds. (As in SciML, instability is detected when the state stops being finite: here
    after ~150 steps; at t = 1, 100 steps, the state is 1e198 and still "Success".)"""
    model = AdvectionDiffusion2D(32, 1.0, (0.0, 0.0), 0.1, learnable=())
    u0 = model.initial_state((2,), generator=torch.Generator().manual_seed(0))
    prob = model.ode_problem(u0, (0.0, 3.0))
    with pytest.warns(RuntimeWarning, match="stability limit"):
        sol = ps.solve(prob, ps.RK4(), dt=0.01, saveat=[3.0])
    assert np.all(sol.retcode == ps.ReturnCode.Unstable)
    with pytest.warns(RuntimeWarning, match="MaxIters.*implicit method"):
        sol = ps.solve(prob, ps.Tsit5(), saveat=[3.0], max_steps=50)
    assert np.all(sol.retcode == ps.ReturnCode.MaxIters)
    stable = ps.solve(prob.remake(tspan=(0.0, 0.5)), ps.RK4(), dt=0.002, saveat=[0.5])
    # |lambda dt| = 1.6: stable, and the diffusing bumps only decay
    assert float(stable.u.abs().max()) <= float(u0.abs().max())
    assert stable.successful


# ------------------------------------------------------------------------------ reaction–diffusion
def fourier_mode(model, kx: int, ky: int):
    r"""A discrete Fourier mode on the model's periodic grid and its five-point Laplacian
    eigenvalue :math:`-\lambda`, :math:`\lambda = \sum_k (2 - 2\cos(2\pi m_k / n_k))/h_k^2`."""
    X, Y = model.coordinates()
    (Lx, Ly), (hx, hy) = model.length, model.spacing
    mode = torch.cos(2 * math.pi * (kx * X / Lx + ky * Y / Ly))
    lam = ((2 - 2 * math.cos(2 * math.pi * kx * hx / Lx)) / hx ** 2
           + (2 - 2 * math.cos(2 * math.pi * ky * hy / Ly)) / hy ** 2)
    return mode, lam


def test_fitzhugh_nagumo_aphynity_setting():
    """Defaults are APHYNITY's (32², [-1, 1]², a, b, k); the diffusion part acts on a Fourier
    mode by its eigenvalue, the reaction part is u - u³ - k - v and u - v, and a spatially
    uniform state follows the reaction ODE (SciPy at rtol 1e-11)."""
    model = FitzHughNagumo2D(learnable=())
    assert model.state_shape == (2, 32, 32) and model.spacing == (2 / 32, 2 / 32)
    assert (float(model.a), float(model.b), float(model.k)) == (1e-3, 5e-3, 5e-3)
    mode, lam = fourier_mode(model, 2, 3)
    u = torch.stack([mode, 2 * mode])
    torch.testing.assert_close(model.diffusion(0.0, u), torch.stack([-1e-3 * lam * mode,
                                                                      -2 * 5e-3 * lam * mode]))
    U, Vv = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
    r = model.reaction(0.0, torch.stack([U, Vv]))
    torch.testing.assert_close(r, torch.stack([U - U ** 3 - 5e-3 - Vv, U - Vv]))
    torch.testing.assert_close(model(0.0, torch.stack([U, Vv])),
                               model.diffusion(0.0, torch.stack([U, Vv])) + r)
    u0 = torch.tensor([0.8, 0.1])
    sol = ps.solve(model.ode_problem(u0[:, None, None].expand(2, 32, 32).clone(), (0.0, 2.5)),
                   ps.Tsit5(), saveat=[2.5], rtol=1e-10, atol=1e-12)
    ref = solve_ivp(lambda t, y: [y[0] - y[0] ** 3 - 5e-3 - y[1], y[0] - y[1]], (0, 2.5),
                    u0.numpy(), method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1]
    assert np.abs(sol.u[-1].numpy() - ref[:, None, None]).max() < 1e-8


def test_gray_scott_steady_states_and_uniform_ode():
    r"""(1, 0) and the two nontrivial uniform steady states are equilibria; a uniform state
    follows the reaction ODE (SciPy at rtol 1e-11)."""
    F, k = 0.03, 0.055
    model = GrayScott2D(16, feed=F, kill=k, learnable=())
    disc = F * F - 4 * F * (F + k) ** 2
    assert disc > 0
    states = [(1.0, 0.0)]
    for sign in (1, -1):
        v = (F + sign * math.sqrt(disc)) / (2 * (F + k))
        states.append((1 - (F + k) * v / F, v))
    u = torch.tensor(states)[:, :, None, None].expand(3, 2, 16, 16)
    assert float(model(torch.zeros(3), u).abs().max()) < 1e-15
    u0 = (0.6, 0.2)
    sol = ps.solve(model.ode_problem(torch.tensor(u0)[:, None, None].expand(2, 16, 16)
                                     .clone(), (0.0, 50.0)),
                   ps.Tsit5(), saveat=[50.0], rtol=1e-10, atol=1e-12)
    ref = solve_ivp(lambda t, y: [-y[0] * y[1] ** 2 + F * (1 - y[0]),
                                  y[0] * y[1] ** 2 - (F + k) * y[1]], (0, 50), u0,
                    method="DOP853", rtol=1e-11, atol=1e-13).y[:, -1]
    assert np.abs(sol.u[-1].numpy() - ref[:, None, None]).max() < 1e-8
    # diffusion: Du and Dv act on their own channels
    mode, lam = fourier_mode(model, 1, 2)
    torch.testing.assert_close(model.diffusion(0.0, torch.stack([mode, mode])),
                               torch.stack([-2e-5 * lam * mode, -1e-5 * lam * mode]))


# ------------------------------------------------------------------------------ wave
def test_wave_energy_conserved_without_damping():
    """Semi-discretely dE/dt = 0 (to round-off, by autograd) and through a Vern7 solve the
    relative drift stays at the integrator's error (measured 1.1e-9 at rtol 1e-8, 9e-12 at
    rtol 1e-10), on periodic and closed (reflecting) grids."""
    for boundary in ("periodic", "closed"):
        model = DampedWave2D(16, 1.0, speed=1.5, boundary=boundary, learnable=())
        u0 = model.initial_state((2,), generator=torch.Generator().manual_seed(0))
        x = u0.clone().requires_grad_(True)
        (gE,) = torch.autograd.grad(model.energy(x).sum(), x)
        rate = (gE * model(torch.zeros(2), u0)).sum((-3, -2, -1))
        assert float(rate.abs().max()) < 1e-10 * float(model.energy(u0).max()) * 1e3
        sol = ps.solve(model.ode_problem(u0, (0.0, 1.0)), ps.Vern7(),
                       saveat=torch.linspace(0, 1, 11), rtol=1e-8, atol=1e-10)
        E = model.energy(sol.u)
        assert float(((E - E[0]) / E[0]).abs().max()) < 1e-8, boundary
        assert float((sol.u[-1, :, 0] - u0[:, 0]).abs().max()) > 0.1  # waves did move


def test_damped_wave_mode_and_energy_budget():
    r"""With damping :math:`\gamma`, a Fourier mode :math:`w = \cos(k\cdot x)` is the damped
    oscillator :math:`e^{-\gamma t/2}(\cos\omega t + \frac{\gamma}{2\omega}\sin\omega t)`,
    :math:`\omega^2 = c^2\lambda - \gamma^2/4`, and the energy obeys
    :math:`E(T) - E(0) = -\gamma\int_0^T\sum\dot w^2\,h^2\,dt` (the right decay rate)."""
    c, gamma = 1.2, 0.8
    model = DampedWave2D(16, 1.0, speed=c, damping=gamma, learnable=())
    mode, lam = fourier_mode(model, 1, 2)
    omega = math.sqrt(c * c * lam - gamma ** 2 / 4)
    u0 = torch.stack([mode, torch.zeros_like(mode)])
    t = torch.linspace(0, 2, 401)
    sol = ps.solve(model.ode_problem(u0, (0.0, 2.0)), ps.Vern7(), saveat=t, rtol=1e-11,
                   atol=1e-13)
    amp = torch.exp(-gamma * t / 2) * (torch.cos(omega * t)
                                       + gamma / (2 * omega) * torch.sin(omega * t))
    assert float((sol.u[:, 0] - amp[:, None, None] * mode).abs().max()) < 1e-8
    E = model.energy(sol.u)
    dissipation = gamma * model.integral(sol.u[:, 1] ** 2)
    # Simpson's rule on 400 intervals: error ~1e-9 relative for this smooth integrand
    h = float(t[1] - t[0])
    weights = torch.ones(401)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    integral = float((weights * dissipation).sum()) * h / 3
    assert abs(float(E[-1] - E[0]) + integral) < 1e-7 * float(E[0])
    assert float(E[-1]) < 0.5 * float(E[0])  # it did decay


# ------------------------------------------------------------------------------ shallow water
SW_CASES = [(linear, boundary) for linear in (True, False) for boundary in ("periodic", "closed")]


@pytest.mark.parametrize("linear,boundary", SW_CASES)
def test_shallow_water_semidiscrete_invariants(linear, boundary):
    """With rotation and random velocities: the tendency of the mass is 0 and that of the
    scheme's energy, dE/dt = <grad E, f(u)>, is 0 to round-off (measured ~1e-17 against terms
    of size 1)."""
    model = ShallowWater2D(16, (1.0, 1.5), gravity=1.3, depth=0.8, coriolis=3.0, linear=linear,
                           boundary=boundary, learnable=())
    u = 0.1 * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    if boundary == "closed":
        u = u * model.wall_mask
    x = u.clone().requires_grad_(True)
    (gE,) = torch.autograd.grad(model.energy(x).sum(), x)
    du = model(torch.zeros(2), u)
    scale = float((gE.abs() * du.abs()).sum((-3, -2, -1)).min())
    assert scale > 0.1
    assert float((gE * du).sum((-3, -2, -1)).abs().max()) < 1e-14 * scale
    assert float(model.mass(du).abs().max()) < 1e-15
    if boundary == "closed":  # normal velocity stays zero on the walls
        assert float(du[:, 1, 0, :].abs().max()) == 0 and float(du[:, 2, :, 0].abs().max()) == 0
    # without the scheme's care (e.g. no Coriolis averaging adjoint) the rate would not vanish:
    # the energy changes under a perturbation that is not a tendency
    # (a seeded direction: the global generator's state depends on the tests run before)
    direction = torch.randn(du.shape, generator=torch.Generator().manual_seed(1))
    assert float((gE * direction).sum().abs()) > 1e-2 * float(gE.norm())


@pytest.mark.parametrize("boundary", ["periodic", "closed"])
def test_shallow_water_solve_conserves(boundary):
    r"""Nonlinear, rotating (16², f = 5): through a Tsit5 solve the mass is conserved to
    round-off and the energy to the integrator's error, which falls with the tolerance
    (relative drift measured 1.2e-5 / 1.4e-5 at rtol 1e-5 and 1.9e-8 at rtol 1e-8, periodic /
    closed; the mass's 3e-16)."""
    model = ShallowWater2D(16, 1.0, gravity=1.0, depth=1.0, coriolis=5.0, boundary=boundary,
                           learnable=())
    u0 = model.initial_state((2,), generator=torch.Generator().manual_seed(0))
    drifts = []
    for rtol in (1e-5, 1e-8):
        sol = ps.solve(model.ode_problem(u0, (0.0, 1.0)), ps.Tsit5(),
                       saveat=torch.linspace(0, 1, 6), rtol=rtol, atol=rtol * 1e-2)
        mass, E = model.mass(sol.u), model.energy(sol.u)
        assert float(((mass - mass[0]) / mass[0]).abs().max()) < 1e-14
        drifts.append(float(((E - E[0]) / E[0]).abs().max()))
    assert drifts[0] < 1e-4 and drifts[1] < 1e-7 and drifts[1] < drifts[0] / 100, drifts
    assert float((sol.u[-1, :, 1:] ** 2).sum()) > 1e-3  # currents did develop


def test_linear_shallow_water_gravity_wave():
    r"""Non-rotating linear shallow water: :math:`\eta = \cos(2\pi m x/L)` is a standing wave
    :math:`\eta = \cos(\omega t)\cos(\cdot)` with the C-grid's dispersion relation
    :math:`\omega = \sqrt{gH}\,\frac{2}{h}\sin(\pi m h / L)` (second-order accurate)."""
    g, H, m = 2.0, 0.5, 3
    model = ShallowWater2D((32, 8), (1.0, 0.25), gravity=g, depth=H, linear=True, learnable=())
    X, _ = model.coordinates()
    eta0 = torch.cos(2 * math.pi * m * X)
    u0 = torch.stack([eta0, torch.zeros_like(eta0), torch.zeros_like(eta0)])
    h = model.spacing[0]
    omega = math.sqrt(g * H) * 2 / h * math.sin(math.pi * m * h)
    t = torch.linspace(0, 1, 11)
    sol = ps.solve(model.ode_problem(u0, (0.0, 1.0)), ps.Vern7(), saveat=t, rtol=1e-11,
                   atol=1e-13)
    expected = torch.cos(omega * t)[:, None, None] * eta0
    assert float((sol.u[:, 0] - expected).abs().max()) < 1e-8
    continuum = math.sqrt(g * H) * 2 * math.pi * m
    assert abs(omega / continuum - 1) < 0.02  # and close to the continuum's


# ------------------------------------------------------------------------------ Burgers
NU, A0, A1 = 0.1, 1.0, 0.8


def cole_hopf(x: torch.Tensor, t: float) -> torch.Tensor:
    r""":math:`u = -2\nu\varphi_x/\varphi`, :math:`\varphi = a_0 + a_1 e^{-\nu t}\cos x`."""
    e = A1 * math.exp(-NU * t)
    return 2 * NU * e * torch.sin(x) / (A0 + e * torch.cos(x))


def burgers_errors(scheme: str, sizes) -> list[float]:
    errors = []
    for n in sizes:
        model = Burgers1D(n, 2 * math.pi, NU, scheme=scheme, learnable=())
        (x,) = model.coordinates()
        sol = ps.solve(model.ode_problem(cole_hopf(x, 0.0)[None], (0.0, 1.0)), ps.Tsit5(),
                       saveat=[1.0], rtol=1e-9, atol=1e-11)
        errors.append(float((sol.u[-1, 0] - cole_hopf(x, 1.0)).abs().max()))
    return errors


def test_burgers_cole_hopf():
    """Against the Cole–Hopf solution: the centred (skew-symmetric) scheme converges at order
    2, Rusanov upwind at order 1 (observed orders within 0.25; measured 1.99, 2.00 on
    32/64/128 points and 1.03, 1.02 on 64/128/256)."""
    e = burgers_errors("centred", (32, 64, 128))
    orders = [math.log2(e[i] / e[i + 1]) for i in range(2)]
    assert abs(orders[-1] - 2) <= 0.25, (e, orders)
    e = burgers_errors("upwind", (64, 128, 256))
    orders = [math.log2(e[i] / e[i + 1]) for i in range(2)]
    assert abs(orders[-1] - 1) <= 0.25, (e, orders)


def test_burgers_energy_budget():
    r"""The skew-symmetric form conserves :math:`\tfrac12\sum u^2 h` without viscosity, so
    :math:`dE/dt = \nu\sum u\,\Delta_h u\,h \le 0` exactly; Rusanov's flux dissipates."""
    model = Burgers1D(64, viscosity=0.07, learnable=())
    u = model.initial_state((3,), generator=torch.Generator().manual_seed(0))
    rate = model.integral((u * model(torch.zeros(3), u))[..., 0, :])
    from pysciml.physics.operators import laplacian

    expected = 0.07 * model.integral((u * laplacian(u, model.spacing))[..., 0, :])
    torch.testing.assert_close(rate, expected, rtol=1e-12, atol=1e-12)
    assert bool((rate < 0).all())
    upwind = Burgers1D(64, viscosity=0.0, scheme="upwind", learnable=())
    assert bool((upwind.integral((u * upwind(torch.zeros(3), u))[..., 0, :]) < 0).all())


# ------------------------------------------------------------------------------ solvers and grids
@pytest.mark.parametrize("name", ["advection_diffusion", "fitzhugh_nagumo", "gray_scott", "wave",
                                  "shallow_water", "burgers"])
def test_implicit_and_explicit_solves_agree(name):
    """The models work under the implicit methods' torch.func Jacobians: Rodas5P and Tsit5
    agree at tight tolerances (8-point grids, a batch of 2)."""
    model = MODELS[name](size=8, learnable=())
    u0 = model.initial_state((2,), generator=torch.Generator().manual_seed(0))
    a = ps.solve(model.ode_problem(u0, (0.0, 0.2)), ps.Rodas5P(), saveat=[0.2], rtol=1e-9,
                 atol=1e-11)
    b = ps.solve(model.ode_problem(u0, (0.0, 0.2)), ps.Tsit5(), saveat=[0.2], rtol=1e-9,
                 atol=1e-11)
    assert a.successful and b.successful
    assert float((a.u - b.u).abs().max()) < 1e-7 * max(1.0, float(b.u.abs().max()))


def test_fitzhugh_nagumo_imex_split():
    """``SplitODEProblem(model.diffusion, model.reaction)`` under KenCarp4 (diffusion implicit)
    agrees with Tsit5 on the whole right-hand side."""
    model = FitzHughNagumo2D(size=8, learnable=())
    u0 = model.initial_state((2,), generator=torch.Generator().manual_seed(0))
    prob = ps.SplitODEProblem(model.diffusion, model.reaction, u0, (0.0, 2.5), batch_ndim=1)
    a = ps.solve(prob, ps.KenCarp4(), saveat=[2.5], rtol=1e-9, atol=1e-11)
    b = ps.solve(model.ode_problem(u0, (0.0, 2.5)), ps.Tsit5(), saveat=[2.5], rtol=1e-9,
                 atol=1e-11)
    assert float((a.u - b.u).abs().max()) < 1e-6


def test_spacing_instead_of_length():
    model = ShallowWater2D((16, 8), spacing=(0.5, 0.25))
    assert model.length == (8.0, 2.0) and model.spacing == (0.5, 0.25)
    assert Burgers1D(64, spacing=0.1).length == (6.4,)
    with pytest.raises(ValueError, match="spacing: expected a positive number"):
        DampedWave2D(16, spacing=(0.1, 0.0))


@pytest.mark.parametrize("scheme", ["centred", "upwind"])
def test_burgers_closed_is_the_odd_extension(scheme):
    r"""Walls with :math:`u = 0` on :math:`[0, L]` are the periodic problem on :math:`[0, 2L]`
    with the odd extension :math:`u(2L - x) = -u(x)`: equal right-hand sides, and equal
    solutions through a solve."""
    n, L = 32, 3.0
    closed = Burgers1D(n, L, 0.05, boundary="closed", scheme=scheme, learnable=())
    periodic = Burgers1D(2 * n, 2 * L, 0.05, scheme=scheme, learnable=())
    u = closed.initial_state((2,), generator=torch.Generator().manual_seed(0))
    extended = torch.cat([u, -u.flip(-1)], -1)
    torch.testing.assert_close(closed(torch.zeros(2), u),
                               periodic(torch.zeros(2), extended)[..., :n], rtol=1e-12,
                               atol=1e-12)
    # fixed steps: both solves take the same steps, so they agree to rounding (adaptive solves
    # of the two sizes round their error norms differently, take different steps, and differ
    # by the tolerance: ~1e-8 at rtol 1e-9, with 1/3 of the steps rejected on this flow)
    a = ps.solve(closed.ode_problem(u, (0.0, 0.5)), ps.RK4(), dt=0.005, saveat=[0.5])
    b = ps.solve(periodic.ode_problem(extended, (0.0, 0.5)), ps.RK4(), dt=0.005, saveat=[0.5])
    assert a.stats.nsteps == b.stats.nsteps == 100
    assert float((a.u - b.u[..., :n]).abs().max()) < 1e-12
    assert float(a.u.abs().max()) > 0.1  # the flow has not decayed to nothing


def _face_odd(f: torch.Tensor, dim: int) -> torch.Tensor:
    """Odd mirror extension of a face field whose index 0 lies on the wall (and is 0)."""
    zero = torch.zeros_like(f.narrow(dim, 0, 1))
    return torch.cat([f, zero, -f.narrow(dim, 1, f.shape[dim] - 1).flip(dim)], dim)


def _centre_even(f: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cat([f, f.flip(dim)], dim)


@pytest.mark.parametrize("linear", [True, False])
def test_shallow_water_walls_are_mirrors(linear):
    r"""Free-slip walls on :math:`[0, L_x]\times[0, L_y]` are the periodic problem on the
    doubled domain with the mirrored state (:math:`\eta` even, normal velocity odd,
    tangential even, on the C-grid's own points): the right-hand sides agree on the original
    quarter (random velocities). Without rotation only: the Coriolis force is not
    mirror-symmetric (a reflection reverses the sense of rotation), and there the walls hold
    the normal velocity at zero directly."""
    n, m = 10, 6
    kw = dict(gravity=1.3, depth=0.8, coriolis=0.0, drag=0.2, linear=linear, learnable=())
    closed = ShallowWater2D((n, m), (1.0, 0.6), boundary="closed", **kw)
    periodic = ShallowWater2D((2 * n, 2 * m), (2.0, 1.2), **kw)
    state = 0.1 * torch.randn(2, 3, n, m, generator=torch.Generator().manual_seed(0))
    state = state * closed.wall_mask
    eta, u, v = state[:, 0], state[:, 1], state[:, 2]
    extended = torch.stack([
        _centre_even(_centre_even(eta, -2), -1),
        _centre_even(_face_odd(u, -2), -1),
        _face_odd(_centre_even(v, -2), -1),
    ], 1)
    torch.testing.assert_close(closed(torch.zeros(2), state),
                               periodic(torch.zeros(2), extended)[..., :n, :m], rtol=1e-12,
                               atol=1e-12)
