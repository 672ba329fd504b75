r"""Training objectives for hybrid models on trajectory windows, and the forecast they rest on.

A batch is what ``DataLoader`` makes of :class:`pysciml.data.TrajectoryDataset` items:
``t_history (B, h)``, ``history (B, h, *state)``, ``t_horizon (B, H)``, ``horizon (B, H, *state)``.
The forecast starts from the last observed state ``history[:, -1]`` at ``t_history[:, -1]`` and is
compared with ``horizon``:

.. math::
    \mathcal{L}_\text{traj} = \frac{1}{B H |X|}\sum_{b=1}^{B}\sum_{k=1}^{H}
    \big\|\hat X_b(t_k) - X_b(t_k)\big\|^2,
    \qquad \hat X_b(t) = X_b(t_0) + \int_{t_0}^{t} F(\hat X_b(s))\,ds,

the integral computed by a pysciml solver (any algorithm and ``sensealg``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..algorithms import AbstractAlgorithm, Tsit5
from ..problem import ODEProblem
from ..solve import solve
from ..train.objective import AbstractObjective
from .models import PENALTIES, AbstractHybridODE

__all__ = ["forecast", "TrajectoryObjective", "APHYNITYObjective", "BATCH_KEYS"]

BATCH_KEYS = ("t_history", "history", "t_horizon", "horizon")


def forecast(model: torch.nn.Module, u0: torch.Tensor, t: torch.Tensor, *,
             alg: AbstractAlgorithm | None = None, state_shape=None, **solve_kwargs
             ) -> torch.Tensor:
    r"""Integrate ``model`` from ``u0`` (shape ``(*batch, *state)``) and return the states at the
    times ``t`` (1-d, ``t[0]`` the initial time) with shape ``(*batch, len(t), *state)``.

    Args:
        model: a right-hand side ``model(t, u, p)`` with a ``state_shape`` attribute (or pass
            ``state_shape``).
        alg: the solver (default ``Tsit5()``); ``solve_kwargs`` go to :func:`pysciml.solve`
            (``rtol``, ``atol``, ``dt``, ``sensealg`` …).
    """
    shape = state_shape if state_shape is not None else getattr(model, "state_shape", None)
    if shape is None:
        raise ValueError("state_shape: needed when the model has no state_shape attribute")
    k = len(tuple(shape))
    if not isinstance(u0, torch.Tensor) or u0.ndim < k or tuple(u0.shape[u0.ndim - k:]) != tuple(
            shape):
        got = tuple(u0.shape) if isinstance(u0, torch.Tensor) else type(u0).__name__
        raise ValueError(f"u0: expected shape (*batch, {', '.join(map(str, shape))}), got {got}")
    t = torch.as_tensor(t, dtype=u0.dtype, device=u0.device).detach()
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"t: expected a 1-d tensor of at least two times, got shape "
                         f"{tuple(t.shape)}")
    batch_ndim = u0.ndim - k
    prob = ODEProblem(model, u0, (t[0], t[-1]), batch_ndim=batch_ndim)
    sol = solve(prob, alg if alg is not None else Tsit5(), saveat=t, **solve_kwargs)
    return sol.u.movedim(0, batch_ndim)


def _unpack(batch: Any, autonomous: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
    """``(u0, times, target, observed states)`` of a trajectory-window batch."""
    if not isinstance(batch, dict) or any(k not in batch for k in BATCH_KEYS):
        have = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"batch: expected a dict with keys {BATCH_KEYS} (TrajectoryDataset "
                         f"items), got {have}")
    th, hist, tz, target = (batch[k] for k in BATCH_KEYS)
    if th.ndim != 2 or tz.ndim != 2 or hist.shape[:2] != th.shape or target.shape[:2] != tz.shape:
        raise ValueError(f"batch: expected t_history (B, h), history (B, h, *state), t_horizon "
                         f"(B, H), horizon (B, H, *state); got {tuple(th.shape)}, "
                         f"{tuple(hist.shape)}, {tuple(tz.shape)}, {tuple(target.shape)}")
    times = torch.cat([th[:, -1:], tz], dim=1).to(hist.dtype)
    if autonomous:
        times = times - times[:, :1]
    ref = times[0]
    if times.shape[0] > 1 and not torch.allclose(times, ref.expand_as(times), rtol=1e-9,
                                                 atol=1e-9 * float(ref.abs().max() + 1)):
        what = "relative " if autonomous else ""
        raise ValueError(f"batch: the windows of one batch must share their {what}times (one "
                         "solve serves the batch)")
    observed = torch.cat([hist, target], dim=1)
    return hist[:, -1], ref, target, observed


class _Settings:
    """Solver settings shared by the objectives."""

    def __init__(self, alg, sensealg, rtol, atol, dt, autonomous, solve_kwargs):
        if alg is not None and not isinstance(alg, AbstractAlgorithm):
            raise TypeError(f"alg: expected a pysciml algorithm such as pysciml.Tsit5(), got "
                            f"{type(alg).__name__}")
        self.alg = alg if alg is not None else Tsit5()
        self.kwargs = dict(solve_kwargs, rtol=rtol, atol=atol, sensealg=sensealg)
        if dt is not None:
            self.kwargs["dt"] = dt
        self.autonomous = bool(autonomous)

    def mse(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        u0, t, target, observed = _unpack(batch, self.autonomous)
        pred = forecast(model, u0, t, alg=self.alg, **self.kwargs)[:, 1:]
        return ((pred - target) ** 2).mean(), observed


class TrajectoryObjective(AbstractObjective):
    r"""The forecast error :math:`\mathcal{L}_\text{traj}` alone (mean squared error over the
    horizon): the objective of the physics-only and data-only baselines and of universal
    differential equations. Metrics: ``loss`` = ``mse``.

    Args:
        alg: the solver (default ``Tsit5()``); ``dt`` for a fixed-step method such as ``RK4()``.
        sensealg, rtol, atol: passed to :func:`pysciml.solve`; other keywords too.
        autonomous: the model does not depend on time explicitly, so windows starting at
            different times can share one solve (their times are taken relative to their start).
    """

    def __init__(self, alg: AbstractAlgorithm | None = None, *, sensealg=None,
                 rtol: float = 1e-6, atol: float = 1e-8, dt: float | None = None,
                 autonomous: bool = True, **solve_kwargs):
        self.settings = _Settings(alg, sensealg, rtol, atol, dt, autonomous, solve_kwargs)

    def loss(self, model, batch):
        mse, _ = self.settings.mse(model, batch)
        return mse, {"loss": mse, "mse": mse}

    def evaluate(self, model, batch):
        mse, _ = self.settings.mse(model, batch)
        return {"loss": mse, "mse": mse}

    def end_step(self, metrics):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        if state:
            raise ValueError(f"state: TrajectoryObjective has no state, got keys {sorted(state)}")


class APHYNITYObjective(AbstractObjective):
    r"""APHYNITY's training objective and its adaptive Lagrangian schedule (Yin et al., ICLR
    2021, eq. 4 and Algorithm 1).

    The constrained problem

    .. math::
        \min_{\theta_p, \theta_a} \|F_a\| \quad\text{subject to}\quad
        \mathcal{L}_\text{traj}(\theta_p, \theta_a) = 0

    is relaxed to the Lagrangian :math:`\mathcal{L}_\lambda = \|F_a\|^2 + \lambda\,
    \mathcal{L}_\text{traj}`, minimised by the optimizer in :math:`\theta` (step size
    :math:`\tau_1`: the learning rate) while the multiplier rises with the remaining error,

    .. math::
        \lambda_{j+1} = \lambda_j + \tau_2\,\mathcal{L}_\text{traj}(\theta_{j+1}),

    every ``update_every`` optimizer steps (Algorithm 1's :math:`N_\text{iter}`), with
    :math:`\mathcal{L}_\text{traj}` the training batch's forecast error of the last step (as in the
    authors' implementation). :math:`\|F_a\|^2` is
    :meth:`~pysciml.hybrid.AbstractHybridODE.augmentation_norm` on the observed states of the
    batch. The authors' settings: pendulum :math:`\lambda_0 = 1`, :math:`\tau_1 = 10^{-3}`,
    :math:`\tau_2 = 1`, ``penalty="l2_normalized"``; reaction–diffusion :math:`\lambda_0 = 1`,
    :math:`\tau_1 = \tau_2 = 10^{-3}`, ``penalty="l2"``.

    Metrics: ``loss`` (the Lagrangian), ``mse`` (:math:`\mathcal{L}_\text{traj}`), ``norm_fa``
    (:math:`\|F_a\|^2`); ``end_step`` reports ``lambda``. Validation's ``loss`` is the forecast
    error ``mse``.

    Args:
        alg, sensealg, rtol, atol, dt, autonomous: as :class:`TrajectoryObjective`.
        lambda0: :math:`\lambda_0 \ge 0`.
        tau2: :math:`\tau_2 \ge 0` (0 keeps :math:`\lambda` fixed).
        penalty: ``"l2"`` or ``"l2_normalized"``.
        update_every: optimizer steps per update of :math:`\lambda`.
    """

    def __init__(self, alg: AbstractAlgorithm | None = None, *, lambda0: float = 1.0,
                 tau2: float = 1.0, penalty: str = "l2", update_every: int = 1, sensealg=None,
                 rtol: float = 1e-6, atol: float = 1e-8, dt: float | None = None,
                 autonomous: bool = True, **solve_kwargs):
        for name, value in (("lambda0", lambda0), ("tau2", tau2)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if penalty not in PENALTIES:
            raise ValueError(f"penalty: expected one of {PENALTIES}, got {penalty!r}")
        if not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every: expected a positive int, got {update_every!r}")
        self.settings = _Settings(alg, sensealg, rtol, atol, dt, autonomous, solve_kwargs)
        self.tau2, self.penalty, self.update_every = float(tau2), penalty, update_every
        self.lambda_ = torch.tensor(float(lambda0), dtype=torch.float64)
        self.steps = 0

    @staticmethod
    def _check_model(model) -> None:
        if not isinstance(model, AbstractHybridODE):
            raise TypeError(f"model: APHYNITYObjective needs a hybrid model (APHYNITY, "
                            f"NeuralODE, …) with an augmentation norm, got {type(model).__name__}")

    def loss(self, model, batch):
        self._check_model(model)
        mse, observed = self.settings.mse(model, batch)
        norm = model.augmentation_norm(observed, self.penalty)
        lam = self.lambda_.to(device=mse.device, dtype=mse.dtype)
        total = lam * mse + norm
        return total, {"loss": total, "mse": mse, "norm_fa": norm}

    def evaluate(self, model, batch):
        self._check_model(model)
        mse, observed = self.settings.mse(model, batch)
        return {"loss": mse, "mse": mse, "norm_fa": model.augmentation_norm(observed, self.penalty)}

    def end_step(self, metrics):
        if "mse" not in metrics:
            raise ValueError("metrics: APHYNITYObjective.end_step needs the step's 'mse'")
        self.steps += 1
        if self.steps % self.update_every == 0:
            mse = metrics["mse"].detach().to(torch.float64)
            self.lambda_ = self.lambda_.to(mse.device) + self.tau2 * mse
        return {"lambda": self.lambda_}

    def state_dict(self):
        return {"lambda": self.lambda_.clone(), "steps": self.steps}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or set(state) != {"lambda", "steps"}:
            raise ValueError("state: expected the dict of APHYNITYObjective.state_dict()")
        self.lambda_ = torch.as_tensor(state["lambda"], dtype=torch.float64).clone()
        self.steps = int(state["steps"])
