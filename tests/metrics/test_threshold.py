"""OPIS against a brute-force loop over all ordered pairs and thresholds, and its closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairkit.errors import InputError
from pairkit.metrics import opis


def _opis_bruteforce(x, y, thresholds, epsilon=None):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(y)
    classes = sorted({c for c in y if sum(1 for v in y if v == c) >= 2})

    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0

    total = 0.0
    for t in thresholds:
        counts = {}
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                same, accept = y[i] == y[j], float(x[i] @ x[j]) >= t
                c = counts.setdefault(y[i], [0, 0, 0])
                c[0] += same and accept
                c[1] += (not same) and accept
                c[2] += same and not accept
        overall = f1(*(sum(v[k] for v in counts.values()) for k in range(3)))
        if epsilon is None:
            total += sum((f1(*counts[c]) - overall) ** 2 for c in classes) / len(classes)
        else:  # the best and the worst ceil(eps * T) classes at this threshold
            utilities = sorted(f1(*counts[c]) for c in classes)
            k = max(1, math.ceil(epsilon * len(classes)))
            total += (sum(utilities[-k:]) / k - sum(utilities[:k]) / k) ** 2
    return total / len(thresholds)


def test_opis_matches_bruteforce_on_given_thresholds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 4))
    y = rng.integers(0, 5, size=23)
    thresholds = [-0.3, 0.0, 0.1, 0.45, 0.8]
    want = _opis_bruteforce(x, y, thresholds)
    assert want > 0
    assert opis(x, y, thresholds=thresholds) == pytest.approx(want, rel=1e-12)
    assert opis(x, y, thresholds=thresholds, chunk_size=4) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("epsilon", [0.05, 0.2, 0.25, 0.5])
def test_epsilon_opis_matches_bruteforce(epsilon):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4))
    y = rng.integers(0, 8, size=30)
    thresholds = [-0.2, 0.1, 0.3, 0.6]
    want = _opis_bruteforce(x, y, thresholds, epsilon)
    assert want > 0
    assert opis(x, y, thresholds=thresholds, epsilon=epsilon, chunk_size=7) == pytest.approx(want, rel=1e-12)


def test_epsilon_opis_closed_forms_and_refusals():
    tight = np.array([[1.0, 0.01], [1.0, -0.01], [-1.0, 0.01], [-1.0, -0.01]])
    assert opis(tight, [0, 0, 1, 1], thresholds=[0.0, 0.5], epsilon=0.5) == 0.0  # interchangeable classes
    # one class accepts its pair at t = 0.5 (F1 = 1), the other does not (F1 = 0): the gap is 1
    spread = np.array([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -3.0]])
    assert opis(spread, [0, 0, 1, 1], thresholds=[0.5], epsilon=0.5) == pytest.approx(1.0)
    for bad in (0.0, 0.6, True, "0.1"):
        with pytest.raises(InputError, match="epsilon"):
            opis(spread, [0, 0, 1, 1], thresholds=[0.5], epsilon=bad)


def test_opis_far_range_selects_the_grid_points_by_overall_false_accept_rate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = np.arange(40) % 4
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = z @ z.T
    negatives = sims[y[:, None] != y[None, :]]
    grid = np.linspace(-1, 1, 201)
    far = np.array([(negatives >= t).mean() for t in grid])
    chosen = grid[(far >= 0.05) & (far <= 0.5)]
    assert opis(x, y, far_range=(0.05, 0.5), num_thresholds=200) == pytest.approx(
        _opis_bruteforce(x, y, chosen), rel=1e-12
    )


def test_opis_is_zero_for_interchangeable_classes_and_positive_for_unequal_spreads():
    tight = np.array([[1.0, 0.01], [1.0, -0.01], [-1.0, 0.01], [-1.0, -0.01]])
    assert opis(tight, [0, 0, 1, 1], thresholds=np.linspace(-0.9, 0.9, 7)) == pytest.approx(0.0, abs=1e-15)
    unequal = np.array([[1.0, 0.01], [1.0, -0.01], [-1.0, 1.0], [-1.0, -1.0]])
    assert opis(unequal, [0, 0, 1, 1], thresholds=[0.5]) > 0.1


def test_opis_refuses_what_it_cannot_score():
    x = np.eye(3)
    with pytest.raises(InputError, match="two samples"):
        opis(x, [0, 1, 2], thresholds=[0.5])
    with pytest.raises(InputError, match="far_range"):
        opis(x, [0, 0, 1], far_range=(0.5, 0.4))
    with pytest.raises(InputError, match="row 1 is zero"):
        opis(np.array([[1.0, 0.0], [0.0, 0.0]]), [0, 0], thresholds=[0.1])
