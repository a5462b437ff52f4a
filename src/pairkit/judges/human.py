"""A human judge at the terminal: shows the prompt and both answers, reads one key, can undo."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TextIO

from pairkit._spec import Interval, Option, declare_options
from pairkit.judges.base import ComparatorBase, JudgeError, Judgment, Request

__all__ = ["HumanJudge"]

KEYS = {"1": "A", "a": "A", "2": "B", "b": "B", "t": "tie", "=": "tie", "0": "tie"}
HELP = "[1/a] first is better   [2/b] second is better   [t/=] tie   [u] undo previous   [q] quit"


@dataclass
class _Asked:
    request: Request
    judgment: Judgment


class HumanJudge(ComparatorBase):
    """Ask a person. Requests are shown one at a time even when a strategy sends a batch.

    ``u`` re-asks the previous comparison; the corrected judgment replaces it in :attr:`history` and is listed
    in :attr:`corrections` (a judgment already used by a strategy is not recalled — re-run the strategy on a
    cache to apply corrections). ``q`` stops with :class:`JudgeError`. Streams are injectable for tests.

    >>> import io
    >>> from pairkit.judges import HumanJudge
    >>> judge = HumanJudge(input=io.StringIO('a' + chr(10)), output=io.StringIO())
    >>> judge.judge('Capital of France?', 'Paris.', 'Lyon.').winner
    'a'
    """

    prompt_version = "human-v1"

    @declare_options(
        Option("width", int, Interval(20, None), doc="columns of the terminal display"),
        Option("judge_id", str, doc="the name recorded with each judgment"),
    )
    def __init__(
        self, *, input: TextIO | None = None, output: TextIO | None = None, judge_id: str = "human", width: int = 100
    ) -> None:
        super().__init__()
        self.input, self.output = input or sys.stdin, output or sys.stdout
        self.judge_id, self.width = judge_id, width
        self.history: list[_Asked] = []
        self.corrections: list[tuple[Request, Judgment, Judgment]] = []
        self._lock: asyncio.Lock | None = None

    def _show(self, request: Request, note: str = "") -> None:
        rule = "─" * self.width
        w = self.output.write
        w(f"{rule}\n{note}PROMPT:\n{request.context}\n")
        if request.reference:
            w(f"\nREFERENCE:\n{request.reference}\n")
        w(f"\n[1] FIRST ANSWER:\n{request.first}\n\n[2] SECOND ANSWER:\n{request.second}\n{rule}\n{HELP}\n> ")
        self.output.flush()

    def _read(self, allow_undo: bool) -> str:
        while True:
            line = self.input.readline()
            if not line:
                raise JudgeError("human judge: input closed")
            key = line.strip().lower()[:1]
            if key in KEYS or key == "q" or (key == "u" and allow_undo):
                return key
            self.output.write(f"unrecognised key {line.strip()!r}; {HELP}\n> ")
            self.output.flush()

    def _ask(self, request: Request) -> Judgment:
        while True:
            self._show(request)
            key = self._read(allow_undo=bool(self.history))
            if key == "q":
                raise JudgeError("human judge quit")
            if key != "u":
                break
            previous = self.history[-1]
            self._show(previous.request, note="UNDO — judging the previous pair again\n")
            again = self._read(allow_undo=False)
            if again == "q":
                raise JudgeError("human judge quit")
            fixed = self._judgment(previous.request, KEYS[again])
            self.corrections.append((previous.request, previous.judgment, fixed))
            previous.judgment = fixed
        judgment = self._judgment(request, KEYS[key])
        self.history.append(_Asked(request, judgment))
        return judgment

    def _judgment(self, request: Request, label: str) -> Judgment:
        shown = Judgment(
            p_a=float(label == "A"), p_tie=float(label == "tie"), verdict=label, raw=label, judge=self.judge_id
        )
        return shown if request.order == "ab" else shown.swapped()

    async def _ajudge(self, request: Request) -> Judgment:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await asyncio.to_thread(self._ask, request)
