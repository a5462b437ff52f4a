"""``pairkit compare-models``: K-fold cross-validated comparison of rating models on one comparisons file."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pairkit.cli._app import app
from pairkit.cli._common import console, load_comparisons, reported_errors


@app.command("compare-models")
def compare_models_command(
    path: Path = typer.Argument(..., help="CSV, TSV, JSONL, JSON or Parquet file of comparisons."),
    winner: str = typer.Option(None, help="Column holding the winner (with --loser)."),
    loser: str = typer.Option(None, help="Column holding the loser."),
    a: str = typer.Option(None, "--a", help="Column holding the first item."),
    b: str = typer.Option(None, "--b", help="Column holding the second item."),
    outcome: str = typer.Option(None, help="Outcome column: model_a/model_b/tie, 1-0/0-1/1/2-1/2, or 1/0/0.5."),
    score_a: str = typer.Option(None, help="Score of the first item (with --score-b): win/draw/loss."),
    score_b: str = typer.Option(None, help="Score of the second item."),
    weight: str = typer.Option(None, help="Column of non-negative weights."),
    cluster: str = typer.Option(None, help="Cluster column: folds keep whole clusters together."),
    a_first: str = typer.Option(None, help="Boolean column: the first item was shown/played first ('true' = always)."),
    models: str = typer.Option(
        None,
        help="Comma-separated model names (default: bt,elo,davidson,rao_kupper,robust; "
        "'order' and 'bayeselo' need --a-first).",
    ),
    folds: int = typer.Option(5, help="Number of cross-validation folds."),
    seed: int = typer.Option(0, help="Seed of the fold assignment."),
    prior: float = typer.Option(1.0, help="Virtual games passed to models with a prior (keeps folds finite)."),
    drop_invalid: bool = typer.Option(False, help="Drop invalid rows (counted and reported) instead of failing."),
    json_out: Path = typer.Option(None, "--json", help="Write the table as JSON."),
) -> None:
    """Cross-validate rating models: held-out log-loss, accuracy, Brier score and calibration error."""
    with reported_errors():
        from rich.table import Table

        from pairkit.rating.model_selection import compare_models

        comps = load_comparisons(
            path, winner, loser, a, b, outcome, score_a, score_b, weight, cluster, a_first, drop_invalid
        )
        names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
        frame = compare_models(comps, names, folds=folds, seed=seed, prior=prior)
        grouped = "clusters" if comps.cluster is not None else "comparisons"
        table = Table(
            title=f"{folds}-fold cross-validation ({grouped} per fold) · {len(comps):,} comparisons of "
            f"{comps.n_items} items",
            title_justify="left",
        )
        for col in ("model", "log-loss", "± sd (folds)", "accuracy", "Brier", "ECE"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for row in frame.itertuples(index=False):
            table.add_row(
                row.model,
                f"{row.log_loss:.4f}",
                f"{row.log_loss_sd:.4f}",
                f"{row.accuracy:.3f}",
                f"{row.brier:.4f}",
                f"{row.ece:.4f}",
            )
        console.print(table)
        if json_out is not None:
            records = frame.to_dict(orient="records")
            json_out.write_text(
                json.dumps({"folds": folds, "seed": seed, "models": records}, indent=2) + "\n", encoding="utf-8"
            )
            console.print(f"wrote {json_out}")
