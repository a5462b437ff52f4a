"""Honest numbers at the edges (issues 14 and 18.10): flat likelihoods raise, sparse items never get narrow
intervals, intervals never collapse to zero width, and bad levels are refused.

Every case builds the data that reproduced the original wrong answer."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import optimize, special

from pairkit.data import Comparisons
from pairkit.errors import InputError, IntervalWarning, NoMLEError, NotIdentifiedError
from pairkit.rating import (
    fit_bradley_terry,
    fit_covariate_bt,
    fit_order_advantage,
    fit_rao_kupper,
)
from pairkit.rating._pairwise import (
    MIN_CLUSTERS,
    PairwiseDesign,
    bradley_terry_rows,
    covariance,
    fit_pairwise,
    flat_directions,
    sandwich_covariance,
)


def _random_games(rng, n_items, m, *, strengths=None, n_clusters=None, items=None):
    a = rng.integers(0, n_items, m)
    b = (a + rng.integers(1, n_items, m)) % n_items
    theta = np.zeros(n_items) if strengths is None else strengths
    y = (rng.random(m) < special.expit(theta[a] - theta[b])).astype(float)
    cluster = None if n_clusters is None else rng.integers(0, n_clusters, m)
    return a, b, y, cluster


def star_design(seed=0, n=10, m=600, ties=False):
    """Every model compared only against a reference 'i0', the reference always shown second (LLM-judge file)."""
    rng = np.random.default_rng(seed)
    other = rng.integers(1, n, m)
    u = rng.random(m)
    y = np.where(u < 0.3, 1.0, 0.0)
    if ties:
        y = np.where((u > 0.3) & (u < 0.45), 0.5, y)
    return Comparisons.from_arrays(other, np.zeros(m, int), y, a_first=np.ones(m, bool),
                                   items=[f"i{k}" for k in range(n)])


# ---------------------------------------------------------------------------------------------- identifiability
@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_star_design_with_constant_order_is_not_identified(prior):
    comps = star_design()
    with pytest.raises(NotIdentifiedError) as err:
        fit_order_advantage(comps, prior=prior)
    msg = str(err.value)
    assert "'i0'" in msg and "order_advantage" in msg and "a_first" in msg
    # No other item is named: only the reference moves with the advantage.
    assert "'i1'" not in msg


@pytest.mark.parametrize("ties", ["davidson", "rao_kupper"])
def test_star_design_not_identified_with_tie_models(ties):
    with pytest.raises(NotIdentifiedError, match="order_advantage"):
        fit_order_advantage(star_design(ties=True), ties=ties)


def test_star_design_profile_likelihood_is_flat_by_a_generic_optimiser():
    """Independent check that raising is right: the profile log-likelihood of β does not depend on β."""
    comps = star_design()
    n = comps.n_items
    sign = np.where(comps.a_first, 1.0, -1.0)

    def profile(beta):
        def nll(th):
            d = th[comps.a] - th[comps.b] + beta * sign
            return -np.sum(comps.outcome * special.log_expit(d) + (1 - comps.outcome) * special.log_expit(-d))

        return -optimize.minimize(nll, np.zeros(n), method="BFGS", options={"gtol": 1e-9}).fun

    assert profile(-2.0) == pytest.approx(profile(0.0), abs=1e-6)
    assert profile(1.5) == pytest.approx(profile(0.0), abs=1e-6)


def test_star_design_with_varying_order_is_identified():
    comps = star_design()
    rng = np.random.default_rng(1)
    varied = Comparisons.from_arrays(comps.a, comps.b, comps.outcome, items=comps.items,
                                     a_first=rng.random(len(comps)) < 0.5)
    board = fit_order_advantage(varied)
    lo, hi = board.param_intervals["order_advantage"]
    assert np.isfinite(lo) and np.isfinite(hi) and hi - lo < 1.0


@pytest.mark.parametrize("make", ["item_indicator", "duplicate"])
def test_confounded_covariates_are_named(make):
    rng = np.random.default_rng(2)
    a, b, y, _ = _random_games(rng, 5, 400)
    comps = Comparisons.from_arrays(a, b, y)
    z = rng.standard_normal(400)
    # A covariate equal to "a is item 0" minus "b is item 0" is item 0's strength in disguise.
    indicator = (a == 0).astype(float) - (b == 0)
    Z = np.c_[z, indicator] if make == "item_indicator" else np.c_[z, 2 * z]
    with pytest.raises(NotIdentifiedError, match="coef_") as err:
        fit_covariate_bt(comps, Z, names=["len", "other"])
    assert "ridge" in str(err.value)
    board = fit_covariate_bt(comps, Z, names=["len", "other"], ridge=1.0)  # the ridge identifies them
    assert np.all(np.isfinite(board.se))


def test_flat_directions_agree_with_design_rank():
    """Null space of the information vs the rank of the rows' design matrix [e_i − e_j, x] (numpy SVD)."""
    rng = np.random.default_rng(3)
    for trial in range(20):
        n, m = int(rng.integers(3, 8)), int(rng.integers(5, 40))
        a, b, _, _ = _random_games(rng, n, m)
        x = rng.choice([1.0, 0.0, -1.0], m) if trial % 2 else np.ones(m)
        design = PairwiseDesign(n_items=n, i=a, j=b, stats={"wins_i": np.ones(m), "wins_j": np.ones(m)},
                                X=x[:, None])
        from pairkit.rating._pairwise import data_information

        info = data_information(design, bradley_terry_rows)
        rows = np.zeros((m, n + 1))
        rows[np.arange(m), a] += 1
        rows[np.arange(m), b] -= 1
        rows[:, n] = x
        seen = np.union1d(a, b)
        n_comp = _components(n, a, b, seen)
        expected_flat = (len(seen) + 1 - n_comp) - np.linalg.matrix_rank(rows[:, list(seen) + [n]])
        assert flat_directions(info, n).shape[1] == expected_flat


def _components(n, a, b, seen):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return len(np.unique(label[seen]))


@pytest.mark.parametrize("fit", [
    lambda c: fit_bradley_terry(c, ties="davidson"),
    fit_rao_kupper,
])
def test_ties_only_has_no_mle(fit):
    comps = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [0.5, 0.5, 0.5])
    with pytest.raises(NoMLEError, match="every comparison is a tie"):
        fit(comps)


# ---------------------------------------------------------------------------------------------- tiny weights
def test_negligible_weight_item_has_no_mle_instead_of_zero_width():
    rng = np.random.default_rng(4)
    a, b, y, _ = _random_games(rng, 4, 200)
    a = np.r_[a, 4, 4, 1]
    b = np.r_[b, 0, 2, 4]
    y = np.r_[y, 1.0, 0.0, 1.0]
    w = np.r_[np.ones(200), 1e-300, 1e-300, 1e-300]
    comps = Comparisons.from_arrays(a, b, y, weight=w, items=list("ABCDE"))
    with pytest.raises(NoMLEError, match="negligible total weight.*'E'"):
        fit_bradley_terry(comps)
    with pytest.warns(IntervalWarning, match="prior alone"):
        board = fit_bradley_terry(comps, prior=1.0)
    k = comps.items.index("E")
    assert board.columns["prior_only"][k] and board.columns["prior_only"].sum() == 1
    assert board.se[k] > 1.0  # about the prior's width, not zero


# ---------------------------------------------------------------------------------------------- levels
@pytest.mark.parametrize("level", [0.0, 1.0, float("nan"), -0.5, 1.5])
@pytest.mark.parametrize("fit", [fit_bradley_terry, fit_rao_kupper,
                                 lambda c, level: fit_order_advantage(c, level=level)])
def test_bad_level_is_refused(fit, level):
    comps = Comparisons.from_arrays([0, 1, 2, 0], [1, 2, 0, 2], [1, 1, 0.5, 0], a_first=[True, False, True, False])
    with pytest.raises(InputError, match="level"):
        fit(comps, level=level)


# ---------------------------------------------------------------------------------------------- clusters
def _clustered(seed, n_clusters, m=400, n_items=5):
    rng = np.random.default_rng(seed)
    a, b, y, cl = _random_games(rng, n_items, m, strengths=np.linspace(-1, 1, n_items), n_clusters=n_clusters)
    return Comparisons.from_arrays(a, b, y, cluster=cl)


def test_single_cluster_never_gives_zero_width():
    comps = _clustered(5, 1)
    # The raw sandwich collapses: with one cluster its only score is zero at the maximum.
    fit = fit_pairwise(PairwiseDesign(comps.n_items, comps.a, comps.b,
                                      {"wins_i": comps.outcome, "wins_j": 1 - comps.outcome}), bradley_terry_rows)
    fisher = covariance(fit.information, comps.n_items, gauge=True)
    raw = sandwich_covariance(fisher, bradley_terry_rows(fit.theta[comps.a] - fit.theta[comps.b], fit.eta,
                                                         {"wins_i": comps.outcome, "wins_j": 1 - comps.outcome}),
                              PairwiseDesign(comps.n_items, comps.a, comps.b, {}), comps.cluster, 0)
    assert np.allclose(np.diag(raw), 0, atol=1e-20)
    for intervals in ("auto", "sandwich"):
        with pytest.warns(IntervalWarning, match="single cluster|1 cluster"):
            board = fit_bradley_terry(comps, intervals=intervals)
        assert board.interval_method == "fisher"
        assert np.all(board.ci_high - board.ci_low > 0.1)
        assert np.allclose(board.se, np.sqrt(np.diag(fisher)))


def test_auto_uses_sandwich_only_with_enough_clusters():
    with pytest.warns(IntervalWarning, match="only 10 cluster"):
        few = fit_bradley_terry(_clustered(6, 10))
    assert few.interval_method == "fisher" and "10 cluster" in few.info["interval_rule"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntervalWarning)
        many = fit_bradley_terry(_clustered(6, 2 * MIN_CLUSTERS))
    assert many.interval_method == "sandwich" and "sandwich" in many.info["interval_rule"]
    explicit = fit_bradley_terry(_clustered(6, 10), intervals="sandwich")  # asked for: honoured
    assert explicit.interval_method == "sandwich"


def sparse_clustered(seed, strengths=None):
    """Items 0–3 in many clusters, 'single' only in cluster 0, 'never' never compared (issue 14's judge run)."""
    rng = np.random.default_rng(seed)
    theta = np.zeros(6) if strengths is None else strengths
    a, b, y, cl = _random_games(rng, 4, 600, strengths=theta[:4], n_clusters=60)
    k = 8  # the single-cluster item plays 8 comparisons, all in cluster 0
    opp = rng.integers(0, 4, k)
    ys = (rng.random(k) < special.expit(theta[4] - theta[opp])).astype(float)
    a, b, y, cl = np.r_[a, np.full(k, 4)], np.r_[b, opp], np.r_[y, ys], np.r_[cl, np.zeros(k, int)]
    return Comparisons.from_arrays(a, b, y, cluster=cl, items=["A", "B", "C", "D", "single", "never"])


def test_sparse_items_are_floored_at_fisher_and_flagged():
    comps = sparse_clustered(7)
    with pytest.warns(IntervalWarning, match="prior alone"):
        fisher = fit_bradley_terry(comps, prior=1.0, intervals="fisher")
    with pytest.warns(IntervalWarning) as record:
        board = fit_bradley_terry(comps, prior=1.0)
    messages = " ".join(str(r.message) for r in record)
    assert "'single'" in messages and "'never'" in messages
    assert board.interval_method == "sandwich"
    single, never = comps.items.index("single"), comps.items.index("never")
    assert board.columns["fisher_floor"][[single, never]].all()
    assert board.columns["prior_only"][never] and not board.columns["prior_only"][single]
    # Never narrower than Fisher for the flagged items (the unfloored sandwich was ~6x narrower).
    assert board.se[single] >= fisher.se[single] * (1 - 1e-9)
    assert board.se[never] >= fisher.se[never] * (1 - 1e-9)
    assert board.se[never] > 1.0  # the prior's width (one virtual win and loss), not 0.01
    payload = board.to_dict()
    assert payload["items"][0].get("prior_only") is not None
    assert "sandwich" in payload["interval"]["rule"] and any("'never'" in x for x in payload["interval"]["notes"])


def test_sparse_item_interval_coverage():
    """Coverage of the single-cluster item's 90% interval, true strengths drawn from the prior.

    Newman's prior with one virtual win and loss is the standard logistic density σ(θ)σ(−θ), so drawing the
    true strengths from it makes the (Laplace-approximate) posterior intervals calibrated on average.
    """
    rng = np.random.default_rng(8)
    hits, reps = [], 150
    for r in range(reps):
        theta = rng.logistic(size=6)
        comps = sparse_clustered(100 + r, theta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IntervalWarning)
            board = fit_bradley_terry(comps, prior=1.0, level=0.9)
        truth = theta - theta.mean()
        hits.append((board.ci_low_log <= truth) & (truth <= board.ci_high_log))
    coverage = np.mean(hits, axis=0)
    # Binomial sd at 150 reps is ~0.025. The unfloored sandwich covered the single-cluster item 39% and the
    # never-compared item 2% of the time; normal (Laplace) intervals for the never-compared item 85%.
    assert coverage[4] >= 0.84, coverage
    assert coverage[5] >= 0.86, coverage
    assert np.all(coverage <= 0.98), coverage


# ---------------------------------------------------------------------------------------------- tiers
def _games(rng, theta, m):
    n = len(theta)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    return Comparisons.from_arrays(a, b, (rng.random(m) < special.expit(theta[a] - theta[b])).astype(float))


def test_tiers_p_values_match_a_slow_reference():
    rng = np.random.default_rng(9)
    board = fit_bradley_terry(_games(rng, np.array([1.0, 0.95, 0.9, 0.0, -0.2, -0.5, -1.0]), 2000))
    tier, p_top = board.tiers()
    top = int(np.argmax(board.log_strength))
    v = board.covariance
    for k in range(len(tier)):
        if k == top:
            continue
        se = np.sqrt(v[top, top] + v[k, k] - 2 * v[top, k])
        raw = 0.5 * special.erfc((board.log_strength[top] - board.log_strength[k]) / se / np.sqrt(2))
        assert p_top[k] == pytest.approx(min(1.0, (len(tier) - 1) * raw), rel=1e-6, abs=1e-300)
    assert tier[top] == 1 and tier.min() == 1 and set(np.diff(np.sort(np.unique(tier)))) <= {1}
    assert np.all((p_top > 1 - board.level) == (tier == 1))
    frame = board.to_pandas()
    assert {"tier", "p_vs_top"} <= set(frame.columns)
    assert "tier" in board.to_dict()["items"][0]


def test_tier_one_contains_the_best_item_at_the_nominal_rate():
    """Simulation: the true best is in tier 1 in ≥ 95% of data sets; under equal strengths, each item leaves
    tier 1 at most ~5% of the time (the raw, uncorrected test against the data-chosen top: ~19% for any)."""
    rng = np.random.default_rng(10)
    theta = np.array([0.3, 0.2, 0.1, 0.0, -0.1, -0.2])
    kept_best, left_null = 0, np.zeros(6)
    reps = 200
    for _ in range(reps):
        kept_best += fit_bradley_terry(_games(rng, theta, 600)).tiers()[0][0] == 1
        left_null += fit_bradley_terry(_games(rng, np.zeros(6), 600)).tiers()[0] > 1
    assert kept_best / reps >= 0.95
    assert np.all(left_null / reps <= 0.09), left_null / reps


def test_tiers_from_bootstrap_samples():
    from pairkit.rating import bootstrap_bradley_terry

    rng = np.random.default_rng(11)
    comps = _games(rng, np.array([2.0, 0.0, 0.0, -2.0]), 800)
    board = bootstrap_bradley_terry(comps, n_boot=200, seed=0)
    tier, p_top = board.tiers()
    assert tier[0] == 1 and tier[3] > tier[1] >= 2
    diff = board.samples[:, [0]] - board.samples[:, 1:]
    z = (board.log_strength[0] - board.log_strength[1:]) / diff.std(axis=0, ddof=1)
    np.testing.assert_allclose(p_top[1:], np.minimum(1, 3 * 0.5 * special.erfc(z / np.sqrt(2))), rtol=1e-9)


def test_tiers_need_uncertainty():
    board = fit_bradley_terry(_games(np.random.default_rng(12), np.zeros(3), 100), intervals="none")
    with pytest.raises(InputError, match="tiers need"):
        board.tiers()
    assert "tier" not in board.to_pandas()


# ---------------------------------------------------------------------------------------------- separation
@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_first_side_always_winning_has_no_mle(prior):
    """Was: order_advantage = 38.6 with a zero-width interval [38.6, 38.6]."""
    rng = np.random.default_rng(13)
    a, b, _, _ = _random_games(rng, 5, 300)
    comps = Comparisons.from_arrays(a, b, np.ones(300), a_first=np.ones(300, bool))
    with pytest.raises(NoMLEError, match="separated.*order_advantage"):
        fit_order_advantage(comps, prior=prior)
    # Independent check: the profile log-likelihood keeps rising with β (generic optimiser over θ).
    def profile(beta):
        def nll(th):
            return -np.sum(special.log_expit(th[a] - th[b] + beta))

        return -optimize.minimize(nll, np.zeros(5), method="BFGS").fun

    values = [profile(beta) for beta in (2.0, 5.0, 10.0)]
    assert values[0] < values[1] < values[2]


def test_perfectly_predictive_covariate_has_no_mle_unless_ridged():
    rng = np.random.default_rng(14)
    a, b, _, _ = _random_games(rng, 5, 300)
    z = rng.standard_normal(300)
    comps = Comparisons.from_arrays(a, b, (z > 0).astype(float))
    with pytest.raises(NoMLEError, match="separated.*coef_len"):
        fit_covariate_bt(comps, z, names=["len"], prior=1.0)
    board = fit_covariate_bt(comps, z, names=["len"], prior=1.0, ridge=1.0)
    assert np.isfinite(board.params["coef_len"]) and board.params["coef_len"] > 0


def test_separation_check_leaves_ordinary_data_alone():
    rng = np.random.default_rng(15)
    a, b, y, _ = _random_games(rng, 6, 400, strengths=np.linspace(-1, 1, 6))
    comps = Comparisons.from_arrays(a, b, y, a_first=rng.random(400) < 0.5)
    board = fit_order_advantage(comps)
    assert np.isfinite(board.params["order_advantage"])


# ---------------------------------------------------------------------------------------------- online boards
@pytest.mark.parametrize("fit_name", ["fit_trueskill", "fit_weng_lin"])
def test_online_boards_sort_by_the_conservative_score(fit_name):
    """Was: sorted by μ, so a newcomer with 2 wins (σ ≈ 5.8) ranked first."""
    import pairkit.rating as rating

    rng = np.random.default_rng(16)
    a, b, y, _ = _random_games(rng, 6, 600, strengths=np.linspace(2, -2, 6))
    a, b, y = np.r_[a, 6, 6, 6], np.r_[b, 0, 1, 0], np.r_[y, 1.0, 1.0, 1.0]  # a newcomer beats the best, 3 times
    comps = Comparisons.from_arrays(a, b, y, items=[f"p{k}" for k in range(6)] + ["newcomer"])
    board = getattr(rating, fit_name)(comps)
    conservative = board.columns["conservative"]
    assert np.argmax(board.log_strength) == 6  # highest μ …
    assert board.rank[6] > 1 and board.rank[int(np.argmax(conservative))] == 1  # … but not first
    frame = board.to_pandas()
    assert np.all(np.diff(frame["conservative"].to_numpy()) <= 0)
    assert "rating" in frame  # μ still shown
    assert board.to_dict()["sorted_by"].startswith("conservative")


def test_elo_boards_are_not_converted_twice():
    """Was: bayeselo --scale elo re-converted bayeselo's Elo as if it were log-strength (8% too spread)."""
    from pairkit.rating import fit_bayeselo

    rng = np.random.default_rng(17)
    a, b, y, _ = _random_games(rng, 6, 600, strengths=np.linspace(-1, 1, 6))
    y = np.where(rng.random(600) < 0.2, 0.5, y)
    comps = Comparisons.from_arrays(a, b, y, a_first=np.ones(600, bool), items=[f"p{k}" for k in range(6)])
    board = fit_bayeselo(comps)
    assert board.scale_name == "elo"
    again = board.scale("elo")
    np.testing.assert_allclose(again.ratings, board.ratings)
    anchored = board.scale("elo", anchor="p0")
    assert anchored.ratings[0] == pytest.approx(1000.0)
    np.testing.assert_allclose(np.diff(anchored.ratings), np.diff(board.ratings))  # same spread
    bt = fit_bradley_terry(comps)
    assert bt.scale("elo").ratings.std() == pytest.approx(400 / np.log(10) * bt.log_strength.std())


def test_predict_unknown_items():
    comps = Comparisons.from_arrays(["x", "y", "x", "z"], ["y", "z", "z", "x"], [1, 1, 0.5, 0])
    board = fit_bradley_terry(comps, prior=1.0)
    with pytest.raises(InputError, match="unknown item.*'new'.*unknown='prior'"):
        board.predict("new", "x")
    p, _ = board.predict(["new", "x"], ["x", "new"], unknown="prior")
    theta_x = board.log_strength[comps.items.index("x")]
    np.testing.assert_allclose(p, special.expit([-theta_x, theta_x]))  # the board is centred: average = 0


def test_single_cluster_extra_parameters_fall_back_to_fisher():
    """The order advantage's sandwich interval also collapsed with one cluster."""
    rng = np.random.default_rng(18)
    a, b, y, _ = _random_games(rng, 5, 400, strengths=np.linspace(-1, 1, 5))
    comps = Comparisons.from_arrays(a, b, y, a_first=rng.random(400) < 0.5, cluster=np.zeros(400))
    with pytest.warns(IntervalWarning, match="single cluster"):
        board = fit_order_advantage(comps, intervals="sandwich")
    fisher = fit_order_advantage(replace(comps, cluster=None), intervals="fisher")
    assert board.interval_method == "fisher"
    assert board.param_intervals["order_advantage"] == pytest.approx(fisher.param_intervals["order_advantage"])


def few_comparison_items(seed, theta):
    """Items 0–3 in 60 clusters; item 4 with 1 comparison, 5 with 2 and 6 with 3 (each in distinct clusters);
    item 7 never compared."""
    rng = np.random.default_rng(seed)
    m = 600
    a = rng.integers(0, 4, m)
    b = (a + rng.integers(1, 4, m)) % 4
    parts = [(a, b, rng.integers(0, 60, m))]
    for item, k in ((4, 1), (5, 2), (6, 3)):
        parts.append((np.full(k, item), rng.integers(0, 4, k), rng.choice(60, k, replace=False)))
    a, b, cl = (np.concatenate(x) for x in zip(*parts, strict=True))
    y = (rng.random(len(a)) < special.expit(theta[a] - theta[b])).astype(float)
    return Comparisons.from_arrays(a, b, y, cluster=cl, items=[f"i{k}" for k in range(8)])


def test_auto_sandwich_is_never_narrower_than_fisher():
    comps = few_comparison_items(19, np.zeros(8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntervalWarning)
        auto = fit_bradley_terry(comps, prior=1.0)
        fisher = fit_bradley_terry(comps, prior=1.0, intervals="fisher")
        raw = fit_bradley_terry(comps, prior=1.0, intervals="sandwich")
    assert auto.interval_method == "sandwich"
    assert np.all(auto.se >= fisher.se * (1 - 1e-6))
    assert np.any(raw.se < 0.9 * fisher.se)  # what auto used to report


def test_few_comparison_item_coverage():
    """Items with 1, 2, 3 comparisons in distinct clusters: the raw sandwich covered 57–86% at nominal 90%
    (2 and 3 comparisons: 57% and 61%); auto must stay near nominal (true strengths drawn from the prior)."""
    rng = np.random.default_rng(20)
    hits = []
    for r in range(150):
        theta = rng.logistic(size=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IntervalWarning)
            board = fit_bradley_terry(few_comparison_items(200 + r, theta), prior=1.0, level=0.9)
        truth = theta - theta.mean()
        hits.append((board.ci_low_log <= truth) & (truth <= board.ci_high_log))
    coverage = np.mean(hits, axis=0)
    assert np.all(coverage[4:] >= 0.8), coverage


def test_large_designs_check_separation_only_when_the_fit_diverges(monkeypatch):
    import pairkit.rating._generic as generic

    calls = []
    real = generic.separating_direction
    monkeypatch.setattr(generic, "SEPARATION_LP_ROWS", 10)
    monkeypatch.setattr(generic, "separating_direction", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(21)
    a, b, y, _ = _random_games(rng, 5, 300)
    z = rng.standard_normal(300)
    fit_covariate_bt(Comparisons.from_arrays(a, b, y), z, prior=1.0)
    assert not calls  # ordinary data: no linear program
    with pytest.raises(NoMLEError, match="separated.*coef_x0"):
        fit_covariate_bt(Comparisons.from_arrays(a, b, (z > 0).astype(float)), z, prior=1.0)
    assert calls


# ---------------------------------------------------------------------------------------------- cluster bootstrap
def test_cluster_bootstrap_of_one_cluster_is_refused():
    """Was: every replicate repeated the data, intervals [0.420, 0.420]."""
    from pairkit.rating import bootstrap, bootstrap_bradley_terry

    comps = _clustered(22, 1)
    with pytest.raises(InputError, match="single cluster"):
        bootstrap_bradley_terry(comps, n_boot=20, by="cluster")
    with pytest.raises(InputError, match="single cluster"):
        bootstrap(comps, n_boot=20, by="cluster")
    with pytest.warns(IntervalWarning, match="only 5 clusters undercovers"):
        bootstrap_bradley_terry(_clustered(22, 5), n_boot=20, by="cluster")


def test_cluster_bootstrap_floors_single_cluster_items():
    from pairkit.rating import bootstrap_bradley_terry

    comps = sparse_clustered(23)
    with pytest.warns(IntervalWarning, match="'single'"):
        board = bootstrap_bradley_terry(comps, n_boot=100, by="cluster", prior=1.0)
    fisher = fit_bradley_terry(comps, prior=1.0, intervals="fisher")
    single = comps.items.index("single")
    assert board.columns["fisher_floor"][single]
    assert board.ci_low_log[single] <= fisher.ci_low_log[single] + 1e-12
    assert board.ci_high_log[single] >= fisher.ci_high_log[single] - 1e-12
