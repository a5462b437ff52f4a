"""The CLI side of the issue-18 reader and option faults: exit code 2 and one line naming the cause, no traceback."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from pairkit.cli import app

runner = CliRunner()
GAMES = "winner,loser\na,b\nb,c\nc,a\na,c\n"


def _write(tmp_path, name: str, content: bytes | str | None):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


FILES = [
    ("games.csv.gz", gzip.compress(GAMES.encode() * 50)[:60], "games.csv.gz: the gzip data is truncated or corrupt"),
    ("games.jsonl", '{"winner": "a", "loser": "b"}\n5\n', "games.jsonl, line 2: expected a JSON object, got 5"),
    ("games.jsonl", '{"winner": "a", "loser": "b"}\n\n{"winner": "b",\n', "games.jsonl, line 3: not valid JSON"),
    ("games.jsonl", '{"winner": "a", "loser": "b"}\n\n\n{"winner": "c", "loser": "c"}\n',
     "games.jsonl, line 4, column 'loser': the item is compared with itself"),
    ("x.csv", None, "x.csv: the directory holds no"),  # rank reads directories of files (pairkit.scale)
    ("dup.csv", "winner,loser,winner\na,b,c\n", "dup.csv, row 1: column 'winner' appears twice"),
    ("nested.jsonl", '{"winner": {"name": "a"}, "loser": "b"}\n',
     "nested.jsonl, line 1, column 'winner': a JSON object or array is not an item name"),
    ("goals.csv", "home_team,away_team,home_score,away_score\nx,y,inf,0\n",
     "goals.csv, row 2, column 'home_score': score must be finite"),
]


@pytest.mark.parametrize("name, content, message", FILES, ids=[f[2].split(":")[0] + f"-{i}" for i, f in
                                                                enumerate(FILES)])
def test_bad_files_exit_2_with_one_line(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    result = runner.invoke(app, ["rank", str(path), "--prior", "1"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_bom_jsonl_ranks_like_the_file_without_it(tmp_path):
    rows = "".join(json.dumps({"winner": w, "loser": loser}) + "\n" for w, loser in ["ab", "bc", "ca", "ac"])
    plain = _write(tmp_path, "plain.jsonl", rows)
    bom = _write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + rows.encode())
    outputs = []
    for path in (plain, bom):
        result = runner.invoke(app, ["rank", str(path), "--prior", "1", "--json", str(path.with_suffix(".out"))])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(path.with_suffix(".out").read_text())["items"])
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("rank", ["--bootstrap", "10", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        ("rank", ["--bootstrap", "1000000000"], "--bootstrap must be an integer in [2, 100000], got 1000000000"),
        ("rank", ["--bootstrap", "1"], "(or 0 for none)"),
        ("rank", ["--top", "-1"], "--top must be an integer >= 1, got -1"),
        ("rank", ["--top", "0"], "--top must be an integer >= 1, got 0"),
        ("rank", ["--level", "nan"], "level must be a number in (0, 1), got nan"),  # checked by the model spec
        ("rank", ["--level", "0"], "level must be a number in (0, 1), got 0.0"),
        ("rank", ["--prior", "inf"], "prior must be a number >= 0, got inf"),
        ("rank", ["--prior", "-1"], "prior must be a number >= 0, got -1.0"),
        ("rank", ["--plot", "board.gif"], "--plot board.gif: use a .png"),
        ("compare-models", ["--folds", "1"], "--folds must be an integer >= 2, got 1"),
        ("compare-models", ["--seed", "-3"], "--seed must be an integer >= 0, got -3"),
        ("compare-models", ["--prior", "nan"], "prior must be a number >= 0, got nan"),
        ("simulate", ["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        ("demo", ["--battles", "0"], "--battles must be an integer >= 1, got 0"),
        ("demo", ["--plot", "demo.txt"], "--plot demo.txt: use a .png"),
    ],
)
@pytest.mark.timeout(60)
def test_bad_options_exit_2_at_once_naming_option_range_and_value(tmp_path, command, args, message):
    games = _write(tmp_path, "games.csv", GAMES)
    path = [str(games)] if command in ("rank", "compare-models") else []
    result = runner.invoke(app, [command, *path, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_top_shows_exactly_that_many_rows(tmp_path):
    games = _write(tmp_path, "games.csv", GAMES)
    result = runner.invoke(app, ["rank", str(games), "--prior", "1", "--top", "2"])
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("│") for line in result.output.splitlines()) == 2
