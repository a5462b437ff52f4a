"""``--engine ray``: Ray Data counts = DuckDB counts = in-memory counts, Poisson replicates included, and the same
errors; one local 2-CPU Ray cluster for the module (started, used by every test, shut down)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pairkit.data import read_comparisons
from pairkit.errors import DroppedRowsWarning, InputError
from pairkit.scale import comparisons_to_counts, count_pairs, expand_paths
from tests.scale.test_counts import COLUMNS, _frame, _write_parts
from tests.scale.test_poisson_bootstrap import COLS, _files, _same_rows_as

ray = pytest.importorskip("ray")
pytest.importorskip("duckdb")
import pairkit.scale._ray as engine  # noqa: E402 - after the skip: the module needs no ray, its tests do


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def small_blocks(monkeypatch):
    """Pieces of 250 rows read in blocks of 64 (text: 48): every way a file is cut (row groups of 100 rows, blocks
    across row groups, several pieces per file) is exercised on tiny data."""
    monkeypatch.setattr(engine, "PIECE_ROWS", 250)
    monkeypatch.setattr(engine, "BLOCK_ROWS", 64)
    monkeypatch.setattr(engine, "TEXT_BLOCK_ROWS", 48)
    monkeypatch.setattr(engine, "MERGE_ROWS", 500)


def _parts(frame: pd.DataFrame, root, sizes) -> list:
    root.mkdir()
    bounds = np.cumsum([0, *sizes])
    for k in range(len(sizes)):
        frame.iloc[bounds[k]:bounds[k + 1]].to_parquet(root / f"part-{k}.parquet", row_group_size=100)
    return expand_paths(root)


@pytest.mark.parametrize("bootstrap", [0, 4])
def test_ray_data_counts_equal_duckdb_and_in_memory_counts(tmp_path, small_blocks, bootstrap):
    frame = _frame(1400, seed=6)  # ties, quarter weights, 5 clusters, a first-side flag
    files = _parts(frame, tmp_path / "data", (700, 90, 610))
    assert len(engine.pieces(files, engine.PIECE_ROWS)) >= 6  # runs of whole row groups, several per file
    opts = dict(COLUMNS, bootstrap=bootstrap, seed=11)
    got = count_pairs(tmp_path / "data", engine="ray", **opts)
    assert bootstrap == 0 or set(got["replicate"]) == set(range(bootstrap + 1))
    pd.testing.assert_frame_equal(got, count_pairs(tmp_path / "data", engine="duckdb", **opts))
    pd.testing.assert_frame_equal(got, count_pairs(tmp_path / "data", engine="memory", **opts))
    if not bootstrap:  # and the counts of the whole frame read at once
        whole = comparisons_to_counts(read_comparisons(frame, **COLUMNS), cluster=True, a_first=True)
        pd.testing.assert_frame_equal(got, whole)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_text_files_give_the_parquet_counts_and_replicates(tmp_path, small_blocks, kind):
    paths = _files(tmp_path, sizes=(300, 200))
    text = _same_rows_as(paths, tmp_path, kind)
    expected = count_pairs(paths, engine="duckdb", bootstrap=5, seed=8, **COLS)
    pd.testing.assert_frame_equal(count_pairs(text, engine="ray", bootstrap=5, seed=8, **COLS), expected,
                                  check_dtype=False)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_bad_row_in_the_third_file_names_the_file_and_row(tmp_path, small_blocks, kind):
    frame = _frame(300, seed=4)
    frame.loc[250, "winner"] = "bogus"
    frame.loc[120, "model_b"] = None
    root = _write_parts(frame, tmp_path / "data", 3, kind)
    opts = dict(a="model_a", b="model_b", outcome="winner")
    with pytest.raises(InputError) as memory:
        count_pairs(root, engine="memory", **opts)
    with pytest.raises(InputError) as ray_data:
        count_pairs(root, engine="ray", **opts)
    assert str(ray_data.value) == str(memory.value)
    assert f"part-1.{kind}, row {21 + (kind == 'csv')}, column 'model_b'" in str(ray_data.value)
    frame.loc[120, "model_b"] = "m1"  # only the third file is bad now
    root = _write_parts(frame, tmp_path / "again", 3, kind)
    with pytest.raises(InputError, match=rf"part-2\.{kind}, row {51 + (kind == 'csv')}, column 'winner'.*bogus"):
        count_pairs(root, engine="ray", **opts)
    report = (rf"dropped 1 invalid rows in all \(.*part-2\.{kind}: dropped 1 of 100 rows: 1 × unknown outcome label "
              r"\(1 unknown: 'bogus'.*\(column 'winner'\)\)$")
    with pytest.warns(DroppedRowsWarning, match=report):
        counts = count_pairs(root, engine="ray", on_invalid="drop", **opts)
    assert counts["n"].sum() == 299
    with pytest.warns(DroppedRowsWarning):
        pd.testing.assert_frame_equal(counts, count_pairs(root, engine="duckdb", on_invalid="drop", **opts))


def test_file_problems_raise_the_in_memory_readers_errors(tmp_path):
    good = '{"a": "x", "b": "y", "outcome": "tie"}\n'
    cases = {"json": good + '{"a": "y", "b": \n',  # a file the reader cannot parse
             "empty": "",  # no data row
             "partial": good + '{"a": "y", "b": "z", "outcome": 0.7}\n',  # not a win, loss or tie
             "all bad": '{"a": "y", "b": "y", "outcome": 1}\n'}  # every row invalid (dropped)
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jsonl").write_text(good * 3)
        (tmp_path / name / "b.jsonl").write_text(text)
        for on_invalid in ("raise", "drop"):
            with pytest.raises(InputError) as memory:
                count_pairs(tmp_path / name, engine="memory", on_invalid=on_invalid)
            with pytest.raises(InputError) as ray_data:
                count_pairs(tmp_path / name, engine="ray", on_invalid=on_invalid)
            assert str(ray_data.value) == str(memory.value), name


@pytest.mark.slow  # a second Python process joins the cluster (its own Ray workers start)
def test_cli_joins_a_running_cluster_with_ray_address(tmp_path):
    frame = _frame(600, seed=9)
    root = _write_parts(frame, tmp_path / "data", 2)
    address = ray.get_runtime_context().gcs_address
    out = tmp_path / "counts.parquet"
    args = ["count", str(root), "--a", "model_a", "--b", "model_b", "--outcome", "winner", "--cluster", "judge",
            "--engine", "ray", "--ray-address", address, "--bootstrap", "3", "--output", str(out)]
    script = "import sys; from pairkit.cli import main; sys.argv = ['pairkit', *sys.argv[1:]]; main()"
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from 600 comparisons, with 3 Poisson-bootstrap replicates" in " ".join(done.stdout.split())
    assert ray.cluster_resources().get("CPU") == 2  # the joined cluster is still up: the command only left it
    want = count_pairs(root, a="model_a", b="model_b", outcome="winner", cluster="judge", bootstrap=3)
    pd.testing.assert_frame_equal(pd.read_parquet(out), want, check_dtype=False)
