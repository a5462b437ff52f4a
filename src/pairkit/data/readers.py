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
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from pairkit._lazy import pandas as pd
from pairkit.data._rules import OUTCOME_LABELS, ROW_RULES
from pairkit.data._shapes import AUTO_SHAPES, Source, column_mode, detect_shape
from pairkit.data.comparisons import Comparisons, compact_constant, constant, index_dtype
from pairkit.errors import DroppedRowsWarning, InputError

__all__ = ["OUTCOME_LABELS", "ROW_RULES", "check_csv_header", "nested_field", "parse_outcome_map", "read_comparisons",
           "read_records", "read_table"]

def read_table(path: str | Path) -> tuple[pd.DataFrame, Source]:
    """Read a CSV/TSV, JSONL, JSON or Parquet file (optionally gzip-compressed) into a DataFrame.

    JSON and JSONL values keep their Python types (object columns), so integer ids stay exact (``2**53 + 1`` is
    not rounded through a float); integer Parquet columns with nulls become nullable integers, not floats
    (``7`` stays ``7``, not ``7.0``). A UTF-8 byte-order mark is accepted in every text format.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file of comparisons")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = (suffixes[-2] if compressed and len(suffixes) > 1 else suffixes[-1]) if suffixes else ""
    name = str(path)
    if path.stat().st_size == 0:
        raise InputError(f"{name}: the file is empty")
    try:
        if kind in (".csv", ".tsv", ".txt"):
            sep = "\t" if kind == ".tsv" else ","
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
            check_csv_header(path, sep, name)
            return frame, Source(name, 2, line_of=lambda k: _csv_line(path, sep, k))  # the header is row 1
        if kind in (".jsonl", ".ndjson"):
            return _read_jsonl(path, name)
        if kind == ".json":
            data = json.loads(_read_text(path))
            if isinstance(data, dict):
                data = next((v for v in data.values() if isinstance(v, list)), None)
            if not isinstance(data, list):
                raise InputError(f"{name}: expected a JSON list of records or of [a, b, outcome] rows")
            return _records_frame(data, name, "element", list(range(1, len(data) + 1))), Source(
                name, 1, "element")
        if kind in (".parquet", ".pq"):
            return _read_parquet(path), Source(name, 1)
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{name}: the gzip data is truncated or corrupt ({exc})") from exc
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{name}: cannot parse as {kind[1:]} ({_one_line(exc)})") from exc
    raise InputError(f"{name}: unknown file type {kind or '(none)'}; use .csv, .tsv, .jsonl, .json or .parquet")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _read_text(path: Path) -> str:
    """The whole file as text: gzip-aware, UTF-8 with an optional byte-order mark."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read().decode("utf-8-sig")


def check_csv_header(path: Path, sep: str, name: str) -> None:
    """Raise :class:`InputError` when a CSV/TSV header repeats a name: pandas (and DuckDB) would rename the copy
    (``x.1``, ``x_1``) and one of the columns would be silently ignored."""
    header = pd.read_csv(path, sep=sep, dtype=str, header=None, nrows=1, keep_default_na=False).iloc[0].tolist()
    seen: dict[str, int] = {}
    for position, column in enumerate(header, 1):
        if column in seen:
            raise InputError(
                f"{name}, row 1: column {column!r} appears twice (columns {seen[column]} and {position}); "
                "rename one of them"
            )
        seen[column] = position


def _csv_line(path: Path, sep: str, position: int) -> int:
    """The line a data row starts on, counting the header, blank lines and quoted line breaks (error path)."""
    import csv

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        start = 1
        seen = -1  # the header is not a data row
        for row in reader:
            if row and any(row):  # pandas skips blank lines
                if seen == position:
                    return start
                seen += 1
            start = reader.line_num + 1
    return position + 2


def _read_jsonl(path: Path, name: str) -> tuple[pd.DataFrame, Source]:
    """One JSON object (or ``[a, b, outcome]`` array) per line; blank lines are skipped but counted."""
    lines = _read_text(path).split("\n")
    numbers = [k for k, line in enumerate(lines, 1) if line.strip()]
    try:
        records = json.loads("[" + ",".join(lines[k - 1] for k in numbers) + "]")
    except json.JSONDecodeError:
        records = None
    if records is None or len(records) != len(numbers):  # find the first bad line (error path only)
        for k in numbers:
            try:
                value = json.loads(lines[k - 1])
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{name}, line {k}: not valid JSON ({exc.msg} at character {exc.colno} of the line)"
                ) from exc
            if not isinstance(value, (dict, list)):
                raise InputError(f"{name}, line {k}: expected a JSON object, got {_short(value)}")
        raise InputError(f"{name}: more than one JSON value on a line")
    frame = _records_frame(records, name, "line", numbers)
    return frame, Source(name, 1, "line", line_of=numbers.__getitem__)


def _records_frame(records: list, name: str, unit: str, numbers: list[int]) -> pd.DataFrame:
    """A DataFrame of object columns from JSON records: all objects, or all ``[a, b, outcome]`` arrays."""
    if not records:
        return pd.DataFrame()
    shape = dict if isinstance(records[0], dict) else list
    odd = next((k for k, r in enumerate(records) if not isinstance(r, shape)), None)
    if odd is not None or shape is list and not isinstance(records[0], list):
        k = odd if odd is not None else 0
        expected = "a JSON object" if shape is dict else "an [a, b, outcome] array like the first"
        raise InputError(f"{name}, {unit} {numbers[k]}: expected {expected}, got {_short(records[k])}")
    frame = pd.DataFrame(records, dtype=object)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file with its text columns dictionary-encoded (categoricals): one string per distinct name.

    Integer columns become nullable integers: a null must not turn the id 7 into the float 7.0 (another item).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]

    def nullable_ints(dtype):
        if pa.types.is_integer(dtype):
            return pd.UInt64Dtype() if pa.types.is_uint64(dtype) else pd.Int64Dtype()
        return None

    table = pq.read_table(path, read_dictionary=text or None)
    frame = table.to_pandas(types_mapper=nullable_ints, self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()  # the decoded pages would otherwise stay resident in Arrow's pool
    return frame


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
    overrides outcome labels (case-insensitive); its keys that are numbers also recode a numeric outcome column
    (``{1: 1, 1.5: 0.5, 2: 0}``, ``{-1: 0, 0: 0.5, 1: 1}``). An unknown label is an error naming the file, row,
    column and value, with every unknown label's row count.

    A column name with dots that is not itself a column is a path into nested JSON values: ``meta.model_a`` is
    the field ``model_a`` of the column ``meta``; ``score.ft.0`` the first element of the list ``score.ft``
    (:func:`nested_field`).
    """
    items_given = items
    if on_invalid not in ("raise", "drop"):
        raise InputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    if isinstance(source, (str, Path)) and weight is None and cluster is None and a_first is None and items is None:
        fast = _read_parquet_arrow(Path(source), winner=winner, loser=loser, a=a, b=b, outcome=outcome,
                                   score_a=score_a, score_b=score_b, outcome_map=outcome_map)
        if fast is not None:
            return fast
    if isinstance(source, pd.DataFrame):
        frame, src = source.reset_index(drop=True), Source("DataFrame", 1)
        frame.columns = [str(c) for c in frame.columns]
        repeated = frame.columns[frame.columns.duplicated()].unique().tolist()
        if repeated:
            raise InputError(f"DataFrame: column(s) {repeated} appear more than once; rename or drop the copies")
    else:
        frame, src = read_table(source)
    if len(frame) == 0:
        raise InputError(f"{src.name}: no data rows")

    spec = dict(winner=winner, loser=loser, a=a, b=b, outcome=outcome, score_a=score_a, score_b=score_b)
    spec = {k: v for k, v in spec.items() if v is not None}
    if not spec:
        spec = detect_shape(frame, src)
        if set(spec) == {"a", "b", "outcome"} and spec["a"] == "0" and a_first is None:
            a_first = True  # [white, black, result] rows: the first-named side moves first
    mode = column_mode(spec)
    for col in [*spec.values(), weight, cluster, a_first if isinstance(a_first, str) else None]:
        if col is not None and col not in frame.columns and "." in col:
            frame[col] = nested_field(frame, col, src.name)  # frame is the reader's own (reset_index copies)
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
    # Item names are handled as integer codes into their distinct values: no Python string per row.
    codes_a, names_a = _item_codes(frame, col_a, flag)
    codes_b, names_b = _item_codes(frame, col_b, flag)
    items, idx_a, idx_b = _unify_items(src, frame, (col_a, codes_a, names_a), (col_b, codes_b, names_b), items)

    if mode == "winner":
        out = constant(1.0, len(frame))
    elif mode == "outcome":
        outcomes = _scalars(frame[spec["outcome"]], spec["outcome"], flag, "an outcome")
        out = _parse_outcomes(outcomes, spec["outcome"], outcome_map, flag)
    else:
        sa = _numeric_column(frame, spec["score_a"], flag)
        sb = _numeric_column(frame, spec["score_b"], flag)
        flag(np.isinf(sa), spec["score_a"], ROW_RULES["infinite_score"])
        flag(np.isinf(sb), spec["score_b"], ROW_RULES["infinite_score"])
        out = np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5))

    same = (idx_a == idx_b) & (idx_a >= 0)
    flag(same, col_b, ROW_RULES["self"])

    w = constant(1.0, len(frame))
    if weight is not None:
        w = _numeric_column(frame, weight, flag)
        flag(~np.isfinite(w) | (w < 0), weight, ROW_RULES["weight"])
    cl = None
    if cluster is not None:
        cl, cl_labels = pd.factorize(_scalars(frame[cluster], cluster, flag, "a cluster id"))
        flag(cl < 0, cluster, ROW_RULES["missing_cluster"])
        cl = cl.astype(np.int64, copy=False)
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
            value = _plain(frame[column].iloc[k])
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
        idx_a, idx_b, out, w = idx_a[keep], idx_b[keep], out[keep], w[keep]
        if cl is not None:
            cl, cl_labels = pd.factorize(np.asarray(cl_labels)[cl[keep]])
            cl = cl.astype(np.int64)
        af = None if af is None else af[keep]
        if items_given is None:  # items seen only in dropped rows are not items of the data
            used = np.zeros(len(items), dtype=bool)
            used[idx_a] = used[idx_b] = True
            if not used.all():
                renumber = np.cumsum(used) - 1
                items, idx_a, idx_b = items[used], renumber[idx_a], renumber[idx_b]

    cache = {} if cl is None else {"cluster_labels": np.asarray(cl_labels)}  # names of the cluster codes
    if problems:  # the kept rows' numbers in the file (the Poisson bootstrap of `pairkit count` hashes them)
        cache["rows_kept"] = np.flatnonzero(~bad)
    # Every row was validated above, so the container is built directly (no second validation pass).
    return Comparisons(
        items=tuple(items.tolist()), a=idx_a, b=idx_b, outcome=compact_constant(out), weight=compact_constant(w),
        cluster=cl, a_first=af, source=src.name, n_dropped=int(bad.sum()) if problems else 0, _cache=cache,
    )


def _read_parquet_arrow(path: Path, *, outcome_map, **given) -> Comparisons | None:
    """The comparisons of a Parquet file read with pyarrow alone (no pandas, no Python object per row), or None
    when the file needs the general reader.

    Taken here: winner/loser or a/b/outcome columns (given or recognised by name), item names as text (dictionary-
    encoded on reading: one string per distinct name), outcomes as text labels, every row valid (no missing
    value, no item compared with itself, every label known and in [0, 1]), no weight, cluster or order column.
    Anything else — and every invalid row, so that errors and dropped-row reports keep their wording, row numbers
    and counts — goes to the general reader, which gives the same result on the rows taken here: items sorted,
    names stripped of surrounding whitespace, labels matched as :func:`_parse_outcomes` does."""
    if path.suffix.lower() not in (".parquet", ".pq") or not path.is_file() or path.stat().st_size == 0:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except Exception:  # unreadable: the general reader reports it with the file name
        return None
    names = list(schema.names)
    if len(set(names)) != len(names):
        return None
    spec = {k: v for k, v in given.items() if v is not None}
    if not spec:
        spec = next((dict(mapping) for required, mapping in AUTO_SHAPES if set(required) <= set(names)), None)
        if spec is None or spec.get("a") == "0":  # [white, black, result] rows: the order flag, general reader
            return None
    try:
        mode = column_mode(spec)
    except InputError:
        return None
    if mode == "scores" or not set(spec.values()) <= set(names):
        return None
    def is_text(kind) -> bool:
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)

    text = [name for name in spec.values() if is_text(schema.field(name).type)]
    if len(text) != len(spec):
        return None
    try:
        parquet = pq.ParquetFile(path, read_dictionary=text)
        table = parquet.read(columns=list(dict.fromkeys(spec.values())), use_pandas_metadata=False)
        columns = {name: table.column(name).combine_chunks() for name in dict.fromkeys(spec.values())}
    except Exception:
        return None
    m = table.num_rows
    del table
    if m == 0 or any(not pa.types.is_dictionary(col.type) or col.null_count or col.dictionary.null_count
                     for col in columns.values()):
        return None

    def distinct(column: str) -> tuple[np.ndarray, list[str]]:
        col = columns[column]
        codes = col.indices  # read from its buffer: pyarrow's to_numpy imports pandas
        kind = np.dtype(f"{'i' if pa.types.is_signed_integer(codes.type) else 'u'}{codes.type.bit_width // 8}")
        values = np.frombuffer(codes.buffers()[1], dtype=kind, count=codes.offset + len(codes))[codes.offset:]
        return values, [str(v).strip() for v in col.dictionary.to_pylist()]

    col_a, col_b = (spec["winner"], spec["loser"]) if mode == "winner" else (spec["a"], spec["b"])
    (codes_a, names_a), (codes_b, names_b) = distinct(col_a), distinct(col_b)
    if "" in names_a or "" in names_b:  # a blank name is a missing item: an invalid row
        return None
    items = np.unique(np.array(names_a + names_b, dtype=str))
    code = index_dtype(len(items))
    idx_a = np.searchsorted(items, np.array(names_a, dtype=str)).astype(code)[codes_a]
    idx_b = np.searchsorted(items, np.array(names_b, dtype=str)).astype(code)[codes_b]
    if np.any(idx_a == idx_b):
        return None
    if mode == "winner":
        out = constant(1.0, m)
    else:
        codes, labels = distinct(spec["outcome"])
        table_of = _label_values([label.lower() for label in labels], outcome_map)[:-1]  # no missing label here
        if np.isnan(table_of).any() or ((table_of < 0) | (table_of > 1)).any():
            return None
        out = table_of[codes]
    return Comparisons(items=tuple(items.astype(object).tolist()), a=idx_a, b=idx_b, outcome=compact_constant(out),
                       weight=constant(1.0, m), source=str(path))


def _outcome_labels(outcome_map) -> tuple[dict[str, float], dict[float, float]]:
    """The outcome labels (known ones and ``outcome_map``'s, lower case) and the numbers ``outcome_map`` recodes."""
    labels = dict(OUTCOME_LABELS)
    numeric_map: dict[float, float] = {}
    if outcome_map:
        labels.update({str(k).strip().lower(): float(v) for k, v in outcome_map.items()})
        for k, v in outcome_map.items():  # number keys recode numbers, whatever their spelling (1, 1.0, "1")
            number = _as_number(str(k).strip())
            if not np.isnan(number):
                numeric_map[number] = float(v)
    return labels, numeric_map


def _label_values(text, outcome_map) -> np.ndarray:
    """Each (stripped, lower-case) label's outcome, NaN when unknown; then NaN for the missing label."""
    labels, numeric_map = _outcome_labels(outcome_map)
    return np.array([labels.get(u, numeric_map.get(_as_number(u), _as_number(u))) for u in text] + [np.nan])


def _plain(value):
    """A cell as a user wrote it: numpy scalars as Python numbers, missing values as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value


# What pandas' infer_dtype calls a column of plain scalars: no dict or list can hide in it ("mixed" may hold one).
_SCALAR_KINDS = ("string", "integer", "floating", "mixed-integer-float", "boolean", "empty")


def _scalars(col: pd.Series, column: str, flag, what: str) -> pd.Series:
    """The column with JSON objects and arrays flagged and masked (they are unhashable, and no valid value)."""
    if col.dtype != object or pd.api.types.infer_dtype(col, skipna=True) in _SCALAR_KINDS:
        return col
    nested = col.map(lambda v: isinstance(v, (dict, list, tuple, set))).to_numpy(dtype=bool)
    flag(nested, column, ROW_RULES["nested"].format(what=what))
    return col.mask(nested)


def _item_codes(frame: pd.DataFrame, column: str, flag) -> tuple[np.ndarray, np.ndarray]:
    """Codes (−1 = missing) into the column's distinct names, stripped of surrounding whitespace.

    Names are converted and stripped once per distinct value, not once per row (a categorical column, as a
    dictionary-encoded Parquet column arrives, is used as it is).
    """
    col = _scalars(frame[column], column, flag, "an item name")
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, uniques = col.cat.codes.to_numpy(), col.cat.categories.to_numpy()
    else:
        codes, uniques = pd.factorize(col)
        uniques = np.asarray(uniques)
    if uniques.dtype.kind == "f" and np.isfinite(uniques).all() and (np.floor(uniques) == uniques).all() and (
            np.abs(uniques) <= 2**53).all():
        # Integer ids in a float column (a null in an integer column): 7.0 is the item 7, not a new item "7.0".
        uniques = uniques.astype(np.int64)
    text = pd.Series(uniques, dtype=object).astype(str).str.strip().to_numpy(dtype=object)
    # Stripping can merge names (" a" and "a") or empty them: factorize the stripped names again.
    merged, names = pd.factorize(text)
    merged = np.where(np.asarray(names, dtype=object)[merged] == "", -1, merged) if len(merged) else merged
    # One lookup per row through a table whose last entry (the code −1, missing) maps to −1.
    codes = np.append(merged, -1).astype(np.int32)[codes]
    flag(codes < 0, column, ROW_RULES["missing_item"])
    return codes, np.asarray(names, dtype=object)


def _unify_items(src: Source, frame: pd.DataFrame, side_a, side_b, items) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """One sorted item list for both columns (or the given ``items``) and each row's indices (−1 = missing)."""
    names = np.unique(np.concatenate([side_a[2], side_b[2]]).astype(str))
    if items is not None:
        known = pd.Index([str(x) for x in items])
        unknown = known.get_indexer(names) < 0
        if unknown.any():
            bad_name = names[np.flatnonzero(unknown)[0]]
            for column, codes, uniq in (side_a, side_b):
                hits = np.flatnonzero(np.asarray(uniq, dtype=str) == bad_name)
                rows = np.flatnonzero(np.isin(codes, hits))
                if len(rows):
                    raise InputError(f"{src.where(int(rows[0]), column)}: {bad_name!r} is not one of the given "
                                     f"items ({len(known)} items, e.g. {list(known[:3])})")
        names = np.asarray(known, dtype=str)
    lookup = pd.Index(names)
    out = []
    for _, codes, uniq in (side_a, side_b):
        position = np.append(lookup.get_indexer(np.asarray(uniq, dtype=str)), -1).astype(index_dtype(len(names)))
        out.append(position[codes])
    return names.astype(object), out[0], out[1]


def _numeric_column(frame: pd.DataFrame, column: str, flag) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    flag(np.isnan(values), column, ROW_RULES["non_numeric"])
    return values


def _bool_column(frame: pd.DataFrame, column: str, flag) -> np.ndarray:
    truth = {"true": 1.0, "1": 1.0, "yes": 1.0, "1.0": 1.0, "false": 0.0, "0": 0.0, "no": 0.0, "0.0": 0.0}
    codes, uniques = pd.factorize(_scalars(frame[column], column, flag, "a boolean"), use_na_sentinel=False)
    text = pd.Series(uniques, dtype=object).astype(str).str.strip().str.lower()
    parsed = np.asarray([truth.get(t, np.nan) for t in text], dtype=float)[codes]
    flag(np.isnan(parsed), column, ROW_RULES["boolean"])
    return parsed == 1.0


def _as_number(text: str) -> float:
    """A label that is a plain number (CSV columns arrive as text), else NaN."""
    try:
        return float(text)
    except ValueError:
        return np.nan


def _parse_outcomes(column: pd.Series, name: str, outcome_map, flag) -> np.ndarray:
    _, numeric_map = _outcome_labels(outcome_map)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if numeric_map:  # over the distinct values only
            uniq, inverse = np.unique(values, return_inverse=True)
            mapped = np.array([numeric_map.get(float(u), u) for u in uniq])
            values = mapped[inverse.ravel()] if len(uniq) else values
        flag(np.isnan(values), name, ROW_RULES["missing_outcome"])
        out_of_range = ~np.isnan(values) & ((values < 0) | (values > 1))
        what = ROW_RULES["outcome_range"] + (" (after outcome_map)" if numeric_map else "")
        flag(out_of_range, name, what + _value_counts(column.to_numpy()[out_of_range]))
        return np.nan_to_num(values, nan=0.5)
    # map over distinct labels only: one conversion and dictionary lookup per label, not per row; the checks
    # are made per label too, and a row is looked up through its label's code (the last entry: missing)
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, uniques = column.cat.codes.to_numpy(), column.cat.categories.to_numpy()
    else:
        codes, uniques = pd.factorize(column)
    text = pd.Series(np.asarray(uniques), dtype=object).astype(str).str.strip().str.lower()
    table = _label_values(text, outcome_map)
    out_of_range = ~np.isnan(table) & ((table < 0) | (table > 1))
    unknown = np.isnan(table)
    unknown[-1] = False
    flag(out_of_range[codes], name, ROW_RULES["outcome_range"])
    flag(codes < 0, name, ROW_RULES["missing_outcome"])
    known = "model_a, model_b, tie, tie (bothbad), win, loss, draw, 1-0, 0-1, 1/2-1/2, a, b, left, right"
    if unknown.any():
        per_label = np.bincount(codes[codes >= 0], minlength=len(uniques))
        found = np.flatnonzero(unknown[:-1])
        found = found[np.argsort(-per_label[found], kind="stable")]
        listed = ", ".join(f"{str(uniques[k])[:40]!r} × {per_label[k]}" for k in found[:6])
        more = f" and {len(found) - 6} more" if len(found) > 6 else ""
        given = "labels of outcome_map and " if outcome_map else ""
        flag(unknown[codes], name, f"{ROW_RULES['unknown_outcome']} ({len(found)} unknown: {listed}{more}; known: "
             f"{given}{known}, numbers in [0, 1]; map them with outcome_map / --outcome-map)")
    table[out_of_range | np.isnan(table)] = 0.5
    return table[codes]


def parse_outcome_map(text: str) -> dict[str, float]:
    """``"model_a=1,model_b=0,tie=0.5"`` → ``{"model_a": 1.0, ...}`` (the command line's ``--outcome-map``).

    Entries are separated by commas; a label may contain ``=`` (the value is after the last one). Each value must
    be a number in [0, 1] (the first item's share of the win); a repeated label, an empty label or a bad value
    raise :class:`~pairkit.errors.InputError` naming the entry.
    """
    out: dict[str, float] = {}
    for entry in text.split(","):
        label, eq, value = entry.rpartition("=")
        label = label.strip()
        if not eq or not label:
            raise InputError(f"--outcome-map: expected LABEL=VALUE entries separated by commas, got {entry.strip()!r}")
        number = _as_number(value.strip())
        if not 0 <= number <= 1:  # NaN fails too
            raise InputError(f"--outcome-map: {entry.strip()!r}: the value must be a number in [0, 1] (1: the first "
                             "item won, 0: the second, 0.5: a tie)")
        if label.lower() in {k.lower() for k in out}:
            raise InputError(f"--outcome-map: label {label!r} is given twice")
        out[label] = number
    return out


def _value_counts(values: np.ndarray, limit: int = 6) -> str:
    """`` (values: 2.0 × 5, 3.0 × 1)`` for a message; empty when there are none."""
    if not len(values):
        return ""
    uniq, counts = np.unique(values.astype(float), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:limit]
    more = f" and {len(uniq) - limit} more" if len(uniq) > limit else ""
    return " (values: " + ", ".join(f"{uniq[k]:g} × {counts[k]}" for k in order) + more + ")"


def nested_field(frame: pd.DataFrame, path: str, source: str = "data") -> pd.Series:
    """The values at a dotted ``path`` into nested JSON values, one per row (missing where a row lacks it).

    The longest leading part of ``path`` that is a column starts it (column names may hold dots); each further
    part is a field of a JSON object or, when it is an integer, an element of a JSON list (``score.ft.0``). Each
    level is expanded for all rows at once (``pd.DataFrame`` of the column's objects). Raises
    :class:`~pairkit.errors.InputError` naming the path, the level that is missing and the fields found there.
    """
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in frame.columns:
            break
    else:
        raise InputError(f"{source}: no column {path!r} (nor a column {parts[0]!r} to read the nested field from); "
                         f"columns are {list(frame.columns)}")
    values = frame[head]
    done = head
    for part in parts[cut:]:
        objects = [v if isinstance(v, (dict, list)) else {} for v in values.tolist()]
        level = pd.DataFrame(objects, index=values.index)
        key = int(part) if part.lstrip("-").isdigit() and part not in level.columns else part
        if key not in level.columns:
            kinds = {type(v).__name__ for v in values.dropna().tolist()} if len(values) else set()
            fields = [str(c) for c in level.columns][:12]
            raise InputError(
                f"{source}: no field {part!r} under {done!r} for the nested column {path!r}; "
                + (f"its fields are {fields}" if fields else
                   f"its values are not JSON objects or lists ({', '.join(sorted(kinds)) or 'empty'})")
            )
        values = level[key]
        done += "." + part
    return values.astype(object).where(values.notna(), None)


def read_records(path: str | Path, *, what: str = "data") -> list[dict]:
    """Rows of a JSON list, a JSONL file (``.gz`` allowed) or a Parquet file, as dictionaries: the one reader
    of record files (preference data for training, candidates for judging).

    Errors name the file and the row (line) and say what to fix: a missing file, a row that is not UTF-8 or not
    valid JSON, a row that is not an object, a file without rows. ``what`` names the file in them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file {str(path)!r} not found (it does not exist); check the path")
    if path.is_dir():
        raise InputError(f"{what} file {str(path)!r} is a directory; give a JSON, JSONL or Parquet file")
    name = path.name.lower()
    if name.endswith(".parquet"):
        rows = pd.read_parquet(path).to_dict(orient="records")
    else:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            raw = fh.read()
        lines = raw.splitlines()
        first = next((line.lstrip() for line in lines if line.strip()), b"").lstrip(b"\xef\xbb\xbf")
        if first.startswith(b"["):
            rows = _json_list(raw, path)
        else:
            rows = [_json_line(line, row_no, path) for row_no, line in enumerate(lines, start=1) if line.strip()]
    for row_no, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{path}, row {row_no}: expected a JSON object, got {type(row).__name__}")
    if not rows:
        raise InputError(f"{what} file {str(path)!r} holds no rows")
    return rows


def _decode(raw: bytes, row_no: int, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig" if row_no == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}, row {row_no}: not UTF-8 (byte 0x{raw[exc.start]:02x} at character {exc.start + 1}); "
            "save the file as UTF-8"
        ) from None


def _json_line(raw: bytes, row_no: int, path: Path):
    try:
        return json.loads(_decode(raw, row_no, path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, row {row_no} (line {row_no}): not valid JSON ({exc.msg}); write one object per "
                         "line") from None


def _json_list(raw: bytes, path: Path) -> list:
    try:
        return json.loads(_decode(raw, 1, path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None

