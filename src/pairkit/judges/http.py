"""An LLM judge behind an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, TGI, …).

* The verdict's probability comes from the ``top_logprobs`` of the verdict's tokens (all of them: ``[[A=B]]``
  is read as a tie) when the server returns them, else from ``samples`` repeated samples, else it is the hard
  verdict. Graded verdicts (``A>>B`` … ``B>>A``) are scored and weighted by a
  :class:`~pairkit.judges.prompts.VerdictScale` (``verdicts="graded"``, ``"arena_hard"`` or ``"binary"``).
* Calls are bounded by a semaphore (``max_concurrency``) and retried on 429, 5xx, timeouts, transport errors
  (truncated bodies) and malformed JSON with exponential backoff and full jitter (Brooker 2015, "Exponential
  backoff and jitter"), waiting at least the server's ``Retry-After``; an unparseable verdict is re-asked up to
  ``parse_retries`` times. Every failure is counted by kind in ``usage.failures`` and listed in ``failures``.
* Everything is bounded: ``max_retries`` retries, at most ``max_call_seconds`` per call (its attempts, their
  timeouts and the waits between them), connect and read timeouts, and a ``Retry-After`` longer than
  ``max_retry_after`` is not waited out: the call gives up at once with a :class:`RetryWarning` (counted).
* Cost is counted once per paid response from its reported token usage and a price table (money per million
  input/output tokens), both per judgment (``Judgment.cost``) and in total (``usage.cost``).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from pairkit._optional import requires
from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError, PairkitWarning
from pairkit.judges.base import ComparatorBase, JudgeError, Judgment, Request
from pairkit.judges.prompts import (
    TEMPLATES,
    PromptTemplate,
    VerdictScale,
    parse_verdict,
    verdict_distribution,
    verdict_scale,
)

__all__ = ["OpenAIJudge", "Price", "RetryWarning", "verdict_from_logprobs"]

RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RetryWarning(PairkitWarning):
    """A judge call gave up because a retry bound was reached (a long Retry-After, the time per call).

    >>> from pairkit.errors import PairkitWarning
    >>> from pairkit.judges import RetryWarning
    >>> issubclass(RetryWarning, PairkitWarning)
    True
    """


@dataclass(frozen=True)
class Price:
    """Money per million input (prompt) and output (completion) tokens (finite, >= 0).

    >>> from pairkit.judges import Price
    >>> price = Price(input_per_million=2.5, output_per_million=10.0)
    >>> price.input_per_million
    2.5
    """

    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
            if not ok:
                raise InputError(f"price {name} must be a finite number >= 0 (money per million tokens), got {value!r}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


def verdict_from_logprobs(content: list[dict], scale: str | VerdictScale = "graded") -> tuple[float, float] | None:
    """(P(first better), P(tie)) from the log-probs of the bracketed verdict, or None if absent.

    Multi-token verdicts (``[[A=B]]`` as ``A``, ``=``, ``B``) are read whole by
    :func:`~pairkit.judges.prompts.verdict_distribution`; single letters are renormalised over ``A``, ``B``,
    ``C``. Levels are scored on ``scale``.

    >>> import math
    >>> from pairkit.judges import verdict_from_logprobs
    >>> content = [{'token': '[[', 'logprob': 0.0, 'top_logprobs': []},
    ...            {'token': 'A', 'logprob': math.log(0.8),
    ...             'top_logprobs': [{'token': 'A', 'logprob': math.log(.8)}, {'token': 'B', 'logprob': math.log(.2)}]},
    ...            {'token': ']]', 'logprob': 0.0, 'top_logprobs': []}]
    >>> [round(p, 3) for p in verdict_from_logprobs(content, scale='binary')]
    [0.8, 0.0]
    """
    dist = verdict_distribution(content)
    if dist is None:
        return None
    p_first, p_tie, _ = verdict_scale(scale).expect(dist)
    return p_first, p_tie


class OpenAIJudge(ComparatorBase):
    """Pairwise judge over ``POST {base_url}/chat/completions``.

    Args:
        model: model name sent to the server.
        base_url: API root (``…/v1``).
        api_key: bearer token; defaults to the environment variable named by ``api_key_env``.
        template: a :data:`~pairkit.judges.prompts.TEMPLATES` name or a :class:`PromptTemplate` (default: the
            five-level ``"pairwise_graded"``).
        logprobs: ask for ``top_logprobs`` and read the verdict probability from them.
        verdicts: how graded verdicts score and weigh (a :data:`~pairkit.judges.prompts.VERDICT_SCALES` name or
            a :class:`~pairkit.judges.prompts.VerdictScale`).
        samples: calls per judgment, their probabilities averaged (for servers without logprobs; use a
            temperature > 0 so that the samples differ).
        price: a :class:`Price` (or ``(input, output)`` per million tokens) for cost accounting.
        timeout, connect_timeout: seconds to wait for a response / a connection, per attempt.
        max_retries: retries of one call after a retryable failure.
        max_retry_after: the longest ``Retry-After`` waited out; a longer one gives the call up at once.
        max_call_seconds: the most one call may take with all its attempts and waits.
        images: answers (and the reference) that are images — a ``data:image/…`` URI or an http(s) URL of a
            .png/.jpg/.jpeg/.gif/.webp file — are sent as ``image_url`` parts of the user message, so a multimodal
            model sees the images (the text around them stays text parts).
        sleep: the awaitable used to wait between retries (tests inject a recorder).

    >>> from pairkit.judges import OpenAIJudge
    >>> judge = OpenAIJudge('gpt-4o-mini', api_key='sk-example')  # no request is sent until it judges
    >>> judge.judge_id
    'openai:gpt-4o-mini'
    """

    @declare_options(
        Option("temperature", float, Interval(0, None)),
        Option("max_tokens", int, Interval(1, None)),
        Option("top_logprobs", int, Interval(0, 20)),
        Option("samples", int, Interval(1, None), doc="calls per judgment"),
        Option("max_concurrency", int, Interval(1, None)),
        Option("max_retries", int, Interval(0, 100)),
        Option("parse_retries", int, Interval(0, 100)),
        Option("timeout", float, Interval(0, None, closed="neither"), doc="read timeout per attempt (s)"),
        Option("connect_timeout", float, Interval(0, None, closed="neither"), doc="connect timeout (s)"),
        Option("backoff", float, Interval(0, None)),
        Option("max_backoff", float, Interval(0, None)),
        Option("max_retry_after", float, Interval(0, None), doc="longest Retry-After waited out (s)"),
        Option("max_call_seconds", float, Interval(0, None, closed="neither"), doc="time bound of one call (s)"),
        Option("expected_output_tokens", int, Interval(0, None)),
    )
    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        template: str | PromptTemplate = "pairwise_graded",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        logprobs: bool = True,
        top_logprobs: int = 5,
        verdicts: str | VerdictScale = "graded",
        samples: int = 1,
        max_concurrency: int = 8,
        max_retries: int = 4,
        parse_retries: int = 1,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        max_call_seconds: float = 120.0,
        price: Price | tuple[float, float] | None = None,
        expected_output_tokens: int = 300,
        extra_body: Mapping | None = None,
        images: bool = False,
        judge_id: str | None = None,
        sleep: Callable | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        with requires("judges", "the OpenAI-compatible judge"):
            import httpx  # noqa: F401  (checked here, before any call is planned or paid)
        if isinstance(template, str):
            if template not in TEMPLATES:
                raise InputError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
            template = TEMPLATES[template]
        self.model, self.base_url = model, base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.template = template
        self.verdicts = verdict_scale(verdicts)
        self.temperature, self.max_tokens = temperature, max_tokens
        self.logprobs, self.top_logprobs, self.samples = logprobs, top_logprobs, samples
        self.max_concurrency, self.max_retries, self.parse_retries = max_concurrency, max_retries, parse_retries
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.max_retry_after, self.max_call_seconds = max_retry_after, max_call_seconds
        if price is not None and not isinstance(price, Price):
            if not isinstance(price, (tuple, list)) or len(price) != 2:
                raise InputError(f"price must be [input, output] money per million tokens, got {price!r}")
            price = Price(*price)
        self.price = price
        self.expected_output_tokens = expected_output_tokens
        self.extra_body = dict(extra_body or {})
        self.images = bool(images)
        self.judge_id = judge_id or f"openai:{model}"
        self.prompt_version = template.version
        self.failures: list[str] = []
        self._sleep = sleep or asyncio.sleep
        self._random = random.Random(seed)
        self._state: tuple | None = None

    # ---------------------------------------------------------------------------------------- plumbing
    def _loop_state(self):
        with requires("judges", "the OpenAI-compatible judge"):
            import httpx

        loop = asyncio.get_running_loop()
        if self._state is None or self._state[0] is not loop:
            client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout))
            self._state = (loop, client, asyncio.Semaphore(self.max_concurrency))
        return self._state[1], self._state[2]

    async def aclose(self) -> None:
        if self._state is not None:
            await self._state[1].aclose()
            self._state = None

    def _fail(self, kind: str, detail: str) -> None:
        self.usage.fail(kind)
        self.failures.append(f"{kind}: {detail}")

    @property
    def priced(self) -> bool:
        """Whether calls cost money here (a price is set), so that a money budget can apply."""
        return self.price is not None

    async def _post(self, payload: dict, endpoint: str = "/chat/completions") -> dict:
        """One chat completion (or, with ``endpoint="/completions"``, a text completion) with bounded retries;
        returns the parsed JSON body."""
        with requires("judges", "the OpenAI-compatible judge"):
            import httpx

        client, semaphore = self._loop_state()
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}{endpoint}"
        chat = endpoint.endswith("/chat/completions")
        kinds = []
        deadline = time.monotonic() + self.max_call_seconds
        for attempt in range(self.max_retries + 1):
            retry_after = None
            left = max(deadline - time.monotonic(), 1e-3)
            limit = httpx.Timeout(min(self.timeout, left), connect=min(self.connect_timeout, left))
            try:
                async with semaphore:
                    response = await client.post(url, json=payload, headers=headers, timeout=limit)
            except httpx.TimeoutException as exc:
                kind, detail = "timeout", f"{type(exc).__name__} after {min(self.timeout, left):.3g}s"
            except httpx.TransportError as exc:
                kind, detail = "transport", f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in RETRYABLE:
                    kind, detail = f"http_{response.status_code}", response.text[:200]
                    retry_after = _retry_after(response.headers.get("retry-after"))
                elif response.status_code >= 400:
                    self._fail(f"http_{response.status_code}", response.text[:200])
                    raise JudgeError(f"{url} answered HTTP {response.status_code}: {response.text[:300]!r}")
                else:
                    try:
                        body = response.json()
                        first = body["choices"][0]
                        first["message"]["content"] if chat else first["text"]  # noqa: B018 - shape check
                        return body
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        kind, detail = "malformed", f"{type(exc).__name__}: {response.text[:120]!r}"
            self._fail(kind, detail)
            kinds.append(kind)
            if attempt == self.max_retries:
                break
            if retry_after is not None and retry_after > self.max_retry_after:
                self._fail("retry_after_too_long", f"{retry_after:.0f}s")
                warnings.warn(
                    f"the judge server asked to wait longer than max_retry_after={self.max_retry_after:g} s "
                    "(Retry-After); those calls were given up instead of waiting",
                    RetryWarning,
                    stacklevel=2,
                )
                raise JudgeError(
                    f"{url} asked to wait {retry_after:.0f} s (Retry-After) after {', '.join(kinds)}, longer than "
                    f"max_retry_after={self.max_retry_after:g} s; try again later or raise max_retry_after in the "
                    "judge config"
                )
            cap = min(self.max_backoff, self.backoff * 2**attempt)
            delay = max(self._random.uniform(0, cap), retry_after or 0.0)
            if time.monotonic() + delay >= deadline:
                self._fail("call_time_limit", f"{self.max_call_seconds:g}s")
                warnings.warn(
                    f"judge calls reached max_call_seconds={self.max_call_seconds:g} s before an answer; "
                    "they were given up",
                    RetryWarning,
                    stacklevel=2,
                )
                raise JudgeError(
                    f"{url}: no usable response within max_call_seconds={self.max_call_seconds:g} s "
                    f"({len(kinds)} attempts: {', '.join(kinds)})"
                )
            await self._sleep(delay)
        raise JudgeError(f"{url}: no usable response after {len(kinds)} attempts ({', '.join(kinds)})")

    def _paid(self, body: dict) -> tuple[int, int, float]:
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        pt, ct = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        if pt is None or ct is None:
            self._fail("usage", f"unreadable token counts {usage!r:.120}")
            pt, ct = pt or 0, ct or 0
        cost = self.price.cost(pt, ct) if self.price else 0.0
        self.usage.calls += 1
        self.usage.prompt_tokens += pt
        self.usage.completion_tokens += ct
        self.usage.cost += cost
        return pt, ct, cost

    # ---------------------------------------------------------------------------------------- judging
    def payload(self, request: Request) -> dict:
        """The request body for ``request`` (shown order applied)."""
        if self.template.needs_reference and request.reference is None:
            raise InputError(
                f"template {self.template.name!r} needs a reference answer; give the pool references "
                "or use template='pairwise_graded'"
            )
        body = {
            "model": self.model,
            "messages": self.template.messages(request.context, request.first, request.second, request.reference),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        if self.images:
            shown = [request.first, request.second, request.reference]
            body["messages"] = [
                {**m, "content": image_parts(m["content"], [x for x in shown if x and is_image(x)])}
                if m["role"] == "user"
                else m
                for m in body["messages"]
            ]
        body.update(self.extra_body)
        return body

    def cache_identity(self) -> dict:
        """What this judge sends besides the answers (server, model, sampling, template, extra fields), and how
        it reads the replies: the part of the cache key that tells one setting's answers from another's."""
        placeholder = Request("\x00context", "\x00first", "\x00second", reference="\x00reference")
        body = self.payload(placeholder)
        out = {
            "base_url": self.base_url,
            "request": body,
            "samples": self.samples,
            "verdicts": self.verdicts.identity(),
        }
        if self.images:  # an image URL is sent as an image, not as text: another request
            out["images"] = True
        return out

    def chat_identity(self) -> dict:
        """What :meth:`acomplete` sends besides the messages (server, model, sampling, extra fields)."""
        body = self.payload(Request("\x00context", "\x00first", "\x00second", reference="\x00reference"))
        body.pop("messages")
        return {"base_url": self.base_url, "request": body}

    async def acomplete(self, messages: list[dict]):
        """One chat completion of ``messages`` (a :class:`~pairkit.judges.protocols.ChatReply`): the free-form
        call that multi-step protocols (:mod:`pairkit.judges.protocols`) build on, with this judge's server,
        sampling settings, retries, bounds and price; its cost is counted in ``usage``."""
        from pairkit.judges.protocols import ChatReply

        body = {k: v for k, v in self.payload(Request("", "", "", reference="")).items() if k != "messages"}
        body["messages"] = list(messages)
        reply = await self._post(body)
        pt, ct, cost = self._paid(reply)
        choice = reply["choices"][0]
        content = ((choice.get("logprobs") or {}).get("content")) or None
        return ChatReply(str(choice["message"]["content"] or ""), cost, pt, ct, content)

    async def ajudge(self, request: Request) -> Judgment:
        # accounting happens per paid response in _paid, so the base class must not add the judgment again
        return await self._ajudge(request)

    async def _ajudge(self, request: Request) -> Judgment:
        payload = self.payload(request)
        results = await asyncio.gather(*(self._one(payload) for _ in range(self.samples)), return_exceptions=True)
        ok = [r for r in results if not isinstance(r, BaseException)]
        spent = [r for r in results if isinstance(r, JudgeError)]
        pt = sum(r[2] for r in ok) + sum(getattr(e, "tokens", (0, 0))[0] for e in spent)
        ct = sum(r[3] for r in ok) + sum(getattr(e, "tokens", (0, 0))[1] for e in spent)
        cost = sum(r[4] for r in ok) + sum(getattr(e, "cost", 0.0) for e in spent)
        if not ok:
            err = spent[0] if spent else results[0]
            error = JudgeError(str(err))
            error.cost, error.tokens = cost, (pt, ct)
            error.unparseable = bool(spent) and all(getattr(e, "unparseable", False) for e in spent)
            error.raw = getattr(err, "raw", "")
            raise error
        probs = [r[0] for r in ok]
        p_first = sum(p[0] for p in probs) / len(probs)
        p_tie = sum(p[1] for p in probs) / len(probs)
        weight = sum(p[2] for p in probs) / len(probs)
        shown = Judgment(
            p_a=min(p_first, 1.0 - p_tie),
            p_tie=p_tie,
            raw=ok[0][1],
            verdict=ok[0][5],
            cost=cost,
            prompt_tokens=pt,
            completion_tokens=ct,
            n_calls=len(ok) + len(spent),
            judge=self.judge_id,
            weight=weight,
        )
        return replace(shown if request.order == "ab" else shown.swapped(), order=request.order)

    async def _one(self, payload: dict):
        """One sample: (probabilities, text, prompt tokens, completion tokens, cost, verdict)."""
        tokens = [0, 0]
        cost = 0.0
        for _ in range(self.parse_retries + 1):
            body = await self._post(payload)
            pt, ct, c = self._paid(body)
            tokens[0] += pt
            tokens[1] += ct
            cost += c
            probs, text, label = self.read_reply(body)
            if probs is not None:
                return probs, text, tokens[0], tokens[1], cost, label
            self._fail("unparseable", text[:120])
        error = JudgeError(f"no verdict in the judge's reply after {self.parse_retries + 1} tries: {text[:200]!r}")
        error.cost, error.tokens, error.unparseable, error.raw = cost, tuple(tokens), cost > 0 or any(tokens), text
        raise error

    def read_reply(self, body: dict) -> tuple[tuple[float, float, float] | None, str, str]:
        """((P(first better), P(tie), weight) or None without a verdict, the reply text, the verdict label) of a
        chat-completion response body."""
        choice = body["choices"][0]
        text = str(choice["message"]["content"] or "")
        label = parse_verdict(text)
        dist = verdict_distribution(((choice.get("logprobs") or {}).get("content")) or [])
        if dist is None and label is not None:
            dist = {label: 1.0}
        return (None if dist is None else self.verdicts.expect(dist)), text, label or ""

    def estimate_cost(self, request: Request) -> float:
        """Rough cost of one judgment: prompt characters / 4 input tokens, ``expected_output_tokens`` out."""
        if self.price is None:
            return 0.0
        chars = 0
        for m in self.payload(request)["messages"]:
            parts = [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"]
            # an image part: ~765 tokens at OpenAI's high detail for a 1024² image, counted as 3000 characters
            chars += sum(len(x.get("text", "")) if x.get("type") == "text" else 3000 for x in parts)
        return self.samples * self.price.cost(chars // 4 + 8, self.expected_output_tokens)


_IMAGE_URL = re.compile(r"^https?://\S+\.(?:png|jpe?g|gif|webp)(?:\?\S*)?$", re.I)


def is_image(text: str) -> bool:
    """Whether an answer is an image: a ``data:image/…`` URI or an http(s) URL of an image file."""
    text = text.strip()
    return text.startswith("data:image/") or bool(_IMAGE_URL.match(text))


def image_parts(content: str, images: list[str]) -> str | list[dict]:
    """``content`` as OpenAI-style parts, each occurrence of an image answer an ``image_url`` part (in order)."""
    if not images:
        return content
    pattern = "(" + "|".join(re.escape(x) for x in sorted(set(images), key=len, reverse=True)) + ")"
    parts: list[dict] = []
    for k, piece in enumerate(re.split(pattern, content)):
        if k % 2:
            parts.append({"type": "image_url", "image_url": {"url": piece.strip()}})
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _count(value) -> int | None:
    """A token count from a response's ``usage`` (absent: 0); None when it is not a finite number >= 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
