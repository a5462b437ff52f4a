"""Helpers shared by CLI commands: reading comparisons with column options, errors, printing boards."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pairkit._optional import missing
from pairkit._spec import Interval, Option
from pairkit.errors import InputError, PairkitError, PairkitWarning

# Piped output (CI logs, `| less`) gets a readable fixed width instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn pairkit errors into a one-line message and exit code 2; show warnings once each, after the command.

    Warnings are recorded while the command runs and shown only after recording has stopped: shown inside the
    recording block, each one would be recorded again while the list is being read, without end.
    """
    caught: list[warnings.WarningMessage] = []
    failure: BaseException | None = None
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always", PairkitWarning)
            try:
                yield
            except (PairkitError, OSError) as exc:  # OSError: an output path that cannot be written
                failure = exc
            except ImportError as exc:  # an optional package imported outside `requires`: still name the extra
                failure = missing(exc, purpose="this command")
                if failure is None:
                    raise
            finally:
                caught = list(recorded)
    finally:
        _flush(caught)
    if failure is not None:
        err_console.print(f"[bold red]error:[/] {escape(str(failure))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _flush(caught: list[warnings.WarningMessage]) -> None:
    """Show each distinct warning once, with a count when it was repeated (a missing glyph warns per character)."""
    counts: dict[tuple[type, str], int] = {}
    first: dict[tuple[type, str], warnings.WarningMessage] = {}
    for item in caught:
        key = (item.category, str(item.message))
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, item)
    for key, item in first.items():
        times = f" ({counts[key]} times)" if counts[key] > 1 else ""
        if issubclass(item.category, PairkitWarning):
            err_console.print(f"[yellow]note:[/] {escape(str(item.message))}{times}", highlight=False, soft_wrap=True)
        else:
            err_console.print(
                f"[yellow]warning ({item.category.__name__}):[/] {escape(str(item.message))}{times}",
                highlight=False, soft_wrap=True,
            )


MAX_BOOTSTRAP = 100_000  # ~10^5 refits already take minutes; 10^9 asked for 30 GB and never finished

# The numeric options of the rating/selection commands, declared once with their valid ranges (pairkit._spec).
# Each command checks what it was given here, before reading any data, so a bad value fails at once and the
# message names the flag as the user typed it, the allowed range and the value.
CLI_OPTIONS = {
    option.name.lstrip("-").replace("-", "_"): option
    for option in (
        Option("--seed", int, Interval(0, None), doc="random seed"),
        Option("--bootstrap", int, Interval(2, MAX_BOOTSTRAP), doc="bootstrap replicates (0 = none)"),
        Option("--top", int, Interval(1, None), doc="rows shown"),
        Option("--folds", int, Interval(2, None), doc="cross-validation folds"),
        Option("--items", int, Interval(2, None), doc="simulated items"),
        Option("--budget", int, Interval(1, None), doc="judge calls"),
        Option("--k", int, Interval(1, None), doc="k of top-k"),
        Option("--spread", float, Interval(0, None, closed="neither"), doc="SD of the true strengths"),
        Option("--position-bias", float, doc="log-odds bonus of the first position"),
        Option("--repeats", int, Interval(1, None), doc="simulations over consecutive seeds"),
        Option("--battles", int, Interval(1, None), doc="simulated battles"),
    )
}
_OFF = {"bootstrap": 0}  # values outside the range that switch the option off


def check_options(**values) -> None:
    """Check CLI option values against :data:`CLI_OPTIONS`; raise :class:`InputError` naming flag, range, value.

    ``None`` is an option the user did not give (the command's default applies).
    """
    for key, value in values.items():
        if value is None or key in _OFF and value == _OFF[key]:
            continue
        try:
            CLI_OPTIONS[key].check(value)
        except InputError as exc:
            off = f" (or {_OFF[key]} for none)" if key in _OFF else ""
            raise InputError(f"{exc}{off}") from None


PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_plot_path(path: Path | None, option: str = "--plot") -> None:
    """A plot file name must say its format (matplotlib picks it from the suffix)."""
    if path is not None and path.suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"{option} {path}: use a {', '.join(PLOT_SUFFIXES[:-2])} or .jpg file name")


@dataclass(frozen=True)
class ColumnOptions:
    """The column options shared by ``rank``, ``compare-models`` and ``count``: which columns hold the items, the
    outcome, weights, clusters and the order flag (``--a-first true``: ``a`` always went first), and whether
    invalid rows are dropped. One definition; :meth:`reader_options` is what the readers take."""

    winner: str | None = None
    loser: str | None = None
    a: str | None = None
    b: str | None = None
    outcome: str | None = None
    score_a: str | None = None
    score_b: str | None = None
    weight: str | None = None
    cluster: str | None = None
    a_first: str | None = None
    drop_invalid: bool = False
    outcome_map: str | None = None  # --outcome-map 'model_a=1,model_b=0,tie=0.5'

    def reader_options(self) -> dict:
        """Keyword options of :func:`pairkit.read_comparisons` / :func:`pairkit.scale.count_pairs` (columns only)."""
        first: str | bool | None = self.a_first
        if isinstance(first, str) and first.lower() in ("true", "always", "1"):
            first = True
        options = dict(winner=self.winner, loser=self.loser, a=self.a, b=self.b, outcome=self.outcome,
                       score_a=self.score_a, score_b=self.score_b, weight=self.weight, cluster=self.cluster,
                       a_first=first)
        if self.outcome_map is not None:
            from pairkit.data.readers import parse_outcome_map

            options["outcome_map"] = parse_outcome_map(self.outcome_map)
        return options

    @property
    def on_invalid(self) -> str:
        return "drop" if self.drop_invalid else "raise"


def load_comparisons(path: Path, columns: ColumnOptions):
    """Read comparisons with the CLI's column options.

    A directory (a partitioned dataset), a glob or a count file is counted out of core first
    (:func:`pairkit.scale.load_any`); a single rows file is read whole."""
    from pairkit.data import read_comparisons

    options = columns.reader_options()
    text = str(path)
    if Path(text).is_dir() or any(ch in text for ch in "*?[") or _is_count_file(Path(text)):
        from pairkit.scale import load_any

        return load_any(text, drop_invalid=columns.drop_invalid, **options)
    return read_comparisons(path, on_invalid=columns.on_invalid, **options)


def _is_count_file(path: Path) -> bool:
    """A Parquet or CSV file whose header is a count table's (``pairkit count`` output)."""
    if not path.is_file() or path.suffix.lower() not in (".parquet", ".pq", ".csv"):
        return False
    from pairkit.scale._tables import columns_of
    from pairkit.scale.counts import is_counts

    try:
        return is_counts(columns_of(path))
    except Exception:  # unreadable header: the readers report it with the file name
        return False


def leaderboard_table(board, *, title: str | None = None, top: int | None = None) -> Table:
    """A rich table: rank, item, rating, interval, rank interval, comparisons, win rate."""
    frame = board.sorted_columns()
    m = len(board.items)
    shown = m if top is None else min(max(top, 0), m)
    omitted = m - shown
    digits = 1 if board.scale_name == "elo" else 3
    level = f"{board.level:.0%} " if board.interval_method else ""
    caption = (f"{omitted:,} more items not shown: --top N or --all to see them (the JSON holds every item)"
               if omitted else None)
    table = Table(title=title or f"{board.model} ({board.scale_name} scale)", title_justify="left",
                  caption=caption, caption_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("item")
    table.add_column("rating", justify="right")
    has_ci = "ci_low" in frame
    if has_ci:
        table.add_column(f"{level}interval ({board.interval_method})", justify="center")
        table.add_column("rank range", justify="center")
    has_tier = "tier" in frame
    if has_tier:
        table.add_column("tier", justify="right")
    extra = [c for c in board.columns if c in frame]
    for name in extra:
        table.add_column(name, justify="right")
    table.add_column("comparisons", justify="right")
    show_win_rate = "win_rate" in frame and bool(np.any(~np.isnan(np.asarray(frame["win_rate"], dtype=float))))
    if show_win_rate:
        table.add_column("win rate", justify="right")
    for k in range(shown):
        row = {name: values[k] for name, values in frame.items()}
        cells = [str(row["rank"]), str(row["item"]), _number(row["rating"], digits)]
        if has_ci:
            cells.append(f"[{_number(row['ci_low'], digits)}, {_number(row['ci_high'], digits)}]")
            cells.append(f"{row['rank_low']}–{row['rank_high']}")
        if has_tier:
            cells.append(str(row["tier"]))
        cells += [_cell(row[name], digits) for name in extra]
        n = row.get("n")
        cells.append("" if n is None else f"{n:g}")
        if show_win_rate:
            wr = row["win_rate"]
            cells.append("" if wr != wr else f"{wr:.3f}")
        table.add_row(*cells)
    return table


def _cell(value, digits: int) -> str:
    """An extra column's cell: flags as 'yes'/'' , numbers with the board's digits."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    return _number(value, digits)


def _number(value, digits: int) -> str:
    """``value`` with ``digits`` decimals; a value that rounds to zero prints as 0, never −0 (a centred score's
    floating-point noise, e.g. −1.7e-16, is not a negative rating)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_params(board) -> str:
    """One line with the fitted extra parameters and their intervals."""
    parts = []
    for name, value in board.params.items():
        if not isinstance(value, (int, float)):
            continue
        text = f"{name} = {value:.4g}"
        if name in board.param_intervals:
            lo, hi = board.param_intervals[name]
            text += f" [{lo:.4g}, {hi:.4g}]"
        parts.append(text)
    return ", ".join(parts)
