"""Runtimes behind ``solve``: the registry that picks one, and the adapters to each.

``"native"`` is the PyTorch engine (always available). ``"julia"`` runs DifferentialEquations.jl
through juliacall (:mod:`pysciml.backends.julia`). ``"auto"`` picks Julia only when all of these
hold, and the native runtime otherwise:

1. the right-hand side is written in Julia (:class:`~pysciml.julia.JuliaFunction`,
   :class:`~pysciml.julia.HybridFunction`), or ``PYSCIML_PREFER_JULIA=1`` asks for Julia for
   torch right-hand sides too (each evaluation then crosses into Python: Julia pays off for
   stiff solves and adjoints, not for cheap explicit steps);
2. the Julia runtime supports the algorithm and the settings (checked without Julia);
3. Julia starts (once per process; a failed start is remembered and never breaks the native
   runtime).

A right-hand side written in Julia cannot run natively: ``backend="native"`` refuses it, and
``"auto"`` raises the reason when Julia cannot take it.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["select_backend", "BACKENDS", "prefer_julia"]

BACKENDS = ("auto", "native", "julia")


def prefer_julia() -> bool:
    """Whether ``PYSCIML_PREFER_JULIA`` asks ``"auto"`` to use Julia for torch right-hand
    sides."""
    return os.environ.get("PYSCIML_PREFER_JULIA", "").strip().lower() in ("1", "yes", "true")


def select_backend(backend: str, alg: Any, *, prob: Any = None, inputs: Any = None,
                   options: Any = None, sensealg: Any = None) -> str:
    """The runtime to use for ``alg``: ``"native"`` or ``"julia"``.

    Args:
        backend: ``"auto"``, ``"native"`` or ``"julia"``.
        alg: the algorithm descriptor.
        prob, inputs, options, sensealg: the request (validated problem, inputs and options of
            ``solve``); without them ``"auto"`` is the native runtime.

    Raises:
        ValueError: an unknown name; a right-hand side written in Julia with
            ``backend="native"``; a request the Julia runtime does not support with
            ``backend="julia"`` (or ``"auto"`` and a Julia right-hand side), with the reason.
        RuntimeError: ``backend="julia"`` (or a Julia right-hand side) and Julia cannot start
            (:class:`~pysciml.julia.JuliaUnavailable`: why, and what to run).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    julia_rhs = False
    if prob is not None:
        from .julia import uses_julia_rhs

        julia_rhs = uses_julia_rhs(prob)
    if backend == "native":
        if julia_rhs:
            raise ValueError("backend: the right-hand side is written in Julia (JuliaFunction or "
                             "HybridFunction); it runs on backend='julia' or 'auto'")
        return "native"
    if backend == "auto" and (prob is None or not (julia_rhs or prefer_julia())):
        return "native"
    if prob is None:  # backend == "julia" without a request: only availability can be checked
        from ..julia import runtime

        runtime.bridge()
        return "julia"
    from ..julia import runtime
    from .julia import unsupported_reason

    reason = unsupported_reason(prob, alg, inputs, options, sensealg)
    if reason is not None:
        if backend == "julia" or julia_rhs:
            raise ValueError(f"backend={backend!r}: the Julia runtime cannot solve this: "
                             f"{reason}")
        return "native"
    try:
        runtime.bridge()
    except runtime.JuliaUnavailable as exc:
        if backend == "julia" or julia_rhs:
            raise runtime.JuliaUnavailable(f"backend={backend!r} is unavailable: {exc}") from exc
        return "native"
    return "julia"
