import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from pairkit.data import Comparisons, read_comparisons
from pairkit.errors import InputError, NoMLEError
from pairkit.rating import fit_bradley_terry, newman_iteration
from tests.rating.reference import bt_mle_scipy
from tests.shared_data import shared_path


def simulate(rng, n=8, m=1500, theta=None):
    theta = rng.normal(0, 1, n) if theta is None else theta
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    y = (rng.random(m) < special.expit(theta[a] - theta[b])).astype(float)
    return Comparisons.from_arrays(a, b, y), theta - theta.mean()


def vicuna_human() -> Comparisons:
    folder = shared_path("llm_judgments", "vicuna80_human")
    frames = []
    for path in sorted(folder.glob("*.jsonl")):
        x, y = path.name.split("-vs-")[0], path.name.split("-vs-")[1].split("-")[0]
        rows = pd.read_json(path, lines=True)
        frames.append(pd.DataFrame({"a": x, "b": y, "outcome": rows["score"].map({1: 1.0, 2: 0.0, 3: 0.5})}))
    return read_comparisons(pd.concat(frames, ignore_index=True), a="a", b="b", outcome="outcome")


@pytest.mark.parametrize("dataset", ["chess", "arena_hard", "icehockey", "vicuna"])
def test_mle_equals_generic_optimiser_on_real_data(dataset):
    if dataset == "chess":
        c = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    elif dataset == "arena_hard":
        c = read_comparisons(shared_path("llm_judgments", "arena_hard_battles.jsonl"))
    elif dataset == "icehockey":
        c = read_comparisons(shared_path("sports", "icehockey.csv"), a="visitor", b="opponent", outcome="result")
    else:
        c = vicuna_human()
    board = fit_bradley_terry(c)
    ref, _, ref_ll = bt_mle_scipy(c)
    np.testing.assert_allclose(board.log_strength, ref, atol=1e-6)
    assert board.log_likelihood == pytest.approx(ref_ll, abs=1e-6)
    assert board.info["scaled_gradient"] < 1e-8


def test_football_with_prior_equals_optimiser():
    c = read_comparisons(shared_path("sports", "international_football_results.csv"))
    with pytest.raises(NoMLEError, match="disconnected"):
        fit_bradley_terry(c)
    board = fit_bradley_terry(c, prior=1.0, intervals="none")
    ref, _, _ = bt_mle_scipy(c, prior=1.0)
    np.testing.assert_allclose(board.log_strength, ref, atol=1e-5)


def test_agrees_with_choix_on_decisive_data(rng):
    choix = pytest.importorskip("choix")
    c, _ = simulate(rng, n=10, m=3000)
    winners = np.where(c.outcome == 1, c.a, c.b)
    losers = np.where(c.outcome == 1, c.b, c.a)
    ref = choix.ilsr_pairwise(c.n_items, np.c_[winners, losers], alpha=0.0, tol=1e-12, max_iter=10000)
    np.testing.assert_allclose(fit_bradley_terry(c).log_strength, ref - ref.mean(), atol=1e-6)


def test_newman_fixed_point_with_prior_matches_map(rng):
    c, _ = simulate(rng, n=6, m=300)
    pi, _ = newman_iteration(c.pair_counts(), prior=2.0, tol=1e-13, max_iter=100000)
    board = fit_bradley_terry(c, prior=2.0)
    theta = np.log(pi)
    np.testing.assert_allclose(theta - theta.mean(), board.log_strength, atol=1e-8)


def test_no_mle_names_unbeaten_and_winless_items():
    # d beat everyone and never lost; a never won.
    c = Comparisons.from_arrays(["d", "d", "b", "c", "b", "c"], ["a", "b", "a", "b", "c", "a"])
    with pytest.raises(NoMLEError) as info:
        fit_bradley_terry(c)
    text = str(info.value)
    assert "never lost" in text and "'d'" in text and "never beat" in text and "'a'" in text
    board = fit_bradley_terry(c, prior=1.0)
    assert np.all(np.isfinite(board.log_strength))
    assert board.log_strength[c.index("d")] == board.log_strength.max()


def test_unrated_item_is_reported():
    c = Comparisons.from_arrays([0, 1], [1, 0], items=["a", "b", "ghost"])
    with pytest.raises(NoMLEError, match="never compared: {'ghost'}"):
        fit_bradley_terry(c)


def test_bad_arguments():
    c = Comparisons.from_arrays([0, 1], [1, 0])
    with pytest.raises(InputError, match="ties must be"):
        fit_bradley_terry(c, ties="third")
    with pytest.raises(InputError, match="prior must be"):
        fit_bradley_terry(c, prior=-1)
    with pytest.raises(InputError, match="needs at least one tie"):
        fit_bradley_terry(c, ties="davidson")


def test_davidson_on_pudding_equals_optimiser():
    table = pd.read_csv(shared_path("rankings", "pudding_davidson1970.csv"))
    a = np.concatenate([table.i, table.j, table.i])
    b = np.concatenate([table.j, table.i, table.j])
    y = np.concatenate([np.ones(len(table)), np.ones(len(table)), np.full(len(table), 0.5)])
    w = np.concatenate([table.w_ij, table.w_ji, table.t_ij]).astype(float)
    c = Comparisons.from_arrays(a.astype(str), b.astype(str), y, weight=w)
    board = fit_bradley_terry(c, ties="davidson")
    ref, extra, ref_ll = bt_mle_scipy(c, ties="davidson")
    np.testing.assert_allclose(board.log_strength, ref, atol=1e-6)
    assert board.params["tie_nu"] == pytest.approx(np.exp(extra[0]), rel=1e-6)
    assert board.log_likelihood == pytest.approx(ref_ll, abs=1e-6)
    lo, hi = board.param_intervals["tie_nu"]
    assert lo < board.params["tie_nu"] < hi
    p_win, p_tie = board.predict(c.items[0], c.items[1])
    assert 0 < p_win[0] + p_tie[0] < 1


def test_fisher_intervals_cover_truth_at_nominal_rate():
    rng = np.random.default_rng(7)
    truth = np.linspace(-1, 1, 6)
    hits = []
    for _ in range(150):
        c, t = simulate(rng, n=6, m=600, theta=truth)
        board = fit_bradley_terry(c, level=0.9)
        hits.append((board.ci_low_log <= t) & (t <= board.ci_high_log))
    coverage = np.mean(hits)
    assert abs(coverage - 0.9) < 0.03, coverage


def test_sandwich_equals_fisher_without_overdispersion_and_widens_with_clusters(rng):
    c, _ = simulate(rng, n=6, m=4000)
    fisher = fit_bradley_terry(c, intervals="fisher")
    robust = fit_bradley_terry(c, intervals="sandwich")
    np.testing.assert_allclose(robust.se, fisher.se, rtol=0.1)
    # Duplicate every comparison 5 times inside one cluster: Fisher pretends 5x the data, sandwich does not.
    idx = np.repeat(np.arange(len(c)), 5)
    dup = Comparisons.from_arrays(c.a[idx], c.b[idx], c.outcome[idx], cluster=idx)
    fisher5 = fit_bradley_terry(dup, intervals="fisher")
    robust5 = fit_bradley_terry(dup, intervals="auto")
    assert robust5.interval_method == "sandwich"
    np.testing.assert_allclose(robust5.se / fisher5.se, np.sqrt(5), rtol=0.1)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_properties_swap_duplicate_relabel(seed):
    rng = np.random.default_rng(seed)
    c, _ = simulate(rng, n=5, m=200)
    c = Comparisons.from_arrays(c.a, c.b, np.where(rng.random(len(c)) < 0.1, 0.5, c.outcome))
    try:
        base = fit_bradley_terry(c, prior=0.5)
    except NoMLEError:
        return
    # writing each comparison from the other side changes nothing
    np.testing.assert_allclose(fit_bradley_terry(c.swapped(), prior=0.5).log_strength, base.log_strength, atol=1e-8)
    # weight 2 == each row twice (with the prior doubled too)
    doubled = c.with_weights(np.full(len(c), 2.0))
    twice = c.subset(np.concatenate([np.arange(len(c)), np.arange(len(c))]))
    np.testing.assert_allclose(fit_bradley_terry(doubled, prior=1).log_strength,
                               fit_bradley_terry(twice, prior=1).log_strength, atol=1e-8)
    # relabelling items permutes the ratings
    perm = rng.permutation(c.n_items)
    relabelled = Comparisons.from_arrays(perm[c.a], perm[c.b], c.outcome)
    np.testing.assert_allclose(fit_bradley_terry(relabelled, prior=0.5).log_strength[perm], base.log_strength,
                               atol=1e-8)
    # ratings are centred
    assert abs(base.log_strength.mean()) < 1e-12


def test_leaderboard_outputs(tmp_path, rng):
    c, _ = simulate(rng, n=5, m=500)
    board = fit_bradley_terry(c)
    frame = board.to_pandas()
    assert list(frame["rank"]) == sorted(frame["rank"])
    assert (frame["rank_low"] <= frame["rank"]).all() and (frame["rank"] <= frame["rank_high"]).all()
    elo = board.scale("elo")
    np.testing.assert_allclose(elo.ratings, 400 / np.log(10) * board.log_strength + 1000)
    anchored = board.scale("elo", anchor=c.items[2])
    assert anchored.ratings[2] == pytest.approx(1000)
    p, _ = board.predict([c.items[0]], [c.items[1]])
    assert p[0] == pytest.approx(special.expit(board.log_strength[0] - board.log_strength[1]))
    data = board.to_dict()
    assert {"model", "items", "log_likelihood", "n_comparisons"} <= set(data)
    assert {"name", "rating", "ci_low", "ci_high", "rank", "n"} <= set(data["items"][0])
    board.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert stats.kendalltau(board.ratings, elo.ratings).statistic == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_quick_strong_connectivity_check_agrees_with_csgraph(seed):
    """The breadth-first check that spares importing scipy.sparse.csgraph on well-connected data says True exactly
    when csgraph finds one strongly connected component, on random sparse win graphs (some strongly connected, some
    not) and on a long directed cycle (more steps than it takes: it must say False, never True)."""
    import scipy.sparse as sp
    from scipy.sparse import csgraph

    from pairkit.rating.bradley_terry import _reaches_everything

    rng = np.random.default_rng(seed)
    n = 40
    for density in (0.03, 0.06, 0.2):
        w = sp.random(n, n, density=density, random_state=rng, format="csr")
        w.setdiag(0)
        w.eliminate_zeros()
        strong = csgraph.connected_components(w, directed=True, connection="strong")[0] == 1
        assert _reaches_everything(w) == strong
    cycle = sp.csr_matrix((np.ones(n), (np.arange(n), (np.arange(n) + 1) % n)), shape=(n, n))
    assert _reaches_everything(cycle, rounds=n) and not _reaches_everything(cycle, rounds=5)
