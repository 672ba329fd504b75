r"""Observed orders of accuracy of ``pysciml.physics.operators`` on smooth fields, against
the exact derivatives; conservation on closed grids; bad input.

The observed order between grids of ``n`` and ``2n`` points is
:math:`\log_2(e_n / e_{2n})`, :math:`e` the maximum error over the grid; it must lie within
0.25 of the stated order (:data:`~pysciml.physics.operators.ORDER`) on the two finest pairs.
"""

from __future__ import annotations

import math

import pytest
import torch

from pysciml.physics import operators as op

L = (2.0, 3.0)  # an anisotropic domain: different spacings along x and y
SIZES = (16, 32, 64, 128)
TWO_PI = 2 * math.pi


def grid(n: int, ndim: int = 2):
    """Cell centres of an n^d grid on [0, L) (periodic points, shifted by h/2)."""
    h = tuple(Lk / n for Lk in L[:ndim])
    axes = [(torch.arange(n, dtype=torch.float64) + 0.5) * hk for hk in h]
    return torch.meshgrid(*axes, indexing="ij") if ndim == 2 else (axes[0],), h


def field(x, y):
    """A smooth periodic field with its gradient and Laplacian."""
    a, b = TWO_PI / L[0], TWO_PI / L[1]
    f = torch.sin(a * x) * torch.cos(2 * b * y) + 0.5 * torch.cos(2 * a * x + b * y)
    fx = a * torch.cos(a * x) * torch.cos(2 * b * y) - a * torch.sin(2 * a * x + b * y)
    fy = -2 * b * torch.sin(a * x) * torch.sin(2 * b * y) - 0.5 * b * torch.sin(2 * a * x + b * y)
    lap = (-(a ** 2 + 4 * b ** 2) * torch.sin(a * x) * torch.cos(2 * b * y)
           - 0.5 * (4 * a ** 2 + b ** 2) * torch.cos(2 * a * x + b * y))
    return f, torch.stack([fx, fy]), lap


def velocity(x, y):
    """A smooth periodic velocity field whose components change sign, and its divergence."""
    a, b = TWO_PI / L[0], TWO_PI / L[1]
    vx = torch.cos(a * x + b * y) + 0.3
    vy = torch.sin(a * x) * torch.sin(b * y)
    div = -a * torch.sin(a * x + b * y) + b * torch.sin(a * x) * torch.cos(b * y)
    return torch.stack([vx, vy]), div


def case(name: str, n: int):
    """``(numerical, exact)`` for operator ``name`` on the n x n grid."""
    (x, y), h = grid(n)
    f, grad, lap = field(x, y)
    v, div = velocity(x, y)
    if name == "gradient":
        return op.gradient(f, h), grad
    if name == "derivative":
        return op.derivative(f, 1, h), grad[1]
    if name == "divergence":
        return op.divergence(grad, h), lap  # div(grad f) = lap f
    if name == "laplacian":
        return op.laplacian(f, h), lap
    if name == "advection_upwind":
        return op.advection_upwind(f, v, h), (v * grad).sum(0)
    if name == "advection_centred":
        return op.advection_centred(f, v, h), (v * grad).sum(0)
    if name.startswith("flux_divergence"):
        scheme = name.split("/")[1]
        return op.flux_divergence(f, v, h, scheme=scheme), (v * grad).sum(0) + f * div
    raise KeyError(name)


def observed_orders(name: str) -> list[float]:
    errors = []
    for n in SIZES:
        num, exact = case(name, n)
        errors.append(float((num - exact).abs().max()))
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


@pytest.mark.parametrize("name", sorted(op.ORDER))
def test_observed_order_2d(name):
    orders = observed_orders(name)
    expected = op.ORDER[name]
    print(f"\n{name}: observed orders {[round(o, 3) for o in orders]} (stated {expected})")
    for o in orders[-2:]:
        assert abs(o - expected) <= 0.25, orders


@pytest.mark.parametrize("name", ["derivative", "laplacian", "advection_upwind",
                                  "advection_centred", "flux_divergence/centred",
                                  "flux_divergence/upwind"])
def test_observed_order_1d(name):
    """The same operators on a 1D grid (spacing a 1-tuple), as Burgers1D uses them."""
    errors = []
    k = TWO_PI / L[0]
    for n in SIZES:
        (x,), h = grid(n, ndim=1)
        f, fx, fxx = torch.sin(k * x) + 0.3 * torch.cos(3 * k * x), None, None
        fx = k * torch.cos(k * x) - 0.9 * k * torch.sin(3 * k * x)
        fxx = -k ** 2 * torch.sin(k * x) - 2.7 * k ** 2 * torch.cos(3 * k * x)
        v = (0.2 + torch.cos(k * x))[None]
        dv = -k * torch.sin(k * x)
        if name == "derivative":
            num, exact = op.derivative(f, 0, h), fx
        elif name == "laplacian":
            num, exact = op.laplacian(f, h), fxx
        elif name == "advection_upwind":
            num, exact = op.advection_upwind(f, v, h), v[0] * fx
        elif name == "advection_centred":
            num, exact = op.advection_centred(f, v, h), v[0] * fx
        else:
            num = op.flux_divergence(f, v, h, scheme=name.split("/")[1])
            exact = v[0] * fx + f * dv
        errors.append(float((num - exact).abs().max()))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    for o in orders[-2:]:
        assert abs(o - op.ORDER[name]) <= 0.25, orders


def test_laplacian_closed_is_second_order_for_neumann_fields():
    r"""On a closed (cell-centred, mirrored-ghost) grid the Laplacian of a field with zero normal
    derivative on the walls, :math:`\cos(\pi x/L_x)\cos(2\pi y/L_y)`, converges at order 2
    up to the walls."""
    errors = []
    for n in SIZES:
        (x, y), h = grid(n)
        a, b = math.pi / L[0], 2 * math.pi / L[1]
        f = torch.cos(a * x) * torch.cos(b * y)
        exact = -(a ** 2 + b ** 2) * f
        errors.append(float((op.laplacian(f, h, "closed") - exact).abs().max()))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert all(abs(o - 2) <= 0.25 for o in orders[-2:]), orders


def test_closed_flux_forms_conserve():
    """On a closed grid no flux crosses the walls: divergence, Laplacian and flux divergence
    (both schemes) of random fields sum to zero (to round-off), while on the same fields the
    periodic and closed results differ (the walls do act)."""
    g = torch.Generator().manual_seed(0)
    f = torch.rand(3, 20, 24, generator=g)
    v = torch.randn(3, 2, 20, 24, generator=g)
    h = (0.1, 0.2)
    outputs = {
        "divergence": op.divergence(v, h, "closed"),
        "laplacian": op.laplacian(f, h, "closed"),
        "flux/centred": op.flux_divergence(f, v, h, "closed", "centred"),
        "flux/upwind": op.flux_divergence(f, v, h, "closed", "upwind"),
    }
    for name, out in outputs.items():
        scale = out.abs().max()
        total = out.sum((-2, -1)).abs().max()
        assert float(total) < 1e-12 * float(scale) * out[0].numel(), name
    assert float((op.laplacian(f, h, "periodic") - outputs["laplacian"]).abs().max()) > 1


def test_upwind_is_monotone():
    """Upwind advection of a step never creates a new extremum in one explicit Euler step
    under the CFL condition, where the centred scheme does."""
    f = (torch.arange(32) % 32 < 10).to(torch.float64)[None].expand(4, 32).clone()
    v = torch.full((2, 4, 32), 1.0)
    h, dt = (1.0, 1.0), 0.5
    up = f - dt * op.advection_upwind(f, v, h)
    ce = f - dt * op.advection_centred(f, v, h)
    assert float(up.max()) <= 1 and float(up.min()) >= 0
    assert float(ce.max()) > 1 or float(ce.min()) < 0


def test_bad_input():
    f = torch.zeros(8, 8)
    with pytest.raises(ValueError, match="boundary: expected one of"):
        op.laplacian(f, (1.0, 1.0), "reflective")
    with pytest.raises(ValueError, match="velocity: expected a vector field"):
        op.advection_upwind(f, torch.zeros(3, 8, 8), (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing: expected"):
        op.gradient(f, (1.0, -1.0))
    with pytest.raises(ValueError, match="scheme: expected"):
        op.flux_divergence(f, torch.zeros(2, 8, 8), (1.0, 1.0), scheme="weno")
    with pytest.raises(ValueError, match="axis: expected"):
        op.derivative(f, 2, (1.0, 1.0))


def _even(f: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The mirror extension of a field on [0, L] to the periodic [0, 2L] (even about x = 0)."""
    return torch.cat([f, f.flip(dim)], dim)


def _odd(f: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.cat([f, -f.flip(dim)], dim)


def test_closed_is_the_mirror_extended_periodic_grid():
    r"""A closed (cell-centred) grid on :math:`[0, L]` is the periodic grid on :math:`[0, 2L]`
    with mirrored fields: scalars even, normal velocity odd. Each operator on the closed grid
    equals the periodic operator on the extension, restricted to :math:`[0, L]`."""
    g = torch.Generator().manual_seed(0)
    n, h = 12, (0.3,)
    f = torch.rand(2, n, generator=g)
    v = torch.randn(2, 1, n, generator=g)
    fe, ve = _even(f), _odd(v)

    def same(closed, periodic):
        torch.testing.assert_close(closed, periodic[..., :n], rtol=1e-13, atol=1e-13)

    same(op.laplacian(f, h, "closed"), op.laplacian(fe, h))
    same(op.derivative(f, 0, h, "closed"), op.derivative(fe, 0, h))
    same(op.divergence(v, h, "closed"), op.divergence(ve, h))
    for scheme in ("centred", "upwind"):
        same(op.flux_divergence(f, v, h, "closed", scheme), op.flux_divergence(fe, ve, h,
                                                                              scheme=scheme))
    same(op.advection_upwind(f, v, h, "closed"), op.advection_upwind(fe, ve, h))
    same(op.advection_centred(f, v, h, "closed"), op.advection_centred(fe, ve, h))
    # 2D: mirrored along both axes
    F = torch.rand(3, 10, 7, generator=g)
    FE = _even(_even(F, -1), -2)
    torch.testing.assert_close(op.laplacian(F, (0.1, 0.2), "closed"),
                               op.laplacian(FE, (0.1, 0.2))[..., :10, :7], rtol=1e-13,
                               atol=1e-13)
