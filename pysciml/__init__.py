"""pysciml: differential equations in torch autograd, with SciML's problem / algorithm / solution
API.

>>> import torch, pysciml as ps
>>> prob = ps.ODEProblem(lambda t, u, p: -p * u, torch.tensor([1.0]), (0.0, 1.0), torch.tensor(2.0))
>>> sol = ps.solve(prob, ps.Tsit5(), saveat=[0.5, 1.0], rtol=1e-8, atol=1e-10)
>>> round(float(sol.u[-1, 0]), 6)
0.135335
"""

from .algorithms import (
                         DP5,
                         QBDF,
                         QNDF,
                         RK4,
                         TRBDF2,
                         AbstractAlgorithm,
                         Euler,
                         KenCarp4,
                         Kvaerno5,
                         Rodas4,
                         Rodas5P,
                         Rosenbrock23,
                         Tsit5,
                         Vern7,
)
from .linear_solvers import GMRES, LUFactorization
from .native.controller import IController, PIController
from .problem import ODEProblem, SplitODEProblem
from .sensealg import (
    BacksolveAdjoint,
    DirectBackprop,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
)
from .solution import ODESolution, ReturnCode, SolveFailedError, Stats
from .solve import solve

__version__ = "0.1.0"

__all__ = [
    "ODEProblem", "solve", "ODESolution", "ReturnCode", "Stats", "SolveFailedError",
    "AbstractAlgorithm", "Euler", "RK4", "Tsit5", "DP5", "Vern7",
    "Rosenbrock23", "Rodas4", "Rodas5P", "TRBDF2", "KenCarp4", "Kvaerno5", "QNDF", "QBDF",
    "SplitODEProblem",
    "PIController", "IController", "LUFactorization", "GMRES",
    "DirectBackprop", "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint",
    "GaussAdjoint",
]
