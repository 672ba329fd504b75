r"""Windows of trajectories as a torch ``Dataset``, read lazily from HDF5.

Item :math:`k` is member :math:`i = \lfloor k / W \rfloor` and start :math:`s = (k \bmod W)\,
\mathrm{stride}`, with :math:`W = \lfloor (S - h - H) / \mathrm{stride} \rfloor + 1` windows per
member of :math:`S` saved times:

.. math::
    \text{history} = u_i(t_s, \dots, t_{s+h-1}), \qquad
    \text{horizon} = u_i(t_{s+h}, \dots, t_{s+h+H-1}).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .store import open_trajectory_file
from .trajectories import Trajectories

__all__ = ["TrajectoryDataset"]


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


class TrajectoryDataset(torch.utils.data.Dataset):
    """History → horizon windows of every member of a data set.

    Args:
        source: a trajectory file (read lazily: each process opens it on its first item, so a
            ``DataLoader`` with ``num_workers > 0`` works) or :class:`Trajectories` in memory.
        history: saved states in the input window (``h >= 1``).
        horizon: saved states to predict after it (``H >= 1``).
        stride: steps between the starts of consecutive windows of a member.
        members: the members to use (a sequence of indices, e.g. a train/validation split);
            default all.
        dtype: cast states and times to this dtype (default: as stored).

    Each item is a dict: ``t_history (h,)``, ``history (h, *state)``, ``t_horizon (H,)``,
    ``horizon (H, *state)``, ``parameters {name: 0-d tensor}`` (the member's scalar physical
    parameters).
    """

    def __init__(self, source: str | os.PathLike | Trajectories, history: int, horizon: int,
                 stride: int = 1, *, members: Sequence[int] | None = None,
                 dtype: torch.dtype | None = None):
        self.history = _positive(history, "history")
        self.horizon = _positive(horizon, "horizon")
        self.stride = _positive(stride, "stride")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype: expected a floating-point torch dtype, got {dtype!r}")
        self.dtype = dtype
        self._file: h5py.File | None = None
        self._u: h5py.Dataset | None = None
        self._pid: int | None = None
        if isinstance(source, Trajectories):
            self.path: Path | None = None
            self._memory: Trajectories | None = source
            t = source.t.detach().cpu()
            n_total = source.u.shape[0]
            parameters = {k: v.detach().cpu() for k, v in source.parameters.items()}
            self.state_shape = tuple(source.u.shape[2:])
        elif isinstance(source, (str, os.PathLike)):
            self.path, self._memory = Path(source), None
            with open_trajectory_file(self.path) as f:
                t = torch.from_numpy(f["t"][...])
                stored = np.dtype(f["u"].dtype)
                n_total = int(f["u"].shape[0])
                parameters = {k: torch.from_numpy(v[...]) for k, v in f["parameters"].items()}
                self.state_shape = tuple(f["u"].shape[2:])
            t = t.to(getattr(torch, stored.name))
        else:
            raise TypeError(f"source: expected a trajectory file path or Trajectories, got "
                            f"{type(source).__name__}")
        if members is None:
            self.members = np.arange(n_total)
        else:
            self.members = np.asarray(members, dtype=np.int64).reshape(-1)
            if self.members.size and (self.members.min() < -n_total
                                      or self.members.max() >= n_total):
                raise ValueError(f"members: indices must lie in [0, {n_total}), got "
                                 f"{members!r}")
            self.members = self.members % max(n_total, 1)
        steps = int(t.numel())
        span = self.history + self.horizon
        if span > steps:
            raise ValueError(f"history + horizon: {self.history} + {self.horizon} exceeds the "
                             f"{steps} saved times of each trajectory")
        self.windows_per_member = (steps - span) // self.stride + 1
        self.t = t if dtype is None else t.to(dtype)
        self.parameters = parameters

    def __len__(self) -> int:
        return int(self.members.size) * self.windows_per_member

    def window(self, index: int) -> tuple[int, int]:
        """``(member, start)`` of item ``index``."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} windows")
        index = int(index) % n
        member = int(self.members[index // self.windows_per_member])
        return member, (index % self.windows_per_member) * self.stride

    def _states(self, member: int, start: int, stop: int) -> torch.Tensor:
        if self._memory is not None:
            return self._memory.u[member, start:stop]
        if self._file is None or self._pid != os.getpid():
            # after a fork, a handle inherited from the parent must not be shared; the dataset
            # stays open, since its chunk cache (decompressed chunks) lives with the open object
            self._file = h5py.File(self.path, "r", rdcc_nbytes=16 << 20, rdcc_nslots=10007)
            self._u = self._file["u"]
            self._pid = os.getpid()
        return torch.from_numpy(self._u[member, start:stop])

    def __getitem__(self, index: int) -> dict[str, Any]:
        member, start = self.window(index)
        split = start + self.history
        stop = split + self.horizon
        states = self._states(member, start, stop)
        if self.dtype is not None:
            states = states.to(self.dtype)
        return {
            "t_history": self.t[start:split],
            "history": states[: self.history],
            "t_horizon": self.t[split:stop],
            "horizon": states[self.history:],
            "parameters": {k: v[member] for k, v in self.parameters.items()},
        }

    def close(self) -> None:
        """Close this process's file handle (reopened on the next item)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._u, self._pid = None, None, None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_u"], state["_pid"] = None, None, None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        source = str(self.path) if self.path is not None else "memory"
        return (f"TrajectoryDataset({source}, history={self.history}, horizon={self.horizon}, "
                f"stride={self.stride}, members={self.members.size}, windows={len(self)})")
