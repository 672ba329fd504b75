"""Names of algorithms, sensitivity algorithms and VJPs on the Julia side: the Python half maps
every pysciml descriptor one to one, refuses with a reason what Julia cannot reproduce, and
agrees with the Julia half (the tables in julia/PySciMLBridge, parsed with tree-sitter)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pysciml as ps
from pysciml.algorithms import AbstractAlgorithm
from pysciml.julia import names
from pysciml.julia.names import Unsupported, julia_algorithm, julia_sensealg

BRIDGE = Path(__file__).resolve().parents[1] / "julia" / "PySciMLBridge"

EXPORTED_ALGORITHMS = [getattr(ps, n) for n in ps.__all__
                       if isinstance(getattr(ps, n), type)
                       and issubclass(getattr(ps, n), AbstractAlgorithm)
                       and not n.startswith("Abstract")]


def test_every_exported_algorithm_maps_to_the_julia_method_of_its_name():
    assert EXPORTED_ALGORITHMS
    for cls in EXPORTED_ALGORITHMS:
        assert names.ALGORITHMS[cls] == cls.__name__
    assert len(set(names.ALGORITHMS.values())) == len(names.ALGORITHMS)


def test_algorithm_options():
    assert julia_algorithm(ps.Tsit5()).options == {}
    assert julia_algorithm(ps.Tsit5(), finite_diff_jacobian=True).options == {}
    rodas = julia_algorithm(ps.Rodas5P(), finite_diff_jacobian=True)
    assert rodas.name == "Rodas5P" and rodas.options == {"finite_diff_jacobian": True}
    qndf = julia_algorithm(ps.QNDF(max_order=3))
    assert qndf.options == {"max_order": 3}
    assert julia_algorithm(ps.KenCarp4(linsolve=ps.LUFactorization())).name == "KenCarp4"


def test_krylov_with_a_torch_preconditioner_is_refused_with_the_reason():
    with pytest.raises(Unsupported, match=r"alg: QNDF\(linsolve=GMRES.*native runtime only"):
        julia_algorithm(ps.QNDF(linsolve=ps.GMRES()))
    assert issubclass(Unsupported, ValueError)


def test_unknown_algorithm_is_refused():
    class Mine(ps.Tsit5):
        pass

    with pytest.raises(Unsupported, match="alg: Mine has no Julia counterpart"):
        julia_algorithm(Mine())


@pytest.mark.parametrize("sensealg,expected", [
    (ps.InterpolatingAdjoint(), {"checkpointing": False}),
    (ps.InterpolatingAdjoint(checkpointing=True), {"checkpointing": True}),
    (ps.BacksolveAdjoint(), {"checkpointing": True}),
    (ps.QuadratureAdjoint(), {}),
])
def test_sensealg_options(sensealg, expected):
    out = julia_sensealg(sensealg, vjp="zygote", callback_rhs=True)
    assert out.name == type(sensealg).__name__
    assert out.options == {"vjp": "zygote", "autodiff": False, **expected}
    assert "autodiff" not in julia_sensealg(sensealg, vjp="auto", callback_rhs=False).options


def test_gauss_adjoint_maps_by_name_when_pysciml_has_it():
    import pysciml.sensealg

    gauss = getattr(pysciml.sensealg, "GaussAdjoint", None)
    if gauss is None:
        class GaussAdjoint(ps.InterpolatingAdjoint.__mro__[1]):  # an AbstractAdjoint
            pass
        gauss = GaussAdjoint
    out = julia_sensealg(gauss(), vjp="enzyme", callback_rhs=False)
    assert out.name == "GaussAdjoint" and out.options["vjp"] == "enzyme"
    assert out.options["checkpointing"] is False
    if "checkpoints" in getattr(gauss, "__dataclass_fields__", {}):
        with pytest.raises(Unsupported, match=r"GaussAdjoint\(checkpoints=n\)"):
            julia_sensealg(gauss(checkpointing=True, checkpoints=3), vjp="auto",
                           callback_rhs=False)


@pytest.mark.parametrize("sensealg,match", [
    (None, "sensealg: DirectBackprop"),
    (ps.DirectBackprop(), "sensealg: DirectBackprop.*InterpolatingAdjoint"),
    (ps.InterpolatingAdjoint(rtol=1e-8), r"sensealg: InterpolatingAdjoint\(rtol=...\)"),
    (ps.QuadratureAdjoint(alg=ps.Rodas5P()), r"QuadratureAdjoint\(alg=...\)"),
    (ps.InterpolatingAdjoint(checkpointing=True, checkpoints=4), "checkpoints=n"),
])
def test_sensealg_settings_julia_cannot_reproduce_are_refused(sensealg, match):
    with pytest.raises(Unsupported, match=match):
        julia_sensealg(sensealg, vjp="auto", callback_rhs=True)


def test_unknown_vjp_names_the_argument():
    with pytest.raises(ValueError, match="vjp: expected one of"):
        julia_sensealg(ps.InterpolatingAdjoint(), vjp="finite", callback_rhs=False)


# ----------------------------------------------------------------------------- the Julia half

ts_julia = pytest.importorskip("tree_sitter_julia", reason="tree-sitter-julia is not installed")
tree_sitter = pytest.importorskip("tree_sitter")


def _dict_keys(path: Path, const: str) -> set[str]:
    """The string keys of ``const <const> = Dict(...)`` in a Julia file."""
    parser = tree_sitter.Parser(tree_sitter.Language(ts_julia.language()))
    root = parser.parse(path.read_bytes()).root_node
    stack, consts = [root], []
    while stack:  # const statements at any depth (inside `module ... end` too)
        node = stack.pop()
        if node.type == "const_statement":
            consts.append(node)
        stack.extend(node.children)
    for node in consts:
        assign = next(c for c in node.children if c.type == "assignment")
        if assign.children[0].text.decode() != const:
            continue
        call = assign.children[-1]
        args = next(c for c in call.children if c.type == "argument_list")
        keys = set()
        for pair in args.children:
            if pair.type == "binary_expression" and pair.children[1].text == b"=>":
                key = pair.children[0]
                assert key.type == "string_literal"
                keys.add(key.text.decode().strip('"'))
        return keys
    raise AssertionError(f"{const} not found in {path}")


def test_julia_algorithm_table_matches():
    keys = _dict_keys(BRIDGE / "src" / "names.jl", "ALGORITHMS")
    assert keys == set(names.ALGORITHMS.values())
    assert names.IMPLICIT <= keys


def test_julia_sensealg_and_vjp_tables_match():
    assert _dict_keys(BRIDGE / "src" / "names.jl", "SENSEALGS") == set(names.SENSEALGS)
    assert _dict_keys(BRIDGE / "src" / "names.jl", "VJP_CHOICES") == set(names.VJP_CHOICES)


def test_julia_gpu_kernel_table_matches():
    keys = _dict_keys(BRIDGE / "ext" / "PySciMLBridgeDiffEqGPUExt.jl", "GPU_ALGORITHMS")
    assert keys == set(names.GPU_KERNEL_ALGORITHMS)
    source = (BRIDGE / "ext" / "PySciMLBridgeDiffEqGPUExt.jl").read_text(encoding="utf-8")
    for gpu_name in names.GPU_KERNEL_ALGORITHMS.values():
        assert f"{gpu_name}()" in source


def test_julia_retcode_names_cover_scimlbase_failures():
    from pysciml.julia.convert import RETCODES

    # the members SciMLBase documents for ODE solves
    for name in ("Success", "MaxIters", "DtLessThanMin", "Unstable", "DtNaN",
                 "ConvergenceFailure", "InitialFailure", "Failure", "Terminated", "Default"):
        assert name in RETCODES
