"""Starting the Julia runtime and choosing it, without Julia: Julia never starts at import; a
start that cannot succeed says exactly why and what to run, is remembered, and never breaks
the native runtime; ``backend="auto"`` picks Julia only when it starts and supports the
request; juliacall's documented settings are applied before it is imported."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import pysciml as ps
from pysciml.backends import select_backend
from pysciml.backends.julia import unsupported_reason
from pysciml.julia import JuliaFunction, environment, runtime


@pytest.fixture
def fresh_runtime(monkeypatch):
    """A runtime that has not started (and forgets what happens in the test)."""
    monkeypatch.setattr(runtime, "_bridge", None)
    monkeypatch.setattr(runtime, "_module", None)
    monkeypatch.setattr(runtime, "_error", None)
    monkeypatch.setattr(runtime, "_loaded", set())
    return runtime


@pytest.fixture
def no_julia(monkeypatch, tmp_path, fresh_runtime):
    """juliacall absent and no Julia executable anywhere."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(environment.importlib.util, "find_spec",
                        lambda name, *a: None if name == "juliacall" else real_find_spec(name, *a))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "JULIA_EXE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JULIA_DEPOT_PATH", str(tmp_path / "depot"))
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "project"))
    return fresh_runtime


@pytest.fixture
def fake_julia(monkeypatch, tmp_path, fresh_runtime):
    """juliacall "installed" and a Julia executable on PATH; juliapkg and juliacall replaced by
    stand-ins recording what the start does."""
    exe = tmp_path / "bin" / "julia"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(exe.parent))
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "JULIA_EXE",
                "PYTHON_JULIACALL_HANDLE_SIGNALS"):
        monkeypatch.delenv(var, raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        environment.importlib.util, "find_spec",
        lambda name, *a: importlib.machinery.ModuleSpec("juliacall", None)
        if name == "juliacall" else real_find_spec(name, *a))
    record = types.SimpleNamespace(resolved=True, resolve_calls=[], seval=[], modules=[],
                                   signals_at_import=None)

    juliapkg = types.ModuleType("juliapkg")

    def resolve(force=False, dry_run=False, update=False):
        record.resolve_calls.append(dict(force=force, dry_run=dry_run, update=update))
        return record.resolved if dry_run else True

    juliapkg.resolve = resolve

    class Module:
        def __init__(self, name):
            self.name = name
            self.PySciMLBridge = types.SimpleNamespace(name="bridge")

        def seval(self, code):
            record.seval.append(code)
            if "CUDA" in code:
                raise RuntimeError("ArgumentError: Package CUDA not found in current path")

    juliacall = types.ModuleType("juliacall")

    def newmodule(name):
        record.modules.append(name)
        return Module(name)

    juliacall.newmodule = newmodule
    real_import = importlib.import_module

    def import_module(name, *a):
        if name == "juliapkg":
            return juliapkg
        if name == "juliacall":
            record.signals_at_import = os.environ.get("PYTHON_JULIACALL_HANDLE_SIGNALS")
            return juliacall
        return real_import(name, *a)

    monkeypatch.setattr(runtime.importlib, "import_module", import_module)
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    return record


def _problem(**changes):
    fields = dict(f=lambda t, u, p: -p * u, u0=torch.tensor([1.0, 2.0]), tspan=(0.0, 1.0),
                  p=torch.tensor(0.5))
    fields.update(changes)
    return ps.ODEProblem(**fields)


JULIA_DECAY = JuliaFunction("decay!(du, u, p, t) = (du .= -p[1] .* u; nothing)", "decay!")


# ----------------------------------------------------------------------------- import

def test_importing_pysciml_never_imports_juliacall():
    code = ("import sys, pysciml, pysciml.julia, pysciml.backends.julia; "
            "assert 'juliacall' not in sys.modules and 'juliapkg' not in sys.modules; "
            "print('clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


# ----------------------------------------------------------------------------- starting

def test_start_without_juliacall_says_why_and_is_remembered(no_julia):
    with pytest.raises(runtime.JuliaUnavailable, match="juliacall is not installed") as first:
        runtime.bridge()
    assert 'pip install "pysciml[julia]"' in str(first.value)
    assert isinstance(first.value, RuntimeError)
    with pytest.raises(runtime.JuliaUnavailable) as second:
        runtime.bridge()
    assert second.value is first.value and runtime.start_error() is first.value
    assert not runtime.is_started()


def test_start_with_juliacall_but_no_executable(no_julia, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        environment.importlib.util, "find_spec",
        lambda name, *a: importlib.machinery.ModuleSpec("juliacall", None)
        if name == "juliacall" else real_find_spec(name, *a))
    with pytest.raises(runtime.JuliaUnavailable, match="no Julia executable was found"):
        runtime.bridge()


def test_start_refuses_to_install_packages_and_names_the_command(fake_julia):
    fake_julia.resolved = False
    with pytest.raises(runtime.JuliaUnavailable, match="not installed") as info:
        runtime.bridge()
    assert runtime.INSTALL_COMMAND in str(info.value)
    assert fake_julia.resolve_calls == [dict(force=False, dry_run=True, update=False)]
    assert fake_julia.modules == []                     # juliacall was never imported


def test_start_loads_the_bridge_in_its_own_module_with_julia_signal_handling(fake_julia):
    b = runtime.bridge()
    assert b.name == "bridge" and runtime.is_started()
    assert fake_julia.modules == [runtime.MODULE_NAME]
    assert fake_julia.seval == ["using PySciMLBridge"]
    assert fake_julia.signals_at_import == "yes"
    assert runtime.bridge() is b                        # started once


def test_user_signal_setting_is_respected(fake_julia, monkeypatch):
    monkeypatch.setenv("PYTHON_JULIACALL_HANDLE_SIGNALS", "no")
    runtime.bridge()
    assert fake_julia.signals_at_import == "no"


def test_install_resolves_explicitly_then_starts(fake_julia):
    fake_julia.resolved = False
    with pytest.raises(runtime.JuliaUnavailable):
        runtime.bridge()
    fake_julia.resolved = True
    runtime.install()
    assert dict(force=True, dry_run=False, update=False) in fake_julia.resolve_calls
    assert runtime.is_started()


def test_missing_gpu_packages_say_how_to_add_them(fake_julia):
    with pytest.raises(runtime.JuliaUnavailable, match=r'juliapkg.add\("CUDA", "052768ef'):
        runtime.load_packages(("CUDA", "DLPack"))


# ----------------------------------------------------------------------------- choosing

def test_auto_with_a_torch_rhs_never_starts_julia(fresh_runtime, monkeypatch):
    def boom():
        raise AssertionError("auto must not start Julia for a torch right-hand side")

    monkeypatch.setattr(runtime, "bridge", boom)
    monkeypatch.delenv("PYSCIML_PREFER_JULIA", raising=False)
    sol = ps.solve(_problem(), ps.Tsit5(), saveat=[1.0], rtol=1e-10, atol=1e-12)
    assert sol.backend == "native"
    assert select_backend("auto", ps.Tsit5()) == "native"


def test_auto_falls_back_to_native_when_julia_cannot_start(no_julia, monkeypatch):
    monkeypatch.setenv("PYSCIML_PREFER_JULIA", "1")
    sol = ps.solve(_problem(), ps.Tsit5(), saveat=[1.0], rtol=1e-10, atol=1e-12)
    assert sol.backend == "native"
    assert abs(float(sol.u[-1, 0]) - torch.exp(torch.tensor(-0.5)).item()) < 1e-9
    assert runtime.start_error() is not None             # it tried, once, and remembered why


def test_auto_falls_back_when_julia_does_not_support_the_request(fake_julia, monkeypatch):
    monkeypatch.setenv("PYSCIML_PREFER_JULIA", "1")
    sol = ps.solve(_problem(), ps.QNDF(linsolve=ps.GMRES()), saveat=[1.0])
    assert sol.backend == "native"
    assert not runtime.is_started()                      # unsupported: not even started


def test_auto_picks_julia_when_it_starts_and_supports(fake_julia, monkeypatch):
    monkeypatch.setenv("PYSCIML_PREFER_JULIA", "1")
    prob = _problem()
    from pysciml.backends.native import SolveOptions
    from pysciml.validation import validate

    inputs = validate(prob, saveat=[1.0], rtol=1e-3, atol=1e-6, max_steps=100, dt=None)
    options = SolveOptions(dt=None, max_steps=100, shared_step=False, dense=False,
                           controller=None, tstops=None, dtmin=0.0, dtmax=None)
    assert select_backend("auto", ps.Tsit5(), prob=prob, inputs=inputs, options=options,
                          sensealg=None) == "julia"


def test_julia_backend_errors_name_the_setting(fake_julia):
    p = torch.tensor(0.5, requires_grad=True)
    with pytest.raises(ValueError, match="sensealg: DirectBackprop"):
        ps.solve(_problem(p=p), ps.Tsit5(), backend="julia")
    with pytest.raises(ValueError, match="controller: custom step-size controllers"):
        ps.solve(_problem(), ps.Tsit5(), backend="julia", controller=ps.IController())
    batch = _problem(u0=torch.ones(3, 2), batch_ndim=1)
    with pytest.raises(ValueError, match="shared_step=True"):
        ps.solve(batch, ps.Tsit5(), backend="julia")
    with pytest.raises(ValueError, match="rtol, atol: per-component tolerances"):
        ps.solve(_problem(p=p), ps.Tsit5(), backend="julia", sensealg=ps.InterpolatingAdjoint(),
                 atol=torch.tensor([1e-6, 1e-8]))


def test_julia_rhs_cannot_run_natively_and_needs_julia(no_julia):
    prob = _problem(f=JULIA_DECAY)
    with pytest.raises(ValueError, match="backend: the right-hand side is written in Julia"):
        ps.solve(prob, ps.Tsit5(), backend="native")
    with pytest.raises(runtime.JuliaUnavailable, match="juliacall is not installed"):
        ps.solve(prob, ps.Tsit5())                        # auto: Julia is the only way


def test_unsupported_reason_is_none_for_a_plain_request():
    prob = _problem()
    from pysciml.backends.native import SolveOptions
    from pysciml.validation import validate

    inputs = validate(prob, saveat=None, rtol=1e-3, atol=1e-6, max_steps=100, dt=None)
    options = SolveOptions(dt=None, max_steps=100, shared_step=False, dense=True,
                           controller=None, tstops=None, dtmin=0.0, dtmax=None)
    assert unsupported_reason(prob, ps.Rodas5P(), inputs, options, None) is None
    reason = unsupported_reason(prob, ps.KenCarp4(), inputs, options, None)
    assert reason is None
    split = ps.SplitODEProblem(lambda t, u, p: -u, lambda t, u, p: u * 0, torch.ones(2),
                               (0.0, 1.0))
    assert "IMEX" in unsupported_reason(split, ps.KenCarp4(), inputs, options, None)


def test_julia_function_arguments_are_checked():
    with pytest.raises(TypeError, match="source: expected Julia source"):
        JuliaFunction("", "f")
    with pytest.raises(ValueError, match="name: expected a Julia function name"):
        JuliaFunction("f(u,p,t) = u", "f(u)")
    with pytest.raises(ValueError, match="vjp: expected one of"):
        JuliaFunction("f(u,p,t) = u", "f", vjp="magic")
    with pytest.raises(ValueError, match="gpu: expected 'kernel' or 'array'"):
        JuliaFunction("f(u,p,t) = u", "f", gpu="tpu")
    with pytest.raises(TypeError, match="physics: expected a JuliaFunction"):
        ps.julia.HybridFunction(lambda t, u, p: u, torch.nn.Linear(2, 2))


def test_doctor_hint_reads_juliapkg_record(fake_julia, tmp_path, monkeypatch):
    import hashlib
    import json

    project = tmp_path / "jlproject"
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(project))
    assert "not installed yet" in environment.julia_status().hint
    ours = os.path.normcase(os.path.normpath(environment.JULIAPKG_JSON))
    digest = hashlib.sha256(Path(environment.JULIAPKG_JSON).read_bytes()).hexdigest()
    (project / "pyjuliapkg").mkdir(parents=True)
    meta = project / "pyjuliapkg" / "meta.json"
    meta.write_text(json.dumps({"deps_files": {ours: {"hash_sha256": "0" * 64}}}))
    assert "changed since they were installed" in environment.julia_status().hint
    meta.write_text(json.dumps({"deps_files": {ours: {"hash_sha256": digest}}}))
    status = environment.julia_status()
    assert status.available and "are installed" in status.hint
