"""Early stopping on a monitored metric, with its state saved in checkpoints."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EarlyStopping"]


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a column of the metrics history, e.g. ``"val_loss"`` or ``"train_mse"``.
        patience: epochs without improvement before stopping (≥ 1).
        min_delta: the least change that counts as an improvement (≥ 0).
        mode: ``"min"`` or ``"max"``.
    """

    monitor: str = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    mode: str = "min"

    def __post_init__(self) -> None:
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(f"monitor: expected a metric name, got {self.monitor!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience: expected a positive int, got {self.patience!r}")
        if not isinstance(self.min_delta, (int, float)) or not self.min_delta >= 0:
            raise ValueError(f"min_delta: expected a non-negative number, got {self.min_delta!r}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {self.mode!r}")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        """Whether ``value`` improves on the best so far (by more than ``min_delta``)."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, row: dict) -> tuple[bool, bool]:
        """Record an epoch's metrics; returns ``(improved, stop)``."""
        if self.monitor not in row:
            raise ValueError(f"monitor: {self.monitor!r} is not among the metrics "
                             f"{sorted(k for k in row if k not in ('epoch', 'step'))}")
        value = float(row[self.monitor])
        better = self.improved(value)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better, self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
