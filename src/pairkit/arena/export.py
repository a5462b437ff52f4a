"""From the vote log to data: :class:`~pairkit.data.Comparisons`, preference pairs and the raw log.

A vote on a pair shown as (left, right) becomes the comparison ``a = left, b = right`` with ``a_first = True``
(the order shown), ``cluster = context_id`` and outcome 1 (left better), 0 (right better), ½ (tie) or the
``both_bad`` value (½ by default: the rating treats "both bad" as a tie; the export keeps the label). Skips and
the gold/repeat checks are not comparisons of the leaderboard (they stay in the raw log), nor are the votes of
LLM judges (annotators named ``judge:…``) unless asked for.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairkit._io import atomic_write_bytes
from pairkit.arena.store import JUDGE_PREFIX
from pairkit.data import Comparisons
from pairkit.errors import InputError

__all__ = [
    "LOG_COLUMNS",
    "comparisons_frame",
    "jsonl_bytes",
    "preference_pairs",
    "table_bytes",
    "to_comparisons",
    "votes_frame",
    "write_jsonl",
    "write_table",
]

LOG_COLUMNS = (
    "vote_id", "annotator", "context_id", "left_id", "right_id", "outcome", "strength", "reason", "kind",
    "expected", "shown_at", "voted_at", "latency_ms", "undone", "params",
)


def votes_frame(votes: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The raw vote log (one row per vote, oldest first) with :data:`LOG_COLUMNS`; timestamps in UTC.

    ``params`` is the JSON of the URL parameters captured with the vote (Prolific ids).
    """
    frame = pd.DataFrame(list(votes), columns=[*LOG_COLUMNS, "seq"])
    for col in ("shown_at", "voted_at"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    frame["undone"] = frame["undone"].astype(bool)
    return frame[list(LOG_COLUMNS)]


def _decisions(votes: Sequence[Mapping[str, Any]], *, judges: bool = False) -> pd.DataFrame:
    """The human (and, with ``judges``, LLM-judge) votes that are comparisons: not skipped, checks or undone."""
    frame = pd.DataFrame(list(votes), columns=["vote_id", "annotator", "context_id", "left_id", "right_id",
                                                "outcome", "strength", "kind", "undone", "voted_at"])
    keep = (frame["kind"] == "normal") & (frame["outcome"] != "skip") & ~frame["undone"].astype(bool)
    if not judges:
        keep &= ~frame["annotator"].astype(str).str.startswith(JUDGE_PREFIX)
    return frame[keep.to_numpy()].reset_index(drop=True)


def comparisons_frame(
    votes: Sequence[Mapping[str, Any]], *, both_bad: float = 0.5, judges: bool = False
) -> pd.DataFrame:
    """The comparisons table written by ``pairkit arena export --comparisons``.

    Columns ``a, b, outcome, a_first, context_id`` (readable by ``pairkit rank --a a --b b --outcome outcome
    --a-first a_first --cluster context_id``) plus ``label`` (left/right/tie/both_bad), ``strength``,
    ``annotator``, ``vote_id``, ``battle`` (shared by the pairwise votes of one K-wise ranking: ``--cluster battle``
    treats them as dependent) and ``voted_at``. LLM judges' votes only with ``judges=True``.
    """
    if not 0 <= both_bad <= 1:
        raise InputError(f"--both-bad must be in [0, 1] (the outcome a 'both bad' vote counts as); got {both_bad}")
    d = _decisions(votes, judges=judges)
    outcome = d["outcome"].map({"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": both_bad}).astype(float)
    return pd.DataFrame(
        {
            "a": d["left_id"].astype(str),
            "b": d["right_id"].astype(str),
            "outcome": outcome,
            "a_first": np.ones(len(d), bool),
            "context_id": d["context_id"].astype(str),
            "label": d["outcome"].astype(str),
            "strength": d["strength"].astype("int64"),
            "annotator": d["annotator"].astype(str),
            "vote_id": d["vote_id"].astype(str),
            "battle": d["vote_id"].astype(str).str.split("/", n=1).str[0],  # the pairs of one K-wise ranking
            "voted_at": pd.to_datetime(d["voted_at"], unit="s", utc=True),
        }
    )


def to_comparisons(
    votes: Sequence[Mapping[str, Any]], items: Sequence[str], *, both_bad: float = 0.5, source: str = "arena"
) -> Comparisons:
    """The leaderboard's comparisons (see the module docstring) over ``items`` (every candidate, voted or not)."""
    frame = comparisons_frame(votes, both_bad=both_bad)
    return Comparisons.from_arrays(
        frame["a"].to_numpy(object),
        frame["b"].to_numpy(object),
        frame["outcome"].to_numpy(),
        items=list(items),
        cluster=frame["context_id"].to_numpy(object),
        a_first=frame["a_first"].to_numpy(),
        source=source,
    )


def preference_pairs(
    votes: Sequence[Mapping[str, Any]], candidates: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Decided votes as ``{prompt, chosen, rejected}`` rows for the trainers (ties and "both bad" left out)."""
    text = {(str(r["context_id"]), str(r["candidate_id"])): str(r["text"]) for r in candidates}
    prompt = {str(r["context_id"]): str(r.get("context", r["context_id"])) for r in candidates}
    d = _decisions(votes)
    d = d[d["outcome"].isin(["left", "right"])]
    left_won = (d["outcome"] == "left").to_numpy()
    chosen = np.where(left_won, d["left_id"], d["right_id"])
    rejected = np.where(left_won, d["right_id"], d["left_id"])
    return [
        {
            "prompt": prompt[c],
            "chosen": text[(c, w)],
            "rejected": text[(c, lo)],
            "chosen_id": w,
            "rejected_id": lo,
            "context_id": c,
            "strength": int(s),
            "annotator": a,
        }
        for c, w, lo, s, a in zip(d["context_id"], chosen, rejected, d["strength"], d["annotator"])
    ]


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as CSV, JSONL or Parquet, chosen by the file suffix (atomically: all or nothing)."""
    atomic_write_bytes(path, table_bytes(frame, Path(path).suffix, name=str(path)))


def table_bytes(frame: pd.DataFrame, suffix: str, *, name: str = "export") -> bytes:
    """``frame`` as the bytes of a ``.csv``, ``.jsonl`` or ``.parquet`` file (``suffix``)."""
    buffer = io.BytesIO()
    suffix = suffix.lower()
    if suffix == ".csv":
        frame.to_csv(buffer, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(buffer, orient="records", lines=True, force_ascii=False, date_format="iso")
    elif suffix == ".parquet":
        frame.to_parquet(buffer, index=False)
    else:
        raise InputError(f"{name}: unknown file type {suffix or '(none)'}; use .csv, .jsonl or .parquet")
    return buffer.getvalue()


def jsonl_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows as JSON lines, UTF-8."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def write_jsonl(rows: Sequence[Mapping[str, Any]], path: str | Path) -> int:
    """Write rows as JSON lines; returns the number written."""
    atomic_write_bytes(path, jsonl_bytes(rows))
    return len(rows)
