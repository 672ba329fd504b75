r"""Finite-difference operators on uniform grids, for method-of-lines PDEs.

Conventions. A field on a ``d``-dimensional grid (``d = len(spacing)``, 1 or 2) has shape
``(..., n_1, ..., n_d)``: the last ``d`` dimensions are the grid, axis ``k`` (coordinate
:math:`x_k`, spacing :math:`h_k`) is dimension ``-d + k``; so in 2D ``f[..., i, j]`` is
:math:`f(x_i, y_j)` (``torch.meshgrid(x, y, indexing="ij")``). A vector field has one more
dimension just before the grid, its components: ``v[..., k, i, j]`` is :math:`v_k(x_i, y_j)`.
Leading dimensions broadcast.

Boundaries (:data:`~pysciml.physics.base.BOUNDARIES`):

* ``"periodic"``: :math:`f_{i+n} = f_i`.
* ``"closed"``: a cell-centred grid (point :math:`i` at :math:`(i + \tfrac12) h`) inside walls at
  :math:`0` and :math:`n h`, with ghost cells mirrored across each wall: scalars are even
  (:math:`f_{-1} = f_0`: zero normal gradient, no diffusive flux through a wall), the normal
  component of a vector field is odd (:math:`v_{-1} = -v_0`: it vanishes on the wall, no
  advective flux through it). The flux-form operators (``divergence``, ``laplacian``,
  ``flux_divergence``) then sum to zero over the grid exactly: they conserve the integral.

Orders of accuracy (for smooth fields, in the interior and on periodic grids; observed orders are
checked in ``tests/test_operators.py``):

=====================  =============================================================  =====
operator               stencil                                                        order
=====================  =============================================================  =====
``derivative``         :math:`(f_{i+1} - f_{i-1}) / 2h`                               2
``gradient``           the centred derivative along each axis                          2
``divergence``         :math:`\sum_k (v_{k,i+1} - v_{k,i-1}) / 2h_k`                  2
``laplacian``          :math:`\sum_k (f_{i+1} - 2 f_i + f_{i-1}) / h_k^2` (2d+1 points)  2
``advection_upwind``   :math:`\sum_k v_k^+ (f_i - f_{i-1})/h_k + v_k^- (f_{i+1} - f_i)/h_k`  1
``advection_centred``  :math:`\sum_k v_k (f_{i+1} - f_{i-1}) / 2h_k`                  2
``flux_divergence``    :math:`\sum_k (F_{i+1/2} - F_{i-1/2})/h_k`, centred or upwind  2 / 1
=====================  =============================================================  =====

(:math:`v^+ = \max(v, 0)`, :math:`v^- = \min(v, 0)`.) All operators are linear in the field,
differentiable, and work on any device and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import check_boundary

__all__ = ["ORDER", "shift", "derivative", "gradient", "divergence", "laplacian",
           "advection_upwind", "advection_centred", "flux_divergence"]

ORDER = {"derivative": 2, "gradient": 2, "divergence": 2, "laplacian": 2,
         "advection_upwind": 1, "advection_centred": 2, "flux_divergence/centred": 2,
         "flux_divergence/upwind": 1}
"""The order of accuracy of each operator (on smooth fields)."""


def _spacing(spacing: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(spacing, (int, float)):
        return (float(spacing),)
    spacing = tuple(float(h) for h in spacing)
    if not 1 <= len(spacing) <= 3 or not all(h > 0 for h in spacing):
        raise ValueError(f"spacing: expected 1 to 3 positive grid spacings, got {spacing!r}")
    return spacing


def shift(f: torch.Tensor, offset: int, dim: int, boundary: str,
          parity: int = 1) -> torch.Tensor:
    r"""The field at :math:`i + \text{offset}` (``offset`` = ±1) along ``dim``.

    Periodic grids wrap around; closed grids use a ghost cell mirrored across the wall,
    ``parity`` = +1 (even: :math:`f_{-1} = f_0`), −1 (odd: :math:`f_{-1} = -f_0`) or 0 (zero).
    """
    if boundary == "periodic":
        return torch.roll(f, -offset, dim)
    n = f.shape[dim]
    if offset == 1:
        inner, edge = f.narrow(dim, 1, n - 1), f.narrow(dim, n - 1, 1)
        return torch.cat([inner, _ghost(edge, parity)], dim)
    if offset == -1:
        inner, edge = f.narrow(dim, 0, n - 1), f.narrow(dim, 0, 1)
        return torch.cat([_ghost(edge, parity), inner], dim)
    raise ValueError(f"offset: expected +1 or -1, got {offset!r}")


def _ghost(edge: torch.Tensor, parity: int) -> torch.Tensor:
    if parity == 1:
        return edge
    if parity == -1:
        return -edge
    return torch.zeros_like(edge)


def derivative(f: torch.Tensor, axis: int, spacing: float | Sequence[float],
               boundary: str = "periodic", parity: int = 1) -> torch.Tensor:
    r"""The centred first derivative :math:`(f_{i+1} - f_{i-1})/2h` along grid ``axis``
    (second order); ``parity`` chooses the closed-boundary ghost (see :func:`shift`)."""
    h = _spacing(spacing)
    check_boundary(boundary)
    d = len(h)
    if not 0 <= axis < d:
        raise ValueError(f"axis: expected 0 <= axis < {d}, got {axis!r}")
    dim = axis - d
    ahead, behind = shift(f, 1, dim, boundary, parity), shift(f, -1, dim, boundary, parity)
    return (ahead - behind) / (2 * h[axis])


def gradient(f: torch.Tensor, spacing: float | Sequence[float],
             boundary: str = "periodic") -> torch.Tensor:
    r""":math:`\nabla f` by centred differences (second order): shape ``(..., d, *grid)`` for
    ``f`` of shape ``(..., *grid)``."""
    h = _spacing(spacing)
    return torch.stack([derivative(f, k, h, boundary) for k in range(len(h))], -len(h) - 1)


def divergence(v: torch.Tensor, spacing: float | Sequence[float],
               boundary: str = "periodic") -> torch.Tensor:
    r""":math:`\nabla\cdot v = \sum_k \partial_k v_k` by centred differences (second order); on
    a closed grid the normal components vanish on the walls and the sum over the grid is 0."""
    h = _spacing(spacing)
    d = len(h)
    _check_vector("v", v, d)
    out = derivative(v.select(-d - 1, 0), 0, h, boundary, parity=-1)
    for k in range(1, d):
        out = out + derivative(v.select(-d - 1, k), k, h, boundary, parity=-1)
    return out


def laplacian(f: torch.Tensor, spacing: float | Sequence[float],
              boundary: str = "periodic") -> torch.Tensor:
    r""":math:`\Delta f` by the :math:`(2d+1)`-point stencil (second order); on a closed grid
    no flux crosses the walls (homogeneous Neumann) and the sum over the grid is 0."""
    h = _spacing(spacing)
    check_boundary(boundary)
    d = len(h)
    inverse = [1.0 / hk ** 2 for hk in h]
    out = None
    for k in range(d):  # sum_k (f_{i+1} + f_{i-1}) / h_k^2, then - 2 f sum_k 1/h_k^2
        dim = k - d
        pair = shift(f, 1, dim, boundary) + shift(f, -1, dim, boundary)
        out = pair * inverse[k] if out is None else torch.add(out, pair, alpha=inverse[k])
    return torch.add(out, f, alpha=-2 * sum(inverse))


def advection_upwind(f: torch.Tensor, velocity: torch.Tensor,
                     spacing: float | Sequence[float], boundary: str = "periodic"
                     ) -> torch.Tensor:
    r""":math:`v\cdot\nabla f` by first-order upwind differences: the one-sided difference on
    the side the flow comes from, :math:`v_k^+ (f_i - f_{i-1})/h_k + v_k^- (f_{i+1} - f_i)/h_k`.
    ``velocity`` has shape ``(..., d, *grid)``; its components broadcast against ``f``."""
    h = _spacing(spacing)
    check_boundary(boundary)
    d = len(h)
    _check_vector("velocity", velocity, d)
    out = None
    for k in range(d):
        dim = k - d
        vk = velocity.select(-d - 1, k)
        backward = (f - shift(f, -1, dim, boundary)) / h[k]
        forward = (shift(f, 1, dim, boundary) - f) / h[k]
        term = vk.clamp(min=0) * backward + vk.clamp(max=0) * forward
        out = term if out is None else out + term
    return out


def advection_centred(f: torch.Tensor, velocity: torch.Tensor,
                      spacing: float | Sequence[float], boundary: str = "periodic"
                      ) -> torch.Tensor:
    r""":math:`v\cdot\nabla f = \sum_k v_k (f_{i+1} - f_{i-1})/2h_k` (second order; not
    dissipative, so it needs diffusion or a method whose stability region covers the imaginary
    axis, such as RK4 or Tsit5)."""
    h = _spacing(spacing)
    d = len(h)
    _check_vector("velocity", velocity, d)
    out = None
    for k in range(d):
        term = velocity.select(-d - 1, k) * derivative(f, k, h, boundary)
        out = term if out is None else out + term
    return out


def flux_divergence(f: torch.Tensor, velocity: torch.Tensor,
                    spacing: float | Sequence[float], boundary: str = "periodic",
                    scheme: str = "centred") -> torch.Tensor:
    r""":math:`\nabla\cdot(v f)` in flux form, :math:`\sum_k (F_{k,i+1/2} - F_{k,i-1/2})/h_k`
    with face velocities :math:`v_{i+1/2} = (v_i + v_{i+1})/2` and face values
    :math:`(f_i + f_{i+1})/2` (``scheme="centred"``, second order) or the upwind cell's value
    (``"upwind"``, first order). On a closed grid the wall fluxes are zero, so the sum over the
    grid is 0 (the integral of ``f`` is conserved)."""
    h = _spacing(spacing)
    check_boundary(boundary)
    if scheme not in ("centred", "upwind"):
        raise ValueError(f"scheme: expected 'centred' or 'upwind', got {scheme!r}")
    d = len(h)
    _check_vector("velocity", velocity, d)
    out = None
    for k in range(d):
        dim = k - d
        vk = velocity.select(-d - 1, k)
        vk, fk = torch.broadcast_tensors(vk, f)
        v_face = (vk + shift(vk, 1, dim, boundary, parity=-1)) / 2  # at i + 1/2
        f_next = shift(fk, 1, dim, boundary)
        if scheme == "centred":
            flux = v_face * (fk + f_next) / 2
        else:
            flux = v_face.clamp(min=0) * fk + v_face.clamp(max=0) * f_next
        if boundary == "closed":  # the last face is the wall: no flux
            n = flux.shape[dim]
            flux = torch.cat([flux.narrow(dim, 0, n - 1),
                              torch.zeros_like(flux.narrow(dim, 0, 1))], dim)
        term = (flux - shift(flux, -1, dim, boundary, parity=0)) / h[k]
        out = term if out is None else out + term
    return out


def _check_vector(name: str, v: torch.Tensor, d: int) -> None:
    if v.ndim < d + 1 or v.shape[-d - 1] != d:
        raise ValueError(f"{name}: expected a vector field of shape (..., {d}, *grid) with {d} "
                         f"components, got shape {tuple(v.shape)}")
