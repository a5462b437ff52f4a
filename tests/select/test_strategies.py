"""Selection strategies against exact answers from a noiseless judge, budgets, policies, export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.errors import InputError
from pairkit.judges import CachedJudge, CallableJudge, JudgmentCache, SimulatedJudge
from pairkit.select import Pool, apply_length_rule, select, simulate


def exact_pool(n: int, seed: int = 0):
    """Answers whose quality is the number in their text; the judge compares the numbers exactly."""
    values = np.random.default_rng(seed).permutation(n)
    pool = Pool.single({f"m{i}": f"answer of quality {v}" for i, v in enumerate(values)}, context="q")
    judge = CallableJudge(lambda c, x, y: float(int(x.split()[-1]) > int(y.split()[-1])), judge_id="exact")
    return pool, judge, values


@pytest.mark.parametrize("n", [2, 7, 16])
def test_knockout_finds_the_best_with_n_minus_1_calls(n):
    pool, judge, values = exact_pool(n)
    sel = select("knockout", judge, pool)
    assert sel.winner == int(np.argmax(values)) and sel.calls == n - 1


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 40), st.integers(0, 10_000))
def test_merge_sort_sorts_and_stays_within_n_log_n(n, seed):
    pool, judge, values = exact_pool(n, seed)
    sel = select("merge_sort", judge, pool, seed=seed)
    assert sel.ranking == list(np.argsort(-values))
    assert sel.calls <= n * math.ceil(math.log2(n))


@pytest.mark.parametrize("strategy", ["heap_topk", "sliding_topk"])
def test_topk_strategies_return_the_exact_top_k(strategy):
    pool, judge, values = exact_pool(30, seed=3)
    sel = select(strategy, judge, pool, k=5, seed=1)
    assert sel.ranking == list(np.argsort(-values)[:5])
    if strategy == "sliding_topk":
        assert sel.calls <= sum(29 - p for p in range(5))  # repeated pairs are answered from memory


def test_round_robin_duo_and_swiss():
    pool, judge, values = exact_pool(9)
    rr = select("round_robin", judge, pool)
    assert rr.calls == 36
    assert np.argsort(-rr.scores()).tolist() == np.argsort(-values).tolist()
    duo = select("duo_rerank", judge, pool, policy="both_average", shortlist=list(np.argsort(values)), depth=4)
    assert duo.ranking == list(np.argsort(values)[:4][::-1]) and duo.calls == 12
    sw = select("swiss", judge, pool, rounds=4)
    pairs = {(min(c[1], c[2]), max(c[1], c[2])) for c in sw.decisions}
    assert len(pairs) == len(sw.decisions) == 4 * 4  # no rematches, one bye per round


def test_budget_stops_cleanly_and_leaderboard_uses_everything():
    pool, judge, values = exact_pool(12)
    sel = select("active", judge, pool, budget=30)
    assert sel.stopped == "budget" and sel.calls == 30 and len(sel.decisions) == 30
    board = sel.leaderboard(prior=1.0)
    assert board.n_comparisons == 30


def test_active_stops_when_intervals_separate():
    strengths = {f"m{i}": 3.0 * i for i in range(5)}
    judge = SimulatedJudge(strengths, seed=0)
    sel = select("active", judge, Pool.single(list(strengths)), n_comparisons=3000, prior=0.5)
    assert sel.stopped == "separated" and sel.calls < 3000
    assert np.argsort(-sel.scores()).tolist() == [4, 3, 2, 1, 0]


def test_policies_and_position_stats():
    first_wins = CallableJudge(lambda c, x, y: 1.0, judge_id="first")
    pool = Pool.single(["a", "b", "c", "d"])
    both = select("round_robin", first_wins, pool, policy="both_average")
    assert both.calls == 12 and all(s == 0.5 for *_, s, _ in both.decisions)
    stats = both.position_stats()["first"]
    assert stats["flip_rate"] == 1.0 and stats["first_position_win_rate"] == 1.0
    conflict = select("round_robin", first_wins, pool, policy="both_conflict_tie")
    assert all(s == 0.5 for *_, s, _ in conflict.decisions)
    one = select("round_robin", first_wins, pool, policy="random")
    assert one.calls == 6 and np.isnan(one.position_stats()["first"]["flip_rate"])
    with pytest.raises(InputError, match="policy"):
        select("round_robin", first_wins, pool, policy="nope")
    with pytest.raises(InputError, match="no option"):
        select("round_robin", first_wins, pool, k=3)


def test_estimate_policy_recovers_the_position_bias():
    rng = np.random.default_rng(0)
    strengths = {f"m{i}": v for i, v in enumerate(rng.normal(0, 1, 8))}
    judge = SimulatedJudge(strengths, position_bias=0.8, seed=1)
    sel = select("round_robin", judge, Pool.single(list(strengths)), policy="estimate", repeats=40)
    board = sel.leaderboard()
    lo, hi = board.param_intervals["order_advantage"]
    assert lo < 0.8 < hi and hi - lo < 0.3
    truth = np.array(list(strengths.values()))
    assert np.corrcoef(board.log_strength, truth)[0, 1] > 0.95


def test_length_rule():
    assert apply_length_rule(0.6, 2000, 100, k_chars=500, narrow=0.25) == 0.5
    assert apply_length_rule(0.6, 100, 2000, k_chars=500, narrow=0.25) == 0.6  # the shorter won
    assert apply_length_rule(0.9, 2000, 100, k_chars=500, narrow=0.25) == 0.9  # a clear win stands
    assert apply_length_rule(0.4, 100, 2000, k_chars=500, narrow=0.25) == 0.5


def test_export_pairs_and_comparisons(tmp_path):
    pool, judge, values = exact_pool(5)
    sel = select("round_robin", judge, pool)
    n = sel.export_pairs(tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in open(tmp_path / "pairs.jsonl")]
    assert n == len(rows) == 10
    for row in rows:
        assert int(row["chosen"].split()[-1]) > int(row["rejected"].split()[-1]) and row["prompt"] == "q"
    comps = sel.comparisons()
    assert comps.items == pool.items and len(comps) == 10


def test_multi_context_pool_and_varco_arena():
    rows = [
        {"context_id": f"p{c}", "context": f"prompt {c}", "candidate_id": f"m{i}", "text": f"p{c} m{i} {i}"}
        for c in range(6)
        for i in range(4)
    ]
    pool = Pool.from_records(rows)
    judge = CallableJudge(lambda c, x, y: float(int(x.split()[-1]) > int(y.split()[-1])))
    sel = select("varco_arena", judge, pool)
    assert sel.calls == 6 * 3 and set(sel.winners.values()) == {3}
    assert int(np.argmax(sel.scores())) == 3
    with pytest.raises(InputError, match="row 2: missing 'text'"):
        Pool.from_records([rows[0], {"context_id": "x", "candidate_id": "y"}])


def test_resume_from_cache_repeats_no_call(tmp_path):
    pool, _, values = exact_pool(20)
    calls = []

    def fn(c, x, y):
        calls.append((x, y))
        return float(int(x.split()[-1]) > int(y.split()[-1]))

    cache = tmp_path / "c.sqlite"
    first = select("merge_sort", CallableJudge(fn, judge_id="f"), pool, cache=cache, budget=25, seed=3)
    assert first.stopped == "budget" and len(calls) == 25
    done = select("merge_sort", CachedJudge(CallableJudge(fn, judge_id="f"), JudgmentCache(cache)), pool, seed=3)
    assert done.ranking == list(np.argsort(-values))
    assert len(calls) == len(set(calls)) and len(calls) == done.calls


def test_simulate_reports_the_fields():
    out = simulate("knockout", n_items=16, seed=2, spread=3.0)
    assert out["calls"] == 15 and set(out) >= {"strategy", "calls", "kendall_tau", "top1_correct", "topk_accuracy"}
    rr = simulate("round_robin", n_items=8, seed=0, spread=5.0)
    assert rr["kendall_tau"] > 0.8


def test_each_round_goes_out_concurrently():
    import asyncio

    state = {"active": 0, "max": 0}

    async def slow(c, x, y):
        state["active"] += 1
        state["max"] = max(state["max"], state["active"])
        await asyncio.sleep(0.001)
        state["active"] -= 1
        return float(int(x.split()[-1]) > int(y.split()[-1]))

    pool, _, values = exact_pool(16)
    sel = select("knockout", CallableJudge(slow), pool)
    assert sel.winner == int(np.argmax(values)) and state["max"] == 8  # the first round's 8 matches at once


def test_dry_run_counts_calls_and_prices_them():
    from pairkit.judges import OpenAIJudge
    from pairkit.select import dry_run

    pool, _, _ = exact_pool(10)
    judge = OpenAIJudge("m", base_url="http://127.0.0.1:9", price=(1.0, 2.0), expected_output_tokens=100)
    out = dry_run("round_robin", judge, pool, policy="both_average")
    assert out["calls"] == 90
    one = judge.estimate_cost(pool_request(pool))
    assert out["estimated_cost"] == pytest.approx(90 * one, rel=0.05)
    assert judge.usage.calls == 0


def pool_request(pool):
    from pairkit.judges import Request

    return Request(pool.context_text[0], pool.text[0][0], pool.text[0][1])


def test_reuse_reversed_answers_the_other_order_from_cache():
    calls = []

    def fn(c, x, y):
        calls.append((x, y))
        return float(int(x.split()[-1]) > int(y.split()[-1]))

    pool, _, _ = exact_pool(6)
    cache = JudgmentCache()
    select("round_robin", CallableJudge(fn, judge_id="f"), pool, cache=cache, policy="random", seed=0)
    assert len(calls) == 15
    again = select(
        "round_robin", CallableJudge(fn, judge_id="f"), pool, cache=cache, policy="random", seed=99, reuse_reversed=True
    )
    assert len(calls) == 15 and again.info["usage"].cache_hits == 15
    with pytest.raises(InputError, match="reuse_reversed"):
        select("round_robin", CallableJudge(fn), pool, policy="both_average", reuse_reversed=True)


def test_soft_policies_differ_and_length_rule_applies_in_the_arena():
    # a probabilistic judge preferring the first answer: 0.8 shown first, so the two orders disagree
    soft_first = CallableJudge(lambda c, x, y: 0.8 if len(x) <= len(y) else 0.6, judge_id="soft")
    pool = Pool.single({"short": "s", "long": "l" * 900})
    avg = select("round_robin", soft_first, pool, policy="both_average")
    tie = select("round_robin", soft_first, pool, policy="both_conflict_tie")
    # short vs long: ab → p(short)=0.8; ba (long first) → p(long)=0.6, p(short)=0.4; mean 0.6
    assert avg.decisions[0][3] == pytest.approx(0.6) and tie.decisions[0][3] == 0.5
    longer_wins = CallableJudge(lambda c, x, y: 0.6 if len(x) > len(y) else 0.4, judge_id="lw")
    plain = select("round_robin", longer_wins, pool, policy="both_average")
    ruled = select("round_robin", longer_wins, pool, policy="both_average", length_rule=500)
    assert plain.decisions[0][3] == pytest.approx(0.4) and ruled.decisions[0][3] == 0.5


@pytest.mark.parametrize("rule", ["rank", "information", "ucb", "discordance"])
def test_active_rules_beat_chance_and_spend_the_budget(rule):
    out = simulate("active", n_items=12, seed=4, spread=3.0, budget=150, rule=rule)
    assert out["calls"] == 150 and out["stopped"] == "budget" and out["kendall_tau"] > 0.6
    with pytest.raises(InputError, match="rule"):
        simulate("active", n_items=6, budget=10, rule="greedy")


def test_discordance_gain_matches_a_slow_posterior_update():
    """Each candidate's score is D(Σ) − D(Σ'), Σ' = (Σ⁻¹ + w x xᵀ)⁻¹ by explicit inversion, D summed pair by pair."""
    from scipy.stats import norm

    from pairkit.select.strategies import _discordance_gain

    rng = np.random.default_rng(0)
    n = 6
    theta = rng.normal(0, 1, n)
    a = rng.normal(size=(n, n))
    cov = a @ a.T / n + 0.1 * np.eye(n)
    p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    d = np.diag(cov)
    var = d[:, None] + d[None, :] - 2 * cov
    rank = rng.random((n, n))
    got = _discordance_gain(theta, cov, p, var, rank, candidates=7)

    def expected_discordance(sigma):
        return sum(norm.cdf(-abs(theta[k] - theta[m]) / np.sqrt(sigma[k, k] + sigma[m, m] - 2 * sigma[k, m]))
                   for k in range(n) for m in range(k + 1, n))  # fmt: skip

    iu, ju = np.triu_indices(n, 1)
    chosen = set(np.argsort(-rank[iu, ju], kind="stable")[:7])
    for k, (i, j) in enumerate(zip(iu, ju)):
        if k not in chosen:
            assert got[i, j] == -np.inf
            continue
        x = np.zeros(n)
        x[i], x[j] = 1, -1
        w = p[i, j] * (1 - p[i, j])
        updated = np.linalg.inv(np.linalg.inv(cov) + w * np.outer(x, x))
        assert got[i, j] == pytest.approx(expected_discordance(cov) - expected_discordance(updated), rel=1e-9)
        assert got[i, j] > 0
    assert np.all(got[np.tril_indices(n)] == -np.inf)


def test_ucb_matchmaking_anchors_by_upper_bound_and_pairs_nearest():
    from pairkit.select.strategies import _ucb_matchmaking

    theta = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    ucb = theta + np.array([0.0, 5.0, 0.0, 0.0, 0.0])  # item 1 is uncertain: it plays first, against item 0
    assert _ucb_matchmaking(theta, ucb, 5) == [(4, 3), (1, 0)]
    assert _ucb_matchmaking(theta, ucb, 1) == [(4, 3)]
