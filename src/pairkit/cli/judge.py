"""``pairkit judge``: run a selection strategy over candidate answers with a judge and print the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from pairkit._io import atomic_write_text
from pairkit.cli._app import app
from pairkit.cli._common import console, err_console, format_params, leaderboard_table, reported_errors


def read_candidates(path: Path) -> list[dict]:
    """JSONL rows ``{context_id, candidate_id, text}`` (optional ``context``, ``reference``)."""
    from pairkit.data import read_records

    return read_records(path, what="candidates")


def load_judge(path: Path, rows: list[dict], cache: Path | None = None):
    """The comparator of a judge config JSON file; a simulated judge's strengths apply to each candidate's texts
    (``cache``: the run's judgment cache, where a batch judge keeps its submissions)."""
    from pairkit.errors import InputError
    from pairkit.judges import judge_from_config

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"judge config {str(path)!r} not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"judge config {path}: not valid JSON ({exc.msg})") from None
    texts: dict[str, list[str]] = {}
    for row in rows:
        texts.setdefault(str(row["candidate_id"]), []).append(str(row["text"]))
    return judge_from_config(config, texts=texts, source=str(path), cache=cache)


def parse_options(pairs: list[str] | None) -> dict:
    """``key=value`` strategy options; values parsed as JSON when they can be (numbers, lists)."""
    from pairkit.errors import InputError

    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--option {item!r}: write KEY=VALUE, e.g. --option best_of=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
def judge(
    candidates: Path = typer.Argument(..., help="JSONL of {context_id, candidate_id, text} (optional context)."),
    judge_config: Path = typer.Option(..., "--judge", help='Judge config JSON, e.g. {"type": "simulated", ...}.'),
    strategy: str = typer.Option("round_robin", help="Selection strategy (see pairkit.select.STRATEGIES)."),
    policy: str = typer.Option("random", help="Position policy: random, both_average, both_conflict_tie, estimate."),
    budget: int = typer.Option(None, help="Maximum number of paid judge calls."),
    max_cost: float = typer.Option(None, help="Maximum money to spend (needs a price in the judge config)."),
    cache: Path = typer.Option(None, help="SQLite cache: re-running resumes without repeating paid calls."),
    k: int = typer.Option(None, help="k for top-k strategies."),
    option: list[str] = typer.Option(None, "--option", help="Strategy option KEY=VALUE (repeatable)."),
    length_rule: int = typer.Option(None, help="WildBench length rule: K characters (off by default)."),
    prior: float = typer.Option(0.5, help="Virtual games per item in the Bradley–Terry fit (sparse designs)."),
    seed: int = typer.Option(0, help="Seed (orders shown, brackets, pairings)."),
    judgments_out: Path = typer.Option(None, "--judgments", help="Write every judgment as JSONL."),
    pairs_out: Path = typer.Option(None, "--pairs", help="Write preference pairs {prompt, chosen, rejected} JSONL."),
    dry_run: bool = typer.Option(False, help="Estimate calls and cost, call no judge."),
    retry_unparseable: bool = typer.Option(
        False, help="Ask again (and pay again) for prompts whose cached paid reply had no verdict."
    ),
) -> None:
    """Judge candidate answers pairwise with a selection strategy; print the leaderboard."""
    with reported_errors():
        from pairkit.judges import Budget
        from pairkit.select import Pool, select
        from pairkit.select import dry_run as estimate

        rows = read_candidates(candidates)
        pool = Pool.from_records(rows, source=str(candidates))
        comparator = load_judge(judge_config, rows, cache)
        options = parse_options(option)
        if k is not None:
            options["k"] = k
        if dry_run:
            out = estimate(strategy, comparator, pool, seed=seed, policy=policy, length_rule=length_rule, **options)
            console.print(
                f"dry run: {strategy} needs ~{out['calls']:.0f} judge calls, estimated cost {out['estimated_cost']:.4f}"
            )
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        limit = Budget(max_calls=budget, max_cost=max_cost)
        with Progress(
            TextColumn("judging"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("judging", total=budget)
            sel = select(
                strategy,
                comparator,
                pool,
                policy=policy,
                budget=limit,
                cache=cache,
                seed=seed,
                length_rule=length_rule,
                retry_unparseable=retry_unparseable,
                progress=lambda n: bar.advance(task, n),
                **options,
            )
        usage = sel.info["usage"]
        console.print(
            f"{strategy}: {sel.calls} judgments ({usage.calls} paid calls, {usage.cache_hits} from cache), "
            f"cost {usage.cost:.4f}" + (f"; stopped: {sel.stopped}" if sel.stopped else "")
        )
        for name, stats in sel.position_stats().items():
            console.print(
                f"judge {name}: first-position win rate {stats['first_position_win_rate']:.3f}, "
                f"flip rate {stats['flip_rate']:.3f} over {stats['pairs_both_orders']:.0f} pairs "
                "judged in both orders"
            )
        for failure in sel.failures[:5]:
            err_console.print(f"[yellow]failed:[/] {failure}", highlight=False)
        retried = getattr(getattr(comparator, "usage", None), "failures", {})
        if retried:
            counts = ", ".join(f"{kind} ×{n}" for kind, n in sorted(retried.items()))
            err_console.print(f"[yellow]note:[/] judge call failures (retried within bounds): {counts}",
                              highlight=False)
        if sel.winners and len(pool.contexts) > 1:
            console.print(f"per-context winners: {len(sel.winners)} contexts")
        if sel.ranking is not None:
            console.print("ranking: " + ", ".join(pool.items[i] for i in sel.ranking))
        elif sel.winner is not None:
            console.print(f"winner: {pool.items[sel.winner]}")
        for item, (reward, low, high, n) in sorted(sel.info.get("wb_reward", {}).items(), key=lambda kv: -kv[1][0]):
            console.print(f"WB-Reward {item}: {reward:+.3f} [{low:+.3f}, {high:+.3f}] over {n} comparisons")
        if sel.decisions:
            board = sel.leaderboard(prior=prior)
            console.print(leaderboard_table(board, title=f"{strategy} → {board.model}"))
            if board.params:
                console.print(format_params(board))
        if judgments_out is not None:
            text = sel.judgments_frame().to_json(orient="records", lines=True, force_ascii=False)
            atomic_write_text(judgments_out, text)
            console.print(f"wrote {len(sel.records)} judgments to {judgments_out}")
        if pairs_out is not None:
            n = sel.export_pairs(pairs_out)
            console.print(f"wrote {n} preference pairs to {pairs_out}")


def _reference(value: str | None) -> list[str] | None:
    """``--reference``: a file with one item id per line (best first) or ids separated by commas."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        ids = [part.strip() for part in value.split(",") if part.strip()]
    if len(ids) < 2:
        from pairkit.errors import InputError

        raise InputError(f"--reference {value!r}: give at least two item ids, best first (a file or a,b,c)")
    return ids


@app.command("judge-eval")
def judge_eval(
    judgments: Path = typer.Argument(..., help="JSONL of judgments (as written by pairkit judge --judgments)."),
    human: Path = typer.Option(None, help="JSONL of human labels {context_id, a, b, winner} on the same pairs."),
    candidates: Path = typer.Option(None, help="Candidates JSONL {context_id, candidate_id, text} (length bias)."),
    reference: str = typer.Option(None, help="Reference ranking: a file of item ids (best first) or a,b,c."),
    level: float = typer.Option(0.95, help="Interval coverage."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples (separability, Kendall's tau, kappa)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    json_out: Path = typer.Option(None, "--json", help="Write the report as JSON."),
    plot: Path = typer.Option(None, help="Write a PNG: metrics with intervals and the reliability diagram."),
) -> None:
    """Evaluate a judge: agreement with humans, position/self-consistency, length bias, calibration, separability."""
    with reported_errors():
        from rich.table import Table

        from pairkit._io import atomic_write_text
        from pairkit.data import read_records
        from pairkit.judges import evaluate_judge

        report = evaluate_judge(
            read_records(judgments, what="judgments"),
            read_records(human, what="human labels") if human is not None else None,
            candidates=read_records(candidates, what="candidates") if candidates is not None else None,
            reference=_reference(reference),
            level=level,
            n_boot=bootstrap,
            seed=seed,
        )
        table = Table(title=f"judge evaluation ({level:.0%} intervals)", title_justify="left")
        for col in ("metric", "value", "interval", "n", "note"):
            table.add_column(col, justify="right" if col in ("value", "n") else "left")
        for row in report.table.itertuples():
            interval = f"[{row.low:.3f}, {row.high:.3f}]" if np.isfinite(row.low) else ""
            value = f"{row.value:.3f}" if np.isfinite(row.value) else "—"
            table.add_row(row.metric, value, interval, str(row.n), row.note)
        console.print(table)
        if json_out is not None:
            atomic_write_text(json_out, json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n")
            console.print(f"wrote the report to {json_out}")
        if plot is not None:
            report.plot(plot)
            console.print(f"wrote the plot to {plot}")
