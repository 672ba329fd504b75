r"""APHYNITY on reaction–diffusion: the 2D FitzHugh–Nagumo system (Yin et al., ICLR 2021, §4).

The data follow

.. math::
    \partial_t u = a\,\Delta u + u - u^3 - k - v, \qquad \partial_t v = b\,\Delta v + u - v,

with :math:`a = 10^{-3}`, :math:`b = 5\cdot10^{-3}`, :math:`k = 5\cdot10^{-3}` on the periodic
square :math:`[-1, 1]^2` and initial states uniform in :math:`[0, 1]` at each grid point
(:class:`~pysciml.physics.FitzHughNagumo2D`). The physics we assume is the diffusion alone,
:math:`F_p = (a\Delta u, b\Delta v)` with :math:`a, b` learned; the network (a three-layer
convolutional net, 3×3 kernels, circular padding) must supply the reaction. Compared on forecasts
of unseen initial states:

* physics only: diffusion with learned :math:`a, b`;
* data only: a neural ODE with the same convolutional network;
* APHYNITY: diffusion + network, :math:`\min\|F_a\|` with the adaptive multiplier;
* the true (complete) physics with :math:`a, b, k` learned, as a floor.

The paper's finding: APHYNITY forecasts better than both baselines and identifies :math:`a` and
:math:`b`. Run ``python examples/aphynity_reaction_diffusion.py`` (a 16 × 16 grid, a few CPU
minutes); ``--device cuda --size 32 --train 64 --test 32 --batch 64 --steps 300`` comes closer
to the paper (32 × 32, 1,600 training sequences, 50,000 epochs) and takes about two minutes on an
H100. Prints the results table and writes
``aphynity_reaction_diffusion.png`` under ``--out``.
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
    APHYNITYObjective,
    ConvNet2D,
    NeuralODE,
    PhysicsOnly,
    TrajectoryObjective,
    forecast,
)
from pysciml.physics import FitzHughNagumo2D
from pysciml.train import Trainer

TRUE = {"a": 1e-3, "b": 5e-3, "k": 5e-3}
PAPER_SETTING = ("paper (Yin et al. 2021): 32x32 grid on [-1, 1]^2, a = 1e-3, b = 5e-3, "
                 "k = 5e-3, 1600 train / 320 test sequences, dt = 0.1, ConvNet 16 hidden "
                 "channels, Adam tau1 = 1e-3, lambda0 = 1, tau2 = 1e-3, 50,000 epochs")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/aphynity_reaction_diffusion"))
    p.add_argument("--size", type=int, default=16, help="grid points per side")
    p.add_argument("--train", type=int, default=16, help="training trajectories")
    p.add_argument("--test", type=int, default=8, help="test trajectories")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of the network models")
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--dt", type=float, default=0.05, help="RK4 step of the models")
    p.add_argument("--hidden", type=int, default=16, help="hidden channels of the ConvNet")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of the network")
    p.add_argument("--physics-lr", type=float, default=3e-5,
                   help="Adam learning rate of the diffusion coefficients (they are ~1e-3)")
    p.add_argument("--tau2", type=float, default=1000.0, help="APHYNITY's multiplier step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (the tensors are small: one is fastest on CPU)")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs checkpointed under --out (after an interruption)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--float32", action="store_true")
    return p.parse_args(argv)


def make_models(args, dtype, device):
    size = args.size

    def diffusion():  # the incomplete physics: a, b learned from a wrong start, k unused
        return FitzHughNagumo2D(size=size, a=2e-3, b=2e-3, learnable=("a", "b"), dtype=dtype,
                                device=device)

    def net():
        return ConvNet2D(2, hidden=args.hidden, depth=2, init_gain=0.1, dtype=dtype,
                         device=device)

    rk4 = {"alg": ps.RK4(), "dt": args.dt}
    physics_lr = {"physics_lr": args.physics_lr}
    return [
        ("physics only (diffusion)", PhysicsOnly(diffusion(), physics_method="diffusion"),
         TrajectoryObjective(**rk4), 0.5, physics_lr),
        ("data only (neural ODE)", NeuralODE(net(), (2, size, size)),
         TrajectoryObjective(**rk4), 1.0, {"augmentation_lr": args.lr}),
        ("APHYNITY", APHYNITY(diffusion(), net(), physics_method="diffusion"),
         APHYNITYObjective(**rk4, lambda0=1.0, tau2=args.tau2, penalty="l2"), 1.0,
         {**physics_lr, "augmentation_lr": args.lr}),
        ("true physics (a, b, k)",
         PhysicsOnly(FitzHughNagumo2D(size=size, a=2e-3, b=2e-3, k=0.0, dtype=dtype,
                                      device=device)),
         TrajectoryObjective(**rk4), 0.5, physics_lr),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.float32 else torch.float64
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    truth = FitzHughNagumo2D(size=args.size, **TRUE, dtype=dtype)
    t = torch.linspace(0.0, 2.0, 21, dtype=dtype)
    sim = {"t": t, "rtol": 1e-7, "atol": 1e-9, "device": device}
    train = psd.simulate(truth, args.train, seed=args.seed, **sim)
    test = psd.simulate(truth, args.test, seed=args.seed + 1000, **sim)
    windows = psd.TrajectoryDataset(train, history=1, horizon=5, stride=5)
    print(f"APHYNITY, FitzHugh-Nagumo {args.size}x{args.size}: {args.train} training trajectories "
          f"({len(windows)} windows of 0.5 s), {args.test} test trajectories of 2 s; "
          f"{args.steps} steps of {args.batch} windows; {str(dtype)[6:]} on {device}")

    rows, predictions = [], {}
    for i, (name, model, objective, factor, lrs) in enumerate(
            make_models(args, dtype, device)):
        torch.manual_seed(args.seed + i)
        opt = torch.optim.Adam(model.parameter_groups(**lrs))
        epochs = max(round(args.steps * factor / math.ceil(len(windows) / args.batch)), 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        tic = time.perf_counter()
        result = Trainer(model, objective, opt, windows, scheduler=schedule, epochs=epochs,
                         batch_size=args.batch, seed=args.seed, device=device,
                         out_dir=args.out / f"model{i}", progress=True,
                         resume="auto" if args.resume else False).fit()
        if result.interrupted:
            print(f"\n  interrupted; checkpoints are in {args.out}: rerun with --resume")
            return 130
        seconds = time.perf_counter() - tic
        with torch.no_grad():
            pred = forecast(model, test.u[:, 0].to(device), t.to(device), alg=ps.RK4(),
                            dt=args.dt)
            mse = float(((pred - test.u.to(device)) ** 2).mean())
            norm = float(model.augmentation_norm(test.u.to(device)))
        params = {k: float(v.detach()) for k, v in model.physical_parameters().items()
                  if k in ("a", "b")}
        errors = {k: abs(v - TRUE[k]) / TRUE[k] for k, v in params.items()}
        rows.append({"model": name, "steps": result.global_step,
                     "test_mse": mse, "params": params, "errors": errors, "norm_fa": norm,
                     "seconds": seconds})
        predictions[name] = pred[0, -1].cpu()

    print_table(rows)
    print(f"\n  {PAPER_SETTING}")
    png = plot(args.out / "aphynity_reaction_diffusion.png", test.u[0, -1], predictions, rows)
    by = {r["model"]: r for r in rows}
    aph = by["APHYNITY"]
    beats = aph["test_mse"] < min(by["data only (neural ODE)"]["test_mse"],
                                  by["physics only (diffusion)"]["test_mse"])
    worst = max(aph["errors"].values())
    print(f"\n  APHYNITY beats data-only and incomplete physics on forecast MSE: "
          f"{'yes' if beats else 'NO'}; a, b recovered within {100 * worst:.1f} %")
    print(f"  wrote {png}; total {time.perf_counter() - start:.0f} s")
    return 0 if beats else 1


def print_table(rows):
    print(f"\n  {'model':<26}{'steps':>6}{'test MSE (2 s)':>16}{'a':>10}{'err a':>9}{'b':>10}"
          f"{'err b':>9}{'|F_a|^2':>10}{'time s':>8}")
    print("  " + "-" * 102)
    for r in rows:
        cells = []
        for k in ("a", "b"):
            if k in r["params"]:
                cells += [f"{r['params'][k]:.2e}", f"{100 * r['errors'][k]:.1f} %"]
            else:
                cells += ["-", "-"]
        print(f"  {r['model']:<26}{r['steps']:>6}{r['test_mse']:>16.3e}{cells[0]:>10}"
              f"{cells[1]:>9}{cells[2]:>10}{cells[3]:>9}{r['norm_fa']:>10.2e}"
              f"{r['seconds']:>8.1f}")
    print(f"  {'true value':<26}{'':>6}{'':>16}{TRUE['a']:>10.2e}{'':>9}{TRUE['b']:>10.2e}")


def plot(path, truth, predictions, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("truth", truth)] + list(predictions.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    lo, hi = float(truth[0].min()), float(truth[0].max())
    mse = {r["model"]: r["test_mse"] for r in rows}
    for ax, (name, field) in zip(axes, panels):
        ax.imshow(field[0].numpy(), vmin=lo, vmax=hi, cmap="viridis")
        title = name if name == "truth" else f"{name}\nMSE {mse[name]:.1e}"
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("u at t = 2 s from a test initial state", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
