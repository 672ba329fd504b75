"""The adapter from ``solve``'s descriptors to the Julia runtime (DifferentialEquations.jl).

:func:`unsupported_reason` says, without starting Julia, why the Julia runtime cannot solve a
request (``None`` when it can); :func:`solve_julia` solves it. What the Julia runtime does
differently from the native one, by design:

* a batch of a torch right-hand side is one system in Julia (one callback evaluates every
  member, so the members share their steps): it needs ``shared_step=True``;
* gradients come from SciMLSensitivity's continuous adjoints only (no ``DirectBackprop``);
  the adjoint solve uses the forward algorithm and tolerances;
* implicit methods take exact Jacobian blocks from torch in the forward solve and finite
  differences in the adjoint solve (ForwardDiff cannot trace a Python callback);
* on CUDA: torch right-hand sides with explicit methods (state shared through DLPack), and
  Julia right-hand sides as DiffEqGPU ensembles (forward only).
"""

from __future__ import annotations

from typing import Any

import torch

from ..julia import runtime
from ..julia.autograd import JuliaDense, JuliaSolvePlan, solve_with_adjoint
from ..julia.callbacks import FlatParameters, TorchCallbacks
from ..julia.entry_points import call
from ..julia.functions import HybridFunction, JuliaFunction, is_julia_rhs
from ..julia.names import (
    GPU_KERNEL_ALGORITHMS,
    IMPLICIT,
    Unsupported,
    julia_algorithm,
    julia_sensealg,
)
from ..problem import ODEProblem, SplitODEProblem
from ..sensealg import AbstractSensitivityAlgorithm
from ..solution import ODESolution
from .native import _needs_grad, right_hand_sides

__all__ = ["unsupported_reason", "solve_julia", "uses_julia_rhs"]


def uses_julia_rhs(prob: ODEProblem) -> bool:
    """Whether the problem's right-hand side is written (at least partly) in Julia."""
    return any(is_julia_rhs(fn) for fn in right_hand_sides(prob))


def _plan_names(prob: ODEProblem, alg: Any, inputs: Any, options: Any,
                sensealg: AbstractSensitivityAlgorithm | None, needs_grad: bool):
    """The Julia names of the algorithm and sensitivity algorithm; raises Unsupported."""
    f = prob.f
    callback = not isinstance(f, JuliaFunction)
    if isinstance(prob, SplitODEProblem):
        if getattr(alg, "imex", False):
            raise Unsupported(f"alg: {alg.name} with a SplitODEProblem is an IMEX method of the "
                              "native runtime only")
        if uses_julia_rhs(prob):
            raise Unsupported("prob: a SplitODEProblem of Julia functions is not supported; "
                              "write the sum as one JuliaFunction")
    jl_alg = julia_algorithm(alg, finite_diff_jacobian=callback)
    if options.controller is not None:
        raise Unsupported("controller: custom step-size controllers are native only; the Julia "
                          "runtime uses each method's default controller")
    B = int(torch.Size(prob.batch_shape).numel())
    if callback and B > 1 and not options.shared_step:
        raise Unsupported("shared_step: a batch of a torch right-hand side is one system on the "
                          "Julia runtime (one callback evaluates every member), so its members "
                          "share their steps; pass shared_step=True")
    device = prob.u0.device.type
    if device not in ("cpu", "cuda"):
        raise Unsupported(f"u0: the Julia runtime exchanges CPU and CUDA tensors, got {device}")
    if device == "cuda":
        if isinstance(f, JuliaFunction):
            if needs_grad:
                raise Unsupported("u0: GPU ensembles of a Julia function are forward only "
                                  "(no gradients); solve on the CPU to differentiate")
            if f.gpu == "kernel" and jl_alg.name not in GPU_KERNEL_ALGORITHMS:
                raise Unsupported(f"alg: EnsembleGPUKernel has no counterpart of {jl_alg.name}; "
                                  f"it has {sorted(GPU_KERNEL_ALGORITHMS)}")
        elif jl_alg.name in IMPLICIT:
            raise Unsupported(f"alg: {jl_alg.name} with a torch right-hand side on CUDA is not "
                              "supported on the Julia runtime (explicit methods only)")
        if isinstance(f, HybridFunction):
            raise Unsupported("u0: hybrid right-hand sides run on the CPU on the Julia runtime")
    jl_sense = None
    if needs_grad:
        if isinstance(inputs.rtol, torch.Tensor) or isinstance(inputs.atol, torch.Tensor):
            raise Unsupported("rtol, atol: per-component tolerances with a continuous adjoint "
                              "are native only (SciMLSensitivity reuses the forward tolerances "
                              "for the adjoint state); pass numbers")
        vjp = f.vjp if isinstance(f, JuliaFunction) else "zygote"
        jl_sense = julia_sensealg(sensealg, vjp=vjp, callback_rhs=callback)
        if jl_sense.name == "QuadratureAdjoint":
            jl_sense.options.update(abstol=float(inputs.atol), reltol=float(inputs.rtol))
    return jl_alg, jl_sense


def unsupported_reason(prob: ODEProblem, alg: Any, inputs: Any, options: Any,
                       sensealg: AbstractSensitivityAlgorithm | None) -> str | None:
    """Why the Julia runtime cannot solve this request, or ``None`` when it can. Never starts
    Julia."""
    try:
        _plan_names(prob, alg, inputs, options, sensealg, _needs_grad(prob, inputs))
    except Unsupported as exc:
        return str(exc)
    return None


def _solve_options(alg: Any, inputs: Any, options: Any) -> dict[str, Any]:
    def tol(x):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else float(x)

    out: dict[str, Any] = {
        "rtol": tol(inputs.rtol), "atol": tol(inputs.atol), "max_steps": int(options.max_steps),
        "adaptive": bool(alg.adaptive), "dtmin": float(options.dtmin),
        "dtmax": options.dtmax,
        "dt": None if options.dt is None else float(options.dt),
        "tstops": None if options.tstops is None else options.tstops.detach().cpu().numpy(),
    }
    return out


def _rhs(bridge: Any, prob: ODEProblem, params: FlatParameters, jl_alg: Any) -> Any:
    f = prob.f
    if isinstance(f, JuliaFunction):
        return f.handle(bridge)
    implicit = jl_alg.name in IMPLICIT
    if isinstance(f, HybridFunction):
        cb = TorchCallbacks(prob, params, network_only=True)
        network = call(bridge, "torch_rhs", cb.f, cb.vjp, cb.jac if implicit else None)
        return call(bridge, "hybrid_rhs", f.physics.handle(bridge), network)
    cb = TorchCallbacks(prob, params)
    return call(bridge, "torch_rhs", cb.f, cb.vjp, cb.jac if implicit else None)


def solve_julia(prob: ODEProblem, alg: Any, inputs: Any, options: Any,
                sensealg: AbstractSensitivityAlgorithm | None) -> ODESolution:
    """Solve on the Julia runtime (``unsupported_reason`` must be ``None``)."""
    needs_grad = _needs_grad(prob, inputs)
    jl_alg, jl_sense = _plan_names(prob, alg, inputs, options, sensealg, needs_grad)
    cuda = prob.u0.device.type == "cuda"
    if cuda:
        runtime.load_packages(("CUDA", "DiffEqGPU") if isinstance(prob.f, JuliaFunction)
                              else ("CUDA", "DLPack"))
    bridge = runtime.bridge()
    params = FlatParameters(prob)
    plan = JuliaSolvePlan(bridge, prob, _rhs(bridge, prob, params, jl_alg), params, jl_alg,
                          _solve_options(alg, inputs, options), jl_sense)
    if cuda and isinstance(prob.f, JuliaFunction):
        result = _gpu_ensemble(plan, prob, inputs)
        dense = None
    elif needs_grad:
        result = solve_with_adjoint(plan, prob.u0, inputs.t0, inputs.t1, inputs.ts)
        dense = JuliaDense(plan, None, inputs, prob.u0.detach(), result.us) if options.dense \
            else None
    else:
        result = plan.forward(prob.u0, inputs.t0, inputs.t1, inputs.ts, dense=options.dense)
        dense = JuliaDense(plan, result.solutions, inputs, prob.u0, None) if options.dense \
            else None
    return ODESolution(t=inputs.ts, u=result.us, status=result.status, stats=result.stats,
                       alg=alg, backend="julia", dense=dense, t_end=result.t_end)


def _gpu_ensemble(plan: JuliaSolvePlan, prob: ODEProblem, inputs: Any):
    from ..julia import convert
    from ..julia.autograd import JuliaSolveResult

    f = prob.f
    B = int(torch.Size(prob.batch_shape).numel())
    u0 = convert.to_julia(prob.u0.detach().cpu().reshape(B, -1))
    theta = convert.to_julia(plan.params.flatten(prob.u0.dtype, torch.device("cpu")))
    res = call(plan.bridge, "solve_ensemble_gpu", plan.rhs, u0, theta,
               (float(inputs.t0), float(inputs.t1)), convert.to_julia(inputs.ts.detach().cpu()),
               plan.alg.name, plan.options, f.gpu)
    out = plan._result(res)
    return JuliaSolveResult(us=out.us, status=out.status, t_end=out.t_end, stats=out.stats,
                            solutions=None)
