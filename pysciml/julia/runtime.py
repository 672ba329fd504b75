"""Starting Julia, once, on first use: juliacall in its own module, the bridge loaded there.

Nothing here runs at ``import pysciml``. :func:`bridge` starts Julia the first time it is
called and returns the ``PySciMLBridge`` module (a juliacall ``ModuleValue``); a failed start
is remembered and raised again as :class:`JuliaUnavailable` with the reason and what to run,
without trying again in the same process.

juliacall's documented constraints, and how pysciml meets them:

* **Import order with torch.** On some systems importing torch before juliacall corrupts the
  heap (PythonCall FAQ). pysciml imports torch first (it is a torch library), so where this
  happens, ``import juliacall`` before ``import torch`` / ``import pysciml`` in your script.
* **Signals.** Julia's garbage collector uses segmentation faults at safepoints; with more
  than one Julia thread they must be handled by Julia: set
  ``PYTHON_JULIACALL_HANDLE_SIGNALS=yes`` before juliacall is imported. pysciml sets it (unless
  you set it yourself) when it is the one importing juliacall. Then Ctrl-C does not raise
  ``KeyboardInterrupt`` while Julia runs.
* **Threads and the GIL.** Python may only be called from the thread holding the GIL. The
  bridge calls torch back on the calling thread, inside the Julia call that holds the GIL, and
  never from Julia worker threads: batches of torch right-hand sides are one system, batches
  of Julia right-hand sides are solved one member after another.
* **Installs.** The Julia packages (``pysciml/juliapkg.json``) are installed by
  :func:`install`, never implicitly during a solve: a start whose packages are not installed
  fails with the command to run.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any

from .environment import INSTALL_COMMAND, INSTALL_HINT, julia_status

__all__ = ["JuliaUnavailable", "bridge", "install", "is_started", "start_error", "load_packages"]

MODULE_NAME = "PySciMLRuntime"
"""The name of the juliacall module the bridge is loaded into (``juliacall.newmodule``)."""

_lock = threading.Lock()
_bridge: Any = None
_module: Any = None
_loaded: set[str] = set()
_error: JuliaUnavailable | None = None


class JuliaUnavailable(RuntimeError):
    """The Julia runtime cannot start here; the message says why and what to do."""


def is_started() -> bool:
    """Whether the bridge is loaded in this process."""
    return _bridge is not None


def start_error() -> JuliaUnavailable | None:
    """The reason the last start failed, or ``None``."""
    return _error


def bridge() -> Any:
    """The ``PySciMLBridge`` Julia module, starting Julia on the first call.

    Raises:
        JuliaUnavailable: Julia or juliacall is missing, the Julia packages are not installed,
            or Julia failed to start (the message says which, and what to run).
    """
    global _bridge, _error
    if _bridge is not None:
        return _bridge
    with _lock:
        if _bridge is not None:
            return _bridge
        if _error is not None:
            raise _error
        try:
            _bridge = _start()
        except JuliaUnavailable as exc:
            _error = exc
            raise
        except Exception as exc:  # juliacall raises plain Exceptions when Julia fails to start
            _error = JuliaUnavailable(
                f"Julia failed to start: {type(exc).__name__}: {exc}. Check the installation with "
                f"`pysciml doctor`, then run {INSTALL_COMMAND}")
            raise _error from exc
        return _bridge


def _start() -> Any:
    status = julia_status()
    if not status.available:
        raise JuliaUnavailable(f"{status.reason}. {status.hint}")
    _check_resolved()
    if "juliacall" not in sys.modules:
        # Julia handles its own signals (needed with Julia threads); see the module docstring.
        os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "yes")
    global _module
    juliacall = importlib.import_module("juliacall")
    module = juliacall.newmodule(MODULE_NAME)
    module.seval("using PySciMLBridge")
    _module = module
    return module.PySciMLBridge


GPU_PACKAGES = {
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "DLPack": "53c2dc0f-f7d5-43fd-8906-6c0220547083",
}
"""Packages the GPU paths load on demand (not in juliapkg.json: CUDA.jl is large and useless
without an NVIDIA GPU). DiffEqGPU is installed with the others."""


def load_packages(names: tuple[str, ...]) -> None:
    """Load Julia packages next to the bridge (its extensions load with them): CUDA and DLPack
    for CUDA tensors, CUDA and DiffEqGPU for GPU ensembles.

    Raises:
        JuliaUnavailable: a package is not installed (the message says how to add it).
    """
    missing = [name for name in names if name not in _loaded]
    if not missing:
        return
    bridge()
    try:
        _module.seval("using " + ", ".join(missing))
    except Exception as exc:
        adds = "; ".join(f'juliapkg.add("{n}", "{GPU_PACKAGES[n]}")' for n in missing
                         if n in GPU_PACKAGES)
        raise JuliaUnavailable(
            f"the Julia packages {missing} could not be loaded ({type(exc).__name__}: {exc}). "
            f"Add them with `import juliapkg; {adds}` and run {INSTALL_COMMAND}") from exc
    _loaded.update(missing)


def _check_resolved() -> None:
    """Refuse to start when juliapkg would install packages (an install takes minutes; it is
    an explicit step, :func:`install`)."""
    try:
        juliapkg = importlib.import_module("juliapkg")
    except ImportError as exc:
        raise JuliaUnavailable(f"the Python package juliapkg is missing. {INSTALL_HINT}") from exc
    try:
        resolved = juliapkg.resolve(dry_run=True)
    except TypeError:  # a juliapkg without dry runs: juliacall resolves on import
        return
    if not resolved:
        raise JuliaUnavailable(
            "the Julia packages of pysciml (PySciMLBridge, OrdinaryDiffEq, SciMLSensitivity, "
            f"DiffEqGPU) are not installed or are out of date; run {INSTALL_COMMAND} once "
            "(it installs and precompiles them: several minutes)")


def install(*, update: bool = False) -> None:
    """Install and precompile the Julia packages declared in ``pysciml/juliapkg.json``.

    Needs network access and takes several minutes the first time. ``update=True`` updates
    them within their version bounds. Afterwards the Julia runtime starts without installing.
    """
    global _error
    juliapkg = importlib.import_module("juliapkg")
    juliapkg.resolve(force=True, update=update)
    _error = None
    bridge()
