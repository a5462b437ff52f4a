"""Spectral rankings: rank centrality vs choix, PageRank vs networkx, Keener's eigenvector vs a dense eigensolver."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.data.comparisons import Comparisons
from pairkit.errors import EstimationError, InputError
from pairkit.rating.spectral import (
    fit_eigenvector,
    fit_pagerank,
    fit_rank_centrality,
    pagerank_scores,
    rank_centrality_scores,
)
from tests.shared_data import shared_path

choix = pytest.importorskip("choix")


def random_comparisons(seed, n=10, m=200, ties=0.0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    skill = rng.normal(0, 1, n)
    outcome = (rng.random(m) < 1 / (1 + np.exp(skill[b] - skill[a]))).astype(float)
    outcome[rng.random(m) < ties] = 0.5
    return Comparisons.from_arrays(a, b, outcome, items=[f"i{k}" for k in range(n)])


def winner_loser(data: Comparisons):
    decisive = data.outcome != 0.5
    winner = np.where(data.outcome == 1, data.a, data.b)[decisive]
    loser = np.where(data.outcome == 1, data.b, data.a)[decisive]
    return list(zip(winner.tolist(), loser.tolist(), strict=True))


@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_rank_centrality_equals_choix_random(alpha, seed):
    data = random_comparisons(seed)
    ref = choix.rank_centrality(data.n_items, winner_loser(data), alpha=alpha)
    np.testing.assert_allclose(fit_rank_centrality(data, alpha=alpha).log_strength, ref, rtol=0, atol=1e-10)


def test_rank_centrality_equals_choix_on_chess():
    games = json.loads(shared_path("sports", "computer_chess_8k.json").read_text())
    decisive = [g for g in games if g[2] != "1/2-1/2"]
    data = Comparisons.from_arrays(
        [g[0] for g in decisive], [g[1] for g in decisive], [1.0 if g[2] == "1-0" else 0.0 for g in decisive]
    )
    ref = choix.rank_centrality(data.n_items, winner_loser(data))
    np.testing.assert_allclose(fit_rank_centrality(data).log_strength, ref, rtol=0, atol=1e-10)


def test_rank_centrality_ties_are_half_wins_and_weights_are_counts():
    data = random_comparisons(3, ties=0.3)
    as_halves = Comparisons.from_arrays(
        np.concatenate([data.a, data.a]),
        np.concatenate([data.b, data.b]),
        np.concatenate(
            [np.where(data.outcome == 0.5, 1.0, data.outcome), np.where(data.outcome == 0.5, 0.0, data.outcome)]
        ),
        items=data.items,
    )
    np.testing.assert_allclose(rank_centrality_scores(data), rank_centrality_scores(as_halves), atol=1e-12)
    doubled = data.with_weights(np.full(len(data), 2.0))
    np.testing.assert_allclose(rank_centrality_scores(data), rank_centrality_scores(doubled), atol=1e-12)


def test_pagerank_equals_networkx_with_ties_and_dangling():
    nx = pytest.importorskip("networkx")
    data = random_comparisons(4, n=9, m=120, ties=0.2)
    # Make item 0 unbeaten: a dangling node of the loser → winner graph.
    outcome = np.where(data.a == 0, np.maximum(data.outcome, 1.0), np.where(data.b == 0, 0.0, data.outcome))
    data = Comparisons.from_arrays(data.a, data.b, outcome, items=data.items)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(data.n_items))
    for a, b, o in zip(data.a.tolist(), data.b.tolist(), data.outcome.tolist(), strict=True):
        for loser, winner, share in ((b, a, o), (a, b, 1 - o)):
            if share > 0:
                old = graph.get_edge_data(loser, winner, {"weight": 0.0})["weight"]
                graph.add_edge(loser, winner, weight=old + share)
    for damping in (0.85, 0.5):
        ref = nx.pagerank(graph, alpha=damping, tol=1e-15, max_iter=100_000)
        np.testing.assert_allclose(
            pagerank_scores(data, damping=damping), [ref[k] for k in range(data.n_items)], rtol=0, atol=1e-12
        )
    losses_of_0 = np.sum(np.where(data.a == 0, 1 - data.outcome, 0) + np.where(data.b == 0, data.outcome, 0))
    assert losses_of_0 == 0  # the dangling case was exercised
    board = fit_pagerank(data)
    assert board.scale_name == "pagerank" and board.log_strength.sum() == pytest.approx(1.0)


def test_eigenvector_equals_dense_eigensolver():
    data = random_comparisons(5, n=8, m=150)
    prior = 1.0
    n = data.n_items
    wins = np.zeros((n, n))
    games = np.zeros((n, n))
    for a, b, o in zip(data.a, data.b, data.outcome, strict=True):
        wins[a, b] += o
        wins[b, a] += 1 - o
        games[a, b] += 1
        games[b, a] += 1
    matrix = np.where(games > 0, (wins + prior) / (games + 2 * prior), 0.0)
    values, vectors = np.linalg.eig(matrix)
    ref = np.abs(np.real(vectors[:, np.argmax(np.real(values))]))
    np.testing.assert_allclose(fit_eigenvector(data, prior=prior).log_strength, ref / ref.sum(), atol=1e-11)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_swapping_sides_changes_nothing(seed):
    data = random_comparisons(seed, n=6, m=60, ties=0.2)
    try:
        base = rank_centrality_scores(data)
    except EstimationError:
        return  # an item never lost or never won: covered by the error test
    np.testing.assert_allclose(rank_centrality_scores(data.swapped()), base, atol=1e-12)
    np.testing.assert_allclose(pagerank_scores(data.swapped()), pagerank_scores(data), atol=1e-12)


def test_errors_name_the_problem():
    data = Comparisons.from_arrays(["a", "b", "c"], ["b", "c", "a"], [1.0, 1.0, 1.0])
    fit_rank_centrality(data)  # a cycle is irreducible
    unbeaten = Comparisons.from_arrays(["a", "a", "b"], ["b", "c", "c"], [1.0, 1.0, 1.0])
    with pytest.raises(EstimationError, match="alpha > 0"):
        fit_rank_centrality(unbeaten)
    assert fit_rank_centrality(unbeaten, alpha=0.1).rank[0] == 1
    with pytest.raises(InputError, match="damping"):
        fit_pagerank(data, damping=1.0)
