"""Out-of-core pair counts: DuckDB = in-memory counts (Ray: test_ray.py), count files round-trip, fits from counts
= rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairkit.data import read_comparisons
from pairkit.errors import DroppedRowsWarning, InputError
from pairkit.rating import fit_bradley_terry
from pairkit.scale import comparisons_to_counts, count_pairs, counts_to_comparisons, load_any

pytest.importorskip("duckdb")

LABELS = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)


def _frame(rows: int, seed: int = 0, items: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = np.array([f"m{k}" for k in range(items)], dtype=object)
    a = rng.integers(0, items, rows)
    b = (a + rng.integers(1, items, rows)) % items
    return pd.DataFrame({
        "model_a": names[a], "model_b": names[b], "winner": LABELS[rng.integers(0, 4, rows)],
        "w": rng.integers(0, 9, rows) / 4,  # quarters: sums are exact in floating point whatever the order
        "judge": rng.integers(0, 5, rows).astype(str), "first": rng.random(rows) < 0.5,
    })


def _write_parts(frame: pd.DataFrame, root, parts: int, kind: str = "parquet"):
    root.mkdir()
    for k, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[chunk]
        if kind == "parquet":
            part.to_parquet(root / f"part-{k}.parquet")
        else:
            part.to_csv(root / f"part-{k}.csv", index=False)
    return root


COLUMNS = dict(a="model_a", b="model_b", outcome="winner", weight="w", cluster="judge", a_first="first")


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_duckdb_counts_equal_in_memory_counts(tmp_path, kind):
    frame = _frame(3000)
    root = _write_parts(frame, tmp_path / "data", 3, kind)
    got = count_pairs(root, engine="duckdb", **COLUMNS)
    want = count_pairs(root, engine="memory", **COLUMNS)
    pd.testing.assert_frame_equal(got, want)
    # and against the counts of the whole frame read at once
    whole = comparisons_to_counts(read_comparisons(frame, **COLUMNS), cluster=True, a_first=True)
    pd.testing.assert_frame_equal(got, whole)


def test_counts_grouped_a_piece_at_a_time_equal_in_memory_counts(tmp_path, monkeypatch):
    # large inputs are grouped a few row groups at a time (file_row_number ranges of a large file, small files
    # together) and the partial groups summed; tiny pieces here exercise every way a piece can be cut
    import pairkit.scale._duckdb as engine

    frame = _frame(1500, seed=4)
    root = tmp_path / "data"
    root.mkdir()
    for k, (lo, hi) in enumerate([(0, 900), (900, 1000), (1000, 1050), (1050, 1500)]):
        frame.iloc[lo:hi].to_parquet(root / f"part-{k}.parquet", row_group_size=128)
    monkeypatch.setattr(engine, "CHUNK_ROWS", 300)
    from pairkit.scale import expand_paths

    sources = engine._parquet_chunks(expand_paths(root), "")
    assert len(sources) >= 5 and any("file_row_number >=" in s for s in sources)
    assert any(s.count(".parquet'") >= 2 for s in sources)  # small files read together in one piece
    got = count_pairs(root, **COLUMNS)
    whole = comparisons_to_counts(read_comparisons(frame, **COLUMNS), cluster=True, a_first=True)
    pd.testing.assert_frame_equal(got, whole)
    out = tmp_path / "c.parquet"
    from pairkit.scale import write_counts

    assert write_counts(root, out, **COLUMNS)["comparisons"] == 1500
    pd.testing.assert_frame_equal(pd.read_parquet(out), whole, check_dtype=False)
    plain = dict(a="model_a", b="model_b", outcome="winner")
    comps = read_comparisons(frame, **plain)
    counted = counts_to_comparisons(count_pairs(root, **plain)).pair_counts(ties="separate")
    for name in ("i", "j", "wins_i", "wins_j", "ties"):
        np.testing.assert_array_equal(getattr(counted, name), getattr(comps.pair_counts(ties="separate"), name))


def test_counts_are_the_pair_counts(tmp_path):
    frame = _frame(2000, seed=1)
    root = _write_parts(frame, tmp_path / "data", 2)
    comps = read_comparisons(frame, a="model_a", b="model_b", outcome="winner", weight="w")
    counted = counts_to_comparisons(count_pairs(root, a="model_a", b="model_b", outcome="winner", weight="w"))
    assert counted.items == comps.items
    for ties in ("half", "separate"):
        x, y = comps.pair_counts(ties=ties), counted.pair_counts(ties=ties)
        np.testing.assert_array_equal(x.i, y.i)
        np.testing.assert_array_equal(x.j, y.j)
        for name in ("wins_i", "wins_j", "ties"):
            np.testing.assert_allclose(getattr(x, name), getattr(y, name), rtol=0, atol=1e-12)


def test_rank_on_counts_equals_rank_on_rows(tmp_path):
    frame = _frame(4000, seed=2)
    root = _write_parts(frame, tmp_path / "data", 4)
    rows = read_comparisons(frame, a="model_a", b="model_b", outcome="winner", cluster="judge")
    counts = count_pairs(root, a="model_a", b="model_b", outcome="winner", cluster="judge")
    counted = counts_to_comparisons(counts)
    for kwargs in ({"intervals": "fisher"}, {"intervals": "sandwich"}, {"ties": "davidson", "prior": 1.0}):
        x, y = fit_bradley_terry(rows, **kwargs), fit_bradley_terry(counted, **kwargs)
        np.testing.assert_allclose(x.log_strength, y.log_strength, atol=1e-10)
        np.testing.assert_allclose(x.se, y.se, atol=1e-10)
        assert x.log_likelihood == pytest.approx(y.log_likelihood, abs=1e-8)


def test_merged_count_files_equal_counts_of_all_rows(tmp_path):
    frame = _frame(3000, seed=3)
    first, second = frame.iloc[:1700], frame.iloc[1700:]
    first.to_parquet(tmp_path / "x.parquet")
    second.to_csv(tmp_path / "y.csv", index=False)
    opts = dict(a="model_a", b="model_b", outcome="winner", weight="w", cluster="judge")
    count_pairs(tmp_path / "x.parquet", **opts).to_parquet(tmp_path / "cx.parquet")
    count_pairs(tmp_path / "y.csv", **opts).to_csv(tmp_path / "cy.csv", index=False)
    merged = count_pairs([tmp_path / "cx.parquet", tmp_path / "cy.csv"])
    whole = comparisons_to_counts(read_comparisons(frame, **opts), cluster=True)
    pd.testing.assert_frame_equal(merged, whole)


def test_bad_row_in_a_partitioned_dataset_names_file_and_row(tmp_path):
    frame = _frame(300, seed=4)
    frame.loc[250, "winner"] = "bogus"
    root = _write_parts(frame, tmp_path / "data", 3, "csv")
    with pytest.raises(InputError, match=r"part-2\.csv, row 52, column 'winner'.*bogus"):
        count_pairs(root, a="model_a", b="model_b", outcome="winner")
    with pytest.warns(DroppedRowsWarning, match="dropped 1 invalid rows"):
        counts = count_pairs(root, a="model_a", b="model_b", outcome="winner", on_invalid="drop")
    assert counts["n"].sum() == 299


def test_partial_outcomes_cannot_be_counted(tmp_path):
    pd.DataFrame({"a": ["x", "y"], "b": ["y", "z"], "outcome": [0.7, 1.0]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(InputError, match="other than 0, 1/2 or 1"):
        count_pairs(tmp_path / "p.parquet")
    with pytest.raises(InputError, match="neither a win"):
        count_pairs(tmp_path / "p.parquet", engine="memory")


def test_load_any_reads_a_single_rows_file_directly(tmp_path):
    frame = _frame(200, seed=5)
    frame.to_parquet(tmp_path / "one.parquet")
    comps = load_any(tmp_path / "one.parquet", a="model_a", b="model_b", outcome="winner")
    assert len(comps) == 200 and "rows_counted" not in comps._cache


# One case per rule of the readers that the SQL path once lacked: both paths refuse the file with the same words
# (file, row, column, value), and with on_invalid="drop" both keep the same rows.
RULE_CASES = {
    "duplicate header": ("x.csv", "winner,loser,winner\na,b,c\nb,c,d\n", "appears twice"),
    "infinite score": ("x.csv", "home_team,away_team,home_score,away_score\na,b,1,2\nb,c,2,inf\nc,a,0,0\n",
                       "score must be finite"),
    "nested object": ("x.jsonl", '{"winner": "a", "loser": "b"}\n{"winner": {"x": 1}, "loser": "b"}\n'
                      '{"winner": "c", "loser": "a"}\n', "JSON object or array is not an item name"),
    "nested array label": ("x.jsonl", '{"a": "x", "b": "y", "outcome": "tie"}\n{"a": "y", "b": "z", "outcome": [1]}\n'
                           '{"a": "z", "b": "x", "outcome": 1}\n', "JSON object or array is not an outcome"),
}


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_sql_path_checks_the_readers_rules_with_their_words(tmp_path, case):
    name, text, words = RULE_CASES[case]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=words) as by_reader:
        read_comparisons(path)
    with pytest.raises(InputError, match=words) as by_sql:
        count_pairs(path)
    assert str(by_sql.value) == str(by_reader.value)
    if case != "duplicate header":  # a file rule: nothing to drop
        with pytest.warns(DroppedRowsWarning):
            rows = read_comparisons(path, on_invalid="drop")
        with pytest.warns(DroppedRowsWarning):
            counts = count_pairs(path, on_invalid="drop")
        assert int(counts["n"].sum()) == len(rows) == 2


def test_every_reader_rule_has_its_sql():
    from pairkit.data.readers import ROW_RULES
    from pairkit.scale._duckdb import CHECKED_AS, SQL_RULES

    assert set(ROW_RULES) <= set(SQL_RULES) | set(CHECKED_AS)
    assert set(CHECKED_AS.values()) <= set(SQL_RULES)


def test_mixed_json_values_are_names_not_json_text(tmp_path):
    """A JSON column holding strings and numbers has DuckDB's JSON type: its strings lose their quotes."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"winner": "a", "loser": "b"}\n{"winner": 7, "loser": "b"}\n')
    counts = count_pairs(path)
    assert sorted(set(counts["a"]) | set(counts["b"])) == ["7", "a", "b"]


def test_nested_json_paths_count_as_the_flattened_file(tmp_path):
    """Dotted paths into nested JSONL values (struct fields, a list element) on the DuckDB path give the counts of
    the same rows flattened, and the in-memory engine's (the readers' nested_field)."""
    import json

    frame = _frame(400, seed=5)
    nested = [{"meta": {"model_a": r.model_a, "model_b": r.model_b, "judge": {"id": r.judge}},
               "result": {"winner": r.winner}, "w": [r.w, 0]} for r in frame.itertuples()]
    (tmp_path / "nested.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nested))
    frame.drop(columns="first").to_json(tmp_path / "flat.jsonl", orient="records", lines=True)
    paths = dict(a="meta.model_a", b="meta.model_b", outcome="result.winner", weight="w.0", cluster="meta.judge.id")
    flat = count_pairs(tmp_path / "flat.jsonl", a="model_a", b="model_b", outcome="winner", weight="w",
                       cluster="judge")
    pd.testing.assert_frame_equal(count_pairs(tmp_path / "nested.jsonl", **paths), flat)
    pd.testing.assert_frame_equal(count_pairs(tmp_path / "nested.jsonl", engine="memory", **paths), flat,
                                  check_dtype=False)
    with pytest.raises(InputError, match="no field 'model_x' under 'meta'.*fields are"):
        count_pairs(tmp_path / "nested.jsonl", **{**paths, "a": "meta.model_x"})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_duckdb_writes_the_count_file_itself(tmp_path, suffix):
    """write_counts with DuckDB (COPY … TO, no table in Python) writes the table count_pairs returns."""
    from pairkit.scale import write_counts

    root = _write_parts(_frame(2000, seed=9), tmp_path / "data", 3)
    out = tmp_path / f"counts{suffix}"
    done = write_counts(root, out, **COLUMNS, memory_limit="200MB")
    expected = count_pairs(root, **COLUMNS)
    got = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, dtype={"cluster": str})
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert done == {"pairs": len(expected), "items": 12, "comparisons": 2000}
