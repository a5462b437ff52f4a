"""Preferential Bayesian optimisation with the exact (skew) GP posterior and the hallucination-believer acquisition.

With a GP prior and a probit likelihood the posterior of the utility given pairwise choices is not Gaussian but a
skew GP; Takeno et al. (2023), "Towards Practical Preferential Bayesian Optimization with Skew Gaussian Processes",
sample it exactly through its truncated-normal representation instead of the Laplace approximation of
:class:`~pairkit.curate.PairwiseGP` (BoTorch's ``PairwiseGP``). Write each comparison :math:`k` (winner
:math:`w_k`, loser :math:`l_k`) as :math:`v_k = f(x_{w_k}) - f(x_{l_k}) + \\varepsilon_k > 0` with
:math:`\\varepsilon_k \\sim N(0, 2\\sigma^2)`; then with :math:`A` the ``[m, n]`` difference matrix,

.. math::

    v \\sim N(0, S),\\; S = A K A^\\top + 2\\sigma^2 I, \\qquad v \\mid D \\sim N(0, S)\\ \\text{truncated to}\\ v > 0,

    f_* \\mid v \\sim N\\big(k_*^\\top A^\\top S^{-1} v,\\; k_{**} - k_*^\\top A^\\top S^{-1} A k_*\\big)

so the posterior is a Gaussian mixture over the truncated :math:`v`, sampled here by elliptical slice sampling
restricted to the orthant (the feasible arc of each ellipse is one interval, found in closed form, so every step is
accepted; Murray, Adams & MacKay 2010, "Elliptical slice sampling"; Gessner, Kanjilal & Hennig 2020, "Integrals over
Gaussians under Linear Domain Constraints"). Predictions average the Gaussian conditional over the samples of
:math:`v` (Rao–Blackwellised). Dense algebra over the ``n`` compared points and ``m`` comparisons.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg, special

from pairkit._spec import Interval, Option
from pairkit.curate._registry import as_points, as_rng, check_comparisons, rule
from pairkit.curate.pairwise_gp import PairwiseGP
from pairkit.errors import InputError

__all__ = ["SkewGP", "hallucination_believer", "orthant_ess"]


def orthant_ess(cov_chol: np.ndarray, n_samples: int, *, burn_in: int = 200, seed=0) -> np.ndarray:
    """Samples ``[n_samples, m]`` of :math:`N(0, LL^\\top)` truncated to the positive orthant (elliptical slices).

    Each step draws :math:`\\nu \\sim N(0, LL^\\top)` and moves to :math:`v\\cos\\theta + \\nu\\sin\\theta` with
    :math:`\\theta` uniform on the feasible arc :math:`[\\max_k \\phi_k - \\pi/2,\\ \\min_k \\phi_k + \\pi/2]`,
    :math:`\\phi_k = \\operatorname{atan2}(\\nu_k, v_k)` (coordinate :math:`k` stays positive exactly there).
    """
    rng = as_rng(seed)
    m = cov_chol.shape[0]
    v = np.abs(cov_chol @ rng.standard_normal(m)) + 1e-12  # a feasible start; burn-in forgets it
    out = np.empty((n_samples, m))
    half = math.pi / 2
    for t in range(burn_in + n_samples):
        nu = cov_chol @ rng.standard_normal(m)
        phi = np.arctan2(nu, v)
        theta = rng.uniform((phi - half).max(), (phi + half).min())
        v = np.maximum(v * math.cos(theta) + nu * math.sin(theta), 0.0)
        if t >= burn_in:
            out[t - burn_in] = v
    return out


class SkewGP(PairwiseGP):
    """GP utility from pairwise comparisons with the exact skew-GP posterior (Monte Carlo over the truncated normal).

    Same model and arguments as :class:`PairwiseGP` (RBF kernel, probit noise :math:`\\sigma`); ``samples``
    draws of :math:`v` after ``burn_in`` steps of :func:`orthant_ess` with ``seed``. Takeno et al. (2023),
    "Towards Practical Preferential Bayesian Optimization with Skew Gaussian Processes". ``predict`` and
    ``pair_moments`` give the posterior's exact moments (up to Monte Carlo error); :meth:`prob_prefer` and
    :meth:`expected_best` average the Gaussian conditionals over the samples.
    """

    def __init__(
        self,
        *,
        lengthscale: float = 0.2,
        outputscale: float = 1.0,
        noise: float = 1.0,
        jitter: float = 1e-6,
        samples: int = 1000,
        burn_in: int = 200,
        seed=0,
    ) -> None:
        super().__init__(lengthscale=lengthscale, outputscale=outputscale, noise=noise, jitter=jitter)
        for name, value in (("samples", samples), ("burn_in", burn_in)):
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "samples" else 0):
                raise InputError(f"{name} must be an integer >= {1 if name == 'samples' else 0}, got {value!r}")
        self.samples, self.burn_in, self.seed = samples, burn_in, seed

    def fit(self, x, comparisons) -> SkewGP:  # type: ignore[override]
        """Sample the posterior given points ``x`` ``[n, d]`` and ``comparisons`` ``[m, 2]`` (winner, loser)."""
        x = as_points(x, "x")
        self.winners, self.losers = check_comparisons(comparisons, len(x))
        self.x = x
        k = self.kernel(x, x) + self.jitter * np.eye(len(x))
        ak = k[self.winners] - k[self.losers]  # A K, [m, n]
        s = ak[:, self.winners] - ak[:, self.losers] + 2 * self.noise**2 * np.eye(len(self.winners))
        self._chol = linalg.cholesky(s, lower=True)
        self.v_samples = orthant_ess(self._chol, self.samples, burn_in=self.burn_in, seed=self.seed)
        self.v_mean = self.v_samples.mean(0)
        self.v_cov = np.atleast_2d(np.cov(self.v_samples, rowvar=False))
        return self

    def _check_fitted(self) -> None:
        if self.x is None:
            raise InputError("SkewGP is not fitted; call fit(x, comparisons) first")

    def _weights(self, xs: np.ndarray):
        """:math:`C = S^{-1} A k_*` ``[m, n*]`` and :math:`A k_*`."""
        ks = self.kernel(self.x, xs)
        aks = ks[self.winners] - ks[self.losers]
        return linalg.cho_solve((self._chol, True), aks), aks

    def predict(self, x, *, full_cov: bool = False):
        """Posterior mean ``[n]`` and variance ``[n]`` (covariance with ``full_cov``) at ``x``."""
        self._check_fitted()
        x = as_points(x, "x")
        c, ak = self._weights(x)
        mean = c.T @ self.v_mean
        if full_cov:
            cov = self.kernel(x, x) - ak.T @ c + c.T @ self.v_cov @ c
            return mean, 0.5 * (cov + cov.T)
        var = self.outputscale - np.einsum("ij,ij->j", ak, c) + np.einsum("ij,ik,kj->j", c, self.v_cov, c)
        return mean, np.maximum(var, 0.0)

    def _pair_parts(self, xa, xb):
        xa, xb = as_points(xa, "xa"), as_points(xb, "xb")
        if xa.shape != xb.shape:
            raise InputError(f"xa and xb must have the same shape, got {xa.shape} and {xb.shape}")
        ca, aka = self._weights(xa)
        cb, akb = self._weights(xb)
        kab = self.outputscale * np.exp(-((xa - xb) ** 2).sum(1) / (2 * self.lengthscale**2))
        # the Gaussian conditional given v: its (co)variances do not depend on v
        va = self.outputscale - np.einsum("ij,ij->j", aka, ca)
        vb = self.outputscale - np.einsum("ij,ij->j", akb, cb)
        cab = kab - np.einsum("ij,ij->j", aka, cb)
        return ca, cb, np.maximum(va, 0.0), np.maximum(vb, 0.0), cab

    def pair_moments(self, xa, xb):
        """Posterior means, variances and covariance of :math:`f(x_a)`, :math:`f(x_b)` for paired rows."""
        self._check_fitted()
        ca, cb, va, vb, cab = self._pair_parts(xa, xb)
        s = self.v_cov
        return (
            ca.T @ self.v_mean,
            cb.T @ self.v_mean,
            va + np.einsum("ij,ik,kj->j", ca, s, ca),
            vb + np.einsum("ij,ik,kj->j", cb, s, cb),
            cab + np.einsum("ij,ik,kj->j", ca, s, cb),
        )

    def prob_prefer(self, xa, xb) -> np.ndarray:
        """Predictive choice probability for paired rows, averaged over the posterior samples of :math:`v`.

        .. math::

            P(x_a \\succ x_b \\mid D)
            = \\frac1S\\sum_s \\Phi\\Big(\\frac{d(v_s)}{\\sqrt{2\\sigma^2 + v_a + v_b - 2c_{ab}}}\\Big)

        :math:`d(v_s)` is the conditional mean of :math:`f_a - f_b` given the sample :math:`v_s`, and
        :math:`v_a, v_b, c_{ab}` the conditional (co)variances.
        """
        self._check_fitted()
        ca, cb, va, vb, cab = self._pair_parts(xa, xb)
        d = self.v_samples @ (ca - cb)  # [S, n]
        scale = np.sqrt(2 * self.noise**2 + np.maximum(va + vb - 2 * cab, 0.0))
        return special.ndtr(d / scale).mean(0)

    def expected_best(self, xa, xb) -> np.ndarray:
        """EUBO under the skew posterior: the Gaussian :math:`E[\\max(f_a, f_b)]` averaged over the samples."""
        self._check_fitted()
        ca, cb, va, vb, cab = self._pair_parts(xa, xb)
        ma, mb = self.v_samples @ ca, self.v_samples @ cb
        s = np.sqrt(np.maximum(va + vb - 2 * cab, 1e-18))
        u = (ma - mb) / s
        return (mb + (ma - mb) * special.ndtr(u) + s * np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)).mean(0)

    def hallucinated(self, x, *, seed=0) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance at ``x`` of the Gaussian :math:`f \\mid v` for one posterior sample of :math:`v`."""
        self._check_fitted()
        x = as_points(x, "x")
        c, ak = self._weights(x)
        v = self.v_samples[as_rng(seed).integers(len(self.v_samples))]
        return c.T @ v, np.maximum(self.outputscale - np.einsum("ij,ij->j", ak, c), 0.0)


@rule(
    "hallucination_believer",
    "acquisition",
    Option("beta", float, Interval(0, None), doc="UCB width: mean + sqrt(beta) * sd of the hallucinated GP"),
    data="a fitted SkewGP and candidate points",
    aliases=("hb_ucb",),
)
def hallucination_believer(model: SkewGP, x, *, beta: float = 4.0, seed=0) -> tuple[int, int]:
    """The next duel: the current best candidate against the UCB maximiser of a hallucinated GP.

    .. math::

        i = \\arg\\max_x \\mathbb{E}[f(x)\\mid D],\\qquad
        j = \\arg\\max_{x \\ne x_i}\\ \\mu_{\\tilde v}(x) + \\sqrt\\beta\\,\\sigma(x),\\quad \\tilde v \\sim p(v\\mid D)

    Takeno et al. (2023), "Towards Practical Preferential Bayesian Optimization with Skew Gaussian Processes"
    (hallucination believer: one sample of the latent comparisons is believed as data, which makes the posterior
    Gaussian, and a standard acquisition runs on it; UCB here). ``x`` ``[n, d]`` candidates; returns indices.
    """
    if not isinstance(model, SkewGP):
        raise InputError(f"expected a fitted SkewGP, got {type(model).__name__}")
    x = as_points(x, "x")
    if len(x) < 2:
        raise InputError("hallucination_believer needs at least 2 candidate points")
    mean, _ = model.predict(x)
    i = int(np.argmax(mean))
    mu, var = model.hallucinated(x, seed=seed)
    ucb = mu + math.sqrt(beta) * np.sqrt(var)
    ucb[i] = -np.inf
    return i, int(np.argmax(ucb))
