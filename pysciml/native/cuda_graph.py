r"""The time loop captured in a CUDA graph: one iteration recorded once, replayed until done.

A batched solve of a small system on a GPU is bound by kernel launches, not arithmetic: a
Rodas5P iteration on a batch of ROBER instances issues about 400 small kernels (Jacobian, LU,
eight stages, error norm, controller, saves), each costing a few microseconds of launch overhead
on the host. Recorded in a CUDA graph (``torch.cuda.CUDAGraph``), the same kernels are
submitted by one call per iteration.

The captured iteration is the eager loop's own :func:`~pysciml.native.integrate.trial` and
:func:`~pysciml.native.integrate.commit`, which never synchronise with the host. What the eager
loop decides on the host is done on the device instead:

* **saves**: every iteration interpolates at the next ``S`` save times of each member (``S``
  the number of save times) and scatters the crossed ones into a preallocated ``(S + 1, B, N)``
  buffer (row ``S`` takes the rest), instead of asking the host how many were crossed;
* **termination**: after each replay the flag "any member still running" is copied to pinned
  host memory behind an event; the host reads the flag of the replay ``lookahead`` iterations
  back, so the queue never drains. Members that have finished take steps of size 0 (the
  steppers return them unchanged), so the few replays past the end change nothing.

Counters (``nf``, ``njac``, ...) are the per-iteration increments seen during capture times the
number of replays. A right-hand side that synchronises with the host (``.item()``, Python
branches on tensor values) cannot be captured: the capture fails, a warning says so, and the
loop goes on eagerly from where it was. Before capture, ``warmup`` iterations run eagerly on a
side stream (library handles and workspaces are created there, and the solve's one-time
decisions, such as whether ``f`` is autonomous, are made).
"""

from __future__ import annotations

import warnings
from collections import deque

import torch
from torch.utils import _pytree as pytree

from .integrate import LoopContext, LoopState, commit, crossed_saves, trial

__all__ = ["available", "run_captured", "unsupported_reason", "MAX_SAVE_ELEMENTS"]

MAX_SAVE_ELEMENTS = 1 << 25
"""The largest ``S * B * N`` a captured iteration interpolates at every step."""

_COUNTERS = ("calls", "njac", "nfactor", "nlinsolve", "nnonlinfail")


def available(device: torch.device) -> bool:
    """Whether the loop on ``device`` can be captured (CUDA devices)."""
    return device.type == "cuda"


def unsupported_reason(ctx: LoopContext, u0: torch.Tensor, f0: torch.Tensor, t0: torch.Tensor,
                       t1: torch.Tensor, dense: bool, on_tstop) -> str | None:
    """Why this integration cannot be captured (``None`` if it can)."""
    if not getattr(ctx.stepper, "capturable", False):
        return (f"{type(ctx.stepper).__name__} steps synchronise with the host (Newton and "
                "Krylov iterations decide on the host when to stop)")
    if any(x.requires_grad for x in (u0, f0, t0, t1)):
        return ("the solve is differentiated through its steps (DirectBackprop); capture "
                "applies to solves without autograd history (under torch.no_grad)")
    if dense:
        return "dense output keeps every step (pass saveat, or dense=False)"
    if ctx.n_stops and on_tstop is not None:
        return "tstops with state jumps restart the step on the host"
    B, N = u0.shape
    if ctx.S * B * N > MAX_SAVE_ELEMENTS:
        return (f"{ctx.S} save times × {B} members × {N} unknowns exceed the per-step "
                f"interpolation buffer ({MAX_SAVE_ELEMENTS} elements)")
    return None


def _iteration(ctx: LoopContext, st: LoopState, us: torch.Tensor) -> LoopState:
    """One iteration whose saves go straight into ``us`` ``(S + 1, B, N)``."""
    tr = trial(ctx, st)
    stages = ctx.stepper.dense_stages(ctx.fc, st.t, st.u, tr.h_step, tr.result)
    rows, values = crossed_saves(ctx, st, tr, stages, ctx.S)
    B, N = st.u.shape
    columns = torch.arange(B, device=us.device).repeat(ctx.S)
    us.index_put_((rows.reshape(-1), columns), values.reshape(-1, N))
    new = commit(ctx, st, tr)
    if tr.at_stop is not None:  # tstops without jumps: the stop pointer moves on
        new = new._replace(stop_ptr=new.stop_ptr + tr.at_stop)
    return new


def _counters(fc) -> tuple:
    return tuple(getattr(fc, name) for name in _COUNTERS)


def run_captured(ctx: LoopContext, st: LoopState, us: torch.Tensor, *, warmup: int = 2,
                 lookahead: int = 4, capture: bool = True) -> LoopState:
    """Advance ``st`` until no member runs, with saves written into ``us`` ``(S + 1, B, N)``;
    returns early (eagerly resumable) if the iteration cannot be captured. ``capture=False``
    runs the same device-side iterations without a graph, one host check each (on any device;
    used to test the iteration itself)."""
    if not capture:
        while bool((st.status == 0).any()):
            st = _iteration(ctx, st, us)
        return st
    device = st.u.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            st = _iteration(ctx, st, us)
    torch.cuda.current_stream(device).wait_stream(side)
    if not bool((st.status == 0).any()):
        return st

    fc = ctx.fc
    static = pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, st)
    before = _counters(fc)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            new = _iteration(ctx, static, us)
            for dst, src in zip(pytree.tree_leaves(static), pytree.tree_leaves(new)):
                if isinstance(dst, torch.Tensor):  # (None is a leaf in some torch versions)
                    dst.copy_(src)
            running_any = (static.status == 0).any()
    except RuntimeError as error:  # e.g. a right-hand side that synchronises with the host
        for name, value in zip(_COUNTERS, before):
            setattr(fc, name, value)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        warnings.warn(f"cuda_graph: the loop could not be captured ({first_line}); it runs "
                      "eagerly", RuntimeWarning, stacklevel=3)
        return st
    per_replay = [b - a for a, b in zip(before, _counters(fc))]
    for name, value in zip(_COUNTERS, before):
        setattr(fc, name, value)

    flags = torch.ones(lookahead, dtype=torch.bool, pin_memory=True)
    events = [torch.cuda.Event() for _ in range(lookahead)]
    pending: deque[int] = deque()
    replays = 0
    while True:
        graph.replay()
        slot = replays % lookahead
        flags[slot].copy_(running_any, non_blocking=True)
        events[slot].record()
        pending.append(slot)
        replays += 1
        if len(pending) == lookahead:
            oldest = pending.popleft()
            events[oldest].synchronize()
            if not bool(flags[oldest]):
                break
    torch.cuda.current_stream(device).synchronize()
    for name, value, step in zip(_COUNTERS, before, per_replay):
        setattr(fc, name, value + step * replays)
    return static
