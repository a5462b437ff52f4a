"""Regressions found by trying the CLI as a new user."""

import json

import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import read_comparisons
from pairkit.errors import InputError

runner = CliRunner()


@pytest.fixture
def games(tmp_path):
    path = tmp_path / "games.csv"
    path.write_text("a,b,outcome\nx,y,1\ny,z,0.5\nz,x,0\nx,z,0.7\ny,x,1\nz,y,1\n")
    return path


def test_numeric_outcomes_in_csv(games):
    c = read_comparisons(games)
    assert c.outcome.tolist() == [1.0, 0.5, 0.0, 0.7, 1.0, 1.0]


def test_numeric_outcome_out_of_range_in_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,outcome\nx,y,1.5\n")
    with pytest.raises(InputError, match=r"row 2, column 'outcome': outcome must be in \[0, 1\]"):
        read_comparisons(path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--level", "1.5"], "level must be a number in (0, 1), got 1.5"),  # the model's spec checks it
        (["--plot", "x.txt"], "use a .png"),
        (["--json", "/nonexistent-dir/x.json"], "No such file or directory"),
    ],
)
def test_bad_options_give_one_line_errors(games, extra, message):
    result = runner.invoke(app, ["rank", str(games), "--prior", "1", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_square_brackets_survive_in_error_messages(tmp_path):
    path = tmp_path / "dict.json"
    path.write_text('{"a": 1}')
    result = runner.invoke(app, ["rank", str(path)])
    assert result.exit_code == 2
    assert "[a, b, outcome]" in result.output


def test_ties_rao_kupper_selects_the_rao_kupper_model(games, tmp_path):
    out = tmp_path / "rk.json"
    result = runner.invoke(app, ["rank", str(games), "--ties", "rao_kupper", "--prior", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "rao" in json.loads(out.read_text())["model"].lower()


def test_anchor_without_elo_scale(games, tmp_path):
    out = tmp_path / "a.json"
    result = runner.invoke(app, ["rank", str(games), "--prior", "1", "--anchor", "y", "--json", str(out)])
    assert result.exit_code == 0, result.output
    ratings = {item["name"]: item["rating"] for item in json.loads(out.read_text())["items"]}
    assert ratings["y"] == pytest.approx(0.0, abs=1e-12)


def test_options_a_model_does_not_take_are_reported(games):
    result = runner.invoke(app, ["rank", str(games), "--model", "elo", "--ties", "davidson", "--prior", "3"])
    assert result.exit_code == 0, result.output
    assert "does not take --prior, --ties; ignored" in result.output
