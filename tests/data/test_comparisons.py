import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.data import Comparisons
from pairkit.errors import InputError


def naive_pair_counts(c: Comparisons, split_ties: bool):
    out = {}
    for a, b, y, w in zip(c.a, c.b, c.outcome, c.weight):
        lo, hi = min(a, b), max(a, b)
        y_lo = y if a == lo else 1 - y
        entry = out.setdefault((lo, hi), [0.0, 0.0, 0.0])
        if split_ties or y in (0.0, 1.0):
            entry[0] += w * y_lo
            entry[1] += w * (1 - y_lo)
        else:
            entry[2] += w
    return out


def random_comparisons(rng, n_items=7, m=200, ties=True):
    a = rng.integers(0, n_items, m)
    b = (a + rng.integers(1, n_items, m)) % n_items
    y = rng.choice([0.0, 0.5, 1.0] if ties else [0.0, 1.0], m)
    w = rng.uniform(0.5, 2.0, m)
    return Comparisons.from_arrays(a, b, y, weight=w)


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("n_items", [5, 400])  # dense bincount path and sort path
def test_pair_counts_match_naive_loop(rng, split, n_items):
    c = random_comparisons(rng, n_items=n_items, m=300)
    pc = c.pair_counts(ties="half" if split else "separate")
    ref = naive_pair_counts(c, split)
    assert len(pc.i) == len(ref)
    for i, j, wi, wj, t in zip(pc.i, pc.j, pc.wins_i, pc.wins_j, pc.ties):
        assert i < j
        np.testing.assert_allclose([wi, wj, t], ref[(i, j)], atol=1e-12)


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("n_items", [5, 400])
def test_pair_counts_in_blocks_match_naive_loop(rng, monkeypatch, split, n_items):
    """Aggregation block by block (blocks of 7 rows here) sums to the same counts as one pass."""
    from pairkit.data import comparisons as module

    c = random_comparisons(rng, n_items=n_items, m=300)
    monkeypatch.setattr(module, "CHUNK_ROWS", 7)
    pc = c.pair_counts(ties="half" if split else "separate")
    ref = naive_pair_counts(c, split)
    assert len(pc.i) == len(ref)
    for i, j, wi, wj, t in zip(pc.i, pc.j, pc.wins_i, pc.wins_j, pc.ties):
        assert np.allclose([wi, wj, t], ref[(i, j)], rtol=1e-12, atol=0)


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("path", ["codes", "rows", "blocks"])
def test_pair_counts_of_the_sorted_paths_match_naive_loop(rng, monkeypatch, split, path):
    """The one-sort aggregation — outcome codes packed with the keys (one weight for every row, outcomes in
    {0, ½, 1}) or row numbers packed (any weights) — and the block-by-block fallback give the naive sums, as pairs
    sorted by (i, j)."""
    from pairkit.data import comparisons as module

    n = 400  # n² above the rows: not the dense bincount path
    c = random_comparisons(rng, n_items=n, m=2_000)
    if path == "codes":
        c = Comparisons.from_arrays(c.a, c.b, c.outcome, weight=np.full(len(c), 1.5))
        assert c.weight.strides[0] == 0  # stored as a broadcast: the packed-outcome path applies
    if path == "blocks":
        monkeypatch.setattr(module, "_aggregate_sorted", lambda *args: None)
    used = []
    real = module._aggregate_sorted

    def spy(*args):
        out = real(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(module, "_aggregate_sorted", spy)
    pc = c.pair_counts(ties="half" if split else "separate")
    assert used == [path != "blocks"]
    ref = naive_pair_counts(c, split)
    assert len(pc.i) == len(ref)
    assert np.all(np.diff(pc.i * n + pc.j) > 0) and pc.i.dtype == np.int64
    for i, j, wi, wj, t in zip(pc.i, pc.j, pc.wins_i, pc.wins_j, pc.ties):
        np.testing.assert_allclose([wi, wj, t], ref[(i, j)], rtol=1e-12, atol=1e-12)


def test_compact_storage_same_values():
    """Item indices are int32; a column constant on every row is a broadcast (no bytes per row), values equal."""
    c = Comparisons.from_arrays(np.array([0, 1, 2]), np.array([1, 2, 0]), items=["x", "y", "z"])
    assert c.a.dtype == np.int32 and c.b.dtype == np.int32
    assert c.weight.strides == (0,) and c.outcome.strides == (0,)
    assert c.weight.tolist() == [1.0] * 3 and c.outcome.tolist() == [1.0] * 3
    varied = Comparisons.from_arrays([0, 1], [1, 0], [1.0, 0.5], weight=[2.0, 3.0])
    assert varied.outcome.tolist() == [1.0, 0.5] and varied.weight.tolist() == [2.0, 3.0]
    assert varied.outcome.dtype == np.float64 and varied.outcome.strides == (8,)
    # built directly with int64 indices, as the count readers do: converted, and still read-only
    direct = Comparisons(
        items=("x", "y"), a=np.array([0], np.int64), b=np.array([1], np.int64), outcome=np.ones(1), weight=np.ones(1)
    )
    assert direct.a.dtype == np.int32 and not direct.a.flags.writeable
    assert c.subset([0, 2]).weight.strides == (0,) and c.swapped().outcome.tolist() == [0.0] * 3


def test_from_names_and_lookup():
    c = Comparisons.from_arrays(["x", "y", "z"], ["y", "z", "x"], [1, 0.5, 0])
    assert c.items == ("x", "y", "z")
    assert c.index("z") == 2
    with pytest.raises(InputError, match="unknown item"):
        c.index("w")
    assert "3 comparisons of 3 items, 1 ties" in repr(c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(a=[0, 1], b=[0, 2], outcome=[1, 1]), "compared with itself"),
        (dict(a=[0, 1], b=[1, 2], outcome=[1, 2]), "outcome must be in"),
        (dict(a=[0, 1], b=[1, 2], outcome=[1, np.nan]), "outcome must be in"),
        (dict(a=[0, 1], b=[1, 2], outcome=[1, 1], weight=[1, -1]), "weight must be finite"),
        (dict(a=[0, 1], b=[1, 2], outcome=[1, 1], weight=[1, np.inf]), "weight must be finite"),
        (dict(a=[0, 1], b=[1], outcome=[1, 1]), "equal length"),
        (dict(a=[0.5, 1], b=[1, 2], outcome=[1, 1]), "integer item indices"),
    ],
)
def test_from_arrays_rejects_bad_rows(kwargs, message):
    with pytest.raises(InputError, match=message):
        Comparisons.from_arrays(kwargs.pop("a"), kwargs.pop("b"), kwargs.pop("outcome"), **kwargs)


def test_components_and_subset():
    c = Comparisons.from_arrays([0, 2, 4], [1, 3, 5], items=list("abcdefg"))
    labels = c.components()
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
    assert len(set(labels)) == 4  # {a,b}, {c,d}, {e,f}, {g}
    sub = c.subset(np.array([True, False, True]))
    assert len(sub) == 2 and sub.items == c.items


def test_swapped_preserves_counts(rng):
    c = random_comparisons(rng)
    p1, p2 = c.pair_counts(ties="separate"), c.swapped().pair_counts(ties="separate")
    for name in ("i", "j", "wins_i", "wins_j", "ties"):
        np.testing.assert_allclose(getattr(p1, name), getattr(p2, name))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_pair_counts_invariant_to_row_order(seed):
    rng = np.random.default_rng(seed)
    c = random_comparisons(rng, m=50)
    perm = rng.permutation(len(c))
    p1, p2 = c.pair_counts(), c.subset(perm).pair_counts()
    np.testing.assert_allclose(p1.wins_i, p2.wins_i)
    np.testing.assert_allclose(p1.wins_j, p2.wins_j)
    # total wins equal total weighted comparisons
    assert np.isclose(p1.wins_i.sum() + p1.wins_j.sum(), c.weight.sum())
