"""``pairkit simulate``: score a selection strategy against a known truth with a simulated judge."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pairkit._io import atomic_write_text
from pairkit.cli._app import app
from pairkit.cli._common import check_options, console, reported_errors


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
    repeats: int = typer.Option(
        1, help="Repeat with seeds seed, seed+1, …: report the mean ± sd (and the standard error of the mean)."
    ),
    json_out: Path = typer.Option(None, "--json", help="Write the result as JSON."),
) -> None:
    """Simulate a strategy: calls used, Kendall τ to the truth, top-1 / top-k accuracy."""
    with reported_errors():
        from pairkit.select import simulate as run

        check_options(items=items, budget=budget, seed=seed, position_bias=position_bias, spread=spread, k=k,
                      repeats=repeats)

        def once(s: int) -> dict:
            return run(strategy, n_items=items, budget=budget, seed=s, position_bias=position_bias, policy=policy,
                       spread=spread, k=k)

        if repeats > 1:
            _report_repeats([once(seed + r) for r in range(repeats)], json_out)
            return
        out = once(seed)
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
            atomic_write_text(json_out, json.dumps(out, indent=2) + "\n")
            console.print(f"wrote {json_out}")


SUMMARISED = ("calls", "kendall_tau", "top1_correct", "topk_accuracy", "ndcg_at_k")


def _report_repeats(runs: list[dict], json_out: Path | None) -> None:
    """Mean ± sd over repeated simulations (booleans as rates) and how often each stopping reason occurred."""
    import numpy as np

    summary: dict = {"strategy": runs[0]["strategy"], "policy": runs[0]["policy"], "repeats": len(runs)}
    console.print(f"{'strategy':>14}: {summary['strategy']}\n{'policy':>14}: {summary['policy']}")
    console.print(f"{'repeats':>14}: {len(runs)} (seeds {runs[0]['seed']}…{runs[-1]['seed']})")
    for key in SUMMARISED:
        values = np.array([float(r[key]) for r in runs])
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        summary[key] = {"mean": mean, "sd": sd, "se": sd / np.sqrt(len(values))}
        console.print(f"{key:>14}: {mean:.4f} ± {sd:.4f} (se {summary[key]['se']:.4f})")
    reasons: dict[str, int] = {}
    for r in runs:
        reasons[str(r["stopped"])] = reasons.get(str(r["stopped"]), 0) + 1
    summary["stopped"] = reasons
    console.print(f"{'stopped':>14}: " + ", ".join(f"{k} ×{v}" for k, v in sorted(reasons.items())))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
        console.print(f"wrote {json_out}")
