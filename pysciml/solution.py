"""The result of a solve: saved values, per-member return codes, statistics, dense output."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["ReturnCode", "Stats", "ODESolution", "SolveFailedError"]


class ReturnCode(enum.IntEnum):
    """How an integration ended, member by member (SciMLBase's names).

    Each member carries a message (``code.message``) with the common reasons.
    """

    Default = 0
    """Still running (never seen on a returned solution)."""
    Success = 1
    """The integration reached the end of the time span."""
    MaxIters = 2
    """The step budget ``max_steps`` ran out before the end of the time span. The problem may be
    stiff (use an implicit method), or need a larger ``max_steps``."""
    DtLessThanMin = 3
    """The step size fell below its minimum: a singularity, a discontinuity that the solver cannot
    step over, or tolerances too tight for the floating-point type."""
    Unstable = 4
    """The state became non-finite (NaN or inf): the solution blows up, or the method is past its
    stability limit (an explicit method on a stiff problem)."""
    ConvergenceFailure = 5
    """The nonlinear solver of an implicit method failed to converge, repeatedly."""
    InitialFailure = 6
    """The initial state or its derivative was not finite."""

    @property
    def message(self) -> str:
        """What this code means and its common reasons."""
        return _MESSAGES[self]

    @property
    def successful(self) -> bool:
        return self is ReturnCode.Success


_MESSAGES = {
    ReturnCode.Default: "still running",
    ReturnCode.Success: "the integration reached the end of the time span",
    ReturnCode.MaxIters: (
        "the step budget max_steps ran out before the end of the time span; the problem may be "
        "stiff (use an implicit method) or need a larger max_steps"
    ),
    ReturnCode.DtLessThanMin: (
        "the step size fell below its minimum: a singularity, a discontinuity the solver cannot "
        "step over, or tolerances too tight for the floating-point type"
    ),
    ReturnCode.Unstable: (
        "the state became non-finite (NaN or inf): the solution blows up, or the method is past "
        "its stability limit (an explicit method on a stiff problem?)"
    ),
    ReturnCode.ConvergenceFailure: "the nonlinear solver of an implicit method did not converge",
    ReturnCode.InitialFailure: "the initial state or its derivative is not finite",
}


class SolveFailedError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when a member did not succeed; holds the solution."""

    def __init__(self, message: str, solution: ODESolution):
        super().__init__(message)
        self.solution = solution


@dataclass(frozen=True)
class Stats:
    """Work counters of a solve.

    ``nf``: calls of the right-hand side (each call evaluates the whole batch);
    ``naccept`` / ``nreject``: accepted / rejected steps, summed over batch members;
    ``nsteps``: iterations of the time loop; ``njac``, ``nfactor``, ``nlinsolve``,
    ``nnonlinfail``: Jacobians, matrix factorisations, linear solves and nonlinear-solver failures
    (implicit methods).
    """

    nf: int = 0
    naccept: int = 0
    nreject: int = 0
    nsteps: int = 0
    njac: int = 0
    nfactor: int = 0
    nlinsolve: int = 0
    nnonlinfail: int = 0

    def __add__(self, other: Stats) -> Stats:
        return Stats(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})


class DenseOutput(Protocol):
    def __call__(self, t: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True, eq=False)
class ODESolution:
    """The solution of an :class:`~pysciml.ODEProblem`.

    Attributes:
        t: the save times, shape ``(S,)``.
        u: the saved states, shape ``(S, *batch, *state)``, in torch autograd. Rows after a
            member's failure hold NaN (the partial solution ends at its last accepted step).
        status: the integer return code of each member, shape ``batch_shape``.
        stats: work counters (:class:`Stats`).
        alg: the algorithm that produced it; ``backend``: the runtime that ran it.
    """

    t: torch.Tensor
    u: torch.Tensor
    status: torch.Tensor
    stats: Stats
    alg: Any = None
    backend: str = "native"
    dense: DenseOutput | None = None
    t_end: torch.Tensor | None = None

    @property
    def retcode(self) -> ReturnCode | np.ndarray:
        """A :class:`ReturnCode` when unbatched; an array of them of shape ``batch_shape``."""
        codes = self.status.detach().cpu().numpy()
        if codes.ndim == 0:
            return ReturnCode(int(codes))
        out = np.empty(codes.shape, dtype=object)
        for index, code in np.ndenumerate(codes):
            out[index] = ReturnCode(int(code))
        return out

    @property
    def successful(self) -> bool:
        """Whether every member reached the end of the time span."""
        return bool((self.status == ReturnCode.Success).all())

    def __call__(self, t: Any) -> torch.Tensor:
        """Dense output: the solution at time(s) ``t`` (a scalar or a 1-d tensor of times).

        Returns shape ``(*batch, *state)`` for a scalar, ``(len(t), *batch, *state)`` otherwise.
        Needs ``dense=True`` in ``solve`` (the default when ``saveat`` is not given).
        """
        if self.dense is None:
            raise ValueError(
                "this solution has no dense output: pass dense=True to solve() "
                "(the default when saveat is None)"
            )
        tq = torch.as_tensor(t, dtype=self.t.dtype, device=self.t.device)
        if tq.ndim > 1:
            raise ValueError(f"t: expected a scalar or a 1-d tensor of times, got shape "
                             f"{tuple(tq.shape)}")
        out = self.dense(tq.reshape(-1))
        return out[0] if tq.ndim == 0 else out

    def __repr__(self) -> str:
        rc = self.retcode
        rc_text = rc.name if isinstance(rc, ReturnCode) else (
            "all Success" if self.successful else
            f"{int((self.status != ReturnCode.Success).sum())} of {rc.size} failed")
        return (f"ODESolution(retcode={rc_text}, t: {tuple(self.t.shape)}, "
                f"u: {tuple(self.u.shape)}, {self.stats})")
