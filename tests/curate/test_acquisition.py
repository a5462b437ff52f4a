"""Active preference learning rules and dueling bandits against closed forms and brute-force references."""

import math

import numpy as np
import pytest

import pairkit.curate as curate
from pairkit.curate import (
    RUCB,
    DoubleThompson,
    active_preference_batch,
    predictive_entropy,
    preference_certainty,
)
from pairkit.errors import InputError


def test_predictive_entropy_estimates_the_entropy_of_a_known_policy():
    rng = np.random.default_rng(0)
    probs = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    samples = np.stack([rng.choice(3, 20_000, p=p) for p in probs])
    logps = np.log(np.take_along_axis(probs, samples, 1))
    exact = -(probs * np.log(probs)).sum(1)
    np.testing.assert_allclose(predictive_entropy(logps), exact, atol=0.02)
    mask = np.ones_like(logps, bool)
    mask[0, 10:] = False
    assert predictive_entropy(logps, mask=mask)[0] == pytest.approx(-logps[0, :10].mean())
    with pytest.raises(InputError, match="prompt 1 has no valid sample"):
        predictive_entropy(logps[:, :2], mask=np.array([[True, True], [False, False]]))


def test_preference_certainty_is_the_implicit_bradley_terry_margin():
    rng = np.random.default_rng(1)
    pa, ra, pb, rb = rng.normal(-20, 3, (4, 7))
    beta = 0.3
    ref = [abs(1 / (1 + math.exp(-beta * ((pa[i] - ra[i]) - (pb[i] - rb[i])))) - 0.5) for i in range(7)]
    np.testing.assert_allclose(preference_certainty(pa, ra, pb, rb, beta=beta), ref, rtol=1e-12)
    np.testing.assert_allclose(preference_certainty(pb, rb, pa, ra, beta=beta), ref, rtol=1e-12)  # symmetric
    with pytest.raises(InputError, match="beta must be"):
        preference_certainty(pa, ra, pb, rb, beta=0)
    with pytest.raises(InputError, match="one shape"):
        preference_certainty(pa, ra, pb[:3], rb, beta=0.1)


def test_hybrid_keeps_high_entropy_prompts_then_the_most_certain_pairs():
    rng = np.random.default_rng(2)
    h, c = rng.random(50), rng.random(50)
    got = active_preference_batch(h, c, n_prompts=20, n_pairs=5)
    top_h = sorted(range(50), key=lambda i: -h[i])[:20]
    assert list(got) == sorted(top_h, key=lambda i: -c[i])[:5]
    assert curate.get("active_preference_learning") is curate.get("apl_hybrid")
    with pytest.raises(InputError, match="n_pairs must be"):
        active_preference_batch(h, c, n_prompts=20, n_pairs=0)


def test_confidence_bounds_follow_the_rucb_formula():
    bandit = RUCB(3, alpha=0.6, seed=0)
    for i, j, o in [(0, 1, 1), (0, 1, 1), (1, 0, 1), (0, 2, 0.5), (2, 1, 0)]:
        bandit.update(i, j, o)
    upper, lower = bandit.bounds()
    t = 5
    assert upper[0, 1] == pytest.approx(2 / 3 + math.sqrt(0.6 * math.log(t) / 3))
    assert lower[1, 0] == pytest.approx(1 / 3 - math.sqrt(0.6 * math.log(t) / 3))
    assert upper[2, 0] == pytest.approx(0.5 + math.sqrt(0.6 * math.log(t) / 1))
    assert upper[1, 1] == 0.5 and bandit.wins[0, 2] == bandit.wins[2, 0] == 0.5
    with pytest.raises(InputError, match="two different indices"):
        bandit.update(1, 1, 1)


@pytest.mark.parametrize("cls", [RUCB, DoubleThompson])
def test_bandits_find_the_condorcet_winner_and_beat_uniform_duels(cls):
    rng = np.random.default_rng(3)
    theta = np.array([1.0, 0.6, 0.4, 0.2, 0.0, -0.3])  # arm 0 is the Condorcet winner
    p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    bandit = cls(len(theta), seed=4)
    regret = 0.0
    for _ in range(1500):
        i, j = bandit.select()
        assert i != j
        bandit.update(i, j, float(rng.random() < p[i, j]))
        regret += (p[0, i] + p[0, j] - 1) / 2  # average strong regret of the duel
    uniform = np.mean([(p[0, i] + p[0, j] - 1) / 2 for i in range(6) for j in range(6) if i != j]) * 1500
    # without self-duels the floor is the best challenger (arm 1): 1500 * 0.05 = 75 against 238 for uniform duels
    assert bandit.best() == 0 and regret < 0.65 * uniform


def test_registry_families_and_declared_options():
    assert set(curate.names("bandit")) == {"rucb", "double_thompson"}
    assert {"eubo", "predictive_entropy", "preference_certainty"} <= set(curate.names("acquisition"))
    assert isinstance(curate.get("dts")(4, seed=0), DoubleThompson)
    with pytest.raises(InputError, match=r"alpha must be a number > 0.5"):
        curate.get("rucb")(4, alpha=0.3)
    with pytest.raises(InputError, match="n_arms must be"):
        RUCB(1)
