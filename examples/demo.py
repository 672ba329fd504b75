"""pysciml's main job (until the hybrid-model demo lands): solve, differentiate, report.

Solves the Lotka–Volterra predator–prey system

    x' = a x - b x y,    y' = c x y - d y,

with Tsit5, then differentiates a loss on the saved trajectory with respect to the four rate
constants and the initial state by every sensitivity algorithm, and checks the gradients against
central finite differences. Prints a short report. Run with ``make demo`` or
``python examples/demo.py``.
"""

from __future__ import annotations

import time

import torch

import pysciml as ps


def lotka_volterra(t, u, p):
    a, b, c, d = p.unbind(-1)
    x, y = u.unbind(-1)
    return torch.stack([a * x - b * x * y, c * x * y - d * y], -1)


def loss_of(u0, p, sensealg=None, rtol=1e-9, atol=1e-11, dense=False):
    prob = ps.ODEProblem(lotka_volterra, u0, (0.0, 10.0), p)
    sol = ps.solve(prob, ps.Tsit5(), saveat=torch.linspace(0, 10, 21, dtype=u0.dtype),
                   rtol=rtol, atol=atol, sensealg=sensealg, dense=dense)
    return (sol.u[..., 0] ** 2).mean() + sol.u[-1, 1], sol


def main() -> int:
    dtype = torch.float64
    p = torch.tensor([1.5, 1.0, 1.0, 3.0], dtype=dtype)
    u0 = torch.tensor([1.0, 1.0], dtype=dtype)

    t = time.perf_counter()
    loss, sol = loss_of(u0, p, rtol=1e-6, atol=1e-8, dense=True)
    solve_ms = 1e3 * (time.perf_counter() - t)
    print("pysciml demo — Lotka–Volterra, Tsit5, t in [0, 10]")
    print(f"  retcode {sol.retcode.name}; {sol.stats.naccept} steps, {sol.stats.nf} f-calls, "
          f"{solve_ms:.1f} ms at rtol 1e-6")
    print(f"  u(10) = {sol.u[-1].tolist()};  dense u(5.05) = {sol(5.05).tolist()}")

    eps = 1e-6
    fd = torch.zeros(6, dtype=dtype)
    base = torch.cat([u0, p])
    for i in range(6):
        e = torch.zeros(6, dtype=dtype)
        e[i] = eps
        plus, _ = loss_of((base + e)[:2], (base + e)[2:], rtol=1e-12, atol=1e-14)
        minus, _ = loss_of((base - e)[:2], (base - e)[2:], rtol=1e-12, atol=1e-14)
        fd[i] = (plus - minus) / (2 * eps)

    print("\n  gradient of the loss w.r.t. (x0, y0, a, b, c, d), against finite differences:")
    print(f"  {'sensealg':<36}{'time ms':>9}{'max rel. error':>16}")
    worst = 0.0
    for sensealg in [ps.DirectBackprop(), ps.InterpolatingAdjoint(),
                     ps.InterpolatingAdjoint(checkpointing=True), ps.QuadratureAdjoint(),
                     ps.BacksolveAdjoint()]:
        u0_ = u0.clone().requires_grad_(True)
        p_ = p.clone().requires_grad_(True)
        t = time.perf_counter()
        loss, _ = loss_of(u0_, p_, sensealg)
        loss.backward()
        ms = 1e3 * (time.perf_counter() - t)
        grad = torch.cat([u0_.grad, p_.grad])
        rel = float(((grad - fd).abs() / fd.abs().clamp_min(1e-8)).max())
        worst = max(worst, rel)
        name = type(sensealg).__name__ + (
            "(checkpointing)" if getattr(sensealg, "checkpointing", False) else "")
        print(f"  {name:<36}{ms:>9.1f}{rel:>16.2e}")
    ok = sol.successful and worst < 1e-5
    print(f"\n  {'OK' if ok else 'FAILED'}: every gradient within {worst:.1e} of finite "
          "differences")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
