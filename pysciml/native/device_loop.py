r"""The time loop's iteration as one unit: replayed from a CUDA graph, or compiled.

A solve of a small system (or a batch of them) is bound by per-operation overhead, not
arithmetic: a Rodas5P iteration issues about 400 small tensor operations (Jacobian, LU, eight
stages, error norm, controller, saves), each costing a few microseconds of dispatch on the host
and, on a GPU, a kernel launch. Two ways to pay that once per iteration instead of once per
operation (``solve(..., loop=...)``):

* ``"cuda_graph"``: the iteration is recorded once in a CUDA graph
  (``torch.cuda.CUDAGraph``) and replayed, one call per iteration;
* ``"compile"``: the iteration is compiled by ``torch.compile`` (TorchInductor fuses its
  pointwise work into generated C++/Triton kernels), on any device. The first solve pays the
  compilation (tens of seconds); later solves with the same settings reuse it.

The iteration is the eager loop's own :func:`~pysciml.native.integrate.trial` and
:func:`~pysciml.native.integrate.commit`, which never synchronise with the host. What the eager
loop decides on the host is done on the device instead:

* **saves**: every iteration interpolates at the next ``S`` save times of each member (``S``
  the number of save times) and scatters the crossed ones into a preallocated ``(S + 1, B, N)``
  buffer (row ``S`` takes the rest), instead of asking the host how many were crossed;
* **termination**: the host reads "any member still running" only every few iterations (a CUDA
  graph: through pinned memory behind an event, ``lookahead`` replays back, so the queue never
  drains). Members that have finished take steps of size 0 (the steppers return them
  unchanged), so the few iterations past the end change nothing.

Counters (``nf``, ``njac``, ...) are the increments of one eager iteration times the number of
iterations (``CountedRHS.counting`` is off meanwhile). A right-hand side that synchronises with
the host (``.item()``, Python branches on tensor values) cannot be captured: capture fails, a
warning says so, and the loop goes on eagerly from where it was (``torch.compile`` instead
splits the iteration around such code, which stays correct but gains less).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import deque

import torch
from torch.utils import _pytree as pytree

from .integrate import LoopContext, LoopState, commit, crossed_saves, trial

__all__ = ["LOOPS", "available", "run_captured", "run_compiled", "unsupported_reason",
           "MAX_SAVE_ELEMENTS"]

LOOPS = ("eager", "cuda_graph", "compile")
"""The values of ``solve(..., loop=...)``."""

MAX_SAVE_ELEMENTS = 1 << 25
"""The largest ``S * B * N`` a device-side iteration interpolates at every step."""

_COUNTERS = ("calls", "njac", "nfactor", "nlinsolve", "nnonlinfail")


def available(loop: str, device: torch.device) -> bool:
    """Whether ``loop`` applies on ``device`` (CUDA graphs need a CUDA device)."""
    return loop == "compile" or (loop == "cuda_graph" and device.type == "cuda")


def unsupported_reason(ctx: LoopContext, u0: torch.Tensor, f0: torch.Tensor, t0: torch.Tensor,
                       t1: torch.Tensor, dense: bool, on_tstop) -> str | None:
    """Why this integration's iteration cannot run as one unit (``None`` if it can)."""
    if not getattr(ctx.stepper, "capturable", False):
        return (f"{type(ctx.stepper).__name__} steps synchronise with the host (Newton and "
                "Krylov iterations decide on the host when to stop)")
    if any(x.requires_grad for x in (u0, f0, t0, t1)):
        return ("the solve is differentiated through its steps (DirectBackprop); it applies "
                "to solves without autograd history (under torch.no_grad)")
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


def _describe(error: BaseException) -> str:
    """An exception's type and the first line of its message, for a one-line warning."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _running(st: LoopState) -> bool:
    return bool((st.status == 0).any())


class _Uncounted:
    """Counters off while an iteration runs as one unit; ``per_iteration`` increments are
    added back for every iteration run."""

    def __init__(self, fc, per_iteration: list):
        self.fc, self.per_iteration, self.iterations = fc, per_iteration, 0

    def __enter__(self):
        self.fc.counting = False
        return self

    def __exit__(self, *exc):
        self.fc.counting = True
        for name, step in zip(_COUNTERS, self.per_iteration):
            setattr(self.fc, name, getattr(self.fc, name) + step * self.iterations)


def _eager_counted(ctx: LoopContext, st: LoopState, us: torch.Tensor) -> tuple[LoopState, list]:
    """One eager iteration and its counter increments."""
    before = [getattr(ctx.fc, name) for name in _COUNTERS]
    st = _iteration(ctx, st, us)
    return st, [getattr(ctx.fc, name) - b for name, b in zip(_COUNTERS, before)]


def run_captured(ctx: LoopContext, st: LoopState, us: torch.Tensor, *, warmup: int = 2,
                 lookahead: int = 4, capture: bool = True) -> LoopState:
    """Advance ``st`` by replaying a CUDA graph of one iteration until no member runs, with
    saves written into ``us`` ``(S + 1, B, N)``; returns early (eagerly resumable) if the
    iteration cannot be captured. ``capture=False`` runs the same device-side iterations
    without a graph, one host check each (on any device; used to test the iteration itself)."""
    if not capture:
        while _running(st):
            st = _iteration(ctx, st, us)
        return st
    device = st.u.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # library handles, workspaces and one-time decisions
        for _ in range(warmup - 1):
            st = _iteration(ctx, st, us)
        st, per_iteration = _eager_counted(ctx, st, us)
    torch.cuda.current_stream(device).wait_stream(side)
    if not _running(st):
        return st

    static = pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, st)
    graph = torch.cuda.CUDAGraph()
    try:
        with _Uncounted(ctx.fc, per_iteration), torch.cuda.graph(graph):
            new = _iteration(ctx, static, us)
            for dst, src in zip(pytree.tree_leaves(static), pytree.tree_leaves(new)):
                if isinstance(dst, torch.Tensor):  # (None is a leaf in some torch versions)
                    dst.copy_(src)
            running_any = (static.status == 0).any()
    except RuntimeError as error:  # e.g. a right-hand side that synchronises with the host
        warnings.warn(f"loop='cuda_graph': the iteration could not be captured "
                      f"({_describe(error)}); "
                      "the loop runs eagerly", RuntimeWarning, stacklevel=3)
        return st

    before = static.n_steps.max()
    flags = torch.ones(lookahead, dtype=torch.bool, pin_memory=True)
    events = [torch.cuda.Event() for _ in range(lookahead)]
    pending: deque[int] = deque()
    with _Uncounted(ctx.fc, per_iteration) as uncounted:
        while True:
            graph.replay()
            slot = uncounted.iterations % lookahead
            flags[slot].copy_(running_any, non_blocking=True)
            events[slot].record()
            pending.append(slot)
            uncounted.iterations += 1
            if len(pending) == lookahead:
                oldest = pending.popleft()
                events[oldest].synchronize()
                if not bool(flags[oldest]):
                    break
        torch.cuda.current_stream(device).synchronize()
        _count_iterations(uncounted, before, static)
    return static


_compiled_iterations: dict = {}


def _as_tensor(x, like: torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype,
                                                                device=like.device)


def _iterations(ctx: LoopContext, st: LoopState, us: torch.Tensor, count: int) -> LoopState:
    """``count`` iterations in a row (members that have finished take steps of size 0)."""
    for _ in range(count):
        st = _iteration(ctx, st, us)
    return st


def _compiler(device_type: str, cpp_wrapper: bool):
    """The compiled iterations for a device type (one per process, reused by every solve;
    ``torch.compile`` keeps one compilation per distinct ``count``)."""
    key = (device_type, cpp_wrapper)
    if key not in _compiled_iterations:
        # memory_planning: the generated C++ takes its intermediate buffers from one pool
        # instead of ~60 allocations per call (ROBER, Rodas5P: 69 -> 64 µs per step)
        options = {"cpp_wrapper": True, "memory_planning": True} if cpp_wrapper else None
        _compiled_iterations[key] = torch.compile(_iterations, dynamic=False, options=options)
    return _compiled_iterations[key]


def _count_iterations(uncounted: _Uncounted, before: torch.Tensor, st: LoopState) -> None:
    """The iterations in which some member ran: the longest-running member's steps (every
    member runs from the start until it finishes), not the calls, which may overshoot."""
    uncounted.iterations = int(st.n_steps.max() - before)


def run_compiled(ctx: LoopContext, st: LoopState, us: torch.Tensor, *,
                 per_call: int | None = None) -> LoopState:
    """Advance ``st`` with iterations compiled by ``torch.compile`` until no member runs, with
    saves written into ``us``; returns early (eagerly resumable) if compilation fails.

    One compiled call runs ``per_call`` iterations in a row (default: 4 on the CPU, 1 on a
    GPU): the call's fixed cost (entering the generated code and its buffers, about 45 µs on
    the CPU) is shared by them, for a compilation that takes about ``per_call`` times longer
    (Rodas5P on ROBER, one thread: 106 µs per step with 1 iteration per call, 83 with 2, 72
    with 4; compilation 28 s, 46 s, 100 s without the on-disk cache). On the CPU the
    generated code that calls the kernels is C++ too (``cpp_wrapper``): the Python one costs
    more than the arithmetic of a small system's step (on ROBER, 15 ms per solve against
    21–28 ms); where that build fails, the Python wrapper is used."""
    # numbers would be compiled in as constants (a recompilation for every new tolerance)
    like = st.u
    ctx = dataclasses.replace(ctx, rtol=_as_tensor(ctx.rtol, like), atol=_as_tensor(ctx.atol, like))
    for _ in range(2):  # one-time decisions (autonomous f, Jacobian layout) are made eagerly
        st, per_iteration = _eager_counted(ctx, st, us)
        if not _running(st):
            return st
    device_type = like.device.type
    if per_call is None:
        per_call = 4 if device_type == "cpu" else 1
    before = st.n_steps.max()
    with _Uncounted(ctx.fc, per_iteration) as uncounted:
        for cpp_wrapper in ([True, False] if device_type == "cpu" else [False]):
            compiled = _compiler(device_type, cpp_wrapper)
            try:
                with warnings.catch_warnings():  # the compiler's remarks on the code it traces
                    warnings.simplefilter("ignore", UserWarning)
                    st = compiled(ctx, st, us, per_call)
                break
            except Exception as error:  # no C++ compiler, an unsupported operation, ...
                failure = _describe(error)
        else:
            warnings.warn(f"loop='compile': the iteration could not be compiled ({failure}); "
                          "the loop runs eagerly", RuntimeWarning, stacklevel=3)
            return st
        # the first call checked every guard; the same context and shapes follow, so only the
        # guards that tell cached compilations apart are evaluated (~100 µs less per call)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            while _running(st):
                st = compiled(ctx, st, us, per_call)
        _count_iterations(uncounted, before, st)
    return st
