"""Training: a loop with validation, early stopping, metrics files, atomic checkpoints, exact
resume and data-parallel training across processes (``torchrun``).

>>> from pysciml.train import Trainer, EarlyStopping          # doctest: +SKIP
>>> result = Trainer(model, objective, torch.optim.Adam(model.parameters(), 1e-3), train_set,
...                  val_data=val_set, epochs=100, out_dir="runs/a", resume="auto").fit()
"""

from .checkpoint import (
    atomic_savefig,
    atomic_write,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from .distributed import DistributedContext, init_from_environment
from .early_stopping import EarlyStopping
from .metrics import MetricsLog, ProgressBar
from .objective import AbstractObjective
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .sampler import EpochBatchSampler
from .trainer import BEST_NAME, CHECKPOINT_NAME, Trainer, TrainResult

__all__ = [
    "Trainer", "TrainResult", "AbstractObjective", "EarlyStopping", "EpochBatchSampler",
    "MetricsLog", "ProgressBar", "DistributedContext", "init_from_environment",
    "seed_everything", "capture_rng_state", "restore_rng_state",
    "atomic_write", "atomic_write_text", "atomic_savefig", "save_checkpoint", "load_checkpoint",
    "CHECKPOINT_NAME", "BEST_NAME",
]
