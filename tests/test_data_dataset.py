"""TrajectoryDataset: history -> horizon windows, read lazily from HDF5 (DataLoader workers)."""

from __future__ import annotations

import pickle

import pytest
import torch
from test_data import SETTINGS, RotatingDecay

from pysciml.data import TrajectoryDataset, generate, load, simulate


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "windows.h5"
    generate(RotatingDecay(dtype=torch.float64), path, 5, chunk_size=2, progress=False, **SETTINGS)
    return path


def _expected(traj, member, start, history, horizon):
    split, stop = start + history, start + history + horizon
    return {"t_history": traj.t[start:split], "history": traj.u[member, start:split],
            "t_horizon": traj.t[split:stop], "horizon": traj.u[member, split:stop]}


def _check_item(item, expected, parameters, member):
    for key, value in expected.items():
        assert torch.equal(item[key], value), key
    assert set(item["parameters"]) == {"k", "w"}
    for name, values in parameters.items():
        assert item["parameters"][name].shape == () and item["parameters"][name] == values[member]


@pytest.mark.parametrize("history, horizon, stride", [(3, 4, 1), (1, 1, 5), (5, 16, 1),
                                                      (2, 3, 4)])
def test_windows_slice_the_trajectories(data_file, history, horizon, stride):
    traj = load(data_file)
    ds = TrajectoryDataset(data_file, history, horizon, stride)
    steps = traj.t.numel()                                       # 21
    per_member = (steps - history - horizon) // stride + 1
    assert ds.windows_per_member == per_member and len(ds) == 5 * per_member
    seen = set()
    for index in range(len(ds)):
        member, start = ds.window(index)
        seen.add((member, start))
        assert start + history + horizon <= steps
        _check_item(ds[index], _expected(traj, member, start, history, horizon),
                    traj.parameters, member)
    # every (member, start) on the stride grid appears exactly once
    assert seen == {(m, s) for m in range(5) for s in range(0, per_member * stride, stride)}
    item = ds[-1]
    assert torch.equal(item["horizon"], traj.u[4, (per_member - 1) * stride + history:
                                               (per_member - 1) * stride + history + horizon])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]


def test_memory_source_and_member_subset_agree_with_the_file(data_file):
    traj = load(data_file)
    in_memory = TrajectoryDataset(traj, 4, 6, 3)
    from_file = TrajectoryDataset(data_file, 4, 6, 3)
    assert len(in_memory) == len(from_file)
    for index in range(len(in_memory)):
        a, b = in_memory[index], from_file[index]
        for key in ("t_history", "history", "t_horizon", "horizon"):
            assert torch.equal(a[key], b[key])
    subset = TrajectoryDataset(data_file, 4, 6, 3, members=[4, 1])
    assert len(subset) == 2 * from_file.windows_per_member
    assert subset.window(0) == (4, 0) and subset.window(subset.windows_per_member) == (1, 0)
    _check_item(subset[1], _expected(traj, 4, 3, 4, 6), traj.parameters, 4)
    single = TrajectoryDataset(data_file, 4, 6, dtype=torch.float32)[0]
    assert single["history"].dtype == torch.float32 and single["t_horizon"].dtype == torch.float32


def test_dataloader_with_two_workers_matches_one_process(data_file):
    ds = TrajectoryDataset(data_file, 5, 7, 2)
    assert ds._file is None                                   # nothing opened until an item
    serial = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0))
    handle = ds._u
    assert handle is not None and ds[1] is not None and ds._u is handle  # one open dataset
    ds.close()
    parallel = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == -(-len(ds) // 4)
    for a, b in zip(serial, parallel):
        assert a["history"].shape == (a["history"].shape[0], 5, 2, 3)
        assert a["horizon"].shape[1:] == (7, 2, 3)
        for key in ("t_history", "history", "t_horizon", "horizon"):
            assert torch.equal(a[key], b[key])
        assert torch.equal(a["parameters"]["k"], b["parameters"]["k"])
    restored = pickle.loads(pickle.dumps(ds))                  # picklable for spawn workers
    assert restored._file is None and torch.equal(restored[3]["history"], ds[3]["history"])


def test_bad_windows_are_refused(data_file):
    with pytest.raises(ValueError, match="exceeds the 21 saved times"):
        TrajectoryDataset(data_file, 15, 7)
    for kwargs, match in [({"history": 0, "horizon": 2}, "history"),
                          ({"history": 2, "horizon": 0}, "horizon"),
                          ({"history": 2, "horizon": 2, "stride": 0}, "stride"),
                          ({"history": 2, "horizon": 2, "members": [5]}, "members"),
                          ({"history": 2, "horizon": 2, "dtype": torch.int64}, "dtype")]:
        with pytest.raises(ValueError, match=match):
            TrajectoryDataset(data_file, **kwargs)
    with pytest.raises(TypeError, match="source"):
        TrajectoryDataset(3, 2, 2)
    with pytest.raises(FileNotFoundError):
        TrajectoryDataset(data_file.with_name("missing.h5"), 2, 2)
    with pytest.raises(TypeError, match="index"):
        TrajectoryDataset(data_file, 2, 2)[1.5]


def test_simulated_trajectories_in_memory():
    traj = simulate(RotatingDecay(), 2, **SETTINGS)
    ds = TrajectoryDataset(traj, 2, 3)
    assert len(ds) == 2 * 17
    item = ds[17 + 4]
    assert torch.equal(item["history"], traj.u[1, 4:6])
    assert torch.equal(item["t_horizon"], traj.t[6:9])
