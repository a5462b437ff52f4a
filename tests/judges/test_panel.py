"""PanelJudge: pooled votes equal the Bayes posterior of the independent-voter model (brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pairkit.judges import CallableJudge, JudgeError, Judgment, PanelJudge, panel_reliability


def fixed(p, name, cost=0.0):
    return CallableJudge(lambda c, x, y: Judgment(p_a=p, cost=cost), judge_id=name, priced=cost > 0)


def brute_posterior(votes, q):
    """P(a better | votes) by enumerating the truth: each judge right with probability q_k; ties say nothing."""
    like = {}
    for truth in (1, -1):
        like[truth] = np.prod([qk if v == truth else (1 - qk) if v == -truth else 1.0 for v, qk in zip(votes, q)])
    return like[1] / (like[1] + like[-1])


@pytest.mark.parametrize("votes", list(itertools.product((1.0, 0.0, 0.5), repeat=3)))
def test_pooled_probability_is_the_bayes_posterior(votes):
    q = [0.9, 0.6, 0.7]
    panel = PanelJudge([fixed(v, f"j{k}") for k, v in enumerate(votes)], q)
    signs = [1 if v > 0.5 else -1 if v < 0.5 else 0 for v in votes]
    j = panel.judge("q", "x", "y")
    assert j.p_a == pytest.approx(brute_posterior(signs, q))
    # these judges answer for whichever answer is shown first: shown the other way round, they vote for y
    assert panel.judge("q", "x", "y", order="ba").p_a == pytest.approx(1 - brute_posterior(signs, q))


def test_a_reliable_judge_outvotes_two_weak_ones_and_costs_add_up():
    panel = PanelJudge([fixed(1.0, "strong", 0.5), fixed(0.0, "weak1", 0.1), fixed(0.0, "weak2", 0.1)],
                       [0.95, 0.6, 0.6])  # fmt: skip
    j = panel.judge("q", "x", "y")
    assert j.p_a > 0.5 and j.cost == pytest.approx(0.7) and j.n_calls == 3 and panel.priced
    assert PanelJudge([fixed(1.0, "a"), fixed(0.0, "b"), fixed(0.0, "c")]).judge("q", "x", "y").p_a < 0.5  # majority


def test_reliability_from_human_labels_is_smoothed_agreement():
    votes = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, np.nan], [1.0, 0.5], [0.0, 0.0]])
    labels = np.array([1.0, 1.0, 1.0, 0.5, 0.0])
    # judge 0: decisive on rows 1, 2, 3, 5 (row 4's label is a tie), right on 1, 2, 5 → (3 + 1) / (4 + 2);
    # judge 1: decisive on rows 1, 2, 5, right on 2 and 5 → (2 + 1) / (3 + 2)
    np.testing.assert_allclose(panel_reliability(votes, labels), [4 / 6, 3 / 5])
    with pytest.raises(Exception, match="shapes"):
        panel_reliability(votes, labels[:2])


def test_a_failing_member_fails_the_panel_with_what_was_paid():
    def broken(c, x, y):
        raise JudgeError("down")

    panel = PanelJudge([fixed(1.0, "ok", 0.25), CallableJudge(broken, judge_id="broken")])
    with pytest.raises(JudgeError, match="down") as info:
        panel.judge("q", "x", "y")
    assert info.value.cost == pytest.approx(0.25)
    with pytest.raises(Exception, match="at least 2"):
        PanelJudge([fixed(1.0, "a")])
    with pytest.raises(Exception, match="reliability"):
        PanelJudge([fixed(1.0, "a"), fixed(1.0, "b")], [1.0, 0.5])
