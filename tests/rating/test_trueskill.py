"""TrueSkill against the ``trueskill`` package (0.4.5), match by match."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating._online import Matches
from pairkit.rating.trueskill import fit_trueskill, trueskill_draw_margin, trueskill_rate
from tests.shared_data import shared_path

trueskill = pytest.importorskip("trueskill")
TOL = 1e-9


def peer_rate(n, teams, ranks, weights=None, backend=None, **options):
    """The package's ratings after rating the matches one at a time."""
    env = trueskill.TrueSkill(backend=backend, **options)
    ratings = [env.create_rating() for _ in range(n)]
    for k, (match, rank) in enumerate(zip(teams, ranks, strict=True)):
        w = None if weights is None else weights[k]
        out = env.rate([[ratings[p] for p in team] for team in match], ranks=rank, weights=w)
        for team, new in zip(match, out, strict=True):
            for p, r in zip(team, new, strict=True):
                ratings[p] = r
    return np.array([r.mu for r in ratings]), np.array([r.sigma for r in ratings])


def random_matches(seed, n, m, max_teams, max_size):
    rng = np.random.default_rng(seed)
    teams, ranks = [], []
    for _ in range(m):
        k = int(rng.integers(2, max_teams + 1))
        sizes = rng.integers(1, max_size + 1, size=k)
        players = rng.permutation(n)[: sizes.sum()]
        teams.append([[int(p) for p in t] for t in np.split(players, np.cumsum(sizes)[:-1])])
        ranks.append([int(x) for x in rng.integers(0, k, size=k)])
    return teams, ranks


def as_lists(data: Comparisons):
    teams = [[[int(a)], [int(b)]] for a, b in zip(data.a, data.b, strict=True)]
    ranks = [[0, 1] if o == 1 else [1, 0] if o == 0 else [0, 0] for o in data.outcome]
    return teams, ranks


def chess() -> Comparisons:
    games = json.loads(shared_path("sports", "computer_chess_8k.json").read_text())
    score = {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}
    return Comparisons.from_arrays([g[0] for g in games], [g[1] for g in games], [score[g[2]] for g in games])


# The package's scipy backend calls scipy.stats per scalar and is slow: fewer games there.
@pytest.mark.parametrize(("backend", "normal", "size"), [(None, "trueskill", 4000), ("scipy", "exact", 800)])
def test_chess_with_draws_equals_package(backend, normal, size):
    data = chess().subset(slice(0, size))
    mu_ref, sigma_ref = peer_rate(data.n_items, *as_lists(data), backend=backend)
    board = fit_trueskill(data, normal=normal)
    np.testing.assert_allclose(board.log_strength, mu_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(board.columns["sigma"], sigma_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(board.columns["conservative"], mu_ref - 3 * sigma_ref, rtol=0, atol=TOL)


def test_football_equals_package():
    frame = pd.read_csv(shared_path("sports", "international_football_results.csv")).tail(3000)
    frame = frame.dropna(subset=["home_score", "away_score"])
    outcome = np.sign(frame["home_score"] - frame["away_score"]).to_numpy() / 2 + 0.5
    data = Comparisons.from_arrays(frame["home_team"].to_numpy(), frame["away_team"].to_numpy(), outcome)
    mu_ref, sigma_ref = peer_rate(data.n_items, *as_lists(data))
    mu, sigma = trueskill_rate(data, normal="trueskill")
    np.testing.assert_allclose(mu, mu_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=0, atol=TOL)


@pytest.mark.parametrize(("backend", "normal", "size"), [(None, "trueskill", 200), ("scipy", "exact", 80)])
def test_random_team_and_free_for_all_matches_equal_package(backend, normal, size):
    teams, ranks = random_matches(0, 30, size, max_teams=5, max_size=3)
    mu_ref, sigma_ref = peer_rate(30, teams, ranks, backend=backend)
    mu, sigma = trueskill_rate(Matches.from_lists(teams, ranks, items=[str(k) for k in range(30)]), normal=normal)
    np.testing.assert_allclose(mu, mu_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=0, atol=TOL)


def test_partial_play_and_options_equal_package():
    teams, ranks = random_matches(1, 20, 150, max_teams=3, max_size=3)
    rng = np.random.default_rng(5)
    weights = [[[float(x) for x in rng.uniform(0.0, 1.0, len(t))] for t in match] for match in teams]
    options = {"mu": 10.0, "sigma": 3.0, "beta": 2.0, "tau": 0.2, "draw_probability": 0.3}
    mu_ref, sigma_ref = peer_rate(20, teams, ranks, weights=weights, backend="scipy", **options)
    matches = Matches.from_lists(teams, ranks, items=[str(k) for k in range(20)], weights=weights)
    mu, sigma = trueskill_rate(matches, **options)
    np.testing.assert_allclose(mu, mu_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=0, atol=TOL)


def test_draw_margin_and_closed_form_first_game():
    assert trueskill_draw_margin(0.1, 2) == pytest.approx(
        trueskill.calc_draw_margin(0.1, 2, trueskill.TrueSkill(backend="scipy"))
    )
    # Herbrich et al.: after one decisive game between newcomers, μ moves by σ²/c · v(0, ε/c).
    data = Comparisons.from_arrays([0], [1], [1.0])
    mu, sigma = trueskill_rate(data, draw_probability=0.0, tau=0.0)
    c = np.sqrt(2 * (25 / 3) ** 2 + 2 * (25 / 6) ** 2)
    v = np.sqrt(2 / np.pi)  # φ(0)/Φ(0)
    np.testing.assert_allclose(mu, [25 + (25 / 3) ** 2 / c * v, 25 - (25 / 3) ** 2 / c * v], rtol=1e-12)
    np.testing.assert_allclose(sigma**2, (25 / 3) ** 2 * (1 - (25 / 3) ** 2 / c**2 * v * v), rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_rounds_equal_sequential_and_swap_invariance(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, 25)
    b = (a + rng.integers(1, 6, 25)) % 6
    outcome = rng.choice([0.0, 0.5, 1.0], 25)
    data = Comparisons.from_arrays(a, b, outcome, items=[str(k) for k in range(6)])
    mu, sigma = trueskill_rate(data)
    mu_s, sigma_s = np.full(6, 25.0), np.full(6, 25 / 3)
    for k in range(25):
        mu_s, sigma_s = trueskill_rate(data.subset([k]), initial_mu=mu_s, initial_sigma=sigma_s)
    np.testing.assert_allclose(mu, mu_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma, sigma_s, rtol=0, atol=1e-12)
    mu_w, sigma_w = trueskill_rate(data.swapped())
    np.testing.assert_allclose(mu_w, mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma_w, sigma, rtol=0, atol=1e-12)


def test_leaderboard_and_predictions():
    data = Comparisons.from_arrays([0, 0, 1, 0], [1, 2, 2, 1], [1.0, 1.0, 0.5, 1.0], items=["a", "b", "c"])
    board = fit_trueskill(data)
    assert board.scale_name == "trueskill" and board.model == "trueskill"
    assert list(board.to_pandas()["item"])[0] == "a"
    p_win, p_tie = board.predict(["a", "b"], ["b", "a"])
    assert p_win[0] > p_win[1] and 0 < p_tie[0] < 1
    np.testing.assert_allclose(p_tie[0], p_tie[1])


def test_bad_input():
    with pytest.raises(InputError, match="draw_probability"):
        fit_trueskill(Comparisons.from_arrays([0], [1]), draw_probability=1.5)
    with pytest.raises(InputError, match="weight"):
        fit_trueskill(Comparisons.from_arrays([0], [1], weight=[2.0]))
    with pytest.raises(InputError, match="normal"):
        trueskill_rate(Comparisons.from_arrays([0], [1]), normal="mpmath")


def test_leaderboard_serialises_with_sigma_and_conservative_columns():
    board = fit_trueskill(chess().subset(slice(0, 300)), z=2.0)
    payload = json.loads(board.to_json())
    top = payload["items"][0]
    assert payload["scale"] == "trueskill" and top["conservative"] == pytest.approx(top["rating"] - 2 * top["sigma"])
    assert top["ci_low"] == pytest.approx(top["rating"] - 1.959963984540054 * top["sigma"])
