"""The pandas-free Parquet reader (``readers._read_parquet_arrow``) against the general pandas-based reader: the
same comparisons on every file it takes, and every file it does not take left to the general reader."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairkit.data import read_comparisons, read_table
from pairkit.data import readers as module
from pairkit.errors import InputError


def _general(path, **options):
    """The general reader on the same file (read into a DataFrame first, so the pyarrow path is not taken)."""
    return read_comparisons(read_table(path)[0], **options)


def _same(fast, slow):
    assert fast.items == slow.items
    for name in ("a", "b", "outcome", "weight"):
        x, y = getattr(fast, name), getattr(slow, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert fast.cluster is None and fast.a_first is None and fast.n_dropped == 0


def _write(path, columns: dict, dictionary=True, row_group_size=None):
    table = pa.table(columns)
    if dictionary:
        table = pa.table({k: table[k].dictionary_encode() for k in table.column_names})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("dictionary", [True, False])
def test_winner_loser_and_labelled_outcomes_read_as_the_general_reader_does(tmp_path, dictionary):
    rng = np.random.default_rng(0)
    names = np.array([" zeta", "alpha", "alpha ", "Beta", "ä", "b10", "b9", "x y"], dtype=object)  # strip merges
    m = 500
    a = rng.integers(0, len(names), m)
    b = (a + rng.integers(1, len(names), m)) % len(names)
    ok = np.array([names[i].strip() != names[j].strip() for i, j in zip(a, b)])
    a, b = a[ok], b[ok]
    labels = np.array(["model_a", "model_b", "tie", " Tie (bothbad) ", "1-0", "MY_WIN"], dtype=object)
    y = labels[rng.integers(0, len(labels), len(a))]
    path = _write(tmp_path / "arena.parquet", {"model_a": names[a], "model_b": names[b], "winner": y},
                  dictionary, row_group_size=128)
    with pytest.raises(InputError, match="unknown outcome label"):
        _general(path)
    assert module._read_parquet_arrow(path, outcome_map=None) is None  # an unknown label: left to the general one
    fast = module._read_parquet_arrow(path, outcome_map={"my_win": 1.0})
    assert fast is not None
    _same(fast, _general(path, outcome_map={"my_win": 1.0}))
    _same(read_comparisons(path, outcome_map={"my_win": 1.0}), fast)
    path = _write(tmp_path / "wl.parquet", {"w": names[a], "l": names[b]}, dictionary, row_group_size=100)
    fast = module._read_parquet_arrow(path, outcome_map=None, winner="w", loser="l")
    assert fast is not None and fast.outcome.strides == (0,)
    _same(fast, _general(path, winner="w", loser="l"))


@pytest.mark.parametrize(("columns", "options"), [
    ({"winner": ["a", None, "c"], "loser": ["b", "c", "a"]}, {}),  # a missing name
    ({"winner": ["a", " ", "c"], "loser": ["b", "c", "a"]}, {}),  # a blank name
    ({"winner": ["a", "b", "c"], "loser": ["b", "b", "a"]}, {}),  # an item compared with itself
    ({"winner": ["a", "b", "c"], "loser": ["b ", "c", " c"]}, {}),  # the same after stripping
    ({"winner": [1, 2, 3], "loser": [2, 3, 1]}, {}),  # integer ids: the general reader's rules
    ({"model_a": ["a", "b"], "model_b": ["b", "c"], "winner": [1.0, 0.0]}, {}),  # numeric outcomes
    ({"model_a": ["a", "b"], "model_b": ["b", "c"], "winner": ["model_a", "2"]}, {}),  # out of range
    ({"winner": ["a", "b"], "loser": ["b", "c"], "w": [1.0, 2.0]}, {"weight": "w"}),  # a weight column
    ({"0": ["a", "b"], "1": ["b", "c"], "2": ["1-0", "0-1"]}, {}),  # [white, black, result]: the order flag
    ({"x": ["a", "b"], "y": ["b", "c"]}, {}),  # no recognised columns
])
def test_files_it_does_not_take_give_the_general_readers_result_or_error(tmp_path, columns, options):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table(columns), path)
    given = {k: v for k, v in options.items() if k != "weight"}
    if "weight" not in options:
        assert module._read_parquet_arrow(path, outcome_map=None, **given) is None
    try:
        expected = _general(path, **options)
    except InputError as exc:
        with pytest.raises(InputError) as got:
            read_comparisons(path, **options)
        assert str(got.value) == str(exc).replace("DataFrame", str(path))
        return
    got = read_comparisons(path, **options)
    assert got.items == expected.items and np.array_equal(got.a, expected.a)
    assert np.array_equal(got.outcome, expected.outcome) and np.array_equal(got.weight, expected.weight)
