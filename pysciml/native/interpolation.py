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
        self.t_start: torch.Tensor | None = None
        self.t_end: torch.Tensor | None = None

    def append(self, t: torch.Tensor, h: torch.Tensor, u: torch.Tensor,
               stages: torch.Tensor) -> None:
        self._steps.append((t, h, u, stages))
        self._stacked = None

    def finish(self, t0: torch.Tensor, t_end: torch.Tensor) -> DenseHistory:
        """Close the record: ``t0`` is the common start, ``t_end`` (B,) where each member got."""
        self.t_start = t0
        self.t_end = t_end
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

    def evaluate(self, tq: torch.Tensor) -> torch.Tensor:
        """The flattened solution at times ``tq`` (Q,) for every member: shape ``(Q, B, N)``.

        Times outside ``[t0, t_end]`` of a member (beyond where it failed) give NaN.
        """
        if not self._steps:
            raise ValueError("the integration took no steps; there is nothing to interpolate")
        t, h, u, stages = self._stack()
        B, M = t.shape
        d = self.direction
        ends = (d * (t + h)).contiguous()  # non-decreasing along M for each member
        q = (d * tq).to(t.dtype).expand(B, -1).contiguous()  # (B, Q)
        idx = torch.searchsorted(ends, q).clamp_max(M - 1)  # (B, Q)
        t_i = torch.gather(t, 1, idx)
        h_i = torch.gather(h, 1, idx)
        theta = torch.where(h_i != 0, (tq[None, :] - t_i) / torch.where(h_i != 0, h_i, 1), 0)
        N = u.shape[-1]
        s = stages.shape[2]
        u_i = torch.gather(u, 1, idx[..., None].expand(B, -1, N))  # (B, Q, N)
        k_i = torch.gather(stages, 1, idx[..., None, None].expand(B, -1, s, N))  # (B, Q, s, N)
        Q = tq.shape[0]
        flat = self.stepper.interpolate(
            u_i.reshape(B * Q, N), h_i.reshape(B * Q),
            k_i.reshape(B * Q, s, N).transpose(0, 1), theta.reshape(B * Q),
        ).reshape(B, Q, N)
        tol = 64 * torch.finfo(t.dtype).eps * torch.maximum(
            self.t_start.abs(), self.t_end.abs()).clamp_min(1.0)[:, None]  # (B, 1)
        inside = (q >= d * self.t_start - tol) & (q <= (d * self.t_end)[:, None] + tol)
        flat = torch.where(inside[..., None], flat, torch.full_like(flat, float("nan")))
        return flat.transpose(0, 1)

    def __call__(self, tq: torch.Tensor) -> torch.Tensor:
        return self.unflatten(self.evaluate(tq))
