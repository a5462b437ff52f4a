"""Reweighting and sampling rules against slow, obvious references and exact probabilities."""

import itertools
import math

import numpy as np
import pytest

import pairkit.curate as curate
from pairkit.curate import (
    bpr_loss,
    curriculum_weights,
    delift_select,
    difference_sampling,
    dynamic_loss_weights,
    pld_sample,
    tas_balanced_batches,
)
from pairkit.errors import InputError


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes", "uniform"])
def test_dynamic_loss_weights_match_a_loop(strategy):
    losses = [2.0, 0.5, 3.5, 1.0, 2.5]
    delta, r = 0.8, 0.7
    lo, hi = min(losses), max(losses)
    g = []
    for x in losses:
        t = -delta + 2 * delta * (x - lo) / (hi - lo)  # maps [lo, hi] onto [-delta, delta]
        g.append({"linupper": min(t + delta, delta), "quadratic": 1 - t * t / delta**2, "extremes": abs(t),
                  "uniform": t}[strategy])  # fmt: skip
    e = [math.exp(v / r) for v in g]
    ref = [len(e) * v / sum(e) for v in e]
    got = dynamic_loss_weights(losses, strategy=strategy, delta=delta, r=r)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert got.mean() == pytest.approx(1.0)
    with pytest.raises(InputError, match="strategy must be one of"):
        dynamic_loss_weights(losses, strategy="cubic")


def test_curriculum_weights_closed_form():
    d = np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(curriculum_weights(d, 0, end_step=100), d)
    np.testing.assert_allclose(curriculum_weights(d, 40, end_step=100), [0.4, 0.25 + 0.4 * 0.75, 1.0])
    np.testing.assert_allclose(curriculum_weights(d, 100, end_step=100), 1.0)
    with pytest.raises(InputError, match=r"difficulty must lie in \[0, 1\]"):
        curriculum_weights([1.5], 0, end_step=10)


def test_pld_picks_with_the_exact_resampling_probabilities():
    losses = np.array([0.2, 1.0, 2.5])
    k, tau, n_users = 2, 0.5, 30_000
    exact = np.zeros(3)
    for draw in itertools.product(range(3), repeat=k):  # c^k equally likely candidate draws
        w = np.array([math.exp(-losses[i] / tau) for i in draw])
        for pos, i in enumerate(draw):
            exact[i] += w[pos] / w.sum() / 3**k
    users = np.repeat(np.arange(n_users), 3)[::-1]  # unsorted ids: rows are found by user, not by position
    row_losses = np.tile(losses, n_users)[::-1]
    picked = pld_sample(users, row_losses, k=k, tau=tau, seed=0)
    assert len(picked) == n_users and np.all(users[picked] == np.arange(n_users))
    freq = np.bincount(2 - picked % 3, minlength=3) / n_users  # reversed rows: position 2 - (row % 3)
    np.testing.assert_allclose(freq, exact, atol=4 * math.sqrt(0.25 / n_users))


def test_bpr_loss_is_minus_log_sigmoid():
    p, n = [2.0, -1.0, 30.0], [0.5, 1.0, -30.0]
    ref = [math.log1p(math.exp(-(a - b))) for a, b in zip(p, n)]  # -log sigmoid(x) = log(1 + e^-x)
    np.testing.assert_allclose(bpr_loss(p, n, reduction="none"), ref, rtol=1e-12)
    assert bpr_loss(p, n) == pytest.approx(np.mean(ref))


def test_tas_balanced_batches_follow_topic_and_margin_bins():
    topic = np.array([0, 0, 1, 1, 1])
    pair_query = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4])
    margin = np.array([0.0, 0.1, 5.0, 1.0, 2.0, 2.0, 0.0, 9.0, 9.5, 10.0, 3.0])
    batches = tas_balanced_batches(topic, pair_query, margin, batch_size=2, n_batches=20_000, n_bins=2, seed=1)
    t = topic[pair_query[batches]]
    assert np.all(t[:, 0] == t[:, 1]) and abs((t[:, 0] == 0).mean() - 0.5) < 0.02
    freq = np.bincount(batches.ravel(), minlength=len(margin)) / batches.size
    # exact: P(topic) * P(query | topic) * 1/|non-empty bins| * 1/|pairs in the bin|
    exact = np.array([0.5 * 0.5 * 0.5 * 0.5] * 2 + [0.5 * 0.5 * 0.5] + [0.5 * 0.5]
                     + [0.5 / 3 * 0.5] * 2 + [0.5 / 3 * 0.5] + [0.5 / 3 * 0.5 / 3] * 3 + [0.5 / 3])  # fmt: skip
    np.testing.assert_allclose(freq, exact, atol=0.006)


def test_difference_sampling_keeps_the_largest_teacher_minus_reference():
    t = np.array([-10.0, -5.0, -20.0, -8.0])
    r = np.array([-12.0, -4.0, -30.0, -8.0])
    assert list(difference_sampling(t, r, fraction=0.5)) == [2, 0]
    lengths = np.array([2, 1, 20, 1])
    assert list(difference_sampling(t, r, lengths, fraction=0.75, per_token=True)) == [0, 2, 3]
    with pytest.raises(InputError, match="needs lengths"):
        difference_sampling(t, r, per_token=True)


def test_delift_greedy_matches_a_loop_and_the_submodular_bound():
    rng = np.random.default_rng(4)
    u = rng.normal(0.2, 1.0, (8, 8))
    got = delift_select(u, budget=3)

    def value(subset):
        return sum(max([max(u[i, j], 0.0) for j in subset], default=0.0) for i in range(8))

    chosen = []
    for _ in range(3):
        chosen.append(max((j for j in range(8) if j not in chosen), key=lambda j: value(chosen + [j])))
    assert list(got) == chosen
    best = max(value(list(s)) for s in itertools.combinations(range(8), 3))
    assert value(list(got)) >= (1 - 1 / math.e) * best
    assert curate.spec("delift").family == "sampling"
