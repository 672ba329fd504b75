"""Problems with known solutions, shared by the tests.

Each :class:`Problem` carries a torch right-hand side ``f(t, u, p)`` in pysciml's convention
(``t`` of shape ``batch_shape``, ``u`` of shape ``(*batch, *state)``), its initial value, time span
and parameters, and an independent reference: the analytic solution where one exists, otherwise
SciPy's ``DOP853`` at tight tolerances (:func:`scipy_reference`), which never calls pysciml.

Sources: the non-stiff DETEST set (Hull, Enright, Fellen & Sedgwick, "Comparing numerical methods
for ordinary differential equations", SIAM J. Numer. Anal. 9 (1972); classes A, B and D), and the
stiff test set (Hairer & Wanner II, Van der Pol and Robertson).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

import pysciml as ps

__all__ = [
    "Problem", "scipy_reference", "numpy_rhs", "kepler_exact", "PROBLEMS", "NONSTIFF",
    "DECAY", "OSCILLATOR", "FORCED", "A2", "A3", "A4", "B1", "LOTKA_VOLTERRA", "KEPLER",
    "RICCATI", "VAN_DER_POL_STIFF", "ROBERTSON", "lotka_volterra", "rel_err",
    "central_differences",
]


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (tensors or arrays)."""
    a = np.asarray(torch.as_tensor(a).detach().cpu(), dtype=np.float64).ravel()
    b = np.asarray(torch.as_tensor(b).detach().cpu(), dtype=np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def central_differences(loss, x0, step: float) -> np.ndarray:
    """d loss / d x at x0 by central differences, component by component."""
    x0 = np.asarray(x0, dtype=np.float64)
    g = np.zeros_like(x0)
    for i in range(x0.size):
        e = np.zeros_like(x0)
        e.flat[i] = step
        g.flat[i] = (loss(x0 + e) - loss(x0 - e)) / (2 * step)
    return g


def _tcol(t: torch.Tensor) -> torch.Tensor:
    """``t`` (shape ``batch_shape``) as a column broadcasting against ``(*batch, N)``."""
    return t[..., None]


@dataclass(frozen=True)
class Problem:
    """A test problem: ``u' = f(t, u, p)``, ``u(t0) = u0`` on ``tspan``, with a reference.

    ``exact(t)`` maps times ``(S,)`` to states ``(S, N)`` (``None``: no closed form; the reference
    is then SciPy's DOP853).
    """

    name: str
    f: Callable[..., torch.Tensor]
    u0: tuple[float, ...]
    tspan: tuple[float, float]
    p: tuple[float, ...] | None = None
    exact: Callable[[np.ndarray], np.ndarray] | None = None
    stiff: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def N(self) -> int:
        return len(self.u0)

    def u0_tensor(self, dtype=None, device=None) -> torch.Tensor:
        return torch.tensor(self.u0, dtype=dtype or torch.get_default_dtype(), device=device)

    def p_tensor(self, dtype=None, device=None) -> torch.Tensor | None:
        if self.p is None:
            return None
        return torch.tensor(self.p, dtype=dtype or torch.get_default_dtype(), device=device)

    def ode_problem(self, dtype=None, device=None, tspan=None, **changes: Any) -> ps.ODEProblem:
        fields = dict(f=self.f, u0=self.u0_tensor(dtype, device),
                      tspan=self.tspan if tspan is None else tspan,
                      p=self.p_tensor(dtype, device))
        fields.update(changes)
        return ps.ODEProblem(**fields)

    def reference(self, ts, *, u0=None, t0=None, p=None) -> np.ndarray:
        """The solution at times ``ts`` (S,), shape ``(S, N)``: analytic when known (and the
        initial value and parameters are the problem's own), SciPy DOP853 otherwise."""
        ts = np.asarray(ts, dtype=np.float64).reshape(-1)
        default = u0 is None and t0 is None and p is None
        if self.exact is not None and default:
            return np.asarray(self.exact(ts), dtype=np.float64).reshape(ts.shape[0], self.N)
        return scipy_reference(
            numpy_rhs(self.f, self.p if p is None else p),
            self.u0 if u0 is None else u0,
            self.tspan[0] if t0 is None else t0, ts)


def numpy_rhs(f: Callable, p: Any) -> Callable[[float, np.ndarray], np.ndarray]:
    """A torch right-hand side ``f(t, u, p)`` as a SciPy one ``fun(t, y)`` (float64, no grad).

    ``p`` may be a numpy array/tuple (made a float64 tensor), a tensor or a pytree (passed as is,
    detached).
    """
    if isinstance(p, (tuple, list, np.ndarray)):
        p_t = torch.as_tensor(np.asarray(p, dtype=np.float64))
    elif isinstance(p, torch.Tensor):
        p_t = p.detach().to(torch.float64).cpu()
    else:
        p_t = p

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = f(torch.tensor(float(t), dtype=torch.float64), torch.from_numpy(y.copy()), p_t)
        return out.detach().cpu().numpy().astype(np.float64)

    return fun


def scipy_reference(fun: Callable, u0, t0: float, ts, *, rtol: float = 1e-13,
                    atol: float = 1e-15) -> np.ndarray:
    """SciPy DOP853 from ``(t0, u0)`` to each time of ``ts`` (monotone in one direction), stepping
    to every time exactly (segment by segment, no dense-output interpolation). Shape ``(S, N)``."""
    ts = np.asarray(ts, dtype=np.float64).reshape(-1)
    y = np.asarray(u0, dtype=np.float64).reshape(-1).copy()
    t = float(t0)
    out = []
    for s in ts:
        if s != t:
            r = solve_ivp(fun, (t, float(s)), y, method="DOP853", rtol=rtol, atol=atol)
            assert r.status == 0, r.message
            y = r.y[:, -1].copy()
            t = float(s)
        out.append(y.copy())
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# Non-stiff problems with analytic solutions
# --------------------------------------------------------------------------------------------


def _decay(t, u, p):
    return -p * u


DECAY = Problem(
    name="decay", f=_decay, u0=(1.0, 2.0), tspan=(0.0, 2.0), p=(0.7,),
    exact=lambda t: np.stack([np.exp(-0.7 * t), 2 * np.exp(-0.7 * t)], -1),
)
"""Linear decay u' = -p u (DETEST A1 with a rate), exact u0 exp(-p t)."""


def _oscillator(t, u, p):
    omega = p[..., 0:1] if p is not None else 1.0
    x, v = u[..., 0:1], u[..., 1:2]
    return torch.cat([v, -omega ** 2 * x], -1)


OSCILLATOR = Problem(
    name="oscillator", f=_oscillator, u0=(1.0, 0.0), tspan=(0.0, 10.0), p=(2.0,),
    exact=lambda t: np.stack([np.cos(2 * t), -2 * np.sin(2 * t)], -1),
)
"""Harmonic oscillator x'' = -omega^2 x, x(0) = 1, x'(0) = 0: x = cos(omega t)."""


def _forced(t, u, p):
    return -u + torch.sin(_tcol(t))


FORCED = Problem(
    name="forced", f=_forced, u0=(1.0,), tspan=(0.0, 5.0),
    exact=lambda t: ((np.sin(t) - np.cos(t)) / 2 + 1.5 * np.exp(-t))[:, None],
)
"""Non-autonomous u' = -u + sin t, u(0) = 1: u = (sin t - cos t)/2 + 3/2 e^{-t}."""


def _a2(t, u, p):
    return -0.5 * u ** 3


A2 = Problem(name="A2", f=_a2, u0=(1.0,), tspan=(0.0, 20.0),
             exact=lambda t: (1 / np.sqrt(1 + t))[:, None])
"""DETEST A2: y' = -y^3/2, y(0) = 1 on [0, 20]; y = 1/sqrt(1 + t)."""


def _a3(t, u, p):
    return u * torch.cos(_tcol(t))


A3 = Problem(name="A3", f=_a3, u0=(1.0,), tspan=(0.0, 20.0),
             exact=lambda t: np.exp(np.sin(t))[:, None])
"""DETEST A3: y' = y cos t, y(0) = 1 on [0, 20]; y = exp(sin t)."""


def _a4(t, u, p):
    return u / 4 * (1 - u / 20)


A4 = Problem(name="A4", f=_a4, u0=(1.0,), tspan=(0.0, 20.0),
             exact=lambda t: (20 / (1 + 19 * np.exp(-t / 4)))[:, None])
"""DETEST A4 (logistic): y' = y/4 (1 - y/20), y(0) = 1 on [0, 20]; y = 20/(1 + 19 e^{-t/4})."""


def _riccati(t, u, p):
    return -2 * _tcol(t) * u ** 2


RICCATI = Problem(name="riccati", f=_riccati, u0=(1.0,), tspan=(0.0, 5.0),
                  exact=lambda t: (1 / (1 + t ** 2))[:, None])
"""y' = -2 t y^2, y(0) = 1: y = 1/(1 + t^2) (non-autonomous and nonlinear)."""


def kepler_exact(t, ecc: float) -> np.ndarray:
    """The two-body orbit of eccentricity ``ecc`` and period 2 pi starting at the pericentre:
    positions and velocities from Kepler's equation E - ecc sin E = t (Newton's method)."""
    t = np.asarray(t, dtype=np.float64)
    E = t + ecc * np.sin(t)
    for _ in range(100):
        dE = (E - ecc * np.sin(E) - t) / (1 - ecc * np.cos(E))
        E = E - dE
        if np.abs(dE).max(initial=0.0) < 1e-16:
            break
    d = 1 - ecc * np.cos(E)
    s = math.sqrt(1 - ecc ** 2)
    return np.stack([np.cos(E) - ecc, s * np.sin(E), -np.sin(E) / d, s * np.cos(E) / d], -1)


def _kepler(t, u, p):
    x, y, vx, vy = u.unbind(-1)
    r3 = (x * x + y * y) ** 1.5
    return torch.stack([vx, vy, -x / r3, -y / r3], -1)


_ECC = 0.5
KEPLER = Problem(
    name="kepler_D3", f=_kepler, u0=tuple(kepler_exact(0.0, _ECC).tolist()), tspan=(0.0, 20.0),
    exact=lambda t: kepler_exact(t, _ECC), meta={"ecc": _ECC},
)
"""DETEST D3: the two-body problem with eccentricity 0.5 on [0, 20], y1(0) = 1 - e,
y4(0) = sqrt((1 + e)/(1 - e)); analytic via Kepler's equation."""


# --------------------------------------------------------------------------------------------
# Non-stiff problems without a closed form (SciPy DOP853 reference)
# --------------------------------------------------------------------------------------------


def _b1(t, u, p):
    y1, y2 = u[..., 0:1], u[..., 1:2]
    return torch.cat([2 * (y1 - y1 * y2), -(y2 - y1 * y2)], -1)


B1 = Problem(name="B1", f=_b1, u0=(1.0, 3.0), tspan=(0.0, 20.0))
"""DETEST B1 (Lotka–Volterra): y1' = 2(y1 - y1 y2), y2' = -(y2 - y1 y2), y(0) = (1, 3)."""


def lotka_volterra(t, u, p):
    """Lotka–Volterra with parameters ``p = (alpha, beta, delta, gamma)`` (shape ``(*batch, 4)``
    or a dict with those keys)."""
    if isinstance(p, dict):
        a, b, d, g = p["alpha"], p["beta"], p["delta"], p["gamma"]
    else:
        a, b, d, g = (p[..., i:i + 1] for i in range(4))
    x, y = u[..., 0:1], u[..., 1:2]
    return torch.cat([a * x - b * x * y, d * x * y - g * y], -1)


LOTKA_VOLTERRA = Problem(name="lotka_volterra", f=lotka_volterra, u0=(1.0, 1.0),
                         tspan=(0.0, 10.0), p=(1.5, 1.0, 1.0, 3.0))
"""x' = alpha x - beta x y, y' = delta x y - gamma y (SciML's tutorial values)."""


# --------------------------------------------------------------------------------------------
# Stiff problems (for explicit methods: they must stop, not hang)
# --------------------------------------------------------------------------------------------


def _van_der_pol(t, u, p):
    mu = p
    x, y = u[..., 0:1], u[..., 1:2]
    return torch.cat([y, mu * ((1 - x ** 2) * y - x)], -1)


VAN_DER_POL_STIFF = Problem(name="van_der_pol_1e6", f=_van_der_pol, u0=(2.0, 0.0),
                            tspan=(0.0, 2.0), p=(1e6,), stiff=True)
"""Van der Pol, x'' = mu ((1 - x^2) x' - x) with mu = 1e6 (very stiff)."""


def _robertson(t, u, p):
    y1, y2, y3 = u[..., 0:1], u[..., 1:2], u[..., 2:3]
    return torch.cat([-0.04 * y1 + 1e4 * y2 * y3,
                      0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2,
                      3e7 * y2 ** 2], -1)


ROBERTSON = Problem(name="robertson", f=_robertson, u0=(1.0, 0.0, 0.0), tspan=(0.0, 1e5),
                    stiff=True)
"""Robertson's chemical kinetics (stiff)."""


NONSTIFF = [DECAY, OSCILLATOR, FORCED, A2, A3, A4, RICCATI, KEPLER, B1, LOTKA_VOLTERRA]
PROBLEMS = NONSTIFF + [VAN_DER_POL_STIFF, ROBERTSON]
