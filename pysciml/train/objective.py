r"""What a training step minimises: the objective interface of :class:`~pysciml.train.Trainer`.

An objective turns a model and a batch into a scalar loss and named metrics, reports validation
metrics, and may carry state that evolves during training (APHYNITY's Lagrange multiplier
:math:`\lambda`). That state is part of a checkpoint, so a resumed run continues it exactly.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

__all__ = ["AbstractObjective"]


class AbstractObjective(abc.ABC):
    """The loss, the validation metrics and the (checkpointed) state of a training objective."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar to minimise on ``batch`` and named metrics (0-d tensors, the batch means;
        they are detached and averaged across processes by the trainer). The metrics should
        include ``"loss"``."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Validation metrics of ``batch`` (0-d tensors, batch means), computed without
        gradients."""

    @abc.abstractmethod
    def end_step(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Called after each optimizer step with the step's metrics (identical on every process);
        updates the objective's state and returns extra scalars to log (may be empty)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The objective's state, saved in checkpoints."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state from :meth:`state_dict`."""
