# Algorithms, sensitivity algorithms and VJP choices by name.
#
# These tables are the Julia half of the name map; the Python half is
# `pysciml/julia/names.py`. Only names listed here can be constructed (no `eval` of strings
# coming from Python). The test suite on the Python side parses the keys of these `Dict`
# literals and checks that the two halves agree.

"""
    option(options, key, default)

The value of `key` in the options dictionary, or `default` when it is absent or `nothing`.
"""
function option(options::AbstractDict, key::AbstractString, default)
    value = get(options, key, nothing)
    return value === nothing ? default : value
end

"""
    autodiff_kwargs(options)

Keyword arguments that choose how an implicit method forms its Jacobian: finite differences
(`AutoFiniteDiff()`) when `options["finite_diff_jacobian"]` is true (a right-hand side that calls
back into Python cannot be differentiated by ForwardDiff), the method's default otherwise.
"""
function autodiff_kwargs(options::AbstractDict)
    return option(options, "finite_diff_jacobian", false) ? (; autodiff = AutoFiniteDiff()) :
           NamedTuple()
end

"""
The OrdinaryDiffEq methods the bridge constructs, by the name pysciml uses (the same name).
Each entry maps the options dictionary to the algorithm.
"""
const ALGORITHMS = Dict{String, Function}(
    "Euler" => o -> Euler(),
    "RK4" => o -> RK4(),
    "Tsit5" => o -> Tsit5(),
    "DP5" => o -> DP5(),
    "Vern7" => o -> Vern7(),
    "Rosenbrock23" => o -> Rosenbrock23(; autodiff_kwargs(o)...),
    "Rodas4" => o -> Rodas4(; autodiff_kwargs(o)...),
    "Rodas5P" => o -> Rodas5P(; autodiff_kwargs(o)...),
    "TRBDF2" => o -> TRBDF2(; autodiff_kwargs(o)...),
    "KenCarp4" => o -> KenCarp4(; autodiff_kwargs(o)...),
    "Kvaerno5" => o -> Kvaerno5(; autodiff_kwargs(o)...),
    "QNDF" => o -> QNDF(; max_order = Val(Int(option(o, "max_order", 5))),
        autodiff_kwargs(o)...),
    "QBDF" => o -> QBDF(; max_order = Val(Int(option(o, "max_order", 5))),
        autodiff_kwargs(o)...)
)

"""
The VJP used inside the adjoint (`autojacvec`), by the lower-case name pysciml uses.
`"auto"` leaves the choice to SciMLSensitivity; `"jacobian"` forms Jacobians instead of VJPs.
"""
const VJP_CHOICES = Dict{String, Any}(
    "auto" => nothing,
    "zygote" => ZygoteVJP(),
    "enzyme" => EnzymeVJP(),
    "reversediff" => ReverseDiffVJP(),
    "reversediff_compiled" => ReverseDiffVJP(true),
    "tracker" => TrackerVJP(),
    "jacobian" => false
)

"""
The SciMLSensitivity continuous adjoints, by name. Each entry maps `(options, autojacvec)` to
the sensitivity algorithm. `options["autodiff"] = false` keeps SciMLSensitivity from pushing
ForwardDiff numbers through a right-hand side that calls back into Python.
"""
const SENSEALGS = Dict{String, Function}(
    "InterpolatingAdjoint" => (o, vjp) -> InterpolatingAdjoint(; autojacvec = vjp,
        autodiff = option(o, "autodiff", true),
        checkpointing = option(o, "checkpointing", false)),
    "QuadratureAdjoint" => (o, vjp) -> QuadratureAdjoint(; autojacvec = vjp,
        autodiff = option(o, "autodiff", true),
        abstol = option(o, "abstol", 1e-6), reltol = option(o, "reltol", 1e-3)),
    "GaussAdjoint" => (o, vjp) -> GaussAdjoint(; autojacvec = vjp,
        autodiff = option(o, "autodiff", true),
        checkpointing = option(o, "checkpointing", false)),
    "BacksolveAdjoint" => (o, vjp) -> BacksolveAdjoint(; autojacvec = vjp,
        autodiff = option(o, "autodiff", true),
        checkpointing = option(o, "checkpointing", true))
)

"""
    make_algorithm(name, options)

The OrdinaryDiffEq algorithm called `name`; an `ArgumentError` naming the known ones otherwise.
"""
function make_algorithm(name::AbstractString, options::AbstractDict)
    haskey(ALGORITHMS, name) ||
        throw(ArgumentError("unknown algorithm $(repr(name)); known: $(sort!(collect(keys(ALGORITHMS))))"))
    return ALGORITHMS[name](options)
end

"""
    make_sensealg(name, options)

The SciMLSensitivity adjoint called `name`, with the VJP `options["vjp"]` (see `VJP_CHOICES`).
"""
function make_sensealg(name::AbstractString, options::AbstractDict)
    haskey(SENSEALGS, name) ||
        throw(ArgumentError("unknown sensitivity algorithm $(repr(name)); known: $(sort!(collect(keys(SENSEALGS))))"))
    vjp_name = String(option(options, "vjp", "auto"))
    haskey(VJP_CHOICES, vjp_name) ||
        throw(ArgumentError("unknown vjp $(repr(vjp_name)); known: $(sort!(collect(keys(VJP_CHOICES))))"))
    return SENSEALGS[name](options, VJP_CHOICES[vjp_name])
end

"""
    supported_algorithms()

The algorithm names this bridge constructs, sorted.
"""
supported_algorithms() = sort!(collect(keys(ALGORITHMS)))

"""
    supported_sensealgs()

The sensitivity algorithm names this bridge constructs, sorted.
"""
supported_sensealgs() = sort!(collect(keys(SENSEALGS)))

"""
    retcode_name(retcode)

The name of a `SciMLBase.ReturnCode` member as a `String` (`"Success"`, `"MaxIters"`, ...);
`pysciml.julia.convert` maps it to pysciml's `ReturnCode`.
"""
retcode_name(retcode) = String(Symbol(retcode))
