r"""The rotating shallow-water equations in 2D, linear and nonlinear, on an Arakawa C-grid.

Nonlinear (vector-invariant form), with depth :math:`h = H + \eta`:

.. math::
    \partial_t \eta + \nabla\cdot(h\mathbf u) = 0, \qquad
    \partial_t \mathbf u + q\,h\,\hat z\times\mathbf u + \nabla(g\eta + K) = -r\,\mathbf u,
    \qquad q = \frac{f + \zeta}{h}, \quad K = \tfrac12|\mathbf u|^2,

and linearised about rest, :math:`\partial_t\eta + H\nabla\cdot\mathbf u = 0`,
:math:`\partial_t\mathbf u + f\hat z\times\mathbf u + g\nabla\eta = -r\mathbf u`.

**Grid** (Arakawa & Lamb 1977, C-grid): the state ``(*batch, 3, H, W)`` holds
:math:`\eta_{ij}` at cell centres :math:`((i+\frac12)h_x, (j+\frac12)h_y)`, :math:`u_{ij}` on
the west faces :math:`(i h_x, (j+\frac12) h_y)` and :math:`v_{ij}` on the south faces
:math:`((i+\frac12)h_x, j h_y)`; vorticity :math:`\zeta` and :math:`q` live at the corners
:math:`(i h_x, j h_y)`. ``x`` is dimension ``-2``, ``y`` dimension ``-1``.

**Scheme**: second-order centred differences and two-point averages
(:math:`\overline{\,\cdot\,}^x`, :math:`\delta_x`). The nonlinear terms are Sadourny's (1975)
energy-conserving scheme: mass fluxes :math:`U = \overline{h}^x u`, :math:`V = \overline{h}^y v`,

.. math::
    \partial_t\eta = -\delta_x U - \delta_y V, \quad
    \partial_t u = \overline{q\,\overline{V}^x}^y - \delta_x(g\eta + K) - r u, \quad
    \partial_t v = -\overline{q\,\overline{U}^y}^x - \delta_y(g\eta + K) - r v,

with :math:`K = \tfrac12(\overline{u^2}^x + \overline{v^2}^y)` and
:math:`q = (f + \delta_x v - \delta_y u)/\overline{h}^{xy}`; the linear model uses
:math:`f\,\overline{v}^{xy}` and :math:`-f\,\overline{u}^{xy}` (four-point averages, each the
adjoint of the other). Without friction (:math:`r = 0`) the semi-discrete system conserves

* mass :math:`\sum\eta_{ij}\,h_xh_y` exactly (flux form), and
* energy :math:`E = \sum\big(\tfrac12 g\eta^2 + \tfrac12\overline{h}^x u^2
  + \tfrac12\overline{h}^y v^2\big)h_xh_y` (nonlinear; :math:`H` in place of
  :math:`\overline{h}` in the linear model) exactly in continuous time, so a solve conserves it
  to the time integrator's error.

**Boundaries**: ``"periodic"``, or ``"closed"``: free-slip rigid walls on all four sides,
where the normal velocity vanishes (:math:`u_{0j} = 0` and :math:`v_{i0} = 0` are the west and
south walls and stay 0; the east and north walls lie beyond the last cell).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import _uniform
from .grid import GridModel

__all__ = ["ShallowWater2D"]


class ShallowWater2D(GridModel):
    r"""Shallow water on a C-grid, state ``(*batch, 3, H, W)`` = :math:`(\eta, u, v)`.

    Args:
        size, length: the grid (default 64 cells on the unit square).
        gravity: :math:`g > 0`.
        depth: the resting depth :math:`H > 0`.
        coriolis: the Coriolis parameter :math:`f` (f-plane).
        drag: the linear bottom friction rate :math:`r \ge 0`.
        linear: the linearised equations (default ``False``: nonlinear).
        boundary: ``"periodic"`` or ``"closed"`` (free-slip walls).
        learnable: the parameters that require gradients (default: all).

    Random initial states: fluid at rest, :math:`\eta = aH\,b(x)` with :math:`b` one Gaussian
    bump (centre uniform, width :math:`\sigma \sim U[0.05, 0.1]\min(L)`) and
    :math:`a \sim U[0.05, 0.2]`.
    """

    name = "shallow_water"
    default_tspan = (0.0, 1.0)
    stiff = False
    parameter_names = ("gravity", "depth", "coriolis", "drag")
    parameter_ranges = {"gravity": (0.5, 2.0), "depth": (0.5, 2.0), "coriolis": (0.0, 10.0),
                        "drag": (0.0, 0.5)}

    def __init__(self, size=64, length=1.0, gravity=1.0, depth=1.0, coriolis=0.0, drag=0.0,
                 *, linear: bool = False, boundary: str = "periodic", spacing=None,
                 learnable: Iterable[str] | None = None, dtype=None, device=None):
        super().__init__(size, length, boundary, 3, spacing=spacing, dtype=dtype,
                         device=device)
        if not isinstance(linear, bool):
            raise TypeError(f"linear: expected a bool, got {type(linear).__name__}")
        self.linear = linear
        self._init_parameters({"gravity": gravity, "depth": depth, "coriolis": coriolis,
                               "drag": drag}, learnable, positive=("gravity", "depth"),
                              nonnegative=("drag",))
        if boundary == "closed":
            mask = torch.ones(3, *self.size, dtype=self.dtype, device=self.device)
            mask[1, 0, :] = 0  # west wall: u = 0
            mask[2, :, 0] = 0  # south wall: v = 0
            self.register_buffer("wall_mask", mask, persistent=False)
        else:
            self.wall_mask = None

    # -------------------------------------------------------------- C-grid stencils
    def _ahead(self, f, dim, ghost):
        """f at index + 1 along dim (-2: x, -1: y); ``ghost`` 0 (zero) or 1 (replicate)."""
        if self.boundary == "periodic":
            return torch.roll(f, -1, dim)
        edge = f.narrow(dim, f.shape[dim] - 1, 1)
        pad = edge if ghost else torch.zeros_like(edge)
        return torch.cat([f.narrow(dim, 1, f.shape[dim] - 1), pad], dim)

    def _behind(self, f, dim, ghost):
        if self.boundary == "periodic":
            return torch.roll(f, 1, dim)
        edge = f.narrow(dim, 0, 1)
        pad = edge if ghost else torch.zeros_like(edge)
        return torch.cat([pad, f.narrow(dim, 0, f.shape[dim] - 1)], dim)

    def forward(self, t, u, p=None):
        self._check_state(u)
        eta, U_vel, V_vel = u[..., 0, :, :], u[..., 1, :, :], u[..., 2, :, :]
        g = self._value("gravity", p, trailing=2)
        H = self._value("depth", p, trailing=2)
        f = self._value("coriolis", p, trailing=2)
        r = self._value("drag", p, trailing=2)
        hx, hy = self.spacing
        ahead, behind = self._ahead, self._behind
        if self.linear:
            div = ((ahead(U_vel, -2, 0) - U_vel) / hx + (ahead(V_vel, -1, 0) - V_vel) / hy)
            d_eta = -H * div
            v_at_u = V_vel + behind(V_vel, -2, 0)
            v_at_u = (v_at_u + ahead(v_at_u, -1, 0)) / 4
            u_at_v = U_vel + ahead(U_vel, -2, 0)
            u_at_v = (u_at_v + behind(u_at_v, -1, 0)) / 4
            d_u = -g * (eta - behind(eta, -2, 1)) / hx + f * v_at_u - r * U_vel
            d_v = -g * (eta - behind(eta, -1, 1)) / hy - f * u_at_v - r * V_vel
        else:
            h = H + eta
            h_u = (h + behind(h, -2, 1)) / 2  # depth at u points
            h_v = (h + behind(h, -1, 1)) / 2  # depth at v points
            mass_u, mass_v = h_u * U_vel, h_v * V_vel
            d_eta = -((ahead(mass_u, -2, 0) - mass_u) / hx + (ahead(mass_v, -1, 0) - mass_v) / hy)
            zeta = ((V_vel - behind(V_vel, -2, 0)) / hx - (U_vel - behind(U_vel, -1, 0)) / hy)
            h_corner = (h_u + behind(h_u, -1, 1)) / 2
            q = (f + zeta) / h_corner
            X = q * (mass_v + behind(mass_v, -2, 0)) / 2  # q * V averaged to corners
            Y = q * (mass_u + behind(mass_u, -1, 0)) / 2  # q * U averaged to corners
            u2, v2 = U_vel * U_vel, V_vel * V_vel
            K = (u2 + ahead(u2, -2, 0) + v2 + ahead(v2, -1, 0)) / 4
            phi = g * eta + K
            d_u = (X + ahead(X, -1, 0)) / 2 - (phi - behind(phi, -2, 1)) / hx - r * U_vel
            d_v = -(Y + ahead(Y, -2, 0)) / 2 - (phi - behind(phi, -1, 1)) / hy - r * V_vel
        out = torch.stack([d_eta, d_u, d_v], -3)
        return out if self.wall_mask is None else out * self.wall_mask

    # -------------------------------------------------------------- diagnostics
    def mass(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum \eta\,h_xh_y` (the volume anomaly) per member."""
        return self.integral(u[..., 0, :, :])

    def energy(self, u: torch.Tensor) -> torch.Tensor:
        r"""The conserved energy :math:`E` of the scheme, per member (see the module doc)."""
        eta, U_vel, V_vel = u[..., 0, :, :], u[..., 1, :, :], u[..., 2, :, :]
        g = self._value("gravity", None, trailing=2)
        H = self._value("depth", None, trailing=2)
        if self.linear:
            h_u = h_v = H
        else:
            h = H + eta
            h_u = (h + self._behind(h, -2, 1)) / 2
            h_v = (h + self._behind(h, -1, 1)) / 2
        density = 0.5 * g * eta * eta + 0.5 * h_u * U_vel * U_vel + 0.5 * h_v * V_vel * V_vel
        return self.integral(density)

    def initial_state(self, batch_shape=(), generator=None):
        shape = tuple(batch_shape)
        bump = self.gaussian_bumps(shape, generator, (0.05, 0.1))
        a = 0.05 + 0.15 * _uniform(shape + (1, 1), generator, self.dtype, self.device)
        H = self.depth.detach()
        H = H.reshape(H.shape + (1, 1)) if H.ndim else H
        eta = a * H * bump
        zeros = torch.zeros_like(eta)
        return torch.stack([eta, zeros, zeros], -3)
