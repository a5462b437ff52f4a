"""TrueSkill against the ``trueskill`` package (0.4.5), match by match."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating import compare_models, prediction_scores
from pairkit.rating._online import Matches
from pairkit.rating.trueskill import fit_trueskill, trueskill_draw_margin, trueskill_predictor, trueskill_rate
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


# ---------------------------------------------------------------------------------------------- predictions
def package_forecast(env, r_a, r_b):
    """The package's documented win probability (its FAQ: Φ(Δμ / √(n·β² + Σσ²))) with the draw margin
    ``calc_draw_margin`` gives two players: a's performance ahead by more than it, and within it."""
    c = math.sqrt(2 * env.beta**2 + r_a.sigma**2 + r_b.sigma**2)
    m = trueskill.calc_draw_margin(env.draw_probability, 2, env=env)
    d = r_a.mu - r_b.mu
    return env.cdf((d - m) / c), env.cdf((m - d) / c) - env.cdf((-m - d) / c)


def test_predictions_integrate_over_sigma_and_equal_package_on_football():
    frame = pd.read_csv(shared_path("sports", "international_football_results.csv")).tail(1500)
    outcome = np.sign(frame["home_score"] - frame["away_score"]).to_numpy() / 2 + 0.5
    data = Comparisons.from_arrays(frame["home_team"].to_numpy(), frame["away_team"].to_numpy(), outcome)
    mu_ref, sigma_ref = peer_rate(data.n_items, *as_lists(data))
    board = fit_trueskill(data, normal="trueskill")
    env = trueskill.TrueSkill()
    rating = [env.create_rating(m, s) for m, s in zip(mu_ref, sigma_ref, strict=True)] + [env.create_rating()]
    rng = np.random.default_rng(3)
    ia, ib = rng.integers(-1, data.n_items, 400), rng.integers(-1, data.n_items, 400)  # −1: a newcomer
    win, draw = board.predict_indices(ia, ib)
    ref = np.array([package_forecast(env, rating[i], rating[j]) for i, j in zip(ia, ib, strict=True)])
    np.testing.assert_allclose(win, ref[:, 0], rtol=0, atol=TOL)
    np.testing.assert_allclose(draw, ref[:, 1], rtol=0, atol=TOL)
    assert np.ptp(sigma_ref) > 1.0  # teams with few and many games: σ matters here
    # By name, an unseen team is a newcomer N(25, (25/3)²), not the average team with no uncertainty.
    top = board.items[int(np.argmax(board.columns["conservative"]))]
    p_new, t_new = board.predict(["Atlantis"], [top], unknown="prior")
    np.testing.assert_allclose([p_new[0], t_new[0]], package_forecast(env, rating[-1], rating[board.items.index(top)]),
                               rtol=0, atol=TOL)
    with pytest.raises(InputError, match="Atlantis.*newcomer"):
        board.predict(["Atlantis"], [top])


def test_win_probability_without_draws_is_the_package_faq_formula():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 8, 30), rng.integers(0, 8, 30)
    keep = a != b
    data = Comparisons.from_arrays(a[keep], b[keep], (rng.random(keep.sum()) < 0.6).astype(float))
    # exact normal functions: the package's approximate ppf(½) is not exactly 0, so its margin would not be either
    mu_ref, sigma_ref = peer_rate(data.n_items, *as_lists(data), backend="scipy", draw_probability=0.0)
    board = fit_trueskill(data, draw_probability=0.0)
    env = trueskill.TrueSkill(backend="scipy", draw_probability=0.0)
    ia, ib = np.meshgrid(np.arange(8), np.arange(8))
    win, draw = board.predict_indices(ia.ravel(), ib.ravel())
    denom = np.sqrt(2 * env.beta**2 + sigma_ref[ia.ravel()] ** 2 + sigma_ref[ib.ravel()] ** 2)
    faq = [env.cdf(x) for x in (mu_ref[ia.ravel()] - mu_ref[ib.ravel()]) / denom]
    np.testing.assert_allclose(win, faq, rtol=0, atol=TOL)
    assert np.all(draw == 0)


@pytest.mark.parametrize("seed", range(4))
def test_forecast_is_the_point_forecast_averaged_over_the_posteriors(seed):
    """Independent reference: numerical integration of the σ = 0 forecast over the skill difference."""
    from scipy import integrate, stats

    rng = np.random.default_rng(seed)
    mu_a, mu_b = rng.normal(25, 6, 2)
    s_a, s_b, beta = rng.uniform(0.3, 8.0, 3)
    m = float(trueskill_draw_margin(rng.uniform(0, 0.4), 2, beta=beta))
    point = trueskill_predictor(beta, m)
    spread = math.hypot(s_a, s_b)

    def averaged(k):
        def f(x):
            return point(np.array([x]), np.array([0.0]))[k][0] * stats.norm.pdf(x, mu_a - mu_b, spread)

        return integrate.quad(f, mu_a - mu_b - 12 * spread, mu_a - mu_b + 12 * spread, epsabs=1e-13, limit=200)[0]

    win, draw = trueskill_predictor(beta, m)(np.array([mu_a]), np.array([mu_b]), sigma_a=s_a, sigma_b=s_b)
    np.testing.assert_allclose([win[0], draw[0]], [averaged(0), averaged(1)], rtol=0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(d=st.floats(-60, 60), s_a=st.floats(0, 20), s_b=st.floats(0, 20), beta=st.floats(0.1, 10),
       p_draw=st.floats(0, 0.9))
def test_uncertain_forecasts_are_nearer_even_than_point_forecasts(d, s_a, s_b, beta, p_draw):
    predict = trueskill_predictor(beta, float(trueskill_draw_margin(p_draw, 2, beta=beta)))
    win, draw = predict(np.array([d]), np.array([0.0]), sigma_a=s_a, sigma_b=s_b)
    win0, draw0 = predict(np.array([d]), np.array([0.0]))
    loss, loss0 = 1 - win - draw, 1 - win0 - draw0
    assert abs(win[0] - 0.5) <= abs(win0[0] - 0.5) + 1e-15
    assert abs(loss[0] - 0.5) <= abs(loss0[0] - 0.5) + 1e-15
    if np.hypot(s_a, s_b) > 1e-3 * beta and 1e-3 < abs(win0[0] - 0.5) < 0.49:
        assert abs(win[0] - 0.5) < abs(win0[0] - 0.5)
    assert np.all((win >= 0) & (draw >= 0) & (loss >= -1e-15))


def test_forecast_rebuilt_from_the_json_board():
    board = fit_trueskill(chess().subset(slice(0, 400)))
    payload = json.loads(board.to_json())
    rows = {row["name"]: row for row in payload["items"]}
    p = payload["params"]
    names = list(rows) + ["newcomer"]
    mu = np.array([rows[n]["rating"] for n in names[:-1]] + [p["mu"]])
    sigma = np.array([rows[n]["sigma"] for n in names[:-1]] + [p["sigma"]])
    a, b = np.meshgrid(np.arange(len(names)), np.arange(len(names)))
    a, b = a.ravel(), b.ravel()
    rebuilt = trueskill_predictor(p["beta"], p["draw_margin_1v1"])(mu[a], mu[b], sigma_a=sigma[a], sigma_b=sigma[b])
    win, draw = board.predict([names[k] for k in a], [names[k] for k in b], unknown="prior")
    np.testing.assert_allclose(win, rebuilt[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(draw, rebuilt[1], rtol=0, atol=1e-12)


def test_held_out_chess_log_loss_improves_over_the_point_forecast():
    """Real data, first 80% of the games to fit, last 20% to score (was: σ ignored, log-loss 0.795 -> 0.727)."""
    data = chess()
    cut = int(0.8 * len(data))
    board, test = fit_trueskill(data.subset(slice(0, cut))), data.subset(slice(cut, None))
    win, draw = board.predict_indices(test.a, test.b)
    point_win, point_draw = trueskill_predictor(board.params["beta"], board.params["draw_margin_1v1"])(
        board.scores[test.a], board.scores[test.b])
    new = prediction_scores(win + draw / 2, test.outcome)["log_loss"]
    old = prediction_scores(point_win + point_draw / 2, test.outcome)["log_loss"]
    assert new < old - 0.03


def test_compare_models_forecasts_a_newcomer_from_the_prior():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 5, 80), rng.integers(1, 6, 80)
    a = np.where(a == b, 0, a)
    b = np.where(a == b, 1, b)
    a[60:70] = 6  # a newcomer plays in the second group only
    data = Comparisons.from_arrays(a, b, (rng.random(80) < 0.5).astype(float), items=[f"p{k}" for k in range(7)])
    group = np.r_[np.zeros(60), np.ones(20)]
    result = compare_models(data, ["trueskill"], split_by=group)
    train, test = data.subset(slice(0, 60)), data.subset(slice(60, None))
    seen = np.unique(np.r_[train.a, train.b])
    board = fit_trueskill(Comparisons.from_arrays(train.a, train.b, train.outcome))  # items named by index
    mu = np.append(board.scores, 25.0)
    sigma = np.append(board.columns["sigma"], 25.0 / 3)
    lookup = np.full(7, -1)
    lookup[seen] = np.arange(len(seen))
    ia, ib = lookup[test.a], lookup[test.b]
    assert np.sum(ia < 0) == 10
    win, draw = trueskill_predictor(25.0 / 6, board.params["draw_margin_1v1"])(
        mu[ia], mu[ib], sigma_a=sigma[ia], sigma_b=sigma[ib])
    expected = prediction_scores(win + draw / 2, test.outcome, tie_probability=draw)
    row = result.table.set_index("model").loc["trueskill"]
    assert row["log_loss"] == pytest.approx(expected["log_loss"], abs=1e-12)
