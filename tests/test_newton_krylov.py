r"""Newton–Krylov: the batched restarted GMRES (``pysciml.native.linsolve.gmres``) and the
implicit methods with ``linsolve=GMRES(...)`` (SDIRK/ESDIRK and the BDF family).

The ODE tests use the method-of-lines heat equation :math:`u_t = D u_{xx}` on ``N = 200``
points (second-order stencil), whose semi-discrete solution is known exactly: the grid
functions :math:`\sin(k\pi x_i)` (Dirichlet) or :math:`\cos(2\pi k x_i)`, :math:`\sin(2\pi k
x_i)` (periodic) are eigenvectors of the stencil with eigenvalues :math:`\lambda_k`, so a sum of
them decays as :math:`\sum_k a_k e^{\lambda_k t}(\cdot)`. The comparison with it measures the
time integration alone (no spatial error).
"""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps
import pysciml.native.bdf as bdf_module
import pysciml.native.sdirk as sdirk_module
from pysciml.native.linsolve import gmres

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: threads only add synchronisation (on a loaded 2-core machine MKL's
    threaded FFT and LU take ~15 ms a call with 2 threads, ~0.02 ms with one)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------- GMRES alone

def _systems(B=4, N=40, seed=0, spread=0.4):
    """Well-conditioned batched systems ``A = I + spread * G / sqrt(N)`` and right-hand sides."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(B, N, N, generator=g, dtype=F64)
    A = torch.eye(N, dtype=F64) + spread * G / math.sqrt(N)
    b = torch.randn(B, N, generator=g, dtype=F64)
    return A, b


def _rms(x):
    return torch.linalg.vector_norm(x, dim=-1) / math.sqrt(x.shape[-1])


def test_gmres_matches_dense_solve():
    A, b = _systems()
    x, converged, matvecs = gmres(lambda v: (A @ v[..., None])[..., 0], b, tol=1e-12,
                                  restart=40)
    ref = torch.linalg.solve(A, b)
    assert bool(converged.all())
    assert _rms(b - (A @ x[..., None])[..., 0]).max() <= 1e-12
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-10)
    assert matvecs <= 40


def test_gmres_preconditioner_cuts_iterations():
    """A right preconditioner close to A^{-1} converges in far fewer products; the exact
    inverse in one."""
    A, b = _systems(spread=0.6)
    matvec = lambda v: (A @ v[..., None])[..., 0]  # noqa: E731
    ref = torch.linalg.solve(A, b)
    _, _, plain = gmres(matvec, b, tol=1e-10, restart=40)
    g = torch.Generator().manual_seed(1)
    M = A + 0.05 * torch.randn(A.shape, generator=g, dtype=F64) / math.sqrt(A.shape[-1])
    near = lambda v: torch.linalg.solve(M, v)  # noqa: E731
    x, converged, with_near = gmres(matvec, b, tol=1e-10, restart=40, precond=near)
    assert bool(converged.all())
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-8)
    exact = lambda v: torch.linalg.solve(A, v)  # noqa: E731
    x, converged, with_exact = gmres(matvec, b, tol=1e-10, restart=40, precond=exact)
    assert bool(converged.all())
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-9)
    assert with_exact == 1 < with_near < plain


def test_gmres_restarts():
    """With a Krylov space too small to converge in one cycle it restarts (and still
    converges); without restarts it reports the members it could not solve."""
    A, b = _systems(N=60, spread=0.8)
    matvec = lambda v: (A @ v[..., None])[..., 0]  # noqa: E731
    ref = torch.linalg.solve(A, b)
    x, converged, matvecs = gmres(matvec, b, tol=1e-10, restart=5, max_restarts=200)
    assert bool(converged.all())
    assert matvecs > 2 * 5  # more than two cycles
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-8)
    _, converged, matvecs = gmres(matvec, b, tol=1e-10, restart=5, max_restarts=0)
    assert not bool(converged.any())
    assert matvecs == 5


def test_gmres_per_member_tolerance_and_zero_rhs():
    """A zero right-hand side gives x = 0 at once; a tolerance per member is honoured."""
    A, b = _systems(B=3)
    b[1] = 0
    tol = torch.tensor([1e-12, 1e-12, 1e-3], dtype=F64)
    x, converged, _ = gmres(lambda v: (A @ v[..., None])[..., 0], b, tol=tol, restart=40)
    assert bool(converged.all())
    assert torch.equal(x[1], torch.zeros_like(x[1]))
    residual = _rms(b - (A @ x[..., None])[..., 0])
    assert bool((residual <= tol * (1 + 1e-6)).all())
    torch.testing.assert_close(x[0], torch.linalg.solve(A[0], b[0]), rtol=0, atol=1e-10)


# ---------------------------------------------------------------- the heat equation

N = 200
T1 = 1.0


class Heat1D:
    r""":math:`u_t = D u_{xx}` on [0, 1] by the three-point stencil, ``bc`` "dirichlet"
    (:math:`u = 0` at both ends, :math:`x_i = i/(N+1)`) or "periodic" (:math:`x_i = i/N`).
    ``D`` may be a tensor of shape ``batch_shape`` (one diffusivity per member)."""

    def __init__(self, bc: str, D=0.1, n: int = N):
        self.bc, self.n = bc, n
        self.D = torch.as_tensor(D, dtype=F64)
        if bc == "dirichlet":
            self.dx = 1.0 / (n + 1)
            self.x = torch.arange(1, n + 1, dtype=F64) * self.dx
            self.modes = [(1, 1.0, "sin"), (3, 0.5, "sin"), (8, 0.2, "sin")]  # k pi x
        else:
            self.dx = 1.0 / n
            self.x = torch.arange(n, dtype=F64) * self.dx
            self.modes = [(0, 1.0, "cos"), (1, 0.8, "cos"), (3, 0.5, "sin"), (7, 0.2, "cos")]

    def laplacian(self, u):
        if self.bc == "dirichlet":
            up = torch.nn.functional.pad(u, (1, 1))
            return (up[..., 2:] - 2 * u + up[..., :-2]) / self.dx ** 2
        return (torch.roll(u, 1, -1) - 2 * u + torch.roll(u, -1, -1)) / self.dx ** 2

    def __call__(self, t, u, p=None):
        return self.D[..., None] * self.laplacian(u)

    def matrix(self):
        """The stencil as a dense ``(N, N)`` matrix (for the exact preconditioner)."""
        return torch.func.jacrev(self.laplacian)(torch.zeros(self.n, dtype=F64))

    def _wave(self, k):
        return math.pi * k if self.bc == "dirichlet" else 2 * math.pi * k

    def _shape(self, k, kind):
        return torch.sin(self._wave(k) * self.x) if kind == "sin" else torch.cos(
            self._wave(k) * self.x)

    def eigenvalue(self, k):
        return (2 * math.cos(self._wave(k) * self.dx) - 2) / self.dx ** 2

    def u0(self):
        return sum(a * self._shape(k, kind) for k, a, kind in self.modes)

    def exact(self, t):
        """The semi-discrete solution at ``t`` (shape ``(*D.shape, N)``)."""
        return sum(a * torch.exp(self.D[..., None] * self.eigenvalue(k) * t)
                   * self._shape(k, kind) for k, a, kind in self.modes)

    def exact_precond(self):
        r"""The exact :math:`(I - h\gamma D L)^{-1} r` (a dense solve; the user's business)."""
        L = self.matrix()
        eye = torch.eye(self.n, dtype=F64)

        def precond(t, u, hgamma, r):
            c = (torch.as_tensor(hgamma, dtype=F64) * self.D)[..., None, None]
            return torch.linalg.solve(eye - c * L, r)

        return precond


def _solve(prob, alg, rtol=1e-6, atol=1e-8, **kwargs):
    sol = ps.solve(prob, alg, saveat=[0.1, 0.5, T1], rtol=rtol, atol=atol, **kwargs)
    assert sol.successful, sol
    return sol


ALGS = {"KenCarp4": ps.KenCarp4, "Kvaerno5": ps.Kvaerno5, "TRBDF2": ps.TRBDF2,
        "QNDF": ps.QNDF}
# max over t in (0.1, 0.5, 1) of max|u - exact| / max|exact|, in units of rtol, measured at
# rtol 1e-6 (dense LU and GMRES alike, both boundary conditions): KenCarp4 2.7, Kvaerno5 2.8,
# TRBDF2 9.8 (second order: more steps, more accumulation), QNDF 1.4. Bounds: about 3x that.
ERROR_BOUND = {"KenCarp4": 10, "Kvaerno5": 10, "TRBDF2": 30, "QNDF": 5}


@pytest.mark.parametrize("bc", ["dirichlet", "periodic"])
@pytest.mark.parametrize("name", list(ALGS))
def test_heat_gmres_matches_dense_and_exact(name, bc):
    """GMRES and dense LU give the same solution (to a fraction of the tolerance), both close to
    the exact one; the Krylov path forms no Jacobian and factorises nothing."""
    heat = Heat1D(bc)
    prob = ps.ODEProblem(heat, heat.u0(), (0.0, T1))
    rtol = 1e-6
    dense = _solve(prob, ALGS[name](), rtol=rtol)
    krylov = _solve(prob, ALGS[name](linsolve=ps.GMRES()), rtol=rtol)
    exact = torch.stack([heat.exact(t) for t in (0.1, 0.5, T1)])
    size = exact.abs().amax(-1)
    err_dense = ((dense.u - exact).abs().amax(-1) / size).max()
    err_krylov = ((krylov.u - exact).abs().amax(-1) / size).max()
    bound = ERROR_BOUND[name] * rtol
    assert err_krylov <= bound, (err_krylov, krylov.stats)
    assert err_dense <= bound, (err_dense, dense.stats)
    # the linear solves differ by GMRES's tolerance (0.1 x the Newton tolerance): measured
    # differences 0.001-0.36 rtol
    assert ((krylov.u - dense.u).abs().amax(-1) / size).max() <= 2 * rtol
    assert krylov.stats.njac == krylov.stats.nfactor == 0
    assert krylov.stats.nlinsolve > 0
    assert dense.stats.njac > 0 and dense.stats.nfactor > 0


@pytest.mark.parametrize("name", ["KenCarp4", "QNDF"])
def test_exact_preconditioner_cuts_matvecs(name):
    """The exact inverse of I - hγJ as preconditioner: each GMRES solve takes one product, so
    far fewer calls of f than unpreconditioned GMRES; the same solution."""
    heat = Heat1D("dirichlet")
    prob = ps.ODEProblem(heat, heat.u0(), (0.0, T1))
    plain = _solve(prob, ALGS[name](linsolve=ps.GMRES()))
    pre = _solve(prob, ALGS[name](linsolve=ps.GMRES(precond=heat.exact_precond())))
    size = heat.exact(T1).abs().max()
    assert (pre.u - plain.u).abs().max() / size <= 1e-7
    # the same steps; f calls are the method's own plus one per Krylov product, and with the
    # exact preconditioner a linear solve takes at most one product (measured: KenCarp4 664
    # calls against 3501, QNDF 378 against 1648)
    assert pre.stats.naccept == plain.stats.naccept
    assert pre.stats.nf <= plain.stats.nf / 2, (pre.stats, plain.stats)
    assert pre.stats.nf - pre.stats.nlinsolve <= plain.stats.nf - plain.stats.nlinsolve


def test_bdf_krylov_batched_members():
    """Members with their own diffusivity (own step sizes, own h/alpha_k in GMRES and in the
    preconditioner) agree with solving each alone."""
    D = torch.tensor([0.05, 0.1, 0.4], dtype=F64)
    heat = Heat1D("dirichlet", D=D)
    u0 = heat.u0().expand(3, N).clone()
    alg = ps.QNDF(linsolve=ps.GMRES(precond=heat.exact_precond()))
    batch = _solve(ps.ODEProblem(heat, u0, (0.0, T1), batch_ndim=1), alg)
    exact = heat.exact(T1)
    # measured 9e-7, 5e-7, 1.0e-5 (the fastest member has decayed 50-fold by t = 1)
    assert ((batch.u[-1] - exact).abs().max(-1).values / exact.abs().max(-1).values).max() <= 3e-5
    for i in range(3):
        alone_heat = Heat1D("dirichlet", D=D[i])
        alone = _solve(ps.ODEProblem(alone_heat, alone_heat.u0(), (0.0, T1)),
                       ps.QNDF(linsolve=ps.GMRES(precond=alone_heat.exact_precond())))
        torch.testing.assert_close(batch.u[:, i], alone.u, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["QNDF", "KenCarp4"])
def test_krylov_never_forms_a_jacobian(name, monkeypatch):
    """A stiff linear system of 32,768 unknowns (a dense Jacobian would take 8.6 GB):
    :math:`u' = -\\lambda \\odot u` with rates from 1 to 10⁴ and the exact (diagonal)
    preconditioner. Every Jacobian routine is patched to fail."""

    def no_jacobian(*args, **kwargs):
        raise AssertionError("a dense Jacobian was requested on the Newton–Krylov path")

    monkeypatch.setattr(bdf_module, "jacobian_of", no_jacobian)
    monkeypatch.setattr(sdirk_module, "_jacobian", no_jacobian)
    n = 32_768
    lam = torch.logspace(0, 4, n, dtype=F64)

    def precond(t, u, hgamma, r):
        return r / (1 + torch.as_tensor(hgamma, dtype=F64) * lam)

    prob = ps.ODEProblem(lambda t, u, p: -lam * u, torch.ones(n, dtype=F64), (0.0, 1.0))
    sol = ps.solve(prob, ALGS[name](linsolve=ps.GMRES(precond=precond)), saveat=[1.0],
                   rtol=1e-6, atol=1e-8)
    assert sol.successful
    assert sol.stats.njac == sol.stats.nfactor == 0
    assert (sol.u[-1] - torch.exp(-lam)).abs().max() <= 1e-5


def test_bdf_linsolve_validation():
    with pytest.raises(TypeError, match="linsolve"):
        ps.QNDF(linsolve="gmres")
    assert "linsolve=GMRES" in repr(ps.QBDF(linsolve=ps.GMRES()))
    assert ps.QNDF(linsolve=ps.LUFactorization()).stepper().krylov is False


# ---------------------------------------------------------------- IMEX (SplitODEProblem)

def test_imex_kencarp4_gmres_matches_implicit_reference():
    r"""Fisher–KPP, :math:`u_t = D u_{xx} + u(1 - u)`, periodic: diffusion implicit by
    GMRES (with and without the exact preconditioner of the linear implicit part), the
    nonlinear reaction explicit; against a fully implicit Kvaerno5 run at rtol 1e-10."""
    heat = Heat1D("periodic", D=0.1)
    u0 = 0.5 + 0.4 * torch.cos(2 * math.pi * heat.x) + 0.1 * torch.sin(6 * math.pi * heat.x)

    def reaction(t, u, p=None):
        return u * (1 - u)

    ref = ps.solve(ps.ODEProblem(lambda t, u, p: heat(t, u) + reaction(t, u), u0, (0.0, T1)),
                   ps.Kvaerno5(), saveat=[0.1, 0.5, T1], rtol=1e-10, atol=1e-12)
    assert ref.successful
    split = ps.SplitODEProblem(heat, reaction, u0, (0.0, T1))
    rtol = 1e-6
    size = ref.u.abs().amax(-1)
    runs = {}
    for label, linsolve in (("gmres", ps.GMRES()),
                            ("precond", ps.GMRES(precond=heat.exact_precond())),
                            ("lu", None)):
        sol = _solve(split, ps.KenCarp4(linsolve=linsolve), rtol=rtol)
        runs[label] = sol
        err = ((sol.u - ref.u).abs().amax(-1) / size).max()
        # measured: 2.6 rtol for all three linear solvers (23 steps)
        assert err <= 10 * rtol, (label, err, sol.stats)
    assert runs["precond"].stats.nf < runs["gmres"].stats.nf
    # IMEX: the step is set by accuracy (the reaction), not by the diffusion's stiffness
    assert runs["gmres"].stats.naccept < 100
