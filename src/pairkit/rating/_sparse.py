"""Standard errors without a dense inverse: the diagonal of a sparse information matrix's inverse, estimated.

For n items the Fisher covariance is the inverse of an n×n information matrix ``A``. Its diagonal (the squared
standard errors) is all a leaderboard prints, but the exact inverse costs O(n³) time and O(n²) memory — 74.5 GiB
for 100,000 items — and a sparse factorisation does not help on the random graphs of real comparison data (their
Cholesky factor fills in). The information of Bradley–Terry-type models is a weighted graph Laplacian plus a
non-negative diagonal (the prior), ``A = D − W`` with ``D = diag A`` and ``W ≥ 0`` off the diagonal. Two
unbiased estimators of ``diag(C A⁻¹ C)`` (``C`` centres the ratings) are used, both with exact controls so that
only a small remainder is left to chance:

1. **Neumann-controlled probes** (:func:`_neumann_rounds`, first): ``M = D⁻¹ + D⁻¹WD⁻¹ + D⁻¹WD⁻¹WD⁻¹`` is the
   Neumann series of ``A⁻¹`` to second order, whose centred diagonal is exact in O(non-zeros); Hutchinson's
   random-sign probes ``z`` estimate the rest, ``E[z ⊙ (CA⁻¹C − CMC) z]``, one conjugate-gradient solve per probe.
   The remainder is third order in ``D⁻¹W``, so on a well-connected graph 8 probes give ~0.1%.
2. **Pair-space draws** (:func:`_pair_rounds`, only when the first would need more than ``n_probes`` probes —
   on heavy-tailed graphs, where a hub's small variance is swamped by its coupling, through the centre, to many
   sparse items): ``A = BᵀB`` with ``B`` the weighted incidence matrix of the comparison graph (one row
   ``√w_ij (e_i − e_j)`` per pair, one row ``√p_i e_i`` per prior term); ``g = Bᵀz`` has ``Cov g = A``, so
   ``x = A⁻¹g`` has ``Cov x = A⁻¹``. With ``y = D⁻¹g`` (the Jacobi approximation) and ``r = Cx − y``,

   .. math::

       \\operatorname{Var}(\\hat\\theta_i - \\bar\\theta) = E[(Cx)_i^2] = \\frac{1 - 2/n}{A_{ii}} + E[r_i^2],

   because ``E[(Cx)_i y_i] = (1 − 1/n)/A_ii`` and ``E[y_i²] = 1/A_ii`` are known exactly; only ``E[r_i²]`` is
   estimated. The two estimates are then combined item by item by their inverse variances.

Each estimate comes with its own standard error, reported as the relative error of each standard error.
:data:`MEASURED` states the errors measured against the exact dense inverse on the 5,000-item benchmark cases.

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

MEASURED = (
    "measured against the exact inverse on 5,000 items (prior 1): random graph, 150,000 comparisons — "
    "median 0.06%, max 0.48% with 8 probes (Jacobi alone: max 1.1%); heavy-tailed degrees, 144,475 comparisons "
    "— median 0.02%, max 1.0% with 8 probes + 128 pair-space draws (Jacobi alone: max 29.5%)")
"""The estimate's error against the exact standard errors on the benchmark's 5,000-item cases
(``python benchmarks/bench_scale.py``, the ``SEs`` rows), reported with every estimate
(``Leaderboard.info["se_measured"]`` and the JSON's ``interval_method``)."""

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


FIRST_NEUMANN = 8
"""Draws in the first round of the Neumann-controlled estimate (:func:`_neumann_rounds`)."""

NEUMANN_CG_TOL = 1e-4
"""Relative residual of the solves for the Neumann-controlled draws: on the 5,000-item benchmark graphs the
variances moved by at most 2·10⁻⁵ (relative) from 10⁻⁹-level solves, a tenth of the draws' own error."""

PAIR_BLOCK = 1 << 22
"""Normal numbers drawn at once for the pairs (32 MiB)."""


@dataclass(frozen=True)
class DiagonalEstimate:
    """Estimated variances of the (centred) ratings and the standard error of each estimate."""

    variance: np.ndarray
    variance_se: np.ndarray
    n_probes: int
    method: str = ""

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(self.variance, 0, None))

    @property
    def relative_error(self) -> np.ndarray:
        """Approximate relative standard error of each standard error (half that of the variance)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.variance > 0, 0.5 * self.variance_se / self.variance, 0.0)


def estimate_inverse_diagonal(info, *, gauge: bool, n_probes: int = N_PROBES, seed: int = 0,
                              tol: float = CG_TOL, max_iter: int | None = None) -> DiagonalEstimate:
    """Estimate ``diag(C A⁻¹ C)`` for a sparse information ``A`` (``C`` centres the ratings): a sparse matrix or
    a :class:`~pairkit.rating._pairwise.SymmetricInformation` (a fit's, used as it is).

    ``info`` must be a weighted Laplacian plus a non-negative diagonal (off-diagonal entries ≤ 0, each row's
    diagonal at least the sum of its off-diagonal magnitudes), as the Bradley–Terry information is. With
    ``gauge`` (no prior) ``A`` is singular along ``1`` and the centred covariance is its pseudo-inverse.

    First the Neumann-controlled item probes (:func:`_neumann_rounds`, cheap: no draw over the pairs); when
    their stated error would need more than ``n_probes`` draws to meet the targets (an item whose variance the
    second-order expansion misses, e.g. a hub next to many sparse items), the pair-space draws of the module
    docstring are added and the two unbiased estimates combined by their inverse variances.
    """
    from pairkit.rating._pairwise import SymmetricInformation

    a = SymmetricInformation.from_matrix(info)
    n = a.shape[0]
    diag = a.diagonal()
    off = a.upper.tocoo()
    if (off.data > 0).any():
        raise InputError("the sparse standard-error estimate needs non-positive off-diagonal information")
    strength = np.bincount(off.row, -off.data, n) + np.bincount(off.col, -off.data, n)
    surplus = diag - strength  # the prior's curvature (zero without a prior)
    if (surplus < -1e-9 * np.maximum(diag, 1e-300)).any():
        raise InputError("the sparse standard-error estimate needs a diagonally dominant information matrix")
    surplus = np.clip(surplus, 0, None)
    if (diag <= 0).any():
        raise InputError("an item without information has no finite standard error; use prior > 0")

    rng = np.random.default_rng(seed)
    precond = diag + (1.0 / n if gauge else 0.0)
    # The products in single precision (half the memory traffic of this memory-bound step, 1.9× faster on
    # 100,000 items): their relative error ~1e-7 is far below the solves' tolerance; the iteration is in double.
    a32 = a.astype(np.float32)
    del a

    def product(p: np.ndarray) -> np.ndarray:
        return a32 @ p.astype(np.float32)

    def matvec(p: np.ndarray) -> np.ndarray:
        out = product(p)
        return out + p.mean(axis=0) if gauge else out  # + uuᵀ p: the gauge makes the system definite

    def solve(rhs: np.ndarray, rtol: float) -> np.ndarray:
        return block_pcg(matvec, rhs, precond, tol=rtol, max_iter=max_iter or 10 * n)

    first = _neumann_rounds(product, solve, diag, off, n_probes, rng)
    rel = first.relative_error
    if np.median(rel) < TARGET_MEDIAN and rel.max() < TARGET_MAX:
        return first
    root = np.sqrt(-off.data)
    incidence = sp.csc_matrix(
        (np.concatenate([root, -root]), (np.concatenate([off.row, off.col]), np.tile(np.arange(off.nnz), 2))),
        shape=(n, off.nnz))
    second = _pair_rounds(lambda rhs: solve(rhs, tol), diag, incidence, surplus, n_probes, rng)
    w1 = 1.0 / np.maximum(first.variance_se, 1e-300) ** 2
    w2 = 1.0 / np.maximum(second.variance_se, 1e-300) ** 2
    return DiagonalEstimate(variance=(w1 * first.variance + w2 * second.variance) / (w1 + w2),
                            variance_se=1.0 / np.sqrt(w1 + w2), n_probes=first.n_probes + second.n_probes,
                            method=f"{first.method}, then {second.method}, combined by inverse variance")


def _neumann_rounds(product, solve, diag: np.ndarray, off: sp.coo_matrix, n_probes: int,
                    rng: np.random.Generator) -> DiagonalEstimate:
    """Hutchinson's estimator with the second-order Neumann expansion as an exact control.

    With ``A = D − W`` (``D = diag A``) and ``M = D⁻¹ + D⁻¹WD⁻¹ + D⁻¹WD⁻¹WD⁻¹`` (the series
    ``A⁻¹ = Σ (D⁻¹W)^k D⁻¹`` to second order),

    .. math::

        \\operatorname{diag}(CA^{-1}C) = \\operatorname{diag}(CMC) + E[z \\odot (CA^{-1}C - CMC)\\,z],

    for ``z`` of independent random signs. The first term is exact in O(non-zeros): ``M_ii = 1/D_ii +
    Σ_j W_ij²/(D_ii² D_jj)`` (``W`` has a zero diagonal, so the first-order term adds nothing), and the centring
    needs ``M1`` (two sparse products). The second is averaged over draws, each one conjugate-gradient solve
    with ``Cz``; its per-draw spread ``Σ_{j≠i} (CA^{-1}C − CMC)_ij²`` is third order in ``D⁻¹W``, so
    on a well-connected graph a few draws give the variances to ~0.1%. Rounds of :data:`FIRST_NEUMANN` draws,
    more while the estimated error is above the targets and the rate of the first round says ``n_probes``
    draws will meet them. The error of each variance is the sample standard error of its draws, raised by two
    of its own relative standard errors (a few draws can understate it).

    References:
        Hutchinson (1990) and Bekas, Kokiopoulou & Saad (2007), as in the module docstring; the control
        variate: the Neumann series of the Jacobi splitting (e.g. Saad, Y. (2003). Iterative Methods for
        Sparse Linear Systems, 2nd ed., SIAM, §12.3).
    """
    n = len(diag)
    inv = 1.0 / diag
    w2 = off.data.astype(np.float64) ** 2
    m_diag = inv + inv**2 * (np.bincount(off.row, w2 * inv[off.col], n) + np.bincount(off.col, w2 * inv[off.row], n))

    def w_times(v: np.ndarray) -> np.ndarray:  # W v = D v − A v
        return (diag[:, None] if v.ndim == 2 else diag) * v - product(v)

    def m_times(v: np.ndarray) -> np.ndarray:
        scale = inv[:, None] if v.ndim == 2 else inv
        y = scale * v
        t = w_times(y)
        return y + scale * (t + w_times(scale * t))

    m1 = m_times(np.ones(n))
    exact_part = m_diag - 2.0 * m1 / n + m1.sum() / n**2
    total, total_sq, k = np.zeros(n), np.zeros(n), 0
    variance, spread = exact_part, np.zeros(n)
    limit = n_probes
    while k < limit:
        size = min(FIRST_NEUMANN if k == 0 else k, limit - k)
        z = _signs(rng, (n, size))
        cz = z - z.mean(axis=0)
        r = solve(cz, NEUMANN_CG_TOL) - m_times(cz)
        r -= r.mean(axis=0)
        sample = z * r
        total += sample.sum(axis=1)
        total_sq += (sample * sample).sum(axis=1)
        k += size
        mean = total / k
        sd = np.sqrt(np.clip(total_sq / k - mean**2, 0, None) * k / max(k - 1, 1) / k)
        spread = sd * (1.0 + 2.0 / np.sqrt(2.0 * max(k - 1, 1)))
        variance = exact_part + mean
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(variance > 0, 0.5 * spread / variance, np.inf)
        worst, middle = float(rel.max()), float(np.median(rel))
        if middle < TARGET_MEDIAN and worst < TARGET_MAX:
            break
        # the error falls like 1/√k: stop early when even n_probes draws would not reach the targets
        if k * max(worst / TARGET_MAX, middle / TARGET_MEDIAN) ** 2 > n_probes:
            break
    return DiagonalEstimate(variance=variance, variance_se=spread, n_probes=k,
                            method=f"second-order Neumann series + {k} random-sign probes")


def _pair_rounds(solve, diag: np.ndarray, incidence: sp.csc_matrix, surplus: np.ndarray, n_probes: int,
                 rng: np.random.Generator) -> DiagonalEstimate:
    """The pair-space draws of the module docstring (``g = Bᵀz``, covariance ``A``) with the Jacobi control."""
    n = len(diag)
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
    return DiagonalEstimate(variance=variance, variance_se=spread, n_probes=k,
                            method=f"{k} pair-space draws with the Jacobi control")


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


def block_pcg(matvec, rhs: np.ndarray, diag: np.ndarray, *, tol: float, max_iter: int,
               strict: bool = True) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients on every column of ``rhs`` at once (one sparse product per
    step for all columns); after ``max_iter`` steps raises :class:`ConvergenceError`, or with ``strict=False``
    returns the last iterate (a Newton direction need not be exact: the line search and the gradient check
    decide)."""
    inv = (1.0 / diag)[:, None]
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r * inv
    p = z.copy()
    step = np.empty_like(rhs)
    rz = np.einsum("ij,ij->j", r, z)
    norm2 = np.maximum(np.einsum("ij,ij->j", rhs, rhs), 1e-300)
    for _ in range(max_iter):
        ap = matvec(p)
        curv = np.einsum("ij,ij->j", p, ap)
        alpha = np.divide(rz, curv, out=np.zeros_like(rz), where=curv > 0)
        np.multiply(p, alpha, out=step)
        x += step
        ap *= alpha
        r -= ap
        if np.max(np.einsum("ij,ij->j", r, r) / norm2) < tol * tol:
            return x
        np.multiply(r, inv, out=z)
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        p *= beta
        p += z
        rz = rz_new
    if not strict:
        return x
    raise ConvergenceError(f"conjugate gradients did not reach {tol:g} in {max_iter} steps for the standard errors")
