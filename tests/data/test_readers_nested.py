"""Readers a data scientist expects (issue 14): nested JSON fields by dotted path and --outcome-map for any outcome
coding, each checked against a plain reading of the same file."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import Comparisons, read_comparisons
from pairkit.data.readers import nested_field, parse_outcome_map
from pairkit.errors import DroppedRowsWarning, InputError

runner = CliRunner()

ROWS = [
    {"meta": {"model_a": "gpt", "model_b": "llama"}, "winner": "model_a", "score": {"ft": [2, 1]}},
    {"meta": {"model_a": "llama", "model_b": "claude"}, "winner": "tie (bothbad)", "score": {"ft": [1, 1]}},
    {"meta": {"model_a": "claude", "model_b": "gpt"}, "winner": "model_b", "score": {"ft": [0, 3]}},
    {"meta": {"model_a": "gpt", "model_b": "claude"}, "winner": "A wins", "score": {"ft": [4, 0]}},
    {"meta": {"model_a": "llama", "model_b": "gpt"}, "winner": "B wins", "score": {"ft": [0, 3]}},
    {"meta": {"model_a": "claude", "model_b": "llama"}, "winner": "A wins", "score": {"ft": [2, 2]}},
]


@pytest.fixture
def nested(tmp_path):
    path = tmp_path / "battles.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return path


def _reference(rows, outcome):
    """A plain reading: every row's values looked up by hand."""
    a = [r["meta"]["model_a"] for r in rows]
    b = [r["meta"]["model_b"] for r in rows]
    items = sorted(set(a) | set(b))
    return Comparisons.from_arrays([items.index(x) for x in a], [items.index(x) for x in b], outcome, items=items)


def _same(c, ref):
    assert c.items == ref.items
    np.testing.assert_array_equal(c.a, ref.a)
    np.testing.assert_array_equal(c.b, ref.b)
    np.testing.assert_allclose(c.outcome, ref.outcome)


def test_nested_items_and_list_elements_match_a_plain_reading(nested):
    c = read_comparisons(nested, a="meta.model_a", b="meta.model_b", score_a="score.ft.0", score_b="score.ft.1")
    goals = [(r["score"]["ft"][0], r["score"]["ft"][1]) for r in ROWS]
    _same(c, _reference(ROWS, [1.0 if x > y else 0.0 if x < y else 0.5 for x, y in goals]))


def test_outcome_map_adds_labels(nested):
    c = read_comparisons(
        nested, a="meta.model_a", b="meta.model_b", outcome="winner", outcome_map=parse_outcome_map("A wins=1,B wins=0")
    )
    labels = {"model_a": 1.0, "model_b": 0.0, "tie (bothbad)": 0.5, "A wins": 1.0, "B wins": 0.0}
    _same(c, _reference(ROWS, [labels[r["winner"]] for r in ROWS]))


def test_unknown_labels_are_named_with_their_counts_or_dropped_and_counted(nested):
    with pytest.raises(
        InputError,
        match=r"battles.jsonl, line 4, column 'winner': unknown outcome label "
        r"\(2 unknown: 'A wins' × 2, 'B wins' × 1;.*\(value 'A wins'\)\. 3 invalid",
    ):
        read_comparisons(nested, a="meta.model_a", b="meta.model_b", outcome="winner")
    with pytest.warns(DroppedRowsWarning, match=r"dropped 3 of 6 rows: 3 × unknown outcome label"):
        c = read_comparisons(nested, a="meta.model_a", b="meta.model_b", outcome="winner", on_invalid="drop")
    assert c.n_dropped == 3 and len(c) == 3


@pytest.mark.parametrize(
    "coding, mapping",
    [
        ([1, 1.5, 2, 2, 1], "1=1,1.5=0.5,2=0"),
        ([-1, 0, 1, 1, 0], "-1=0,0=0.5,1=1"),
        (["1", "1.5", "2", "2", "1"], "1.0=1,1.5=0.5,2=0"),
    ],
)
def test_numeric_codings_are_recoded(coding, mapping):
    frame = pd.DataFrame({"a": list("xyzxy"), "b": list("yzxzx"), "o": coding})
    table = {float(k): v for k, v in parse_outcome_map(mapping).items()}
    c = read_comparisons(frame, a="a", b="b", outcome="o", outcome_map=parse_outcome_map(mapping))
    np.testing.assert_allclose(c.outcome, [table[float(x)] for x in coding])


def test_unmapped_numbers_out_of_range_are_counted():
    frame = pd.DataFrame({"a": list("xyzx"), "b": list("yzxz"), "o": [1, 1.5, 2, 2]})
    with pytest.raises(InputError, match=r"row 2, column 'o': outcome must be in \[0, 1\] \(values: 2 × 2, 1.5 × 1\)"):
        read_comparisons(frame, a="a", b="b", outcome="o")


def test_nested_paths_name_the_missing_level(nested, tmp_path):
    with pytest.raises(InputError, match=r"no field 'model_x' under 'meta'.*fields are \['model_a', 'model_b'\]"):
        read_comparisons(nested, a="meta.model_x", b="meta.model_b", outcome="winner")
    with pytest.raises(InputError, match=r"no column 'info.model_a' \(nor a column 'info'"):
        read_comparisons(nested, a="info.model_a", b="meta.model_b", outcome="winner")
    rows = [dict(r) for r in ROWS]
    rows[2] = {**rows[2], "meta": {"model_b": "gpt"}}  # one row lacks the field: that row is named
    path = tmp_path / "gap.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(InputError, match=r"gap.jsonl, line 3, column 'meta.model_a'"):
        read_comparisons(
            path, a="meta.model_a", b="meta.model_b", outcome="winner", outcome_map={"A wins": 1, "B wins": 0}
        )


def test_a_dotted_column_name_wins_over_a_path():
    frame = pd.DataFrame({"m.a": ["x", "y"], "m.b": ["y", "x"], "m": [{"a": "q"}, {"a": "r"}], "o": [1, 0]})
    c = read_comparisons(frame, a="m.a", b="m.b", outcome="o")
    assert c.items == ("x", "y")
    assert nested_field(frame, "m.a").tolist() == ["q", "r"]  # the path itself, when asked for


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_a", "expected LABEL=VALUE"),
        ("x=2", "'x=2': the value must be a number in [0, 1]"),
        ("x=1,X=0", "label 'X' is given twice"),
        ("=1", "expected LABEL=VALUE"),
    ],
)
def test_outcome_map_text_errors(text, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_outcome_map(text)
    assert parse_outcome_map("a=b=0.5, tie (bothbad)=0.5") == {"a=b": 0.5, "tie (bothbad)": 0.5}


def test_rank_cli_reads_nested_fields_with_an_outcome_map(nested, tmp_path):
    out = tmp_path / "board.json"
    args = [
        "rank",
        str(nested),
        "--a",
        "meta.model_a",
        "--b",
        "meta.model_b",
        "--outcome",
        "winner",
        "--outcome-map",
        "A wins=1,B wins=0",
        "--prior",
        "1",
        "--json",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    from pairkit.rating import fit_bradley_terry

    labels = {"model_a": 1.0, "model_b": 0.0, "tie (bothbad)": 0.5, "A wins": 1.0, "B wins": 0.0}
    ref = fit_bradley_terry(_reference(ROWS, [labels[r["winner"]] for r in ROWS]), prior=1.0)
    got = {row["name"]: row["rating"] for row in json.loads(out.read_text())["items"]}
    assert got == pytest.approx(dict(zip(ref.items, ref.ratings, strict=True)), abs=1e-9)
    result = runner.invoke(app, args[:-6] + ["--prior", "1"])
    assert result.exit_code == 2 and "'A wins' × 2" in " ".join(result.output.split())
