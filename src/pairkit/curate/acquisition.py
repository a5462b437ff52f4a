"""Which prompts and pairs to label for learning: active preference learning rules and dueling-bandit baselines.

Acquisition for preference fine-tuning (Muldrew, Hayes, Zhang & Barber 2024, "Active Preference Learning for
Large Language Models"): the policy's predictive entropy per prompt, the certainty of DPO's implicit preference
model per completion pair, and their hybrid (over-sample prompts by entropy, label the most certain pairs — the
confidently wrong ones carry the largest DPO gradient). Dueling bandits are the classic baselines for choosing
which two arms to compare: RUCB and Double Thompson Sampling.

Inputs are numpy arrays (or anything ``np.asarray`` takes, torch tensors included).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option
from pairkit.curate._registry import AT_LEAST_1, POSITIVE, as_array, as_rng, rule
from pairkit.errors import InputError

__all__ = [
    "RUCB",
    "DoubleThompson",
    "active_preference_batch",
    "double_thompson",
    "predictive_entropy",
    "preference_certainty",
    "rucb",
]


@rule("predictive_entropy", "acquisition", data="log-probabilities of sampled completions [prompts, k]")
def predictive_entropy(sample_logps, *, mask=None) -> np.ndarray:
    """Monte Carlo estimate of the policy's predictive entropy per prompt (``[P]`` from ``[P, k]``).

    .. math::

        \\hat H(x) = -\\frac1k \\sum_{j=1}^{k} \\log \\pi_\\theta(y_j \\mid x),
        \\qquad y_j \\sim \\pi_\\theta(\\cdot\\mid x)

    Muldrew et al. (2024), "Active Preference Learning for Large Language Models" (the entropy acquisition).
    ``sample_logps``: summed log-probabilities of ``k`` completions sampled per prompt; ``mask`` ``[P, k]``
    (bool) marks the valid samples (each prompt needs at least one).
    """
    lp = np.asarray(sample_logps.detach().cpu() if hasattr(sample_logps, "detach") else sample_logps, dtype=float)
    if lp.ndim != 2 or np.isnan(lp).any():
        raise InputError(f"sample_logps must be a [prompts, k] array without NaN, got shape {lp.shape}")
    m = np.ones(lp.shape, bool) if mask is None else np.asarray(mask, bool)
    if m.shape != lp.shape:
        raise InputError(f"mask must have the shape of sample_logps {lp.shape}, got {m.shape}")
    count = m.sum(1)
    if (count == 0).any():
        raise InputError(f"prompt {int(np.flatnonzero(count == 0)[0])} has no valid sample (mask all False)")
    if np.isinf(lp[m]).any():  # masked-out padding may be -inf; a sampled completion has p > 0
        raise InputError("sample_logps holds infinite log-probabilities where mask is True")
    return -np.where(m, lp, 0.0).sum(1) / count


@rule(
    "preference_certainty",
    "acquisition",
    Option("beta", float, POSITIVE, doc="DPO's beta (the implicit reward scale)"),
    data="policy and reference log-probabilities of two completions",
    aliases=("implicit_reward_certainty",),
)
def preference_certainty(policy_logps_a, ref_logps_a, policy_logps_b, ref_logps_b, *, beta: float = 0.1):
    """Certainty of DPO's implicit preference model about each completion pair (``[n]``; 0 to ½).

    .. math::

        \\hat r(x, y) = \\beta \\log\\frac{\\pi_\\theta(y\\mid x)}{\\pi_{ref}(y\\mid x)},\\qquad
        c(x, y_a, y_b) = \\big|\\sigma(\\hat r(x, y_a) - \\hat r(x, y_b)) - \\tfrac12\\big|

    Muldrew et al. (2024), "Active Preference Learning for Large Language Models" (preference certainty: the
    pairs with the largest certainty are labelled; where the model is confidently wrong the DPO loss is largest).
    Rafailov et al. (2023), "Direct Preference Optimization" (the implicit reward).
    """
    values = (policy_logps_a, ref_logps_a, policy_logps_b, ref_logps_b)
    arrays = [
        as_array(v, n) for v, n in zip(values, ("policy_logps_a", "ref_logps_a", "policy_logps_b", "ref_logps_b"))
    ]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"the four log-probability arrays must have one shape, got {sorted(shapes)}")
    pa, ra, pb, rb = arrays
    return np.abs(special.expit(beta * ((pa - ra) - (pb - rb))) - 0.5)


@rule(
    "apl_hybrid",
    "acquisition",
    Option("n_prompts", int, AT_LEAST_1, doc="prompts kept by entropy (the over-sampled set)"),
    Option("n_pairs", int, AT_LEAST_1, doc="pairs to label, the most certain of those prompts"),
    data="entropy per prompt and certainty of its completion pair",
    aliases=("active_preference_learning",),
)
def active_preference_batch(entropy, certainty, *, n_prompts: int, n_pairs: int) -> np.ndarray:
    """Indices to label: the ``n_prompts`` highest-entropy prompts, then the ``n_pairs`` most certain of them.

    The hybrid acquisition of Muldrew et al. (2024), "Active Preference Learning for Large Language Models":

    .. math::

        S_1 = \\operatorname{top}_{n_1}\\, \\hat H(x_i),\\qquad S = \\operatorname{top}_{n_2,\\, i \\in S_1}\\, c_i

    ``entropy``, ``certainty``: ``[P]`` (one completion pair per prompt). Ties keep the earlier index. Returns
    ``[min(n_pairs, n_prompts, P)]`` indices in order of certainty.
    """
    h, c = as_array(entropy, "entropy", 1), as_array(certainty, "certainty", 1)
    if h.shape != c.shape:
        raise InputError(f"entropy and certainty must have one length, got {len(h)} and {len(c)}")
    keep = np.argsort(-h, kind="stable")[:n_prompts]
    order = np.argsort(-c[keep], kind="stable")[:n_pairs]
    return keep[order]


class _Duel:
    """Win counts of ``n_arms`` arms and the update shared by the dueling bandits."""

    def __init__(self, n_arms: int, alpha: float, seed) -> None:
        if isinstance(n_arms, bool) or not isinstance(n_arms, (int, np.integer)) or n_arms < 2:
            raise InputError(f"n_arms must be an integer >= 2, got {n_arms!r}")
        self.n, self.alpha = int(n_arms), float(alpha)
        self.wins = np.zeros((self.n, self.n))  # wins[i, j]: times i beat j (ties count half to each)
        self.t = 0
        self.rng = as_rng(seed)

    def update(self, i: int, j: int, outcome: float) -> None:
        """Record a duel of ``i`` against ``j``: outcome 1 (``i`` won), 0 (``j`` won) or ½ (tie)."""
        if not (0 <= i < self.n and 0 <= j < self.n) or i == j:
            raise InputError(f"arms must be two different indices in 0..{self.n - 1}, got {i!r} and {j!r}")
        if not 0 <= outcome <= 1:
            raise InputError(f"outcome must be in [0, 1], got {outcome!r}")
        self.wins[i, j] += outcome
        self.wins[j, i] += 1 - outcome
        self.t += 1

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower confidence bounds ``[n, n]`` on :math:`P(i \\succ j)` (x/0 := 1 and 0; diagonal ½)."""
        played = self.wins + self.wins.T
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.wins / played
            radius = np.sqrt(self.alpha * math.log(max(self.t, 1)) / played)
        upper = np.where(played > 0, mean + radius, 1.0)
        lower = np.where(played > 0, mean - radius, 0.0)
        np.fill_diagonal(upper, 0.5)
        np.fill_diagonal(lower, 0.5)
        return upper, lower

    def best(self) -> int:
        """The arm with the most empirical pairwise wins (Copeland score on win rates; the recommendation)."""
        played = self.wins + self.wins.T
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(played > 0, self.wins / played, 0.5)
        return int(np.argmax((rate > 0.5).sum(1) + 1e-9 * rate.sum(1)))

    def _pick(self, mask: np.ndarray) -> int:
        return int(self.rng.choice(np.flatnonzero(mask)))


class RUCB(_Duel):
    """Relative Upper Confidence Bound (Zoghi, Whiteson, Munos & de Rijke 2014, ICML).

    .. math::

        u_{ij} = \\frac{w_{ij}}{w_{ij}+w_{ji}} + \\sqrt{\\frac{\\alpha \\ln t}{w_{ij}+w_{ji}}},\\quad
        C = \\{c : u_{cj} \\ge \\tfrac12\\ \\forall j\\},\\quad d = \\arg\\max_{j \\ne c} u_{jc}

    The champion ``c`` is drawn uniformly from ``C`` (uniformly from all arms when ``C`` is empty), after the
    paper's rule of keeping the previous lone candidate with probability ½; the challenger ``d`` is the arm
    most likely (optimistically) to beat it. Unlike the paper, ``d = c`` is excluded so every duel is a label.
    """

    def __init__(self, n_arms: int, *, alpha: float = 0.51, seed=None) -> None:
        super().__init__(n_arms, alpha, seed)
        self.previous: int | None = None

    def select(self) -> tuple[int, int]:
        """The next duel ``(champion, challenger)``."""
        upper, _ = self.bounds()
        candidates = (upper >= 0.5).all(1)
        if not candidates.any():
            c = int(self.rng.integers(self.n))
        elif self.previous is not None and candidates[self.previous] and self.rng.random() < 0.5:
            c = self.previous
        else:
            c = self._pick(candidates)
        if candidates.sum() == 1:
            self.previous = c
        col = upper[:, c].copy()
        col[c] = -np.inf
        d = self._pick(col == col.max())
        return c, d


class DoubleThompson(_Duel):
    """Double Thompson Sampling for dueling bandits (Wu & Liu 2016, NeurIPS).

    .. math::

        \\theta^{(1)}_{ij} \\sim \\mathrm{Beta}(w_{ij}+1, w_{ji}+1),\\quad
        a = \\arg\\max_{i \\in C} \\sum_j \\mathbb 1[\\theta^{(1)}_{ij} > \\tfrac12],\\quad
        b = \\arg\\max_{i:\\, l_{ia} \\le 1/2,\\, i \\ne a} \\theta^{(2)}_{ia}

    with :math:`C` the arms of largest optimistic Copeland score :math:`\\sum_j \\mathbb 1[u_{ij} > ½]` and
    :math:`l` the lower confidence bounds. Unlike the paper, ``b = a`` is excluded so every duel is a label.
    """

    def __init__(self, n_arms: int, *, alpha: float = 0.51, seed=None) -> None:
        super().__init__(n_arms, alpha, seed)

    def select(self) -> tuple[int, int]:
        """The next duel ``(first, second)``."""
        upper, lower = self.bounds()
        copeland = (upper > 0.5).sum(1)
        candidates = copeland == copeland.max()
        theta = np.triu(self.rng.beta(self.wins + 1, self.wins.T + 1), 1)
        theta = theta + np.tril(1 - theta.T, -1)
        np.fill_diagonal(theta, 0.5)
        score = np.where(candidates, (theta > 0.5).sum(1), -1)
        a = self._pick(score == score.max())
        theta2 = self.rng.beta(self.wins[:, a] + 1, self.wins[a, :] + 1)
        theta2[a] = -np.inf
        theta2[(lower[:, a] > 0.5)] = -np.inf  # arms already known to beat a are not informative challengers
        if not np.isfinite(theta2).any():
            theta2 = np.where(np.arange(self.n) == a, -np.inf, self.rng.random(self.n))
        b = self._pick(theta2 == theta2.max())
        return a, b


@rule("rucb", "bandit", Option("alpha", float, Interval(0.5, None, closed="neither"), doc="exploration (> ½)"),
      data="number of arms")  # fmt: skip
def rucb(n_arms: int, *, alpha: float = 0.51, seed=None) -> RUCB:
    """A :class:`RUCB` dueling bandit over ``n_arms`` arms.

    Zoghi, Whiteson, Munos & de Rijke (2014), "Relative Upper Confidence Bound for the K-Armed Dueling Bandit
    Problem" (ICML).
    """
    return RUCB(n_arms, alpha=alpha, seed=seed)


@rule("double_thompson", "bandit", Option("alpha", float, Interval(0.5, None, closed="neither"), doc="exploration"),
      data="number of arms", aliases=("dts",))  # fmt: skip
def double_thompson(n_arms: int, *, alpha: float = 0.51, seed=None) -> DoubleThompson:
    """A :class:`DoubleThompson` dueling bandit over ``n_arms`` arms.

    Wu & Liu (2016), "Double Thompson Sampling for Dueling Bandits" (NeurIPS).
    """
    return DoubleThompson(n_arms, alpha=alpha, seed=seed)
