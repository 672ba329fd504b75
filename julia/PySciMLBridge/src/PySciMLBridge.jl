"""
    PySciMLBridge

The Julia side of pysciml's Julia runtime: forward solves by algorithm name, reverse passes
through SciMLSensitivity's continuous adjoints, right-hand sides called back from torch or
written in Julia, and GPU ensembles through DiffEqGPU (in an extension).

Python calls only the entry points listed in `pysciml/julia/entry_points.py`; each is a plain
function of positional arguments defined here (or, for CUDA, in `ext/`).
"""
module PySciMLBridge

using ADTypes: AutoFiniteDiff
using ChainRulesCore: ChainRulesCore, AbstractZero, NoTangent, ZeroTangent, unthunk
using LinearAlgebra: LinearAlgebra
using OrdinaryDiffEq: OrdinaryDiffEq, DP5, Euler, KenCarp4, Kvaerno5, QBDF, QNDF, RK4,
                      Rodas4, Rodas5P, Rosenbrock23, TRBDF2, Tsit5, Vern7
using SciMLBase: SciMLBase, ODEFunction, ODEProblem, remake, solve
using SciMLSensitivity: BacksolveAdjoint, EnzymeVJP, GaussAdjoint, InterpolatingAdjoint,
                        QuadratureAdjoint, ReverseDiffVJP, TrackerVJP, ZygoteVJP
using StaticArrays: StaticArrays
using Zygote: Zygote

export torch_rhs, julia_rhs, hybrid_rhs, evaluate_rhs, solve_forward, solve_pullback,
       apply_pullback, interpolate, solve_ensemble_gpu, wrap_cuda, share_cuda,
       supported_algorithms, supported_sensealgs

include("names.jl")
include("rhs.jl")
include("solve.jl")

end # module PySciMLBridge
