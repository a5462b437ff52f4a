"""The outcome labels and row rules of comparisons files, shared by the readers (:mod:`pairkit.data.readers`, which
exports them) and the out-of-core counting (:mod:`pairkit.scale`); a module without heavy imports, so that
``pairkit count`` starts without loading the readers' dependencies."""

from __future__ import annotations

__all__ = ["OUTCOME_LABELS", "ROW_RULES"]

OUTCOME_LABELS: dict[str, float] = {
    **dict.fromkeys(["1", "1.0", "a", "model_a", "win", "w", "1-0", "a>b", "a>>b", "left", "first"], 1.0),
    **dict.fromkeys(["0", "0.0", "b", "model_b", "loss", "l", "0-1", "b>a", "b>>a", "right", "second"], 0.0),
    **dict.fromkeys(
        ["0.5", ".5", "tie", "draw", "d", "t", "tie (bothbad)", "tie (both bad)", "bothbad", "both_bad",
         "both bad", "1/2-1/2", "½-½", "=", "a=b"],
        0.5,
    ),
}

ROW_RULES: dict[str, str] = {
    "nested": "a JSON object or array is not {what}",
    "missing_item": "missing item name",
    "missing_outcome": "missing outcome",
    "unknown_outcome": "unknown outcome label",
    "outcome_range": "outcome must be in [0, 1]",
    "non_numeric": "missing or non-numeric value",
    "infinite_score": "score must be finite",
    "self": "the item is compared with itself",
    "weight": "weight must be finite and non-negative",
    "missing_cluster": "missing cluster id",
    "boolean": "expected a boolean (true/false/1/0)",
}
"""The rules every row of a comparisons file must follow, with the words of their error messages: one table for
the readers (:mod:`pairkit.data.readers`) and the out-of-core counting in SQL (:mod:`pairkit.scale`), which
checks each of them too (a test fails when a rule is added here without its SQL). File-level rules: a repeated
header name (:func:`pairkit.data.readers.check_csv_header`), unreadable text, JSON or compressed data."""
