"""Trajectory data sets: simulate, generate (atomic, resumable HDF5), load, export.

References: the analytic solution of a rotating, decaying linear model (defined here), SciPy's
DOP853 at tight tolerance and a direct ``pysciml.solve`` of one member for a registry model.
"""

from __future__ import annotations

import json
import math
import sys

import h5py
import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml.data import (
    SCHEMA,
    SCHEMA_VERSION,
    GenerationError,
    SchemaError,
    Trajectories,
    export_netcdf,
    generate,
    load,
    partial_path,
    simulate,
    to_xarray,
)
from pysciml.data.progress import Progress, progress_mode
from pysciml.data.trajectories import GenerationPlan
from pysciml.physics import DampedPendulum, Lorenz96
from pysciml.physics.base import PhysicalModel, _uniform


class RotatingDecay(PhysicalModel):
    r"""Three independent pairs :math:`(x, y)` rotating at rate :math:`w` and decaying at rate
    :math:`k`: :math:`x' = -k x - w y`, :math:`y' = w x - k y`; state ``(2, 3)``. Exact
    solution :math:`x + iy = e^{(-k + iw)t}(x_0 + iy_0)`. Initial states
    :math:`\sim U[-1, 1]`."""

    name = "rotating_decay"
    default_tspan = (0.0, 2.0)
    stiff = False
    parameter_names = ("k", "w")
    parameter_ranges = {"k": (0.5, 2.0), "w": (1.0, 3.0)}

    def __init__(self, k=1.0, w=2.0, *, learnable=None, dtype=None, device=None):
        super().__init__(dtype=dtype, device=device)
        self._init_parameters({"k": k, "w": w}, learnable)

    @property
    def state_shape(self):
        return (2, 3)

    def forward(self, t, u, p=None):
        k, w = self._value("k", p, trailing=1), self._value("w", p, trailing=1)
        x, y = u[..., 0, :], u[..., 1, :]
        return torch.stack([-k * x - w * y, w * x - k * y], -2)

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape) + self.state_shape
        return 2 * _uniform(shape, generator, self.dtype, self.device) - 1


def exact(traj: Trajectories) -> torch.Tensor:
    """The analytic solution of RotatingDecay for every member of ``traj``."""
    t = traj.t.to(torch.float64)[None, :, None]
    k = traj.parameters["k"][:, None, None]
    w = traj.parameters["w"][:, None, None]
    z0 = torch.complex(traj.u[:, 0, 0], traj.u[:, 0, 1])[:, None, :].to(torch.complex128)
    z = torch.exp(torch.complex(-k * t, w * t)) * z0
    return torch.stack([z.real, z.imag], -2)


T = torch.linspace(0.0, 2.0, 21, dtype=torch.float64)
SETTINGS = dict(t=T, seed=7, sample_parameters=True, rtol=1e-8, atol=1e-10)


def _read(path):
    with h5py.File(path, "r") as f:
        return {"u": f["u"][...], "status": f["status"][...],
                "parameters": {k: v[...] for k, v in f["parameters"].items()},
                "chunks_done": f["chunks_done"][...]}


def _assert_same_file_data(a, b):
    da, db = _read(a), _read(b)
    assert np.array_equal(da["u"], db["u"], equal_nan=True)
    assert np.array_equal(da["status"], db["status"])
    assert da["parameters"].keys() == db["parameters"].keys()
    for k in da["parameters"]:
        assert np.array_equal(da["parameters"][k], db["parameters"][k])
    assert da["chunks_done"].all() and db["chunks_done"].all()


# --------------------------------------------------------------------------- simulate


def test_simulate_matches_the_exact_solution():
    traj = simulate(RotatingDecay(), 6, **SETTINGS)
    assert traj.u.shape == (6, 21, 2, 3) and traj.model == "rotating_decay"
    assert torch.equal(traj.t, T)
    for name, (lo, hi) in RotatingDecay.parameter_ranges.items():
        values = traj.parameters[name]
        assert values.shape == (6,) and bool(((values >= lo) & (values <= hi)).all())
        assert float(values.std()) > 0.05 * (hi - lo)      # sampled, not the fixed default
    assert torch.equal(traj.meta["status"], torch.ones(6, dtype=torch.int8))
    err = (traj.u - exact(traj)).abs().max()
    assert err < 1e-6, err
    assert bool((traj.u[:, 0].abs() <= 1).all()) and float(traj.u[:, 0].std()) > 0.3


def test_fixed_parameters_are_recorded_per_member():
    traj = simulate(RotatingDecay(k=0.7, w=1.5), 3, t=T, seed=1)
    assert torch.equal(traj.parameters["k"], torch.full((3,), 0.7))
    assert torch.equal(traj.parameters["w"], torch.full((3,), 1.5))
    assert (traj.u - exact(traj)).abs().max() < 1e-5  # default tolerances 1e-6 / 1e-8


def test_members_do_not_depend_on_batching_and_follow_the_seed():
    whole = simulate(RotatingDecay(), 7, **SETTINGS)
    batched = simulate(RotatingDecay(), 7, batch_size=3, **SETTINGS)
    assert torch.equal(whole.u[:, 0], batched.u[:, 0])            # draws: bitwise
    for k in whole.parameters:
        assert torch.equal(whole.parameters[k], batched.parameters[k])
    assert torch.allclose(whole.u, batched.u, rtol=0, atol=1e-10)
    first = simulate(RotatingDecay(), 3, **SETTINGS)              # member i depends on (seed, i)
    assert torch.equal(first.u[:, 0], whole.u[:3, 0])
    other = simulate(RotatingDecay(), 3, **{**SETTINGS, "seed": 8})
    assert not torch.allclose(other.u[:, 0], whole.u[:3, 0])


def test_draws_do_not_depend_on_the_solve_dtype():
    f64 = simulate(RotatingDecay(), 4, **SETTINGS)
    f32 = simulate(RotatingDecay(), 4, **{**SETTINGS, "rtol": 1e-5, "atol": 1e-6},
                   dtype=torch.float32)
    assert f32.u.dtype == torch.float32 and f32.t.dtype == torch.float32
    assert torch.equal(f32.u[:, 0], f64.u[:, 0].float())
    assert (f32.u.double() - exact(f64)).abs().max() < 1e-4


def test_lorenz96_initial_states_use_each_members_forcing():
    # Lorenz-96's initial law is x_i = F + N(0, 1): with sampled F the mean follows the member
    traj = simulate("lorenz96", 12, t=torch.linspace(0, 0.1, 2), seed=3, sample_parameters=True,
                    model_kwargs={"n": 40})
    forcing = traj.parameters["forcing"]
    assert float(forcing.max() - forcing.min()) > 1.5
    assert (traj.u[:, 0].mean(-1) - forcing).abs().max() < 4 / math.sqrt(40) * 1.5


# --------------------------------------------------------------------------- generate / load


def test_generate_load_round_trip_and_metadata(tmp_path):
    path = tmp_path / "decay.h5"
    out = generate(RotatingDecay(), path, 10, chunk_size=4, progress=False, **SETTINGS)
    assert out == path and path.exists() and not partial_path(path).exists()
    loaded = load(path)
    direct = simulate(RotatingDecay(), 10, batch_size=4, **SETTINGS)
    assert torch.equal(loaded.u, direct.u) and torch.equal(loaded.t, direct.t)
    for k in direct.parameters:
        assert torch.equal(loaded.parameters[k], direct.parameters[k])
    assert torch.equal(loaded.meta["status"], direct.meta["status"])
    assert (loaded.u - exact(loaded)).abs().max() < 1e-6
    meta = loaded.meta
    assert meta["schema"] == SCHEMA and meta["schema_version"] == SCHEMA_VERSION
    assert meta["model"] == "rotating_decay" and meta["model_class"].endswith(":RotatingDecay")
    assert meta["solver"] == "Tsit5()" and meta["solver_name"] == "Tsit5"
    assert (meta["rtol"], meta["atol"], meta["seed"]) == (1e-8, 1e-10, 7)
    assert meta["state_shape"] == (2, 3) and meta["dtype"] == "float64"
    assert meta["sample_parameters"] == {"k": [0.5, 2.0], "w": [1.0, 3.0]}
    assert meta["pysciml_version"] == ps.__version__ and meta["created"] <= meta["completed"]
    assert meta["grid"]["state_shape"] == [2, 3]
    with h5py.File(path, "r") as f:
        u = f["u"]
        assert u.chunks is not None and u.chunks[0] in (1, 2, 4) and u.chunks[1:] == (21, 2, 3)
        assert u.compression == "gzip" and u.shuffle
        assert list(f["chunks_done"][...]) == [1, 1, 1]


def test_load_a_subset_of_members(tmp_path):
    path = tmp_path / "x.h5"
    generate(RotatingDecay(), path, 7, chunk_size=3, progress=False, **SETTINGS)
    whole = load(path)
    for members in ([5, 0, 5, 2], slice(1, 6, 2), range(3), [-1], []):
        part = load(path, members=members)
        index = torch.arange(7)[members] if isinstance(members, slice) else \
            torch.tensor(list(members), dtype=torch.long) % 7
        assert torch.equal(part.u, whole.u[index]) and part.u.shape[1:] == whole.u.shape[1:]
        assert torch.equal(part.parameters["k"], whole.parameters["k"][index])
        assert torch.equal(part.meta["status"], whole.meta["status"][index])
        assert part.meta["members"] == index.tolist()
    with pytest.raises(ValueError, match="members"):
        load(path, members=[7])
    with pytest.raises(TypeError, match="members"):
        load(path, members=[0.5])


def test_registry_model_matches_a_direct_solve_of_one_member(tmp_path):
    path = tmp_path / "pendulum.h5"
    t = torch.linspace(0.0, 5.0, 26)
    generate("pendulum", path, 5, t=t, seed=2, chunk_size=2, sample_parameters=True,
             rtol=1e-9, atol=1e-11, progress=False)
    traj = load(path)
    assert traj.meta["model_class"] == "pysciml.physics.pendulum:DampedPendulum"
    i = 3
    model = DampedPendulum(omega0=float(traj.parameters["omega0"][i]),
                           alpha=float(traj.parameters["alpha"][i]))
    sol = ps.solve(model.ode_problem(traj.u[i, 0], (0.0, 5.0)), ps.Tsit5(), saveat=t,
                   rtol=1e-9, atol=1e-11)
    assert torch.allclose(traj.u[i], sol.u.detach(), rtol=0, atol=1e-9)

    from scipy.integrate import solve_ivp

    w0, alpha = float(model.omega0.detach()), float(model.alpha.detach())
    ref = solve_ivp(lambda _, y: [y[1], -w0 ** 2 * math.sin(y[0]) - alpha * y[1]], (0, 5),
                    traj.u[i, 0].tolist(), method="DOP853", t_eval=t.numpy(), rtol=1e-12,
                    atol=1e-13)
    assert np.abs(traj.u[i].numpy() - ref.y.T).max() < 1e-7


def test_model_kwargs_reach_the_model_and_the_file(tmp_path):
    path = tmp_path / "l96.h5"
    generate("lorenz96", path, 2, t=torch.linspace(0, 0.5, 6), model_kwargs={"n": 8,
             "forcing": 5.0}, progress=False, compression="lzf")
    traj = load(path)
    assert traj.u.shape == (2, 6, 8) and traj.meta["model_kwargs"] == {"n": 8, "forcing": 5.0}
    assert torch.equal(traj.parameters["forcing"], torch.full((2,), 5.0))
    with h5py.File(path) as f:
        assert f["u"].compression == "lzf"
    model = Lorenz96(n=8, forcing=5.0)
    sol = ps.solve(model.ode_problem(traj.u[1, 0], (0.0, 0.5)), ps.Tsit5(),
                   saveat=torch.linspace(0, 0.5, 6), rtol=1e-6, atol=1e-8)
    assert torch.allclose(traj.u[1], sol.u, rtol=0, atol=1e-10)


def test_stiff_model_with_sampled_rates_matches_scipy_radau():
    from scipy.integrate import solve_ivp

    t = torch.tensor([0.0, 0.1, 1.0, 10.0], dtype=torch.float64)
    traj = simulate("robertson", 3, t=t, seed=5, sample_parameters=True, rtol=1e-7, atol=1e-10)
    assert traj.meta["solver"] == "Rodas5P()"
    assert float(traj.parameters["k2"].std()) > 1e6            # sampled per member
    assert torch.allclose(traj.u.sum(-1), torch.ones(3, 4), rtol=0, atol=1e-8)   # mass
    for i in range(3):
        k1, k2, k3 = (float(traj.parameters[k][i]) for k in ("k1", "k2", "k3"))

        def rober(_, y, k1=k1, k2=k2, k3=k3):
            return [-k1 * y[0] + k3 * y[1] * y[2],
                    k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2], k2 * y[1] ** 2]

        ref = solve_ivp(rober, (0.0, 10.0), traj.u[i, 0].tolist(), method="Radau",
                        t_eval=t.numpy(), rtol=1e-11, atol=1e-14)
        assert np.allclose(traj.u[i].numpy(), ref.y.T, rtol=1e-5, atol=1e-11)


def test_pde_model_keeps_its_grid_and_constant_fields(tmp_path):
    from pysciml.physics import AdvectionDiffusion2D

    path = tmp_path / "ad.h5"
    t = torch.linspace(0, 0.2, 5, dtype=torch.float64)
    kwargs = {"size": 8, "velocity": (0.5, -0.25), "boundary": "closed", "scheme": "upwind"}
    generate("advection_diffusion", path, 3, t=t, model_kwargs=kwargs, sample_parameters=True,
             progress=False)
    traj = load(path)
    assert traj.u.shape == (3, 5, 1, 8, 8)
    grid = traj.meta["grid"]
    assert grid["size"] == [8, 8] and grid["boundary"] == "closed"
    assert grid["spacing"] == [0.125, 0.125] and grid["n_channels"] == 1
    velocity = traj.meta["constants"]["velocity"]
    assert velocity.shape == (2, 8, 8)
    assert torch.equal(velocity[0], torch.full((8, 8), 0.5))
    i = 2
    model = AdvectionDiffusion2D(**kwargs, diffusivity=float(traj.parameters["diffusivity"][i]),
                                 dtype=torch.float64)
    sol = ps.solve(model.ode_problem(traj.u[i, 0], (0.0, 0.2)), ps.Tsit5(), saveat=t,
                   rtol=1e-6, atol=1e-8)
    assert torch.allclose(traj.u[i], sol.u.detach(), rtol=0, atol=1e-10)


class _Interrupt:
    """Wrap GenerationPlan.solve: count calls, raise KeyboardInterrupt on call ``at``."""

    def __init__(self, at=None):
        self.calls, self.at = 0, at
        self.original = GenerationPlan.solve

    def install(self, monkeypatch):
        monkeypatch.setattr(GenerationPlan, "solve", lambda plan, members: self(plan, members))
        return self

    def __call__(self, plan, members):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.original(plan, members)


def test_interrupted_generation_resumes_to_identical_data(tmp_path, monkeypatch):
    reference = tmp_path / "ref.h5"
    generate(RotatingDecay(), reference, 10, chunk_size=3, progress=False, **SETTINGS)

    path = tmp_path / "resumed.h5"
    _Interrupt(at=3).install(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        generate(RotatingDecay(), path, 10, chunk_size=3, progress=False, **SETTINGS)
    assert not path.exists() and partial_path(path).exists()
    with h5py.File(partial_path(path)) as f:
        assert list(f["chunks_done"][...]) == [1, 1, 0, 0]
        assert np.isnan(f["u"][6:]).all() and not np.isnan(f["u"][:6]).any()
    with pytest.raises(FileNotFoundError, match="interrupted generation"):
        load(path)

    resumed = _Interrupt().install(monkeypatch)
    generate(RotatingDecay(), path, 10, chunk_size=3, progress=False, **SETTINGS)
    assert resumed.calls == 2                      # only the two missing chunks
    assert path.exists() and not partial_path(path).exists()
    _assert_same_file_data(reference, path)


def test_resume_refuses_other_settings_and_can_discard(tmp_path, monkeypatch):
    path = tmp_path / "x.h5"
    _Interrupt(at=2).install(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        generate(RotatingDecay(), path, 6, chunk_size=2, progress=False, **SETTINGS)
    monkeypatch.undo()
    before = partial_path(path).read_bytes()
    with pytest.raises(ValueError, match="seed"):
        generate(RotatingDecay(), path, 6, chunk_size=2, progress=False,
                 **{**SETTINGS, "seed": 99})
    with pytest.raises(ValueError, match="t_sha256"):
        generate(RotatingDecay(), path, 6, chunk_size=2, progress=False,
                 **{**SETTINGS, "t": T * 1.5})
    assert partial_path(path).read_bytes() == before and not path.exists()
    counter = _Interrupt().install(monkeypatch)
    generate(RotatingDecay(), path, 6, chunk_size=2, progress=False, resume=False,
             **{**SETTINGS, "seed": 99})
    assert counter.calls == 3 and load(path).meta["seed"] == 99


def test_partial_file_locked_by_a_running_generation_is_left_alone(tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="POSIX file locks only")
    import os

    path = tmp_path / "x.h5"
    with h5py.File(partial_path(path), "w"):
        pass
    fd = os.open(partial_path(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)       # as HDF5 locks a file it writes
        with pytest.raises(ValueError, match="locked by another process"):
            generate(RotatingDecay(), path, 2, progress=False, **SETTINGS)
        with pytest.raises(ValueError, match="open for writing in another process"):
            load(partial_path(path))
    finally:
        os.close(fd)
    assert partial_path(path).exists() and not path.exists()


def test_unreadable_partial_file_is_replaced(tmp_path):
    path = tmp_path / "x.h5"
    partial_path(path).write_bytes(b"not hdf5 at all")
    with pytest.warns(RuntimeWarning, match="starting over"):
        generate(RotatingDecay(), path, 4, chunk_size=2, progress=False, **SETTINGS)
    assert (load(path).u - exact(load(path))).abs().max() < 1e-6


def test_failed_members_raise_or_are_kept(tmp_path):
    path = tmp_path / "fail.h5"
    with pytest.raises(GenerationError, match="MaxIters"):
        generate(RotatingDecay(), path, 4, chunk_size=2, progress=False,
                 solve_kwargs={"max_steps": 3}, **SETTINGS)
    assert not path.exists()
    generate(RotatingDecay(), path, 4, chunk_size=2, progress=False, on_failure="keep",
             solve_kwargs={"max_steps": 3}, **SETTINGS)
    traj = load(path)
    assert torch.equal(traj.meta["status"], torch.full((4,), int(ps.ReturnCode.MaxIters),
                                                      dtype=torch.int8))
    assert bool(torch.isfinite(traj.u[:, 0]).all()) and bool(torch.isnan(traj.u[:, -1]).all())


def test_existing_file_needs_overwrite_and_is_replaced_atomically(tmp_path):
    path = tmp_path / "x.h5"
    generate(RotatingDecay(), path, 2, progress=False, **SETTINGS)
    original = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(RotatingDecay(), path, 3, progress=False, **SETTINGS)
    assert path.read_bytes() == original
    generate(RotatingDecay(), path, 3, progress=False, overwrite=True, **SETTINGS)
    assert len(load(path)) == 3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(model="nonexistent"), ValueError, "unknown model 'nonexistent'"),
    (dict(model="lorenz96", model_kwargs={"G": 1}), ValueError, "no parameter 'G'"),
    (dict(model="lorenz96", model_kwargs={"forcing": "abc"}), ValueError, "forcing"),
    (dict(model="lorenz96", model_kwargs={"n": 2}), ValueError, "n: expected an int >= 4"),
    (dict(model="pendulum", model_kwargs={"omega0": -1.0}), ValueError, "omega0"),
    (dict(model="tests_nowhere:Model"), ValueError, "cannot import"),
    (dict(model=object()), TypeError, "PhysicalModel"),
    (dict(n=0), ValueError, "n: expected a positive int"),
    (dict(t=[0.0, 1.0, 0.5]), ValueError, "strictly increasing"),
    (dict(t=[0.0]), ValueError, "at least 2"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(rtol=0.0), ValueError, "rtol"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(sample_parameters=["nope"]), ValueError, "no range for 'nope'"),
    (dict(alg="Tsit5"), TypeError, "alg"),
    (dict(compression="zip"), ValueError, "compression"),
    (dict(on_failure="ignore"), ValueError, "on_failure"),
    (dict(progress="loud"), ValueError, "progress"),
])
def test_bad_input_is_refused_before_writing(tmp_path, kwargs, error, match):
    path = tmp_path / "bad.h5"
    args = {"model": RotatingDecay(), "n": 2, **SETTINGS, "progress": False}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate(path=path, **args)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        generate(RotatingDecay(), tmp_path / "missing" / "x.h5", 2, t=T, progress=False)
    with pytest.raises(ValueError, match="directory"):
        generate(RotatingDecay(), tmp_path, 2, t=T, progress=False)
    with pytest.raises(TypeError, match="path"):
        generate(RotatingDecay(), 3, 2, t=T, progress=False)


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "missing.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["u"] = np.zeros((2, 3))
    with pytest.raises(SchemaError, match="not a pysciml trajectory file"):
        load(plain)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(SchemaError, match="not a readable HDF5 file"):
        load(text)
    newer = tmp_path / "newer.h5"
    generate(RotatingDecay(), newer, 2, progress=False, **SETTINGS)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaError, match="schema_version"):
        load(newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        del f["status"]
    with pytest.raises(SchemaError, match="status"):
        load(newer)


# --------------------------------------------------------------------------- progress


def test_progress_modes(monkeypatch):
    import io

    stream = io.StringIO()
    assert progress_mode(True, stream) == "none"          # not a terminal
    monkeypatch.setattr(stream, "isatty", lambda: True, raising=False)
    assert progress_mode("auto", stream) == "bar" and progress_mode(False) == "none"
    lines = io.StringIO()
    bar = Progress("gen", 10, 3, "lines", lines)
    bar.start(4, 1)
    bar.update(3)
    bar.update(3)
    text = lines.getvalue().splitlines()
    assert text[0].startswith("gen: chunk 2/3 done, 7/10") and "10/10" in text[1]
    drawn = io.StringIO()
    bar = Progress("gen", 10, 2, "bar", drawn, width=10)
    bar.start(0, 0)
    bar.update(5)
    assert "[#####.....]" in drawn.getvalue() and "5/10" in drawn.getvalue()
    quiet = io.StringIO()
    Progress("gen", 10, 2, "none", quiet).update(5)
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- export


def test_xarray_and_netcdf_export(tmp_path):
    pytest.importorskip("xarray", reason="xarray is not installed (pip install xarray h5netcdf)")
    path = tmp_path / "x.h5"
    generate(RotatingDecay(), path, 3, progress=False, **SETTINGS)
    traj = load(path)
    ds = to_xarray(path)
    assert ds["u"].dims == ("member", "time", "state_0", "state_1")
    assert np.array_equal(ds["u"].values, traj.u.numpy())
    assert np.array_equal(ds["time"].values, traj.t.numpy())
    assert np.array_equal(ds["param_k"].values, traj.parameters["k"].numpy())
    assert ds.attrs["model"] == "rotating_decay" and ds.attrs["seed"] == 7
    if not any(__import__("importlib").util.find_spec(m) for m in ("h5netcdf", "netCDF4")):
        pytest.skip("neither h5netcdf nor netCDF4 is installed (pip install h5netcdf)")
    import xarray

    nc = export_netcdf(traj, tmp_path / "x.nc")
    assert not (tmp_path / "x.nc.tmp").exists()
    with xarray.open_dataset(nc) as back:
        assert np.array_equal(back["u"].values, traj.u.numpy())
        assert json.loads(back.attrs["sample_parameters"]) == {"k": [0.5, 2.0], "w": [1.0, 3.0]}


def test_export_without_xarray_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    traj = simulate(RotatingDecay(), 1, **SETTINGS)
    with pytest.raises(ImportError, match="pip install xarray"):
        to_xarray(traj)


def test_generation_on_cuda_matches_cpu(tmp_path, cuda_device):
    cpu = tmp_path / "cpu.h5"
    gpu = tmp_path / "cuda.h5"
    t = torch.linspace(0, 2, 11, dtype=torch.float64)
    for path, device in ((cpu, "cpu"), (gpu, cuda_device)):
        generate("lorenz96", path, 6, t=t, seed=4, chunk_size=4, sample_parameters=True,
                 device=device, rtol=1e-9, atol=1e-11, progress=False)
    a, b = load(cpu), load(gpu)
    assert b.meta["device"] == "cuda" and b.u.device.type == "cpu"
    assert torch.equal(a.u[:, 0], b.u[:, 0])                   # draws are made on the CPU
    assert torch.equal(a.parameters["forcing"], b.parameters["forcing"])
    assert torch.allclose(a.u, b.u, rtol=0, atol=1e-6)
