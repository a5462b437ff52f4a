"""evaluate_judge and `pairkit judge-eval`: each metric against a hand count or an independent computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.errors import InputError
from pairkit.judges import SimulatedJudge, evaluate_judge
from pairkit.select import Pool, select


def wilson(k, n, level=0.95):
    """Independent Wilson interval (from the score-test inversion, solved as a quadratic)."""
    z = stats.norm.ppf(0.5 + level / 2)
    # (p̂ - p)² = z² p(1-p)/n  →  (1 + z²/n) p² - (2p̂ + z²/n) p + p̂² = 0
    ph = k / n
    a, b, c = 1 + z * z / n, -(2 * ph + z * z / n), ph * ph
    disc = np.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


def rows(*triples):
    return [{"context_id": c, "a": a, "b": b, "order": o, "p_a": p, "p_tie": t} for c, a, b, o, p, t in triples]


JUDGMENTS = rows(
    ("q1", "x", "y", "ab", 1.0, 0.0),  # x wins, consistent
    ("q1", "x", "y", "ba", 1.0, 0.0),
    ("q2", "x", "y", "ab", 1.0, 0.0),  # first shown wins both times: inconsistent
    ("q2", "x", "y", "ba", 0.0, 0.0),
    ("q3", "y", "x", "ab", 0.0, 1.0),  # tie
    ("q4", "x", "z", "ab", 1.0, 0.0),
    ("q4", "x", "z", "ab", 0.0, 0.0),  # asked again: disagrees with itself
    ("q5", "y", "z", "ab", 0.8, 0.0),
)
HUMAN = [
    {"context_id": "q1", "a": "y", "b": "x", "winner": "x"},  # judge: x (agrees; stated the other way round)
    {"context_id": "q2", "a": "x", "b": "y", "winner": "tie"},  # judge: mean ½ → tie (agrees)
    {"context_id": "q3", "a": "x", "b": "y", "winner": "a"},  # judge: tie (disagrees)
    {"context_id": "q4", "a": "x", "b": "z", "winner": "x"},  # judge: mean ½ → tie (disagrees)
    {"context_id": "q5", "a": "y", "b": "z", "winner": "z"},  # judge: y (disagrees)
    {"context_id": "q9", "a": "y", "b": "z", "winner": "z"},  # not judged
]


def test_counts_and_wilson_intervals_match_a_hand_count():
    report = evaluate_judge(JUDGMENTS, HUMAN, n_boot=50)
    t = report.table.set_index("metric")
    assert t.loc["agreement", "value"] == pytest.approx(2 / 5) and t.loc["agreement", "n"] == 5
    assert (t.loc["agreement", "low"], t.loc["agreement", "high"]) == pytest.approx(wilson(2, 5))
    assert "1 human label" in t.loc["agreement", "note"]
    # no ties on either side: q1 (agree), q5 (disagree)
    assert t.loc["agreement_no_ties", "value"] == pytest.approx(1 / 2)
    # both orders: q1 consistent, q2 not
    assert t.loc["position_consistency", "value"] == pytest.approx(1 / 2) and t.loc["position_consistency", "n"] == 2
    # decisive judgments: 7 (the tie is out); first shown wins in q1-ab, q2-ab, q2-ba, q4, q5: 5 of 7
    assert t.loc["first_position_win", "value"] == pytest.approx(5 / 7)
    # q4's repeat disagrees with its first answer
    assert t.loc["self_consistency", "value"] == 0.0 and t.loc["self_consistency", "n"] == 1
    assert report.details == {"human_labels": 6, "human_labels_matched": 5}


def test_kappa_brier_and_ece_equal_independent_computations():
    report = evaluate_judge(JUDGMENTS, HUMAN, n_boot=50)
    t = report.table.set_index("metric")
    judge = np.array([1.0, 0.5, 0.5, 0.5, 1.0])  # judge's decision for a (human's orientation) per label
    human = np.array([1.0, 0.5, 1.0, 1.0, 0.0])
    judge, human = np.r_[judge, 1 - judge], np.r_[human, 1 - human]  # both orientations
    p_obs = np.mean(judge == human)
    p_exp = sum(np.mean(judge == v) * np.mean(human == v) for v in (0.0, 0.5, 1.0))
    assert t.loc["cohen_kappa", "value"] == pytest.approx((p_obs - p_exp) / (1 - p_exp))
    p = np.array([1.0, 0.5, 0.5, 0.5, 0.8])
    assert t.loc["brier", "value"] == pytest.approx(np.mean((p - human[:5]) ** 2))
    assert t.loc["brier", "low"] <= t.loc["brier", "value"] <= t.loc["brier", "high"]
    assert 0 <= t.loc["ece", "value"] <= 1


def test_length_bias_counts_the_longer_answer_wins():
    cands = [
        {"context_id": c, "candidate_id": i, "text": "w" * n}
        for c in ("q1", "q2", "q3", "q4", "q5")
        for i, n in (("x", 30), ("y", 10), ("z", 20))
    ]
    t = evaluate_judge(JUDGMENTS, HUMAN, candidates=cands, n_boot=50).table.set_index("metric")
    # decisive: q1 x,x (longer) ; q2 x (ab), y (ba); q4 x, z; q5 y (shorter than z) → longer wins 4 of 7
    assert t.loc["longer_wins", "value"] == pytest.approx(4 / 7)
    # humans, decisive: q1 x (longer), q3 x (longer), q4 x (longer), q5 z (longer), q9 z (longer)
    assert t.loc["human_longer_wins", "value"] == 1.0


def test_separability_and_reference_agreement_on_a_simulated_judge():
    strengths = {f"m{k}": 0.8 * k for k in range(6)}
    sel = select("round_robin", SimulatedJudge(strengths, seed=1), Pool.single(list(strengths)), repeats=12)
    frame = sel.judgments_frame()
    truth = sorted(strengths, key=strengths.get, reverse=True)
    report = evaluate_judge(frame, reference=truth, n_boot=200, seed=3)
    t = report.table.set_index("metric")
    board = report.leaderboard
    low, high = np.asarray(board.ci_low_log), np.asarray(board.ci_high_log)
    i, j = np.triu_indices(6, 1)
    assert t.loc["separability", "value"] == pytest.approx(np.mean((low[i] > high[j]) | (low[j] > high[i])))
    order = [board.items[k] for k in np.argsort(-np.asarray(board.scores))]
    expected_tau = stats.kendalltau([order.index(m) for m in truth], range(6)).statistic
    assert t.loc["kendall_tau", "value"] == pytest.approx(expected_tau)
    assert t.loc["kendall_tau", "low"] <= t.loc["kendall_tau", "value"] <= t.loc["kendall_tau", "high"]
    assert 0 < t.loc["agreement_with_ci", "value"] <= 1
    # a reversed reference disagrees as much as the truth agrees
    rev = evaluate_judge(frame, reference=truth[::-1], n_boot=200, seed=3).table.set_index("metric")
    assert rev.loc["kendall_tau", "value"] == pytest.approx(-expected_tau)
    assert rev.loc["agreement_with_ci", "value"] == pytest.approx(-t.loc["agreement_with_ci", "value"])


def test_bad_inputs_name_the_row():
    with pytest.raises(InputError, match="row 2: p_a"):
        evaluate_judge(rows(("q", "x", "y", "ab", 1.0, 0.0), ("q", "x", "y", "ab", 0.9, 0.5)))
    with pytest.raises(InputError, match="row 1: winner 'zz'"):
        evaluate_judge(JUDGMENTS, [{"context_id": "q1", "a": "x", "b": "y", "winner": "zz"}])
    with pytest.raises(InputError, match="missing column"):
        evaluate_judge([{"context_id": "q", "a": "x"}])
    with pytest.raises(InputError, match="item"):
        evaluate_judge(JUDGMENTS, reference=["x", "nope"])
    with pytest.raises(InputError, match="level"):
        evaluate_judge(JUDGMENTS, level=1.0)


def test_cli_judge_eval_writes_json_and_plot(tmp_path):
    jpath, hpath = tmp_path / "judgments.jsonl", tmp_path / "human.jsonl"
    jpath.write_text(pd.DataFrame(JUDGMENTS).to_json(orient="records", lines=True))
    hpath.write_text("".join(json.dumps(r) + "\n" for r in HUMAN))
    out, plot = tmp_path / "report.json", tmp_path / "report.png"
    result = CliRunner().invoke(
        app,
        ["judge-eval", str(jpath), "--human", str(hpath), "--reference", "x,z,y", "--bootstrap", "50",
         "--json", str(out), "--plot", str(plot)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "agreement" in result.output and "position_consistency" in result.output
    data = json.loads(out.read_text())
    assert {m["metric"] for m in data["metrics"]} >= {"agreement", "kendall_tau", "separability"}
    assert plot.stat().st_size > 1000
    bad = CliRunner().invoke(app, ["judge-eval", str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2 and "not found" in bad.output
