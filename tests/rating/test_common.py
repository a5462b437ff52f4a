"""One behaviour suite over every registered rating model, driven by the registry and the declared options.

A model registered without a data builder here fails :func:`test_every_model_has_a_data_builder`, so a new model
cannot skip these checks: empty data and every out-of-range option raise ``InputError`` naming the option;
writing each comparison from the other side changes nothing; relabelling items permutes the ratings; a weight of 2
equals a duplicated row (batch models); the leaderboard serialises to JSON without NaN.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pairkit._spec import Option
from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating import model_names, model_spec

N_ITEMS = 5


def _comparisons(seed: int = 0, *, m: int = 70) -> Comparisons:
    """A connected design where every item wins and loses (the MLE exists), with ties and an order flag."""
    rng = np.random.default_rng(seed)
    ring = np.arange(N_ITEMS)
    a = np.r_[ring, (ring + 1) % N_ITEMS, rng.integers(0, N_ITEMS, m)]
    b = np.r_[(ring + 1) % N_ITEMS, ring, np.zeros(m, dtype=int)]
    b[2 * N_ITEMS:] = (a[2 * N_ITEMS:] + rng.integers(1, N_ITEMS, m)) % N_ITEMS
    y = np.r_[np.ones(2 * N_ITEMS), rng.choice([0.0, 0.5, 1.0], m)]
    y[2 * N_ITEMS:2 * N_ITEMS + 3] = [0.5, 1.0, 0.0]  # ties and decisive outcomes always present
    first = rng.random(len(a)) < 0.6
    return Comparisons.from_arrays(a, b, y, items=[f"item{k}" for k in range(N_ITEMS)], a_first=first)


def _probabilities(seed: int = 0) -> Comparisons:
    """duoT5's data: the outcome is a judge's probability for the first-shown answer."""
    c = _comparisons(seed)
    p = np.random.default_rng(seed + 7).uniform(0.05, 0.95, len(c))
    return Comparisons.from_arrays(c.a, c.b, p, items=c.items, a_first=c.a_first)


# Model name → (data builder, options, batch). Batch models treat a weight as a count of identical rows; online
# models process rows in order and take weight 1 only.
BUILDERS = {
    "bt": (_comparisons, {}, True),
    "davidson": (_comparisons, {}, True),
    "rao_kupper": (_comparisons, {}, True),
    "order": (_comparisons, {}, True),
    "bayeselo": (_comparisons, {}, True),
    "robust": (_comparisons, {"epsilon": 0.1}, True),
    "blade_chest": (_comparisons, {}, True),
    "rank_centrality": (_comparisons, {}, True),
    "pagerank": (_comparisons, {}, True),
    "eigenvector": (_comparisons, {}, True),
    "win_rate": (_comparisons, {}, True),
    "borda": (_comparisons, {}, True),
    "copeland": (_comparisons, {}, True),
    "duot5": (_probabilities, {}, True),
    "enhanced_borda": (_comparisons, {}, True),
    "elo": (_comparisons, {}, False),
    "trueskill": (_comparisons, {}, False),
    "weng_lin": (_comparisons, {}, False),
    "openskill": (_comparisons, {}, False),
}

NAMES = model_names()

RELABEL_ATOL = {"blade_chest": 1e-2}
"""Blade-chest is non-convex with a random start drawn per item index: relabelling moves the start, so the
fit agrees only to the optimiser's accuracy (about 3e-3 here); every other model to 1e-6."""


def _fit(name: str, data: Comparisons, **extra):
    _, options, _ = BUILDERS[name]
    return model_spec(name).fn(data, **{**options, **extra})


def _same(x, y, atol=1e-7):
    np.testing.assert_allclose(x.log_strength, y.log_strength, atol=atol)
    for key, value in x.params.items():
        if isinstance(value, float):
            np.testing.assert_allclose(value, y.params[key], atol=atol, err_msg=key)


def test_every_model_has_a_data_builder():
    missing = sorted(set(NAMES) - set(BUILDERS))
    assert not missing, f"registered rating models without a data builder in tests/rating/test_common.py: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_empty_data_raise_input_error(name):
    empty = Comparisons.from_arrays(np.zeros(0, int), np.zeros(0, int), np.zeros(0), items=["x", "y"])
    with pytest.raises(InputError, match="empty"):
        _fit(name, empty)


def _bad_values(option: Option) -> list:
    """Values outside what ``option`` declares: beyond each bound, NaN, ∞, a wrong type, an unknown choice."""
    bad: list = []
    kinds = option.kinds()
    numeric = [k for k in kinds if k in (int, float)]
    if numeric:
        r = option.range
        if r is not None and r.low is not None:
            bad.append(r.low - 1 if r.closed in ("both", "left") else r.low)
        if r is not None and r.high is not None:
            bad.append(r.high + 1 if r.closed in ("both", "right") else r.high)
        bad.append(math.nan)
        if option.finite:
            bad.append(math.inf)
        if numeric == [int]:
            bad.append(1.5)
    if str in kinds and option.choices:
        bad.append("no-such-choice")
    if kinds == (bool,):
        bad.append("yes")
    if int not in kinds and float not in kinds:
        bad.append(object())
    return bad


CASES = [(name, option.name, value) for name in NAMES for option in model_spec(name).options
         for value in _bad_values(option)]


@pytest.mark.parametrize(("name", "option", "value"), CASES, ids=[f"{n}-{o}-{v!r}" for n, o, v in CASES])
def test_out_of_range_options_raise_input_error_naming_them(name, option, value):
    build, _, _ = BUILDERS[name]
    with pytest.raises(InputError, match=f"{option} must be") as info:
        _fit(name, build(), **{option: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_level_is_checked_for_every_model_that_takes_it():
    takes = [name for name in NAMES if model_spec(name).takes("level")]
    assert len(takes) >= 10
    for name in takes:
        build, _, _ = BUILDERS[name]
        for level in (0.0, 1.0, 1.5, math.nan):
            with pytest.raises(InputError, match=r"level must be a number in \(0, 1\)"):
                _fit(name, build(), level=level)


@pytest.mark.parametrize("name", NAMES)
def test_swapping_sides_changes_nothing(name):
    build, _, _ = BUILDERS[name]
    data = build(3)
    _same(_fit(name, data), _fit(name, data.swapped()))


@pytest.mark.parametrize("name", NAMES)
def test_relabelling_items_permutes_ratings(name):
    build, _, _ = BUILDERS[name]
    c = build(4)
    perm = np.random.default_rng(5).permutation(c.n_items)  # old index k becomes perm[k]
    names = [None] * c.n_items
    for k, p in enumerate(perm):
        names[p] = c.items[k]
    relabelled = Comparisons.from_arrays(perm[c.a], perm[c.b], c.outcome, items=names, weight=c.weight,
                                         a_first=c.a_first)
    a, b = _fit(name, c), _fit(name, relabelled)
    assert [b.items[p] for p in perm] == list(a.items)
    np.testing.assert_allclose(b.log_strength[perm], a.log_strength, atol=RELABEL_ATOL.get(name, 1e-6))


@pytest.mark.parametrize("name", [n for n in NAMES if BUILDERS.get(n, (None, None, False))[2]])
def test_weight_two_equals_a_duplicated_row(name):
    build, _, _ = BUILDERS[name]
    c = build(6)
    w = np.ones(len(c))
    w[:7] = 2.0
    doubled = Comparisons.from_arrays(c.a, c.b, c.outcome, items=c.items, weight=w, a_first=c.a_first)
    idx = np.r_[np.arange(len(c)), np.arange(7)]
    dup = Comparisons.from_arrays(c.a[idx], c.b[idx], c.outcome[idx], items=c.items, a_first=c.a_first[idx])
    _same(_fit(name, doubled), _fit(name, dup), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_json_round_trip(name):
    build, _, _ = BUILDERS[name]
    board = _fit(name, build(8))
    payload = json.loads(board.to_json())
    frame = board.to_pandas()
    assert [item["name"] for item in payload["items"]] == list(frame["item"])
    np.testing.assert_allclose([item["rating"] for item in payload["items"]], frame["rating"])
    assert [item["rank"] for item in payload["items"]] == list(frame["rank"])
    assert payload["model"] == board.model and payload["n_comparisons"] == len(build(8))
    assert payload["interval"]["level"] == board.level
