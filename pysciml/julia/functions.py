r"""Right-hand sides written in Julia, and hybrids of Julia physics and a torch network.

A :class:`JuliaFunction` keeps the hot loop in Julia: only the parameters come from torch.
Its Julia function sees one batch member,

.. code-block:: julia

    function f!(du, u, p, t)      # in place, or f(u, p, t) returning du (out of place)
        du .= -p[1] .* u
    end

with ``u`` the member's state as a vector of length ``N`` (the state flattened in row-major
order), ``p`` the flat parameter vector (the tensor leaves of the problem's ``p``, flattened and
concatenated in pytree order) and ``t`` a scalar. Each batch member is its own Julia solve with
its own steps and return code.

A :class:`HybridFunction` adds a torch term, :math:`f = f_{\text{Julia}}(u, p, t) +
g_\theta(t, u, p)`: the physics runs in Julia (out of place, differentiated by Zygote), the
network is called back (its VJP by ``torch.func``); its parameters :math:`\theta` get gradients
like those of any ``nn.Module`` right-hand side. The Julia physics receives the whole flat
vector: the leaves of ``p`` first, then the network's parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

from . import convert
from .entry_points import call
from .names import VJP_CHOICES

__all__ = ["JuliaFunction", "HybridFunction", "is_julia_rhs"]


class _NoGradient(torch.autograd.Function):
    """Values computed in Julia outside a solve: right, but without a gradient; a backward
    pass through them raises instead of silently dropping that part."""

    @staticmethod
    def forward(ctx, values, *anchors):
        return values.clone()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "a JuliaFunction evaluated from Python carries no gradient; differentiate through "
            "solve(..., backend='julia', sensealg=InterpolatingAdjoint()) instead")


class JuliaFunction:
    """A right-hand side written in Julia.

    Args:
        source: Julia source defining the function (evaluated in a fresh module where
            ``StaticArrays`` and ``LinearAlgebra`` are available; ``using MyPackage`` loads a
            package of the Julia environment, ``include("file.jl")`` a file).
        name: the function's name in ``source`` (dotted for a module's function,
            ``"MyModels.rhs!"``).
        vjp: the VJP inside SciMLSensitivity's adjoint, a key of
            :data:`pysciml.julia.names.VJP_CHOICES` (``"auto"``: SciMLSensitivity chooses;
            ``"enzyme"`` suits in-place functions, ``"zygote"`` out-of-place ones).
        gpu: for a batch on CUDA, the DiffEqGPU ensemble: ``"kernel"`` (``EnsembleGPUKernel``,
            an out-of-place function on ``SVector`` s) or ``"array"`` (``EnsembleGPUArray``).

    Called from Python (``f(t, u, p)``) it evaluates in Julia, without a gradient.
    """

    def __init__(self, source: str, name: str, *, vjp: str = "auto", gpu: str = "kernel"):
        if not isinstance(source, str) or not source.strip():
            raise TypeError("source: expected Julia source code as a non-empty str")
        if not isinstance(name, str) or not name.replace(".", "").replace("!", "").replace(
                "_", "").isalnum():
            raise ValueError(f"name: expected a Julia function name such as 'rhs!' or "
                             f"'MyModels.rhs!', got {name!r}")
        if vjp not in VJP_CHOICES:
            raise ValueError(f"vjp: expected one of {sorted(VJP_CHOICES)}, got {vjp!r}")
        if gpu not in ("kernel", "array"):
            raise ValueError(f"gpu: expected 'kernel' or 'array', got {gpu!r}")
        self.source = source
        self.name = name
        self.vjp = vjp
        self.gpu = gpu
        self._handle: Any = None

    def handle(self, bridge: Any) -> Any:
        """The bridge's ``JuliaRHS`` for this function (compiled once per process)."""
        if self._handle is None:
            self._handle = call(bridge, "julia_rhs", self.source, self.name)
        return self._handle

    def __call__(self, t: torch.Tensor, u: torch.Tensor, p: Any) -> torch.Tensor:
        from .runtime import bridge as start

        b = start()
        batch_ndim = t.ndim if isinstance(t, torch.Tensor) else 0
        theta = flat_parameters(p, u.dtype, u.device)
        U = convert.state_to_julia(u, batch_ndim)
        du = call(b, "evaluate_rhs", self.handle(b), U, convert.to_julia(theta),
                  float(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else float(t))
        out = convert.from_julia(du, device=u.device).reshape(u.shape).to(u.dtype)
        anchors = [x for x in (u, *pytree.tree_leaves(p)) if isinstance(x, torch.Tensor)]
        return _NoGradient.apply(out, *anchors)

    def __repr__(self) -> str:
        return f"JuliaFunction(name={self.name!r}, vjp={self.vjp!r})"


class HybridFunction(torch.nn.Module):
    """Julia physics plus a torch network term, ``f(t, u, p) = physics + network(t, u, p)``.

    Args:
        physics: a :class:`JuliaFunction` with an out-of-place Julia function ``f(u, p, t)``.
        network: a torch callable ``network(t, u, p)`` (an ``nn.Module`` gets gradients for its
            parameters).
    """

    def __init__(self, physics: JuliaFunction, network: Callable[..., torch.Tensor]):
        super().__init__()
        if not isinstance(physics, JuliaFunction):
            raise TypeError(f"physics: expected a JuliaFunction, got {type(physics).__name__}")
        if not callable(network):
            raise TypeError(f"network: expected a torch callable network(t, u, p), got "
                            f"{type(network).__name__}")
        self.physics = physics
        self.network = network

    def forward(self, t: torch.Tensor, u: torch.Tensor, p: Any = None,
                part: str = "both") -> torch.Tensor:
        """``part``: ``"both"``, or ``"network"`` for the torch term alone (what Julia calls
        back)."""
        if part == "network":
            return self.network(t, u, p)
        if part != "both":
            raise ValueError(f"part: expected 'both' or 'network', got {part!r}")
        return self.physics(t, u, p) + self.network(t, u, p)


def is_julia_rhs(fn: Any) -> bool:
    """Whether ``fn`` is written (at least partly) in Julia and so needs the Julia runtime."""
    return isinstance(fn, (JuliaFunction, HybridFunction))


def flat_parameters(p: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The tensor leaves of ``p``, flattened and concatenated (what a Julia function sees)."""
    leaves = [x for x in pytree.tree_leaves(p) if isinstance(x, torch.Tensor)]
    if not leaves:
        return torch.zeros(0, dtype=dtype, device=device)
    return torch.cat([x.detach().reshape(-1).to(dtype) for x in leaves])
