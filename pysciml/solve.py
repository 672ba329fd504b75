"""``solve``: validate the inputs, choose the runtime, return an :class:`ODESolution`."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch

from .algorithms import AbstractAlgorithm
from .backends import select_backend
from .native.controller import AbstractController
from .native.device_loop import LOOPS
from .problem import ODEProblem
from .sensealg import AbstractSensitivityAlgorithm, DirectBackprop
from .solution import ODESolution, ReturnCode, SolveFailedError
from .validation import check_rhs_output, expect_instance, validate

__all__ = ["solve"]


def solve(
    prob: ODEProblem,
    alg: AbstractAlgorithm,
    *,
    saveat: Any = None,
    dt: float | torch.Tensor | None = None,
    rtol: float | torch.Tensor = 1e-3,
    atol: float | torch.Tensor = 1e-6,
    max_steps: int = 100_000,
    sensealg: AbstractSensitivityAlgorithm | None = None,
    backend: str = "auto",
    throw: bool = False,
    dense: bool | None = None,
    shared_step: bool = False,
    controller: AbstractController | None = None,
    tstops: Any = None,
    dtmin: float = 0.0,
    dtmax: float | None = None,
    loop: str = "eager",
) -> ODESolution:
    r"""Solve an initial value problem.

    Args:
        prob: the :class:`~pysciml.ODEProblem`.
        alg: the algorithm, e.g. ``Tsit5()`` (see :mod:`pysciml.algorithms`).
        saveat: the times to save at: a 1-d sequence within ``tspan`` (monotone in its
            direction), a number (a spacing from ``t0``, ``t1`` included), or ``None`` for
            ``(t0, t1)`` plus dense output.
        dt: the step of a fixed-step method; for an adaptive method, the first step.
        rtol, atol: relative and absolute tolerances (numbers, or tensors broadcastable to the
            state shape); the defaults are SciML's, 1e-3 and 1e-6.
        max_steps: the step budget of each batch member (accepted plus rejected steps).
        sensealg: how to differentiate (:mod:`pysciml.sensealg`); ``None`` is
            :class:`~pysciml.DirectBackprop`.
        backend: ``"auto"``, ``"native"`` or ``"julia"``.
        throw: raise :class:`~pysciml.SolveFailedError` when a member fails, instead of warning.
        dense: keep every step for dense output ``sol(t)``; default: ``saveat is None``.
        shared_step: one step size for the whole batch instead of one per member.
        controller: the step-size controller (default: the algorithm's ``default_controller``,
            :class:`~pysciml.PIController` with the DOPRI5 coefficients).
        tstops: times the solver must step to exactly (e.g. discontinuities of ``f``).
        dtmin, dtmax: bounds of the step size's magnitude.
        loop: how the time loop runs: ``"eager"`` (default), or one iteration as one unit
            (:mod:`pysciml.native.device_loop`), for small systems and batches of them, whose
            solves are bound by per-operation overhead: ``"cuda_graph"`` records the iteration
            in a CUDA graph and replays it (CUDA only; ignored on the CPU); ``"compile"``
            compiles it with ``torch.compile`` (CPU or CUDA; the first solve pays the
            compilation, tens of seconds). Either applies to explicit and Rosenbrock methods
            solved without autograd history (under ``torch.no_grad``, or when nothing requires
            grad) with ``saveat`` (no dense output); elsewhere a warning says why not and the
            loop runs eagerly. The right-hand side should not synchronise with the host (no
            ``.item()``, no Python branches on tensor values).

    Returns:
        An :class:`~pysciml.ODESolution` whose ``u`` has shape ``(len(t), *batch, *state)``.
    """
    expect_instance("alg", alg, AbstractAlgorithm, "an algorithm such as pysciml.Tsit5()")
    expect_instance("sensealg", sensealg, AbstractSensitivityAlgorithm,
                    "a sensitivity algorithm such as pysciml.InterpolatingAdjoint()",
                    allow_none=True)
    expect_instance("controller", controller, AbstractController,
                    "a step-size controller such as pysciml.PIController()", allow_none=True)
    inputs = validate(prob, saveat=saveat, rtol=rtol, atol=atol, max_steps=max_steps, dt=dt)
    if not alg.adaptive and dt is None:
        raise ValueError(f"dt: {alg.name} is a fixed-step method and needs dt")
    for name, value in (("dtmin", dtmin), ("dtmax", dtmax)):
        if value is not None and (not isinstance(value, numbers.Real) or not value >= 0
                                  or (name == "dtmax" and value == 0)):
            raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    if loop not in LOOPS:
        raise ValueError(f"loop: expected one of {', '.join(map(repr, LOOPS))}, got {loop!r}")
    stops = _check_tstops(tstops, inputs)
    from .backends.native import SolveOptions, solve_native

    options = SolveOptions(dt=dt, max_steps=max_steps, shared_step=shared_step,
                           dense=(saveat is None) if dense is None else bool(dense),
                           controller=controller, tstops=stops, dtmin=float(dtmin),
                           dtmax=None if dtmax is None else float(dtmax),
                           loop=loop)
    runtime = select_backend(backend, alg, prob=prob, inputs=inputs, options=options,
                             sensealg=sensealg)
    # one evaluation checks f's output; a direct (backpropagated) solve then starts from it, so
    # it keeps its graph when a gradient may be taken
    direct = sensealg is None or isinstance(sensealg, DirectBackprop)
    with torch.set_grad_enabled(direct and torch.is_grad_enabled()):
        du0 = prob.f(inputs.t0.expand(prob.batch_shape), prob.u0, prob.p)
    check_rhs_output(prob, du0)
    if runtime == "julia":
        from .backends.julia import solve_julia

        sol = solve_julia(prob, alg, inputs, options, sensealg)
    else:
        sol = solve_native(prob, alg, inputs, options, sensealg, f0=du0)
    if not sol.successful:
        _report_failure(sol, throw)
    return sol


def _check_tstops(tstops: Any, inputs) -> torch.Tensor | None:
    if tstops is None:
        return None
    try:
        stops = torch.as_tensor(tstops, dtype=inputs.dtype).to(inputs.device).reshape(-1).detach()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"tstops: expected a sequence of times, got {type(tstops).__name__}"
                        ) from None
    if not bool(torch.isfinite(stops).all()):
        raise ValueError("tstops: expected finite times")
    d = inputs.direction
    lo, hi = float(d * inputs.t0), float(d * inputs.t1)
    directed = torch.sort(d * stops).values
    inside = directed[(directed > lo) & (directed < hi)]
    if directed.numel() != inside.numel():
        raise ValueError(f"tstops: times must lie strictly inside tspan ({float(inputs.t0)}, "
                         f"{float(inputs.t1)})")
    inside = torch.unique_consecutive(inside)
    return d * inside if inside.numel() else None


def _report_failure(sol: ODESolution, throw: bool) -> None:
    codes = sol.status.reshape(-1)
    failed = codes != ReturnCode.Success
    first = ReturnCode(int(codes[failed][0]))
    n_failed, n = int(failed.sum()), codes.numel()
    who = "the solve" if n == 1 else f"{n_failed} of {n} batch members"
    message = f"{who} ended with {first.name}: {first.message}"
    if throw:
        raise SolveFailedError(message, sol)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
