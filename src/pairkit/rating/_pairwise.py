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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import special

from pairkit.errors import ConvergenceError

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - a core dependency; kept optional for vendored installs
    threadpool_limits = None

DENSE_LIMIT = 4000
"""Above this many parameters the Newton system is solved by preconditioned conjugate gradients."""

SINGLE_THREAD_LIMIT = 2000
"""Dense systems up to this size are factorised with one BLAS thread: a multi-threaded OpenBLAS pool gains
little at this size and, on a busy machine, was measured 10–100× slower (threads spin waiting for cores)."""


def blas_threads_for(size: int):
    """A context manager limiting BLAS to one thread for small dense solves (a no-op otherwise)."""
    import contextlib

    if threadpool_limits is None or size > SINGLE_THREAD_LIMIT:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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
    """Bradley–Terry rows: ``wins_i`` of i over j and ``wins_j`` of j over i (ties already split)."""
    wi, wj = stats["wins_i"], stats["wins_j"]
    n = wi + wj
    log_p = special.log_expit(d)
    log_q = log_p - d  # log σ(−d) = log σ(d) − d
    p = np.exp(log_p)
    return RowDerivatives(loglik=wi * log_p + wj * log_q, l_d=wi - n * p, l_dd=-n * p * (1 - p))


def _log_prior(theta: np.ndarray, prior: float) -> tuple[float, np.ndarray, np.ndarray]:
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
        prior_value, _, _ = _log_prior(theta, self.prior)
        return loglik + prior_value - 0.5 * self.ridge * float(beta @ beta), loglik, rows

    def derivatives(self, phi: np.ndarray, rows: RowDerivatives, *, dense: bool, need_info: bool = True):
        """Gradient and the negative Hessian (dense array, or sparse matrix when only θ is present).

        With ``need_info=False`` and only θ present, returns the Hessian's diagonal instead (cheap; enough
        to scale the gradient for the convergence check)."""
        des, n, q, p = self.design, self.n, self.q, self.n_eta
        theta, beta, eta = self.split(phi)
        _, g_prior, h_prior = _log_prior(theta, self.prior)
        grad = np.empty(self.size)
        grad[:n] = np.bincount(des.i, rows.l_d, n) - np.bincount(des.j, rows.l_d, n) + g_prior
        w = -rows.l_dd  # curvature along d, ≥ 0 for the log-concave models
        diag_theta = np.bincount(des.i, w, n) + np.bincount(des.j, w, n) - h_prior
        if q:
            grad[n : n + q] = des.X.T @ rows.l_d - self.ridge * beta
        if p:
            grad[n + q :] = rows.l_eta.sum(axis=0)
        if not need_info and not q and not p:
            return grad, diag_theta
        if not dense:
            lap = sp.coo_matrix((-w, (des.i, des.j)), shape=(n, n))
            info = (lap + lap.T).tocsr() + sp.diags(diag_theta)
            return grad, info
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
    gauge = prior == 0
    obj, loglik, rows = asm.objective(phi)
    if not np.isfinite(obj):
        raise ConvergenceError("the starting point has zero likelihood; check the data and start values")
    info = None
    step_norm = np.inf
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007  (reported)
        grad, info = asm.derivatives(phi, rows, dense=dense)
        delta = _newton_direction(info, grad, n, gauge, dense)
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


def _newton_direction(info, grad: np.ndarray, n: int, gauge: bool, dense: bool) -> np.ndarray:
    if dense:
        system = info.copy()
        if gauge:
            system[:n, :n] += 1.0 / n
        try:
            return la.cho_solve(la.cho_factor(system, check_finite=False), grad, check_finite=False)
        except la.LinAlgError:
            return la.lstsq(system, grad, check_finite=False)[0]
    # Sparse θ-only system: conjugate gradients with a Jacobi preconditioner; the gauge term is applied
    # as a rank-one operator so the matrix stays sparse.
    diag = info.diagonal() + (1.0 / n if gauge else 0.0)
    shift = (lambda v: v + v.mean()) if gauge else (lambda v: v)
    op = spla.LinearOperator(info.shape, matvec=lambda v: info @ v + (shift(v) - v), dtype=float)
    pre = spla.LinearOperator(info.shape, matvec=lambda v: v / diag, dtype=float)
    delta, _ = spla.cg(op, grad, rtol=1e-12, atol=0.0, maxiter=10 * n, M=pre)
    return delta


def covariance(info: np.ndarray | sp.spmatrix, n: int, gauge: bool) -> np.ndarray:
    """Inverse observed information, restricted to centred ratings (``C I⁺ C`` on the θ block)."""
    info = info.toarray() if sp.issparse(info) else np.asarray(info)
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
