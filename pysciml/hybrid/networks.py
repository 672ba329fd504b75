r"""Neural networks for the data-driven parts of hybrid right-hand sides.

A right-hand side takes the state ``u`` of shape ``(*batch, *state)``; most networks take one batch
dimension (``nn.Conv2d``: ``(N, C, H, W)``). :class:`StateNetwork` adapts any network
``(N, *state) -> (N, *state)`` to the right-hand-side signature ``forward(t, u, p=None)`` by
flattening the batch dimensions, and checks that the network returns a tensor of the state's shape.

The two architectures are those of APHYNITY (Yin et al., ICLR 2021, appendix): a multilayer
perceptron for ODE states (``MLP``; the pendulum uses two hidden layers of 200 units, ReLU) and a
three-layer convolutional network with 3×3 kernels for fields on a grid (``ConvNet2D``; 16 hidden
channels for reaction–diffusion), with circular padding for periodic domains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "ConvNet2D", "StateNetwork", "as_state_shape"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "softplus": nn.Softplus,
                "silu": nn.SiLU, "rbf": None}


class _RBF(nn.Module):
    r"""The Gaussian radial basis activation :math:`\exp(-x^2)` (the activation of the
    Lotka–Volterra UDE in Rackauckas et al. 2020)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x * x)


def _activation(name: str) -> nn.Module:
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _RBF() if name == "rbf" else _ACTIVATIONS[name]()


def as_state_shape(state_shape, name: str = "state_shape") -> tuple[int, ...]:
    """``state_shape`` as a tuple of positive ints (an int means a 1-d state)."""
    if isinstance(state_shape, int) and not isinstance(state_shape, bool):
        state_shape = (state_shape,)
    try:
        shape = tuple(state_shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of positive ints, got "
                        f"{type(state_shape).__name__}") from None
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                            for s in shape):
        raise ValueError(f"{name}: expected a non-empty tuple of positive ints, got "
                         f"{state_shape!r}")
    return shape


class MLP(nn.Module):
    r"""A multilayer perceptron acting on the last dimension:
    :math:`x \mapsto W_L\,\sigma(\cdots\sigma(W_1 x + b_1)\cdots) + b_L`.

    Args:
        in_features, out_features: input and output widths.
        hidden: width of each hidden layer (``depth`` of them).
        depth: number of hidden layers (≥ 1).
        activation: ``"relu"``, ``"tanh"``, ``"gelu"``, ``"softplus"``, ``"silu"`` or ``"rbf"``.
        init_gain: if given, orthogonal initialisation of the weights with this gain and zero biases
            (APHYNITY initialises its pendulum network with gain 0.2, so that the augmentation
            starts small); otherwise PyTorch's default initialisation.
        dtype, device: of the parameters.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 64, depth: int = 2,
                 activation: str = "relu", init_gain: float | None = None, dtype=None,
                 device=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features),
                            ("hidden", hidden), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        widths = [in_features] + [hidden] * depth + [out_features]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], dtype=dtype, device=device))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
        self.layers = nn.Sequential(*layers)
        self.in_features, self.out_features = in_features, out_features
        if init_gain is not None:
            _orthogonal_init(self, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLP: expected inputs with last dimension {self.in_features}, got "
                             f"shape {tuple(x.shape)}")
        return self.layers(x)


class ConvNet2D(nn.Module):
    r"""A fully convolutional network for fields ``(N, C, H, W) -> (N, C, H, W)``: ``depth``
    hidden 2D convolutions of ``hidden`` channels with ``kernel_size × kernel_size`` kernels and
    ReLU, then a convolution back to ``channels`` (APHYNITY's reaction–diffusion augmentation:
    ``hidden=16``, three layers, 3×3 kernels).

    Args:
        channels: the number of state channels ``C``.
        hidden: hidden channels.
        depth: hidden layers (≥ 1); the network has ``depth + 1`` convolutions.
        kernel_size: odd kernel size (padding keeps ``H × W``).
        padding_mode: ``"circular"`` for periodic domains (default), ``"zeros"``, ``"reflect"``
            or ``"replicate"``.
        init_gain: optional orthogonal initialisation gain (see :class:`MLP`).
    """

    def __init__(self, channels: int, hidden: int = 16, depth: int = 2, kernel_size: int = 3,
                 padding_mode: str = "circular", activation: str = "relu",
                 init_gain: float | None = None, dtype=None, device=None):
        super().__init__()
        for name, value in (("channels", channels), ("hidden", hidden), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected a positive odd int, got {kernel_size!r}")
        if padding_mode not in ("circular", "zeros", "reflect", "replicate"):
            raise ValueError(f"padding_mode: expected 'circular', 'zeros', 'reflect' or "
                             f"'replicate', got {padding_mode!r}")
        widths = [channels] + [hidden] * depth + [channels]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], kernel_size,
                                    padding=kernel_size // 2, padding_mode=padding_mode,
                                    dtype=dtype, device=device))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
        self.layers = nn.Sequential(*layers)
        self.channels = channels
        if init_gain is not None:
            _orthogonal_init(self, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"ConvNet2D: expected inputs (N, {self.channels}, H, W), got shape "
                             f"{tuple(x.shape)}")
        return self.layers(x)


def _orthogonal_init(module: nn.Module, gain: float) -> None:
    if not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain < 0:
        raise ValueError(f"init_gain: expected a non-negative number, got {gain!r}")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)


class StateNetwork(nn.Module):
    r"""A network as an autonomous right-hand side :math:`F_\theta(u)`: ``forward(t, u, p=None)``
    reshapes ``u`` of shape ``(*batch, *state)`` to ``(N, *state)``, applies the network and
    restores the batch dimensions. ``t`` and ``p`` are ignored.

    Args:
        network: a module mapping ``(N, *state_shape)`` to ``(N, *state_shape)``.
        state_shape: the shape of one state (``(2,)`` for the pendulum, ``(C, H, W)`` for a field).
    """

    def __init__(self, network: nn.Module, state_shape: Sequence[int] | int):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network: expected a torch.nn.Module, got {type(network).__name__}")
        self.network = network
        self.state_shape = as_state_shape(state_shape)

    def forward(self, t, u: torch.Tensor, p=None) -> torch.Tensor:
        k = len(self.state_shape)
        if tuple(u.shape[u.ndim - k:]) != self.state_shape or u.ndim < k:
            raise ValueError(f"u: expected shape (*batch, {', '.join(map(str, self.state_shape))})"
                             f" for this network, got {tuple(u.shape)}")
        batch = u.shape[: u.ndim - k]
        out = self.network(u.reshape(-1, *self.state_shape))
        if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != self.state_shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"network: returned {got} for inputs of shape "
                             f"{(u.reshape(-1, *self.state_shape).shape[0], *self.state_shape)}; "
                             f"expected the state shape {self.state_shape} per member")
        return out.reshape(*batch, *self.state_shape)
