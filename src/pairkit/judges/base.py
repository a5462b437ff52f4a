"""The comparator interface: one question ("for this context, is A better than B?"), one answer (a Judgment).

Every judge — a Python function, a simulated judge, an HTTP LLM judge, a local model, a human at the terminal —
implements the async ``Comparator.ajudge`` on a :class:`Request`; :class:`ComparatorBase` adds the sync,
batched and cost-accounting conveniences on top, so selection strategies can send each round's independent
comparisons concurrently with :meth:`ComparatorBase.ajudge_many`.

A request names which side is *shown first* (``order="ab"``: ``a`` first; ``"ba"``: ``b`` first). Judgments are
always reported from ``a``'s point of view (``p_a`` = probability ``a`` is better), whatever the order shown, so
position bias shows up as a disagreement between the two orders and never leaks into the bookkeeping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from pairkit.errors import InputError, PairkitError

__all__ = [
    "BudgetExhausted",
    "CallableJudge",
    "Comparator",
    "ComparatorBase",
    "JudgeError",
    "Judgment",
    "Request",
    "Usage",
    "run_sync",
]

Order = Literal["ab", "ba"]


class JudgeError(PairkitError, RuntimeError):
    """A judge could not answer a request (after its retries); the message says what failed.

    >>> from pairkit.errors import PairkitError
    >>> from pairkit.judges import JudgeError
    >>> issubclass(JudgeError, PairkitError)
    True
    """


class BudgetExhausted(PairkitError, RuntimeError):
    """The call or money budget does not allow another paid judge call.

    >>> from pairkit.judges import BudgetExhausted
    >>> [c.__name__ for c in BudgetExhausted.__mro__[1:3]]
    ['PairkitError', 'RuntimeError']
    """


@dataclass(frozen=True)
class Request:
    """One pairwise question: in ``context`` (the prompt), is answer ``a`` better than answer ``b``?

    ``order`` says which answer is shown first (``"ab"`` or ``"ba"``); ``reference`` is an optional reference
    answer that reference-guided judges show alongside; ``sample`` numbers repeated asks of the same prompt
    (a new sample from a stochastic judge is a new cache entry).

    >>> from pairkit.judges import Request
    >>> request = Request('Capital of France?', 'Paris.', 'Lyon.')
    >>> request.order, request.first, request.second
    ('ab', 'Paris.', 'Lyon.')
    """

    context: str
    a: str
    b: str
    order: Order = "ab"
    reference: str | None = None
    sample: int = 0

    def __post_init__(self) -> None:
        if self.order not in ("ab", "ba"):
            raise InputError(f"Request.order must be 'ab' or 'ba', got {self.order!r}")

    @property
    def first(self) -> str:
        return self.a if self.order == "ab" else self.b

    @property
    def second(self) -> str:
        return self.b if self.order == "ab" else self.a

    def reversed(self) -> Request:
        """The same pair shown in the other order."""
        return replace(self, order="ba" if self.order == "ab" else "ab")


@dataclass(frozen=True)
class Judgment:
    """A judge's answer about ``a`` versus ``b``.

    ``p_a`` is the probability that ``a`` is better, ``p_tie`` that they are equally good (``p_b = 1 - p_a -
    p_tie``); a hard verdict is a one-hot probability. ``order`` is the order that was shown, ``verdict`` the
    parsed label (``"A"``, ``"B"``, ``"tie"``, ``"A>B"``, … in shown-position terms), ``raw`` the judge's text,
    ``cost`` the money spent on this judgment (all paid attempts), ``cached`` whether it came from a cache,
    ``weight`` how many games it counts as (Arena-Hard counts a strong verdict such as ``A>>B`` three times).

    >>> from pairkit.judges import Judgment
    >>> judgment = Judgment(p_a=0.7, p_tie=0.2)
    >>> judgment.winner, round(judgment.p_b, 3)
    ('a', 0.1)
    """

    p_a: float
    p_tie: float = 0.0
    order: Order = "ab"
    raw: str = ""
    verdict: str = ""
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    n_calls: int = 1
    cached: bool = False
    judge: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        ok = 0.0 <= self.p_a <= 1.0 + 1e-9 and 0.0 <= self.p_tie <= 1.0 + 1e-9 and self.p_a + self.p_tie <= 1 + 1e-9
        if not (self.weight >= 0 and self.weight < float("inf")):
            raise InputError(f"Judgment.weight must be a finite number >= 0, got {self.weight!r}")
        if not ok:
            raise InputError(
                f"Judgment probabilities must satisfy 0 <= p_a, p_tie and p_a + p_tie <= 1, got "
                f"p_a={self.p_a!r}, p_tie={self.p_tie!r}"
            )

    @property
    def p_b(self) -> float:
        return max(0.0, 1.0 - self.p_a - self.p_tie)

    @property
    def score(self) -> float:
        """Expected score of ``a`` with ties as half a win: ``p_a + p_tie / 2``."""
        return self.p_a + 0.5 * self.p_tie

    @property
    def first_score(self) -> float:
        """Expected score of the answer shown first (position-bias diagnostics)."""
        return self.score if self.order == "ab" else 1.0 - self.score

    @property
    def winner(self) -> str:
        """``"a"``, ``"b"`` or ``"tie"``: the most probable outcome (ties when p_a = p_b)."""
        if self.p_tie >= max(self.p_a, self.p_b) or self.p_a == self.p_b:
            return "tie"
        return "a" if self.p_a > self.p_b else "b"

    def swapped(self) -> Judgment:
        """The same judgment with the roles of ``a`` and ``b`` exchanged (the shown order follows)."""
        return replace(self, p_a=self.p_b, order="ba" if self.order == "ab" else "ab")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Usage:
    """Running totals of a judge's paid calls, tokens, money and failures (by kind).

    >>> from pairkit.judges import CallableJudge
    >>> judge = CallableJudge(lambda context, a, b: 1.0, judge_id='first')
    >>> _ = judge.judge('q', 'x', 'y')
    >>> judge.usage.calls
    1
    """

    calls: int = 0
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, judgment: Judgment) -> None:
        self.calls += judgment.n_calls
        self.cost += judgment.cost
        self.prompt_tokens += judgment.prompt_tokens
        self.completion_tokens += judgment.completion_tokens

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


@runtime_checkable
class Comparator(Protocol):
    """Anything that answers a :class:`Request` with a :class:`Judgment`.

    ``judge_id`` and ``prompt_version`` identify the judge in caches: change ``prompt_version`` whenever the
    prompt or parsing changes, so cached judgments of the old prompt are not reused.

    >>> from pairkit.judges import CallableJudge, Comparator
    >>> isinstance(CallableJudge(lambda context, a, b: 1.0, judge_id='first'), Comparator)
    True
    """

    judge_id: str
    prompt_version: str

    async def ajudge(self, request: Request) -> Judgment: ...


def run_sync(coro):
    """Run a coroutine to completion from synchronous code (not from inside a running event loop).

    >>> from pairkit.judges import run_sync
    >>> async def answer():
    ...     return 42
    >>> run_sync(answer())
    42
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise JudgeError(
        "called a synchronous judge method inside a running event loop; await the async method "
        "(ajudge / ajudge_many) instead"
    )


class ComparatorBase:
    """Sync, batched and accounting helpers around a subclass's ``_ajudge`` (the one method to write).

    >>> from pairkit.judges import ComparatorBase, Judgment
    >>> class Longer(ComparatorBase):
    ...     judge_id, prompt_version = 'longer', '1'
    ...     async def _ajudge(self, request):
    ...         return Judgment(p_a=float(len(request.first) > len(request.second)), order=request.order)
    ...
    >>> Longer().judge('q', 'a long answer', 'short').winner
    'a'
    """

    judge_id: str = "judge"
    prompt_version: str = "v1"
    priced: bool = False  # whether calls cost money (a money budget needs a judge that reports costs)

    def __init__(self) -> None:
        self.usage = Usage()

    async def _ajudge(self, request: Request) -> Judgment:  # pragma: no cover - abstract
        raise NotImplementedError

    async def ajudge(self, request: Request) -> Judgment:
        judgment = await self._ajudge(request)
        judgment = replace(judgment, order=request.order, judge=judgment.judge or self.judge_id)
        self.usage.add(judgment)
        return judgment

    async def ajudge_many(self, requests: Iterable[Request]) -> list[Judgment]:
        """Judge independent requests concurrently (each judge bounds its own concurrency)."""
        return list(await asyncio.gather(*(self.ajudge(r) for r in requests)))

    def judge(self, context: str, a: str, b: str, *, order: Order = "ab", reference: str | None = None) -> Judgment:
        """Synchronous single judgment."""
        return run_sync(self.ajudge(Request(context, a, b, order, reference)))

    def judge_many(self, requests: Sequence[Request]) -> list[Judgment]:
        """Synchronous batch: all requests go out concurrently."""
        return run_sync(self.ajudge_many(requests))

    def estimate_cost(self, request: Request) -> float:
        """Expected money cost of one call on ``request`` (0 unless the judge has a price table)."""
        return 0.0


def _as_judgment(value: Any, source: str) -> Judgment:
    if isinstance(value, Judgment):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Judgment(p_a=float(value[0]), p_tie=float(value[1]))
    if isinstance(value, (bool, int, float)):
        p = float(value)
        if not 0.0 <= p <= 1.0:
            raise InputError(f"{source} returned {value!r}; return a probability in [0, 1] that a is better")
        return Judgment(p_a=p)
    raise InputError(
        f"{source} returned {type(value).__name__} {value!r}; return a bool, a probability, "
        "a (p_a, p_tie) tuple or a Judgment"
    )


class CallableJudge(ComparatorBase):
    """A Python function ``fn(context, first, second) -> bool | p_first | (p_first, p_tie) | Judgment``.

    The function sees the answers in the order shown (so a biased function shows its bias) and answers for
    the *first* one; sync and ``async def`` functions both work. ``priced=True`` when the function returns
    Judgments with a ``cost`` (so a money budget can apply).

    Example:

        >>> from pairkit.judges import CallableJudge
        >>> longer = CallableJudge(lambda context, a, b: 1.0 if len(a) > len(b) else 0.0, judge_id='longer')
        >>> print(longer.judge('Say hi.', 'Hello there!', 'Hi').winner)
        a
    """

    def __init__(
        self, fn: Callable, *, judge_id: str | None = None, prompt_version: str = "v1", priced: bool = False
    ) -> None:
        super().__init__()
        self.priced = priced or type(self).priced
        if not callable(fn):
            raise InputError(f"CallableJudge needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.judge_id = judge_id or getattr(fn, "__name__", "callable")
        self.prompt_version = prompt_version

    async def _ajudge(self, request: Request) -> Judgment:
        out = self.fn(request.context, request.first, request.second)
        if inspect.isawaitable(out):
            out = await out
        shown = replace(_as_judgment(out, f"judge function {self.judge_id!r}"), order="ab")
        return shown if request.order == "ab" else shown.swapped()


class MicroBatched:
    """Mixin: requests arriving in the same event-loop turn (a strategy's round, sent through caches and gathers
    one by one) are judged together by the subclass's ``async _batch(requests)``, which returns one judgment —
    or one exception — per request."""

    async def _batch(self, requests: list[Request]) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _ajudge(self, request: Request) -> Judgment:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self.__dict__.setdefault("_pending", [])
        pending.append((request, future))
        if len(pending) == 1:
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        return await future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            out = await self._batch([r for r, _ in batch])
        except BaseException as exc:  # every waiter sees the failure
            out = [exc] * len(batch)
        for (_, future), result in zip(batch, out):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
