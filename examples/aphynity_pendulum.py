r"""APHYNITY on the damped pendulum (Yin et al., "Augmenting physical models with deep networks
for complex dynamics forecasting", ICLR 2021, §4).

The data follow the damped pendulum

.. math::
    \ddot\theta + \omega_0^2 \sin\theta + \alpha\dot\theta = 0,
    \qquad \omega_0 = 2\pi / T_0,\; T_0 = 12,\; \alpha = 0.2,

but the physics we assume is the frictionless pendulum :math:`\ddot\theta + \omega_0^2
\sin\theta = 0` with :math:`\omega_0` unknown. Five models are fitted on the same trajectories and
compared on forecasts of unseen initial states over 20 s:

* physics only: the frictionless pendulum, :math:`\omega_0` learned;
* data only: a neural ODE (MLP);
* physics + network without APHYNITY's objective (plain trajectory loss);
* APHYNITY: physics + network, :math:`\min\|F_a\|` with the adaptive multiplier
  :math:`\lambda_{j+1} = \lambda_j + \tau_2 \mathcal{L}_\text{traj}`;
* the true (complete) physics with :math:`\omega_0, \alpha` learned, as a floor.

The paper's finding: APHYNITY forecasts better than the data-only and incomplete-physics models
and identifies :math:`\omega_0` (its relative error is small, unlike the hybrid trained without
the norm objective). Run ``python examples/aphynity_pendulum.py`` (``make demo``); it prints the
results table and writes ``aphynity_pendulum.png`` and per-model metrics under ``--out``.

Differences from the paper, for a demo of a few CPU minutes: 250 full-batch Adam steps instead of
50,000 epochs, hence a faster multiplier schedule (:math:`\tau_2 = 100`, paper 1) and learning
rates (:math:`\tau_1 = 10^{-2}`, paper :math:`10^{-3}`); an MLP of 64 hidden units (paper 200);
training on 5 s windows of the 20 s trajectories (the forecast is still evaluated over 20 s);
RK4 with the sampling step 0.5 as in the authors' code (``--ablation`` adds the hybrid trained
without the norm objective);
initial states from :class:`~pysciml.physics.DampedPendulum`'s law
(:math:`\theta \sim U[-\pi/2, \pi/2]`, :math:`\dot\theta \sim U[-1, 1]`; the paper draws them on
an annulus of radius 1.3–2.3).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import pysciml as ps
import pysciml.data as psd
from pysciml.hybrid import (
    APHYNITY,
    MLP,
    APHYNITYObjective,
    NeuralODE,
    PhysicsOnly,
    TrajectoryObjective,
    forecast,
)
from pysciml.physics import DampedPendulum
from pysciml.train import Trainer, atomic_savefig

OMEGA0, ALPHA = 2 * math.pi / 12, 0.2
PAPER_SETTING = ("paper (Yin et al. 2021): T0 = 12 (omega0 = 0.5236), alpha = 0.2, 25 train / 25 "
                 "test sequences of 20 s at dt = 0.5, RK4, MLP 2x200, Adam tau1 = 1e-3, "
                 "lambda0 = 1, tau2 = 1, 50,000 epochs")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/aphynity_pendulum"),
                   help="directory for the PNG, metrics and checkpoints")
    p.add_argument("--steps", type=int, default=250, help="optimizer steps of the network models")
    p.add_argument("--ablation", action="store_true",
                   help="also fit physics + MLP with the plain trajectory loss (no min-norm)")
    p.add_argument("--train", type=int, default=25, help="training trajectories")
    p.add_argument("--test", type=int, default=25, help="test trajectories")
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the MLPs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (the tensors are small: one is fastest on CPU)")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs checkpointed under --out (after an interruption)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--float32", action="store_true", help="train in float32 (default float64)")
    return p.parse_args(argv)


def make_models(hidden, dtype, device, ablation=False):
    def physics():
        return DampedPendulum(omega0=0.4, alpha=0.0, learnable=("omega0",), dtype=dtype,
                              device=device)

    def net():
        return MLP(2, 2, hidden=hidden, depth=2, init_gain=0.2, dtype=dtype, device=device)

    rk4 = {"alg": ps.RK4(), "dt": 0.5}
    models = [
        # name, model, objective, steps factor, learning rates
        ("physics only (frictionless)", PhysicsOnly(physics()),
         TrajectoryObjective(**rk4), 0.4, {"physics_lr": 0.03}),
        ("data only (neural ODE)", NeuralODE(net(), 2),
         TrajectoryObjective(**rk4), 1.0, {"augmentation_lr": 0.01}),
        ("physics + MLP, no min-norm", APHYNITY(physics(), net()),
         TrajectoryObjective(**rk4), 1.0, {"physics_lr": 0.03, "augmentation_lr": 0.01}),
        ("APHYNITY", APHYNITY(physics(), net()),
         APHYNITYObjective(**rk4, lambda0=1.0, tau2=100.0, penalty="l2_normalized"), 1.0,
         {"physics_lr": 0.03, "augmentation_lr": 0.01}),
        ("true physics (omega0, alpha)",
         PhysicsOnly(DampedPendulum(omega0=0.4, alpha=0.05, dtype=dtype, device=device)),
         TrajectoryObjective(**rk4), 0.4, {"physics_lr": 0.03}),
    ]
    return models if ablation else [m for m in models if "no min-norm" not in m[0]]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.float32 else torch.float64
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    # data: pysciml.data solves the true pendulum (Tsit5 at rtol 1e-9)
    truth = DampedPendulum(omega0=OMEGA0, alpha=ALPHA, dtype=dtype)
    t = torch.arange(0.0, 20.0, 0.5, dtype=dtype)
    train = psd.simulate(truth, args.train, t=t, seed=args.seed, rtol=1e-9, atol=1e-11)
    test = psd.simulate(truth, args.test, t=t, seed=args.seed + 1000, rtol=1e-9, atol=1e-11)
    windows = psd.TrajectoryDataset(train, history=1, horizon=10, stride=5)
    print(f"APHYNITY, damped pendulum: {args.train} training trajectories ({len(windows)} windows "
          f"of 5 s), {args.test} test trajectories of 20 s; {args.steps} steps; "
          f"{str(dtype)[6:]} on {device}")

    rows, predictions = [], {}
    test_u0 = test.u[:, 0].to(device)
    for i, (name, model, objective, factor, lrs) in enumerate(
            make_models(args.hidden, dtype, device, args.ablation)):
        torch.manual_seed(args.seed + i)
        opt = torch.optim.Adam(model.parameter_groups(**lrs))
        tic = time.perf_counter()
        result = Trainer(model, objective, opt, windows, epochs=max(int(args.steps * factor), 1),
                         batch_size=len(windows), seed=args.seed, device=device,
                         out_dir=args.out / f"model{i}", progress=True,
                         resume="auto" if args.resume else False).fit()
        if result.interrupted:
            print(f"\n  interrupted; checkpoints are in {args.out}: rerun with --resume")
            return 130
        seconds = time.perf_counter() - tic
        with torch.no_grad():
            pred = forecast(model, test_u0, t.to(device), alg=ps.Tsit5(), rtol=1e-7, atol=1e-9)
            mse = float(((pred.cpu() - test.u) ** 2).mean())
            norm = float(model.augmentation_norm(test.u.to(device)))
        omega = model.physical_parameters().get("omega0")
        rows.append({"model": name, "steps": result.global_step, "test_mse": mse,
                     "omega0": None if omega is None else float(omega.detach()),
                     "omega0_err": None if omega is None else abs(float(omega.detach()) - OMEGA0)
                     / OMEGA0, "norm_fa": norm, "seconds": seconds})
        predictions[name] = pred.cpu()

    print_table(rows)
    print(f"\n  {PAPER_SETTING}")
    png = plot(args.out / "aphynity_pendulum.png", t, test, predictions, rows)
    by = {r["model"]: r for r in rows}
    aph = by["APHYNITY"]
    beats = aph["test_mse"] < min(by["data only (neural ODE)"]["test_mse"],
                                  by["physics only (frictionless)"]["test_mse"])
    ok = beats and aph["omega0_err"] < 0.05
    print(f"\n  APHYNITY beats data-only and incomplete physics on forecast MSE: "
          f"{'yes' if beats else 'NO'}; omega0 recovered within {100 * aph['omega0_err']:.2f} %")
    print(f"  wrote {png}; total {time.perf_counter() - start:.0f} s")
    return 0 if ok else 1


def print_table(rows):
    print(f"\n  {'model':<30}{'steps':>6}{'test MSE (20 s)':>17}{'omega0':>9}{'rel. err':>10}"
          f"{'|F_a|^2':>10}{'time s':>8}")
    print("  " + "-" * 88)
    for r in rows:
        omega = "-" if r["omega0"] is None else f"{r['omega0']:.4f}"
        err = "-" if r["omega0_err"] is None else f"{100 * r['omega0_err']:.2f} %"
        print(f"  {r['model']:<30}{r['steps']:>6}{r['test_mse']:>17.3e}{omega:>9}{err:>10}"
              f"{r['norm_fa']:>10.2e}{r['seconds']:>8.1f}")
    print(f"  {'true value':<30}{'':>6}{'':>17}{OMEGA0:>9.4f}")


def plot(path, t, test, predictions, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    member = 0
    axes[0].plot(t, test.u[member, :, 0], "k", lw=2.5, label="truth")
    for name, pred in predictions.items():
        axes[0].plot(t, pred[member, :, 0], lw=1.3, label=name)
        axes[1].plot(pred[member, :, 0], pred[member, :, 1], lw=1.3)
    axes[1].plot(test.u[member, :, 0], test.u[member, :, 1], "k", lw=2.5)
    axes[0].set(xlabel="t (s)", ylabel=r"$\theta$", title="forecast of a test trajectory")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel=r"$\theta$", ylabel=r"$\dot\theta$", title="phase portrait")
    names = [r["model"] for r in rows]
    axes[2].barh(names, [r["test_mse"] for r in rows], color="tab:blue")
    axes[2].set_xscale("log")
    axes[2].set(xlabel="test forecast MSE over 20 s", title="forecast error")
    axes[2].invert_yaxis()
    fig.tight_layout()
    return atomic_savefig(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
