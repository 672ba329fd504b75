"""Shared test configuration: float64 by default, and the devices to run on."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import problems` from any test module


@pytest.fixture(autouse=True)
def float64_default():
    """Every test runs with float64 as torch's default dtype (restored afterwards)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def available_devices() -> list[torch.device]:
    """CPU, and CUDA when present."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


@pytest.fixture
def device() -> torch.device:
    """The device for a test that runs on one device: CPU (the reference runtime)."""
    return torch.device("cpu")


@pytest.fixture
def cuda_device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device("cuda")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensor operations dominate the suite; extra intra-op threads only add overhead and
    make the timings of a loaded 2-core machine erratic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
