r"""The 2D Brusselator reaction–diffusion system (the stiff PDE of DifferentialEquations.jl's
"Solving Large Stiff Equations" tutorial; Hairer & Wanner II, IV.10):

.. math::
    \partial_t U = 1 + U^2 V - 4.4\,U + \alpha \Delta U + f(x, y, t), \qquad
    \partial_t V = 3.4\,U - U^2 V + \alpha \Delta V,

on the periodic unit square, with the forcing :math:`f = 5` inside the disc
:math:`(x-0.3)^2 + (y-0.6)^2 \le 0.1^2` for :math:`t \ge 1.1` and 0 otherwise, and
:math:`U(x, y, 0) = 22\,(y(1-y))^{3/2}`, :math:`V(x, y, 0) = 27\,(x(1-x))^{3/2}`.
The Laplacian is the second-order five-point stencil on the grid :math:`x_i = i/N`. The state is
``(*batch, 2, N, N)`` (channels U, V).

The diffusion part is linear and stiff; :meth:`Brusselator2D.precondition` inverts
:math:`I - h\gamma\alpha\Delta` exactly by FFT (the stencil is diagonal in Fourier space), the
natural preconditioner of a Newton–Krylov solve, and the exact linear solve of an IMEX method
that treats diffusion implicitly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .base import PhysicalModel, _uniform, check_int
from .operators import laplacian

__all__ = ["Brusselator2D"]


class Brusselator2D(PhysicalModel):
    """The 2D Brusselator on an ``n × n`` periodic grid; ``alpha`` is a parameter (learnable
    when named in ``learnable``; unlike the other models none is learnable by default, so the
    tutorial's solves record no autograd graph).

    ``forward(t, u, p)`` is the whole right-hand side; ``diffusion`` and ``reaction`` are its
    stiff and non-stiff parts (for :class:`~pysciml.SplitODEProblem`); ``u0()`` the tutorial's
    initial state; ``precondition(t, u, hgamma, r)`` the FFT preconditioner for
    ``linsolve=GMRES(precond=...)``. The forcing switches on at ``t_forcing = 1.1``: pass
    ``tstops=[1.1]`` to ``solve``. ``alpha`` may hold one value per batch member.

    Random initial states (:meth:`initial_state`): the tutorial's ``U`` and ``V``, each multiplied
    by an independent factor :math:`U[0.8, 1.2]` per member.
    """

    name = "brusselator"
    default_tspan = (0.0, 11.5)
    stiff = True
    parameter_names = ("alpha",)
    parameter_ranges = {"alpha": (1.0, 20.0)}
    t_forcing = 1.1

    def __init__(self, n: int = 32, alpha: float = 10.0, dtype=torch.float64, device=None, *,
                 learnable: Iterable[str] | None = ()):
        super().__init__(dtype=dtype, device=device)
        self.n = check_int("n", n, 3)
        self.dx = 1.0 / n
        self._init_parameters({"alpha": alpha}, learnable, nonnegative=("alpha",))
        x = torch.arange(n, dtype=dtype, device=device) * self.dx
        X, Y = torch.meshgrid(x, x, indexing="ij")
        disc = ((X - 0.3) ** 2 + (Y - 0.6) ** 2) <= 0.1 ** 2
        self.register_buffer("forcing", disc.to(dtype) * 5.0)
        self.register_buffer("U0", 22 * (Y * (1 - Y)) ** 1.5)
        self.register_buffer("V0", 27 * (X * (1 - X)) ** 1.5)
        k = torch.fft.fftfreq(n, d=1.0 / n).to(dtype=dtype, device=device)
        eig1 = (2 * torch.cos(2 * math.pi * k / n) - 2) / self.dx ** 2
        self.register_buffer("laplacian_eigenvalues", eig1[:, None] + eig1[None, :])

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (2, self.n, self.n)

    def u0(self) -> torch.Tensor:
        """The initial state, shape ``(2, n, n)``."""
        return torch.stack([self.U0, self.V0])

    def initial_state(self, batch_shape=(), generator=None) -> torch.Tensor:
        shape = tuple(batch_shape)
        factors = 0.8 + 0.4 * _uniform(shape + (2, 1, 1), generator, self.dtype, self.device)
        return self.u0() * factors

    def default_algorithm(self):
        """QNDF by Newton–Krylov with the FFT preconditioner (no Jacobian is formed)."""
        from ..algorithms import QNDF
        from ..linear_solvers import GMRES

        return QNDF(linsolve=GMRES(precond=self.precondition))

    def laplacian(self, u: torch.Tensor) -> torch.Tensor:
        """The periodic five-point Laplacian over the last two dimensions (second order)."""
        return laplacian(u, (self.dx, self.dx), "periodic")

    def diffusion(self, t, u, p=None) -> torch.Tensor:
        r""":math:`\alpha\Delta(U, V)`: the stiff, linear part."""
        return self._value("alpha", p, trailing=3) * self.laplacian(u)

    def reaction(self, t, u, p=None) -> torch.Tensor:
        """The reaction terms and the forcing: the non-stiff part."""
        U, V = u[..., 0, :, :], u[..., 1, :, :]
        on = (torch.as_tensor(t) >= self.t_forcing).to(u.dtype)[..., None, None]
        uuv = U * U * V
        return torch.stack([1 + uuv - 4.4 * U + self.forcing * on, 3.4 * U - uuv], -3)

    def forward(self, t, u, p=None) -> torch.Tensor:
        self._check_state(u)
        return self.diffusion(t, u, p) + self.reaction(t, u)

    def precondition(self, t, u, hgamma, r) -> torch.Tensor:
        r""":math:`(I - h\gamma\alpha\Delta)^{-1} r` by FFT (exact for the diffusion part)."""
        hg = torch.as_tensor(hgamma, dtype=r.dtype, device=r.device)[..., None, None, None]
        spectrum = torch.fft.fft2(r)
        alpha = self.alpha.reshape(self.alpha.shape + (1, 1, 1)) if self.alpha.ndim else self.alpha
        return torch.fft.ifft2(spectrum / (1 - hg * alpha * self.laplacian_eigenvalues)).real

    def extra_repr(self) -> str:
        return f"n={self.n}, " + super().extra_repr()
