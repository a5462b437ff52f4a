"""Counting rankings against obvious loops, closed forms and PRD's vicuna80 human judgments."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating.counting import (
    borda_scores,
    copeland_scores,
    duot5_scores,
    enhanced_borda_scores,
    fit_borda,
    fit_copeland,
    fit_duot5,
    fit_enhanced_borda,
    fit_peer_rank,
    fit_win_rate,
    peer_rank,
    transitive_closure,
    wilson_interval,
)
from tests.shared_data import shared_path


def random_comparisons(seed, n=7, m=80, ties=0.2, weights=False):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    outcome = rng.choice([0.0, 1.0], m)
    outcome[rng.random(m) < ties] = 0.5
    w = rng.uniform(0.5, 2.0, m) if weights else None
    return Comparisons.from_arrays(a, b, outcome, weight=w, items=[f"i{k}" for k in range(n)])


def pair_fractions_loop(data: Comparisons) -> dict[tuple[int, int], float]:
    """p̂[i, j] for every compared ordered pair, by a plain loop."""
    won: dict[tuple[int, int], float] = {}
    games: dict[tuple[int, int], float] = {}
    for a, b, o, w in zip(data.a.tolist(), data.b.tolist(), data.outcome.tolist(), data.weight.tolist(), strict=True):
        for x, y, s in ((a, b, o), (b, a, 1 - o)):
            won[x, y] = won.get((x, y), 0.0) + w * s
            games[x, y] = games.get((x, y), 0.0) + w
    return {k: won[k] / games[k] for k in games}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), weights=st.booleans())
def test_win_rate_borda_copeland_equal_loops(seed, weights):
    data = random_comparisons(seed, weights=weights)
    n = data.n_items
    p = pair_fractions_loop(data)
    borda = np.zeros(n)
    copeland = np.zeros(n)
    opponents = np.zeros(n)
    for (i, _j), frac in p.items():
        borda[i] += frac
        copeland[i] += (frac > 0.5) - (frac < 0.5)
        opponents[i] += 1
    np.testing.assert_allclose(borda_scores(data), borda, atol=1e-12)
    np.testing.assert_allclose(borda_scores(data, average=True), borda / opponents, atol=1e-12)
    np.testing.assert_allclose(copeland_scores(data), copeland, atol=1e-12)
    wins, games = np.zeros(n), np.zeros(n)
    for a, b, o, w in zip(data.a, data.b, data.outcome, data.weight, strict=True):
        wins[a] += w * o
        wins[b] += w * (1 - o)
        games[a] += w
        games[b] += w
    board = fit_win_rate(data)
    np.testing.assert_allclose(board.log_strength, wins / games, atol=1e-12)
    assert np.all(board.ci_low <= board.log_strength) and np.all(board.log_strength <= board.ci_high)
    assert fit_borda(data).model == "borda" and fit_copeland(data).predictor is None


def test_wilson_interval_known_values():
    low, high = wilson_interval(np.array([8.0, 0.0]), np.array([10.0, 10.0]))
    np.testing.assert_allclose([low[0], high[0]], [0.4901624, 0.9433178], atol=1e-6)  # Wilson (1927), 8/10
    assert low[1] == 0.0 and high[1] == pytest.approx(0.2775328, abs=1e-6)
    # Coverage limit: the interval is the set of p whose score test does not reject.
    z = stats.norm.ppf(0.975)
    for bound in (low[0], high[0]):
        assert abs(0.8 - bound) / np.sqrt(bound * (1 - bound) / 10) == pytest.approx(z, rel=1e-9)


def test_duot5_symmetric_sum_equals_loop_and_respects_order():
    rng = np.random.default_rng(0)
    n = 6
    probs = rng.random((n, n))
    probs[1, 4] = np.nan  # one ordered pair missing
    ref = np.zeros(n)
    for i, j in itertools.permutations(range(n), 2):
        if not np.isnan(probs[i, j]):
            ref[i] += probs[i, j]
        if not np.isnan(probs[j, i]):
            ref[i] += 1 - probs[j, i]
    np.testing.assert_allclose(duot5_scores(probs), ref, atol=1e-12)
    # The same judgments as comparisons, half of them written from the other side with a_first=False.
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2) if not np.isnan(probs[i, j])]
    flip = np.arange(len(pairs)) % 2 == 1
    a = np.array([j if f else i for (i, j), f in zip(pairs, flip, strict=True)])
    b = np.array([i if f else j for (i, j), f in zip(pairs, flip, strict=True)])
    out = np.array([1 - probs[i, j] if f else probs[i, j] for (i, j), f in zip(pairs, flip, strict=True)])
    data = Comparisons.from_arrays(a, b, out, a_first=~flip)
    np.testing.assert_allclose(fit_duot5(data).log_strength, ref, atol=1e-12)
    with pytest.raises(InputError, match="square"):
        duot5_scores(np.ones((2, 3)))


def test_enhanced_borda_closure_equals_naive_warshall():
    rng = np.random.default_rng(1)
    for _ in range(5):
        adj = rng.random((9, 9)) < 0.15
        np.fill_diagonal(adj, False)
        reach = adj.copy()
        for k in range(9):
            for i in range(9):
                for j in range(9):
                    reach[i, j] = reach[i, j] or (reach[i, k] and reach[k, j])
        np.fill_diagonal(reach, False)
        np.testing.assert_array_equal(transitive_closure(adj.astype(float)), reach)


def test_enhanced_borda_fills_in_uncompared_pairs():
    # a ≻ b ≻ c ≻ d, d ~ e and e ~ a tied (no majority, no edge): transitivity ranks a above c and d.
    data = Comparisons.from_arrays(["a", "b", "c", "d", "e"], ["b", "c", "d", "e", "a"], [1.0, 1.0, 1.0, 0.5, 0.5])
    scores = dict(zip(data.items, enhanced_borda_scores(data), strict=True))
    assert scores == {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.0, "e": 0.0}
    assert list(fit_enhanced_borda(data).to_pandas()["item"][:3]) == ["a", "b", "c"]
    plain = dict(zip(data.items, borda_scores(data), strict=True))
    assert plain["b"] == plain["c"] == 1.0  # plain Borda cannot separate b from c; the closure can


def peer_rank_loop(data: Comparisons, reviewers, iterations):
    """PRD Peer Rank written out with dictionaries, for a fixed number of iterations."""
    names = list(data.items)
    weight = {r: 1.0 / len(set(reviewers)) for r in set(reviewers)}
    scores = {}
    for _ in range(iterations):
        won = dict.fromkeys(names, 0.0)
        total = dict.fromkeys(names, 0.0)
        for a, b, o, v, r in zip(data.a, data.b, data.outcome, data.weight, reviewers, strict=True):
            won[names[a]] += weight[r] * v * o
            won[names[b]] += weight[r] * v * (1 - o)
            total[names[a]] += weight[r] * v
            total[names[b]] += weight[r] * v
        scores = {k: won[k] / total[k] for k in names}
        mass = sum(scores[r] for r in weight)
        weight = {r: scores[r] / mass for r in weight}
    return np.array([scores[k] for k in names])


def vicuna80_human() -> Comparisons:
    a, b, outcome = [], [], []
    for path in sorted(shared_path("llm_judgments", "vicuna80_human").glob("*.jsonl")):
        first, second = path.name.split("-human-")[0].split("-vs-")
        for line in path.read_text().splitlines():
            score = json.loads(line)["score"]
            a.append(first.removeprefix("answer_"))
            b.append(second.removeprefix("answer_"))
            outcome.append({1: 1.0, 2: 0.0, 3: 0.5}[score])
    return Comparisons.from_arrays(np.array(a), np.array(b), np.array(outcome))


def test_peer_rank_equals_loop():
    data = random_comparisons(2, n=5, m=120)
    reviewers = np.random.default_rng(3).choice(["i0", "i2", "i4"], len(data))
    scores, weights, iterations = peer_rank(data, reviewers)
    np.testing.assert_allclose(scores, peer_rank_loop(data, reviewers, iterations), atol=1e-12)
    assert weights.sum() == pytest.approx(1.0) and weights[1] == 0 and weights[3] == 0
    # Excluding self-judgments equals giving those rows weight 0.
    own = (data.a == data.index(list(reviewers))) | (data.b == data.index(list(reviewers)))
    excluded, _, _ = peer_rank(data, reviewers, exclude_self=True)
    zeroed, _, _ = peer_rank(data.with_weights(np.where(own, 0.0, 1.0)), reviewers)
    np.testing.assert_allclose(excluded, zeroed, atol=1e-12)
    assert not np.allclose(excluded, scores)


def test_peer_rank_on_vicuna80_human_judgments():
    human = vicuna80_human()
    assert len(human) == 7040 and human.n_items == 9
    win_rate = fit_win_rate(human).log_strength
    n = len(human)
    models = np.array(human.items)
    # Every model reviews every pair with the humans' verdict: whatever the weights, Peer Rank is the win rate.
    same = Comparisons.from_arrays(
        np.tile(human.a, 9), np.tile(human.b, 9), np.tile(human.outcome, 9), items=human.items
    )
    board = fit_peer_rank(same, reviewers=np.repeat(models, n))
    np.testing.assert_allclose(board.log_strength, win_rate, atol=1e-12)
    # Reviewers that agree with the humans in proportion to their own quality (the premise of PRD): a model
    # keeps the human verdict with probability 0.2 + 0.8·(its human win rate), else votes at random.
    rng = np.random.default_rng(0)
    keep_prob = 0.2 + 0.8 * win_rate
    verdicts = []
    for r in range(9):
        keep = rng.random(n) < keep_prob[r]
        verdicts.append(np.where(keep, human.outcome, rng.choice([0.0, 1.0], n)))
    peers = Comparisons.from_arrays(
        np.tile(human.a, 9), np.tile(human.b, 9), np.concatenate(verdicts), items=human.items
    )
    board = fit_peer_rank(peers, reviewers=np.repeat(models, n))
    uniform = fit_win_rate(peers).log_strength
    weights = board.columns["reviewer_weight"]
    assert stats.spearmanr(weights, win_rate).statistic > 0.9  # strong contestants get the larger say
    assert weights.sum() == pytest.approx(1.0)
    # Weighting by peer rank moves the aggregate toward the human judgments.
    assert np.abs(board.log_strength - win_rate).sum() < np.abs(uniform - win_rate).sum()
    assert stats.spearmanr(board.log_strength, win_rate).statistic > 0.95
    assert board.to_pandas()["item"][0] == models[np.argmax(win_rate)]


def test_peer_rank_bad_input():
    data = random_comparisons(4, n=4, m=30)
    with pytest.raises(InputError, match="reviewers="):
        fit_peer_rank(data)
    with pytest.raises(InputError, match="not one of the items"):
        peer_rank(data, ["judge"] * len(data))
    with pytest.raises(InputError, match="one entry per comparison"):
        peer_rank(data, ["i0"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_scores_do_not_depend_on_which_side_is_written_first(seed):
    data = random_comparisons(seed)
    for score in (borda_scores, copeland_scores, enhanced_borda_scores):
        np.testing.assert_allclose(score(data.swapped()), score(data), atol=1e-12)
    np.testing.assert_allclose(fit_win_rate(data.swapped()).log_strength, fit_win_rate(data).log_strength, atol=1e-12)
    # A weight of 2 counts like a repeated row.
    doubled = Comparisons.from_arrays(
        np.concatenate([data.a, data.a]),
        np.concatenate([data.b, data.b]),
        np.concatenate([data.outcome, data.outcome]),
        items=data.items,
    )
    np.testing.assert_allclose(
        fit_win_rate(data.with_weights(np.full(len(data), 2.0))).ci_low, fit_win_rate(doubled).ci_low, atol=1e-12
    )


def test_leaderboards_serialise():
    data = random_comparisons(7)
    for fit in (fit_win_rate, fit_borda, fit_copeland, fit_duot5, fit_enhanced_borda):
        payload = json.loads(fit(data).to_json())
        assert len(payload["items"]) == data.n_items and payload["model"] == fit.__name__.removeprefix("fit_")
