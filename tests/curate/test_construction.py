"""Construction rules against brute-force references."""

import itertools

import numpy as np
import pytest

from pairkit.curate import negclip_negative, rrm_augment, unified_reward_pairs, verified_pairs
from pairkit.errors import InputError


def test_negclip_swaps_two_different_words_of_one_kind():
    tokens = "the horse is eating the grass".split()
    tags = ["DET", "NOUN", "AUX", "VERB", "DET", "NOUN"]
    for seed in range(5):
        neg = negclip_negative(tokens, tags, seed=seed)
        assert neg == "the grass is eating the horse".split()
    assert negclip_negative(["a", "cat"], ["DET", "NOUN"]) is None
    with pytest.raises(InputError, match="one length"):
        negclip_negative(["a"], [])


def test_rrm_pairs_each_prompt_with_answers_written_for_another():
    rows = [{"prompt": f"p{i}", "chosen": f"w{i}", "rejected": f"l{i}"} for i in range(5)]
    out = rrm_augment(rows, seed=0)
    assert len(out) == 5 + 5 * 5
    new = out[5:]
    for r in new:
        i = int(r["prompt"][1:])
        if r["winner"] == "a":
            assert r["response_a"] in (f"w{i}", f"l{i}") and r["response_b"][1:] != str(i)
        else:
            assert r["winner"] == "tie" and {r["response_a"][0], r["response_b"][0]} == {"w", "l"}
            assert r["response_a"][1:] == r["response_b"][1:] != str(i)
    assert len(rrm_augment(rows, include_rejected=False, ties=False, seed=0)) == 5 + 5 * 2
    with pytest.raises(InputError, match="at least 2 rows"):
        rrm_augment(rows[:1])


def test_unified_reward_picks_the_largest_gap_between_a_winner_and_a_loser():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=40)
    group, first, second, won = [], [], [], []
    for gid in range(8):
        cands = np.arange(5 * gid, 5 * gid + 5)
        for a, b in rng.choice(cands, (4, 2)):
            if a != b:
                group.append(gid), first.append(a), second.append(b), won.append(rng.random() < 0.5)
    got = unified_reward_pairs(group, first, second, won, scores).set_index("group")
    g, a, b, w = map(np.asarray, (group, first, second, won))
    for gid in range(8):
        wins = set(np.where(w, a, b)[g == gid])
        losses = set(np.where(w, b, a)[g == gid])
        options = [(scores[c] - scores[r], c, r) for c in wins for r in losses if c != r]
        if not options:
            assert gid not in got.index
            continue
        _, c, r = max(options)
        assert (got.at[gid, "chosen"], got.at[gid, "rejected"]) == (c, r)


def test_verified_pairs_are_all_correct_incorrect_pairs_of_a_problem():
    group = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    correct = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1], bool)
    ref = sorted((i, j) for i, j in itertools.product(range(9), repeat=2)
                 if group[i] == group[j] and correct[i] and not correct[j])  # fmt: skip
    assert sorted(map(tuple, verified_pairs(group, correct).tolist())) == ref
    few = verified_pairs(group, correct, max_pairs=1, seed=0)
    assert len(few) == 2 and set(map(tuple, few.tolist())) <= set(ref)
    with pytest.raises(InputError, match="verifier's verdict"):
        verified_pairs(group, np.arange(9))
