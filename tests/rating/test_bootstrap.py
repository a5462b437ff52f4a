import warnings

import numpy as np
import pytest
from scipy import special

from pairkit.data import Comparisons, read_comparisons
from pairkit.errors import InputError
from pairkit.rating import bootstrap, bootstrap_bradley_terry, fit_bradley_terry
from pairkit.rating.bootstrap import BootstrapWarning, replicate_solver
from tests.shared_data import shared_path


def simulate(rng, n=6, m=800, clusters=None):
    theta = np.linspace(-1, 1, n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    y = (rng.random(m) < special.expit(theta[a] - theta[b])).astype(float)
    y[rng.random(m) < 0.1] = 0.5
    cl = None if clusters is None else rng.integers(0, clusters, m)
    return Comparisons.from_arrays(a, b, y, cluster=cl)


@pytest.mark.parametrize("prior", [0.0, 1.5])
def test_replicate_solver_equals_refit_on_reweighted_data(rng, prior):
    c = simulate(rng)
    n = c.n_items
    board = fit_bradley_terry(c, prior=prior)
    pairs = c.pair_counts()
    solve = replicate_solver(pairs, board.log_strength, prior=prior, items=c.items, tol=1e-12)
    mults = rng.poisson(1.0, size=(len(c), 4)).astype(float)
    wl, wh = np.zeros((len(pairs.i), 4)), np.zeros((len(pairs.i), 4))
    for col in range(4):
        p = c.with_weights(c.weight * mults[:, col]).pair_counts()
        pos = np.searchsorted(pairs.i * n + pairs.j, p.i * n + p.j)
        wl[pos, col], wh[pos, col] = p.wins_i, p.wins_j
    theta, bad = solve(wl, wh)
    assert not bad.any()
    for col in range(4):
        ref = fit_bradley_terry(c.with_weights(c.weight * mults[:, col]), prior=prior).log_strength
        np.testing.assert_allclose(theta[:, col] - theta[:, col].mean(), ref, atol=1e-8)


def test_fast_bootstrap_agrees_with_generic_refits():
    c = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    fast = bootstrap_bradley_terry(c, n_boot=400, seed=1)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, intervals="none"), n_boot=400, seed=2)
    # two independent 400-replicate estimates of the same standard errors agree to Monte-Carlo error
    np.testing.assert_allclose(fast.se, slow.se, rtol=0.2)
    assert fast.interval_method == "bootstrap" and fast.samples.shape == (400, c.n_items)
    # ties count as half a win: the bootstrap (like the sandwich) sees less variance than the Fisher bound
    sandwich = fit_bradley_terry(c, intervals="sandwich")
    np.testing.assert_allclose(fast.se, sandwich.se, rtol=0.15)


def test_cluster_bootstrap_widens_for_duplicated_clusters(rng):
    c = simulate(rng, m=600)
    idx = np.repeat(np.arange(len(c)), 4)
    dup = Comparisons.from_arrays(c.a[idx], c.b[idx], c.outcome[idx], cluster=idx)
    by_row = bootstrap_bradley_terry(dup, n_boot=300, seed=0)
    by_cluster = bootstrap_bradley_terry(dup, n_boot=300, by="cluster", seed=0)
    ratio = np.median(by_cluster.se / by_row.se)
    assert 1.6 < ratio < 2.4  # √4 = 2


def test_bootstrap_reports_replicates_without_mle(rng):
    # a sparse design where resamples often leave an item unbeaten
    c = Comparisons.from_arrays([0, 1, 2, 0, 1, 2, 1], [1, 2, 0, 2, 0, 1, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        board = bootstrap_bradley_terry(c, n_boot=200, seed=0)
    assert any(issubclass(w.category, BootstrapWarning) for w in caught)
    assert 0 < board.info["bootstrap_failed"] < 200
    assert board.samples.shape[0] == 200  # refitted with a tiny prior, never dropped
    assert np.isfinite(board.samples).all()


def test_bootstrap_argument_errors(rng):
    c = simulate(rng)
    with pytest.raises(InputError, match="cluster"):
        bootstrap_bradley_terry(c, by="cluster")
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_bradley_terry(c, n_boot=1)


def test_bootstrap_rank_intervals(rng):
    board = bootstrap_bradley_terry(simulate(rng, m=3000), n_boot=200, seed=0)
    lo, hi = board.rank_interval()
    assert (lo <= board.rank).all() and (board.rank <= hi).all()


def test_row_resampling_path_for_distinct_rows_agrees_with_generic(rng):
    c = simulate(rng, n=5, m=400)
    c = c.with_weights(rng.uniform(0.5, 1.5, len(c)))  # every row its own cell: the index-resampling path
    fast = bootstrap_bradley_terry(c, n_boot=400, seed=3)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, intervals="none"), n_boot=400, seed=4)
    np.testing.assert_allclose(fast.se, slow.se, rtol=0.2)


# ------------------------------------------------------------------------------------ replicates without an MLE
def _lucky(extra_games=0):
    """Four items in a ring of decisive games plus 'lucky', who won 3 of 4: resamples often leave it unbeaten."""
    a = [0, 1, 2, 3, 1, 2, 3, 0] * 3 + [4, 4, 4, 0] + [4] * extra_games
    b = [1, 2, 3, 0, 0, 1, 2, 3] * 3 + [0, 1, 2, 4] + [3] * extra_games
    return Comparisons.from_arrays(a, b, np.ones(len(a)), items=["p", "q", "r", "s", "lucky"])


def test_divergent_items_match_a_vanishing_prior():
    """Which strengths diverge, and which way, checked numerically: refit with priors 1e-3 and 1e-7 and see
    which items move by ~log(1e4) against the others."""
    from pairkit.rating import divergent_items

    designs = {
        "unbeaten": ([0, 1, 2, 3, 3], [1, 2, 0, 0, 1], {3: "up"}),
        "winless": ([0, 1, 2, 0, 1], [1, 2, 0, 3, 3], {3: "down"}),
        "chain": (
            [0, 1, 2, 0, 3, 4, 5, 7, 3, 0],
            [1, 2, 0, 3, 4, 5, 7, 3, 6, 6],
            {0: "up", 1: "up", 2: "up", 6: "down"},
        ),
        "never compared": ([0, 1, 2], [1, 2, 0], {3: "both"}),
        "top group": ([0, 1, 0, 2, 3, 4], [1, 0, 2, 3, 4, 2], {0: "up", 1: "up"}),
    }
    for name, (a, b, expected) in designs.items():
        c = Comparisons.from_arrays(a, b, np.ones(len(a)), items=[f"i{k}" for k in range(max(a + b) + 2)])
        up, down = divergent_items(c.pair_counts(ties="half"))
        got = {int(k): "up" for k in np.flatnonzero(up)} | {int(k): "down" for k in np.flatnonzero(down)}
        got |= {int(k): "both" for k in np.flatnonzero(up & down)}
        assert got == {**expected, **({} if name == "never compared" else {max(a + b) + 1: "both"})}, name
        fixed = ~(up | down)
        small, tiny = (fit_bradley_terry(c, prior=p, intervals="none").scores for p in (1e-3, 1e-7))
        move = (tiny - tiny[fixed].mean()) - (small - small[fixed].mean())
        assert np.all(move[up & ~down] > 5) and np.all(move[down & ~up] < -5), (name, move)
        assert np.all(np.abs(move[fixed]) < 0.05), (name, move)


def test_no_mle_replicates_are_kept_and_counted_exactly():
    """Replicates are drawn from the seed as documented (row indices, in both paths here): a slow loop over the same
    draws counts the replicates in which 'lucky' lost no game, which must equal its no_mle_share."""
    from pairkit.rating import REPLICATE_PRIOR, fit_model

    c = _lucky()
    n_boot = 300
    with pytest.warns(BootstrapWarning, match="refitted with a prior of 0.01"):
        fast = fit_model(c, "bt", bootstrap_replicates=n_boot, seed=5)
    with pytest.warns(BootstrapWarning, match="refitted with a prior of 0.01"):
        generic = bootstrap(
            c,
            lambda x: fit_bradley_terry(x, intervals="none"),
            n_boot=n_boot,
            seed=5,
            fallback=lambda x: fit_bradley_terry(x, prior=REPLICATE_PRIOR, intervals="none"),
        )
    from pairkit.rating.bootstrap import CHUNK, _row_layout, _RowResampler

    streams = np.random.default_rng(5).spawn(-(-n_boot // CHUNK))  # a stream per chunk of replicates, in order
    resampler = _RowResampler(len(c), _row_layout(c))
    unbeaten = 0
    present = np.zeros(n_boot, dtype=bool)
    for r in range(n_boot):
        rows = np.flatnonzero(resampler.multiplicities(streams[r // CHUNK]))
        lost = any(c.b[x] == 4 for x in rows)  # outcomes are all 1: b lost
        present[r] = any(c.a[x] == 4 or c.b[x] == 4 for x in rows)
        unbeaten += present[r] and not lost
    lucky = c.items.index("lucky")
    assert unbeaten / n_boot > 0.025  # so the upper bound is honestly unbounded
    for board in (fast, generic):
        assert board.columns["no_mle_share"][lucky] >= unbeaten / n_boot
        assert board.samples.shape == (n_boot, 5) and np.isfinite(board.samples).all()
        assert np.isinf(board.ci_high_log[lucky])
        assert np.isfinite(board.ci_high_log[:4]).all() and np.isfinite(board.ci_low_log[:4]).all()
    np.testing.assert_allclose(fast.columns["no_mle_share"], generic.columns["no_mle_share"])
    payload = fast.to_dict()
    row = next(r for r in payload["items"] if r["name"] == "lucky")
    assert row["ci_high"] is None and any("'lucky'" in note for note in payload["interval"]["notes"])
    # The same replicates solved two ways; an item absent from a replicate has no value there (either is arbitrary),
    # and the generic path's refit puts its tiny prior on every item (a 1e-3 difference at most here).
    assert 0.9 < present.mean() < 1
    np.testing.assert_allclose(fast.samples[present], generic.samples[present], atol=1e-3)


def test_dropping_no_mle_replicates_made_the_other_intervals_narrow():
    """The old rule (exclude failed replicates) against the new (keep them, refitted): the excluded replicates are
    those where 'lucky' won everything — exactly where the others' ratings are lowest — so the others' lower
    bounds were too high. Checked with the kept samples themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)
        board = bootstrap_bradley_terry(_lucky(), n_boot=600, seed=3)
    lucky = board.items.index("lucky")
    kept = board.samples
    failed = np.zeros(len(kept), dtype=bool)
    failed[np.argsort(-kept[:, lucky])[: board.info["bootstrap_failed"]]] = True  # lucky's largest = diverged
    old_low = np.quantile(kept[~failed][:, :4] - kept[~failed][:, :4].mean(axis=1, keepdims=True), 0.025, axis=0)
    shift = board.ci_low_log[:4] - old_low
    assert shift.mean() < -0.05 and (shift < 0).sum() >= 3, shift  # lower on the whole (600 replicates: MC noise)


def test_fast_and_generic_paths_agree_on_the_share_without_an_mle():
    from pairkit.rating import REPLICATE_PRIOR

    c = _lucky(extra_games=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)
        fast = bootstrap_bradley_terry(c, n_boot=800, seed=1)
        slow = bootstrap(
            c,
            lambda x: fit_bradley_terry(x, intervals="none"),
            n_boot=250,
            seed=1,  # the same streams: its replicates are the fast path's first 250
            fallback=lambda x: fit_bradley_terry(x, prior=REPLICATE_PRIOR, intervals="none"),
        )
    lucky = c.items.index("lucky")
    # P(lucky unbeaten in a resample) in closed form: its one loss never drawn, some of its 5 wins drawn
    m = len(c)
    exact = (1 - 1 / m) ** m - (1 - 6 / m) ** m
    for board, reps in ((fast, 800), (slow, 250)):
        share = board.columns["no_mle_share"][lucky]
        assert share == pytest.approx(exact, abs=3.5 * np.sqrt(exact * (1 - exact) / reps) + 0.005)
    # the same 250 resamples solved both ways (the generic refit puts its tiny prior on every item: ~1e-3)
    np.testing.assert_allclose(fast.samples[:250, :4].std(axis=0, ddof=1), slow.se[:4], rtol=0.01)


# ------------------------------------------------------------------------------------ fast path: draws and solves
@pytest.mark.parametrize("prior", [0.0, 1.5])
@pytest.mark.parametrize("tol", [1e-12, 1e-6])
def test_dense_replicate_solver_equals_refit_on_reweighted_data(rng, prior, tol):
    """The n × n (Zermelo-form) solver against a slow refit of each replicate: to 1e-8 in double precision
    (tol < 1e-6), to 1e-6 in single precision (tol ≥ 1e-6: the default 1e-5 too)."""
    from pairkit.rating.bootstrap import dense_replicate_solver

    c = simulate(rng, n=7, m=900)
    n = c.n_items
    board = fit_bradley_terry(c, prior=prior)
    pairs = c.pair_counts()
    solve = dense_replicate_solver(pairs, board.log_strength, prior=prior, items=c.items, tol=tol)
    mults = rng.poisson(1.0, size=(len(c), 5)).astype(float)
    wl, wh = np.zeros((len(pairs.i), 5)), np.zeros((len(pairs.i), 5))
    for col in range(5):
        p = c.with_weights(c.weight * mults[:, col]).pair_counts()
        pos = np.searchsorted(pairs.i * n + pairs.j, p.i * n + p.j)
        wl[pos, col], wh[pos, col] = p.wins_i, p.wins_j
    theta, bad = solve(wl, wh)
    assert not bad.any()
    for col in range(5):
        ref = fit_bradley_terry(c.with_weights(c.weight * mults[:, col]), prior=prior).log_strength
        np.testing.assert_allclose(theta[:, col] - theta[:, col].mean(), ref,
                                   atol=1e-8 if tol < 1e-6 else 1.5e-6)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_fast_bootstrap_replicates_equal_slow_refits_of_the_same_resamples(rng, n_jobs):
    """Every row appears once (distinct weights), so the fast path draws row indices from the same streams as the
    generic path: each replicate's strengths equal a slow refit of the same resampled rows to 1e-8, in one process
    or two (forked)."""
    c = simulate(rng, n=6, m=300)
    c = c.with_weights(rng.uniform(0.5, 1.5, len(c)))
    fast = bootstrap_bradley_terry(c, n_boot=70, seed=11, tol=1e-12, n_jobs=n_jobs)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, intervals="none"), n_boot=70, seed=11)
    assert fast.info["bootstrap_failed"] == slow.info["bootstrap_failed"] == 0
    np.testing.assert_allclose(fast.samples, slow.samples, atol=1e-8)


@pytest.mark.parametrize("prior", [0.0, 0.5])
def test_dense_cell_path_replicates_equal_slow_refits_of_the_same_resamples(rng, prior):
    """Unit weights with ties (a (pair, outcome) cell holds several rows) on a dense graph: the fast path counts the
    drawn rows per cell and solves by the rescaled chord steps; every replicate equals the plain fit of the same
    resampled rows (the generic path, same seed) to 1e-8."""
    from pairkit.rating.bootstrap import _row_layout

    c = simulate(rng, n=16, m=700)  # ~300 distinct cells: rows drawn and counted per cell (no multinomial)
    assert len(np.unique(_row_layout(c))) == len(c)  # a permutation of the rows
    fast = bootstrap_bradley_terry(c, n_boot=40, seed=8, tol=1e-12, prior=prior)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, prior=prior, intervals="none"), n_boot=40, seed=8)
    assert fast.info["bootstrap_failed"] == slow.info["bootstrap_failed"] == 0
    np.testing.assert_allclose(fast.samples, slow.samples, atol=1e-8)


@pytest.mark.parametrize("m", [300, 600])
def test_row_resampler_multiplicities_have_the_multinomial_moments(m):
    """The block-by-block row draws against Mult(m, 1/m): every row's count has mean 1 and variance 1 − 1/m, two
    rows' counts covariance −1/m (in one block and across blocks, the short last block included), and the counts
    of one row follow Binomial(m, 1/m) (chi-square over 0, 1, 2, ≥ 3). 6,000 replicates, fixed seed; means and
    variances within 5 of their standard errors, the chi-square below its 0.9999 quantile."""
    from scipy import stats

    from pairkit.rating.bootstrap import _RowResampler

    reps = 6000
    resampler = _RowResampler(m, np.random.default_rng(1).permutation(m))
    stream = np.random.default_rng(2)
    counts = np.array([resampler.multiplicities(stream) for _ in range(reps)], dtype=float)
    assert (counts.sum(axis=1) == m).all()
    mean_se = np.sqrt((1 - 1 / m) / reps)
    np.testing.assert_array_less(np.abs(counts.mean(axis=0) - 1), 5 * mean_se)
    var = 1 - 1 / m
    fourth = 1 + 3 * var**2  # Binomial(m, 1/m) ≈ Poisson(1): E(x − 1)⁴ = 1 + 3
    np.testing.assert_array_less(np.abs(counts.var(axis=0).mean() - var), 5 * np.sqrt((fourth - var**2) / reps / m))
    for x, y in ((0, 1), (0, m - 1), (5, m // 2), (m - 2, m - 1)):  # layout positions: same block, across, last
        cov = np.mean((counts[:, x] - 1) * (counts[:, y] - 1))
        assert abs(cov + 1 / m) < 5 * np.sqrt(var**2 / reps), (x, y, cov)
    observed = np.array([np.sum(counts[:, 0] == k) for k in (0, 1, 2)] + [np.sum(counts[:, 0] >= 3)])
    expected = reps * np.r_[stats.binom.pmf([0, 1, 2], m, 1 / m), stats.binom.sf(2, m, 1 / m)]
    assert stats.chisquare(observed, expected).statistic < stats.chi2.ppf(0.9999, 3)


def test_block_draws_give_the_same_intervals_as_uniform_row_indices():
    """The new draws (rows block by block) against the old ones (m uniform row indices, refitted through
    bootstrap_from_weights): independent 500-replicate bootstraps of the same data agree in distribution —
    standard errors within 15% and each percentile bound within 0.6 standard errors (the Monte-Carlo sd of a
    difference of two 2.5% percentiles of 500 normal draws is ~0.17 se)."""
    from pairkit.rating import bootstrap_from_weights

    c = simulate(np.random.default_rng(4), n=8, m=1000)
    m, reps = len(c), 500
    stream = np.random.default_rng(9)
    old = np.array([np.bincount(stream.integers(0, m, m), minlength=m) for _ in range(reps)], dtype=float).T
    fit = lambda x: fit_bradley_terry(x, intervals="none")  # noqa: E731
    before = bootstrap_from_weights(c, fit, old, method="bootstrap")
    after = bootstrap_bradley_terry(c, n_boot=reps, seed=10)
    np.testing.assert_allclose(after.se, before.se, rtol=0.15)
    assert np.all(np.abs(after.ci_low_log - before.ci_low_log) < 0.6 * before.se)
    assert np.all(np.abs(after.ci_high_log - before.ci_high_log) < 0.6 * before.se)


@pytest.mark.parametrize("distinct", [False, True])
def test_replicate_count_draws_have_the_row_resampling_distribution(rng, distinct):
    """Pair counts drawn by the fast path (multinomial over (pair, outcome) cells when there are few cells, row
    indices otherwise) against the moments of resampling m rows with replacement: a pair's games are
    Binomial(m, M_p/m), its lower item's wins have mean L_p and variance L_p·(1 − L_p/m) summed over unit cells.
    2,000 replicates; every mean and variance within 5 of its own standard errors (a seed-free check: it fails by
    chance with probability < 1e-4 over the 2 × 2 × 15 moments)."""
    from pairkit.rating.bootstrap import _pair_draws

    c = simulate(rng, n=6, m=120)
    if distinct:
        c = c.with_weights(np.ones(len(c)) + rng.uniform(0, 1e-9, len(c)))  # distinct cells: the row-index path
    m = len(c)
    pairs = c.pair_counts()
    draw = _pair_draws(c, pairs, "row")
    wl, wh = draw(np.random.default_rng(), 2000)
    games = wl + wh
    np.testing.assert_allclose(games.sum(0), m, rtol=1e-6)  # m rows in every replicate (a Poisson draw fails this)
    for x, total in ((games, pairs.wins_i + pairs.wins_j), (wl, pairs.wins_i)):
        # unit-weight rows with shares 0, ½, 1: x = Σ rows s_r·count_r, count ~ Multinomial(m, 1/m)
        mean = total
        share = np.zeros((len(pairs.i), m))
        lo = np.minimum(c.a, c.b)
        hi = np.maximum(c.a, c.b)
        pos = np.searchsorted(pairs.i * c.n_items + pairs.j, lo * c.n_items + hi)
        s = np.where(c.a < c.b, c.outcome, 1 - c.outcome) if x is wl else np.ones(m)
        share[pos, np.arange(m)] = np.round(c.weight) * s
        var = share.__pow__(2).sum(1) - share.sum(1) ** 2 / m  # Var Σ s_r count_r under Multinomial(m, 1/m)
        reps = x.shape[1]
        np.testing.assert_array_less(np.abs(x.mean(1) - mean), 5 * np.sqrt(var / reps) + 1e-12)
        fourth = ((x - mean[:, None]) ** 4).mean(1)
        np.testing.assert_array_less(np.abs(x.var(1) - var), 5 * np.sqrt((fourth - var**2) / reps) + 1e-12)


def test_bootstrap_json_states_the_bootstrap_rule_not_the_full_fits():
    """The interval rule in the JSON describes the bootstrap intervals (it used to repeat the full-data fit's
    "Fisher …" or "no intervals requested")."""
    import json

    from pairkit import Comparisons
    from pairkit.rating import bootstrap, bootstrap_from_weights, fit_bradley_terry

    comps = Comparisons.from_arrays([0, 1, 2] * 10, [1, 2, 0] * 10, [1, 1, 0] * 10, items=["a", "b", "c"])
    for intervals in ("none", "auto"):
        board = bootstrap(comps, lambda c, i=intervals: fit_bradley_terry(c, prior=1.0, intervals=i), n_boot=20)
        rule = json.loads(board.to_json())["interval"]["rule"]
        assert rule.startswith("bootstrap: 95% percentile intervals of 20 replicates resampled by row"), rule
    w = np.random.default_rng(0).poisson(1.0, size=(len(comps), 20)).astype(float)
    board = bootstrap_from_weights(comps, lambda c: fit_bradley_terry(c, prior=1.0, intervals="none"), w)
    assert board.info["interval_rule"].startswith("poisson bootstrap: 95% percentile intervals of 20 replicates")
    summary = json.loads(board.to_json())
    assert summary["interval_method"]["standard_errors"] == "bootstrap"
    assert summary["interval"]["se_method"] == "standard deviation of the bootstrap replicates"


@pytest.mark.parametrize("m, coef", [
    (40_000, [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]),  # unit weights, ties as halves
    (16_384 * 2 + 77, [[0.0, 2.5], [0.75, 0.75], [3.0, 0.0], [0.2, 0.7], [0.0, 0.0]]),  # weights: any shares
])
def test_cell_counter_equals_bincount_of_the_same_draws(m, coef):
    """The run-by-run counting kernel against the obvious count: the rows that ``_RowResampler.positions`` draws from
    the same stream, each row's cell looked up and counted with one ``np.bincount`` over all cells, the counts
    turned into win columns (a matrix product). Equal to rounding, over several runs of blocks and a short last
    block."""
    from pairkit.rating.bootstrap import COUNT_BLOCKS, _CellCounter, _RowResampler

    rng = np.random.default_rng(3)
    coef = np.array(coef)
    k, codes = 9000, len(coef)
    assert m > 2 * COUNT_BLOCKS * 256
    pair_of = np.sort(rng.integers(0, k, m))  # the layout: rows by pair
    cell_of = pair_of * codes + rng.integers(0, codes, m)
    rows = _RowResampler(m, rng.permutation(m))
    counter = _CellCounter(rows, pair_of, cell_of, codes, coef)
    for seed in range(3):
        wl, wh = np.zeros(k), np.zeros(k)
        counter(np.random.default_rng(seed), wl, wh)
        counts = np.bincount(cell_of[rows.positions(np.random.default_rng(seed))], minlength=k * codes)
        expect = counts.reshape(k, codes) @ coef
        np.testing.assert_allclose(wl, expect[:, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(wh, expect[:, 1], rtol=1e-12, atol=1e-12)


def test_dense_solver_reports_each_items_games():
    """``played`` from the dense solver (one pass over the count matrices at θ̂) equals each item's games counted
    directly from the pair counts, and equals the sparse solver's."""
    from pairkit.rating.bootstrap import dense_replicate_solver

    c = simulate(np.random.default_rng(5), n=7, m=600)
    pairs = c.pair_counts()
    board = fit_bradley_terry(c)
    mults = np.random.default_rng(6).poisson(1.0, size=(len(pairs.i), 3))
    wl, wh = pairs.wins_i[:, None] * mults, pairs.wins_j[:, None] * mults
    expect = np.stack([np.bincount(pairs.i, g, c.n_items) + np.bincount(pairs.j, g, c.n_items)
                       for g in (wl + wh).T], axis=1)
    for make in (dense_replicate_solver, replicate_solver):
        played = np.full((c.n_items, 3), np.nan)
        make(pairs, board.log_strength, prior=0.0, items=c.items)(wl, wh, played)
        np.testing.assert_allclose(played, expect, rtol=1e-6)


@pytest.mark.parametrize("values", [np.r_[np.ones(2000), 0.5, 0.0], np.r_[np.zeros(1500), np.arange(3000) / 7.0]])
def test_factorize_codes_and_values(values):
    """``_factorize`` (a search among the first rows' values, a full sort when that misses) gives sorted distinct
    values and codes that rebuild the input, as ``np.unique`` does."""
    from pairkit.rating.bootstrap import _factorize

    codes, uniques = _factorize(values)
    np.testing.assert_array_equal(uniques, np.unique(values))
    np.testing.assert_array_equal(uniques[codes], values)


@pytest.mark.parametrize("n", [50, 70_000])
def test_row_layout_is_the_stable_order_by_pair(n):
    """The row layout (two 16-bit radix sorts up to 65,536 items, one sort of the pair key beyond) is the stable
    ``argsort`` of the pair key ``min·n + max``, and the keys come back in that order."""
    from pairkit.rating.bootstrap import _row_layout

    rng = np.random.default_rng(1)
    a = rng.integers(0, n, 5000)
    b = (a + rng.integers(1, n, 5000)) % n
    c = Comparisons.from_arrays(a, b, rng.integers(0, 2, 5000).astype(float), items=[f"i{k}" for k in range(n)])
    key = np.minimum(c.a, c.b).astype(np.int64) * n + np.maximum(c.a, c.b)
    order, keys = _row_layout(c, keys=True)
    np.testing.assert_array_equal(order, np.argsort(key, kind="stable"))
    np.testing.assert_array_equal(keys, key[order])


def test_cell_path_with_two_weights_equals_slow_refits_of_the_same_resamples(rng):
    """Two distinct weights with ties: six (share, weight) codes, so the counting kernel adds scaled counts (shares
    2.5, 1.25, …); every replicate equals the plain fit of the same resampled rows (generic path, same seed) to
    1e-8."""
    c = simulate(rng, n=16, m=700)
    c = c.with_weights(rng.choice([1.0, 2.5], len(c)))
    fast = bootstrap_bradley_terry(c, n_boot=40, seed=8, tol=1e-12)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, intervals="none"), n_boot=40, seed=8)
    assert fast.info["bootstrap_failed"] == slow.info["bootstrap_failed"] == 0
    np.testing.assert_allclose(fast.samples, slow.samples, atol=1e-8)
