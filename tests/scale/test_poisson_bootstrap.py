"""Poisson-bootstrap replicates drawn in the DuckDB counting pass (``pairkit count --bootstrap``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.errors import InputError
from pairkit.scale import count_pairs
from pairkit.scale._poisson import poisson_weights

duckdb = pytest.importorskip("duckdb")
runner = CliRunner()
OUTCOME = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


def _files(tmp_path, sizes=(300, 250), n_items=6, seed=0, ties=True, row_group=64):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = np.array([f"m{i}" for i in range(n_items)])
    strength = np.linspace(-1, 1, n_items)
    paths = []
    for k, m in enumerate(sizes):
        a = rng.integers(0, n_items, m)
        b = (a + rng.integers(1, n_items, m)) % n_items
        p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
        u = rng.random(m)
        o = np.where(u < p, "model_a", "model_b")
        if ties:
            o = np.where(rng.random(m) < 0.15, "tie", o)
        frame = pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": o,
                              "w": rng.integers(1, 4, m).astype(float)})
        path = tmp_path / f"part{k}.parquet"
        frame.to_parquet(path, row_group_size=row_group)  # several row groups: DuckDB reads them in parallel
        paths.append(path)
    return paths


def _reference(paths, n_boot, seed, weight):
    """Replicate counts computed row by row in numpy from the same hashed Poisson weights."""
    frames = [pd.read_parquet(p).assign(_f=k + 1, _i=np.arange(len(pd.read_parquet(p))))
              for k, p in enumerate(paths)]
    f = pd.concat(frames, ignore_index=True)
    W = poisson_weights(seed, f["_f"].to_numpy(), f["_i"].to_numpy(), n_boot)
    na, nb = f["model_a"].to_numpy(), f["model_b"].to_numpy()
    s = f["winner"].map(OUTCOME).to_numpy()
    s = np.where(na < nb, s, 1 - s)
    w = f["w"].to_numpy() if weight else np.ones(len(f))
    out = []
    for r in range(1, n_boot + 1):
        pw = W[:, r - 1]
        ref = pd.DataFrame({"a": np.minimum(na, nb), "b": np.maximum(na, nb), "a_wins": w * pw * (s == 1),
                            "b_wins": w * pw * (s == 0), "ties": w * pw * (s == 0.5), "n": pw})
        ref = ref.groupby(["a", "b"]).sum().reset_index()
        out.append(ref[ref["n"] > 0].assign(replicate=r))
    return pd.concat(out, ignore_index=True)


@pytest.mark.parametrize("weight", [False, True])
def test_replicate_counts_equal_numpy_reference(tmp_path, weight):
    paths = _files(tmp_path)
    table = count_pairs(tmp_path, a="model_a", b="model_b", outcome="winner", bootstrap=6, seed=11,
                        weight="w" if weight else None)
    data = count_pairs(tmp_path, a="model_a", b="model_b", outcome="winner", weight="w" if weight else None)
    got0 = table[table["replicate"] == 0].drop(columns="replicate").reset_index(drop=True)
    pd.testing.assert_frame_equal(got0, data, check_dtype=False)  # replicate 0 is the plain count table
    got = table[table["replicate"] > 0].reset_index(drop=True)
    ref = _reference(paths, 6, 11, weight)[got.columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    other = count_pairs(tmp_path, a="model_a", b="model_b", outcome="winner", bootstrap=6, seed=12)
    assert not other[other["replicate"] > 0]["a_wins"].equals(got["a_wins"])  # the seed matters


def test_weights_are_poisson_one():
    # 400k draws: the sd of the mean is 0.0016, of the variance ≈ 0.0027; tolerances are ≥ 6 sd.
    W = poisson_weights(5, np.ones(4000, dtype=np.int64), np.arange(4000), 100)
    assert abs(W.mean() - 1) < 0.01
    assert abs(W.var() - 1) < 0.02
    assert abs((W == 0).mean() - np.exp(-1)) < 0.005
    assert abs((W == 2).mean() - np.exp(-1) / 2) < 0.005
    corr = np.corrcoef(W[:, 0], W[:, 1])[0, 1]  # replicates independent: sd of r ≈ 0.016
    assert abs(corr) < 0.08
    # rows far apart in one file and the same row in another file get different weights
    assert not np.array_equal(poisson_weights(5, np.array([1]), np.array([2**32 + 7]), 100),
                              poisson_weights(5, np.array([1]), np.array([7]), 100))
    assert not np.array_equal(poisson_weights(5, np.array([2]), np.array([7]), 100),
                              poisson_weights(5, np.array([1]), np.array([7]), 100))


def test_same_counts_with_one_and_two_threads(tmp_path, monkeypatch):
    _files(tmp_path, sizes=(900, 700))
    connect = duckdb.connect
    tables = []
    for threads in (1, 2):
        monkeypatch.setattr(duckdb, "connect", lambda config, t=threads: connect(config={**config, "threads": t}))
        tables.append(count_pairs(tmp_path, a="model_a", b="model_b", outcome="winner", bootstrap=5, seed=2))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_poisson_intervals_agree_with_row_bootstrap(tmp_path):
    # 20,000 rows, 8 items, 200 replicates each: interval half-widths ≈ 0.06; the Monte-Carlo error of a 2.5 %
    # quantile from 200 replicates is ≈ 0.01 (of a difference of two, ≈ 0.014), so the bounds must agree
    # within 0.04 on the log-strength scale (≈ 3 sd; a third of a half-width).
    _files(tmp_path, sizes=(12000, 8000), n_items=8, seed=3, ties=False, row_group=5000)
    counts = tmp_path / "counts.parquet"
    cols = ["--a", "model_a", "--b", "model_b", "--outcome", "winner"]
    result = runner.invoke(app, ["count", str(tmp_path / "part0.parquet"), str(tmp_path / "part1.parquet"), *cols,
                                 "--bootstrap", "200", "--seed", "4", "-o", str(counts)])
    assert result.exit_code == 0, result.output
    rows = tmp_path / "rows.parquet"
    pd.concat([pd.read_parquet(tmp_path / f"part{k}.parquet") for k in (0, 1)]).to_parquet(rows)
    boards = {}
    for name, args in (("poisson", [str(counts)]), ("rows", [str(rows), *cols, "--bootstrap", "200"])):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["rank", *args, "--json", str(out)])
        assert result.exit_code == 0, result.output
        boards[name] = json.loads(out.read_text())
    assert boards["poisson"]["interval"]["method"] == "poisson bootstrap"
    assert boards["rows"]["interval"]["method"] == "bootstrap"
    get = {k: pd.DataFrame(v["items"]).set_index("name").sort_index() for k, v in boards.items()}
    p, r = get["poisson"], get["rows"]
    np.testing.assert_allclose(p["rating"], r["rating"], atol=1e-8)  # the same full-data fit
    for col in ("ci_low", "ci_high"):
        np.testing.assert_allclose(p[col], r[col], atol=0.04)
    np.testing.assert_allclose(p["se"], r["se"], rtol=0.25)  # an se from 200 replicates is within ±10 % (2 sd)
    assert not np.allclose(p["ci_low"], r["ci_low"], atol=1e-9)  # two different bootstraps, not one twice


def _same_rows_as(paths, tmp_path, kind):
    """The rows of ``paths`` written again as CSV or JSONL files (same file order, same row order)."""
    out = []
    for k, path in enumerate(paths):
        frame = pd.read_parquet(path)
        target = tmp_path / kind / f"part{k}.{kind}"
        target.parent.mkdir(exist_ok=True)
        if kind == "csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_json(target, orient="records", lines=True)
        out.append(target)
    return out


COLS = dict(a="model_a", b="model_b", outcome="winner", weight="w")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_csv_and_jsonl_rows_get_the_parquet_rows_weights(tmp_path, kind):
    paths = _files(tmp_path / "pq", sizes=(700, 500))
    expected = count_pairs(paths, bootstrap=7, seed=3, **COLS)
    text = _same_rows_as(paths, tmp_path, kind)
    got = count_pairs(text, bootstrap=7, seed=3, **COLS)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    ref = _reference(paths, 7, 3, True)[got.columns].reset_index(drop=True)  # and both equal the numpy reference
    pd.testing.assert_frame_equal(got[got["replicate"] > 0].reset_index(drop=True), ref, check_dtype=False)


def test_memory_engine_draws_the_duckdb_weights(tmp_path):
    paths = _files(tmp_path, sizes=(400, 300, 200))
    expected = count_pairs(paths, bootstrap=9, seed=5, **COLS)
    for kind in ("parquet", "csv"):
        inputs = paths if kind == "parquet" else _same_rows_as(paths, tmp_path, "csv")
        got = count_pairs(inputs, engine="memory", bootstrap=9, seed=5, **COLS)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_dropped_rows_keep_the_numbers_of_the_rows_kept(tmp_path):
    # row 3 of the second file is invalid: the rows after it keep their numbers in the file on every engine
    paths = _files(tmp_path, sizes=(50, 60))
    frame = pd.read_parquet(paths[1])
    frame.loc[3, "model_b"] = frame.loc[3, "model_a"]
    frame.to_parquet(paths[1])
    with pytest.warns(Warning, match="1"):
        expected = count_pairs(paths, bootstrap=4, seed=1, on_invalid="drop", **COLS)
    with pytest.warns(Warning, match="1"):
        got = count_pairs(paths, engine="memory", bootstrap=4, seed=1, on_invalid="drop", **COLS)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    kept = pd.read_parquet(paths[1]).drop(index=3)
    W = poisson_weights(1, np.full(len(kept), 2), kept.index.to_numpy(), 4)
    assert got[got["replicate"] > 0]["n"].sum() == W.sum() + poisson_weights(1, np.ones(50), np.arange(50), 4).sum()


def test_replicates_with_clusters_and_first_side_equal_across_engines(tmp_path):
    rng = np.random.default_rng(4)
    for k, m in enumerate((120, 90)):
        frame = pd.read_parquet(_files(tmp_path / f"d{k}", sizes=(m,), seed=k)[0])
        frame["judge"] = rng.choice(["j1", "j2", "j3"], m)
        frame["first"] = rng.random(m) < 0.5
        frame.to_parquet(tmp_path / f"c{k}.parquet")
    paths = [tmp_path / "c0.parquet", tmp_path / "c1.parquet"]
    opts = dict(COLS, cluster="judge", a_first="first", bootstrap=4, seed=6)
    expected = count_pairs(paths, **opts)
    assert set(expected.columns) >= {"replicate", "cluster", "a_first"}
    got = count_pairs(paths, engine="memory", **opts)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_bootstrap_options_are_checked(tmp_path):
    pd.DataFrame({"winner": ["x", "y"], "loser": ["y", "x"]}).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(InputError, match="--bootstrap"):
        count_pairs(tmp_path / "r.csv", bootstrap=-1)
    with pytest.raises(InputError, match="--seed"):
        count_pairs(tmp_path / "r.csv", bootstrap=2, seed=-1)


def test_sql_and_numpy_sums_of_the_replicates_agree(tmp_path, monkeypatch):
    # small B × pairs: DuckDB streams the rows' pair numbers and numpy sums the weights; large: the SQL aggregates
    import pairkit.scale._duckdb as engine
    from pairkit.scale import write_counts

    paths = _files(tmp_path / "d", sizes=(400, 300))
    opts = dict(COLS, cluster=None, bootstrap=6, seed=9)
    dense = count_pairs(paths, **opts)
    write_counts(paths, tmp_path / "dense.parquet", **opts)
    monkeypatch.setattr(engine, "DENSE_REPLICATES", 0)
    pd.testing.assert_frame_equal(count_pairs(paths, **opts), dense)
    write_counts(paths, tmp_path / "sql.parquet", **opts)
    written = {k: pd.read_parquet(tmp_path / f"{k}.parquet") for k in ("sql", "dense")}
    pd.testing.assert_frame_equal(written["sql"], written["dense"])
    ref = _reference(paths, 6, 9, True)[dense.columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(dense[dense["replicate"] > 0].reset_index(drop=True), ref, check_dtype=False)
