"""``pairkit arena``: serve a web arena for human pairwise votes, manage annotators, export the votes."""

from __future__ import annotations

from pathlib import Path

import typer

from pairkit._optional import requires
from pairkit.cli._app import app
from pairkit.cli._common import console, err_console, reported_errors

arena_app = typer.Typer(help="A self-hosted web arena for human pairwise judgments with a live leaderboard.",
                        no_args_is_help=True)
annotators_app = typer.Typer(help="Annotators of an arena (one private link each).", no_args_is_help=True)
arena_app.add_typer(annotators_app, name="annotators")
app.add_typer(arena_app, name="arena")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def _open_store(db: Path, *, must_exist: bool = True):
    from pairkit.arena import VoteStore
    from pairkit.errors import InputError

    if must_exist and not db.exists():
        raise InputError(f"arena database {str(db)!r} not found; start the arena first with `pairkit arena serve "
                         f"CANDIDATES.jsonl --db {db}`")
    return VoteStore(db)


def _read_rows(candidates: Path | None, demo: bool) -> list[dict] | None:
    """The candidate rows of the file (or the demo); None to continue with the database's."""
    from pairkit.arena import demo_candidates_path
    from pairkit.cli.judge import read_candidates
    from pairkit.errors import InputError

    if candidates is not None and demo:
        raise InputError("give either a CANDIDATES file or --demo, not both")
    if demo:
        return read_candidates(Path(str(demo_candidates_path())))
    return None if candidates is None else read_candidates(candidates)


@arena_app.command()
def serve(
    candidates: Path = typer.Argument(None, help="JSONL of {context_id, candidate_id, text} (optional context, "
                                      "reference); omit to continue an existing --db."),
    db: Path = typer.Option(..., help="SQLite file of the arena (created if missing; WAL mode)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but localhost is reachable by others."),
    port: int = typer.Option(8000, help="Port to listen on."),
    strategy: str = typer.Option("active", help="Pair choice: active, information, ucb, round_robin or random."),
    target_votes: int = typer.Option(None, help="Stop showing a pair after this many votes."),
    quota: int = typer.Option(None, help="Votes per annotator (skips not counted), unless set per annotator."),
    gold: Path = typer.Option(None, help="JSONL of gold pairs {context_id, a, b, winner} (attention checks)."),
    gold_rate: float = typer.Option(0.0, help="Share of gold pairs shown, in [0, 1)."),
    repeat_rate: float = typer.Option(0.0, help="Share of repeated pairs (sides swapped) shown, in [0, 1)."),
    reveal: bool = typer.Option(False, help="Show the model names after each vote."),
    completion_code: str = typer.Option(None, help="Shown to an annotator who is done (e.g. for Prolific)."),
    prior: float = typer.Option(0.0, help="Virtual games per item in the leaderboard fit (0: MLE)."),
    demo: bool = typer.Option(False, help="Serve the embedded demo candidates."),
    title: str = typer.Option("pairkit arena", help="Title shown on every page."),
    seed: int = typer.Option(None, help="Seed of the pair choice and the sides (default: random)."),
    k: int = typer.Option(2, "--k", help="Answers per battle: 2 votes on pairs; 3-8 ranks K answers (K-Sort Arena)."),
) -> None:
    """Serve the arena: annotators vote at their private links, the owner watches the leaderboard."""
    with reported_errors():
        from pairkit.arena import ArenaSettings, PairChooser, create_app, gold_pairs
        from pairkit.cli.judge import read_candidates
        from pairkit.errors import InputError
        from pairkit.select import Pool

        if not 0 < port < 65536:
            raise InputError(f"--port must be in 1..65535; got {port}")
        if quota is not None and quota < 1:
            raise InputError(f"--quota must be an integer >= 1; got {quota}")
        if not prior >= 0:
            raise InputError(f"--prior must be >= 0; got {prior}")
        with requires("arena", "pairkit arena serve"):
            import uvicorn  # noqa: F401  (checked before the database is touched)
        rows = _read_rows(candidates, demo)
        if rows is None and not db.exists():
            raise InputError(f"arena database {str(db)!r} not found; give a CANDIDATES.jsonl file (rows "
                             "{context_id, candidate_id, text}) or --demo to start a new arena")
        store = _open_store(db, must_exist=False)
        if rows is None:
            rows = store.candidates()
            if not rows:
                raise InputError(f"the arena database {str(db)!r} holds no candidates yet; give a CANDIDATES.jsonl "
                                 "file or --demo")
        else:
            store.set_candidates(rows, source="demo candidates" if demo else str(candidates))
        pool = Pool.from_records(rows, source=str(candidates or db))
        gold_rows = gold_pairs(read_candidates(gold), source=str(gold)) if gold is not None else ()
        chooser = PairChooser(pool, strategy, target_votes=target_votes, gold=gold_rows, gold_rate=gold_rate,
                              repeat_rate=repeat_rate, seed=seed, k=k)
        settings = ArenaSettings(title=title, quota=quota, reveal=reveal, completion_code=completion_code,
                                 prior=prior)
        application = create_app(store, chooser, settings)
        url = _url(host, port)
        if host not in LOCAL_HOSTS:
            err_console.print(f"[yellow]warning:[/] binding {host}: the arena is reachable from other machines; "
                              "anyone with a link can vote (use HTTPS in front of it)", highlight=False)
        console.print(f"arena: {pool.n_items} candidates, {len(pool.contexts)} prompts, strategy {strategy}, "
                      f"database {db}", highlight=False)
        if not store.has_admin():
            console.print(f"admin link (shown once): {url}/admin/{store.new_admin_token()}", highlight=False)
        else:
            console.print(f"admin link: issued earlier (`pairkit arena admin --db {db}` issues a new one)",
                          highlight=False)
        if not store.annotators():
            console.print(f"no annotators yet: `pairkit arena annotators add NAME... --db {db} --url {url}`",
                          highlight=False)
        console.print(f"listening on {url} (Ctrl+C stops; votes are saved as they come)", highlight=False)
    with requires("arena", "pairkit arena serve"):
        import uvicorn

    uvicorn.run(application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)


@annotators_app.command("add")
def annotators_add(
    names: list[str] = typer.Argument(..., help="Annotator names."),
    db: Path = typer.Option(..., help="SQLite file of the arena."),
    url: str = typer.Option("http://127.0.0.1:8000", help="Base URL the annotators will reach the arena at."),
    quota: int = typer.Option(None, help="Votes for these annotators (overrides the arena's --quota)."),
) -> None:
    """Add annotators and print one private link each (shown once: only a hash is stored)."""
    with reported_errors():
        store = _open_store(db, must_exist=False)
        for name in names:
            token = store.add_annotator(name, quota=quota)
            console.print(f"{name}\t{url.rstrip('/')}/a/{token}", highlight=False, soft_wrap=True)


@annotators_app.command("list")
def annotators_list(db: Path = typer.Option(..., help="SQLite file of the arena.")) -> None:
    """List the annotators with their vote counts."""
    with reported_errors():
        store = _open_store(db)
        for who in store.annotators():
            quota = f" of {who.quota}" if who.quota else ""
            console.print(f"{who.name}\t{store.n_votes(who.id)}{quota} votes", highlight=False)


@arena_app.command()
def admin(
    db: Path = typer.Option(..., help="SQLite file of the arena."),
    url: str = typer.Option("http://127.0.0.1:8000", help="Base URL of the arena."),
) -> None:
    """Issue a new admin link (the previous one stops working)."""
    with reported_errors():
        store = _open_store(db)
        console.print(f"{url.rstrip('/')}/admin/{store.new_admin_token()}", highlight=False, soft_wrap=True)


@arena_app.command()
def export(
    db: Path = typer.Option(..., help="SQLite file of the arena."),
    comparisons: Path = typer.Option(None, help="Write the comparisons (.csv, .jsonl or .parquet)."),
    pairs: Path = typer.Option(None, help="Write {prompt, chosen, rejected} preference pairs (JSONL)."),
    votes: Path = typer.Option(None, help="Write the raw vote log (.csv, .jsonl or .parquet), undone votes included."),
    both_bad: float = typer.Option(0.5, help="Outcome a 'both bad' vote counts as in the comparisons."),
) -> None:
    """Export the votes: comparisons for `pairkit rank`, preference pairs for the trainers, the raw log."""
    with reported_errors():
        from pairkit.arena import comparisons_frame, preference_pairs, votes_frame, write_jsonl, write_table
        from pairkit.errors import InputError

        if comparisons is None and pairs is None and votes is None:
            raise InputError("nothing to export: give --comparisons, --pairs and/or --votes")
        store = _open_store(db)
        log = store.votes()
        if comparisons is not None:
            frame = comparisons_frame(log, both_bad=both_bad)
            write_table(frame, comparisons)
            console.print(f"wrote {len(frame)} comparisons to {comparisons}", highlight=False)
        if pairs is not None:
            n = write_jsonl(preference_pairs(log, store.candidates()), pairs)
            console.print(f"wrote {n} preference pairs to {pairs}", highlight=False)
        if votes is not None:
            frame = votes_frame(store.votes(include_undone=True))
            write_table(frame, votes)
            console.print(f"wrote {len(frame)} votes to {votes}", highlight=False)


@arena_app.command("judge")
def judge_cmd(
    db: Path = typer.Option(..., help="SQLite file of the arena."),
    judge_config: Path = typer.Option(..., "--judge", help='Judge config JSON, e.g. {"type": "openai", ...}.'),
    limit: int = typer.Option(None, help="Judge at most this many pairs now."),
    budget: int = typer.Option(None, help="Maximum number of paid judge calls."),
) -> None:
    """Let an LLM judge vote on the pairs the humans voted on (same order shown); report its agreement."""
    with reported_errors():
        from pairkit.arena import annotator_stats, judge_votes
        from pairkit.cli.judge import load_judge

        store = _open_store(db)
        comparator = load_judge(judge_config, store.candidates())
        run = judge_votes(store, comparator, limit=limit, budget=budget)
        stats = next((a for a in annotator_stats(store.votes())["annotators"] if a["annotator"] == run.name), None)
        agreement = "" if stats is None or not stats["agreement_n"] else (
            f"; agreement with the humans {stats['agreement']:.3f} over {stats['agreement_n']} vote pairs")
        console.print(f"{run.name}: {run.votes} new votes ({run.paid_calls} paid calls, cost {run.cost:.4f}), "
                      f"{run.remaining} pairs left{agreement}", highlight=False)
