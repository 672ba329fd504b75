r"""The training loop: epochs of optimizer steps, validation, early stopping, metrics files,
atomic checkpoints and exact resume, on one process or data-parallel across several.

Exact resume. A checkpoint holds everything a step depends on: the model, optimizer and scheduler
states, the objective's state, every random generator (torch CPU and CUDA, NumPy, Python; one set
per process), the epoch, the batches already taken in it and the partial sums of its metrics. The
order of the data is a pure function of ``(seed, epoch)`` (:class:`EpochBatchSampler`), and the
``DataLoader`` draws from its own generator rather than the global one. So a run that is killed and
resumed from its last checkpoint repeats exactly the computations of a run left alone, and ends
with bit-for-bit the same parameters (for a fixed seed, on the same hardware and software, with
deterministic kernels: CPU, or CUDA with ``deterministic=True``).

A step is ``optimizer.step(closure)`` where the closure zeroes the gradients, evaluates the
objective, back-propagates and averages the gradients across processes; so optimizers that
re-evaluate (``torch.optim.LBFGS``) work too.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import DistributedContext
from .early_stopping import EarlyStopping
from .metrics import MetricsLog, ProgressBar
from .objective import AbstractObjective
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .sampler import EpochBatchSampler

__all__ = ["Trainer", "TrainResult", "CHECKPOINT_NAME", "BEST_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
_FORMAT = "pysciml.train/1"


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        history: one dict of metrics per completed epoch.
        epochs_completed, global_step: progress at return.
        best_epoch, best_value: the best epoch by the monitored metric (1-based).
        stopped_early: early stopping ended the run.
        interrupted: a stop was requested (signal or :meth:`Trainer.request_stop`) and the run
            checkpointed and returned before its end.
        checkpoint: the last checkpoint written (``None`` without ``out_dir``).
        elapsed_s: training time, summed over resumed segments.
    """

    history: list[dict[str, Any]]
    epochs_completed: int
    global_step: int
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    interrupted: bool = False
    checkpoint: Path | None = None
    elapsed_s: float = 0.0


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else 1
    if isinstance(batch, dict):
        for v in batch.values():
            n = _batch_len(v)
            if n:
                return n
    if isinstance(batch, (list, tuple)):
        for v in batch:
            n = _batch_len(v)
            if n:
                return n
    return 0


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


class Trainer:
    r"""Fit ``model`` by minimising ``objective`` over ``train_data``.

    Args:
        model: the ``nn.Module`` being trained (on its device; batches are moved there).
        objective: an :class:`~pysciml.train.AbstractObjective`.
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters.
        train_data, val_data: map-style datasets (``val_data`` optional).
        scheduler: an optional learning-rate scheduler, stepped every epoch
            (``scheduler_interval="epoch"``; ``ReduceLROnPlateau`` gets the monitored metric) or
            every step (``"step"``).
        epochs: the number of epochs of the whole run (a resumed run continues up to it).
        batch_size: samples per step on each process (the global batch is ``batch_size ×
            world_size``); ``val_batch_size`` defaults to it.
        seed: seeds the data order and, at the start of a fresh run, every random generator
            (process ``r`` uses ``seed + r``).
        shuffle, drop_last: of the training batches.
        out_dir: where ``checkpoint.pt``, ``best.pt``, ``metrics.csv`` and ``metrics.json`` go
            (``None``: nothing is written, no resume).
        checkpoint_every: write the checkpoint every this many epochs (and at the end);
            ``checkpoint_every_steps``: also every this many optimizer steps.
        resume: ``False`` (fresh run), ``True`` (from ``out_dir/checkpoint.pt``, which must
            exist), ``"auto"`` (from it if it exists) or the path of a checkpoint.
        early_stopping: an :class:`~pysciml.train.EarlyStopping`, or ``None``.
        monitor: the metric that defines ``best.pt`` (default: the early-stopping metric, else
            ``val_loss`` with validation data, else ``train_loss``).
        validate_every: epochs between validations.
        progress: show a progress bar on the main process (on ``stream``, default stderr).
        device: where batches go (default: the device of the model's first parameter).
        grad_clip: clip the global gradient norm to this value (after averaging).
        collate_fn, num_workers: passed to ``DataLoader``.
        on_step_end: ``callback(trainer, metrics)`` after every step (may call
            :meth:`request_stop`).
        handle_signals: on SIGINT/SIGTERM, finish the current step, checkpoint and return
            (``interrupted=True``); a second SIGINT stops at once.
        deterministic: ask PyTorch for deterministic kernels (needed for exact resume on CUDA).
    """

    def __init__(self, model: torch.nn.Module, objective: AbstractObjective,
                 optimizer: torch.optim.Optimizer, train_data: Dataset, *,
                 val_data: Dataset | None = None, scheduler: Any = None,
                 scheduler_interval: str = "epoch", epochs: int = 10, batch_size: int = 32,
                 val_batch_size: int | None = None, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, out_dir: str | os.PathLike | None = None,
                 checkpoint_every: int = 1, checkpoint_every_steps: int | None = None,
                 resume: bool | str | os.PathLike = False,
                 early_stopping: EarlyStopping | None = None, monitor: str | None = None,
                 validate_every: int = 1, progress: bool = True, stream=None,
                 device: torch.device | str | None = None, grad_clip: float | None = None,
                 collate_fn: Callable | None = None, num_workers: int = 0,
                 on_step_end: Callable | None = None, handle_signals: bool = True,
                 deterministic: bool = False):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(objective, AbstractObjective):
            raise TypeError(f"objective: expected a pysciml.train.AbstractObjective, got "
                            f"{type(objective).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        model_params = {id(q) for q in model.parameters()}
        for g in optimizer.param_groups:
            for q in g["params"]:
                if id(q) not in model_params:
                    raise ValueError("optimizer: it holds a parameter that is not the model's")
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if data is None and name == "val_data":
                continue
            if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
                raise TypeError(f"{name}: expected a map-style dataset (with __getitem__ and "
                                f"__len__), got {type(data).__name__}")
            if len(data) == 0:
                raise ValueError(f"{name}: the dataset is empty")
        for name, value in (("epochs", epochs), ("batch_size", batch_size),
                            ("checkpoint_every", checkpoint_every),
                            ("validate_every", validate_every)):
            _positive_int(name, value)
        _positive_int("val_batch_size", val_batch_size, allow_none=True)
        _positive_int("checkpoint_every_steps", checkpoint_every_steps, allow_none=True)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval: expected 'epoch' or 'step', got "
                             f"{scheduler_interval!r}")
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"scheduler: expected a learning-rate scheduler, got "
                            f"{type(scheduler).__name__}")
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            raise TypeError(f"early_stopping: expected a pysciml.train.EarlyStopping, got "
                            f"{type(early_stopping).__name__}")
        if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
            raise ValueError(f"grad_clip: expected a positive number, got {grad_clip!r}")
        if monitor is None:
            monitor = (early_stopping.monitor if early_stopping is not None
                       else "val_loss" if val_data is not None else "train_loss")
        for name, key in (("monitor", monitor),
                          ("early_stopping.monitor", getattr(early_stopping, "monitor", None))):
            if key is None:
                continue
            if key.startswith("val_") and val_data is None:
                raise ValueError(f"{name}: {key!r} is a validation metric but there is no "
                                 "val_data")
            if not key.startswith(("val_", "train_")) and key not in ("lr",):
                raise ValueError(f"{name}: expected a metric named 'train_<name>' or "
                                 f"'val_<name>', got {key!r}")
        if resume and out_dir is None and not isinstance(resume, (str, os.PathLike)):
            raise ValueError("resume: needs out_dir (or the path of a checkpoint)")
        if isinstance(resume, str) and resume != "auto" and not resume.endswith(".pt"):
            raise ValueError(f"resume: expected False, True, 'auto' or a checkpoint path, got "
                             f"{resume!r}")

        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.train_data, self.val_data = train_data, val_data
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.epochs, self.batch_size = epochs, batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_every_steps = checkpoint_every_steps
        self.resume = resume
        self.early_stopping, self.monitor = early_stopping, monitor
        self.validate_every = validate_every
        self.grad_clip = grad_clip
        self.collate_fn, self.num_workers = collate_fn, num_workers
        self.on_step_end, self.handle_signals = on_step_end, handle_signals
        first = next(iter(model.parameters()), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.dist = DistributedContext.current()
        self.progress = ProgressBar(enabled=progress and self.dist.is_main, stream=stream)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        self._params = [q for q in model.parameters() if q.requires_grad]
        self._stop_requested = False
        self._signals_seen = 0
        # progress state (restored on resume)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.log = MetricsLog(self.out_dir if self.dist.is_main else None)
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_weight = 0
        self._extras: dict[str, torch.Tensor] = {}
        self._best: tuple[int, float] | None = None
        self._stopped_early = False
        self._elapsed = 0.0
        self._last_checkpoint: Path | None = None

    # ---------------------------------------------------------------------------- control
    def request_stop(self) -> None:
        """Ask the loop to checkpoint and return after the current step."""
        self._stop_requested = True

    def _on_signal(self, signum, frame) -> None:
        self._signals_seen += 1
        if signum == signal.SIGINT and self._signals_seen > 1:
            raise KeyboardInterrupt
        self.request_stop()

    # --------------------------------------------------------------------------- checkpoint
    def _fingerprint(self) -> dict[str, Any]:
        return {"seed": self.seed, "batch_size": self.batch_size,
                "world_size": self.dist.world_size, "n_train": len(self.train_data),
                "shuffle": self.shuffle, "drop_last": self.drop_last}

    def _state(self) -> dict[str, Any]:
        rng = self.dist.gather_objects(capture_rng_state())
        return {
            "format": _FORMAT, "config": self._fingerprint(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "objective": self.objective.state_dict(),
            "early_stopping": (None if self.early_stopping is None
                               else self.early_stopping.state_dict()),
            "best": self._best, "stopped_early": self._stopped_early,
            "history": self.log.rows, "epoch_sums": self._epoch_sums,
            "epoch_weight": self._epoch_weight, "extras": self._extras,
            "elapsed": self._elapsed, "rng": rng,
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoint.pt`` atomically (the main process writes; all take part)."""
        if self.out_dir is None:
            return None
        state = self._state()  # every process joins the gather of RNG states
        path = self.out_dir / CHECKPOINT_NAME
        if self.dist.is_main:
            save_checkpoint(path, state)
        self.dist.barrier()
        self._last_checkpoint = path
        return path

    def _resume_path(self) -> Path | None:
        if self.resume is False or self.resume is None:
            return None
        if isinstance(self.resume, (str, os.PathLike)) and self.resume != "auto":
            return Path(self.resume)
        path = self.out_dir / CHECKPOINT_NAME
        if self.resume == "auto" and not path.is_file():
            return None
        return path

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state.get("format") != _FORMAT:
            raise ValueError(f"resume: {path} is not a checkpoint of pysciml.train")
        mine = self._fingerprint()
        for key, value in state["config"].items():
            if mine.get(key) != value:
                raise ValueError(f"resume: the checkpoint was written with {key}={value!r}, "
                                 f"this run has {key}={mine.get(key)!r}; exact resume needs the "
                                 "same setting")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            if state["scheduler"] is None:
                raise ValueError("resume: the checkpoint has no scheduler state but this run has "
                                 "a scheduler")
            self.scheduler.load_state_dict(state["scheduler"])
        self.objective.load_state_dict(_to_device(state["objective"], self.device))
        if self.early_stopping is not None and state["early_stopping"] is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step = state["global_step"]
        self._best, self._stopped_early = state["best"], state["stopped_early"]
        self.log.rows = list(state["history"])
        self._epoch_sums = _to_device(state["epoch_sums"], self.device)
        self._epoch_weight = state["epoch_weight"]
        self._extras = _to_device(state["extras"], self.device)
        self._elapsed = state["elapsed"]
        restore_rng_state(state["rng"][self.dist.rank])
        self._last_checkpoint = path

    # ------------------------------------------------------------------------------- steps
    def _loader(self, data: Dataset, batch_size: int, epoch: int, start: int, train: bool):
        sampler = EpochBatchSampler(len(data), batch_size, seed=self.seed, epoch=epoch,
                                    rank=self.dist.rank, world_size=self.dist.world_size,
                                    shuffle=self.shuffle and train,
                                    drop_last=self.drop_last and train, start_batch=start,
                                    pad=train)
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)  # never the global one
        kwargs = {} if self.collate_fn is None else {"collate_fn": self.collate_fn}
        return sampler, DataLoader(data, batch_sampler=sampler, num_workers=self.num_workers,
                                   generator=g, **kwargs)

    def _train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        out: dict[str, Any] = {}

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            loss, metrics = self.objective.loss(self.model, batch)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise ValueError("objective: loss() must return a 0-d tensor as the loss")
            loss.backward()
            self.dist.average_gradients(self._params)
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
            out["metrics"] = metrics
            out["loss"] = loss
            return self.dist.mean(loss.detach())

        self.optimizer.step(closure)
        metrics = {k: v.detach() for k, v in out["metrics"].items()}
        metrics.setdefault("loss", out["loss"].detach())
        return self._reduce(metrics)

    def _reduce(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keys = sorted(metrics)
        vec = torch.stack([metrics[k].to(torch.float64).reshape(()) for k in keys])
        vec = self.dist.mean(vec)
        return dict(zip(keys, vec.unbind(0)))

    def _agree_stop(self) -> bool:
        flag = self._stop_requested
        if self.dist.distributed:
            t = torch.tensor([1.0 if flag else 0.0], device=self.device)
            flag = bool(self.dist.sum(t).item() > 0)
        return flag

    def _validate(self) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        _, loader = self._loader(self.val_data, self.val_batch_size, 0, 0, train=False)
        with torch.no_grad():
            for batch in loader:
                batch = _to_device(batch, self.device)
                n = _batch_len(batch)
                for k, v in self.objective.evaluate(self.model, batch).items():
                    v = v.detach().to(torch.float64).reshape(()) * n
                    sums[k] = sums[k] + v if k in sums else v
                count += n
        self.model.train()
        keys = sorted(self.dist.gather_objects(sorted(sums))[0])
        vec = torch.stack([sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device))
                           for k in keys] + [torch.tensor(float(count), dtype=torch.float64,
                                                          device=self.device)])
        vec = self.dist.sum(vec).cpu()
        return {f"val_{k}": float(vec[i] / vec[-1]) for i, k in enumerate(keys)}

    # --------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Run (or continue) the training; returns a :class:`TrainResult`."""
        path = self._resume_path()
        if path is not None:
            self._load(path)
        else:
            seed_everything(self.seed + self.dist.rank)
            self.dist.broadcast_module(self.model)
        handlers = self._install_signal_handlers()
        try:
            return self._run()
        finally:
            for signum, previous in handlers.items():
                signal.signal(signum, previous)

    def _install_signal_handlers(self) -> dict:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        return previous

    def _result(self, interrupted: bool) -> TrainResult:
        best_epoch, best_value = self._best if self._best is not None else (None, None)
        return TrainResult(history=list(self.log.rows), epochs_completed=self.epoch,
                           global_step=self.global_step, best_epoch=best_epoch,
                           best_value=best_value, stopped_early=self._stopped_early,
                           interrupted=interrupted, checkpoint=self._last_checkpoint,
                           elapsed_s=self._elapsed)

    def _run(self) -> TrainResult:
        self.model.train()
        t_start = time.perf_counter()
        elapsed0 = self._elapsed
        while self.epoch < self.epochs and not self._stopped_early:
            sampler, loader = self._loader(self.train_data, self.batch_size, self.epoch,
                                           self.step_in_epoch, train=True)
            steps = sampler.batches_per_epoch()
            self.progress.start_epoch()
            for batch in loader:
                batch = _to_device(batch, self.device)
                n = _batch_len(batch)
                metrics = self._train_step(batch)
                extras = self.objective.end_step(metrics)
                self._extras = {k: v.detach() for k, v in extras.items()}
                for k, v in metrics.items():
                    self._epoch_sums[k] = self._epoch_sums[k] + v * n if k in self._epoch_sums \
                        else v * n
                self._epoch_weight += n
                self.step_in_epoch += 1
                self.global_step += 1
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
                self.progress.update(self.epoch + 1, self.epochs, self.step_in_epoch, steps,
                                     lambda m=metrics: {k: float(v) for k, v in m.items()})
                if self.on_step_end is not None:
                    self.on_step_end(self, metrics)
                stop = self._agree_stop()
                self._elapsed = elapsed0 + time.perf_counter() - t_start
                if (self.checkpoint_every_steps is not None
                        and self.global_step % self.checkpoint_every_steps == 0) or stop:
                    self.save_checkpoint()
                if stop:
                    return self._result(interrupted=True)
            self._end_epoch(steps)
            self._elapsed = elapsed0 + time.perf_counter() - t_start
            if self.epoch % self.checkpoint_every == 0 or self.epoch == self.epochs \
                    or self._stopped_early:
                self.save_checkpoint()
            if self._agree_stop():
                return self._result(interrupted=self.epoch < self.epochs
                                    and not self._stopped_early)
        self._write_metrics()
        return self._result(interrupted=False)

    def _end_epoch(self, steps: int) -> None:
        weight = max(self._epoch_weight, 1)
        keys = sorted(self._epoch_sums)
        values = torch.stack([self._epoch_sums[k] for k in keys]).cpu() if keys else []
        row: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step}
        row.update({f"train_{k}": float(values[i]) / weight for i, k in enumerate(keys)})
        if self.val_data is not None and ((self.epoch + 1) % self.validate_every == 0
                                          or self.epoch + 1 == self.epochs):
            row.update(self._validate())
        row.update({k: float(v) for k, v in self._extras.items()})
        for i, g in enumerate(self.optimizer.param_groups):
            row["lr" if len(self.optimizer.param_groups) == 1 else f"lr_{i}"] = float(g["lr"])
        row["time_s"] = round(self._elapsed, 3)
        self.epoch += 1
        self.step_in_epoch = 0
        self._epoch_sums, self._epoch_weight = {}, 0
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if self.monitor in row:
                    self.scheduler.step(row[self.monitor])
            else:
                self.scheduler.step()
        validated = any(k.startswith("val_") for k in row)
        monitors = (("monitor", self.monitor),
                    ("early_stopping.monitor", getattr(self.early_stopping, "monitor", None)))
        for name, key in monitors:
            if key is not None and key not in row and (validated or not key.startswith("val_")):
                raise ValueError(f"{name}: {key!r} is not among the metrics {sorted(row)}")
        if self.monitor in row:
            value = float(row[self.monitor])
            sign = -1.0 if (self.early_stopping is not None and self.early_stopping.mode == "max"
                            and self.early_stopping.monitor == self.monitor) else 1.0
            if math.isfinite(value) and (self._best is None
                                         or sign * value < sign * self._best[1]):
                self._best = (self.epoch, value)
                if self.out_dir is not None and self.dist.is_main:
                    save_checkpoint(self.out_dir / BEST_NAME,
                                    {"model": self.model.state_dict(), "epoch": self.epoch,
                                     self.monitor: value})
        if self.early_stopping is not None and self.early_stopping.monitor in row:
            _, self._stopped_early = self.early_stopping.update(self.epoch, row)
        row["stopped_early"] = self._stopped_early
        self.log.append(row)
        self.progress.end_epoch(self.epoch, self.epochs, steps,
                                {k: v for k, v in row.items()
                                 if k.startswith(("train_loss", "val_loss"))})
        self._write_metrics()

    def _write_metrics(self) -> None:
        if self.dist.is_main:
            best_epoch, best_value = self._best if self._best is not None else (None, None)
            self.log.write({"epochs_completed": self.epoch, "global_step": self.global_step,
                            "monitor": self.monitor, "best_epoch": best_epoch,
                            "best_value": best_value, "stopped_early": self._stopped_early,
                            "elapsed_s": round(self._elapsed, 3)})
