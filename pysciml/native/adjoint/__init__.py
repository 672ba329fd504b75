"""Continuous adjoint sensitivities of the native runtime (see :mod:`pysciml.sensealg`)."""

from .function import adjoint_solve

__all__ = ["adjoint_solve"]
