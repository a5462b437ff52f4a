"""``pairkit rank --rankings``: Plackett–Luce from long, wide and PrefLib files (issue 14) — CLI = fit_plackett_luce
= choix on NASCAR 2002."""

import json

import choix
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import read_preflib, read_rankings
from pairkit.data.rankings import read_any_rankings, read_wide_rankings
from pairkit.errors import InputError
from pairkit.rating import fit_plackett_luce
from tests.shared_data import shared_path

runner = CliRunner()


def nascar():
    return read_rankings(shared_path("rankings", "nascar2002.txt"), ranking="Race", item="DriverID", position="Place")


def cli_ratings(args, tmp_path):
    out = tmp_path / "board.json"
    result = runner.invoke(app, ["rank", *args, "--rankings", "--json", str(out)])
    assert result.exit_code == 0, result.output
    return {row["name"]: row["rating"] for row in json.loads(out.read_text())["items"]}


def test_long_file_recognised_and_equal_to_choix(tmp_path):
    r = nascar()
    got = cli_ratings([str(shared_path("rankings", "nascar2002.txt"))], tmp_path)
    data = [tuple(r.flat[r.offsets[k] : r.offsets[k + 1]]) for k in range(len(r))]
    ref = choix.mm_rankings(r.n_items, data, tol=1e-13, max_iter=200_000)
    ref = dict(zip(r.items, ref - ref.mean(), strict=True))
    assert set(got) == set(ref)
    np.testing.assert_allclose([got[k] for k in ref], list(ref.values()), atol=1e-6)


def test_wide_file_equals_the_long_file(tmp_path):
    r = nascar()
    lists = r.to_lists()
    width = max(len(x) for x in lists)
    frame = pd.DataFrame([x + [None] * (width - len(x)) for x in lists], columns=[f"pos{k + 1}" for k in range(width)])
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    got = cli_ratings([str(path)], tmp_path)
    ref = fit_plackett_luce(r)
    np.testing.assert_allclose([got[k] for k in r.items], ref.log_strength, atol=1e-8)


def test_preflib_with_prior_equals_the_api(tmp_path):
    path = shared_path("rankings", "skaters.toc")
    got = cli_ratings([str(path), "--prior", "1"], tmp_path)
    ref = fit_plackett_luce(read_preflib(path), prior=1.0)
    np.testing.assert_allclose([got[k] for k in ref.items], ref.log_strength, atol=1e-8)


def test_explicit_long_columns_and_bad_layouts(tmp_path):
    path = tmp_path / "long.csv"
    pd.DataFrame({"q": [1, 1, 1, 2, 2], "doc": list("abcba"), "r": [1, 2, 3, 1, 2]}).to_csv(path, index=False)
    result = runner.invoke(app, ["rank", str(path), "--rankings"])
    assert result.exit_code == 2 and "--ranking-columns" in result.output
    got = cli_ratings([str(path), "--ranking-columns", "q,doc,r", "--prior", "1"], tmp_path)
    assert got["a"] > got["c"]
    gap = tmp_path / "gap.csv"
    pd.DataFrame({"pos1": ["a", "b"], "pos2": [None, "a"], "pos3": ["c", None]}).to_csv(gap, index=False)
    with pytest.raises(InputError, match="row 2.*'pos2' is empty but 'pos3'"):
        read_wide_rankings(gap)
    twice = pd.DataFrame({"rank1": ["a"], "rank2": ["a"]})
    with pytest.raises(InputError, match="listed twice"):
        read_wide_rankings(twice)
    with pytest.raises(InputError, match="all three"):
        read_any_rankings(path, ranking="q")
    result = runner.invoke(app, ["rank", str(path), "--rankings", "--model", "elo", "--ranking-columns", "q,doc,r"])
    assert result.exit_code == 2 and "Plackett" in result.output
