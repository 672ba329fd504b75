"""The Julia side's files, checked without Julia: package metadata (names, UUIDs, compat bounds
for every dependency, consistent across juliapkg.json and both Project.toml), every Julia
source parses under tree-sitter-julia, and every entry point Python calls is defined in the
bridge with the number of positional arguments Python passes."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from pysciml.julia.entry_points import ENTRY_POINTS

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT / "julia" / "PySciMLBridge"
JULIAPKG = ROOT / "pysciml" / "juliapkg.json"
STDLIBS = {"LinearAlgebra", "Test"}

# Julia compat entries: comma-separated specifiers, each a version, a ^/~/=/≥/< prefixed
# version, or a hyphen range (Pkg docs, "Compatibility")
_VERSION = r"\d+(\.\d+){0,2}"
_SPEC = re.compile(rf"^\s*(({_VERSION})\s*-\s*({_VERSION})|(\^|~|=|>=|≥|<|<=)?\s*{_VERSION})\s*$")


def _toml(path: Path) -> dict:
    with open(path, "rb") as fp:
        return tomllib.load(fp)


def _valid_compat(spec: str) -> bool:
    return all(_SPEC.match(part) for part in spec.split(","))


@pytest.fixture(scope="module")
def bridge_project() -> dict:
    return _toml(BRIDGE / "Project.toml")


@pytest.fixture(scope="module")
def env_project() -> dict:
    return _toml(ROOT / "Project.toml")


@pytest.fixture(scope="module")
def juliapkg() -> dict:
    with open(JULIAPKG, encoding="utf-8") as fp:
        return json.load(fp)


# ----------------------------------------------------------------------------- metadata

def test_bridge_project_names_a_package(bridge_project):
    assert bridge_project["name"] == "PySciMLBridge"
    assert uuid.UUID(bridge_project["uuid"]).version == 4
    assert re.fullmatch(r"\d+\.\d+\.\d+", bridge_project["version"])
    assert (BRIDGE / "src" / "PySciMLBridge.jl").is_file()


def test_every_dependency_has_a_valid_uuid_and_compat_bound(bridge_project, env_project):
    for project in (bridge_project, env_project):
        deps = {**project.get("deps", {}), **project.get("weakdeps", {})}
        compat = project["compat"]
        assert _valid_compat(compat["julia"]), compat["julia"]
        for name, value in deps.items():
            uuid.UUID(value)
            if name in STDLIBS:
                continue
            assert name in compat, f"{name} has no [compat] entry"
            assert _valid_compat(compat[name]), (name, compat[name])
        for name in compat:
            assert name == "julia" or name in deps or name in project.get("extras", {}), name


def test_extensions_name_weak_dependencies_and_exist(bridge_project):
    weak = bridge_project["weakdeps"]
    for ext, triggers in bridge_project["extensions"].items():
        triggers = [triggers] if isinstance(triggers, str) else triggers
        assert all(t in weak for t in triggers), (ext, triggers)
        source = (BRIDGE / "ext" / f"{ext}.jl").read_text(encoding="utf-8")
        assert re.search(rf"^module {ext}\b", source, re.M), ext


def test_test_target_is_declared(bridge_project):
    assert set(bridge_project["targets"]["test"]) <= set(bridge_project["extras"])
    assert (BRIDGE / "test" / "runtests.jl").is_file()


def test_environment_is_not_a_package_and_points_at_the_bridge(env_project, bridge_project):
    assert "name" not in env_project and "uuid" not in env_project
    assert env_project["deps"]["PySciMLBridge"] == bridge_project["uuid"]
    source = ROOT / env_project["sources"]["PySciMLBridge"]["path"]
    assert source.resolve() == BRIDGE.resolve()


def test_juliapkg_json_declares_the_bridge_as_a_dev_path_package(juliapkg, bridge_project):
    assert _valid_compat(juliapkg["julia"])
    bridge = juliapkg["packages"]["PySciMLBridge"]
    assert bridge["uuid"] == bridge_project["uuid"]
    assert bridge["dev"] is True
    # juliapkg resolves a path relative to the directory holding juliapkg.json; the package
    # directory must hold the bridge both in a checkout and in an installed wheel (where the
    # symlink pysciml/julia/PySciMLBridge is copied as a real directory)
    target = JULIAPKG.parent / bridge["path"]
    assert _toml(target / "Project.toml")["uuid"] == bridge_project["uuid"]
    assert target.resolve() == BRIDGE.resolve()
    assert target.resolve().is_relative_to(ROOT)
    for name in ("OrdinaryDiffEq", "SciMLSensitivity", "DiffEqGPU"):
        assert name in juliapkg["packages"], name


def test_uuids_and_bounds_agree_across_the_three_files(juliapkg, bridge_project, env_project):
    known: dict[str, str] = {}
    for project in (bridge_project, env_project):
        for name, value in {**project.get("deps", {}), **project.get("weakdeps", {})}.items():
            assert known.setdefault(name, value) == value, name
    for name, spec in juliapkg["packages"].items():
        uuid.UUID(spec["uuid"])
        assert known.get(name, spec["uuid"]) == spec["uuid"], name
        if "version" in spec:
            assert _valid_compat(spec["version"]), (name, spec["version"])
            bound = env_project["compat"].get(name) or bridge_project["compat"].get(name)
            assert bound == spec["version"], (name, bound, spec["version"])


def test_juliapkg_json_is_found_where_juliapkg_looks():
    # juliapkg reads juliapkg.json from every directory on sys.path and its direct
    # subdirectories: for an installed package, site-packages/pysciml/juliapkg.json
    assert JULIAPKG.parent.name == "pysciml" and (JULIAPKG.parent / "__init__.py").is_file()


# ----------------------------------------------------------------------------- sources

ts_julia = pytest.importorskip("tree_sitter_julia", reason="tree-sitter-julia is not installed "
                               "(pip install tree-sitter tree-sitter-julia)")
tree_sitter = pytest.importorskip("tree_sitter")

SOURCES = sorted(BRIDGE.rglob("*.jl"))


def _parser():
    return tree_sitter.Parser(tree_sitter.Language(ts_julia.language()))


def _errors(node, out):
    if node.type == "ERROR" or node.is_missing:
        out.append(f"{node.type} at line {node.start_point[0] + 1}")
    for child in node.children:
        _errors(child, out)
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(BRIDGE)))
def test_julia_source_parses(path):
    tree = _parser().parse(path.read_bytes())
    assert not tree.root_node.has_error, _errors(tree.root_node, [])


def test_parser_rejects_broken_julia():
    # the check above can fail: an unbalanced block is an error
    tree = _parser().parse(b"function f(x)\n    if x\n        1\nend\n")
    assert tree.root_node.has_error


def _call_signature(node):
    """The call expression of a method definition's signature (``function f(...)`` or
    ``f(...) = ...``), unwrapping ``where`` clauses; ``None`` if ``node`` is not one."""
    if node.type == "function_definition":
        sig = next((c for c in node.children if c.type == "signature"), None)
        if sig is None:
            return None
        node = sig.children[0]
    elif node.type == "assignment":
        node = node.children[0]
    else:
        return None
    while node.type == "where_expression":
        node = node.children[0]
    return node if node.type == "call_expression" else None


def _definitions(source: bytes) -> dict[str, list[tuple[int, int]]]:
    """Method name (last component, ``PySciMLBridge.f`` counts as ``f``) → list of
    ``(required, maximum)`` positional argument counts (maximum -1 for a vararg)."""
    out: dict[str, list[tuple[int, int]]] = {}

    def visit(node):
        call = _call_signature(node)
        if call is not None:
            callee, args = call.children[0], call.children[1]
            if callee.type == "field_expression":
                callee = callee.children[-1]
            if callee.type == "identifier" and args.type == "argument_list":
                required = optional = 0
                vararg = False
                for child in args.children:
                    if child.type == ";":
                        break
                    if child.type == "named_argument":
                        optional += 1
                    elif child.type == "splat_expression":
                        vararg = True
                    elif child.is_named:
                        required += 1
                maximum = -1 if vararg else required + optional
                out.setdefault(callee.text.decode(), []).append((required, maximum))
        for child in node.children:
            visit(child)

    visit(_parser().parse(source).root_node)
    return out


@pytest.fixture(scope="module")
def bridge_definitions() -> dict[str, list[tuple[int, int]]]:
    defs: dict[str, list[tuple[int, int]]] = {}
    for path in SOURCES:
        if "test" in path.relative_to(BRIDGE).parts:
            continue
        for name, arities in _definitions(path.read_bytes()).items():
            defs.setdefault(name, []).extend(arities)
    return defs


def test_definition_extractor_counts_arguments():
    src = b"f(a, b) = 1\nfunction g(x::Int, y=2; z=3) end\nM.h(x) = x\nk(xs...) = 0\n" \
          b"p(x::T) where {T} = x\n"
    defs = _definitions(src)
    assert defs == {"f": [(2, 2)], "g": [(1, 2)], "h": [(1, 1)], "k": [(0, -1)],
                    "p": [(1, 1)]}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_is_defined_with_its_arity(name, bridge_definitions):
    n = len(ENTRY_POINTS[name])
    arities = bridge_definitions.get(name)
    assert arities, f"{name} is not defined in julia/PySciMLBridge"
    assert any(lo <= n and (hi == -1 or n <= hi) for lo, hi in arities), (name, n, arities)


def test_entry_points_are_exported_from_the_bridge_module():
    source = (BRIDGE / "src" / "PySciMLBridge.jl").read_text(encoding="utf-8")
    exported = set(re.findall(r"\b(\w+)\b", source.split("export", 1)[1].split("include")[0]))
    assert set(ENTRY_POINTS) <= exported, set(ENTRY_POINTS) - exported


def test_included_files_exist():
    source = (BRIDGE / "src" / "PySciMLBridge.jl").read_text(encoding="utf-8")
    included = re.findall(r'include\("([^"]+)"\)', source)
    assert included and all((BRIDGE / "src" / f).is_file() for f in included)
    assert {p.name for p in (BRIDGE / "src").glob("*.jl")} == {"PySciMLBridge.jl", *included}


# UUIDs as registered in Julia's General registry (copied from the packages' own
# Project.toml files), so a mistyped UUID in any of the three files is caught here.
REGISTERED = {
    "ADTypes": "47edcb42-4c32-4615-8424-f2b9edc5f35b",
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "ChainRulesCore": "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4",
    "DLPack": "53c2dc0f-f7d5-43fd-8906-6c0220547083",
    "DiffEqGPU": "071ae1c0-96b5-11e9-1965-c90190d839ea",
    "LinearAlgebra": "37e2e46d-f89d-539d-b4ee-838fcccc9c8e",
    "OrdinaryDiffEq": "1dea7af3-3e70-54e6-95c3-0bf5283fa5ed",
    "PythonCall": "6099a3de-0909-46bc-b1f4-468b9a2dfc0d",
    "SciMLBase": "0bca4576-84f4-4d90-8ffe-ffa030f20462",
    "SciMLSensitivity": "1ed8b502-d754-442c-8d5d-10ac956f44a1",
    "StaticArrays": "90137ffa-7385-5640-81b9-e52037218182",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "Zygote": "e88e6eb3-aa80-5325-afca-941959d7151f",
}


def test_uuids_are_the_registered_ones(juliapkg, bridge_project, env_project):
    seen = {}
    for project in (bridge_project, env_project):
        for section in ("deps", "weakdeps", "extras"):
            seen.update(project.get(section, {}))
    seen.update({name: spec["uuid"] for name, spec in juliapkg["packages"].items()})
    seen.pop("PySciMLBridge")
    assert seen == {name: REGISTERED[name] for name in seen}
    assert set(seen) == set(REGISTERED)


def _python_call_sites() -> list[tuple[str, str, int, int]]:
    """Every ``call(bridge, "name", args...)`` in pysciml: (file, name, positional count,
    line)."""
    import ast

    sites = []
    for path in sorted((ROOT / "pysciml").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name != "call" or len(node.args) < 2:
                continue
            target = node.args[1]
            assert isinstance(target, ast.Constant) and isinstance(target.value, str), \
                f"{path}:{node.lineno}: entry point names must be literals"
            assert not any(isinstance(a, ast.Starred) for a in node.args), \
                f"{path}:{node.lineno}: no *args in entry point calls"
            sites.append((str(path.relative_to(ROOT)), target.value, len(node.args) - 2,
                          node.lineno))
    return sites


def test_python_call_sites_match_the_entry_point_table():
    sites = _python_call_sites()
    called = {name for _, name, _, _ in sites}
    # every call the runtime makes (the GPU ones included) goes through the table
    assert {"torch_rhs", "julia_rhs", "hybrid_rhs", "evaluate_rhs", "solve_forward",
            "solve_pullback", "apply_pullback", "interpolate", "solve_ensemble_gpu",
            "wrap_cuda", "share_cuda"} <= called
    for file, name, n, line in sites:
        assert name in ENTRY_POINTS, f"{file}:{line}: {name} is not an entry point"
        assert n == len(ENTRY_POINTS[name]), f"{file}:{line}: {name} called with {n} arguments"
