"""Pair counting with Ray Data: the files read as a stream of blocks whose rows carry their file and row number, each
block counted by the readers' rules (``map_batches``), the small partial count tables summed on the driver.

Ray Data's own readers (``read_parquet``, ``read_csv``, ``read_json``) give a row neither its number in its file
nor a parse identical to :func:`pairkit.read_comparisons`' (CSV cells as text, JSON values with their Python types,
nullable integers in Parquet), and the Poisson bootstrap weights are hashed from (file, row number). So the read is a
:class:`ray.data.Datasource` of our own (``ray.data.read_datasource``): one read task per piece of the input —
a run of whole row groups of a Parquet file (their first row known from the footer), a whole CSV, TSV or JSONL file
(streamed in chunks: a text file's rows can only be numbered by reading it from the start), a whole JSON document
(a JSON array cannot be streamed) — yielding blocks of at most :data:`BLOCK_ROWS` rows (:data:`TEXT_BLOCK_ROWS`
for text) as the readers parse them,
with two extra columns, the file's 1-based index and the row's 0-based number in it. ``map_batches`` turns each block
into partial counts (:func:`pairkit.read_comparisons` then :func:`pairkit.scale.comparisons_to_counts`, the
Poisson weights drawn from the rows' numbers), and the driver sums the partials as they stream in, re-summing
whenever the unsummed rows outgrow the running total: its memory is the count table's, not the rows'.

Invalid rows: a block with any is not counted when they must raise; it reports its file, and after the pass the
first such file (by index) is read again on the driver by the in-memory engine, which raises the readers' error
naming the file, row, column and value. The same happens for a file that cannot be read or parsed, that holds no
data row, or (``on_invalid="drop"``) whose rows are all invalid. Dropped rows are summed per file and reported in
one :class:`~pairkit.errors.DroppedRowsWarning` with the readers' per-problem counts.

On a cluster of several machines (``--ray-address``) the read tasks run anywhere: the files must be readable at
the same path on every node (a shared file system). Ray Data's remote-storage readers are not used (they cannot
number rows), so object-store URLs are not read.

Sums of non-integer weights are added in the order blocks arrive; they equal the other engines' exactly when the
weights are dyadic (integers, halves, quarters, …), else to rounding.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pairkit._optional import requires
from pairkit.errors import DroppedRowsWarning, InputError
from pairkit.scale._tables import file_kind

FILE, ROW, ERROR, META = "__pairkit_file", "__pairkit_row", "__pairkit_error", "__pairkit_meta"
"""Columns the read adds to a block (file index, row number, a read error) and the partials' report column."""

BLOCK_ROWS = 1 << 20
"""Rows of a Parquet block read and counted at once (text columns dictionary-encoded: a few bytes per cell). With
many pairs a block's partial counts are nearly as many rows as the block: larger blocks mean fewer partial rows."""

TEXT_BLOCK_ROWS = 1 << 17
"""Rows of a CSV, TSV, JSON or JSONL block (a Python string per cell: a few tens of MB)."""

PIECE_ROWS = 1 << 21
"""Rows of whole Parquet row groups read by one task (a file's row groups are split into pieces of about this)."""

MERGE_ROWS = 1 << 20
"""Partial count rows kept unsummed on the driver before they are summed (or twice the running total's rows)."""


# ---------------------------------------------------------------------------------------------- reading
def pieces(files: list[Path], piece_rows: int) -> list[tuple]:
    """The read tasks' pieces ``(file_index, path, kind, first_row, row_groups)``: Parquet files cut into runs of
    whole row groups of about ``piece_rows`` rows (``first_row`` the run's first row in the file), other files
    whole (``row_groups`` None)."""
    out = []
    for index, path in enumerate(files, 1):
        kind = file_kind(path)
        if kind != "parquet":
            out.append((index, str(path), kind, 0, None))
            continue
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(path)
        except Exception:  # unreadable: the task reports it, the in-memory reader names the problem
            out.append((index, str(path), kind, 0, None))
            continue
        start = rows = 0
        groups: list[int] = []
        for g in range(meta.num_row_groups):
            if groups and rows + meta.row_group(g).num_rows > piece_rows:
                out.append((index, str(path), kind, start, groups))
                start, rows, groups = start + rows, 0, []
            groups.append(g)
            rows += meta.row_group(g).num_rows
        out.append((index, str(path), kind, start, groups))
    return out


def read_piece(piece: tuple, columns: list[str] | None, block_rows: int):
    """Blocks (pandas) of one piece as :func:`pairkit.data.read_table` parses its file, each with the columns
    :data:`FILE` and :data:`ROW`; a failure to read or parse ends the piece with a one-row block naming it in
    :data:`ERROR` (the driver then lets the in-memory reader raise its own message)."""
    index, path, kind, first, groups = piece
    row = first
    try:
        for frame in _frames(Path(path), kind, groups, columns, block_rows):
            frame = frame.reset_index(drop=True)
            frame[FILE] = np.int64(index)
            frame[ROW] = np.arange(row, row + len(frame), dtype=np.int64)
            row += len(frame)
            yield frame
    except Exception as exc:  # noqa: BLE001 - reported with the file, re-read on the driver
        yield pd.DataFrame({FILE: [np.int64(index)], ROW: [np.int64(-1)], ERROR: [f"{type(exc).__name__}: {exc}"]})


def _frames(path: Path, kind: str, groups, columns, block_rows: int):
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        if columns is not None and not set(columns) <= set(schema.names):
            columns = None  # dotted paths into nested columns, or a missing column: read all, the reader says
        if columns is not None:
            text = [c for c in text if c in columns]
        handle = pq.ParquetFile(path, read_dictionary=text or None)
        for batch in handle.iter_batches(batch_size=block_rows, row_groups=groups, columns=columns):
            yield batch.to_pandas(types_mapper=_nullable_ints)
    elif kind in ("csv", "tsv"):
        yield from pd.read_csv(path, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False,
                               na_values=[""], chunksize=block_rows)
    elif kind == "jsonl":
        yield from _jsonl_frames(path, columns, block_rows)
    else:  # a JSON document: read whole (an array cannot be streamed), then cut into blocks
        from pairkit.data.readers import read_table

        frame = read_table(path)[0]
        for lo in range(0, len(frame), block_rows):
            yield frame.iloc[lo : lo + block_rows]


def _nullable_ints(dtype):
    """Integer columns as nullable integers, as the readers read Parquet (a null must not turn 7 into 7.0)."""
    import pyarrow as pa

    if pa.types.is_integer(dtype):
        return pd.UInt64Dtype() if pa.types.is_uint64(dtype) else pd.Int64Dtype()
    return None


def _jsonl_frames(path: Path, columns, block_rows: int):
    """JSONL records in blocks of ``block_rows`` non-blank lines, as object columns; a named column missing from
    a block (present in other records of the file) is a column of missing values there, as in the file read whole.
    Any line the readers would refuse raises (the driver re-reads the file to name it)."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    named = [c for c in (columns or []) if "." not in c]
    seen: set[str] = set()
    shape = None
    with opener(path, "rb") as handle:
        lines: list[str] = []
        for number, raw in enumerate(handle):
            line = raw.decode("utf-8-sig" if number == 0 else "utf-8")
            if line.strip():
                lines.append(line)
            if len(lines) == block_rows:
                frame, shape = _records(lines, shape)
                seen.update(frame.columns)
                yield frame.reindex(columns=list(frame.columns) + [c for c in named if c not in frame.columns])
                lines = []
        if lines:
            frame, shape = _records(lines, shape)
            seen.update(frame.columns)
            yield frame.reindex(columns=list(frame.columns) + [c for c in named if c not in frame.columns])
    if shape is dict and not set(named) <= seen:
        raise InputError(f"no column {sorted(set(named) - seen)[0]!r}")


def _records(lines: list[str], shape):
    records = json.loads("[" + ",".join(lines) + "]")
    if len(records) != len(lines):
        raise InputError("more than one JSON value on a line")
    shape = shape or (dict if isinstance(records[0], dict) else list)
    if not all(isinstance(r, shape) for r in records) or shape is list and not isinstance(records[0], list):
        raise InputError("records of different shapes")
    frame = pd.DataFrame(records, dtype=object)
    frame.columns = [str(c) for c in frame.columns]
    return frame, shape


# ---------------------------------------------------------------------------------------------- counting a block
def count_block(frame: pd.DataFrame, options: dict, bootstrap: int, seed: int, strict: bool,
                template: pd.DataFrame) -> pd.DataFrame:
    """Partial counts of a block (``map_batches``), each file's rows counted with its index and row numbers, and
    one report row per file (:data:`META`: ``[file, rows, dropped, notes, problem]`` as JSON text). ``strict``: a
    file's part with invalid rows is not counted, only reported. ``template``: an empty count table of the output's
    columns and types (a report row copies them, so every block has one schema)."""
    from pairkit.data.readers import read_comparisons
    from pairkit.scale.counts import comparisons_to_counts

    outputs, reports = [], []
    files = frame[FILE].to_numpy()
    for index in np.unique(files):
        part = frame if files[0] == files[-1] == index else frame[files == index]
        problem, rows, dropped, notes = None, len(part), 0, []
        if ERROR in part.columns and part[ERROR].notna().any():
            reports.append((int(index), 0, 0, [], str(part[ERROR].dropna().iloc[0])))
            continue
        numbers = part[ROW].to_numpy()
        data = part.drop(columns=[FILE, ROW])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DroppedRowsWarning)
            try:
                comps = read_comparisons(data, on_invalid="drop", **options)
            except InputError as exc:
                every = re.search(r": every row is invalid \((.*)\)$", str(exc))
                comps, dropped = None, rows
                if every is None:
                    problem = str(exc)
                else:
                    notes = [every.group(1)]
        if comps is not None:
            dropped = comps.n_dropped
            notes = [str(w.message).split(" rows: ", 1)[-1] for w in caught
                     if issubclass(w.category, DroppedRowsWarning)]
        if comps is not None and not (strict and dropped):
            kept = comps._cache.get("rows_kept")
            try:
                outputs.append(comparisons_to_counts(
                    comps, cluster=options.get("cluster") is not None, a_first=options.get("a_first") is not None,
                    bootstrap=bootstrap, seed=seed, file_index=int(index),
                    rows=numbers if kept is None else numbers[kept]))
            except InputError as exc:
                problem = str(exc)
        reports.append((int(index), rows, dropped, notes, problem))
    report = pd.concat([template.iloc[:0]] + [_report_row(template)] * len(reports), ignore_index=True)
    out = pd.concat(outputs + [report], ignore_index=True)[list(template.columns)]
    meta = np.full(len(out), None, dtype=object)  # text or None: an Arrow string column with nulls
    meta[len(out) - len(reports):] = [json.dumps(r) for r in reports]
    out[META] = meta
    return out


def _report_row(template: pd.DataFrame) -> pd.DataFrame:
    row = {c: ("" if template[c].dtype == object else template[c].dtype.type(0)) for c in template.columns}
    return pd.DataFrame({c: pd.Series([v], dtype=template[c].dtype) for c, v in row.items()})


def _template(options: dict, bootstrap: int) -> pd.DataFrame:
    """An empty count table with the columns and types :func:`pairkit.scale.comparisons_to_counts` gives."""
    columns: dict[str, str] = {}
    if bootstrap:
        columns["replicate"] = "int64"
    if options.get("cluster") is not None:
        columns["cluster"] = "object"
    if options.get("a_first") is not None:
        columns["a_first"] = "bool"
    columns.update(a="object", b="object", a_wins="float64", b_wins="float64", ties="float64", n="int64")
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in columns.items()})


# ---------------------------------------------------------------------------------------------- the engine
def count_with_ray(files: list[Path], options: dict, *, on_invalid: str, address: str | None = None,
                   bootstrap: int = 0, seed: int = 0) -> pd.DataFrame:
    """The count table of ``files`` with Ray Data (see the module's description); joins the cluster at
    ``address`` (or an already initialised one), else starts a local cluster for the call and stops it afterwards.
    ``bootstrap``/``seed``: Poisson replicates drawn in the same pass, the weights hashed from each row's file index
    and number in it (:func:`pairkit.scale.poisson_weights`), so the table equals DuckDB's and the in-memory
    engine's."""
    with requires("ray", "--engine ray"):
        import ray
        import ray.data
    from pairkit.data.readers import check_csv_header

    for path in files:  # the readers' file rule that a block cannot see: a repeated CSV header name
        if file_kind(path) in ("csv", "tsv"):
            check_csv_header(path, "\t" if file_kind(path) == "tsv" else ",", str(path))
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    quiet = [k for k in ("enable_progress_bars", "print_on_execution_start") if hasattr(context, k)]
    saved = {k: getattr(context, k) for k in quiet}
    for k in quiet:
        setattr(context, k, False)
    try:
        template = _template(options, bootstrap)
        cut = pieces(files, PIECE_ROWS)
        # one read task per piece, its blocks not split further (a split block is a task of its own)
        source = _datasource(ray)(cut, _columns(options), (BLOCK_ROWS, TEXT_BLOCK_ROWS))
        try:
            rows = ray.data.read_datasource(source, override_num_blocks=len(cut))
        except TypeError:  # older Ray versions name it parallelism
            rows = ray.data.read_datasource(source, parallelism=len(cut))
        dataset = rows.map_batches(
            partial(count_block, options=options, bootstrap=bootstrap, seed=seed, strict=on_invalid == "raise",
                    template=template), batch_size=None, batch_format="pandas")
        total, reports = _sum_stream(dataset.iter_batches(batch_size=None, batch_format="pyarrow"), template)
    finally:
        for k, value in saved.items():
            setattr(context, k, value)
        if started:
            ray.shutdown()
    return _finish(files, options, on_invalid, bootstrap, seed, total, reports)


def _columns(options: dict) -> list[str] | None:
    """The input columns the counting reads (a Parquet read projects them), or None for all (auto-detection)."""
    spec = [options.get(k) for k in ("winner", "loser", "a", "b", "outcome", "score_a", "score_b")]
    if all(c is None for c in spec):
        return None
    a_first = options.get("a_first")
    extra = [options.get("weight"), options.get("cluster"), a_first if isinstance(a_first, str) else None]
    return list(dict.fromkeys(c for c in spec + extra if c is not None))


def _datasource(ray):
    """The :class:`ray.data.Datasource` reading :func:`pieces` with :func:`read_piece` (defined on first use:
    ray is an optional dependency)."""
    global _PIECES
    if _PIECES is None:
        metadata = ray.data.block.BlockMetadata  # ray.data, imported by the caller, holds it

        class PairRows(ray.data.Datasource):
            """Comparison rows with their file index and row number, a read task per :func:`pieces` piece."""

            def __init__(self, cut: list[tuple], columns: list[str] | None, block_rows: tuple[int, int]):
                super().__init__()
                self.cut, self.columns, self.block_rows = cut, columns, block_rows

            def estimate_inmemory_data_size(self):
                return None

            def get_read_tasks(self, parallelism: int, *args, **kwargs):
                return [ray.data.ReadTask(partial(read_piece, piece, self.columns,
                                                  self.block_rows[piece[2] != "parquet"]),
                                          _metadata(metadata, piece[1])) for piece in self.cut]

        _PIECES = PairRows
    return _PIECES


_PIECES = None


def _metadata(kind, path: str):
    """A read task's metadata: nothing known before reading but its file (older Ray versions also ask for a schema)."""
    try:
        return kind(num_rows=None, size_bytes=None, input_files=[path], exec_stats=None)
    except TypeError:
        return kind(num_rows=None, size_bytes=None, schema=None, input_files=[path], exec_stats=None)


def _sum_stream(blocks, template: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple]]:
    """Sum the partial count tables (Arrow) as they arrive, re-summed whenever the unsummed rows pass
    :data:`MERGE_ROWS` or twice the running total's (Arrow's hash aggregate: no Python string per row), and collect
    the blocks' reports."""
    import pyarrow.compute as pc

    keys = [c for c in template.columns if c not in VALUES]
    tables, pending, merged, reports = [], 0, 0, []
    for table in blocks:
        report = pc.is_valid(table[META])
        reports += [json.loads(r) for r in table.filter(report)[META].to_pylist()]
        part = table.filter(pc.invert(report)).drop_columns([META])
        if part.num_rows:
            tables.append(part)
            pending += part.num_rows
        if pending > max(MERGE_ROWS, 2 * merged):
            tables = [_sum(tables, keys)]
            merged = pending = tables[0].num_rows
    if not tables:
        return template, reports
    # the count tables' order (keys, then a, b; text by code point, as pandas sorts it), sorted by Arrow
    total = _sum(tables, keys).sort_by([(k, "ascending") for k in keys]).to_pandas()
    return total.astype({c: str if template[c].dtype == object else template[c].dtype for c in total.columns}), reports


VALUES = ("a_wins", "b_wins", "ties", "n")


def _sum(tables: list, keys: list[str]):
    import pyarrow as pa

    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    summed = table.group_by(keys, use_threads=False).aggregate([(c, "sum") for c in VALUES])
    return summed.rename_columns([c.removesuffix("_sum") if c.endswith("_sum") else c
                                  for c in summed.column_names]).select([*keys, *VALUES])


def _finish(files, options, on_invalid, bootstrap, seed, total, reports) -> pd.DataFrame:
    """Raise or warn as the in-memory engine does (re-reading the first file with a problem), then the table."""
    from pairkit.scale.counts import count_file

    rows, dropped = defaultdict(int), defaultdict(int)
    notes: dict[int, list[str]] = defaultdict(list)
    problems: dict[int, str] = {}
    for index, n, d, note, problem in reports:
        rows[index] += n
        dropped[index] += d
        notes[index] += note
        if problem is not None:
            problems.setdefault(index, problem)
    bad = [k for k in range(1, len(files) + 1)
           if k in problems or rows[k] == 0 or dropped[k] == rows[k] or (on_invalid == "raise" and dropped[k])]
    if bad:
        k = bad[0]
        count_file(files[k - 1], options, on_invalid, k, bootstrap, seed)  # raises the readers' own message
        if k in problems:
            raise InputError(f"{files[k - 1]}: {problems[k]}")
    if sum(dropped.values()):
        per_file = "; ".join(f"{files[k - 1]}: dropped {dropped[k]} of {rows[k]} rows: {_summary(notes[k])}"
                             for k in sorted(dropped) if dropped[k])
        warnings.warn(f"dropped {sum(dropped.values())} invalid rows in all ({per_file})", DroppedRowsWarning,
                      stacklevel=4)
    return total


def _summary(notes: list[str]) -> str:
    """The readers' per-problem counts (``3 × missing outcome (column 'w')``) summed over a file's blocks."""
    counts: dict[str, int] = {}
    for note in notes:
        depth, start, items = 0, 0, []
        for k, ch in enumerate(note):  # "; " between problems, not inside their parentheses
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and note.startswith("; ", k):
                items.append(note[start:k])
                start = k + 2
        for item in items + [note[start:]]:
            number, _, what = item.partition(" × ")
            if number.isdigit():
                counts[what] = counts.get(what, 0) + int(number)
    return "; ".join(f"{n} × {what}" for what, n in counts.items())
