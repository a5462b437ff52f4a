import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import read_comparisons
from pairkit.rating import fit_bradley_terry
from tests.shared_data import shared_path

runner = CliRunner()


def test_rank_json_contract(tmp_path):
    path = shared_path("llm_judgments", "arena_hard_battles.jsonl")
    out = tmp_path / "board.json"
    result = runner.invoke(app, ["rank", str(path), "--a", "model_a", "--b", "model_b", "--outcome", "winner",
                                 "--json", str(out), "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model"] == "bradley_terry" and data["n_comparisons"] == 2136
    ref = fit_bradley_terry(read_comparisons(path))
    by_name = {item["name"]: item for item in data["items"]}
    for name, value in zip(ref.items, ref.log_strength):
        assert by_name[name]["rating"] == pytest.approx(value, abs=1e-9)
        assert by_name[name]["ci_low"] < value < by_name[name]["ci_high"]
    assert [item["rank"] for item in data["items"]] == sorted(item["rank"] for item in data["items"])
    assert (tmp_path / "b.png").exists()


def test_rank_scores_davidson_prior_elo_bootstrap(tmp_path):
    path = shared_path("sports", "international_football_results.csv")
    out = tmp_path / "f.json"
    result = runner.invoke(app, ["rank", str(path), "--a", "home_team", "--b", "away_team", "--score-a",
                                 "home_score", "--score-b", "away_score", "--ties", "davidson", "--prior", "1",
                                 "--scale", "elo", "--json", str(out), "--top", "5"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["scale"] == "elo" and "tie_nu" in data["params"]
    assert "tie_nu" in result.output
    result = runner.invoke(app, ["rank", str(shared_path("sports", "computer_chess_8k.json")), "--bootstrap",
                                 "50", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["interval"]["method"] == "bootstrap"


def test_rank_errors_exit_2_with_message(tmp_path):
    path = shared_path("sports", "international_football_results.csv")
    result = runner.invoke(app, ["rank", str(path)])
    assert result.exit_code == 2
    assert "disconnected components" in result.output and "prior" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("winner,loser\na,b\nc,\n")
    result = runner.invoke(app, ["rank", str(bad)])
    assert result.exit_code == 2 and "row 3" in result.output and "'loser'" in result.output
    result = runner.invoke(app, ["rank", str(bad), "--drop-invalid", "--prior", "1"])
    assert result.exit_code == 0 and "dropped 1 of 2 rows" in result.output


def test_rank_elo_model(tmp_path):
    out = tmp_path / "e.json"
    result = runner.invoke(app, ["rank", str(shared_path("sports", "computer_chess_8k.json")), "--model", "elo",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    ratings = [item["rating"] for item in json.loads(out.read_text())["items"]]
    assert np.mean(ratings) == pytest.approx(1000)


def test_demo_runs_offline_and_writes_plot(tmp_path):
    result = runner.invoke(app, ["demo", "--plot", str(tmp_path / "demo.png")])
    assert result.exit_code == 0, result.output
    assert "Kendall τ" in result.output
    assert (tmp_path / "demo.png").stat().st_size > 5000


def test_rank_table_prints_a_centred_zero_without_sign(tmp_path):
    # b sits at the centre; its fitted score is floating-point noise around 0 (e.g. -1.7e-16)
    path = tmp_path / "games.csv"
    path.write_text("winner,loser\na,b\nb,c\nc,a\na,c\n")
    out = tmp_path / "board.json"
    result = runner.invoke(app, ["rank", str(path), "--prior", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rating_b = next(item["rating"] for item in json.loads(out.read_text())["items"] if item["name"] == "b")
    assert abs(rating_b) < 1e-12
    assert "-0.000" not in result.output and " 0.000 " in result.output
