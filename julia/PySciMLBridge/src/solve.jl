# Forward solves, their reverse-mode pullbacks, and dense output.
#
# Every entry point takes the state as an `N × B` array (see rhs.jl), the parameters as a flat
# vector, the save times `ts` (always given: pysciml resolves `saveat` before calling), an
# algorithm name with its options, and the solve options. Results are `N × B × S` arrays
# (Python reads them as `(S, B, N)` without a copy), per-member return-code names, end times
# and work counters.

"""
    host_state(u0)

The initial state as a dense array (a copy of a Python buffer; CUDA arrays stay on the GPU).
"""
host_state(u0::Array) = u0
host_state(u0::AbstractArray) = Array(u0)

"""
    parameter_vector(p, T)

The flat parameter vector with element type `T`.
"""
parameter_vector(p::AbstractVector, ::Type{T}) where {T} = Vector{T}(p)
parameter_vector(p::AbstractArray, ::Type{T}) where {T} = Vector{T}(vec(p))
parameter_vector(::Nothing, ::Type{T}) where {T} = T[]

is_stacked(::AbstractStackedRHS) = true
is_stacked(::JuliaRHS) = false

"""
    tolerance(value, T, N, B, stacked)

A tolerance: a number, or one value per state component (length `N`), repeated over the batch
when the batch is integrated as one system.
"""
tolerance(value::Real, ::Type{T}, N, B, stacked) where {T} = T(value)
function tolerance(value::AbstractArray, ::Type{T}, N, B, stacked) where {T}
    length(value) == N ||
        throw(DimensionMismatch("tolerance: expected $N values (one per state component), got $(length(value))"))
    v = Vector{T}(vec(value))
    return stacked ? repeat(v, 1, B) : v
end

"""
    solve_kwargs(options, T, N, B, stacked)

The keyword arguments of `solve` from pysciml's options: tolerances, step budget, `dt`,
`adaptive`, `dtmin`, `dtmax` and `tstops`.
"""
function solve_kwargs(options::AbstractDict, ::Type{T}, N, B, stacked) where {T}
    kw = Pair{Symbol, Any}[
        :reltol => tolerance(option(options, "rtol", 1e-3), T, N, B, stacked),
        :abstol => tolerance(option(options, "atol", 1e-6), T, N, B, stacked),
        :maxiters => Int(option(options, "max_steps", 100_000))]
    dt = option(options, "dt", nothing)
    dt === nothing || push!(kw, :dt => T(dt))
    option(options, "adaptive", true) || push!(kw, :adaptive => false)
    dtmin = option(options, "dtmin", 0.0)
    dtmin > 0 && push!(kw, :dtmin => T(dtmin))
    dtmax = option(options, "dtmax", nothing)
    dtmax === nothing || push!(kw, :dtmax => T(dtmax))
    tstops = option(options, "tstops", nothing)
    tstops === nothing || isempty(tstops) || push!(kw, :tstops => Vector{T}(vec(tstops)))
    return (; kw...)
end

"""
    base_problem(rhs, u0, p, tspan)

The problem every member's solve remakes: the whole batch for a stacked right-hand side, the
first member's state otherwise.
"""
function base_problem(rhs::AbstractBridgeRHS, u0::AbstractMatrix, p, tspan)
    state = is_stacked(rhs) ? u0 : u0[:, 1]
    return ODEProblem(ode_function(rhs), state, tspan, p)
end

"""
    pad_saves(A, S)

The saved values `A` (time last) completed to `S` save times with `NaN`: a solve that fails
stops saving; pysciml keeps its partial solution and marks the rest as missing.
"""
function pad_saves(A::AbstractArray, S::Integer)
    n = size(A, ndims(A))
    n == S && return A
    absent = fill!(similar(A, size(A)[1:(end - 1)]..., S - n), NaN)
    return cat(A, absent; dims = ndims(A))
end

"""
    saved_values(rhs, base, u0, p, ts, alg, kw, captured)

The values at the save times `ts` as an `N × B × S` array, differentiable by Zygote with
respect to `u0` and `p` (each solve is SciMLSensitivity's adjoint when `kw` holds a
`sensealg`). The solutions themselves go to `captured[]`, outside the derivative.
"""
function saved_values(rhs, base, u0, p, ts, alg, kw, captured)
    S = length(ts)
    if is_stacked(rhs)
        sol = solve(remake(base; u0 = u0, p = p), alg; saveat = ts, kw...)
        ChainRulesCore.ignore_derivatives() do
            captured[] = [sol]
        end
        return pad_saves(Array(sol), S)
    end
    N = size(u0, 1)
    sols = [solve(remake(base; u0 = u0[:, b], p = p), alg; saveat = ts, kw...)
            for b in axes(u0, 2)]
    ChainRulesCore.ignore_derivatives() do
        captured[] = sols
    end
    columns = [reshape(pad_saves(Array(sol), S), N, 1, S) for sol in sols]
    return cat(columns...; dims = 2)
end

"""
    interpolate(solutions, ts)

Dense output: the solutions (from [`solve_forward`](@ref) with `options["dense"] = true`) at
the times `ts`, as an `N × B × Q` array; `NaN` past the end of a failed member.
"""
function interpolate(solutions::AbstractVector, ts)
    first_sol = first(solutions)
    T = eltype(eltype(first_sol.u))
    tq = Vector{T}(vec(ts))
    blocks = map(solutions) do sol
        t0, tend = sol.t[1], sol.t[end]
        direction = sign(tend - t0)
        values = reduce(hcat, [vec(sol(t)) for t in tq])
        for (k, t) in enumerate(tq)
            direction * (t - tend) > 0 && (values[:, k] .= NaN)
        end
        values
    end
    if length(solutions) == 1
        N, B = size(first_sol.u[1], 1), size(first_sol.u[1], 2)
        return reshape(only(blocks), N, B, length(tq))
    end
    N = length(first_sol.u[1])
    return cat([reshape(v, N, 1, length(tq)) for v in blocks]...; dims = 2)
end

stat(sol, name::Symbol) = (s = sol.stats; s === nothing || !hasproperty(s, name) ? 0 :
                                            Int(getproperty(s, name)))

"""
    summarize(rhs, sols, B)

Per-member return-code names and end times, and the work counters summed over the solves
(pysciml's `Stats` names).
"""
function summarize(rhs, sols, B)
    codes = [retcode_name(sol.retcode) for sol in sols]
    ends = [sol.t[end] for sol in sols]
    if is_stacked(rhs)
        codes = fill(only(codes), B)
        ends = fill(only(ends), B)
    end
    total(name) = sum(stat(sol, name) for sol in sols)
    naccept, nreject = total(:naccept), total(:nreject)
    stats = (nf = total(:nf), naccept = naccept, nreject = nreject,
        nsteps = naccept + nreject, njac = total(:njacs), nfactor = total(:nw),
        nlinsolve = total(:nsolve), nnonlinfail = total(:nnonlinconvfail))
    return codes, ends, stats
end

"""
    solve_forward(rhs, u0, p, tspan, ts, alg_name, alg_options, options)

Solve without derivatives. `options["dense"] = true` solves with dense output and returns the
solutions for [`interpolate`](@ref). Returns `(u, retcodes, t_end, stats, solutions)`.
"""
function solve_forward(rhs::AbstractBridgeRHS, u0, p, tspan, ts, alg_name, alg_options, options)
    opts, algopts = options_dict(options), options_dict(alg_options)
    U0 = host_state(u0)
    T = eltype(U0)
    N, B = size(U0)
    P = parameter_vector(p, T)
    span = (T(tspan[1]), T(tspan[2]))
    saves = Vector{T}(vec(ts))
    alg = make_algorithm(String(alg_name), algopts)
    kw = solve_kwargs(opts, T, N, B, is_stacked(rhs))
    base = base_problem(rhs, U0, P, span)
    if option(opts, "dense", false)
        problems = is_stacked(rhs) ? [base] : [remake(base; u0 = U0[:, b]) for b in 1:B]
        sols = [solve(prob, alg; dense = true, kw...) for prob in problems]
        values = interpolate(sols, saves)
    else
        captured = Ref{Any}(nothing)
        values = saved_values(rhs, base, U0, P, saves, alg, kw, captured)
        sols = captured[]
    end
    codes, ends, stats = summarize(rhs, sols, B)
    return (u = values, retcodes = codes, t_end = ends, stats = stats, solutions = sols)
end

"""
    solve_pullback(rhs, u0, p, tspan, ts, alg_name, alg_options, options, sensealg_name,
                   sensealg_options)

Solve and keep the reverse pass: the saved values are differentiated by Zygote through
SciMLSensitivity's adjoint `sensealg_name` (with `sensealg_options`: `vjp`, `checkpointing`,
...). Returns `(u, retcodes, t_end, stats, solutions, pullback)`; give `pullback` to
[`apply_pullback`](@ref) with the cotangent of `u`.
"""
function solve_pullback(rhs::AbstractBridgeRHS, u0, p, tspan, ts, alg_name, alg_options,
        options, sensealg_name, sensealg_options)
    opts, algopts = options_dict(options), options_dict(alg_options)
    sensopts = options_dict(sensealg_options)
    U0 = host_state(u0)
    T = eltype(U0)
    N, B = size(U0)
    P = parameter_vector(p, T)
    span = (T(tspan[1]), T(tspan[2]))
    saves = Vector{T}(vec(ts))
    alg = make_algorithm(String(alg_name), algopts)
    sensealg = make_sensealg(String(sensealg_name), sensopts)
    kw = merge(solve_kwargs(opts, T, N, B, is_stacked(rhs)), (; sensealg = sensealg))
    base = base_problem(rhs, U0, P, span)
    captured = Ref{Any}(nothing)
    values, back = Zygote.pullback(U0, P) do u0_, p_
        saved_values(rhs, base, u0_, p_, saves, alg, kw, captured)
    end
    sols = captured[]
    codes, ends, stats = summarize(rhs, sols, B)
    return (u = values, retcodes = codes, t_end = ends, stats = stats, solutions = sols,
        pullback = Pullback(back, U0, P, all(==("Success"), codes)))
end

"""The reverse pass of a solve, with the shapes of its inputs."""
struct Pullback{F, U, P}
    back::F
    u0::U
    p::P
    successful::Bool
end

"""
    apply_pullback(pullback, cotangent)

`(du0, dp)`: the gradient of `sum(cotangent .* u)` with respect to the initial state (`N × B`)
and the flat parameters. A solve that failed has no meaningful gradient: `NaN` everywhere.
"""
function apply_pullback(pb::Pullback, cotangent)
    nan_result() = (fill!(similar(pb.u0), NaN), fill!(similar(pb.p), NaN))
    pb.successful || return nan_result()
    Δ = host_state(cotangent)
    du0, dp = pb.back(convert(Array{eltype(pb.u0)}, Δ))
    du0 = du0 === nothing ? zero(pb.u0) : as_dense(du0, pb.u0)
    dp = dp === nothing ? zero(pb.p) : as_dense(dp, pb.p)
    return du0, dp
end

"""
    solve_ensemble_gpu(rhs, u0, p, tspan, ts, alg_name, options, ensemble)

A batch of a Julia right-hand side on the GPU through DiffEqGPU (`ensemble = "kernel"`:
`EnsembleGPUKernel` with the `GPU*` method for `alg_name`; `"array"`: `EnsembleGPUArray`).
Defined by the extension loaded with CUDA.jl and DiffEqGPU.jl.
"""
function solve_ensemble_gpu(rhs, u0, p, tspan, ts, alg_name, options, ensemble)
    throw(ArgumentError("GPU ensembles need a Julia right-hand side and the packages CUDA and DiffEqGPU loaded (`using CUDA, DiffEqGPU`); got $(typeof(rhs))"))
end

"""
    wrap_cuda(x)

A CUDA tensor from Python as a `CuArray` sharing its memory (through DLPack; dimensions
reversed). Defined by the extension loaded with CUDA.jl, DLPack.jl and PythonCall.jl.
"""
function wrap_cuda(x)
    throw(ArgumentError("CUDA arrays need the packages CUDA and DLPack loaded (`using CUDA, DLPack`); got $(typeof(x))"))
end

"""
    share_cuda(x)

A `CuArray` as a torch tensor sharing its memory (through DLPack; dimensions reversed).
"""
function share_cuda(x)
    throw(ArgumentError("CUDA arrays need the packages CUDA and DLPack loaded (`using CUDA, DLPack`); got $(typeof(x))"))
end
