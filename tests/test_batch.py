"""Batches: each member takes its own steps, so a batch equals its members solved one by one.

With per-member step sizes (the default), a member's step sequence in a batch is the one it takes
alone, so the values agree to round-off (1e-12); the work counters add up member by member.
A failing member stops alone (its rows become NaN) and the others succeed unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from problems import KEPLER, lotka_volterra, scipy_reference

import pysciml as ps

ADAPTIVE = [ps.Tsit5(), ps.DP5(), ps.Vern7()]
IDS = [a.name for a in ADAPTIVE]

F64 = torch.float64  # module constants are built at import, before the float64 fixture runs
P_BATCH = torch.tensor([[1.5, 1.0, 1.0, 3.0], [1.0, 0.5, 0.8, 2.0], [2.0, 1.2, 1.0, 1.0]],
                       dtype=F64)
U0_BATCH = torch.tensor([[1.0, 1.0], [2.0, 0.5], [0.5, 1.5]], dtype=F64)
TS = torch.linspace(0, 10, 11, dtype=F64)


def solo(prob_f, u0, tspan, p, alg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ps.solve(ps.ODEProblem(prob_f, u0, tspan, p), alg, **kw)


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_batch_with_batched_parameters_equals_members_alone(alg):
    """Lotka–Volterra, 3 members with their own u0 and p of shape (3, 4)."""
    kw = dict(saveat=TS, rtol=1e-8, atol=1e-10)
    prob = ps.ODEProblem(lotka_volterra, U0_BATCH, (0.0, 10.0), P_BATCH, batch_ndim=1)
    sol = ps.solve(prob, alg, **kw)
    assert sol.u.shape == (11, 3, 2)
    assert sol.status.shape == (3,)
    assert list(sol.retcode) == [ps.ReturnCode.Success] * 3
    alone = [solo(lotka_volterra, U0_BATCH[i], (0.0, 10.0), P_BATCH[i], alg, **kw)
             for i in range(3)]
    for i, s in enumerate(alone):
        torch.testing.assert_close(sol.u[:, i], s.u, rtol=1e-12, atol=1e-12)
        ref = scipy_reference(lambda t, y, _p=P_BATCH[i]: lotka_volterra(
            torch.tensor(t), torch.from_numpy(y), _p).numpy(), U0_BATCH[i].numpy(), 0.0,
            TS.numpy())
        assert np.abs(sol.u[:, i].numpy() - ref).max() < 1e-5
    # the counters add up member by member; nf counts batched calls of f
    assert sol.stats.naccept == sum(s.stats.naccept for s in alone)
    assert sol.stats.nreject == sum(s.stats.nreject for s in alone)
    assert sol.stats.nsteps == max(s.stats.nsteps for s in alone)
    if alg.tableau.fsal:
        assert sol.stats.nf == max(s.stats.nf for s in alone)
    else:  # Vern7's lazy interpolation stages run when any member crosses a save time
        assert sol.stats.nf >= max(s.stats.nf for s in alone)
    # the members really took different numbers of steps
    assert len({s.stats.naccept for s in alone}) > 1


def _lv_time_dependent(t, u, p):
    """Lotka–Volterra with a seasonal forcing of the prey growth, so f depends on each member's
    own time t (shape batch_shape)."""
    season = 1 + 0.3 * torch.sin(t)[..., None]
    return lotka_volterra(t, u, p) * torch.cat([season, torch.ones_like(season)], -1)


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_batch_ndim_2(alg):
    """batch_ndim=2: u0 of shape (2, 3, 2), p of shape (2, 3, 4), a time-dependent f that
    receives t of shape (2, 3); each member equals its solve alone, including dense output."""
    gen = torch.Generator().manual_seed(0)
    u0 = 0.5 + torch.rand(2, 3, 2, generator=gen)
    p = P_BATCH[None].expand(2, 3, 4) * (0.8 + 0.4 * torch.rand(2, 3, 1, generator=gen))
    seen = []

    def f(t, u, p):
        seen.append(t.shape)
        return _lv_time_dependent(t, u, p)

    prob = ps.ODEProblem(f, u0, (0.0, 5.0), p, batch_ndim=2)
    sol = ps.solve(prob, alg, rtol=1e-8, atol=1e-10)
    assert sol.u.shape == (2, 2, 3, 2)
    assert sol.status.shape == (2, 3) and sol.retcode.shape == (2, 3)
    assert set(seen) == {torch.Size([2, 3])}
    tq = torch.linspace(0, 5, 17)
    dense = sol(tq)
    assert dense.shape == (17, 2, 3, 2)
    for i in range(2):
        for j in range(3):
            s = solo(_lv_time_dependent, u0[i, j], (0.0, 5.0), p[i, j], alg, rtol=1e-8,
                     atol=1e-10)
            torch.testing.assert_close(sol.u[:, i, j], s.u, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(dense[:, i, j], s(tq), rtol=1e-12, atol=1e-12)


def _square(t, u, p):
    return u ** 2


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_one_member_blows_up(alg):
    """u' = u^2 with u0 = (0.2, 0.3, 1.0) on (0, 2): the third member blows up at t = 1 and fails
    (DtLessThanMin or Unstable) with NaN rows after t = 1; the others succeed and match the exact
    solution u0 / (1 - u0 t) and their solves alone."""
    u0 = torch.tensor([[0.2], [0.3], [1.0]])
    ts = torch.linspace(0, 2, 8)  # avoids t = 1, where the third member is infinite
    prob = ps.ODEProblem(_square, u0, (0.0, 2.0), batch_ndim=1)
    kw = dict(saveat=ts, rtol=1e-6, atol=1e-8)
    with pytest.warns(RuntimeWarning, match="1 of 3 batch members"):
        sol = ps.solve(prob, alg, **kw)
    codes = sol.retcode
    assert codes[0] == codes[1] == ps.ReturnCode.Success
    assert codes[2] in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable)
    assert not sol.successful
    assert sol.status.tolist() == [int(c) for c in codes]
    exact = u0[:2, 0] / (1 - u0[:2, 0] * ts[:, None])
    torch.testing.assert_close(sol.u[:, :2, 0], exact, rtol=1e-4, atol=0)
    before = ts < 1
    assert torch.isfinite(sol.u[before, 2]).all()
    assert torch.isnan(sol.u[~before, 2]).all()
    torch.testing.assert_close(sol.u[before, 2, 0], 1 / (1 - ts[before]), rtol=1e-4, atol=0)
    assert float(sol.t_end[2]) == pytest.approx(1.0, abs=1e-3)
    for i in range(3):
        s = solo(_square, u0[i], (0.0, 2.0), None, alg, **kw)
        assert s.retcode == codes[i]
        torch.testing.assert_close(sol.u[:, i], s.u, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_failed_member_dense_output_is_nan_after_failure():
    u0 = torch.tensor([[0.2], [1.0]])
    prob = ps.ODEProblem(_square, u0, (0.0, 2.0), batch_ndim=1)
    with pytest.warns(RuntimeWarning):
        sol = ps.solve(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8)
    values = sol(torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(values[:, 0, 0], 0.2 / (1 - 0.2 * torch.tensor([0.5, 1.5])),
                               rtol=1e-4, atol=0)
    torch.testing.assert_close(values[0, 1, 0], torch.tensor(2.0), rtol=1e-4, atol=0)
    assert torch.isnan(values[1, 1]).all()


@pytest.mark.parametrize("alg", ADAPTIVE, ids=IDS)
def test_shared_step(alg):
    """shared_step=True: one step sequence for all (accepted counts are multiples of B, the
    same number of loop iterations for everyone), values within tolerance of the reference and of
    the per-member solve."""
    prob = ps.ODEProblem(lotka_volterra, U0_BATCH, (0.0, 10.0), P_BATCH, batch_ndim=1)
    rtol = 1e-9
    shared = ps.solve(prob, alg, saveat=TS, rtol=rtol, atol=rtol / 100, shared_step=True)
    own = ps.solve(prob, alg, saveat=TS, rtol=rtol, atol=rtol / 100)
    assert shared.successful
    assert shared.stats.naccept % 3 == 0 and shared.stats.nreject % 3 == 0
    assert shared.stats.naccept // 3 + shared.stats.nreject // 3 == shared.stats.nsteps
    # the shared step is the smallest member's, so it needs at least the most steps of any
    assert shared.stats.naccept // 3 >= own.stats.naccept // 3
    for i in range(3):
        ref = scipy_reference(lambda t, y, _p=P_BATCH[i]: lotka_volterra(
            torch.tensor(t), torch.from_numpy(y), _p).numpy(), U0_BATCH[i].numpy(), 0.0,
            TS.numpy())
        scale = 1 + np.abs(ref).max()
        assert np.abs(shared.u[:, i].numpy() - ref).max() < 100 * rtol * scale
    torch.testing.assert_close(shared.u, own.u, rtol=0, atol=1e-6)


def test_shared_step_identical_members_equal_solo():
    """With identical members, the shared step sequence is each member's own: equal to a solve
    of one member to round-off."""
    u0 = torch.tensor(KEPLER.u0).expand(4, 4).clone()
    prob = ps.ODEProblem(KEPLER.f, u0, (0.0, 6.0), batch_ndim=1)
    ts = torch.linspace(0, 6, 7)
    shared = ps.solve(prob, ps.Tsit5(), saveat=ts, rtol=1e-8, atol=1e-10, shared_step=True)
    one = ps.solve(KEPLER.ode_problem(tspan=(0.0, 6.0)), ps.Tsit5(), saveat=ts, rtol=1e-8,
                   atol=1e-10)
    for i in range(4):
        torch.testing.assert_close(shared.u[:, i], one.u, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alg", [ps.Euler(), ps.RK4()], ids=["Euler", "RK4"])
def test_fixed_step_batch(alg):
    """Fixed-step methods on a batch: the same as each member alone."""
    prob = ps.ODEProblem(lotka_volterra, U0_BATCH, (0.0, 2.0), P_BATCH, batch_ndim=1)
    sol = ps.solve(prob, alg, dt=0.01, saveat=torch.linspace(0, 2, 5))
    for i in range(3):
        s = solo(lotka_volterra, U0_BATCH[i], (0.0, 2.0), P_BATCH[i], alg, dt=0.01,
                 saveat=torch.linspace(0, 2, 5))
        torch.testing.assert_close(sol.u[:, i], s.u, rtol=1e-12, atol=1e-12)


def test_batch_of_members_with_different_scales():
    """Members whose solutions differ by 1e6 in size: the error norm is per member, so the small
    one keeps its relative accuracy."""
    u0 = torch.tensor([[1.0, 0.0], [1e-6, 0.0]])

    def f(t, u, p):
        x, v = u[..., 0:1], u[..., 1:2]
        return torch.cat([v, -4 * x], -1)

    ts = torch.linspace(0, 10, 11)
    prob = ps.ODEProblem(f, u0, (0.0, 10.0), batch_ndim=1)
    sol = ps.solve(prob, ps.Tsit5(), saveat=ts, rtol=1e-8, atol=1e-20)
    exact = torch.cos(2 * ts)
    torch.testing.assert_close(sol.u[:, 0, 0], exact, rtol=0, atol=1e-6)
    torch.testing.assert_close(sol.u[:, 1, 0] * 1e6, exact, rtol=0, atol=1e-6)
