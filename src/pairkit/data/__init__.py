"""Comparison data: the :class:`Comparisons` container, readers, sufficient statistics."""

from pairkit.data.best_worst import best_worst_comparisons, best_worst_scores
from pairkit.data.comparisons import Comparisons, PairCounts, aggregate_pairs
from pairkit.data.letor import LetorData, pad_lists, read_letor
from pairkit.data.rankings import Rankings, read_any_rankings, read_preflib, read_rankings, read_wide_rankings
from pairkit.data.readers import (
    OUTCOME_LABELS,
    ROW_RULES,
    check_csv_header,
    nested_field,
    parse_outcome_map,
    read_comparisons,
    read_records,
    read_table,
)

__all__ = [
    "Comparisons",
    "LetorData",
    "OUTCOME_LABELS",
    "PairCounts",
    "ROW_RULES",
    "Rankings",
    "aggregate_pairs",
    "best_worst_comparisons",
    "best_worst_scores",
    "check_csv_header",
    "nested_field",
    "pad_lists",
    "parse_outcome_map",
    "read_any_rankings",
    "read_comparisons",
    "read_letor",
    "read_preflib",
    "read_rankings",
    "read_records",
    "read_table",
    "read_wide_rankings",
]
