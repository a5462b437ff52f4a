"""Count-table files (private to :mod:`pairkit.scale`): a file's kind from its suffix, its column names from its
header, and the one column and row order every count table is written in."""

from __future__ import annotations

from pathlib import Path

from pairkit._lazy import pandas as pd

__all__ = ["KINDS", "columns_of", "file_kind", "ordered_counts"]

KINDS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".txt": "csv",
         ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def file_kind(path: str | Path) -> str | None:
    """``parquet``, ``csv``, ``tsv``, ``jsonl`` or ``json`` from the suffix (a trailing ``.gz`` is skipped)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return KINDS.get(suffixes[-1]) if suffixes else None


def columns_of(path: Path) -> list[str]:
    """Column names of a file, reading only its header/schema where the format allows."""
    kind = file_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if kind in ("csv", "tsv"):
        return list(pd.read_csv(path, sep="\t" if kind == "tsv" else ",", nrows=0).columns)
    return []


def ordered_counts(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("replicate", "cluster", "a_first") if c in frame.columns]
    cols = ["a", "b", "a_wins", "b_wins", "ties", "n"]
    frame = frame[keys + cols] if "n" in frame.columns else frame[keys + cols[:-1]]
    return frame.sort_values(keys + ["a", "b"], kind="stable").reset_index(drop=True)
