"""Export trajectory data sets to xarray and netCDF (optional: needs ``xarray``, and
``h5netcdf`` or ``netCDF4`` for files).

The ``xarray.Dataset`` has the variables ``u (member, time, *state dims)``, one
``(member,)`` variable per scalar parameter (named ``param_<name>``), ``status (member,)``, and
the coordinates ``member`` and ``time``; state dimensions are named ``state`` (1-d states) or
``state_0, state_1, ...``. Metadata become attributes (dicts as JSON strings, booleans as 0/1,
as netCDF requires).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .store import load
from .trajectories import Trajectories

__all__ = ["to_xarray", "export_netcdf"]

_INSTALL = "pip install xarray h5netcdf"


def _xarray():
    try:
        import xarray
    except ImportError:
        raise ImportError(f"to_xarray/export_netcdf need xarray, which is not installed: "
                          f"{_INSTALL}") from None
    return xarray


def _attribute(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and value:
        return np.asarray(value)
    return json.dumps(value, sort_keys=True, default=str)


def to_xarray(source: Trajectories | str | os.PathLike):
    """``source`` (in memory, or a trajectory file, read whole) as an ``xarray.Dataset``."""
    xr = _xarray()
    traj = source if isinstance(source, Trajectories) else load(source)
    u = traj.u.detach().cpu().numpy()
    state_dims = (["state"] if u.ndim == 3 else [f"state_{k}" for k in range(u.ndim - 2)])
    dims = ["member", "time", *state_dims]
    variables: dict[str, Any] = {"u": (dims, u)}
    for name, values in traj.parameters.items():
        variables[f"param_{name}"] = (["member"], values.detach().cpu().numpy())
    status = traj.meta.get("status")
    if status is not None:
        variables["status"] = (["member"], np.asarray(status.cpu().numpy(), dtype=np.int8))
    attrs = {"model": traj.model}
    for key, value in traj.meta.items():
        if key in ("status", "constants") or value is None:
            continue
        attrs[key] = _attribute(value)
    return xr.Dataset(variables,
                      coords={"member": np.arange(u.shape[0]),
                              "time": traj.t.detach().cpu().numpy().astype(np.float64)},
                      attrs=attrs)


def export_netcdf(source: Trajectories | str | os.PathLike, path: str | os.PathLike, *,
                  engine: str | None = None) -> Path:
    """Write ``source`` to the netCDF file ``path`` atomically (a temporary file in the same
    directory, then a rename). ``engine``: ``"h5netcdf"`` or ``"netcdf4"`` (default: whichever
    is installed, h5netcdf first)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: directory {path.parent} does not exist")
    if engine is None:
        for candidate, module in (("h5netcdf", "h5netcdf"), ("netcdf4", "netCDF4")):
            if importlib.util.find_spec(module) is not None:
                engine = candidate
                break
        else:
            _xarray()
            raise ImportError(f"export_netcdf needs h5netcdf or netCDF4, neither is installed: "
                              f"{_INSTALL}")
    elif engine not in ("h5netcdf", "netcdf4"):
        raise ValueError(f"engine: expected 'h5netcdf' or 'netcdf4', got {engine!r}")
    dataset = to_xarray(source)
    tmp = path.with_name(path.name + ".tmp")
    try:
        dataset.to_netcdf(tmp, engine=engine)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
