"""pysciml.hybrid: hybrid right-hand sides through every kind of solver and sensealg (against
finite differences), the APHYNITY norm and multiplier schedule, small fits that must recover the
physical parameters or the missing term, exact resume of an APHYNITY run, and clear errors for
bad configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pysciml as ps
import pysciml.data as psd
from pysciml.hybrid import (
    APHYNITY,
    MLP,
    APHYNITYObjective,
    ConvNet2D,
    NeuralODE,
    PhysicsOnly,
    StateNetwork,
    TrajectoryObjective,
    UniversalDifferentialEquation,
    forecast,
    lotka_volterra_interaction,
    lotka_volterra_ude,
)
from pysciml.physics import DampedPendulum, FitzHughNagumo2D, LotkaVolterra
from pysciml.train import Trainer

OMEGA0 = 2 * math.pi / 12   # APHYNITY's pendulum: T0 = 12, alpha = 0.2


def pendulum_windows(n, alpha=0.2, seed=0, horizon=10, stride=10, t_end=10.0, dt=0.5):
    truth = DampedPendulum(omega0=OMEGA0, alpha=alpha)
    t = torch.arange(0, t_end, dt)
    traj = psd.simulate(truth, n, t=t, seed=seed, rtol=1e-9, atol=1e-11)
    return psd.TrajectoryDataset(traj, history=1, horizon=horizon, stride=stride), traj


def fit(model, objective, data, steps, lr, **kwargs):
    opt = torch.optim.Adam(model.parameter_groups(**lr) if isinstance(lr, dict)
                           else model.parameters(), lr=lr if not isinstance(lr, dict) else 1e-3)
    return Trainer(model, objective, opt, data, epochs=steps, batch_size=len(data),
                   progress=False, **kwargs).fit()


# ----------------------------------------------------------------- right-hand side contract
def _gradient_setup():
    torch.manual_seed(0)
    model = APHYNITY(DampedPendulum(omega0=0.6, alpha=0.0, learnable=("omega0",)),
                     MLP(2, 2, hidden=6, depth=1, activation="tanh"))
    u0 = torch.tensor([[1.0, 0.0], [0.3, -0.5]])
    return model, u0, torch.linspace(0, 3, 7), model.augmentation.network.layers[0].weight


def _loss(model, u0, t, alg, tol, sensealg=None):
    return (forecast(model, u0, t, alg=alg, rtol=tol, atol=tol, sensealg=sensealg) ** 2).sum()


@pytest.fixture(scope="module")
def finite_difference_gradient():
    """Central differences (step 1e-6) of Tsit5 solves at tolerance 1e-12, float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    model, u0, t, weight = _gradient_setup()
    eps, out = 1e-6, []
    for param, index in ((model.physics.omega0, ()), (weight, (1, 0))):
        with torch.no_grad():
            param[index] += eps
            plus = _loss(model, u0, t, ps.Tsit5(), 1e-12)
            param[index] -= 2 * eps
            minus = _loss(model, u0, t, ps.Tsit5(), 1e-12)
            param[index] += eps
        out.append(float((plus - minus) / (2 * eps)))
    torch.set_default_dtype(previous)
    return out


@pytest.mark.parametrize("alg,sensealg,tol", [
    (ps.Tsit5(), ps.DirectBackprop(), 1e-10),
    (ps.Tsit5(), ps.InterpolatingAdjoint(), 1e-10),
    (ps.DP5(), ps.QuadratureAdjoint(), 1e-10),
    (ps.Rodas5P(), ps.DirectBackprop(), 1e-8),
    (ps.Vern7(), ps.InterpolatingAdjoint(checkpointing=True, checkpoints=3), 1e-10),
    (ps.Tsit5(), ps.BacksolveAdjoint(), 1e-10),
])
def test_hybrid_gradients_through_any_solver_match_finite_differences(
        alg, sensealg, tol, finite_difference_gradient):
    model, u0, t, weight = _gradient_setup()
    _loss(model, u0, t, alg, tol, sensealg).backward()
    grads = [float(model.physics.omega0.grad), float(weight.grad[1, 0])]
    rel = 2e-6 if tol <= 1e-10 else 2e-3
    assert grads == pytest.approx(finite_difference_gradient, rel=rel, abs=1e-8)


@pytest.mark.parametrize("sensealg", [ps.DirectBackprop(), ps.InterpolatingAdjoint()])
def test_log_scale_parameter_gradient_is_theta_times_the_plain_one(
        sensealg, finite_difference_gradient):
    r"""``log_parameters``: :math:`\omega_0 = e^{\phi}`, so :math:`\partial L/\partial\phi =
    \omega_0\,\partial L/\partial\omega_0` (central differences in :math:`\omega_0`); the
    network's gradient and the reported :math:`\omega_0` are unchanged."""
    torch.manual_seed(0)
    model = APHYNITY(DampedPendulum(omega0=0.6, alpha=0.0, learnable=("omega0",)),
                     MLP(2, 2, hidden=6, depth=1, activation="tanh"),
                     log_parameters=("omega0",))
    phi = model.physics.parametrizations.omega0.original
    assert float(phi.detach()) == pytest.approx(math.log(0.6), rel=1e-15)
    assert float(model.physical_parameters()["omega0"].detach()) == pytest.approx(0.6, rel=1e-15)
    plain, u0, t, _ = _gradient_setup()
    weight = model.augmentation.network.layers[0].weight
    assert torch.equal(weight, plain.augmentation.network.layers[0].weight)
    _loss(model, u0, t, ps.Tsit5(), 1e-10, sensealg).backward()
    d_omega0, d_weight = finite_difference_gradient
    assert float(phi.grad) == pytest.approx(0.6 * d_omega0, rel=2e-6, abs=1e-8)
    assert float(weight.grad[1, 0]) == pytest.approx(d_weight, rel=2e-6, abs=1e-8)
    assert [q for g in model.parameter_groups(physics_lr=0.1) for q in g["params"]][0] is phi


def test_log_scale_parameter_of_a_plain_module_is_reported_as_theta():
    """A physics that is a plain module (no physical_parameters method): its log-scale parameter
    is reported under its own name with the value theta, and the right-hand side uses theta."""

    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rate = torch.nn.Parameter(torch.tensor([0.5, 2.0]))

        def forward(self, t, u, p=None):
            return -self.rate * u

    model = PhysicsOnly(Decay(), state_shape=2, log_parameters="rate")
    params = model.physical_parameters()
    assert list(params) == ["rate"]
    assert torch.allclose(params["rate"].detach(), torch.tensor([0.5, 2.0]), rtol=1e-15)
    u = torch.tensor([[1.0, -3.0]])
    assert torch.allclose(model(0.0, u), torch.tensor([[-0.5, 6.0]]), rtol=1e-15)
    assert model.parameter_relative_errors({"rate": [0.4, 2.0]})["rate"] == pytest.approx(0.25)


def test_log_scale_recovers_diffusion_coefficients_with_one_learning_rate():
    """The complete FitzHugh-Nagumo model (8x8) with a, b learned from 2e-3 on a log scale: one
    Adam learning rate (0.03) serves a ~ 1e-3 and b ~ 5e-3 and both are recovered to 1 %;
    with the plain parameters, whose Adam steps of up to 0.03 are 30 a, a ends > 5 % off."""
    truth = FitzHughNagumo2D(size=8)
    traj = psd.simulate(truth, 4, t=torch.linspace(0, 0.6, 7), seed=0, rtol=1e-9, atol=1e-11)
    data = psd.TrajectoryDataset(traj, history=1, horizon=3, stride=3)

    def run(log_parameters):
        model = PhysicsOnly(FitzHughNagumo2D(size=8, a=2e-3, b=2e-3, learnable=("a", "b")),
                            log_parameters=log_parameters)
        fit(model, TrajectoryObjective(ps.RK4(), dt=0.05), data, 120, 0.03)
        return model.parameter_relative_errors({"a": 1e-3, "b": 5e-3})

    log = run(("a", "b"))
    assert log["a"] < 0.01 and log["b"] < 0.01
    plain = run(None)
    assert plain["a"] > 0.05


def test_parts_add_up_and_baselines_are_their_parts():
    torch.manual_seed(1)
    phys = DampedPendulum(omega0=0.7, alpha=0.0)
    net = MLP(2, 2, hidden=5)
    u = torch.randn(4, 3, 2)
    t = torch.zeros(4, 3)
    hybrid = APHYNITY(phys, net)
    assert torch.equal(hybrid(t, u), phys(t, u) + net(u))
    assert torch.equal(PhysicsOnly(phys)(t, u), phys(t, u))
    assert torch.equal(NeuralODE(net, 2)(t, u), net(u))
    fhn = FitzHughNagumo2D(size=8)
    grid = torch.rand(3, 2, 8, 8)
    rd = APHYNITY(fhn, ConvNet2D(2, hidden=4), physics_method="diffusion", learnable=("a", "b"))
    assert rd.state_shape == (2, 8, 8)
    assert torch.allclose(rd(torch.zeros(3), grid), fhn.diffusion(None, grid)
                          + rd.augmentation.network(grid))
    assert not fhn.k.requires_grad and fhn.a.requires_grad


def test_augmentation_norm_against_a_direct_computation():
    torch.manual_seed(2)
    conv = ConvNet2D(2, hidden=3)
    model = NeuralODE(conv, (2, 5, 6))
    states = torch.rand(3, 4, 2, 5, 6)                           # (batch, time, C, H, W)
    fa = conv(states.reshape(12, 2, 5, 6)).detach().numpy()
    x = states.reshape(12, 2, 5, 6).numpy()
    l2 = np.mean([[np.sum(fa[m, :, i, j] ** 2) for i in range(5) for j in range(6)]
                  for m in range(12)])
    norm = np.mean([[np.sum(fa[m, :, i, j] ** 2) / (np.linalg.norm(x[m, :, i, j]) + 1e-5) ** 2
                     for i in range(5) for j in range(6)] for m in range(12)])
    with torch.no_grad():
        assert float(model.augmentation_norm(states)) == pytest.approx(l2, rel=1e-12)
        assert float(model.augmentation_norm(states, "l2_normalized")) == pytest.approx(
            norm, rel=1e-12)
    assert float(PhysicsOnly(FitzHughNagumo2D(size=(5, 6))).augmentation_norm(states)) == 0.0


def test_lagrange_multiplier_schedule():
    obj = APHYNITYObjective(lambda0=2.0, tau2=0.5, update_every=2)
    mses = [0.4, 0.3, 0.2, 0.1, 0.05]
    lams = [float(obj.end_step({"mse": torch.tensor(m)})["lambda"]) for m in mses]
    # updated after steps 2 and 4 with that step's L_traj: 2 + 0.5 * 0.3, then + 0.5 * 0.1
    assert lams == pytest.approx([2.0, 2.15, 2.15, 2.2, 2.2], abs=1e-15)
    state = obj.state_dict()
    other = APHYNITYObjective(lambda0=9.0)
    other.load_state_dict(state)
    assert float(other.lambda_) == pytest.approx(2.2) and other.steps == 5


# --------------------------------------------------------------------------- small fits
def test_physics_only_recovers_omega0_of_a_frictionless_pendulum():
    data, _ = pendulum_windows(6, alpha=0.0)
    model = PhysicsOnly(DampedPendulum(omega0=0.4, alpha=0.0, learnable=("omega0",)))
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=15,
                            line_search_fn="strong_wolfe")
    objective = TrajectoryObjective(ps.Tsit5(), rtol=1e-9, atol=1e-11)
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        initial = float(objective.evaluate(model, batch)["mse"])
    result = Trainer(model, objective, opt, data, epochs=2, batch_size=len(data),
                     progress=False).fit()
    assert result.history[-1]["train_loss"] < 1e-6 * initial
    assert model.parameter_relative_errors({"omega0": OMEGA0})["omega0"] < 1e-5


def test_aphynity_beats_incomplete_physics_and_recovers_omega0():
    r"""A small version of APHYNITY's pendulum experiment: frictionless physics with learned
    :math:`\omega_0` plus an MLP, on damped data."""
    data, traj = pendulum_windows(8)
    torch.manual_seed(0)
    model = APHYNITY(DampedPendulum(omega0=0.4, alpha=0.0, learnable=("omega0",)),
                     MLP(2, 2, hidden=32, depth=2, init_gain=0.2))
    objective = APHYNITYObjective(ps.RK4(), dt=0.5, lambda0=1.0, tau2=100.0,
                                  penalty="l2_normalized")
    result = fit(model, objective, data, 60, {"physics_lr": 0.03, "augmentation_lr": 0.01})
    h = result.history
    assert h[-1]["train_mse"] < 0.05 * h[0]["train_mse"]
    assert h[-1]["lambda"] > h[0]["lambda"]
    assert model.parameter_relative_errors({"omega0": OMEGA0})["omega0"] < 0.03
    physics = PhysicsOnly(DampedPendulum(omega0=0.4, alpha=0.0, learnable=("omega0",)))
    base = fit(physics, TrajectoryObjective(ps.RK4(), dt=0.5), data, 40, 0.03)
    assert h[-1]["train_mse"] < 0.1 * base.history[-1]["train_mse"]


def test_ude_learns_the_lotka_volterra_interaction():
    r"""Rackauckas et al.'s setting (:math:`\alpha, \beta, \gamma, \delta = 1.3, 0.9, 1.8, 0.8`),
    known growth and death; the network must learn :math:`(-\beta x y, \delta x y)` on the
    states the data visit."""
    truth = LotkaVolterra(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
    traj = psd.simulate(truth, 8, t=torch.linspace(0, 3, 13), seed=0)
    data = psd.TrajectoryDataset(traj, history=1, horizon=3, stride=1)
    torch.manual_seed(0)
    model = lotka_volterra_ude(1.3, 1.8, hidden=32, depth=2, activation="gelu")
    states = traj.u.reshape(-1, 2)
    true_term = lotka_volterra_interaction(states, beta=0.9, delta=0.8)

    def term_error():
        with torch.no_grad():
            return float((model.missing_term(states) - true_term).norm() / true_term.norm())

    before = term_error()
    result = fit(model, TrajectoryObjective(ps.RK4(), dt=0.125), data, 80, 0.02)
    assert result.history[-1]["train_loss"] < 0.01 * result.history[0]["train_loss"]
    assert term_error() < 0.12 and before > 0.9


def test_aphynity_reaction_diffusion_trains_through_the_diffusion_coefficients():
    """APHYNITY on FitzHugh-Nagumo (diffusion physics + ConvNet) on a coarse 8x8 grid: the
    forecast error falls and the diffusion coefficients receive gradients. (Recovering a and b
    needs the example's pointwise network and 800 steps; see its slow test.)"""
    truth = FitzHughNagumo2D(size=8)
    traj = psd.simulate(truth, 4, t=torch.linspace(0, 0.6, 7), seed=0)
    data = psd.TrajectoryDataset(traj, history=1, horizon=3, stride=3)
    torch.manual_seed(0)
    model = APHYNITY(FitzHughNagumo2D(size=8, a=2e-3, b=2e-3, learnable=("a", "b")),
                     ConvNet2D(2, hidden=8, init_gain=0.1), physics_method="diffusion")
    objective = APHYNITYObjective(ps.RK4(), dt=0.1, tau2=1000.0)
    result = fit(model, objective, data, 20, {"physics_lr": 1e-4, "augmentation_lr": 3e-3})
    h = result.history
    assert h[-1]["train_mse"] < 0.7 * h[0]["train_mse"]
    assert h[-1]["lambda"] > 10 * h[0]["lambda"]
    params = model.physical_parameters()
    assert float(params["a"].detach()) != 2e-3 and float(params["b"].detach()) != 2e-3
    assert float(params["k"].detach()) == 5e-3           # not learnable, untouched


def test_neural_ode_fits_and_aphynity_run_resumes_exactly(tmp_path):
    data, _ = pendulum_windows(4, horizon=5, stride=5)

    def run(out, stop_at=None, seed=0, resume=False):
        torch.manual_seed(seed)
        model = APHYNITY(DampedPendulum(omega0=0.4, alpha=0.0, learnable=("omega0",)),
                         MLP(2, 2, hidden=8))
        objective = APHYNITYObjective(ps.RK4(), dt=0.5, tau2=10.0)

        def stop(trainer, metrics):
            if trainer.global_step == stop_at:
                trainer.request_stop()

        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        Trainer(model, objective, opt, data, epochs=6, batch_size=3, out_dir=out,
                progress=False, resume=resume, on_step_end=stop if stop_at else None).fit()
        return model, objective

    ref, ref_obj = run(tmp_path / "ref")
    run(tmp_path / "run", stop_at=5)
    model, objective = run(tmp_path / "run", seed=1, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 ref.state_dict().values()))
    assert torch.equal(objective.lambda_, ref_obj.lambda_)
    assert objective.steps == ref_obj.steps == 24

    torch.manual_seed(0)
    node = NeuralODE(MLP(2, 2, hidden=16, init_gain=0.2), 2)
    h = fit(node, TrajectoryObjective(ps.RK4(), dt=0.5), data, 30, 0.02).history
    assert h[-1]["train_loss"] < 0.2 * h[0]["train_loss"]


# ------------------------------------------------------------------------ bad configurations
def test_bad_configurations_raise_clear_errors():
    phys = DampedPendulum()
    with pytest.raises(ValueError, match="network: returned"):
        APHYNITY(phys, MLP(2, 3))(torch.zeros(()), torch.zeros(2))
    with pytest.raises(ValueError, match="state_shape"):
        APHYNITY(phys, MLP(2, 2), state_shape=(3,))
    with pytest.raises(ValueError, match="augmentation"):
        APHYNITY(phys, StateNetwork(MLP(3, 3), 3))
    with pytest.raises(ValueError, match="physics, augmentation"):
        APHYNITY(phys, None)
    with pytest.raises(ValueError, match="physics, augmentation"):
        UniversalDifferentialEquation(None, MLP(2, 2), state_shape=2)
    with pytest.raises(TypeError, match="physics"):
        APHYNITY(lambda t, u, p: u, MLP(2, 2), state_shape=2)
    with pytest.raises(ValueError, match="learnable: unknown parameter name.*omega1"):
        APHYNITY(phys, MLP(2, 2), learnable=("omega1",))
    with pytest.raises(ValueError, match="physics_method"):
        APHYNITY(phys, MLP(2, 2), physics_method="diffusion")
    with pytest.raises(ValueError, match="log_parameters: unknown parameter name.*omega1"):
        APHYNITY(DampedPendulum(), MLP(2, 2), log_parameters=("omega1",))
    with pytest.raises(ValueError, match="log_parameters: 'alpha' must be positive"):
        PhysicsOnly(DampedPendulum(alpha=0.0), log_parameters=("omega0", "alpha"))
    with pytest.raises(ValueError, match="state_shape: needed"):
        NeuralODE(MLP(2, 2), None)
    model = APHYNITY(phys, MLP(2, 2))
    with pytest.raises(ValueError, match="u: expected shape"):
        model(torch.zeros(()), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="true: unknown parameter name.*'omega'"):
        model.parameter_relative_errors({"omega": 1.0})
    with pytest.raises(ValueError, match="penalty"):
        model.augmentation_norm(torch.zeros(3, 2), penalty="l1")
    with pytest.raises(ValueError, match="penalty"):
        APHYNITYObjective(penalty="l1")
    with pytest.raises(ValueError, match="lambda0"):
        APHYNITYObjective(lambda0=-1.0)
    with pytest.raises(TypeError, match="alg"):
        TrajectoryObjective("Tsit5")
    with pytest.raises(TypeError, match="model"):
        APHYNITYObjective().loss(phys, {})
    objective = TrajectoryObjective()
    with pytest.raises(ValueError, match="batch: expected a dict with keys"):
        objective.loss(model, {"history": torch.zeros(2, 1, 2)})
    batch = {"t_history": torch.tensor([[0.0], [0.0]]), "history": torch.zeros(2, 1, 2),
             "t_horizon": torch.tensor([[1.0, 2.0], [1.0, 3.0]]), "horizon": torch.zeros(2, 2, 2)}
    with pytest.raises(ValueError, match="share their relative times"):
        objective.loss(model, batch)
    with pytest.raises(ValueError, match="u0: expected shape"):
        forecast(model, torch.zeros(3, 4), torch.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 2, activation="sigmoidish")
    with pytest.raises(ValueError, match="kernel_size"):
        ConvNet2D(2, kernel_size=2)


def test_aphynity_training_on_cuda_matches_cpu(cuda_device):
    """The same APHYNITY steps on CUDA and on the CPU give the same parameters (float64)."""
    data, _ = pendulum_windows(4, horizon=5, stride=5)

    def run(device):
        torch.manual_seed(0)
        model = APHYNITY(DampedPendulum(omega0=0.4, alpha=0.0, learnable=("omega0",)),
                         MLP(2, 2, hidden=8)).to(device)
        # fixed steps: an adaptive solver may accept a step on one device that it rejects on the
        # other (Tsit5 at rtol 1e-8 gave parameters 1e-7 apart); with RK4 only rounding differs
        objective = APHYNITYObjective(ps.RK4(), dt=0.1, tau2=10.0,
                                      sensealg=ps.InterpolatingAdjoint())
        # SGD: linear in the gradients (Adam's first steps amplify rounding of tiny gradients)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        Trainer(model, objective, opt, data, epochs=3, batch_size=4, device=device,
                progress=False).fit()
        return model, objective

    gpu, gpu_obj = run(cuda_device)
    cpu, cpu_obj = run(torch.device("cpu"))
    assert next(gpu.parameters()).is_cuda
    for a, b in zip(gpu.state_dict().values(), cpu.state_dict().values()):
        assert torch.allclose(a.cpu(), b, rtol=1e-12, atol=1e-14)
    assert float(gpu_obj.lambda_) == pytest.approx(float(cpu_obj.lambda_), rel=1e-12)
