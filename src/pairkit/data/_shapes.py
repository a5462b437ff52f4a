"""How the comparison readers name their columns and rows (private to :mod:`pairkit.data`; the DuckDB counter of
:mod:`pairkit.scale` reads columns the same way): the auto-detected column shapes, the mode they give, and the
source that turns a data position into the row number a user sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pairkit._lazy import pandas as pd
from pairkit.errors import InputError

__all__ = ["AUTO_SHAPES", "Source", "column_mode", "detect_shape"]

AUTO_SHAPES = [
    # (required columns, mapping)
    (("winner", "loser"), {"winner": "winner", "loser": "loser"}),
    (("model_a", "model_b", "winner"), {"a": "model_a", "b": "model_b", "outcome": "winner"}),
    (("home_team", "away_team", "home_score", "away_score"),
     {"a": "home_team", "b": "away_team", "score_a": "home_score", "score_b": "away_score"}),
    (("a", "b", "outcome"), {"a": "a", "b": "b", "outcome": "outcome"}),
    (("0", "1", "2"), {"a": "0", "b": "1", "outcome": "2"}),
]


@dataclass
class Source:
    """Where rows came from, to turn a 0-based data position into the row number a user sees."""

    name: str
    first_row: int  # the user-visible number of data position 0
    unit: str = "row"
    # The line of each data position where lines were skipped (blank JSONL lines, blank CSV lines), computed
    # only when an error is reported: the fast path never pays for it.
    line_of: Callable[[int], int] | None = None

    def where(self, position: int, column: str | None = None) -> str:
        number = self.line_of(position) if self.line_of is not None else position + self.first_row
        text = f"{self.name}, {self.unit} {number}"
        return f"{text}, column {column!r}" if column is not None else text


def detect_shape(frame: pd.DataFrame, src: Source) -> dict[str, str]:
    cols = set(frame.columns)
    for required, mapping in AUTO_SHAPES:
        if set(required) <= cols:
            return dict(mapping)
    raise InputError(
        f"{src.name}: cannot tell which columns hold the comparison; columns are {list(frame.columns)}. "
        "Pass winner=/loser=, or a=/b= with outcome= or score_a=/score_b=."
    )


def column_mode(spec: dict[str, str]) -> str:
    keys = set(spec)
    if keys == {"winner", "loser"}:
        return "winner"
    if keys == {"a", "b", "outcome"}:
        return "outcome"
    if keys == {"a", "b", "score_a", "score_b"}:
        return "scores"
    raise InputError(
        f"incomplete or conflicting columns {sorted(keys)}: give winner+loser, a+b+outcome or "
        "a+b+score_a+score_b"
    )
