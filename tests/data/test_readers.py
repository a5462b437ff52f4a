import json
import warnings

import numpy as np
import pandas as pd
import pytest

from pairkit.data import read_comparisons
from pairkit.errors import DroppedRowsWarning, InputError
from tests.shared_data import shared_path


def test_chess_json_rows_with_white_first():
    c = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    assert len(c) == 7999 and c.n_items == 17
    assert int(np.sum(c.outcome == 0.5)) == 1681
    assert c.a_first is not None and c.a_first.all()


def test_football_scores_to_win_draw_loss():
    c = read_comparisons(shared_path("sports", "international_football_results.csv"))
    assert len(c) == 49520 and c.n_items == 337
    assert int(np.sum(c.outcome == 0.5)) == 11258


def test_arena_hard_labels():
    path = shared_path("llm_judgments", "arena_hard_battles.jsonl")
    c = read_comparisons(path, a="model_a", b="model_b", outcome="winner")
    raw = pd.read_json(path, lines=True)
    expected = raw["winner"].map(lambda w: 1.0 if w == "model_a" else 0.0 if w == "model_b" else 0.5)
    np.testing.assert_array_equal(c.outcome, expected.to_numpy())


def test_icehockey_with_home_flag():
    c = read_comparisons(shared_path("sports", "icehockey.csv"), a="visitor", b="opponent", outcome="result",
                         a_first="home.ice")
    assert len(c) == 1083 and c.a_first is not None


def test_winner_loser_and_parquet_roundtrip(tmp_path):
    frame = pd.DataFrame({"winner": ["a", "b", "c"], "loser": ["b", "c", "a"], "w": [1.0, 2.0, 0.5]})
    frame.to_parquet(tmp_path / "x.parquet")
    c = read_comparisons(tmp_path / "x.parquet", winner="winner", loser="loser", weight="w")
    assert c.outcome.tolist() == [1.0, 1.0, 1.0] and c.weight.tolist() == [1.0, 2.0, 0.5]


def test_chess_labels_in_csv(tmp_path):
    path = tmp_path / "games.csv"
    path.write_text("white,black,result\nA,B,1-0\nB,A,1/2-1/2\nA,B,0-1\n")
    c = read_comparisons(path, a="white", b="black", outcome="result")
    assert c.outcome.tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize(
    "body, kwargs, pattern",
    [
        ("a,b,y\nA,B,1\nA,B,maybe\n", dict(a="a", b="b", outcome="y"), r"row 3, column 'y': unknown outcome label"),
        ("a,b,y\nA,B,1\nA,,1\n", dict(a="a", b="b", outcome="y"), r"row 3, column 'b': missing item name"),
        ("a,b,y\nA,B,1\nA,A,1\n", dict(a="a", b="b", outcome="y"), r"row 3, column 'b': the item is compared with"),
        ("a,b,y,w\nA,B,1,-1\n", dict(a="a", b="b", outcome="y", weight="w"), r"row 2, column 'w': weight must be"),
        ("a,b,y,w\nA,B,1,inf\n", dict(a="a", b="b", outcome="y", weight="w"), r"row 2, column 'w': weight must be"),
        ("a,b,y\nA,B,1\n", dict(a="a", b="b", outcome="nope"), r"no column 'nope'"),
        ("a,b,y\n", dict(a="a", b="b", outcome="y"), r"no data rows"),
        ("", dict(a="a", b="b", outcome="y"), r"the file is empty"),
        ("x,y\n1,2\n", {}, r"cannot tell which columns"),
        ("a,b,sa,sb\nA,B,2,x\n", dict(a="a", b="b", score_a="sa", score_b="sb"), r"row 2, column 'sb': missing or non"),
    ],
)
def test_bad_csv_names_file_row_column(tmp_path, body, kwargs, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=pattern) as info:
        read_comparisons(path, **kwargs)
    assert "bad.csv" in str(info.value)


def test_jsonl_line_numbers(tmp_path):
    path = tmp_path / "b.jsonl"
    rows = [{"model_a": "x", "model_b": "y", "winner": "model_a"}, {"model_a": "x", "model_b": "y", "winner": "??"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=r"b.jsonl, line 2, column 'winner'"):
        read_comparisons(path)


def test_drop_invalid_reports_count(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\nA,B,1\nA,B,??\nB,B,1\nB,A,0\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = read_comparisons(path, a="a", b="b", outcome="y", on_invalid="drop")
    assert len(c) == 2 and c.n_dropped == 2
    messages = [str(w.message) for w in caught if issubclass(w.category, DroppedRowsWarning)]
    assert messages and "dropped 2 of 4 rows" in messages[0]


def test_outcome_map_extends_labels(tmp_path):
    frame = pd.DataFrame({"a": ["x"], "b": ["y"], "o": ["left-better"]})
    c = read_comparisons(frame, a="a", b="b", outcome="o", outcome_map={"left-better": 1})
    assert c.outcome.tolist() == [1.0]


def test_numeric_outcomes_out_of_range_dataframe():
    frame = pd.DataFrame({"a": ["x", "x"], "b": ["y", "y"], "o": [1.0, 1.5]})
    with pytest.raises(InputError, match=r"DataFrame, row 2, column 'o': outcome must be in"):
        read_comparisons(frame, a="a", b="b", outcome="o")


def _row_reference(frame, **columns):
    """The readers' result rebuilt from per-row Python strings (the slow path they replaced)."""
    from pairkit.data import Comparisons

    a = [str(x).strip() for x in frame[columns["a"]]]
    b = [str(x).strip() for x in frame[columns["b"]]]
    labels = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
    out = [labels[str(x).strip().lower()] for x in frame[columns["outcome"]]]
    return Comparisons.from_arrays(a, b, out)


@pytest.mark.parametrize("categorical", [False, True])
def test_codes_match_row_by_row_names(tmp_path, categorical):
    rng = np.random.default_rng(3)
    names = np.array(["m1", " m1", "m2 ", "m3", "x 4", "m10"], dtype=object)
    frame = pd.DataFrame({
        "a": names[rng.integers(0, 6, 300)], "b": names[rng.integers(0, 6, 300)],
        "winner": np.array(["model_a", "Model_B", " tie"], dtype=object)[rng.integers(0, 3, 300)],
    })
    frame = frame[frame["a"].str.strip() != frame["b"].str.strip()].reset_index(drop=True)
    if categorical:
        frame = frame.astype("category")
    path = tmp_path / "c.parquet"
    frame.to_parquet(path)
    got = read_comparisons(path, a="a", b="b", outcome="winner")
    want = _row_reference(frame, a="a", b="b", outcome="winner")
    assert got.items == want.items
    np.testing.assert_array_equal(got.a, want.a)
    np.testing.assert_array_equal(got.b, want.b)
    np.testing.assert_array_equal(got.outcome, want.outcome)


def test_items_only_in_dropped_rows_are_not_items(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("winner,loser,w\na,b,1\nc,d,-1\nb,c,2\n")
    with pytest.warns(DroppedRowsWarning):
        comps = read_comparisons(path, winner="winner", loser="loser", weight="w", on_invalid="drop")
    assert comps.items == ("a", "b", "c")
    assert comps.n_dropped == 1
    np.testing.assert_array_equal(comps.a, [0, 1])
    np.testing.assert_array_equal(comps.b, [1, 2])
