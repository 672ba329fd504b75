"""Gradients of every sensitivity algorithm against independent references.

References: central finite differences of SciPy DOP853 solves at rtol 1e-13 (never pysciml), with
step 1e-6, and for a linear non-autonomous problem the exact gradient of its closed-form
solution (torch autograd through the formula). pysciml solves at rtol 1e-10, atol 1e-12; the
gradient must agree to 1e-5 relative (in the max norm over all components). The sensealgs must
also agree with each other, more tightly.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import problems
import pytest
import torch
from problems import LOTKA_VOLTERRA, lotka_volterra, numpy_rhs, rel_err, scipy_reference

import pysciml as ps
from pysciml.sensealg import GaussAdjoint

F64 = torch.float64
SENSEALGS = [
    ps.DirectBackprop(),
    ps.BacksolveAdjoint(),
    ps.InterpolatingAdjoint(),
    ps.InterpolatingAdjoint(checkpointing=True),
    ps.InterpolatingAdjoint(checkpointing=True, checkpoints=5),
    ps.QuadratureAdjoint(),
    GaussAdjoint(),
]
SENSE_IDS = ["DirectBackprop", "Backsolve", "Interpolating", "Interpolating-ckpt",
             "Interpolating-ckpt5", "Quadrature", "Gauss"]
# one of each family (the checkpointed variants share the parameter handling of the others)
FAMILIES = [SENSEALGS[i] for i in (0, 1, 2, 5, 6)]
FAMILY_IDS = [SENSE_IDS[i] for i in (0, 1, 2, 5, 6)]
RTOL, ATOL = 1e-10, 1e-12
FD_STEP = 1e-6
GRAD_TOL = 1e-5  # against finite differences / closed forms
AGREE_TOL = 1e-7  # between sensealgs


# d loss / d x by central differences in float64
central_differences = functools.partial(problems.central_differences, step=FD_STEP)


# --------------------------------------------------------------------------------------------
# Lotka–Volterra: u0 (2), p (4), a weighted loss on 5 save times (t0 included)
# --------------------------------------------------------------------------------------------

LV_U0 = (1.0, 1.0)
LV_P = LOTKA_VOLTERRA.p
LV_TS = (0.0, 0.5, 1.0, 1.5, 2.0)
LV_W = np.random.default_rng(0).standard_normal((5, 2))  # every row of the loss matters
LV_W_END = np.array([[0.3, -0.7], [1.1, 0.4]])  # rows u(t0), u(t1) of a saveat=None solve


def lv_np(t, y, p):
    a, b, d, g = p
    return np.array([a * y[0] - b * y[0] * y[1], d * y[0] * y[1] - g * y[1]])


def lv_loss_np(theta, ts=LV_TS, W=LV_W) -> float:
    u0, p = theta[:2], theta[2:6]
    values = scipy_reference(lambda t, y: lv_np(t, y, p), u0, ts[0], np.asarray(ts))
    return float((values * W).sum())


@functools.cache
def lv_fd_saveat() -> np.ndarray:
    return central_differences(lv_loss_np, np.array(LV_U0 + LV_P))


@functools.cache
def lv_fd_endpoints(t0: float, t1: float) -> np.ndarray:
    """d/d(u0, p, t0, t1) of W_END · (u(t0), u(t1))."""
    def loss(theta):
        u0, p, a, b = theta[:2], theta[2:6], theta[6], theta[7]
        values = scipy_reference(lambda t, y: lv_np(t, y, p), u0, a, np.array([a, b]))
        return float((values * LV_W_END).sum())
    return central_differences(loss, np.array(LV_U0 + LV_P + (t0, t1)))


def lv_leaves():
    u0 = torch.tensor(LV_U0, dtype=F64, requires_grad=True)
    p = torch.tensor(LV_P, dtype=F64, requires_grad=True)
    return u0, p


def test_finite_difference_reference_is_converged():
    """The FD reference of the saveat loss does not change when the step is 10× larger: the
    reference is not dominated by truncation or by SciPy's solve error."""
    coarse = central_differences(lv_loss_np, np.array(LV_U0 + LV_P), step=1e-5)
    assert rel_err(coarse, lv_fd_saveat()) < 1e-6


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_lotka_volterra_saveat_loss(sensealg):
    """d/du0 and d/dp of a weighted sum over 5 save times (t0 included)."""
    u0, p = lv_leaves()
    ts = torch.tensor(LV_TS, dtype=F64)
    sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.Tsit5(), saveat=ts,
                   rtol=RTOL, atol=ATOL, sensealg=sensealg)
    loss = (sol.u * torch.tensor(LV_W)).sum()
    np.testing.assert_allclose(float(loss.detach()), lv_loss_np(np.array(LV_U0 + LV_P)), rtol=1e-8)
    gu0, gp = torch.autograd.grad(loss, (u0, p))
    assert rel_err(torch.cat([gu0, gp]), lv_fd_saveat()) < GRAD_TOL


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_lotka_volterra_final_state_and_time_span(sensealg):
    """saveat=None with t0 and t1 tensors requiring grad: d/d(u0, p, t0, t1) of a loss on the
    two rows u(t0) and u(t1)."""
    t0v, t1v = 0.2, 2.0
    u0, p = lv_leaves()
    t0 = torch.tensor(t0v, dtype=F64, requires_grad=True)
    t1 = torch.tensor(t1v, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (t0, t1), p), ps.Tsit5(), rtol=RTOL,
                   atol=ATOL, sensealg=sensealg)
    assert sol.u.shape == (2, 2)
    loss = (sol.u * torch.tensor(LV_W_END)).sum()
    grads = torch.autograd.grad(loss, (u0, p, t0, t1))
    got = torch.cat([g.reshape(-1) for g in grads])
    ref = lv_fd_endpoints(t0v, t1v)
    assert rel_err(got, ref) < GRAD_TOL
    # the time derivatives separately (they are small next to the others)
    assert rel_err(got[6:], ref[6:]) < GRAD_TOL


@pytest.mark.parametrize("sensealg", FAMILIES, ids=FAMILY_IDS)
def test_dict_parameters(sensealg):
    """p as a dict of 0-d tensors: each leaf gets the gradient its tensor component gets."""
    u0 = torch.tensor(LV_U0, dtype=F64, requires_grad=True)
    p = {k: torch.tensor(v, dtype=F64, requires_grad=True)
         for k, v in zip(["alpha", "beta", "delta", "gamma"], LV_P, strict=True)}
    sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.Tsit5(),
                   saveat=torch.tensor(LV_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                   sensealg=sensealg)
    loss = (sol.u * torch.tensor(LV_W)).sum()
    grads = torch.autograd.grad(loss, [u0, *p.values()])
    got = torch.cat([g.reshape(-1) for g in grads])
    assert rel_err(got, lv_fd_saveat()) < GRAD_TOL


BACK_TS = (2.0, 1.5, 1.0, 0.5, 0.0)
BACK_U = (0.8, 1.3)


@functools.cache
def backwards_fd() -> np.ndarray:
    def loss_np(theta):
        values = scipy_reference(lambda t, y: lv_np(t, y, theta[2:6]), theta[:2], 2.0,
                                 np.asarray(BACK_TS))
        return float((values * LV_W).sum())

    return central_differences(loss_np, np.array(BACK_U + LV_P))


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_backwards_in_time(sensealg):
    """tspan = (2, 0) with decreasing save times: d/du(2), d/dp against FD of SciPy solving
    backwards."""
    u0 = torch.tensor(BACK_U, dtype=F64, requires_grad=True)
    p = torch.tensor(LV_P, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (2.0, 0.0), p), ps.Tsit5(),
                   saveat=torch.tensor(BACK_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                   sensealg=sensealg)
    assert sol.successful
    loss = (sol.u * torch.tensor(LV_W)).sum()
    gu0, gp = torch.autograd.grad(loss, (u0, p))
    ref = backwards_fd()
    assert rel_err(gu0, ref[:2]) < GRAD_TOL, "d/du0"
    assert rel_err(gp, ref[2:]) < GRAD_TOL, "d/dp"


# --------------------------------------------------------------------------------------------
# A non-autonomous linear problem with a closed form: exact gradients
# --------------------------------------------------------------------------------------------


def forced(t, u, p):
    """u' = -k u + sin(w t), p = (k, w)."""
    k, w = p[..., 0:1], p[..., 1:2]
    return -k * u + torch.sin(w * t[..., None])


def forced_exact(t, t0, u0, p):
    """The closed-form solution of :func:`forced` (differentiable in every argument)."""
    k, w = p[0], p[1]
    decay = torch.exp(-k * (t - t0))

    def primitive(s):  # e^{k s}(k sin ws - w cos ws)/(k^2 + w^2), without the e^{k s}
        return (k * torch.sin(w * s) - w * torch.cos(w * s)) / (k ** 2 + w ** 2)

    return decay * u0 + primitive(t) - decay * primitive(t0)


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_non_autonomous_closed_form(sensealg):
    """d/d(u0, k, w, t0, t1, save times) of a weighted loss against autograd through the exact
    solution."""
    def leaves():
        return (torch.tensor([0.7], dtype=F64, requires_grad=True),
                torch.tensor([0.8, 2.5], dtype=F64, requires_grad=True),
                torch.tensor(0.1, dtype=F64, requires_grad=True),
                torch.tensor(3.0, dtype=F64, requires_grad=True),
                torch.tensor([0.6, 1.3, 2.2], dtype=F64, requires_grad=True))

    weights = torch.tensor([0.5, -1.2, 2.0, 0.9], dtype=F64)
    u0, p, t0, t1, inner = leaves()
    exact_u = torch.cat([forced_exact(inner, t0, u0, p), forced_exact(t1, t0, u0, p)])
    exact_loss = (exact_u * weights).sum()
    ref = torch.autograd.grad(exact_loss, (u0, p, t0, t1, inner))

    u0, p, t0, t1, inner = leaves()
    ts = torch.cat([inner, t1[None]])
    sol = ps.solve(ps.ODEProblem(forced, u0, (t0, t1), p), ps.Tsit5(), saveat=ts, rtol=RTOL,
                   atol=ATOL, sensealg=sensealg)
    loss = (sol.u[:, 0] * weights).sum()
    np.testing.assert_allclose(float(loss.detach()), float(exact_loss.detach()), rtol=1e-8)
    got = torch.autograd.grad(loss, (u0, p, t0, t1, inner), allow_unused=True)
    for name, g, r in zip(["u0", "p", "t0", "t1", "saveat"], got, ref, strict=True):
        assert g is not None, f"no gradient for {name}"
        assert rel_err(g, r) < GRAD_TOL, name


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_dense_output_gradient_is_right_or_refused(sensealg):
    """A loss that uses the dense output sol(t) as well as sol.u: the gradient must be the exact
    one, or the library must refuse loudly (an exception). Silently dropping the dense part of
    the loss would give a wrong gradient without notice."""
    def leaves():
        return (torch.tensor([0.7], dtype=F64, requires_grad=True),
                torch.tensor([0.8, 2.5], dtype=F64, requires_grad=True))

    tq = torch.tensor([0.4, 1.7, 2.9], dtype=F64)
    u0, p = leaves()
    t0 = torch.tensor(0.1, dtype=F64)
    exact = forced_exact(torch.tensor(3.0, dtype=F64), t0, u0, p).sum() + forced_exact(
        tq, t0, u0, p).sum()
    ref = torch.autograd.grad(exact, (u0, p))
    u0, p = leaves()
    sol = ps.solve(ps.ODEProblem(forced, u0, (0.1, 3.0), p), ps.Tsit5(), rtol=RTOL, atol=ATOL,
                   sensealg=sensealg)
    try:
        loss = sol.u[-1].sum() + sol(tq).sum()
        got = torch.autograd.grad(loss, (u0, p))
    except (RuntimeError, ValueError, NotImplementedError):
        return  # refused loudly: acceptable
    assert rel_err(torch.cat(got), torch.cat(ref)) < GRAD_TOL, (
        "the dense output's contribution to the gradient is missing or wrong")


# --------------------------------------------------------------------------------------------
# A batch with batched parameters: per-member gradients equal the members' alone
# --------------------------------------------------------------------------------------------

B_P = ((1.5, 1.0, 1.0, 3.0), (1.0, 0.5, 0.8, 2.0), (2.0, 1.2, 1.0, 1.0))
B_U0 = ((1.0, 1.0), (2.0, 0.5), (0.5, 1.5))
B_TS = (0.0, 0.7, 1.5)
B_W = np.random.default_rng(1).standard_normal((3, 3, 2))  # (S, B, N)


@functools.cache
def member_alone(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DirectBackprop gradients of member i's part of the loss, solved alone."""
    u0_i = torch.tensor(B_U0[i], dtype=F64, requires_grad=True)
    p_i = torch.tensor(B_P[i], dtype=F64, requires_grad=True)
    sol_i = ps.solve(ps.ODEProblem(lotka_volterra, u0_i, (0.0, 1.5), p_i), ps.Tsit5(),
                     saveat=torch.tensor(B_TS, dtype=F64), rtol=RTOL, atol=ATOL)
    loss_i = (sol_i.u * torch.tensor(B_W[:, i])).sum()
    return torch.autograd.grad(loss_i, (u0_i, p_i))


@functools.cache
def member_fd(i: int) -> np.ndarray:
    return central_differences(lambda th: lv_loss_np(th, ts=B_TS, W=B_W[:, i]),
                               np.array(B_U0[i] + B_P[i]))


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_batch_with_batched_parameters(sensealg):
    """3 members with their own u0 and p (3, 4): each member's gradient equals that of the
    member solved alone (DirectBackprop, whose agreement with every sensealg is tested
    separately), and member 1's meets finite differences."""
    u0 = torch.tensor(B_U0, dtype=F64, requires_grad=True)
    p = torch.tensor(B_P, dtype=F64, requires_grad=True)
    ts = torch.tensor(B_TS, dtype=F64)
    sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 1.5), p, batch_ndim=1),
                   ps.Tsit5(), saveat=ts, rtol=RTOL, atol=ATOL, sensealg=sensealg)
    loss = (sol.u * torch.tensor(B_W)).sum()
    gu0, gp = torch.autograd.grad(loss, (u0, p))
    # per-member stepping makes DirectBackprop's batch gradient that of each solve alone to
    # round-off; the adjoints integrate the batch's adjoint with one shared step
    tol = 1e-10 if isinstance(sensealg, ps.DirectBackprop) else AGREE_TOL
    for i in range(3):
        g_u0, g_p = member_alone(i)
        assert rel_err(gu0[i], g_u0) < tol and rel_err(gp[i], g_p) < tol, i
    assert rel_err(torch.cat([gu0[1], gp[1]]), member_fd(1)) < GRAD_TOL


_SHARED: dict = {}


def _shared_reference(grads):
    if "ref" not in _SHARED:
        _SHARED["ref"] = grads(ps.DirectBackprop())
    return _SHARED["ref"]


def _square(t, u, p):
    return p * u ** 2


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_batch_member_failure_leaves_the_others_gradients_exact(sensealg):
    """u' = p u^2 for u0 = (0.2, 0.3, 1.0), p = 1 on (0, 2): the third member blows up at t = 1
    and fails. A loss on the two members that succeeded must get their exact gradients
    (u = u0 / (1 - p u0 t)), as it does when they are solved alone — or the backward pass must
    refuse with an error that says a member failed. A warning with wrong numbers is not enough."""
    ts = torch.linspace(0, 2, 8, dtype=F64)
    u0 = torch.tensor([[0.2], [0.3], [1.0]], dtype=F64, requires_grad=True)
    p = torch.ones(3, 1, dtype=F64, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="1 of 3"):
        sol = ps.solve(ps.ODEProblem(_square, u0, (0.0, 2.0), p, batch_ndim=1), ps.Tsit5(),
                       saveat=ts, rtol=RTOL, atol=ATOL, sensealg=sensealg)
    assert sol.retcode[2] is not ps.ReturnCode.Success
    loss = sol.u[:, :2].sum()
    try:
        gu0, gp = torch.autograd.grad(loss, (u0, p))
    except (RuntimeError, ValueError) as err:
        message = str(err)
        assert any(word in message for word in ("fail", "Unstable", "DtLessThanMin",
                                                 "member")), f"unhelpful error: {err!r}"
        return
    a = torch.tensor([0.2, 0.3], dtype=F64)[:, None]
    denom = 1 - a * ts
    exact_u0 = (1 / denom ** 2).sum(1)
    exact_p = (a ** 2 * ts / denom ** 2).sum(1)
    assert rel_err(gu0[:2, 0], exact_u0) < GRAD_TOL, "d/du0 of the members that succeeded"
    assert rel_err(gp[:2, 0], exact_p) < GRAD_TOL, "d/dp of the members that succeeded"


@pytest.mark.parametrize("sensealg", SENSEALGS[1:4] + SENSEALGS[5:],
                         ids=SENSE_IDS[1:4] + SENSE_IDS[5:])
def test_batch_with_shared_parameters(sensealg):
    """p of shape (4,) shared by 3 members: its gradient is the sum over the members (compared
    with DirectBackprop)."""
    def grads(sa):
        u0 = torch.tensor(B_U0, dtype=F64, requires_grad=True)
        p = torch.tensor(LV_P, dtype=F64, requires_grad=True)
        sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 1.5), p, batch_ndim=1),
                       ps.Tsit5(), saveat=torch.tensor(B_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                       sensealg=sa)
        return torch.autograd.grad((sol.u * torch.tensor(B_W)).sum(), (u0, p))

    ref = _shared_reference(grads)
    got = grads(sensealg)
    assert rel_err(got[0], ref[0]) < AGREE_TOL and rel_err(got[1], ref[1]) < AGREE_TOL


# --------------------------------------------------------------------------------------------
# nn.Module right-hand side
# --------------------------------------------------------------------------------------------


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.l1 = torch.nn.Linear(2, 8, dtype=F64)
        self.l2 = torch.nn.Linear(8, 2, dtype=F64)
        with torch.no_grad():
            for prm in self.parameters():
                prm.copy_(0.6 * torch.randn(prm.shape, generator=gen, dtype=F64))

    def forward(self, t, u, p):
        return self.l2(torch.tanh(self.l1(u))) - 0.1 * u


MLP_TS = (0.0, 0.5, 1.0)
MLP_W = np.array([[0.2, 0.1], [1.0, -0.5], [-0.3, 0.8]])


@functools.cache
def mlp_reference():
    """(flat parameters, directions, FD directional derivatives) for the MLP's loss."""
    model = MLP()
    flat0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    u0 = np.array([0.5, -0.4])

    def loss(flat):
        m = MLP()
        torch.nn.utils.vector_to_parameters(torch.as_tensor(flat), m.parameters())
        values = scipy_reference(numpy_rhs(m, None), u0, 0.0, np.asarray(MLP_TS))
        return float((values * MLP_W).sum())

    gen = np.random.default_rng(4)
    directions = gen.standard_normal((3, flat0.numel()))
    fd = []
    for v in directions:
        fd.append((loss(flat0.numpy() + FD_STEP * v) - loss(flat0.numpy() - FD_STEP * v))
                  / (2 * FD_STEP))
    return flat0, directions, np.array(fd)


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=SENSE_IDS)
def test_nn_module_parameters(sensealg):
    """The gradient w.r.t. an MLP right-hand side's parameters: its projections on 3 random
    directions against FD of SciPy solves, and u0's gradient agrees with DirectBackprop."""
    flat0, directions, fd = mlp_reference()
    model = MLP()
    u0 = torch.tensor([0.5, -0.4], dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(model, u0, (0.0, 1.0)), ps.Tsit5(),
                   saveat=torch.tensor(MLP_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                   sensealg=sensealg)
    loss = (sol.u * torch.tensor(MLP_W)).sum()
    loss.backward()
    grad = torch.nn.utils.parameters_to_vector([q.grad for q in model.parameters()])
    projected = torch.tensor(directions) @ grad
    assert rel_err(projected, fd) < GRAD_TOL
    ref_grad, ref_u0_grad = mlp_direct_gradients()
    assert rel_err(grad, ref_grad) < AGREE_TOL
    assert rel_err(u0.grad, ref_u0_grad) < AGREE_TOL


@functools.cache
def mlp_direct_gradients():
    model = MLP()
    u0 = torch.tensor([0.5, -0.4], dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(model, u0, (0.0, 1.0)), ps.Tsit5(),
                   saveat=torch.tensor(MLP_TS, dtype=F64), rtol=RTOL, atol=ATOL)
    (sol.u * torch.tensor(MLP_W)).sum().backward()
    return (torch.nn.utils.parameters_to_vector([q.grad for q in model.parameters()]),
            u0.grad.clone())


# --------------------------------------------------------------------------------------------
# Agreement between sensealgs
# --------------------------------------------------------------------------------------------


@functools.cache
def lv_gradients(index: int) -> torch.Tensor:
    u0, p = lv_leaves()
    sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.Tsit5(),
                   saveat=torch.tensor(LV_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                   sensealg=SENSEALGS[index])
    return torch.cat(torch.autograd.grad((sol.u * torch.tensor(LV_W)).sum(), (u0, p)))


@pytest.mark.parametrize("index", range(1, len(SENSEALGS)), ids=SENSE_IDS[1:])
def test_sensealgs_agree(index):
    """Every continuous adjoint matches DirectBackprop to 1e-7 (FD checks allow 1e-5)."""
    assert rel_err(lv_gradients(index), lv_gradients(0)) < AGREE_TOL


@pytest.mark.parametrize("sensealg", [SENSEALGS[i] for i in (1, 2, 5, 6)],
                         ids=[SENSE_IDS[i] for i in (1, 2, 5, 6)])
def test_adjoint_tolerances_control_the_error(sensealg):
    """A forward solve at rtol 1e-10 with the adjoint's own rtol/atol: a loose adjoint (1e-4) is
    less accurate than a tight one (1e-10), and the tight one meets the FD reference."""
    errs = []
    for tol in (1e-4, 1e-10):
        sa = type(sensealg)(**{**sensealg.__dict__, "rtol": tol, "atol": tol * 1e-2})
        u0, p = lv_leaves()
        sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.Tsit5(),
                       saveat=torch.tensor(LV_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                       sensealg=sa)
        g = torch.cat(torch.autograd.grad((sol.u * torch.tensor(LV_W)).sum(), (u0, p)))
        errs.append(rel_err(g, lv_fd_saveat()))
    assert errs[1] < GRAD_TOL
    assert errs[1] < errs[0]


def test_gradient_with_respect_to_only_some_inputs():
    """Only p requires grad (u0 does not): the adjoint still returns d/dp, and u0 has none."""
    u0 = torch.tensor(LV_U0, dtype=F64)
    p = torch.tensor(LV_P, dtype=F64, requires_grad=True)
    for sa in (ps.InterpolatingAdjoint(), ps.QuadratureAdjoint()):
        sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.Tsit5(),
                       saveat=torch.tensor(LV_TS, dtype=F64), rtol=RTOL, atol=ATOL,
                       sensealg=sa)
        (g,) = torch.autograd.grad((sol.u * torch.tensor(LV_W)).sum(), (p,))
        assert rel_err(g, lv_fd_saveat()[2:]) < GRAD_TOL
    assert u0.grad is None


@pytest.mark.parametrize("sensealg", SENSEALGS[1:], ids=SENSE_IDS[1:])
def test_time_gradients_cost_calls_only_when_asked_for(sensealg):
    """dL/dt0 and dL/ds_k cost one call of f per time: a backward pass with no time requiring
    grad makes exactly len(ts) + 1 fewer calls, and gives the same parameter gradient."""
    calls = []

    def counted(t, u, p):
        calls.append(1)
        return lotka_volterra(t, u, p)

    grads, backward_calls = [], []
    for timed in (False, True):
        u0, p = lv_leaves()
        t0 = torch.tensor(0.0, dtype=F64, requires_grad=timed)
        ts = torch.tensor(LV_TS, dtype=F64, requires_grad=timed)
        sol = ps.solve(ps.ODEProblem(counted, u0, (t0, 2.0), p), ps.Tsit5(), saveat=ts,
                       rtol=RTOL, atol=ATOL, sensealg=sensealg)
        loss = (sol.u * torch.tensor(LV_W)).sum()
        calls.clear()
        inputs = (u0, p, t0, ts) if timed else (u0, p)
        grads.append(torch.autograd.grad(loss, inputs))
        backward_calls.append(len(calls))
    assert backward_calls[1] - backward_calls[0] == len(LV_TS) + 1
    for without, with_times in zip(grads[0], grads[1][:2]):
        torch.testing.assert_close(without, with_times, rtol=1e-12, atol=1e-12)
    assert rel_err(torch.cat(grads[0]), lv_fd_saveat()) < GRAD_TOL


def test_fixed_step_method_gradients():
    """RK4 with dt = 0.02: DirectBackprop gives the gradient of the discrete solution, and the
    adjoints (with the same fixed step) agree with the FD reference to the method's accuracy."""
    for sa in (ps.DirectBackprop(), ps.InterpolatingAdjoint(), ps.BacksolveAdjoint()):
        u0, p = lv_leaves()
        sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.RK4(), dt=0.02,
                       saveat=torch.tensor(LV_TS, dtype=F64), sensealg=sa)
        g = torch.cat(torch.autograd.grad((sol.u * torch.tensor(LV_W)).sum(), (u0, p)))
        assert rel_err(g, lv_fd_saveat()) < 1e-5, repr(sa)


def test_second_solve_reuses_nothing():
    """Two backward passes through two solves give the same gradient (no state kept in the
    sensealg objects between solves)."""
    sa = ps.InterpolatingAdjoint(checkpointing=True, checkpoints=5)
    results = []
    for _ in range(2):
        u0, p = lv_leaves()
        sol = ps.solve(ps.ODEProblem(lotka_volterra, u0, (0.0, 2.0), p), ps.Tsit5(),
                       saveat=torch.tensor(LV_TS, dtype=F64), rtol=1e-6, atol=1e-8,
                       sensealg=sa)
        results.append(torch.cat(torch.autograd.grad((sol.u * torch.tensor(LV_W)).sum(),
                                                      (u0, p))))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
    assert math.isfinite(float(results[0].sum()))
