"""MAPLE: Bayesian active preference learning over concept weights, with a language-model prior and easy queries.

Mahmud, Nakamura & Zilberstein (2025), "MAPLE: A Framework for Active Preference Learning Guided by Large Language
Models". The preference function is a linear combination of named concepts, :math:`\\omega(\\tau) = w^\\top
\\phi(\\tau)`; a language model turns the user's natural-language feedback into a prior over :math:`w`, pairwise
rankings update it through a Bradley–Terry likelihood, and queries are chosen to be informative *and* easy to
answer. Here: a Gaussian prior whose mean (and scale) come from a caller's function of the feedback (an LLM call, or
anything else), the posterior sampled by elliptical slice sampling (Murray, Adams & MacKay 2010, "Elliptical slice
sampling"; exact for a Gaussian prior, no step size), and a query score of expected information gain (BALD,
Houlsby et al. 2011) minus a weighted difficulty the caller estimates (e.g. an LLM's rating of how hard the pair is to
compare, in [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option
from pairkit.curate._registry import as_array, as_rng, rule
from pairkit.errors import InputError

__all__ = ["MAPLE", "maple_query_scores"]


class MAPLE:
    """Posterior over concept weights :math:`w` from a language prior and pairwise choices.

    .. math::

        w \\sim N(\\mu_{LM}, \\operatorname{diag}(s_{LM})^2),\\qquad
        P(\\tau_a \\succ \\tau_b \\mid w) = \\sigma\\big(w^\\top(\\phi_a - \\phi_b)\\big)

    Args:
        concepts: the concept names (one per feature column).
        prior_mean, prior_scale: the prior (default 0 and 1); :meth:`from_feedback` sets them from language.
        samples, burn_in, seed: of the elliptical slice sampler.
    """

    def __init__(self, concepts: Sequence[str], *, prior_mean=None, prior_scale=1.0, samples: int = 2000,
                 burn_in: int = 300, seed=0) -> None:  # fmt: skip
        self.concepts = [str(c) for c in concepts]
        d = len(self.concepts)
        if d == 0:
            raise InputError("MAPLE needs at least one concept")
        self.prior_mean = np.zeros(d) if prior_mean is None else as_array(prior_mean, "prior_mean", 1)
        self.prior_scale = np.broadcast_to(as_array(prior_scale, "prior_scale"), (d,)).astype(float)
        if self.prior_mean.shape != (d,) or np.any(self.prior_scale <= 0):
            raise InputError(f"prior_mean must have {d} entries and prior_scale be > 0")
        if not (isinstance(samples, int) and samples >= 1 and isinstance(burn_in, int) and burn_in >= 0):
            raise InputError(f"samples must be >= 1 and burn_in >= 0 (integers), got {samples!r}, {burn_in!r}")
        self.samples, self.burn_in, self.seed = samples, burn_in, seed
        self.w_samples = self.prior_mean + self.prior_scale * as_rng(seed).standard_normal((samples, d))

    @classmethod
    def from_feedback(cls, concepts: Sequence[str], feedback: str, language_prior: Callable, **kwargs) -> MAPLE:
        """A model whose prior comes from ``language_prior(feedback, concepts)``.

        It returns the prior means (one number per concept: how much, and in which direction, the feedback says
        the concept matters) or a pair (means, scales). This is where MAPLE calls its LLM.
        """
        out = language_prior(feedback, list(concepts))
        mean, scale = out if isinstance(out, tuple) else (out, kwargs.pop("prior_scale", 1.0))
        return cls(concepts, prior_mean=mean, prior_scale=scale, **kwargs)

    def fit(self, features_a, features_b, outcomes) -> MAPLE:
        """Sample the posterior given ``[m, d]`` concept features of both sides and outcomes (1: a won, 0: b won).

        Fractional outcomes (ties as 0.5) weigh both directions.
        """
        fa, fb = as_array(features_a, "features_a", 2), as_array(features_b, "features_b", 2)
        y = as_array(outcomes, "outcomes", 1)
        d = len(self.concepts)
        if fa.shape != fb.shape or fa.shape[1] != d or len(y) != len(fa):
            raise InputError(f"features must be [m, {d}] on both sides with m outcomes; got {fa.shape}, {fb.shape}, "
                             f"{y.shape}")  # fmt: skip
        if np.any((y < 0) | (y > 1)):
            raise InputError("outcomes must lie in [0, 1]")
        diff = fa - fb

        def loglik(w):
            z = diff @ w
            return float(np.sum(y * special.log_expit(z) + (1 - y) * special.log_expit(-z)))

        rng = as_rng(self.seed)
        w = self.prior_mean.copy()
        ll = loglik(w)
        out = np.empty((self.samples, d))
        for t in range(self.burn_in + self.samples):
            nu = self.prior_scale * rng.standard_normal(d)
            level = ll + math.log(rng.random())
            theta = rng.uniform(0.0, 2 * math.pi)
            lo, hi = theta - 2 * math.pi, theta
            while True:  # shrink the bracket until the point on the ellipse is above the slice level
                prop = self.prior_mean + (w - self.prior_mean) * math.cos(theta) + nu * math.sin(theta)
                ll_prop = loglik(prop)
                if ll_prop > level:
                    break
                lo, hi = (theta, hi) if theta < 0 else (lo, theta)
                theta = rng.uniform(lo, hi)
            w, ll = prop, ll_prop
            if t >= self.burn_in:
                out[t - self.burn_in] = w
        self.w_samples = out
        return self

    def prob_prefer(self, features_a, features_b) -> np.ndarray:
        """Posterior predictive :math:`P(a \\succ b) = \\frac1S\\sum_s \\sigma(w_s^\\top(\\phi_a - \\phi_b))`, ``[n]``.

        Mean over the posterior samples of the Bradley–Terry choice probability.
        """
        diff = as_array(features_a, "features_a", 2) - as_array(features_b, "features_b", 2)
        return special.expit(diff @ self.w_samples.T).mean(1)

    def weights(self) -> dict[str, float]:
        """Posterior mean weight of each concept (the interpretable preference, for auditing)."""
        return dict(zip(self.concepts, self.w_samples.mean(0).tolist()))


@rule(
    "maple",
    "acquisition",
    Option("difficulty_weight", float, Interval(0, None), doc="weight λ of the query difficulty"),
    data="a MAPLE model and candidate pairs' concept features",
    aliases=("maple_query",),
)
def maple_query_scores(model: MAPLE, features_a, features_b, difficulty=None, *,
                       difficulty_weight: float = 0.5) -> np.ndarray:  # fmt: skip
    """Informative and easy queries: expected information gain minus the weighted difficulty (ask the largest).

    .. math::

        \\mathrm{score}(a, b) = H\\big[\\bar p\\big] - \\frac1S\\sum_s H\\big[p_s\\big] - \\lambda\\, d(a, b),
        \\qquad p_s = \\sigma\\big(w_s^\\top(\\phi_a - \\phi_b)\\big),\\ \\bar p = \\frac1S\\sum_s p_s

    The information gain about :math:`w` (BALD, Houlsby et al. 2011, "Bayesian Active Learning for Classification
    and Preference Learning") of MAPLE's active learning, and its language-conditioned preference for easy queries
    (Mahmud et al. 2025) as the caller's difficulty :math:`d \\in [0, 1]` (e.g. an LLM's rating; ``None``: 0).
    Reading taken: the two are combined additively with weight λ. Returns ``[n]``.
    """
    if not isinstance(model, MAPLE):
        raise InputError(f"expected a MAPLE model, got {type(model).__name__}")
    diff = as_array(features_a, "features_a", 2) - as_array(features_b, "features_b", 2)
    p = np.clip(special.expit(diff @ model.w_samples.T), 1e-12, 1 - 1e-12)  # [n, S]

    def entropy(q):
        return -(q * np.log(q) + (1 - q) * np.log1p(-q))

    gain = entropy(p.mean(1)) - entropy(p).mean(1)
    if difficulty is None:
        return gain
    d = as_array(difficulty, "difficulty", 1)
    if d.shape != gain.shape or np.any((d < 0) | (d > 1)):
        raise InputError(f"difficulty must hold {len(gain)} numbers in [0, 1]")
    return gain - difficulty_weight * d
