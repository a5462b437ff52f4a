"""Best–worst (MaxDiff) helpers: implied pairs against a loop reference; recovery under the maxdiff model."""

import numpy as np
import pytest
from scipy import stats

from pairkit.data import best_worst_comparisons, best_worst_scores
from pairkit.errors import InputError
from pairkit.rating import fit_bradley_terry


def slow_pairs(sets, best, worst):
    out = []
    for r, (s, b, w) in enumerate(zip(sets, best, worst, strict=True)):
        out += [(b, x, r) for x in s if x != b]
        out += [(x, w, r) for x in s if x not in (b, w)]
    return sorted(out)


def test_pairs_match_a_loop_reference():
    sets = [["a", "b", "c", "d"], ["b", "c"], ["d", "a", "e"]]
    best, worst = ["c", "b", "e"], ["a", "c", "d"]
    comps = best_worst_comparisons(sets, best, worst)
    names = np.asarray(comps.items)
    got = sorted(zip(names[comps.a], names[comps.b], comps.cluster.tolist(), strict=True))
    assert got == slow_pairs(sets, best, worst)
    assert np.all(comps.outcome == 1) and len(comps) == (2 * 4 - 3) + (2 * 2 - 3) + (2 * 3 - 3)


def test_maxdiff_model_recovered():
    """Answers drawn from the maxdiff model P(best=i, worst=j) ∝ π_i/π_j: BT on the implied pairs and the count
    scores both order the items like the truth."""
    rng = np.random.default_rng(0)
    n, answers = 8, 1500
    theta = np.linspace(1.5, -1.5, n)
    items = np.array([f"x{k}" for k in range(n)])
    sets, best, worst = [], [], []
    for _ in range(answers):
        s = rng.choice(n, 4, replace=False)
        logits = theta[s][:, None] - theta[s][None, :]
        np.fill_diagonal(logits, -np.inf)
        p = np.exp(logits - logits.max()).ravel()
        i, j = np.unravel_index(rng.choice(16, p=p / p.sum()), (4, 4))
        sets.append(list(items[s]))
        best.append(items[s[i]])
        worst.append(items[s[j]])
    board = fit_bradley_terry(best_worst_comparisons(sets, best, worst))
    fitted = board.log_strength[[board.items.index(x) for x in items]]
    assert stats.kendalltau(fitted, theta).statistic > 0.9
    scores = best_worst_scores(sets, best, worst).set_index("item").loc[items, "score"].to_numpy()
    assert stats.kendalltau(scores, theta).statistic > 0.9
    assert board.interval_method == "sandwich"  # 1,500 answers as clusters


def test_bad_answers_are_named():
    with pytest.raises(InputError, match="answer 2: best 'z' is not one of the items shown"):
        best_worst_comparisons([["a", "b"], ["a", "c"]], ["a", "z"], ["b", "c"])
    with pytest.raises(InputError, match="answer 1: best and worst must be two different"):
        best_worst_comparisons([["a", "b"]], ["a"], ["a"])
    with pytest.raises(InputError, match="shown twice"):
        best_worst_comparisons([["a", "a", "b"]], ["a"], ["b"])
    with pytest.raises(InputError, match="equal lengths"):
        best_worst_comparisons([["a", "b"]], ["a", "b"], ["b"])
