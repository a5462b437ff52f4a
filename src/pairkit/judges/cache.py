"""A persistent judgment cache, call/money budgets and crash-safe resumption.

:class:`JudgmentCache` stores judgments in SQLite keyed by the *full request*: the judge's identity (for an HTTP
judge the server URL, model, sampling parameters, log-prob settings, samples, extra request fields and the
template text — everything it sends except the answers; see :func:`judge_identity`), the context, the reference,
the first and second answers *as shown* and the sample index. ``(a, b, "ab")`` and ``(b, a, "ba")`` show the same
prompt and share one entry. The file carries a schema version; an old, foreign or damaged file is refused with
an :class:`~pairkit.errors.InputError` before anything is paid. :class:`CachedJudge` wraps any comparator:

* every judgment is committed to SQLite *before* it is returned, so a run killed at any moment resumes
  without repeating a paid call; a paid reply without a verdict is stored as such (raw text and cost) and is
  not paid again unless ``retry_unparseable=True``;
* concurrent requests for the same key share one in-flight call (one future per key), and processes sharing a
  cache file share calls too: a call is *claimed* in the file (SQLite WAL, one writer at a time) before it is
  made, and another process asking the same prompt waits for that answer instead of paying again;
* claims are taken only for calls actually running (at most the judge's ``max_concurrency``), so a killed run
  leaves at most that many calls unanswered; the next run reports them (:class:`CacheWarning`) and asks again;
* with ``reuse_reversed=True`` a judgment of the other order stands in (only right when position bias is
  ignored, e.g. the ``"random"`` position policy);
* a :class:`Budget` in calls and/or money refuses further paid calls with :class:`BudgetExhausted`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pairkit.errors import InputError, PairkitWarning
from pairkit.judges.base import BudgetExhausted, ComparatorBase, JudgeError, Judgment, Request

__all__ = [
    "SCHEMA_VERSION",
    "Budget",
    "CacheWarning",
    "CachedFailure",
    "CachedJudge",
    "JudgmentCache",
    "cache_key",
    "check_priced",
    "judge_identity",
]

SCHEMA_VERSION = 2
_APP = "pairkit judgment cache"
_FIELDS = ("p_a", "p_tie", "raw", "verdict", "cost", "prompt_tokens", "completion_tokens", "n_calls", "judge", "weight")
_V1_COLUMNS = ["key", "judge_id", "prompt_version", "payload"]  # pairkit's first cache layout
_TABLES = frozenset({"judgment_cache_meta", "judgments", "judgment_claims"})
_SCHEMA = (
    "CREATE TABLE judgment_cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE judgments (key TEXT PRIMARY KEY, judge_id TEXT NOT NULL, status TEXT NOT NULL, "
    "payload TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE judgment_claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, "
    "pid INTEGER NOT NULL, "
    "since REAL NOT NULL)",
)


_MEMOS = (
    "CREATE TABLE IF NOT EXISTS judge_memos (key TEXT PRIMARY KEY, judge_id TEXT NOT NULL, kind TEXT NOT NULL, "
    "payload TEXT NOT NULL, created REAL NOT NULL)"
)


class CacheWarning(PairkitWarning):
    """Something about the judgment cache the user should know (calls lost in flight at a kill).

    >>> from pairkit.errors import PairkitWarning
    >>> from pairkit.judges import CacheWarning
    >>> issubclass(CacheWarning, PairkitWarning)
    True
    """


class CachedFailure(JudgeError):
    """The cache holds a paid reply to this prompt without a verdict; it is not paid again by default.

    >>> from pairkit.judges import CachedFailure, JudgeError
    >>> issubclass(CachedFailure, JudgeError)
    True
    """


def judge_identity(judge) -> dict[str, Any]:
    """Everything about ``judge`` that changes its answers: ``judge_id``, ``prompt_version`` and its
    ``cache_identity()`` (for an HTTP judge: the request it sends, minus the answers).

    >>> from pairkit.judges import CallableJudge, judge_identity
    >>> sorted(judge_identity(CallableJudge(lambda context, a, b: 1.0, judge_id='first')))
    ['judge_id', 'prompt_version']
    """
    out: dict[str, Any] = {"judge_id": judge.judge_id, "prompt_version": judge.prompt_version}
    extra = getattr(judge, "cache_identity", None)
    if callable(extra):
        out.update(extra())
    return out


def cache_key(identity: Mapping[str, Any], request: Request) -> str:
    """SHA-256 of the judge identity and the prompt as shown (context, reference, first, second, sample).

    >>> from pairkit.judges import Request, cache_key
    >>> key = cache_key({'judge_id': 'j', 'prompt_version': '1'}, Request('q', 'x', 'y'))
    >>> len(key), key == cache_key({'judge_id': 'j', 'prompt_version': '2'}, Request('q', 'x', 'y'))
    (64, False)
    """
    payload = json.dumps(
        [identity, request.context, request.reference, request.first, request.second, request.sample],
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


class JudgmentCache:
    """SQLite store of judgments in shown-order terms (``p_a`` = probability the *first* shown is better).

    ``path=":memory:"`` keeps it in memory. Every :meth:`put` commits at once. ``lease`` (seconds) is how long a
    claim by a process on another host is honoured before it counts as abandoned (on this host a claim is
    abandoned as soon as its process is gone). ``alongside=True`` lets the cache's tables live in a database
    that holds other tables of its owner (the arena's vote store); otherwise such a file is refused as foreign.

    >>> from pairkit.judges import CachedJudge, CallableJudge, JudgmentCache
    >>> cache = JudgmentCache()  # in memory; give a path to keep it
    >>> judge = CachedJudge(CallableJudge(lambda context, a, b: 1.0, judge_id='first'), cache)
    >>> first = judge.judge('q', 'x', 'y')
    >>> again = judge.judge('q', 'x', 'y')
    >>> judge.usage.calls, judge.usage.cache_hits
    (1, 1)
    """

    def __init__(self, path: str | Path = ":memory:", *, lease: float = 900.0, alongside: bool = False) -> None:
        self.path = str(path)
        self.alongside = alongside
        self.lease = float(lease)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._host, self._pid = socket.gethostname(), os.getpid()
        self._lock = threading.Lock()
        self.shared = self.path != ":memory:"
        self._has_memos = False
        if self.shared and Path(self.path).is_dir():
            raise InputError(f"judgment cache {self.path!r} is a directory; give a file path such as judgments.sqlite")
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60.0)
            self._open_schema()  # before switching to WAL: a foreign file must be left as it was
            self._db.execute("PRAGMA journal_mode=WAL" if self.shared else "PRAGMA journal_mode=MEMORY")
            if self.shared:
                problems = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        self.abandoned = self._reap() if self.shared else 0
        if self.abandoned:
            warnings.warn(
                f"{self.abandoned} judge call(s) were in flight when a previous run on {self.path} stopped; their "
                "answers were not saved, so they will be asked (and paid) again",
                CacheWarning,
                stacklevel=2,
            )

    # ------------------------------------------------------------------------------------------- schema
    def _damaged(self, exc: BaseException) -> InputError:
        return InputError(
            f"judgment cache {self.path!r} cannot be used: {exc}; if the file is damaged, move it away and run "
            "again with a new --cache file (answers stored in it will be asked again)"
        )

    def _open_schema(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables or (self.alongside and not tables & _TABLES):
                for statement in _SCHEMA:
                    db.execute(statement)
                db.executemany(
                    "INSERT INTO judgment_cache_meta VALUES (?, ?)",
                    [("application", _APP), ("schema_version", str(SCHEMA_VERSION))],
                )
            elif "judgment_cache_meta" in tables:
                meta = dict(db.execute("SELECT name, value FROM judgment_cache_meta").fetchall())
                if meta.get("application") != _APP:
                    raise InputError(self._foreign(tables))
                if meta.get("schema_version") != str(SCHEMA_VERSION):
                    raise InputError(
                        f"judgment cache {self.path!r} has schema version {meta.get('schema_version')!r}; this "
                        f"pairkit reads version {SCHEMA_VERSION}; use a new --cache file"
                    )
            elif tables == {"judgments"} and _columns(db, "judgments") == _V1_COLUMNS:
                raise InputError(
                    f"judgment cache {self.path!r} was written by an older pairkit (schema version 1), whose keys "
                    "leave out the server, sampling settings and extra request fields, so its answers cannot be "
                    "matched safely; use a new --cache file"
                )
            else:
                raise InputError(self._foreign(tables))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _foreign(self, tables: set[str]) -> str:
        return (
            f"{self.path!r} is not a pairkit judgment cache (it holds the tables {', '.join(sorted(tables))}); "
            "give --cache a new file path, not another program's database"
        )

    def _reap(self) -> int:
        """Remove claims of processes that are gone; their count (calls in flight when a run stopped)."""
        with self._transaction() as db:
            rows = db.execute("SELECT key, owner, host, pid, since FROM judgment_claims").fetchall()
            dead = [k for k, owner, host, pid, since in rows if self._abandoned(owner, host, pid, since)]
            db.executemany("DELETE FROM judgment_claims WHERE key = ?", [(k,) for k in dead])
        return len(dead)

    def _abandoned(self, owner: str, host: str, pid: int, since: float) -> bool:
        if owner == self.owner:
            return False
        if host == self._host:
            return not _pid_alive(pid)
        return time.time() - since > self.lease

    # ---------------------------------------------------------------------------------------- plumbing
    def _transaction(self):
        cache = self

        class _Tx:
            def __enter__(self):
                cache._lock.acquire()
                try:
                    cache._db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    cache._lock.release()
                    raise cache._damaged(exc) from None
                return cache._db

            def __exit__(self, kind, exc, tb):
                try:
                    cache._db.execute("COMMIT" if kind is None else "ROLLBACK")
                except sqlite3.Error as err:
                    if kind is None:
                        raise cache._damaged(err) from None
                finally:
                    cache._lock.release()
                if isinstance(exc, sqlite3.Error):
                    raise cache._damaged(exc) from None
                return False

        return _Tx()

    def _query(self, sql: str, args: tuple = ()) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._damaged(exc) from None

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) FROM judgments")[0][0]

    # ------------------------------------------------------------------------------------------- entries
    def _decode(self, row: tuple, request: Request) -> Judgment:
        status, payload = row
        try:
            data = json.loads(payload)
            if not isinstance(data, dict):
                raise TypeError(f"a {type(data).__name__}, not an object")
            if status == "ok":
                shown = Judgment(**{k: v for k, v in data.items() if k in _FIELDS}, order="ab", cached=True)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"judgment cache {self.path!r}: the stored answer to this prompt is damaged ({exc}); move the file "
                "away and run again with a new --cache file (answers stored in it will be asked again)"
            ) from None
        if status != "ok":
            error = CachedFailure(
                f"the judge's paid reply to this prompt had no verdict ({data.get('message', '')}; raw reply "
                f"{str(data.get('raw', ''))[:120]!r}); it is kept in the cache and not paid again: pass "
                "retry_unparseable=True (pairkit judge --retry-unparseable) to ask again, or fix the prompt template"
            )
            error.raw, error.cost = str(data.get("raw", "")), 0.0
            raise error
        return replace(shown if request.order == "ab" else shown.swapped(), order=request.order)

    def get(self, identity: Mapping[str, Any], request: Request, *, failures: bool = True) -> Judgment | None:
        """The cached judgment of exactly this shown prompt, in ``request``'s ``a``/``b`` terms, or None.

        A stored unparseable reply raises :class:`CachedFailure` (``failures=False``: counts as absent).
        """
        rows = self._query("SELECT status, payload FROM judgments WHERE key = ?", (cache_key(identity, request),))
        if not rows or (not failures and rows[0][0] != "ok"):
            return None
        return self._decode(rows[0], request)

    def _row(self, identity: Mapping[str, Any], request: Request, judgment: Judgment) -> tuple:
        shown = judgment if request.order == "ab" else judgment.swapped()
        payload = json.dumps({k: getattr(shown, k) for k in _FIELDS}, ensure_ascii=False)
        return cache_key(identity, request), str(identity.get("judge_id", "")), "ok", payload, time.time()

    def put(self, identity: Mapping[str, Any], request: Request, judgment: Judgment) -> None:
        """Store (and commit) a judgment given in ``request``'s ``a``/``b`` terms; its claim ends."""
        row = self._row(identity, request, judgment)
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?)", row)
            db.execute("DELETE FROM judgment_claims WHERE key = ?", (row[0],))

    def put_failure(
        self, identity: Mapping[str, Any], request: Request, *, raw: str, cost: float, message: str
    ) -> None:
        """Store a paid reply that had no verdict (its text and cost), so that a rerun does not pay for it again."""
        key = cache_key(identity, request)
        payload = json.dumps({"raw": raw, "cost": cost, "message": message}, ensure_ascii=False)
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?)",
                (key, str(identity.get("judge_id", "")), "unparseable", payload, time.time()),
            )
            db.execute("DELETE FROM judgment_claims WHERE key = ?", (key,))

    # -------------------------------------------------------------------------------------------- claims
    def claim(self, identity: Mapping[str, Any], request: Request, *, retry_failed: bool = False):
        """Claim the call for ``request`` unless it is answered or claimed by a live process.

        Returns ``("mine", None)``, ``("done", judgment)`` (answered meanwhile; a stored failure raises
        :class:`CachedFailure` unless ``retry_failed``) or ``("busy", owner)``.
        """
        key = cache_key(identity, request)
        if not self.shared:
            return "mine", None
        with self._transaction() as db:
            row = db.execute("SELECT status, payload FROM judgments WHERE key = ?", (key,)).fetchone()
            if row is not None and (row[0] == "ok" or not retry_failed):
                found = row
            else:
                found = None
                held = db.execute(
                    "SELECT owner, host, pid, since FROM judgment_claims WHERE key = ?", (key,)
                ).fetchone()
                if held is not None and held[0] != self.owner and not self._abandoned(*held):
                    return "busy", f"process {held[2]} on {held[1]}"
                db.execute(
                    "INSERT OR REPLACE INTO judgment_claims VALUES (?, ?, ?, ?, ?)",
                    (key, self.owner, self._host, self._pid, time.time()),
                )
        if found is not None:
            return "done", self._decode(found, request)
        return "mine", None

    def release(self, identity: Mapping[str, Any], request: Request) -> None:
        """Give up this process's claim on ``request`` (the call failed unpaid; another may try)."""
        if self.shared:
            with self._transaction() as db:
                db.execute(
                    "DELETE FROM judgment_claims WHERE key = ? AND owner = ?",
                    (cache_key(identity, request), self.owner),
                )

    # ------------------------------------------------------------------------------ per-answer judge work
    def _memo_key(self, identity: Mapping[str, Any], kind: str, inputs: tuple[str, ...]) -> str:
        payload = json.dumps([identity, kind, list(inputs)], ensure_ascii=False, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get_memo(self, identity: Mapping[str, Any], kind: str, inputs: tuple[str, ...]) -> Any:
        """A stored piece of a judge's per-answer work (a CGCoT breakdown, a pointwise rating): the JSON value
        :meth:`put_memo` stored under the judge's ``identity``, ``kind`` and ``inputs``, or None."""
        if not self._has_memos:  # the table is made by the first put_memo (of this or another process)
            found = self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'judge_memos'")
            self._has_memos = bool(found)
            if not found:
                return None
        rows = self._query("SELECT payload FROM judge_memos WHERE key = ?", (self._memo_key(identity, kind, inputs),))
        return json.loads(rows[0][0]) if rows else None

    def put_memo(self, identity: Mapping[str, Any], kind: str, inputs: tuple[str, ...], value: Any) -> None:
        """Store (and commit) a JSON value of a judge's per-answer work, keyed by the judge's ``identity`` (its
        configuration's hash, as for judgments), ``kind`` and ``inputs``; an existing entry is kept."""
        row = (self._memo_key(identity, kind, inputs), str(identity.get("judge_id", "")), kind,
               json.dumps(value, ensure_ascii=False), time.time())  # fmt: skip
        with self._transaction() as db:
            db.execute(_MEMOS)
            db.execute("INSERT OR IGNORE INTO judge_memos VALUES (?, ?, ?, ?, ?)", row)
        self._has_memos = True

    def close(self) -> None:
        self._db.close()


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


@dataclass
class Budget:
    """Limits on paid judge calls and/or money; ``None`` means unlimited.

    ``reserve`` is called before each paid call with its estimated cost and refuses (raising
    :class:`BudgetExhausted`) when the call could exceed a limit; ``settle`` replaces the estimate by the
    actual cost once known, and ``release`` returns the reservation of a call that failed unpaid.

    >>> from pairkit.judges import Budget, BudgetExhausted
    >>> budget = Budget(max_calls=1)
    >>> budget.reserve(0.0)
    >>> try:
    ...     budget.reserve(0.0)
    ... except BudgetExhausted as e:
    ...     print(type(e).__name__)
    BudgetExhausted
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
    """``budget``, or :class:`InputError` when it limits money but ``judge`` reports no costs (no price).

    >>> from pairkit.errors import InputError
    >>> from pairkit.judges import Budget, CallableJudge, check_priced
    >>> judge = CallableJudge(lambda context, a, b: 1.0, judge_id='free')
    >>> check_priced(judge, Budget(max_calls=5)).max_calls
    5
    >>> try:
    ...     check_priced(judge, Budget(max_cost=1.0))
    ... except InputError as e:
    ...     print(type(e).__name__)
    InputError
    """
    if budget.max_cost is not None and not getattr(judge, "priced", False):
        raise InputError(
            f"max_cost={budget.max_cost:g} needs a judge with a price, but judge {judge.judge_id!r} reports no "
            'costs (every call would count as 0 and the limit would never stop a run); add "price": '
            "[input, output] money per million tokens to the judge config, or limit calls with a budget instead"
        )
    return budget


class CachedJudge(ComparatorBase):
    """Wrap ``judge`` with a persistent cache, in-flight deduplication (across processes too) and a budget.

    ``usage`` counts only the paid calls made through this wrapper (cache hits are in ``usage.cache_hits``).

    Args:
        retry_unparseable: ask again (and pay again) for prompts whose cached paid reply had no verdict.
        claim_wait: the longest wait (seconds) for another process's call on the same prompt.

    >>> from pairkit.judges import Budget, CachedJudge, CallableJudge
    >>> judge = CachedJudge(CallableJudge(lambda context, a, b: 0.0, judge_id='second'), budget=Budget(max_calls=10))
    >>> [judge.judge('q', 'x', 'y').winner for _ in range(3)]
    ['b', 'b', 'b']
    >>> judge.usage.calls, judge.usage.cache_hits
    (1, 2)
    """

    def __init__(
        self,
        judge,
        cache: JudgmentCache | str | Path | None = None,
        *,
        budget: Budget | None = None,
        reuse_reversed: bool = False,
        retry_unparseable: bool = False,
        claim_wait: float = 900.0,
    ) -> None:
        super().__init__()
        self.inner = judge
        self.cache = cache if isinstance(cache, JudgmentCache) else JudgmentCache(cache or ":memory:")
        self.budget = check_priced(judge, budget or Budget())
        self.reuse_reversed = reuse_reversed
        self.retry_unparseable = retry_unparseable
        self.claim_wait = float(claim_wait)
        self.judge_id = judge.judge_id
        self.prompt_version = judge.prompt_version
        self.identity = judge_identity(judge)
        attach = getattr(judge, "attach_store", None)
        if callable(attach):  # per-answer work (CGCoT breakdowns, pointwise ratings) persists with the judgments
            attach(self.cache, self.identity)
        self.priced = getattr(judge, "priced", False)
        self.waited = 0  # calls answered by another process while this one waited
        self._inflight: dict[str, asyncio.Future] = {}
        self._slots: tuple | None = None

    def lookup(self, request: Request) -> Judgment | None:
        """The cached judgment (or, with ``reuse_reversed``, the other order's); a stored failure raises."""
        failures = not self.retry_unparseable
        found = self.cache.get(self.identity, request, failures=failures)
        if found is None and self.reuse_reversed:
            other = self.cache.get(self.identity, request.reversed(), failures=failures)
            found = None if other is None else replace(other, order=request.order)
        return found

    async def ajudge(self, request: Request) -> Judgment:
        found = self.lookup(request)
        if found is not None:
            self.usage.cache_hits += 1
            return found
        key = cache_key(self.identity, request)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._call(request))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _f, k=key: self._inflight.pop(k, None))
        else:
            self.usage.cache_hits += 1
        shown = await asyncio.shield(pending)  # in first-shown terms: a twin may ask in the other order
        return replace(shown if request.order == "ab" else shown.swapped(), order=request.order)

    def _semaphore(self) -> asyncio.Semaphore | None:
        """At most the judge's ``max_concurrency`` calls claimed at once (so a kill loses at most that many)."""
        limit = getattr(self.inner, "max_concurrency", None)
        if not limit:
            return None
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(int(limit)))
        return self._slots[1]

    async def _call(self, request: Request) -> Judgment:
        """Claim and pay for ``request``, or wait for the process that holds its claim."""
        start, pause = time.monotonic(), 0.02
        while True:
            semaphore = self._semaphore()
            if semaphore is not None:
                await semaphore.acquire()
            try:
                state, value = self.cache.claim(self.identity, request, retry_failed=self.retry_unparseable)
                if state == "mine":
                    return await self._paid_call(request)
            finally:
                if semaphore is not None:
                    semaphore.release()
            if state == "done":
                self.usage.cache_hits += 1
                self.waited += 1
                return value if request.order == "ab" else value.swapped()
            if time.monotonic() - start > self.claim_wait:
                raise JudgeError(
                    f"{value} has been judging this prompt for over {self.claim_wait:g} s (claim in "
                    f"{self.cache.path}); wait for it to finish, or stop it and run again"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _paid_call(self, request: Request) -> Judgment:
        estimate = self.estimate_cost(request)
        try:
            self.budget.reserve(estimate)
        except BudgetExhausted:
            self.cache.release(self.identity, request)
            raise
        try:
            judgment = await self.inner.ajudge(request)
        except BaseException as exc:
            paid = getattr(exc, "cost", 0.0)  # a judge that failed after paid responses (unparseable verdicts)
            if paid:
                self.budget.settle(estimate, paid)
                self.usage.cost += paid
            else:
                self.budget.release(estimate)
            if getattr(exc, "unparseable", False):
                self.cache.put_failure(
                    self.identity, request, raw=getattr(exc, "raw", ""), cost=float(paid), message=str(exc)[:300]
                )
            else:
                self.cache.release(self.identity, request)
            raise
        self.budget.settle(estimate, judgment.cost)
        self.cache.put(self.identity, request, judgment)  # committed before use
        self.usage.add(judgment)
        return judgment if request.order == "ab" else judgment.swapped()

    def estimate_cost(self, request: Request) -> float:
        return self.inner.estimate_cost(request)
