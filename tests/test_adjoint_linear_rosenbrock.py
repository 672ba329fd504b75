"""The per-member adjoint's backward step and quadrature, checked against independent paths.

* ``LinearAdjointRosenbrock`` (the Rosenbrock step of the linear adjoint ODE from the forward
  Jacobians at the step's times) against the plain Rosenbrock step applied to the adjoint
  right-hand side (one vector–Jacobian product per stage, exact time derivative by autograd):
  the same step, computed another way; and its fallback when ``f`` does not broadcast.
* ``GaussIntegratingStepper`` integrating every step at once and in batches: the same sum.
* Gradients through a non-autonomous stiff problem against central finite differences of
  SciPy ``Radau`` solves at rtol 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml.native.adjoint.equations import AdjointEquations, AdjointStateRHS, ParameterSet
from pysciml.native.adjoint.linear_rosenbrock import LinearAdjointRosenbrock
from pysciml.native.adjoint.quadrature import GaussIntegratingStepper
from pysciml.native.integrate import integrate
from pysciml.native.rosenbrock import Rosenbrock
from pysciml.native.rosenbrock_tableaus import RODAS5P
from pysciml.native.stepper import CountedRHS

P0 = [0.04, 3e3, 1e2]


def kinetics(t, u, p):
    """Robertson-like kinetics with a time-varying first rate ``p0 (1 + sin t / 2)``: stiff and
    non-autonomous. Broadcasts over leading dimensions of ``t`` ``(*lead, B)`` and ``u``."""
    a = p[0] * (1 + 0.5 * torch.sin(t))[..., None]
    y1, y2, y3 = u[..., 0:1], u[..., 1:2], u[..., 2:3]
    return torch.cat([-a * y1 + p[2] * y2 * y3, a * y1 - p[2] * y2 * y3 - p[1] * y2 ** 2,
                      p[1] * y2 ** 2], -1)


def kinetics_scalar_time(t, u, p):
    """The same, reading ``t`` as one number (its first element): right for one member (and
    whenever ``t`` holds one time), wrong for a stacked call with a different time per copy."""
    return kinetics(t.reshape(-1)[0].expand(t.shape), u, p)


def forward_history(f, p, B=2, t1=2.0):
    u0 = torch.tensor([[1.0, 0.0, 0.0], [0.8, 1e-4, 0.2]])[:B]
    res = integrate(Rosenbrock(RODAS5P), lambda t, y: f(t, y, p), torch.tensor(0.0),
                    torch.tensor(t1), u0, ts=torch.tensor([t1]), rtol=1e-10, atol=1e-12,
                    dense=True)
    return res.dense


def adjoint_parts(f, p, B=2):
    history = forward_history(f, p, B)
    eq = AdjointEquations(lambda t, y, q: f(t, y, q), ParameterSet.of(p, []), B, 3)
    rhs = AdjointStateRHS(eq, lambda t: history.evaluate(t)[0])
    return history, eq, rhs


@pytest.mark.parametrize("h", [-0.3, -1.2, -1e-3])
def test_linear_step_is_the_rosenbrock_step_of_the_adjoint(h):
    p = torch.tensor(P0)
    history, eq, rhs = adjoint_parts(kinetics, p)
    t = torch.tensor([1.7, 1.7])
    lam = torch.tensor([[1.0, -2.0, 0.5], [0.3, 4.0, -1.0]])
    hh = torch.tensor([h, h])
    generic = Rosenbrock(RODAS5P).step(CountedRHS(rhs), t, lam, hh, None)
    linear = LinearAdjointRosenbrock(Rosenbrock(RODAS5P), eq, history.evaluate).step(
        CountedRHS(rhs), t, lam, hh, None)
    assert eq.stacked_adjoint_jacobian is True
    # the same step without the time-derivative term: what a wrong dA/dt would look like
    frozen = CountedRHS(rhs)
    frozen.autonomous = True
    no_t = Rosenbrock(RODAS5P).step(frozen, t, lam, hh, None)
    gap = (linear.u_new - generic.u_new).abs().max()
    t_term = (no_t.u_new - generic.u_new).abs().max()
    assert t_term > 1e3 * (1e-7 * t_term + 1e-13 * lam.abs().max())  # it can see dA/dt
    assert gap <= 1e-7 * t_term + 1e-13 * lam.abs().max()
    assert (linear.err - generic.err).abs().max() <= 1e-7 * t_term + 1e-13 * lam.abs().max()
    torch.testing.assert_close(linear.stages, generic.stages, rtol=1e-8,
                               atol=1e-10 * float(generic.stages.abs().max()))


def test_linear_step_falls_back_when_f_reads_one_time():
    p = torch.tensor(P0)
    history, eq, rhs = adjoint_parts(kinetics_scalar_time, p, B=1)
    t = torch.tensor([1.7])
    lam = torch.tensor([[1.0, -2.0, 0.5]])
    hh = torch.tensor([-0.5])
    generic = Rosenbrock(RODAS5P).step(CountedRHS(rhs), t, lam, hh, None)
    linear = LinearAdjointRosenbrock(Rosenbrock(RODAS5P), eq, history.evaluate).step(
        CountedRHS(rhs), t, lam, hh, None)
    assert eq.stacked_adjoint_jacobian is False
    torch.testing.assert_close(linear.u_new, generic.u_new, rtol=0, atol=0)


def test_linear_step_needs_a_first_stage_at_the_step_start():
    # no Rosenbrock tableau with c[0] != 0 validates; a stand-in carries one
    stand_in = type("S", (), {"tableau": type("T", (), {"c": (0.5, 1.0)})()})()
    with pytest.raises(ValueError, match="inner"):
        LinearAdjointRosenbrock(stand_in, None, None)


@pytest.mark.parametrize("batch", [1, 4])
def test_gauss_batches_sum_to_the_same_integral(batch):
    p = torch.tensor(P0)
    history, eq, rhs = adjoint_parts(kinetics, p)
    lam0 = torch.tensor([[1.0, -2.0, 0.5], [0.3, 4.0, -1.0]])
    totals = []
    for size in (batch, 10_000):
        stepper = GaussIntegratingStepper(Rosenbrock(RODAS5P), eq, history.evaluate, 3,
                                          torch.zeros(3), batch=size)
        res = integrate(stepper, rhs, torch.tensor(2.0), torch.tensor(0.0), lam0,
                        ts=torch.tensor([0.0]), rtol=1e-8, atol=1e-10, shared_step=True)
        assert res.stats.naccept > 2 * 4
        totals.append(stepper.total)
    torch.testing.assert_close(totals[0], totals[1], rtol=1e-13, atol=0)
    assert totals[0].abs().max() > 0
    with pytest.raises(ValueError, match="batch"):
        GaussIntegratingStepper(Rosenbrock(RODAS5P), eq, history.evaluate, 3, torch.zeros(3),
                                batch=0)


def _radau_loss(p, ts, weights):
    def fun(t, y):
        a = p[0] * (1 + 0.5 * np.sin(t))
        return [-a * y[0] + p[2] * y[1] * y[2], a * y[0] - p[2] * y[1] * y[2] - p[1] * y[1] ** 2,
                p[1] * y[1] ** 2]
    r = solve_ivp(fun, (0.0, float(ts[-1])), [1.0, 0.0, 0.0], method="Radau", t_eval=ts,
                  rtol=1e-12, atol=1e-16)
    assert r.status == 0, r.message
    return float((r.y.T * weights).sum())


@pytest.mark.parametrize("sensealg", [ps.GaussAdjoint(), ps.QuadratureAdjoint()],
                         ids=["Gauss", "Quadrature"])
@pytest.mark.parametrize("f", [kinetics, kinetics_scalar_time], ids=["stacked", "fallback"])
def test_gradient_with_observations_against_finite_differences(sensealg, f):
    """Observations at many times (a jump of the adjoint state at each), a weight that excites
    the fast mode: the case the linear step is for."""
    ts = np.logspace(-3, 1, 8)
    weights = np.array([1.0, 1e2, 1.0])
    p0 = np.array(P0)
    p = torch.tensor(p0, requires_grad=True)
    prob = ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0]), (0.0, float(ts[-1])), p)
    sol = ps.solve(prob, ps.Rodas5P(), saveat=torch.tensor(ts), rtol=1e-9, atol=1e-12,
                   sensealg=sensealg)
    (g,) = torch.autograd.grad((sol.u * torch.tensor(weights)).sum(), p)
    step = 1e-6
    fd = np.array([(_radau_loss(p0 * (1 + step * e), ts, weights)
                    - _radau_loss(p0 * (1 - step * e), ts, weights)) / (2 * step * p0 @ e)
                   for e in np.eye(3)])
    err = np.abs(g.numpy() - fd) / np.abs(fd).max()
    assert err.max() <= 1e-5, (g.numpy(), fd)
