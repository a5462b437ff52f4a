"""``pairkit simulate``: score a selection strategy against a known truth with a simulated judge."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pairkit.cli._app import app
from pairkit.cli._common import console, reported_errors


@app.command()
def simulate(
    items: int = typer.Option(32, "--items", help="Number of items with strengths θ ~ N(0, spread²)."),
    strategy: str = typer.Option("active", help="Selection strategy."),
    budget: int = typer.Option(None, help="Maximum judge calls."),
    seed: int = typer.Option(0, help="Seed of the truth, the judge and the strategy."),
    position_bias: float = typer.Option(0.0, help="Log-odds bonus of the answer shown first."),
    policy: str = typer.Option("random", help="Position policy: random, both_average, both_conflict_tie, estimate."),
    spread: float = typer.Option(1.0, help="Standard deviation of the true strengths."),
    k: int = typer.Option(10, help="k for top-k accuracy / NDCG and top-k strategies."),
    json_out: Path = typer.Option(None, "--json", help="Write the result as JSON."),
) -> None:
    """Simulate a strategy: calls used, Kendall τ to the truth, top-1 / top-k accuracy."""
    with reported_errors():
        from pairkit.select import simulate as run

        out = run(
            strategy,
            n_items=items,
            budget=budget,
            seed=seed,
            position_bias=position_bias,
            policy=policy,
            spread=spread,
            k=k,
        )
        for key in (
            "strategy",
            "policy",
            "calls",
            "stopped",
            "kendall_tau",
            "top1_correct",
            "topk_accuracy",
            "ndcg_at_k",
        ):
            value = out[key]
            console.print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
        if json_out is not None:
            json_out.write_text(json.dumps(out, indent=2))
