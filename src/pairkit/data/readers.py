"""Readers: CSV, JSONL, JSON, Parquet files and pandas DataFrames into :class:`Comparisons`.

Column mapping covers the common shapes:

* winner/loser columns (``winner=``, ``loser=``);
* two item columns and an outcome label (``a=``, ``b=``, ``outcome=``): ``model_a``/``model_b``/``tie``/
  ``tie (bothbad)`` as in LMArena and Arena-Hard, ``1-0``/``0-1``/``1/2-1/2`` as in chess, numbers in [0, 1];
* two item columns and two scores (``score_a=``, ``score_b=``): home/away goals → win/draw/loss.

With no column arguments the shape is recognised from well-known column names. Invalid rows raise
:class:`InputError` naming the file, row and column; ``on_invalid="drop"`` drops them instead and warns with
the count (:class:`DroppedRowsWarning`), which is also kept in ``Comparisons.n_dropped``.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from pairkit.data.comparisons import Comparisons
from pairkit.errors import DroppedRowsWarning, InputError

OUTCOME_LABELS: dict[str, float] = {
    **dict.fromkeys(["1", "1.0", "a", "model_a", "win", "w", "1-0", "a>b", "a>>b", "left", "first"], 1.0),
    **dict.fromkeys(["0", "0.0", "b", "model_b", "loss", "l", "0-1", "b>a", "b>>a", "right", "second"], 0.0),
    **dict.fromkeys(
        ["0.5", ".5", "tie", "draw", "d", "t", "tie (bothbad)", "tie (both bad)", "bothbad", "both_bad",
         "both bad", "1/2-1/2", "½-½", "=", "a=b"],
        0.5,
    ),
}

_AUTO_SHAPES = [
    # (required columns, mapping)
    (("winner", "loser"), {"winner": "winner", "loser": "loser"}),
    (("model_a", "model_b", "winner"), {"a": "model_a", "b": "model_b", "outcome": "winner"}),
    (("home_team", "away_team", "home_score", "away_score"),
     {"a": "home_team", "b": "away_team", "score_a": "home_score", "score_b": "away_score"}),
    (("a", "b", "outcome"), {"a": "a", "b": "b", "outcome": "outcome"}),
    (("0", "1", "2"), {"a": "0", "b": "1", "outcome": "2"}),
]


@dataclass
class _Source:
    """Where rows came from, to turn a 0-based data position into the row number a user sees."""

    name: str
    first_row: int  # the user-visible number of data position 0
    unit: str = "row"

    def where(self, position: int, column: str | None = None) -> str:
        text = f"{self.name}, {self.unit} {position + self.first_row}"
        return f"{text}, column {column!r}" if column is not None else text


def read_table(path: str | Path) -> tuple[pd.DataFrame, _Source]:
    """Read a CSV/TSV, JSONL, JSON or Parquet file (optionally gzip-compressed) into a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = (suffixes[-2] if compressed and len(suffixes) > 1 else suffixes[-1]) if suffixes else ""
    name = str(path)
    if path.stat().st_size == 0:
        raise InputError(f"{name}: the file is empty")
    try:
        if kind in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if kind == ".tsv" else ",", dtype=str, keep_default_na=False,
                                na_values=[""])
            return frame, _Source(name, 2)  # the header is row 1
        if kind in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False), _Source(name, 1, "line")
        if kind == ".json":
            opener = gzip.open if compressed else open
            with opener(path, "rt", encoding="utf-8") as handle:
                data = json.load(handle)
            if isinstance(data, dict):
                data = next((v for v in data.values() if isinstance(v, list)), None)
            if not isinstance(data, list):
                raise InputError(f"{name}: expected a JSON list of records or of [a, b, outcome] rows")
            frame = pd.DataFrame(data)
            frame.columns = [str(c) for c in frame.columns]
            return frame, _Source(name, 1, "element")
        if kind in (".parquet", ".pq"):
            return pd.read_parquet(path), _Source(name, 1)
    except InputError:
        raise
    except (ValueError, json.JSONDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{name}: cannot parse as {kind[1:]} ({exc})") from exc
    raise InputError(f"{name}: unknown file type {kind or '(none)'}; use .csv, .tsv, .jsonl, .json or .parquet")


def read_comparisons(
    source: str | Path | pd.DataFrame,
    *,
    winner: str | None = None,
    loser: str | None = None,
    a: str | None = None,
    b: str | None = None,
    outcome: str | None = None,
    score_a: str | None = None,
    score_b: str | None = None,
    weight: str | None = None,
    cluster: str | None = None,
    a_first: str | bool | None = None,
    outcome_map: Mapping[str, float] | None = None,
    items: list[str] | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
) -> Comparisons:
    """Read pairwise comparisons from a file or DataFrame.

    Give either ``winner`` and ``loser``; or ``a``, ``b`` and ``outcome`` (a label or a number in [0, 1] for
    ``a``); or ``a``, ``b``, ``score_a`` and ``score_b``. Without any of these, well-known column names are
    recognised (winner/loser; model_a/model_b/winner; home_team/away_team/home_score/away_score; a/b/outcome;
    JSON rows ``[a, b, outcome]``). ``weight``, ``cluster`` name optional columns; ``a_first`` names a boolean
    column, or ``True`` when ``a`` is always first (white in chess, the home side). ``outcome_map`` adds or
    overrides outcome labels (case-insensitive).
    """
    if on_invalid not in ("raise", "drop"):
        raise InputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    if isinstance(source, pd.DataFrame):
        frame, src = source.reset_index(drop=True), _Source("DataFrame", 1)
        frame.columns = [str(c) for c in frame.columns]
    else:
        frame, src = read_table(source)
    if len(frame) == 0:
        raise InputError(f"{src.name}: no data rows")

    spec = dict(winner=winner, loser=loser, a=a, b=b, outcome=outcome, score_a=score_a, score_b=score_b)
    spec = {k: v for k, v in spec.items() if v is not None}
    if not spec:
        spec = _detect_shape(frame, src)
        if set(spec) == {"a", "b", "outcome"} and spec["a"] == "0" and a_first is None:
            a_first = True  # [white, black, result] rows: the first-named side moves first
    mode = _mode(spec)
    for col in [*spec.values(), weight, cluster, a_first if isinstance(a_first, str) else None]:
        if col is not None and col not in frame.columns:
            raise InputError(f"{src.name}: no column {col!r}; columns are {list(frame.columns)}")

    bad = np.zeros(len(frame), dtype=bool)
    problems: list[tuple[np.ndarray, str, str]] = []  # (row mask, column, description)

    def flag(mask: np.ndarray, column: str, what: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~bad
        if mask.any():
            problems.append((mask.copy(), column, what))
            bad[:] |= mask

    if mode == "winner":
        col_a, col_b = spec["winner"], spec["loser"]
    else:
        col_a, col_b = spec["a"], spec["b"]
    names_a = _item_column(frame, col_a, flag)
    names_b = _item_column(frame, col_b, flag)

    if mode == "winner":
        out = np.ones(len(frame))
    elif mode == "outcome":
        out = _parse_outcomes(frame[spec["outcome"]], spec["outcome"], outcome_map, flag)
    else:
        sa = _numeric_column(frame, spec["score_a"], flag)
        sb = _numeric_column(frame, spec["score_b"], flag)
        out = np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5))

    same = (names_a == names_b) & (names_a != "")
    flag(same, col_b, "the item is compared with itself")

    w = np.ones(len(frame))
    if weight is not None:
        w = _numeric_column(frame, weight, flag)
        flag(~np.isfinite(w) | (w < 0), weight, "weight must be finite and non-negative")
    cl = None
    if cluster is not None:
        cl_col = frame[cluster]
        flag(cl_col.isna().to_numpy(), cluster, "missing cluster id")
        cl = cl_col.astype(str).to_numpy()
    af = None
    if a_first is True:
        af = np.ones(len(frame), dtype=bool)
    elif isinstance(a_first, str):
        af = _bool_column(frame, a_first, flag)

    if problems:
        total = int(bad.sum())
        if on_invalid == "raise":
            mask, column, what = min(problems, key=lambda p: int(np.argmax(p[0])))
            k = int(np.argmax(mask))
            value = frame[column].iloc[k]
            raise InputError(
                f"{src.where(k, column)}: {what} (value {value!r}). {total} invalid row(s) in all; fix them, "
                "map labels with outcome_map=..., or pass on_invalid='drop' (--drop-invalid) to drop them."
            )
        summary = "; ".join(f"{int(m.sum())} × {what} (column {c!r})" for m, c, what in problems)
        warnings.warn(
            f"{src.name}: dropped {total} of {len(frame)} rows: {summary}", DroppedRowsWarning, stacklevel=2
        )
        keep = ~bad
        if not keep.any():
            raise InputError(f"{src.name}: every row is invalid ({summary})")
        names_a, names_b, out, w = names_a[keep], names_b[keep], out[keep], w[keep]
        cl = None if cl is None else cl[keep]
        af = None if af is None else af[keep]

    comps = Comparisons.from_arrays(
        names_a, names_b, out, items=items, weight=w, cluster=cl, a_first=af, source=src.name
    )
    if problems:
        object.__setattr__(comps, "n_dropped", int(bad.sum()))
    return comps


def _detect_shape(frame: pd.DataFrame, src: _Source) -> dict[str, str]:
    cols = set(frame.columns)
    for required, mapping in _AUTO_SHAPES:
        if set(required) <= cols:
            return dict(mapping)
    raise InputError(
        f"{src.name}: cannot tell which columns hold the comparison; columns are {list(frame.columns)}. "
        "Pass winner=/loser=, or a=/b= with outcome= or score_a=/score_b=."
    )


def _mode(spec: dict[str, str]) -> str:
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


def _item_column(frame: pd.DataFrame, column: str, flag) -> np.ndarray:
    col = frame[column]
    missing = col.isna().to_numpy()
    names = col.astype(str).str.strip().to_numpy(dtype=object)
    names[missing] = ""
    flag(missing | (names == ""), column, "missing item name")
    return names.astype(str)


def _numeric_column(frame: pd.DataFrame, column: str, flag) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    flag(np.isnan(values), column, "missing or non-numeric value")
    return values


def _bool_column(frame: pd.DataFrame, column: str, flag) -> np.ndarray:
    text = frame[column].astype(str).str.strip().str.lower()
    truth = {"true": True, "1": True, "yes": True, "1.0": True, "false": False, "0": False, "no": False,
             "0.0": False}
    parsed = text.map(truth)
    flag(parsed.isna().to_numpy(), column, "expected a boolean (true/false/1/0)")
    return parsed.fillna(False).to_numpy(dtype=bool)


def _as_number(text: str) -> float:
    """A label that is a plain number (CSV columns arrive as text), else NaN."""
    try:
        return float(text)
    except ValueError:
        return np.nan


def _parse_outcomes(column: pd.Series, name: str, outcome_map, flag) -> np.ndarray:
    labels = dict(OUTCOME_LABELS)
    if outcome_map:
        labels.update({str(k).strip().lower(): float(v) for k, v in outcome_map.items()})
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        flag(np.isnan(values), name, "missing outcome")
        flag(~np.isnan(values) & ((values < 0) | (values > 1)), name, "outcome must be in [0, 1]")
        return np.nan_to_num(values, nan=0.5)
    missing = column.isna().to_numpy()
    text = column.astype(str).str.strip().str.lower()
    # map over unique labels only: one dictionary lookup per distinct label, not per row
    codes, uniques = pd.factorize(text)
    table = np.array([labels.get(u, _as_number(u)) for u in uniques] + [np.nan])
    values = table[codes]
    out_of_range = ~np.isnan(values) & ((values < 0) | (values > 1))
    flag(out_of_range, name, "outcome must be in [0, 1]")
    flag(missing, name, "missing outcome")
    known = ", ".join(sorted({k for k in OUTCOME_LABELS if not k[0].isdigit()})[:12])
    values = np.where(out_of_range, np.nan, values)
    flag(np.isnan(values) & ~missing, name, f"unknown outcome label (known labels include {known}, numbers)")
    return np.nan_to_num(values, nan=0.5)
