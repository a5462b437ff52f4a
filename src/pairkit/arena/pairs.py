"""Which pair an annotator sees next.

Annotators pull pairs one at a time, so the arena asks a *pair score* for every candidate pair and shows the
best one that this annotator has not seen in that context, that is not already being looked at by someone
else, and that has not reached its target number of votes. A score is a plain function of the votes so far:

==================  ==========================================================================================
``active``          the ``rank`` rule of :func:`pairkit.select.STRATEGIES["active"] <pairkit.select.aselect>`:
                    Fisher information of the pair times the posterior probability that it is mis-ordered
``information``     that strategy's ``information`` rule: the variance reduction of the pair's log-odds
``ucb``             K-Sort Arena's matchmaking: the item with the highest upper confidence bound plays the
                    closest-rated opponent (exploration–exploitation)
``round_robin``     the fewest votes first (every pair once before any pair twice), exposure balanced
``random``          uniformly random pairs
==================  ==========================================================================================

Ties between scores are broken towards the items shown least (exposure balance), then at random. Sides are
drawn at random for every assignment. Gold pairs (a known answer) and repeats of an earlier pair (sides
swapped) are mixed in at the given rates as attention and consistency checks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from pairkit.arena.store import JUDGE_PREFIX
from pairkit.errors import InputError, PairkitWarning
from pairkit.select import Pool

__all__ = ["PAIR_SCORES", "GoldPair", "PairChooser", "Proposal", "VoteTally", "gold_pairs"]


@dataclass(frozen=True)
class Proposal:
    context: int
    left: int
    right: int
    kind: str = "normal"
    expected: str | None = None
    more: tuple[int, ...] = ()  # further items shown in a K-wise battle, after left and right


@dataclass(frozen=True)
class GoldPair:
    """A pair with a known answer: ``winner`` beats ``loser`` in context ``context_id`` (``winner=None``: a tie)."""

    context_id: str
    a: str
    b: str
    winner: str | None


PairScore = Callable[[np.ndarray, np.ndarray, np.random.Generator, float], np.ndarray]


def _fit(wins: np.ndarray, prior: float):
    """MAP Bradley–Terry strengths and covariance from the vote matrix (``wins[i, j]``: i beat j, ties halved)."""
    from pairkit.data import Comparisons
    from pairkit.rating import fit_bradley_terry

    i, j = np.nonzero(wins)
    comps = Comparisons.from_arrays(i, j, weight=wins[i, j], items=[str(k) for k in range(len(wins))])
    with warnings.catch_warnings():
        # Items with few votes are rated by the prior: expected here, and what the prior is for.
        warnings.simplefilter("ignore", PairkitWarning)
        board = fit_bradley_terry(comps, prior=prior, intervals="fisher")
    return board.log_strength, board.covariance


def _model_scores(wins: np.ndarray, prior: float, rule: str) -> np.ndarray:
    theta, cov = _fit(wins, prior)
    d = np.diag(cov)
    p = special.expit(theta[:, None] - theta[None, :])
    var = np.maximum(d[:, None] + d[None, :] - 2 * cov, 1e-12)
    if rule == "information":
        return p * (1 - p) * var
    return p * (1 - p) * special.ndtr(-np.abs(theta[:, None] - theta[None, :]) / np.sqrt(var))


def active_score(wins: np.ndarray, counts: np.ndarray, rng: np.random.Generator, prior: float) -> np.ndarray:
    """The ``rank`` rule: :math:`p_{ij}(1-p_{ij})\\,\\Phi(-|\\hat\\theta_i-\\hat\\theta_j|/s_{ij})`."""
    if not wins.any():
        return round_robin_score(wins, counts, rng, prior)
    return _model_scores(wins, prior, "rank")


def information_score(wins: np.ndarray, counts: np.ndarray, rng: np.random.Generator, prior: float) -> np.ndarray:
    """The ``information`` rule: :math:`p_{ij}(1-p_{ij})\\,s_{ij}^2` (expected variance reduction)."""
    if not wins.any():
        return round_robin_score(wins, counts, rng, prior)
    return _model_scores(wins, prior, "information")


def ucb_score(wins: np.ndarray, counts: np.ndarray, rng: np.random.Generator, prior: float) -> np.ndarray:
    """The ``ucb`` rule, K-Sort Arena's matchmaking one pair at a time.

    The item with the highest upper confidence bound :math:`\\hat\\theta_i + s_i` among those with a pair open
    is the anchor, played against the opponent closest in rating (Li et al. 2024, "K-Sort Arena: efficient and
    reliable benchmarking for generative models via K-wise human preferences"). As a pair score:
    :math:`\\max(r_i, r_j)\\,(w + 1) - |\\hat\\theta_i - \\hat\\theta_j|`, with :math:`r` the rank of the
    bound and :math:`w` the spread of the ratings, so the anchor's order decides first and closeness second.
    """
    if not wins.any():
        return round_robin_score(wins, counts, rng, prior)
    theta, cov = _fit(wins, prior)
    bound_rank = np.argsort(np.argsort(theta + np.sqrt(np.maximum(np.diag(cov), 0)), kind="stable"), kind="stable")
    spread = float(theta.max() - theta.min())
    anchor = np.maximum(bound_rank[:, None], bound_rank[None, :]).astype(float)
    return anchor * (spread + 1) - np.abs(theta[:, None] - theta[None, :])


# A refit: PairChooser reuses the scores a while.
active_score.model_based = information_score.model_based = ucb_score.model_based = True


def round_robin_score(wins: np.ndarray, counts: np.ndarray, rng: np.random.Generator, prior: float) -> np.ndarray:
    """Fewest votes first."""
    return -counts.astype(float)


def random_score(wins: np.ndarray, counts: np.ndarray, rng: np.random.Generator, prior: float) -> np.ndarray:
    """Uniformly random."""
    return rng.random(counts.shape)


PAIR_SCORES: dict[str, PairScore] = {
    "active": active_score,
    "information": information_score,
    "ucb": ucb_score,
    "round_robin": round_robin_score,
    "random": random_score,
}


class VoteTally:
    """Wins (ties half) and vote counts per pair of the human, regular, decided votes, kept up to date.

    Re-reading and re-tallying the whole vote log for every pair shown made a busy arena's latency grow with its
    votes; a tally reads only the votes added since its last :meth:`sync` (by their sequence numbers) and is
    rebuilt only when a vote was undone. Votes on candidates no longer served are not counted.
    """

    def __init__(self, pool: Pool) -> None:
        import pandas as pd

        self._items = pd.Index(pool.items)
        self._contexts = pd.Index(pool.contexts)
        self.reset()

    def reset(self) -> None:
        n, m = len(self._items), len(self._contexts)
        self.wins = np.zeros((n, n))
        self.counts = np.zeros((n, n), np.int64)
        self.per_context = np.zeros((m, n, n), np.int64)
        self.seq = 0
        self.undone: int | None = None

    def sync(self, store) -> VoteTally:
        """Bring the tally up to date with ``store`` (a :class:`~pairkit.arena.VoteStore`); returns itself."""
        undone = store.n_undone()
        if undone != self.undone:
            self.reset()
            self.undone = undone
        return self.add(store.votes(after=self.seq))

    def add(self, votes: Sequence[Mapping]) -> VoteTally:
        """Count ``votes`` (rows of the vote log); returns itself."""
        humans = [v for v in votes if not str(v.get("annotator", "")).startswith(JUDGE_PREFIX)]
        self.seq = max([self.seq, *(int(v.get("seq") or 0) for v in votes)])
        keep = [v for v in humans if v.get("kind") == "normal" and v.get("outcome") != "skip"]
        if not keep:
            return self
        i, j, c = self._codes(keep)
        outcome = np.array([v["outcome"] for v in keep], dtype=object)
        ok = (i >= 0) & (j >= 0) & (c >= 0)
        i, j, c, outcome = i[ok], j[ok], c[ok], outcome[ok]
        half = np.isin(outcome, ["tie", "both_bad"])
        np.add.at(self.wins, (i, j), np.where(outcome == "left", 1.0, np.where(half, 0.5, 0.0)))
        np.add.at(self.wins, (j, i), np.where(outcome == "right", 1.0, np.where(half, 0.5, 0.0)))
        self._count(self.counts, self.per_context, i, j, c)
        return self

    def with_pending(self, pending: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
        """(counts, per-context counts) with the pairs open right now counted as votes, so annotators spread out."""
        if not len(pending):
            return self.counts, self.per_context
        counts, per_context = self.counts.copy(), self.per_context.copy()
        i, j, c = self._codes(pending)
        ok = (i >= 0) & (j >= 0) & (c >= 0)
        self._count(counts, per_context, i[ok], j[ok], c[ok])
        return counts, per_context

    def _codes(self, rows: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            self._items.get_indexer([r["left_id"] for r in rows]),
            self._items.get_indexer([r["right_id"] for r in rows]),
            self._contexts.get_indexer([r["context_id"] for r in rows]),
        )

    @staticmethod
    def _count(counts: np.ndarray, per_context: np.ndarray, i: np.ndarray, j: np.ndarray, c: np.ndarray) -> None:
        np.add.at(counts, (i, j), 1)
        np.add.at(counts, (j, i), 1)
        np.add.at(per_context, (c, i, j), 1)
        np.add.at(per_context, (c, j, i), 1)


@dataclass
class PairChooser:
    """Chooses the next pair for an annotator from the votes so far (see the module docstring).

    Args:
        pool: the candidates.
        score: a name in :data:`PAIR_SCORES` or a function ``(wins, counts, rng, prior) -> n×n scores``.
        target_votes: votes per pair (over all contexts) after which a pair is no longer shown; None: no cap.
        gold: pairs with a known answer; shown with probability ``gold_rate`` (each at most once per annotator).
        repeat_rate: probability of re-showing one of the annotator's earlier pairs, sides swapped.
        prior: virtual games per item in the fits of the model-based scores (keeps them finite).
        k: answers per battle; above 2 the chosen pair grows into a K-wise battle that the annotator ranks
            (gold pairs and repeats stay pairs).
        refit_growth: a model-based score (``active``, ``information``) is refitted when the votes have grown by
            this fraction since the last fit (0: after every vote). One vote moves a fit of many votes little,
            and refitting for every pair shown would serialise busy arenas behind the fit.
    """

    pool: Pool
    score: str | PairScore = "active"
    target_votes: int | None = None
    gold: Sequence[GoldPair] = ()
    gold_rate: float = 0.0
    repeat_rate: float = 0.0
    prior: float = 1.0
    seed: int | None = None
    refit_growth: float = 0.02
    k: int = 2
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.score, str):
            if self.score not in PAIR_SCORES:
                raise InputError(f"--strategy must be one of {', '.join(PAIR_SCORES)}; got {self.score!r}")
            self.score = PAIR_SCORES[self.score]
        for name in ("gold_rate", "repeat_rate"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be in [0, 1); got {value!r}")
        if self.target_votes is not None and self.target_votes < 1:
            raise InputError(f"--target-votes must be an integer >= 1; got {self.target_votes!r}")
        if not (math.isfinite(self.prior) and self.prior > 0):
            raise InputError(f"--prior must be a finite number > 0; got {self.prior!r}")
        if self.gold_rate > 0 and not self.gold:
            raise InputError("--gold-rate > 0 needs gold pairs (--gold FILE)")
        if not 2 <= self.k <= min(8, self.pool.n_items):
            raise InputError(f"--k must be an integer in [2, {min(8, self.pool.n_items)}] (answers per battle); "
                             f"got {self.k!r}")
        if not 0 <= self.refit_growth < 1:
            raise InputError(f"refit_growth must be in [0, 1); got {self.refit_growth!r}")
        self.rng = np.random.default_rng(self.seed)
        self._fitted: tuple[float, np.ndarray] | None = None  # (votes at the fit, scores)
        self._item = {name: k for k, name in enumerate(self.pool.items)}
        self._context = {name: k for k, name in enumerate(self.pool.contexts)}
        present = np.array([[t is not None for t in row] for row in self.pool.text])  # contexts × items
        self._both = present[:, :, None] & present[:, None, :]  # contexts × items × items: both answered
        for g in self.gold:
            for name in (g.a, g.b):
                if name not in self._item:
                    raise InputError(f"gold pair {g}: unknown candidate {name!r}")
            if g.context_id not in self._context:
                raise InputError(f"gold pair {g}: unknown context {g.context_id!r}")

    def next(
        self,
        annotator_id: int,
        votes: VoteTally | Sequence[Mapping],
        pending: Sequence[Mapping],
        seen: Sequence[tuple],
        *,
        history: Callable[[], Sequence[Mapping]] | None = None,
    ) -> Proposal | None:
        """The next pair for one annotator, or None when every pair is done for them.

        ``votes``: a :class:`VoteTally` kept up to date by the caller, or the vote log itself (``annotator_id,
        context_id, left_id, right_id, outcome, kind``); ``pending``: pairs open with other annotators; ``seen``:
        ``(context_id, left_id, right_id)`` of every pair this annotator was shown; ``history``: returns this
        annotator's own votes (needed for repeats when ``votes`` is a tally).
        """
        if not isinstance(votes, VoteTally):
            log = votes
            votes = VoteTally(self.pool).add(log)
            if history is None:
                history = lambda: [v for v in log if v["annotator_id"] == annotator_id]  # noqa: E731
        u = self.rng.random()
        if u < self.gold_rate:
            proposal = self._gold(seen)
            if proposal is not None:
                return proposal
        elif u < self.gold_rate + self.repeat_rate and history is not None:
            proposal = self._repeat(history())
            if proposal is not None:
                return proposal
        return self._regular(votes, pending, seen)

    # ------------------------------------------------------------------ regular pairs
    def _regular(self, tally: VoteTally, pending, seen) -> Proposal | None:
        n, m = self.pool.n_items, len(self.pool.contexts)
        wins, (counts, per_context) = tally.wins, tally.with_pending(pending)
        seen_by_me = np.zeros((m, n, n), bool)
        for c, left, right in seen:
            if c in self._context and left in self._item and right in self._item:
                k, i, j = self._context[c], self._item[left], self._item[right]
                seen_by_me[k, i, j] = seen_by_me[k, j, i] = True
        # A pair is open to this annotator while some context with both answers is still new to them.
        fresh = (self._both & ~seen_by_me).any(axis=0)
        allowed = fresh & ~np.eye(n, dtype=bool)
        if self.target_votes is not None:
            allowed &= counts < self.target_votes
        if not allowed.any():
            return None
        score = self._scores(wins, counts)
        exposure = counts.sum(axis=1)
        tiebreak = -(exposure[:, None] + exposure[None, :]) * 1e-9 + self.rng.random((n, n)) * 1e-12
        total = np.where(allowed, score + tiebreak, -np.inf)
        total = np.triu(total, 1) + np.tril(np.full((n, n), -np.inf))
        i, j = np.unravel_index(int(np.argmax(total)), total.shape)
        options = np.flatnonzero(self._both[:, i, j] & ~seen_by_me[:, i, j])
        load = per_context[options, i, j]
        context = int(options[self.rng.choice(np.flatnonzero(load == load.min()))])
        if self.k > 2:
            return self._battle(score, allowed, context, i, j)
        left, right = (i, j) if self.rng.random() < 0.5 else (j, i)
        return Proposal(context, int(left), int(right))

    def _battle(self, score: np.ndarray, allowed: np.ndarray, context: int, i: int, j: int) -> Proposal:
        """Grow the chosen pair into a battle of up to ``k`` items answered in ``context``: each added item is
        the one whose pairs with those already in have the largest total score (K-Sort Arena's K-wise battles)."""
        chosen = [int(i), int(j)]
        present = self._both[context].diagonal().copy()
        sym = np.where(np.isfinite(score), score, np.nan)
        while len(chosen) < self.k:
            free = np.flatnonzero(present & ~np.isin(np.arange(len(present)), chosen))
            if not len(free):
                break
            gain = np.nansum(sym[np.ix_(free, chosen)], axis=1) + np.nansum(sym[np.ix_(chosen, free)], axis=0)
            gain = np.where(allowed[np.ix_(free, chosen)].any(axis=1), gain, gain - 1e9)  # prefer open pairs
            chosen.append(int(free[np.argmax(gain + self.rng.random(len(free)) * 1e-12)]))
        order = self.rng.permutation(len(chosen))
        shown = [chosen[k] for k in order]
        return Proposal(context, shown[0], shown[1], more=tuple(shown[2:]))

    def _scores(self, wins: np.ndarray, counts: np.ndarray) -> np.ndarray:
        if not getattr(self.score, "model_based", False):
            return np.asarray(self.score(wins, counts, self.rng, self.prior), float)
        n_votes = float(wins.sum())
        if self._fitted is not None:
            last, scores = self._fitted
            if last <= n_votes <= last * (1 + self.refit_growth) and (n_votes > 0) == (last > 0):
                return scores
        scores = np.asarray(self.score(wins, counts, self.rng, self.prior), float)
        self._fitted = (n_votes, scores)
        return scores

    # ------------------------------------------------------------------ checks
    def _gold(self, seen) -> Proposal | None:
        shown = {(c, *sorted((x, y))) for c, x, y in seen}
        fresh = [g for g in self.gold if (g.context_id, *sorted((g.a, g.b))) not in shown]
        if not fresh:
            return None
        g = fresh[int(self.rng.integers(len(fresh)))]
        i, j = self._item[g.a], self._item[g.b]
        left, right = (i, j) if self.rng.random() < 0.5 else (j, i)
        return Proposal(self._context[g.context_id], left, right, "gold", g.winner or "tie")

    def _repeat(self, mine) -> Proposal | None:
        """An earlier decided pair of this annotator (not among their last 3 votes), sides swapped."""
        earlier = [v for v in mine[:-3] if v.get("kind") == "normal" and v["outcome"] != "skip"]
        repeated = {(v["context_id"], v["left_id"], v["right_id"]) for v in mine if v.get("kind") == "repeat"}
        earlier = [v for v in earlier if (v["context_id"], v["right_id"], v["left_id"]) not in repeated]
        if not earlier:
            return None
        v = earlier[int(self.rng.integers(len(earlier)))]
        expected = {"left": v["left_id"], "right": v["right_id"]}.get(v["outcome"], "tie")
        return Proposal(
            self._context[v["context_id"]], self._item[v["right_id"]], self._item[v["left_id"]], "repeat", expected
        )


def gold_pairs(rows: Sequence[Mapping], *, source: str = "gold") -> list[GoldPair]:
    """Gold pairs from rows ``{context_id, a, b, winner}`` (``winner``: a's or b's id, or "tie")."""
    out = []
    for row_no, row in enumerate(rows, start=1):
        missing = [k for k in ("context_id", "a", "b", "winner") if k not in row]
        if missing:
            raise InputError(f"{source}, row {row_no}: missing {', '.join(missing)}; write "
                             '{"context_id": ..., "a": ..., "b": ..., "winner": <a, b or "tie">}')
        winner = None if str(row["winner"]) == "tie" else str(row["winner"])
        if winner not in (None, str(row["a"]), str(row["b"])):
            raise InputError(f"{source}, row {row_no}: winner {row['winner']!r} is neither a, b nor 'tie'")
        out.append(GoldPair(str(row["context_id"]), str(row["a"]), str(row["b"]), winner))
    return out
