"""Dense output over a whole integration: the accepted steps of every member, searchable by time.

Each step stores its start ``t`` and size ``h`` (shape ``(B,)``, ``h = 0`` for a member that did
not advance in that iteration of the loop), the state at its start and the stages its family's
interpolant needs. A query time is located per member by binary search over the step end times,
then the family's interpolant (``AbstractStepper.interpolate``, or its coefficients in
:math:`\theta`) evaluates it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .stepper import AbstractStepper

__all__ = ["DenseHistory"]


class _Pieces(NamedTuple):
    """Every member's steps, flattened to ``B * M`` pieces (member-major)."""

    t: torch.Tensor  # (B*M,) the steps' starts, sizes and 1 / size (1 where the size is 0)
    h: torch.Tensor
    inv_h: torch.Tensor
    # the interpolant: its coefficients in theta (B*M, d + 1, N) where the family gives them
    # (see interpolation_coefficients), else the states (B*M, N) and stages (B*M, s, N)
    u: torch.Tensor | None
    stages: torch.Tensor | None
    coefficients: torch.Tensor | None
    exponents: torch.Tensor | None  # (d + 1,)
    # with coefficients: [t, h, 1 / h, coefficients] of a piece in one row (B*M, 3 + (d+1) N),
    # so that a query gathers its pieces with one indexing (a kernel launch, on a GPU)
    table: torch.Tensor | None = None

    @classmethod
    def with_coefficients(cls, t, h, inv_h, coefficients, exponents) -> _Pieces:
        table = torch.cat([t[:, None], h[:, None], inv_h[:, None], coefficients.flatten(1)], 1)
        return cls._from_rows(table, coefficients.shape[1:], exponents)

    @classmethod
    def _from_rows(cls, table, shape, exponents) -> _Pieces:
        return cls(table[:, 0], table[:, 1], table[:, 2], None, None,
                   table[:, 3:].view(-1, *shape), exponents, table)

    def at(self, index: torch.Tensor) -> _Pieces:
        """The pieces at ``index`` (a 1-d tensor)."""
        if self.table is not None:
            return self._from_rows(self.table[index], self.coefficients.shape[1:],
                                   self.exponents)

        def take(x):
            return None if x is None else x[index]

        return _Pieces(self.t[index], self.h[index], self.inv_h[index], take(self.u),
                       take(self.stages), take(self.coefficients), self.exponents)

    def value(self, stepper: AbstractStepper, tq: torch.Tensor) -> torch.Tensor:
        """The interpolant of piece ``i`` at time ``tq[i]``: ``(len, N)``."""
        # a member that did not move in its step has h = 0: its interpolant is u whatever theta
        theta = (tq - self.t) * self.inv_h
        if self.coefficients is None:
            return stepper.interpolate(self.u, self.h, self.stages.transpose(0, 1), theta)
        return torch.einsum("qj,qjn->qn", theta[:, None] ** self.exponents, self.coefficients)


class DenseHistory:
    """The record of accepted steps; callable on a 1-d tensor of times → ``(Q, B, N)``.

    Where the family gives its interpolant as a polynomial in :math:`\theta`
    (:meth:`~pysciml.native.stepper.AbstractStepper.interpolation_coefficients`), the
    coefficients of every step are computed once, at the first query, and a query costs a
    search and one small product."""

    def __init__(self, stepper: AbstractStepper, direction: float,
                 unflatten=lambda y: y):
        self.stepper = stepper
        self.direction = direction
        self.unflatten = unflatten
        self._steps: list[tuple[torch.Tensor, ...]] = []
        self._pieces: _Pieces | None = None
        self._search_cache: tuple[torch.Tensor, ...] | None = None
        self._last: tuple[float, float, _Pieces] | None = None
        self.t_start: torch.Tensor | None = None
        self.t_end: torch.Tensor | None = None

    def append(self, t: torch.Tensor, h: torch.Tensor, u: torch.Tensor,
               stages: torch.Tensor) -> None:
        self._steps.append((t, h, u, stages))
        self._pieces = None
        self._search_cache = None
        self._last = None

    def finish(self, t0: torch.Tensor, t_end: torch.Tensor) -> DenseHistory:
        """Close the record: ``t0`` is the common start, ``t_end`` (B,) where each member got."""
        self.t_start = t0
        self.t_end = t_end
        self._search_cache = None
        return self

    @property
    def num_steps(self) -> int:
        return len(self._steps)

    def member_steps(self, member: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The starts and sizes ``(M,)`` of one member's steps (``h = 0``: it did not move)."""
        M = len(self._steps)
        pieces = self._stack()
        rows = slice(member * M, (member + 1) * M)
        return pieces.t[rows], pieces.h[rows]

    def _stack(self) -> _Pieces:
        if self._pieces is None:
            t, h, u = (torch.stack(x, 1) for x in list(zip(*self._steps))[:3])
            stages = torch.stack([k.permute(1, 0, 2) for _, _, _, k in self._steps], 1)
            B, M, N = u.shape  # t, h (B, M); stages (B, M, s, N)
            t, h, u = t.reshape(-1), h.reshape(-1), u.reshape(B * M, N)
            stages = stages.reshape(B * M, -1, N)
            coefficients = self.stepper.interpolation_coefficients(u, h, stages.transpose(0, 1))
            inv_h = 1 / torch.where(h != 0, h, 1)
            if coefficients is None:
                self._pieces = _Pieces(t, h, inv_h, u, stages, None, None)
            else:  # the coefficients replace the states and stages
                exponents = torch.arange(coefficients.shape[1], dtype=u.dtype, device=u.device)
                self._pieces = _Pieces.with_coefficients(t, h, inv_h, coefficients, exponents)
        return self._pieces

    def _search(self, B: int, M: int) -> tuple[torch.Tensor, ...]:
        """What every query needs, computed once: directed step ends (B, M), the directed
        bounds (B, 1) of each member's span (beyond them: NaN), each member's first piece
        (B, 1), and whether all members took the same steps (one host read per history)."""
        if self._search_cache is None:
            pieces = self._stack()
            t, h = pieces.t.reshape(B, M), pieces.h.reshape(B, M)
            d = self.direction
            tol = 64 * torch.finfo(t.dtype).eps * torch.maximum(
                self.t_start.abs(), self.t_end.abs()).clamp_min(1.0)
            lo = (d * self.t_start - tol).expand(B)[:, None]
            hi = (d * self.t_end + tol)[:, None]
            first = M * torch.arange(B, device=t.device)[:, None]
            shared = B == 1 or bool(((t == t[:1]) & (h == h[:1])).all())
            self._search_cache = ((d * (t + h)).contiguous(), lo, hi, first, shared)
        return self._search_cache

    def evaluate(self, tq: torch.Tensor, outside: str = "nan") -> torch.Tensor:
        """The flattened solution at times ``tq`` (Q,) for every member: shape ``(Q, B, N)``.

        Times outside ``[t0, t_end]`` of a member (beyond where it failed) give NaN; with
        ``outside="extrapolate"``, the nearest piece's polynomial (for a caller that masks
        such members itself: four operations less per query).
        """
        if not self._steps:
            raise ValueError("the integration took no steps; there is nothing to interpolate")
        if outside not in ("nan", "extrapolate"):
            raise ValueError(f"outside: expected 'nan' or 'extrapolate', got {outside!r}")
        B, M, Q = self._steps[0][0].shape[0], len(self._steps), tq.shape[0]
        pieces = self._stack()
        tq = tq.to(pieces.t.dtype)
        ends, lo, hi, first, shared = self._search(B, M)
        # A backward (adjoint) solve asks for one time at a time, mostly in the step it asked
        # for last. Where the members share their steps, that step is reused (one host read of
        # the time instead of a search). Where they do not (per-member steps), the steps the
        # members are in overlap too little for the reuse to pay: every query searches, on the
        # device, without a host read.
        reuse = Q == 1 and shared
        if reuse and self._last is not None:
            lo_d, hi_d, last = self._last
            if lo_d <= self.direction * float(tq.detach()) <= hi_d:
                return last.value(self.stepper, tq.expand(B))[None]
        q = (tq if self.direction == 1 else self.direction * tq).expand(B, Q).contiguous()
        idx = torch.searchsorted(ends, q).clamp_max(M - 1)  # (B, Q)
        at = pieces.at((idx + first).reshape(-1))
        values = at.value(self.stepper, tq.expand(B, Q).reshape(-1)).reshape(B, Q, -1)
        if reuse:
            start = self.direction * at.t
            bounds = torch.stack([start.max(), (start + self.direction * at.h).min()])
            lo_d, hi_d = (float(x) for x in bounds)
            self._last = (lo_d, hi_d, at)
        if outside == "nan":
            inside = (q >= lo) & (q <= hi)
            values = torch.where(inside[..., None], values, float("nan"))
        return values.transpose(0, 1)

    def __call__(self, tq: torch.Tensor) -> torch.Tensor:
        return self.unflatten(self.evaluate(tq))
