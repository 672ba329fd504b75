"""Trajectory data sets of physical models: simulate in memory, generate into HDF5 (atomic,
resumable), load, read history → horizon windows as a torch ``Dataset``, export to xarray.

>>> import pysciml.data as psd
>>> traj = psd.simulate("lorenz96", 8, t=torch.linspace(0, 5, 51), seed=0)   # doctest: +SKIP
>>> psd.generate("lorenz96", "l96.h5", 1024, t=torch.linspace(0, 5, 51))    # doctest: +SKIP
>>> ds = psd.TrajectoryDataset("l96.h5", history=10, horizon=20)             # doctest: +SKIP
"""

from .dataset import TrajectoryDataset
from .export import export_netcdf, to_xarray
from .members import available_models, resolve_model
from .store import SCHEMA, SCHEMA_VERSION, SchemaError, describe, generate, load, partial_path
from .trajectories import GenerationError, Trajectories, simulate

__all__ = [
    "Trajectories", "simulate", "generate", "load", "describe", "TrajectoryDataset",
    "to_xarray", "export_netcdf", "SchemaError", "GenerationError", "SCHEMA", "SCHEMA_VERSION",
    "partial_path", "available_models", "resolve_model",
]
