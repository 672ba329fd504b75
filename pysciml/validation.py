"""Input checks for ``solve``: each error names the argument and what was expected."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from .problem import ODEProblem

__all__ = ["ValidatedInputs", "validate", "check_rhs_output", "expect_instance"]


@dataclass(frozen=True)
class ValidatedInputs:
    """The solve's inputs as tensors of one dtype and device."""

    t0: torch.Tensor
    t1: torch.Tensor
    ts: torch.Tensor
    direction: float
    rtol: torch.Tensor | float
    atol: torch.Tensor | float
    dtype: torch.dtype
    device: torch.device


def _tensors_in(tree: Any) -> list[torch.Tensor]:
    return [x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor)]


def _check_problem(prob: ODEProblem) -> None:
    if not isinstance(prob, ODEProblem):
        raise TypeError(f"prob: expected an ODEProblem, got {type(prob).__name__}")
    if not callable(prob.f):
        raise TypeError(f"f: expected a callable f(t, u, p), got {type(prob.f).__name__}")
    u0 = prob.u0
    if not isinstance(u0, torch.Tensor):
        raise TypeError(f"u0: expected a torch.Tensor, got {type(u0).__name__}")
    if not u0.is_floating_point():
        raise TypeError(f"u0: expected a floating-point tensor (float32 or float64), got "
                        f"dtype {u0.dtype}")
    if not isinstance(prob.batch_ndim, int) or not 0 <= prob.batch_ndim < max(u0.ndim, 1):
        raise ValueError(f"batch_ndim: expected an int in [0, {max(u0.ndim - 1, 0)}] for u0 of "
                         f"shape {tuple(u0.shape)} (the state needs at least one dimension), "
                         f"got {prob.batch_ndim!r}")
    if u0.numel() == 0:
        raise ValueError(f"u0: expected a non-empty tensor, got shape {tuple(u0.shape)}")
    if not bool(torch.isfinite(u0).all()):
        raise ValueError("u0: expected finite values, found NaN or inf")
    for i, x in enumerate(_tensors_in(prob.p)):
        if x.device != u0.device:
            raise ValueError(f"p: leaf {i} is on {x.device}, u0 on {u0.device}; expected one "
                             "device")
        if x.is_floating_point():
            if x.dtype != u0.dtype:
                raise TypeError(f"p: leaf {i} has dtype {x.dtype}, u0 has {u0.dtype}; expected "
                                "one floating-point dtype")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"p: leaf {i} has non-finite values (NaN or inf)")


def _as_time(value: Any, name: str, dtype, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: expected a scalar, got a tensor of shape "
                             f"{tuple(value.shape)}")
        if value.device != device:
            raise ValueError(f"{name}: on {value.device}, u0 on {device}; expected one device")
        if value.is_floating_point() and value.dtype != dtype:
            raise TypeError(f"{name}: dtype {value.dtype}, u0 has {dtype}; expected one dtype")
        out = value.reshape(()).to(dtype)
    elif isinstance(value, numbers.Real):
        out = torch.tensor(float(value), dtype=dtype, device=device)
    else:
        raise TypeError(f"{name}: expected a number or a 0-d tensor, got {type(value).__name__}")
    if not math.isfinite(float(out.detach())):
        raise ValueError(f"{name}: expected a finite time, got {float(out)}")
    return out


def _check_tolerance(value: Any, name: str, prob: ODEProblem) -> torch.Tensor | float:
    if isinstance(value, torch.Tensor):
        if value.device != prob.u0.device:
            raise ValueError(f"{name}: on {value.device}, u0 on {prob.u0.device}")
        if value.numel() == 0 or not bool((value > 0).all()) or not bool(
                torch.isfinite(value).all()):
            raise ValueError(f"{name}: expected finite values > 0")
        state = prob.state_shape
        if value.ndim > 0:
            try:
                torch.broadcast_shapes(value.shape, state)
            except RuntimeError:
                raise ValueError(f"{name}: shape {tuple(value.shape)} does not broadcast to the "
                                 f"state shape {tuple(state)}") from None
            value = value.to(prob.u0.dtype).expand(state).reshape(-1)
        else:
            value = float(value)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number or tensor, got "
                        f"{type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value}")
    return float(value)


def _all_real(seq: Any) -> bool:
    try:
        return all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in seq)
    except TypeError:
        return False


def _save_times(saveat: Any, t0: torch.Tensor, t1: torch.Tensor, direction: float,
                dtype, device) -> torch.Tensor:
    if saveat is None:
        return torch.stack([t0, t1])
    if isinstance(saveat, numbers.Real) and not isinstance(saveat, bool):
        step = abs(float(saveat))
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"saveat: a spacing must be a finite number > 0, got {saveat}")
        n = int(math.floor(abs(float(t1) - float(t0)) / step * (1 + 1e-12)))
        grid = float(t0) + direction * step * torch.arange(n + 1, dtype=torch.float64)
        if abs(float(grid[-1]) - float(t1)) > 1e-12 * max(1.0, abs(float(t1))):
            grid = torch.cat([grid, torch.tensor([float(t1)], dtype=torch.float64)])
        return grid.to(dtype=dtype, device=device)
    try:
        # a Python sequence is read in u0's dtype (not torch's default float32)
        ts = saveat if isinstance(saveat, torch.Tensor) else torch.as_tensor(
            saveat, dtype=dtype if _all_real(saveat) else None)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"saveat: expected a 1-d sequence of times or a number, got "
                        f"{type(saveat).__name__}") from None
    if not (ts.is_floating_point() or ts.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"saveat: expected real times, got dtype {ts.dtype}")
    if ts.device != device and isinstance(saveat, torch.Tensor):
        raise ValueError(f"saveat: on {ts.device}, u0 on {device}; expected one device")
    if ts.is_floating_point() and isinstance(saveat, torch.Tensor) and ts.dtype != dtype:
        raise TypeError(f"saveat: dtype {ts.dtype}, u0 has {dtype}; expected one dtype")
    ts = ts.to(dtype=dtype, device=device)
    if ts.ndim != 1 or ts.numel() == 0:
        raise ValueError(f"saveat: expected a non-empty 1-d sequence of times, got shape "
                         f"{tuple(ts.shape)}")
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("saveat: expected finite times")
    directed = direction * ts.detach()
    if ts.numel() > 1 and not bool((directed[1:] > directed[:-1]).all()):
        order = "increasing" if direction > 0 else "decreasing"
        raise ValueError(f"saveat: expected strictly {order} times (the direction of tspan)")
    lo, hi = sorted((float(t0), float(t1)))
    tol = 64 * torch.finfo(dtype).eps * max(1.0, abs(lo), abs(hi))
    if float(ts.detach().min()) < lo - tol or float(ts.detach().max()) > hi + tol:
        raise ValueError(f"saveat: times must lie within tspan [{lo}, {hi}], got "
                         f"[{float(ts.min())}, {float(ts.max())}]")
    return ts


def validate(prob: ODEProblem, *, saveat, rtol, atol, max_steps, dt) -> ValidatedInputs:
    """Check a problem and the solve options; raise ``TypeError``/``ValueError`` naming the
    argument at fault."""
    _check_problem(prob)
    dtype, device = prob.u0.dtype, prob.u0.device
    if not isinstance(prob.tspan, (tuple, list)) or len(prob.tspan) != 2:
        raise ValueError(f"tspan: expected (t0, t1), got {prob.tspan!r}")
    t0 = _as_time(prob.tspan[0], "tspan[0]", dtype, device)
    t1 = _as_time(prob.tspan[1], "tspan[1]", dtype, device)
    if float(t0) == float(t1):
        raise ValueError(f"tspan: expected t0 != t1 (an empty span), got ({float(t0)}, "
                         f"{float(t1)})")
    direction = 1.0 if float(t1) > float(t0) else -1.0
    rtol_v = _check_tolerance(rtol, "rtol", prob)
    atol_v = _check_tolerance(atol, "atol", prob)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps: expected a positive int, got {max_steps!r}")
    if dt is not None:
        if isinstance(dt, torch.Tensor):
            if dt.numel() != 1:
                raise ValueError(f"dt: expected a scalar step, got a tensor of shape "
                                 f"{tuple(dt.shape)}")
            dt_v = float(dt.detach())
        elif isinstance(dt, numbers.Real) and not isinstance(dt, bool):
            dt_v = float(dt)
        else:
            raise TypeError(f"dt: expected a number, got {type(dt).__name__}")
        if not (math.isfinite(dt_v) and dt_v != 0):
            raise ValueError(f"dt: expected a finite non-zero step, got {dt_v}")
        if dt_v * direction < 0:
            raise ValueError(f"dt: its sign ({dt_v}) is against the direction of tspan")
    ts = _save_times(saveat, t0, t1, direction, dtype, device)
    return ValidatedInputs(t0=t0, t1=t1, ts=ts, direction=direction, rtol=rtol_v, atol=atol_v,
                           dtype=dtype, device=device)


def check_rhs_output(prob: ODEProblem, du: Any) -> None:
    """Check one evaluation ``f(t0, u0, p)``: a tensor of ``u0``'s shape, dtype and device."""
    if not isinstance(du, torch.Tensor):
        raise TypeError(f"f: expected f(t, u, p) to return a torch.Tensor, got "
                        f"{type(du).__name__}")
    if du.shape != prob.u0.shape:
        raise ValueError(f"f: returned shape {tuple(du.shape)}, expected the shape of u0 "
                         f"{tuple(prob.u0.shape)}")
    if du.dtype != prob.u0.dtype:
        raise TypeError(f"f: returned dtype {du.dtype}, expected u0's dtype {prob.u0.dtype}")
    if du.device != prob.u0.device:
        raise ValueError(f"f: returned a tensor on {du.device}, expected u0's device "
                         f"{prob.u0.device}")


def expect_instance(name: str, value: Any, cls: type | tuple[type, ...], expected: str,
                    allow_none: bool = False) -> None:
    """Raise ``TypeError("{name}: expected {expected}, got {type}")`` unless ``value`` is an
    instance of ``cls`` (or ``None`` when ``allow_none``)."""
    if (value is None and allow_none) or isinstance(value, cls):
        return
    raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
