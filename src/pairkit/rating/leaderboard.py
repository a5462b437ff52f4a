"""The :class:`Leaderboard`: what every rating model returns."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from pairkit._lazy import pandas as pd
from pairkit.errors import InputError

__all__ = ["ELO_FACTOR", "LOG_STRENGTH", "Leaderboard", "PairPredictor", "Predictor", "bradley_terry_predictor"]

ELO_FACTOR = 400.0 / math.log(10.0)
"""Elo points per natural log-strength unit (a 400-point gap means 10:1 odds)."""

RANK_DRAWS_LIMIT = 2500
"""Up to this many items, rank intervals come from normal draws (a Cholesky factor, O(n³)); beyond, from the
overlap of the marginal intervals (O(n log n))."""

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]
"""``(scores_a, scores_b, a_first) -> (P(a wins), P(tie))``: win and tie probabilities from the two scores."""

PairPredictor = Callable[[np.ndarray, np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]
"""``(index_a, index_b, a_first) -> (P(a wins), P(tie))`` by item index, for models whose odds are not a function
of the two scores alone (blade-chest's cyclic term, the σ of online posteriors). Index −1 (an item the board has
not seen) reaches it only if it has a true attribute ``predicts_unknown`` (TrueSkill and Weng–Lin: a newcomer with
the prior's σ); otherwise the board predicts a coin flip for it."""

LOG_STRENGTH = "log-strength"
"""The scale of Bradley–Terry-type models: differences are log-odds (what ``.scale("elo")`` converts)."""


def bradley_terry_predictor(
    theta_a: np.ndarray, theta_b: np.ndarray, a_first: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """P(a beats b) under Bradley–Terry on natural log-strengths, and a zero tie probability.

    >>> import numpy as np
    >>> from pairkit.rating import bradley_terry_predictor
    >>> win, tie = bradley_terry_predictor(np.array([1.0]), np.array([0.0]), None)
    >>> print(np.round(win, 4), tie)
    [0.7311] [0.]
    """
    p = special.expit(theta_a - theta_b)
    return p, np.zeros_like(p)


@dataclass(frozen=True, eq=False)
class Leaderboard:
    """Ratings of items with uncertainty, as fitted by a model.

    ``scores`` are on the scale named by ``score_scale``: ``"log-strength"`` (natural log-strengths, whose
    differences are log-odds: Bradley–Terry and its relatives, Elo, Rank Centrality) or what a model computes
    instead — ``"trueskill mu"``, ``"openskill mu"``, ``"Borda count"``, ``"PageRank pi"``, ``"win rate"``, ….
    ``se``, ``covariance`` and bootstrap ``samples`` are in the units of the scores. :attr:`ratings` and the
    intervals are the scores shown on the display scale ``scale_name``:
    ``rating = scale_factor * scores + offset`` (``"log"``: factor 1, offset 0; ``"elo"``: 400/ln 10 and 1000
    or an anchor item; only log-strengths can be shown as Elo). ``log_strength`` is the old name of ``scores``
    (deprecated: it held μ, counts or π for the models that do not fit log-strengths).

    Predictions: :meth:`predict_indices` is the one protocol — ``pair_predictor`` (by item index) when the model
    sets one, else ``predictor`` applied to the two scores; a model without win probabilities sets neither.

    ``params`` holds fitted extra parameters (tie ν, order advantage, coefficients) and ``param_intervals``
    their intervals; ``columns`` holds extra per-item columns (e.g. σ and the conservative score).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_bradley_terry
    >>> board = fit_bradley_terry(comps, prior=1.0)
    >>> board.model, board.score_scale, board.items
    ('bradley_terry', 'log-strength', ('a', 'b', 'c'))
    >>> print(board.to_pandas()[['rank', 'item']].to_string(index=False))
     rank item
        1    a
        2    b
        3    c
    """

    items: tuple[str, ...]
    scores: np.ndarray
    model: str
    se: np.ndarray | None = None
    ci_low_log: np.ndarray | None = None
    ci_high_log: np.ndarray | None = None
    covariance: np.ndarray | None = None
    samples: np.ndarray | None = None
    n: np.ndarray | None = None
    win_rate: np.ndarray | None = None
    log_likelihood: float | None = None
    n_comparisons: int = 0
    params: dict[str, float] = field(default_factory=dict)
    param_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    interval_method: str | None = None
    level: float = 0.95
    scale_name: str = "log"
    scale_factor: float = 1.0
    offset: float = 0.0
    predictor: Predictor | None = field(default=bradley_terry_predictor, repr=False)
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    sort_key: np.ndarray | None = field(default=None, repr=False)
    """What ranks the items when it is not the rating itself (online posteriors: the conservative μ − zσ);
    :attr:`rank`, :meth:`to_pandas` and the JSON follow it and say so (``sorted_by``)."""
    score_scale: str = LOG_STRENGTH
    pair_predictor: PairPredictor | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.level, (int, float, np.floating)) and 0 < self.level < 1):  # rejects NaN too
            raise InputError(f"level must be in (0, 1), e.g. 0.95; got {self.level!r}")
        n = len(self.items)
        if self.scores.shape != (n,):
            raise InputError(f"scores have shape {self.scores.shape}, expected ({n},)")
        if self.ci_low_log is None and self.se is not None:
            z = special.ndtri(0.5 + self.level / 2)
            object.__setattr__(self, "ci_low_log", self.scores - z * self.se)
            object.__setattr__(self, "ci_high_log", self.scores + z * self.se)

    @property
    def log_strength(self) -> np.ndarray:
        """Deprecated name of :attr:`scores` (which are log-strengths only when ``score_scale`` says so)."""
        return self.scores

    # ------------------------------------------------------------------ displayed values
    @property
    def ratings(self) -> np.ndarray:
        return self.scale_factor * self.scores + self.offset

    @property
    def ci_low(self) -> np.ndarray | None:
        return None if self.ci_low_log is None else self.scale_factor * self.ci_low_log + self.offset

    @property
    def ci_high(self) -> np.ndarray | None:
        return None if self.ci_high_log is None else self.scale_factor * self.ci_high_log + self.offset

    @property
    def rank(self) -> np.ndarray:
        """Competition rank (1 = best; equal ratings share a rank), by :attr:`sort_key` when set."""
        r = self.scores if self.sort_key is None else self.sort_key
        order = np.sort(r)[::-1]
        return 1 + np.searchsorted(-order, -r, side="left")

    @property
    def rank_method(self) -> str | None:
        """How :meth:`rank_interval` gets its ranks: ``"bootstrap draws"``, ``"normal draws"`` (from the
        covariance, up to :data:`RANK_DRAWS_LIMIT` items), ``"interval overlap"`` (LMArena's rule) or None."""
        if self.samples is not None:
            return "bootstrap draws"
        if self.covariance is not None and len(self.items) <= RANK_DRAWS_LIMIT:
            return "normal draws" if self._interval_scales() is None else MATCHED_DRAWS
        return None if self.ci_low_log is None else "interval overlap"

    def rank_interval(self, *, n_draws: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Interval of ranks at the leaderboard's level (computed once per board and kept).

        From bootstrap samples when present, else from ``n_draws`` joint draws of the normal approximation
        ``N(θ̂, Σ)`` (the full covariance, so correlated items move together; up to :data:`RANK_DRAWS_LIMIT`
        items), else LMArena's rule: items whose interval lies entirely above/below bound the rank. The bounds
        are the marginal quantiles of each item's rank over the draws.

        Why Fisher and bootstrap rank ranges can differ although the standard errors of rating differences
        agree: a rank depends on *every* other item. In the normal draws an item with few comparisons has a wide,
        symmetric distribution and now and then lands above the leaders ("leapfrogs"), widening the leaders' rank
        ranges; in the bootstrap that item's resampled record takes only a few values (and replicates in which it
        wins every game are excluded or pulled back by the prior), so it rarely overtakes. The normal draws are
        the more cautious of the two for sparse items — with two games an item *could* be the best — while the
        bootstrap understates their uncertainty. Flagged items (``prior_only``, ``fisher_floor`` columns) are the
        usual culprits; fit with a larger prior or leave them out to rank the well-measured items among
        themselves.

        The normal draws respect each item's own interval: where it is not ``rating ± z·se`` (the exact intervals
        of sparse items, ``exact_interval``; a prior-only item's Beta quantiles; an infinite bound), that item's
        draws are rescaled on each side of its rating so that their quantiles at the board's level are its interval
        (a split normal, keeping the correlations of the covariance): a sparse item skewed upwards by its few
        wins leapfrogs as often as its interval says, not as a symmetric normal would. ``rank_method`` is then
        ``"normal draws matched to each item's interval"``.
        """
        key = ("rank_interval", n_draws, seed)
        if key not in self._cache:
            self._cache[key] = self._rank_interval(n_draws, seed)
        return self._cache[key]

    def _rank_interval(self, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        alpha = (1 - self.level) / 2
        draws = self.samples
        if draws is None and self.rank_method in ("normal draws", MATCHED_DRAWS):
            draws = normal_draws(self.scores, self.covariance, n_draws, np.random.default_rng(seed))
            scales = self._interval_scales()
            if scales is not None:
                draws = split_normal(draws, self.scores, *scales)
        if draws is not None:
            order = np.argsort(-draws, axis=1, kind="stable")
            ranks = np.empty_like(order)  # the inverse permutation of each row: one sort instead of two
            np.put_along_axis(ranks, order, np.arange(1, draws.shape[1] + 1)[None, :], axis=1)
            return (
                np.floor(np.quantile(ranks, alpha, axis=0)).astype(int),
                np.ceil(np.quantile(ranks, 1 - alpha, axis=0)).astype(int),
            )
        if self.ci_low_log is None:
            return self.rank, self.rank
        return overlap_rank_interval(self.ci_low_log, self.ci_high_log)

    def _interval_scales(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(sd, lower, upper)`` scales for :func:`split_normal` when some item's interval is not
        ``rating ± z·sd`` (sd from the covariance, which must be centred); None when every interval is."""
        if self.covariance is None or self.ci_low_log is None or self.interval_method is None:
            return None
        cov = self.covariance
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        if float(np.max(np.abs(cov.sum(axis=1)), initial=0.0)) > 1e-8 * max(float(sd.max(initial=0.0)) ** 2, 1e-300):
            return None  # not centred ratings: the draws' common shift cannot be removed exactly
        z = special.ndtri(0.5 + self.level / 2)
        with np.errstate(invalid="ignore"):
            upper = (self.ci_high_log - self.scores) / z
            lower = (self.scores - self.ci_low_log) / z
        tol = 1e-9 * (1.0 + np.abs(self.scores))
        if np.all((np.abs(upper - sd) <= tol) & (np.abs(lower - sd) <= tol)):
            return None
        return sd, lower, upper

    def tiers(self, *, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Significance tiers: tier 1 holds the top item and every item not shown to be worse than it.

        For each item k below the reference r (the best item not yet placed) a one-sided test of
        ``θ_r − θ_k > 0`` from the joint normal approximation — with the covariance, or with the variance of
        the differences over bootstrap samples when present:

        .. math::

            p_k = \\Phi\\Big(-\\frac{\\hat\\theta_r - \\hat\\theta_k}
                {\\sqrt{V_{rr} + V_{kk} - 2V_{rk}}}\\Big)

        with a Bonferroni correction over the m items tested against r (``min(1, m·p)``); those not rejected at
        ``alpha`` (default ``1 − level``) join r's tier and the best remaining item starts the next tier.
        Because r is itself chosen from the data, a step-down (Holm) correction is not valid here; Bonferroni is:
        the true best item b leaves tier 1 only if the test of r against b rejects, and the union over all
        possible r has probability at most alpha. So tier 1 contains the best item with probability at least
        ``1 − alpha`` (Gupta's subset selection, up to the normal approximation); later tiers are descriptive.

        Returns ``(tier, p_vs_top)``: int tiers (1 = top) and each item's adjusted p-value against the top item
        (1 for the top item). Raises :class:`InputError` without a covariance or samples.

        References:
            Gupta, S. S. (1965). On some multiple decision (selection and ranking) rules. Technometrics 7(2).
            Hsu, J. C. (1984). Constrained simultaneous confidence intervals for multiple comparisons with the
            best. Annals of Statistics 12(3).
        """
        alpha = 1 - self.level if alpha is None else float(alpha)
        if not 0 < alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {alpha!r}")
        if self.samples is None and self.covariance is None:
            raise InputError("tiers need a covariance or bootstrap samples (fit with intervals, not 'none')")
        key = ("tiers", alpha)  # computed once per board: the table, the JSON and the plot share them
        if key not in self._cache:
            self._cache[key] = self._tiers(alpha)
        return self._cache[key]

    def _tiers(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.items)
        tier = np.zeros(n, dtype=np.int64)
        p_top = np.ones(n)
        remaining = np.argsort(-self.scores, kind="stable")
        level = 0
        while len(remaining):
            level += 1
            ref, others = remaining[0], remaining[1:]
            adjusted = np.minimum(1.0, len(others) * self._p_worse(ref, others))
            if level == 1:
                p_top[others] = adjusted
            same = others[adjusted > alpha]
            tier[ref] = level
            tier[same] = level
            remaining = others[adjusted <= alpha]
        return tier, p_top

    def _p_worse(self, ref: int, others: np.ndarray) -> np.ndarray:
        """One-sided p-values of H0: θ_k ≥ θ_ref for each k in ``others``."""
        if not len(others):
            return np.zeros(0)
        if self.samples is not None:
            # Bootstrap standard errors of the differences (a count of replicates cannot go below 1/(B+1), which
            # the Bonferroni factor would make useless for more than a few items).
            var = np.var(self.samples[:, [ref]] - self.samples[:, others], axis=0, ddof=1)
        else:
            v = self.covariance
            var = v[ref, ref] + v[others, others] - 2 * v[ref, others]
        diff = self.scores[ref] - self.scores[others]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(var > 0, diff / np.sqrt(np.maximum(var, 0)), np.where(diff > 0, np.inf, 0.0))
        return special.ndtr(-z)

    # ------------------------------------------------------------------ transformations
    def scale(self, kind: str = "elo", *, anchor: str | None = None, offset: float | None = None,
              factor: float | None = None) -> Leaderboard:
        """Show ratings on another scale.

        ``"log"``: centred natural log-strength. ``"elo"``: 400/ln 10 points per unit, ``offset`` 1000 by
        default, or the ``anchor`` item placed at ``offset``. ``factor`` overrides the points per unit.

        A board that already reports Elo (``scale_name == "elo"``, e.g. bayeselo's printed ratings with their
        own points per unit) keeps its own factor: asking for ``"elo"`` again returns it unchanged (or only
        re-anchored), instead of converting its numbers a second time.
        Only log-strengths can be rescaled (a Borda count or a TrueSkill μ has no Elo equivalent).
        """
        if kind not in ("log", "elo"):
            raise InputError(f"unknown scale {kind!r}; use 'log' or 'elo'")
        if self.score_scale != LOG_STRENGTH:
            raise InputError(f"model {self.model!r} gives scores on the {self.score_scale} scale, not log-strengths; "
                             "they cannot be shown on the log or Elo scale")
        if kind == "elo" and self.scale_name == "elo" and factor is None:
            if anchor is None and offset is None:
                return self
            factor = self.scale_factor
        f = factor if factor is not None else (1.0 if kind == "log" else ELO_FACTOR)
        off = offset if offset is not None else (0.0 if kind == "log" else 1000.0)
        shift = -float(np.mean(self.scores))
        if anchor is not None:
            if anchor not in self.items:
                raise InputError(f"anchor {anchor!r} is not an item of this leaderboard")
            shift = -float(self.scores[self.items.index(anchor)])
        return replace(self, scale_name=kind, scale_factor=f, offset=off + f * shift)

    def predict(self, a: Sequence[str] | str, b: Sequence[str] | str,
                a_first: Sequence[bool] | bool | None = None, *,
                unknown: str = "raise") -> tuple[np.ndarray, np.ndarray]:
        """Probabilities that ``a`` beats ``b`` and of a tie (names or name sequences).

        ``unknown``: ``"raise"`` (an :class:`InputError` naming items not on the board) or ``"prior"`` — an item
        never seen gets the average log-strength, which is what Newman's prior gives an item without data (the
        forecast for a newcomer in a test season); on the boards of online Gaussian models (TrueSkill, Weng–Lin)
        it is a newcomer with the prior's mean and σ, so its forecasts are as uncertain as its first game's.
        """
        if unknown not in ("raise", "prior"):
            raise InputError(f"unknown must be 'raise' or 'prior', got {unknown!r}")
        if not self.predicts:
            raise InputError(f"model {self.model!r} does not define win probabilities")
        lookup = {name: k for k, name in enumerate(self.items)}

        def idx(names):
            names = [names] if isinstance(names, str) else list(names)
            missing = [x for x in names if x not in lookup]
            if missing and (unknown == "raise" or (self.pair_predictor is not None and not self._predicts_unknown)):
                why = "" if unknown == "raise" else f" (model {self.model!r} has no strength for an unseen item)"
                raise InputError(f"unknown item(s) {missing[:5]}{why}; pass unknown='prior' for "
                                 f"{'a newcomer at the prior' if self._predicts_unknown else 'the average item'}")
            return np.array([lookup.get(x, -1) for x in names], dtype=np.int64)

        ia, ib = idx(a), idx(b)
        order = None if a_first is None else np.broadcast_to(np.asarray(a_first, bool), ia.shape)
        return self.predict_indices(ia, ib, order)

    @property
    def predicts(self) -> bool:
        """Whether the model defines win probabilities."""
        return self.pair_predictor is not None or self.predictor is not None

    @property
    def _predicts_unknown(self) -> bool:
        return bool(getattr(self.pair_predictor, "predicts_unknown", False))

    def predict_indices(self, ia: np.ndarray, ib: np.ndarray,
                        a_first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Win and tie probabilities of item ``ia[k]`` against ``ib[k]``: the one prediction protocol.

        Index −1 is an item the model has not seen: the average item (the mean score, which is what Newman's prior
        gives an item without data) for score predictors, a coin flip for index predictors — unless the index
        predictor ``predicts_unknown`` (online posteriors: a newcomer with the prior's mean and σ).
        """
        if not self.predicts:
            raise InputError(f"model {self.model!r} does not define win probabilities")
        ia, ib = np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64)
        if self._predicts_unknown:
            return self.pair_predictor(ia, ib, a_first)
        if self.pair_predictor is not None:
            known = (ia >= 0) & (ib >= 0)
            p, t = np.full(ia.shape, 0.5), np.zeros(ia.shape)
            if known.any():
                p[known], t[known] = self.pair_predictor(ia[known], ib[known],
                                                         None if a_first is None else a_first[known])
            return p, t
        scores = np.append(self.scores, float(np.mean(self.scores)))  # index −1: the average item
        return self.predictor(scores[ia], scores[ib], a_first)

    # ------------------------------------------------------------------ output
    def to_pandas(self) -> pd.DataFrame:
        """One row per item, best first: rank, item, rating, interval, rank interval, n, win rate, extras."""
        return pd.DataFrame(self.sorted_columns())

    def sorted_columns(self) -> dict[str, np.ndarray]:
        """The columns of :meth:`to_pandas` as numpy arrays, best first (no pandas: the JSON and the command line's
        table are built from these)."""
        rank_lo, rank_hi = self.rank_interval()
        columns: dict[str, Any] = {"rank": self.rank, "item": np.asarray(self.items, dtype=object),
                                   "rating": self.ratings}
        if self.ci_low is not None:
            columns["ci_low"] = self.ci_low
            columns["ci_high"] = self.ci_high
        if self.se is not None:
            columns["se"] = self.se * abs(self.scale_factor)
        columns["rank_low"] = rank_lo
        columns["rank_high"] = rank_hi
        if self.samples is not None or self.covariance is not None:
            columns["tier"], columns["p_vs_top"] = self.tiers()
        if self.n is not None:
            columns["n"] = self.n
        if self.win_rate is not None:
            columns["win_rate"] = self.win_rate
        for name, values in self.columns.items():
            columns[name] = values
        key = self.scores if self.sort_key is None else self.sort_key
        order = np.lexsort((np.arange(len(self.items)), -key))
        m = len(self.items)
        return {k: (np.full(m, v) if np.ndim(v) == 0 else np.asarray(v))[order] for k, v in columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: model, scale, items (name, rating, ci_low, ci_high, rank, n, ...), fit summary."""
        columns = self._item_columns()
        items = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        return self._summary(items)

    def _item_columns(self) -> dict[str, list]:
        """The items' JSON fields, column by column (one conversion per column, not per cell)."""
        frame = self.sorted_columns()
        m = len(self.items)
        columns = {"name": frame["item"], "rating": frame["rating"], "ci_low": frame.get("ci_low"),
                   "ci_high": frame.get("ci_high"), "rank": frame["rank"].astype(np.int64), "n": frame.get("n")}
        columns.update({k: frame[k] for k in frame if k not in ("item", *columns)})
        return {k: [None] * m if col is None else _jsonable_column(col) for k, col in columns.items()}

    def _summary(self, items: Any) -> dict[str, Any]:
        se_error = self.info.get("se_relative_error")
        return {
            "model": self.model,
            "scale": self.scale_name,
            "score_scale": self.score_scale,
            "interval": {"method": self.interval_method, "level": self.level, "rank_method": self.rank_method,
                         "se_method": self.info.get("se_method"), "rule": self.info.get("interval_rule"),
                         "notes": list(self.info.get("interval_notes", []))},
            "interval_method": {"covariance": self.interval_method,
                                "standard_errors": ("bootstrap" if "bootstrap" in str(self.interval_method)
                                                    else "exact" if se_error is None else "estimated"),
                                "how": self.info.get("se_method"),
                                "stated_relative_error": se_error,
                                "measured": self.info.get("se_measured")},
            "sorted_by": self.info.get("sorted_by", "rating"),
            "items": items,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "param_intervals": {k: [_jsonable(x) for x in v] for k, v in self.param_intervals.items()},
            "log_likelihood": _jsonable(self.log_likelihood),
            "n_comparisons": int(self.n_comparisons),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        """Serialise :meth:`to_dict` (and write it to ``path`` if given).

        With ``indent``, the board is indented and each item is written on one line of its own, encoded column
        by column (:func:`_encode_items`; 10⁵ items: ~0.2 s instead of ~5 s for Python's indenting encoder)."""
        columns = self._item_columns()
        if indent is None:
            items = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
            text = json.dumps(self._summary(items), allow_nan=False)
        else:
            text = json.dumps(self._summary(_ITEMS_SLOT), indent=indent, allow_nan=False)
            pad = " " * (2 * indent)
            lines = _encode_items(columns)
            body = ",\n".join(pad + line for line in lines)
            text = text.replace(json.dumps(_ITEMS_SLOT), f"[\n{body}\n{' ' * indent}]" if lines else "[]", 1)
        if path is not None:
            from pairkit._io import atomic_write_text

            atomic_write_text(path, text + "\n")  # a kill or a full disk leaves the previous file whole
        return text

    def plot(self, path: str | Path | None = None, *, ax=None, title: str | None = None, top: int | None = None):
        """Horizontal interval plot of the ratings, best at the top; saves a PNG when ``path`` is given."""
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        frame = self.to_pandas()
        if top is not None:
            frame = frame.head(top)
        frame = frame.iloc[::-1]
        own_figure = ax is None
        if own_figure:
            fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(frame) + 1)))
        y = np.arange(len(frame))
        if "ci_low" in frame:
            ax.errorbar(frame["rating"], y,
                        xerr=[frame["rating"] - frame["ci_low"], frame["ci_high"] - frame["rating"]],
                        fmt="o", color="C0", ecolor="0.5", capsize=3)
        else:
            ax.plot(frame["rating"], y, "o", color="C0")
        ax.set_yticks(y, frame["item"])
        ax.set_xlabel(f"rating ({self.scale_name} scale)")
        level = f", {self.level:.0%} intervals ({self.interval_method})" if self.interval_method else ""
        ax.set_title(title or f"{self.model}{level}")
        ax.grid(axis="x", alpha=0.3)
        if own_figure:
            fig.tight_layout()
            if path is not None:
                from pairkit._io import save_figure

                save_figure(fig, path)  # a kill or a full disk leaves the previous file whole
        return ax


def normal_draws(mean: np.ndarray, cov: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """``n_draws`` rows from ``N(mean, cov)`` up to a common shift of each row (which leaves ranks unchanged).

    The covariance of centred ratings is singular along ``1``; adding ``c·11ᵀ`` makes it positive definite
    without changing any rank, so a Cholesky factor (a third of the cost of an eigendecomposition) serves.
    """
    import scipy.linalg as la

    n = len(mean)
    cov = (cov + cov.T) / 2
    shift = max(float(np.mean(np.diag(cov))), 1e-300) / n
    try:
        root = la.cholesky(cov + shift, lower=True, check_finite=False)
    except la.LinAlgError:  # another flat direction (a model's own constraint): the symmetric root
        vals, vecs = np.linalg.eigh(cov)
        root = vecs * np.sqrt(np.clip(vals, 0, None))
    return mean + rng.standard_normal((n_draws, n)) @ root.T


MATCHED_DRAWS = "normal draws matched to each item's interval"
"""``Leaderboard.rank_method`` when some item's interval is not symmetric normal (:func:`split_normal`)."""


def split_normal(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray) -> np.ndarray:
    r"""Normal draws of centred ratings with each item's marginal rescaled to a split normal.

    The draws' common shift (added by :func:`normal_draws`) is removed first (the ratings are centred, so each
    exact draw has the mean of ``mean``). Then, per item,

    .. math::

        x' = \mu + (x - \mu)\,\frac{s_\pm}{\sigma},\qquad s_+ = \text{upper},\ s_- = \text{lower}

    on the side of ``μ`` where ``x`` falls: the quantiles at any level ``p`` become ``μ + z_p s_±``, so with
    ``s_± = |bound − μ| / z`` they are the item's interval at the board's level; an infinite bound gives infinite
    draws on that side. Correlations (through the shared normal scores) are kept.

    References:
        John, S. (1982). The three-parameter two-piece normal family of distributions and its fitting.
        Communications in Statistics — Theory and Methods 11(8).
    """
    x = draws - draws.mean(axis=1, keepdims=True) + float(np.mean(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(sd > 0, upper / sd, 1.0)
        down = np.where(sd > 0, lower / sd, 1.0)
        dev = x - mean
        return mean + np.where(dev > 0, dev * up, np.where(dev < 0, dev * down, 0.0))


def overlap_rank_interval(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LMArena's rank interval from marginal intervals, by sorting (no n×n comparison).

    .. math::

        \\text{rank}_\\text{low}(i) = 1 + \\#\\{j : lo_j > hi_i\\},\\qquad
        \\text{rank}_\\text{high}(i) = \\#\\{j : hi_j \\ge lo_i\\}

    (a NaN bound counts for no item, as an unordered comparison).
    """
    n_lo, n_hi = np.sort(lo[~np.isnan(lo)]), np.sort(hi[~np.isnan(hi)])
    better = np.where(np.isnan(hi), 0, len(n_lo) - np.searchsorted(n_lo, hi, side="right"))
    not_worse = np.where(np.isnan(lo), 0, len(n_hi) - np.searchsorted(n_hi, lo, side="left"))
    return 1 + better.astype(int), not_worse.astype(int)


_dataclass_init = Leaderboard.__init__


@functools.wraps(_dataclass_init)
def _init(self, *args, log_strength: np.ndarray | None = None, **kwargs) -> None:
    # ``log_strength=`` is the old name of ``scores=`` (kept for code that builds boards itself)
    if log_strength is not None:
        if "scores" in kwargs or len(args) > 1:
            raise TypeError("give scores= only (log_strength= is its old name)")
        kwargs["scores"] = log_strength
    _dataclass_init(self, *args, **kwargs)


Leaderboard.__init__ = _init


_ITEMS_SLOT = "\x00items\x00"
"""Stands for the items in the indented board until they are written in (no item name can be it)."""


def _encode_items(columns: dict[str, list]) -> list[str]:
    """Each item as a one-line JSON object, the same text as ``json.dumps(item)``, built column by column:
    every column's values are encoded by type at once and the lines filled from one template."""
    tokens = []
    for values in columns.values():
        kinds = set(map(type, values))
        if kinds <= {float}:
            tokens.append(list(map(float.__repr__, values)))
        elif kinds <= {float, type(None)}:
            tokens.append(["null" if v is None else float.__repr__(v) for v in values])
        elif kinds <= {bool}:
            tokens.append(["true" if v else "false" for v in values])
        elif kinds <= {int}:
            tokens.append(list(map(int.__repr__, values)))
        elif kinds <= {str}:
            tokens.append(list(map(_encode_string, values)))
        else:  # booleans, mixed or nested values: the encoder itself
            tokens.append([json.dumps(v, allow_nan=False) for v in values])
    template = "{" + ", ".join(json.dumps(k).replace("%", "%%") + ": %s" for k in columns) + "}"
    return [template % row for row in zip(*tokens, strict=True)]


_encode_string = json.encoder.encode_basestring_ascii
"""A string as JSON text, escaped as ``json.dumps`` does by default (ASCII only)."""


def _jsonable_column(column: np.ndarray) -> list:
    """A column as JSON values: numbers as Python numbers, NaN and infinities as ``None``."""
    values = np.asarray(column)
    if values.dtype.kind == "f":
        out = values.tolist()
        for k in np.flatnonzero(~np.isfinite(values)).tolist():
            out[k] = None
        return out
    if values.dtype.kind in "iub":
        return values.tolist()
    out = values.tolist()
    if set(map(type, out)) <= {str}:
        return out
    return [_jsonable(v) for v in out]


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
