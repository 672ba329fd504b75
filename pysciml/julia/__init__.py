"""Python side of pysciml's Julia runtime (DifferentialEquations.jl through juliacall).

Nothing in this package starts Julia at import time. :func:`julia_status` tells whether the
runtime could start (and why not) without starting it; Julia starts on the first solve that
uses it (:func:`pysciml.julia.runtime.bridge`), after the Julia packages were installed once
with :func:`install`.

Modules: ``environment`` (detection), ``runtime`` (start-up), ``convert`` (every array layout
and value conversion), ``names`` (algorithm / sensealg / VJP names), ``entry_points`` (the Julia
functions called), ``callbacks`` (a torch right-hand side called from Julia), ``functions``
(right-hand sides written in Julia), ``autograd`` (the solve as a ``torch.autograd.Function``).
"""

from pysciml.julia.environment import JuliaStatus, julia_status
from pysciml.julia.functions import HybridFunction, JuliaFunction
from pysciml.julia.runtime import JuliaUnavailable, install

__all__ = ["JuliaStatus", "julia_status", "JuliaFunction", "HybridFunction", "JuliaUnavailable",
           "install"]
