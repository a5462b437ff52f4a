"""Invariances shared by the likelihood models (hypothesis): swapping sides, integer weights, shifted starts."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.data import Comparisons
from pairkit.rating.bayeselo import fit_bayeselo
from pairkit.rating.covariates import fit_covariate_bt
from pairkit.rating.order import fit_order_advantage
from pairkit.rating.robust import fit_robust_bt
from pairkit.rating.ties import fit_rao_kupper

FITS = {
    "rao_kupper": lambda c: fit_rao_kupper(c, prior=1.0),
    "order_davidson": lambda c: fit_order_advantage(c, ties="davidson", prior=1.0),
    "order_rao_kupper": lambda c: fit_order_advantage(c, ties="rao_kupper", prior=1.0),
    "bayeselo": lambda c: fit_bayeselo(c, estimate_advantage=True),
    "robust": lambda c: fit_robust_bt(c, prior=1.0, epsilon=0.1),
}


def random_comparisons(seed, n=5, m=80):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    y = rng.choice([0.0, 0.5, 1.0], m)
    y[:3] = [0.5, 1.0, 0.0]  # ties and decisive outcomes always present
    return Comparisons.from_arrays(a, b, y, a_first=rng.random(m) < 0.6, weight=rng.integers(1, 3, m))


def params_close(x, y):
    np.testing.assert_allclose(x.log_strength, y.log_strength, atol=1e-7)
    for key, value in x.params.items():
        np.testing.assert_allclose(value, y.params[key], atol=1e-7, err_msg=key)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 100_000), name=st.sampled_from(sorted(FITS)))
def test_swapping_sides_changes_nothing(seed, name):
    c = random_comparisons(seed)
    params_close(FITS[name](c), FITS[name](c.swapped()))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 100_000), name=st.sampled_from(sorted(FITS)))
def test_weight_two_equals_duplicated_rows(seed, name):
    c = random_comparisons(seed)
    w = np.ones(len(c))
    w[:7] = 2.0
    doubled = Comparisons.from_arrays(c.a, c.b, c.outcome, items=c.items, weight=w, a_first=c.a_first)
    idx = np.r_[np.arange(len(c)), np.arange(7)]
    dup = Comparisons.from_arrays(c.a[idx], c.b[idx], c.outcome[idx], items=c.items, a_first=c.a_first[idx])
    params_close(FITS[name](doubled), FITS[name](dup))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 100_000), name=st.sampled_from(sorted(FITS)))
def test_relabelling_items_permutes_ratings(seed, name):
    c = random_comparisons(seed)
    perm = np.random.default_rng(seed + 1).permutation(c.n_items)  # old index k becomes perm[k]
    names = [None] * c.n_items
    for k, p in enumerate(perm):
        names[p] = c.items[k]
    relabelled = Comparisons.from_arrays(
        perm[c.a], perm[c.b], c.outcome, items=names, weight=c.weight, a_first=c.a_first
    )
    a, b = FITS[name](c), FITS[name](relabelled)
    np.testing.assert_allclose(b.log_strength[perm], a.log_strength, atol=1e-7)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_covariates_swap_negates_features(seed):
    c = random_comparisons(seed)
    z = np.random.default_rng(seed).normal(size=(len(c), 2))
    params_close(fit_covariate_bt(c, z, ridge=1.0, prior=1.0), fit_covariate_bt(c.swapped(), -z, ridge=1.0, prior=1.0))
