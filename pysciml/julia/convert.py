r"""Every conversion between torch and Julia: array layout, devices, return codes, counters.

**The layout rule.** A row-major (C-contiguous) tensor of shape :math:`(d_1, \dots, d_k)` has
exactly the memory of a column-major Julia array of shape :math:`(d_k, \dots, d_1)`: element
:math:`x[i_1, \dots, i_k]` of one is element :math:`A[i_k, \dots, i_1]` of the other. So the
states cross the boundary without copies, with their dimensions reversed:

==========================  ==============================  =========================
torch (pysciml)             Julia (PySciMLBridge)           what
==========================  ==============================  =========================
``(B, N)``                  ``N × B``                       a batch of states
``(S, B, N)``               ``N × B × S``                   saved values
``(B, N, N)``, ``[b,i,j]``  ``N × N × B``, ``[j,i,b]``      Jacobian blocks
``(P,)``                    ``P``                           flat parameters
==========================  ==============================  =========================

On the CPU a tensor goes to Julia as a NumPy view (``numpy.ndarray.T`` of the contiguous
tensor: Fortran order, which PythonCall wraps as a ``PyArray`` without copying), and a Julia
array comes back through NumPy's array interface (``numpy.asarray`` of a juliacall
``ArrayValue`` is a view) and ``torch.from_numpy``. On CUDA both directions go through DLPack,
which reverses the dimensions of a row-major tensor the same way (the bridge's
``wrap_cuda``/``share_cuda``). Nothing else in pysciml converts arrays for Julia.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..solution import ReturnCode, Stats

__all__ = ["to_julia", "from_julia", "callback_result", "state_to_julia", "saved_from_julia",
           "RETCODES", "retcodes_from_julia", "stats_from_julia", "jacobian_blocks_to_julia"]

RETCODES: dict[str, ReturnCode] = {
    "Default": ReturnCode.Default,
    "Success": ReturnCode.Success,
    "Terminated": ReturnCode.Success,
    "MaxIters": ReturnCode.MaxIters,
    "DtLessThanMin": ReturnCode.DtLessThanMin,
    "Unstable": ReturnCode.Unstable,
    "DtNaN": ReturnCode.Unstable,
    "ConvergenceFailure": ReturnCode.ConvergenceFailure,
    "InitialFailure": ReturnCode.InitialFailure,
    "Failure": ReturnCode.ConvergenceFailure,
}
"""SciMLBase's ``ReturnCode`` names and pysciml's members. ``Terminated`` (a callback ended the
solve; the bridge sets none) counts as success; ``DtNaN`` (the step size became NaN) is an
instability; ``Failure`` (an unspecified solver failure) is reported as a convergence failure."""


def to_julia(x: torch.Tensor, *, wrap_cuda: Callable[[Any], Any] | None = None) -> Any:
    """``x`` for Julia, dimensions reversed, without a copy where the memory allows.

    CPU: a Fortran-ordered NumPy view of the contiguous tensor (a copy only when ``x`` is not
    contiguous or needs a gradient detached). CUDA: the bridge's ``wrap_cuda`` (DLPack).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if x.device.type == "cuda":
        if wrap_cuda is None:
            raise ValueError("wrap_cuda: a CUDA tensor needs the bridge's DLPack wrapper")
        return wrap_cuda(x.contiguous())
    if x.device.type != "cpu":
        raise ValueError(f"x: the Julia runtime exchanges CPU and CUDA tensors, got {x.device}")
    return x.contiguous().numpy().T


def callback_result(x: torch.Tensor) -> Any:
    """What a torch callback returns to Julia: on the CPU a Fortran-ordered NumPy view (Julia
    copies it into the solver's array through ``PyArray``); on CUDA the contiguous tensor
    itself (the bridge reads it through DLPack)."""
    x = x.detach()
    if x.device.type == "cuda":
        return x.contiguous()
    return to_julia(x)


def from_julia(a: Any, *, device: torch.device | str = "cpu",
               share_cuda: Callable[[Any], Any] | None = None) -> torch.Tensor:
    """A Julia array (or NumPy array in Julia layout) as a torch tensor, dimensions reversed.

    CPU: a view of the Julia memory through NumPy's array interface (kept alive by the
    tensor). A torch tensor (what DLPack sharing of a ``CuArray`` yields) is returned as it is:
    DLPack already reversed its dimensions. ``device``: where the tensor must end up (a
    CPU result bound for CUDA is copied there once).
    """
    device = torch.device(device)
    if isinstance(a, torch.Tensor):
        return a.to(device)
    if share_cuda is not None and device.type == "cuda" and not _is_host_array(a):
        return share_cuda(a)
    host = np.asarray(a)
    if host.dtype == object:
        raise TypeError(f"a: expected a numeric array, got elements of {type(host.flat[0])}")
    return torch.from_numpy(host.T).to(device)


def _is_host_array(a: Any) -> bool:
    if isinstance(a, np.ndarray):
        return True
    try:
        memoryview(a)
    except TypeError:
        return False
    return True


def state_to_julia(u: torch.Tensor, batch_ndim: int, **kwargs: Any) -> Any:
    """A state of shape ``(*batch, *state)`` as the ``N × B`` Julia matrix (``B = 1`` when
    unbatched)."""
    batch = u.shape[:batch_ndim]
    B = int(torch.Size(batch).numel())
    return to_julia(u.reshape(B, -1), **kwargs)


def saved_from_julia(a: Any, batch_shape: torch.Size, state_shape: torch.Size, *,
                     device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                     share_cuda: Callable[[Any], Any] | None = None) -> torch.Tensor:
    """Julia's ``N × B × S`` saved values as pysciml's ``(S, *batch, *state)``."""
    flat = from_julia(a, device=device, share_cuda=share_cuda)
    if flat.ndim != 3:
        raise ValueError(f"a: expected N × B × S saved values, got {flat.ndim} dimensions")
    out = flat.reshape(flat.shape[0], *batch_shape, *state_shape)
    return out if dtype is None else out.to(dtype)


def jacobian_blocks_to_julia(J: torch.Tensor) -> Any:
    """Jacobian blocks ``(B, N, N)`` with ``J[b, i, j] = ∂f_i/∂u_j``; Julia reads them as
    ``N × N × B`` with ``[j, i, b]`` and transposes each block while assembling."""
    if J.ndim != 3 or J.shape[1] != J.shape[2]:
        raise ValueError(f"J: expected Jacobian blocks of shape (B, N, N), got {tuple(J.shape)}")
    return to_julia(J)


def retcodes_from_julia(names: Any, batch_shape: torch.Size,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-member SciMLBase return-code names as pysciml's status tensor of ``batch_shape``."""
    codes = []
    for name in list(names):
        key = str(name)
        if key not in RETCODES:
            raise RuntimeError(f"the Julia solver returned the unknown return code {key!r}; "
                               "pysciml.julia.convert.RETCODES needs an entry for it")
        codes.append(int(RETCODES[key]))
    status = torch.tensor(codes, dtype=torch.int64, device=device)
    return status.reshape(batch_shape)


def stats_from_julia(stats: Any) -> Stats:
    """The bridge's summed work counters (a named tuple with pysciml's names) as ``Stats``."""
    return Stats(**{name: int(getattr(stats, name)) for name in Stats.__dataclass_fields__})
