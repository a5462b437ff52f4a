"""A persistent judgment cache, call/money budgets and crash-safe resumption.

:class:`JudgmentCache` stores judgments in SQLite keyed by (judge id, prompt version, context, reference,
first answer, second answer): the *physical* prompt shown, so ``(a, b, "ab")`` and ``(b, a, "ba")`` share one
entry. :class:`CachedJudge` wraps any comparator:

* every judgment is committed to SQLite *before* it is returned, so a run killed at any moment resumes
  without repeating a paid call;
* concurrent requests for the same key share one in-flight call (one future per key);
* with ``reuse_reversed=True`` a judgment of the other order stands in (only right when position bias is
  ignored, e.g. the ``"random"`` position policy);
* a :class:`Budget` in calls and/or money refuses further paid calls with :class:`BudgetExhausted`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from pairkit.errors import InputError
from pairkit.judges.base import BudgetExhausted, ComparatorBase, Judgment, Request

__all__ = ["Budget", "CachedJudge", "JudgmentCache", "cache_key", "check_priced"]

_FIELDS = ("p_a", "p_tie", "raw", "verdict", "cost", "prompt_tokens", "completion_tokens", "n_calls", "judge")


def cache_key(judge_id: str, prompt_version: str, request: Request) -> str:
    """SHA-256 of the judge identity and the prompt as shown (first answer, second answer)."""
    payload = json.dumps(
        [judge_id, prompt_version, request.context, request.reference, request.first, request.second, request.sample],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class JudgmentCache:
    """SQLite store of judgments in shown-order terms (``p_a`` = probability the *first* shown is better).

    ``path=":memory:"`` keeps it in memory. Every :meth:`put` commits at once.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, judge_id TEXT, "
                "prompt_version TEXT, payload TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise InputError(f"cannot open judgment cache {self.path!r}: {exc}; pass a writable file path") from exc

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def get(self, judge_id: str, prompt_version: str, request: Request) -> Judgment | None:
        """The cached judgment of exactly this shown prompt, in ``request``'s ``a``/``b`` terms, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT payload FROM judgments WHERE key = ?", (cache_key(judge_id, prompt_version, request),)
            ).fetchone()
        if row is None:
            return None
        shown = Judgment(**json.loads(row[0]), order="ab", cached=True)
        return replace(shown if request.order == "ab" else shown.swapped(), order=request.order)

    def put(self, judge_id: str, prompt_version: str, request: Request, judgment: Judgment) -> None:
        """Store (and commit) a judgment given in ``request``'s ``a``/``b`` terms."""
        shown = judgment if request.order == "ab" else judgment.swapped()
        payload = json.dumps({k: getattr(shown, k) for k in _FIELDS}, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?)",
                (cache_key(judge_id, prompt_version, request), judge_id, prompt_version, payload),
            )

    def close(self) -> None:
        self._db.close()


@dataclass
class Budget:
    """Limits on paid judge calls and/or money; ``None`` means unlimited.

    :meth:`reserve` is called before each paid call with its estimated cost and refuses (raising
    :class:`BudgetExhausted`) when the call could exceed a limit; :meth:`settle` replaces the estimate by the
    actual cost once known, and :meth:`release` returns the reservation of a call that failed unpaid.
    """

    max_calls: int | None = None
    max_cost: float | None = None
    calls: int = 0
    cost: float = 0.0

    def __post_init__(self) -> None:
        if self.max_calls is not None and self.max_calls < 0:
            raise InputError(f"max_calls must be >= 0 or None, got {self.max_calls!r}")
        if self.max_cost is not None and not self.max_cost >= 0:
            raise InputError(f"max_cost must be >= 0 or None, got {self.max_cost!r}")

    def reserve(self, estimate: float = 0.0) -> None:
        if self.max_calls is not None and self.calls + 1 > self.max_calls:
            raise BudgetExhausted(f"call budget of {self.max_calls} judge calls used up")
        if self.max_cost is not None and self.cost + estimate > self.max_cost:
            raise BudgetExhausted(
                f"money budget {self.max_cost:g} would be exceeded (spent {self.cost:.6g}, next call ~{estimate:.6g})"
            )
        self.calls += 1
        self.cost += estimate

    def settle(self, estimate: float, actual: float) -> None:
        self.cost += actual - estimate

    def release(self, estimate: float) -> None:
        self.calls -= 1
        self.cost -= estimate

    @property
    def remaining_calls(self) -> float:
        return float("inf") if self.max_calls is None else self.max_calls - self.calls


def check_priced(judge, budget: Budget) -> Budget:
    """``budget``, or :class:`InputError` when it limits money but ``judge`` reports no costs (no price)."""
    if budget.max_cost is not None and not getattr(judge, "priced", False):
        raise InputError(
            f"max_cost={budget.max_cost:g} needs a judge with a price, but judge {judge.judge_id!r} reports no "
            "costs (every call would count as 0 and the limit would never stop a run); add \"price\": "
            "[input, output] money per million tokens to the judge config, or limit calls with a budget instead"
        )
    return budget


class CachedJudge(ComparatorBase):
    """Wrap ``judge`` with a persistent cache, in-flight deduplication and a budget.

    ``usage`` counts only the paid calls made through this wrapper (cache hits are in ``usage.cache_hits``).
    """

    def __init__(
        self,
        judge,
        cache: JudgmentCache | str | Path | None = None,
        *,
        budget: Budget | None = None,
        reuse_reversed: bool = False,
    ) -> None:
        super().__init__()
        self.inner = judge
        self.cache = cache if isinstance(cache, JudgmentCache) else JudgmentCache(cache or ":memory:")
        self.budget = check_priced(judge, budget or Budget())
        self.reuse_reversed = reuse_reversed
        self.judge_id = judge.judge_id
        self.prompt_version = judge.prompt_version
        self._inflight: dict[str, asyncio.Future] = {}

    def lookup(self, request: Request) -> Judgment | None:
        found = self.cache.get(self.judge_id, self.prompt_version, request)
        if found is None and self.reuse_reversed:
            other = self.cache.get(self.judge_id, self.prompt_version, request.reversed())
            found = None if other is None else replace(other, order=request.order)
        return found

    async def ajudge(self, request: Request) -> Judgment:
        found = self.lookup(request)
        if found is not None:
            self.usage.cache_hits += 1
            return found
        key = cache_key(self.judge_id, self.prompt_version, request)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._paid_call(request))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _f, k=key: self._inflight.pop(k, None))
        else:
            self.usage.cache_hits += 1
        shown = await asyncio.shield(pending)  # in first-shown terms: a twin may ask in the other order
        return replace(shown if request.order == "ab" else shown.swapped(), order=request.order)

    async def _paid_call(self, request: Request) -> Judgment:
        estimate = self.estimate_cost(request)
        self.budget.reserve(estimate)
        try:
            judgment = await self.inner.ajudge(request)
        except BaseException as exc:
            paid = getattr(exc, "cost", 0.0)  # a judge that failed after paid responses (unparseable verdicts)
            if paid:
                self.budget.settle(estimate, paid)
                self.usage.cost += paid
            else:
                self.budget.release(estimate)
            raise
        self.budget.settle(estimate, judgment.cost)
        self.cache.put(self.judge_id, self.prompt_version, request, judgment)  # committed before use
        self.usage.add(judgment)
        return judgment if request.order == "ab" else judgment.swapped()

    def estimate_cost(self, request: Request) -> float:
        return self.inner.estimate_cost(request)
