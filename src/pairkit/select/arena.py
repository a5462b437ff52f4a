"""Candidates, the comparison arena (position policies, records) and a strategy's result.

A :class:`Pool` holds candidate answers: ``text[c, i]`` is item ``i``'s answer in context ``c`` (a prompt).
An :class:`Arena` sends batches of comparisons ``(c, i, j)`` to a comparator under a *position policy*:

* ``"random"``: one call, the order shown drawn at random;
* ``"both_average"``: both orders, the two probabilities averaged (Zheng et al. 2023, "Judging LLM-as-a-judge
  with MT-Bench and Chatbot Arena");
* ``"both_conflict_tie"``: both orders, and a verdict that flips with the order counts as a tie (Zheng et al.
  2023, the conservative swap rule);
* ``"estimate"``: one call in a random order, and the position effect is estimated in aggregation
  (:func:`pairkit.rating.fit_order_advantage`).

An optional length rule (WildBench, Lin et al. 2024, "WildBench: benchmarking LLMs with challenging tasks from
real users in the wild") turns a narrow win by a much longer answer into a tie.

Strategies return a :class:`Selection`: its judgments become :class:`~pairkit.data.Comparisons` for
:func:`~pairkit.rating.fit_bradley_terry`, and export as preference pairs ``{prompt, chosen, rejected}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pairkit._spec import Interval, Option
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.judges.base import BudgetExhausted, Judgment, Request

__all__ = ["POLICIES", "Arena", "Pool", "Record", "Selection", "apply_length_rule", "position_stats"]

POLICIES = ("random", "both_average", "both_conflict_tie", "estimate")


@dataclass(frozen=True)
class Pool:
    """Candidate answers: ``text[c][i]`` is item ``i``'s answer in context ``c`` (``None`` if it has none).

    >>> from pairkit.select import Pool
    >>> pool = Pool.single({"m1": "Paris.", "m2": "Lyon."}, context="Capital of France?")
    >>> pool.items, pool.n_items
    (('m1', 'm2'), 2)
    """

    items: tuple[str, ...]
    contexts: tuple[str, ...]
    context_text: tuple[str, ...]
    text: tuple[tuple[str | None, ...], ...]
    references: tuple[str | None, ...] | None = None

    @classmethod
    def single(
        cls, answers: Mapping[str, str] | Sequence[str], *, context: str = "", reference: str | None = None
    ) -> Pool:
        """One context; ``answers`` maps item id → answer text (a plain list: the texts are the ids)."""
        if not isinstance(answers, Mapping):
            answers = {str(t): str(t) for t in answers}
        if len(answers) < 2:
            raise InputError(f"a pool needs at least 2 candidates, got {len(answers)}")
        return cls(tuple(answers), ("0",), (context,), (tuple(answers.values()),), (reference,))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], *, source: str = "candidates") -> Pool:
        """Rows ``{context_id, candidate_id, text}`` (optional ``context``: the prompt text, ``reference``)."""
        items: dict[str, int] = {}
        ctx: dict[str, int] = {}
        ctx_text: list[str] = []
        refs: list[str | None] = []
        cells: dict[tuple[int, int], str] = {}
        for row_no, row in enumerate(records, start=1):
            for col in ("context_id", "candidate_id", "text"):
                if col not in row or row[col] is None:
                    raise InputError(
                        f"{source}, row {row_no}: missing {col!r}; each row needs context_id, candidate_id and text"
                    )
            c = ctx.setdefault(str(row["context_id"]), len(ctx))
            if c == len(ctx_text):
                ctx_text.append(str(row.get("context", row["context_id"])))
                refs.append(row.get("reference"))
            i = items.setdefault(str(row["candidate_id"]), len(items))
            if (c, i) in cells:
                raise InputError(
                    f"{source}, row {row_no}: candidate {row['candidate_id']!r} appears twice in "
                    f"context {row['context_id']!r}; keep one answer per candidate and context"
                )
            cells[(c, i)] = str(row["text"])
        if len(items) < 2:
            raise InputError(f"{source}: need at least 2 candidates, found {len(items)}")
        text = tuple(tuple(cells.get((c, i)) for i in range(len(items))) for c in range(len(ctx)))
        return cls(tuple(items), tuple(ctx), tuple(ctx_text), text, tuple(refs))

    @property
    def n_items(self) -> int:
        return len(self.items)

    def present(self, c: int) -> np.ndarray:
        """Indices of the items with an answer in context ``c``."""
        return np.array([i for i, t in enumerate(self.text[c]) if t is not None], dtype=np.int64)


@dataclass
class Record:
    """One judge call: items ``a`` and ``b`` (indices) in context ``context`` and the judgment.

    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Pool, select
    >>> run = select("round_robin", SimulatedJudge({"a": 2.0, "b": 0.0}, seed=0), Pool.single(["a", "b"]))
    >>> record = run.records[0]
    >>> record.context, record.a, record.b, round(record.judgment.p_a, 3)
    (0, 0, 1, 1.0)
    """

    context: int
    a: int
    b: int
    judgment: Judgment


def apply_length_rule(score: float, len_a: int, len_b: int, *, k_chars: int, narrow: float) -> float:
    """WildBench's length penalty: a win within ``narrow`` of a tie by an answer longer by > ``k_chars`` → tie.

    .. math::

        |s - \\tfrac12| \\le \\text{narrow} \\;\\wedge\\; \\text{len(winner)} - \\text{len(loser)} > K
        \\;\\Rightarrow\\; s \\leftarrow \\tfrac12

    Lin et al. (2024), "WildBench: benchmarking LLMs with challenging tasks from real users in the wild"
    (there: a "slightly better" verdict from a response longer by more than K characters becomes a tie). With
    the ``"graded"`` verdict scale a slight win scores 0.75 (a distance of 0.25 from ½, the default ``narrow``), a clear
    win 1.

    >>> from pairkit.select import apply_length_rule
    >>> apply_length_rule(0.7, 900, 300, k_chars=500, narrow=0.25)
    0.5
    >>> apply_length_rule(0.9, 900, 300, k_chars=500, narrow=0.25)
    0.9
    """
    if score == 0.5 or abs(score - 0.5) > narrow + 1e-12:
        return score
    longer_won = (score > 0.5 and len_a - len_b > k_chars) or (score < 0.5 and len_b - len_a > k_chars)
    return 0.5 if longer_won else score


def position_stats(records: Sequence[Record]) -> dict[str, dict[str, float]]:
    """Per judge: flip rate over pairs judged in both orders, and the first-shown answer's win rate.

    The flip rate is the share of (context, pair) with judgments in both orders whose winners (a / b / tie)
    disagree; the first-position win rate is the mean expected score of the answer shown first (0.5 = no
    position bias). Repeated samples are matched by their index.

    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Pool, position_stats, select
    >>> judge = SimulatedJudge({"a": 1.0, "b": 0.0, "c": -1.0}, position_bias=1.0, seed=0, judge_id="biased")
    >>> run = select("round_robin", judge, Pool.single(["a", "b", "c"]), policy="both_average")
    >>> {k: round(v, 3) for k, v in position_stats(run.records)["biased"].items()}
    {'calls': 6.0, 'pairs_both_orders': 3.0, 'flip_rate': 0.667, 'first_position_win_rate': 0.833}
    """
    out: dict[str, dict[str, float]] = {}
    by_judge: dict[str, list[Record]] = {}
    for r in records:
        by_judge.setdefault(r.judgment.judge, []).append(r)
    for judge, rows in by_judge.items():
        seen: dict[tuple, dict[str, str]] = {}
        counts: dict[tuple, int] = {}
        for r in rows:
            lo, hi = min(r.a, r.b), max(r.a, r.b)
            base = (r.context, lo, hi, r.judgment.order if r.a == lo else _flip(r.judgment.order))
            k = counts[base] = counts.get(base, 0) + 1
            winner = r.judgment.winner if r.a == lo else {"a": "b", "b": "a"}.get(r.judgment.winner, "tie")
            seen.setdefault((r.context, lo, hi, k), {})[base[3]] = winner
        both = [v for v in seen.values() if len(v) == 2]
        first = np.array([r.judgment.first_score for r in rows])
        out[judge] = {
            "calls": float(len(rows)),
            "pairs_both_orders": float(len(both)),
            "flip_rate": float(np.mean([v["ab"] != v["ba"] for v in both])) if both else float("nan"),
            "first_position_win_rate": float(first.mean()) if len(first) else float("nan"),
        }
    return out


def _flip(order: str) -> str:
    return "ba" if order == "ab" else "ab"


_LENGTH_RULE = Option("length_rule", int, Interval(0, None), none=True, doc="WildBench's K in characters")
_NARROW = Option("narrow", float, Interval(0, 0.5, closed="right"), doc="how close to a tie a 'slight' win is")


class Arena:
    """Sends comparisons ``(context, i, j)`` of a :class:`Pool` to a comparator under a position policy.

    ``compare`` is the one entry point strategies use: all comparisons of one call go out concurrently.
    Decisions (one per comparison: the expected score of ``i``) and the raw judgments (one per judge call)
    are recorded; a :class:`BudgetExhausted` from the judge is re-raised after the finished calls of the batch
    are recorded, so strategies stop cleanly with everything paid for kept.

    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Arena, Pool
    >>> arena = Arena(SimulatedJudge({"a": 2.0, "b": 0.0}, seed=0), Pool.single(["a", "b"]), policy="both_average")
    >>> import asyncio
    >>> scores = asyncio.run(arena.compare([(0, 0, 1)]))
    >>> [round(float(s), 3) for s in scores]
    [1.0]
    """

    def __init__(
        self,
        judge,
        pool: Pool,
        *,
        policy: str = "random",
        length_rule: int | None = None,
        narrow: float = 0.25,
        seed: int | np.random.Generator | None = 0,
        progress=None,
    ) -> None:
        if policy not in POLICIES:
            raise InputError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        length_rule = _LENGTH_RULE.check(length_rule)
        narrow = _NARROW.check(narrow)
        self.judge, self.pool, self.policy = judge, pool, policy
        self.length_rule, self.narrow = length_rule, narrow
        self.rng = np.random.default_rng(seed)
        self.records: list[Record] = []
        self.decisions: list[tuple[int, int, int, float, bool | None]] = []  # context, a, b, score, a_first
        self.weights: list[float] = []  # games each decision counts as (Arena-Hard: 3 for a strong verdict)
        self.failures: list[str] = []
        self.progress = progress
        self._samples: dict[tuple, int] = {}
        self._memo: dict[tuple[int, int, int], float] = {}

    def _request(self, c: int, i: int, j: int, order: str) -> Request:
        p = self.pool
        ti, tj = p.text[c][i], p.text[c][j]
        if ti is None or tj is None:
            missing = p.items[i] if ti is None else p.items[j]
            raise InputError(f"candidate {missing!r} has no answer in context {p.contexts[c]!r}")
        key = (c, i, j) if order == "ab" else (c, j, i)  # the prompt as shown: (a, b, ab) is (b, a, ba)
        n = self._samples[key] = self._samples.get(key, -1) + 1
        ref = p.references[c] if p.references else None
        return Request(p.context_text[c], ti, tj, order, ref, sample=n)

    async def compare(self, triples: Sequence[tuple[int, int, int]], *, reuse: bool = False) -> np.ndarray:
        """Expected scores of ``i`` against ``j`` for each ``(c, i, j)``; ``reuse`` answers from earlier decisions."""
        triples = [(int(c), int(i), int(j)) for c, i, j in triples]
        out = np.full(len(triples), np.nan)
        todo = []
        for k, (c, i, j) in enumerate(triples):
            if i == j:
                raise InputError(f"cannot compare item {self.pool.items[i]!r} with itself")
            if reuse and (c, i, j) in self._memo:
                out[k] = self._memo[(c, i, j)]
            elif reuse and (c, j, i) in self._memo:
                out[k] = 1.0 - self._memo[(c, j, i)]
            else:
                todo.append(k)
        if not todo:
            return out
        both = self.policy.startswith("both")
        requests, owner = [], []
        for k in todo:
            c, i, j = triples[k]
            orders = ("ab", "ba") if both else (("ab", "ba")[int(self.rng.integers(2))],)
            for order in orders:
                requests.append(self._request(c, i, j, order))
                owner.append(k)
        results = await asyncio.gather(*(self._one(r) for r in requests), return_exceptions=True)
        got: dict[int, list[Judgment]] = {}
        budget_error: BaseException | None = None
        other_error: BaseException | None = None
        for k, res in zip(owner, results):
            if isinstance(res, BudgetExhausted):
                budget_error = res
                continue
            if isinstance(res, BaseException):
                self.failures.append(f"{type(res).__name__}: {res}")
                other_error = other_error or res
                continue
            c, i, j = triples[k]
            self.records.append(Record(c, i, j, res))
            got.setdefault(k, []).append(res)
        for k in todo:
            js = got.get(k, [])
            if len(js) != (2 if both else 1):
                continue
            c, i, j = triples[k]
            out[k] = s = self._decide(c, i, j, js)
            self._memo[(c, i, j)] = s
            self.decisions.append((c, i, j, s, None if both else js[0].order == "ab"))
            self.weights.append(float(np.mean([x.weight for x in js])))
        if other_error is not None:
            raise other_error
        if budget_error is not None:
            raise budget_error
        return out

    async def _one(self, request: Request) -> Judgment:
        judgment = await self.judge.ajudge(request)
        if self.progress is not None:
            self.progress(1)
        return judgment

    def _decide(self, c: int, i: int, j: int, js: list[Judgment]) -> float:
        weights = [x.weight for x in js]
        if self.policy == "both_conflict_tie" and js[0].winner != js[1].winner:
            s = 0.5
        elif sum(weights) > 0:  # each order's verdict counts as many games as its weight says
            s = float(np.average([x.score for x in js], weights=weights))
        else:
            s = float(np.mean([x.score for x in js]))
        if self.length_rule is not None:
            s = apply_length_rule(
                s, len(self.pool.text[c][i]), len(self.pool.text[c][j]), k_chars=self.length_rule, narrow=self.narrow
            )
        return s

    def coin(self) -> float:
        return float(self.rng.random())


@dataclass
class Selection:
    """What a selection strategy did: decisions, raw judgments, and its answer (ranking, winner, top-k).

    ``ranking`` lists item indices best first when the strategy produces an order (possibly only its top);
    ``winner`` is the selected item for best-of-N strategies; ``stopped`` says why it stopped early
    (``"budget"``, ``"separated"``) or is None.

    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Pool, select
    >>> judge = SimulatedJudge({"a": 5.0, "b": 0.0, "c": -5.0}, seed=0)
    >>> run = select("round_robin", judge, Pool.single(["a", "b", "c"]))
    >>> run.calls, len(run.records)
    (3, 3)
    >>> print(run.leaderboard(prior=1.0).to_pandas()["item"].tolist())
    ['a', 'b', 'c']
    """

    strategy: str
    pool: Pool
    policy: str
    records: list[Record]
    decisions: list[tuple[int, int, int, float, bool | None]]
    ranking: list[int] | None = None
    winner: int | None = None
    winners: dict[int, int] = field(default_factory=dict)
    stopped: str | None = None
    failures: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Judge calls made (one per judgment, cache hits included)."""
        return len(self.records)

    @property
    def cost(self) -> float:
        return float(sum(r.judgment.cost for r in self.records if not r.judgment.cached))

    def comparisons(self) -> Comparisons:
        """One row per decision: outcome = expected score of ``a`` (ties ½), cluster = context (if several),
        weight = the games the decision counts as (all 1 unless the verdict scale weighs levels)."""
        if not self.decisions:
            raise InputError(f"strategy {self.strategy!r} made no comparisons (budget 0?)")
        c, a, b, s, first = zip(*self.decisions)
        a_first = None if any(f is None for f in first) else np.array(first, bool)
        weights = np.asarray(self.weights, float)
        use_weights = len(weights) == len(self.decisions) and bool(np.any(weights != 1.0))
        return Comparisons.from_arrays(
            np.array(a),
            np.array(b),
            np.array(s, float),
            items=self.pool.items,
            weight=weights if use_weights else None,
            cluster=np.array(c) if len(self.pool.contexts) > 1 else None,
            a_first=a_first,
            source=f"selection {self.strategy}",
        )

    def leaderboard(self, *, prior: float = 0.0, ties: str = "half", intervals: str = "auto"):
        """Bradley–Terry fit of the decisions; under the ``"estimate"`` policy with the order advantage fitted."""
        from pairkit.rating import fit_bradley_terry, fit_order_advantage

        comps = self.comparisons()
        if self.policy == "estimate":
            return fit_order_advantage(comps, ties=ties, prior=prior, intervals=intervals)
        return fit_bradley_terry(comps, ties=ties, prior=prior, intervals=intervals)

    def scores(self, *, prior: float = 0.1) -> np.ndarray:
        """One score per item, higher = better: the strategy's ranking where it has one, else BT ratings.

        Items a ranking does not place (beyond its top-k) are ordered below it by a BT fit of all decisions.
        """
        n = self.pool.n_items
        base = np.zeros(n)
        if self.decisions:
            base = self.leaderboard(prior=prior, intervals="none").scores
        if self.ranking is None and self.winner is None:
            return base
        top = self.ranking if self.ranking is not None else [self.winner]
        base = base - base.max() - 1.0
        base[np.asarray(top, dtype=np.int64)] = 2.0 * n - np.arange(len(top))
        return base

    def position_stats(self) -> dict[str, dict[str, float]]:
        return position_stats(self.records)

    def preference_pairs(self, *, min_margin: float = 0.0) -> list[dict[str, str]]:
        """Decisions as ``{prompt, chosen, rejected}`` rows (ties and wins within ``min_margin`` of ½ skipped)."""
        rows = []
        p = self.pool
        for c, a, b, s, _ in self.decisions:
            if abs(s - 0.5) <= min_margin or s == 0.5:
                continue
            win, lose = (a, b) if s > 0.5 else (b, a)
            rows.append(
                {
                    "prompt": p.context_text[c],
                    "chosen": p.text[c][win],
                    "rejected": p.text[c][lose],
                    "chosen_id": p.items[win],
                    "rejected_id": p.items[lose],
                }
            )
        return rows

    def export_pairs(self, path: str | Path, **options) -> int:
        """Write :meth:`preference_pairs` as JSONL; returns the number of rows written."""
        from pairkit._io import atomic_write_text

        rows = self.preference_pairs(**options)
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        return len(rows)

    def judgments_frame(self):
        """One row per judge call (pandas DataFrame)."""
        import pandas as pd

        p = self.pool
        return pd.DataFrame(
            [
                {"context_id": p.contexts[r.context], "a": p.items[r.a], "b": p.items[r.b], **r.judgment.to_dict()}
                for r in self.records
            ]
        )
