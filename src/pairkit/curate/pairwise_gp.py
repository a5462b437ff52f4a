"""Preferential Bayesian optimisation: a Gaussian process on a latent utility, learnt from pairwise choices.

The model of Chu & Ghahramani (2005), "Preference Learning with Gaussian Processes": a GP prior on the utility
:math:`f` over a feature space, a probit likelihood for each comparison and the Laplace approximation to the
posterior; the same model as BoTorch's ``PairwiseGP`` (noise fixed at 1, the scale carried by the kernel),
here in numpy/scipy with fixed kernel hyperparameters. Acquisition over candidate pairs: the expected utility of
the best option (EUBO, Lin et al. 2022, "Preference Exploration for Efficient Bayesian Optimization with
Multiple Outcomes") and the entropy of the predicted choice (uncertainty sampling).

Dense :math:`n\\times n` algebra over the ``n`` distinct compared points: meant for the few hundred labelled
points of an acquisition loop, not for large data.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option
from pairkit.curate._registry import as_points, check_comparisons, rule
from pairkit.errors import ConvergenceError, InputError

__all__ = ["PairwiseGP", "eubo", "preference_entropy", "rbf_kernel"]

_SQRT2 = math.sqrt(2.0)


def rbf_kernel(x1: np.ndarray, x2: np.ndarray, *, lengthscale: float = 0.2, outputscale: float = 1.0) -> np.ndarray:
    """Squared-exponential kernel ``[n1, n2]``: :math:`s\\,\\exp(-\\lVert x-x'\\rVert^2 / 2\\ell^2)`."""
    d2 = (x1**2).sum(1)[:, None] + (x2**2).sum(1)[None, :] - 2.0 * x1 @ x2.T
    return outputscale * np.exp(-np.maximum(d2, 0.0) / (2.0 * lengthscale**2))


class PairwiseGP:
    """Gaussian-process utility from pairwise comparisons (Laplace approximation, probit likelihood).

    .. math::

        P(x_w \\succ x_l \\mid f) = \\Phi\\!\\Big(\\frac{f(x_w) - f(x_l)}{\\sqrt2\\,\\sigma}\\Big),\\qquad
        f \\sim \\mathcal{GP}(0, k),\\qquad
        \\hat f = \\arg\\min_f\\; -\\sum_k \\log\\Phi(z_k) + \\tfrac12 f^\\top K^{-1} f

    With :math:`W = -\\nabla^2 \\log p(D\\mid f)` at :math:`\\hat f`, the predictive distribution at new points is
    :math:`\\mu_* = k_*^\\top K^{-1}\\hat f`, :math:`\\Sigma_* = K_{**} - k_*^\\top W (I + K W)^{-1} k_*`.
    Chu & Ghahramani (2005), "Preference Learning with Gaussian Processes". Newton's method with step halving
    finds :math:`\\hat f` (the objective is convex).

    Args:
        lengthscale, outputscale: of the RBF kernel (:func:`rbf_kernel`).
        noise: :math:`\\sigma` of the probit (1 as in BoTorch).
        jitter: added to the kernel diagonal.
    """

    def __init__(
        self, *, lengthscale: float = 0.2, outputscale: float = 1.0, noise: float = 1.0, jitter: float = 1e-6
    ) -> None:
        for name, value in (("lengthscale", lengthscale), ("outputscale", outputscale), ("noise", noise)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a finite number > 0, got {value!r}")
        self.lengthscale, self.outputscale, self.noise, self.jitter = lengthscale, outputscale, noise, jitter
        self.x: np.ndarray | None = None

    def kernel(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The prior covariance between two sets of points."""
        return rbf_kernel(x1, x2, lengthscale=self.lengthscale, outputscale=self.outputscale)

    def _terms(self, f: np.ndarray):
        """Negative log-likelihood, its gradient ``[n]`` and Hessian ``[n, n]`` at ``f``."""
        c = self.noise * _SQRT2
        z = (f[self.winners] - f[self.losers]) / c
        log_cdf = special.log_ndtr(z)
        hazard = np.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_cdf)  # φ(z)/Φ(z), stable for z ≪ 0
        n = len(f)
        grad = np.bincount(self.losers, hazard, n) - np.bincount(self.winners, hazard, n)
        curv = hazard * (z + hazard) / c**2
        hess = np.zeros((n, n))
        np.add.at(hess, (self.winners, self.winners), curv)
        np.add.at(hess, (self.losers, self.losers), curv)
        np.add.at(hess, (self.winners, self.losers), -curv)
        np.add.at(hess, (self.losers, self.winners), -curv)
        return -log_cdf.sum(), grad / c, hess

    def fit(self, x, comparisons, *, max_iter: int = 100, tol: float = 1e-9) -> PairwiseGP:
        """Fit to points ``x`` ``[n, d]`` and ``comparisons`` ``[m, 2]`` (row = (winner index, loser index))."""
        x = as_points(x, "x")
        self.winners, self.losers = check_comparisons(comparisons, len(x))
        self.x = x
        n = len(x)
        k = self.kernel(x, x) + self.jitter * np.eye(n)
        f, alpha = np.zeros(n), np.zeros(n)
        nll, grad, hess = self._terms(f)
        obj = nll
        for _ in range(max_iter):
            # Newton: alpha_new = (I + W K)^{-1} (W f - grad), f_new = K alpha_new (so alpha = K^{-1} f)
            target = np.linalg.solve(np.eye(n) + hess @ k, hess @ f - grad)
            step = 1.0
            while True:
                a_new = alpha + step * (target - alpha)
                f_new = k @ a_new
                nll_new, g_new, h_new = self._terms(f_new)
                obj_new = nll_new + 0.5 * a_new @ f_new
                if obj_new <= obj + 1e-12 or step < 1e-8:
                    break
                step *= 0.5
            done = abs(obj - obj_new) < tol * max(1.0, abs(obj))
            f, alpha, obj, grad, hess = f_new, a_new, obj_new, g_new, h_new
            if done:
                break
        else:
            raise ConvergenceError(f"PairwiseGP: Newton's method did not converge in {max_iter} iterations")
        self.f_map, self.alpha, self.hess, self._k = f, alpha, hess, k
        self.neg_log_posterior = obj
        self._middle = hess @ np.linalg.inv(np.eye(n) + k @ hess)  # W (I + K W)^{-1}
        return self

    def _check_fitted(self) -> None:
        if self.x is None:
            raise InputError("PairwiseGP is not fitted; call fit(x, comparisons) first")

    def predict(self, x, *, full_cov: bool = False):
        """Posterior mean ``[n]`` and variance ``[n]`` (or covariance ``[n, n]`` with ``full_cov``) at ``x``."""
        self._check_fitted()
        x = as_points(x, "x")
        ks = self.kernel(self.x, x)
        mean = ks.T @ self.alpha
        if full_cov:
            cov = self.kernel(x, x) - ks.T @ self._middle @ ks
            return mean, 0.5 * (cov + cov.T)
        var = self.outputscale - np.einsum("ij,ik,kj->j", ks, self._middle, ks)
        return mean, np.maximum(var, 0.0)

    def pair_moments(self, xa, xb) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Means, variances and the covariance of :math:`f(x_a)` and :math:`f(x_b)` for paired rows."""
        self._check_fitted()
        xa, xb = as_points(xa, "xa"), as_points(xb, "xb")
        if xa.shape != xb.shape:
            raise InputError(f"xa and xb must have the same shape, got {xa.shape} and {xb.shape}")
        ka, kb = self.kernel(self.x, xa), self.kernel(self.x, xb)
        ma, mb = ka.T @ self.alpha, kb.T @ self.alpha
        va = self.outputscale - np.einsum("ij,ik,kj->j", ka, self._middle, ka)
        vb = self.outputscale - np.einsum("ij,ik,kj->j", kb, self._middle, kb)
        kab = self.outputscale * np.exp(-((xa - xb) ** 2).sum(1) / (2 * self.lengthscale**2))
        cab = kab - np.einsum("ij,ik,kj->j", ka, self._middle, kb)
        return ma, mb, np.maximum(va, 0.0), np.maximum(vb, 0.0), cab

    def prob_prefer(self, xa, xb) -> np.ndarray:
        """Predictive choice probability for paired rows of ``xa`` and ``xb`` (``[n]``).

        .. math::

            P(x_a \\succ x_b) = \\Phi\\big((\\mu_a-\\mu_b)/\\sqrt{2\\sigma^2 + v_a + v_b - 2c_{ab}}\\big)
        """
        ma, mb, va, vb, cab = self.pair_moments(xa, xb)
        return special.ndtr((ma - mb) / np.sqrt(2 * self.noise**2 + np.maximum(va + vb - 2 * cab, 0.0)))


def _gp(model) -> PairwiseGP:
    if not isinstance(model, PairwiseGP):
        raise InputError(f"expected a fitted PairwiseGP, got {type(model).__name__}")
    return model


@rule("eubo", "acquisition", data="a fitted PairwiseGP and candidate pairs")
def eubo(model: PairwiseGP, xa, xb) -> np.ndarray:
    """Expected utility of the best option of each candidate pair (query the pair with the largest).

    .. math::

        \\mathrm{EUBO}(a, b) = \\mathbb{E}[\\max(f_a, f_b)]
        = \\mu_b + \\delta\\,\\Phi(\\delta/s) + s\\,\\varphi(\\delta/s),\\quad
        \\delta = \\mu_a - \\mu_b,\\; s^2 = v_a + v_b - 2c_{ab}

    Lin, Astudillo, Frazier & Bakshy (2022), "Preference Exploration for Efficient Bayesian Optimization with
    Multiple Outcomes" (BoTorch's ``AnalyticExpectedUtilityOfBestOption``). ``xa``, ``xb``: ``[n, d]``; returns ``[n]``.
    A :class:`~pairkit.curate.SkewGP` averages this Gaussian formula over its posterior samples (its
    ``expected_best``), since its posterior is not Gaussian.
    """
    model = _gp(model)
    if hasattr(model, "expected_best"):
        return model.expected_best(xa, xb)
    ma, mb, va, vb, cab = model.pair_moments(xa, xb)
    delta, s = ma - mb, np.sqrt(np.maximum(va + vb - 2 * cab, 1e-18))
    u = delta / s
    return mb + delta * special.ndtr(u) + s * np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)


@rule(
    "preference_entropy",
    "acquisition",
    Option("eps", float, Interval(0, 0.5, closed="neither"), doc="probabilities are clipped to [eps, 1 - eps]"),
    data="predicted preference probabilities",
    aliases=("uncertainty_sampling",),
)
def preference_entropy(p_a, *, eps: float = 1e-12) -> np.ndarray:
    """Entropy of the predicted choice (label the pairs the model is least sure about).

    .. math::

        H(p) = -p\\log p - (1-p)\\log(1-p),\\qquad p = P(a \\succ b)

    Lewis & Gale (1994), "A Sequential Algorithm for Training Text Classifiers" (uncertainty sampling); for
    preferences e.g. Houlsby et al. (2011), "Bayesian Active Learning for Classification and Preference
    Learning". ``p_a``: ``[n]`` probabilities (from :meth:`PairwiseGP.prob_prefer`, a reward model or a judge).
    """
    p = np.asarray(p_a, dtype=float)
    if not np.all((p >= 0) & (p <= 1)):
        raise InputError("p_a must hold probabilities in [0, 1]")
    p = np.clip(p, eps, 1 - eps)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))
