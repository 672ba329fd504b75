"""The runtimes the conformance cases run on: the native runtime always; the Julia runtime
where it starts (its cases are skipped with the reason otherwise)."""

from __future__ import annotations

import functools

import pytest

RUNTIMES = ("native", "julia")


@functools.lru_cache(maxsize=1)
def julia_skip_reason() -> str | None:
    """Why the Julia runtime cannot run here, or ``None`` when it started."""
    from pysciml.julia import JuliaUnavailable, julia_status
    from pysciml.julia.runtime import bridge

    status = julia_status()
    if not status.available:
        return f"Julia runtime unavailable: {status.reason}"
    try:
        bridge()
    except JuliaUnavailable as exc:
        return f"Julia runtime unavailable: {exc}"
    return None


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    """Each runtime in turn (``"native"``, ``"julia"``)."""
    if request.param == "julia":
        reason = julia_skip_reason()
        if reason is not None:
            pytest.skip(reason)
    return request.param


@pytest.fixture
def julia_runtime() -> str:
    """The Julia runtime alone (for right-hand sides written in Julia)."""
    reason = julia_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return "julia"
