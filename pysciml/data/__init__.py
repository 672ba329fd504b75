"""Trajectory data sets of physical models: simulate in memory, generate into HDF5 (atomic,
resumable), load, read history → horizon windows as a torch ``Dataset``, export to xarray.

>>> import torch, pysciml.data as psd
>>> t = torch.linspace(0, 10, 101, dtype=torch.float64)
>>> path = psd.generate("lorenz96", "l96.h5", 1024, t=t, sample_parameters=True)  # doctest: +SKIP
>>> train = psd.TrajectoryDataset(path, 10, 20, members=range(900))  # doctest: +SKIP
>>> loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
...                                      num_workers=2)                            # doctest: +SKIP

The command line does the same: ``pysciml generate lorenz96 --n 1024 --sample-parameters
--out l96.h5``, then ``pysciml inspect l96.h5``.
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
