"""PairS-beam: beam-searched merges against a brute-force maximum-likelihood merge, greedy at beam 1."""

from __future__ import annotations

import asyncio
import itertools
import math

import numpy as np
import pytest

from pairkit.judges import CallableJudge
from pairkit.select import Pool, beam_merge, select
from pairkit.select.arena import Arena


def table_judge(prob: np.ndarray):
    """p(first beats second) from a table over answers "0", "1", …; antisymmetric, so the order shown is moot."""
    return CallableJudge(lambda c, x, y: float(prob[int(x), int(y)]), judge_id="table")


def random_table(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, (n, n))
    return np.triu(p, 1) + np.tril(1 - p.T, -1) + np.eye(n) * 0.5


def interleavings(left, right):
    n = len(left) + len(right)
    for where in itertools.combinations(range(n), len(left)):
        li, ri, out = iter(left), iter(right), []
        for k in range(n):
            out.append(next(li) if k in where else next(ri))
        yield out


def log_likelihood(merged, left, right, prob):
    """The merge path's log-likelihood: each step where both lists still have items is one judged choice."""
    ll, i, j = 0.0, 0, 0
    for x in merged:
        if i < len(left) and j < len(right):
            q = prob[left[i], right[j]]
            ll += math.log(q if x == left[i] else 1 - q)
        if i < len(left) and x == left[i]:
            i += 1
        else:
            j += 1
    return ll


def merge(prob, left, right, beam, prune=0.0):
    n = prob.shape[0]
    arena = Arena(table_judge(prob), Pool.single([str(i) for i in range(n)]), seed=0)
    out = asyncio.run(beam_merge(arena, 0, left, right, beam, prune))
    return out, len(arena.records)


@pytest.mark.parametrize("seed", range(12))
def test_a_wide_beam_finds_the_maximum_likelihood_merge(seed):
    prob = random_table(9, seed)
    rng = np.random.default_rng(seed)
    perm = [int(x) for x in rng.permutation(9)]
    left, right = perm[:4], perm[4:]
    got, _ = merge(prob, left, right, beam=50)
    best = max(interleavings(left, right), key=lambda m: log_likelihood(m, left, right, prob))
    assert log_likelihood(got, left, right, prob) == pytest.approx(log_likelihood(best, left, right, prob))
    assert sorted(got) == sorted(perm)


@pytest.mark.parametrize("seed", range(6))
def test_beam_one_is_the_greedy_merge(seed):
    prob = random_table(8, seed)
    left, right = [0, 2, 4, 6], [1, 3, 5, 7]
    got, calls = merge(prob, left, right, beam=1)
    i, j, greedy = 0, 0, []
    while i < 4 and j < 4:
        if prob[left[i], right[j]] > 0.5:
            greedy.append(left[i])
            i += 1
        else:
            greedy.append(right[j])
            j += 1
    assert got == greedy + left[i:] + right[j:] and calls == i + j


def test_pairs_beam_sorts_with_an_exact_judge_within_its_bound():
    n = 13
    values = np.random.default_rng(3).permutation(n)
    pool = Pool.single({f"m{i}": f"answer {v}" for i, v in enumerate(values)}, context="q")
    judge = CallableJudge(lambda c, x, y: 0.8 if int(x.split()[-1]) > int(y.split()[-1]) else 0.2, judge_id="soft")
    sel = select("pairs_beam", judge, pool, beam=3, seed=1)
    assert sel.ranking == list(np.argsort(-values))
    assert sel.calls <= 3 * n * math.ceil(math.log2(n))
    with pytest.raises(ValueError, match="beam must be an integer >= 1, got 0"):
        select("pairs_beam", judge, pool, beam=0)


def test_sure_comparisons_do_not_branch():
    """With hard verdicts (p = 0 or 1) the uncertainty-guided beam judges exactly the greedy merge's pairs."""
    prob = (random_table(8, 5) > 0.5).astype(float)
    np.fill_diagonal(prob, 0.5)
    left, right = [0, 2, 4, 6], [1, 3, 5, 7]
    assert merge(prob, left, right, beam=8, prune=0.1) == merge(prob, left, right, beam=1)
    unsure = np.where(prob == 1.0, 0.6, np.where(prob == 0.0, 0.4, 0.5))
    assert merge(unsure, left, right, beam=8, prune=0.1)[1] > merge(unsure, left, right, beam=1)[1]
