"""Names of algorithms, sensitivity algorithms and VJPs on the Julia side.

The Python half of the name map (the Julia half: ``julia/PySciMLBridge/src/names.jl``, whose
tables the tests parse and compare with these). pysciml's descriptors carry
DifferentialEquations.jl's names, so an algorithm maps to the OrdinaryDiffEq method of the same
name, with the settings that method understands; anything the Julia runtime cannot reproduce
exactly is refused with the reason, so ``backend="auto"`` falls back to the native runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..algorithms import (
    DP5,
    QBDF,
    QNDF,
    RK4,
    TRBDF2,
    AbstractAlgorithm,
    Euler,
    KenCarp4,
    Kvaerno5,
    Rodas4,
    Rodas5P,
    Rosenbrock23,
    Tsit5,
    Vern7,
)
from ..linear_solvers import LUFactorization
from ..sensealg import (
    AbstractSensitivityAlgorithm,
    BacksolveAdjoint,
    DirectBackprop,
    InterpolatingAdjoint,
    QuadratureAdjoint,
)

__all__ = ["ALGORITHMS", "IMPLICIT", "GPU_KERNEL_ALGORITHMS", "SENSEALGS", "VJP_CHOICES",
           "JuliaName", "Unsupported", "julia_algorithm", "julia_sensealg"]

ALGORITHMS: dict[type, str] = {
    Euler: "Euler", RK4: "RK4", Tsit5: "Tsit5", DP5: "DP5", Vern7: "Vern7",
    Rosenbrock23: "Rosenbrock23", Rodas4: "Rodas4", Rodas5P: "Rodas5P",
    TRBDF2: "TRBDF2", KenCarp4: "KenCarp4", Kvaerno5: "Kvaerno5", QNDF: "QNDF", QBDF: "QBDF",
}
"""Each algorithm descriptor class and the OrdinaryDiffEq method it maps to, one to one."""

IMPLICIT = frozenset({"Rosenbrock23", "Rodas4", "Rodas5P", "TRBDF2", "KenCarp4", "Kvaerno5",
                      "QNDF", "QBDF"})
"""Methods that form Jacobians (by ForwardDiff in Julia unless told to use finite differences)."""

GPU_KERNEL_ALGORITHMS: dict[str, str] = {
    "Tsit5": "GPUTsit5", "Vern7": "GPUVern7", "Rosenbrock23": "GPURosenbrock23",
    "Rodas4": "GPURodas4", "Rodas5P": "GPURodas5P", "Kvaerno5": "GPUKvaerno5",
}
"""The DiffEqGPU ``EnsembleGPUKernel`` method for each CPU method that has one."""

SENSEALGS: tuple[str, ...] = ("InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
                              "BacksolveAdjoint")
"""The SciMLSensitivity continuous adjoints, by the class name of pysciml's descriptor."""

VJP_CHOICES: dict[str, str] = {
    "auto": "SciMLSensitivity's automatic choice",
    "zygote": "ZygoteVJP()",
    "enzyme": "EnzymeVJP()",
    "reversediff": "ReverseDiffVJP()",
    "reversediff_compiled": "ReverseDiffVJP(true)",
    "tracker": "TrackerVJP()",
    "jacobian": "autojacvec=false (Jacobians instead of VJPs)",
}
"""The VJP inside the adjoint (``autojacvec``): pysciml's name and the Julia value."""


class Unsupported(ValueError):
    """The Julia runtime cannot reproduce this setting; the message says which and why."""


@dataclass(frozen=True)
class JuliaName:
    """A name on the Julia side and its options (plain Python values)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def julia_algorithm(alg: AbstractAlgorithm, *, finite_diff_jacobian: bool = False) -> JuliaName:
    """The OrdinaryDiffEq method for ``alg``.

    ``finite_diff_jacobian``: implicit methods form their Jacobians by finite differences
    (needed when the right-hand side calls back into torch, which ForwardDiff cannot trace).

    Raises:
        Unsupported: for an algorithm without a Julia counterpart or a setting the Julia
            runtime does not reproduce (a Krylov linear solver with a torch preconditioner).
    """
    name = ALGORITHMS.get(type(alg))
    if name is None:
        raise Unsupported(f"alg: {type(alg).__name__} has no Julia counterpart; the Julia runtime "
                          f"knows {sorted(ALGORITHMS.values())}")
    options: dict[str, Any] = {}
    linsolve = getattr(alg, "linsolve", None)
    if linsolve is not None and not isinstance(linsolve, LUFactorization):
        raise Unsupported(f"alg: {name}(linsolve={type(linsolve).__name__}(...)) runs on the "
                          "native runtime only (its preconditioner is a torch function)")
    if name in ("QNDF", "QBDF"):
        options["max_order"] = int(alg.max_order)
    if name in IMPLICIT and finite_diff_jacobian:
        options["finite_diff_jacobian"] = True
    return JuliaName(name, options)


def julia_sensealg(sensealg: AbstractSensitivityAlgorithm | None, *, vjp: str,
                   callback_rhs: bool) -> JuliaName:
    """The SciMLSensitivity adjoint for ``sensealg``.

    Args:
        sensealg: pysciml's descriptor.
        vjp: a key of :data:`VJP_CHOICES`.
        callback_rhs: the right-hand side calls back into torch (SciMLSensitivity must then
            not push ForwardDiff numbers through it: ``autodiff=false``).

    Raises:
        Unsupported: for ``DirectBackprop`` (it differentiates the native solver's steps) and
            for settings SciMLSensitivity's adjoints do not have.
    """
    if sensealg is None or isinstance(sensealg, DirectBackprop):
        raise Unsupported(
            "sensealg: DirectBackprop differentiates the native solver's own steps; the Julia "
            "runtime differentiates through a continuous adjoint: pass sensealg="
            "InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint() or BacksolveAdjoint()")
    name = type(sensealg).__name__
    if name not in SENSEALGS:
        raise Unsupported(f"sensealg: {name} has no SciMLSensitivity counterpart; the Julia "
                          f"runtime knows {list(SENSEALGS)}")
    if vjp not in VJP_CHOICES:
        raise ValueError(f"vjp: expected one of {sorted(VJP_CHOICES)}, got {vjp!r}")
    for setting in ("rtol", "atol", "alg"):
        if getattr(sensealg, setting, None) is not None:
            raise Unsupported(
                f"sensealg: {name}({setting}=...) is not available on the Julia runtime "
                "(SciMLSensitivity's adjoint solve uses the forward solve's algorithm and "
                "tolerances); leave it None")
    options: dict[str, Any] = {"vjp": vjp}
    if callback_rhs:
        options["autodiff"] = False
    if getattr(sensealg, "checkpoints", None) is not None:
        raise Unsupported(f"sensealg: {name}(checkpoints=n) is native only; on the Julia "
                          "runtime the checkpoints are the save times (checkpointing=True, "
                          "checkpoints=None)")
    if isinstance(sensealg, InterpolatingAdjoint):
        options["checkpointing"] = bool(sensealg.checkpointing)
    elif isinstance(sensealg, BacksolveAdjoint):
        options["checkpointing"] = True  # reset u to the forward values at the save times
    elif isinstance(sensealg, QuadratureAdjoint):
        pass  # Gauss–Legendre ``nodes`` is native; QuadGK adapts its own nodes in Julia
    else:  # GaussAdjoint (its Gauss–Legendre ``nodes`` is native; Julia's own quadrature)
        options["checkpointing"] = bool(getattr(sensealg, "checkpointing", False))
    return JuliaName(name, options)
