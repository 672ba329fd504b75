"""
Batches of Julia right-hand sides on the GPU through DiffEqGPU: `EnsembleGPUKernel` (one GPU
thread per member, the `GPU*` methods, an out-of-place `f(u, p, t)` on `SVector`s) or
`EnsembleGPUArray` (the ordinary methods on the batch as one GPU array).
"""
module PySciMLBridgeDiffEqGPUExt

using CUDA: CUDA
using DiffEqGPU: EnsembleGPUArray, EnsembleGPUKernel, GPUKvaerno5, GPURodas4, GPURodas5P,
                 GPURosenbrock23, GPUTsit5, GPUVern7
using PySciMLBridge: PySciMLBridge, JuliaRHS, make_algorithm, ode_function, options_dict,
                     parameter_vector, solve_kwargs, summarize
using SciMLBase: EnsembleProblem, ODEProblem, remake, solve
using StaticArrays: SVector

"""The DiffEqGPU kernel methods, by the name of the CPU method they mirror."""
const GPU_ALGORITHMS = Dict{String, Any}(
    "Tsit5" => GPUTsit5(),
    "Vern7" => GPUVern7(),
    "Rosenbrock23" => GPURosenbrock23(),
    "Rodas4" => GPURodas4(),
    "Rodas5P" => GPURodas5P(),
    "Kvaerno5" => GPUKvaerno5()
)

function PySciMLBridge.solve_ensemble_gpu(rhs::JuliaRHS, u0, p, tspan, ts, alg_name, options,
        ensemble::AbstractString)
    opts = options_dict(options)
    U0 = Array(u0)
    T = eltype(U0)
    N, B = size(U0)
    P = parameter_vector(p, T)
    span = (T(tspan[1]), T(tspan[2]))
    saves = Vector{T}(vec(ts))
    kw = solve_kwargs(opts, T, N, B, false)
    name = String(alg_name)
    if ensemble == "kernel"
        rhs.inplace &&
            throw(ArgumentError("EnsembleGPUKernel needs an out-of-place f(u, p, t) returning an SVector"))
        haskey(GPU_ALGORITHMS, name) ||
            throw(ArgumentError("EnsembleGPUKernel has no method for $(repr(name)); known: $(sort!(collect(keys(GPU_ALGORITHMS))))"))
        prob = ODEProblem{false}(rhs.f, SVector{N, T}(U0[:, 1]), span, SVector{length(P), T}(P))
        members = (prob, i, repeat) -> remake(prob; u0 = SVector{N, T}(U0[:, i]))
        eprob = EnsembleProblem(prob; prob_func = members, safetycopy = false)
        sol = solve(eprob, GPU_ALGORITHMS[name], EnsembleGPUKernel(CUDA.CUDABackend());
            trajectories = B, saveat = saves, reltol = kw.reltol, abstol = kw.abstol)
    elseif ensemble == "array"
        prob = ODEProblem(ode_function(rhs), U0[:, 1], span, P)
        members = (prob, i, repeat) -> remake(prob; u0 = U0[:, i])
        eprob = EnsembleProblem(prob; prob_func = members, safetycopy = false)
        sol = solve(eprob, make_algorithm(name, Dict{String, Any}()),
            EnsembleGPUArray(CUDA.CUDABackend()); trajectories = B, saveat = saves, kw...)
    else
        throw(ArgumentError("ensemble: expected \"kernel\" or \"array\", got $(repr(ensemble))"))
    end
    sols = collect(sol.u)
    S = length(saves)
    values = fill(T(NaN), N, B, S)
    for (b, member) in enumerate(sols)
        for (k, state) in enumerate(member.u)
            k <= S && (values[:, b, k] .= Array(state))
        end
    end
    codes, ends, stats = summarize(rhs, sols, B)
    return (u = values, retcodes = codes, t_end = ends, stats = stats, solutions = sols)
end

end # module PySciMLBridgeDiffEqGPUExt
