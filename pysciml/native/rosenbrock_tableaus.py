r"""Coefficient tables of Rosenbrock (linearly implicit) methods, as validated float64 data.

All methods here are written in the *transformed* form used by OrdinaryDiffEq.jl
(``RodasTableau``: ``A``, ``C``, ``gamma``, ``c``, ``d``, ``H``), in which no stage needs a
product of the Jacobian with a vector.

The step
--------
One step :math:`(t_n, u_n) \to (t_{n+1} = t_n + h,\ u_{n+1})` of an :math:`s`-stage method with
diagonal coefficient :math:`\gamma` is

.. math::
    J = \frac{\partial f}{\partial u}(t_n, u_n), \qquad
    T = \frac{\partial f}{\partial t}(t_n, u_n), \qquad
    W = \frac{1}{h\gamma} I - J ,

and, for :math:`i = 1, \dots, s` in order (one LU factorisation of :math:`W`, :math:`s` solves),

.. math::
    U_i = u_n + \sum_{j<i} a_{ij} k_j, \qquad
    W k_i = f(t_n + c_i h,\ U_i) + \sum_{j<i} \frac{C_{ij}}{h} k_j + h\, d_i\, T ,

so that :math:`U_1 = u_n` and stage 1 is :math:`W k_1 = f(t_n, u_n) + h d_1 T`. The stages
:math:`k_i` are increments (they scale like :math:`h`, not like :math:`f`). Then

.. math::
    u_{n+1} = u_n + \sum_i b_i k_i, \qquad
    \mathrm{err} = \sum_i \tilde b_i k_i = u_{n+1} - \hat u_{n+1},

where :math:`\hat u_{n+1} = u_n + \sum_i (b_i - \tilde b_i) k_i` is the embedded solution of
order ``error_order``; ``err`` is what goes into the error norm (``calculate_residuals`` with
``uprev = u_n`` and ``u = u_{n+1}``, as for explicit methods).

* With a mass matrix :math:`M` (not needed now): :math:`W = M / (h\gamma) - J` and the
  :math:`C` sum is multiplied by :math:`M`: :math:`W k_i = f(\cdot) + M \sum_j (C_{ij}/h) k_j +
  h d_i T`.
* OrdinaryDiffEq.jl builds :math:`W_{\rm ode} = J - I/(h\gamma) = -W` and writes
  ``k_i = W_ode \ -(rhs)``; ``dtC = C ./ dt``, ``dtd = dt .* d``, ``dtgamma = dt * gamma`` --
  the same equations.
* For an autonomous problem :math:`T = 0` (the :math:`d` terms drop out).

**Stiffly accurate** methods (``RODAS4``, ``RODAS5P``; ``stiffly_accurate=True``) have
:math:`c_{s-1} = c_s = 1`, :math:`d_{s-1} = d_s = 0`, :math:`a_{s,\cdot} = (a_{s-1,\cdot}, 1)`,
:math:`b = (a_{s,1}, \dots, a_{s,s-1}, 1)` and :math:`\tilde b = (0, \dots, 0, 1)`; that is,

.. math::
    u_{n+1} = U_s + k_s, \qquad \mathrm{err} = k_s = u_{n+1} - U_s ,

(the embedded solution is the last stage's argument :math:`U_s`), which is exactly what
OrdinaryDiffEq's ``perform_step!`` for ``RosenbrockCache`` does (``u .+= ks[end]``,
``calculate_residuals!(atmp, ks[end], uprev, u, ...)``).

Dense output
------------
With :math:`m` rows of :math:`H` (2 for ``RODAS4``, 3 for ``RODAS5P``, 1 for ``ROSENBROCK23``),
the dense coefficients :math:`\kappa_l = \sum_i H_{li} k_i` (OrdinaryDiffEq's ``integrator.k``)
give, for :math:`\theta \in [0, 1]`,

.. math::
    u(t_n + \theta h) \approx (1-\theta)\, u_n
        + \theta \Big(u_{n+1} + (1-\theta)\big(\kappa_1 + \theta \kappa_2
        + \theta^2 \kappa_3\big)\Big),

(terms with no row of :math:`H` are absent), and its time derivative is

.. math::
    u'(t_n + \theta h) \approx \frac{1}{h}\Big(u_{n+1} - u_n + (1 - 2\theta)\kappa_1
        + (2\theta - 3\theta^2)\kappa_2 + (3\theta^2 - 4\theta^3)\kappa_3\Big).

At :math:`\theta = 0` and :math:`\theta = 1` it reproduces :math:`u_n` and :math:`u_{n+1}`.

Rosenbrock23 in this form
-------------------------
Shampine & Reichelt's ode23s (OrdinaryDiffEq's ``Rosenbrock23``), with
:math:`d = 1/(2+\sqrt 2)`, :math:`e_{32} = 6 + \sqrt 2` (OrdinaryDiffEq's ``c₃₂``) and
:math:`\widetilde W = I - h d J` is usually written with stages :math:`K_i` that scale like
:math:`f`:

.. math::
    F_0 &= f(t_n, u_n), & \widetilde W K_1 &= F_0 + h d T, \\
    F_1 &= f(t_n + h/2,\ u_n + \tfrac h2 K_1), & \widetilde W (K_2 - K_1) &= F_1 - K_1, \\
    u_{n+1} &= u_n + h K_2, \quad F_2 = f(t_n + h, u_{n+1}), &
        \widetilde W K_3 &= F_2 - e_{32}(K_2 - F_1) - 2(K_1 - F_0) + h d T, \\
    \mathrm{err}_{\rm SR} &= \tfrac h6 (K_1 - 2K_2 + K_3), &
    u(t_n + \theta h) &\approx u_n + h\,\frac{\theta(1-\theta) K_1 + \theta(\theta - 2d) K_2}
        {1 - 2d}.

Substituting :math:`F_0 = \widetilde W K_1 - h d T` and
:math:`F_1 = \widetilde W(K_2 - K_1) + K_1` into the third stage and setting
:math:`k_1 = h d K_1`, :math:`k_2 = h d (K_2 - K_1)`,
:math:`k_3 = h d \big(K_3 - e_{32}(K_2 - K_1) - 2K_1\big)` turns it exactly into the general form
above with :math:`\gamma = d` and

.. math::
    a = \begin{pmatrix} \cdot \\ \tfrac{1}{2d} \\ \tfrac1d & \tfrac1d \end{pmatrix}, \quad
    C = \begin{pmatrix} \cdot \\ -\tfrac1d \\ -\tfrac2d & -\tfrac{e_{32}}{d} \end{pmatrix}, \quad
    c = (0, \tfrac12, 1), \quad d_{\rm vec} = (d, 0, -d),

:math:`b = (1/d, 1/d, 0)`, :math:`\tilde b = -\frac{1}{6d}(1,\ e_{32} - 2,\ 1)`
(:math:`= -\mathrm{err}_{\rm SR}`; the sign is irrelevant for the error norm, it makes
:math:`\hat u_{n+1} = u_{n+1} - \mathrm{err}` the third-order companion, as for the other
methods) and :math:`H = \big(0,\ -\frac{1}{d(1-2d)},\ 0\big)`. The third stage is needed only for
the error estimate (:math:`b_3 = 0`, :math:`H_{13} = 0`): a fixed-step integrator may skip it.

*Note on sources.* The :math:`h d T` in the third stage is that of Shampine & Reichelt (1997)
and MATLAB's ode23s; the snapshot of OrdinaryDiffEq.jl read for this table
(``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_perform_step.jl``) adds ``dt * dT`` (i.e.
:math:`h T`) there instead, which is not consistent with the method's :math:`\Gamma` (see
below) and makes the error estimate only :math:`O(h^2)` on non-autonomous problems (the tests
check the :math:`O(h^3)` of the form used here). The snapshot also passes ``(A, C, gamma, d, c,
H)`` positionally to ``RodasTableau(A, C, gamma, c, d, H)`` for Rodas5/Rodas5P; the values
below are assigned by meaning (``c`` are nodes, ``d`` are time-derivative coefficients), as
in the older explicit ``Rodas5PTableau`` (``c2 ... c5``, ``d1 ... d5``), and the checks below
would reject them swapped.

Checks on creation
------------------
The classical (Hairer–Wanner) coefficients are recovered from the transformed ones through
:math:`\Gamma = (I/\gamma - C)^{-1}` (lower triangular, diagonal :math:`\gamma`):
:math:`\alpha = a\Gamma`, :math:`b^{\rm HW} = b\,\Gamma`. A :class:`RosenbrockTableau` checks
that :math:`c_i = \sum_j \alpha_{ij}` (nodes), :math:`d_i = \sum_j \Gamma_{ij}` (the
:math:`\gamma_i` of the time-derivative terms), :math:`\sum_i b^{\rm HW}_i = 1` for :math:`b` and
:math:`b - \tilde b`, that the dense output is consistent (:math:`H d = 0`, i.e. its weights sum
to :math:`\theta`), and the stiffly accurate structure where claimed. The full order conditions
(rooted trees, with :math:`\alpha + \Gamma` on single-child edges and :math:`\alpha` elsewhere)
are checked in ``tests/test_rosenbrock_tableaus.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "RODAS4",
    "RODAS5P",
    "ROSENBROCK23",
    "ROSENBROCK23_D",
    "ROSENBROCK23_E32",
    "RosenbrockTableau",
    "RosenbrockTensors",
]

_TOL = 1e-11  # relative to the size of the coefficients involved


@dataclass(frozen=True)
class RosenbrockTensors:
    """A Rosenbrock tableau cast to one dtype and device, ready for the step function."""

    gamma: torch.Tensor  # () diagonal coefficient
    a: torch.Tensor  # (s, s) strictly lower triangular
    C: torch.Tensor  # (s, s) strictly lower triangular
    c: torch.Tensor  # (s,) nodes
    d: torch.Tensor  # (s,) time-derivative coefficients
    b: torch.Tensor  # (s,)
    btilde: torch.Tensor  # (s,)
    b_and_error: torch.Tensor  # (s, 2): columns b and btilde
    H: torch.Tensor  # (m, s) dense-output rows
    aC_rows: tuple[torch.Tensor, ...]  # (2, i) for stage i: rows a[i, :i] and C[i, :i]


def _lower(rows: tuple[tuple[float, ...], ...], s: int) -> np.ndarray:
    out = np.zeros((s, s))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@dataclass(frozen=True)
class RosenbrockTableau:
    r"""A Rosenbrock method in OrdinaryDiffEq.jl's transformed form; see the module docstring.

    Attributes:
        name: the method's name, as in OrdinaryDiffEq.jl.
        gamma: the diagonal coefficient :math:`\gamma` (:math:`W = I/(h\gamma) - J`).
        a: strictly lower-triangular stage-argument coefficients; row ``i`` holds
            ``a[i][0:i]`` (:math:`U_i = u_n + \sum_{j<i} a_{ij} k_j`).
        C: strictly lower-triangular coefficients of :math:`\sum_{j<i} (C_{ij}/h) k_j`.
        c: nodes, length ``s`` (stage ``i`` evaluates ``f`` at :math:`t_n + c_i h`).
        d: time-derivative coefficients, length ``s`` (the term :math:`h d_i \partial_t f`).
        b: weights of :math:`u_{n+1} = u_n + \sum_i b_i k_i`.
        btilde: weights of the error estimate :math:`\sum_i \tilde b_i k_i`
            (:math:`= u_{n+1} - \hat u_{n+1}`).
        H: dense-output rows, :math:`\kappa_l = \sum_i H_{li} k_i`.
        order: the order of :math:`u_{n+1}`.
        error_order: the order of the embedded solution :math:`\hat u_{n+1}`.
        interp_order: the order of the dense output.
        stiffly_accurate: :math:`u_{n+1} = U_s + k_s` and the error is :math:`k_s`.
    """

    name: str
    gamma: float
    a: tuple[tuple[float, ...], ...]
    C: tuple[tuple[float, ...], ...]
    c: tuple[float, ...]
    d: tuple[float, ...]
    b: tuple[float, ...]
    btilde: tuple[float, ...]
    H: tuple[tuple[float, ...], ...]
    order: int
    error_order: int
    interp_order: int
    stiffly_accurate: bool = False

    def __post_init__(self) -> None:
        s = len(self.c)
        name = self.name
        for label, rows in (("a", self.a), ("C", self.C)):
            if len(rows) != s or any(len(row) != i for i, row in enumerate(rows)):
                raise ValueError(f"{name}: row i of `{label}` must have i entries")
        for label, vec in (("d", self.d), ("b", self.b), ("btilde", self.btilde)):
            if len(vec) != s:
                raise ValueError(f"{name}: `{label}` must have {s} entries")
        if not self.H or any(len(row) != s for row in self.H):
            raise ValueError(f"{name}: `H` needs at least one row of {s} entries")
        if not self.gamma > 0:
            raise ValueError(f"{name}: `gamma` must be positive")

        a, C = _lower(self.a, s), _lower(self.C, s)
        c, d = np.array(self.c), np.array(self.d)
        b, btilde, H = np.array(self.b), np.array(self.btilde), np.array(self.H)
        scale = max(1.0, float(np.abs(C).max()), float(np.abs(a).max()), float(np.abs(H).max()))
        tol = _TOL * scale
        gamma_mat = np.linalg.inv(np.eye(s) / self.gamma - C)  # Γ, lower triangular
        if np.abs(gamma_mat.sum(1) - d).max() > tol:
            raise ValueError(f"{name}: `d` must be the row sums of Γ = (I/gamma - C)^-1")
        if np.abs((a @ gamma_mat).sum(1) - c).max() > tol:
            raise ValueError(f"{name}: `c` must be the row sums of alpha = a Γ")
        if abs((b @ gamma_mat).sum() - 1.0) > tol:
            raise ValueError(f"{name}: weights `b` are not consistent (sum of b Γ != 1)")
        if abs(((b - btilde) @ gamma_mat).sum() - 1.0) > tol:
            raise ValueError(f"{name}: embedded weights `b - btilde` are not consistent")
        if np.abs(H @ d).max() > tol:
            raise ValueError(f"{name}: dense output is not consistent (H d != 0)")
        if self.stiffly_accurate:
            last = list(self.a[-1])
            ok = (
                s >= 2
                and self.c[-1] == 1.0
                and self.c[-2] == 1.0
                and self.d[-1] == 0.0
                and self.d[-2] == 0.0
                and last == list(self.a[-2]) + [1.0]
                and list(self.b) == last + [1.0]
                and list(self.btilde) == [0.0] * (s - 1) + [1.0]
            )
            if not ok:
                raise ValueError(
                    f"{name}: stiffly accurate needs c[-2:] = 1, d[-2:] = 0, a[-1] = (a[-2], 1),"
                    " b = (a[-1], 1) and btilde = (0, ..., 0, 1)"
                )
        if not (1 <= self.interp_order and 1 <= self.error_order and 1 <= self.order):
            raise ValueError(f"{name}: orders must be positive")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def dense_rows(self) -> int:
        return len(self.H)

    @functools.lru_cache(maxsize=16)  # noqa: B019 - frozen, hashable, few (dtype, device) pairs
    def tensors(self, dtype: torch.dtype, device: torch.device) -> RosenbrockTensors:
        """The coefficients as tensors of ``dtype`` on ``device`` (cached)."""
        s = self.stages
        a = torch.tensor(_lower(self.a, s), dtype=torch.float64)
        C = torch.tensor(_lower(self.C, s), dtype=torch.float64)
        b = torch.tensor(self.b, dtype=torch.float64)
        btilde = torch.tensor(self.btilde, dtype=torch.float64)
        kw = dict(dtype=dtype, device=device)
        aC = torch.stack([a, C]).to(**kw)
        return RosenbrockTensors(
            gamma=torch.tensor(self.gamma, dtype=torch.float64).to(**kw),
            a=a.to(**kw),
            C=C.to(**kw),
            c=torch.tensor(self.c, dtype=torch.float64).to(**kw),
            d=torch.tensor(self.d, dtype=torch.float64).to(**kw),
            b=b.to(**kw),
            btilde=btilde.to(**kw),
            b_and_error=torch.stack([b, btilde], -1).to(**kw),
            H=torch.tensor(self.H, dtype=torch.float64).to(**kw),
            aC_rows=tuple(aC[:, i, :i] for i in range(s)),
        )


# --------------------------------------------------------------------------------------------
# Rosenbrock23 (Shampine & Reichelt 1997; MATLAB ode23s; OrdinaryDiffEq.jl `Rosenbrock23`)
# --------------------------------------------------------------------------------------------

ROSENBROCK23_D = 1.0 / (2.0 + math.sqrt(2.0))
"""ode23s' ``d = 1/(2 + √2)`` (OrdinaryDiffEq's ``Rosenbrock23Tableau.d``), the ``gamma``."""
ROSENBROCK23_E32 = 6.0 + math.sqrt(2.0)
"""ode23s' ``e32 = 6 + √2`` (OrdinaryDiffEq's ``Rosenbrock23Tableau.c₃₂``)."""


def _rosenbrock23() -> RosenbrockTableau:
    g, e32 = ROSENBROCK23_D, ROSENBROCK23_E32
    ig = 1.0 / g
    return RosenbrockTableau(
        name="Rosenbrock23",
        gamma=g,
        a=((), (0.5 * ig,), (ig, ig)),
        C=((), (-ig,), (-2.0 * ig, -e32 * ig)),
        c=(0.0, 0.5, 1.0),
        d=(g, 0.0, -g),
        b=(ig, ig, 0.0),
        btilde=(-ig / 6.0, -(e32 - 2.0) * ig / 6.0, -ig / 6.0),
        H=((0.0, -ig / (1.0 - 2.0 * g), 0.0),),
        order=2,
        error_order=3,
        interp_order=2,
        stiffly_accurate=False,
    )


ROSENBROCK23 = _rosenbrock23()
r"""Shampine & Reichelt's (1997) modified Rosenbrock pair of MATLAB's ode23s, OrdinaryDiffEq.jl's
``Rosenbrock23``: order 2 (a W-method: order 2 for any approximation of :math:`J`), L-stable,
3 stages (the third only for the error estimate, whose companion solution is of order 3 with
the exact Jacobian), dense output of order 2. Written in the general transformed form; the
original stage equations and the change of variables are in the module docstring. Source of the
constants: ``SciML/OrdinaryDiffEq.jl``, ``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl``
(``Rosenbrock23Tableau``), stages from ``rosenbrock_perform_step.jl``, interpolant from
``rosenbrock_interpolants.jl``."""


# --------------------------------------------------------------------------------------------
# Rodas4 (Hairer & Wanner's RODAS; OrdinaryDiffEq.jl `Rodas4Tableau`)
# --------------------------------------------------------------------------------------------

_RODAS4_A5 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)

RODAS4 = RosenbrockTableau(
    name="Rodas4",
    gamma=0.25,
    a=(
        (),
        (1.544,),
        (0.9466785280815826, 0.2557011698983284),
        (3.314825187068521, 2.896124015972201, 0.9986419139977817),
        _RODAS4_A5,
        _RODAS4_A5 + (1.0,),
    ),
    C=(
        (),
        (-5.6688,),
        (-2.430093356833875, -0.2063599157091915),
        (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
        (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
        (
            8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
            -6.058818238834054,
        ),
    ),
    c=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
    b=_RODAS4_A5 + (1.0, 1.0),
    btilde=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    H=(
        (
            10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
            1.025137723295662, 0.0,
        ),
        (
            -0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
            -6.594389125716872, 0.0,
        ),
    ),
    order=4,
    error_order=3,
    interp_order=3,
    stiffly_accurate=True,
)
r"""Hairer & Wanner's RODAS (Solving ODEs II, IV.7; Fortran ``rodas.f`` with its method choice 1),
OrdinaryDiffEq.jl's ``Rodas4``: order 4 with an embedded order-3 estimate, 6 stages, stiffly
accurate, L-stable, dense output of order 3 (two rows of ``H``). Source:
``SciML/OrdinaryDiffEq.jl``, ``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl``
(``Rodas4Tableau``; the same numbers as the older explicit ``Rodas4Tableau`` with ``a21 ... h35``,
where ``d4 = -0.03620000000000023``; the difference is below the checks' tolerance)."""


# --------------------------------------------------------------------------------------------
# Rodas5P (Steinebach 2023; OrdinaryDiffEq.jl `Rodas5PTableau`)
# --------------------------------------------------------------------------------------------

_RODAS5P_A6 = (
    -7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
    0.030198172008377946,
)

RODAS5P = RosenbrockTableau(
    name="Rodas5P",
    gamma=0.21193756319429014,
    a=(
        (),
        (3.0,),
        (2.849394379747939, 0.45842242204463923),
        (-6.954028509809101, 2.489845061869568, -10.358996098473584),
        (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
        _RODAS5P_A6,
        _RODAS5P_A6 + (1.0,),
        _RODAS5P_A6 + (1.0, 1.0),
    ),
    C=(
        (),
        (-14.155112264123755,),
        (-17.97296035885952, -2.859693295451294),
        (147.12150275711716, -1.41221402718213, 71.68940251302358),
        (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
        (
            24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125,
            -0.6610691825249471,
        ),
        (
            30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783,
            -19.097331116725623, -28.087943162872662,
        ),
        (
            37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047,
            -40.06618937091002, -54.66780262877968, -9.48861652309627,
        ),
    ),
    c=(
        0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664,
        1.0, 1.0, 1.0,
    ),
    d=(
        0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734,
        2.325825639765069, 0.0, 0.0, 0.0,
    ),
    b=_RODAS5P_A6 + (1.0, 1.0, 1.0),
    btilde=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    H=(
        (
            25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204,
            0.524948541321073, 1.1241088310450404, 0.4272876194431874, -0.17202221070155493,
        ),
        (
            -9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796,
            20.176138334709044, 15.98066361424651, -6.789040303419874, -6.710236069923372,
        ),
        (
            11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643,
            -52.072871366152654, -59.78993625266729, -0.15582684282751913, 4.883087185713722,
        ),
    ),
    order=5,
    error_order=4,
    interp_order=4,
    stiffly_accurate=True,
)
r"""Steinebach's Rodas5P ("Construction of Rosenbrock–Wanner method Rodas5P and numerical
benchmarks within the Julia Differential Equations package", BIT 2023), OrdinaryDiffEq.jl's
``Rodas5P``: order 5 with an embedded order-4 estimate, 8 stages, stiffly accurate, L-stable,
dense output of order 4 (three rows of ``H``). Source: ``SciML/OrdinaryDiffEq.jl``,
``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl`` (``Rodas5PTableau``), checked
against the older explicit ``Rodas5PTableau`` (``a21 ... h48``, ``c2 ... c5``, ``d1 ... d5``)."""
