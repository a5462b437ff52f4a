"""Standard errors without a dense inverse: the diagonal of a sparse information matrix's inverse, estimated.

For n items the Fisher covariance is the inverse of an n×n information matrix ``A``. Its diagonal (the squared
standard errors) is all a leaderboard prints, but the exact inverse costs O(n³) time and O(n²) memory — 74.5 GiB
for 100,000 items. The information of Bradley–Terry-type models is a weighted graph Laplacian plus a
non-negative diagonal (the prior), so ``A = BᵀB`` with ``B`` the weighted incidence matrix of the comparison
graph (one row ``√w_ij (e_i − e_j)`` per compared pair, one row ``√p_i e_i`` per prior term). Drawing
``g = Bᵀz`` with ``z`` of independent random signs (±1, mean 0, variance 1: Hutchinson's probes, five times
cheaper to draw than normals) gives ``Cov g = A`` and ``Cov x = A⁻¹`` for ``x = A⁻¹g``, so ``E[x_i²]`` is
the wanted variance; only second moments enter the identities below. With ``y = D⁻¹g`` (``D = diag A``, the
Jacobi approximation) and ``r = x − y``,

.. math::

    \\operatorname{Var}(\\hat\\theta_i - \\bar\\theta) = E[(Cx)_i^2] = \\frac{1 - 2/n}{A_{ii}} + E[r_i^2],
    \\qquad r = Cx - y,

with ``C`` the centring, because ``E[(Cx)_i y_i] = (1 − 1/n)/A_ii`` and ``E[y_i²] = 1/A_ii`` are known
exactly. Only the correction ``E[r_i²]`` is estimated, from K draws solved together by block conjugate
gradients; its relative error is about ``√(2/K)`` of the correction, which is a small part of the variance when
items have many comparisons. The estimate is unbiased, and its own standard error is returned with it.

References:
    Hutchinson, M. F. (1990). A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines. Communications in Statistics — Simulation and Computation 19(2).
    Bekas, C., Kokiopoulou, E. & Saad, Y. (2007). An estimator for the diagonal of a matrix. Applied
    Numerical Mathematics 57(11–12).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pairkit.errors import ConvergenceError, InputError

N_PROBES = 128
"""Most draws for the estimate: the standard error of each variance is then ≈ √(2/128) = 12.5% of its
correction over the Jacobi term."""

FIRST_ROUND = 64
TARGET_MEDIAN, TARGET_MAX = 0.005, 0.02
"""A first round of 64 draws, then rounds doubling the total (up to :data:`N_PROBES`) only while the estimated
relative error of the standard errors is above 0.5% (median) or 2% (largest). 16 draws would meet both targets on
a well-connected graph, but on the 5,000-item random graph of the benchmark their largest error (1.6%) was worse
than the Jacobi approximation's alone (1.1%); with 64 it is 0.7%."""

CG_TOL = 1e-5
"""Relative residual at which the block conjugate gradients stop. The correction is estimated with a relative
standard error of at least √(2/128) ≈ 12.5%, far above what a 10⁻⁵ solve error moves: on 100,000 items the
variances moved by at most 1.6·10⁻⁶ (relative) from 10⁻⁹-level solves, which take 13 steps instead of 8."""


PAIR_BLOCK = 1 << 22
"""Normal numbers drawn at once for the pairs (32 MiB)."""


@dataclass(frozen=True)
class DiagonalEstimate:
    """Estimated variances of the (centred) ratings and the standard error of each estimate."""

    variance: np.ndarray
    variance_se: np.ndarray
    n_probes: int

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(self.variance, 0, None))

    @property
    def relative_error(self) -> np.ndarray:
        """Approximate relative standard error of each standard error (half that of the variance)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.variance > 0, 0.5 * self.variance_se / self.variance, 0.0)


def estimate_inverse_diagonal(info: sp.spmatrix, *, gauge: bool, n_probes: int = N_PROBES, seed: int = 0,
                              tol: float = CG_TOL, max_iter: int | None = None) -> DiagonalEstimate:
    """Estimate ``diag(C A⁻¹ C)`` for a sparse information ``A`` (``C`` centres the ratings).

    ``info`` must be a weighted Laplacian plus a non-negative diagonal (off-diagonal entries ≤ 0, each row's
    diagonal at least the sum of its off-diagonal magnitudes), as the Bradley–Terry information is. With
    ``gauge`` (no prior) ``A`` is singular along ``1`` and the centred covariance is its pseudo-inverse.
    """
    a = sp.csr_matrix(info, dtype=np.float64)
    n = a.shape[0]
    diag = a.diagonal()
    off = sp.triu(a, k=1).tocoo()
    if (off.data > 0).any():
        raise InputError("the sparse standard-error estimate needs non-positive off-diagonal information")
    strength = np.asarray(-(a - sp.diags(diag)).sum(axis=1)).ravel()
    surplus = diag - strength  # the prior's curvature (zero without a prior)
    if (surplus < -1e-9 * np.maximum(diag, 1e-300)).any():
        raise InputError("the sparse standard-error estimate needs a diagonally dominant information matrix")
    surplus = np.clip(surplus, 0, None)
    if (diag <= 0).any():
        raise InputError("an item without information has no finite standard error; use prior > 0")

    rng = np.random.default_rng(seed)
    root = np.sqrt(-off.data)
    incidence = sp.csc_matrix(
        (np.concatenate([root, -root]), (np.concatenate([off.row, off.col]), np.tile(np.arange(off.nnz), 2))),
        shape=(n, off.nnz))
    precond = diag + (1.0 / n if gauge else 0.0)

    # The products in single precision (half the memory traffic of this memory-bound step, 1.9× faster on
    # 100,000 items): their relative error ~1e-7 is far below the solves' tolerance; the iteration is in double.
    a32 = a.astype(np.float32)

    def matvec(p: np.ndarray) -> np.ndarray:
        out = (a32 @ p.astype(np.float32)).astype(np.float64)
        return out + p.mean(axis=0) if gauge else out  # + uuᵀ p: the gauge makes the system definite

    def solve(rhs: np.ndarray) -> np.ndarray:
        return _block_pcg(matvec, rhs, precond, tol=tol, max_iter=max_iter or 10 * n)

    # Rounds of draws: a first small round, more only where the estimate is still imprecise.
    total, total_sq, k = np.zeros(n), np.zeros(n), 0
    for size in _rounds(n_probes):
        g = _draw_gradient(incidence, surplus, size, rng)
        x = solve(g)
        r = (x - x.mean(axis=0)) - g / diag[:, None]  # centred draws minus the Jacobi term
        r2 = r * r
        total += r2.sum(axis=1)
        total_sq += (r2 * r2).sum(axis=1)
        k += size
        c = 1.0 - 1.0 / n  # E[(Cx)_i y_i] = (C D⁻¹)_ii, with or without the gauge
        correction = total / k
        # The standard error of the mean of r_i²: the sample's, but never below the Gaussian value √(2/k)·E[r_i²]
        # (r_i sums many independent terms), taken at an upper bound of E[r_i²] (its estimate plus two of its
        # relative errors): a few draws can underestimate both the correction and its spread for single items.
        gauss = np.sqrt(2.0 / k)
        spread = np.maximum(np.sqrt(np.clip(total_sq / k - correction**2, 0, None) / max(k - 1, 1)),
                            gauss * (1 + 2 * gauss) * correction)
        variance = (2 * c - 1) / diag + correction
        rel = 0.5 * spread / variance
        if np.median(rel) < TARGET_MEDIAN and rel.max() < TARGET_MAX:
            break
    return DiagonalEstimate(variance=variance, variance_se=spread, n_probes=k)


def _rounds(n_probes: int) -> list[int]:
    """Draws per round: :data:`FIRST_ROUND`, then as many as drawn so far (the total doubles), to ``n_probes``."""
    sizes = [min(FIRST_ROUND, n_probes)]
    while sum(sizes) < n_probes:
        sizes.append(min(sum(sizes), n_probes - sum(sizes)))
    return sizes


def _draw_gradient(incidence: sp.csc_matrix, surplus: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` columns of ``Bᵀz`` (covariance ``A``): +√w z on i, −√w z on j for each pair, and √p z for the
    prior, ``z`` random signs; the pairs' signs are drawn a block at a time (bounded memory)."""
    n, n_pairs = incidence.shape
    g = _signs(rng, (n, k)) * np.sqrt(surplus)[:, None]
    block = max(1, PAIR_BLOCK // k)
    for start in range(0, n_pairs, block):
        stop = min(start + block, n_pairs)
        g += incidence[:, start:stop] @ _signs(rng, (stop - start, k))
    return g


def _signs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Independent ±1 with probability ½ each (Rademacher), one random bit per entry."""
    size = shape[0] * shape[1]
    bits = np.unpackbits(np.frombuffer(rng.bytes(-(-size // 8)), dtype=np.uint8), count=size)
    return (1.0 - 2.0 * bits).reshape(shape)


def _block_pcg(matvec, rhs: np.ndarray, diag: np.ndarray, *, tol: float, max_iter: int) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients on every column of ``rhs`` at once (one sparse product per
    step for all columns)."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r / diag[:, None]
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    norm = np.maximum(np.linalg.norm(rhs, axis=0), 1e-300)
    for _ in range(max_iter):
        ap = matvec(p)
        curv = np.einsum("ij,ij->j", p, ap)
        alpha = np.divide(rz, curv, out=np.zeros_like(rz), where=curv > 0)
        x += p * alpha
        r -= ap * alpha
        if np.max(np.linalg.norm(r, axis=0) / norm) < tol:
            return x
        z = r / diag[:, None]
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        p = z + p * beta
        rz = rz_new
    raise ConvergenceError(f"conjugate gradients did not reach {tol:g} in {max_iter} steps for the standard errors")
