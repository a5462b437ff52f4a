"""Plackett–Luce: against choix (Hunter's MM) on NASCAR 2002 and a generic optimiser on an independent likelihood."""

import choix
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from pairkit.data import Rankings, read_preflib, read_rankings
from pairkit.errors import NoMLEError
from pairkit.rating.plackett_luce import fit_plackett_luce, plackett_luce_loglik
from tests.shared_data import shared_path


def slow_pl_loglik(rankings, theta):
    """Obvious reference: loop over rankings and stages; ties by Breslow; top-k adds unlisted items."""
    total = 0.0
    for ranking, w, top in zip(rankings.to_lists(), rankings.weight, rankings.top_k):
        groups = [[rankings.items.index(x) for x in (g if isinstance(g, tuple) else (g,))] for g in ranking]
        listed = [i for g in groups for i in g]
        rest = [i for i in range(rankings.n_items) if i not in listed] if top else []
        for s, g in enumerate(groups):
            remaining = [i for h in groups[s:] for i in h] + rest
            if len(remaining) == 1:
                continue
            for i in g:
                total += w * (theta[i] - np.log(np.sum(np.exp(theta[remaining]))))
    return total


def test_nascar_matches_choix_mm():
    r = read_rankings(shared_path("rankings", "nascar2002.txt"), ranking="Race", item="DriverID", position="Place")
    lb = fit_plackett_luce(r)
    data = [tuple(r.flat[r.offsets[k] : r.offsets[k + 1]]) for k in range(len(r))]
    ref = choix.mm_rankings(r.n_items, data, tol=1e-13, max_iter=200_000)
    np.testing.assert_allclose(lb.log_strength, ref - ref.mean(), atol=1e-6)
    assert lb.log_likelihood == pytest.approx(plackett_luce_loglik(r, lb.log_strength))
    assert lb.se is not None and np.all(lb.se > 0)


def test_nascar_loglik_matches_slow_reference():
    r = read_rankings(shared_path("rankings", "nascar2002.txt"), ranking="Race", item="DriverID", position="Place")
    theta = np.random.default_rng(0).normal(size=r.n_items)
    assert plackett_luce_loglik(r, theta) == pytest.approx(slow_pl_loglik(r, theta), rel=1e-12)


def random_rankings(rng, n=6, count=60):
    lists, tops = [], []
    for _ in range(count):
        perm = list(rng.permutation(n))
        k = int(rng.integers(2, n + 1))
        perm = perm[:k]
        if rng.random() < 0.3 and k >= 3:  # a tie group
            perm = [perm[0], (perm[1], perm[2]), *perm[3:]]
        lists.append(perm)
        tops.append(bool(rng.random() < 0.4))
    return Rankings.from_lists(lists, items=[f"i{k}" for k in range(n)], weight=rng.integers(1, 4, count), top_k=tops)


@pytest.mark.parametrize("prior", [0.0, 1.5])
def test_random_partial_topk_ties_vs_scipy(prior):
    rng = np.random.default_rng(3)
    r = random_rankings(rng)
    lb = fit_plackett_luce(r, prior=prior)

    def neg(theta):
        pen = prior * np.sum(-np.logaddexp(0, -theta) - np.logaddexp(0, theta))
        return -(slow_pl_loglik(r, theta) + pen)

    res = optimize.minimize(neg, np.zeros(r.n_items), method="BFGS", options={"gtol": 1e-9})
    np.testing.assert_allclose(lb.log_strength, res.x - res.x.mean(), atol=1e-5)


def test_no_mle_names_the_item():
    r = Rankings.from_lists([["a", "b", "c"], ["a", "c", "b"], ["a", "b"]])
    with pytest.raises(NoMLEError, match="'a'"):
        fit_plackett_luce(r)
    lb = fit_plackett_luce(r, prior=1.0)
    assert np.argmax(lb.log_strength) == 0


def test_preflib_fits():
    lb = fit_plackett_luce(read_preflib(shared_path("rankings", "netflix.soc")))
    assert np.isfinite(lb.log_strength).all()
    toc = read_preflib(shared_path("rankings", "skaters.toc"))
    lb = fit_plackett_luce(toc, prior=1.0)
    assert lb.items[int(np.argmax(lb.log_strength))] == "Alexei Yagudin"


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_weight_two_equals_duplicating(seed):
    rng = np.random.default_rng(seed)
    r = random_rankings(rng, n=5, count=25)
    w = np.ones(len(r))
    w[0] = 2.0
    doubled = fit_plackett_luce(r.with_weights(w), prior=0.5)
    idx = np.concatenate([np.arange(len(r)), [0]])
    dup = fit_plackett_luce(r.subset(idx).with_weights(np.ones(len(idx))), prior=0.5)
    np.testing.assert_allclose(doubled.log_strength, dup.log_strength, atol=1e-8)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_relabelling_items_permutes_ratings(seed):
    rng = np.random.default_rng(seed)
    r = random_rankings(rng, n=5, count=25)
    perm = rng.permutation(r.n_items)
    relabelled = Rankings(
        items=tuple(r.items[k] for k in np.argsort(perm)),
        flat=perm[r.flat],
        offsets=r.offsets,
        level=r.level,
        weight=r.weight,
        top_k=r.top_k,
    )
    a = fit_plackett_luce(r, prior=0.5)
    b = fit_plackett_luce(relabelled, prior=0.5)
    np.testing.assert_allclose(b.log_strength[perm], a.log_strength, atol=1e-8)


def test_mm_only_path_for_many_items_agrees(monkeypatch):
    import pairkit.rating.plackett_luce as pl

    r = read_rankings(shared_path("rankings", "nascar2002.txt"), ranking="Race", item="DriverID", position="Place")
    dense = fit_plackett_luce(r)
    monkeypatch.setattr(pl, "DENSE_NEWTON_LIMIT", 10)
    mm_only = fit_plackett_luce(r, tol=1e-11)
    assert mm_only.se is None and mm_only.info["newton_steps"] == 0
    np.testing.assert_allclose(mm_only.log_strength, dense.log_strength, atol=1e-6)
