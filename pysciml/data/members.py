r"""The members of a trajectory data set: which model, which random initial states and parameters.

Every random draw of member :math:`i` comes from generators seeded by
``numpy.random.SeedSequence(seed, spawn_key=(i,))`` (two 64-bit words: one for the initial state,
one for the parameters). A member therefore depends only on ``(seed, i)``: not on the batch or
chunk it is solved in, so an interrupted generation resumes with bitwise the same draws.

Sampled parameters follow the model's own law (``PhysicalModel.sample_parameters``: uniform on
``parameter_ranges``, log-uniform where a range spans more than a factor 100), drawn in float64
before the initial state, which may depend on them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "ModelSpec", "resolve_model", "available_models", "member_generators", "draw_members",
    "sampled_names", "check_seed", "describe_model_kwargs",
]

_REQUIRED = ("state_shape", "initial_state", "default_algorithm", "physical_parameters")


def available_models() -> dict[str, type]:
    """``pysciml.physics.MODELS`` (the registry of named models), or ``{}`` before it exists."""
    try:
        physics = importlib.import_module("pysciml.physics")
    except ImportError:
        return {}
    return dict(getattr(physics, "MODELS", {}))


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: the instance that draws initial states, its registry name, its class
    path and the constructor keywords it was built with (when known)."""

    model: torch.nn.Module
    name: str
    class_path: str
    kwargs: dict[str, Any]


def _check_conforms(model: Any, what: str) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a PhysicalModel (a torch.nn.Module), a registry name or "
                        f"'module:Class', got {what} of type {type(model).__name__}")
    missing = [name for name in _REQUIRED if not hasattr(model, name)]
    if missing:
        raise TypeError(f"model: {type(model).__name__} is not a PhysicalModel: it lacks "
                        f"{', '.join(missing)}")


def _import_class(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model: cannot import module {module_name!r} of {spec!r}: {exc}"
                         ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"model: module {module_name!r} has no attribute {attr!r}") from None


def _json_value(value: Any) -> Any:
    """``value`` as a JSON value, or a ``_Skip`` marker when it has none."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (tuple, list)):
        items = [_json_value(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    return _SKIP


_SKIP = object()


def describe_model_kwargs(model: torch.nn.Module) -> dict[str, Any]:
    """The constructor keywords of ``model`` that can be read back from attributes of the same
    name and written as JSON (used when a model instance, not a name, is given)."""
    try:
        signature = inspect.signature(type(model).__init__)
    except (TypeError, ValueError):
        return {}
    out = {}
    for name, param in signature.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if hasattr(model, name):
            value = _json_value(getattr(model, name))
            if value is not _SKIP:
                out[name] = value
    return out


def _construct(cls: type, label: str, kwargs: Mapping[str, Any]) -> torch.nn.Module:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(p.kind is p.VAR_KEYWORD
                                         for p in signature.parameters.values()):
        known = [n for n, p in signature.parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [n for n in kwargs if n not in known]
        if unknown:
            raise ValueError(f"model_kwargs: {label} has no parameter {unknown[0]!r}; its "
                             f"parameters are: {', '.join(known) or '(none)'}")
    if signature is not None and "dtype" in signature.parameters and "dtype" not in kwargs:
        # draws in float64 whatever torch's default dtype: the data must not depend on it
        kwargs = {**kwargs, "dtype": torch.float64}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "dtype")
        raise ValueError(f"model_kwargs: {label}({shown}) rejected its parameters: {exc}"
                         ) from None


def resolve_model(model: Any, model_kwargs: Mapping[str, Any] | None = None) -> ModelSpec:
    """Resolve ``model`` to an instance.

    Args:
        model: a PhysicalModel instance; a name in ``pysciml.physics.MODELS``; or
            ``"package.module:Class"`` for a model class outside the registry.
        model_kwargs: constructor keywords when ``model`` is a name or a class path (physical
            parameters, grid sizes, ...). Not allowed with an instance.
    """
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs: expected a dict of constructor keywords, got "
                        f"{type(model_kwargs).__name__}")
    kwargs = dict(model_kwargs or {})
    if isinstance(model, str):
        registry = available_models()
        if model in registry:
            cls, label = registry[model], model
        elif ":" in model:
            cls, label = _import_class(model), model
        else:
            known = ", ".join(sorted(registry)) or "(none registered)"
            raise ValueError(f"model: unknown model {model!r}; known models: {known} "
                             f"(or give 'package.module:Class')")
        if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
            raise TypeError(f"model: {label} is not a PhysicalModel class")
        instance = _construct(cls, label, kwargs)
        _check_conforms(instance, repr(model))
        return ModelSpec(instance, str(getattr(cls, "name", label)),
                         f"{cls.__module__}:{cls.__qualname__}", kwargs)
    _check_conforms(model, "an object")
    if kwargs:
        raise ValueError("model_kwargs: only allowed with a model name; configure an instance "
                         "through its constructor")
    cls = type(model)
    return ModelSpec(model, str(getattr(model, "name", cls.__name__)),
                     f"{cls.__module__}:{cls.__qualname__}", describe_model_kwargs(model))


def sampled_names(model: torch.nn.Module, sample_parameters: Any) -> list[str]:
    """The names of the parameters to sample, in sorted order.

    ``sample_parameters``: ``False`` (none), ``True`` (every entry of the model's
    ``parameter_ranges``), or an iterable of names among them.
    """
    if sample_parameters is False or sample_parameters is None:
        return []
    declared = dict(getattr(model, "parameter_ranges", {}) or {})
    if sample_parameters is True:
        names = sorted(declared)
        if not names:
            raise ValueError(f"sample_parameters: {type(model).__name__} declares no "
                             f"parameter_ranges to sample from")
    elif isinstance(sample_parameters, Iterable) and not isinstance(sample_parameters, str):
        names = sorted(set(sample_parameters))
        unknown = [n for n in names if n not in declared]
        if unknown:
            raise ValueError(f"sample_parameters: {type(model).__name__} has no range for "
                             f"{unknown[0]!r}; parameters with ranges: "
                             f"{', '.join(sorted(declared)) or '(none)'}")
    else:
        raise TypeError(f"sample_parameters: expected a bool or parameter names, got "
                        f"{type(sample_parameters).__name__}")
    if not callable(getattr(model, "sample_parameters", None)):
        raise TypeError(f"sample_parameters: {type(model).__name__} has no sample_parameters "
                        f"method (a PhysicalModel has)")
    physical = model.physical_parameters()
    for name in names:
        if name not in physical or physical[name].numel() != 1:
            raise ValueError(f"sample_parameters: {name!r} is not a scalar physical parameter "
                             f"of {type(model).__name__}")
    return names


def member_generators(seed: int, member: int) -> tuple[torch.Generator, torch.Generator]:
    """The (initial state, parameter) generators of member ``member`` (CPU generators)."""
    words = np.random.SeedSequence(seed, spawn_key=(member,)).generate_state(2, dtype=np.uint64)
    gens = []
    for word in words:
        g = torch.Generator()
        g.manual_seed(int(word) & ((1 << 63) - 1))
        gens.append(g)
    return gens[0], gens[1]


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    return int(seed)


def draw_members(sampler: torch.nn.Module, members: range, seed: int, names: list[str]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Initial states ``(len(members), *state_shape)`` and sampled parameters
    ``{name: (len(members),) float64}`` of the given members.

    For each member, the parameters are drawn first, with the model's own law
    (``sampler.sample_parameters``), and set on ``sampler`` (a private copy of the model, which
    this mutates), so that an initial-state law that depends on them (Lorenz-96:
    :math:`x_i = F + \xi_i`) uses the member's values; then ``sampler.initial_state``.
    """
    states, draws = [], []
    with torch.no_grad():
        for i in members:
            g_state, g_param = member_generators(seed, i)
            if names:
                drawn = sampler.sample_parameters((), generator=g_param, dtype=torch.float64)
                values = {k: drawn[k].reshape(()) for k in names}
                for k, v in values.items():
                    getattr(sampler, k).copy_(v)
                draws.append(values)
            u0 = sampler.initial_state(batch_shape=(), generator=g_state)
            if tuple(u0.shape) != tuple(sampler.state_shape):
                raise ValueError(f"model: {type(sampler).__name__}.initial_state returned "
                                 f"shape {tuple(u0.shape)}, expected state_shape "
                                 f"{tuple(sampler.state_shape)}")
            states.append(u0)
    sampled = {k: torch.stack([d[k] for d in draws]) for k in names}
    return torch.stack(states), sampled


def json_dumps(value: Any) -> str:
    """Deterministic JSON for attributes and configuration comparison."""
    return json.dumps(value, sort_keys=True, default=str)
