"""Blade-chest on rock–paper–scissors (cycles Bradley–Terry cannot predict) and triad diagnostics."""

import itertools

import numpy as np
import pytest
from scipy import optimize, special

from pairkit.data import Comparisons
from pairkit.rating import fit_bradley_terry
from pairkit.rating.intransitive import (
    _pair_design,
    blade_chest_objective,
    count_intransitive_triads,
    fit_blade_chest,
    intransitive_triads,
)


def rock_paper_scissors(seed=0, m=3000, p_win=0.85, extra_items=0):
    """Rock beats scissors beats paper beats rock with probability ``p_win``; extra items are transitive."""
    rng = np.random.default_rng(seed)
    n = 3 + extra_items
    names = ["rock", "paper", "scissors"] + [f"t{k}" for k in range(extra_items)]
    strength = np.r_[np.zeros(3), np.linspace(-1.5, 1.5, extra_items)]
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    cyc = np.zeros((n, n))
    for w, l in ((0, 2), (2, 1), (1, 0)):
        cyc[w, l], cyc[l, w] = special.logit(p_win), -special.logit(p_win)
    p = special.expit(strength[a] - strength[b] + cyc[a, b])
    y = (rng.random(m) < p).astype(float)
    return Comparisons.from_arrays(a, b, y, items=names)


def test_blade_chest_predicts_cycles_bt_cannot():
    c = rock_paper_scissors()
    bc = fit_blade_chest(c, dim=1, seed=0)
    bt = fit_bradley_terry(c)
    p_bc, _ = bc.predict(["rock", "scissors", "paper"], ["scissors", "paper", "rock"])
    p_bt, _ = bt.predict(["rock", "scissors", "paper"], ["scissors", "paper", "rock"])
    assert np.all(p_bc > 0.8)
    assert np.all(np.abs(p_bt - 0.5) < 0.05)
    assert bc.log_likelihood > bt.log_likelihood + 500


def test_blade_chest_matches_scipy_from_the_same_start():
    c = rock_paper_scissors(1, m=1500, extra_items=3)
    counts, s_i, s_j = _pair_design(c)
    n, dim = c.n_items, 2
    bc = fit_blade_chest(c, dim=dim, seed=5, l2=0.05)
    x0 = np.concatenate([np.zeros(n), 0.1 * np.random.default_rng(5).standard_normal(2 * n * dim)])

    def slow(x):  # loop-by-loop objective
        g, U, V = x[:n], x[n : n + n * dim].reshape(n, dim), x[n + n * dim :].reshape(n, dim)
        total = 0.0
        for i, j, wi, wj, t in zip(counts.i, counts.j, counts.wins_i, counts.wins_j, counts.ties):
            m = g[i] - g[j] + U[i] @ V[j] - U[j] @ V[i]
            total += (wi + t / 2) * np.log(special.expit(m)) + (wj + t / 2) * np.log(special.expit(-m))
        return -(total - 0.025 * (np.sum(U**2) + np.sum(V**2)) - 0.5e-6 * np.sum(g**2))

    value, grad = blade_chest_objective(x0, counts, s_i, s_j, dim, 0.05, 1e-6)
    assert value == pytest.approx(slow(x0), rel=1e-12)
    np.testing.assert_allclose(grad, optimize.approx_fprime(x0, slow, 1e-7), atol=1e-3)
    res = optimize.minimize(slow, x0, method="BFGS", options={"gtol": 1e-8})
    pairs = np.array(list(itertools.combinations(range(n), 2)))
    p_ours, _ = bc.predict([c.items[k] for k in pairs[:, 0]], [c.items[k] for k in pairs[:, 1]])
    g, U, V = res.x[:n], res.x[n : n + n * dim].reshape(n, dim), res.x[n + n * dim :].reshape(n, dim)
    m = g[pairs[:, 0]] - g[pairs[:, 1]] + np.sum(U[pairs[:, 0]] * V[pairs[:, 1]] - U[pairs[:, 1]] * V[pairs[:, 0]], 1)
    np.testing.assert_allclose(p_ours, special.expit(m), atol=1e-4)


def slow_triads(c):
    counts = c.pair_counts(ties="half")
    rate = {}
    for i, j, wi, t in zip(counts.i, counts.j, counts.wins_i, counts.total):
        rate[(i, j)], rate[(j, i)] = wi / t, 1 - wi / t
    found = set()
    for a, b, d in itertools.permutations(range(c.n_items), 3):
        if all(rate.get(e, 0.5) > 0.5 for e in ((a, b), (b, d), (d, a))):
            k = min(range(3), key=lambda s: (a, b, d)[s])
            found.add(tuple(np.roll((a, b, d), -k)))
    return found


def test_triads_on_rps_and_random_tournaments():
    c = rock_paper_scissors(2, extra_items=2)
    frame = intransitive_triads(c)
    assert count_intransitive_triads(c) == len(frame) >= 1
    assert {"rock", "paper", "scissors"} == set(frame.iloc[0][["a", "b", "c"]])
    rng = np.random.default_rng(0)
    for _ in range(5):
        n = 9
        a = rng.integers(0, n, 300)
        b = (a + rng.integers(1, n, 300)) % n
        r = Comparisons.from_arrays(a, b, rng.integers(0, 3, 300) / 2)
        expected = slow_triads(r)
        got = intransitive_triads(r, limit=10_000)
        names = {name: k for k, name in enumerate(r.items)}
        got_set = {(names[x], names[y], names[z]) for x, y, z in zip(got.a, got.b, got.c)}
        assert got_set == expected
        assert count_intransitive_triads(r) == len(expected)


def test_transitive_data_has_no_cycles():
    c = Comparisons.from_arrays([0, 1, 0, 2], [1, 2, 2, 3], [1, 1, 1, 1])
    assert count_intransitive_triads(c) == 0 and intransitive_triads(c).empty
