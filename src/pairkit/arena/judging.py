"""LLM judges voting in the same arena: the pairs humans voted on, shown to the judge in the same order.

The judge's votes are stored like an annotator's (as ``judge:<judge id>``), so the admin page's agreement
columns compare it with the humans on exactly the same pairs. Its calls go through
:class:`~pairkit.judges.CachedJudge` with the judgment cache in the arena's own database file: every judgment is
committed before it is used, and a rerun repeats no paid call.
"""

from __future__ import annotations

from dataclasses import dataclass

from pairkit.arena.store import JUDGE_PREFIX, VoteStore
from pairkit.errors import InputError

__all__ = ["JudgeRun", "judge_votes"]


@dataclass(frozen=True)
class JudgeRun:
    """What :func:`judge_votes` did: the judge's annotator name, new votes, pairs left for later, paid calls."""

    name: str
    votes: int
    remaining: int
    paid_calls: int
    cost: float


def judge_votes(store: VoteStore, judge, *, limit: int | None = None, budget=None) -> JudgeRun:
    """Let ``judge`` (any pairkit comparator) vote on every pair the humans voted on that it has not.

    Each pair is shown as the humans saw it first (the same left/right), in the same prompt. ``limit`` caps the
    number of pairs judged now; ``budget`` (calls or a :class:`~pairkit.judges.Budget`) caps paid calls.
    """
    from pairkit.judges import Budget, CachedJudge, JudgmentCache
    from pairkit.judges.base import BudgetExhausted, Request, run_sync

    if limit is not None and limit < 0:
        raise InputError(f"--limit must be >= 0; got {limit}")
    name = JUDGE_PREFIX + str(judge.judge_id)
    who = next((a for a in store.annotators() if a.name == name), None)
    if who is None:
        store.add_annotator(name)  # the token is never shown: a judge votes only through this function
        who = next(a for a in store.annotators() if a.name == name)
    texts = {(r["context_id"], r["candidate_id"]): r for r in store.candidates()}
    votes = store.votes()
    done = {(v["context_id"], *sorted((v["left_id"], v["right_id"]))) for v in votes if v["annotator_id"] == who.id}
    todo: dict[tuple, tuple[str, str, str]] = {}
    for v in votes:
        if v["annotator"].startswith(JUDGE_PREFIX) or v["kind"] != "normal" or v["outcome"] == "skip":
            continue
        key = (v["context_id"], *sorted((v["left_id"], v["right_id"])))
        if key not in done:
            todo.setdefault(key, (v["context_id"], v["left_id"], v["right_id"]))
    pending = list(todo.values())
    chosen = pending if limit is None else pending[:limit]
    if isinstance(budget, int):
        budget = Budget(max_calls=budget)
    cached = CachedJudge(judge, JudgmentCache(store.path, alongside=True), budget=budget)
    requests = []
    for c, left, right in chosen:
        row = texts[(c, left)]
        requests.append(Request(row["context"], row["text"], texts[(c, right)]["text"], "ab", row.get("reference")))

    async def ask_all():
        import asyncio

        return await asyncio.gather(*(cached.ajudge(r) for r in requests), return_exceptions=True)

    results = run_sync(ask_all()) if requests else []
    stored = 0
    failures = []
    for (c, left, right), result in zip(chosen, results):
        if isinstance(result, BudgetExhausted):
            continue
        if isinstance(result, BaseException):
            failures.append(result)
            continue
        outcome = {"a": "left", "b": "right"}.get(result.winner, "tie")
        a = store.assign(who.id, c, left, right)
        store.record_vote(a.id, who.id, outcome, reason=(result.raw or None))
        stored += 1
    cached.cache.close()
    if failures and not stored:
        raise failures[0]
    return JudgeRun(name, stored, len(pending) - stored, cached.usage.calls, cached.usage.cost)
