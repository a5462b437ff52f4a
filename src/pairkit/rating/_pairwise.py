"""A safeguarded Newton solver shared by every pairwise rating model.

A pairwise model is described by rows ``k`` comparing item ``i[k]`` with item ``j[k]``; the rows' linear
predictor is ``d[k] = θ[i[k]] − θ[j[k]] + X[k] · β`` (``X`` holds covariates such as an order flag or style
features) and the model supplies, for every row, the log-likelihood and its derivatives with respect to ``d``
and to a few extra parameters ``η`` (tie parameters). Everything else — assembling the gradient and Hessian
over items without Python loops, Newman's prior of virtual games, a ridge on ``β``, the gauge of the
shift-invariant ratings, a backtracking line search, the convergence check on the gradient and the
covariance (Fisher or cluster-robust sandwich) — is done once here.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import special

from pairkit.errors import ConvergenceError, InputError, IntervalWarning

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - a core dependency; kept optional for vendored installs
    threadpool_limits = None

SPARSE_SE_LIMIT = 2500
"""Above this many items Bradley–Terry standard errors are estimated from the sparse information
(:mod:`pairkit.rating._sparse`) instead of a dense inverse; no covariance is kept."""

MAX_DENSE_SIZE = 12_000
"""Models whose Newton system is dense (tie parameters, covariates) refuse more parameters than this: the
system alone would take over a gigabyte and each factorisation minutes."""

DENSE_LIMIT = 4000
"""Above this many parameters the Newton system is solved by preconditioned conjugate gradients."""

SINGLE_THREAD_LIMIT = 2000
"""Dense systems up to this size are factorised with one BLAS thread: a multi-threaded OpenBLAS pool gains
little at this size and, on a busy machine, was measured 10–100× slower (threads spin waiting for cores)."""


def check_dense_size(size: int, model: str = "this model") -> None:
    """Raise :class:`InputError` before a dense ``size``×``size`` system above :data:`MAX_DENSE_SIZE` is formed,
    naming the size supported and the model that scales further."""
    if size > MAX_DENSE_SIZE:
        raise InputError(
            f"{model} solves a dense {size:,}×{size:,} system (its tie, order or noise parameters couple every "
            f"item), {size * size * 8 / 2**30:,.1f} GiB per matrix; it supports up to {MAX_DENSE_SIZE:,} items. "
            "Bradley–Terry with ties as half wins (model 'bt', the default) fits and estimates standard errors "
            "from sparse pair counts to 10⁶ items; or rate a subset of the items")


def blas_threads_for(size: int):
    """A context manager limiting BLAS to one thread for small dense solves (a no-op otherwise).

    The libraries are found once (:func:`_blas_controller`): ``threadpool_limits`` scans every loaded library on each
    call, which cost ~11 ms — half of a small Bradley–Terry fit."""
    import contextlib

    if threadpool_limits is None or size > SINGLE_THREAD_LIMIT:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@dataclass(frozen=True)
class RowDerivatives:
    """Per-row log-likelihood and derivatives returned by a model function.

    ``l_eta`` has shape (K, p), ``l_d_eta`` (K, p) and ``l_eta_eta`` (K, p, p); for p = 0 they may be None.
    """

    loglik: np.ndarray
    l_d: np.ndarray
    l_dd: np.ndarray
    l_eta: np.ndarray | None = None
    l_d_eta: np.ndarray | None = None
    l_eta_eta: np.ndarray | None = None


ModelFunction = Callable[[np.ndarray, np.ndarray, dict], RowDerivatives]


@dataclass(frozen=True)
class PairwiseDesign:
    """Rows of a pairwise model: item indices, optional covariates and the model's per-row statistics."""

    n_items: int
    i: np.ndarray
    j: np.ndarray
    stats: dict[str, np.ndarray]
    X: np.ndarray | None = None

    @property
    def n_covariates(self) -> int:
        return 0 if self.X is None else self.X.shape[1]


@dataclass
class PairwiseFit:
    """Result of :func:`fit_pairwise`: parameters, log-likelihood, curvature and diagnostics."""

    theta: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    loglik: float
    objective: float
    n_iter: int
    gradient_norm: float
    information: np.ndarray | None = field(default=None, repr=False)
    operator: object = field(default=None, repr=False)


def bradley_terry_rows(d: np.ndarray, eta: np.ndarray, stats: dict) -> RowDerivatives:
    """Bradley–Terry rows: ``wins_i`` of i over j and ``wins_j`` of j over i (ties already split).

    With ``e = exp(−|d|)`` and ``n = wins_i + wins_j``: ``log σ(d) = min(d, 0) − log1p(e)``,
    ``loglik = n log σ(d) − wins_j d``, ``l_d = wins_i − n σ(d)`` and ``l_dd = −n e/(1 + e)²``, stable for any
    ``d``. Evaluated in blocks of :data:`ROW_BLOCK` rows so the temporaries stay in cache (2× faster on 10⁶ rows
    than whole-array passes; scipy's ``log_expit`` alone took as long as this whole function)."""
    wi, wj = stats["wins_i"], stats["wins_j"]
    d, wi, wj = np.broadcast_arrays(np.asarray(d, dtype=np.float64), wi, wj)
    m = len(d)
    loglik, l_d, l_dd = np.empty(m), np.empty(m), np.empty(m)
    for start in range(0, m, ROW_BLOCK):
        rows = slice(start, start + ROW_BLOCK)
        dd, a, b = d[rows], wi[rows], wj[rows]
        n = a + b
        e = np.abs(dd)
        np.negative(e, out=e)
        np.exp(e, out=e)
        one_e = e + 1.0
        log_p = np.minimum(dd, 0.0)
        log_p -= np.log1p(e)
        p = np.where(dd >= 0, 1.0, e)
        p /= one_e
        np.multiply(n, log_p, out=loglik[rows])
        loglik[rows] -= b * dd  # log σ(−d) = log σ(d) − d
        np.multiply(n, p, out=l_d[rows])
        np.subtract(a, l_d[rows], out=l_d[rows])
        e /= one_e
        e /= one_e
        e *= n
        np.negative(e, out=l_dd[rows])
    return RowDerivatives(loglik=loglik, l_d=l_d, l_dd=l_dd)


ROW_BLOCK = 1 << 14
"""Rows per block in :func:`bradley_terry_rows` (a few 128 KiB temporaries: they stay in the L2 cache)."""


def log_sigmoid(d: np.ndarray) -> np.ndarray:
    """``log σ(d) = min(d, 0) − log1p(exp(−|d|))``, stable for any ``d`` (scipy's ``log_expit``, 4× faster)."""
    out = np.abs(d)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    return np.minimum(d, 0.0) - out


def log_prior(theta: np.ndarray, prior: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Newman's prior: ``prior`` virtual wins and losses of every item against a unit-strength pseudo-item."""
    if prior == 0:
        zero = np.zeros_like(theta)
        return 0.0, zero, zero
    p = special.expit(theta)
    value = prior * float(np.sum(special.log_expit(theta) + special.log_expit(-theta)))
    return value, prior * (1 - 2 * p), -2 * prior * p * (1 - p)


class _Assembler:
    """Gradient and Hessian of the log posterior over φ = (θ, β, η)."""

    def __init__(self, design: PairwiseDesign, model: ModelFunction, n_eta: int, prior: float, ridge: float):
        self.design, self.model, self.n_eta = design, model, n_eta
        self.prior, self.ridge = prior, ridge
        self.n, self.q = design.n_items, design.n_covariates
        self.size = self.n + self.q + n_eta

    def sparse_information(self, w: np.ndarray, diag_theta: np.ndarray) -> SymmetricInformation:
        """The θ information as a :class:`SymmetricInformation`: ``−w`` at (i, j) and (j, i) of every row, the
        diagonal given. When the rows are unique pairs with ``i < j`` in increasing order (pair counts), the
        upper triangle's CSR layout is the rows themselves (no sort); otherwise it is assembled from coordinates
        (duplicates summed)."""
        des, n = self.design, self.n
        if not hasattr(self, "_upper"):
            self._upper = _upper_layout(des.i, des.j, n)
        if self._upper is None:
            lo, hi = np.minimum(des.i, des.j), np.maximum(des.i, des.j)
            upper = sp.coo_matrix((-w, (lo, hi)), shape=(n, n)).tocsr()
            upper.sum_duplicates()
            return SymmetricInformation(upper, diag_theta)
        indices, indptr = self._upper
        upper = sp.csr_matrix((-w, indices, indptr), shape=(n, n), copy=False)
        upper.has_sorted_indices = True
        upper.has_canonical_format = True
        return SymmetricInformation(upper, diag_theta)

    def split(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, q = self.n, self.q
        return phi[:n], phi[n : n + q], phi[n + q :]

    def predictor(self, phi: np.ndarray) -> np.ndarray:
        theta, beta, _ = self.split(phi)
        d = theta[self.design.i] - theta[self.design.j]
        if self.q:
            d = d + self.design.X @ beta
        return d

    def objective(self, phi: np.ndarray) -> tuple[float, float, RowDerivatives]:
        """(log posterior, log-likelihood, the rows' derivatives for reuse) at ``phi``."""
        theta, beta, eta = self.split(phi)
        rows = self.model(self.predictor(phi), eta, self.design.stats)
        loglik = float(np.sum(rows.loglik))
        if not np.isfinite(loglik):
            return -np.inf, loglik, rows
        prior_value, _, _ = log_prior(theta, self.prior)
        return loglik + prior_value - 0.5 * self.ridge * float(beta @ beta), loglik, rows

    def derivatives(self, phi: np.ndarray, rows: RowDerivatives, *, dense: bool, need_info: bool = True):
        """Gradient and the negative Hessian (dense array, or sparse matrix when only θ is present).

        With ``need_info=False`` and only θ present, returns the Hessian's diagonal instead (cheap; enough
        to scale the gradient for the convergence check)."""
        des, n, q, p = self.design, self.n, self.q, self.n_eta
        theta, beta, eta = self.split(phi)
        w = -rows.l_dd  # curvature along d, ≥ 0 for the log-concave models
        last = getattr(self, "_last", None)
        if last is not None and last[0] is rows and not q and not p:  # the same point again: sums already made
            grad, diag_theta = last[1].copy(), last[2].copy()
        else:
            _, g_prior, h_prior = log_prior(theta, self.prior)
            grad = np.empty(self.size)
            grad[:n] = np.bincount(des.i, rows.l_d, n) - np.bincount(des.j, rows.l_d, n) + g_prior
            diag_theta = np.bincount(des.i, w, n) + np.bincount(des.j, w, n) - h_prior
            self._last = (rows, grad.copy(), diag_theta.copy())
        if q:
            grad[n : n + q] = des.X.T @ rows.l_d - self.ridge * beta
        if p:
            grad[n + q :] = rows.l_eta.sum(axis=0)
        if not need_info and not q and not p:
            return grad, diag_theta
        if not dense:
            return grad, self.sparse_information(w, diag_theta)
        info = np.zeros((self.size, self.size))
        # Off-diagonal θ entries: several rows may share a pair, so accumulate with bincount on flat keys.
        flat = des.i * self.size + des.j
        info.ravel()[:] += np.bincount(flat, -w, self.size * self.size)
        tri = info[:n, :n]
        tri += tri.T.copy()
        info[np.arange(n), np.arange(n)] = diag_theta
        if q:
            wx = w[:, None] * des.X
            cross = np.zeros((n, q))
            for c in range(q):  # q is a handful of covariates, not rows
                cross[:, c] = np.bincount(des.i, wx[:, c], n) - np.bincount(des.j, wx[:, c], n)
            info[:n, n : n + q] = cross
            info[n : n + q, :n] = cross.T
            info[n : n + q, n : n + q] = des.X.T @ wx + self.ridge * np.eye(q)
        if p:
            lde = -rows.l_d_eta
            cross = np.zeros((n, p))
            for c in range(p):
                cross[:, c] = np.bincount(des.i, lde[:, c], n) - np.bincount(des.j, lde[:, c], n)
            info[:n, n + q :] = cross
            info[n + q :, :n] = cross.T
            if q:
                xe = des.X.T @ lde
                info[n : n + q, n + q :] = xe
                info[n + q :, n : n + q] = xe.T
            info[n + q :, n + q :] = -rows.l_eta_eta.sum(axis=0)
        return grad, info


class SymmetricInformation:
    """A symmetric sparse information matrix ``A = D + U + Uᵀ`` kept as its diagonal ``D`` and strict upper
    triangle ``U`` (CSR, row ``i`` holding its pairs ``(i, j)`` with ``j > i``).

    Pair counts arrive sorted by ``(i, j)`` with ``i < j``, so ``U``'s layout is the pairs themselves; the full
    symmetric CSR layout would need a transpose (a counting sort scattering every pair across the rows: 1.3 s
    on 5·10⁶ pairs, more than the Newton solve it serves). Products ``A v = D v + U v + Uᵀ v`` cost about the
    same as with the full matrix (``Uᵀ v`` is a CSC product on the same arrays). Supports what the solvers and
    the standard errors use: ``@`` (vectors and blocks of columns), :meth:`diagonal`, :attr:`shape`,
    :meth:`tocsr` and :meth:`toarray` (small cases only)."""

    ndim = 2

    def __init__(self, upper: sp.csr_matrix, diagonal: np.ndarray):
        self.upper, self.diag = upper, np.asarray(diagonal, dtype=np.float64)
        self.shape = upper.shape

    @classmethod
    def from_matrix(cls, matrix) -> SymmetricInformation:
        """From a symmetric (sparse or dense) matrix."""
        if isinstance(matrix, SymmetricInformation):
            return matrix
        matrix = sp.csr_matrix(matrix, dtype=np.float64)
        return cls(sp.triu(matrix, k=1, format="csr"), matrix.diagonal())

    def diagonal(self) -> np.ndarray:
        return self.diag

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        upper = self.upper
        scale = self.diag[:, None] if v.ndim == 2 else self.diag
        off = upper @ v
        off += upper.T @ v
        return scale * v + off  # in double even when the off-diagonal part is in single precision

    def astype(self, dtype) -> SymmetricInformation:
        """The off-diagonal part in ``dtype`` (single precision for memory-bound products); the diagonal and
        the sums stay in double: ``A v`` adds ``D v`` to the products in the products' precision."""
        out = SymmetricInformation.__new__(SymmetricInformation)
        out.upper, out.diag, out.shape = self.upper.astype(dtype), self.diag, self.shape
        return out

    def tocsr(self) -> sp.csr_matrix:
        return (self.upper + self.upper.T + sp.diags(self.diag)).tocsr()

    def toarray(self) -> np.ndarray:
        return self.tocsr().toarray()


def _upper_layout(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The CSR ``(indices, indptr)`` of the strict upper triangle with entries at the pairs ``(i_k, j_k)``, for
    pairs given once each with ``i < j`` in increasing order of ``(i, j)`` (else None): the pairs in their own
    order, rows delimited by the counts of ``i``."""
    k = len(i)
    if k == 0 or n < 2:
        return None
    if not (np.all(i < j) and np.all(np.diff(i * np.int64(n) + j) > 0)):
        return None
    index = np.int32 if k + n < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n + 1, dtype=index)
    np.cumsum(np.bincount(i, minlength=n), out=indptr[1:])
    return j.astype(index), indptr


def fit_pairwise(
    design: PairwiseDesign,
    model: ModelFunction,
    *,
    n_eta: int = 0,
    prior: float = 0.0,
    ridge: float = 0.0,
    theta0: np.ndarray | None = None,
    beta0: np.ndarray | None = None,
    eta0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    keep_information: bool = True,
) -> PairwiseFit:
    """Maximise the (penalised) log-likelihood of a pairwise model by safeguarded Newton steps.

    Each step solves ``I δ = g`` with ``I`` the observed information (plus ``uuᵀ`` along the shift direction
    ``u = 1/√n`` of the ratings when ``prior == 0``, which leaves δ centred), then backtracks until the
    objective increases (Armijo). The log-likelihoods used here are concave, so this converges to the
    maximiser from any start. Converged means the largest step is below ``tol`` *and* the gradient, scaled by
    the curvature of each parameter, vanishes.
    """
    n, q = design.n_items, design.n_covariates
    asm = _Assembler(design, model, n_eta, prior, ridge)
    with blas_threads_for(asm.size):
        return _fit_pairwise(asm, design, n, q, n_eta=n_eta, prior=prior, theta0=theta0, beta0=beta0,
                             eta0=eta0, tol=tol, max_iter=max_iter, keep_information=keep_information)


def _fit_pairwise(asm, design, n, q, *, n_eta, prior, theta0, beta0, eta0, tol, max_iter, keep_information):
    phi = np.concatenate([
        np.zeros(n) if theta0 is None else np.asarray(theta0, float),
        np.zeros(q) if beta0 is None else np.asarray(beta0, float),
        np.zeros(n_eta) if eta0 is None else np.asarray(eta0, float),
    ])
    dense = asm.size <= DENSE_LIMIT or q or n_eta
    if dense:
        check_dense_size(asm.size)
    gauge = prior == 0
    obj, loglik, rows = asm.objective(phi)
    if not np.isfinite(obj):
        raise ConvergenceError("the starting point has zero likelihood; check the data and start values")
    info = None
    step_norm = np.inf
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007  (reported)
        grad, info = asm.derivatives(phi, rows, dense=dense)
        # Inexact Newton (Eisenstat & Walker 1996): far from the maximum a rough direction does as well; the
        # sparse solve's tolerance follows the squared scaled gradient, so the convergence stays quadratic.
        # Convergence itself is always judged on the exact gradient below.
        rtol = min(max(_scaled_gradient(grad, info.diagonal()) ** 2, NEWTON_CG_TOL), 1e-4)
        delta = _newton_direction(info, grad, n, gauge, dense, rtol=rtol)
        slope = float(grad @ delta)
        t = 1.0
        for _ in range(60):
            trial = phi + t * delta
            trial_obj, trial_loglik, trial_rows = asm.objective(trial)
            if trial_obj >= obj + 1e-4 * t * slope or abs(trial_obj - obj) <= 1e-13 * max(1.0, abs(obj)):
                break
            t /= 2
        else:
            break
        phi, obj, loglik, rows = trial, trial_obj, trial_loglik, trial_rows
        step_norm = float(np.max(np.abs(t * delta))) if delta.size else 0.0
        if step_norm < tol:
            break
        if t == 1.0 and step_norm < 1e-4 and not q and not n_eta:
            # In Newton's quadratic regime the error after this step is ~step²: check the gradient cheaply
            # instead of paying for one more Hessian.
            grad, diag = asm.derivatives(phi, rows, dense=dense, need_info=False)
            if _scaled_gradient(grad, diag) < 1e-10:
                break
    grad, info = asm.derivatives(phi, rows, dense=dense, need_info=keep_information)
    gnorm = _scaled_gradient(grad, info if info.ndim == 1 else info.diagonal())
    if gnorm > 1e-6 or not np.isfinite(gnorm):
        raise ConvergenceError(
            f"Newton iterations stopped after {iteration} steps without reaching the maximum "
            f"(scaled gradient {gnorm:.2e}, last step {step_norm:.2e}); the data may not determine the "
            "parameters — try prior>0"
        )
    theta, beta, eta = asm.split(phi)
    if gauge:
        theta = theta - theta.mean()
    return PairwiseFit(
        theta=theta.copy(), beta=beta.copy(), eta=eta.copy(), loglik=loglik, objective=obj,
        n_iter=iteration, gradient_norm=gnorm, information=info if keep_information else None,
    )


def _scaled_gradient(grad: np.ndarray, diag: np.ndarray) -> float:
    """max |g_k| / sqrt(I_kk): the gradient in units of each parameter's standard error."""
    if not grad.size:
        return 0.0
    return float(np.max(np.abs(grad) / np.maximum(np.sqrt(np.abs(diag)), 1e-12)))


def _newton_direction(info, grad: np.ndarray, n: int, gauge: bool, dense: bool,
                      rtol: float = 1e-12) -> np.ndarray:
    if dense:
        import scipy.linalg as la  # only for dense systems: the sparse path does not pay for its import

        system = info.copy()
        if gauge:
            system[:n, :n] += 1.0 / n
        try:
            return la.cho_solve(la.cho_factor(system, check_finite=False), grad, check_finite=False)
        except la.LinAlgError:
            return la.lstsq(system, grad, check_finite=False)[0]
    # Sparse θ-only system: conjugate gradients with a Jacobi preconditioner; the gauge term is applied
    # as a rank-one operator so the matrix stays sparse.
    from pairkit.rating._sparse import block_pcg

    diag = info.diagonal() + (1.0 / n if gauge else 0.0)

    def matvec(v: np.ndarray) -> np.ndarray:
        out = info @ v
        return out + v.mean(axis=0) if gauge else out

    return block_pcg(matvec, grad[:, None], diag, tol=rtol, max_iter=10 * n, strict=False)[:, 0]


NEWTON_CG_TOL = 1e-12
"""Smallest relative residual asked of the conjugate-gradient solve for a sparse Newton direction (near the
maximum; further away the tolerance is the squared scaled gradient, at most 10⁻⁴)."""


def covariance(info: np.ndarray | sp.spmatrix | SymmetricInformation, n: int, gauge: bool) -> np.ndarray:
    """Inverse observed information, restricted to centred ratings (``C I⁺ C`` on the θ block)."""
    import scipy.linalg as la

    info = info.toarray() if hasattr(info, "toarray") else np.asarray(info)
    system = info.copy()
    if gauge:
        system[:n, :n] += 1.0 / n
    with blas_threads_for(len(system)):
        try:
            cov = la.cho_solve(la.cho_factor(system), np.eye(len(system)))
        except la.LinAlgError:
            cov = la.pinvh(system)
    if gauge:
        cov[:n, :n] -= 1.0 / n
    # Centre the θ block (C V Cᵀ with C = I − J/n on θ) in O(size²) rather than with two matrix products.
    row_mean = cov[:n].mean(axis=0)
    cov[:n] -= row_mean
    col_mean = cov[:, :n].mean(axis=1, keepdims=True)
    cov[:, :n] -= col_mean
    return cov


def sandwich_covariance(
    cov: np.ndarray,
    rows: RowDerivatives,
    design: PairwiseDesign,
    clusters: np.ndarray,
    n_eta: int,
) -> np.ndarray:
    """Cluster-robust covariance ``V M V`` with ``M = G/(G−1) Σ_c s_c s_cᵀ`` from per-row scores.

    ``rows`` must be evaluated on un-aggregated rows (one per comparison) so that scores can be summed within
    clusters; ``clusters`` gives each row's cluster (each row its own cluster for the heteroskedasticity-
    robust form).
    """
    n, q = design.n_items, design.n_covariates
    k = len(design.i)
    _, cl = np.unique(clusters, return_inverse=True)
    g = int(cl.max()) + 1 if k else 0
    size = n + q + n_eta
    data = [rows.l_d, -rows.l_d]
    cols = [design.i, design.j]
    rr = [np.arange(k), np.arange(k)]
    for c in range(q):
        data.append(rows.l_d * design.X[:, c])
        cols.append(np.full(k, n + c))
        rr.append(np.arange(k))
    for c in range(n_eta):
        data.append(rows.l_eta[:, c])
        cols.append(np.full(k, n + q + c))
        rr.append(np.arange(k))
    scores = sp.csr_matrix(
        (np.concatenate(data), (cl[np.concatenate(rr)], np.concatenate(cols))), shape=(g, size)
    )
    meat = (scores.T @ scores).toarray() * (g / max(g - 1, 1))
    return cov @ meat @ cov


# ---------------------------------------------------------------------------------------------- honest intervals
MIN_CLUSTERS = 30
"""``intervals="auto"`` uses the cluster-robust sandwich only with at least this many clusters. With fewer, its
meat is an average of a handful of cluster scores and the intervals undercover (Cameron & Miller 2015, §VI);
Fisher's are used instead and the reason is recorded in ``Leaderboard.info["interval_rule"]``."""


def interval_method(intervals: str, clusters: np.ndarray | None) -> tuple[str | None, str]:
    """The covariance to use for ``intervals`` and the reason, stated for the output.

    ``"auto"``: the sandwich by ``clusters`` when there are at least :data:`MIN_CLUSTERS` of them (each
    parameter's variance then at least Fisher's, :func:`at_least_fisher`), else Fisher.
    ``"sandwich"`` is honoured as asked (per comparison when no clusters are given) except with a single
    cluster, whose scores sum to zero at the maximum (a zero-width interval): Fisher then, with a warning.
    """
    if intervals == "none":
        return None, "no intervals requested"
    if intervals == "fisher":
        return "fisher", "Fisher (observed information), as requested"
    g = 0 if clusters is None else len(np.unique(clusters))
    if intervals == "sandwich":
        if clusters is not None and g < 2:
            return "fisher", (
                "Fisher: the data form a single cluster, where the sandwich has zero width (its one cluster score "
                "is zero at the maximum)"
            )
        unit = "per comparison" if clusters is None else f"over {g} clusters"
        return "sandwich", f"sandwich {unit}, as requested"
    if clusters is None:
        return "fisher", "Fisher (observed information): no clusters given"
    if g < MIN_CLUSTERS:
        return "fisher", (
            f"Fisher: only {g} cluster(s); the cluster sandwich needs at least {MIN_CLUSTERS} to be trusted "
            "(ask for intervals='sandwich', --intervals sandwich, to override)"
        )
    return "sandwich", (
        f"cluster sandwich over {g} clusters, never narrower than Fisher per parameter (items in fewer than 2 "
        "clusters get Fisher's variance added)"
    )


def clusters_per_item(design: PairwiseDesign, clusters: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """How many distinct clusters each item appears in (rows of zero weight do not count)."""
    n = design.n_items
    live = weight > 0
    _, cl = np.unique(clusters, return_inverse=True)
    cl = cl.ravel()[live].astype(np.int64)
    items = np.concatenate([design.i[live], design.j[live]])
    keys = np.unique(np.concatenate([cl, cl]) * np.int64(n) + items)
    return np.bincount(keys % n, minlength=n)


def floor_at_fisher(sandwich: np.ndarray, fisher: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """Add Fisher's covariance along the ``sparse`` coordinates to a sandwich covariance.

    An item seen in one cluster has a cluster score that is zero at the maximum (its own score sums to zero), so
    the sandwich says nothing about its variance and reports almost none. Adding

    .. math::

        V_F[:, S]\\,V_F[S, S]^{+}\\,V_F[S, :]

    (the part of Fisher's covariance spanned by the sparse coordinates S) keeps the matrix positive
    semi-definite and centred and gives every sparse coordinate at least its Fisher variance; the others gain
    only through their covariance with the sparse ones.
    """
    import scipy.linalg as la

    idx = np.flatnonzero(sparse)
    if not len(idx):
        return sandwich
    block = la.pinvh((fisher[np.ix_(idx, idx)] + fisher[np.ix_(idx, idx)].T) / 2)
    cross = fisher[:, idx]
    return sandwich + cross @ block @ cross.T


def flat_directions(info: np.ndarray, n: int, *, tol: float = 1e-10) -> np.ndarray:
    """Directions along which a (data-only) information matrix over (θ, β, η) is flat, beyond the θ gauge.

    The matrix is first scaled to unit diagonal (units do not matter), the shift of θ within every connected
    group of compared items is fixed by adding its direction (the ratings' gauge), and θ entries of items with
    no information are set aside (they are reported as never compared, not here). A Cholesky factorisation and
    LAPACK's reciprocal condition estimate decide quickly; only when that is below ``tol`` are the null
    directions found by an eigendecomposition. Returns a (size, r) array of directions in the original
    parameters (θ shifted so that its median within each group is 0, each column scaled to max |v| = 1); r = 0
    when the information is regular.
    """
    import scipy.linalg as la
    from scipy.sparse import csgraph

    A = np.array(info, dtype=float, copy=True)
    size = len(A)
    d = A.diagonal().copy()
    empty_theta = np.zeros(size, dtype=bool)
    empty_theta[:n] = d[:n] <= 0
    d[empty_theta] = 1.0
    A[empty_theta, :] = 0.0
    A[:, empty_theta] = 0.0
    A[empty_theta, empty_theta] = 1.0
    s = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    B = A * s[:, None] * s[None, :]
    graph = sp.csr_matrix(np.abs(A[:n, :n]) > 0)
    n_comp, comp = csgraph.connected_components(graph, directed=False)
    for c in range(n_comp):
        members = np.flatnonzero((comp == c) & ~empty_theta[:n])
        if not len(members):
            continue
        u = np.zeros(size)
        u[members] = 1.0 / s[members]
        u /= np.linalg.norm(u)
        B += np.outer(u, u)
    with blas_threads_for(size):
        try:
            chol, lower = la.cho_factor(B, check_finite=False)
            rcond, info_code = la.lapack.dpocon(chol, np.abs(B).sum(axis=0).max(), uplo="L" if lower else "U")
            if info_code == 0 and rcond > tol:
                return np.zeros((size, 0))
        except la.LinAlgError:
            pass
        vals, vecs = la.eigh(B)
    null = vecs[:, vals < tol * max(float(vals.max()), 1.0)] * s[:, None]
    null[empty_theta] = 0.0
    for c in range(n_comp):
        members = np.flatnonzero((comp == c) & ~empty_theta[:n])
        if len(members):
            null[members] -= np.median(null[members], axis=0)
    scale = np.abs(null).max(axis=0)
    return null / np.where(scale > 0, scale, 1.0)


PRIOR_ONLY_SHARE = 1e-12
"""An item whose data information is below this share of the largest item's is treated as never compared: its
rating and interval come from the prior alone (in double precision the data cannot move it)."""


@dataclass
class FitCovariance:
    """The covariance chosen for a fit, how it was chosen, and the items whose interval is not data-driven."""

    cov: np.ndarray | None
    method: str | None
    rule: str
    floored: np.ndarray  # items whose sandwich variance was raised to Fisher's (seen in < 2 clusters)
    prior_only: np.ndarray  # items with (effectively) no data: rating and interval from the prior alone
    se: np.ndarray | None = None  # standard errors estimated without a covariance (many items; see _sparse)
    se_note: str | None = None  # how those were estimated, with their error
    se_error: dict[str, float] | None = None  # their stated relative error (median, max)


def prior_curvature(theta: np.ndarray, prior: float) -> np.ndarray:
    """The prior's contribution to the θ diagonal of the information (Newman's virtual games)."""
    p = special.expit(theta)
    return 2 * prior * p * (1 - p)


def data_information_diagonal(fit: PairwiseFit, n: int, prior: float) -> np.ndarray:
    """The θ diagonal of the information carried by the data alone (the prior's virtual games removed)."""
    diag = np.asarray(fit.information.diagonal())[:n] if fit.information is not None else np.zeros(n)
    return diag - prior_curvature(fit.theta, prior) if prior else diag


def fit_covariance(
    fit: PairwiseFit,
    rows_design: PairwiseDesign,
    model: ModelFunction,
    *,
    intervals: str,
    prior: float,
    n_eta: int,
    clusters: np.ndarray | None,
    weight: np.ndarray,
    sparse_ok: bool = False,
) -> FitCovariance:
    """Fisher or cluster-robust covariance of a fit, honest for sparse items (see :func:`interval_method`).

    ``rows_design`` holds the un-aggregated rows (one per comparison) so that scores can be summed within
    clusters. Items seen in fewer than two clusters get at least their Fisher variance
    (:func:`floor_at_fisher`); items with no data information are reported in ``prior_only``.
    """
    n = rows_design.n_items
    method, rule = interval_method(intervals, clusters)
    if fit.information is not None:
        data_diag = data_information_diagonal(fit, n, prior)
    else:  # no curvature kept (no intervals asked): fall back to the items' total weight
        w = sum(rows_design.stats.values())
        data_diag = np.bincount(rows_design.i, w, n) + np.bincount(rows_design.j, w, n)
    prior_only = data_diag <= PRIOR_ONLY_SHARE * max(float(data_diag.max(initial=0.0)), 1e-300)
    floored = np.zeros(n, dtype=bool)
    if method is None:
        return FitCovariance(None, None, rule, floored, prior_only)
    if sparse_ok and n > SPARSE_SE_LIMIT and not rows_design.n_covariates and not n_eta:
        if method == "sandwich":
            if intervals == "sandwich":
                raise InputError(
                    f"cluster-robust (sandwich) intervals need a dense {n}×{n} covariance; they are available up "
                    f"to {SPARSE_SE_LIMIT:,} items. Use intervals='fisher' (or 'auto') for {n:,} items")
            method, rule = "fisher", f"Fisher: {n:,} items are more than the sandwich supports ({SPARSE_SE_LIMIT:,})"
        from pairkit.rating._sparse import estimate_inverse_diagonal

        est = estimate_inverse_diagonal(fit.information, gauge=prior == 0)
        rel = est.relative_error
        note = (f"standard errors estimated ({est.method}) without a dense {n:,}×{n:,} covariance: relative "
                f"error ≈ {np.median(rel):.2%} (median), {rel.max():.2%} (max)")
        return FitCovariance(None, method, rule, floored, prior_only, se=est.se, se_note=note,
                             se_error={"median": float(np.median(rel)), "max": float(rel.max())})
    fisher = covariance(fit.information, n, gauge=prior == 0)
    if method == "fisher":
        return FitCovariance(fisher, method, rule, floored, prior_only)
    q = rows_design.n_covariates
    d = fit.theta[rows_design.i] - fit.theta[rows_design.j] + (rows_design.X @ fit.beta if q else 0.0)
    rows = model(d, fit.eta, rows_design.stats)
    groups = np.arange(len(d)) if clusters is None else clusters  # per comparison: each row its own cluster
    cov = sandwich_covariance(fisher, rows, rows_design, groups, n_eta)
    sparse_coords = np.zeros(len(cov), dtype=bool)
    sparse_coords[:n] = clusters_per_item(rows_design, groups, weight) < 2
    cov = floor_at_fisher(cov, fisher, sparse_coords)
    if intervals == "auto":
        cov = at_least_fisher(cov, fisher, n)
    return FitCovariance(cov, method, rule, sparse_coords[:n], prior_only)


def at_least_fisher(sandwich: np.ndarray, fisher: np.ndarray, n: int) -> np.ndarray:
    """Scale a sandwich covariance so that no parameter's variance is below Fisher's.

    ``R V R`` with ``R = diag(max(1, sqrt(V_F,kk / V_kk)))`` keeps V positive semi-definite and its correlations;
    the θ block is centred again afterwards. The sandwich is biased downwards with few clusters per item and
    ignores the shrinkage of a prior, so ``intervals="auto"`` takes the larger of the two per parameter — the
    rule of Angrist & Pischke (2009, §8.2.3) for robust standard errors in small samples.
    """
    out, f = sandwich, np.diag(fisher)
    for _ in range(20):  # centring takes a little back; a few passes settle it
        v = np.diag(out)
        ratio = np.sqrt(np.maximum(1.0, np.divide(f, v, out=np.ones_like(f), where=v > 0)))
        if ratio.max() <= 1 + 1e-9:
            break
        out = out * ratio[:, None] * ratio[None, :]
        out[:n] -= out[:n].mean(axis=0)
        out[:, :n] -= out[:, :n].mean(axis=1, keepdims=True)
    return out


def data_information(
    design: PairwiseDesign,
    model: ModelFunction,
    *,
    n_eta: int = 0,
    ridge: float = 0.0,
    theta: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    eta: np.ndarray | None = None,
) -> np.ndarray:
    """The dense observed information of the data (no prior) over (θ, β, η) at the given point (0 by default).

    For the logistic-type models the rows' curvature is positive at any finite point, so the null space found
    here is that of the design and does not depend on the point: it can be checked before fitting.
    """
    asm = _Assembler(design, model, n_eta, 0.0, ridge)
    n, q = design.n_items, design.n_covariates
    phi = np.concatenate([
        np.zeros(n) if theta is None else np.asarray(theta, float),
        np.zeros(q) if beta is None else np.asarray(beta, float),
        np.zeros(n_eta) if eta is None else np.asarray(eta, float),
    ])
    _, _, rows = asm.objective(phi)
    _, info = asm.derivatives(phi, rows, dense=True)
    return info


def sparse_item_report(
    chosen: FitCovariance, items: Sequence[str], prior: float
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-item flags and warnings for items whose interval is not (or not only) from their own data.

    Returns ``columns`` (``prior_only`` and/or ``fisher_floor`` boolean columns, present only when some item is
    flagged) and the notes also issued as :class:`IntervalWarning`.
    """
    columns: dict[str, np.ndarray] = {}
    notes: list[str] = []
    names = np.asarray(items, dtype=object)
    if chosen.prior_only.any():
        columns["prior_only"] = chosen.prior_only.copy()
        idx = np.flatnonzero(chosen.prior_only)
        notes.append(
            f"{len(idx)} item(s) have no comparisons that carry information ({listed_names(names[idx])}): their rating "
            f"and interval come from the prior alone (prior={prior:g} virtual games)"
        )
    if chosen.floored.any() and chosen.cov is not None:
        columns["fisher_floor"] = chosen.floored.copy()
        idx = np.flatnonzero(chosen.floored)
        notes.append(
            f"{len(idx)} item(s) appear in fewer than 2 clusters ({listed_names(names[idx])}); the sandwich cannot "
            "estimate their variance, so their intervals are at least Fisher's"
        )
    if chosen.rule.startswith("Fisher:"):
        notes.append(f"intervals: {chosen.rule}")
    for note in notes:
        warnings.warn(note, IntervalWarning, stacklevel=4)
    return columns, notes


def listed_names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(str(x)) for x in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def interval_bounds(
    log_strength: np.ndarray, se: np.ndarray | None, prior_only: np.ndarray, prior: float, level: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Normal intervals ``θ ± z·se``, widened for prior-only items to the prior's exact quantiles.

    Newman's prior of ``a`` virtual wins and losses against a unit-strength item makes ``σ(θ)`` Beta(a, a)
    distributed, whose tails are heavier than the normal (Laplace) approximation: for a = 1 the 95% interval is
    ±3.66, not ±2.77. An item with no data keeps the wider of the two.
    """
    if se is None:
        return None, None
    z = special.ndtri(0.5 + level / 2)
    half = z * se
    if prior > 0 and prior_only.any():
        exact = special.logit(special.betaincinv(prior, prior, 0.5 + level / 2))
        half = np.where(prior_only, np.maximum(half, exact), half)
    return log_strength - half, log_strength + half


def separating_direction(design: PairwiseDesign, *, free_theta: bool, free_beta: bool) -> np.ndarray | None:
    """A direction along which the likelihood rises without bound (the MLE is infinite), or None.

    The outcomes are (quasi-)separated when some v ≠ gauge has ``g_k·v ≥ 0`` on every row that ``i`` won (or
    tied) and ``g_k·v ≤ 0`` on every row that ``j`` won (or tied), strictly on one row, where
    ``g_k = e_i − e_j + x_k`` is the row's gradient of the linear predictor (Albert & Anderson 1984; found
    by linear programming as in Konis 2007). Coordinates held finite by a penalty (θ with a prior, β with a
    ridge) are fixed at 0. Solved with HiGHS; returns v scaled to max |v| = 1.

    References:
        Albert, A. & Anderson, J. A. (1984). On the existence of maximum likelihood estimates in logistic
        regression models. Biometrika 71(1).
        Konis, K. (2007). Linear programming algorithms for detecting separated data in binary logistic
        regression models. DPhil thesis, University of Oxford.
    """
    from scipy.optimize import linprog

    n, q = design.n_items, design.n_covariates
    k = len(design.i)
    stats = design.stats
    won_i = stats["wins_i"] + stats.get("ties", 0) > 0
    won_j = stats["wins_j"] + stats.get("ties", 0) > 0
    rows = np.arange(k)
    data = [np.ones(k), -np.ones(k)]
    cols = [design.i, design.j]
    rr = [rows, rows]
    for c in range(q):
        data.append(design.X[:, c])
        cols.append(np.full(k, n + c))
        rr.append(rows)
    G = sp.csr_matrix((np.concatenate(data), (np.concatenate(rr), np.concatenate(cols))), shape=(k, n + q))
    sign = won_i.astype(float) - won_j.astype(float)
    # won_i rows need −g·v ≤ 0, won_j rows g·v ≤ 0; maximise Σ sign·(g·v) (zero unless separated).
    A = sp.vstack([-G[won_i], G[won_j]]).tocsr()
    bounds = [(-1.0, 1.0) if free_theta else (0.0, 0.0)] * n + [(-1.0, 1.0) if free_beta else (0.0, 0.0)] * q
    res = linprog(-(G.T @ sign), A_ub=A, b_ub=np.zeros(A.shape[0]), bounds=bounds, method="highs")
    if res.status != 0 or -res.fun <= 1e-7:
        return None
    v = res.x
    v[:n] -= np.median(v[:n])  # a shift of every θ changes nothing: show the smallest representative
    return v / max(float(np.abs(v).max()), 1e-300)
