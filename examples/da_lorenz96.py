r"""4DVar and learned 4DVar on Lorenz-96 (N = 40, F = 8).

Truth: windows of length ``--window`` (default 0.4 time units, about 0.7 Lyapunov times) cut
from independent trajectories on the attractor. Observations every 0.05 time units, each
component observed with probability ``fraction`` (independently per time and window; NaN
elsewhere) with Gaussian noise of standard deviation ``sigma``. For each (sigma, fraction):

* **4DVar**: strong-constraint 4DVar per window (L-BFGS, strong-Wolfe line search), from the
  first guess "observations at t0 where observed, the background elsewhere";
* **learned**: a convolutional network (``pysciml.da.GridWindowEncoder``) mapping the window's
  observations to its initial state, trained on the 4DVar cost of ``--train-windows`` *other*
  windows per observing system — from observations only, never the truth (Filoche et al. 2022,
  arXiv:2211.09741); one network serves every (sigma, fraction);
* **learned + 4DVar**: 4DVar warm-started from the network's output.

Both costs use the same climatological background, estimated from the observations (mean and
variance of all observed values, the noise variance removed), so no method sees the truth.
Reported: analysis RMSE against the truth at the window start (x0) and end (the analysed
trajectory at t = window), the final 4DVar cost per window, and wall time per window (the
network's training time is reported apart). Writes ``<out>/da_lorenz96.{md,json,png}``.

    python examples/da_lorenz96.py                      # ~2-3 min on 2 CPU cores
    python examples/da_lorenz96.py --noise 0.25,0.5,1 --fractions 0.25,0.5,0.75,1 \
        --train-windows 512 --steps 5000 --test-windows 64     # the bigger study
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import pysciml as ps
from pysciml import da
from pysciml.physics import Lorenz96
from pysciml.train import atomic_savefig, atomic_write_text


def make_windows(model, n_windows, times, generator, spin_up=5.0):
    """Initial states on the attractor and the true trajectories at ``times``."""
    x = model.initial_state((n_windows,), generator=generator)
    with torch.no_grad():
        x = ps.solve(ps.ODEProblem(model, x, (0.0, spin_up), batch_ndim=1), ps.Tsit5(),
                     saveat=[spin_up], rtol=1e-8, atol=1e-8).u[-1]
        truth = ps.solve(ps.ODEProblem(model, x, (0.0, float(times[-1])), batch_ndim=1),
                         ps.Tsit5(), saveat=times, rtol=1e-9, atol=1e-9).u
    return truth  # (K, W, n)


def observe(truth, sigma, fraction, generator):
    y = truth + sigma * torch.randn(truth.shape, generator=generator, dtype=truth.dtype)
    missing = torch.rand(truth.shape, generator=generator, dtype=truth.dtype) >= fraction
    return y.masked_fill(missing, float("nan"))


def climatology(y, sigma):
    mean = torch.nanmean(y)
    var = torch.nanmean((y - mean) ** 2) - sigma ** 2
    return float(mean), float(var.clamp_min(sigma ** 2))


def first_guess(y, mean):
    return torch.where(torch.isnan(y[0]), torch.full_like(y[0], mean), y[0])


def rmse(a, b):
    return float((a - b).square().mean().sqrt())


def evaluate(model, args, net, case, mean, var):
    """4DVar, the network and the warm-started 4DVar on one case's test windows."""
    dtype = torch.float64
    times, sigma, y, truth = case["times"], case["sigma"], case["y_test"], case["truth_test"]
    n, W, T = args.n, y.shape[1], float(case["times"][-1])
    prob = ps.ODEProblem(model, first_guess(y, mean), (0.0, T), batch_ndim=1)
    obs = da.Observations(times, y, sigma ** 2)
    fdv = da.FourDVar(prob, ps.RK4(), obs,
                      background=da.Background(torch.full((n,), mean, dtype=dtype), var),
                      solve_kwargs=dict(dt=args.dt_model))
    x0_true, xT_true = truth[0], truth[-1]

    def row(method, u0, seconds, iterations, cost):
        with torch.no_grad():
            xT = fdv.trajectory(u0)[-1]
        return dict(method=method, sigma=sigma, fraction=case["fraction"],
                    rmse_x0=rmse(u0, x0_true), rmse_end=rmse(xT, xT_true),
                    cost=float(cost) / W, seconds_per_window=seconds / W, iterations=iterations)

    an = fdv.minimize(max_iter=args.max_iter, gtol=args.gtol, ftol=1e-9)
    rows = [row("4DVar", an.u0, an.seconds, an.iterations, an.cost.total)]
    start = time.perf_counter()
    with torch.no_grad():
        x0_net = net(obs.filled, obs.available)
    infer = time.perf_counter() - start
    with torch.no_grad():
        rows.append(row("learned", x0_net, infer, 0, fdv.cost(u0=x0_net).total))
    warm = fdv.minimize(u0=x0_net, max_iter=args.max_iter, gtol=args.gtol, ftol=1e-9)
    rows.append(row("learned + 4DVar", warm.u0, warm.seconds + infer, warm.iterations,
                    warm.cost.total))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--forcing", type=float, default=8.0)
    ap.add_argument("--window", type=float, default=0.4)
    ap.add_argument("--dt-obs", type=float, default=0.05)
    ap.add_argument("--dt-model", type=float, default=0.025, help="RK4 step of the model")
    ap.add_argument("--noise", default="0.5,1.0", help="observation noise std, comma list")
    ap.add_argument("--fractions", default="0.5,1.0", help="observed fractions, comma list")
    ap.add_argument("--train-windows", type=int, default=128, help="per observing system")
    ap.add_argument("--test-windows", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600, help="training steps (Adam)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--max-iter", type=int, default=150, help="L-BFGS iterations")
    ap.add_argument("--gtol", type=float, default=0.02, help="L-BFGS gradient tolerance")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)
    model = Lorenz96(n=args.n, forcing=args.forcing, learnable=(), dtype=torch.float64)
    noises = [float(s) for s in args.noise.split(",")]
    fractions = [float(s) for s in args.fractions.split(",")]
    dtype = torch.float64
    start = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    times = torch.arange(0, args.window + 1e-9, args.dt_obs, dtype=dtype)
    K, n, T = len(times), args.n, float(times[-1])
    cases = []
    for sigma in noises:
        for fraction in fractions:
            tr, te = (make_windows(model, w, times, g) for w in (args.train_windows,
                                                                 args.test_windows))
            cases.append(dict(sigma=sigma, fraction=fraction, times=times,
                              y_train=observe(tr, sigma, fraction, g), truth_test=te,
                              y_test=observe(te, sigma, fraction, g)))
    # the climatological background, from the training observations only
    y_all = torch.cat([c["y_train"] for c in cases], 1)
    mean = float(torch.nanmean(y_all))
    var = float(sum(float(torch.nanmean((c["y_train"] - mean) ** 2)) - c["sigma"] ** 2
                    for c in cases) / len(cases))
    # one network for every observing system, trained on the 4DVar cost of the training windows
    torch.manual_seed(args.seed)
    net = da.GridWindowEncoder(K, (n,), 1, hidden=args.hidden, depth=args.depth,
                               offset=mean, scale=var ** 0.5)  # float32 network
    variance = torch.cat([torch.full((1, c["y_train"].shape[1], 1), c["sigma"] ** 2,
                                     dtype=dtype)
                          for c in cases], 1)
    prob_train = ps.ODEProblem(model, torch.zeros(y_all.shape[1], n, dtype=dtype), (0.0, T),
                               batch_ndim=1)
    learned = da.LearnedFourDVar(
        net, prob_train, ps.RK4(), da.Observations(times, y_all, variance),
        background=da.Background(torch.full((n,), mean, dtype=dtype), var),
        solve_kwargs=dict(dt=args.dt_model))
    hist = learned.fit(steps=args.steps, batch_size=args.batch, lr=args.lr,
                       generator=torch.Generator().manual_seed(args.seed + 1),
                       callback=lambda i, loss: print(f"  training step {i:5d}  cost/window "
                                                      f"{loss:10.2f}", flush=True)
                       if i % 100 == 0 else None)
    losses = {"all observing systems": hist.loss}
    print(f"trained the network in {hist.seconds:.1f} s")
    rows = []
    for case in cases:
        r = evaluate(model, args, net, case, mean, var)
        rows += r
        for x in r:
            print(f"sigma {x['sigma']:4.2f} f {x['fraction']:4.2f} {x['method']:<16} RMSE x0 "
                  f"{x['rmse_x0']:6.3f} end {x['rmse_end']:6.3f} cost/window "
                  f"{x['cost']:9.1f} s/window {x['seconds_per_window']:.4f}", flush=True)
    total = time.perf_counter() - start
    header = ("| sigma | observed fraction | method | RMSE x0 | RMSE end | cost / window | "
              "s / window | L-BFGS iters |\n|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['sigma']} | {r['fraction']} | {r['method']} | {r['rmse_x0']:.3f} | "
             f"{r['rmse_end']:.3f} | {r['cost']:.1f} | {r['seconds_per_window']:.4f} | "
             f"{r['iterations']} |" for r in rows]
    md = (f"# Lorenz-96 4DVar (N={args.n}, F={args.forcing}, window {args.window}, obs every "
          f"{args.dt_obs}, {args.test_windows} test windows, {args.train_windows} training "
          f"windows, {args.steps} training steps)\n\n" + header + "\n".join(lines)
          + f"\n\nOne network for all observing systems, trained in {hist.seconds:.1f} s "
          f"({args.steps} Adam steps, batch {args.batch}) on the 4DVar cost of "
          f"{y_all.shape[1]} training windows (observations only).\n"
          f"Total wall time {total:.0f} s.\n")
    out = args.out
    atomic_write_text(os.path.join(out, "da_lorenz96.md"), md)
    atomic_write_text(os.path.join(out, "da_lorenz96.json"),
                      json.dumps(dict(args=vars(args), rows=rows, training_loss=losses),
                                 indent=1))
    print(md)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"4DVar": "o-", "learned": "s--", "learned + 4DVar": "^:"}
    for sigma in noises:
        for method, style in styles.items():
            sel = [r for r in rows if r["sigma"] == sigma and r["method"] == method]
            axes[0].plot([r["fraction"] for r in sel], [r["rmse_x0"] for r in sel], style,
                         label=f"{method}, σ={sigma}")
    axes[0].set_xlabel("observed fraction")
    axes[0].set_ylabel("analysis RMSE at t0")
    axes[0].legend(fontsize=7)
    axes[0].set_title("Lorenz-96 analysis error")
    for label, loss in losses.items():
        axes[1].semilogy(loss, label=label)
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("4DVar cost per window")
    axes[1].set_title("learned 4DVar training (observations only)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, os.path.join(out, "da_lorenz96.png"), dpi=120)
    print(f"wrote {out}/da_lorenz96.md, .json, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
