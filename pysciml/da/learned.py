r"""Learned 4DVar: a network maps an observation window to its initial state, trained on the
4DVar cost from observations alone (Filoche, Brajard, Charantonis & Béréziat 2022, "Learning
4DVAR inversion directly from observations", arXiv:2211.09741).

For windows :math:`w` with observations :math:`y^w = (y^w_k)_k`, the network :math:`g_\theta`
gives :math:`x_0^w = g_\theta(y^w)` and is trained by minimising the mean 4DVar cost

.. math::
    \mathcal L(\theta) = \frac1{W}\sum_w J^w\big(g_\theta(y^w)\big), \qquad
    J^w(x_0) = \tfrac12\|x_0 - x_b^w\|^2_{B^{-1}} + \tfrac12\sum_k
    \big\|y^w_k - \mathcal H(\mathcal M_{t_0\to t_k}(x_0))\big\|^2_{R^{-1}},

through the differentiable solve, with no ground-truth state anywhere (the background term is
optional). At inference one forward pass replaces a 4DVar minimisation; the network's output is
also a good first guess for a classical 4DVar (``FourDVar.minimize(u0=...)``).

The network receives the filled observations (zeros where missing) and the availability mask,
both of shape ``(K, *batch, *obs)``: :class:`GridWindowEncoder` for observations on the state's
grid (identity operator, NaN gaps), :class:`MLPWindowEncoder` for any operator. The encoders
compute in their own parameters' dtype (e.g. float32 next to a float64 model, which is much
faster for convolutions on CPU) and return the observations' dtype.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..algorithms import AbstractAlgorithm
from ..problem import ODEProblem
from .controls import Background
from .fourdvar import FourDVar
from .observations import Observations

__all__ = ["GridWindowEncoder", "MLPWindowEncoder", "LearnedFourDVar", "TrainingHistory"]


class GridWindowEncoder(nn.Module):
    r"""A convolutional network from a window of gridded observations to the initial state.

    Input: ``values`` and ``available`` of shape ``(K, *batch, *state)`` with ``state =
    (*lead, *grid)``, ``grid`` the last ``grid_ndim`` dimensions and ``lead`` (if any) flattened
    into ``C`` channels; they are stacked as :math:`2KC` input channels and passed through
    ``depth`` convolutions (``padding_mode="circular"`` for periodic domains) with GELU
    activations and a residual connection around each hidden layer. Output: the state,
    ``offset + scale * net(...)``.

    Args:
        n_times: ``K``, the number of observation times per window.
        state_shape: one member's state shape.
        grid_ndim: 1 or 2.
        hidden, depth, kernel_size: width, number of convolutions (>= 2), kernel size (odd).
        offset, scale: normalisation of the inputs and outputs (e.g. the observations' mean
            and standard deviation).
    """

    def __init__(self, n_times: int, state_shape: tuple[int, ...], grid_ndim: int = 1,
                 hidden: int = 64, depth: int = 4, kernel_size: int = 5,
                 padding_mode: str = "circular", offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        state_shape = tuple(state_shape)
        if grid_ndim not in (1, 2) or len(state_shape) < grid_ndim:
            raise ValueError(f"grid_ndim: expected 1 or 2 and at most len(state_shape) = "
                             f"{len(state_shape)}, got {grid_ndim!r}")
        for name, value in (("n_times", n_times), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth: expected an int >= 2, got {depth!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected a positive odd int, got {kernel_size!r}")
        if not scale > 0:
            raise ValueError(f"scale: expected a number > 0, got {scale!r}")
        conv = nn.Conv1d if grid_ndim == 1 else nn.Conv2d
        pad = kernel_size // 2
        self.n_times, self.state_shape, self.grid_ndim = n_times, state_shape, grid_ndim
        self.grid = state_shape[len(state_shape) - grid_ndim:]
        self.channels = math.prod(state_shape[: len(state_shape) - grid_ndim])
        self.offset, self.scale = float(offset), float(scale)
        c = self.channels
        self.inp = conv(2 * n_times * c, hidden, kernel_size, padding=pad,
                        padding_mode=padding_mode)
        self.hidden = nn.ModuleList(conv(hidden, hidden, kernel_size, padding=pad,
                                         padding_mode=padding_mode) for _ in range(depth - 2))
        self.out = conv(hidden, c, kernel_size, padding=pad, padding_mode=padding_mode)
        self.act = nn.GELU()

    def forward(self, values: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        K, nd = values.shape[0], len(self.state_shape)
        if K != self.n_times or tuple(values.shape[values.ndim - nd:]) != self.state_shape:
            raise ValueError(f"values: shape {tuple(values.shape)}, expected (K={self.n_times}, "
                             f"*batch, *state={self.state_shape})")
        batch = values.shape[1: values.ndim - nd]
        avail = available.to(values.dtype).expand_as(values)
        x = (values - self.offset) / self.scale * avail
        x = torch.cat([x, avail], 0).reshape(2 * K, -1, self.channels, *self.grid)
        x = x.movedim(0, 1).reshape(-1, 2 * K * self.channels, *self.grid)
        h = self.act(self.inp(x.to(self.inp.weight.dtype)))
        for layer in self.hidden:
            h = h + self.act(layer(h))
        out = self.offset + self.scale * self.out(h).to(values.dtype)
        return out.reshape(*batch, *self.state_shape)


class MLPWindowEncoder(nn.Module):
    r"""A multilayer perceptron from a flattened observation window (values and mask) to the
    flattened initial state, for any observation operator.

    Args:
        n_times: ``K``; obs_shape, state_shape: one member's observation and state shapes.
        hidden, depth: width and number of linear layers (>= 2); offset, scale: as for
            :class:`GridWindowEncoder`.
    """

    def __init__(self, n_times: int, obs_shape: tuple[int, ...], state_shape: tuple[int, ...],
                 hidden: int = 256, depth: int = 3, offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth: expected an int >= 2, got {depth!r}")
        self.obs_shape, self.state_shape = tuple(obs_shape), tuple(state_shape)
        self.offset, self.scale = float(offset), float(scale)
        n_in = 2 * n_times * math.prod(self.obs_shape)
        layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.GELU()]
        for _ in range(depth - 2):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        layers.append(nn.Linear(hidden, math.prod(self.state_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, values: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        K = values.shape[0]
        nd = len(self.obs_shape)
        if tuple(values.shape[values.ndim - nd:]) != self.obs_shape:
            raise ValueError(f"values: trailing shape {tuple(values.shape[values.ndim - nd:])}, "
                             f"expected the observation shape {self.obs_shape}")
        batch = values.shape[1: values.ndim - nd]
        avail = available.to(values.dtype).expand_as(values)
        x = (values - self.offset) / self.scale * avail
        x = torch.cat([x, avail], 0).reshape(2 * K, -1, math.prod(self.obs_shape))
        x = x.movedim(0, 1).reshape(x.shape[1], -1)
        out = self.offset + self.scale * self.net(x.to(self.net[0].weight.dtype)).to(values.dtype)
        return out.reshape(*batch, *self.state_shape)


@dataclass
class TrainingHistory:
    """Mean 4DVar cost per window of each minibatch, and the wall time of training."""

    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


class LearnedFourDVar:
    r"""Train a network :math:`g_\theta` on the 4DVar cost of many windows (no ground truth).

    Args:
        net: a module ``net(values, available) -> u0`` (see :class:`GridWindowEncoder`).
        problem: the model over one window, an :class:`~pysciml.ODEProblem` with
            ``batch_ndim = 1`` whose ``u0`` has shape ``(W, *state)`` (one row per window;
            only its shape is used) and ``tspan`` the window.
        alg, solve_kwargs: the solver, as for :class:`~pysciml.da.FourDVar`.
        observations: every window's observations, ``values`` of shape ``(K, W, *obs)``.
        background: optional background of each window (``mean`` of shape ``(W, *state)`` or
            broadcastable).
    """

    def __init__(self, net: nn.Module, problem: ODEProblem, alg: AbstractAlgorithm,
                 observations: Observations, *, background: Background | None = None,
                 solve_kwargs: dict | None = None):
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected an nn.Module, got {type(net).__name__}")
        if not isinstance(problem, ODEProblem) or problem.batch_ndim != 1:
            raise ValueError("problem: expected an ODEProblem with batch_ndim=1 (one batch "
                             "member per window)")
        self.net, self.problem, self.alg = net, problem, alg
        self.solve_kwargs = dict(solve_kwargs or {})
        # validates the whole set once (shapes, times, operator)
        self.fourdvar = FourDVar(problem, alg, observations, background=background,
                                 solve_kwargs=self.solve_kwargs)
        self.observations, self.background = observations, background
        self.n_windows = int(problem.u0.shape[0])

    def initial_states(self, observations: Observations | None = None) -> torch.Tensor:
        """:math:`g_\\theta(y)`: the network's initial states, shape ``(W, *state)``."""
        obs = self.observations if observations is None else observations
        return self.net(obs.filled, obs.available)

    def window_problem(self, index: torch.Tensor) -> FourDVar:
        """The :class:`~pysciml.da.FourDVar` of the windows ``index``."""
        u0 = self.problem.u0.index_select(0, index.to(self.problem.u0.device))
        bg = None if self.background is None else self.background.subset(
            index, 1, self.problem.u0.ndim)
        return FourDVar(self.problem.remake(u0=u0), self.alg, self.observations.subset(index),
                        background=bg, solve_kwargs=self.solve_kwargs)

    def loss(self, index: torch.Tensor) -> torch.Tensor:
        r"""The mean 4DVar cost per window of the windows ``index`` at :math:`g_\theta(y)`."""
        fdv = self.window_problem(index)
        u0 = self.initial_states(fdv.obs)
        return fdv.cost(u0=u0).total / index.numel()

    def fit(self, steps: int = 200, batch_size: int = 32, lr: float = 1e-3, *,
            weight_decay: float = 0.0, generator: torch.Generator | None = None,
            callback: Callable[[int, float], None] | None = None,
            history: TrainingHistory | None = None) -> TrainingHistory:
        """Adam on minibatches of windows with a cosine learning-rate decay; returns the
        history (appends to ``history`` when given)."""
        for name, value in (("steps", steps), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not lr > 0:
            raise ValueError(f"lr: expected a number > 0, got {lr!r}")
        history = TrainingHistory() if history is None else history
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        batch_size = min(batch_size, self.n_windows)
        start = time.perf_counter()
        device = self.problem.u0.device
        for step in range(steps):
            index = torch.randperm(self.n_windows, generator=generator)[:batch_size].to(device)
            opt.zero_grad()
            loss = self.loss(index)
            loss.backward()
            opt.step()
            sched.step()
            history.loss.append(float(loss.detach()))
            if callback is not None:
                callback(step, history.loss[-1])
        history.seconds += time.perf_counter() - start
        return history
