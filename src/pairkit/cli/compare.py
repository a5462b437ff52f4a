"""``pairkit compare-models``: K-fold cross-validated comparison of rating models on one comparisons file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from pairkit.cli._app import app
from pairkit.cli._common import (
    ColumnOptions,
    check_options,
    check_plot_path,
    console,
    load_comparisons,
    reported_errors,
)


@app.command("compare-models")
def compare_models_command(
    path: Path = typer.Argument(..., help="CSV, TSV, JSONL, JSON or Parquet file of comparisons."),
    winner: str = typer.Option(None, help="Column holding the winner (with --loser)."),
    loser: str = typer.Option(None, help="Column holding the loser."),
    a: str = typer.Option(None, "--a", help="Column holding the first item."),
    b: str = typer.Option(None, "--b", help="Column holding the second item."),
    outcome: str = typer.Option(None, help="Outcome column: model_a/model_b/tie, 1-0/0-1/1/2-1/2, or 1/0/0.5."),
    outcome_map: str = typer.Option(
        None, help="Outcome labels as LABEL=VALUE, comma-separated: 'model_a=1,model_b=0,tie=0.5' or '1=1,1.5=0.5,2=0' "
        "(1: the first item won, 0: the second). Adds to the known labels; unknown labels stop with their counts."),
    score_a: str = typer.Option(None, help="Score of the first item (with --score-b): win/draw/loss."),
    score_b: str = typer.Option(None, help="Score of the second item."),
    weight: str = typer.Option(None, help="Column of non-negative weights."),
    cluster: str = typer.Option(None, help="Cluster column: folds keep whole clusters together."),
    a_first: str = typer.Option(None, help="Boolean column: the first item was shown/played first ('true' = always)."),
    models: str = typer.Option(
        None,
        help="Comma-separated model names (default: bt,elo,davidson,rao_kupper; "
        "'order' and 'bayeselo' need --a-first).",
    ),
    folds: int = typer.Option(5, help="Number of cross-validation folds."),
    seed: int = typer.Option(0, help="Seed of the fold assignment."),
    prior: float = typer.Option(1.0, help="Virtual games passed to models with a prior (keeps folds finite)."),
    drop_invalid: bool = typer.Option(False, help="Drop invalid rows (counted and reported) instead of failing."),
    test: Path = typer.Option(
        None, help="Held-out comparisons (same columns): fit on PATH once and score on this file, by item name."
    ),
    split_by: str = typer.Option(
        None,
        help="Column of groups (season, week): each group is predicted from all earlier ones, in the order they "
        "first appear (forecast validation; fair to online models such as elo, trueskill, weng_lin).",
    ),
    plot: Path = typer.Option(None, help="Write a reliability diagram (PNG) of the held-out predictions."),
    json_out: Path = typer.Option(None, "--json", help="Write the table as JSON."),
) -> None:
    """Compare rating models on held-out data: log-loss, accuracy, Brier score and calibration error.

    Held out by K-fold cross-validation (default), by groups in time order (--split-by) or a test file (--test).
    ECE is computed on both orientations of every comparison; with ties, models that forecast a tie probability
    are also scored on win/tie/loss (log-loss 3, Brier 3). A model that cannot be fitted is skipped with a note.
    """
    with reported_errors():
        from rich.markup import escape
        from rich.table import Table

        from pairkit.errors import InputError
        from pairkit.rating.model_selection import compare_models

        check_options(folds=folds, seed=seed)  # --prior: by each model's spec, once (compare_models)
        check_plot_path(plot)
        if test is not None and split_by is not None:
            raise InputError("give --test or --split-by, not both")
        if split_by is not None and cluster is not None:
            raise InputError("--split-by and --cluster both define the held-out groups; give one")
        columns = ColumnOptions(winner, loser, a, b, outcome, score_a, score_b, weight, cluster, a_first, drop_invalid,
                                outcome_map)
        comps = load_comparisons(path, replace(columns, cluster=split_by or cluster))
        held_out = None
        if test is not None:
            held_out = load_comparisons(test, columns)
        groups = None
        if split_by is not None:
            groups = comps.cluster
            comps = replace(comps, cluster=None)
        names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
        frame = compare_models(comps, names, folds=folds, seed=seed, prior=prior, split_by=groups, test=held_out)
        if held_out is not None:
            how = f"trained on {path.name} ({len(comps):,} comparisons), scored on {test.name} ({len(held_out):,})"
        elif groups is not None:
            how = (f"forward validation by {split_by!r}: {int(frame.folds.iloc[0])} groups each predicted from the "
                   f"earlier ones · {len(comps):,} comparisons")
        else:
            grouped = "clusters" if comps.cluster is not None else "comparisons"
            how = f"{folds}-fold cross-validation ({grouped} per fold) · {len(comps):,} comparisons"
        table = Table(title=f"{how} of {comps.n_items} items", title_justify="left")
        three = frame["log_loss_3"].notna().any()
        cols = ["model", "log-loss", "± sd (folds)", "accuracy", "Brier", "ECE"]
        if three:
            cols += ["log-loss 3", "Brier 3"]
        for col in cols:
            table.add_column(col, justify="left" if col == "model" else "right")
        for row in frame.itertuples(index=False):
            if row.note:
                table.add_row(row.model, *["—"] * (len(cols) - 1))
                continue
            cells = [row.model, _fmt(row.log_loss, 4), _fmt(row.log_loss_sd, 4), _fmt(row.accuracy, 3),
                     _fmt(row.brier, 4), _fmt(row.ece, 4)]
            if three:
                cells += [_fmt(row.log_loss_3, 4), _fmt(row.brier_3, 4)]
            table.add_row(*cells)
        console.print(table)
        for row in frame.itertuples(index=False):
            if row.note:
                console.print(f"{row.model}: {escape(row.note)}", highlight=False)
        if three:
            console.print("log-loss 3 / Brier 3: win/tie/loss forecasts (models with a tie probability only)")
        if plot is not None:
            from pairkit.rating.model_selection import plot_reliability

            plot_reliability(frame, plot)
            console.print(f"wrote {plot}")
        if json_out is not None:
            frame.to_json(json_out)
            console.print(f"wrote {json_out}")


def _fmt(value: float, digits: int) -> str:
    return "—" if value != value else f"{value:.{digits}f}"
