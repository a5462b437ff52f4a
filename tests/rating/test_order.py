"""Order advantage: home ice (icehockey), white (computer chess), answer position (Vicuna-80 human judgments)."""

import json
import re

import numpy as np
import pytest

from pairkit import read_comparisons
from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating.order import fit_order_advantage
from tests.rating._reference import (
    davidson_neg_loglik,
    logistic_reference,
    maximise,
    rao_kupper_neg_loglik,
    split_outcomes,
)
from tests.shared_data import SHARED_DATA, shared_path


def icehockey():
    """Visitor against opponent; ``home.ice`` = the opponent played at home, otherwise a neutral rink."""
    raw = read_comparisons(
        shared_path("sports", "icehockey.csv"), a="visitor", b="opponent", outcome="result", a_first="home.ice"
    )
    home = raw.a_first.copy()  # True: b (the opponent) at home
    comps = Comparisons.from_arrays(raw.a, raw.b, raw.outcome, items=raw.items, a_first=~home)
    return comps, ~home


def read_vicuna80(directory):
    """Vicuna-80 human judgments: files ``answer_X-vs-answer_Y-…``; score 1 = X won, 2 = Y won, 3 = tie.

    X is the answer shown first; the question id is the cluster.
    """
    a, b, y, q = [], [], [], []
    for path in sorted(directory.glob("answer_*-vs-answer_*.jsonl")):
        m = re.match(r"answer_(.+)-vs-answer_(.+?)-human", path.name)
        if m is None:
            raise InputError(f"{path}: file name is not answer_X-vs-answer_Y-...")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            a.append(m.group(1))
            b.append(m.group(2))
            y.append({1: 1.0, 2: 0.0, 3: 0.5}[row["score"]])
            q.append(row["question_id"])
    return Comparisons.from_arrays(np.array(a), np.array(b), y, cluster=q, a_first=np.ones(len(a), bool))


def test_icehockey_home_advantage_matches_logistic_regression():
    comps, neutral = icehockey()
    lb = fit_order_advantage(comps, neutral=neutral, intervals="fisher")
    x = np.where(neutral, 0.0, np.where(comps.a_first, 1.0, -1.0))
    theta, coef = logistic_reference(comps, x[:, None])
    np.testing.assert_allclose(lb.log_strength, theta, atol=1e-5)
    assert lb.params["order_advantage"] == pytest.approx(coef[0], abs=1e-5)
    assert lb.params["order_advantage"] > 0  # home ice helps
    lo, hi = lb.param_intervals["order_advantage"]
    assert lo > 0 and hi > lb.params["order_advantage"]


def test_icehockey_davidson_and_rao_kupper_with_home_vs_scipy():
    comps, neutral = icehockey()
    n = comps.n_items
    x = np.where(neutral, 0.0, np.where(comps.a_first, 1.0, -1.0))
    wa, wb, t = split_outcomes(comps)
    lb = fit_order_advantage(comps, ties="davidson", neutral=neutral)
    p = maximise(lambda v: davidson_neg_loglik(v, comps.a, comps.b, wa, wb, t, x), np.zeros(n + 2))
    np.testing.assert_allclose(lb.log_strength, p[:n] - p[:n].mean(), atol=1e-5)
    assert lb.params["tie_nu"] == pytest.approx(np.exp(p[n]), abs=1e-5)
    assert lb.params["order_advantage"] == pytest.approx(p[n + 1], abs=1e-5)
    lb = fit_order_advantage(comps, ties="rao_kupper", neutral=neutral)
    p = maximise(lambda v: rao_kupper_neg_loglik(v, comps.a, comps.b, wa, wb, t, x), np.r_[np.zeros(n), -1.0, 0.0])
    np.testing.assert_allclose(lb.log_strength, p[:n] - p[:n].mean(), atol=1e-5)
    assert lb.params["tie_theta"] == pytest.approx(1 + np.exp(p[n]), abs=1e-5)
    assert lb.params["order_advantage"] == pytest.approx(p[n + 1], abs=1e-5)


def test_computer_chess_white_advantage_with_draws():
    comps = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    assert comps.a_first is not None and comps.a_first.all()
    lb = fit_order_advantage(comps, ties="davidson")
    n = comps.n_items
    wa, wb, t = split_outcomes(comps)
    p = maximise(lambda v: davidson_neg_loglik(v, comps.a, comps.b, wa, wb, t, np.ones(len(comps))), np.zeros(n + 2))
    np.testing.assert_allclose(lb.log_strength, p[:n] - p[:n].mean(), atol=1e-5)
    assert lb.params["order_advantage"] == pytest.approx(p[n + 1], abs=1e-5)
    assert lb.params["order_advantage_elo"] > 0  # white moves first
    p_win, p_tie = lb.predict(lb.items[0], lb.items[1], a_first=True)
    q_win, _ = lb.predict(lb.items[0], lb.items[1], a_first=False)
    assert p_win[0] > q_win[0]


def test_vicuna80_position_effect_matches_logistic_regression():
    directory = SHARED_DATA / "llm_judgments" / "vicuna80_human"
    shared_path("llm_judgments", "vicuna80_human")
    comps = read_vicuna80(directory)
    assert len(comps) == 7040 and comps.n_items == 9
    lb = fit_order_advantage(comps)  # clusters given: sandwich intervals by question
    assert lb.interval_method == "sandwich"
    theta, coef = logistic_reference(comps, np.ones((len(comps), 1)))
    np.testing.assert_allclose(lb.log_strength, theta, atol=1e-5)
    assert lb.params["order_advantage"] == pytest.approx(coef[0], abs=1e-5)


def test_missing_order_flag_is_an_input_error():
    c = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [1, 0, 1])
    with pytest.raises(InputError, match="a_first"):
        fit_order_advantage(c)
