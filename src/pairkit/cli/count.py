"""``pairkit count``: per-pair counts of comparisons in files too large for memory (DuckDB or Ray)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from pairkit.cli._app import app
from pairkit.cli._common import ColumnOptions, console, reported_errors


class Engine(str, Enum):
    duckdb = "duckdb"
    ray = "ray"
    memory = "memory"


@app.command()
def count(
    paths: list[str] = typer.Argument(..., help="Files, quoted globs or directories (Parquet, CSV, TSV, JSONL, "
                                      "JSON); count files given here are summed."),
    output: Path = typer.Option(..., "--output", "-o", help="Count table to write (.parquet or .csv)."),
    winner: str = typer.Option(None, help="Column holding the winner (with --loser)."),
    loser: str = typer.Option(None, help="Column holding the loser."),
    a: str = typer.Option(None, "--a", help="Column holding the first item."),
    b: str = typer.Option(None, "--b", help="Column holding the second item."),
    outcome: str = typer.Option(None, help="Outcome column: model_a/model_b/tie, 1-0/0-1/1/2-1/2, or 1/0/0.5."),
    score_a: str = typer.Option(None, help="Score of the first item (with --score-b): win/draw/loss."),
    score_b: str = typer.Option(None, help="Score of the second item."),
    weight: str = typer.Option(None, help="Column of non-negative weights (counts become weight sums)."),
    cluster: str = typer.Option(None, help="Cluster column: counts are kept per cluster (for sandwich errors)."),
    a_first: str = typer.Option(None, help="Boolean column: the first item went first; counts kept per side."),
    engine: Engine = typer.Option(Engine.duckdb, help="duckdb (streaming, bounded memory), ray (Ray Data: "
                                  "blocks counted on a cluster, partial counts summed) or memory."),
    ray_address: str = typer.Option(None, help="With --engine ray: the cluster to join (default: a local one)."),
    memory_limit: str = typer.Option(None, help="With --engine duckdb: the process's peak memory to aim for, e.g. "
                                     "1GB; DuckDB gets it less 256 MiB and spills to disk beyond."),
    drop_invalid: bool = typer.Option(False, help="Drop invalid rows (counted and reported) instead of failing."),
    bootstrap: int = typer.Option(0, help="Poisson-bootstrap replicates drawn in the same pass (any engine and "
                                  "input format, the same weights): a long 'replicate' column, 0 = the counts; "
                                  "`pairkit rank` uses them for intervals."),
    seed: int = typer.Option(0, help="Seed of the --bootstrap weights (hashed with each row's file and number)."),
) -> None:
    """Count wins, losses and ties of every item pair; `pairkit rank COUNTS` fits from the result."""
    with reported_errors():
        from pairkit.scale import write_counts

        columns = ColumnOptions(winner, loser, a, b, outcome, score_a, score_b, weight, cluster, a_first, drop_invalid)
        done = write_counts(paths, output, engine=engine.value, **columns.reader_options(),
                            on_invalid=columns.on_invalid, ray_address=ray_address, memory_limit=memory_limit,
                            bootstrap=bootstrap, seed=seed)
        console.print(f"wrote {output}: {done['pairs']:,} pair counts of {done['items']:,} items from "
                      f"{done['comparisons']:,} comparisons"
                      + (f", with {bootstrap:,} Poisson-bootstrap replicates" if bootstrap else ""))
