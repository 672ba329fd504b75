"""Trajectory data sets in HDF5: :func:`generate` (atomic, resumable), :func:`load`,
:func:`describe`.

File layout (schema ``pysciml.trajectories``, version 1)::

    /                      attributes: schema, schema_version, model, model_class, model_kwargs
                           (JSON), parameter_names, sample_parameters, fixed_parameters, grid
                           (JSON), state_shape, dtype, n, nt, t0, t1, solver, solver_name, rtol,
                           atol, seed, seed_derivation, chunk_size, compression, device,
                           solve_kwargs, pysciml_version, torch_version, h5py_version, created,
                           completed, generation_config (JSON of all that determines the data)
    /t                     (S,) float64: save times, t[0] the initial time
    /u                     (n, S, *state_shape): states; chunked, compressed, shuffled
    /status                (n,) int8: pysciml.ReturnCode of each member (0: not generated)
    /parameters/<name>     (n,) float64: scalar physical parameters, per member
    /constants/<name>      non-scalar physical parameters shared by all members
    /chunks_done           (n_chunks,) uint8: generation chunks written

Generation writes ``FILE.partial`` beside ``FILE`` and renames it to ``FILE`` only when every
chunk is written, so the final path never holds an incomplete file. Members are solved in
chunks of ``chunk_size``; each finished chunk is flushed, then marked in ``chunks_done``. A rerun
with the same settings opens the partial file and skips the marked chunks; because each member's
random draws depend only on ``(seed, member)`` (:mod:`pysciml.data.members`), the resumed file
is bitwise the file an uninterrupted run writes.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .members import json_dumps
from .progress import Progress, progress_mode
from .trajectories import GenerationPlan, Trajectories, make_plan

__all__ = ["generate", "load", "describe", "SchemaError", "SCHEMA", "SCHEMA_VERSION",
           "partial_path", "open_trajectory_file"]

SCHEMA = "pysciml.trajectories"
SCHEMA_VERSION = 1
_CHUNK_TARGET_BYTES = 1 << 18
_GRID_ATTRIBUTES = ("size", "length", "spacing", "boundary", "n_channels", "dx", "dy", "dz")


class SchemaError(ValueError):
    """A file that is not a pysciml trajectory file, or of a schema version this one cannot
    read."""


def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`generate` writes ``path`` until it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _version() -> str:
    try:
        import pysciml

        return str(getattr(pysciml, "__version__", "unknown"))
    except ImportError:
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _compression(compression: Any) -> dict[str, Any]:
    if compression in (None, "none", False):
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    raise ValueError(f"compression: expected 'gzip', 'lzf' or None, got {compression!r}")


def _state_chunks(n: int, steps: int, state: tuple[int, ...], itemsize: int,
                  chunk_size: int) -> tuple[int, ...]:
    """HDF5 chunk shape of ``u``: whole members when they fit in ~256 KiB (as many as fit,
    dividing ``chunk_size`` so generation chunks never share an HDF5 chunk), else one member's
    run of time steps. Small chunks keep random window reads cheap (a read decompresses whole
    chunks); 256 KiB still compresses well."""
    frame = itemsize * max(1, math.prod(state))
    member = frame * steps
    if member <= _CHUNK_TARGET_BYTES:
        fit = max(1, min(chunk_size, n, _CHUNK_TARGET_BYTES // member))
        while chunk_size % fit:
            fit -= 1
        return (fit, steps, *state)
    return (1, max(1, min(steps, _CHUNK_TARGET_BYTES // frame)), *state)


def _grid(model: torch.nn.Module, state_shape: tuple[int, ...]) -> dict[str, Any]:
    grid: dict[str, Any] = {"state_shape": list(state_shape)}
    for name in _GRID_ATTRIBUTES:
        value = getattr(model, name, None)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (tuple, list)):
            value = [v.item() if isinstance(v, torch.Tensor) else v for v in value]
        if isinstance(value, (str, numbers.Real, list)) and not isinstance(value, bool):
            grid[name] = value
    return grid


def _attributes(plan: GenerationPlan, chunk_size: int, compression: Any) -> dict[str, Any]:
    config = plan.config()
    config.update(chunk_size=chunk_size, compression=compression)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": plan.spec.name,
        "model_class": plan.spec.class_path,
        "model_kwargs": json_dumps(plan.spec.kwargs),
        "parameter_names": json_dumps(plan.parameter_names),
        "sample_parameters": json_dumps(config["sample_parameters"]),
        "fixed_parameters": json_dumps(plan.fixed),
        "grid": json_dumps(_grid(plan.spec.model, plan.state_shape)),
        "state_shape": np.asarray(plan.state_shape, dtype=np.int64),
        "dtype": config["dtype"],
        "n": plan.n,
        "nt": int(plan.t.numel()),
        "t0": float(plan.t[0]),
        "t1": float(plan.t[-1]),
        "solver": repr(plan.alg),
        "solver_name": plan.alg.name,
        "rtol": plan.rtol,
        "atol": plan.atol,
        "seed": plan.seed,
        "seed_derivation": "numpy.random.SeedSequence(seed, spawn_key=(member,))",
        "chunk_size": chunk_size,
        "compression": str(compression),
        "device": plan.device.type,
        "solve_kwargs": config["solve_kwargs"],
        "pysciml_version": _version(),
        "torch_version": str(torch.__version__),
        "h5py_version": h5py.__version__,
        "created": _now(),
        "generation_config": json_dumps(config),
    }


def _create_partial(partial: Path, plan: GenerationPlan, chunk_size: int, n_chunks: int,
                    compression: Any) -> None:
    """Write the empty layout to a temporary file, then move it to ``partial``."""
    tmp = partial.with_name(partial.name + ".tmp")
    dtype = np.dtype(str(plan.dtype).removeprefix("torch."))
    steps, state = int(plan.t.numel()), plan.state_shape
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(_attributes(plan, chunk_size, compression))
            f.create_dataset("t", data=plan.t.numpy())
            f.create_dataset("u", shape=(plan.n, steps, *state), dtype=dtype,
                             chunks=_state_chunks(plan.n, steps, state, dtype.itemsize,
                                                  chunk_size),
                             fillvalue=np.nan, **_compression(compression))
            f.create_dataset("status", shape=(plan.n,), dtype=np.int8, fillvalue=0)
            group = f.create_group("parameters")
            for name in plan.parameter_names:
                group.create_dataset(name, shape=(plan.n,), dtype=np.float64, fillvalue=np.nan)
            group = f.create_group("constants")
            for name, value in plan.constants.items():
                group.create_dataset(name, data=value.numpy())
            f.create_dataset("chunks_done", shape=(n_chunks,), dtype=np.uint8, fillvalue=0)
        os.replace(tmp, partial)
    finally:
        tmp.unlink(missing_ok=True)


def _open_partial(partial: Path, config: str) -> h5py.File | None:
    """The partial file of the same configuration opened for writing, ``None`` when it cannot
    be read (interrupted while being written; it is then removed and generation starts over)."""
    try:
        f = h5py.File(partial, "r+")
    except BlockingIOError:
        raise ValueError(f"path: {partial} is locked by another process (is a generation of "
                         f"the same file running?)") from None
    except OSError as exc:
        warnings.warn(f"{partial} cannot be read ({exc}); starting over", RuntimeWarning,
                      stacklevel=3)
        partial.unlink()
        return None
    try:
        stored = f.attrs.get("generation_config")
        readable = stored is not None and "chunks_done" in f and "u" in f
        if readable and json.loads(stored) != json.loads(config):
            old, new = json.loads(stored), json.loads(config)
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            f.close()
            raise ValueError(f"path: {partial} holds a partial run with other settings "
                             f"({', '.join(keys)}); rerun with the same settings to resume it, "
                             f"or pass resume=False (--no-resume) to discard it")
    except (OSError, KeyError, json.JSONDecodeError):
        readable = False
    if not readable:
        f.close()
        warnings.warn(f"{partial} is not a readable partial run; starting over", RuntimeWarning,
                      stacklevel=3)
        partial.unlink()
        return None
    return f


def generate(model: Any, path: str | os.PathLike, n: int, *, t: Any, seed: int = 0,
             chunk_size: int = 64, sample_parameters: Any = False, alg: Any = None,
             rtol: float = 1e-6, atol: float = 1e-8, device: Any = None, dtype: Any = None,
             model_kwargs: Mapping[str, Any] | None = None,
             solve_kwargs: Mapping[str, Any] | None = None, on_failure: str = "raise",
             compression: str | None = "gzip", overwrite: bool = False, resume: bool = True,
             progress: Any = True) -> Path:
    """Solve ``n`` members of ``model`` into the HDF5 file ``path`` (see the module docstring for
    the layout, atomicity and resumption).

    Args:
        model, n, t, seed, sample_parameters, alg, rtol, atol, device, dtype, model_kwargs,
            solve_kwargs, on_failure: as for :func:`~pysciml.data.simulate`.
        path: the file to write; its directory must exist.
        chunk_size: members per ``solve`` call and per resumable unit.
        compression: ``"gzip"`` (level 4, with byte shuffling), ``"lzf"`` or ``None``.
        overwrite: replace an existing ``path`` (only once the new file is complete).
        resume: continue ``path.partial`` left by an interrupted run of the same settings
            (``False``: discard it).
        progress: ``True``/``"auto"`` (a bar when stderr is a terminal), ``"bar"``,
            ``"lines"`` (a line per chunk), or ``False``/``"none"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        GenerationError: a member failed and ``on_failure="raise"``; finished chunks stay in
            the partial file.
        KeyboardInterrupt: as raised; finished chunks stay in the partial file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path: {path} is a directory; expected a file such as data.h5")
    if not path.parent.is_dir():
        raise ValueError(f"path: directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"path: {path} exists; pass overwrite=True (--overwrite) to "
                              f"replace it")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    _compression(compression)
    mode = progress_mode(progress)
    plan = make_plan(model, n, t=t, seed=seed, sample_parameters=sample_parameters, alg=alg,
                     rtol=rtol, atol=atol, device=device, dtype=dtype, model_kwargs=model_kwargs,
                     solve_kwargs=solve_kwargs, on_failure=on_failure)
    chunk_size = int(min(chunk_size, plan.n))
    n_chunks = math.ceil(plan.n / chunk_size)
    partial = partial_path(path)
    config = _attributes(plan, chunk_size, compression)["generation_config"]

    bar = Progress(f"generate {plan.spec.name} -> {path.name}", plan.n, n_chunks, mode)
    f = None
    if partial.exists() and not resume:
        partial.unlink()
    if partial.exists():
        f = _open_partial(partial, config)
    if f is None:
        _create_partial(partial, plan, chunk_size, n_chunks, compression)
        f = h5py.File(partial, "r+")
    with f:
        done_flags = f["chunks_done"][:].astype(bool)
        todo = [c for c in range(n_chunks) if not done_flags[c]]
        finished = sum(min(chunk_size, plan.n - c * chunk_size) for c in range(n_chunks)
                       if done_flags[c])
        if finished:
            bar.message(f"resuming {partial.name}: {n_chunks - len(todo)} of {n_chunks} "
                        f"chunks already done")
        bar.start(finished, n_chunks - len(todo))
        try:
            for c in todo:
                members = range(c * chunk_size, min((c + 1) * chunk_size, plan.n))
                u, status, params = plan.solve(members)
                rows = slice(members.start, members.stop)
                f["u"][rows] = u.numpy()
                f["status"][rows] = status.numpy()
                for name, values in params.items():
                    f["parameters"][name][rows] = values.numpy()
                f.flush()
                f["chunks_done"][c] = 1
                f.flush()
                bar.update(len(members))
        finally:
            bar.close()
        f.attrs["completed"] = _now()
    os.replace(partial, path)
    return path


# --------------------------------------------------------------------------- reading


def open_trajectory_file(path: str | os.PathLike, *, allow_partial: bool = False) -> h5py.File:
    """Open a trajectory file for reading after checking its schema.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names a partial run if one exists).
        SchemaError: not HDF5, not this schema, a newer schema version, or (unless
            ``allow_partial``) an incomplete generation.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        hint = ""
        if partial_path(path).exists():
            hint = (f"; an interrupted generation is at {partial_path(path)} (rerun the same "
                    f"generate command to finish it)")
        raise FileNotFoundError(f"path: no such file: {path}{hint}")
    if path.is_dir():
        raise ValueError(f"path: {path} is a directory, not a trajectory file")
    try:
        f = h5py.File(path, "r")
    except BlockingIOError:
        raise ValueError(f"path: {path} is open for writing in another process (a generation "
                         f"still running?)") from None
    except OSError as exc:
        raise SchemaError(f"path: {path} is not a readable HDF5 file ({exc})") from None
    try:
        schema = f.attrs.get("schema")
        if schema != SCHEMA:
            raise SchemaError(f"path: {path} is not a pysciml trajectory file (attribute "
                              f"'schema' is {schema!r}, expected {SCHEMA!r})")
        version = int(f.attrs.get("schema_version", -1))
        if not 1 <= version <= SCHEMA_VERSION:
            raise SchemaError(f"path: {path} has schema_version {version}; this pysciml reads "
                              f"versions 1 to {SCHEMA_VERSION}")
        missing = [k for k in ("t", "u", "status", "parameters", "chunks_done") if k not in f]
        if missing:
            raise SchemaError(f"path: {path} lacks the dataset {missing[0]!r} of schema "
                              f"{SCHEMA} version {version}")
        if not allow_partial and not bool(np.all(f["chunks_done"][:])):
            raise SchemaError(f"path: {path} is an incomplete generation")
    except BaseException:
        f.close()
        raise
    return f


def _decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if key in ("model_kwargs", "parameter_names", "sample_parameters", "fixed_parameters",
                   "grid", "generation_config") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def _member_index(members: Any, n: int) -> np.ndarray | None:
    if members is None:
        return None
    if isinstance(members, slice):
        return np.arange(n)[members]
    try:
        index = np.asarray(members).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"members: expected indices or a slice, got {type(members).__name__}"
                        ) from None
    if index.size and not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"members: expected integer indices, got dtype {index.dtype}")
    index = index.astype(np.int64)
    if index.size and (index.min() < -n or index.max() >= n):
        raise ValueError(f"members: indices must lie in [-{n}, {n}), got {members!r}")
    return index % max(n, 1)


def load(path: str | os.PathLike, members: Any = None) -> Trajectories:
    """Read a trajectory file into memory (CPU tensors); ``u`` keeps the stored dtype and
    ``t`` is cast to it. ``meta`` holds every file attribute (JSON decoded), ``status`` and
    ``constants``.

    Args:
        path: the file.
        members: the members to read (indices or a slice, in the order given); default all.
            For data larger than memory use :class:`~pysciml.data.TrajectoryDataset`.
    """
    with open_trajectory_file(path) as f:
        meta = _decode_attrs(f.attrs)
        index = _member_index(members, int(f["u"].shape[0]))

        def read(d: h5py.Dataset) -> torch.Tensor:
            if index is None:
                return torch.from_numpy(d[...])
            # h5py reads increasing unique indices; the requested order is restored after
            unique, inverse = np.unique(index, return_inverse=True)
            return torch.from_numpy(d[unique][inverse.reshape(-1)] if unique.size
                                    else d[:0])

        u = read(f["u"])
        t = torch.from_numpy(f["t"][...]).to(u.dtype)
        parameters = {k: read(v) for k, v in f["parameters"].items()}
        constants = {k: torch.from_numpy(v[...]) for k, v in f.get("constants", {}).items()}
        meta["status"] = read(f["status"])
        meta["constants"] = constants
    if index is not None:
        meta["members"] = index.tolist()
    meta["state_shape"] = tuple(meta.get("state_shape", u.shape[2:]))
    return Trajectories(t=t, u=u, parameters=parameters, model=str(meta["model"]), meta=meta)


def _dataset_info(d: h5py.Dataset) -> dict[str, Any]:
    return {"shape": list(d.shape), "dtype": str(d.dtype), "chunks": list(d.chunks or []) or None,
            "compression": d.compression, "compression_opts": d.compression_opts,
            "shuffle": bool(d.shuffle), "stored_bytes": int(d.id.get_storage_size()),
            "bytes": int(d.size * d.dtype.itemsize)}


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary of a trajectory file (complete or ``.partial``): metadata, datasets
    with shapes, dtypes, chunking and compression, parameter ranges, return-code counts."""
    from pysciml import ReturnCode

    path = Path(path)
    with open_trajectory_file(path, allow_partial=True) as f:
        attrs = _decode_attrs(f.attrs)
        attrs.pop("generation_config", None)
        datasets = {}
        f.visititems(lambda name, obj: datasets.__setitem__(name, _dataset_info(obj))
                     if isinstance(obj, h5py.Dataset) else None)
        done = f["chunks_done"][:].astype(bool)
        status = f["status"][:]
        params = {}
        for name, d in f["parameters"].items():
            values = d[:][status != 0] if bool((status != 0).any()) else d[:0]
            params[name] = ({"min": float(values.min()), "max": float(values.max()),
                             "mean": float(values.mean())} if values.size else {})
        t = f["t"][:]
        counts = {}
        for code, count in zip(*np.unique(status, return_counts=True)):
            key = ReturnCode(int(code)).name if int(code) else "NotGenerated"
            counts[key] = int(count)
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "complete": bool(done.all()),
        "chunks_done": int(done.sum()),
        "chunks": int(done.size),
        "members": int(status.size),
        "time": {"t0": float(t[0]), "t1": float(t[-1]), "nt": int(t.size)},
        "status": counts,
        "parameters": params,
        "datasets": datasets,
        "attributes": attrs,
    }
