r"""Linear solves of the implicit methods: batched dense LU, and matrix-free GMRES.

The implicit families solve :math:`W x = r` with :math:`W = \frac{1}{h\gamma} I - J` (or
:math:`I - h\gamma J`) for every batch member, one factorisation reused over a step's stages
and, where the method allows, over several steps. Factorisation and solves go through
``torch.linalg.lu_factor_ex`` (LAPACK on CPU, cuSOLVER/MAGMA on CUDA) and two triangular solves;
``info`` flags singular matrices without a host synchronisation. (``torch.linalg.lu_solve`` is
not used: it validates the pivots with two host synchronisations per call, which on a GPU
stalls the queue at every stage of every step.) States too large for a dense Jacobian
(≥ 10⁴ unknowns) use :func:`gmres` on Jacobian–vector products instead (Newton–Krylov).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["LUFactors", "lu_factor", "lu_solve", "w_matrix", "gmres", "krylov_solve"]


class LUFactors(NamedTuple):
    """The LU factors of a batch of matrices :math:`W = P L U`: ``LU`` ``(B, N, N)`` holds
    :math:`L` (unit lower, below the diagonal) and :math:`U` (upper); ``P`` ``(B, N, N)`` is
    the permutation matrix; ``singular`` is ``(B,)`` bool."""

    LU: torch.Tensor
    P: torch.Tensor
    singular: torch.Tensor


def w_matrix(J: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`W = \mathrm{diag}(s) - J`, per member: ``J`` ``(B, N, N)``, ``scale`` ``(B,)``
    (:math:`s = 1/(h\gamma)`)."""
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    return scale[:, None, None] * eye - J


UNROLLED_MAX_N = 8
"""Under ``torch.compile``, systems up to this size are factorised and solved by loops written
out element by element (see :func:`lu_factor`, :func:`lu_solve`)."""


def lu_factor(W: torch.Tensor) -> LUFactors:
    """Factorise ``W`` ``(B, N, N)`` with partial pivoting, without synchronising with the
    host. While ``torch.compile`` traces it (``loop="compile"``), small matrices
    (``N <= UNROLLED_MAX_N``) are factorised by the same algorithm written out element by
    element, which the compiler fuses into one kernel instead of two library calls."""
    if torch.compiler.is_compiling() and W.shape[-1] <= UNROLLED_MAX_N:
        return _lu_factor_unrolled(W)
    LU, pivots, info = torch.linalg.lu_factor_ex(W)
    P, _, _ = torch.lu_unpack(LU, pivots, unpack_data=False)
    singular = (info != 0) | ~torch.isfinite(LU.diagonal(dim1=-2, dim2=-1)).all(-1)
    return LUFactors(LU, P, singular)


def _lu_factor_unrolled(W: torch.Tensor) -> LUFactors:
    r"""Gaussian elimination with partial pivoting on columns of shape ``(B,)``
    (Golub & Van Loan, Algorithm 3.4.1): at step :math:`k` the row with the largest
    :math:`|a_{ik}|`, :math:`i \ge k`, is swapped into row :math:`k` (per member, by
    selection), then the multipliers :math:`l_{ik} = a_{ik}/a_{kk}` eliminate column
    :math:`k`. Returns the factors in LAPACK's layout, :math:`W = P L U`."""
    B, N, _ = W.shape
    a = [[W[:, i, j] for j in range(N)] for i in range(N)]
    perm = [torch.full((B,), i, dtype=torch.int64, device=W.device) for i in range(N)]
    for k in range(N):
        best, pivot = a[k][k].abs(), torch.full_like(perm[k], k)
        for i in range(k + 1, N):
            larger = a[i][k].abs() > best
            best = torch.where(larger, a[i][k].abs(), best)
            pivot = torch.where(larger, i, pivot)
        for i in range(k + 1, N):  # swap rows k and i where i is the pivot row
            swap = pivot == i
            for j in range(N):
                a[k][j], a[i][j] = (torch.where(swap, a[i][j], a[k][j]),
                                    torch.where(swap, a[k][j], a[i][j]))
            perm[k], perm[i] = torch.where(swap, perm[i], perm[k]), torch.where(swap, perm[k],
                                                                                  perm[i])
        for i in range(k + 1, N):
            a[i][k] = a[i][k] / a[k][k]
            for j in range(k + 1, N):
                a[i][j] = a[i][j] - a[i][k] * a[k][j]
    LU = torch.stack([torch.stack(row, -1) for row in a], -2)
    # P^T W = L U: row k of P^T picks row perm[k] of W
    P = torch.nn.functional.one_hot(torch.stack(perm, -1), N).to(W.dtype).mT
    diag = LU.diagonal(dim1=-2, dim2=-1)
    singular = (diag == 0).any(-1) | ~torch.isfinite(diag).all(-1)
    return LUFactors(LU, P, singular)


def lu_solve(factors: LUFactors, rhs: torch.Tensor) -> torch.Tensor:
    r"""Solve ``W x = rhs`` for ``rhs`` ``(B, N)`` with the factors of ``W``:
    :math:`L y = P^T r`, then :math:`U x = y` (each triangular solve reads only its triangle of
    ``LU``; the same arithmetic as LAPACK's ``getrs``). While ``torch.compile`` traces it
    (``loop="compile"``), small systems (``N <= UNROLLED_MAX_N``) are solved by the same
    substitutions written out element by element, which the compiler fuses into one kernel
    instead of three library calls per solve."""
    if torch.compiler.is_compiling() and rhs.shape[-1] <= UNROLLED_MAX_N:
        return _lu_solve_unrolled(factors, rhs)
    LU = factors.LU
    y = torch.linalg.solve_triangular(LU, factors.P.mT @ rhs[..., None], upper=False,
                                      unitriangular=True)
    return torch.linalg.solve_triangular(LU, y, upper=True)[..., 0]


def _lu_solve_unrolled(factors: LUFactors, rhs: torch.Tensor) -> torch.Tensor:
    """:func:`lu_solve` by forward and back substitution on columns of shape ``(B,)``."""
    LU, P = factors.LU, factors.P
    N = rhs.shape[-1]
    r = [rhs[:, j] for j in range(N)]
    y = []
    for i in range(N):  # L y = P^T r, L unit lower triangular
        acc = sum(P[:, j, i] * r[j] for j in range(N))
        for j in range(i):
            acc = acc - LU[:, i, j] * y[j]
        y.append(acc)
    x: list = [None] * N
    for i in reversed(range(N)):  # U x = y
        acc = y[i]
        for j in range(i + 1, N):
            acc = acc - LU[:, i, j] * x[j]
        x[i] = acc / LU[:, i, i]
    return torch.stack(x, -1)


def gmres(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *,
          tol: float | torch.Tensor, restart: int = 30, max_restarts: int = 5,
          precond: Callable[[torch.Tensor], torch.Tensor] | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    r"""Solve :math:`A x = b` for every batch member by restarted GMRES (Saad & Schultz 1986).

    ``matvec(v)`` applies :math:`A` to ``(B, N)``; ``precond(v)`` applies a right preconditioner
    :math:`M^{-1}` (GMRES then works on :math:`A M^{-1} z = b`, :math:`x = M^{-1} z`). Each
    member stops when its residual RMS norm is at most ``tol``; orthogonalisation is classical
    Gram–Schmidt applied twice (one matrix product each, stable as modified Gram–Schmidt).
    Costs one host synchronisation per iteration (to stop when every member has converged).

    Returns ``(x, converged (B,), matvecs)``.
    """
    B, N = b.shape
    dtype, device = b.dtype, b.device
    scale = N ** -0.5  # RMS norms
    apply = (lambda v: matvec(precond(v))) if precond is not None else matvec
    x = torch.zeros_like(b)
    tol = torch.as_tensor(tol, dtype=dtype, device=device).expand(B)
    n_matvec = 0
    converged = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_restarts + 1):
        r = b - matvec(x) if n_matvec else b
        n_matvec += int(n_matvec > 0)
        beta = torch.linalg.vector_norm(r, dim=-1)
        converged = beta * scale <= tol
        if bool(converged.all()):
            break
        V = [r / torch.where(beta > 0, beta, 1)[:, None]]  # the Krylov basis, grown lazily
        H = torch.zeros(B, restart + 1, restart, dtype=dtype, device=device)
        g = torch.zeros(B, restart + 1, dtype=dtype, device=device)
        g[:, 0] = beta
        Q = torch.eye(restart + 1, dtype=dtype, device=device).repeat(B, 1, 1)
        cs = torch.zeros(B, restart, dtype=dtype, device=device)
        sn = torch.zeros(B, restart, dtype=dtype, device=device)
        m = restart
        for j in range(restart):
            w = apply(V[j])
            n_matvec += 1
            basis = torch.stack(V)  # (j+1, B, N)
            h = torch.einsum("jbn,bn->bj", basis, w)
            w = w - torch.einsum("jbn,bj->bn", basis, h)
            h2 = torch.einsum("jbn,bn->bj", basis, w)  # second pass (CGS2)
            w = w - torch.einsum("jbn,bj->bn", basis, h2)
            h = h + h2
            hn = torch.linalg.vector_norm(w, dim=-1)
            V.append(w / torch.where(hn > 0, hn, 1)[:, None])
            # the earlier Givens rotations, accumulated in Q, act on rows 0..j of the column
            top = (Q[:, : j + 1, : j + 1] @ h[:, :, None])[..., 0]
            denom = torch.sqrt(top[:, j] ** 2 + hn ** 2)
            denom = torch.where(denom > 0, denom, 1)
            c_j, s_j = top[:, j] / denom, hn / denom
            cs[:, j], sn[:, j] = c_j, s_j
            H[:, :j, j] = top[:, :j]
            H[:, j, j] = denom
            row_j, row_next = Q[:, j].clone(), Q[:, j + 1].clone()
            Q[:, j] = c_j[:, None] * row_j + s_j[:, None] * row_next
            Q[:, j + 1] = -s_j[:, None] * row_j + c_j[:, None] * row_next
            g[:, j + 1] = -sn[:, j] * g[:, j]
            g[:, j] = cs[:, j] * g[:, j]
            if bool((g[:, j + 1].abs() * scale <= tol).all()):
                m = j + 1
                break
        R = H[:, :m, :m]
        diag = R.diagonal(dim1=1, dim2=2)
        R = R + torch.diag_embed(torch.where(diag == 0, 1.0, 0.0).to(dtype))
        y = torch.linalg.solve_triangular(R, g[:, :m, None], upper=True)[..., 0]
        z = torch.einsum("jbn,bj->bn", torch.stack(V[:m]), y)
        x = x + (precond(z) if precond is not None else z)
        converged = g[:, m].abs() * scale <= tol
        if bool(converged.all()):
            break
    return x, converged, n_matvec


def krylov_solve(f: Callable, t: torch.Tensor, u: torch.Tensor, fu: torch.Tensor,
                 hg: torch.Tensor, r: torch.Tensor, scale: torch.Tensor, *,
                 tol: float | torch.Tensor, restart: int = 30, max_restarts: int = 10,
                 precond: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    r"""Solve :math:`(I - h\gamma J)\,x = r` per member by GMRES without forming :math:`J`.

    :math:`J = \partial f/\partial u` at ``(t, u)`` (``fu = f(t, u)``) is applied by the
    directional difference :math:`Jv \approx (f(t, u + \epsilon v) - f(t, u))/\epsilon`,
    :math:`\epsilon = \sqrt{\epsilon_{mach}}\max(\|u\|, 1)/\|v\|` (one call of ``f`` per
    product). GMRES works in the variables scaled by ``scale`` (``atol + rtol|u|``, the norm of
    the Newton test), so that ``tol`` is an RMS residual relative to the tolerances. ``precond``
    is a flattened right preconditioner ``precond(t (B,), u (B, N), hg (B,), r (B, N))``
    :math:`\approx (I - h\gamma J)^{-1} r`. ``hg`` ``(B,)``; ``r``, ``scale`` ``(B, N)``.

    Returns ``(x, converged (B,), matvecs)`` as :func:`~pysciml.native.linsolve.gmres`.
    """
    hgc = hg[:, None]
    root_eps = torch.finfo(r.dtype).eps ** 0.5
    u_size = torch.linalg.vector_norm(u, dim=-1).clamp_min(1.0)

    def matvec(v_hat):
        v = v_hat * scale
        v_size = torch.linalg.vector_norm(v, dim=-1)
        eps = (root_eps * u_size / torch.where(v_size > 0, v_size, 1))[:, None]
        jv = (f(t, u + eps * v) - fu) / eps
        return v_hat - hgc * jv / scale

    scaled_precond = None
    if precond is not None:
        def scaled_precond(z_hat):
            return precond(t, u, hg, z_hat * scale) / scale

    x_hat, converged, matvecs = gmres(matvec, r / scale, tol=tol, restart=restart,
                                      max_restarts=max_restarts, precond=scaled_precond)
    return x_hat * scale, converged, matvecs
