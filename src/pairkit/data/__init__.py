"""Comparison data: the :class:`Comparisons` container, readers, sufficient statistics."""

from pairkit.data.best_worst import best_worst_comparisons, best_worst_scores
from pairkit.data.comparisons import Comparisons, PairCounts, aggregate_pairs
from pairkit.data.rankings import *  # noqa: F403
from pairkit.data.readers import OUTCOME_LABELS, read_comparisons, read_table

__all__ = [
    "OUTCOME_LABELS",
    "Comparisons",
    "PairCounts",
    "aggregate_pairs",
    "best_worst_comparisons",
    "best_worst_scores",
    "read_comparisons",
    "read_table",
]
