r"""Hybrid right-hand sides: known physics plus a neural network.

Every model here is an additive decomposition of the dynamics (Yin et al. 2021, eq. 1)

.. math::
    \frac{du}{dt} = F(u) = F_p(t, u;\, \theta_p) + F_a(u;\, \theta_a),

with :math:`F_p` a physical model (parameters :math:`\theta_p`, learnable or fixed) and
:math:`F_a` a network. The classes differ in which parts are present and what they mean:

* :class:`APHYNITY` — incomplete physics augmented by a network; trained with
  :class:`~pysciml.hybrid.APHYNITYObjective`, which keeps :math:`\|F_a\|` minimal so that the
  physics explains as much of the data as it can (Yin et al., ICLR 2021).
* :class:`UniversalDifferentialEquation` — the known terms of a model plus a network standing for
  the unknown ones (Rackauckas et al. 2020, "Universal differential equations for scientific
  machine learning"); :func:`lotka_volterra_ude` builds their Lotka–Volterra example.
* :class:`NeuralODE` — the network alone, :math:`F = F_a` (Chen et al. 2018): the data-only
  baseline.
* :class:`PhysicsOnly` — the physics alone, :math:`F = F_p`: the physics-only baseline.

All are ``nn.Module`` right-hand sides ``forward(t, u, p=None)`` for
:class:`~pysciml.ODEProblem`, usable with any solver and any ``sensealg``; ``u`` has shape
``(*batch, *state_shape)``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .networks import StateNetwork, as_state_shape

__all__ = ["AbstractHybridODE", "APHYNITY", "UniversalDifferentialEquation", "NeuralODE",
           "PhysicsOnly", "PENALTIES"]

PENALTIES = ("l2", "l2_normalized")
_EPS = 1e-5


def _physics_parameter_dict(physics: nn.Module) -> dict[str, torch.Tensor]:
    getter = getattr(physics, "physical_parameters", None)
    if callable(getter):
        return dict(getter())
    out = {}
    for name, param in physics.named_parameters():
        parts = name.split(".")
        if "parametrizations" in parts:   # a log-scale parameter: report theta, not log(theta)
            i = parts.index("parametrizations")
            owner = physics.get_submodule(".".join(parts[:i]))
            out[".".join(parts[:i] + [parts[i + 1]])] = getattr(owner, parts[i + 1])
        else:
            out[name] = param
    return out


class _Exp(nn.Module):
    r"""The parametrization :math:`\theta = \exp(\phi)` (``right_inverse``: :math:`\log`)."""

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return torch.exp(phi)

    def right_inverse(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.log(theta)


class AbstractHybridODE(nn.Module, abc.ABC):
    r"""The right-hand side :math:`F_p(t, u) + F_a(u)` with either part optional (not both).

    Subclasses only choose which parts exist; the evaluation, the shape checks and the
    augmentation norm live here.

    Args:
        physics: an ``nn.Module`` right-hand side ``physics(t, u, p)`` (a
            :class:`~pysciml.physics.PhysicalModel` or any module), or ``None``.
        augmentation: a network, or ``None``. A :class:`~pysciml.hybrid.StateNetwork` is used as
            it is; any other module is wrapped in one (it must map ``(N, *state_shape)`` to
            ``(N, *state_shape)``).
        state_shape: the shape of one state; by default ``physics.state_shape``.
        physics_method: the method of ``physics`` that gives :math:`F_p` (``"forward"``; for
            APHYNITY's reaction–diffusion the physics is the diffusion alone:
            ``physics_method="diffusion"``).
        learnable: if given, the names of the physical parameters to learn; the other parameters
            of ``physics`` are frozen. Unknown names raise ``ValueError``.
        log_parameters: names of physical parameters (positive) to learn on a log scale,
            :math:`\theta = e^{\phi}` with :math:`\phi` the trainable tensor
            (``torch.nn.utils.parametrize``; ``physics`` is modified in place). Adam moves
            :math:`\phi` by about the learning rate per step, i.e. :math:`\theta` by a relative
            amount :math:`e^{\pm\text{lr}}` whatever its magnitude: parameters of very different
            scales (diffusion coefficients :math:`\sim 10^{-3}`, rates :math:`\sim 1`) share
            one learning rate, and :math:`\theta` stays positive. The gradient is
            :math:`\partial L/\partial\phi = \theta\,\partial L/\partial\theta`.
            :meth:`physical_parameters` still returns :math:`\theta`. A name that is not a
            parameter of ``physics``, or a value that is not positive, raises ``ValueError``.
    """

    @abc.abstractmethod
    def __init__(self, physics: nn.Module | None, augmentation: nn.Module | None,
                 state_shape: Sequence[int] | int | None = None, physics_method: str = "forward",
                 learnable: Iterable[str] | None = None,
                 log_parameters: Iterable[str] | None = None):
        super().__init__()
        if physics is None and augmentation is None:
            raise ValueError("physics, augmentation: at least one of them is needed")
        if physics is not None and not isinstance(physics, nn.Module):
            raise TypeError(f"physics: expected a torch.nn.Module right-hand side "
                            f"physics(t, u, p), got {type(physics).__name__}")
        if augmentation is not None and not isinstance(augmentation, nn.Module):
            raise TypeError(f"augmentation: expected a torch.nn.Module, got "
                            f"{type(augmentation).__name__}")
        if state_shape is None:
            for part in (physics, augmentation):
                state_shape = getattr(part, "state_shape", None)
                if state_shape is not None:
                    break
            if state_shape is None:
                raise ValueError("state_shape: needed when neither physics nor augmentation has "
                                 "a state_shape attribute")
        self.state_shape = as_state_shape(state_shape)
        physics_state = getattr(physics, "state_shape", None)
        if physics_state is not None and tuple(physics_state) != self.state_shape:
            raise ValueError(f"state_shape: {self.state_shape} does not match the physics' state "
                             f"shape {tuple(physics_state)}")
        if physics is not None:
            if not isinstance(physics_method, str) or not callable(
                    getattr(physics, physics_method, None)):
                raise ValueError(f"physics_method: {type(physics).__name__} has no method "
                                 f"{physics_method!r}")
        self.physics = physics
        self.physics_method = physics_method
        if augmentation is not None and not isinstance(augmentation, StateNetwork):
            augmentation = StateNetwork(augmentation, self.state_shape)
        if augmentation is not None and augmentation.state_shape != self.state_shape:
            raise ValueError(f"augmentation: its state shape {augmentation.state_shape} does not "
                             f"match {self.state_shape}")
        self.augmentation = augmentation
        if learnable is not None:
            self._set_learnable(learnable)
        if log_parameters is not None:
            self._set_log_scale(log_parameters)

    def _set_log_scale(self, names: Iterable[str]) -> None:
        if self.physics is None:
            raise ValueError("log_parameters: this model has no physics to parametrize")
        if isinstance(names, str):
            names = (names,)
        names = list(names)
        params = dict(self.physics.named_parameters())
        unknown = [n for n in names if n not in params]
        if unknown:
            raise ValueError(f"log_parameters: unknown parameter name(s) {unknown} of "
                             f"{type(self.physics).__name__}; available: {sorted(params)}")
        if len(set(names)) != len(names):
            raise ValueError(f"log_parameters: repeated name(s) in {names}")
        for name in names:
            value = params[name]
            if not value.is_floating_point() or not bool((value.detach() > 0).all()):
                raise ValueError(f"log_parameters: {name!r} must be positive to be learned on a "
                                 f"log scale, got {value.detach().flatten()[:4].tolist()}")
        for name in names:
            owner_name, _, attr = name.rpartition(".")
            owner = self.physics.get_submodule(owner_name) if owner_name else self.physics
            parametrize.register_parametrization(owner, attr, _Exp())

    def _set_learnable(self, learnable: Iterable[str]) -> None:
        if self.physics is None:
            raise ValueError("learnable: this model has no physics to learn parameters of")
        if isinstance(learnable, str):
            learnable = (learnable,)
        names = list(learnable)
        params = dict(self.physics.named_parameters())
        unknown = [n for n in names if n not in params]
        if unknown:
            raise ValueError(f"learnable: unknown parameter name(s) {unknown} of "
                             f"{type(self.physics).__name__}; available: {sorted(params)}")
        for name, param in params.items():
            param.requires_grad_(name in names)

    # ----------------------------------------------------------------------------- evaluation
    def physics_term(self, t, u: torch.Tensor, p=None) -> torch.Tensor:
        r""":math:`F_p(t, u)`, or zeros when the model has no physics."""
        if self.physics is None:
            return torch.zeros_like(u)
        out = getattr(self.physics, self.physics_method)(t, u, p)
        if not isinstance(out, torch.Tensor) or out.shape != u.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"physics: {type(self.physics).__name__}.{self.physics_method} "
                             f"returned {got} for u of shape {tuple(u.shape)}; expected the "
                             f"shape of u")
        return out

    def augmentation_term(self, t, u: torch.Tensor) -> torch.Tensor:
        r""":math:`F_a(u)`, or zeros when the model has no network."""
        if self.augmentation is None:
            return torch.zeros_like(u)
        return self.augmentation(t, u)

    def forward(self, t, u: torch.Tensor, p=None) -> torch.Tensor:
        self._check_state(u)
        if self.physics is None:
            return self.augmentation(t, u)
        if self.augmentation is None:
            return self.physics_term(t, u, p)
        return self.physics_term(t, u, p) + self.augmentation(t, u)

    def _check_state(self, u: torch.Tensor) -> None:
        k = len(self.state_shape)
        if u.ndim < k or tuple(u.shape[u.ndim - k:]) != self.state_shape:
            raise ValueError(f"u: expected shape (*batch, {', '.join(map(str, self.state_shape))})"
                             f", got {tuple(u.shape)}")

    # ------------------------------------------------------------------------ the APHYNITY norm
    def augmentation_norm(self, states: torch.Tensor, penalty: str = "l2") -> torch.Tensor:
        r"""The squared norm :math:`\|F_a\|^2` estimated on states (Yin et al. 2021, eq. 4):

        .. math::
            \|F_a\|^2 \approx \frac{1}{M}\sum_{m=1}^{M} \frac{1}{|\Omega|}\int_\Omega
            \big|F_a(X_m)(x)\big|^2\,dx,

        the mean over the states :math:`X_m` (any leading dimensions: batch, time) and over the
        grid points of a field, of the squared Euclidean norm over the channels (the first state
        dimension). ``penalty="l2_normalized"`` divides each point's norm by that of the state,
        :math:`|F_a(X)(x)| / (|X(x)| + 10^{-5})`, as APHYNITY does for the pendulum. Zero for a
        model without a network.
        """
        if penalty not in PENALTIES:
            raise ValueError(f"penalty: expected one of {PENALTIES}, got {penalty!r}")
        self._check_state(states)
        if self.augmentation is None:
            return states.new_zeros(())
        fa = self.augmentation(None, states)
        channel = states.ndim - len(self.state_shape)
        sq = (fa * fa).sum(channel)
        if penalty == "l2_normalized":
            sq = sq / (states.norm(dim=channel) + _EPS) ** 2
        return sq.mean()

    # ------------------------------------------------------------------------------ parameters
    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """The physical parameters by name (empty without physics)."""
        return {} if self.physics is None else _physics_parameter_dict(self.physics)

    def parameter_relative_errors(self, true: dict[str, float]) -> dict[str, float]:
        r"""Relative errors :math:`|\hat\theta - \theta| / |\theta|` of the named physical
        parameters against ``true`` (numbers or tensors; a tensor parameter gives its largest
        error). Unknown names raise ``ValueError``."""
        if not isinstance(true, dict):
            raise TypeError(f"true: expected a dict of parameter values, got {type(true).__name__}")
        params = self.physical_parameters()
        unknown = [k for k in true if k not in params]
        if unknown:
            raise ValueError(f"true: unknown parameter name(s) {unknown}; this model's physical "
                             f"parameters are {sorted(params)}")
        out = {}
        for name, value in true.items():
            est = params[name].detach()
            ref = torch.as_tensor(value, dtype=est.dtype, device=est.device)
            out[name] = float(((est - ref).abs() / ref.abs()).max())
        return out

    def parameter_groups(self, physics_lr: float | None = None,
                         augmentation_lr: float | None = None) -> list[dict]:
        """Optimizer parameter groups: the trainable physical parameters and the network's, each
        with its own learning rate when given (``torch.optim.Adam(model.parameter_groups(...))``).
        """
        groups = []
        for part, lr in ((self.physics, physics_lr), (self.augmentation, augmentation_lr)):
            params = [] if part is None else [q for q in part.parameters() if q.requires_grad]
            if params:
                groups.append({"params": params} if lr is None else {"params": params, "lr": lr})
        return groups


class APHYNITY(AbstractHybridODE):
    r"""APHYNITY's model :math:`F = F_p + F_a` (Yin et al., "Augmenting physical models with deep
    networks for complex dynamics forecasting", ICLR 2021): an incomplete physical model whose
    parameters are learned, plus a network for what it misses. Train it with
    :class:`~pysciml.hybrid.APHYNITYObjective`, which minimises :math:`\|F_a\|` subject to fitting
    the trajectories.

    Args: as :class:`AbstractHybridODE`; ``physics`` and ``augmentation`` are both required.
    """

    def __init__(self, physics: nn.Module, augmentation: nn.Module,
                 state_shape: Sequence[int] | int | None = None, physics_method: str = "forward",
                 learnable: Iterable[str] | None = None,
                 log_parameters: Iterable[str] | None = None):
        if physics is None or augmentation is None:
            raise ValueError("physics, augmentation: APHYNITY needs both (use PhysicsOnly or "
                             "NeuralODE for one of them)")
        super().__init__(physics, augmentation, state_shape, physics_method, learnable,
                         log_parameters)


class UniversalDifferentialEquation(AbstractHybridODE):
    r"""A universal differential equation (Rackauckas et al. 2020): the known terms of a model,
    :math:`F_p`, plus a network :math:`U_\theta` standing for the unknown ones,
    :math:`u' = F_p(t, u) + U_\theta(u)`. After training, :meth:`missing_term` evaluates the
    learned term, to compare with the true one or to pass to sparse regression.

    Args: as :class:`AbstractHybridODE`; ``physics`` (the known part, often with fixed
    parameters) and ``augmentation`` (the network) are both required.
    """

    def __init__(self, physics: nn.Module, augmentation: nn.Module,
                 state_shape: Sequence[int] | int | None = None, physics_method: str = "forward",
                 learnable: Iterable[str] | None = None,
                 log_parameters: Iterable[str] | None = None):
        if physics is None or augmentation is None:
            raise ValueError("physics, augmentation: a universal differential equation needs "
                             "both the known terms and the network")
        super().__init__(physics, augmentation, state_shape, physics_method, learnable,
                         log_parameters)

    def missing_term(self, u: torch.Tensor) -> torch.Tensor:
        r"""The learned term :math:`U_\theta(u)` at states ``u`` of shape ``(*batch, *state)``."""
        self._check_state(u)
        return self.augmentation(None, u)


class NeuralODE(AbstractHybridODE):
    r"""A neural ODE :math:`u' = F_\theta(u)` (Chen et al., NeurIPS 2018): the data-only baseline.

    Args:
        network: maps ``(N, *state_shape)`` to ``(N, *state_shape)``.
        state_shape: the shape of one state.
    """

    def __init__(self, network: nn.Module, state_shape: Sequence[int] | int):
        if network is None:
            raise ValueError("network: a neural ODE needs a network")
        super().__init__(None, network, state_shape)


class PhysicsOnly(AbstractHybridODE):
    r"""The physical model alone, :math:`u' = F_p(t, u;\theta_p)`, with its parameters learned:
    the physics-only baseline.

    Args:
        physics, state_shape, physics_method, learnable, log_parameters: as
            :class:`AbstractHybridODE`.
    """

    def __init__(self, physics: nn.Module, state_shape: Sequence[int] | int | None = None,
                 physics_method: str = "forward", learnable: Iterable[str] | None = None,
                 log_parameters: Iterable[str] | None = None):
        if physics is None:
            raise ValueError("physics: a physics-only model needs a physical model")
        super().__init__(physics, None, state_shape, physics_method, learnable, log_parameters)
