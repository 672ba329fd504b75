"""Learned 4DVar (Filoche et al. 2022): a network trained on the 4DVar cost from observations
only lowers that cost and moves towards the truth it never sees."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml import da


def lorenz96(t, u, p):
    return (torch.roll(u, -1, -1) - torch.roll(u, 2, -1)) * torch.roll(u, 1, -1) - u + 8.0


def _windows(n=12, W=48, K=4, T=0.15, sigma=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 8.0 + torch.randn(W, n, generator=g)
    x = ps.solve(ps.ODEProblem(lorenz96, x, (0.0, 2.0), batch_ndim=1), ps.Tsit5(),
                 saveat=[2.0], rtol=1e-8, atol=1e-8).u[-1]
    times = torch.linspace(0.0, T, K)
    truth = ps.solve(ps.ODEProblem(lorenz96, x, (0.0, T), batch_ndim=1), ps.Tsit5(),
                     saveat=times, rtol=1e-8, atol=1e-8).u
    y = truth + sigma * torch.randn(truth.shape, generator=g)
    y[torch.rand(truth.shape, generator=g) < 0.25] = float("nan")  # a quarter missing
    return x, times, y, sigma


@pytest.mark.parametrize("encoder", ["grid", "mlp"])
def test_short_learned_4dvar_training_lowers_the_cost(encoder):
    torch.manual_seed(0)
    x_true, times, y, sigma = _windows()
    W, n = x_true.shape
    K = len(times)
    prob = ps.ODEProblem(lorenz96, torch.zeros(W, n), (0.0, float(times[-1])), batch_ndim=1)
    obs = da.Observations(times, y, sigma ** 2)
    scale = float(torch.nanmean((y - torch.nanmean(y)) ** 2).sqrt())
    offset = float(torch.nanmean(y))
    if encoder == "grid":
        net = da.GridWindowEncoder(K, (n,), 1, hidden=16, depth=3, offset=offset, scale=scale)
    else:
        net = da.MLPWindowEncoder(K, (n,), (n,), hidden=64, depth=2, offset=offset,
                                  scale=scale)
    learned = da.LearnedFourDVar(net, prob, ps.RK4(), obs, solve_kwargs=dict(dt=0.05))
    idx = torch.arange(W)
    with torch.no_grad():
        before = float(learned.loss(idx))
        err_before = float((learned.initial_states() - x_true).square().mean().sqrt())
    hist = learned.fit(steps=60, batch_size=16, lr=3e-3,
                       generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        after = float(learned.loss(idx))
        err_after = float((learned.initial_states() - x_true).square().mean().sqrt())
    assert len(hist.loss) == 60
    assert after < 0.3 * before, (before, after)
    assert err_after < 0.5 * err_before, (err_before, err_after)


def test_network_output_warm_starts_4dvar():
    x_true, times, y, sigma = _windows(W=4)
    W, n = x_true.shape
    prob = ps.ODEProblem(lorenz96, torch.zeros(W, n), (0.0, float(times[-1])), batch_ndim=1)
    obs = da.Observations(times, y, sigma ** 2)
    fdv = da.FourDVar(prob, ps.RK4(), obs, solve_kwargs=dict(dt=0.05))
    cold = fdv.minimize(u0=torch.full((W, n), float(torch.nanmean(y))), max_iter=10)
    warm = fdv.minimize(u0=x_true + 0.1, max_iter=10)  # a good first guess, as a network gives
    assert float(warm.cost.total) < float(cold.cost.total)


def test_learned_bad_input():
    x_true, times, y, sigma = _windows(W=4)
    prob = ps.ODEProblem(lorenz96, torch.zeros(4, 12), (0.0, float(times[-1])))
    obs = da.Observations(times, y, sigma ** 2)
    net = da.GridWindowEncoder(len(times), (12,), 1, hidden=4, depth=2)
    with pytest.raises(ValueError, match="batch_ndim"):
        da.LearnedFourDVar(net, prob, ps.RK4(), obs, solve_kwargs=dict(dt=0.05))
    with pytest.raises(ValueError, match="values"):
        net(torch.zeros(3, 4, 12), torch.ones(3, 4, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="depth"):
        da.GridWindowEncoder(4, (12,), 1, depth=1)
    with pytest.raises(TypeError, match="net"):
        da.LearnedFourDVar("net", prob.remake(batch_ndim=1), ps.RK4(), obs)
