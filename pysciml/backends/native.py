"""The adapter from ``solve``'s descriptors to the native PyTorch engine."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from ..native.adjoint import adjoint_solve
from ..native.integrate import integrate
from ..native.stepper import AbstractStepper
from ..problem import ODEProblem, SplitODEProblem
from ..sensealg import AbstractAdjoint, AbstractSensitivityAlgorithm, DirectBackprop
from ..solution import ODESolution
from ..validation import ValidatedInputs

__all__ = ["FlatProblem", "SolveOptions", "solve_native"]


@dataclass(frozen=True)
class SolveOptions:
    """The solve's options that reach the native loop."""

    dt: Any
    max_steps: int
    shared_step: bool
    dense: bool
    controller: Any
    tstops: torch.Tensor | None
    dtmin: float
    dtmax: float | None
    loop: str = "eager"


class FlatProblem:
    r"""A problem seen by the loop: states ``(B, N)`` with ``B = prod(batch)``, ``N = prod(state)``.

    ``rhs(t, y, p)`` calls the user's ``f`` with ``t`` of shape ``batch_shape`` and ``u`` of shape
    ``(*batch, *state)``.
    """

    def __init__(self, prob: ODEProblem):
        self.f = prob.f
        self.user_jac = prob.jac
        self.batch_shape = prob.batch_shape
        self.state_shape = prob.state_shape
        self.B = int(torch.Size(self.batch_shape).numel())
        self.N = int(torch.Size(self.state_shape).numel())

    def rhs(self, t: torch.Tensor, y: torch.Tensor, p: Any, fn: Any = None) -> torch.Tensor:
        """``f`` (or ``fn``) on ``y`` of shape ``(*lead, B, N)`` and ``t`` of shape ``(*lead, B)``.

        Leading dimensions (``lead``) reach the user's ``f`` as extra leading batch
        dimensions; the Jacobian uses them to evaluate all directions in one call when ``f``
        broadcasts over them.
        """
        lead = tuple(y.shape[:-2])
        u = y.reshape(lead + tuple(self.batch_shape) + tuple(self.state_shape))
        out = (fn or self.f)(t.reshape(lead + tuple(self.batch_shape)), u, p)
        return out.reshape(lead + (self.B, self.N))

    def jac(self, t: torch.Tensor, y: torch.Tensor, p: Any) -> torch.Tensor:
        """The user's Jacobian, flattened to ``(B, N, N)``."""
        u = y.reshape(*self.batch_shape, *self.state_shape)
        return self.user_jac(t.reshape(self.batch_shape), u, p).reshape(self.B, self.N, self.N)

    def flatten(self, u: torch.Tensor) -> torch.Tensor:
        return u.reshape(self.B, self.N)

    def unflatten(self, y: torch.Tensor) -> torch.Tensor:
        """``(..., B, N) -> (..., *batch, *state)``."""
        return y.reshape(*y.shape[:-2], *self.batch_shape, *self.state_shape)


class _DenseWithoutGradient(torch.autograd.Function):
    """Dense output of an adjoint solve: its values are right, but no gradient flows through
    them; a backward pass through them raises instead of silently dropping that part."""

    @staticmethod
    def forward(ctx, values, anchor, name):
        ctx.name = name
        return values.clone()

    @staticmethod
    def backward(ctx, grad, *_):
        raise RuntimeError(
            f"sol(t): the dense output of a solve differentiated by {ctx.name} carries no "
            "gradient; put these times in saveat, or use sensealg=DirectBackprop(), to "
            "differentiate through them")


def _flat_preconditioner(alg: Any, flat: FlatProblem, p: Any):
    """The user's Krylov preconditioner ``precond(t, u, hgamma, r)`` on flattened states."""
    precond = getattr(getattr(alg, "linsolve", None), "precond", None)
    if precond is None:
        return None

    def flat_precond(t, y, hg, r):
        shape = tuple(flat.batch_shape)
        out = precond(t.reshape(shape), flat.unflatten(y), hg.reshape(shape), flat.unflatten(r))
        return flat.flatten(out)

    return flat_precond


def right_hand_sides(prob: ODEProblem) -> tuple:
    """The user's callables: ``(f,)``, or ``(f_stiff, f_nonstiff)`` of a split problem."""
    if isinstance(prob, SplitODEProblem):
        return (prob.f_stiff, prob.f_nonstiff)
    return (prob.f,)


def trainable_parameters(prob: ODEProblem) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The tensors gradients may flow to: leaves of ``p`` and ``nn.Module`` parameters."""
    p_leaves = [x for x in pytree.tree_leaves(prob.p) if isinstance(x, torch.Tensor)]
    module_params: list[torch.Tensor] = []
    for fn in right_hand_sides(prob):
        if isinstance(fn, torch.nn.Module):
            module_params += [q for q in fn.parameters()
                              if q.requires_grad and all(q is not m for m in module_params)]
    return p_leaves, module_params


def _needs_grad(prob: ODEProblem, inputs: ValidatedInputs) -> bool:
    if not torch.is_grad_enabled():
        return False
    p_leaves, module_params = trainable_parameters(prob)
    tensors = [prob.u0, inputs.t0, inputs.t1, inputs.ts, *p_leaves, *module_params]
    return any(x.requires_grad for x in tensors)


def solve_native(prob: ODEProblem, alg: Any, inputs: ValidatedInputs, options: SolveOptions,
                 sensealg: AbstractSensitivityAlgorithm | None,
                 f0: torch.Tensor | None = None) -> ODESolution:
    """Solve on the native runtime; gradients by ``sensealg`` (DirectBackprop by default).

    ``f0``: ``f(t0, u0, p)`` if already evaluated (``(*batch, *state)``), reused by a direct
    solve as its first evaluation."""
    flat = FlatProblem(prob)
    split = isinstance(prob, SplitODEProblem)
    stepper: AbstractStepper = (alg.stepper(imex=True) if split and getattr(alg, "imex", False)
                                else alg.stepper())
    parts = None
    if split:
        f_stiff, f_nonstiff = right_hand_sides(prob)
        parts = (lambda t, y: flat.rhs(t, y, prob.p, f_stiff),
                 lambda t, y: flat.rhs(t, y, prob.p, f_nonstiff))
    sensealg = sensealg if sensealg is not None else DirectBackprop()
    loop_kwargs = dict(
        rtol=inputs.rtol, atol=inputs.atol, dt=options.dt,
        controller=options.controller or alg.default_controller,
        max_steps=options.max_steps, shared_step=options.shared_step, tstops=options.tstops,
        dtmin=options.dtmin, dtmax=options.dtmax,
        jac=None if prob.jac is None else (lambda t, y: flat.jac(t, y, prob.p)),
        parts=parts,
        precond=_flat_preconditioner(alg, flat, prob.p),
    )
    if isinstance(sensealg, AbstractAdjoint) and _needs_grad(prob, inputs):
        if options.loop != "eager":
            warnings.warn(f"loop={options.loop!r}: not used with an adjoint sensealg (its solves "
                          "keep dense output); the loops run eagerly", RuntimeWarning,
                          stacklevel=3)
        us, result = adjoint_solve(flat, prob, stepper, inputs, sensealg, options.dense,
                                   loop_kwargs)
    else:
        p = prob.p

        def rhs(t, y):
            return flat.rhs(t, y, p)

        result = integrate(stepper, rhs, inputs.t0, inputs.t1, flat.flatten(prob.u0),
                           ts=inputs.ts, dense=options.dense,
                           f0=None if f0 is None else flat.flatten(f0),
                           loop=options.loop, **loop_kwargs)
        us = result.us
    dense = result.dense
    if dense is not None:
        dense.unflatten = flat.unflatten
        if isinstance(sensealg, AbstractAdjoint) and us.requires_grad:
            name = type(sensealg).__name__
            dense.unflatten = lambda y: _DenseWithoutGradient.apply(flat.unflatten(y), us, name)
    return ODESolution(
        t=inputs.ts, u=flat.unflatten(us), status=result.status.reshape(flat.batch_shape),
        stats=result.stats, alg=alg, backend="native", dense=dense,
        t_end=result.t.reshape(flat.batch_shape),
    )
