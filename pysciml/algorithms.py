r"""Algorithm descriptors, by their DifferentialEquations.jl names.

An algorithm is data: its family's step function and its coefficient table. It holds no
integration state. Tolerances, save points, the step-size controller and the sensitivity method
are arguments of :func:`~pysciml.solve`, as in SciML.

=========  =====  ======  ====  ============  ==========================================
name       order  stages  FSAL  dense output  use
=========  =====  ======  ====  ============  ==========================================
Euler      1      1       –     1 (linear)    fixed ``dt``; teaching, baselines
RK4        4      4       –     3             fixed ``dt``
Tsit5      5(4)   7       yes   4             the default non-stiff method
DP5        5(4)   7       yes   4             Dormand–Prince (``dopri5``)
Vern7      7(6)   10      –     7 (+6 lazy)   tight tolerances (rtol ≤ 1e-8)
=========  =====  ======  ====  ============  ==========================================

Stiff (linearly implicit: one Jacobian and one LU factorisation per step):

============  =====  ======  ============  =============================================
name          order  stages  dense output  use
============  =====  ======  ============  =============================================
Rosenbrock23  2(3)   3       2             loose tolerances, W-method (tolerates any J)
Rodas4        4(3)   6       3             stiffly accurate, medium tolerances
Rodas5P       5(4)   8       4             stiffly accurate; the default stiff method
============  =====  ======  ============  =============================================

Stiff, diagonally implicit (simplified Newton; Jacobian and factorisation reused across steps):

============  =====  ======  ============  =============================================
name          order  stages  dense output  use
============  =====  ======  ============  =============================================
TRBDF2        2(3)   3       2 (Hermite)   loose tolerances
KenCarp4      4(3)   6       3             IMEX with a SplitODEProblem; stiff PDEs
Kvaerno5      5(4)   7       3 (Hermite)   tight tolerances
============  =====  ======  ============  =============================================

Stiff, multistep (one Newton solve per step, Jacobian and LU reused across steps):

============  =====  ==============================================================
name          order  use
============  =====  ==============================================================
QNDF          1–5    variable order NDF (ode15s, SciPy BDF); large stiff systems
QBDF          1–5    the same with plain BDF formulas
============  =====  ==============================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .linear_solvers import AbstractLinearSolver
from .native import rosenbrock_tableaus, sdirk_tableaus, tableaus
from .native.bdf import BDF
from .native.bdf_coefficients import BDF_KAPPA, NDF_KAPPA
from .native.controller import EXPLICIT_DEFAULT, AbstractController, PIController
from .native.explicit import ExplicitRungeKutta
from .native.rosenbrock import Rosenbrock
from .native.rosenbrock_tableaus import RosenbrockTableau
from .native.sdirk import SDIRK
from .native.sdirk_tableaus import SDIRKTableau
from .native.tableau import ButcherTableau

__all__ = ["AbstractAlgorithm", "AbstractExplicitRungeKutta", "Euler", "RK4", "Tsit5", "DP5",
           "Vern7", "AbstractRosenbrock", "Rosenbrock23", "Rodas4", "Rodas5P", "AbstractSDIRK",
           "TRBDF2", "KenCarp4", "Kvaerno5", "AbstractBDF", "QNDF", "QBDF"]


class AbstractAlgorithm:
    """An ODE method. ``adaptive``: whether it controls its step size from an error estimate;
    ``default_controller``: the step-size controller ``solve`` uses unless given one (a family
    may choose its own)."""

    adaptive: ClassVar[bool]
    default_controller: ClassVar[AbstractController] = PIController()

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        fields = dataclasses.fields(self) if dataclasses.is_dataclass(self) else ()
        settings = ", ".join(f"{x.name}={getattr(self, x.name)!r}" for x in fields
                             if getattr(self, x.name) != x.default)
        return f"{self.name}({settings})"


class AbstractExplicitRungeKutta(AbstractAlgorithm):
    """An explicit Runge–Kutta method given by its Butcher tableau.

    Step control defaults to PI control with gains :math:`k_P = 0.4`, :math:`k_I = 1`
    (:data:`~pysciml.native.controller.EXPLICIT_DEFAULT`, diffrax's advice for smoothly
    varying problems). ``controller=PIController()`` (Hairer's DOPRI5 gains, the stiff
    families' default) damps step-size oscillation more and rejects fewer steps at loose
    tolerances, but grows the step more slowly: on a short smooth solve such as a neural ODE's
    it takes one or two steps more. ``controller=IController()`` is SciPy's, torchdiffeq's and
    diffrax's default.
    """

    tableau: ClassVar[ButcherTableau]
    default_controller: ClassVar[AbstractController] = EXPLICIT_DEFAULT

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return self.tableau.adaptive

    def stepper(self) -> ExplicitRungeKutta:
        """The native runtime's step for this method."""
        return ExplicitRungeKutta(self.tableau)


@dataclass(frozen=True, repr=False)
class Euler(AbstractExplicitRungeKutta):
    r"""Forward Euler, :math:`u_{n+1} = u_n + h f(t_n, u_n)`: order 1, fixed step (``dt``)."""

    tableau: ClassVar[ButcherTableau] = tableaus.EULER


@dataclass(frozen=True, repr=False)
class RK4(AbstractExplicitRungeKutta):
    """The classical fourth-order Runge–Kutta method (Kutta 1901): fixed step (``dt``),
    dense output of order 3."""

    tableau: ClassVar[ButcherTableau] = tableaus.RK4


@dataclass(frozen=True, repr=False)
class Tsit5(AbstractExplicitRungeKutta):
    """Tsitouras 5(4) (Tsitouras 2011): 7 stages, FSAL, free 4th-order interpolant. The
    recommended default for non-stiff problems at moderate tolerances."""

    tableau: ClassVar[ButcherTableau] = tableaus.TSIT5


@dataclass(frozen=True, repr=False)
class DP5(AbstractExplicitRungeKutta):
    """Dormand–Prince 5(4) (Dormand & Prince 1980), as ``dopri5``: 7 stages, FSAL, 4th-order
    dense output (Shampine 1986)."""

    tableau: ClassVar[ButcherTableau] = tableaus.DP5


@dataclass(frozen=True, repr=False)
class Vern7(AbstractExplicitRungeKutta):
    """Verner's "most efficient" 7(6) pair: 10 stages, 7th-order dense output from 6 extra
    stages computed only when an interpolated value is needed. For tight tolerances."""

    tableau: ClassVar[ButcherTableau] = tableaus.VERN7


class AbstractRosenbrock(AbstractAlgorithm):
    """A Rosenbrock (linearly implicit Runge–Kutta) method given by its tableau."""

    tableau: ClassVar[RosenbrockTableau]
    adaptive: ClassVar[bool] = True

    def stepper(self) -> Rosenbrock:
        """The native runtime's step for this method."""
        return Rosenbrock(self.tableau)


@dataclass(frozen=True, repr=False)
class Rosenbrock23(AbstractRosenbrock):
    """Shampine & Reichelt's ode23s (SIAM J. Sci. Comput. 18, 1997): order 2 with a
    3rd-order error estimate, L-stable, a W-method (order 2 with any Jacobian approximation),
    dense output of order 2."""

    tableau: ClassVar[RosenbrockTableau] = rosenbrock_tableaus.ROSENBROCK23


@dataclass(frozen=True, repr=False)
class Rodas4(AbstractRosenbrock):
    """Hairer & Wanner's RODAS (Solving ODEs II, IV.7): order 4(3), 6 stages, stiffly accurate,
    L-stable, dense output of order 3."""

    tableau: ClassVar[RosenbrockTableau] = rosenbrock_tableaus.RODAS4


@dataclass(frozen=True, repr=False)
class Rodas5P(AbstractRosenbrock):
    """Steinebach's Rodas5P (BIT Numer. Math. 63, 2023): order 5(4), 8 stages, stiffly
    accurate, L-stable, dense output of order 4. The recommended stiff method at medium to
    tight tolerances."""

    tableau: ClassVar[RosenbrockTableau] = rosenbrock_tableaus.RODAS5P


@dataclass(frozen=True, repr=False)
class AbstractSDIRK(AbstractAlgorithm):
    """A (singly) diagonally implicit Runge–Kutta method, solved by simplified Newton.

    Args:
        linsolve: the linear solver of the Newton iterations: ``None`` / ``LUFactorization()``
            (dense Jacobian, LU reused across steps) or ``GMRES(...)`` (matrix-free
            Newton–Krylov for large states).
    """

    tableau: ClassVar[SDIRKTableau]
    adaptive: ClassVar[bool] = True
    imex: ClassVar[bool] = False
    filter_error: ClassVar[bool] = False

    linsolve: AbstractLinearSolver | None = None

    def stepper(self, imex: bool = False) -> SDIRK:
        """The native runtime's step; ``imex`` for a split problem (IMEX pairs only)."""
        return SDIRK(self.tableau, imex=imex and self.imex, filter_error=self.filter_error,
                     linsolve=self.linsolve)


@dataclass(frozen=True, repr=False)
class TRBDF2(AbstractSDIRK):
    """TR-BDF2 (Bank et al. 1985; Hosea & Shampine 1996) as an ESDIRK: trapezoidal rule then
    BDF2, order 2, L-stable, stiffly accurate, a filtered 3rd-order error estimate, Hermite
    dense output. Cheap at loose tolerances."""

    tableau: ClassVar[SDIRKTableau] = sdirk_tableaus.TRBDF2
    filter_error: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class KenCarp4(AbstractSDIRK):
    """Kennedy & Carpenter's ARK4(3)6L[2]SA (Appl. Numer. Math. 44, 2003): order 4(3), 6
    stages, L-stable, stiffly accurate, 3rd-order dense output. With a
    :class:`~pysciml.SplitODEProblem` it is an IMEX method: the stiff part implicit, the other
    explicit."""

    tableau: ClassVar[SDIRKTableau] = sdirk_tableaus.KENCARP4
    imex: ClassVar[bool] = True


@dataclass(frozen=True, repr=False)
class Kvaerno5(AbstractSDIRK):
    """Kværnø's ESDIRK 5(4) (BIT 44, 2004): 7 stages, L-stable, stiffly accurate, Hermite
    dense output of order 3. For tight tolerances on stiff problems."""

    tableau: ClassVar[SDIRKTableau] = sdirk_tableaus.KVAERNO5


@dataclass(frozen=True, repr=False)
class AbstractBDF(AbstractAlgorithm):
    r"""A variable-order (1–5), quasi-constant-step BDF/NDF method (Shampine & Reichelt 1997),
    each batch member with its own order and step.

    Args:
        max_order: the highest order used (1–5).
        linsolve: the linear solver of the Newton iterations: ``None`` / ``LUFactorization()``
            (dense Jacobian, LU reused across steps) or ``GMRES(...)`` (matrix-free
            Newton–Krylov for large states; the preconditioner receives
            :math:`h\gamma = h/\alpha_k`).
    """

    kappa: ClassVar[tuple[float, ...]]
    adaptive: ClassVar[bool] = True
    max_order: int = 5
    linsolve: AbstractLinearSolver | None = None

    def __post_init__(self) -> None:
        self.stepper()  # validates max_order and linsolve

    def stepper(self) -> BDF:
        """The native runtime's step for this method."""
        return BDF(max_order=self.max_order, kappa=self.kappa, linsolve=self.linsolve)


@dataclass(frozen=True, repr=False)
class QNDF(AbstractBDF):
    """Variable-order NDF (Klopfenstein–Shampine numerical differentiation formulas; ode15s,
    SciPy's ``BDF``, OrdinaryDiffEq's ``QNDF``): orders 1–5, one Newton solve per step, the
    Jacobian and LU reused across steps, dense output of the current order."""

    kappa: ClassVar[tuple[float, ...]] = NDF_KAPPA


@dataclass(frozen=True, repr=False)
class QBDF(AbstractBDF):
    r"""Variable-order BDF in the same quasi-constant-step form (OrdinaryDiffEq's ``QBDF``,
    :math:`\kappa = 0`)."""

    kappa: ClassVar[tuple[float, ...]] = BDF_KAPPA
