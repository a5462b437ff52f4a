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


# ---------------------------------------------------------------------------------------------- identification
def _games(pairs, n, seed=0, reps=20):
    """Each listed pair played ``reps`` times in both orders with both results (every MLE exists)."""
    rng = np.random.default_rng(seed)
    a, b = np.repeat(np.asarray(pairs).T, reps, axis=1)
    y = rng.random(len(a)) < 0.6
    y[:2] = [True, False]
    a, b, y = np.r_[a, b], np.r_[b, a], np.r_[y, y]  # each item wins and loses every pair it plays
    return Comparisons.from_arrays(a, b, y.astype(float), items=[f"m{k}" for k in range(n)])


def _loglik(c, x, dim):
    counts, s_i, s_j = _pair_design(c)
    return -blade_chest_objective(x, counts, s_i, s_j, dim, 0.0, 0.0)[0]


def test_star_design_is_not_identified_and_strengths_absorb_any_matchup():
    """Every item against one reference: the data cannot tell a blade-chest term from strengths. Checked
    independently: for random blades and chests, strengths chosen in closed form reproduce the likelihood."""
    from pairkit.errors import NotIdentifiedError

    n, dim = 6, 2
    c = _games([(0, k) for k in range(1, n)], n)
    with pytest.raises(NotIdentifiedError, match="form no cycle.*--model bt"):
        fit_blade_chest(c, dim=dim)
    rng = np.random.default_rng(1)
    g, U, V = rng.normal(size=n), rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    g2 = g.copy()
    g2[1:] += U[1:] @ V[0] - U[0] @ V[1:].T  # γ_k − γ_0 + u_k·v_0 − u_0·v_k on every played pair
    x = np.r_[g, U.ravel(), V.ravel()]
    x2 = np.r_[g2, np.zeros(2 * n * dim)]
    assert _loglik(c, x, dim) == pytest.approx(_loglik(c, x2, dim), rel=1e-12)


def test_items_on_no_cycle_are_named_and_really_flat():
    """A triangle with a pendant item: the pendant's blade and chest only move the likelihood through its
    strength (flat, checked by evaluation), a triangle item's do not."""
    from pairkit.rating import UnidentifiedMatchupWarning

    n, dim = 4, 1
    c = _games([(0, 1), (1, 2), (2, 0), (2, 3)], n, seed=2)
    with pytest.warns(UnidentifiedMatchupWarning, match=r"1 item\(s\) lie on no cycle.*'m3'"):
        board = fit_blade_chest(c, dim=dim)
    assert board.info["matchup_unidentified"] == ["m3"]
    rng = np.random.default_rng(3)
    g, U, V = rng.normal(size=n), rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    base = _loglik(c, np.r_[g, U.ravel(), V.ravel()], dim)
    for item, flat in ((3, True), (0, False)):
        U2, V2, g2 = U.copy(), V.copy(), g.copy()
        U2[item] += 0.7
        V2[item] -= 0.4
        if flat:  # the pendant meets only item 2: its strength absorbs the change of its one logit
            g2[item] -= (U2[item] @ V2[2] - U2[2] @ V2[item]) - (U[item] @ V[2] - U[2] @ V[item])
        moved = _loglik(c, np.r_[g2, U2.ravel(), V2.ravel()], dim)
        assert bool(abs(moved - base) < 1e-9) is flat, (item, moved - base)


def test_two_core_matches_networkx_on_random_graphs():
    nx = pytest.importorskip("networkx")
    from pairkit.rating.intransitive import _two_core

    rng = np.random.default_rng(4)
    for _ in range(30):
        n = int(rng.integers(3, 25))
        m = int(rng.integers(1, 2 * n))
        i, j = rng.integers(0, n, m), rng.integers(0, n, m)
        keep = i != j
        i, j = i[keep], j[keep]
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_edges_from(zip(i.tolist(), j.tolist(), strict=True))
        expected = np.zeros(n, dtype=bool)
        expected[list(nx.k_core(graph, 2).nodes)] = True
        lo, hi = np.minimum(i, j), np.maximum(i, j)  # pair_counts gives each pair once, lower index first
        key = np.unique(lo * n + hi)
        np.testing.assert_array_equal(_two_core(n, key // n, key % n), expected)


def test_unbeaten_item_has_no_estimate_unless_the_strengths_are_ridged():
    """An unbeaten item: the likelihood rises without bound along its strength (checked by evaluation), so the
    default fit refuses; a ridge on the strengths (l2_strength) makes it a finite penalised estimate."""
    from pairkit.errors import NoMLEError

    c = rock_paper_scissors(6, m=600, extra_items=1)
    champion = c.items.index("t0")
    won = np.where(c.a == champion, 1.0, np.where(c.b == champion, 0.0, c.outcome))
    c = Comparisons.from_arrays(c.a, c.b, won, items=c.items)
    with pytest.raises(NoMLEError, match=r"never lost.*'t0'.*l2_strength >= 0.001"):
        fit_blade_chest(c, dim=1)
    n, dim = c.n_items, 1
    x = np.zeros(n + 2 * n * dim)
    path = []
    for t in (0.0, 5.0, 10.0, 20.0):
        x[champion] = t
        path.append(_loglik(c, x, dim))
    assert np.all(np.diff(path) > 0)
    board = fit_blade_chest(c, dim=1, l2_strength=0.1)
    assert np.isfinite(board.scores).all()
    p, _ = board.predict(["t0"] * 3, ["rock", "paper", "scissors"])
    assert np.all((p > 0.9) & (p < 1))
