"""Metrics history written to CSV and JSON (atomically), and a text progress bar."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .checkpoint import atomic_write_text

__all__ = ["MetricsLog", "ProgressBar"]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


class MetricsLog:
    """One row of scalars per epoch; :meth:`write` rewrites ``metrics.csv`` and ``metrics.json``
    in ``directory`` atomically (the JSON also holds ``summary``)."""

    def __init__(self, directory: str | os.PathLike | None, rows: list[dict] | None = None):
        self.directory = None if directory is None else Path(directory)
        self.rows: list[dict[str, Any]] = list(rows or [])

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def columns(self) -> list[str]:
        cols: list[str] = []
        for row in self.rows:
            cols.extend(k for k in row if k not in cols)
        return cols

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
        return buf.getvalue()

    def write(self, summary: dict[str, Any] | None = None) -> None:
        if self.directory is None:
            return
        atomic_write_text(self.directory / "metrics.csv", self.to_csv())
        doc = {"history": [{k: _plain(v) for k, v in r.items()} for r in self.rows],
               "summary": {k: _plain(v) for k, v in (summary or {}).items()}}
        atomic_write_text(self.directory / "metrics.json", json.dumps(doc, indent=1) + "\n")


class ProgressBar:
    """``epoch 3/50 |#######-------| 12/25 [1.3 it/s] loss 1.2e-03`` on one line of ``stream``,
    redrawn at most every ``interval`` seconds (on a non-terminal stream: a line at the end of the
    first and last epochs and every ``log_interval`` seconds)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, width: int = 24,
                 interval: float = 0.25, log_interval: float = 10.0):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width, self.interval, self.log_interval = width, interval, log_interval
        self._last_log = -float("inf")
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._start = time.perf_counter()
        self._line_len = 0

    def start_epoch(self) -> None:
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, epoch: int, epochs: int, step: int, steps: int, metrics) -> None:
        """Redraw if due; ``metrics`` is a callable returning ``{name: float}`` (called only
        when drawing, so that reading the values does not synchronise every step)."""
        if not self.enabled or not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < self.interval and step < steps:
            return
        self._last = now
        self._draw(self._line(epoch, epochs, step, steps, metrics(), now), end="")

    def end_epoch(self, epoch: int, epochs: int, steps: int, summary: dict[str, float]) -> None:
        """Finish the epoch's line; on a non-terminal stream print the first and last epochs and
        at most one line every ``log_interval`` seconds in between."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and epoch not in (1, epochs) and now - self._last_log < self.log_interval:
            return
        self._last_log = now
        self._draw(self._line(epoch, epochs, steps, steps, summary, now), end="\n")

    def _line(self, epoch, epochs, step, steps, metrics, now) -> str:
        filled = int(self.width * step / max(steps, 1))
        rate = step / max(now - self._start, 1e-9)
        text = " ".join(f"{k} {v:.3e}" for k, v in metrics.items())
        return (f"epoch {epoch}/{epochs} |{'#' * filled}{'-' * (self.width - filled)}| "
                f"{step}/{steps} [{rate:.1f} it/s] {text}")

    def _draw(self, line: str, end: str) -> None:
        if self.tty:
            pad = max(self._line_len - len(line), 0)
            self.stream.write("\r" + line + " " * pad + end)
            self._line_len = 0 if end else len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
