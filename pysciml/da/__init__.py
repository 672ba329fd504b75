r"""Variational data assimilation through pysciml's differentiable solvers.

* :class:`FourDVar` — strong-constraint 4DVar of a window (or a batch of windows): the cost
  :math:`J(x_0) = \tfrac12\|x_0 - x_b\|^2_{B^{-1}} + \tfrac12\sum_k\|y_k - \mathcal H(\mathcal
  M_{t_0\to t_k}(x_0))\|^2_{R_k^{-1}}`, minimised by L-BFGS or incremental (Gauss–Newton) 4DVar;
  the initial state and/or the model parameters are the control variables.
* :class:`Observations` and the observation operators (identity, masks, subsampling, linear);
  NaN observations are missing.
* :class:`DiagonalCovariance`, :class:`DiffusionCovariance` — background-error covariances.
* Learned 4DVar (:mod:`pysciml.da.learned`): a network maps an observation window to the initial
  state, trained on the 4DVar cost from observations only (Filoche et al. 2022).
"""

from .controls import Background, module_rhs
from .covariance import Covariance, DiagonalCovariance, DiffusionCovariance
from .fourdvar import Analysis, Cost, FourDVar
from .incremental import conjugate_gradient
from .learned import GridWindowEncoder, LearnedFourDVar, MLPWindowEncoder, TrainingHistory
from .observations import (
    IdentityObservation,
    LinearObservation,
    MaskObservation,
    ObservationOperator,
    Observations,
    SubsampleObservation,
)

__all__ = [
    "FourDVar", "Cost", "Analysis", "Background", "module_rhs",
    "Covariance", "DiagonalCovariance", "DiffusionCovariance", "conjugate_gradient",
    "Observations", "ObservationOperator", "IdentityObservation", "MaskObservation",
    "SubsampleObservation", "LinearObservation",
    "LearnedFourDVar", "GridWindowEncoder", "MLPWindowEncoder", "TrainingHistory",
]
