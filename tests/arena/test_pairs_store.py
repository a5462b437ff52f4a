"""Pair choice, the vote store's durability rules, and the agreement statistics against a peer."""

import math

import numpy as np
import pytest

from pairkit.arena import (
    ClosedPair,
    GoldPair,
    PairChooser,
    UnknownPair,
    VoteStore,
    annotator_stats,
    krippendorff_alpha_nominal,
    votes_to_separate,
)
from pairkit.errors import InputError
from pairkit.select import Pool

from .conftest import candidate_rows


def run(chooser, store, who, n, outcome=lambda left, right: "left"):
    """``n`` votes of one annotator through the chooser; returns the proposals."""
    shown = []
    for _ in range(n):
        p = chooser.next(who, store.votes(), store.pending(), store.annotator_pairs(who))
        if p is None:
            break
        pool = chooser.pool
        a = store.assign(who, pool.contexts[p.context], pool.items[p.left], pool.items[p.right], kind=p.kind,
                         expected=p.expected)
        store.record_vote(a.id, who, outcome(a.left_id, a.right_id))
        shown.append(p)
    return shown


@pytest.fixture
def store(tmp_path):
    s = VoteStore(tmp_path / "a.sqlite")
    s.set_candidates(candidate_rows(n_items=5, contexts=("p1", "p2")))
    yield s
    s.close()


def add(store, name):
    return store.annotator_by_token(store.add_annotator(name)).id


def pool():
    return Pool.from_records(candidate_rows(n_items=5, contexts=("p1", "p2")))


def test_round_robin_shows_every_pair_once_before_any_twice(store):
    chooser = PairChooser(pool(), "round_robin", seed=0)
    ids = [add(store, n) for n in ("a", "b")]
    shown = run(chooser, store, ids[0], 10) + run(chooser, store, ids[1], 10)
    pairs = [tuple(sorted((p.left, p.right))) for p in shown]
    assert len(set(pairs[:10])) == 10 and len(set(pairs[10:])) == 10  # 10 pairs of 5 items
    # Sides are drawn at random; over 20 shows both orders occur.
    assert 0 < sum(p.left < p.right for p in shown) < 20
    # Each annotator gets each pair in at most one prompt until all prompts are used: 20 pairs in all.
    assert len(run(chooser, store, ids[0], 30)) == 10
    assert chooser.next(ids[0], store.votes(), store.pending(), store.annotator_pairs(ids[0])) is None


def test_target_votes_caps_every_pair(store):
    chooser = PairChooser(pool(), "random", target_votes=1, seed=3)
    who = [add(store, n) for n in ("a", "b", "c")]
    total = sum(len(run(chooser, store, w, 30)) for w in who)
    assert total == 10
    pairs = {tuple(sorted((v["left_id"], v["right_id"]))) for v in store.votes()}
    assert len(pairs) == 10


def test_active_prefers_the_uncertain_pair(store):
    """m0 ≫ m1 ≫ m2 ≫ {m3, m4}: the one pair whose order is unknown is m3–m4 (never compared, rated equal)."""
    chooser = PairChooser(pool(), "active", seed=0)
    who = add(store, "a")
    votes = []
    for left, right, outcome, n in [("m0", "m1", "left", 6), ("m1", "m2", "left", 6), ("m0", "m2", "left", 6),
                                    ("m2", "m3", "left", 6), ("m2", "m4", "left", 6)]:
        votes += [{"annotator_id": 9, "context_id": "p1", "left_id": left, "right_id": right, "outcome": outcome,
                   "kind": "normal"}] * n
    p = chooser.next(who, votes, [], [])
    assert sorted((chooser.pool.items[p.left], chooser.pool.items[p.right])) == ["m3", "m4"]


def test_gold_and_repeats_are_mixed_in(store):
    gold = [GoldPair("p1", "m0", "m4", "m0"), GoldPair("p2", "m1", "m3", None)]
    chooser = PairChooser(pool(), "round_robin", gold=gold, gold_rate=0.3, repeat_rate=0.3, seed=1)
    who = add(store, "a")
    shown = run(chooser, store, who, 20, outcome=lambda left, right: "left" if left < right else "right")
    kinds = [p.kind for p in shown]
    assert kinds.count("gold") == 2 and kinds.count("repeat") >= 1
    stats = annotator_stats(store.votes())["annotators"][0]
    # The annotator always prefers the lower id: right on the first gold pair, wrong on the tie; consistent.
    assert stats["gold"] == 2 and stats["gold_accuracy"] == 0.5
    assert stats["consistency"] == 1.0
    repeat = next(v for v in store.votes() if v["kind"] == "repeat")
    original = next(v for v in store.votes() if v["kind"] == "normal" and v["context_id"] == repeat["context_id"]
                    and (v["left_id"], v["right_id"]) == (repeat["right_id"], repeat["left_id"]))
    assert original["seq"] < repeat["seq"]  # the same pair, sides swapped


def test_chooser_options_are_checked():
    for kwargs, message in [({"score": "best"}, "--strategy"), ({"gold_rate": 1.0}, "--gold-rate"),
                            ({"target_votes": 0}, "--target-votes"), ({"gold_rate": 0.1}, "needs gold pairs"),
                            ({"prior": 0.0}, "--prior"), ({"gold": [GoldPair("p1", "m0", "zz", None)]}, "'zz'")]:
        with pytest.raises(InputError, match=message):
            PairChooser(pool(), **kwargs)


def test_store_votes_are_idempotent_and_survive_a_reopen(tmp_path):
    path = tmp_path / "a.sqlite"
    store = VoteStore(path)
    me, them = add(store, "a"), add(store, "b")
    a = store.assign(me, "p1", "m0", "m1")
    assert store.record_vote(a.id, me, "right") is True
    assert store.record_vote(a.id, me, "left") is False  # the first answer stands
    with pytest.raises(UnknownPair):
        store.record_vote(a.id, them, "left")
    b = store.assign(me, "p1", "m1", "m2")
    c = store.assign(me, "p1", "m2", "m3")  # b is replaced (closed) unanswered
    with pytest.raises(ClosedPair):
        store.record_vote(b.id, me, "left")
    store.close()
    again = VoteStore(path)
    assert again.open_assignment(me) == c
    assert [(v["vote_id"], v["outcome"]) for v in again.votes()] == [(a.id, "right")]
    assert again.version == 1
    with pytest.raises(InputError, match="outcome must be one of"):
        again.record_vote(c.id, me, "great")


def test_krippendorff_alpha_matches_the_krippendorff_package():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(0)
    n_units, n_coders = 40, 4
    truth = rng.integers(0, 3, n_units)
    data = np.where(rng.random((n_coders, n_units)) < 0.7, truth, rng.integers(0, 3, (n_coders, n_units))).astype(
        float
    )
    data[rng.random(data.shape) < 0.3] = np.nan  # missing values; some units end with a single value
    coder, unit = np.nonzero(~np.isnan(data))
    ours = krippendorff_alpha_nominal(unit, data[coder, unit].astype(int))
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert ours == pytest.approx(ref, abs=1e-12)
    assert math.isnan(krippendorff_alpha_nominal(np.arange(3), np.zeros(3)))  # nothing pairable


def test_votes_to_separate_closed_form():
    theta = np.array([0.5, 0.0, -0.5])
    cov = np.diag([0.04, 0.04, 0.04])
    # s = sqrt(0.08); z = 1.96; need N·(z·s/0.5)² in all.
    expected = 100 * (1.959963984540054 * math.sqrt(0.08) / 0.5) ** 2 - 100
    assert votes_to_separate(theta, cov, 100) == pytest.approx(expected)
    assert votes_to_separate(theta, cov / 100, 100) == 0.0
    assert votes_to_separate(np.zeros(3), cov, 100) == math.inf


def test_model_scores_are_refitted_when_the_votes_grow(store):
    fits = []

    def score(wins, counts, rng, prior):
        fits.append(wins.sum())
        return -counts.astype(float)

    score.model_based = True
    chooser = PairChooser(pool(), score, refit_growth=0.5, seed=0)
    run(chooser, store, add(store, "a"), 10)
    # A refit when the votes exceed 1.5× those of the last fit: at 0, 1, 2, 4 and 7 votes, not after every vote.
    assert fits == [0, 1, 2, 4, 7]
    fits.clear()
    PairChooser(pool(), score, refit_growth=0.0, seed=0).next(0, store.votes(), [], [])
    assert fits == [10]


def test_tally_read_forward_equals_a_full_tally_after_votes_undos_judges_and_a_second_writer(store, tmp_path):
    """The server's in-memory tally (read forward by ``seq``) equals a tally of the whole log at every step,
    including undos, judge votes (not counted), skips and votes written by another connection to the file."""
    from pairkit.arena import VoteTally
    from pairkit.arena.store import JUDGE_PREFIX

    p = pool()
    live = VoteTally(p)
    other = VoteStore(store.path)  # a second writer, as `pairkit arena judge` is
    who = {name: add(store, name) for name in ("a", "b", JUDGE_PREFIX + "x")}
    rng = np.random.default_rng(0)
    for step in range(60):
        name = ["a", "b", JUDGE_PREFIX + "x"][step % 3]
        writer = other if step % 4 == 0 else store
        left, right = rng.choice(p.items, 2, replace=False)
        a = writer.assign(who[name], str(rng.choice(p.contexts)), str(left), str(right))
        writer.record_vote(a.id, who[name], str(rng.choice(["left", "right", "tie", "both_bad", "skip"])))
        if step % 7 == 3:
            store.undo_last(who["a"])
        live.sync(store)
        full = VoteTally(p).add(store.votes())
        np.testing.assert_array_equal(live.wins, full.wins)
        np.testing.assert_array_equal(live.counts, full.counts)
        np.testing.assert_array_equal(live.per_context, full.per_context)
    assert live.counts.sum() > 0 and live.wins.sum() > 0
    humans = [v for v in store.votes() if v["annotator"] != JUDGE_PREFIX + "x" and v["outcome"] != "skip"]
    assert live.counts.sum() == 2 * len(humans)  # each decided human vote counted once per orientation
    other.close()


def test_ucb_plays_the_highest_bound_against_the_closest_rating():
    """The ``ucb`` pair score picks the same first pair as the ``active`` strategy's UCB matchmaking."""
    from pairkit.arena.pairs import _fit, ucb_score
    from pairkit.select.strategies import _ucb_matchmaking

    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 6
        wins = rng.poisson(2.0, (n, n)).astype(float) * rng.random((n, n))
        np.fill_diagonal(wins, 0)
        score = ucb_score(wins, np.zeros((n, n), int), rng, 1.0)
        np.fill_diagonal(score, -np.inf)
        i, j = np.unravel_index(np.argmax(score), score.shape)
        theta, cov = _fit(wins, 1.0)
        expected = _ucb_matchmaking(theta, theta + np.sqrt(np.diag(cov)), 1)[0]
        assert sorted((int(i), int(j))) == sorted(expected)
    chooser = PairChooser(pool(), "ucb", seed=0)
    assert chooser.next(0, [], [], []) is not None  # no votes yet: round robin


def test_battles_of_k_answers_are_ranked_stored_as_pairs_and_undone_whole(store):
    """K-wise battles: k distinct candidates of one prompt; a ranking becomes its k(k-1)/2 pairwise votes in one
    transaction (ties for equal ranks), counts once towards the quota, is idempotent and is undone whole."""
    from pairkit.arena import VoteTally

    chooser = PairChooser(pool(), "round_robin", k=4, seed=0)
    who = add(store, "a")
    p = chooser.next(who, store.votes(), store.pending(), store.annotator_pairs(who))
    shown = [chooser.pool.items[m] for m in (p.left, p.right, *p.more)]
    assert len(shown) == 4 == len(set(shown))
    context = chooser.pool.contexts[p.context]
    a = store.assign(who, context, shown[0], shown[1], more=shown[2:])
    assert a.is_battle and store.open_assignment(who).items == tuple(shown)
    with pytest.raises(InputError, match="rank them instead"):
        store.record_vote(a.id, who, "left")
    for bad in ([1, 2, 3], [1, 2, 3, 5], ["x", 1, 2, 3]):
        with pytest.raises(InputError, match="rank"):
            store.record_ranking(a.id, who, bad)
    assert store.record_ranking(a.id, who, [2, 1, 3, 1]) is True
    assert store.record_ranking(a.id, who, [2, 1, 3, 1]) is False  # submitted twice: harmless
    votes = store.votes()
    assert len(votes) == 6 and store.n_votes(who) == 1
    got = {(v["left_id"], v["right_id"]): v["outcome"] for v in votes}
    ranks = dict(zip(shown, [2, 1, 3, 1]))
    for (left, right), outcome in got.items():
        want = "left" if ranks[left] < ranks[right] else "right" if ranks[left] > ranks[right] else "tie"
        assert outcome == want and shown.index(left) < shown.index(right)
    tally = VoteTally(chooser.pool).sync(store)
    assert tally.counts.sum() == 12
    again = store.undo_last(who)
    assert again.items == tuple(shown) and store.votes() == [] and store.n_votes(who) == 0
    assert VoteTally(chooser.pool).sync(store).counts.sum() == 0
    with pytest.raises(InputError, match="was undone"):
        store.record_ranking(a.id, who, [1, 2, 3, 4])
    assert store.record_ranking(again.id, who, [1, 2, 3, 4]) is True and store.n_votes(who) == 1
    with pytest.raises(InputError, match="--k"):
        PairChooser(pool(), "round_robin", k=6)  # more answers than candidates


def test_showing_a_pair_does_not_wait_for_the_disk_but_every_vote_does(store):
    """Assignments commit with synchronous=NORMAL (a lost one only means another pair is shown); the connection is
    back at FULL for every vote, so an acknowledged vote is on disk."""
    levels = []
    store._db.set_trace_callback(lambda sql: levels.append(sql) if "synchronous=" in sql else None)
    who = add(store, "a")
    a = store.assign(who, "p1", "m0", "m1")
    assert levels == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.record_vote(a.id, who, "left")
    assert levels[2:] == [] and store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.undo_last(who)  # the re-shown pair is written inside the undo's durable transaction
    assert levels[2:] == []
    store._db.set_trace_callback(None)
