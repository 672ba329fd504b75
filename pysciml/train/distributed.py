r"""Data-parallel training across processes with ``torch.distributed``.

Launch with ``torchrun --nproc_per_node=W script.py`` (backend ``gloo`` on CPU, ``nccl`` on CUDA);
:func:`init_from_environment` initialises the process group from torchrun's variables. Each
process computes the gradient of its shard of the global batch; the gradients are averaged with
one all-reduce (what ``DistributedDataParallel`` does), so every process takes the same optimizer
step. Averaging by hand instead of wrapping the model in DDP keeps the model an ordinary right-hand
side, which the solver calls many times per forward pass and the continuous adjoints differentiate
outside autograd.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_from_environment"]


def init_from_environment(backend: str | None = None) -> DistributedContext:
    """Initialise the default process group from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when it is set and not initialised yet;
    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``. Returns the context
    (a single process when the variables are absent)."""
    if "WORLD_SIZE" in os.environ and dist.is_available() and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return DistributedContext.current()


@dataclass(frozen=True)
class DistributedContext:
    """This process' rank and the number of processes (1 without a process group)."""

    rank: int = 0
    world_size: int = 1

    @staticmethod
    def current() -> DistributedContext:
        if dist.is_available() and dist.is_initialized():
            return DistributedContext(dist.get_rank(), dist.get_world_size())
        return DistributedContext()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process."""
        if not self.distributed:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        r"""Replace each gradient by its mean over processes (one all-reduce per dtype and
        device; a missing gradient counts as zero)."""
        if not self.distributed:
            return
        buckets: dict[tuple, list[torch.nn.Parameter]] = {}
        for q in params:
            if q.requires_grad:
                buckets.setdefault((q.dtype, q.device), []).append(q)
        for group in buckets.values():
            grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in group]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for q in group:
                n = q.numel()
                q.grad = flat[offset:offset + n].view_as(q).clone()
                offset += n

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over processes of a tensor (the tensor itself on one process)."""
        if not self.distributed:
            return values
        out = values.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The sum over processes of a tensor."""
        if not self.distributed:
            return values
        out = values.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process' ``obj``, in rank order (on every process)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()
