"""Python side of pysciml's Julia runtime.

Nothing in this package starts Julia at import time. :func:`julia_status` tells whether the
runtime could start (and why not) without starting it.
"""

from pysciml.julia.environment import JuliaStatus, julia_status

__all__ = ["JuliaStatus", "julia_status"]
