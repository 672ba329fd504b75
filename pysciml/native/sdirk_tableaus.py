r"""Coefficient tables of (E)SDIRK methods and one additive (IMEX) pair, as validated float64 data.

An :math:`s`-stage singly diagonally implicit Runge–Kutta method has a lower-triangular Butcher
matrix :math:`A` with constant diagonal :math:`a_{ii} = \gamma`; in an *ESDIRK* the first stage
is explicit (:math:`a_{11} = 0`, :math:`c_1 = 0`) and the diagonal is :math:`\gamma` from the
second stage on. All three methods here are ESDIRKs and stiffly accurate
(:math:`b = (a_{s1}, \dots, a_{ss})`, :math:`c_s = 1`).

The step (one right-hand side :math:`f`)
----------------------------------------
One step :math:`(t_n, u_n) \to (t_{n+1} = t_n + h,\ u_{n+1})` computes stages
:math:`k_i \approx f(t_n + c_i h, U_i)` in order :math:`i = 1, \dots, s`:

.. math::
    k_1 = f(t_n, u_n) \quad (\text{ESDIRK}; \ U_1 = u_n), \\
    \text{for } i \ge 2: \quad
    \tilde u_i = u_n + h \sum_{j<i} a_{ij} k_j, \qquad
    z_i = h\, f\big(t_n + c_i h,\ \tilde u_i + \gamma z_i\big), \qquad
    U_i = \tilde u_i + \gamma z_i, \quad k_i = z_i / h .

The unknown of stage :math:`i` is the increment :math:`z_i = h k_i` (OrdinaryDiffEq.jl's
"z-form": ``nlsolver.tmp`` :math:`= \tilde u_i`, ``nlsolver.z`` :math:`= z_i`,
``nlsolver.c`` :math:`= c_i`); the ``A`` stored here *is* OrdinaryDiffEq's z-form matrix
(:math:`z_j = h k_j`), no conversion is involved. Newton's method on
:math:`G(z) = z - h f(t_n + c_i h, \tilde u_i + \gamma z) = 0` uses

.. math::
    M = I - h\gamma J, \qquad J \approx \frac{\partial f}{\partial u}, \qquad
    M\, \Delta = -G(z^{(m)}), \quad z^{(m+1)} = z^{(m)} + \Delta ,

one matrix (and one LU factorisation) for all implicit stages of the step, since the diagonal is
constant. OrdinaryDiffEq writes its Newton matrix scaled,
:math:`W = J - I/(h\gamma) = -M/(h\gamma)` (``W_transform``), which gives the same iterates.
The initial guess :math:`z_i^{(0)} = \sum_{j<i} P_{ij} z_j` uses the optional ``predictor``
rows :math:`P` (OrdinaryDiffEq's ``α`` coefficients; see each constant; any guess such as
:math:`z_i^{(0)} = z_{i-1}` converges to the same stage). Then

.. math::
    u_{n+1} = u_n + h \sum_i b_i k_i \;(= U_s \text{ if stiffly accurate}), \qquad
    \mathrm{err} = h \sum_i e_i k_i = u_{n+1} - \hat u_{n+1}, \quad e = b - \hat b ,

with ``b_error`` :math:`= e` (OrdinaryDiffEq's ``btilde`` is :math:`\hat b - b = -e`; the sign is
irrelevant in the norm). :math:`\hat u_{n+1}` is the embedded solution of order ``error_order``.
For a stiffly accurate ESDIRK with :math:`c_s = 1`, :math:`k_s = f(t_{n+1}, u_{n+1})` (up to
the Newton tolerance) and serves as the next step's :math:`k_1` (FSAL; OrdinaryDiffEq sets
``fsallast = z_s / h``).

The step (additive / IMEX pair)
-------------------------------
For :math:`u' = f_I(t, u) + f_E(t, u)` with the stiff part :math:`f_I` treated implicitly by
``A`` and the non-stiff part :math:`f_E` explicitly by ``A_explicit`` :math:`= \hat A`
(strictly lower triangular, same nodes :math:`c`):

.. math::
    k^I_1 = f_I(t_n, u_n), \quad k^E_1 = f_E(t_n, u_n), \\
    \text{for } i \ge 2: \quad
    \tilde u_i = u_n + h \sum_{j<i} \big(a_{ij} k^I_j + \hat a_{ij} k^E_j\big), \qquad
    z_i = h\, f_I\big(t_n + c_i h,\ \tilde u_i + \gamma z_i\big), \\
    U_i = \tilde u_i + \gamma z_i, \qquad k^I_i = z_i / h, \qquad
    k^E_i = f_E(t_n + c_i h, U_i), \\
    u_{n+1} = u_n + h \sum_i \big(b_i k^I_i + b^E_i k^E_i\big), \qquad
    \mathrm{err} = h \sum_i \big(e_i k^I_i + e^E_i k^E_i\big),

with Newton matrix :math:`M = I - h\gamma J_I`, :math:`J_I \approx \partial f_I / \partial u`.
``b_explicit`` / ``b_error_explicit`` give :math:`b^E, e^E`; ``None`` means :math:`b^E = b`,
:math:`e^E = e` (the case of ``KENCARP4``, whose explicit and implicit parts share :math:`b`
and :math:`\hat b`; OrdinaryDiffEq's ``eb = b``, ``ebtilde = btilde``). Unlike the implicit part,
the explicit part is not stiffly accurate (:math:`\hat a_{s\cdot} \ne b`), so
:math:`u_{n+1} \ne U_s` and :math:`k^E_s, k^I_s` are not :math:`f_E, f_I` at
:math:`u_{n+1}`: no FSAL (OrdinaryDiffEq evaluates :math:`f_I(t_n, u_n)` afresh with a split
function). With :math:`f_E = 0` this is the one-function step above.

Error estimate and its filtering
--------------------------------
The raw estimate is ``err`` above, measured in the usual weighted norm with
:math:`u_n` and :math:`u_{n+1}` (``calculate_residuals``). Hosea & Shampine (1996) filter it
through the Newton matrix,

.. math::
    \mathrm{est} = M^{-1}\,\mathrm{err} = (I - h\gamma J)^{-1}\, \mathrm{err}
    \qquad (\text{IMEX: } J = J_I),

one extra solve with the factorisation already at hand. For ``TRBDF2`` this is part of the
method: its embedded third-order solution is not A-stable (its stability function grows like
:math:`-(\sqrt2/3)\, z` as :math:`z \to -\infty`), so the raw estimate of a stiff component grows
like :math:`|h\lambda|` and would force tiny steps; the filtered one stays bounded. The step
function should use the filtered estimate for ``TRBDF2`` at least. OrdinaryDiffEq applies the
same filter to every method here (``smooth_est = true``, the default, when the nonlinear solver
is Newton), but with its scaled matrix: ``est = W \ tmp`` with :math:`W = J - I/(h\gamma)`, i.e.
:math:`\mathrm{est}_{\rm ODE} = -h\gamma\,(I - h\gamma J)^{-1}\mathrm{err}`, an extra factor
:math:`h\gamma` in the norm (reported as a bug, SciML/OrdinaryDiffEq.jl issue #2902). Use
:math:`M^{-1}`, not :math:`W^{-1}`. For ``KENCARP4`` and ``KVAERNO5`` the embedded stability
functions stay bounded (:math:`|\hat R| \le 1` on the imaginary axis, numerically;
:math:`\hat R(\infty) \approx -0.15` and :math:`-0.75`), so the raw estimate is usable and
filtering is optional there.

Dense output
------------
For :math:`\theta \in [0, 1]`

.. math::
    u(t_n + \theta h) \approx u_n + h \sum_i b_i(\theta)\, k_i, \qquad
    b_i(\theta) = \sum_{m=0}^{d-1} B_{im}\, \theta^{m+1},

(IMEX: :math:`k_i \to k^I_i + k^E_i`, as both parts share :math:`b` and the interpolant; a pair
with different explicit weights would use ``interp_explicit`` on :math:`k^E`.) ``interp`` holds
:math:`B` where the method comes with its own continuous extension (``KENCARP4``: Kennedy &
Carpenter's third-order :math:`b^*_{ij}`). Where ``interp`` is ``None`` (``TRBDF2``,
``KVAERNO5``: OrdinaryDiffEq.jl interpolates these by the generic cubic Hermite polynomial on
``k = [f_n, f_{n+1}]``, with ``f_{n+1} = z_s / h``) the step function should use the **cubic
Hermite interpolant** from :math:`u_n, u_{n+1}, f_n, f_{n+1}`:

.. math::
    u(t_n + \theta h) \approx (1-\theta) u_n + \theta u_{n+1}
        + \theta(\theta - 1)\big((1 - 2\theta)(u_{n+1} - u_n)
        + (\theta - 1) h f_n + \theta h f_{n+1}\big).

Because these methods are ESDIRKs and stiffly accurate with :math:`c_s = 1`
(:math:`f_n = k_1`, :math:`f_{n+1} = k_s`, :math:`u_{n+1} - u_n = h\sum_i b_i k_i`), this is
exactly of the polynomial form above with

.. math::
    b_i(\theta) = (3\theta^2 - 2\theta^3)\, b_i + (\theta - 2\theta^2 + \theta^3)\,\delta_{i1}
        + (\theta^3 - \theta^2)\,\delta_{is},

which :attr:`SDIRKTableau.dense_interp` returns (``interp`` if present, else these Hermite
rows), so one code path serves all three. Its local error is
:math:`O(h^{\min(p+1,\,4)})`: ``interp_order`` is 2 for ``TRBDF2`` and 3 for ``KVAERNO5``.

Checks on creation
------------------
Rows of ``A`` (and ``A_explicit``) sum to ``c``; ``b`` (and ``b_explicit``) sum to 1;
``b_error`` sums to 0; the diagonal is ``gamma`` (from the second stage on for an ESDIRK, whose
first row is zero); a stiffly accurate method has ``b`` equal to the last row of ``A`` and
:math:`c_s = 1`; the interpolants are consistent (:math:`\sum_i b_i(\theta) = \theta`) and equal
``b`` at :math:`\theta = 1`; predictor rows sum to 1 (exact for constant :math:`f`). The order
conditions (rooted trees; bicoloured trees for the IMEX pair), convergence orders, dense-output
orders and stability are checked in ``tests/test_sdirk_tableaus.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "KENCARP4",
    "KVAERNO5",
    "SDIRKTableau",
    "SDIRKTensors",
    "TRBDF2",
]

_TOL = 1e-12


@dataclass(frozen=True)
class SDIRKTensors:
    """An (E)SDIRK tableau cast to one dtype and device, ready for the step function."""

    gamma: torch.Tensor  # () diagonal
    c: torch.Tensor  # (s,)
    A: torch.Tensor  # (s, s) lower triangular, diagonal included
    A_strict: torch.Tensor  # (s, s) A without its diagonal: u~_i = u_n + h (A_strict k)_i
    b: torch.Tensor  # (s,)
    b_error: torch.Tensor  # (s,) zeros when the method has no estimate
    b_and_error: torch.Tensor  # (s, 2): columns b and b_error
    interp: torch.Tensor  # (s, d) dense output rows (own interpolant or the Hermite rows)
    A_explicit: torch.Tensor | None  # (s, s) strictly lower triangular (IMEX only)
    b_explicit: torch.Tensor | None  # (s,) (IMEX; equals b when the pair shares weights)
    b_error_explicit: torch.Tensor | None  # (s,) (IMEX; equals b_error when shared)
    interp_explicit: torch.Tensor | None  # (s, d) (IMEX; equals interp when shared)
    predictor: torch.Tensor | None  # (s, s) strictly lower triangular stage predictor


def _lower(rows, s: int, diagonal: bool) -> np.ndarray:
    out = np.zeros((s, s))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    if not diagonal:
        assert not np.triu(out).any()
    return out


def _hermite_rows(b: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    """The cubic Hermite interpolant as rows of theta^1..theta^3 coefficients (module docstring);
    valid for an ESDIRK (k_1 = f_n) that is stiffly accurate with c_s = 1 (k_s = f_{n+1})."""
    s = len(b)
    rows = []
    for i, bi in enumerate(b):
        first, last = float(i == 0), float(i == s - 1)
        rows.append((first, 3.0 * bi - 2.0 * first - last, -2.0 * bi + first + last))
    return tuple(rows)


def _check_interp(name: str, label: str, rows, b) -> None:
    s = len(b)
    if len(rows) != s:
        raise ValueError(f"{name}: `{label}` needs one row per stage ({s})")
    degree = len(rows[0])
    if degree < 1 or any(len(row) != degree for row in rows):
        raise ValueError(f"{name}: rows of `{label}` differ in length")
    B = np.array(rows, dtype=float)
    if np.abs(B.sum(1) - np.array(b)).max() > 1e-11:
        raise ValueError(f"{name}: `{label}` at theta = 1 differs from its weights")
    sums = B.sum(0)
    if abs(sums[0] - 1.0) > 1e-11 or np.abs(sums[1:]).max(initial=0.0) > 1e-11:
        raise ValueError(f"{name}: `{label}` weights must sum to theta")


@dataclass(frozen=True)
class SDIRKTableau:
    r"""An (E)SDIRK method, optionally with an explicit companion (additive / IMEX pair); see the
    module docstring for the step equations, the error estimate and the dense output.

    Attributes:
        name: the method's name, as in OrdinaryDiffEq.jl.
        c: nodes, length ``s``.
        A: lower-triangular coefficients *including* the diagonal; row ``i`` holds
            ``A[i][0:i+1]`` (so row 0 is ``(0.0,)`` for an ESDIRK, ``(gamma,)`` for an SDIRK).
        b: weights of :math:`u_{n+1} = u_n + h \sum_i b_i k_i`.
        order: the order of ``b`` (of the pair, for an IMEX method).
        gamma: the diagonal coefficient :math:`\gamma`.
        explicit_first_stage: ESDIRK (``A[0][0] = 0``, ``c[0] = 0``; :math:`k_1 = f(t_n, u_n)`).
        stiffly_accurate: ``b`` is the last row of ``A`` and ``c[-1] = 1``
            (:math:`u_{n+1} = U_s`).
        b_error: :math:`e = b - \hat b`, or ``None`` (fixed step only).
        error_order: the order of the embedded solution :math:`\hat u_{n+1}`.
        interp: rows ``B[i] = (B_i0, …, B_i,d-1)``, :math:`b_i(\theta) = \sum_m B_{im}
            \theta^{m+1}`, when the method has its own dense output; ``None`` when the dense
            output is the cubic Hermite interpolant (see :attr:`dense_interp`).
        interp_order: the order of the dense output (the local error is
            :math:`O(h^{\text{interp\_order}+1})`).
        A_explicit: strictly lower-triangular coefficients of the explicit companion; row
            ``i`` holds ``A_explicit[i][0:i]``; ``None`` for a plain (E)SDIRK.
        b_explicit: weights of the explicit part, or ``None`` when they equal ``b``.
        b_error_explicit: :math:`e^E = b^E - \hat b^E`, or ``None`` when equal to ``b_error``.
        interp_explicit: the explicit part's dense output rows, or ``None`` when ``interp``
            serves both parts.
        predictor: stage predictor rows ``P[i][0:i]``, initial Newton guess
            :math:`z_i^{(0)} = \sum_{j<i} P_{ij} z_j` (:math:`z_j = h k_j`); row 0 is ``()``;
            ``None`` if not recorded.
    """

    name: str
    c: tuple[float, ...]
    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    gamma: float
    explicit_first_stage: bool
    stiffly_accurate: bool
    interp_order: int
    b_error: tuple[float, ...] | None = None
    error_order: int | None = None
    interp: tuple[tuple[float, ...], ...] | None = None
    A_explicit: tuple[tuple[float, ...], ...] | None = None
    b_explicit: tuple[float, ...] | None = None
    b_error_explicit: tuple[float, ...] | None = None
    interp_explicit: tuple[tuple[float, ...], ...] | None = None
    predictor: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:  # noqa: C901 - a flat list of checks
        name, s = self.name, len(self.c)
        if s < 1 or len(self.A) != s or any(len(row) != i + 1 for i, row in enumerate(self.A)):
            raise ValueError(f"{name}: row i of `A` must have i + 1 entries (diagonal included)")
        if not self.gamma > 0:
            raise ValueError(f"{name}: `gamma` must be positive")
        for i, row in enumerate(self.A):
            if abs(sum(row) - self.c[i]) > _TOL * max(1.0, abs(self.c[i])) * 10:
                raise ValueError(f"{name}: row {i} of `A` sums to {sum(row)}, c = {self.c[i]}")
        first = 1 if self.explicit_first_stage else 0
        if self.explicit_first_stage and (self.A[0][0] != 0.0 or self.c[0] != 0.0):
            raise ValueError(f"{name}: an ESDIRK needs A[0][0] = 0 and c[0] = 0")
        if any(self.A[i][i] != self.gamma for i in range(first, s)):
            raise ValueError(f"{name}: the diagonal of `A` must be `gamma`")
        if len(self.b) != s or abs(sum(self.b) - 1.0) > _TOL:
            raise ValueError(f"{name}: weights `b` must have {s} entries summing to 1")
        if self.b_error is not None:
            if len(self.b_error) != s or abs(sum(self.b_error)) > _TOL * 10:
                raise ValueError(f"{name}: `b_error` must have {s} entries summing to 0")
            if self.error_order is None or self.error_order < 1:
                raise ValueError(f"{name}: an error estimate needs `error_order`")
        last_row = zip(self.b, self.A[-1], strict=True)
        if self.stiffly_accurate and (
            self.c[-1] != 1.0 or any(abs(x - y) > 1e-15 for x, y in last_row)
        ):
            raise ValueError(f"{name}: stiffly accurate needs b = A[-1] and c[-1] = 1")
        if self.interp is not None:
            _check_interp(name, "interp", self.interp, self.b)
        elif not (self.explicit_first_stage and self.stiffly_accurate):
            raise ValueError(
                f"{name}: without `interp` the Hermite dense output needs an ESDIRK that is"
                " stiffly accurate"
            )
        if self.A_explicit is None:
            extras = (self.b_explicit, self.b_error_explicit, self.interp_explicit)
            if any(x is not None for x in extras):
                raise ValueError(f"{name}: explicit weights given without `A_explicit`")
        else:
            if len(self.A_explicit) != s or any(
                len(row) != i for i, row in enumerate(self.A_explicit)
            ):
                raise ValueError(f"{name}: row i of `A_explicit` must have i entries")
            for i, row in enumerate(self.A_explicit):
                if abs(sum(row) - self.c[i]) > _TOL * max(1.0, abs(self.c[i])) * 10:
                    raise ValueError(f"{name}: row {i} of `A_explicit` sums to {sum(row)}")
            b_e = self.b if self.b_explicit is None else self.b_explicit
            if len(b_e) != s or abs(sum(b_e) - 1.0) > _TOL:
                raise ValueError(f"{name}: `b_explicit` must have {s} entries summing to 1")
            if self.b_error_explicit is not None and (
                self.b_error is None
                or len(self.b_error_explicit) != s
                or abs(sum(self.b_error_explicit)) > _TOL * 10
            ):
                raise ValueError(f"{name}: `b_error_explicit` must have {s} entries summing to 0")
            if self.interp_explicit is not None:
                _check_interp(name, "interp_explicit", self.interp_explicit, b_e)
            elif self.interp is not None and self.b_explicit is not None:
                _check_interp(name, "interp (for the explicit weights)", self.interp, b_e)
            elif self.interp is None:
                raise ValueError(f"{name}: an IMEX pair needs its own dense output `interp`")
        if self.predictor is not None:
            if len(self.predictor) != s or any(
                len(row) != i for i, row in enumerate(self.predictor)
            ):
                raise ValueError(f"{name}: row i of `predictor` must have i entries")
            for i, row in enumerate(self.predictor[first + 1 :], start=first + 1):
                if abs(sum(row) - 1.0) > 1e-11:
                    raise ValueError(f"{name}: predictor row {i} must sum to 1")
        if not (self.order >= 1 and self.interp_order >= 1):
            raise ValueError(f"{name}: orders must be positive")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

    @property
    def imex(self) -> bool:
        return self.A_explicit is not None

    @property
    def hermite_dense(self) -> bool:
        """The dense output is the cubic Hermite interpolant (``interp`` is ``None``)."""
        return self.interp is None

    @property
    def dense_interp(self) -> tuple[tuple[float, ...], ...]:
        r"""Rows :math:`B` of the dense output :math:`b_i(\theta) = \sum_m B_{im}
        \theta^{m+1}` the step function uses: ``interp`` if the method has one, else the cubic
        Hermite interpolant written in this form (exact for a stiffly accurate ESDIRK)."""
        return self.interp if self.interp is not None else _hermite_rows(self.b)

    @functools.lru_cache(maxsize=16)  # noqa: B019 - frozen, hashable, few (dtype, device) pairs
    def tensors(self, dtype: torch.dtype, device: torch.device) -> SDIRKTensors:
        """The coefficients as tensors of ``dtype`` on ``device`` (cached)."""
        s = self.stages
        kw = dict(dtype=dtype, device=device)

        def cast(x) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(**kw)

        A = _lower(self.A, s, diagonal=True)
        b = np.array(self.b)
        err = np.array(self.b_error) if self.b_error is not None else np.zeros(s)
        interp = np.array(self.dense_interp)
        if self.imex:
            A_e = cast(_lower(self.A_explicit, s, diagonal=False))
            b_e = cast(self.b if self.b_explicit is None else self.b_explicit)
            err_e = cast(err if self.b_error_explicit is None else self.b_error_explicit)
            interp_e = cast(interp if self.interp_explicit is None else self.interp_explicit)
        else:
            A_e = b_e = err_e = interp_e = None
        pred = None
        if self.predictor is not None:
            pred = cast(_lower(self.predictor, s, diagonal=False))
        return SDIRKTensors(
            gamma=cast(self.gamma),
            c=cast(self.c),
            A=cast(A),
            A_strict=cast(A - np.diag(np.diag(A))),
            b=cast(b),
            b_error=cast(err),
            b_and_error=cast(np.stack([b, err], -1)),
            interp=cast(interp),
            A_explicit=A_e,
            b_explicit=b_e,
            b_error_explicit=err_e,
            interp_explicit=interp_e,
            predictor=pred,
        )


# --------------------------------------------------------------------------------------------
# TR-BDF2 (Bank et al. 1985; Hosea & Shampine 1996; OrdinaryDiffEq.jl `TRBDF2`)
# --------------------------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)
_TRBDF2_D = 1.0 - _SQRT2 / 2.0  # the diagonal (OrdinaryDiffEq's `d`)
_TRBDF2_W = _SQRT2 / 4.0  # OrdinaryDiffEq's `ω`

TRBDF2 = SDIRKTableau(
    name="TRBDF2",
    c=(0.0, 2.0 - _SQRT2, 1.0),
    A=(
        (0.0,),
        (_TRBDF2_D, _TRBDF2_D),
        (_TRBDF2_W, _TRBDF2_W, _TRBDF2_D),
    ),
    b=(_TRBDF2_W, _TRBDF2_W, _TRBDF2_D),
    order=2,
    gamma=_TRBDF2_D,
    explicit_first_stage=True,
    stiffly_accurate=True,
    b_error=((_SQRT2 - 1.0) / 3.0, -1.0 / 3.0, (2.0 - _SQRT2) / 3.0),
    error_order=3,
    interp=None,
    interp_order=2,
    predictor=(
        (),
        (1.0,),
        (-_SQRT2 / 2.0, 1.0 + _SQRT2 / 2.0),
    ),
)
r"""TR-BDF2 as an ESDIRK (Hosea & Shampine, "Analysis and implementation of TR-BDF2", Appl.
Numer. Math. 20, 1996; MATLAB's ode23tb; OrdinaryDiffEq.jl's ``TRBDF2``): a trapezoidal step to
:math:`t_n + (2-\sqrt2)h` followed by a BDF2 step to :math:`t_{n+1}`. Order 2, L-stable,
stiffly accurate, diagonal :math:`\gamma = d = 1 - \sqrt2/2` (OrdinaryDiffEq calls
:math:`c_2 = 2 - \sqrt2` ``γ``), :math:`c = (0, 2-\sqrt2, 1)`,
:math:`A = \begin{pmatrix} 0 \\ d & d \\ \omega & \omega & d\end{pmatrix}`,
:math:`b = (\omega, \omega, d)`, :math:`\omega = \sqrt2/4`. The embedded third-order
:math:`\hat b = ((1-\omega)/3, (3\omega+1)/3, d/3)` gives
:math:`e = b - \hat b = ((\sqrt2-1)/3, -1/3, (2-\sqrt2)/3)`; the estimate should be filtered,
:math:`\mathrm{est} = (I - h d J)^{-1} h \sum_i e_i k_i` (module docstring). Dense output:
cubic Hermite (``interp=None``; OrdinaryDiffEq has no TR-BDF2-specific interpolant), order 2.
Predictor (OrdinaryDiffEq): :math:`z_2^{(0)} = z_1 = h f_n`, and Shampine's
:math:`z_3^{(0)} = -\frac{\sqrt2}{2} z_1 + (1 + \frac{\sqrt2}{2}) z_2` (linear extrapolation
of :math:`h f` through :math:`c_1, c_2` to :math:`c_3 = 1`). Source: ``SciML/OrdinaryDiffEq.jl``,
``lib/OrdinaryDiffEqSDIRK/src/sdirk_tableaus.jl`` (``TRBDF2Tableau``: ``γ, d, ω, btilde1..3,
α1, α2``) and ``sdirk_perform_step.jl`` (``perform_step!`` for ``TRBDF2Cache``)."""


# --------------------------------------------------------------------------------------------
# KenCarp4: Kennedy & Carpenter's ARK4(3)6L[2]SA (Appl. Numer. Math. 44, 2003)
# --------------------------------------------------------------------------------------------

_KC4_G = 1 / 4
_KC4_B = (82889 / 524892, 0.0, 15625 / 83664, 69875 / 102672, -2260 / 8211, _KC4_G)

KENCARP4 = SDIRKTableau(
    name="KenCarp4",
    c=(0.0, 1 / 2, 83 / 250, 31 / 50, 17 / 20, 1.0),
    A=(
        (0.0,),
        (_KC4_G, _KC4_G),
        (8611 / 62500, -1743 / 31250, _KC4_G),
        (5012029 / 34652500, -654441 / 2922500, 174375 / 388108, _KC4_G),
        (
            15267082809 / 155376265600, -71443401 / 120774400, 730878875 / 902184768,
            2285395 / 8070912, _KC4_G,
        ),
        _KC4_B,
    ),
    b=_KC4_B,
    order=4,
    gamma=_KC4_G,
    explicit_first_stage=True,
    stiffly_accurate=True,
    # b - b_hat, b_hat = (4586570599/29645900160, 0, 178811875/945068544,
    # 814220225/1159782912, -3700637/11593932, 61727/225920); = -(OrdinaryDiffEq's btilde).
    b_error=(
        31666707 / 9881966720, 0.0, -256875 / 105007616, -2768025 / 128864768,
        169839 / 3864644, -5247 / 225920,
    ),
    error_order=3,
    interp=(
        (6943876665148 / 7220017795957, -54480133 / 30881146, 6818779379841 / 7100303317025),
        (0.0, 0.0, 0.0),
        (7640104374378 / 9702883013639, -11436875 / 14766696, 2173542590792 / 12501825683035),
        (
            -20649996744609 / 7521556579894, 174696575 / 18121608,
            -31592104683404 / 5083833661969,
        ),
        (8854892464581 / 2390941311638, -12120380 / 966161, 61146701046299 / 7138195549469),
        (-11397109935349 / 6675773540249, 3843 / 706, -17219254887155 / 4939391667607),
    ),
    interp_order=3,
    A_explicit=(
        (),
        (1 / 2,),
        (13861 / 62500, 6889 / 62500),
        (
            -116923316275 / 2393684061468, -2731218467317 / 15368042101831,
            9408046702089 / 11113171139209,
        ),
        (
            -451086348788 / 2902428689909, -2682348792572 / 7519795681897,
            12662868775082 / 11960479115383, 3355817975965 / 11060851509271,
        ),
        (
            647845179188 / 3216320057751, 73281519250 / 8382639484533,
            552539513391 / 3454668386233, 3354512671639 / 8306763924573, 4040 / 17871,
        ),
    ),
    predictor=(
        (),
        (1.0,),
        (42 / 125, 83 / 125),
        (-6 / 25, 31 / 25, 0.0),
        (914470432 / 2064665255, 798813 / 724780, -824765625 / 372971788, 49640 / 29791),
        (
            288521442795 / 954204491116, 2224881 / 2566456, -1074821875 / 905317354,
            -3360875 / 8098936, 7040 / 4913,
        ),
    ),
)
r"""Kennedy & Carpenter's ARK4(3)6L[2]SA ("Additive Runge–Kutta schemes for
convection–diffusion–reaction equations", Appl. Numer. Math. 44, 2003), OrdinaryDiffEq.jl's
``KenCarp4`` (diffrax's ``KenCarp4``, PETSc's ``TSARKIMEX4``): 6 stages; the implicit part is
an ESDIRK with :math:`\gamma = 1/4`, stiffly accurate and L-stable; the explicit companion
``A_explicit`` shares :math:`c`, :math:`b` and :math:`\hat b`. Order 4 with an embedded order-3
estimate, both as a plain ESDIRK and as an IMEX pair (all coupling conditions hold to order 4,
and to order 3 for :math:`\hat b`). Dense output: the paper's third-order :math:`b^*_{ij}`
(``interp``; rows = stages, columns = :math:`\theta^1, \theta^2, \theta^3`), applied to
:math:`k^I_i + k^E_i` in IMEX mode, as diffrax and PETSc do (``binterpt``); OrdinaryDiffEq
itself interpolates ``KenCarp4`` by cubic Hermite and has no :math:`b^*` in its tableau.
Predictor: OrdinaryDiffEq's ``α`` for an unsplit function (:math:`z_2^{(0)} = z_1`; rows 3, 4
linear extrapolation from :math:`z_1, z_2`; rows 5, 6 Hermite extrapolation from
:math:`z_1, z_4` and :math:`z_1, z_5`); with a split function OrdinaryDiffEq instead starts each
stage from an earlier :math:`z` (:math:`z_3, z_4 \leftarrow z_2`, :math:`z_5 \leftarrow z_4`,
:math:`z_6 \leftarrow z_5`). Sources: ``SciML/OrdinaryDiffEq.jl``,
``lib/OrdinaryDiffEqSDIRK/src/sdirk_tableaus.jl`` (``KenCarp4Tableau``: ``a``, ``btilde``,
``c``, ``α``, ``ea``, ``eb``, ``ebtilde``; :math:`a_{21} = c_2 - \gamma = \gamma`,
:math:`a_{62} = 0`), ``kencarp_kvaerno_perform_step.jl``; dense output from
``patrick-kidger/diffrax`` ``diffrax/_solver/kencarp4.py`` (identical to PETSc's ``binterpt``
for ``TSARKIMEX4``)."""


# --------------------------------------------------------------------------------------------
# Kvaerno5: Kværnø's ESDIRK 5(4) (BIT 44, 2004; OrdinaryDiffEq.jl `Kvaerno5Tableau`)
# --------------------------------------------------------------------------------------------

_KV5_G = 0.26
_KV5_A6 = (
    0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676,
    _KV5_G,
)
_KV5_A7 = (
    0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
    0.06962479448202728, _KV5_G,
)

KVAERNO5 = SDIRKTableau(
    name="Kvaerno5",
    c=(0.0, 0.52, 1.230333209967908, 0.895765984350076, 0.436393609858648, 1.0, 1.0),
    A=(
        (0.0,),
        (_KV5_G, _KV5_G),
        (0.13, 0.84033320996790809, _KV5_G),
        (0.22371961478320505, 0.47675532319799699, -0.06470895363112615, _KV5_G),
        (
            0.16648564323248321, 0.10450018841591720, 0.03631482272098715,
            -0.13090704451073998, _KV5_G,
        ),
        _KV5_A6,
        _KV5_A7,
    ),
    b=_KV5_A7,
    order=5,
    gamma=_KV5_G,
    explicit_first_stage=True,
    stiffly_accurate=True,
    # b - b_hat with b_hat = (row 6 of A, 0): the embedded solution is U_6.
    b_error=tuple(x - y for x, y in zip(_KV5_A7, _KV5_A6 + (0.0,), strict=True)),
    error_order=4,
    interp=None,
    interp_order=3,
    predictor=(
        (),
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
        _KV5_A6,
    ),
)
r"""Kværnø's ESDIRK 5(4) ("Singly diagonally implicit Runge–Kutta methods with an explicit first
stage", BIT 44, 2004), OrdinaryDiffEq.jl's ``Kvaerno5`` (diffrax's ``Kvaerno5``): 7 stages,
:math:`\gamma = 0.26`, stiffly accurate, L-stable, order 5; the embedded order-4 solution is
the sixth stage value :math:`\hat u_{n+1} = U_6` (:math:`c_6 = c_7 = 1`, :math:`\hat b =` row 6
of ``A``), so :math:`e = b - \hat b` and :math:`\mathrm{err} = u_{n+1} - U_6`. Nodes
:math:`c_3 > 1` (1.2303…): stage 3 evaluates :math:`f` past :math:`t_{n+1}`. Dense output:
cubic Hermite (``interp=None``; OrdinaryDiffEq and diffrax have nothing else for this method),
order 3. Predictor: OrdinaryDiffEq's ``α`` (:math:`z_2^{(0)} = z_1`, as diffrax notes
OrdinaryDiffEq's ``α21`` is unused; rows 3–6 Hermite extrapolation from :math:`z_1, z_2` and
:math:`z_1, z_3`) and, for the last stage, the embedded increment
:math:`z_7^{(0)} = \sum_j a_{6j} z_j = U_6 - u_n` (OrdinaryDiffEq's choice; a heuristic guess,
not an extrapolation of :math:`hf` — :math:`z_6` would be one, as :math:`c_6 = c_7`).
Note: OrdinaryDiffEq's ``perform_step!`` for ``Kvaerno5`` evaluates stage 2 at
``nlsolver.c = γ`` (time :math:`t_n + 0.26h`) although :math:`c_2 = 2\gamma = 0.52` (row sum);
this differs only for non-autonomous :math:`f`, and the convergence tests use
:math:`c_2 = 0.52`. Sources: ``SciML/OrdinaryDiffEq.jl``,
``lib/OrdinaryDiffEqSDIRK/src/sdirk_tableaus.jl`` (``Kvaerno5Tableau``;
:math:`a_{21} = \gamma`, :math:`a_{62} = a_{72} = 0`), ``kencarp_kvaerno_perform_step.jl``;
checked against ``patrick-kidger/diffrax`` ``diffrax/_solver/kvaerno5.py``."""
