"""Reader faults of the issue-18 fuzz, each built from its failing input: exact integer ids, one-line errors."""

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairkit.data import read_comparisons
from pairkit.errors import InputError

BIG = 2**53 + 1  # the first integer a float64 cannot hold


def test_null_in_an_integer_parquet_column_keeps_7_as_7(tmp_path):
    path = tmp_path / "ids.parquet"
    table = pa.table({"winner": pa.array([7, None, 8, 9], pa.int64()), "loser": pa.array([8, 9, 9, 7], pa.int64())})
    pq.write_table(table, path)
    with pytest.warns(UserWarning, match="dropped 1 of 4"):
        comps = read_comparisons(path, on_invalid="drop")
    assert sorted(comps.items) == ["7", "8", "9"]
    with pytest.raises(InputError, match=r"ids.parquet, row 2, column 'winner': missing item name \(value None\)"):
        read_comparisons(path)


def test_null_in_an_integer_csv_column_keeps_7_as_7(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("winner,loser\n7,8\n,9\n8,9\n9,7\n")
    with pytest.warns(UserWarning, match="dropped 1 of 4"):
        comps = read_comparisons(path, on_invalid="drop")
    assert sorted(comps.items) == ["7", "8", "9"]


def test_integer_ids_of_a_float_dataframe_column_are_the_integers():
    frame = pd.DataFrame({"winner": [7.0, np.nan, 8.0], "loser": [8, 9, 9]})
    with pytest.warns(UserWarning, match="dropped 1 of 3"):
        comps = read_comparisons(frame, on_invalid="drop")
    assert sorted(comps.items) == ["7", "8", "9"]


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_big_integer_ids_are_not_rounded(tmp_path, fmt):
    records = [{"winner": BIG, "loser": BIG - 1}, {"winner": BIG - 1, "loser": None}, {"winner": 7, "loser": BIG}]
    path = tmp_path / f"big.{fmt}"
    text = "\n".join(json.dumps(r) for r in records) if fmt == "jsonl" else json.dumps(records)
    path.write_text(text + "\n")
    with pytest.warns(UserWarning, match="dropped 1 of 3"):
        comps = read_comparisons(path, on_invalid="drop")
    assert sorted(comps.items) == sorted([str(BIG), str(BIG - 1), "7"])


def test_big_integer_ids_in_parquet_with_nulls_are_exact(tmp_path):
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"winner": pa.array([BIG, None, 7]), "loser": pa.array([7, 7, BIG - 1])}), path)
    with pytest.warns(UserWarning):
        comps = read_comparisons(path, on_invalid="drop")
    assert sorted(comps.items) == sorted([str(BIG), str(BIG - 1), "7"])


def test_corrupt_csv_gz_names_the_file(tmp_path):
    whole = gzip.compress(b"winner,loser\n" + b"a,b\n" * 1000)
    path = tmp_path / "games.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="games.csv.gz: the gzip data is truncated or corrupt"):
        read_comparisons(path)
    path.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(InputError, match="games.csv.gz"):
        read_comparisons(path)


def test_a_bare_number_line_in_jsonl_names_its_line(tmp_path):
    path = tmp_path / "games.jsonl"
    path.write_text('{"winner": "a", "loser": "b"}\n5\n{"winner": "b", "loser": "c"}\n')
    with pytest.raises(InputError, match=r"games.jsonl, line 2: expected a JSON object, got 5"):
        read_comparisons(path)


def test_jsonl_parse_error_gives_the_line_not_a_character_position(tmp_path):
    path = tmp_path / "games.jsonl"
    path.write_text('{"winner": "a", "loser": "b"}\n\n{"winner": "b", "loser": "c"}\n{"winner": "a",\n')
    with pytest.raises(InputError, match=r"games.jsonl, line 4: not valid JSON") as info:
        read_comparisons(path)
    assert "position" not in str(info.value)


def test_jsonl_line_numbers_do_not_drift_after_blank_lines(tmp_path):
    path = tmp_path / "games.jsonl"
    path.write_text('{"winner": "a", "loser": "b"}\n\n  \n{"winner": "b", "loser": "b"}\n')
    with pytest.raises(InputError, match=r"games.jsonl, line 4, column 'loser': the item is compared with itself"):
        read_comparisons(path)


def test_csv_row_numbers_do_not_drift_after_blank_lines(tmp_path):
    path = tmp_path / "games.csv"
    path.write_text('winner,loser\na,b\n\n\n"multi\nline",c\nb,b\n')
    with pytest.raises(InputError, match=r"games.csv, row 7, column 'loser': the item is compared with itself"):
        read_comparisons(path)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_utf8_byte_order_mark_is_accepted_in_every_text_format(tmp_path, fmt):
    records = [{"winner": "a", "loser": "b"}, {"winner": "b", "loser": "c"}]
    text = {
        "jsonl": "\n".join(json.dumps(r) for r in records) + "\n",
        "json": json.dumps(records),
        "csv": "winner,loser\na,b\nb,c\n",
    }[fmt]
    path = tmp_path / f"bom.{fmt}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert sorted(read_comparisons(path).items) == ["a", "b", "c"]


def test_duplicate_csv_header_column_is_an_error(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("winner,loser,winner\na,b,c\nb,c,a\n")
    with pytest.raises(InputError, match=r"dup.csv, row 1: column 'winner' appears twice \(columns 1 and 3\)"):
        read_comparisons(path)


def test_duplicate_dataframe_columns_are_an_error():
    frame = pd.DataFrame([["a", "b", "c"], ["b", "c", "a"]], columns=["winner", "loser", "winner"])
    with pytest.raises(InputError, match=r"DataFrame: column\(s\) \['winner'\] appear more than once"):
        read_comparisons(frame)


def test_a_directory_named_like_a_csv_file(tmp_path):
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(InputError, match="x.csv: is a directory"):
        read_comparisons(tmp_path / "x.csv")


@pytest.mark.parametrize("value", [{"x": 1}, ["q"]])
def test_dict_or_list_values_are_not_item_names(tmp_path, value):
    path = tmp_path / "nested.jsonl"
    rows = [{"winner": "a", "loser": "b"}, {"winner": value, "loser": "c"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=r"nested.jsonl, line 2, column 'winner': a JSON object or array is not"):
        read_comparisons(path)
    with pytest.warns(UserWarning, match="dropped 1 of 2"):
        assert sorted(read_comparisons(path, on_invalid="drop").items) == ["a", "b"]


def test_infinite_scores_are_rejected(tmp_path):
    path = tmp_path / "goals.csv"
    path.write_text("home_team,away_team,home_score,away_score\nx,y,inf,1\ny,z,2,1\n")
    with pytest.raises(InputError, match=r"goals.csv, row 2, column 'home_score': score must be finite"):
        read_comparisons(path)


def test_jsonl_of_mixed_objects_and_arrays_names_the_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"winner": "a", "loser": "b"}\n["b", "c", 1]\n')
    with pytest.raises(InputError, match=r"mixed.jsonl, line 2: expected a JSON object, got \[\"b\", \"c\", 1\]"):
        read_comparisons(path)


def test_jsonl_of_arrays_reads_like_json_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('["a", "b", "1-0"]\n["b", "c", "1/2-1/2"]\n')
    comps = read_comparisons(path)
    assert comps.outcome.tolist() == [1.0, 0.5]


def test_non_utf8_text_names_the_file(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("winner,loser\ncafé,b\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin.csv: not UTF-8 text"):
        read_comparisons(path)


@pytest.mark.parametrize("column, options", [("outcome", {}), ("c", {"cluster": "c"}), ("f", {"a_first": "f"})])
def test_nested_values_in_other_columns_are_one_line_errors(tmp_path, column, options):
    rows = [{"a": "x", "b": "y", "outcome": 1, "c": "k", "f": True}, {"a": "y", "b": "z", "outcome": 0, "c": "k",
                                                                      "f": False}]
    rows[1][column] = {"q": [1]}
    path = tmp_path / "nested.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=rf"nested.jsonl, line 2, column '{column}': a JSON object or array is not"):
        read_comparisons(path, a="a", b="b", outcome="outcome", **options)
