# Right-hand sides seen by the bridge.
#
# Layout: a batch of B states of N components is a column-major `N × B` matrix, one column per
# batch member. Python's row-major `(B, N)` tensor has exactly this memory (its dimensions
# reversed), so the state crosses the language boundary without a copy
# (`pysciml/julia/convert.py` is the Python half of this rule).

"""A right-hand side the bridge can integrate."""
abstract type AbstractBridgeRHS end

"""
A right-hand side integrated as one system whose state is the whole `N × B` batch (one call
evaluates every member; the members share their steps).
"""
abstract type AbstractStackedRHS <: AbstractBridgeRHS end

"""
    TorchRHS(f, vjp, jac)

A right-hand side computed by a callable outside Julia (a torch function called back through
PythonCall), out of place: `f(u, p, t)` returns `du` for the `N × B` state `u` and the flat
parameter vector `p`. Reverse mode uses `vjp(u, p, t, λ) -> (λᵀ∂f/∂u, λᵀ∂f/∂p)` through the
`ChainRulesCore.rrule` below, so SciMLSensitivity's `ZygoteVJP` never traces the callable.
`jac(u, p, t)`, when not `nothing`, returns the `B` Jacobian blocks for implicit methods.
"""
struct TorchRHS{F, V, J} <: AbstractStackedRHS
    f::F
    vjp::V
    jac::J
end

"""
    JuliaRHS(f, inplace)

A right-hand side written in Julia for one batch member: `f(du, u, p, t)` (in place) or
`f(u, p, t)` (out of place) on a state vector of length `N`. The hot loop never leaves Julia;
each batch member is its own solve, with its own steps and return code.
"""
struct JuliaRHS{F} <: AbstractBridgeRHS
    f::F
    inplace::Bool
end

"""
    HybridRHS(physics, network)

Julia physics plus a torch network term, `du = physics(u, p, t) + network(u, p, t)`:
`physics` is an out-of-place Julia function of one member's state (Zygote differentiates it),
applied to each column; `network` is a [`TorchRHS`](@ref) on the stacked state.
"""
struct HybridRHS{P, N <: TorchRHS} <: AbstractStackedRHS
    physics::P
    network::N
end

# ----------------------------------------------------------------------------- conversions
# Generic methods for Julia values; `ext/PySciMLBridgePythonCallExt.jl` adds the ones for
# Python objects and `ext/PySciMLBridgeDLPackExt.jl` those for CUDA arrays.

"""
    as_dense(x, like)

`x` as an array of the type and shape of `like` (a copy unless it already is one).
"""
function as_dense(x::AbstractArray, like::AbstractArray)
    length(x) == length(like) ||
        throw(DimensionMismatch("expected $(length(like)) values, got $(length(x))"))
    (typeof(x) === typeof(like) && size(x) == size(like)) && return x
    return copyto!(similar(like), x)
end

"""
    to_callback(x)

`x` as an argument for a callback outside Julia: a dense array (a view of the solver's
memory where possible).
"""
to_callback(x::Array) = x
to_callback(x::AbstractArray) = Array(x)
to_callback(x) = x

"""
    as_pair(x)

The two results of a VJP callback as a tuple.
"""
as_pair(x::Tuple) = x

"""
    options_dict(d)

The options of an entry point as a `Dict{String, Any}`.
"""
options_dict(d::AbstractDict) = Dict{String, Any}(String(k) => v for (k, v) in d)

# ----------------------------------------------------------------------------- evaluation

(r::TorchRHS)(u, p, t) = as_dense(r.f(to_callback(u), to_callback(p), t), u)

function ChainRulesCore.rrule(r::TorchRHS, u, p, t)
    y = r(u, p, t)
    function torch_rhs_pullback(ȳ)
        Δ = unthunk(ȳ)
        Δ isa AbstractZero && return (NoTangent(), ZeroTangent(), ZeroTangent(), NoTangent())
        du, dp = as_pair(r.vjp(to_callback(u), to_callback(p), t,
            to_callback(as_dense(Δ, u))))
        return (NoTangent(), as_dense(du, u), as_dense(dp, p), NoTangent())
    end
    return y, torch_rhs_pullback
end

function (r::HybridRHS)(u, p, t)
    physics = reduce(hcat, [r.physics(u[:, b], p, t) for b in axes(u, 2)])
    return reshape(physics, size(u)) .+ r.network(u, p, t)
end

"""
    stacked_jacobian(r, u, p, t)

The Jacobian of a [`TorchRHS`](@ref) with respect to `vec(u)`: block diagonal, one `N × N`
block per member. The callback returns torch's `(B, N, N)` array `J[b, i, j] = ∂fᵢ/∂uⱼ`, which
arrives with its dimensions reversed as `blocks[j, i, b]`.
"""
function stacked_jacobian(r::TorchRHS, u::AbstractMatrix, p, t)
    N, B = size(u)
    blocks = as_dense(r.jac(to_callback(u), to_callback(p), t), similar(u, N, N, B))
    J = zeros(eltype(u), N * B, N * B)
    for b in 1:B
        range = ((b - 1) * N + 1):(b * N)
        J[range, range] .= transpose(view(blocks, :, :, b))
    end
    return J
end

"""
    ode_function(rhs)

The `ODEFunction` SciML solves for `rhs` (with the Jacobian hook of a torch right-hand side).
"""
function ode_function(r::TorchRHS)
    r.jac === nothing && return ODEFunction{false}(r)
    return ODEFunction{false}(r; jac = (u, p, t) -> stacked_jacobian(r, u, p, t))
end
ode_function(r::HybridRHS) = ODEFunction{false}(r)
ode_function(r::JuliaRHS) = ODEFunction{r.inplace}(r.f)

"""
    evaluate_rhs(rhs, u, p, t)

`f(u, p, t)` on the `N × B` state (every member), as a new `N × B` array.
"""
function evaluate_rhs(rhs::AbstractStackedRHS, u, p, t)
    U = host_state(u)
    return rhs(U, parameter_vector(p, eltype(U)), eltype(U)(t))
end

function evaluate_rhs(rhs::JuliaRHS, u, p, t)
    U = host_state(u)
    T = eltype(U)
    P = parameter_vector(p, T)
    out = similar(U)
    for b in axes(U, 2)
        if rhs.inplace
            rhs.f(view(out, :, b), U[:, b], P, T(t))
        else
            out[:, b] .= rhs.f(U[:, b], P, T(t))
        end
    end
    return out
end

# ----------------------------------------------------------------------------- constructors

"""
    torch_rhs(f, vjp, jac)

A [`TorchRHS`](@ref) from three callables (`jac` may be `nothing`).
"""
torch_rhs(f, vjp, jac) = TorchRHS(f, vjp, jac)

"""
    julia_rhs(source, name)

A [`JuliaRHS`](@ref) from Julia source code: `source` is evaluated in a fresh module (where
`StaticArrays` and `LinearAlgebra` are available; `using SomePackage` loads packages of the
active environment) and `name` (possibly dotted, e.g. `"MyModels.rhs!"`) names the function.
In place when it has a 4-argument method `f(du, u, p, t)`.
"""
function julia_rhs(source::AbstractString, name::AbstractString)
    m = Module(:PySciMLUserRHS)
    Core.eval(m, :(const StaticArrays = $StaticArrays))
    Core.eval(m, :(const LinearAlgebra = $LinearAlgebra))
    Core.eval(m, :(using .StaticArrays, .LinearAlgebra))
    Base.include_string(m, String(source), "pysciml_rhs.jl")
    f = Base.invokelatest(lookup_function, m, String(name))
    inplace = Base.invokelatest(SciMLBase.isinplace, f, 4)
    return JuliaRHS(f, inplace)
end

function lookup_function(m::Module, name::String)
    value = m
    for part in split(name, '.')
        sym = Symbol(part)
        isdefined(value, sym) ||
            throw(ArgumentError("name: $(repr(name)) is not defined by the source"))
        value = getfield(value, sym)
    end
    value isa Module &&
        throw(ArgumentError("name: $(repr(name)) is a module, not a function"))
    return value
end

"""
    hybrid_rhs(physics, network)

A [`HybridRHS`](@ref): `physics` a [`JuliaRHS`](@ref) (out of place), `network` a
[`TorchRHS`](@ref).
"""
function hybrid_rhs(physics::JuliaRHS, network::TorchRHS)
    physics.inplace &&
        throw(ArgumentError("physics: a hybrid right-hand side needs an out-of-place Julia function f(u, p, t) (Zygote differentiates it)"))
    return HybridRHS(physics.f, network)
end
