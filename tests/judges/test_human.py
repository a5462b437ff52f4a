"""HumanJudge with injected streams: keys, order handling, undo, quit."""

from __future__ import annotations

import io

import pytest

from pairkit.judges import JudgeError, Request
from pairkit.judges.human import HumanJudge


def test_keys_orders_and_undo():
    keys = io.StringIO("1\nx\n2\nu\nt\n=\nq\n")
    shown = io.StringIO()
    judge = HumanJudge(input=keys, output=shown)
    first = judge.judge("which?", "alpha", "beta")
    assert first.p_a == 1.0 and first.verdict == "A"
    second = judge.judge("which?", "alpha", "gamma", order="ba")  # "x" is rejected, then "2": second (alpha) wins
    assert second.p_a == 1.0 and second.first_score == 0.0
    third = judge.judge("which?", "beta", "gamma")  # "u": redo the previous as a tie, then "=" for this one
    assert third.p_tie == 1.0
    assert judge.history[1].judgment.p_tie == 1.0 and len(judge.corrections) == 1
    assert judge.corrections[0][1].p_a == 1.0
    text = shown.getvalue()
    assert "unrecognised key 'x'" in text and "UNDO" in text and "[1] FIRST ANSWER:\ngamma" in text
    with pytest.raises(JudgeError, match="quit"):
        judge.judge("which?", "a", "b")
    with pytest.raises(JudgeError, match="input closed"):
        judge.judge("which?", "a", "b")


def test_batch_is_asked_one_at_a_time():
    judge = HumanJudge(input=io.StringIO("1\n2\n1\n"), output=io.StringIO())
    out = judge.judge_many([Request("q", "a", "b"), Request("q", "c", "d"), Request("q", "e", "f")])
    assert [j.p_a for j in out] == [1.0, 0.0, 1.0]
