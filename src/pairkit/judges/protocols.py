"""Judging protocols from the papers: several chat calls per comparison, built on any chat model.

A protocol judge is a :class:`~pairkit.judges.ComparatorBase` like any other (cache, budgets, selection
strategies all apply), built on a *chat model*: anything with ``async acomplete(messages) -> ChatReply``.
:class:`~pairkit.judges.OpenAIJudge` is one (its server, sampling settings, retries, bounds and price apply to
every call), :class:`CallableChat` wraps a Python function (a scripted judge in tests, or any client). Each
judgment carries the cost, tokens and number of all the calls it took; a paid reply without a readable answer
raises a :class:`~pairkit.judges.JudgeError` marked unparseable, so the cache keeps it and does not pay again.

* :class:`PortiaJudge` — split–align–merge position-bias calibration (Li et al. 2024, PORTIA);
* :class:`BSMJudge` — Branch-Solve-Merge: planned criteria, per-criterion scores, summed (Saha et al. 2023);
* :class:`CGCoTJudge` — concept-guided chain-of-thought breakdowns compared pairwise, aggregated with
  Bradley–Terry (Wu et al. 2023, CGCoT);
* :class:`FewShotJudge` — few-shot prompts with retrieved preference exemplars (Sinhababu et al. 2024);
* :class:`SimulatedAnnotatorsJudge` — K simulated annotators averaged: the confidence that Trust or Escalate
  calibrates (Jung et al. 2024);
* :class:`DiscussionJudge` — two reviewers discuss until they agree (PRD peer discussion, Li, Patel & Du 2023);
* :class:`PointwiseJudge` — each answer rated alone, with a checklist (WB-Score) and soft ratings from log-probs
  (InstUPR); :func:`pointwise_shortlist` is the first stage before a pairwise rerank;
* :class:`ListwiseJudge` — k answers per call, ranked (RankGPT) or the best picked (setwise), for the
  ``listwise`` strategy.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, JudgeError, Judgment, Request
from pairkit.judges.prompts import (
    TEMPLATES,
    PromptTemplate,
    VerdictScale,
    parse_verdict,
    verdict_distribution,
    verdict_scale,
)

__all__ = [
    "BSMJudge",
    "CGCoTJudge",
    "CallableChat",
    "Chat",
    "ChatReply",
    "DiscussionJudge",
    "FewShotJudge",
    "ListwiseJudge",
    "break_ranking",
    "PointwiseJudge",
    "PortiaJudge",
    "SimulatedAnnotatorsJudge",
    "align_segments",
    "chat_identity",
    "pointwise_shortlist",
    "retrieve_exemplars",
    "soft_rating",
    "split_points",
]


# ------------------------------------------------------------------------------------------------ chat
@dataclass(frozen=True)
class ChatReply:
    """One chat completion: its text, what it cost, its tokens and (optionally) the ``logprobs.content`` list.

    >>> from pairkit.judges import ChatReply
    >>> reply = ChatReply('[[A]]', cost=0.002, prompt_tokens=120, completion_tokens=3)
    >>> reply.text, reply.cost
    ('[[A]]', 0.002)
    """

    text: str
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: Sequence[Mapping] | None = None


@runtime_checkable
class Chat(Protocol):
    """A chat model: ``await chat.acomplete(messages)`` → :class:`ChatReply`.

    >>> from pairkit.judges import CallableChat, Chat
    >>> isinstance(CallableChat(lambda messages: '[[A]]'), Chat)
    True
    """

    async def acomplete(self, messages: list[dict]) -> ChatReply: ...


class CallableChat:
    """A chat model from a function ``fn(messages) -> str | ChatReply`` (sync or ``async def``).

    ``priced=True`` when the function's replies carry a cost (so that a money budget can apply); ``chat_id`` names
    it in the cache key (change it when the function changes).

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: "Both are fine, but the first is clearer. [[A>B]]", chat_id="fixed")
    >>> import asyncio
    >>> asyncio.run(chat.acomplete([{'role': 'user', 'content': 'Which is better?'}])).text
    'Both are fine, but the first is clearer. [[A>B]]'
    """

    def __init__(self, fn: Callable, *, chat_id: str | None = None, priced: bool = False) -> None:
        if not callable(fn):
            raise InputError(f"CallableChat needs a callable, got {type(fn).__name__}")
        self.fn, self.priced = fn, bool(priced)
        self.chat_id = chat_id or getattr(fn, "__name__", "chat")
        self.calls = 0

    def chat_identity(self) -> dict:
        """The chat's name (part of a protocol judge's cache key)."""
        return {"chat_id": self.chat_id}

    async def acomplete(self, messages: list[dict]) -> ChatReply:
        out = self.fn([dict(m) for m in messages])
        if inspect.isawaitable(out):
            out = await out
        self.calls += 1
        if isinstance(out, ChatReply):
            return out
        if isinstance(out, str):
            return ChatReply(out)
        raise InputError(f"chat function {self.chat_id!r} returned {type(out).__name__}; return a str or a ChatReply")


def chat_identity(chat) -> dict[str, Any]:
    """What changes a chat model's answers (its ``chat_identity()``, else its class and ``chat_id``).

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: "Both are fine, but the first is clearer. [[A>B]]", chat_id="fixed")
    >>> from pairkit.judges import chat_identity
    >>> chat_identity(chat)
    {'chat': 'CallableChat', 'chat_id': 'fixed'}
    """
    if not callable(getattr(chat, "acomplete", None)):
        raise InputError(
            f"a protocol judge needs a chat model (an object with async acomplete(messages), such as OpenAIJudge "
            f"or CallableChat), got {type(chat).__name__}"
        )
    extra = getattr(chat, "chat_identity", None)
    out = {"chat": type(chat).__name__, "chat_id": getattr(chat, "chat_id", getattr(chat, "judge_id", ""))}
    if callable(extra):
        out.update(extra())
    return out


class _Tally:
    """Money, tokens and calls of one protocol judgment."""

    def __init__(self) -> None:
        self.cost, self.prompt_tokens, self.completion_tokens, self.calls = 0.0, 0, 0, 0
        self.texts: list[str] = []

    def add(self, reply: ChatReply) -> ChatReply:
        self.cost += float(reply.cost)
        self.prompt_tokens += int(reply.prompt_tokens)
        self.completion_tokens += int(reply.completion_tokens)
        self.calls += 1
        self.texts.append(reply.text)
        return reply

    def merge(self, other: _Tally) -> None:
        self.cost += other.cost
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls


class ProtocolJudge(ComparatorBase):
    """Common plumbing of the protocol judges: the chat model, the verdict scale, accounting, cache identity."""

    protocol = "protocol"

    def __init__(self, chat, *, verdicts: str | VerdictScale = "graded", judge_id: str | None = None) -> None:
        super().__init__()
        self.chat = chat
        self._chat_identity = chat_identity(chat)
        self.verdicts = verdict_scale(verdicts)
        self.judge_id = judge_id or f"{self.protocol}({self._chat_identity['chat_id'] or self._chat_identity['chat']})"
        self.prompt_version = f"{self.protocol}-v1"
        self._memo: dict[tuple[str, str, str], Any] = {}
        self._making: dict[tuple[str, str, str], asyncio.Future] = {}
        self._store: tuple[Any, dict] | None = None

    def attach_store(self, cache, identity: Mapping[str, Any]) -> None:
        """Keep this judge's per-answer work (CGCoT breakdowns, pointwise ratings) in ``cache`` — a
        :class:`~pairkit.judges.JudgmentCache` — under ``identity`` (the judge's cache identity), so that a new run
        on the same cache file does not pay for it again. :class:`~pairkit.judges.CachedJudge` calls it."""
        self._store = (cache, dict(identity))

    async def _once(self, kind: str, context: str, text: str, make) -> tuple[Any, _Tally | None]:
        """``make(context, text)`` → (value, tally) once per (kind, context, text): from this process's memo, the
        attached store, a call in flight on this loop, or a new call (stored before it is used). The tally is
        returned only to the caller whose request made the calls (so their cost is charged once)."""
        key = (kind, context, text)
        if key in self._memo:
            return self._memo[key], None
        if self._store is not None:
            found = self._store[0].get_memo(self._store[1], kind, (context, text))
            if found is not None:
                self._memo[key] = found
                return found, None
        future = self._making.get(key)
        if future is not None and future.get_loop() is asyncio.get_running_loop():
            value, _ = await asyncio.shield(future)
            return value, None
        future = asyncio.ensure_future(make(context, text))
        self._making[key] = future
        try:
            value, tally = await asyncio.shield(future)
        finally:
            self._making.pop(key, None)
        if self._store is not None:
            self._store[0].put_memo(self._store[1], kind, (context, text), value)
        self._memo[key] = value
        return value, tally

    @property
    def priced(self) -> bool:
        """Whether the chat model's calls cost money."""
        return bool(getattr(self.chat, "priced", False))

    @property
    def max_concurrency(self) -> int | None:
        """The chat model's concurrency bound (the cache claims at most this many calls at once)."""
        return getattr(self.chat, "max_concurrency", None)

    def settings(self) -> dict[str, Any]:  # pragma: no cover - overridden
        return {}

    def cache_identity(self) -> dict:
        """The chat model's identity, the protocol, its prompts and options (part of the cache key)."""
        return {"chat": self._chat_identity, "protocol": self.protocol, "verdicts": self.verdicts.identity(),
                **self.settings()}  # fmt: skip

    def estimate_cost(self, request: Request) -> float:
        """The chat model's estimate for one call, times the calls this protocol makes at most."""
        one = getattr(self.chat, "estimate_cost", None)
        return float(one(request)) * self.calls_per_judgment() if callable(one) else 0.0

    def calls_per_judgment(self) -> int:
        return 1

    async def _ask(self, tally: _Tally, messages: list[dict]) -> ChatReply:
        return tally.add(await self.chat.acomplete(messages))

    def _read(self, reply: ChatReply) -> tuple[float, float, float, str] | None:
        """(P(first better), P(tie), weight, label) of a verdict reply, or None when it has none."""
        label = parse_verdict(reply.text)
        dist = verdict_distribution(reply.logprobs) if reply.logprobs else None
        if dist is None and label is not None:
            dist = {label: 1.0}
        if dist is None:
            return None
        p_first, p_tie, weight = self.verdicts.expect(dist)
        return p_first, p_tie, weight, label or max(dist, key=dist.get)

    def _unparseable(self, tally: _Tally, what: str) -> JudgeError:
        raw = tally.texts[-1] if tally.texts else ""
        error = JudgeError(f"{self.protocol}: no {what} in the chat model's reply: {raw[:200]!r}")
        error.cost, error.tokens, error.unparseable, error.raw = (
            tally.cost,
            (tally.prompt_tokens, tally.completion_tokens),
            True,
            raw,
        )
        return error

    def _judgment(self, request: Request, p_first: float, p_tie: float, tally: _Tally, **fields) -> Judgment:
        """A judgment from the first-shown answer's probabilities, in ``request``'s a/b terms."""
        shown = Judgment(
            p_a=min(max(p_first, 0.0), 1.0 - p_tie),
            p_tie=p_tie,
            raw=fields.pop("raw", tally.texts[-1] if tally.texts else ""),
            cost=tally.cost,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            n_calls=tally.calls,
            judge=self.judge_id,
            **fields,
        )
        return shown if request.order == "ab" else shown.swapped()

    async def _verdict(self, tally: _Tally, messages: list[dict]) -> tuple[float, float, float, str]:
        out = self._read(await self._ask(tally, messages))
        if out is None:
            raise self._unparseable(tally, "verdict")
        return out

    async def _gather(self, tally: _Tally, coros) -> list:
        """Run calls concurrently; a failure is raised after all have ended, carrying what was paid."""
        results = await asyncio.gather(*coros, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            error = failed[0]
            if isinstance(error, JudgeError) or not isinstance(error, Exception):
                error.cost, error.tokens = tally.cost, (tally.prompt_tokens, tally.completion_tokens)
            raise error
        return results


def _template(template: str | PromptTemplate) -> PromptTemplate:
    if isinstance(template, PromptTemplate):
        return template
    if template not in TEMPLATES:
        raise InputError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
    return TEMPLATES[template]


# ---------------------------------------------------------------------------------------------- PORTIA
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)


def split_points(text: str) -> list[int]:
    """Offsets where ``text`` may be split: after each sentence end (``.!?;:`` then space) or line break.

    Splitting only there keeps sentences (and code lines) whole, as PORTIA's splitter does; the offsets are
    strictly inside the text, so every part is non-empty.

    >>> from pairkit.judges import split_points
    >>> split_points('First. Second! Third')
    [7, 15]
    """
    out = sorted({m.end() for m in _SENTENCE_END.finditer(text) if 0 < m.end() < len(text)})
    return out


def _tokens(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD.findall(text))


def _overlap(x: frozenset, y: frozenset) -> float:
    """Token-overlap similarity (Jaccard): |x ∩ y| / |x ∪ y| (0 for two empty parts)."""
    union = len(x | y)
    return len(x & y) / union if union else 0.0


def _parts(text: str, cuts: Sequence[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


def _length_cuts(text: str, points: Sequence[int], k: int) -> tuple[int, ...]:
    """The ``k − 1`` split points nearest to the equal-length targets ``i·len/k`` (distinct, increasing)."""
    chosen: list[int] = []
    pts = list(points)
    for i in range(1, k):
        target = i * len(text) / k
        free = [p for p in pts if (not chosen or p > chosen[-1])]
        # leave enough points for the remaining cuts
        free = free[: len(free) - (k - 1 - i)] if k - 1 - i else free
        chosen.append(min(free, key=lambda p: (abs(p - target), p)))
    return tuple(chosen)


def align_segments(
    first: str, second: str, k: int = 3, *, threshold: float = 0.3, max_combinations: int = 20_000
) -> tuple[list[str], list[str], str]:
    """Split two answers into the same number of parts, aligned by length and then by content (PORTIA).

    Li et al. (2024), "Split and merge: aligning position biases in LLM-based evaluators" (PORTIA): parts end
    at sentence boundaries (:func:`split_points`). *Length alignment* cuts each answer at the boundaries nearest
    to ``i·len/k``; if the mean token-overlap similarity of corresponding parts,

    .. math::

        S(c^1, c^2) = \\frac1k \\sum_{i=1}^{k} \\frac{|T(a_i) \\cap T(b_i)|}{|T(a_i) \\cup T(b_i)|},

    reaches ``threshold`` it is kept; otherwise *semantic alignment* searches the cut combinations of both
    answers for the largest :math:`S` (exhaustively up to ``max_combinations`` pairs of combinations; beyond that
    over the boundaries nearest to the length targets). ``k`` drops to what the shorter answer allows (fewer
    sentences than ``k``); with ``k = 1`` the answers are returned whole.

    Returns:
        (parts of ``first``, parts of ``second``, ``"length"``/``"semantic"``/``"whole"``); each list joins back
        to its answer exactly.

    >>> from pairkit.judges import align_segments
    >>> first, second, how = align_segments('One. Two. Three.', 'Uno. Dos. Tres.', k=3)
    >>> first, second
    (['One. ', 'Two. ', 'Three.'], ['Uno. ', 'Dos. ', 'Tres.'])
    """
    if not (isinstance(k, int) and k >= 1):
        raise InputError(f"k (parts per answer) must be an integer >= 1, got {k!r}")
    pa, pb = split_points(first), split_points(second)
    k = min(k, len(pa) + 1, len(pb) + 1)
    if k == 1:
        return [first], [second], "whole"
    cut_a, cut_b = _length_cuts(first, pa, k), _length_cuts(second, pb, k)

    def score(ca, cb) -> float:
        parts = zip(_parts(first, ca), _parts(second, cb))
        return sum(_overlap(_tokens(x), _tokens(y)) for x, y in parts) / k

    if score(cut_a, cut_b) >= threshold:
        return _parts(first, cut_a), _parts(second, cut_b), "length"
    pa, pb = _nearest(first, pa, k, max_combinations), _nearest(second, pb, k, max_combinations)
    best, best_cuts = -1.0, (cut_a, cut_b)
    combos_b = list(itertools.combinations(pb, k - 1))
    for ca in itertools.combinations(pa, k - 1):
        for cb in combos_b:
            s = score(ca, cb)
            if s > best:
                best, best_cuts = s, (ca, cb)
    return _parts(first, best_cuts[0]), _parts(second, best_cuts[1]), "semantic"


def _nearest(text: str, points: list[int], k: int, max_combinations: int) -> list[int]:
    """At most m boundaries (those nearest the length targets) with C(m, k−1)² ≤ ``max_combinations``."""
    m = len(points)
    while m > k - 1 and math.comb(m, k - 1) ** 2 > max_combinations:
        m -= 1
    if m == len(points):
        return points
    targets = np.arange(1, k) * len(text) / k
    dist = np.min(np.abs(np.asarray(points)[:, None] - targets[None, :]), axis=1)
    keep = np.sort(np.argsort(dist, kind="stable")[:m])
    return [points[i] for i in keep]


_PORTIA_SYSTEM = (
    "You are a fair and careful judge. Compare the two AI assistants' answers to the user's question below and "
    "decide which one answers it better. Each answer has been split into {k} consecutive parts, and the parts of "
    "the two answers are shown side by side: part 1 of A, part 1 of B, part 2 of A, part 2 of B, and so on. Judge "
    "each answer as a whole (its parts read in order). Weigh how helpful, correct, relevant, deep and clear each "
    "answer is; the order in which the answers appear, their length and the assistants' names must not "
    "influence you. Explain your comparison briefly and objectively first. "
)


class PortiaJudge(ProtocolJudge):
    """PORTIA: when the two orders disagree, judge again with both answers split, aligned and interleaved.

    Li et al. (2024), "Split and merge: aligning position biases in LLM-based evaluators" (EMNLP 2024). The
    answers are split into ``k`` parts at sentence boundaries, aligned by length and content
    (:func:`align_segments`) and merged into one prompt in which part *i* of the first answer is followed by part
    *i* of the second, so the judge compares like with like and neither answer is simply "the one shown first".

    ``mode="on_conflict"`` (default; the paper applies PORTIA to the judge's position-inconsistent pairs): the
    plain prompt is asked in both orders; if their winners agree, the two are averaged (2 calls); otherwise the
    merged prompt is asked in both orders and those two are averaged (4 calls). ``mode="always"``: the merged
    prompt in the shown order only (1 call; combine with the ``both_average`` position policy).

    Args:
        chat: a chat model (:class:`~pairkit.judges.OpenAIJudge`, :class:`CallableChat`, …).
        template: the plain prompt (a :data:`~pairkit.judges.prompts.TEMPLATES` name); its verdict rule and
            answer markers are reused for the merged prompt.
        k: parts per answer (the paper uses 3).
        threshold: the mean part similarity at which length alignment is accepted without a content search.

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: 'The first is better. [[A]]', chat_id='always-a')
    >>> from pairkit.judges import PortiaJudge
    >>> judgment = PortiaJudge(chat).judge('Capital of France?', 'It is Paris. A big city.', 'It is Lyon. Big too.')
    >>> round(judgment.p_a, 3), judgment.n_calls
    (0.5, 4)
    """

    protocol = "portia"

    @declare_options(
        Option("k", int, Interval(1, 10), doc="parts per answer"),
        Option("threshold", float, Interval(0, 1), doc="similarity accepting the length alignment"),
        Option("mode", str, choices=("on_conflict", "always")),
        Option("max_combinations", int, Interval(1, None), doc="cut combinations searched at most"),
    )
    def __init__(
        self,
        chat,
        *,
        template: str | PromptTemplate = "pairwise_graded",
        k: int = 3,
        threshold: float = 0.3,
        mode: str = "on_conflict",
        max_combinations: int = 20_000,
        verdicts: str | VerdictScale = "graded",
        judge_id: str | None = None,
    ) -> None:
        super().__init__(chat, verdicts=verdicts, judge_id=judge_id)
        self.template = _template(template)
        self.k, self.threshold, self.mode, self.max_combinations = k, threshold, mode, max_combinations
        self.merged = 0  # judgments that needed the merged prompt

    def settings(self) -> dict[str, Any]:
        return {
            "template": [self.template.system, self.template.user],
            "merged_system": _PORTIA_SYSTEM,
            "k": self.k,
            "threshold": self.threshold,
            "mode": self.mode,
            "max_combinations": self.max_combinations,
        }

    def calls_per_judgment(self) -> int:
        return 1 if self.mode == "always" else 4

    def merged_messages(self, request: Request) -> list[dict]:
        """The split–align–merge prompt for ``request`` as shown (first answer = assistant A)."""
        parts_a, parts_b, _ = align_segments(
            request.first, request.second, self.k, threshold=self.threshold, max_combinations=self.max_combinations
        )
        k = len(parts_a)
        rule = self.template.system[self.template.system.find("After your explanation") :]
        blocks = [f"[User Question]\n{request.context}"]
        if request.reference is not None and self.template.needs_reference:
            blocks.append(f"[The Start of Reference Answer]\n{request.reference}\n[The End of Reference Answer]")
        for i, (x, y) in enumerate(zip(parts_a, parts_b), start=1):
            for who, text in (("A", x), ("B", y)):
                blocks.append(
                    f"[The Start of Assistant {who}'s Answer, part {i} of {k}]\n{text.strip()}\n"
                    f"[The End of Assistant {who}'s Answer, part {i} of {k}]"
                )
        return [
            {"role": "system", "content": _PORTIA_SYSTEM.format(k=k) + rule},
            {"role": "user", "content": "\n\n".join(blocks)},
        ]

    def _plain(self, request: Request) -> list[dict]:
        return self.template.messages(request.context, request.first, request.second, request.reference)

    async def _both(self, tally: _Tally, request: Request, build) -> list[tuple[float, float, float, str]]:
        """Verdicts in a/b terms (P(a), P(tie), weight, label) for ``request`` and its reverse, asked together."""
        replies = await self._gather(
            tally, [self._ask(tally, build(request)), self._ask(tally, build(request.reversed()))]
        )
        results = [self._read(r) for r in replies]
        if None in results:
            raise self._unparseable(tally, "verdict")
        (p1, t1, w1, l1), (p2, t2, w2, l2) = results
        flip = request.order == "ba"
        a_first = (1 - p1 - t1 if flip else p1), t1, w1, l1
        a_second = (p2 if flip else 1 - p2 - t2), t2, w2, l2
        return [a_first, a_second]

    async def _ajudge(self, request: Request) -> Judgment:
        tally = _Tally()
        if self.mode == "always":
            p, t, w, label = await self._verdict(tally, self.merged_messages(request))
            return self._judgment(request, p, t, tally, verdict=label, weight=w)
        plain = await self._both(tally, request, self._plain)
        used = plain
        if _winner(*plain[0][:2]) != _winner(*plain[1][:2]):
            self.merged += 1
            used = await self._both(tally, request, self.merged_messages)
        p_a = sum(u[0] for u in used) / 2
        p_tie = sum(u[1] for u in used) / 2
        weight = sum(u[2] for u in used) / 2
        verdict = "merged:" + "|".join(u[3] for u in used) if used is not plain else "|".join(u[3] for u in used)
        shown_a = Judgment(p_a=min(p_a, 1 - p_tie), p_tie=p_tie)
        first = shown_a if request.order == "ab" else shown_a.swapped()
        return self._judgment(request, first.p_a, first.p_tie, tally, verdict=verdict, weight=weight)


def _winner(p_a: float, p_tie: float) -> str:
    p_b = 1 - p_a - p_tie
    if p_tie >= max(p_a, p_b) or abs(p_a - p_b) < 1e-12:
        return "tie"
    return "a" if p_a > p_b else "b"


# ------------------------------------------------------------------------------------ Branch-Solve-Merge
_BRANCH_SYSTEM = (
    "You plan the evaluation of answers to a user's question. List the criteria that matter most for judging "
    "an answer to this particular question (for example correctness, relevance, completeness, clarity, safety, "
    "or criteria specific to the task), at most {n} of them, one per line, each written as "
    '"Criterion: <name> - <what to check>". Write nothing else.'
)
_SOLVE_SYSTEM = (
    "You are a fair and careful judge. Evaluate the two AI assistants' answers to the user's question below on "
    "ONE criterion only, given after the answers. The order in which the answers appear, their length and the "
    "assistants' names must not influence you. Explain briefly, then score each answer from 1 (very poor) to 10 "
    '(excellent) on this criterion, ending with exactly: "[[Score A: <n>]] [[Score B: <n>]]".'
)
_CRITERION = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*(?:criterion\s*\d*\s*[:.-])\s*(.+?)\s*$", re.I | re.M)
_SCORE = re.compile(r"score\s*(?:for\s*)?(?:assistant\s*)?([AB])\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.I)


class BSMJudge(ProtocolJudge):
    """Branch-Solve-Merge: the judge plans criteria, scores both answers per criterion, and the scores are summed.

    Saha et al. (2023), "Branch-Solve-Merge improves large language model evaluation and generation". *Branch*:
    one call lists up to ``max_branches`` evaluation criteria for the question. *Solve*: one call per criterion
    (concurrently) scores both answers on it from 1 to 10. *Merge* (non-neural, as in the paper's evaluation
    task): the per-criterion scores are summed,

    .. math::

        S_A = \\sum_{c=1}^{C} s_{A,c},\\qquad S_B = \\sum_{c=1}^{C} s_{B,c},

    and the answer with the larger sum wins (equal sums: a tie). ``1 + C`` calls per judgment.

    >>> from pairkit.judges import BSMJudge, CallableChat
    >>> chat = CallableChat(lambda messages: 'Criterion: accuracy - is it right. Score A: 9, Score B: 3', chat_id='bsm')
    >>> judgment = BSMJudge(chat).judge('Capital of France?', 'Paris.', 'Lyon.')
    >>> round(judgment.p_a, 3), judgment.n_calls
    (1.0, 2)
    """

    protocol = "bsm"

    @declare_options(Option("max_branches", int, Interval(1, 20), doc="criteria planned at most"))
    def __init__(self, chat, *, max_branches: int = 5, judge_id: str | None = None) -> None:
        super().__init__(chat, verdicts="binary", judge_id=judge_id)
        self.max_branches = max_branches

    def settings(self) -> dict[str, Any]:
        return {"branch": _BRANCH_SYSTEM, "solve": _SOLVE_SYSTEM, "max_branches": self.max_branches}

    def calls_per_judgment(self) -> int:
        return 1 + self.max_branches

    def branch_messages(self, request: Request) -> list[dict]:
        return [
            {"role": "system", "content": _BRANCH_SYSTEM.format(n=self.max_branches)},
            {"role": "user", "content": f"[User Question]\n{request.context}"},
        ]

    def solve_messages(self, request: Request, criterion: str) -> list[dict]:
        user = TEMPLATES["pairwise"].user.format(
            question=request.context, answer_a=request.first, answer_b=request.second, reference=""
        )
        return [
            {"role": "system", "content": _SOLVE_SYSTEM},
            {"role": "user", "content": f"{user}\n\n[Criterion]\n{criterion}"},
        ]

    @staticmethod
    def scores(text: str) -> tuple[float, float] | None:
        """(score of A, score of B) from a solve reply (the last of each), or None unless both are in 1..10."""
        found: dict[str, float] = {}
        for m in _SCORE.finditer(text):
            found[m.group(1).upper()] = float(m.group(2))
        if len(found) < 2 or not all(1 <= v <= 10 for v in found.values()):
            return None
        return found["A"], found["B"]

    async def _ajudge(self, request: Request) -> Judgment:
        tally = _Tally()
        plan = await self._ask(tally, self.branch_messages(request))
        criteria = list(dict.fromkeys(m.group(1) for m in _CRITERION.finditer(plan.text)))[: self.max_branches]
        if not criteria:
            raise self._unparseable(tally, "criteria (lines 'Criterion: <name> - <what to check>')")
        replies = await self._gather(tally, [self._ask(tally, self.solve_messages(request, c)) for c in criteria])
        results = [self.scores(r.text) for r in replies]
        if None in results:
            bad = criteria[results.index(None)]
            tally.texts.append(replies[results.index(None)].text)
            raise self._unparseable(tally, f"scores 1-10 for both answers on criterion {bad[:60]!r}")
        s_first, s_second = (sum(col) for col in zip(*results))
        p_first, p_tie = (0.0, 1.0) if s_first == s_second else (float(s_first > s_second), 0.0)
        raw = f"criteria: {criteria}; scores: {results}; sums {s_first:g} vs {s_second:g}"
        return self._judgment(request, p_first, p_tie, tally, raw=raw, verdict=("A=B", "A", "B")[_side(p_first, p_tie)])


def _side(p_first: float, p_tie: float) -> int:
    return 0 if p_tie == 1 else (1 if p_first == 1 else 2)


# ------------------------------------------------------------------------------------------------ CGCoT
_CGCOT_SYSTEM = "You analyse texts carefully and answer questions about them concisely."
_CGCOT_COMPARE = (
    "Below are analyses of two texts, Text A and Text B, with respect to the concept: {concept}. Based on these "
    "analyses, which text is more {concept}? The order of the texts must not influence you. Explain briefly, then "
    'end with exactly "[[A]]" if Text A is more {concept} or "[[B]]" if Text B is.'
)


class CGCoTJudge(ProtocolJudge):
    """Concept-Guided Chain-of-Thought: a concept breakdown of each text, then a pairwise comparison of breakdowns.

    Wu et al. (2023), "Concept-guided chain-of-thought prompting for pairwise comparison scaling of texts with
    large language models" (CGCoT). Each text is put through ``questions`` — researcher-written prompts about
    the concept, asked in order in one conversation (each may use ``{text}`` and ``{context}``) — and the
    answers form the text's *breakdown*. A pair is judged by asking which breakdown shows more of the ``concept``;
    the paper then places the texts on a scale with Bradley–Terry, which here is::

        selection = select("round_robin", CGCoTJudge(chat, concept=..., questions=[...]), Pool.single(texts))
        board = selection.leaderboard()   # Bradley–Terry over the pairwise verdicts

    A breakdown is made once per (context, text) (concurrent requests share it), and its cost is charged to the
    first judgment that needed it; behind a :class:`~pairkit.judges.CachedJudge` it is kept in the judgment cache
    file too, so a new run on that file does not pay for it again.

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: 'The first is better. [[A]]', chat_id='always-a')
    >>> from pairkit.judges import CGCoTJudge
    >>> judge = CGCoTJudge(chat, concept='optimism', questions=['How hopeful is this text? {text}'])
    >>> round(judge.judge('', 'Tomorrow will be great.', 'It will rain.').p_a, 3)
    1.0
    """

    protocol = "cgcot"

    def __init__(self, chat, *, concept: str, questions: Sequence[str], judge_id: str | None = None) -> None:
        super().__init__(chat, verdicts="binary", judge_id=judge_id)
        if not isinstance(concept, str) or not concept.strip():
            raise InputError(f"concept must be a non-empty string, got {concept!r}")
        if isinstance(questions, str) or not questions or not all(isinstance(q, str) and q for q in questions):
            raise InputError(f"questions must be a non-empty list of prompt strings, got {questions!r}")
        self.concept, self.questions = concept, tuple(questions)

    def settings(self) -> dict[str, Any]:
        return {"concept": self.concept, "questions": list(self.questions), "compare": _CGCOT_COMPARE}

    def calls_per_judgment(self) -> int:
        return 1 + 2 * len(self.questions)

    async def _chain(self, context: str, text: str) -> tuple[str, _Tally]:
        tally = _Tally()
        messages = [{"role": "system", "content": _CGCOT_SYSTEM}]
        answers = []
        for k, question in enumerate(self.questions):
            prompt = question.replace("{text}", text).replace("{context}", context)
            if k == 0 and "{text}" not in question:
                prompt = f"Text:\n{text}\n\n{prompt}"
            messages.append({"role": "user", "content": prompt})
            reply = await self._ask(tally, messages)
            messages.append({"role": "assistant", "content": reply.text})
            answers.append(reply.text.strip())
        return "\n".join(answers), tally

    async def breakdown(self, context: str, text: str) -> tuple[str, _Tally | None]:
        """The text's concept breakdown, and the calls it took if they were made for this request."""
        return await self._once("cgcot_breakdown", context, text, self._chain)

    async def _ajudge(self, request: Request) -> Judgment:
        (first, t1), (second, t2) = await asyncio.gather(
            self.breakdown(request.context, request.first), self.breakdown(request.context, request.second)
        )
        tally = _Tally()
        for t in (t1, t2):
            if t is not None:
                tally.merge(t)
        concept = self.concept
        messages = [
            {"role": "system", "content": _CGCOT_SYSTEM},
            {
                "role": "user",
                "content": _CGCOT_COMPARE.format(concept=concept)
                + f"\n\n[Analysis of Text A]\n{first}\n\n[Analysis of Text B]\n{second}",
            },
        ]
        p, t, w, label = await self._verdict(tally, messages)
        return self._judgment(request, p, t, tally, verdict=label, weight=w)


# -------------------------------------------------------------------------------------- few-shot retrieval
def _exemplar(row, k: int) -> tuple[str, str, str, str]:
    if isinstance(row, Mapping):
        if {"context", "chosen", "rejected"} <= set(row):
            return str(row["context"]), str(row["chosen"]), str(row["rejected"]), "a"
        if {"context", "a", "b", "winner"} <= set(row):
            winner = str(row["winner"]).lower()
            if winner not in ("a", "b", "tie"):
                raise InputError(f"exemplar {k}: winner must be 'a', 'b' or 'tie', got {row['winner']!r}")
            return str(row["context"]), str(row["a"]), str(row["b"]), winner
    raise InputError(f"exemplar {k}: expected {{context, chosen, rejected}} or {{context, a, b, winner}}, got {row!r}")


def retrieve_exemplars(
    query: str,
    contexts: Sequence[str],
    k: int,
    *,
    encoder: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> list[int]:
    """Indices of the ``k`` contexts most similar to ``query``, most similar first (ties: earlier first).

    Similarity is the token overlap (Jaccard of lower-cased word sets) or, with ``encoder`` (texts → (N, D)
    embeddings), the cosine of the embeddings.

    >>> from pairkit.judges import retrieve_exemplars
    >>> retrieve_exemplars('capital of france', ['capital of spain', 'boiling water', 'france food'], k=2)
    [0, 2]
    """
    if not len(contexts):
        return []
    if encoder is None:
        q = _tokens(query)
        sim = np.array([_overlap(q, _tokens(c)) for c in contexts])
    else:
        emb = np.asarray(encoder([query, *contexts]), dtype=float)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sim = emb[1:] @ emb[0]
    return [int(i) for i in np.argsort(-sim, kind="stable")[:k]]


class FewShotJudge(ProtocolJudge):
    """Pairwise judging with few-shot exemplars retrieved for each question from labelled preferences.

    Sinhababu et al. (2024), "Few-shot prompting for pairwise ranking: an effective non-parametric retrieval
    model": for a question, the ``k`` labelled comparisons whose questions are most similar to it
    (:func:`retrieve_exemplars`: token overlap, or cosine of ``encoder`` embeddings) are shown before it as
    solved examples — the same judge prompt, answered with the verdict — and then the pair itself is asked.
    Exemplars alternate which side is better (the winner shown first in even-numbered examples, second in odd
    ones) so that the examples teach no position. An exemplar identical to the request is not shown.

    Args:
        exemplars: rows ``{context, chosen, rejected}`` or ``{context, a, b, winner}`` (winner ``a``/``b``/``tie``).
        k: exemplars per prompt.
        template: the judge prompt (default ``"pairwise"``: exemplar answers are ``[[A]]``/``[[B]]``/``[[C]]``).

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: 'The first is better. [[A]]', chat_id='always-a')
    >>> from pairkit.judges import FewShotJudge
    >>> exemplars = [{'context': 'Capital of Spain?', 'chosen': 'Madrid.', 'rejected': 'Seville.'}]
    >>> round(FewShotJudge(chat, exemplars, k=1).judge('Capital of France?', 'Paris.', 'Lyon.').p_a, 3)
    1.0
    """

    protocol = "few_shot"

    @declare_options(Option("k", int, Interval(0, 50), doc="exemplars per prompt"))
    def __init__(
        self,
        chat,
        exemplars: Sequence[Mapping],
        *,
        k: int = 3,
        template: str | PromptTemplate = "pairwise",
        encoder: Callable[[Sequence[str]], np.ndarray] | None = None,
        verdicts: str | VerdictScale = "graded",
        judge_id: str | None = None,
    ) -> None:
        super().__init__(chat, verdicts=verdicts, judge_id=judge_id)
        self.exemplars = [_exemplar(row, i) for i, row in enumerate(exemplars, start=1)]
        self.k, self.template, self.encoder = k, _template(template), encoder

    def settings(self) -> dict[str, Any]:
        import hashlib
        import json

        pool = hashlib.sha256(json.dumps(self.exemplars).encode()).hexdigest()
        encoder = None if self.encoder is None else getattr(self.encoder, "__qualname__", type(self.encoder).__name__)
        return {"template": [self.template.system, self.template.user], "exemplars": pool, "k": self.k,
                "encoder": encoder}  # fmt: skip

    def messages(self, request: Request) -> list[dict]:
        """The few-shot conversation for ``request`` (system, k solved examples, then the question)."""
        t = self.template
        own = (request.context, request.first, request.second)
        pool = [e for e in self.exemplars if {e[1], e[2]} != {own[1], own[2]} or e[0] != own[0]]
        chosen = [
            pool[i] for i in retrieve_exemplars(request.context, [e[0] for e in pool], self.k, encoder=self.encoder)
        ]
        system, *rest = t.messages(*own, request.reference)
        out = [system]
        for n, (context, a, b, winner) in enumerate(chosen):
            if winner != "tie" and (winner == "a") != (n % 2 == 0):  # alternate the better answer's position
                a, b, winner = b, a, "b" if winner == "a" else "a"
            shown = t.messages(context, a, b, request.reference if t.needs_reference else None)[1]
            verdict = {"a": "[[A]]", "b": "[[B]]", "tie": "[[C]]"}[winner]
            if "A>>B" in t.system:
                verdict = {"a": "[[A>B]]", "b": "[[B>A]]", "tie": "[[A=B]]"}[winner]
            out += [shown, {"role": "assistant", "content": f"My final verdict is {verdict}"}]
        return out + rest

    async def _ajudge(self, request: Request) -> Judgment:
        tally = _Tally()
        p, t, w, label = await self._verdict(tally, self.messages(request))
        return self._judgment(request, p, t, tally, verdict=label, weight=w)


# ------------------------------------------------------------------------------------ simulated annotators
class SimulatedAnnotatorsJudge(ProtocolJudge):
    """Simulated Annotators: the judge answers as each of K annotators (few-shot on that annotator's own labels),
    and the K answers are averaged; the ensemble's top probability is the confidence Trust or Escalate calibrates.

    Jung, Brahman & Choi (2024), "Trust or Escalate: LLM judges with provable guarantees for human agreement":
    with :math:`p_k(y \\mid x)` the judge's verdict distribution when prompted with annotator *k*'s labelled
    examples,

    .. math::

        p(y \\mid x) = \\frac1K \\sum_{k=1}^{K} p_k(y \\mid x),\\qquad
        \\text{confidence}(x) = \\max_y p(y \\mid x),

    which is what :func:`~pairkit.judges.confidence` reads from the returned judgment, so an
    :class:`~pairkit.judges.EscalatingJudge` built on this judge escalates where the simulated annotators disagree
    (calibrate its threshold with :func:`~pairkit.judges.calibrate_threshold` on human labels, as usual). Each
    annotator is a :class:`FewShotJudge` over its rows (the ``k`` most similar questions); K calls per judgment.

    Args:
        annotators: one list of labelled rows per simulated annotator (the rows of :class:`FewShotJudge`).
        k: examples shown per annotator (None: all of that annotator's rows).

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: 'The first is better. [[A]]', chat_id='always-a')
    >>> from pairkit.judges import SimulatedAnnotatorsJudge
    >>> ann1 = [{'context': 'Capital of Spain?', 'chosen': 'Madrid.', 'rejected': 'Seville.'}]
    >>> ann2 = [{'context': 'Capital of Italy?', 'chosen': 'Rome.', 'rejected': 'Milan.'}]
    >>> round(SimulatedAnnotatorsJudge(chat, [ann1, ann2]).judge('Capital of France?', 'Paris.', 'Lyon.').p_a, 3)
    1.0
    """

    protocol = "simulated_annotators"

    def __init__(
        self,
        chat,
        annotators: Sequence[Sequence[Mapping]],
        *,
        k: int | None = None,
        template: str | PromptTemplate = "pairwise",
        verdicts: str | VerdictScale = "graded",
        judge_id: str | None = None,
    ) -> None:
        super().__init__(chat, verdicts=verdicts, judge_id=judge_id)
        if isinstance(annotators, (str, Mapping)) or len(annotators) < 2:
            raise InputError(f"annotators must list at least 2 annotators' labelled rows, got {annotators!r:.80}")
        self.members = [
            FewShotJudge(chat, rows, k=len(rows) if k is None else k, template=template, verdicts=verdicts)
            for rows in annotators
        ]

    def settings(self) -> dict[str, Any]:
        return {"annotators": [m.settings() for m in self.members]}

    def calls_per_judgment(self) -> int:
        return len(self.members)

    async def _ajudge(self, request: Request) -> Judgment:
        tally = _Tally()
        replies = await self._gather(tally, [self._ask(tally, m.messages(request)) for m in self.members])
        read = [self._read(r) for r in replies]
        if None in read:
            raise self._unparseable(tally, "verdict")
        p = sum(r[0] for r in read) / len(read)
        t = sum(r[1] for r in read) / len(read)
        w = sum(r[2] for r in read) / len(read)
        labels = "|".join(r[3] for r in read)
        return self._judgment(request, p, t, tally, verdict=labels, weight=w, raw=" || ".join(tally.texts))


# ------------------------------------------------------------------------------------------ PRD discussion
_DISCUSS = (
    "Another reviewer compared the same two answers and wrote:\n\n{other}\n\nDiscuss: point out what you agree or "
    "disagree with, keep or change your verdict, and end with your final verdict in the same form as before."
)


class DiscussionJudge(ProtocolJudge):
    """PRD peer discussion: two reviewers judge the pair, then read each other's review in turns until they agree.

    Li, Patel & Du (2023), "PRD: Peer rank and discussion improve large language model based evaluations" (peer
    discussion, beside the Peer Rank of :func:`pairkit.rating.fit_peer_rank`). Both reviewers (chat models, which
    may be the same model) first judge independently; while their verdicts differ and fewer than ``max_turns``
    discussion messages were written, the next reviewer (alternating, the first reviewer first) reads the other's
    latest message and answers with a possibly revised verdict. Agreed verdicts are returned; if they still
    differ after ``max_turns``, the two last verdicts are averaged (pairkit's rule; the paper reports the
    discussion's end state). Between 2 and 2 + ``max_turns`` calls per judgment.

    >>> from pairkit.judges import CallableChat
    >>> chat = CallableChat(lambda messages: 'The first is better. [[A]]', chat_id='always-a')
    >>> from pairkit.judges import DiscussionJudge
    >>> round(DiscussionJudge(chat).judge('Capital of France?', 'Paris.', 'Lyon.').p_a, 3)
    1.0
    """

    protocol = "prd_discussion"

    @declare_options(Option("max_turns", int, Interval(0, 20), doc="discussion messages at most"))
    def __init__(
        self,
        chat,
        other=None,
        *,
        max_turns: int = 4,
        template: str | PromptTemplate = "pairwise_graded",
        verdicts: str | VerdictScale = "graded",
        judge_id: str | None = None,
    ) -> None:
        super().__init__(chat, verdicts=verdicts, judge_id=judge_id)
        self.other = chat if other is None else other
        self._other_identity = chat_identity(self.other)
        self.max_turns, self.template = max_turns, _template(template)
        self.turns_used: list[int] = []

    def settings(self) -> dict[str, Any]:
        return {"other": self._other_identity, "max_turns": self.max_turns, "discuss": _DISCUSS,
                "template": [self.template.system, self.template.user]}  # fmt: skip

    def calls_per_judgment(self) -> int:
        return 2 + self.max_turns

    async def _ajudge(self, request: Request) -> Judgment:
        tally = _Tally()
        opening = self.template.messages(request.context, request.first, request.second, request.reference)
        talks = [list(opening), list(opening)]
        chats = [self.chat, self.other]

        async def speak(k: int) -> tuple:
            reply = await chats[k].acomplete(talks[k])
            tally.add(reply)
            talks[k].append({"role": "assistant", "content": reply.text})
            return self._read(reply), reply.text

        first = await self._gather(tally, [speak(0), speak(1)])
        verdicts, texts = [f[0] for f in first], [f[1] for f in first]
        if None in verdicts:
            raise self._unparseable(tally, "verdict")
        turn = 0
        while turn < self.max_turns and _winner(*verdicts[0][:2]) != _winner(*verdicts[1][:2]):
            k = turn % 2
            talks[k].append({"role": "user", "content": _DISCUSS.format(other=texts[1 - k])})
            verdicts[k], texts[k] = await speak(k)
            if verdicts[k] is None:
                raise self._unparseable(tally, "verdict in the discussion")
            turn += 1
        self.turns_used.append(turn)
        p = (verdicts[0][0] + verdicts[1][0]) / 2
        t = (verdicts[0][1] + verdicts[1][1]) / 2
        w = (verdicts[0][2] + verdicts[1][2]) / 2
        return self._judgment(request, p, t, tally, verdict=f"{verdicts[0][3]}|{verdicts[1][3]}", weight=w)


# ------------------------------------------------------------------------------------------ pointwise scores
_POINTWISE_SYSTEM = (
    "You are a fair and careful judge. Rate how well the AI assistant's answer below answers the user's question, "
    "on a scale from {low} (very poor) to {high} (excellent). Weigh how helpful, correct, relevant, deep and clear "
    "it is; its length must not influence you.{checklist} Explain briefly, then end with exactly "
    '"Rating: [[<n>]]".'
)
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def soft_rating(text: str, logprobs: Sequence[Mapping] | None, low: int, high: int) -> float | None:
    """The rating in ``[[n]]`` (the last one), as the expectation over the rating token's alternatives when the
    log-probs are given (InstUPR's soft score), else the number written; None without a rating in range.

    >>> import math
    >>> from pairkit.judges import soft_rating
    >>> soft_rating('Score: [[7]]', None, 1, 10)
    7.0
    >>> logprobs = [{'token': '[[', 'logprob': 0.0, 'top_logprobs': []},
    ...             {'token': '7', 'logprob': math.log(0.5),
    ...             'top_logprobs': [{'token': '7', 'logprob': math.log(.5)}, {'token': '9', 'logprob': math.log(.5)}]},
    ...             {'token': ']]', 'logprob': 0.0, 'top_logprobs': []}]
    >>> soft_rating('Score: [[7]]', logprobs, 1, 10)
    8.0
    """
    found = list(_RATING.finditer(text))
    if not found:
        return None
    value = float(found[-1].group(1))
    if not low <= value <= high:
        return None
    if not logprobs:
        return value
    tokens = [str(e.get("token", "")) for e in logprobs]
    joined = "".join(tokens)
    found = list(_RATING.finditer(joined))
    if not found:
        return value
    at, offset = found[-1].start(1), 0
    for entry, token in zip(logprobs, tokens):
        if offset <= at < offset + len(token):
            masses: dict[int, float] = {}
            for alt in entry.get("top_logprobs") or [{"token": token, "logprob": entry.get("logprob", 0.0)}]:
                word = str(alt.get("token", "")).strip().lstrip("[")
                lp = alt.get("logprob")
                if word.isdigit() and low <= int(word) <= high and isinstance(lp, (int, float)) and math.isfinite(lp):
                    masses[int(word)] = masses.get(int(word), 0.0) + math.exp(lp)
            total = sum(masses.values())
            if total > 0 and str(int(value)) == token.strip().lstrip("["):  # single-token ratings only
                return sum(r * m for r, m in masses.items()) / total
            return value
        offset += len(token)
    return value


class PointwiseJudge(ProtocolJudge):
    """Each answer rated alone (optionally against a checklist); pairs compared by their ratings.

    WB-Score (Lin et al. 2024, "WildBench"): the judge rates each answer from 1 to 10 after checking it against a
    per-task ``checklist``. InstUPR (Huang & Chen 2024, "InstUPR: instruction-based unsupervised passage reranking
    with large language models"): the rating is *soft*, the expectation over the rating token's probabilities,

    .. math::

        s(x, y) = \\sum_{r=\\text{low}}^{\\text{high}} r\\, p(r \\mid x, y),\\qquad
        p_a = \\sigma\\big((s(x, y_a) - s(x, y_b)) / \\tau\\big),

    (:func:`soft_rating`; with a chat model that returns log-probs, else the written rating). An answer is rated
    once per (question, answer) — in this process, and behind a :class:`~pairkit.judges.CachedJudge` in its cache
    file across runs — so n answers cost n calls however many pairs are judged; the order shown cannot
    matter. :func:`pointwise_shortlist` ranks a pool by rating — the first stage before a
    pairwise rerank (``duo_rerank``), as InstUPR and Expando-Mono-Duo do.

    >>> from pairkit.judges import CallableChat, PointwiseJudge
    >>> def rate(messages):
    ...     return '[[8]]' if 'Paris' in messages[-1]['content'] else '[[3]]'
    >>> chat = CallableChat(rate, chat_id='rater')
    >>> round(PointwiseJudge(chat).judge('Capital of France?', 'Paris.', 'Lyon.').p_a, 3)
    0.993
    """

    protocol = "pointwise"

    @declare_options(
        Option("low", int, Interval(0, None), doc="lowest rating"),
        Option("high", int, Interval(1, None), doc="highest rating"),
        Option("temperature", float, Interval(0, None, closed="neither"), doc="τ of the logistic link"),
    )
    def __init__(
        self,
        chat,
        *,
        checklist: Sequence[str] | None = None,
        low: int = 1,
        high: int = 10,
        temperature: float = 1.0,
        judge_id: str | None = None,
    ) -> None:
        super().__init__(chat, verdicts="binary", judge_id=judge_id)
        if high <= low:
            raise InputError(f"high must be greater than low, got low={low}, high={high}")
        if checklist is not None and (isinstance(checklist, str) or not all(isinstance(c, str) for c in checklist)):
            raise InputError(f"checklist must be a list of questions, got {checklist!r}")
        self.checklist = tuple(checklist or ())
        self.low, self.high, self.temperature = low, high, temperature

    def settings(self) -> dict[str, Any]:
        return {"system": _POINTWISE_SYSTEM, "checklist": list(self.checklist), "low": self.low, "high": self.high,
                "temperature": self.temperature}  # fmt: skip

    def calls_per_judgment(self) -> int:
        return 2

    def rating_messages(self, context: str, answer: str) -> list[dict]:
        checklist = ""
        if self.checklist:
            checklist = " Check the answer against this checklist first:\n" + "\n".join(
                f"- {c}" for c in self.checklist
            )
        user = (
            f"[User Question]\n{context}\n\n[The Start of Assistant's Answer]\n{answer}\n"
            "[The End of Assistant's Answer]"
        )
        return [
            {"role": "system", "content": _POINTWISE_SYSTEM.format(low=self.low, high=self.high, checklist=checklist)},
            {"role": "user", "content": user},
        ]

    async def _rate(self, context: str, answer: str) -> tuple[float, _Tally]:
        tally = _Tally()
        reply = await self._ask(tally, self.rating_messages(context, answer))
        score = soft_rating(reply.text, reply.logprobs, self.low, self.high)
        if score is None:
            raise self._unparseable(tally, f"rating [[{self.low}..{self.high}]]")
        return score, tally

    async def rating(self, context: str, answer: str) -> tuple[float, _Tally | None]:
        """The answer's rating, and the call it took if it was made for this request."""
        return await self._once("pointwise_rating", context, answer, self._rate)

    async def _ajudge(self, request: Request) -> Judgment:
        tally = _Tally()
        results = await self._gather(
            tally, [self.rating(request.context, request.a), self.rating(request.context, request.b)]
        )
        for _, t in results:
            if t is not None:
                tally.merge(t)
        (sa, _), (sb, _) = results
        p_a = 1.0 / (1.0 + math.exp(-(sa - sb) / self.temperature))
        raw = f"rating(a)={sa:.3f} rating(b)={sb:.3f}"
        shown = p_a if request.order == "ab" else 1.0 - p_a
        return self._judgment(request, shown, 0.0, tally, raw=raw)


def pointwise_shortlist(judge: PointwiseJudge, pool, depth: int, *, context: int = 0) -> list[int]:
    """The ``depth`` best items of ``pool`` in ``context`` by their ratings, best first (n calls) — pass it as
    ``shortlist`` to ``select("duo_rerank", …)``.

    >>> from pairkit.judges import CallableChat, PointwiseJudge, pointwise_shortlist
    >>> from pairkit.select import Pool
    >>> def rate(messages):
    ...     return '[[9]]' if 'Paris' in messages[-1]['content'] else '[[2]]'
    ...
    >>> pool = Pool.single(['Lyon.', 'Paris.', 'Nice.'], context='Capital of France?')
    >>> pointwise_shortlist(PointwiseJudge(CallableChat(rate, chat_id='rater')), pool, depth=1)
    [1]
    """
    from pairkit.judges.base import run_sync

    if not (isinstance(depth, int) and depth >= 1):
        raise InputError(f"depth must be an integer >= 1, got {depth!r}")
    items = [int(i) for i in pool.present(context)]

    async def rate_all():
        return await asyncio.gather(*(judge.rating(pool.context_text[context], pool.text[context][i]) for i in items))

    scores = np.array([s for s, _ in run_sync(rate_all())])
    return [items[k] for k in np.argsort(-scores, kind="stable")[:depth]]


# ------------------------------------------------------------------------------------------------- listwise
_LISTWISE_SYSTEM = {
    "rank": (
        "You are a fair and careful judge. Below are {k} AI assistants' answers to the user's question, numbered "
        "[1] to [{k}]. Rank them from the best answer to the worst; their order, length and numbers must not "
        'influence you. Explain briefly, then end with the full ranking in exactly this form: "Ranking: [2] > [1] '
        '> [3]" (every number once).'
    ),
    "best": (
        "You are a fair and careful judge. Below are {k} AI assistants' answers to the user's question, numbered "
        "[1] to [{k}]. Which one answers it best? Their order, length and numbers must not influence you. Explain "
        'briefly, then end with exactly "Best: [n]".'
    ),
}
_LISTWISE_MARK = "\x00listwise"
def break_ranking(order: Sequence[int], *, mode: str = "rank") -> tuple[np.ndarray, float]:
    """The pairwise decisions one listwise or setwise answer implies, and the weight each carries.

    ``order``: the K candidates, best first. ``mode="rank"`` (a full ranking): all K(K − 1)/2 pairs (full
    breaking); ``mode="best"`` (only the best was chosen): the best against each of the K − 1 others. Returns
    ``(pairs, w)``, pairs an (m, 2) array of (winner, loser).

    Fitting Bradley–Terry to the broken pairs is a composite likelihood: consistent under Plackett–Luce (Azari
    Soufiani, Parkes & Xia 2014, "Computing parametric ranking models via rank-breaking"), but its pairs come
    from one draw, so counting each as an independent comparison makes the Fisher intervals too narrow. The
    weight ``w`` makes the weighted Fisher information equal the composite likelihood's sandwich
    (Godambe) information :math:`H J^{-1} H` at equal strengths (Varin, Reid & Firth 2011, "An overview of
    composite likelihood methods"), where H and J are the expected Hessian and score variance of one answer's
    broken log-likelihood, both proportional to the centring projection :math:`P = I - \\mathbf{1}\\mathbf{1}^\\top/K`:

    .. math::

        \\text{rank:}\\quad H = \\tfrac{K}{4} P,\\quad J = \\tfrac{K(K+1)}{12} P,\\quad w = \\frac{3}{K+1};
        \\qquad
        \\text{best:}\\quad H = \\tfrac{1}{2} P,\\quad J = \\tfrac{K}{4} P,\\quad w = \\frac{2}{K}.

    (J for a ranking is the covariance of the items' win counts under a uniformly random permutation.) Both give
    w = 1 at K = 2. A K-ranking then counts as 3K(K − 1)/(2(K + 1)) comparisons (3.6 for K = 4, against K − 1 = 3
    independent ones and K(K − 1)/2 = 6 unweighted); with unequal strengths the weight is an approximation whose
    coverage is checked by simulation in the tests.

    >>> from pairkit.judges import break_ranking
    >>> pairs, w = break_ranking([2, 0, 1])
    >>> pairs.tolist(), w
    ([[2, 0], [2, 1], [0, 1]], 0.75)
    >>> break_ranking([2, 0, 1], mode="best")[0].tolist()
    [[2, 0], [2, 1]]
    """
    ranked = np.asarray(order, dtype=np.int64)
    k = len(ranked)
    if k < 2 or ranked.ndim != 1:
        raise InputError(f"a ranking to break needs at least 2 candidates, got {list(order)!r}")
    if mode == "best":
        return np.stack([np.full(k - 1, ranked[0]), ranked[1:]], axis=1), 2.0 / k
    if mode != "rank":
        raise InputError(f"mode must be 'rank' or 'best', got {mode!r}")
    i, j = np.triu_indices(k, 1)
    return np.stack([ranked[i], ranked[j]], axis=1), 3.0 / (k + 1)


_NUMBERED = re.compile(r"\[(\d+)\]")


class ListwiseJudge(ProtocolJudge):
    """k answers per call: a full ranking (RankGPT-style listwise) or the best one (setwise "which is best").

    Sun et al. (2023), "Is ChatGPT good at search? Investigating large language models as re-ranking agents"
    (RankGPT: the permutation ``[2] > [1] > [3]``; numbers the reply leaves out are appended in the order shown,
    and counted in the judgment's ``raw``); Zhuang et al. (2024), "A setwise approach for effective and highly
    efficient zero-shot ranking with large language models" (``mode="best"``). A call is a
    :class:`~pairkit.judges.Request` built by :meth:`request` (the candidates travel in it, so the judgment cache,
    budgets and claims apply as to any judge); the order it returns is read with :meth:`order`. Selection
    strategies (``listwise``) break each answer into pairwise decisions — every pair of a ranking
    (``"rank"``: full breaking) or the best against each other (``"best"``) — which keeps Bradley–Terry's
    estimates consistent under Plackett–Luce (Azari Soufiani, Parkes & Xia 2014, "Computing parametric ranking
    models via rank-breaking"). The pairs of one call are not independent; :func:`break_ranking` gives each the
    weight that makes the Bradley–Terry intervals as wide as the call's information allows.

    >>> from pairkit.judges import CallableChat, ListwiseJudge
    >>> judge = ListwiseJudge(CallableChat(lambda messages: '[2] > [3] > [1]', chat_id='ranker'))
    >>> request = judge.request('Capital of France?', ['Lyon.', 'Paris.', 'Nice.'])
    >>> judge.order(judge.judge_many([request])[0])
    [1, 2, 0]
    """

    protocol = "listwise"

    def __init__(self, chat, *, mode: str = "rank", judge_id: str | None = None) -> None:
        super().__init__(chat, verdicts="binary", judge_id=judge_id)
        if mode not in _LISTWISE_SYSTEM:
            raise InputError(f"mode must be 'rank' or 'best', got {mode!r}")
        self.mode = mode

    def settings(self) -> dict[str, Any]:
        return {"mode": self.mode, "system": _LISTWISE_SYSTEM[self.mode]}

    @staticmethod
    def request(context: str, candidates: Sequence[str], reference: str | None = None) -> Request:
        """The request asking to rank ``candidates`` (at least 2) for ``context``."""
        if len(candidates) < 2:
            raise InputError(f"a listwise call needs at least 2 candidates, got {len(candidates)}")
        import json

        return Request(context, json.dumps(list(candidates), ensure_ascii=False), _LISTWISE_MARK, reference=reference)

    @staticmethod
    def order(judgment: Judgment) -> list[int]:
        """The candidates' positions (0-based), best first, from a judgment this judge returned."""
        return [int(x) for x in judgment.verdict.split(">")]

    def messages(self, context: str, candidates: Sequence[str]) -> list[dict]:
        k = len(candidates)
        blocks = [f"[User Question]\n{context}"]
        blocks += [f"[{i}]\n{text}" for i, text in enumerate(candidates, start=1)]
        return [
            {"role": "system", "content": _LISTWISE_SYSTEM[self.mode].format(k=k)},
            {"role": "user", "content": "\n\n".join(blocks)},
        ]

    def parse(self, text: str, k: int) -> tuple[list[int], int] | None:
        """(positions best first, how many were missing and appended) from a reply, or None without a number."""
        marker = "Ranking:" if self.mode == "rank" else "Best:"
        tail = text[text.rfind(marker) :] if marker in text else text
        seen = list(dict.fromkeys(int(n) - 1 for n in _NUMBERED.findall(tail) if 1 <= int(n) <= k))
        if not seen:
            return None
        if self.mode == "best":
            seen = seen[-1:]
        missing = [i for i in range(k) if i not in seen]
        return seen + missing, len(missing) if self.mode == "rank" else 0

    async def _ajudge(self, request: Request) -> Judgment:
        import json

        if request.b != _LISTWISE_MARK or request.order != "ab":
            raise InputError("ListwiseJudge answers listwise requests (ListwiseJudge.request), not pairs")
        candidates = json.loads(request.a)
        tally = _Tally()
        reply = await self._ask(tally, self.messages(request.context, candidates))
        parsed = self.parse(reply.text, len(candidates))
        if parsed is None:
            raise self._unparseable(tally, "ranking" if self.mode == "rank" else "best answer")
        order, missing = parsed
        raw = reply.text if not missing else f"{reply.text}\n[pairkit: {missing} number(s) missing, appended]"
        return self._judgment(request, 0.5, 0.0, tally, raw=raw, verdict=">".join(map(str, order)))
