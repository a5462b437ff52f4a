"""Comparison data: the :class:`Comparisons` container, readers, sufficient statistics."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "best_worst_comparisons": "best_worst", "best_worst_scores": "best_worst",
    "Comparisons": "comparisons", "PairCounts": "comparisons", "aggregate_pairs": "comparisons",
    "LetorData": "letor", "pad_lists": "letor", "read_letor": "letor",
    "Rankings": "rankings", "read_any_rankings": "rankings", "read_preflib": "rankings", "read_rankings": "rankings",
    "read_wide_rankings": "rankings",
    "OUTCOME_LABELS": "readers", "ROW_RULES": "readers", "check_csv_header": "readers", "nested_field": "readers",
    "parse_outcome_map": "readers", "read_comparisons": "readers", "read_records": "readers", "read_table": "readers",
}
"""Each public name's module, imported when the name is first used: ``pairkit rank`` needs the comparisons and
the readers, not the rankings, LETOR or best–worst modules."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"pairkit.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
