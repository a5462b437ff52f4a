"""Per-item counts shared by the rating models (one definition each) and the leaderboard of the models whose
scores are not log-strengths."""

from __future__ import annotations

import numpy as np

from pairkit.data.comparisons import Comparisons
from pairkit.rating.leaderboard import Leaderboard, Predictor

__all__ = ["games_per_item", "score_board", "win_rate"]


def games_per_item(comparisons: Comparisons) -> np.ndarray:
    """Weighted number of comparisons each item took part in."""
    n = comparisons.n_items
    return np.bincount(comparisons.a, comparisons.weight, n) + np.bincount(comparisons.b, comparisons.weight, n)


def win_rate(comparisons: Comparisons) -> np.ndarray:
    """Share of (weighted) comparisons each item won, ties counting half (NaN for an item never compared)."""
    counts = comparisons.pair_counts(ties="half")  # cached on the comparisons
    games = counts.games_per_item()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, counts.wins_per_item() / np.where(games > 0, games, 1), np.nan)


def score_board(
    items: tuple[str, ...],
    scores: np.ndarray,
    *,
    model: str,
    score_scale: str,
    games: np.ndarray,
    n_comparisons: int,
    scale_name: str | None = None,
    predictor: Predictor | None = None,
    **fields,
) -> Leaderboard:
    """The leaderboard of a counting, spectral or online model: ``scores`` on their own ``score_scale``, shown as
    they are (display scale ``scale_name``, default the model's name), the games per item, and no win
    probabilities unless a ``predictor`` is given; ``fields`` (intervals, params, columns) pass through."""
    return Leaderboard(
        items=items,
        scores=np.asarray(scores, dtype=float),
        model=model,
        n=games,
        n_comparisons=n_comparisons,
        scale_name=model if scale_name is None else scale_name,
        score_scale=score_scale,
        predictor=predictor,
        **fields,
    )
