"""The Julia functions Python calls, in one table: name → positional parameters.

Every call into the bridge goes through :func:`call`, which refuses names and argument counts
that are not in :data:`ENTRY_POINTS`; the tests check the table against the definitions in
``julia/PySciMLBridge`` (parsed with tree-sitter-julia), so Python and Julia cannot drift apart.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENTRY_POINTS", "call"]

ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "torch_rhs": ("f", "vjp", "jac"),
    "julia_rhs": ("source", "name"),
    "hybrid_rhs": ("physics", "network"),
    "evaluate_rhs": ("rhs", "u", "p", "t"),
    "solve_forward": ("rhs", "u0", "p", "tspan", "ts", "alg_name", "alg_options", "options"),
    "solve_pullback": ("rhs", "u0", "p", "tspan", "ts", "alg_name", "alg_options", "options",
                       "sensealg_name", "sensealg_options"),
    "apply_pullback": ("pullback", "cotangent"),
    "interpolate": ("solutions", "ts"),
    "solve_ensemble_gpu": ("rhs", "u0", "p", "tspan", "ts", "alg_name", "options", "ensemble"),
    "wrap_cuda": ("x",),
    "share_cuda": ("x",),
    "supported_algorithms": (),
    "supported_sensealgs": (),
}
"""Each entry point of ``PySciMLBridge`` and the names of its positional parameters."""


def call(bridge: Any, name: str, *args: Any) -> Any:
    """Call the bridge's entry point ``name`` with ``args``, after checking both against
    :data:`ENTRY_POINTS`."""
    params = ENTRY_POINTS.get(name)
    if params is None:
        raise ValueError(f"name: {name!r} is not an entry point of PySciMLBridge; known: "
                         f"{sorted(ENTRY_POINTS)}")
    if len(args) != len(params):
        raise TypeError(f"{name}: expected {len(params)} arguments {params}, got {len(args)}")
    return getattr(bridge, name)(*args)
