"""The grouping step of ``pairkit count`` on Parquet string columns, counted on dictionary codes (private).

Parquet stores string columns as a dictionary per column chunk plus integer codes; pyarrow hands those codes
over without building a string per row (``read_dictionary``). Mapped to codes shared by all files (a small
lookup per chunk dictionary), a batch's combinations of the grouped columns are one integer each
(``numpy.ravel_multi_index``) and are counted with ``numpy.bincount`` into a dense array over every
combination of the distinct values seen: no hashing of strings per row. The nonzero cells are what DuckDB's
``SELECT cols, count(*) … GROUP BY ALL`` on the raw values returns; :mod:`pairkit.scale._duckdb` then checks
the readers' rules once per combination, as it does after its own GROUP BY.

The dense array has one cell per combination of distinct values (items × items × outcome labels: 3·10⁶ at 1,000
items and three labels), so this is used only while that product stays within :data:`DENSE_CELLS`; beyond
(many items, clusters, numeric or non-string columns, weights) DuckDB groups the rows itself.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from pathlib import Path

import numpy as np

__all__ = ["DENSE_CELLS", "dense_groups"]

DENSE_CELLS = 1 << 24
"""Largest dense array of counts (cells; 8 bytes each, and one more such array per batch while counting)."""

BATCH_ROWS = 1 << 20


def _string_like(kind) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def dense_groups(files: list[Path], columns: list[str], *, cells: int | None = None, batch_rows: int = BATCH_ROWS):
    """A pyarrow table of ``columns`` (raw strings, dictionary-encoded) and ``_n``: one row per combination of
    values found in the Parquet ``files`` with its row count (nulls are values too), and per column a table of
    its distinct non-null values (a superset of those found: a chunk dictionary may hold unused values); or
    ``None`` when the files do not allow it (a column missing or not of a string type) or the combinations
    outgrow ``cells`` (default :data:`DENSE_CELLS`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = DENSE_CELLS if cells is None else cells
    readers = []
    for path in files:
        schema = pq.read_schema(path)
        if any(schema.get_field_index(c) < 0 or not _string_like(schema.field(c).type) for c in columns):
            return None
        readers.append(pq.ParquetFile(path, read_dictionary=columns))
    lookups: list[dict] = [{} for _ in columns]  # value → shared code, per column
    last: list[tuple] = [(None, None)] * len(columns)  # the previous chunk dictionary and its codes, per column
    dims: tuple[int, ...] = (0,) * len(columns)
    total = np.zeros(0, dtype=np.int64)
    rows = 0
    with contextlib.closing(_read_ahead(readers, columns, batch_rows)) as batches:
        for batch in batches:
            codes = []
            for j in range(len(columns)):
                array = batch.column(j)
                if not pa.types.is_dictionary(array.type):
                    array = array.dictionary_encode()
                dictionary = array.dictionary
                previous, shared = last[j]
                if previous is None or not dictionary.equals(previous):
                    lookup = lookups[j]
                    shared = np.fromiter((lookup.setdefault(v, len(lookup)) for v in [*dictionary.to_pylist(), None]),
                                         dtype=np.int64, count=len(dictionary) + 1)
                    if (shared == np.arange(len(shared))).all():
                        shared = None  # the chunk's codes are the shared ones (files written from one dictionary)
                    last[j] = (dictionary, shared)
                local = _codes(array.indices, len(dictionary))
                codes.append(local if shared is None else shared[local])
            grown = tuple(len(lookup) for lookup in lookups)
            size = math.prod(grown)
            if size > cells:
                return None
            if grown != dims:
                wider = np.zeros(grown, dtype=np.int64)
                if total.size:
                    wider[tuple(slice(0, d) for d in dims)] = total.reshape(dims)
                total, dims = wider.reshape(-1), grown
            total += np.bincount(np.ravel_multi_index(codes, dims), minlength=size)
            rows += batch.num_rows
    if rows == 0:
        return None
    found = np.flatnonzero(total)
    where = np.unravel_index(found, dims)
    table, distinct = {}, {}
    for j, column in enumerate(columns):
        values = list(lookups[j])
        null = lookups[j][None]
        distinct[column] = pa.table({column: _arrow_strings(values[:null] + values[null + 1 :])})
        values[null] = ""  # a null is a null code, not a value
        codes = where[j].astype(np.int32)
        table[column] = pa.DictionaryArray.from_arrays(_arrow_ints(codes, codes != null), _arrow_strings(values))
    table["_n"] = _arrow_ints(total[found])
    return pa.table(table), distinct


def _read_ahead(readers, columns: list[str], batch_rows: int):
    """The files' batches, decoded by pyarrow in a thread one or two batches ahead of the counting (which runs in
    numpy meanwhile); an error in the thread is raised here, and closing the generator stops the thread."""
    ahead: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for reader in readers:
                # One row group at a time: iterating a whole file lets pyarrow's pre-buffering keep every row
                # group read so far (795 MB held at the end of a 3×10⁸-row file; 14 MB this way).
                for group in range(reader.num_row_groups):
                    for batch in reader.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns,
                                                     use_threads=True):  # fmt: skip
                        if not put((batch, None)):
                            return
        except Exception as exc:  # raised in the counting thread
            put((None, exc))
            return
        put((None, None))

    thread = threading.Thread(target=produce, name="pairkit-parquet-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ahead.get()
            if error is not None:
                raise error
            if batch is None:
                return
            yield batch
    finally:
        stop.set()
        thread.join()


# pyarrow's own conversions (``to_numpy``, ``pa.array``) import pandas (~0.5 s); these read and build buffers directly.
def _codes(indices, null_code: int) -> np.ndarray:
    """The integer ``indices`` of a dictionary array as numpy, nulls as ``null_code``."""
    import pyarrow as pa

    kind = np.dtype(f"{'i' if pa.types.is_signed_integer(indices.type) else 'u'}{indices.type.bit_width // 8}")
    validity, data = indices.buffers()[:2]
    values = np.frombuffer(data, dtype=kind, count=len(indices), offset=indices.offset * kind.itemsize)
    if not indices.null_count:
        return values
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return np.where(bits[indices.offset : indices.offset + len(indices)].astype(bool), values, null_code)


def _arrow_ints(values: np.ndarray, valid: np.ndarray | None = None):
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    kind = {np.dtype(np.int32): pa.int32(), np.dtype(np.int64): pa.int64()}[values.dtype]
    mask = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = 0 if mask is None else int(len(valid) - valid.sum())
    return pa.Array.from_buffers(kind, len(values), [mask, pa.py_buffer(values)], null_count=nulls)


def _arrow_strings(values: list[str]):
    import pyarrow as pa

    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
