r"""Butcher tableaus of explicit Runge–Kutta methods, as validated float64 data.

A method with :math:`s` stages advances :math:`u_n \to u_{n+1}` over a step :math:`h` by

.. math::
    k_i = f\Big(t_n + c_i h,\; u_n + h \sum_{j<i} a_{ij} k_j\Big), \qquad
    u_{n+1} = u_n + h \sum_i b_i k_i,

and estimates its local error as :math:`h \sum_i e_i k_i` with :math:`e = b - \hat b` (the
difference to an embedded method of lower order). Its dense output on the step is

.. math::
    u(t_n + \theta h) = u_n + h \sum_i b_i(\theta)\, k_i, \qquad
    b_i(\theta) = \sum_{m=1}^{d} B_{im} \theta^m ,

where the sum may run over extra stages :math:`k_{s+1}, \dots` that only the interpolant needs
(``extra_c`` / ``extra_a``; Verner's "lazy" stages).

A :class:`ButcherTableau` checks itself on creation: rows of ``a`` sum to ``c``, ``b`` sums to 1,
``b_error`` sums to 0, and the interpolant reproduces ``b`` at :math:`\theta = 1` and is
consistent (:math:`\sum_i b_i(\theta) = \theta`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

__all__ = ["ButcherTableau", "TableauTensors", "combine", "weighted_sum"]

_TOL = 1e-12


@dataclass(frozen=True)
class TableauTensors:
    """A tableau cast to one dtype and device, ready for the step function."""

    c: torch.Tensor  # (s,)
    a: torch.Tensor  # (s, s) strictly lower triangular
    b: torch.Tensor  # (s,)
    b_and_error: torch.Tensor  # (s, 2): columns b and b_error (or zeros)
    extra_c: torch.Tensor  # (s_extra,)
    extra_a: torch.Tensor  # (s_extra, s + s_extra)
    interp: torch.Tensor  # (s + s_extra, d) polynomial coefficients of b_i(theta)
    a_rows: tuple[torch.Tensor, ...]  # a[i, :i] for each stage i (row 0 empty)


@dataclass(frozen=True)
class ButcherTableau:
    r"""An explicit Runge–Kutta method as coefficients; see the module docstring for the maths.

    Attributes:
        name: the method's name, as in the literature.
        c: nodes, length ``s``.
        a: strictly lower-triangular coefficients; row ``i`` holds ``a[i][0:i]``.
        b: weights of the propagated solution, length ``s``.
        order: the order of ``b``.
        b_error: ``b - b_hat`` for the embedded error estimate, or ``None`` (fixed-step only).
        error_order: the order of the embedded method ``b_hat``.
        fsal: the last stage is ``f(t_{n+1}, u_{n+1})`` and serves as the next step's first.
        interp: rows ``B[i] = (B_i1, …, B_id)``, one per stage (then per extra stage).
        interp_order: the order of the dense output.
        extra_c, extra_a: extra stages used only by the interpolant; row ``j`` of ``extra_a``
            holds coefficients over all ``s + j`` earlier stages.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    interp: tuple[tuple[float, ...], ...]
    interp_order: int
    b_error: tuple[float, ...] | None = None
    error_order: int | None = None
    fsal: bool = False
    extra_c: tuple[float, ...] = ()
    extra_a: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"{self.name}: row i of `a` must have i entries")
        for i, row in enumerate(self.a):
            if abs(sum(row) - self.c[i]) > _TOL * max(1.0, abs(self.c[i])) * 10:
                raise ValueError(f"{self.name}: row {i} of `a` sums to {sum(row)}, c = {self.c[i]}")
        if len(self.b) != s or abs(sum(self.b) - 1.0) > _TOL:
            raise ValueError(f"{self.name}: weights `b` must have {s} entries summing to 1")
        if self.b_error is not None:
            if len(self.b_error) != s or abs(sum(self.b_error)) > _TOL * 10:
                raise ValueError(f"{self.name}: `b_error` must have {s} entries summing to 0")
            if self.error_order is None:
                raise ValueError(f"{self.name}: an error estimate needs `error_order`")
        if self.fsal:
            if self.c[-1] != 1.0 or any(
                abs(x - y) > _TOL for x, y in zip(self.a[-1], self.b[:-1])
            ) or self.b[-1] != 0.0:
                raise ValueError(f"{self.name}: FSAL needs c[-1] = 1, a[-1] = b, b[-1] = 0")
        if len(self.extra_c) != len(self.extra_a):
            raise ValueError(f"{self.name}: `extra_c` and `extra_a` differ in length")
        for j, row in enumerate(self.extra_a):
            if len(row) != s + j:
                raise ValueError(f"{self.name}: extra stage {j} needs {s + j} coefficients")
            if abs(sum(row) - self.extra_c[j]) > 1e-10:
                raise ValueError(f"{self.name}: extra stage {j} row sum differs from its node")
        n_all = s + len(self.extra_c)
        if len(self.interp) != n_all:
            raise ValueError(f"{self.name}: `interp` needs one row per stage ({n_all})")
        degree = len(self.interp[0])
        if any(len(row) != degree for row in self.interp):
            raise ValueError(f"{self.name}: rows of `interp` differ in length")
        at_one = [sum(row) for row in self.interp]
        b_all = list(self.b) + [0.0] * len(self.extra_c)
        if any(abs(x - y) > 1e-9 for x, y in zip(at_one, b_all)):
            raise ValueError(f"{self.name}: interpolant at theta = 1 differs from b")
        linear = sum(row[0] for row in self.interp)
        higher = [sum(row[m] for row in self.interp) for m in range(1, degree)]
        if abs(linear - 1.0) > 1e-9 or any(abs(x) > 1e-9 for x in higher):
            raise ValueError(f"{self.name}: interpolant weights must sum to theta")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

    @functools.lru_cache(maxsize=16)  # noqa: B019 - frozen, hashable, few (dtype, device) pairs
    def tensors(self, dtype: torch.dtype, device: torch.device) -> TableauTensors:
        """The coefficients as tensors of ``dtype`` on ``device`` (cached)."""
        s = self.stages
        n_extra = len(self.extra_c)
        a = torch.zeros(s, s, dtype=torch.float64)
        for i, row in enumerate(self.a):
            a[i, :i] = torch.tensor(row, dtype=torch.float64)
        extra_a = torch.zeros(n_extra, s + n_extra, dtype=torch.float64)
        for j, row in enumerate(self.extra_a):
            extra_a[j, : s + j] = torch.tensor(row, dtype=torch.float64)
        b = torch.tensor(self.b, dtype=torch.float64)
        err = torch.tensor(self.b_error if self.b_error else [0.0] * s, dtype=torch.float64)
        kw = dict(dtype=dtype, device=device)
        a_cast = a.to(**kw)
        return TableauTensors(
            c=torch.tensor(self.c, dtype=torch.float64).to(**kw),
            a=a_cast,
            b=b.to(**kw),
            b_and_error=torch.stack([b, err], -1).to(**kw),
            extra_c=torch.tensor(self.extra_c, dtype=torch.float64).to(**kw),
            extra_a=extra_a.to(**kw),
            interp=torch.tensor(self.interp, dtype=torch.float64).to(**kw),
            a_rows=tuple(a_cast[i, :i] for i in range(s)),
        )


def combine(weights: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    r"""``weights @ stacked``: the combinations :math:`\sum_j w_{rj} k_j` of a method's stages,
    ``weights`` ``(R, S)`` or ``(S,)`` (coefficients), ``stacked`` ``(S, M)``. While
    ``torch.compile`` traces it (``loop="compile"``) the sums are written out term by term, so
    the compiler fuses them with the surrounding element-wise work instead of calling a matrix
    product for every stage."""
    if not torch.compiler.is_compiling():
        return weights @ stacked
    rows = weights[None] if weights.ndim == 1 else weights
    out = torch.stack([sum(row[j] * stacked[j] for j in range(stacked.shape[0]))
                       if stacked.shape[0] else torch.zeros_like(stacked[0]) for row in rows])
    return out[0] if weights.ndim == 1 else out


def weighted_sum(coefficients: tuple[float, ...], terms: list[torch.Tensor]) -> torch.Tensor:
    r""":math:`\sum_j c_j k_j` written out term by term, with the coefficients as Python numbers
    (``add(k, alpha=c)``) and the zero ones skipped: the form for a step that autograd records
    or ``torch.compile`` traces. Autograd then differentiates each term by one scaling, where the
    matrix product over a stage buffer (:func:`combine`) costs a transposed product, a
    zero-filled slice gradient and the buffer's copy-back per stage; the compiler folds the
    numbers into one fused kernel."""
    total = None
    for c, k in zip(coefficients, terms):
        if c == 0:
            continue
        total = k * c if total is None else total.add(k, alpha=c)
    return total if total is not None else torch.zeros_like(terms[0])
