"""MAPLE: the concept-weight posterior against importance sampling; the language prior; informative, easy queries."""

import numpy as np
import pytest
from scipy import special

from pairkit.curate import MAPLE, get, maple_query_scores
from pairkit.errors import InputError


def data(seed=0, m=25):
    rng = np.random.default_rng(seed)
    fa, fb = rng.normal(size=(m, 2)), rng.normal(size=(m, 2))
    w_true = np.array([1.5, -1.0])
    y = (rng.random(m) < special.expit((fa - fb) @ w_true)).astype(float)
    return fa, fb, y


def test_posterior_matches_importance_sampling_from_the_prior():
    fa, fb, y = data()
    model = MAPLE(["speed", "tolls"], prior_mean=[0.3, 0.0], prior_scale=[1.0, 2.0], samples=6000, seed=1)
    model.fit(fa, fb, y)
    rng = np.random.default_rng(2)
    w = np.array([0.3, 0.0]) + np.array([1.0, 2.0]) * rng.standard_normal((200_000, 2))
    z = (fa - fb) @ w.T
    logw = (y[:, None] * special.log_expit(z) + (1 - y[:, None]) * special.log_expit(-z)).sum(0)
    weights = np.exp(logw - logw.max())
    weights /= weights.sum()
    mean = weights @ w
    np.testing.assert_allclose(model.w_samples.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(model.w_samples.std(0), np.sqrt(weights @ (w - mean) ** 2), atol=0.05)
    x = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    ref = weights @ special.expit((x[0] - x[1]) @ w.T).ravel()
    assert model.prob_prefer(*x)[0] == pytest.approx(ref, abs=0.01)
    assert set(model.weights()) == {"speed", "tolls"}


def test_language_prior_moves_the_posterior_towards_the_feedback():
    def llm(feedback, concepts):  # a stand-in for the LLM call: "avoid tolls" → a negative tolls weight
        return np.array([0.0, -3.0 if "avoid tolls" in feedback else 0.0]), np.array([1.0, 0.5])

    fa, fb, y = data(1, m=3)
    told = MAPLE.from_feedback(["speed", "tolls"], "please avoid tolls", llm, samples=3000).fit(fa, fb, y)
    plain = MAPLE.from_feedback(["speed", "tolls"], "no opinion", llm, samples=3000).fit(fa, fb, y)
    assert told.weights()["tolls"] < plain.weights()["tolls"] - 1.0


def test_query_scores_are_bald_minus_weighted_difficulty():
    model = MAPLE(["a", "b"], samples=500, seed=0)  # prior samples
    fa = np.array([[2.0, 0.0], [0.1, 0.0], [0.0, 2.0]])
    fb = np.zeros((3, 2))
    p = special.expit((fa - fb) @ model.w_samples.T)

    def h(q):
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))

    bald = h(p.mean(1)) - h(p).mean(1)
    np.testing.assert_allclose(maple_query_scores(model, fa, fb), bald, rtol=1e-9)
    assert bald[1] < bald[0]  # a small difference tells little about w
    hard = np.array([1.0, 0.0, 0.0])
    scores = get("maple")(model, fa, fb, hard, difficulty_weight=10.0)
    assert int(np.argmax(scores)) == 2 and scores[0] == pytest.approx(bald[0] - 10.0)
    with pytest.raises(InputError, match="difficulty_weight"):
        maple_query_scores(model, fa, fb, difficulty_weight=-1.0)
    with pytest.raises(InputError, match="difficulty must hold 3 numbers"):
        maple_query_scores(model, fa, fb, np.array([2.0, 0, 0]))
    with pytest.raises(InputError, match="outcomes must lie in"):
        model.fit(fa, fb, np.array([1.0, 2.0, 0.0]))
