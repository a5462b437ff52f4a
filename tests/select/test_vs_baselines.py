"""vs_baselines (WildBench's WB-Reward): every item against each baseline; rewards by hand."""

from __future__ import annotations

import pytest

from pairkit.errors import InputError
from pairkit.judges import CallableJudge, Judgment
from pairkit.select import Pool, select

LEVELS = {2: "A>>B", 1: "A>B", 0: "A=B", -1: "B>A", -2: "B>>A"}
SCORES = {"A>>B": 1.0, "A>B": 0.75, "A=B": 0.5, "B>A": 0.25, "B>>A": 0.0}


def graded(context, first, second):
    """Quality = the number ending the answer; a gap of 1 is a slight win, 2 or more a clear one."""
    gap = int(first.split()[-1]) - int(second.split()[-1])
    label = LEVELS[max(-2, min(2, gap))]
    return Judgment(p_a=0.0 if label == "A=B" else SCORES[label], p_tie=1.0 if label == "A=B" else 0.0, verdict=label)


def test_rewards_are_the_mean_of_the_five_levels_against_each_baseline():
    pool = Pool.from_records(
        [{"context_id": c, "candidate_id": m, "text": f"{'x' * length} {q}"}
         for c in ("p1", "p2") for m, q, length in (("base", 5, 1), ("good", 7, 1), ("close", 6, 1), ("long", 6, 900))]
    )  # fmt: skip
    sel = select("vs_baselines", CallableJudge(graded), pool, baselines=["base"], policy="both_average")
    assert sel.calls == 2 * 3 * 2  # 2 prompts × 3 items × both orders
    reward = sel.info["wb_reward"]
    assert reward["good"][0] == pytest.approx(1.0) and reward["close"][0] == pytest.approx(0.5)
    assert set(reward) == {"good", "close", "long"}
    # the length rule: "long" wins only slightly and is 900 characters longer → a tie
    ruled = select("vs_baselines", CallableJudge(graded), pool, baselines=[0], policy="both_average", length_rule=500)
    assert ruled.info["wb_reward"]["long"][0] == 0.0 and ruled.info["wb_reward"]["close"][0] == pytest.approx(0.5)
    mean, low, high, n = sel.info["wb_reward"]["close"]
    assert n == 2 and low <= mean <= high


def test_two_baselines_and_bad_baselines():
    pool = Pool.single({f"m{q}": f"answer {q}" for q in range(4)}, context="q")
    sel = select("vs_baselines", CallableJudge(graded), pool, baselines=[0, 3], policy="both_average")
    r = sel.info["wb_reward"]
    assert r["m1"][0] == pytest.approx((0.5 + (-1.0)) / 2)  # +½ vs m0 (slight), −1 vs m3 (clear)
    assert r["m3"][0] == pytest.approx(1.0) and r["m0"][0] == pytest.approx(-1.0)
    with pytest.raises(InputError, match="baselines"):
        select("vs_baselines", CallableJudge(graded), pool, baselines=[9])
