"""Rankings container and readers."""

import numpy as np
import pandas as pd
import pytest

from pairkit.data import Rankings, read_preflib, read_rankings
from pairkit.errors import InputError
from tests.shared_data import shared_path


def test_from_lists_groups_and_roundtrip():
    r = Rankings.from_lists([["x", ("y", "z"), "w"], ["z", "x"]], weight=[2, 1])
    assert r.items == ("w", "x", "y", "z")
    assert r.lengths.tolist() == [4, 2]
    assert r.level.tolist() == [0, 1, 1, 2, 0, 1]
    assert r.has_ties
    assert r.to_lists() == [["x", ("y", "z"), "w"], ["z", "x"]]
    sub = r.subset([1])
    assert sub.to_lists() == [["z", "x"]] and sub.weight.tolist() == [1.0]


def test_to_comparisons_full_breaking():
    r = Rankings.from_lists([[2, (0, 1), 3]], weight=[3.0])
    c = r.to_comparisons()
    assert len(c) == 6
    pairs = {(c.items[a], c.items[b]): y for a, b, y in zip(c.a, c.b, c.outcome)}
    assert pairs[("2", "0")] == 1.0 and pairs[("0", "1")] == 0.5 and pairs[("1", "3")] == 1.0
    assert np.all(c.weight == 3.0)


def test_invalid_inputs_name_the_problem():
    with pytest.raises(InputError, match="twice"):
        Rankings.from_lists([[0, 1, 0]])
    with pytest.raises(InputError, match="weight"):
        Rankings.from_lists([[0, 1]], weight=[-1])
    frame = pd.DataFrame({"list": [1, 1, 2], "item": ["a", "b", "a"], "pos": [1, "x", 1]})
    with pytest.raises(InputError, match=r"row 2, column 'pos'"):
        read_rankings(frame, ranking="list", item="item", position="pos")
    frame = pd.DataFrame({"list": [1, 1], "item": ["a", "a"], "pos": [1, 2]})
    with pytest.raises(InputError, match="appears twice"):
        read_rankings(frame, ranking="list", item="item", position="pos")


def test_read_rankings_dataframe_ties_and_order():
    frame = pd.DataFrame(
        {"list": ["r1", "r1", "r1", "r2", "r2"], "item": ["a", "b", "c", "c", "a"], "pos": [3, 1, 1, 1, 2]}
    )
    r = read_rankings(frame, ranking="list", item="item", position="pos")
    assert r.to_lists() == [[("b", "c"), "a"], ["c", "a"]]


def test_nascar_reader():
    r = read_rankings(shared_path("rankings", "nascar2002.txt"), ranking="Race", item="DriverID", position="Place")
    assert len(r) == 36 and r.n_items == 83
    assert len(r.flat) == 1543 and not r.has_ties


def test_preflib_soc_and_toc():
    soc = read_preflib(shared_path("rankings", "netflix.soc"))
    assert soc.n_items == 4 and not soc.has_ties
    assert soc.weight.sum() == 588 and set(soc.lengths) == {4}
    toc = read_preflib(shared_path("rankings", "skaters.toc"))
    assert toc.n_items == 30 and toc.has_ties and len(toc) == 9
    assert toc.items[29] == "Alexei Yagudin"
    assert toc.to_lists()[0][0] == "Alexei Yagudin"
