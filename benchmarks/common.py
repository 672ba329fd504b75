"""Helpers shared by the benchmark scripts: device choice, timing, tables, JSON records, plots.

Every benchmark runs its peers in the same process (these machines vary by ±40% between runs,
so only same-run ratios mean anything), prints a table, and writes a JSON record and a PNG plot
under ``benchmarks/results/``. Both files are written atomically (a temporary file in the same
directory, then ``os.replace``), so an interrupted run never leaves a half-written record.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RESULTS_DIR", "resolve_device", "time_call", "time_interleaved", "summarize", "environment",
    "busy_warning", "spread", "synchronize", "replace_atomically",
    "write_json_atomic", "format_table", "print_table", "bar_plot", "fmt_ms", "fmt_ratio",
    "fmt_sci",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Where every benchmark writes its JSON record and plot."""


# --------------------------------------------------------------------------- device


def resolve_device(name: str) -> torch.device | None:
    """The torch device for ``--device NAME``, or ``None`` when it is not available here
    (the caller then prints why and exits cleanly)."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        return None
    if device.type == "mps" and not torch.backends.mps.is_available():
        return None
    return device


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the queued kernels of a CUDA or MPS device (nothing for the CPU or ``None``)."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --------------------------------------------------------------------------- timing


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1,
              device: torch.device | str | None = None) -> list[float]:
    """Wall-clock times in milliseconds of ``repeats`` calls of ``fn()`` after ``warmup``
    untimed calls.

    On CUDA (or MPS) the device is synchronised before starting and before stopping each clock,
    so queued kernels are counted in the call that launched them.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def time_interleaved(fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 1,
                     device: torch.device | str | None = None, *,
                     max_seconds: float | None = None,
                     min_repeats: int = 3, settle: int = 0) -> list[list[float]]:
    """Like :func:`time_call` for several functions at once, in rounds: each round calls every
    function once (the order rotates from round to round), so a burst of load from other
    processes on a shared machine lands on all of them alike instead of on whichever ran then.

    With ``max_seconds``, stops after the round that passes it (warm-up included), once
    ``min_repeats`` rounds are done, so a heavily loaded machine cannot stretch a run without
    bound.

    With ``settle``, each timed call follows that many untimed calls of the same function in
    the same round, so it is timed in its own steady state rather than in the state the
    previous function left the process in. (One function's allocations can slow the next:
    after an eager pysciml solve, glibc's heap holds thousands of small freed chunks, and a
    compiled ROBER solve that follows it takes 50 ms instead of 33 ms; one call of its own
    restores it.)

    Returns one list of times (ms) per function, in the order of ``fns``: ``repeats`` of them,
    or fewer when ``max_seconds`` cut the rounds short.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    n = len(fns)
    start = time.perf_counter()
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in range(n)]
    for r in range(repeats):
        for k in range(n):
            i = (k + r) % n
            times[i].extend(time_call(fns[i], 1, settle, device))
        if (max_seconds is not None and r + 1 >= min_repeats
                and time.perf_counter() - start > max_seconds):
            break
    return times


def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """Median, minimum, maximum and the interquartile range of a list of times (ms)."""
    xs = sorted(times_ms)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {"median_ms": statistics.median(xs), "min_ms": xs[0], "max_ms": xs[-1],
            "iqr_ms": q3 - q1, "repeats": len(xs)}


def spread(times_per_fn: Sequence[Sequence[float]]) -> float:
    """How disturbed a set of timings is: the median over functions of median / min (1.0 on a
    quiet machine with many repeats; well above 1.3 when other processes compete for the cores)."""
    ratios = [statistics.median(ts) / min(ts) for ts in times_per_fn if ts and min(ts) > 0]
    return statistics.median(ratios) if ratios else math.nan


# --------------------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device, packages: Sequence[str] = ()) -> dict[str, Any]:
    """What a record needs to be compared with another: versions, threads, host, device."""
    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": str(device),
        "argv": sys.argv,
        "packages": {name: _version(name) for name in ("pysciml", *packages)},
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


def busy_warning() -> str | None:
    """A warning when other processes load the machine (1-minute load average above half the
    CPUs): their threads compete with torch's and make single timings jump by 2-10×."""
    if not hasattr(os, "getloadavg"):
        return None
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        return (f"warning: load average {load:.1f} on {cpus} CPUs before the run; other "
                "processes compete for the cores, so expect noisy timings (ratios from the "
                "interleaved rounds stay usable)")
    return None


# --------------------------------------------------------------------------- JSON


def _jsonable(obj: Any) -> Any:
    """Non-finite floats become ``None`` (JSON has no NaN); tensors and numpy scalars become
    numbers or lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def replace_atomically(path: Path, write: Callable[[str], None], suffix: str) -> None:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same directory,
    which then replaces ``path`` (``os.replace``); on failure the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    replace_atomically(path, write, ".json.tmp")
    return path


# --------------------------------------------------------------------------- tables


def fmt_ms(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f}×"


def fmt_sci(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.1e}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 align: str | None = None) -> str:
    """A Markdown table (readable as plain text too). ``align`` holds one ``l`` or ``r`` per
    column (default: first column left, the rest right)."""
    cells = [[str(c) for c in headers]] + [[("—" if c is None else str(c)) for c in r]
                                           for r in rows]
    ncol = len(headers)
    if any(len(r) != ncol for r in cells):
        raise ValueError("format_table: every row needs one cell per header")
    align = align or "l" + "r" * (ncol - 1)
    widths = [max(len(r[i]) for r in cells) for i in range(ncol)]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(r, widths, align, strict=True)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                          for w, a in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                title: str | None = None, align: str | None = None) -> str:
    """Print (and return) :func:`format_table`, with an optional title line above."""
    text = format_table(headers, rows, align)
    if title:
        text = f"{title}\n\n{text}"
    print(text, flush=True)
    return text


# --------------------------------------------------------------------------- plots


def bar_plot(path: str | os.PathLike, groups: Sequence[str], series: dict[str, Sequence[float]],
             *, ylabel: str = "median time [ms]", title: str = "", log: bool = True,
             colors: dict[str, str] | None = None, annotate: bool = True) -> Path:
    """A grouped bar chart written atomically to ``path`` (PNG).

    Args:
        groups: the x-axis groups (e.g. problem sizes).
        series: one bar per group for each label; ``nan`` or ``None`` leaves a gap.
        log: a logarithmic y axis (times of peers often differ by 10×).
        colors: optional colour per series label.
        annotate: write each bar's value above it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    labels = list(series)
    n = max(len(labels), 1)
    width = 0.8 / n
    ncol = 2 if n > 4 else 1
    legend_rows = math.ceil(n / ncol)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 + len(groups) * (0.32 * n + 0.6)),
                                    4.2 + 0.2 * legend_rows))
    for i, label in enumerate(labels):
        values = [float("nan") if v is None else float(v) for v in series[label]]
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width, label=label,
                      color=(colors or {}).get(label))
        if annotate:
            for bar, v in zip(bars, values, strict=True):
                if math.isfinite(v):
                    ax.annotate(f"{v:.0f}" if v >= 10 else f"{v:.1f}",
                                (bar.get_x() + bar.get_width() / 2, v),
                                ha="center", va="bottom", fontsize=6, rotation=90,
                                xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    finite = [float(v) for vs in series.values() for v in vs
              if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if log:
        ax.set_yscale("log")
    if finite:  # headroom for the value labels
        ax.set_ylim(top=max(finite) * (2.5 if log else 1.15))
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, -0.08),
              frameon=False)
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, dpi=130, format="png")

    try:
        replace_atomically(path, write, ".png.tmp")
    finally:
        plt.close(fig)
    return path


# Older names, used by scripts written before these helpers were public.
_synchronize = synchronize
_replace_atomically = replace_atomically
