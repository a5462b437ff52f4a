"""``pairkit count`` and ``pairkit rank`` on directories, globs and count files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from tests.scale.test_counts import _frame, _write_parts

pytest.importorskip("duckdb")
runner = CliRunner()
COLS = ["--a", "model_a", "--b", "model_b", "--outcome", "winner"]


def _board(path):
    return {item["name"]: item for item in json.loads(path.read_text())["items"]}


def test_count_then_rank_equals_rank_on_rows(tmp_path):
    frame = _frame(3000, seed=7)
    frame.to_parquet(tmp_path / "rows.parquet")
    root = _write_parts(frame, tmp_path / "data", 3)
    counts = tmp_path / "counts.parquet"
    result = runner.invoke(app, ["count", str(root), *COLS, "--output", str(counts)])
    assert result.exit_code == 0, result.output
    assert "from 3,000 comparisons" in result.output
    boards = {}
    for name, source in (("rows", tmp_path / "rows.parquet"), ("counts", counts), ("dir", root),
                         ("glob", f"{root}/*.parquet")):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["rank", str(source), *COLS, "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert "3,000 comparisons of 12 items" in result.output
        boards[name] = _board(out)
        assert json.loads(out.read_text())["n_comparisons"] == 3000
    for name in ("counts", "dir", "glob"):
        for item, row in boards["rows"].items():
            other = boards[name][item]
            for key in ("rating", "ci_low", "ci_high", "n", "win_rate"):
                assert other[key] == pytest.approx(row[key], abs=1e-10), (name, item, key)


def test_count_merges_count_files_and_rejects_row_order_models(tmp_path):
    frame = _frame(1000, seed=8)
    frame.iloc[:600].to_parquet(tmp_path / "x.parquet")
    frame.iloc[600:].to_parquet(tmp_path / "y.parquet")
    for part in ("x", "y"):
        result = runner.invoke(app, ["count", str(tmp_path / f"{part}.parquet"), *COLS, "-o",
                                     str(tmp_path / f"c{part}.csv")])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["count", str(tmp_path / "cx.csv"), str(tmp_path / "cy.csv"), "-o",
                                 str(tmp_path / "all.parquet")])
    assert result.exit_code == 0, result.output
    assert "from 1,000 comparisons" in result.output
    for extra in (["--model", "elo"], ["--bootstrap", "10"]):
        result = runner.invoke(app, ["rank", str(tmp_path / "all.parquet"), *extra])
        assert result.exit_code == 2 and "needs the comparison rows" in result.output


def test_count_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["count", str(tmp_path / "missing"), "-o", str(tmp_path / "c.parquet")])
    assert result.exit_code == 2 and "no such file or directory" in result.output
    _frame(10).to_parquet(tmp_path / "r.parquet")
    result = runner.invoke(app, ["count", str(tmp_path / "r.parquet"), *COLS, "-o", str(tmp_path / "c.txt")])
    assert result.exit_code == 2 and "use a .parquet or .csv" in result.output
    result = runner.invoke(app, ["count", str(tmp_path / "r.parquet"), "--a", "nope", "--b", "model_b",
                                 "--outcome", "winner", "-o", str(tmp_path / "c.csv")])
    assert result.exit_code == 2 and "no column 'nope'" in result.output
