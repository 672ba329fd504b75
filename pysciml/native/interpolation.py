"""Dense output over a whole integration: the accepted steps of every member, searchable by time.

Each step stores its start ``t`` and size ``h`` (shape ``(B,)``, ``h = 0`` for a member that did
not advance in that iteration of the loop), the state at its start and the stages its family's
interpolant needs. A query time is located per member by binary search over the step end times,
then the family's interpolant (``AbstractStepper.interpolate``) evaluates it.
"""

from __future__ import annotations

import torch

from .stepper import AbstractStepper

__all__ = ["DenseHistory"]


class DenseHistory:
    """The record of accepted steps; callable on a 1-d tensor of times → ``(Q, B, N)``."""

    def __init__(self, stepper: AbstractStepper, direction: float,
                 unflatten=lambda y: y):
        self.stepper = stepper
        self.direction = direction
        self.unflatten = unflatten
        self._steps: list[tuple[torch.Tensor, ...]] = []
        self._stacked: tuple[torch.Tensor, ...] | None = None
        self._search_cache: tuple[torch.Tensor, ...] | None = None
        self._last: tuple[torch.Tensor, ...] | None = None
        self.t_start: torch.Tensor | None = None
        self.t_end: torch.Tensor | None = None

    def append(self, t: torch.Tensor, h: torch.Tensor, u: torch.Tensor,
               stages: torch.Tensor) -> None:
        self._steps.append((t, h, u, stages))
        self._stacked = None
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

    def _stack(self) -> tuple[torch.Tensor, ...]:
        if self._stacked is None:
            t, h, u = (torch.stack(x, 1) for x in list(zip(*self._steps))[:3])
            stages = torch.stack([k.permute(1, 0, 2) for _, _, _, k in self._steps], 1)
            self._stacked = (t, h, u, stages)  # (B, M), (B, M), (B, M, N), (B, M, s, N)
        return self._stacked

    def _search(self) -> tuple[torch.Tensor, ...]:
        """What every query needs, computed once: directed step ends (B, M) and the directed
        bounds (B, 1) of each member's span (beyond them: NaN)."""
        if self._search_cache is None:
            t, h, _, _ = self._stack()
            d = self.direction
            tol = 64 * torch.finfo(t.dtype).eps * torch.maximum(
                self.t_start.abs(), self.t_end.abs()).clamp_min(1.0)
            lo = (d * self.t_start - tol).expand(t.shape[0])[:, None]
            hi = (d * self.t_end + tol)[:, None]
            self._search_cache = ((d * (t + h)).contiguous(), lo, hi)
        return self._search_cache

    def evaluate(self, tq: torch.Tensor) -> torch.Tensor:
        """The flattened solution at times ``tq`` (Q,) for every member: shape ``(Q, B, N)``.

        Times outside ``[t0, t_end]`` of a member (beyond where it failed) give NaN.
        """
        if not self._steps:
            raise ValueError("the integration took no steps; there is nothing to interpolate")
        t, h, u, stages = self._stack()
        B, M = t.shape
        N, s, Q = u.shape[-1], stages.shape[2], tq.shape[0]
        if Q == 1 and self._last is not None:
            # a backward (adjoint) solve asks for one time at a time, mostly in the step it
            # asked for last: reuse that step's data (one host read instead of a search)
            start, end, t_i, h_i, u_i, k_i = self._last
            q1 = self.direction * tq.to(t.dtype)
            if bool(((q1 >= start) & (q1 <= end)).all()):
                theta = (tq.to(t.dtype) - t_i) / torch.where(h_i != 0, h_i, 1)
                return self.stepper.interpolate(u_i, h_i, k_i.transpose(0, 1), theta)[None]
        ends, lo, hi = self._search()
        q = (self.direction * tq).to(t.dtype).expand(B, Q).contiguous()  # (B, Q)
        idx = torch.searchsorted(ends, q).clamp_max(M - 1)  # (B, Q)
        flat_idx = (idx + M * torch.arange(B, device=idx.device)[:, None]).reshape(-1)
        t_i = t.reshape(-1)[flat_idx]
        h_i = h.reshape(-1)[flat_idx]
        u_i = u.reshape(B * M, N)[flat_idx]
        k_i = stages.reshape(B * M, s, N)[flat_idx]
        # a member that did not move in that step has h = 0: its interpolant is u whatever theta
        theta = (tq.expand(B, Q).reshape(-1) - t_i) / torch.where(h_i != 0, h_i, 1)
        values = self.stepper.interpolate(u_i, h_i, k_i.transpose(0, 1), theta).reshape(B, Q, N)
        inside = (q >= lo) & (q <= hi)
        if Q == 1:
            start = self.direction * t_i
            self._last = (start, start + self.direction * h_i, t_i, h_i, u_i, k_i)
        values = torch.where(inside[..., None], values, float("nan"))
        return values.transpose(0, 1)

    def __call__(self, tq: torch.Tensor) -> torch.Tensor:
        return self.unflatten(self.evaluate(tq))
