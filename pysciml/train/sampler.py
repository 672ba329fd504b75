r"""The order of the data: a pure function of (seed, epoch), sharded across processes.

Epoch :math:`e` visits the samples in the permutation drawn by a generator seeded with
:math:`\text{seed} \cdot 1000003 + e` (the identity when ``shuffle=False``). With :math:`W`
processes the permutation is padded by wrapping around to a multiple of :math:`W` (as
``torch.utils.data.DistributedSampler`` does) and process :math:`r` takes positions
:math:`r, r + W, r + 2W, \dots`, in batches of ``batch_size``. So global batch :math:`k` (the union
over processes) is positions :math:`[kWB, (k+1)WB)` of the permutation, the same samples a single
process with batch size :math:`WB` would see.

Because the order depends on nothing else, resuming in the middle of an epoch only needs the epoch
and the number of batches already taken (``start_batch``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochBatchSampler"]


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices of one epoch for one process (a ``batch_sampler`` for ``DataLoader``).

    Args:
        n: the dataset size.
        batch_size: samples per batch on this process.
        seed, epoch: determine the permutation.
        rank, world_size: this process and the number of processes.
        shuffle: permute (True) or keep the dataset order.
        drop_last: drop this process' last incomplete batch.
        start_batch: skip this many batches (resume inside an epoch).
        pad: wrap around so that every process gets the same number of samples (training); with
            ``pad=False`` (validation) every sample is visited exactly once overall.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, drop_last: bool = False,
                 start_batch: int = 0, pad: bool = True):
        for name, value, low in (("n", n, 1), ("batch_size", batch_size, 1),
                                 ("world_size", world_size, 1), ("epoch", epoch, 0),
                                 ("start_batch", start_batch, 0), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected an int in [0, {world_size}), got {rank!r}")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.start_batch, self.pad = start_batch, pad

    def indices(self) -> list[int]:
        """This process' indices for the whole epoch, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad:
            total = math.ceil(self.n / self.world_size) * self.world_size
            order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank::self.world_size]

    def batches_per_epoch(self) -> int:
        """Batches this process takes in a whole epoch."""
        m = len(self.indices()) if not self.pad else math.ceil(self.n / self.world_size)
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        idx = self.indices()
        for b in range(self.start_batch, self.batches_per_epoch()):
            yield idx[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start_batch, 0)
