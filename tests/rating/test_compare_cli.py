"""``pairkit compare-models`` and ``pairkit rank --model bayeselo`` from the command line."""

import json

from typer.testing import CliRunner

from pairkit.cli import app
from tests.rating.test_bayeselo import BAYESELO_PRINTED
from tests.shared_data import shared_path

runner = CliRunner()


def test_compare_models_cli_writes_json(tmp_path):
    out = tmp_path / "cv.json"
    result = runner.invoke(
        app,
        [
            "compare-models",
            str(shared_path("sports", "computer_chess_8k.json")),
            "--models",
            "bt,order",
            "--folds",
            "3",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "log-loss" in result.output
    data = json.loads(out.read_text())
    assert [m["model"] for m in data["models"]] == ["order", "bt"]


def test_compare_models_cli_reports_bad_model():
    result = runner.invoke(
        app, ["compare-models", str(shared_path("sports", "computer_chess_8k.json")), "--models", "bt,nope"]
    )
    assert result.exit_code == 2
    assert "unknown rating model 'nope'" in result.output


def test_rank_bayeselo_prints_bayeselo_ratings(tmp_path):
    out = tmp_path / "board.json"
    result = runner.invoke(
        app, ["rank", str(shared_path("sports", "computer_chess_8k.json")), "--model", "bayeselo", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    ratings = {row["name"]: row["rating"] for row in json.loads(out.read_text())["items"]}
    for name, printed in BAYESELO_PRINTED.items():
        assert abs(ratings[name] - printed) <= 1.0
