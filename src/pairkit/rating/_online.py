"""Matches of teams for online rating systems, and their scheduling into rounds of disjoint players.

Online Bayesian ratings (TrueSkill, Weng–Lin) update the players of one match from their current ratings, so
match ``k`` depends on every earlier match that shares a player. Matches with no player in common commute: a
greedy schedule that puts each match in the earliest round after the rounds of all its players' previous matches
gives rounds of player-disjoint matches whose results equal the sequential order exactly, and each round is
updated at once with numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating._checks import check_comparisons
from pairkit.rating._stats import score_board
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["Matches"]


@dataclass(frozen=True, eq=False)
class Matches:
    """Matches between teams of players, in the order they were played.

    Flat (CSR-like) storage: match ``m`` holds teams ``match_ptr[m]:match_ptr[m+1]``; team ``t`` holds the
    player slots ``team_ptr[t]:team_ptr[t+1]`` of ``players``; ``rank[t]`` is the team's finishing place
    (lower is better, equal ranks are a draw). ``weight`` (per slot, optional) is TrueSkill's partial play.

    Build with :meth:`from_lists` or :meth:`from_comparisons` (each comparison is a 1-vs-1 match).

    >>> from pairkit.rating import Matches, fit_trueskill
    >>> matches = Matches.from_lists([[['ann', 'bob'], ['cat']], [['cat'], ['bob']]])
    >>> matches.n_matches, matches.items
    (2, ('ann', 'bob', 'cat'))
    """

    items: tuple[str, ...]
    players: np.ndarray
    team_ptr: np.ndarray
    match_ptr: np.ndarray
    rank: np.ndarray
    weight: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_teams = len(self.team_ptr) - 1
        if len(self.rank) != n_teams:
            raise InputError(f"Matches: rank has {len(self.rank)} entries for {n_teams} teams")
        if self.weight is not None and len(self.weight) != len(self.players):
            raise InputError(f"Matches: weight has {len(self.weight)} entries for {len(self.players)} players")
        if np.any(np.diff(self.team_ptr) < 1):
            t = int(np.flatnonzero(np.diff(self.team_ptr) < 1)[0])
            raise InputError(f"Matches: team {t} (in match {int(self.team_match[t])}) has no players")
        if np.any(np.diff(self.match_ptr) < 2):
            m = int(np.flatnonzero(np.diff(self.match_ptr) < 2)[0])
            raise InputError(f"Matches: match {m} has fewer than two teams; every match needs at least two")
        if not np.all(np.isfinite(self.rank)):
            t = int(np.flatnonzero(~np.isfinite(self.rank))[0])
            raise InputError(f"Matches: rank of team {t} is {self.rank[t]!r}; ranks must be finite numbers")
        n = len(self.items)
        if len(self.players) and (self.players.min() < 0 or self.players.max() >= n):
            raise InputError(f"Matches: player index out of range [0, {n})")
        slot_match = self.team_match[self.slot_team]
        key = slot_match * np.int64(max(n, 1)) + self.players
        srt = np.sort(key)
        if np.any(srt[1:] == srt[:-1]):
            dup = srt[1:][srt[1:] == srt[:-1]][0]
            raise InputError(
                f"Matches: player {self.items[int(dup % n)]!r} appears twice in match {int(dup // n)}; "
                "a player can take part in a match only once"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lists(
        cls,
        teams: Sequence[Sequence[Sequence[int | str]]],
        ranks: Sequence[Sequence[float]] | None = None,
        *,
        items: Sequence[str] | None = None,
        weights: Sequence[Sequence[Sequence[float]]] | None = None,
    ) -> Matches:
        """From nested lists: ``teams[m][t]`` lists the players (indices or names) of team ``t`` in match ``m``.

        ``ranks[m][t]`` is team ``t``'s place (lower is better, equal is a draw); by default teams are listed
        best first. ``weights[m][t][p]`` is the partial-play weight of each player (TrueSkill only).
        """
        if ranks is not None and len(ranks) != len(teams):
            raise InputError(f"ranks has {len(ranks)} matches but teams has {len(teams)}")
        team_sizes = [len(team) for match in teams for team in match]
        match_sizes = [len(match) for match in teams]
        flat = list(chain.from_iterable(chain.from_iterable(teams)))
        arr = np.array(flat)
        if arr.dtype.kind in "OUS":
            if items is None:
                items = sorted({str(p) for p in flat})
            lookup = {name: k for k, name in enumerate(items)}
            missing = [p for p in flat if str(p) not in lookup]
            if missing:
                raise InputError(f"teams: player {missing[0]!r} is not one of the given items")
            players = np.array([lookup[str(p)] for p in flat], dtype=np.int64)
        else:
            if arr.size and arr.dtype.kind not in "iu":
                raise InputError(f"teams must hold player indices (int) or names (str), got dtype {arr.dtype}")
            players = arr.astype(np.int64).reshape(-1)
            if items is None:
                items = [str(k) for k in range(int(players.max(initial=-1)) + 1)]
        if ranks is None:
            rank = np.concatenate([np.arange(k, dtype=float) for k in match_sizes]) if teams else np.zeros(0)
        else:
            rank_sizes = np.array([len(r) for r in ranks])
            if np.any(rank_sizes != match_sizes):
                m = int(np.flatnonzero(rank_sizes != match_sizes)[0])
                raise InputError(f"ranks[{m}] has {rank_sizes[m]} entries but match {m} has {match_sizes[m]} teams")
            rank = np.array(list(chain.from_iterable(ranks)), dtype=float)
        weight = None
        if weights is not None:
            weight = np.asarray([float(x) for match in weights for team in match for x in team], dtype=float)
            if len(weight) != len(players):
                raise InputError("weights must have the same nested shape as teams")
            if not np.all(np.isfinite(weight) & (weight >= 0)):
                raise InputError("weights must be finite and non-negative")
        return cls(
            items=tuple(str(x) for x in items),
            players=players,
            team_ptr=np.concatenate([[0], np.cumsum(team_sizes, dtype=np.int64)]),
            match_ptr=np.concatenate([[0], np.cumsum(match_sizes, dtype=np.int64)]),
            rank=rank,
            weight=weight,
        )

    @classmethod
    def from_comparisons(cls, comparisons: Comparisons) -> Matches:
        """Each comparison as a 1-vs-1 match in row order: outcome 1 → ``a`` first, 0 → ``b`` first, ½ → draw.

        Online ratings have no notion of a fractional outcome or a weight: outcomes must be 0, ½ or 1 and
        weights 1 (repeat a row to count it twice).
        """
        out = comparisons.outcome
        bad = ~np.isin(out, (0.0, 0.5, 1.0))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"outcome[{k}] = {out[k]!r}: online ratings need outcomes 1 (a won), 0 (b won) or 0.5 (draw)"
            )
        w = comparisons.weight
        if np.any(w != 1.0):
            k = int(np.flatnonzero(w != 1.0)[0])
            raise InputError(
                f"weight[{k}] = {w[k]!r}: online ratings process each comparison once; use weight 1 "
                "(repeat a row to count it more than once)"
            )
        m = len(comparisons)
        players = np.empty(2 * m, dtype=np.int64)
        players[0::2] = comparisons.a
        players[1::2] = comparisons.b
        rank = np.empty(2 * m)
        rank[0::2] = np.where(out == 0.0, 1.0, 0.0)
        rank[1::2] = np.where(out == 1.0, 1.0, 0.0)
        return cls(
            items=comparisons.items,
            players=players,
            team_ptr=np.arange(2 * m + 1, dtype=np.int64),
            match_ptr=np.arange(0, 2 * m + 1, 2, dtype=np.int64),
            rank=rank,
        )

    # ------------------------------------------------------------------ structure
    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_matches(self) -> int:
        return len(self.match_ptr) - 1

    def __len__(self) -> int:
        return self.n_matches

    @property
    def slot_team(self) -> np.ndarray:
        """Team of each player slot."""
        if "slot_team" not in self._cache:
            sizes = np.diff(self.team_ptr)
            self._cache["slot_team"] = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        return self._cache["slot_team"]

    @property
    def team_match(self) -> np.ndarray:
        """Match of each team."""
        if "team_match" not in self._cache:
            sizes = np.diff(self.match_ptr)
            self._cache["team_match"] = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        return self._cache["team_match"]

    @property
    def is_pairwise(self) -> bool:
        """Every match is one player against one player."""
        return bool(np.all(np.diff(self.match_ptr) == 2) and np.all(np.diff(self.team_ptr) == 1))

    def games_per_item(self) -> np.ndarray:
        """Number of matches each player took part in."""
        return np.bincount(self.players, minlength=self.n_items)

    def rounds(self) -> np.ndarray:
        """Round of each match: one after the latest round of any of its players' earlier matches.

        Matches of one round share no player, so updating a round at once gives the sequential result.
        """
        if "rounds" in self._cache:
            return self._cache["rounds"]
        # The schedule is a longest path through the "same player, earlier match" graph: inherently
        # sequential integer bookkeeping, done once over plain lists (the rating arithmetic is vectorised).
        # (A level-by-level vectorised topological sort was measured slower: it pays numpy overhead per round.)
        next_free = [0] * self.n_items
        out: list[int] = []
        record = out.append
        players = self.players.tolist()
        if self.is_pairwise:
            for a, b in zip(players[0::2], players[1::2], strict=True):
                r, rb = next_free[a], next_free[b]
                if rb > r:
                    r = rb
                record(r)
                next_free[a] = next_free[b] = r + 1
        else:
            slot_ptr = self.team_ptr[self.match_ptr].tolist()
            for lo, hi in zip(slot_ptr[:-1], slot_ptr[1:], strict=True):
                group = players[lo:hi]
                r = max([next_free[p] for p in group])
                record(r)
                for p in group:
                    next_free[p] = r + 1
        rounds = np.asarray(out, dtype=np.int64)
        self._cache["rounds"] = rounds
        return rounds


@dataclass(frozen=True)
class RoundPlan:
    """Matches reordered by round (stably), with the round boundaries in the match, team and slot arrays."""

    match_order: np.ndarray
    players: np.ndarray
    slot_team: np.ndarray
    team_match: np.ndarray
    team_old: np.ndarray
    rank: np.ndarray
    weight: np.ndarray | None
    match_ptr: np.ndarray
    team_ptr: np.ndarray
    round_match: np.ndarray
    round_team: np.ndarray
    round_slot: np.ndarray

    @property
    def n_rounds(self) -> int:
        return len(self.round_match) - 1


def plan_rounds(matches: Matches) -> RoundPlan:
    """Reorder ``matches`` by round (stably), their teams by rank, and locate each round's slice of the arrays."""
    rounds = matches.rounds()
    order = np.argsort(rounds, kind="stable")
    n_rounds = int(rounds.max()) + 1 if len(rounds) else 0
    round_match = np.searchsorted(rounds[order], np.arange(n_rounds + 1), side="left")
    if matches.is_pairwise and matches.weight is None:
        # One player per team, two teams per match: the general index bookkeeping reduces to a swap.
        swap = matches.rank[1::2][order] < matches.rank[0::2][order]
        first = 2 * order + swap
        team_old = np.empty(2 * len(order), dtype=np.int64)
        team_old[0::2], team_old[1::2] = first, first + 1 - 2 * swap
        ptr = np.arange(2 * len(order) + 1, dtype=np.int64)
        return RoundPlan(
            match_order=order,
            players=matches.players[team_old],
            slot_team=ptr[:-1],
            team_match=np.repeat(np.arange(len(order)), 2),
            team_old=team_old,
            rank=matches.rank[team_old],
            weight=None,
            match_ptr=ptr[::2],
            team_ptr=ptr,
            round_match=round_match,
            round_team=2 * round_match,
            round_slot=2 * round_match,
        )
    team_sizes = np.diff(matches.match_ptr)[order]
    team_old = _ranges(matches.match_ptr[order], team_sizes)
    # Within a match, teams best first (stable): both peers process teams in this order, and summing in the
    # same order keeps results equal to the last rounding.
    team_old = team_old[
        np.lexsort((np.arange(len(team_old)), matches.rank[team_old], np.repeat(np.arange(len(order)), team_sizes)))
    ]
    slot_sizes = np.diff(matches.team_ptr)[team_old]
    slot_old = _ranges(matches.team_ptr[team_old], slot_sizes)
    match_ptr = np.concatenate([[0], np.cumsum(team_sizes)])
    team_ptr = np.concatenate([[0], np.cumsum(slot_sizes)])
    return RoundPlan(
        match_order=order,
        players=matches.players[slot_old],
        slot_team=np.repeat(np.arange(len(team_old)), slot_sizes),
        team_match=np.repeat(np.arange(len(order)), team_sizes),
        team_old=team_old,
        rank=matches.rank[team_old],
        weight=None if matches.weight is None else matches.weight[slot_old],
        match_ptr=match_ptr,
        team_ptr=team_ptr,
        round_match=round_match,
        round_team=match_ptr[round_match],
        round_slot=team_ptr[match_ptr[round_match]],
    )


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each start ``s`` and size ``n``, without a loop."""
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(starts, sizes) + np.arange(total) - offsets


def within_match_pairs(plan: RoundPlan) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, q)`` of teams in the same match (including ``i == q``), in team order."""
    k = np.diff(plan.match_ptr)
    k_of_team = k[plan.team_match]
    i = np.repeat(np.arange(len(plan.team_match)), k_of_team)
    q = _ranges(plan.match_ptr[plan.team_match], k_of_team)
    return i, q


# ------------------------------------------------------------------- shared by the Gaussian online raters


def check_scales(tau: float, **positive: float) -> None:
    """Raise :class:`InputError` unless each of ``positive`` is > 0 and ``tau`` >= 0 (all finite)."""
    for name, value in positive.items():
        if not (value > 0 and math.isfinite(value)):
            raise InputError(f"{name} must be positive and finite, got {value!r}")
    if not (tau >= 0 and math.isfinite(tau)):
        raise InputError(f"tau must be non-negative and finite, got {tau!r}")


def initial_beliefs(
    n: int, mu: float, sigma: float, initial_mu: np.ndarray | None, initial_sigma: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Starting ``(μ, σ)`` of every player: the given arrays (checked) or the defaults ``mu``, ``sigma``."""
    mus = _initial("initial_mu", initial_mu, mu, n)
    sigmas = _initial("initial_sigma", initial_sigma, sigma, n)
    if np.any(sigmas <= 0):
        raise InputError("initial_sigma must be positive")
    return mus, sigmas


def _initial(name: str, values: np.ndarray | None, default: float, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, float(default))
    arr = np.array(values, dtype=float)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be a finite array of shape ({n},), got shape {arr.shape}")
    return arr


CONSERVATIVE_Z = 3.0
"""The conservative score is μ − 3σ (TrueSkill's ``expose``, openskill's ``ordinal``: z = μ₀/σ₀ = 3)."""


def as_matches(data: Matches | Comparisons, model: str) -> Matches:
    """``data`` as non-empty :class:`Matches` (each comparison a 1-vs-1 match in row order)."""
    if isinstance(data, Comparisons):
        check_comparisons(data, model)
        return Matches.from_comparisons(data)
    if not isinstance(data, Matches):
        raise InputError(f"{model}: expected Matches or Comparisons, got {type(data).__name__}")
    if data.n_matches == 0:
        raise InputError(f"{model}: no matches to rate (the data are empty)")
    return data


def conservative_z(z: float | None, model: str) -> float:
    """The multiplier of σ in the conservative score (``z=`` is the old option, kept with a warning)."""
    if z is None:
        return CONSERVATIVE_Z
    warnings.warn(f"{model}: z= is deprecated (the intervals follow level=; the conservative score is "
                  f"μ − {CONSERVATIVE_Z:g}σ)", DeprecationWarning, stacklevel=3)
    if not (isinstance(z, (int, float)) and math.isfinite(z) and z >= 0):
        raise InputError(f"z must be a number >= 0, got {z!r}")
    return float(z)


@dataclass(frozen=True, eq=False)
class PosteriorPredictor:
    """Index predictor of Gaussian skill posteriors: item ``k`` is ``N(mu[k], sigma[k]²)``, an unseen item (index
    −1) a newcomer ``N(prior_mu, prior_sigma²)``; ``predict(mu_a, mu_b, a_first, sigma_a=, sigma_b=)`` gives the
    model's win and tie probabilities integrated over both posteriors (:func:`trueskill_predictor`,
    :func:`weng_lin_predictor`). A :class:`Leaderboard` passes index −1 to it (``predicts_unknown``)."""

    mu: np.ndarray
    sigma: np.ndarray
    prior_mu: float
    prior_sigma: float
    predict: Callable
    predicts_unknown: bool = True

    def __call__(self, ia: np.ndarray, ib: np.ndarray, a_first: np.ndarray | None = None):
        mu = np.append(self.mu, self.prior_mu)
        sigma = np.append(self.sigma, self.prior_sigma)
        return self.predict(mu[ia], mu[ib], a_first, sigma_a=sigma[ia], sigma_b=sigma[ib])


def posterior_leaderboard(
    matches: Matches, mus: np.ndarray, sigmas: np.ndarray, *, z: float, intervals: str, level: float,
    predict: Callable, **fields
) -> Leaderboard:
    """Leaderboard of online posteriors: ``scores`` μ, ``se`` σ (the posterior intervals at ``level``
    unless ``intervals="none"``), ``conservative`` μ − zσ; ``fields`` (``model``, ``params`` — which must hold
    the prior ``mu`` and ``sigma`` —, ``scale_name``) pass through to :class:`Leaderboard`. Predictions integrate
    over the posteriors: ``predict`` (a σ-aware predictor) becomes a :class:`PosteriorPredictor`, in which an item
    the board has not seen is a newcomer with the prior's σ.

    Sorted and ranked by the conservative score, the usual TrueSkill/OpenSkill leaderboard key: sorting by μ put
    a player with 2 matches and σ = 5.8 first. The rating column stays μ (what predictions use)."""
    shown = intervals != "none"
    conservative = mus - z * sigmas
    info = {**fields.pop("info", {}), "sorted_by": f"conservative (mu - {z:g} sigma)"}
    params = fields["params"]
    return score_board(
        matches.items,
        mus,
        games=matches.games_per_item(),
        n_comparisons=matches.n_matches,
        se=sigmas if shown else None,
        columns={"sigma": sigmas, "conservative": conservative},
        interval_method="posterior" if shown else None,
        level=level,
        sort_key=conservative,
        info=info,
        predictor=None,
        pair_predictor=PosteriorPredictor(mus.copy(), sigmas.copy(), float(params["mu"]), float(params["sigma"]),
                                          predict),
        **fields,
    )
