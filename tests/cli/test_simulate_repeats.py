"""``pairkit simulate --repeats N``: mean ± sd over seeds (issue 14)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.select import simulate


def test_repeats_summarise_the_individual_runs(tmp_path):
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(app, ["simulate", "--items", "6", "--budget", "20", "--seed", "3", "--repeats", "4",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "kendall_tau" in result.output and "±" in result.output
    data = json.loads(out.read_text())
    taus = [simulate("active", n_items=6, budget=20, seed=s)["kendall_tau"] for s in range(3, 7)]
    assert data["summary"]["kendall_tau"]["mean"] == pytest.approx(np.mean(taus))
    assert data["summary"]["kendall_tau"]["sd"] == pytest.approx(np.std(taus, ddof=1))
    assert [r["seed"] for r in data["runs"]] == [3, 4, 5, 6]


def test_repeats_must_be_positive():
    result = CliRunner().invoke(app, ["simulate", "--items", "6", "--budget", "10", "--repeats", "0"])
    assert result.exit_code == 2 and "--repeats" in result.output
