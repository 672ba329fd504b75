"""Differentiable physical models: right-hand sides of ODEs and method-of-lines PDEs."""

from .brusselator import Brusselator2D

__all__ = ["Brusselator2D"]
