"""Tests of pairkit.metrics.ranking against scikit-learn, scipy and brute-force expectations over tie orders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import average_precision_score, dcg_score, ndcg_score

from pairkit import metrics as M
from pairkit.errors import InputError
from tests.shared_data import shared_path


def _tied_batch(rng, b=40, n=8):
    """Integer scores and labels (many ties), masks at random positions."""
    s = rng.integers(0, 4, (b, n)).astype(float)
    y = rng.integers(0, 4, (b, n)).astype(float)
    mask = rng.random((b, n)) < 0.8
    mask[:, :2] = True  # at least two valid items per list
    return s, y, mask


def _per_list(fn, s, y, mask):
    return np.array([fn(s[i][mask[i]], y[i][mask[i]]) for i in range(len(s))])


@pytest.mark.parametrize("k", [None, 1, 3, 20])
@pytest.mark.parametrize("gain", ["linear", "exp2"])
def test_dcg_and_ndcg_match_sklearn_with_ties(rng, k, gain):
    s, y, mask = _tied_batch(rng)
    g = (lambda v: v) if gain == "linear" else (lambda v: 2.0**v - 1.0)
    want_dcg = _per_list(lambda a, b: dcg_score([g(b)], [a], k=k), s, y, mask)
    want_ndcg = _per_list(lambda a, b: ndcg_score([g(b)], [a], k=k), s, y, mask)
    np.testing.assert_allclose(M.dcg(s, y, k=k, gain=gain, mask=mask), want_dcg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(M.ndcg(s, y, k=k, gain=gain, mask=mask), want_ndcg, rtol=1e-12, atol=1e-12)


def test_average_precision_matches_sklearn_with_ties(rng):
    s, y, mask = _tied_batch(rng)
    rel = y > 1
    want = np.array(
        [
            average_precision_score(rel[i][mask[i]], s[i][mask[i]]) if rel[i][mask[i]].any() else 0.0
            for i in range(len(s))
        ]
    )
    np.testing.assert_allclose(M.average_precision(s, y, relevance_threshold=1, mask=mask), want, atol=1e-12)


def test_correlations_match_scipy_with_ties(rng):
    s, y, mask = _tied_batch(rng)
    np.testing.assert_allclose(
        M.kendall_tau(s, y, mask=mask, undefined=np.nan),
        _per_list(lambda a, b: kendalltau(a, b).statistic, s, y, mask),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        M.spearman_rho(s, y, mask=mask, undefined=np.nan),
        _per_list(lambda a, b: spearmanr(a, b).statistic, s, y, mask),
        atol=1e-12,
    )


def _expected_over_tie_orders(metric_of_order, s, y):
    """Average of a metric over all orderings of the list that are sorted by score (ties in every order)."""
    vals = []
    for perm in itertools.permutations(range(len(s))):
        p = np.array(perm)
        order = p[np.argsort(-s[p], kind="stable")]
        vals.append(metric_of_order(y[order]))
    return float(np.mean(vals))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_precision_and_recall_are_expectations_over_tie_orders(rng, k):
    for _ in range(6):
        n = int(rng.integers(2, 7))
        s, y = rng.integers(0, 2, n).astype(float), rng.integers(0, 3, n).astype(float)
        rel = y > 0
        top, n_rel = min(k, n), rel.sum()
        p = _expected_over_tie_orders(lambda yo, top=top: (yo[:top] > 0).sum() / top, s, y)
        assert M.precision_at_k(s, y, k=k) == pytest.approx(p)
        if rel.any():
            r = _expected_over_tie_orders(lambda yo, n_rel=n_rel: (yo[:k] > 0).sum() / n_rel, s, y)
            assert M.recall_at_k(s, y, k=k) == pytest.approx(r)
        d = _expected_over_tie_orders(lambda yo: ((2**yo - 1) / np.log2(np.arange(len(yo)) + 2))[:k].sum(), s, y)
        assert M.dcg(s, y, k=k) == pytest.approx(d)


def _rr_pessimistic(s, y, k=None):
    ranks = [(s >= s[i]).sum() for i in range(len(s)) if y[i] > 0]
    if not ranks:
        return 0.0
    r = min(ranks)
    return 0.0 if k is not None and r > k else 1.0 / r


def _opa(s, y):
    pairs = [(i, j) for i in range(len(s)) for j in range(len(s)) if y[i] > y[j]]
    return np.mean([s[i] > s[j] for i, j in pairs]) if pairs else 0.0


@pytest.mark.parametrize("k", [None, 2])
def test_reciprocal_rank_and_opa_against_loops(rng, k):
    s, y, mask = _tied_batch(rng)
    np.testing.assert_allclose(
        M.reciprocal_rank(s, y, k=k, mask=mask), _per_list(lambda a, b: _rr_pessimistic(a, b, k), s, y, mask)
    )
    np.testing.assert_allclose(M.ordered_pair_accuracy(s, y, mask=mask), _per_list(_opa, s, y, mask))


def test_known_values():
    s = np.array([0.9, 0.8, 0.7, 0.1])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    assert M.reciprocal_rank(s, y) == pytest.approx(0.5)
    assert M.average_precision(s, y) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert M.precision_at_k(s, y, k=2) == pytest.approx(0.5)
    assert M.recall_at_k(s, y, k=2) == pytest.approx(0.5)
    assert M.ndcg(y, y) == pytest.approx(1.0)
    assert M.kendall_tau(s, s) == pytest.approx(1.0) and M.spearman_rho(s, -s) == pytest.approx(-1.0)
    constant = np.ones(4)
    assert M.reciprocal_rank(constant, y) == pytest.approx(0.25)  # ties take the worst rank
    assert M.ordered_pair_accuracy(constant, y) == 0.0
    assert M.kendall_tau(constant, y) == 0.0 and np.isnan(M.kendall_tau(constant, y, undefined=np.nan))
    assert M.ndcg(s, np.zeros(4)) == 0.0 and np.isnan(M.ndcg(s, np.zeros(4), undefined=np.nan))


def test_real_ltr_data_against_sklearn_and_scipy():
    from pairkit.data.letor import read_letor

    train = read_letor(shared_path("ltr", "rank.train"), n_features=300, dtype=np.float64)
    test = read_letor(shared_path("ltr", "rank.test"), n_features=300, dtype=np.float64)
    x = train.features[train.mask]
    w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], train.labels[train.mask], rcond=None)
    s, y, mask = test.features @ w[:-1] + w[-1], test.labels, test.mask
    for k in (None, 5):
        want = np.array(
            [
                ndcg_score([2 ** y[i][mask[i]] - 1], [s[i][mask[i]]], k=k) if mask[i].sum() > 1 else 1.0
                for i in range(len(s))
            ]
        )
        got = M.ndcg(s, y, k=k, mask=mask, undefined=1.0)
        np.testing.assert_allclose(got, want, atol=1e-12)
    tau = M.kendall_tau(s, y, mask=mask, undefined=np.nan)
    want_tau = _per_list(lambda a, b: kendalltau(a, b).statistic, s, y, mask)
    np.testing.assert_allclose(tau, want_tau, atol=1e-12)
    # the fitted model beats random scores on held-out queries
    assert M.ndcg(s, y, mask=mask).mean() > M.ndcg(np.random.default_rng(0).random(s.shape), y, mask=mask).mean()


METRICS = {
    "dcg": lambda s, y, m: M.dcg(s, y, k=3, mask=m),
    "ndcg": lambda s, y, m: M.ndcg(s, y, mask=m),
    "ndcg_linear": lambda s, y, m: M.ndcg(s, y, k=2, gain="linear", mask=m),
    "precision": lambda s, y, m: M.precision_at_k(s, y, k=2, mask=m),
    "recall": lambda s, y, m: M.recall_at_k(s, y, k=2, mask=m),
    "rr": lambda s, y, m: M.reciprocal_rank(s, y, mask=m),
    "ap": lambda s, y, m: M.average_precision(s, y, mask=m),
    "opa": lambda s, y, m: M.ordered_pair_accuracy(s, y, mask=m),
    "tau": lambda s, y, m: M.kendall_tau(s, y, mask=m),
    "rho": lambda s, y, m: M.spearman_rho(s, y, mask=m),
}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 7), name=st.sampled_from(sorted(METRICS)))
def test_masking_equals_slicing_and_permutation_invariance(seed, n, name):
    fn = METRICS[name]
    rng = np.random.default_rng(seed)
    s, y = rng.integers(0, 3, n).astype(float), rng.integers(0, 3, n).astype(float)
    mask = rng.random(n) < 0.7
    s_pad = np.where(mask, s, np.nan)  # padding content is irrelevant
    full = fn(s_pad[None], y[None], mask[None])
    sliced = fn(s[mask][None], y[mask][None], None) if mask.any() else full
    np.testing.assert_allclose(full, sliced, atol=1e-12)
    perm = rng.permutation(n)
    np.testing.assert_allclose(fn(s[perm][None], y[perm][None], mask[perm][None]), full, atol=1e-12)
    assert np.isfinite(full).all()


def test_batch_shapes(rng):
    s, y = rng.random((2, 3, 6)), rng.integers(0, 3, (2, 3, 6))
    for name, fn in METRICS.items():
        out = fn(s, y, None)
        assert out.shape == (2, 3), name
        np.testing.assert_allclose(out.reshape(-1), fn(s.reshape(6, 6), y.reshape(6, 6), None))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.ndcg(np.zeros((2, 3)), np.zeros((2, 4))), "same shape"),
        (lambda: M.ndcg(np.zeros(3), np.zeros(3), mask=np.ones(3)), "boolean"),
        (lambda: M.ndcg(np.zeros(3), np.zeros(3), mask=np.ones(4, dtype=bool)), "broadcast"),
        (lambda: M.ndcg(np.array([0.0, np.nan]), np.zeros(2)), r"scores\[1\]"),
        (lambda: M.ndcg(np.zeros(2), np.array([0.0, np.inf])), r"labels\[1\]"),
        (lambda: M.dcg(np.zeros(2), np.zeros(2), k=0), "positive integer"),
        (lambda: M.dcg(np.zeros(2), np.zeros(2), gain="log"), "gain"),
        (lambda: M.kendall_tau(1.0, 2.0), "list axis"),
        (lambda: M.ndcg(["a", "b"], [0, 1]), "numeric"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_metrics_import_without_torch():
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import pairkit.metrics as m; print(m.ndcg([1, 0], [0, 1]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(1 / np.log2(3))
