"""Detect whether the Julia runtime could start, without starting it.

Importing :mod:`juliacall` starts Julia (and may download and install it), so nothing here
imports it: the package is located with :func:`importlib.util.find_spec`, its version read
from its installed metadata, and a Julia executable looked for on disk only. Nothing here
runs Julia, installs anything or raises.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass

__all__ = ["JuliaStatus", "julia_status"]

INSTALL_COMMAND = 'python -c "import pysciml.julia; pysciml.julia.install()"'
"""Installs and precompiles the Julia packages (once; several minutes)."""

INSTALL_HINT = (
    'Install the Julia runtime with `pip install "pysciml[julia]"` and a Julia >= 1.10 '
    "executable (juliaup, or set PYTHON_JULIACALL_EXE to its path), then run "
    f"`{INSTALL_COMMAND}` once: it installs and compiles the Julia packages (several minutes)."
)

_EXE_NAME = "julia.exe" if os.name == "nt" else "julia"


@dataclass(frozen=True)
class JuliaStatus:
    """Whether the Julia runtime can start, and if not, exactly why.

    Attributes:
        available: ``True`` when juliacall is installed and a Julia executable was found.
        reason: why the runtime is unavailable (empty when it is available).
        executable: the Julia executable found, or ``None``.
        juliacall_version: the installed juliacall version, or ``None``.
        hint: what to do to make it available (or a note on the first start).
    """

    available: bool
    reason: str
    executable: str | None
    juliacall_version: str | None
    hint: str


def julia_status() -> JuliaStatus:
    """Report whether the Julia runtime could start, without starting Julia. Never raises."""
    try:
        return _julia_status()
    except Exception as exc:  # a diagnostic must not fail
        return JuliaStatus(
            available=False,
            reason=f"could not inspect the Julia environment: {type(exc).__name__}: {exc}",
            executable=None,
            juliacall_version=None,
            hint=INSTALL_HINT,
        )


def _julia_status() -> JuliaStatus:
    if not _is_installed("juliacall"):
        return JuliaStatus(
            available=False,
            reason="the Python package juliacall is not installed",
            executable=None,
            juliacall_version=None,
            hint=INSTALL_HINT,
        )
    version = _dist_version("juliacall")

    # An explicitly configured executable wins; if it is wrong, say so rather than
    # silently falling back to another Julia.
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "JULIA_EXE"):
        value = os.environ.get(var)
        if value:
            exe = _as_executable(value)
            if exe is None:
                return JuliaStatus(
                    available=False,
                    reason=f"{var}={value!r} is not an executable file",
                    executable=None,
                    juliacall_version=version,
                    hint=f"Point {var} at a Julia >= 1.10 executable, or unset it.",
                )
            return _found(exe, version)

    exe = _find_executable()
    if exe is None:
        return JuliaStatus(
            available=False,
            reason=(
                "juliacall is installed but no Julia executable was found "
                "(PYTHON_JULIACALL_EXE, JULIA_EXE, `julia` on PATH, juliaup, "
                "juliapkg's install directory)"
            ),
            executable=None,
            juliacall_version=version,
            hint=(
                "Install Julia >= 1.10 (e.g. with juliaup) or set PYTHON_JULIACALL_EXE. "
                "Otherwise juliacall downloads Julia itself on its first start, which needs "
                "network access; that first start also compiles for several minutes."
            ),
        )
    return _found(exe, version)


def _found(exe: str, version: str | None) -> JuliaStatus:
    return JuliaStatus(
        available=True,
        reason="",
        executable=exe,
        juliacall_version=version,
        hint=packages_state(),
    )


JULIAPKG_JSON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "juliapkg.json")
"""pysciml's declaration of its Julia packages (found by juliapkg in the installed package)."""


def packages_state() -> str:
    """Whether juliapkg has installed pysciml's Julia packages, read from juliapkg's own record
    (``pyjuliapkg/meta.json`` of its project: the dependency files it resolved, with their
    hashes), without running anything. Never raises."""
    try:
        with open(JULIAPKG_JSON, "rb") as fp:
            digest = hashlib.sha256(fp.read()).hexdigest()
        ours = os.path.normcase(os.path.normpath(JULIAPKG_JSON))
        for project in _juliapkg_projects(_julia_depot()):
            meta = _read_json(os.path.join(project, "pyjuliapkg", "meta.json"))
            files = meta.get("deps_files") if isinstance(meta, dict) else None
            if not isinstance(files, dict):
                continue
            entry = files.get(ours)
            if isinstance(entry, dict) and entry.get("hash_sha256") == digest:
                return (f"The Julia packages are installed (juliapkg project {project}); Julia "
                        "starts on the first solve that uses it.")
            if entry is not None:
                return (f"pysciml's Julia packages changed since they were installed: run "
                        f"`{INSTALL_COMMAND}`.")
    except OSError:
        pass
    return (f"The Julia packages are not installed yet: run `{INSTALL_COMMAND}` once (installs "
            "and compiles them: several minutes).")


def _is_installed(name: str) -> bool:
    # find_spec on a top-level name locates the package without executing it.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _as_executable(path: str) -> str | None:
    """Return the path of an executable file (a bare name is looked up on PATH)."""
    if os.sep in path or (os.altsep and os.altsep in path):
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(path)


def _find_executable() -> str | None:
    exe = shutil.which("julia")
    if exe:
        return exe
    for candidate in _juliapkg_candidates():
        exe = _as_executable(candidate)
        if exe:
            return exe
    return None


def _juliapkg_candidates() -> list[str]:
    """Julia executables juliapkg may have recorded or installed, found without running it.

    Mirrors juliapkg's own layout (``juliapkg.state``): a project directory holding
    ``pyjuliapkg/meta.json`` (which records the executable last used) and
    ``pyjuliapkg/install/bin/julia``, plus juliaup's installations in the Julia depot.
    """
    candidates: list[str] = []
    depot = _julia_depot()
    for project in _juliapkg_projects(depot):
        prefix = os.path.join(project, "pyjuliapkg")
        meta = _read_json(os.path.join(prefix, "meta.json"))
        recorded = meta.get("executable") if isinstance(meta, dict) else None
        if isinstance(recorded, str) and recorded:
            candidates.append(recorded)
        candidates.append(os.path.join(prefix, "install", "bin", _EXE_NAME))
    candidates.extend(_juliaup_candidates(depot))
    return candidates


def _julia_depot() -> str:
    depot_path = os.environ.get("JULIA_DEPOT_PATH")
    if depot_path:
        first = depot_path.split(";" if os.name == "nt" else ":")[0]
        if first:
            return os.path.abspath(first)
    return os.path.abspath(os.path.join(os.path.expanduser("~"), ".julia"))


def _juliapkg_projects(depot: str) -> list[str]:
    configured = os.environ.get("PYTHON_JULIAPKG_PROJECT")
    if configured:
        return [configured]
    projects = []
    if sys.prefix != sys.base_prefix:
        projects.append(os.path.join(sys.prefix, "julia_env"))
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        projects.append(os.path.join(conda, "julia_env"))
    projects.append(os.path.join(depot, "environments", "pyjuliapkg"))
    return projects


def _juliaup_candidates(depot: str) -> list[str]:
    judir = os.path.join(depot, "juliaup")
    meta = _read_json(os.path.join(judir, "juliaup.json"))
    installed = meta.get("InstalledVersions") if isinstance(meta, dict) else None
    if not isinstance(installed, dict):
        return []
    out = []
    for info in installed.values():
        if isinstance(info, dict) and isinstance(info.get("Path"), str):
            out.append(os.path.abspath(os.path.join(judir, info["Path"], "bin", _EXE_NAME)))
    return out


def _read_json(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as fp:
            return json.load(fp)
    except (OSError, ValueError):
        return None
