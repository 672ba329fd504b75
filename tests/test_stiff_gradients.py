"""Gradients through stiff and method-of-lines solves, every sensealg with every solver family.

References, all independent of pysciml:
* ROBER (Robertson's kinetics) with respect to the logarithms of its rate constants and to
  ``u0``, and Van der Pol with respect to ``mu``: central finite differences (step 1e-5) of SciPy
  ``Radau`` solves at rtol 1e-12;
* a 1D heat equation by the method of lines, ``u' = D A u - c u`` (``A`` the second-difference
  matrix with Dirichlet ends), with respect to ``D``: the exact gradient of its solution
  ``expm((D A - c I) t) u0``, which is ``t A expm((D A - c I) t) u0`` (SciPy ``expm``).

pysciml solves at rtol 1e-8; every gradient must meet its reference to 1e-4 relative (max norm).
The default run covers every sensealg and every solver family once (a diagonal of the matrix);
the full matrix is marked slow.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import problems
import pytest
import scipy.linalg
import torch
from problems import rel_err
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.native.controller import AbstractController
from pysciml.sensealg import GaussAdjoint

F64 = torch.float64
GRAD_TOL = 1e-4
AGREE_TOL = 1e-6
FD_STEP = 1e-5

SENSEALGS = {
    "DirectBackprop": ps.DirectBackprop(),
    "Interpolating": ps.InterpolatingAdjoint(),
    "Interpolating-ckpt": ps.InterpolatingAdjoint(checkpointing=True, checkpoints=4),
    "Quadrature": ps.QuadratureAdjoint(),
    "Gauss": GaussAdjoint(),
    "Gauss-ckpt": GaussAdjoint(checkpointing=True, checkpoints=4),
}
SOLVERS = {"Tsit5": ps.Tsit5(), "Rodas5P": ps.Rodas5P(), "KenCarp4": ps.KenCarp4(),
           "QNDF": ps.QNDF()}


# d loss / d x by central differences in float64
central_differences = functools.partial(problems.central_differences, step=FD_STEP)


def radau(fun, u0, t1, ts) -> np.ndarray:
    r = solve_ivp(fun, (0.0, t1), np.asarray(u0, dtype=np.float64), method="Radau",
                  t_eval=np.asarray(ts), rtol=1e-12, atol=1e-16)
    assert r.status == 0, r.message
    return r.y.T


# --------------------------------------------------------------------------------------------
# The problems
# --------------------------------------------------------------------------------------------


def robertson(t, u, log_k):
    """ROBER with rate constants exp(log_k) (log_k of shape (..., 3))."""
    k = log_k.exp()
    k1, k2, k3 = k[..., 0:1], k[..., 1:2], k[..., 2:3]
    y1, y2, y3 = u[..., 0:1], u[..., 1:2], u[..., 2:3]
    return torch.cat([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2 ** 2,
                      k2 * y2 ** 2], -1)


def robertson_np(t, y, log_k):
    k1, k2, k3 = np.exp(log_k)
    return np.array([-k1 * y[0] + k3 * y[1] * y[2],
                     k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2, k2 * y[1] ** 2])


ROBER_LOGK = tuple(np.log([0.04, 3e7, 1e4]))
ROBER_U0 = (1.0, 0.0, 0.0)
ROBER_TS = (1e-3, 0.1, 0.4, 1.0)
# y2 is ~1e-5 of the others: its weights are scaled up so that every component matters
ROBER_W = np.random.default_rng(1).standard_normal((4, 3)) * np.array([1.0, 1e4, 1.0])
ROBER_TOL = (1e-8, 1e-12)


def van_der_pol(t, u, mu):
    x, y = u[..., 0:1], u[..., 1:2]
    return torch.cat([y, mu * ((1 - x ** 2) * y - x)], -1)


def van_der_pol_np(t, u, mu):
    return np.array([u[1], mu * ((1 - u[0] ** 2) * u[1] - u[0])])


VDP_MU = 10.0
VDP_U0 = (2.0, 0.0)
VDP_TS = (0.25, 0.5, 1.0, 1.5)
VDP_W = np.random.default_rng(2).standard_normal((4, 2))
VDP_TOL = (1e-8, 1e-10)

HEAT_N = 12
HEAT_D = 0.3
HEAT_C = 0.5
HEAT_TS = (0.02, 0.05, 0.1, 0.2)
HEAT_W = np.random.default_rng(3).standard_normal((4, HEAT_N))
HEAT_TOL = (1e-8, 1e-10)


def heat_matrix() -> np.ndarray:
    dx = 1.0 / (HEAT_N + 1)
    return (np.diag(-2.0 * np.ones(HEAT_N)) + np.diag(np.ones(HEAT_N - 1), 1)
            + np.diag(np.ones(HEAT_N - 1), -1)) / dx ** 2


def heat_u0() -> np.ndarray:
    x = np.arange(1, HEAT_N + 1) / (HEAT_N + 1)
    return np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x) + x * (1 - x)


def diffusion(t, u, D):
    """``D u_xx`` by second differences with u = 0 at both ends (the stiff part)."""
    dx = 1.0 / (HEAT_N + 1)
    padded = torch.nn.functional.pad(u, (1, 1))
    return D * (padded[..., 2:] - 2 * u + padded[..., :-2]) / dx ** 2


def decay(t, u, D):
    """``-c u`` (the non-stiff part)."""
    return -HEAT_C * u


def heat_problem(D: torch.Tensor, u0: torch.Tensor) -> ps.ODEProblem:
    return ps.SplitODEProblem(diffusion, decay, u0, (0.0, HEAT_TS[-1]), D)


# --------------------------------------------------------------------------------------------
# References (cached: each is computed once per session)
# --------------------------------------------------------------------------------------------


@functools.cache
def rober_reference() -> np.ndarray:
    """d/d(log k) of sum(W * u(ts))."""
    def loss(log_k):
        return float((radau(lambda t, y: robertson_np(t, y, log_k), ROBER_U0, ROBER_TS[-1],
                            ROBER_TS) * ROBER_W).sum())
    return central_differences(loss, np.array(ROBER_LOGK))


@functools.cache
def rober_u0_reference() -> np.ndarray:
    def loss(u0):
        return float((radau(lambda t, y: robertson_np(t, y, np.array(ROBER_LOGK)), u0,
                            ROBER_TS[-1], ROBER_TS) * ROBER_W).sum())
    # y2 lives at ~1e-5: a step of 1e-7 keeps the differences in the linear regime
    return central_differences(loss, np.array(ROBER_U0), step=1e-7)


@functools.cache
def vdp_reference() -> np.ndarray:
    def loss(mu):
        return float((radau(lambda t, y: van_der_pol_np(t, y, mu[0]), VDP_U0, VDP_TS[-1],
                            VDP_TS) * VDP_W).sum())
    return central_differences(loss, np.array([VDP_MU]))


def heat_reference(D: float = HEAT_D, u0: np.ndarray | None = None) -> float:
    """The exact d/dD of sum(W * u(ts)) of the semi-discrete heat equation."""
    A = heat_matrix()
    u0 = heat_u0() if u0 is None else u0
    total = 0.0
    for w, t in zip(HEAT_W, HEAT_TS):
        propagated = scipy.linalg.expm((D * A - HEAT_C * np.eye(HEAT_N)) * t) @ u0
        total += float(w @ (t * A @ propagated))
    return total


def test_references_are_converged():
    """The FD references do not depend on their step (1e-5 against 1e-4), and the MOL reference
    matches finite differences of its own closed form."""
    def loss(log_k):
        return float((radau(lambda t, y: robertson_np(t, y, log_k), ROBER_U0, ROBER_TS[-1],
                            ROBER_TS) * ROBER_W).sum())
    coarse = central_differences(loss, np.array(ROBER_LOGK), step=1e-4)
    assert rel_err(coarse, rober_reference()) < 1e-6

    A = heat_matrix()

    def heat_loss(D):
        return sum(float(w @ (scipy.linalg.expm((D * A - HEAT_C * np.eye(HEAT_N)) * t)
                              @ heat_u0())) for w, t in zip(HEAT_W, HEAT_TS))
    fd = (heat_loss(HEAT_D + 1e-6) - heat_loss(HEAT_D - 1e-6)) / 2e-6
    assert abs(fd - heat_reference()) < 1e-6 * abs(heat_reference())


# --------------------------------------------------------------------------------------------
# Gradient of one loss, for one problem, solver and sensealg
# --------------------------------------------------------------------------------------------


def rober_gradient(alg, sensealg, wrt_u0=False):
    log_k = torch.tensor(ROBER_LOGK, dtype=F64, requires_grad=True)
    u0 = torch.tensor(ROBER_U0, dtype=F64, requires_grad=wrt_u0)
    sol = ps.solve(ps.ODEProblem(robertson, u0, (0.0, ROBER_TS[-1]), log_k), alg,
                   saveat=torch.tensor(ROBER_TS, dtype=F64), rtol=ROBER_TOL[0],
                   atol=ROBER_TOL[1], sensealg=sensealg, max_steps=50_000)
    assert sol.successful
    loss = (sol.u * torch.tensor(ROBER_W)).sum()
    return torch.autograd.grad(loss, (log_k, u0) if wrt_u0 else (log_k,))


def vdp_gradient(alg, sensealg):
    mu = torch.tensor(VDP_MU, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(van_der_pol, torch.tensor(VDP_U0, dtype=F64),
                                 (0.0, VDP_TS[-1]), mu), alg,
                   saveat=torch.tensor(VDP_TS, dtype=F64), rtol=VDP_TOL[0], atol=VDP_TOL[1],
                   sensealg=sensealg, max_steps=50_000)
    assert sol.successful
    return torch.autograd.grad((sol.u * torch.tensor(VDP_W)).sum(), mu)[0]


def heat_gradient(alg, sensealg):
    D = torch.tensor(HEAT_D, dtype=F64, requires_grad=True)
    sol = ps.solve(heat_problem(D, torch.tensor(heat_u0(), dtype=F64)), alg,
                   saveat=torch.tensor(HEAT_TS, dtype=F64), rtol=HEAT_TOL[0],
                   atol=HEAT_TOL[1], sensealg=sensealg, max_steps=50_000)
    assert sol.successful
    return torch.autograd.grad((sol.u * torch.tensor(HEAT_W)).sum(), D)[0]


CASES = {
    "rober": (rober_gradient, lambda: rober_reference()),
    "vdp": (vdp_gradient, lambda: vdp_reference()),
    "heat": (heat_gradient, lambda: np.array([heat_reference()])),
}

# the default run: every sensealg and every solver family at least once, on every problem
DIAGONAL = [
    ("rober", "Rodas5P", "Gauss"), ("rober", "QNDF", "Quadrature"),
    ("heat", "KenCarp4", "Interpolating"), ("rober", "Rodas5P", "DirectBackprop"),
    ("vdp", "Tsit5", "Gauss-ckpt"), ("vdp", "KenCarp4", "Gauss"),
    ("vdp", "QNDF", "DirectBackprop"), ("vdp", "Rodas5P", "Interpolating-ckpt"),
    ("heat", "KenCarp4", "Quadrature"), ("heat", "QNDF", "Gauss"),
    ("heat", "Tsit5", "DirectBackprop"), ("heat", "Rodas5P", "Interpolating-ckpt"),
]
FULL = [(c, a, s) for c in CASES for a in SOLVERS for s in SENSEALGS
        if (c, a, s) not in DIAGONAL]


def _check(case, solver, sensealg):
    gradient, reference = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed backward solve fails the test
        g = gradient(SOLVERS[solver], SENSEALGS[sensealg])
    g = g[0] if isinstance(g, tuple) else g
    assert rel_err(g, reference()) < GRAD_TOL, (case, solver, sensealg, g, reference())


@pytest.mark.parametrize("case,solver,sensealg", DIAGONAL,
                         ids=["-".join(x) for x in DIAGONAL])
def test_gradient_against_reference(case, solver, sensealg):
    _check(case, solver, sensealg)


@pytest.mark.slow
@pytest.mark.parametrize("case,solver,sensealg", FULL, ids=["-".join(x) for x in FULL])
def test_gradient_against_reference_full_matrix(case, solver, sensealg):
    _check(case, solver, sensealg)


# --------------------------------------------------------------------------------------------
# Agreement, u0, batches, modules, end time, final state
# --------------------------------------------------------------------------------------------


@functools.cache
def rober_rodas_gradient(name: str) -> np.ndarray:
    g = rober_gradient(SOLVERS["Rodas5P"], SENSEALGS[name], wrt_u0=True)
    return torch.cat(g).numpy()


@pytest.mark.parametrize("name", [
    n if n != "Interpolating-ckpt" else pytest.param(n, marks=pytest.mark.slow)
    for n in SENSEALGS if n != "DirectBackprop"])
def test_sensealgs_agree_on_rober(name):
    """Every continuous adjoint agrees with DirectBackprop (d/dlog k and d/du0) to 1e-6, far
    tighter than the FD reference allows; d/du0 meets its own FD reference."""
    assert rel_err(rober_rodas_gradient(name), rober_rodas_gradient("DirectBackprop")) < AGREE_TOL
    assert rel_err(rober_rodas_gradient(name)[3:], rober_u0_reference()) < GRAD_TOL


def test_batch_gradients_equal_member_gradients():
    """Two ROBER members with their own rate constants (p of shape (2, 3)) and a shared
    backward step: each member's gradient equals that of the member solved alone."""
    log_k = torch.tensor(ROBER_LOGK, dtype=F64) + torch.tensor(
        [[0.0, 0.0, 0.0], [0.2, -0.3, 0.1]], dtype=F64)
    weights = torch.tensor(ROBER_W)
    for sensealg in (GaussAdjoint(),):  # QuadratureAdjoint shares its per-member layout
        p = log_k.clone().requires_grad_(True)
        u0 = torch.tensor([ROBER_U0] * 2, dtype=F64)
        sol = ps.solve(ps.ODEProblem(robertson, u0, (0.0, ROBER_TS[-1]), p, batch_ndim=1),
                       ps.Rodas5P(), saveat=torch.tensor(ROBER_TS, dtype=F64),
                       rtol=ROBER_TOL[0], atol=ROBER_TOL[1], sensealg=sensealg)
        (g,) = torch.autograd.grad((sol.u * weights[:, None, :]).sum(), p)
        for i in range(2):
            q = log_k[i].clone().requires_grad_(True)
            alone = ps.solve(ps.ODEProblem(robertson, u0[i], (0.0, ROBER_TS[-1]), q),
                             ps.Rodas5P(), saveat=torch.tensor(ROBER_TS, dtype=F64),
                             rtol=ROBER_TOL[0], atol=ROBER_TOL[1], sensealg=sensealg)
            (g_alone,) = torch.autograd.grad((alone.u * weights).sum(), q)
            assert rel_err(g[i], g_alone) < AGREE_TOL, (type(sensealg).__name__, i)
        assert rel_err(g[0], rober_reference()) < GRAD_TOL


class VanDerPol(torch.nn.Module):
    """Van der Pol with mu an ``nn.Parameter``: its gradient reaches ``.grad``."""

    def __init__(self, mu: float):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.tensor(mu, dtype=F64))

    def forward(self, t, u, p=None):
        return van_der_pol(t, u, self.mu)


@pytest.mark.parametrize("sensealg", [
    GaussAdjoint(), pytest.param(ps.InterpolatingAdjoint(), marks=pytest.mark.slow)],
    ids=["Gauss", "Interpolating"])
def test_nn_module_parameters(sensealg):
    model = VanDerPol(VDP_MU)
    sol = ps.solve(ps.ODEProblem(model, torch.tensor(VDP_U0, dtype=F64), (0.0, VDP_TS[-1])),
                   ps.Rodas5P(), saveat=torch.tensor(VDP_TS, dtype=F64), rtol=VDP_TOL[0],
                   atol=VDP_TOL[1], sensealg=sensealg)
    (sol.u * torch.tensor(VDP_W)).sum().backward()
    assert rel_err(model.mu.grad, vdp_reference()) < GRAD_TOL


@pytest.mark.parametrize("sensealg", [
    GaussAdjoint(), pytest.param(ps.QuadratureAdjoint(), marks=pytest.mark.slow),
    ps.DirectBackprop()], ids=["Gauss", "Quadrature", "DirectBackprop"])
def test_final_state_loss_and_end_time(sensealg):
    """A loss on the final state only (saveat=[t1]) with the end time t1 a tensor: d/dlog k and
    d/dt1 against finite differences of SciPy solves."""
    t1_value = 0.7
    w = np.array([0.3, 2e4, -1.1])

    def loss_np(log_k, t1):
        y = radau(lambda t, y: robertson_np(t, y, log_k), ROBER_U0, t1, [t1])[-1]
        return float(w @ y)

    ref_k = central_differences(lambda x: loss_np(x, t1_value), np.array(ROBER_LOGK))
    ref_t1 = (loss_np(np.array(ROBER_LOGK), t1_value + 1e-5)
              - loss_np(np.array(ROBER_LOGK), t1_value - 1e-5)) / 2e-5
    log_k = torch.tensor(ROBER_LOGK, dtype=F64, requires_grad=True)
    t1 = torch.tensor(t1_value, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(robertson, torch.tensor(ROBER_U0, dtype=F64), (0.0, t1), log_k),
                   ps.Rodas5P(), saveat=t1.reshape(1), rtol=ROBER_TOL[0], atol=ROBER_TOL[1],
                   sensealg=sensealg)
    g_k, g_t1 = torch.autograd.grad((sol.u[-1] * torch.tensor(w)).sum(), (log_k, t1))
    assert rel_err(g_k, ref_k) < GRAD_TOL
    assert rel_err(g_t1, ref_t1) < GRAD_TOL


def test_backsolve_warns_on_a_stiff_problem():
    """BacksolveAdjoint re-integrates u backwards; on ROBER that diverges, and the gradient is
    garbage: the solve must say so instead of returning it silently."""
    log_k = torch.tensor(ROBER_LOGK, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(robertson, torch.tensor(ROBER_U0, dtype=F64), (0.0, 1.0),
                                 log_k), ps.Rodas5P(), saveat=torch.tensor([1.0], dtype=F64),
                   rtol=1e-6, atol=1e-10, sensealg=ps.BacksolveAdjoint(), max_steps=300)
    # either the backward solve fails outright, or its state ends far from the forward one
    with pytest.warns(RuntimeWarning, match=r"BacksolveAdjoint|adjoint \(backward\) solve"):
        torch.autograd.grad((sol.u * torch.tensor(ROBER_W[:1])).sum(), log_k)


# --------------------------------------------------------------------------------------------
# DirectBackprop: the exact gradient of the discrete solution
# --------------------------------------------------------------------------------------------


class FixedStep(AbstractController):
    """Never changes the step (with tolerances loose enough that every step is accepted, an
    adaptive method takes the same steps whatever the parameters)."""

    def init_state(self, like):
        return torch.ones_like(like)

    def adapt(self, h, errn, state, accept, order):
        return h, state


@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.Rosenbrock23(), ps.KenCarp4()],
                         ids=["Rodas5P", "Rosenbrock23", "KenCarp4"])
def test_direct_backprop_is_the_discrete_gradient(alg):
    """With fixed steps, DirectBackprop through an implicit method equals central finite
    differences of the very same discrete solution to 1e-7: a Rosenbrock step's result depends
    on its Jacobian, whose derivative with respect to p must flow too (a detached Jacobian
    misses it: ~1e-2 relative error here)."""
    ts = torch.tensor([0.004, 0.01], dtype=F64)

    def loss(log_k):
        sol = ps.solve(ps.ODEProblem(robertson, torch.tensor(ROBER_U0, dtype=F64), (0.0, 0.01),
                                     log_k), alg, saveat=ts, dt=2e-4, rtol=1e6, atol=1e6,
                       controller=FixedStep(), max_steps=200)
        assert sol.successful and sol.stats.nreject == 0
        return (sol.u * torch.tensor(ROBER_W[:2])).sum()

    log_k = torch.tensor(ROBER_LOGK, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(log_k), log_k)
    with torch.no_grad():
        fd = central_differences(lambda x: float(loss(torch.tensor(x))), np.array(ROBER_LOGK),
                                 step=1e-6)
    assert rel_err(g, fd) < 1e-7


# --------------------------------------------------------------------------------------------
# Checkpointing: what is stored does not grow with the number of steps
# --------------------------------------------------------------------------------------------


def test_checkpointing_holds_one_interval_of_dense_output(monkeypatch):
    """GaussAdjoint and InterpolatingAdjoint with checkpointing keep no forward dense output;
    the backward pass re-solves one checkpoint interval at a time, so the most steps held at
    once is about steps / checkpoints (here at most a third of the forward's steps)."""
    import pysciml.native.adjoint.backward as backward
    import pysciml.native.adjoint.function as function

    held = []
    forward_dense = []
    original = backward.integrate
    original_forward = function.integrate

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        if kwargs.get("dense") and result.dense is not None:
            held.append(result.dense.num_steps)
        return result

    def recording_forward(*args, **kwargs):
        forward_dense.append(kwargs.get("dense"))
        return original_forward(*args, **kwargs)

    monkeypatch.setattr(backward, "integrate", recording)
    monkeypatch.setattr(function, "integrate", recording_forward)
    for sensealg in (GaussAdjoint(checkpointing=True, checkpoints=7),
                     ps.InterpolatingAdjoint(checkpointing=True, checkpoints=7)):
        held.clear()
        forward_dense.clear()
        mu = torch.tensor(VDP_MU, dtype=F64, requires_grad=True)
        sol = ps.solve(ps.ODEProblem(van_der_pol, torch.tensor(VDP_U0, dtype=F64), (0.0, 3.0),
                                     mu), ps.Tsit5(), saveat=torch.tensor([3.0], dtype=F64),
                       rtol=1e-8, atol=1e-10, sensealg=sensealg)
        (g,) = torch.autograd.grad(sol.u.sum(), mu)
        assert forward_dense == [False]
        assert len(held) == 8  # one re-solve per checkpoint interval
        # 8 intervals of equal time, not of equal steps: Van der Pol's steps cluster, so the
        # largest interval holds up to ~1/4 of them; O(steps) storage would hold all
        assert max(held) <= sol.stats.naccept / 3, (held, sol.stats.naccept)
        assert sum(held) >= 0.8 * sol.stats.naccept  # the re-solves cover the whole span
        assert torch.isfinite(g)
