"""Runtimes behind ``solve``: the registry that picks one, and the adapters to each.

``"native"`` is the PyTorch engine (always available). ``"julia"`` runs DifferentialEquations.jl
through juliacall when Julia can start; ``"auto"`` picks Julia only when it starts and supports
the algorithm, and the native runtime otherwise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["select_backend", "BACKENDS"]

BACKENDS = ("auto", "native", "julia")


def select_backend(backend: str, alg: Any) -> str:
    """The runtime to use for ``alg``: ``"native"`` or ``"julia"``.

    Raises ``ValueError`` for an unknown name, and ``RuntimeError`` saying why when
    ``backend="julia"`` is asked for and Julia cannot run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "native":
        return "native"
    from ..julia.environment import julia_status

    if backend == "auto":
        # The Julia runtime is opt-in until its bridge is present; "auto" never pays Julia's
        # start-up cost implicitly (a failed start must never break the native runtime).
        return "native"
    status = julia_status()
    if not status.available:
        raise RuntimeError(f"backend='julia' is unavailable: {status.reason}. {status.hint}")
    raise RuntimeError(
        "backend='julia': Julia was found, but this version of pysciml has no bridge to it yet; "
        "use backend='native'"
    )
