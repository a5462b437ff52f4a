"""JudgmentCache, CachedJudge: persistence, shared physical keys, in-flight merging, budgets."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pairkit.judges import (
    Budget,
    BudgetExhausted,
    CachedJudge,
    CallableJudge,
    JudgmentCache,
    Request,
)


class Counting:
    """A first-answer-is-longer judge that counts calls (and can fail on demand)."""

    def __init__(self, fail_on: set[str] | None = None, delay: float = 0.0):
        self.calls: list[tuple[str, str]] = []
        self.fail_on = fail_on or set()
        self.delay = delay

    async def __call__(self, context, first, second):
        await asyncio.sleep(self.delay)
        self.calls.append((first, second))
        if first in self.fail_on:
            raise RuntimeError(f"boom on {first}")
        return 0.9 if len(first) > len(second) else 0.1


def test_cache_persists_across_reopen_and_shares_the_shown_prompt(tmp_path):
    path = tmp_path / "c.sqlite"
    fn = Counting()
    judge = CachedJudge(CallableJudge(fn, judge_id="len"), path)
    j1 = judge.judge("q", "long answer", "short")
    assert j1.p_a == pytest.approx(0.9) and not j1.cached
    judge.cache.close()
    again = CachedJudge(CallableJudge(fn, judge_id="len"), path)
    # (b, a, "ba") shows the same prompt as (a, b, "ab"): a cache hit, with p_a for the new a.
    j2 = again.judge("q", "short", "long answer", order="ba")
    assert j2.cached and j2.p_a == pytest.approx(0.1) and j2.order == "ba"
    assert len(fn.calls) == 1 and again.usage.cache_hits == 1 and again.usage.calls == 0
    # the other order is a different prompt unless reuse_reversed
    again.judge("q", "long answer", "short", order="ba")
    assert len(fn.calls) == 2
    other = CachedJudge(CallableJudge(fn, judge_id="len", prompt_version="v2"), path, reuse_reversed=True)
    other.judge("q", "a", "bb")
    assert other.judge("q", "a", "bb", order="ba").cached and len(fn.calls) == 3


def test_inflight_duplicates_share_one_call():
    fn = Counting(delay=0.01)
    judge = CachedJudge(CallableJudge(fn))
    reqs = [Request("q", "aa", "b")] * 5 + [Request("q", "b", "aa", "ba")] * 3
    out = judge.judge_many(reqs)
    assert len(fn.calls) == 1
    assert [j.p_a for j in out] == pytest.approx([0.9] * 5 + [0.1] * 3)


def test_committed_before_use_and_failures_not_cached(tmp_path):
    fn = Counting(fail_on={"bad"})
    judge = CachedJudge(CallableJudge(fn), tmp_path / "c.sqlite")
    reqs = [Request("q", "good", "x"), Request("q", "bad", "x")]

    async def run():
        return await asyncio.gather(*(judge.ajudge(r) for r in reqs), return_exceptions=True)

    ok, err = asyncio.run(run())
    assert isinstance(err, RuntimeError) and ok.p_a == pytest.approx(0.9)
    assert len(JudgmentCache(tmp_path / "c.sqlite")) == 1
    assert judge.budget.calls == 1  # the failed call's reservation was released


def test_call_and_money_budgets():
    fn = Counting()
    judge = CachedJudge(CallableJudge(fn), budget=Budget(max_calls=2))
    judge.judge("q", "a", "b")
    judge.judge("q", "a", "c")
    judge.judge("q", "a", "b")  # a cache hit is free
    with pytest.raises(BudgetExhausted, match="2 judge calls"):
        judge.judge("q", "a", "d")

    class Priced(CallableJudge):
        priced = True

        def estimate_cost(self, request):
            return 0.3

        async def _ajudge(self, request):
            return replace(await super()._ajudge(request), cost=0.4)

    money = CachedJudge(Priced(fn), budget=Budget(max_cost=1.0))
    money.judge("q", "x", "y")
    money.judge("q", "x", "z")
    with pytest.raises(BudgetExhausted, match="money budget"):
        money.judge("q", "x", "w")  # spent 0.8 (actual costs), next ~0.3 would pass 1.0
    assert money.budget.cost == pytest.approx(0.8) and money.usage.cost == pytest.approx(0.8)
    with pytest.raises(ValueError, match="max_calls"):
        Budget(max_calls=-1)
