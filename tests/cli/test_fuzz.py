"""Fuzz of the readers, ``pairkit rank`` and the numeric options of ``simulate``/``compare-models`` (issue 18).

Each case is a comparisons file built from known rows plus zero or more injected defects, with a set of rank
options. The oracle knows what each defect must do: defects that make the input invalid must be rejected with a
one-line error naming the file (and the line for line-level faults), invalid options with their name; valid input
must be accepted, the item names must be exactly the ones written (``7`` stays ``7``, ``2**53 + 1`` is not
rounded) and no rating may be NaN. Every case is classified as clean, vague, traceback, silent or hang.

Census: ``PAIRKIT_FUZZ_CENSUS=counts.jsonl PAIRKIT_FUZZ_EXAMPLES=300 python -m pytest tests/cli/test_fuzz.py``
appends one line per case (its category and why) instead of failing, for the before/after figures of issue 18.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import read_comparisons
from pairkit.errors import InputError

CENSUS = os.environ.get("PAIRKIT_FUZZ_CENSUS")
EXAMPLES = int(os.environ.get("PAIRKIT_FUZZ_EXAMPLES", "60"))
CASE_SECONDS = 10.0
LIMIT = 3600 if CENSUS else 1  # a census may run many more examples than the suite's bound allows
BIG = 2**53 + 1  # the first integer a float64 cannot hold

runner = CliRunner()
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,  # each case is bounded by its own alarm below; hypothesis' deadline would only report
    derandomize=True,  # the same cases before and after a fix, so the census figures compare
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# Defects: name → (formats it applies to, whether the input stays valid)
DEFECTS = {
    "null_id": (("csv", "tsv", "jsonl", "json", "parquet", "csv.gz"), False),
    "dup_header": (("csv", "tsv", "csv.gz"), False),
    "dict_id": (("jsonl", "json"), False),
    "list_id": (("jsonl", "json"), False),
    "inf_score": (("csv", "jsonl", "json", "parquet"), False),
    "bad_label": (("csv", "jsonl", "json", "parquet"), False),
    "self": (("csv", "jsonl", "json", "parquet"), False),
    "bare_number": (("jsonl",), False),
    "broken_line": (("jsonl",), False),
    "truncate": (("csv.gz", "parquet", "json"), False),
    "bom": (("csv", "tsv", "jsonl", "json"), True),
    "blank_lines": (("jsonl",), True),
    "directory": (("csv",), False),
    "empty": (("csv", "jsonl", "json", "parquet"), False),
    "non_utf8": (("csv", "tsv", "jsonl", "json", "csv.gz"), False),
    "nan_outcome": (("csv", "jsonl", "json"), False),
    "garbage": (("csv", "tsv", "jsonl", "json", "csv.gz", "parquet"), False),
}
LINE_DEFECTS = ("bare_number", "broken_line")
# --drop-invalid drops these
ROW_DEFECTS = ("null_id", "dict_id", "list_id", "inf_score", "bad_label", "nan_outcome", "self")


@dataclass
class Case:
    path: Path
    fmt: str
    shape: str
    rows: list[tuple]
    defects: list[str]
    names: set[str]  # item names of the valid rows, as the user wrote them
    drop: bool = False  # read with on_invalid="drop" (--drop-invalid)
    bad_line: int | None = None  # physical line of a line-level defect

    @property
    def valid(self) -> bool:
        return bool(self.rows) and all(DEFECTS[d][1] or (self.drop and d in ROW_DEFECTS) for d in self.defects)


class CaseTimeout(BaseException):  # noqa: N818 - not an Exception, so the CLI runner does not swallow it
    """A case ran past its time bound."""


@contextlib.contextmanager
def bounded(seconds: float):
    """Raise :class:`CaseTimeout` after ``seconds``, keeping any alarm pytest-timeout has set."""
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.01))


def _raise_timeout(signum, frame):
    raise CaseTimeout


SHAPES = {
    "winner": ("winner", "loser"),
    "outcome": ("a", "b", "outcome"),
    "scores": ("home_team", "away_team", "home_score", "away_score"),
}
STRING_IDS = ["a", "b", "c", "模型", "🙂"]
INT_IDS = [7, 8, 9, BIG, BIG - 1]
LABELS = ["model_a", "model_b", "tie", "1", "0", "0.5", 1, 0, 0.5]


@st.composite
def cases(draw, directory: Path) -> Case:
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl", "json", "csv.gz", "parquet"]))
    shape = draw(st.sampled_from(sorted(SHAPES)))
    pool = INT_IDS if draw(st.booleans()) else STRING_IDS
    n = draw(st.integers(0, 7))
    rows = []
    for _ in range(n):
        x, y = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
        if x == y:
            y = pool[(pool.index(x) + 1) % len(pool)]
        if shape == "winner":
            rows.append((x, y))
        elif shape == "outcome":
            label = draw(st.sampled_from(LABELS))
            rows.append((x, y, label if fmt in ("jsonl", "json") or isinstance(label, str) else str(label)))
        else:
            rows.append((x, y, draw(st.integers(0, 4)), draw(st.integers(0, 4))))
    possible = [d for d, (formats, _) in DEFECTS.items() if fmt in formats]
    defects = draw(st.lists(st.sampled_from(possible), max_size=2, unique=True)) if possible else []
    if "inf_score" in defects and shape != "scores":
        defects.remove("inf_score")
    for defect in ("bad_label", "nan_outcome"):
        if defect in defects and shape != "outcome":
            defects.remove(defect)
    names = {str(v) for row in rows for v in row[:2]}
    records = [dict(zip(SHAPES[shape], row, strict=True)) for row in rows]
    first = SHAPES[shape][0]
    if records:
        spot = draw(st.integers(0, len(records) - 1))
        bad = dict(records[spot])
        if "null_id" in defects:
            bad[first] = None
        if "dict_id" in defects:
            bad[first] = {"x": 1}
        if "list_id" in defects:
            bad[first] = ["q"]
        if "inf_score" in defects:
            bad["home_score"] = math.inf
        if "bad_label" in defects:
            bad["outcome"] = "maybe"
        if "nan_outcome" in defects:
            bad["outcome"] = math.nan
        if "self" in defects:
            bad[SHAPES[shape][1]] = bad[first]
        if bad != records[spot]:
            records.insert(spot, bad)
    path = directory / f"data.{fmt}"
    case = Case(path, fmt, shape, rows, defects, names, drop=draw(st.booleans()))
    if "directory" in defects:
        path.mkdir()
        return case
    data, bad_line = _encode(records, fmt, shape, defects, draw)
    case.bad_line = bad_line
    if "truncate" in defects and data:
        data = data[: draw(st.integers(0, max(len(data) - 2, 0)))]
    if "empty" in defects:
        data = b""
    if "garbage" in defects:
        data = draw(st.binary(min_size=1, max_size=64))
    path.write_bytes(data)
    return case


def _encode(records: list[dict], fmt: str, shape: str, defects: list[str], draw) -> tuple[bytes, int | None]:
    columns = list(SHAPES[shape])
    bad_line = None
    if fmt in ("csv", "tsv", "csv.gz"):
        sep = "\t" if fmt == "tsv" else ","
        header = columns + ([columns[0]] if "dup_header" in defects else [])
        lines = [sep.join(header)]
        for rec in records:
            cells = ["" if rec[c] is None else str(rec[c]) for c in columns]
            lines.append(sep.join(cells + (["x"] if "dup_header" in defects else [])))
        text = "\n".join(lines) + "\n"
        data = (("\ufeff" if "bom" in defects else "") + text).encode("utf-8") + _latin1(defects)
        return (gzip.compress(data) if fmt == "csv.gz" else data), None
    if fmt == "json":
        text = json.dumps(records, ensure_ascii=False, allow_nan=True)
        return (("\ufeff" if "bom" in defects else "") + text).encode("utf-8") + _latin1(defects), None
    if fmt == "jsonl":
        lines = [json.dumps(rec, ensure_ascii=False, allow_nan=True) for rec in records]
        if "blank_lines" in defects and lines:
            at = draw(st.integers(0, len(lines)))
            lines[at:at] = ["", "  "]
        for defect, text in (("bare_number", "5"), ("broken_line", '{"winner": "a",')):
            if defect in defects:
                at = draw(st.integers(0, len(lines)))
                lines.insert(at, text)
        if any(d in defects for d in LINE_DEFECTS):
            bad_line = next(k for k, line in enumerate(lines, 1) if line in ("5", '{"winner": "a",'))
        body = "\n".join(lines) + "\n"
        return (("\ufeff" if "bom" in defects else "") + body).encode("utf-8") + _latin1(defects), bad_line
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    table = pa.Table.from_pylist(records) if records else pa.table({c: pa.array([], pa.string()) for c in columns})
    pq.write_table(table, sink)
    return sink.getvalue(), None


def _latin1(defects: list[str]) -> bytes:
    """A Latin-1 'é' (byte 0xE9): never valid UTF-8."""
    return "café\n".encode("latin-1") if "non_utf8" in defects else b""


OPTION_VALUES = {
    "--bootstrap": [0, 3, -1, 10**9],
    "--seed": [0, 5, -1],
    "--level": ["0.9", "nan", "inf", "0", "1", "-0.5"],
    "--top": [1, 3, 0, -1],
    "--prior": ["1", "0.5", "nan", "-1", "inf"],
    "--model": ["bt", "elo", "davidson", "win_rate", "borda", "rao_kupper", "robust"],
}


def _option_ok(name: str, value) -> bool:
    value = float(value) if name != "--model" else value
    return {
        "--bootstrap": lambda v: 0 <= v <= 100_000,
        "--seed": lambda v: v >= 0,
        "--level": lambda v: 0 < v < 1,
        "--top": lambda v: v >= 1,
        "--prior": lambda v: 0 <= v < math.inf,
        "--model": lambda v: True,
    }[name](value)


options = st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in OPTION_VALUES.items()})


def _verdict(case: Case, code: int | None, message: str, names: list[str] | None, ratings: list | None,
             option_errors: list[str]) -> tuple[str, str]:
    """(category, why) for one case, from the exit code, the error text and the names/ratings written."""
    if code not in (0, 2):
        return "traceback", f"exit code {code}: {message[-300:]}"
    if code == 0:
        if option_errors:
            return "silent", f"accepted {option_errors}"
        if not case.valid:
            return "silent", f"accepted defects {case.defects}"
        if names is not None and set(names) != case.names:
            return "silent", f"items {sorted(names)} are not the ones written {sorted(case.names)}"
        if ratings is not None and any(r is None or (isinstance(r, float) and math.isnan(r)) for r in ratings):
            return "silent", "NaN rating"
        return "clean", "accepted"
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if option_errors:
        named = any(opt.lstrip("-") in message for opt in option_errors)
        return ("clean", "option rejected") if named else ("vague", f"{option_errors}: {message.strip()[:200]}")
    if case.valid:  # a model may decline valid data (no tie for Rao–Kupper) in one line; a reader may not
        if len(lines) != 1 or "parse" in message:
            return "vague", f"valid input rejected: {message.strip()[:200]}"
        return "clean", "declined by the model"
    if len(lines) != 1 or case.path.name not in message and str(case.path) not in message:
        return "vague", f"does not name the file in one line: {message.strip()[:200]}"
    if case.bad_line is not None and "position" in message:
        return "vague", f"character position, not the line: {message.strip()[:200]}"
    if case.bad_line is not None and not set(case.defects) - set(LINE_DEFECTS) - {"bom", "blank_lines"}:
        if f"line {case.bad_line}" not in message:
            return "vague", f"expected line {case.bad_line}: {message.strip()[:200]}"
    return "clean", "rejected"


def _record(kind: str, case: Case | None, category: str, why: str, extra=None) -> None:
    fmt, defects = (case.fmt, case.defects) if case is not None else (None, [])
    if CENSUS:
        with open(CENSUS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "category": category, "why": why, "fmt": fmt,
                                 "defects": defects, "options": extra}, default=str) + "\n")
        return
    assert category == "clean", f"{category}: {why} ({fmt}, defects {defects}, options {extra})"


@pytest.mark.timeout(120 * LIMIT)
@fuzz_settings
@given(data=st.data())
def test_read_comparisons_accepts_or_raises_input_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        case = data.draw(cases(Path(tmp)))
        start = time.monotonic()
        try:
            with bounded(CASE_SECONDS):
                comps = read_comparisons(case.path, on_invalid="drop" if case.drop else "raise")
        except CaseTimeout:
            category, why = "hang", f"over {CASE_SECONDS:.0f} s"
        except InputError as exc:
            category, why = _verdict(case, 2, str(exc), None, None, [])
        except Exception as exc:  # noqa: BLE001 - what the fuzz is looking for
            category, why = "traceback", f"{type(exc).__name__}: {exc}"[:300]
        else:
            category, why = _verdict(case, 0, "", list(comps.items), None, [])
        assert time.monotonic() - start < CASE_SECONDS + 5
        _record("read", case, category, why)


@pytest.mark.timeout(300 * LIMIT)
@fuzz_settings
@given(data=st.data(), opts=options)
def test_rank_exits_0_or_2_with_exact_items_and_no_nan(data, opts):
    with tempfile.TemporaryDirectory() as tmp:
        case = data.draw(cases(Path(tmp)))
        out = Path(tmp) / "board.json"
        args = ["rank", str(case.path), "--json", str(out)] + (["--drop-invalid"] if case.drop else [])
        opts = {"--prior": "1", **opts}
        if opts.get("--model") in ("elo", "win_rate", "borda") and "--prior" in opts:
            opts.pop("--prior")  # these take no prior; a note about it is not what this fuzz looks at
        for name, value in opts.items():
            args += [name, str(value)]
        option_errors = [name for name, value in opts.items() if not _option_ok(name, value)]
        # Every numeric option is checked before any data is read, --seed too (even when no bootstrap uses it).
        try:
            with bounded(CASE_SECONDS):
                result = runner.invoke(app, args)
        except CaseTimeout:
            _record("rank", case, "hang", f"over {CASE_SECONDS:.0f} s", opts)
            return
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            exc = result.exception
            _record("rank", case, "traceback", f"{type(exc).__name__}: {exc}"[:300], opts)
            return
        names = ratings = None
        if result.exit_code == 0 and out.exists():
            board = json.loads(out.read_text(encoding="utf-8"))
            names = [item["name"] for item in board["items"]]
            ratings = [item["rating"] for item in board["items"]]
            if "--top" in opts and int(opts["--top"]) >= 1:
                shown = sum(1 for line in result.output.splitlines() if line.startswith("│"))
                if shown != min(int(opts["--top"]), len(names)):
                    _record("rank", case, "silent", f"--top {opts['--top']} showed {shown} rows", opts)
                    return
            if "nan" in result.output.lower():
                _record("rank", case, "silent", "nan in the printed table", opts)
                return
        category, why = _verdict(case, result.exit_code, result.output, names, ratings, option_errors)
        _record("rank", case, category, why, opts)


# Options of the other commands that take numbers: value → valid? (the declared ranges, written out again here)
COMMAND_OPTIONS = {
    "simulate": {
        "--items": {2: True, 5: True, 1: False, 0: False, -3: False},
        "--k": {1: True, 3: True, 0: False, -1: False},
        "--spread": {"1": True, "0.5": True, "0": False, "-1": False, "nan": False, "inf": False},
        "--position-bias": {"0": True, "0.5": True, "-1": True, "nan": False, "inf": False, "-inf": False},
        "--seed": {0: True, 3: True, -1: False},
        "--budget": {1: True, 20: True, 0: False, -5: False},
    },
    "compare-models": {
        "--folds": {2: True, 3: True, 1: False, 0: False, -1: False},
        "--seed": {0: True, 7: True, -1: False},
        "--prior": {"1": True, "0.5": True, "-1": False, "nan": False, "inf": False},
    },
}


@st.composite
def command_options(draw):
    command = draw(st.sampled_from(sorted(COMMAND_OPTIONS)))
    table = COMMAND_OPTIONS[command]
    chosen = draw(st.lists(st.sampled_from(sorted(table)), max_size=3, unique=True))
    return command, {name: draw(st.sampled_from(list(table[name]))) for name in chosen}


@pytest.mark.timeout(300 * LIMIT)
@fuzz_settings
@given(drawn=command_options())
def test_simulate_and_compare_options_exit_0_or_2_naming_the_option(drawn):
    command, opts = drawn
    with tempfile.TemporaryDirectory() as tmp:
        if command == "simulate":
            args = ["simulate", "--strategy", "round_robin", "--items", "4"]
        else:
            games = Path(tmp) / "games.csv"
            games.write_text("winner,loser\na,b\nb,c\nc,a\na,c\nb,a\nc,b\n")
            args = ["compare-models", str(games), "--models", "bt"]
        for name, value in opts.items():
            args += [name, str(value)]
        invalid = [name for name, value in opts.items() if not COMMAND_OPTIONS[command][name][value]]
        try:
            with bounded(CASE_SECONDS):
                result = runner.invoke(app, args)
        except CaseTimeout:
            _record(command, None, "hang", f"over {CASE_SECONDS:.0f} s", opts)
            return
        text = result.output.strip()
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            category, why = "traceback", f"{type(result.exception).__name__}: {result.exception}"[:300]
        elif result.exit_code not in (0, 2):
            category, why = "traceback", f"exit code {result.exit_code}: {text[-300:]}"
        elif result.exit_code == 0:
            bad_number = any(word in text.lower().split() for word in ("nan", "inf"))
            category, why = (("silent", f"accepted {invalid}") if invalid else
                             ("silent", "nan in the output") if bad_number else ("clean", "accepted"))
        elif invalid:
            spellings = [f"{n} must be" for name in invalid for n in (name, name.lstrip("-").replace("-", "_"))]
            named = any(words in text for words in spellings) and len(text.splitlines()) == 1
            category, why = ("clean", "option rejected") if named else ("vague", f"{invalid}: {text[:200]}")
        else:
            category, why = ("clean", "declined") if len(text.splitlines()) == 1 else ("vague", text[:200])
        _record(command, None, category, why, opts)
