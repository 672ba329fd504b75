r"""Trajectories of a physical model in memory: :func:`simulate` and the :class:`Trajectories`
container.

A data set holds ``n`` members. Member :math:`i` solves

.. math::
    \frac{du_i}{dt} = f(t, u_i; \theta_i), \qquad u_i(t_0) = u_{0,i},

with :math:`u_{0,i}` from ``model.initial_state`` and :math:`\theta_i` the model's physical
parameters, some optionally sampled with the model's law (draws seeded per member, see
:mod:`pysciml.data.members`), saved at the times ``t`` (``t[0]`` is :math:`t_0`, so
``u[:, 0]`` is the initial state). Members are solved in batches (one ``solve`` per batch,
each member with its own adaptive steps).
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .members import (
    ModelSpec,
    check_seed,
    draw_members,
    json_dumps,
    resolve_model,
    sampled_names,
)

__all__ = ["Trajectories", "simulate", "GenerationPlan", "make_plan", "GenerationError"]


class GenerationError(RuntimeError):
    """Some members' solves failed (their return codes say why)."""


@dataclass(eq=False)
class Trajectories:
    """Solved trajectories of one model.

    Attributes:
        t: save times, shape ``(S,)`` (``t[0]`` is the initial time).
        u: states, shape ``(n, S, *state_shape)``.
        parameters: per-member values of the scalar physical parameters, ``{name: (n,)}``.
        model: the model's registry name.
        meta: everything else: solver, tolerances, seed, model constructor keywords,
            ``status`` (the :class:`~pysciml.ReturnCode` of each member, ``(n,)``),
            ``constants`` (non-scalar parameters shared by all members) ...
    """

    t: torch.Tensor
    u: torch.Tensor
    parameters: dict[str, torch.Tensor]
    model: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.u.shape[0])

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.u.shape[2:])

    def __repr__(self) -> str:
        return (f"Trajectories(model={self.model!r}, n={len(self)}, steps={self.t.numel()}, "
                f"state_shape={self.state_shape}, dtype={self.u.dtype}, "
                f"parameters={sorted(self.parameters)})")


def check_times(t: Any) -> torch.Tensor:
    """``t`` as a strictly increasing float64 tensor of at least two finite times."""
    try:
        times = torch.as_tensor(t, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"t: expected a 1-d sequence of save times, got {type(t).__name__}"
                        ) from None
    if times.ndim != 1 or times.numel() < 2:
        raise ValueError(f"t: expected a 1-d sequence of at least 2 times, got shape "
                         f"{tuple(times.shape)}")
    if not bool(torch.isfinite(times).all()):
        raise ValueError("t: expected finite times")
    if not bool((times[1:] > times[:-1]).all()):
        raise ValueError("t: expected strictly increasing times")
    return times


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def _check_tolerance(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def _resolve_dtype(model: torch.nn.Module, dtype: Any) -> torch.dtype:
    if dtype is None:
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating-point torch dtype, got {dtype!r}")
    return dtype


@dataclass
class GenerationPlan:
    """Everything that determines a data set, resolved and validated; ``solve(members)`` solves
    a range of members. Shared by :func:`simulate` and :func:`~pysciml.data.generate`."""

    spec: ModelSpec
    n: int
    t: torch.Tensor                      # float64, CPU
    seed: int
    sampled: list[str]                   # names of the sampled parameters
    alg: Any
    rtol: float
    atol: float
    dtype: torch.dtype
    device: torch.device
    solve_kwargs: dict[str, Any]
    on_failure: str
    fixed: dict[str, float]              # scalar parameters not sampled
    constants: dict[str, torch.Tensor]   # non-scalar parameters
    solver_model: torch.nn.Module        # the model on `device` in `dtype`
    sampler: torch.nn.Module             # a private copy that draws initial states

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.spec.model.state_shape)

    @property
    def parameter_names(self) -> list[str]:
        return sorted(set(self.fixed) | set(self.sampled))

    def config(self) -> dict[str, Any]:
        """The JSON-able settings that determine the data bit for bit (compared on resume)."""
        return {
            "model": self.spec.name,
            "model_class": self.spec.class_path,
            "model_kwargs": self.spec.kwargs,
            "n": self.n,
            "t_sha256": hashlib.sha256(self.t.numpy().astype("<f8").tobytes()).hexdigest(),
            "nt": int(self.t.numel()),
            "seed": self.seed,
            "sample_parameters": {k: [float(x) for x in self.spec.model.parameter_ranges[k]]
                                  for k in self.sampled},
            "fixed_parameters": self.fixed,
            "solver": repr(self.alg),
            "rtol": self.rtol,
            "atol": self.atol,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            "solve_kwargs": json_dumps(self.solve_kwargs),
        }

    def solve(self, members: range) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Solve ``members``: states ``(b, S, *state)`` and return codes ``(b,)`` on the CPU,
        and the per-member scalar parameters ``{name: (b,) float64}``."""
        u0, sampled = draw_members(self.sampler, members, self.seed, self.sampled)
        u0 = u0.to(device=self.device, dtype=self.dtype)
        # per-member values override the stored parameters through forward's p (a dict)
        p = {k: v.to(device=self.device, dtype=self.dtype) for k, v in sampled.items()} or None

        from pysciml import ODEProblem
        from pysciml import solve as ps_solve

        t = self.t.tolist()
        prob = ODEProblem(self.solver_model, u0, (t[0], t[-1]), p=p, batch_ndim=1)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # failures are reported below
            sol = ps_solve(prob, self.alg, saveat=self.t.to(self.device, self.dtype),
                           rtol=self.rtol, atol=self.atol, **self.solve_kwargs)
        status = sol.status.reshape(-1).to("cpu", torch.int8)
        if self.on_failure == "raise" and bool((status != 1).any()):
            from pysciml import ReturnCode

            bad = (status != 1).nonzero().reshape(-1).tolist()
            code = ReturnCode(int(status[bad[0]]))
            who = ", ".join(str(members[i]) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise GenerationError(
                f"{len(bad)} member(s) failed (members {who}; first: {code.name}: "
                f"{code.message}); use a stiff solver, other tolerances or solve_kwargs, or "
                f"on_failure='keep' to store them as NaN with their status")
        u = sol.u.detach().movedim(0, 1).to("cpu")
        params = {name: torch.full((len(members),), value, dtype=torch.float64)
                  for name, value in self.fixed.items()}
        params.update(sampled)
        return u, status, {k: params[k] for k in sorted(params)}


def make_plan(model: Any, n: Any, *, t: Any, seed: Any = 0, sample_parameters: Any = False,
              alg: Any = None, rtol: Any = 1e-6, atol: Any = 1e-8, device: Any = None,
              dtype: Any = None, model_kwargs: Mapping[str, Any] | None = None,
              solve_kwargs: Mapping[str, Any] | None = None, on_failure: str = "raise"
              ) -> GenerationPlan:
    """Validate the arguments of :func:`simulate` / :func:`~pysciml.data.generate`."""
    from pysciml import AbstractAlgorithm

    spec = resolve_model(model, model_kwargs)
    n = _check_positive_int(n, "n")
    times = check_times(t)
    seed = check_seed(seed)
    rtol = _check_tolerance(rtol, "rtol")
    atol = _check_tolerance(atol, "atol")
    if on_failure not in ("raise", "keep"):
        raise ValueError(f"on_failure: expected 'raise' or 'keep', got {on_failure!r}")
    if solve_kwargs is not None and not isinstance(solve_kwargs, Mapping):
        raise TypeError(f"solve_kwargs: expected a dict, got {type(solve_kwargs).__name__}")
    solve_kwargs = dict(solve_kwargs or {})
    reserved = {"saveat", "rtol", "atol", "sensealg"} & set(solve_kwargs)
    if reserved:
        raise ValueError(f"solve_kwargs: {sorted(reserved)[0]!r} is set by the data set itself")
    if alg is None:
        alg = spec.model.default_algorithm()
    if not isinstance(alg, AbstractAlgorithm):
        raise TypeError(f"alg: expected an algorithm such as pysciml.Tsit5(), got "
                        f"{type(alg).__name__}")
    dtype = _resolve_dtype(spec.model, dtype)
    try:
        device = torch.device("cpu" if device is None else device)
    except (TypeError, RuntimeError):
        raise ValueError(f"device: expected a torch device, got {device!r}") from None
    sampled = sampled_names(spec.model, sample_parameters)
    fixed, constants = {}, {}
    for name, value in spec.model.physical_parameters().items():
        value = value.detach()
        if value.numel() == 1:
            if name not in sampled:
                fixed[name] = float(value.reshape(()))
        else:
            constants[name] = value.cpu()
    solver_model = copy.deepcopy(spec.model).to(device=device, dtype=dtype)
    return GenerationPlan(spec=spec, n=n, t=times, seed=seed, sampled=sampled, alg=alg,
                          rtol=rtol, atol=atol, dtype=dtype, device=device,
                          solve_kwargs=solve_kwargs, on_failure=on_failure, fixed=fixed,
                          constants=constants, solver_model=solver_model,
                          sampler=copy.deepcopy(spec.model))


def simulate(model: Any, n: int, *, t: Any, seed: int = 0, sample_parameters: Any = False,
             alg: Any = None, rtol: float = 1e-6, atol: float = 1e-8,
             batch_size: int | None = None, device: Any = None, dtype: Any = None,
             model_kwargs: Mapping[str, Any] | None = None,
             solve_kwargs: Mapping[str, Any] | None = None,
             on_failure: str = "raise") -> Trajectories:
    r"""Solve ``n`` members of ``model`` in memory.

    Args:
        model: a PhysicalModel instance, a name in ``pysciml.physics.MODELS`` (then
            ``model_kwargs`` are its constructor keywords), or ``"package.module:Class"``.
        n: the number of members.
        t: the save times, strictly increasing; ``t[0]`` is the initial time.
        seed: the data set's seed; member ``i``'s draws depend only on ``(seed, i)``.
        sample_parameters: ``False``; ``True`` to sample every parameter of the model's
            ``parameter_ranges`` (with ``model.sample_parameters``' law); or a list of names.
        alg: the solver (default ``model.default_algorithm()``); rtol, atol: its tolerances.
        batch_size: members per ``solve`` call (default: all ``n`` at once).
        device, dtype: where and in which precision to solve (default: CPU, the model's dtype).
            Initial states are drawn on the model as given, so they do not depend on ``device``.
        solve_kwargs: more keywords for :func:`pysciml.solve` (``max_steps``, ``tstops`` ...).
        on_failure: ``"raise"`` (:class:`GenerationError` when a member fails) or ``"keep"``
            (its rows after the failure are NaN; ``meta["status"]`` says which).

    Returns:
        :class:`Trajectories` on the CPU.
    """
    plan = make_plan(model, n, t=t, seed=seed, sample_parameters=sample_parameters, alg=alg,
                     rtol=rtol, atol=atol, device=device, dtype=dtype, model_kwargs=model_kwargs,
                     solve_kwargs=solve_kwargs, on_failure=on_failure)
    batch = plan.n if batch_size is None else _check_positive_int(batch_size, "batch_size")
    us, statuses, params = [], [], []
    for start in range(0, plan.n, batch):
        u, status, p = plan.solve(range(start, min(start + batch, plan.n)))
        us.append(u)
        statuses.append(status)
        params.append(p)
    parameters = {k: torch.cat([p[k] for p in params]) for k in plan.parameter_names}
    meta = plan.config()
    meta.pop("t_sha256")
    meta.update(status=torch.cat(statuses), constants=dict(plan.constants),
                state_shape=plan.state_shape, solver_name=plan.alg.name)
    return Trajectories(t=plan.t.to(plan.dtype), u=torch.cat(us), parameters=parameters,
                        model=plan.spec.name, meta=meta)
