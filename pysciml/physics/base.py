r"""The common interface of pysciml's physical models.

A :class:`PhysicalModel` is an ``nn.Module`` right-hand side ``forward(t, u, p=None) -> du/dt``
for a state of shape ``(*batch, *state_shape)``. Its named physical parameters are constructor
keywords stored as ``nn.Parameter`` attributes of the same name, so that

.. code-block:: python

    model = Lorenz96(n=40, forcing=8.0)           # model.forcing is an nn.Parameter
    prob = model.ode_problem(model.initial_state((16,)))
    sol = ps.solve(prob, model.default_algorithm(), saveat=...)

and gradients of a loss on ``sol.u`` reach ``model.forcing.grad``. A parameter may be a number
(shared by the batch) or a tensor of shape ``batch_shape`` (one value per batch member); it is
broadcast against the state. ``learnable=`` names the parameters that require gradients (default:
all of them). ``forward``'s ``p`` may be a dict ``{name: tensor}`` that overrides stored values
for one call (the values then broadcast in the same way).

The registry :data:`MODELS` (in :mod:`pysciml.physics`) maps each class's ``name`` to the class.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from ..problem import ODEProblem

__all__ = ["PhysicalModel", "BOUNDARIES", "check_boundary", "grid_spacing",
           "smooth_random_field"]

BOUNDARIES = ("periodic", "closed")


class PhysicalModel(torch.nn.Module, abc.ABC):
    r"""A differentiable right-hand side :math:`du/dt = f(t, u; \theta)` with named parameters.

    Class attributes (every concrete model sets them):

    * ``name``: the registry key, e.g. ``"lorenz96"``;
    * ``default_tspan``: a time span that shows the model's typical behaviour;
    * ``stiff``: whether an implicit method is the recommended family;
    * ``parameter_names``: the named physical parameters, in order;
    * ``parameter_ranges``: ``{name: (low, high)}`` for random sampling
      (:meth:`sample_parameters`).
    """

    name: ClassVar[str]
    default_tspan: ClassVar[tuple[float, float]]
    stiff: ClassVar[bool]
    parameter_names: ClassVar[tuple[str, ...]] = ()
    parameter_ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
        dtype = dtype or torch.get_default_dtype()
        # a 0-d buffer that follows .to(): the dtype and device of everything the model creates
        self.register_buffer("_anchor", torch.zeros((), dtype=dtype, device=device),
                             persistent=False)

    # ------------------------------------------------------------------ the interface
    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """The shape of one member's state (without batch dimensions)."""

    @abc.abstractmethod
    def forward(self, t: torch.Tensor, u: torch.Tensor, p: Any = None) -> torch.Tensor:
        """The time derivative ``du/dt`` at ``(t, u)``, of the shape of ``u``."""

    @abc.abstractmethod
    def initial_state(self, batch_shape: Iterable[int] = (),
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """A random initial state of shape ``(*batch_shape, *state_shape)`` (the law is given
        in each model's docstring)."""

    def default_algorithm(self):
        """The recommended algorithm: ``Rodas5P()`` for a stiff model, ``Tsit5()`` otherwise."""
        from ..algorithms import Rodas5P, Tsit5

        return Rodas5P() if self.stiff else Tsit5()

    # ------------------------------------------------------------------ conveniences
    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """The named physical parameters (the ``nn.Parameter`` objects themselves)."""
        return {name: getattr(self, name) for name in self.parameter_names}

    def ode_problem(self, u0: torch.Tensor | None = None,
                    tspan: tuple[Any, Any] | None = None) -> ODEProblem:
        """The :class:`~pysciml.ODEProblem` of this model from ``u0`` (default: one random
        state from :meth:`initial_state`) over ``tspan`` (default ``default_tspan``); the
        leading dimensions of ``u0`` beyond ``state_shape`` are batch dimensions."""
        if u0 is None:
            u0 = self.initial_state()
        if not isinstance(u0, torch.Tensor):
            raise TypeError(f"u0: expected a tensor, got {type(u0).__name__}")
        shape = tuple(self.state_shape)
        if u0.ndim < len(shape) or tuple(u0.shape[u0.ndim - len(shape):]) != shape:
            raise ValueError(f"u0: expected shape (*batch, {', '.join(map(str, shape))}), got "
                             f"{tuple(u0.shape)}")
        return ODEProblem(self, u0, tspan or self.default_tspan,
                          batch_ndim=u0.ndim - len(shape))

    @classmethod
    def sample_parameters(cls, batch_shape: Iterable[int] = (),
                          generator: torch.Generator | None = None,
                          dtype: torch.dtype | None = None,
                          device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Parameters drawn independently and uniformly from ``parameter_ranges`` (log-uniformly
        where a range spans more than a factor 100), each of shape ``batch_shape``: pass them as
        constructor keywords to get a batch of different systems."""
        shape = tuple(batch_shape)
        out = {}
        for name, (low, high) in cls.parameter_ranges.items():
            r = _uniform(shape, generator, dtype, device)
            if low > 0 and high / low > 100:
                out[name] = torch.exp(math.log(low) + r * (math.log(high) - math.log(low)))
            else:
                out[name] = low + r * (high - low)
        return out

    def extra_repr(self) -> str:
        parts = []
        for name, value in self.physical_parameters().items():
            value = value.detach()
            if value.numel() == 1:
                parts.append(f"{name}={float(value):g}")
            else:
                parts.append(f"{name}=<tensor {tuple(value.shape)}>")
        return ", ".join(parts)

    # ------------------------------------------------------------------ for subclasses
    def _init_parameters(self, values: Mapping[str, Any], learnable: Iterable[str] | None,
                         positive: Iterable[str] = (), nonnegative: Iterable[str] = ()) -> None:
        """Store ``values`` as ``nn.Parameter`` attributes (requires_grad for the names in
        ``learnable``, all when ``None``), checking signs once here."""
        names = tuple(values)
        if learnable is None:
            chosen = set(names)
        else:
            if isinstance(learnable, str):
                learnable = (learnable,)
            chosen = set(learnable)
            unknown = chosen - set(names)
            if unknown:
                raise ValueError(f"learnable: unknown parameter(s) {sorted(unknown)} for "
                                 f"{type(self).__name__}; expected names among {list(names)}")
        positive, nonnegative = set(positive), set(nonnegative)
        for name, value in values.items():
            tensor = _parameter_tensor(name, value, self.dtype, self.device)
            if name in positive and not bool((tensor > 0).all()):
                raise ValueError(f"{name}: expected a positive value, got {_show(tensor)}")
            if name in nonnegative and not bool((tensor >= 0).all()):
                raise ValueError(f"{name}: expected a non-negative value, got {_show(tensor)}")
            setattr(self, name, torch.nn.Parameter(tensor, requires_grad=name in chosen))

    def _value(self, name: str, p: Any, trailing: int = 0) -> torch.Tensor:
        """Parameter ``name`` (from the override dict ``p`` if it holds it), with ``trailing``
        singleton dimensions appended so that a per-member value broadcasts against a state
        with that many dimensions."""
        if p is not None:
            if not isinstance(p, Mapping):
                raise TypeError(f"p: {type(self).__name__} takes None or a dict of parameter "
                                f"overrides {{name: tensor}}, got {type(p).__name__}")
            value = p.get(name)
            if value is None:
                value = getattr(self, name)
            elif not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=self.dtype, device=self.device)
        else:
            value = getattr(self, name)
        if trailing and value.ndim:
            value = value.reshape(value.shape + (1,) * trailing)
        return value

    def _check_state(self, u: torch.Tensor) -> None:
        """Raise if ``u`` does not end in ``state_shape`` (cheap: shapes only)."""
        shape = tuple(self.state_shape)
        if u.ndim < len(shape) or tuple(u.shape[u.ndim - len(shape):]) != shape:
            raise ValueError(f"u: expected shape (*batch, {', '.join(map(str, shape))}) for "
                             f"{type(self).__name__}, got {tuple(u.shape)}")


# ---------------------------------------------------------------------- helpers
def _show(tensor: torch.Tensor) -> str:
    if tensor.numel() == 1:
        return f"{float(tensor):g}"
    return f"a tensor with min {float(tensor.min()):g}"


def _parameter_tensor(name: str, value: Any, dtype, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not (value.dtype.is_floating_point or value.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name}: expected a real number or a real tensor, got a tensor of "
                            f"{value.dtype}")
        tensor = value.detach().to(dtype=dtype, device=device).clone()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        tensor = torch.tensor(float(value), dtype=dtype, device=device)
    else:
        raise TypeError(f"{name}: expected a real number or a tensor, got "
                        f"{type(value).__name__}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name}: expected finite values")
    return tensor


def _uniform(shape, generator, dtype, device) -> torch.Tensor:
    """Uniform [0, 1) draws made on the generator's device, then moved to ``device``."""
    dtype = dtype or torch.get_default_dtype()
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


def _normal(shape, generator, dtype, device) -> torch.Tensor:
    dtype = dtype or torch.get_default_dtype()
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


def check_boundary(boundary: Any) -> str:
    """``boundary`` if it is one of :data:`BOUNDARIES`, else a ValueError."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary: expected one of {BOUNDARIES}, got {boundary!r}")
    return boundary


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def grid_spacing(size: Any, length: Any, ndim: int, minimum: int = 4
                 ) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    """Validate a grid: ``size`` (an int or ``ndim`` ints, points per dimension) and ``length``
    (a number or ``ndim`` numbers, the domain's extent); returns ``(size, length, spacing)``
    with ``spacing = length / size`` (cell-centred or periodic grids)."""
    sizes = (size,) * ndim if isinstance(size, numbers.Integral) else tuple(size)
    if len(sizes) != ndim:
        raise ValueError(f"size: expected an int or {ndim} ints, got {size!r}")
    sizes = tuple(check_int("size", s, minimum) for s in sizes)
    lengths = (length,) * ndim if isinstance(length, numbers.Real) else tuple(length)
    if len(lengths) != ndim or not all(isinstance(x, numbers.Real) and x > 0
                                       and math.isfinite(x) for x in lengths):
        raise ValueError(f"length: expected a positive number or {ndim} positive numbers, got "
                         f"{length!r}")
    lengths = tuple(float(x) for x in lengths)
    return sizes, lengths, tuple(L / n for L, n in zip(lengths, sizes, strict=True))


def smooth_random_field(shape: tuple[int, ...], grid: tuple[int, ...],
                        correlation: float, generator: torch.Generator | None = None,
                        dtype=None, device=None) -> torch.Tensor:
    r"""Periodic Gaussian random fields of shape ``(*shape, *grid)`` with zero mean and unit
    variance over the grid: white noise filtered by :math:`\exp(-|k|^2 \ell^2 / 2)` in Fourier
    space, :math:`\ell` = ``correlation`` in grid cells, then normalised per field."""
    noise = _normal(tuple(shape) + tuple(grid), generator, dtype, device)
    dims = tuple(range(-len(grid), 0))
    k2 = 0
    for i, n in enumerate(grid):
        k = 2 * math.pi * torch.fft.fftfreq(n, dtype=noise.dtype, device=noise.device)
        k = k.reshape((n,) + (1,) * (len(grid) - 1 - i))
        k2 = k2 + k ** 2
    spectrum = torch.fft.fftn(noise, dim=dims) * torch.exp(-k2 * correlation ** 2 / 2)
    field = torch.fft.ifftn(spectrum, dim=dims).real
    field = field - field.mean(dim=dims, keepdim=True)
    return field / field.std(dim=dims, keepdim=True).clamp_min(torch.finfo(field.dtype).tiny)
