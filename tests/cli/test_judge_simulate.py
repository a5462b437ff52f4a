"""``pairkit judge`` and ``pairkit simulate`` end to end (offline: simulated judge, loopback HTTP judge)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from pairkit.cli import app
from tests.judges.fake_openai import FakeServer

runner = CliRunner()


def write_candidates(path, n_contexts=3, n_items=5):
    rows = [
        {"context_id": f"q{c}", "context": f"question {c}", "candidate_id": f"m{i}", "text": f"q{c} m{i} says {i}"}
        for c in range(n_contexts)
        for i in range(n_items)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def test_judge_simulated_round_robin_writes_outputs(tmp_path):
    cands = tmp_path / "c.jsonl"
    write_candidates(cands)
    config = tmp_path / "judge.json"
    config.write_text(json.dumps({"type": "simulated", "strengths": {f"m{i}": 2.0 * i for i in range(5)}, "seed": 1}))
    out_j, out_p, cache = tmp_path / "j.jsonl", tmp_path / "p.jsonl", tmp_path / "cache.sqlite"
    args = [
        "judge",
        str(cands),
        "--judge",
        str(config),
        "--strategy",
        "round_robin",
        "--policy",
        "both_average",
        "--cache",
        str(cache),
        "--judgments",
        str(out_j),
        "--pairs",
        str(out_p),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "60 judgments (60 paid calls, 0 from cache)" in result.output
    assert "first-position win rate" in result.output and "m4" in result.output
    assert len(out_j.read_text().splitlines()) == 60
    pairs = [json.loads(line) for line in out_p.read_text().splitlines()]
    assert pairs and set(pairs[0]) >= {"prompt", "chosen", "rejected"}
    again = runner.invoke(app, args)
    assert "(0 paid calls, 60 from cache)" in again.output


def test_judge_budget_dry_run_and_errors(tmp_path):
    cands = tmp_path / "c.jsonl"
    write_candidates(cands, n_contexts=1, n_items=8)
    config = tmp_path / "judge.json"
    config.write_text(json.dumps({"type": "simulated", "strengths": {f"m{i}": i for i in range(8)}}))
    result = runner.invoke(app, ["judge", str(cands), "--judge", str(config), "--strategy", "knockout", "--dry-run"])
    assert result.exit_code == 0 and "needs ~7 judge calls" in result.output
    result = runner.invoke(app, ["judge", str(cands), "--judge", str(config), "--strategy", "active", "--budget", "12"])
    assert result.exit_code == 0, result.output
    assert "12 judgments" in result.output and "stopped: budget" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "oracle"}))
    result = runner.invoke(app, ["judge", str(cands), "--judge", str(bad)])
    assert result.exit_code == 2 and "unknown judge type 'oracle'" in result.output
    cands.write_text('{"context_id": "q", "candidate_id": "a"}\n')
    result = runner.invoke(app, ["judge", str(cands), "--judge", str(config)])
    assert result.exit_code == 2 and "row 1: missing 'text'" in result.output


def test_judge_over_http_with_price(tmp_path):
    cands = tmp_path / "c.jsonl"
    write_candidates(cands, n_contexts=1, n_items=6)
    with FakeServer() as server:
        config = tmp_path / "judge.json"
        config.write_text(
            json.dumps({"type": "openai", "model": "m", "base_url": server.url, "api_key": "t", "price": [1.0, 2.0]})
        )
        result = runner.invoke(app, ["judge", str(cands), "--judge", str(config), "--strategy", "merge_sort"])
        assert result.exit_code == 0, result.output
        assert "ranking: m5, m4, m3, m2, m1, m0" in result.output
        assert len(server.paid) > 0


def test_simulate_json(tmp_path):
    out = tmp_path / "sim.json"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--items",
            "16",
            "--strategy",
            "knockout",
            "--seed",
            "3",
            "--position-bias",
            "0.5",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["strategy"] == "knockout" and data["calls"] == 15
    assert -1 <= data["kendall_tau"] <= 1 and isinstance(data["top1_correct"], bool)
    result = runner.invoke(app, ["simulate", "--items", "12", "--strategy", "round_robin", "--spread", "4"])
    assert result.exit_code == 0 and "kendall_tau" in result.output
    tau = float(next(line for line in result.output.splitlines() if "kendall_tau" in line).split(":")[1])
    assert np.isfinite(tau) and tau > 0.6
    result = runner.invoke(app, ["simulate", "--strategy", "nope"])
    assert result.exit_code == 2 and "unknown strategy" in result.output
