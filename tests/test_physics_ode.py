r"""The ODE models of ``pysciml.physics`` against invariants, analytic solutions and the IVP test
set (Mazzia & Magherini, ``tests/data/ivp_testset.json``), and the common model interface."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.physics import (
    HIRES,
    MODELS,
    DampedPendulum,
    Lorenz63,
    Lorenz96,
    LotkaVolterra,
    PhysicalModel,
    Robertson,
    VanDerPol,
)
from pysciml.physics.hires import Y0

ODE_NAMES = ["pendulum", "lotka_volterra", "lorenz63", "lorenz96", "robertson", "van_der_pol",
             "hires"]
TESTSET = json.loads((pathlib.Path(__file__).parent / "data" / "ivp_testset.json").read_text())


def make(name: str, **kwargs) -> PhysicalModel:
    if name == "brusselator":
        return MODELS[name](8, **kwargs)
    return MODELS[name](**kwargs)


# ------------------------------------------------------------------------------ interface
def test_registry_names():
    for name in ODE_NAMES + ["brusselator"]:
        assert MODELS[name].name == name
        assert issubclass(MODELS[name], PhysicalModel)
    assert {cls for cls in MODELS.values()} >= {DampedPendulum, LotkaVolterra, Lorenz63,
                                                 Lorenz96, Robertson, VanDerPol, HIRES}


@pytest.mark.parametrize("name", ODE_NAMES)
def test_interface(name):
    model = make(name)
    params = model.physical_parameters()
    assert tuple(params) == model.parameter_names and len(params) > 0
    assert set(model.parameter_ranges) == set(model.parameter_names)
    for value in params.values():
        assert isinstance(value, torch.nn.Parameter) and value.requires_grad
    g = torch.Generator().manual_seed(3)
    u = model.initial_state((4, 2), generator=g)
    assert u.shape == (4, 2, *model.state_shape) and u.dtype == torch.float64
    again = model.initial_state((4, 2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(u, again)
    du = model(torch.zeros(4, 2), u)
    assert du.shape == u.shape and bool(torch.isfinite(du).all())
    assert isinstance(model.default_algorithm(), ps.AbstractAlgorithm)
    lo, hi = model.default_tspan
    assert hi > lo
    # learnable= selects which parameters require grad
    first = model.parameter_names[0]
    frozen = make(name, learnable=[first])
    assert [p.requires_grad for p in frozen.physical_parameters().values()] == [
        n == first for n in model.parameter_names]
    # float32 models stay float32
    m32 = make(name, dtype=torch.float32)
    u32 = m32.initial_state((2,))
    assert u32.dtype == torch.float32 and m32(torch.zeros(2), u32).dtype == torch.float32


@pytest.mark.parametrize("name", ODE_NAMES)
def test_per_member_parameters(name):
    """A batch of parameters (one per member) gives each member the right-hand side of the
    model built with its own values; a dict ``p`` overrides the stored values."""
    cls = MODELS[name]
    values = cls.sample_parameters((3,), generator=torch.Generator().manual_seed(1))
    for pname, v in values.items():
        low, high = cls.parameter_ranges[pname]
        assert v.shape == (3,) and bool(((v >= low) & (v <= high)).all())
    batched = cls(**values)
    u = batched.initial_state((3,), generator=torch.Generator().manual_seed(2))
    du = batched(torch.zeros(3), u)
    for i in range(3):
        single = cls(**{k: float(v[i]) for k, v in values.items()})
        torch.testing.assert_close(du[i], single(torch.zeros(()), u[i]), rtol=1e-13, atol=1e-13)
        # the same through the override dict of a default model
        default = cls()
        override = default(torch.zeros(()), u[i], {k: v[i] for k, v in values.items()})
        torch.testing.assert_close(override, du[i], rtol=1e-13, atol=1e-13)


def test_bad_parameters():
    with pytest.raises(ValueError, match="n: expected an int >= 4"):
        Lorenz96(n=3)
    with pytest.raises(ValueError, match="omega0: expected a positive"):
        DampedPendulum(omega0=-1.0)
    with pytest.raises(ValueError, match="alpha: expected a non-negative"):
        DampedPendulum(alpha=-0.1)
    with pytest.raises(ValueError, match="k2: expected a positive"):
        Robertson(k2=torch.tensor([3e7, -1.0]))
    with pytest.raises(ValueError, match="learnable: unknown parameter"):
        LotkaVolterra(learnable=["omega"])
    with pytest.raises(TypeError, match="sigma: expected a real number"):
        Lorenz63(sigma="ten")
    with pytest.raises(ValueError, match="mu: expected finite"):
        VanDerPol(mu=float("nan"))
    with pytest.raises(TypeError, match="HIRES: unexpected keyword"):
        HIRES(k13=1.0)
    with pytest.raises(ValueError, match=r"u0: expected shape \(\*batch, 40\)"):
        Lorenz96().ode_problem(torch.zeros(5, 39))
    with pytest.raises(ValueError, match=r"u: expected shape \(\*batch, 40\) for Lorenz96"):
        Lorenz96()(torch.zeros(()), torch.zeros(39))
    with pytest.raises(TypeError, match="p: Lorenz63 takes None or a dict"):
        Lorenz63()(torch.zeros(()), torch.zeros(3), torch.ones(3))


# ------------------------------------------------------------------------------ physics
def test_lotka_volterra_invariant():
    r""":math:`V = \delta x - \gamma\ln x + \beta y - \alpha\ln y` is constant along a batch of
    trajectories with different parameters (a wrong sign or swapped rate breaks it)."""
    values = LotkaVolterra.sample_parameters((4,), generator=torch.Generator().manual_seed(0))
    model = LotkaVolterra(**values, learnable=())
    u0 = model.initial_state((4,), generator=torch.Generator().manual_seed(1))
    sol = ps.solve(model.ode_problem(u0), ps.Vern7(), saveat=torch.linspace(0, 10, 41),
                   rtol=1e-11, atol=1e-12)
    V = model.invariant(sol.u)
    drift = (V - V[0]).abs().max()
    assert float(drift) < 1e-8, drift
    # and the trajectories do move (the invariant is not trivially constant)
    assert float((sol.u - u0).abs().max()) > 0.5


def test_pendulum_small_angle_is_the_damped_oscillator():
    r"""For :math:`\theta_0 = 10^{-4}` the pendulum is the damped oscillator
    :math:`\theta = \theta_0 e^{-\alpha t/2}(\cos\omega_d t + \frac{\alpha}{2\omega_d}
    \sin\omega_d t)` up to :math:`O(\theta_0^3)` (relative :math:`\sim 10^{-9}`)."""
    w0, alpha, theta0 = 1.3, 0.3, 1e-4
    model = DampedPendulum(omega0=w0, alpha=alpha, learnable=())
    t = torch.linspace(0, 10, 51)
    sol = ps.solve(model.ode_problem(torch.tensor([theta0, 0.0])), ps.Vern7(), saveat=t,
                   rtol=1e-11, atol=1e-16)
    wd = math.sqrt(w0 ** 2 - alpha ** 2 / 4)
    exact = theta0 * torch.exp(-alpha * t / 2) * (torch.cos(wd * t)
                                                  + alpha / (2 * wd) * torch.sin(wd * t))
    err = (sol.u[:, 0] - exact).abs().max() / theta0
    assert float(err) < 1e-7, err


def test_pendulum_energy_without_damping():
    model = DampedPendulum(omega0=2.0, alpha=0.0, learnable=())
    u0 = torch.tensor([[2.5, 0.0], [0.3, 1.0]])  # a large swing and a small one
    sol = ps.solve(model.ode_problem(u0), ps.Vern7(), saveat=torch.linspace(0, 10, 21),
                   rtol=1e-11, atol=1e-12)
    E = model.energy(sol.u)
    assert float((E - E[0]).abs().max()) < 1e-8
    # with damping, the energy decreases monotonically at the rate -alpha * omega^2
    damped = DampedPendulum(omega0=2.0, alpha=0.5, learnable=())
    sol = ps.solve(damped.ode_problem(u0), ps.Vern7(), saveat=torch.linspace(0, 10, 21),
                   rtol=1e-10, atol=1e-12)
    E = damped.energy(sol.u)
    assert bool((E[1:] < E[:-1]).all())


def test_robertson_mass_and_testset():
    r"""Robertson conserves :math:`y_1 + y_2 + y_3` (the right-hand side sums to zero), and at
    :math:`t = 10^{11}` matches the IVP test set's reference (Rodas5P, rtol 1e-7; measured
    relative error 1.6e-8)."""
    model = Robertson(learnable=())
    u = model.initial_state((5,), generator=torch.Generator().manual_seed(0))
    assert float(model(torch.zeros(5), u).sum(-1).abs().max()) < 1e-9  # terms of size ~1e7
    ref = TESTSET["problems"]["ROBER"]
    t1 = ref["t_end"]
    sol = ps.solve(model.ode_problem(torch.tensor(ref["y0"]), (0.0, t1)), ps.Rodas5P(),
                   saveat=[1.0, 1e3, 1e7, t1], rtol=1e-7, atol=1e-14)
    assert sol.successful
    total = sol.u.sum(-1)
    assert float((total - 1).abs().max()) < 1e-12
    y, y_ref = sol.u[-1], torch.tensor(ref["reference"])
    assert float(((y - y_ref).abs() / y_ref.abs()).max()) < 1e-6


def test_hires_testset():
    """HIRES at t = 321.8122 against the IVP test set (Rodas5P, rtol 1e-7; measured relative
    error 4.9e-8)."""
    ref = TESTSET["problems"]["HIRES"]
    model = HIRES(learnable=())
    assert tuple(ref["y0"]) == Y0
    sol = ps.solve(model.ode_problem(torch.tensor(ref["y0"])), ps.Rodas5P(),
                   saveat=[ref["t_end"]], rtol=1e-7, atol=1e-10)
    y, y_ref = sol.u[-1], torch.tensor(ref["reference"])
    assert float(((y - y_ref).abs() / y_ref.abs()).max()) < 1e-6


def test_van_der_pol_against_the_scaled_testset_problem():
    r"""The test set's VDPOL (:math:`\varepsilon = 10^{-6}`, :math:`\tau_{end} = 2`) is this
    model with :math:`\mu = \varepsilon^{-1/2} = 1000` at :math:`t = \mu\tau = 2000`, with
    :math:`\dot x = z/\mu` (measured relative error 4.9e-8 at rtol 1e-7)."""
    ref = TESTSET["problems"]["VDPOL"]
    model = VanDerPol(mu=1000.0, learnable=())
    assert isinstance(model.default_algorithm(), ps.Rodas5P)
    sol = ps.solve(model.ode_problem(torch.tensor(ref["y0"]), (0.0, 2000.0)),
                   model.default_algorithm(), saveat=[2000.0], rtol=1e-7, atol=1e-10)
    x, xdot = sol.u[-1]
    assert abs(float(x) / ref["reference"][0] - 1) < 1e-6
    assert abs(float(xdot) * 1000 / ref["reference"][1] - 1) < 1e-6


def test_lorenz63_fixed_points_and_contraction():
    r"""The fixed points :math:`C_\pm = (\pm\sqrt{\beta(\rho-1)}, \pm\sqrt{\beta(\rho-1)},
    \rho-1)` and the origin are equilibria; the flow contracts volume at the constant rate
    :math:`\nabla\cdot f = -(\sigma + 1 + \beta)`."""
    s, r, b = 9.0, 30.0, 2.5
    model = Lorenz63(sigma=s, rho=r, beta=b, learnable=())
    c = math.sqrt(b * (r - 1))
    eq = torch.tensor([[0.0, 0, 0], [c, c, r - 1], [-c, -c, r - 1]])
    assert float(model(torch.zeros(3), eq).abs().max()) < 1e-12
    u = model.initial_state((6,), generator=torch.Generator().manual_seed(0))
    J = torch.func.vmap(torch.func.jacrev(lambda x: model(torch.zeros(()), x)))(u)
    trace = J.diagonal(dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(trace, torch.full((6,), -(s + 1 + b)))


def test_lorenz96_energy_budget_and_fixed_point():
    r""":math:`x_i = F` is an equilibrium, and the advection term conserves
    :math:`E = \tfrac12\sum x_i^2`, so :math:`dE/dt = -\sum x_i^2 + F \sum x_i` exactly."""
    model = Lorenz96(n=36, forcing=torch.tensor([8.0, 5.0]), learnable=())
    assert float(model(torch.zeros(2), model.forcing[:, None].expand(2, 36)).abs().max()) == 0
    u = model.initial_state((2,), generator=torch.Generator().manual_seed(0)) * 3
    du = model(torch.zeros(2), u)
    dE = (u * du).sum(-1)
    expected = -(u * u).sum(-1) + model.forcing * u.sum(-1)
    torch.testing.assert_close(dE, expected, rtol=1e-12, atol=1e-10)


def test_lorenz63_against_scipy():
    """A short Lorenz-63 trajectory against SciPy's DOP853 at rtol 1e-12 on an independently
    written right-hand side."""
    model = Lorenz63(learnable=())
    u0 = np.array([1.0, 2.0, 20.0])

    def f(t, y):
        x, yy, z = y
        return [10 * (yy - x), x * (28 - z) - yy, x * yy - 8 / 3 * z]

    ts = np.linspace(0, 2, 11)
    ref = solve_ivp(f, (0, 2), u0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=ts).y.T
    sol = ps.solve(model.ode_problem(torch.tensor(u0)), ps.Vern7(), saveat=torch.tensor(ts),
                   rtol=1e-11, atol=1e-11)
    assert np.abs(sol.u.numpy() - ref).max() < 1e-7


def test_gradient_wrt_named_parameter():
    r""":math:`\partial/\partial\alpha` of a loss on a Lotka–Volterra solve, through the model's
    ``nn.Parameter`` and an adjoint, against central finite differences (float64)."""
    model = LotkaVolterra()
    u0 = torch.tensor([1.0, 1.0])
    ts = torch.linspace(0, 3, 7)

    def loss(m):
        sol = ps.solve(m.ode_problem(u0, (0.0, 3.0)), ps.Tsit5(), saveat=ts, rtol=1e-10,
                       atol=1e-12, sensealg=ps.InterpolatingAdjoint())
        return (sol.u ** 2).sum()

    loss(model).backward()
    grads = {k: float(v.grad) for k, v in model.physical_parameters().items()}
    eps = 1e-6
    for name in ("alpha", "delta"):
        vals = {k: float(v.detach()) for k, v in model.physical_parameters().items()}
        plus = loss(LotkaVolterra(**{**vals, name: vals[name] + eps}, learnable=()))
        minus = loss(LotkaVolterra(**{**vals, name: vals[name] - eps}, learnable=()))
        fd = float(plus - minus) / (2 * eps)
        assert abs(grads[name] - fd) < 1e-5 * max(1.0, abs(fd)), (name, grads[name], fd)
