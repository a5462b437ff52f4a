"""Judgment, CallableJudge and SimulatedJudge."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats

from pairkit.errors import InputError
from pairkit.judges import CallableJudge, JudgeError, Judgment, Request, SimulatedJudge, simulated_probabilities


@given(st.floats(0, 1), st.floats(0, 1))
def test_swapped_twice_is_identity_and_scores_complement(p, t):
    p_a, p_tie = p * (1 - t), t
    j = Judgment(p_a=p_a, p_tie=p_tie)
    back = j.swapped().swapped()
    assert back.p_a == pytest.approx(j.p_a, abs=1e-12) and back.p_tie == j.p_tie and back.order == j.order
    assert j.swapped().score == pytest.approx(1 - j.score)
    assert j.swapped().order == "ba"


def test_judgment_rejects_bad_probabilities():
    with pytest.raises(InputError, match="p_a"):
        Judgment(p_a=0.8, p_tie=0.5)
    with pytest.raises(InputError, match="order"):
        Request("c", "x", "y", order="xy")


def test_callable_sees_shown_order_and_answers_in_a_terms():
    seen = []

    def first_always_wins(context, first, second):
        seen.append((first, second))
        return True

    judge = CallableJudge(first_always_wins)
    assert judge.judge("q", "x", "y").p_a == 1.0
    back = judge.judge("q", "x", "y", order="ba")
    assert back.p_a == 0.0 and back.order == "ba" and back.first_score == 1.0
    assert seen == [("x", "y"), ("y", "x")]
    assert judge.usage.calls == 2


def test_callable_async_tuple_and_errors():
    async def fn(context, first, second):
        await asyncio.sleep(0)
        return (0.25, 0.5)

    j = CallableJudge(fn).judge("q", "x", "y", order="ba")
    assert (j.p_a, j.p_tie) == (0.25, 0.5)  # p_first = 0.25 for y, p_second = 0.25 for x
    with pytest.raises(InputError, match="returned"):
        CallableJudge(lambda c, a, b: "yes").judge("q", "x", "y")
    with pytest.raises(InputError, match=r"probability in \[0, 1\]"):
        CallableJudge(lambda c, a, b: 2.0).judge("q", "x", "y")


def test_sync_api_inside_event_loop_is_refused():
    judge = CallableJudge(lambda c, a, b: 1.0)

    async def inner():
        judge.judge("q", "x", "y")

    with pytest.raises(JudgeError, match="await"):
        asyncio.run(inner())


def test_simulated_probabilities_closed_forms():
    d = np.array([-1.0, 0.0, 2.0])
    p, t = simulated_probabilities(d, model="bt", tie_margin=0.5)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(d - 0.5))), rtol=1e-12)
    np.testing.assert_allclose(t, 1 - p - 1 / (1 + np.exp(d + 0.5)), rtol=1e-12)
    p, t = simulated_probabilities(d, model="thurstone")
    np.testing.assert_allclose(p, stats.norm.cdf(d), rtol=1e-12)
    np.testing.assert_allclose(t, 0, atol=1e-12)
    with pytest.raises(InputError, match="model"):
        simulated_probabilities(d, model="elo")


def test_simulated_judge_frequencies_match_model():
    judge = SimulatedJudge({"x": 0.7, "y": 0.0}, tie_margin=0.4, position_bias=0.3, seed=1)
    reqs = [Request("q", "x", "y", "ba", sample=s) for s in range(4000)]
    js = judge.judge_many(reqs)
    # b="y" shown first: d = θ_y − θ_x + β = −0.4
    p_first, p_tie = special.expit(-0.4 - 0.4), 1 - special.expit(-0.8) - special.expit(0.4 - 0.4)
    wins_y = np.mean([j.p_a == 0 and j.p_tie == 0 for j in js])
    ties = np.mean([j.p_tie == 1 for j in js])
    se = np.sqrt(0.25 / 4000)
    assert abs(wins_y - p_first) < 4 * se and abs(ties - p_tie) < 4 * se
    soft = SimulatedJudge({"x": 0.7, "y": 0.0}, soft=True).judge("q", "x", "y")
    assert soft.p_a == pytest.approx(special.expit(0.7))
    with pytest.raises(InputError, match="no true strength"):
        judge.judge("q", "x", "zzz")
