"""An LLM judge voting in the arena on the humans' pairs: same order shown, cached, kept out of the leaderboard."""

import json

import pytest
from typer.testing import CliRunner

from pairkit.arena import VoteStore, annotator_stats, judge_votes, to_comparisons
from pairkit.cli import app
from pairkit.judges import SimulatedJudge

from .conftest import candidate_rows

STRENGTH = {"m0": 3.0, "m1": 1.0, "m2": -1.0, "m3": -3.0}


@pytest.fixture
def voted(tmp_path):
    store = VoteStore(tmp_path / "a.sqlite")
    rows = candidate_rows()
    store.set_candidates(rows)
    who = store.annotator_by_token(store.add_annotator("alice")).id
    pairs = [("p1", "m0", "m1"), ("p1", "m3", "m2"), ("p2", "m1", "m3"), ("p2", "m1", "m3"), ("p3", "m2", "m0")]
    for c, left, right in pairs:  # alice prefers the stronger one, except on the last pair
        a = store.assign(who, c, left, right)
        store.record_vote(a.id, who, "left" if STRENGTH[left] > STRENGTH[right] else "right")
    a = store.assign(who, "p3", "m0", "m3")
    store.record_vote(a.id, who, "skip")  # skips are not judged
    yield store, rows
    store.close()


def judge(rows):
    return SimulatedJudge({r["text"]: 20.0 * STRENGTH[r["candidate_id"]] for r in rows}, judge_id="sim")


def test_judge_votes_on_the_humans_pairs_in_their_order(voted):
    store, rows = voted
    run = judge_votes(store, judge(rows))
    assert (run.name, run.votes, run.remaining, run.paid_calls) == ("judge:sim", 4, 0, 4)
    mine = [v for v in store.votes() if v["annotator"] == "judge:sim"]
    assert [(v["context_id"], v["left_id"], v["right_id"]) for v in mine] == [
        ("p1", "m0", "m1"), ("p1", "m3", "m2"), ("p2", "m1", "m3"), ("p3", "m2", "m0")
    ]
    assert [v["outcome"] for v in mine] == ["left", "right", "left", "right"]  # a near-certain judge
    # Kept out of the leaderboard's comparisons; agreement with the human is 1 on the 4 shared pairs.
    assert len(to_comparisons(store.votes(), [f"m{i}" for i in range(4)])) == 5
    stats = {a["annotator"]: a for a in annotator_stats(store.votes())["annotators"]}
    assert stats["judge:sim"]["agreement"] == 1.0 and stats["judge:sim"]["agreement_n"] == 4  # latest vote per pair
    again = judge_votes(store, judge(rows))
    assert (again.votes, again.paid_calls) == (0, 0)


def test_limit_budget_and_cache(voted):
    store, rows = voted
    first = judge_votes(store, judge(rows), limit=1)
    assert (first.votes, first.remaining) == (1, 3)
    capped = judge_votes(store, judge(rows), budget=2)
    assert (capped.votes, capped.paid_calls, capped.remaining) == (2, 2, 1)


def test_cli_judge_reports_agreement(voted, tmp_path):
    store, rows = voted
    config = tmp_path / "judge.json"
    config.write_text(json.dumps({"type": "simulated", "strengths": {k: 20 * v for k, v in STRENGTH.items()},
                                  "judge_id": "sim"}))
    res = CliRunner().invoke(app, ["arena", "judge", "--db", store.path, "--judge", str(config)])
    assert res.exit_code == 0, res.output
    assert "judge:sim: 4 new votes" in res.output and "agreement with the humans 1.000" in res.output
