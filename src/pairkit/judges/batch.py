"""Judging through a provider's batch API (the OpenAI batch protocol), at the batch price, never paid twice.

:class:`BatchJudge` wraps an :class:`~pairkit.judges.OpenAIJudge`. Requests that arrive together — a strategy's
round: all pairs of a round robin, one round of a knockout or of Swiss pairing — are written as one JSONL file of
chat-completion requests, uploaded (``POST /files``, purpose ``batch``), submitted (``POST /batches``) and polled
(``GET /batches/{id}``) until the provider has answered; the output file (``GET /files/{id}/content``) is read
back into judgments. Plans that adapt after every call (``active``, merge sorts) gain little: each of their steps
would be a batch of its own.

Nothing is paid twice. Every submission is written to a ledger table in the judgment cache *before* the file is
uploaded, and its batch id as soon as the provider returns it; the provider's batch carries the submission's id in
its ``metadata``. A run killed while a batch is pending resumes by waiting for that batch (found in the ledger),
and one killed between the submission and the ledger update finds its batch by the metadata in ``GET /batches``;
a completed batch whose answers were not stored yet is downloaded again, not resubmitted. The judgments share
the cache entries of the wrapped judge (the request is the same), and each one costs the batch price:
``discount`` × the judge's price (half, at OpenAI).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from pairkit._optional import requires
from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, JudgeError, Judgment, MicroBatched, Request
from pairkit.judges.cache import JudgmentCache, cache_key, judge_identity

__all__ = ["BatchJudge"]

_LEDGER = (
    "CREATE TABLE IF NOT EXISTS judgment_batches (submission TEXT PRIMARY KEY, batch_id TEXT, status TEXT NOT NULL, "
    "keys TEXT NOT NULL, output_file_id TEXT, error_file_id TEXT, created REAL NOT NULL)"
)
_ACTIVE = ("submitting", "submitted", "completed")
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class BatchJudge(MicroBatched, ComparatorBase):
    """An :class:`~pairkit.judges.OpenAIJudge` asked through the provider's batch API.

    Args:
        judge: the OpenAI-compatible judge whose server, model, prompt, sampling and price are used
            (``samples`` must be 1: one batch line per judgment).
        ledger: the :class:`~pairkit.judges.JudgmentCache` (or its path) that records submissions — use the cache
            the run judges with, so a killed run finds its batches.
        poll_interval: seconds between status polls.
        max_wait: the longest this process waits for a batch (seconds); the batch stays in the ledger, and a new
            run keeps waiting for it instead of submitting again.
        max_batch: requests per batch file at most (OpenAI: 50,000).
        discount: the batch price as a fraction of the judge's price.
        completion_window: the provider's completion window.
        sleep: the awaitable used to wait between polls (tests inject one).

    Example:

        >>> import os, tempfile
        >>> from pairkit.judges import BatchJudge, OpenAIJudge, Request
        >>> online = OpenAIJudge("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key="-", price=(0.15, 0.60))
        >>> batch = BatchJudge(online, os.path.join(tempfile.mkdtemp(), "judgments.sqlite"))  # nothing is sent yet
        >>> request = Request("Capital of France?", "Paris.", "Lyon.")
        >>> round(batch.estimate_cost(request) / online.estimate_cost(request), 2)  # the batch API's price
        0.5
    """

    @declare_options(
        Option("poll_interval", float, Interval(0, None, closed="neither"), doc="seconds between polls"),
        Option("max_wait", float, Interval(0, None, closed="neither"), doc="seconds waited for a batch at most"),
        Option("max_batch", int, Interval(1, 50_000), doc="requests per batch at most"),
        Option("discount", float, Interval(0, 1), doc="batch price / online price"),
    )
    def __init__(
        self,
        judge,
        ledger: JudgmentCache | str | Path,
        *,
        poll_interval: float = 30.0,
        max_wait: float = 86_400.0,
        max_batch: int = 50_000,
        discount: float = 0.5,
        completion_window: str = "24h",
        sleep: Callable | None = None,
    ) -> None:
        super().__init__()
        if not callable(getattr(judge, "payload", None)) or not callable(getattr(judge, "read_reply", None)):
            raise InputError(f"BatchJudge needs an OpenAI-compatible judge (OpenAIJudge), got {type(judge).__name__}")
        if judge.samples != 1:
            raise InputError(f"BatchJudge sends one request per judgment; the judge has samples={judge.samples}")
        self.inner = judge
        self.ledger = ledger if isinstance(ledger, JudgmentCache) else JudgmentCache(ledger)
        with self.ledger._transaction() as db:
            db.execute(_LEDGER)
        self.poll_interval, self.max_wait, self.max_batch = poll_interval, max_wait, max_batch
        self.discount, self.completion_window = discount, completion_window
        self.judge_id, self.prompt_version = judge.judge_id, judge.prompt_version
        self.identity = judge_identity(judge)
        self.max_concurrency = max_batch  # a cache claims up to a whole batch at once
        self.batches_created = 0
        self._sleep = sleep or asyncio.sleep
        self._pending: list[tuple[Request, asyncio.Future]] = []

    @property
    def priced(self) -> bool:
        """Whether the wrapped judge has a price."""
        return self.inner.priced

    def cache_identity(self) -> dict:
        """The wrapped judge's: a batch asks exactly what the judge would ask online."""
        return self.inner.cache_identity()

    def estimate_cost(self, request: Request) -> float:
        """The wrapped judge's estimate at the batch price."""
        return self.inner.estimate_cost(request) * self.discount

    # ------------------------------------------------------------------------------------------- HTTP
    async def _http(self, method: str, path: str, **kwargs):
        """One control call with bounded retries on 429/5xx/transport errors; the httpx response."""
        with requires("judges", "the batch judge"):
            import httpx

        from pairkit.judges.http import RETRYABLE

        judge = self.inner
        headers = {"Authorization": f"Bearer {judge.api_key}"} if judge.api_key else {}
        url = f"{judge.base_url}{path}"
        timeout = httpx.Timeout(judge.timeout, connect=judge.connect_timeout)
        problem = ""
        async with httpx.AsyncClient(timeout=timeout) as client:
            for attempt in range(judge.max_retries + 1):
                try:
                    response = await client.request(method, url, headers=headers, **kwargs)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code < 400:
                        return response
                    problem = f"HTTP {response.status_code}: {response.text[:200]!r}"
                    if response.status_code not in RETRYABLE:
                        break
                if attempt < judge.max_retries:
                    await self._sleep(min(judge.max_backoff, judge.backoff * 2**attempt))
        raise JudgeError(f"batch API {method} {url} failed: {problem}")

    async def _json(self, method: str, path: str, **kwargs) -> dict:
        response = await self._http(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise JudgeError(f"batch API {method} {path}: not JSON: {response.text[:200]!r}") from None

    # ----------------------------------------------------------------------------------------- ledger
    def _active(self) -> dict[str, tuple[str, str | None, str, str | None]]:
        """key → (submission, batch id, status, output file id) of the newest active submission holding it."""
        rows = self.ledger._query(
            "SELECT submission, batch_id, status, keys, output_file_id FROM judgment_batches WHERE status IN "
            "(?, ?, ?) ORDER BY created",
            _ACTIVE,
        )
        out = {}
        for submission, batch_id, status, keys, output in rows:
            for key in json.loads(keys):
                out[key] = (submission, batch_id, status, output)
        return out

    def _record(self, submission: str, **fields) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.ledger._transaction() as db:
            db.execute(f"UPDATE judgment_batches SET {sets} WHERE submission = ?", (*fields.values(), submission))

    # ----------------------------------------------------------------------------------------- submit
    async def _submit(self, keyed: list[tuple[str, Request]]) -> tuple[str, str]:
        """Ledger first, then upload and create; (submission, batch id)."""
        submission = uuid.uuid4().hex
        lines = [
            {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": self.inner.payload(r)}
            for key, r in keyed
        ]
        with self.ledger._transaction() as db:
            db.execute(
                "INSERT INTO judgment_batches VALUES (?, NULL, 'submitting', ?, NULL, NULL, ?)",
                (submission, json.dumps([k for k, _ in keyed]), time.time()),
            )
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        uploaded = await self._json(
            "POST",
            "/files",
            files={"file": ("pairkit-batch.jsonl", data, "application/jsonl")},
            data={"purpose": "batch"},
        )
        created = await self._json(
            "POST",
            "/batches",
            json={
                "input_file_id": uploaded["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": self.completion_window,
                "metadata": {"pairkit_submission": submission},
            },
        )
        self.batches_created += 1
        self._record(submission, batch_id=created["id"], status="submitted")
        return submission, created["id"]

    async def _find(self, submission: str) -> str | None:
        """The batch id of a submission whose id was not recorded (a kill after the provider accepted it)."""
        listing = await self._json("GET", "/batches", params={"limit": 100})
        for batch in listing.get("data", []):
            if (batch.get("metadata") or {}).get("pairkit_submission") == submission:
                self._record(submission, batch_id=batch["id"], status="submitted")
                return batch["id"]
        self._record(submission, status="abandoned")  # never created: its requests are submitted again
        return None

    # ------------------------------------------------------------------------------------------- wait
    async def _wait(self, submission: str, batch_id: str, output: str | None) -> dict[str, dict]:
        """custom id → response body (or ``{"error": ...}``) of a batch, once it has finished."""
        if output is None:
            deadline = time.monotonic() + self.max_wait
            while True:
                info = await self._json("GET", f"/batches/{batch_id}")
                status = info.get("status")
                if status in _TERMINAL:
                    break
                if time.monotonic() + self.poll_interval > deadline:
                    raise JudgeError(
                        f"batch {batch_id} is still {status} after max_wait={self.max_wait:g} s; run again to keep "
                        "waiting for it (it is in the cache's ledger and will not be submitted again)"
                    )
                await self._sleep(self.poll_interval)
            output, errors = info.get("output_file_id"), info.get("error_file_id")
            self._record(submission, status="completed" if output else status, output_file_id=output,
                         error_file_id=errors)  # fmt: skip
            if not output and not errors:
                raise JudgeError(f"batch {batch_id} ended {status} without an output file: {info.get('errors')!r}")
        else:
            errors = self.ledger._query(
                "SELECT error_file_id FROM judgment_batches WHERE submission = ?", (submission,)
            )[0][0]
        out: dict[str, dict] = {}
        for file_id in (output, errors):
            if not file_id:
                continue
            text = (await self._http("GET", f"/files/{file_id}/content")).text
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    response = row.get("response") or {}
                    if response.get("status_code") == 200 and isinstance(response.get("body"), dict):
                        out[row["custom_id"]] = response["body"]
                    else:
                        out.setdefault(row["custom_id"], {"error": row.get("error") or response})
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise JudgeError(
                        f"batch {batch_id}: output line {n} is not a batch result: {line[:120]!r}"
                    ) from None
        return out

    # ---------------------------------------------------------------------------------------- judging
    def _judgment(self, request: Request, body: dict | None, batch_id: str) -> Judgment | BaseException:
        if body is None:
            return JudgeError(f"batch {batch_id} returned no answer for this request")
        if "choices" not in body:
            return JudgeError(
                f"batch {batch_id}: the provider answered this request with an error: {body.get('error')!r}"
            )
        usage = body.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        price = self.inner.price
        cost = price.cost(pt, ct) * self.discount if price is not None else 0.0
        try:
            probs, text, label = self.inner.read_reply(body)
        except (KeyError, IndexError, TypeError):
            probs, text, label = None, str(body)[:200], ""
        if probs is None:
            error = JudgeError(f"no verdict in the judge's batch reply: {text[:200]!r}")
            error.cost, error.tokens, error.unparseable, error.raw = cost, (pt, ct), True, text
            return error
        p_first, p_tie, weight = probs
        shown = Judgment(
            p_a=min(p_first, 1.0 - p_tie), p_tie=p_tie, raw=text, verdict=label, cost=cost, prompt_tokens=pt,
            completion_tokens=ct, judge=self.judge_id, weight=weight,
        )  # fmt: skip
        return replace(shown if request.order == "ab" else shown.swapped(), order=request.order)

    async def _run(self, requests: Sequence[Request]) -> list[Judgment | BaseException]:
        keys = [cache_key(self.identity, r) for r in requests]
        first = dict(zip(keys, requests))
        active = self._active()
        waits: dict[str, tuple[str, str | None]] = {}
        for key in first:
            if key in active:
                submission, batch_id, status, output = active[key]
                if batch_id is None:
                    batch_id = await self._find(submission)
                    if batch_id is None:
                        continue
                waits[submission] = (batch_id, output)
        covered = {k for k in first if k in active and active[k][0] in waits}
        todo = [(k, first[k]) for k in first if k not in covered]
        for start in range(0, len(todo), self.max_batch):
            submission, batch_id = await self._submit(todo[start : start + self.max_batch])
            waits[submission] = (batch_id, None)
        results = await asyncio.gather(*(self._wait(s, b, o) for s, (b, o) in waits.items()))
        bodies: dict[str, tuple[dict, str]] = {}
        for (_, (batch_id, _)), found in zip(waits.items(), results):
            for key, body in found.items():
                bodies[key] = (body, batch_id)
        return [self._judgment(r, *bodies.get(k, (None, "?"))) for k, r in zip(keys, requests)]

    async def _batch(self, requests: list[Request]) -> list:
        return await self._run(requests)
