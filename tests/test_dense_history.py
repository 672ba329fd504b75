"""The dense output's record of steps (:class:`pysciml.native.interpolation.DenseHistory`):
its two ways to answer a query, and the polynomial form of the Runge–Kutta interpolants.

* ``interpolation_coefficients`` (the interpolant as :math:`\\sum_j C_j \\theta^j`) must give
  what ``interpolate`` gives, for every tableau family that provides it;
* a sequence of one-time queries (the adjoint's pattern: the cached step, re-searched when the
  query leaves it, where all members share their steps; a search per query where they do not)
  must equal one query of all the times (the search), and both the analytic solution, for
  members with different steps and for one step sequence, forwards and backwards in time, and
  for a family without coefficients (Rosenbrock).
"""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps
from pysciml.native.interpolation import DenseHistory

POLYNOMIAL = [ps.Tsit5(), ps.DP5(), ps.Vern7(), ps.TRBDF2(), ps.KenCarp4(), ps.Kvaerno5()]


@pytest.mark.parametrize("alg", POLYNOMIAL, ids=lambda a: a.name)
def test_coefficients_reproduce_the_interpolant(alg):
    stepper = alg.stepper()
    gen = torch.Generator().manual_seed(0)
    B, N = 3, 4
    tab = stepper.tableau.tensors(torch.float64, torch.device("cpu"))
    s = tab.interp.shape[0]
    u = torch.randn(B, N, generator=gen, dtype=torch.float64)
    h = torch.tensor([0.3, -0.1, 0.0], dtype=torch.float64)
    stages = torch.randn(s, B, N, generator=gen, dtype=torch.float64)
    coefficients = stepper.interpolation_coefficients(u, h, stages)
    assert coefficients.shape == (B, tab.interp.shape[1] + 1, N)
    for theta in (0.0, 0.21, 0.5, 0.93, 1.0):
        th = torch.full((B,), theta, dtype=torch.float64)
        expected = stepper.interpolate(u, h, stages, th)
        powers = th[:, None] ** torch.arange(coefficients.shape[1], dtype=torch.float64)
        got = torch.einsum("bj,bjn->bn", powers, coefficients)
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-13)
    # a member that did not move (h = 0) stays at u for every theta
    torch.testing.assert_close(coefficients[2, 0], u[2])
    assert coefficients[2, 1:].abs().max() == 0


def _decay(t, u, p):
    return -p[:, None] * u


RATES = torch.tensor([0.5, 1.0, 3.0, 7.0], dtype=torch.float64)


def _history(alg, t0: float, t1: float, batch_ndim: int = 1
             ) -> tuple[DenseHistory, torch.Tensor]:
    """A solve of u' = -k u with dense output: per member (each rate takes its own steps), or
    the four rows as one state (one step sequence)."""
    u0 = torch.ones(4, 2, dtype=torch.float64) * torch.tensor([1.0, -2.0], dtype=torch.float64)
    prob = ps.ODEProblem(_decay, u0, (t0, t1), RATES, batch_ndim=batch_ndim)
    sol = ps.solve(prob, alg, rtol=1e-9, atol=1e-12, dense=True)
    assert sol.successful
    return sol.dense, u0


def _exact(u0: torch.Tensor, t0: float, t: torch.Tensor) -> torch.Tensor:
    return u0[None] * torch.exp(-RATES[None, :, None] * (t[:, None, None] - t0))


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Vern7(), ps.KenCarp4(), ps.Rodas5P()],
                         ids=lambda a: a.name)
@pytest.mark.parametrize("span", [(0.0, 2.0), (2.0, 0.0)], ids=["forward", "backward"])
@pytest.mark.parametrize("batch_ndim", [1, 0], ids=["per-member", "one-state"])
def test_one_time_queries_equal_the_search_and_the_solution(alg, span, batch_ndim):
    history, u0 = _history(alg, *span, batch_ndim)
    assert isinstance(history, DenseHistory)
    t0, t1 = span
    # the adjoint's pattern: from the end back to the start, several queries per step
    times = torch.linspace(t1, t0, 301, dtype=torch.float64)
    one_by_one = torch.cat([history.evaluate(t.reshape(1)) for t in times])
    # members with steps of their own search every query; one step sequence reuses its step
    assert (history._last is not None) == (batch_ndim == 0)
    all_at_once = history.evaluate(times)
    torch.testing.assert_close(one_by_one, all_at_once, rtol=1e-13, atol=1e-15)
    exact = _exact(u0, t0, times).reshape(one_by_one.shape)  # (Q, B, N) flattened
    assert float(((one_by_one - exact).abs() / exact.abs().clamp_min(1.0)).max()) < 1e-6
    # beyond the span: NaN, also after a cached step was used
    outside = torch.tensor([t1 + math.copysign(0.5, t1 - t0)], dtype=torch.float64)
    assert torch.isnan(history.evaluate(outside)).all()
    # a caller that masks failed members itself (the adjoint) gets the nearest piece instead:
    # just past the end, the last piece's polynomial continues the solution
    past = torch.tensor([t1 + math.copysign(1e-9, t1 - t0)], dtype=torch.float64)
    torch.testing.assert_close(history.evaluate(past, outside="extrapolate"),
                               all_at_once[:1], rtol=1e-8, atol=0)
    inside = history.evaluate(times[:1])
    # t1 ends one step and starts the zero-length pieces of members that finished earlier: the
    # cached step evaluates its polynomial at theta = 1, the search may take the next piece's
    # u_end; the two agree to the rounding of sum_j C_j (large, cancelling terms for Vern7)
    torch.testing.assert_close(inside, all_at_once[:1], rtol=1e-12, atol=1e-15)
