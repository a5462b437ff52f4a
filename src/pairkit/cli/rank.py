"""``pairkit rank``: a leaderboard from a comparisons file."""

from __future__ import annotations

import warnings
from dataclasses import replace
from enum import Enum
from pathlib import Path

import typer

from pairkit.cli._app import app
from pairkit.cli._common import (
    ColumnOptions,
    check_options,
    check_plot_path,
    console,
    format_params,
    leaderboard_table,
    load_comparisons,
    reported_errors,
)


class Ties(str, Enum):
    half = "half"
    davidson = "davidson"
    rao_kupper = "rao_kupper"


class Scale(str, Enum):
    log = "log"
    elo = "elo"


class Resample(str, Enum):
    row = "row"
    cluster = "cluster"


DEFAULT_TOP = 50
"""Rows printed by default: a terminal table of thousands of rows is slow to render and unread."""


@app.command()
def rank(
    path: Path = typer.Argument(
        None, help="CSV, TSV, JSONL, JSON or Parquet file of comparisons; a directory or quoted glob of such files, "
        "or a count file (pairkit count), is counted out of core first."),
    winner: str = typer.Option(None, help="Column holding the winner (with --loser)."),
    loser: str = typer.Option(None, help="Column holding the loser."),
    a: str = typer.Option(None, "--a", help="Column holding the first item (meta.model_a: a nested JSON field)."),
    b: str = typer.Option(None, "--b", help="Column holding the second item."),
    outcome: str = typer.Option(None, help="Outcome column: model_a/model_b/tie, 1-0/0-1/1/2-1/2, or 1/0/0.5."),
    outcome_map: str = typer.Option(
        None, help="Outcome labels as LABEL=VALUE, comma-separated: 'model_a=1,model_b=0,tie=0.5' or '1=1,1.5=0.5,2=0' "
        "(1: the first item won, 0: the second). Adds to the known labels; unknown labels stop with their counts."),
    score_a: str = typer.Option(None, help="Score of the first item (with --score-b): win/draw/loss."),
    score_b: str = typer.Option(None, help="Score of the second item."),
    weight: str = typer.Option(None, help="Column of non-negative weights."),
    cluster: str = typer.Option(None, help="Cluster column (prompt, voter, day) for sandwich/bootstrap."),
    a_first: str = typer.Option(None, help="Boolean column: the first item was shown/played first ('true' = always)."),
    model: str = typer.Option("bt", help="Rating model (see --list-models)."),
    ties: Ties = typer.Option(None, help="Ties as half wins (default), Davidson's or Rao–Kupper's tie model."),
    prior: float = typer.Option(
        None, help="Virtual wins+losses vs an average item; 0 (the default for BT) = pure MLE."),
    intervals: str = typer.Option(
        None, help="How intervals are computed: the model's methods (auto, fisher, sandwich, none; see "
        "--list-models) or bootstrap (--bootstrap replicates, 1000 by default)."),
    bootstrap: int = typer.Option(0, help="Bootstrap replicates for intervals (0 = Fisher/sandwich)."),
    by: Resample = typer.Option(Resample.row, help="Bootstrap resampling unit."),
    level: float = typer.Option(None, help="Interval coverage (default 0.95)."),
    scale: Scale = typer.Option(Scale.log, help="Show centred log-strengths or Elo points."),
    anchor: str = typer.Option(None, help="With --scale elo: the item placed at 1000."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    json_out: Path = typer.Option(None, "--json", help="Write the leaderboard as JSON."),
    plot: Path = typer.Option(None, help="Write an interval plot (PNG)."),
    drop_invalid: bool = typer.Option(False, help="Drop invalid rows (counted and reported) instead of failing."),
    top: int = typer.Option(None, help=f"Show only the top N rows (default {DEFAULT_TOP}; the JSON holds all)."),
    show_all: bool = typer.Option(False, "--all", help="Show every row of the leaderboard."),
    option: list[str] = typer.Option(
        None, "--option", "-o", metavar="NAME=VALUE",
        help="A model option, e.g. --option k=32 (repeatable; checked against the model's declared options, "
        "see --list-models)."),
    list_models: bool = typer.Option(
        False, "--list-models", help="List the available models with their options and exit."),
    rankings: bool = typer.Option(
        False, "--rankings",
        help="PATH holds rankings, not pairs: PrefLib (.soc/.soi/.toc/.toi), one ranking per row (pos1…posN) or "
        "one row per ranked item (see --ranking-columns); fits Plackett–Luce."),
    ranking_columns: str = typer.Option(
        None, help="With --rankings: RANKING,ITEM,POSITION columns of a long file (lower position = better)."),
) -> None:
    """Fit a rating model to pairwise comparisons and print the leaderboard."""
    if list_models:
        _list_models()
        raise typer.Exit()
    if path is None:
        raise typer.BadParameter("give the comparisons file (PATH), or --list-models", param_hint="PATH")
    with reported_errors():
        from pairkit.errors import InputError, PairkitWarning
        from pairkit.rating.registry import fit_model, resolve

        check_options(seed=seed, bootstrap=bootstrap, top=top)  # --level, --prior: by the model's spec, below
        check_plot_path(plot)
        shown = None if show_all else (top or DEFAULT_TOP)
        if rankings:
            board, title = _fit_rankings(path, ranking_columns, model, prior, level, intervals, bootstrap, option or [])
            _show(board, title, shown, json_out, plot)
            return
        # Only what the user gave is passed on, so each model keeps its own defaults (bayeselo's virtual draws);
        # the model's spec says which of them it takes, and checks their values.
        bootstrap = _bootstrap_replicates(intervals, bootstrap)
        given = {"ties": None if ties is None else ties.value, "prior": prior, "level": level,
                 "intervals": None if bootstrap else intervals}
        spec, given = resolve(model, {k: v for k, v in given.items() if v is not None})
        if "intervals" in given and not spec.takes("intervals"):
            raise InputError(f"model {spec.name!r} has no intervals of its own (--intervals {intervals}); use "
                             "--intervals bootstrap")
        options = {k: v for k, v in given.items() if spec.takes(k) or (k == "level" and bootstrap)}
        ignored = sorted(set(given) - set(options))
        if ignored:
            flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
            warnings.warn(f"model {spec.name!r} does not take {flags}; ignored", PairkitWarning, stacklevel=1)
        # The spec's own check, once and before any data is read: a bad --prior fails at once, not after a long
        # read; --option values are checked as they are parsed. The fit then runs without checking them again.
        options = {**options, **spec.check({k: v for k, v in options.items() if spec.takes(k)})}
        options.update(_model_options(spec, option or [], given))
        columns = ColumnOptions(winner, loser, a, b, outcome, score_a, score_b, weight, cluster, a_first, drop_invalid,
                                outcome_map)
        comps = load_comparisons(path, columns)
        counted = comps._cache.get("rows_counted")  # the input was a count table (or counted first)
        poisson = comps._cache.get("poisson_replicates")  # a count file of `pairkit count --bootstrap`
        if poisson is not None and not spec.extra.get("row_order") and (bootstrap or intervals is None):
            bootstrap = _poisson_replicates(bootstrap, poisson.shape[1], intervals)
            if not spec.takes("level"):
                options["level"] = level if level is not None else 0.95
        elif counted is not None and (bootstrap or spec.extra.get("row_order")):
            raise InputError(
                f"{'--bootstrap' if bootstrap else '--model ' + model} needs the comparison rows, not pair counts "
                "(a directory, a glob or a count file is counted first); give a single rows file")
        board = fit_model(comps, spec.name, bootstrap_replicates=bootstrap, by=by.value, seed=seed, options=options,
                          checked=True, replicate_weights=poisson if bootstrap else None)
        if scale is Scale.elo or anchor is not None:  # only log-strengths rescale; the board says so if not
            board = board.scale("elo" if scale is Scale.elo else board.scale_name, anchor=anchor)
        dropped = f", {comps.n_dropped} invalid rows dropped" if comps.n_dropped else ""
        n_rows = len(comps) if counted is None else counted
        if counted is not None:
            board = replace(board, n_comparisons=int(counted))
        _show(board, f"{board.model} · {n_rows:,} comparisons of {comps.n_items} items{dropped}", shown, json_out,
              plot)


def _poisson_replicates(asked: int, available: int, intervals: str | None) -> int:
    """Replicates to use from a count file's Poisson-bootstrap counts: all of them, or the first ``--bootstrap``."""
    from pairkit.errors import InputError

    if intervals == "bootstrap" and asked == DEFAULT_BOOTSTRAP:
        asked = 0
    if asked > available:
        raise InputError(f"--bootstrap {asked}: the count file holds {available} Poisson-bootstrap replicates; "
                         f"ask for at most {available} or recount with pairkit count --bootstrap {asked}")
    if (asked or available) < 2:
        raise InputError("the count file holds fewer than 2 Poisson-bootstrap replicates; recount with --bootstrap")
    return asked or available


DEFAULT_BOOTSTRAP = 1000
"""Replicates of ``--intervals bootstrap`` when ``--bootstrap`` is not given."""


def _bootstrap_replicates(intervals: str | None, bootstrap: int) -> int:
    """The bootstrap replicates that ``--intervals`` and ``--bootstrap`` ask for together (they must agree)."""
    from pairkit.errors import InputError

    if intervals == "bootstrap":
        return bootstrap or DEFAULT_BOOTSTRAP
    if bootstrap and intervals is not None:
        raise InputError(f"--bootstrap {bootstrap} gives bootstrap intervals, not --intervals {intervals}; "
                         "leave one of them out")
    return bootstrap


def _model_options(spec, texts: list[str], given: dict) -> dict:
    """``--option NAME=VALUE`` values, checked against the model's declared options (one an option flag such as
    ``--prior`` already set is refused)."""
    from pairkit.errors import InputError

    parsed = spec.parse_options(texts)
    twice = sorted(set(parsed) & set(given))
    if twice:
        raise InputError(f"{', '.join(twice)} given both as --{twice[0].replace('_', '-')} and as --option; give "
                         "it once")
    return parsed


def _list_models() -> None:
    """Each registered model: name, aliases, family, summary and its declared options with their defaults."""
    import re

    from rich.markup import escape

    from pairkit.rating.registry import models

    for spec in models():
        summary = re.sub(r":\w+:`~?([^`]+)`", r"\1", spec.summary).replace("``", "")  # reST roles as plain text
        aliases = f" (also {', '.join(spec.aliases)})" if spec.aliases else ""
        console.print(f"[bold]{spec.name}[/]{escape(aliases)} · {spec.family or spec.data} · {escape(summary)}",
                      highlight=False, soft_wrap=True)
        for opt in spec.options:
            shown = f"; default {spec.defaults[opt.name]!r}" if opt.name in spec.defaults else ""
            console.print(f"    --option {opt.name}=…  {escape(opt.describe())}{escape(shown)}"
                          + (f" — {escape(opt.doc)}" if opt.doc else ""), highlight=False, soft_wrap=True)


def _show(board, title: str, top: int | None, json_out: Path | None, plot: Path | None) -> None:
    """Print the leaderboard and its parameters; write the JSON and the plot when asked."""
    console.print(leaderboard_table(board, top=top, title=title))
    params = format_params(board)
    if params:
        console.print(params)
    if json_out is not None:
        board.to_json(json_out)
        console.print(f"wrote {json_out}")
    if plot is not None:
        board.plot(plot)
        console.print(f"wrote {plot}")


def _fit_rankings(path: Path, columns: str | None, model: str, prior: float | None, level: float | None,
                  intervals: str | None = None, bootstrap: int = 0, texts: list[str] | None = None):
    """Plackett–Luce on a rankings file (the one rankings model; ``--model`` must be left at its default).
    ``--option`` and ``--intervals`` are checked against its declared options like any model's."""
    from pairkit._spec import Spec
    from pairkit.data.rankings import read_any_rankings
    from pairkit.errors import InputError
    from pairkit.rating import fit_plackett_luce

    if model not in ("bt", "plackett_luce"):
        raise InputError(f"--rankings fits Plackett–Luce; --model {model} takes pairwise comparisons")
    if bootstrap or intervals == "bootstrap":
        raise InputError("--rankings has no bootstrap; use --intervals fisher (or auto, none)")
    spec = Spec(name="plackett_luce", fn=fit_plackett_luce, kind="rating model", data="rankings")
    given = {k: v for k, v in (("prior", prior), ("intervals", intervals), ("level", level)) if v is not None}
    # checked once, before the file is read (--option values as they are parsed); the fit does not check again
    options = {**given, **spec.check({k: v for k, v in given.items() if spec.takes(k)})}
    options.update(_model_options(spec, texts or [], given))
    parts = [None, None, None]
    if columns is not None:
        parts = [c.strip() for c in columns.split(",")]
        if len(parts) != 3 or not all(parts):
            raise InputError(f"--ranking-columns needs RANKING,ITEM,POSITION, got {columns!r}")
    data = read_any_rankings(path, ranking=parts[0], item=parts[1], position=parts[2])
    options.setdefault("prior", 0.0)
    board = spec.unchecked(data, **options)
    return board, f"plackett_luce · {len(data):,} rankings of {data.n_items} items"
