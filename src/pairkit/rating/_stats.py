"""Per-item counts shared by the rating models (one definition each), from the cached pair counts."""

from __future__ import annotations

import numpy as np

from pairkit.data.comparisons import Comparisons

__all__ = ["games_per_item", "win_rate"]


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
