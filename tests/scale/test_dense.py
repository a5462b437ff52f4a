"""The grouping of ``pairkit count`` on Parquet dictionary codes (``pairkit.scale._dense``) against DuckDB's own
GROUP BY on the raw values, the rows path of the readers, and the same counting with the dense path turned off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("duckdb")

import pairkit.scale._dense as dense  # noqa: E402
from pairkit.errors import DroppedRowsWarning, InputError  # noqa: E402
from pairkit.scale import count_pairs, write_counts  # noqa: E402

# padded names trim to the same item; None, "" and "  " are missing names; unknown labels and self-comparisons
NAMES = np.array(["m0", "m1", " m1", "m2 ", "m3", "é4", None, "", "  "], dtype=object)
LABELS = np.array(["model_a", "model_b", "tie", " Tie ", "bogus", None], dtype=object)


def _frame(rows: int, seed: int, clean: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = NAMES[:6] if clean else NAMES
    labels = LABELS[:4] if clean else LABELS
    a = rng.integers(0, len(names), rows)
    b = rng.integers(0, len(names), rows)
    if clean:
        same = np.char.strip(names[a].astype(str)) == np.char.strip(names[b].astype(str))
        b = np.where(same, np.where(a == 0, 4, 0), b)
    winner = labels[rng.integers(0, len(labels), rows)]
    return pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": winner,
                         "judge": rng.choice(["j1", "j2", "j3"], rows), "first": rng.choice(["true", "0", "yes"], rows),
                         })


def _dataset(tmp_path, clean: bool = False):
    """Four files: plain string columns in small row groups (a dictionary per row group, in first-seen order), and
    one written from pyarrow dictionary arrays (one dictionary for every row group)."""
    root = tmp_path / "data"
    root.mkdir()
    for k in range(3):
        _frame(400, k, clean).to_parquet(root / f"part-{k}.parquet", row_group_size=100, index=False)
    table = pa.Table.from_pandas(_frame(300, 9, clean), preserve_index=False)
    table = table.set_column(0, "model_a", table["model_a"].dictionary_encode())
    table = table.set_column(2, "winner", table["winner"].dictionary_encode())
    pq.write_table(table, root / "part-3.parquet", row_group_size=128)
    return root


@pytest.fixture
def used(monkeypatch):
    """Whether the dense path counted (its result was not ``None``) in each call."""
    calls = []
    real = dense.dense_groups

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(dense, "dense_groups", spy)
    return calls


COLUMNS = dict(a="model_a", b="model_b", outcome="winner")


@pytest.mark.parametrize("extra", [{}, {"cluster": "judge", "a_first": "first"}])
def test_dense_counts_equal_duckdb_group_by_and_the_readers(tmp_path, monkeypatch, used, extra):
    root = _dataset(tmp_path)
    options = {**COLUMNS, **extra}
    with pytest.warns(DroppedRowsWarning) as dense_note:
        got = count_pairs(root, on_invalid="drop", **options)
    assert used == [True]
    with pytest.warns(DroppedRowsWarning) as memory_note:
        want = count_pairs(root, engine="memory", on_invalid="drop", **options)
    pd.testing.assert_frame_equal(got, want)
    monkeypatch.setattr(dense, "DENSE_CELLS", 0)  # DuckDB groups the rows itself
    with pytest.warns(DroppedRowsWarning) as sql_note:
        grouped = count_pairs(root, on_invalid="drop", **options)
    assert used == [True, False]
    pd.testing.assert_frame_equal(got, grouped)
    assert str(dense_note[0].message) == str(sql_note[0].message)
    dropped = sum(int(str(w.message).split("dropped ")[1].split()[0]) for w in memory_note)
    assert int(got["n"].sum()) == 1500 - dropped > 0


def test_dense_count_file_equals_the_sql_grouping(tmp_path, monkeypatch, used):
    root = _dataset(tmp_path, clean=True)
    first = write_counts(root, tmp_path / "dense.parquet", **COLUMNS)
    monkeypatch.setattr(dense, "DENSE_CELLS", 0)
    second = write_counts(root, tmp_path / "sql.parquet", **COLUMNS)
    assert used == [True, False] and first == second and first["comparisons"] == 1500
    got, want = pd.read_parquet(tmp_path / "dense.parquet"), pd.read_parquet(tmp_path / "sql.parquet")
    pd.testing.assert_frame_equal(got, want)


def test_dense_groups_are_duckdbs_groups(tmp_path):
    import duckdb

    root = _dataset(tmp_path)
    files = sorted(root.glob("*.parquet"))
    columns = ["model_a", "model_b", "winner"]
    groups, distinct = dense.dense_groups(files, columns)
    listing = ", ".join(f"'{f}'" for f in files)
    con = duckdb.connect()
    want = con.execute(f"SELECT model_a, model_b, winner, count(*) AS _n FROM read_parquet([{listing}]) GROUP BY ALL "
                       "ORDER BY ALL").fetchall()
    con.register("g", groups)
    assert con.execute("SELECT model_a, model_b, winner, _n FROM g ORDER BY ALL").fetchall() == want
    for column in columns:  # every value once, and no null
        con.register("v", distinct[column])
        values = [row[0] for row in con.execute(f"SELECT {column} FROM v").fetchall()]
        assert len(values) == len(set(values)) and None not in values
        assert set(values) >= {row[columns.index(column)] for row in want} - {None}


def test_dense_groups_decline_other_columns_and_too_many_cells(tmp_path):
    root = _dataset(tmp_path)
    files = sorted(root.glob("*.parquet"))
    assert dense.dense_groups(files, ["model_a", "model_b"], cells=7 * 7 - 1) is None  # 6 names + None per column
    assert dense.dense_groups(files, ["model_a", "model_b"], cells=10 * 10) is not None
    pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "winner": [1.0]}).to_parquet(tmp_path / "num.parquet")
    assert dense.dense_groups([tmp_path / "num.parquet"], ["model_a", "model_b", "winner"]) is None
    assert dense.dense_groups([files[0], tmp_path / "num.parquet"], ["model_a", "model_b", "judge"]) is None


def test_dense_bad_row_is_found_again_with_file_row_column_and_value(tmp_path, monkeypatch, used):
    # the groups say a label is unknown; the rescan finds the file, the readers the row
    root = _dataset(tmp_path, clean=True)
    frame = pd.read_parquet(root / "part-2.parquet")
    frame.loc[317, "winner"] = "bogus"
    frame.to_parquet(root / "part-2.parquet", row_group_size=100, index=False)
    with pytest.raises(InputError, match=r"part-2\.parquet, row 318, column 'winner'.*bogus") as by_dense:
        count_pairs(root, **COLUMNS)
    monkeypatch.setattr(dense, "DENSE_CELLS", 0)
    with pytest.raises(InputError) as by_sql:
        count_pairs(root, **COLUMNS)
    assert used == [True, False] and str(by_dense.value) == str(by_sql.value)


def test_memory_limit_leaves_room_for_the_process(tmp_path, monkeypatch):
    import duckdb

    import pairkit.scale._duckdb as engine

    assert engine.memory_bytes("1GB") == 10**9 and engine.memory_bytes(" 600 MiB") == 600 * 2**20
    assert engine.memory_bytes("80%") is None and engine.memory_bytes(None) is None
    seen, real = [], duckdb.connect

    def connect(*args, config=None, **kwargs):
        seen.append((config or {}).get("memory_limit"))
        return real(*args, config=config, **kwargs)

    monkeypatch.setattr(duckdb, "connect", connect)
    root = _dataset(tmp_path, clean=True)
    for limit in ("1GB", "300MB", "80%"):
        count_pairs(root, memory_limit=limit, **COLUMNS)
    assert seen == [f"{(10**9 - engine.PROCESS_MEMORY) // 2**20}MiB", f"{150 * 10**6 // 2**20}MiB", "80%"]


def test_read_ahead_raises_the_readers_error_and_stops_its_thread(tmp_path):
    import threading

    class Failing:
        num_row_groups = 1

        def iter_batches(self, **kwargs):
            yield "first"
            raise OSError("corrupt page")

    batches = dense._read_ahead([Failing()], ["x"], 10)
    assert next(batches) == "first"
    with pytest.raises(OSError, match="corrupt page"):
        next(batches)
    root = _dataset(tmp_path)
    files = sorted(root.glob("*.parquet"))
    assert dense.dense_groups(files, ["model_a", "model_b"], cells=10, batch_rows=50) is None  # stops early
    assert not [t for t in threading.enumerate() if t.name == "pairkit-parquet-read-ahead"]


def test_batches_are_read_one_row_group_at_a_time(tmp_path, monkeypatch):
    """Whole-file iteration lets pyarrow's pre-buffering hold every row group read so far (memory grows with the
    file); each request names one row group, and together they cover the file's rows once."""
    import pyarrow.parquet as pq

    root = _dataset(tmp_path)
    path = sorted(root.glob("*.parquet"))[0]
    asked = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("row_groups"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    reader = pq.ParquetFile(path)
    rows = sum(b.num_rows for b in dense._read_ahead([reader], ["model_a"], 7))
    assert rows == reader.metadata.num_rows
    assert asked == [[g] for g in range(reader.num_row_groups)]
