r"""Hybrid physics + neural models and their objectives.

* :class:`APHYNITY` with :class:`APHYNITYObjective` — incomplete physics plus a minimal-norm
  network (Yin et al., ICLR 2021);
* :class:`UniversalDifferentialEquation` — known terms plus a network for the unknown ones
  (Rackauckas et al. 2020); :func:`lotka_volterra_ude` is their Lotka–Volterra example;
* :class:`NeuralODE` and :class:`PhysicsOnly` — the data-only and physics-only baselines,
  trained with :class:`TrajectoryObjective`;
* :class:`MLP`, :class:`ConvNet2D`, :class:`StateNetwork` — the networks;
* :func:`forecast` — integrate a model from a batch of initial states.

All models are ``nn.Module`` right-hand sides ``forward(t, u, p=None)`` for
:class:`~pysciml.ODEProblem`, with any solver and any ``sensealg``.
"""

from .models import (
    APHYNITY,
    PENALTIES,
    AbstractHybridODE,
    NeuralODE,
    PhysicsOnly,
    UniversalDifferentialEquation,
)
from .networks import MLP, ConvNet2D, StateNetwork
from .objectives import BATCH_KEYS, APHYNITYObjective, TrajectoryObjective, forecast
from .ude import LotkaVolterraKnownTerms, lotka_volterra_interaction, lotka_volterra_ude

__all__ = [
    "AbstractHybridODE", "APHYNITY", "UniversalDifferentialEquation", "NeuralODE", "PhysicsOnly",
    "PENALTIES", "MLP", "ConvNet2D", "StateNetwork", "forecast", "TrajectoryObjective",
    "APHYNITYObjective", "BATCH_KEYS", "LotkaVolterraKnownTerms", "lotka_volterra_ude",
    "lotka_volterra_interaction",
]
