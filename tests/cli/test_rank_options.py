"""``pairkit rank --option NAME=VALUE`` and ``--intervals``: model options from the command line, checked against the
model's declared options (issue 14, "Model options on the CLI")."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import read_comparisons
from pairkit.rating import fit_bradley_terry, fit_elo

runner = CliRunner()


@pytest.fixture
def games(tmp_path):
    rng = np.random.default_rng(3)
    names = np.array(["ann", "bob", "cat", "dan"])
    a = rng.integers(0, 4, 200)
    b = (a + rng.integers(1, 4, 200)) % 4
    y = (rng.random(200) < 0.5 + 0.1 * (a - b)).astype(int)
    cl = rng.integers(0, 40, 200)
    path = tmp_path / "games.csv"
    lines = ["a,b,outcome,voter"] + [f"{names[i]},{names[j]},{o},{c}" for i, j, o, c in zip(a, b, y, cl, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _board(tmp_path, path, *args):
    out = tmp_path / "board.json"
    result = runner.invoke(app, ["rank", str(path), "--json", str(out), *args])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_option_reaches_the_model(games, tmp_path):
    board = _board(tmp_path, games, "--model", "elo", "--option", "k=32", "-o", "initial=1500")
    ref = fit_elo(read_comparisons(games), k=32, initial=1500)
    got = {row["name"]: row["rating"] for row in board["items"]}
    for item, rating in zip(ref.items, ref.ratings, strict=True):
        assert got[item] == pytest.approx(rating, abs=1e-9)
    assert got != {row["name"]: row["rating"] for row in _board(tmp_path, games, "--model", "elo")["items"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "elo", "--option", "k=-1"], "rating model 'elo': --option k must be a number >= 0, got '-1'"),
        (["--model", "elo", "--option", "kk=3"], "rating model 'elo' has no option(s) kk; it accepts: k, base"),
        (["--model", "elo", "--option", "k"], "--option expects NAME=VALUE, got 'k'"),
        (["--prior", "1", "--option", "prior=1"], "prior given both as --prior and as --option"),
        (["--model", "trueskill", "-o", "draw_probability=2"], "draw_probability must be a number in [0, 1), got '2'"),
        (["--intervals", "bogus"], "intervals must be one of 'auto', 'fisher', 'sandwich', 'none', got 'bogus'"),
        (["--model", "elo", "--intervals", "fisher"], "model 'elo' has no intervals of its own"),
        (["--intervals", "fisher", "--bootstrap", "20"], "--bootstrap 20 gives bootstrap intervals, not --intervals"),
    ],
)
def test_bad_options_name_the_option_the_range_and_the_value(games, args, message):
    result = runner.invoke(app, ["rank", str(games), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize("method", ["fisher", "sandwich"])
def test_intervals_flag_picks_the_method(games, tmp_path, method):
    board = _board(tmp_path, games, "--cluster", "voter", "--intervals", method)
    ref = fit_bradley_terry(read_comparisons(games, cluster="voter"), intervals=method)
    assert board["interval"]["method"] == method
    lows = {row["name"]: row["ci_low"] for row in board["items"]}
    for item, low in zip(ref.items, ref.ci_low, strict=True):
        assert lows[item] == pytest.approx(low, abs=1e-9)


def test_intervals_bootstrap_defaults_its_replicates(games, tmp_path):
    board = _board(tmp_path, games, "--model", "elo", "--intervals", "bootstrap", "--bootstrap", "30")
    assert board["interval"]["method"] == "bootstrap"
    assert board["interval"]["rank_method"] == "bootstrap draws"


def test_a_model_seed_option_is_not_the_bootstrap_seed(games, tmp_path):
    one = _board(tmp_path, games, "--model", "blade_chest", "-o", "seed=1", "-o", "dim=1")
    two = _board(tmp_path, games, "--model", "blade_chest", "-o", "seed=2", "-o", "dim=1")
    assert [r["name"] for r in one["items"]] == [r["name"] for r in two["items"]]


def test_list_models_shows_each_models_options():
    result = runner.invoke(app, ["rank", "--list-models"])
    assert result.exit_code == 0
    text = result.output
    assert "elo · online" in text and "--option k=…  a number >= 0; default 4.0" in text
    assert "weng_lin (also openskill)" in text
    assert "one of 'auto', 'fisher', 'sandwich', 'none'" in text


def test_intervals_bootstrap_alone_uses_the_default_replicates(games, tmp_path, monkeypatch):
    import pairkit.cli.rank as rank_cli

    monkeypatch.setattr(rank_cli, "DEFAULT_BOOTSTRAP", 7)
    board = _board(tmp_path, games, "--intervals", "bootstrap")
    assert board["interval"]["method"] == "bootstrap"


def test_rankings_take_options_and_intervals_through_the_same_checks(tmp_path):
    from pairkit.data import read_wide_rankings
    from pairkit.rating import fit_plackett_luce

    path = tmp_path / "races.csv"
    path.write_text("pos1,pos2,pos3\nann,bob,cat\nbob,cat,ann\ncat,ann,bob\nann,cat,bob\n")
    out = tmp_path / "pl.json"
    args = ["rank", str(path), "--rankings", "--json", str(out)]
    result = runner.invoke(app, [*args, "--option", "prior=0.5", "--intervals", "fisher", "--level", "0.9"])
    assert result.exit_code == 0, result.output
    ref = fit_plackett_luce(read_wide_rankings(path), prior=0.5, intervals="fisher", level=0.9)
    board = json.loads(out.read_text())
    assert board["interval"]["level"] == 0.9
    got = {row["name"]: row["rating"] for row in board["items"]}
    assert got == pytest.approx(dict(zip(ref.items, ref.ratings, strict=True)), abs=1e-9)
    for extra, message in (
        (["--option", "k=3"], "rating model 'plackett_luce' has no option(s) k"),
        (["--intervals", "sandwich"], "intervals must be one of 'auto', 'fisher', 'none', got 'sandwich'"),
        (["--intervals", "bootstrap"], "--rankings has no bootstrap"),
        (["--level", "0.9", "--option", "level=0.8"], "level given both as --level and as --option"),
    ):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (extra, result.output)
