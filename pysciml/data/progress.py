"""A dependency-free progress display on stderr for long generations.

Modes: ``"bar"`` redraws one line (``\\r``) with a bar, counts, rate and time left; ``"lines"``
prints one plain line per update (logs, CI, tests that wait for a chunk); ``"none"`` prints
nothing. ``"auto"`` (or ``True``) is ``"bar"`` when stderr is a terminal and ``"none"``
otherwise.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "progress_mode"]

_MODES = ("auto", "bar", "lines", "none")


def progress_mode(progress: Any, stream: TextIO | None = None) -> str:
    """The concrete mode (``"bar"``, ``"lines"`` or ``"none"``) of a ``progress`` argument."""
    if progress is True:
        progress = "auto"
    elif progress is False or progress is None:
        progress = "none"
    if progress not in _MODES:
        raise ValueError(f"progress: expected True, False or one of {', '.join(_MODES)}, got "
                         f"{progress!r}")
    if progress == "auto":
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return "bar" if callable(isatty) and isatty() else "none"
    return progress


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """Progress of ``total`` items (trajectories) done in chunks, shown in ``mode``."""

    def __init__(self, label: str, total: int, chunks: int, mode: str = "none",
                 stream: TextIO | None = None, width: int = 24):
        self.label, self.total, self.chunks = label, total, chunks
        self.mode = mode
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.done = 0
        self.chunks_done = 0
        self._start = time.perf_counter()
        self._skipped = 0  # items found done at the start (not counted in the rate)

    def message(self, text: str) -> None:
        """A one-off line (resume notice, ...), shown unless the mode is ``"none"``."""
        if self.mode == "none":
            return
        if self.mode == "bar":
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def start(self, done: int, chunks_done: int) -> None:
        """Begin timing with ``done`` items (``chunks_done`` chunks) already finished."""
        self.done, self.chunks_done, self._skipped = done, chunks_done, done
        self._start = time.perf_counter()
        if self.mode == "bar":
            self._draw()

    def update(self, items: int) -> None:
        """One more chunk of ``items`` items finished."""
        self.done += items
        self.chunks_done += 1
        if self.mode == "bar":
            self._draw()
        elif self.mode == "lines":
            rate = self._rate()
            self.stream.write(f"{self.label}: chunk {self.chunks_done}/{self.chunks} done, "
                              f"{self.done}/{self.total} trajectories, {rate:.3g} traj/s\n")
            self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()

    def _rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return (self.done - self._skipped) / elapsed if elapsed > 0 else 0.0

    def _draw(self) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        rate = self._rate()
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = _clock(left) if left == left else "?"
        self.stream.write(f"\r\033[K{self.label} [{bar}] {fraction:4.0%} "
                          f"{self.done}/{self.total} traj, {rate:.3g} traj/s, ETA {eta}")
        self.stream.flush()
