# Tests of the bridge that need Julia only (no Python): the torch right-hand side is stood in
# for by Julia closures with the same calling convention. References are analytic:
# u(t) = u0 exp(-k t) for du/dt = -k u.
using PySciMLBridge
using PySciMLBridge: ALGORITHMS, SENSEALGS, VJP_CHOICES, make_algorithm, make_sensealg
using Test

const TS = [0.0, 0.25, 0.5, 1.0]
const DECAY_SOURCE = """
function decay!(du, u, p, t)
    du .= -p[1] .* u
    return nothing
end
decay(u, p, t) = -p[1] .* u
"""

exact(u0, k, t) = u0 .* exp(-k * t)

# the stand-in of a torch callback: f, its VJP and its Jacobian blocks, on the N × B state
decay_f(u, p, t) = -p[1] .* u
decay_vjp(u, p, t, λ) = (-p[1] .* λ, [-sum(λ .* u)])
function decay_jac(u, p, t)
    N, B = size(u)
    blocks = zeros(N, N, B)
    for b in 1:B, i in 1:N
        blocks[i, i, b] = -p[1]
    end
    return blocks
end

tight = Dict{String, Any}("rtol" => 1e-10, "atol" => 1e-12)

@testset "PySciMLBridge" begin
    @testset "name tables construct" begin
        for name in keys(ALGORITHMS)
            @test make_algorithm(name, Dict{String, Any}()) !== nothing
        end
        for name in keys(SENSEALGS), vjp in keys(VJP_CHOICES)
            @test make_sensealg(name, Dict{String, Any}("vjp" => vjp)) !== nothing
        end
        @test_throws ArgumentError make_algorithm("NoSuchMethod", Dict{String, Any}())
        @test_throws ArgumentError make_sensealg("InterpolatingAdjoint",
            Dict{String, Any}("vjp" => "nope"))
    end

    u0 = [1.0 2.0 3.0; 0.5 -1.0 4.0]          # N = 2, B = 3
    k = 1.3

    @testset "Julia source, in place and out of place, per-member solves" begin
        for name in ("decay!", "decay")
            rhs = julia_rhs(DECAY_SOURCE, name)
            res = solve_forward(rhs, u0, [k], (0.0, 1.0), TS, "Tsit5", Dict(), tight)
            @test size(res.u) == (2, 3, length(TS))
            for (s, t) in enumerate(TS)
                @test res.u[:, :, s] ≈ exact(u0, k, t) rtol = 1e-8
            end
            @test all(==("Success"), res.retcodes)
            @test res.stats.nf > 0
            du = evaluate_rhs(rhs, u0, [k], 0.0)
            @test du ≈ -k .* u0
        end
    end

    @testset "callback right-hand side: forward, stiff forward, dense output" begin
        rhs = torch_rhs(decay_f, decay_vjp, decay_jac)
        for alg in ("Tsit5", "Rodas5P", "QNDF")
            opts = alg == "Tsit5" ? Dict() : Dict("finite_diff_jacobian" => true)
            res = solve_forward(rhs, u0, [k], (0.0, 1.0), TS, alg, opts, tight)
            @test res.u[:, :, end] ≈ exact(u0, k, 1.0) rtol = 1e-6
        end
        dense = solve_forward(rhs, u0, [k], (0.0, 1.0), TS, "Tsit5", Dict(),
            merge(tight, Dict("dense" => true)))
        q = interpolate(dense.solutions, [0.3, 0.7])
        @test q[:, :, 2] ≈ exact(u0, k, 0.7) rtol = 1e-6
    end

    @testset "gradients of sum(g .* u(ts)) through every adjoint" begin
        g = reshape(collect(1.0:(2 * 3 * length(TS))), 2, 3, length(TS)) ./ 10
        du0_exact = sum(g[:, :, s] .* exp(-k * t) for (s, t) in enumerate(TS))
        dp_exact = sum(sum(g[:, :, s] .* (-t) .* exact(u0, k, t)) for (s, t) in enumerate(TS))
        for rhs in (torch_rhs(decay_f, decay_vjp, nothing), julia_rhs(DECAY_SOURCE, "decay!"))
            for name in keys(SENSEALGS)
                vjp = rhs isa PySciMLBridge.TorchRHS ? "zygote" : "auto"
                res = solve_pullback(rhs, u0, [k], (0.0, 1.0), TS, "Tsit5", Dict(), tight,
                    name, Dict("vjp" => vjp, "abstol" => 1e-12, "reltol" => 1e-10))
                du0, dp = apply_pullback(res.pullback, g)
                @test du0 ≈ du0_exact rtol = 1e-5
                @test dp[1] ≈ dp_exact rtol = 1e-5
            end
        end
    end

    @testset "hybrid: Julia physics plus a callback term" begin
        physics = julia_rhs(DECAY_SOURCE, "decay")
        network = torch_rhs((u, p, t) -> -p[2] .* u,
            (u, p, t, λ) -> (-p[2] .* λ, [0.0, -sum(λ .* u)]), nothing)
        rhs = hybrid_rhs(physics, network)
        res = solve_forward(rhs, u0, [k, 0.4], (0.0, 1.0), TS, "Tsit5", Dict(), tight)
        @test res.u[:, :, end] ≈ exact(u0, k + 0.4, 1.0) rtol = 1e-7
        @test_throws ArgumentError hybrid_rhs(julia_rhs(DECAY_SOURCE, "decay!"), network)
    end

    @testset "a failed solve keeps its partial solution and says why" begin
        rhs = julia_rhs(DECAY_SOURCE, "decay!")
        res = solve_forward(rhs, u0, [k], (0.0, 1.0), TS, "Tsit5", Dict(),
            merge(tight, Dict("max_steps" => 3)))
        @test all(==("MaxIters"), res.retcodes)
        @test all(isnan, res.u[:, :, end])
        @test res.u[:, :, 1] ≈ u0
    end
end
