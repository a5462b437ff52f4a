"""Comparison-efficient selection strategies over a comparator.

Every strategy is an ``async`` function of an :class:`~pairkit.select.arena.Arena`; each round's independent
comparisons go out together through :meth:`Arena.compare` (the judge's async batch), so a 64-item knockout takes
6 round trips, not 63. Use :func:`select` (sync) or :func:`aselect` (async) to run one by name. Every strategy is
registered in :data:`STRATEGIES` (a :class:`~pairkit._spec.Registry`) with its declared options, which are
checked in one place before it runs; every one is bounded even without a budget (n items per context):

==================  ===========================================================  ===============================
``round_robin``     all pairs (per context), one batch                           ``repeats``·n(n−1)/2 calls
``random_pairs``    uniformly random pairs (the baseline for active pairing)     ``n_comparisons`` (n(n−1)/2)
``knockout``        single elimination, ``best_of`` samples per match            ``best_of``·(n−1) calls
                    (Pairwise RM's knockout, Liu et al. 2025)
``varco_arena``     a knockout per prompt, pooled into a Bradley–Terry           ``best_of``·(n−1) per prompt
                    leaderboard (Son et al. 2024)
``swiss``           Swiss-system rounds: equal scores meet, no rematches         ``rounds``·n/2 (⌈log2 n⌉ + 2)
``merge_sort``      noisy merge sort (PairS, Liu et al. 2024)                    n⌈log2 n⌉ calls
``pairs_beam``      merge sort with beam-searched merges (PairS-beam)            ``beam``·n⌈log2 n⌉ calls
``heap_topk``       heap sort until the top k are out (PRP-sorting, Qin 2024)    O(n + k log n) calls
``sliding_topk``    k bubble passes of a window of 2 (PRP-sliding-K, Qin 2024)   k(n−1) calls
``duo_rerank``      all pairs of a short list in both orders (duoT5)             depth(depth−1)/2 pairs
``vs_baselines``    every item against each baseline (WB-Reward, WildBench)      items·baselines per context
``listwise``        RankGPT sliding window (a listwise judge, or all pairs)      passes·⌈(n−w)/step + 1⌉ windows
``kwise``           K-wise battles with UCB matchmaking (K-Sort Arena)           ``rounds`` battles (⌈2n/k⌉)
``active``          adaptive pairing for a leaderboard (information gain or      ``n_comparisons``
                    UCB), stops when intervals separate                          (10·n·⌈log2 n⌉)
==================  ===========================================================  ===============================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option, Registry, Spec, declare_options
from pairkit.errors import InputError, PairkitWarning
from pairkit.judges.base import BudgetExhausted, run_sync
from pairkit.judges.cache import Budget, CachedJudge, JudgmentCache, check_priced
from pairkit.select.arena import Arena, Pool, Selection

__all__ = [
    "STRATEGIES",
    "aselect",
    "beam_merge",
    "default_active_limit",
    "default_random_pairs",
    "dry_run",
    "select",
]

STRATEGIES = Registry("strategy")
"""Selection strategies by name: each a :class:`~pairkit._spec.Spec` with its declared options."""

_AT_LEAST_1 = Interval(1, None)


def _strategy(name: str, *options: Option):
    """Register an ``async def fn(arena, out, **options)`` under ``name`` with its declared options."""

    def register(fn):
        checked = declare_options(*options)(fn)
        STRATEGIES.add(Spec(name, checked, kind="strategy", data="pool"))
        return checked

    return register


def _indices(arena: Arena, strategy: str, name: str, values: Sequence | None) -> list[int] | None:
    """Item indices given as an option (``initial``, ``shortlist``): integers of the pool, no repeats."""
    if values is None:
        return None
    n = arena.pool.n_items
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
            raise InputError(
                f"strategy {strategy!r}: {name} must list item indices in 0..{n - 1} (positions in the pool), got {v!r}"
            )
        out.append(int(v))
    if len(set(out)) != len(out):
        raise InputError(f"strategy {strategy!r}: {name} lists an item twice: {out!r}")
    return out


# -------------------------------------------------------------------------------------------- helpers
async def _better(arena: Arena, c: int, i: int, j: int) -> bool:
    """Is ``i`` better than ``j`` in context ``c``? Earlier answers about the pair are reused; ties: a coin."""
    s = (await arena.compare([(c, i, j)], reuse=True))[0]
    return bool(arena.coin() < 0.5) if s == 0.5 else bool(s > 0.5)


async def _per_context(arena: Arena, fn) -> dict[int, object]:
    import asyncio

    contexts = range(len(arena.pool.contexts))
    results = await asyncio.gather(*(fn(c, arena.pool.present(c)) for c in contexts), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise next((e for e in errors if not isinstance(e, BudgetExhausted)), errors[0])
    return dict(zip(contexts, results))


def _shared_context(arena: Arena, i: int, j: int) -> int:
    """A random context in which both items have an answer."""
    pool = arena.pool
    if len(pool.contexts) == 1:
        return 0
    both = [c for c in range(len(pool.contexts)) if pool.text[c][i] is not None and pool.text[c][j] is not None]
    if not both:
        raise InputError(f"items {pool.items[i]!r} and {pool.items[j]!r} share no context")
    return both[int(arena.rng.integers(len(both)))]


def _single_answer(out: Selection, per_context: dict) -> None:
    out.winners = {c: w for c, w in per_context.items() if isinstance(w, (int, np.integer))}
    if len(per_context) == 1:
        value = next(iter(per_context.values()))
        if isinstance(value, list):
            out.ranking = value
            out.winner = value[0] if value else None
        else:
            out.winner = value


# ------------------------------------------------------------------------------------------ exhaustive
@_strategy("round_robin", Option("repeats", int, _AT_LEAST_1, doc="times each pair is judged"))
async def round_robin(arena: Arena, out: Selection, *, repeats: int = 1) -> None:
    """Every pair of candidates in every context, ``repeats`` times, in one batch."""
    triples = []
    for c in range(len(arena.pool.contexts)):
        idx = arena.pool.present(c)
        i, j = np.triu_indices(len(idx), 1)
        triples += [(c, a, b) for a, b in zip(idx[i], idx[j])] * repeats
    await arena.compare(triples)


@_strategy(
    "random_pairs",
    Option("n_comparisons", int, _AT_LEAST_1, none=True, doc="comparisons to make (None: n(n-1)/2)"),
    Option("batch", int, _AT_LEAST_1, doc="pairs sent per round"),
)
async def random_pairs(arena: Arena, out: Selection, *, n_comparisons: int | None = None, batch: int = 64) -> None:
    """Uniformly random pairs (and a random shared context), ``batch`` at a time.

    ``n_comparisons`` defaults to :func:`default_random_pairs` (as many as a round robin: n(n−1)/2).
    """
    n = arena.pool.n_items
    if n_comparisons is None:
        n_comparisons = default_random_pairs(n)
    done = 0
    while done < n_comparisons:
        m = min(batch, n_comparisons - done)
        i = arena.rng.integers(n, size=m)
        j = (i + arena.rng.integers(1, n, size=m)) % n
        await arena.compare([(_shared_context(arena, a, b), a, b) for a, b in zip(i, j)])
        done += m


# -------------------------------------------------------------------------------------------- knockout
async def _knockout(arena: Arena, c: int, items: np.ndarray, best_of: int) -> int:
    alive = list(arena.rng.permutation(items))
    while len(alive) > 1:
        pairs = [(alive[k], alive[k + 1]) for k in range(0, len(alive) - 1, 2)]
        bye = [alive[-1]] if len(alive) % 2 else []
        scores = await arena.compare([(c, a, b) for a, b in pairs for _ in range(best_of)])
        totals = scores.reshape(len(pairs), best_of).sum(axis=1)
        alive = [
            a if t > best_of / 2 or (t == best_of / 2 and arena.coin() < 0.5) else b for (a, b), t in zip(pairs, totals)
        ] + bye
    return int(alive[0])


_BEST_OF = Option("best_of", int, _AT_LEAST_1, doc="judgments per match (a majority wins)")


@_strategy("knockout", _BEST_OF)
async def knockout(arena: Arena, out: Selection, *, best_of: int = 1) -> None:
    """Single elimination per context: n − 1 matches of ``best_of`` judgments, one batch per round.

    The knockout of Pairwise RM (Liu et al. 2025, "Pairwise RM: perform best-of-N sampling with knockout
    tournament"); byes go to the last player of an odd round.
    """
    _single_answer(out, await _per_context(arena, lambda c, items: _knockout(arena, c, items, best_of)))


@_strategy("varco_arena", _BEST_OF)
async def varco_arena(arena: Arena, out: Selection, *, best_of: int = 1) -> None:
    """A knockout per prompt, all matches pooled into one Bradley–Terry leaderboard (use ``leaderboard()``).

    Son et al. (2024), "VARCO Arena: a tournament approach to reference-free benchmarking large language models".
    """
    out.winners = await _per_context(arena, lambda c, items: _knockout(arena, c, items, best_of))


# ----------------------------------------------------------------------------------------------- swiss
@_strategy("swiss", Option("rounds", int, _AT_LEAST_1, none=True, doc="rounds (None: ceil(log2 n) + 2)"))
async def swiss(arena: Arena, out: Selection, *, rounds: int | None = None) -> None:
    """Swiss-system rounds: sort by points, pair neighbours who have not met; one batch per round.

    ``rounds`` defaults to ⌈log2 n⌉ + 2.
    """
    n = arena.pool.n_items
    rounds = rounds if rounds is not None else math.ceil(math.log2(n)) + 2
    points = np.zeros(n)
    met: set[tuple[int, int]] = set()
    for _ in range(rounds):
        order = list(np.lexsort((arena.rng.random(n), -points)))
        pairs = []
        while len(order) > 1:
            a = order.pop(0)
            k = next((k for k, b in enumerate(order) if (min(a, b), max(a, b)) not in met), 0)
            b = order.pop(k)
            pairs.append((a, b))
            met.add((min(a, b), max(a, b)))
        scores = await arena.compare([(_shared_context(arena, a, b), a, b) for a, b in pairs])
        for (a, b), s in zip(pairs, scores):
            points[a] += s
            points[b] += 1 - s
    out.info["points"] = points


# -------------------------------------------------------------------------------------------- sorting
async def _merge_sort(arena: Arena, c: int, items: list[int]) -> list[int]:
    import asyncio

    if len(items) <= 1:
        return list(items)
    mid = len(items) // 2
    left, right = await asyncio.gather(_merge_sort(arena, c, items[:mid]), _merge_sort(arena, c, items[mid:]))
    merged: list[int] = []
    while left and right:
        merged.append(left.pop(0) if await _better(arena, c, left[0], right[0]) else right.pop(0))
    return merged + left + right


@_strategy("merge_sort")
async def merge_sort(arena: Arena, out: Selection) -> None:
    """Noisy merge sort with the judge as comparator; merges of one level run concurrently.

    Liu et al. (2024), "Aligning with human judgement: the role of pairwise preference in large language model
    evaluators" (PairS). Best first.
    """
    _single_answer(
        out, await _per_context(arena, lambda c, items: _merge_sort(arena, c, list(arena.rng.permutation(items))))
    )


async def beam_merge(
    arena: Arena, c: int, left: list[int], right: list[int], beam: int, prune: float = 0.0
) -> list[int]:
    """The most probable interleaving of two sorted lists found by a beam over merge paths (best first).

    A merge path takes ``left[i]`` or ``right[j]`` next; with :math:`p_{ij}` the judged probability that
    ``left[i]`` beats ``right[j]`` its log-likelihood grows by :math:`\\log p_{ij}` or :math:`\\log(1-p_{ij})`.
    Paths that reach the same :math:`(i, j)` face the same remaining choices, so only the likeliest is kept
    (dynamic programming); of the rest the ``beam`` likeliest go on. Uncertainty guides the search: a continuation
    whose step probability is below ``prune`` (the judge is sure against it) is not followed. Each step's
    comparisons go out as one batch, and a pair is judged once. With ``beam`` ≥ the number of merge states and
    ``prune=0`` this is the maximum-likelihood merge; with ``beam=1`` it is the greedy merge of ``merge_sort``.

    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Arena, Pool, beam_merge
    >>> pool = Pool.single(["a", "b", "c", "d"])
    >>> arena = Arena(SimulatedJudge({"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.0}, noise=0.01, seed=0), pool)
    >>> import asyncio
    >>> [pool.items[i] for i in asyncio.run(beam_merge(arena, 0, [0, 1], [2, 3], beam=2))]
    ['a', 'c', 'b', 'd']
    """
    eps = 1e-6
    states = [(0.0, 0, 0, ())]  # log-likelihood, i, j, merged so far
    n_left, n_right = len(left), len(right)
    while any(i < n_left or j < n_right for _, i, j, _ in states):
        need = sorted({(left[i], right[j]) for _, i, j, _ in states if i < n_left and j < n_right})
        scores = await arena.compare([(c, a, b) for a, b in need], reuse=True) if need else []
        prob = {pair: float(np.clip(score, eps, 1 - eps)) for pair, score in zip(need, scores)}
        best: dict[tuple[int, int], tuple] = {}
        for ll, i, j, merged in states:
            if i == n_left or j == n_right:
                rest = tuple(left[i:]) + tuple(right[j:])
                moves = [(ll, n_left, n_right, merged + rest)]
            else:
                q = prob[(left[i], right[j])]
                moves = [
                    (ll + math.log(q), i + 1, j, merged + (left[i],)),
                    (ll + math.log(1 - q), i, j + 1, merged + (right[j],)),
                ]
                if min(q, 1 - q) < prune:  # a sure comparison: only its likelier side
                    moves = [moves[0] if q >= 0.5 else moves[1]]
            for move in moves:
                key = (move[1], move[2])
                if key not in best or move[0] > best[key][0]:
                    best[key] = move
        states = sorted(best.values(), key=lambda s: -s[0])[:beam]
    return list(states[0][3])


async def _beam_sort(arena: Arena, c: int, items: list[int], beam: int, prune: float) -> list[int]:
    import asyncio

    if len(items) <= 1:
        return list(items)
    mid = len(items) // 2
    left, right = await asyncio.gather(
        _beam_sort(arena, c, items[:mid], beam, prune), _beam_sort(arena, c, items[mid:], beam, prune)
    )
    return await beam_merge(arena, c, left, right, beam, prune)


@_strategy(
    "pairs_beam",
    Option("beam", int, _AT_LEAST_1, doc="merge paths kept per step"),
    Option("prune", float, Interval(0, 0.5, closed="left"), doc="a step less likely than this is not followed"),
)
async def pairs_beam(arena: Arena, out: Selection, *, beam: int = 4, prune: float = 0.1) -> None:
    """Merge sort whose merges are uncertainty-guided beam searches over merge paths (PairS-beam).

    Liu et al. (2024), "Aligning with human judgement: the role of pairwise preference in large language model
    evaluators": where the judge is unsure (:math:`p_{ij}` near ½) both continuations stay in the beam, and the
    likeliest complete merge wins (:func:`beam_merge`); where it is sure (a step probability below ``prune``) only
    the likelier side is followed. Needs a judge that returns probabilities (log-probs, or the ``both_average``
    policy for calibrated, position-debiased ones, as PairS does); with hard verdicts it is the greedy merge sort.
    Bounded by ``beam``·n⌈log2 n⌉ comparisons. Best first.
    """
    _single_answer(
        out,
        await _per_context(
            arena, lambda c, items: _beam_sort(arena, c, [int(x) for x in arena.rng.permutation(items)], beam, prune)
        ),
    )


async def _sift_down(arena: Arena, c: int, heap: list[int], pos: int, size: int) -> None:
    while True:
        best, left, right = pos, 2 * pos + 1, 2 * pos + 2
        if left < size and await _better(arena, c, heap[left], heap[best]):
            best = left
        if right < size and await _better(arena, c, heap[right], heap[best]):
            best = right
        if best == pos:
            return
        heap[pos], heap[best] = heap[best], heap[pos]
        pos = best


async def _heap_topk(arena: Arena, c: int, items: np.ndarray, k: int) -> list[int]:
    import asyncio

    heap = [int(x) for x in arena.rng.permutation(items)]
    size = len(heap)
    # Sift-downs of nodes at one depth touch disjoint subtrees, so each depth is one concurrent batch.
    depth = int(math.log2(size)) if size else 0
    for d in range(depth - 1, -1, -1):
        nodes = range(2**d - 1, min(2 ** (d + 1) - 1, size // 2))
        await asyncio.gather(*(_sift_down(arena, c, heap, p, size) for p in nodes))
    top = []
    while size and len(top) < k:
        top.append(heap[0])
        size -= 1
        heap[0] = heap[size]
        if len(top) < k:
            await _sift_down(arena, c, heap, 0, size)
    return top


_K = Option("k", int, _AT_LEAST_1, doc="how many of the best to find")


@_strategy("heap_topk", _K)
async def heap_topk(arena: Arena, out: Selection, *, k: int = 10) -> None:
    """Top-k by a max-heap: heapify (O(n) comparisons), then k extractions of O(log n) each.

    Qin et al. (2024), "Large language models are effective text rankers with pairwise ranking prompting"
    (PRP-sorting).
    """
    _single_answer(out, await _per_context(arena, lambda c, items: _heap_topk(arena, c, items, k)))


async def _sliding(arena: Arena, c: int, items: np.ndarray, k: int, initial: list[int] | None) -> list[int]:
    order = [int(x) for x in (initial if initial is not None else arena.rng.permutation(items))]
    for p in range(min(k, len(order) - 1)):
        for pos in range(len(order) - 2, p - 1, -1):
            if await _better(arena, c, order[pos + 1], order[pos]):
                order[pos], order[pos + 1] = order[pos + 1], order[pos]
    return order[:k]


@_strategy("sliding_topk", _K, Option("initial", (list, tuple), none=True, doc="starting order (item indices)"))
async def sliding_topk(arena: Arena, out: Selection, *, k: int = 10, initial: list[int] | None = None) -> None:
    """k passes of a size-2 window from the bottom of ``initial`` (random by default) to the top.

    Qin et al. (2024), PRP-sliding-K: each pass bubbles the best remaining candidate to the top.
    """
    initial = _indices(arena, "sliding_topk", "initial", initial)
    _single_answer(out, await _per_context(arena, lambda c, items: _sliding(arena, c, items, k, initial)))


@_strategy(
    "duo_rerank",
    Option("shortlist", (list, tuple), none=True, doc="first-stage candidates, best first (item indices)"),
    Option("depth", int, Interval(2, None), none=True, doc="how many of the shortlist to rerank"),
)
async def duo_rerank(
    arena: Arena, out: Selection, *, shortlist: list[int] | None = None, depth: int | None = None
) -> None:
    """All pairs of a short list, scored by summed win probabilities (sym-sum); use with ``both_average``.

    .. math::

        s_i = \\sum_{j \\ne i} p_{ij}

    Pradeep et al. (2021), "The expando-mono-duo design pattern for text ranking with pretrained
    sequence-to-sequence models" (duoT5). ``shortlist``: candidates from a first stage, best first; ``depth``
    keeps its first ``depth``.
    """
    shortlist = _indices(arena, "duo_rerank", "shortlist", shortlist)

    async def run(c: int, items: np.ndarray) -> list[int]:
        return await _all_pairs_order(arena, c, (shortlist if shortlist is not None else items)[:depth])

    _single_answer(out, await _per_context(arena, run))


async def _all_pairs_order(arena: Arena, c: int, items, *, reuse: bool = False) -> list[int]:
    """``items`` judged in all pairs, best first by summed win probabilities (sym-sum)."""
    chosen = np.array(items, dtype=np.int64)
    i, j = np.triu_indices(len(chosen), 1)
    s = await arena.compare([(c, a, b) for a, b in zip(chosen[i], chosen[j])], reuse=reuse)
    total = np.bincount(i, s, len(chosen)) + np.bincount(j, 1 - s, len(chosen))
    return [int(x) for x in chosen[np.argsort(-total, kind="stable")]]


@_strategy(
    "vs_baselines",
    Option("baselines", (list, tuple), none=True, doc="baseline items (indices or ids); None: the first item"),
)
async def vs_baselines(arena: Arena, out: Selection, *, baselines: Sequence | None = None) -> None:
    """Every item against each baseline in every context where both answered, in one batch (WB-Reward).

    Lin et al. (2024), "WildBench: benchmarking LLMs with challenging tasks from real users in the wild": with the
    graded five-level verdicts (much better +1, slightly better +½, tie 0, …) and the length rule (``length_rule=K``:
    a *slight* win by an answer longer by more than K characters is a tie), an item's WB-Reward is its mean reward
    over the prompts and the baselines,

    .. math::

        R_i = \\frac{1}{|P_i|} \\sum_{(c, b) \\in P_i} (2 s_{i b c} - 1)

    with :math:`s_{ibc}` the decided expected score of item *i* against baseline *b* in context *c*. ``out.info
    ["wb_reward"]`` maps each item to ``(reward, low, high, n)`` with a normal 95% interval over the
    comparisons, clipped to [−1, 1] (a baseline against the other baselines is scored as well). ``baselines``
    defaults to the first item of the pool.
    """
    pool = arena.pool
    chosen = []
    for b in [0] if baselines is None else baselines:
        if isinstance(b, str) and b in pool.items:
            b = pool.items.index(b)
        chosen.append(b)
    base = _indices(arena, "vs_baselines", "baselines", chosen)
    if not base:
        raise InputError("strategy 'vs_baselines': give at least one baseline item")
    triples = []
    for c in range(len(pool.contexts)):
        here = set(int(x) for x in pool.present(c))
        for b in base:
            if b in here:
                triples += [(c, i, b) for i in sorted(here) if i != b]
    scores = await arena.compare(triples)
    items = np.array([i for _, i, _ in triples], dtype=np.int64)
    reward = 2 * scores - 1
    out.info["wb_reward"] = {}
    for i in np.unique(items):
        r = reward[items == i]
        r = r[np.isfinite(r)]
        half = 1.959963984540054 * r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else np.nan
        low, high = max(-1.0, r.mean() - half), min(1.0, r.mean() + half)  # rewards lie in [-1, 1]
        out.info["wb_reward"][pool.items[i]] = (float(r.mean()), float(low), float(high), len(r))


async def _listwise(arena: Arena, judge, c: int, items: list[int]) -> list[int]:
    """One listwise call on ``items`` in context ``c`` (through the cache and budget); its order, best first.

    The answer is broken into weighted pairwise decisions (:func:`~pairkit.judges.protocols.break_ranking`).
    """
    from pairkit.judges.protocols import break_ranking
    from pairkit.select.arena import Record

    pool = arena.pool
    refs = pool.references[c] if pool.references else None
    judgment = await arena.judge.ajudge(judge.request(pool.context_text[c], [pool.text[c][i] for i in items], refs))
    ranked = [items[k] for k in judge.order(judgment)]
    arena.records.append(Record(c, ranked[0], ranked[1], judgment))
    if arena.progress is not None:
        arena.progress(1)
    pairs, weight = break_ranking(ranked, mode=judge.mode)
    arena.decisions += [(c, int(w), int(lo), 1.0, None) for w, lo in pairs]
    arena.weights += [weight] * len(pairs)
    return ranked


@_strategy(
    "listwise",
    Option("window", int, Interval(2, None), doc="candidates per listwise call"),
    Option("step", int, _AT_LEAST_1, none=True, doc="how far the window moves (None: window // 2)"),
    Option("passes", int, _AT_LEAST_1, doc="passes from the bottom of the list to the top"),
)
async def listwise(arena: Arena, out: Selection, *, window: int = 4, step: int | None = None, passes: int = 1):
    """RankGPT's sliding window: from the end of a random order to its start, windows of ``window`` candidates,
    moved by ``step``, are reranked — by one call each of a :class:`~pairkit.judges.ListwiseJudge`, or, with a
    pairwise judge, by all pairs of the window (ordered by summed win probabilities, as ``duo_rerank``).

    Sun et al. (2023), "Is ChatGPT good at search? Investigating large language models as re-ranking agents". One
    pass carries the best candidate to the top (with ``step`` < ``window``); each call's answer is broken into
    pairwise decisions, so ``leaderboard()`` works as for the pairwise strategies. Bounded by
    ``passes``·⌈(n − window) / step + 1⌉ windows per context (a window costs one listwise call, or
    window(window − 1)/2 pairwise ones). Best first.
    """
    step = step or max(1, window // 2)

    async def rerank(c: int, items: list[int]) -> list[int]:
        return await _rank_set(arena, c, items)

    async def run(c: int, items: np.ndarray) -> list[int]:
        order = [int(x) for x in arena.rng.permutation(items)]
        width = min(window, len(order))
        for _ in range(passes):
            start = len(order) - width
            while True:
                order[start : start + width] = await rerank(c, order[start : start + width])
                if start == 0:
                    break
                start = max(0, start - step)
        return order

    _single_answer(out, await _per_context(arena, run))


async def _rank_set(arena: Arena, c: int, items: list[int]) -> list[int]:
    """``items`` best first: one call of a :class:`~pairkit.judges.ListwiseJudge`, else all pairs (sym-sum)."""
    from pairkit.judges.protocols import ListwiseJudge

    judge = getattr(arena.judge, "inner", arena.judge)
    if isinstance(judge, ListwiseJudge):
        return await _listwise(arena, judge, c, items)
    return await _all_pairs_order(arena, c, items, reuse=True)


@_strategy(
    "kwise",
    Option("k", int, Interval(2, None), doc="candidates per battle"),
    Option("rounds", int, _AT_LEAST_1, none=True, doc="battles at most (None: ceil(2n/k))"),
    Option("exploration", float, Interval(0, None), doc="UCB exploration constant c"),
    Option("prior", float, Interval(0, None, closed="neither"), doc="virtual games per item in each fit"),
    Option("level", float, Interval(0, 1, closed="neither"), doc="interval coverage for the stopping rule"),
    Option("anchor", str, choices=("ucb", "discordance"), doc="which item each battle is built around"),
)
async def kwise(
    arena: Arena,
    out: Selection,
    *,
    k: int = 4,
    rounds: int | None = None,
    exploration: float = 1.0,
    prior: float = 0.5,
    level: float = 0.95,
    anchor: str = "ucb",
) -> None:
    """K-wise battles with UCB matchmaking, as K-Sort Arena: each round the item with the highest upper confidence
    bound meets the k − 1 items rated closest to it, and the k are ranked together.

    Li et al. (2024), "K-Sort Arena: efficient and reliable benchmarking for generative models via K-wise human
    preferences". Each battle is one call of a :class:`~pairkit.judges.ListwiseJudge` (its ranking broken into
    pairwise decisions) or, with a pairwise judge, all pairs of the k. The probabilistic update is a Bradley–Terry
    MAP refit after every battle (``prior`` virtual games per item; Fisher covariance for the bounds
    :math:`\\hat\theta_i + c\\, s_i`) in place of the paper's Gaussian skill update. Stops when the adjacent
    intervals separate or after ``rounds`` battles (default ⌈2n/k⌉). ``out.ranking``: best first by the fit.

    ``anchor="ucb"`` (the paper's matchmaking) looks for the best item. For a whole leaderboard,
    ``anchor="discordance"`` builds each battle around the item in the most expected discordant pairs under the
    Laplace posterior, :math:`\\arg\\max_i \\sum_j \\Phi(-|\\hat\\theta_i - \\hat\\theta_j| / s_{ij})` (the
    quantity the ``active`` strategy's "discordance" rule reduces), again with the k − 1 items rated closest to it.
    """
    import warnings

    from pairkit.rating import fit_bradley_terry as _fit

    def fit_bradley_terry(*args, **kwargs):  # the matchmaking fits are internal: items not met yet are expected
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PairkitWarning)
            return _fit(*args, **kwargs)

    n = arena.pool.n_items
    k = min(k, n)
    rounds = rounds if rounds is not None else math.ceil(2 * n / k)
    theta, se = np.zeros(n), np.full(n, np.inf)
    for _ in range(rounds):
        if arena.decisions:
            board = fit_bradley_terry(_comparisons_so_far(arena, out), prior=prior, intervals="fisher", level=level)
            theta, cov = np.asarray(board.scores), np.asarray(board.covariance)
            se = np.sqrt(np.maximum(np.diag(cov), 0))
            if _separated(theta, board.ci_low_log, board.ci_high_log, None):
                out.stopped = "separated"
                break
        if anchor == "discordance" and arena.decisions:
            var = np.maximum(se[:, None] ** 2 + se[None, :] ** 2 - 2 * cov, 1e-12)
            misorder = special.ndtr(-np.abs(theta[:, None] - theta[None, :]) / np.sqrt(var))
            np.fill_diagonal(misorder, 0.0)
            centre = misorder.sum(axis=1) + 1e-9 * arena.rng.random(n)
        else:
            centre = theta + exploration * np.where(np.isfinite(se), se, 1e6) + 1e-9 * arena.rng.random(n)
        first = int(np.argmax(centre))
        others = [int(i) for i in np.argsort(np.abs(theta - theta[first]) + 1e-9 * arena.rng.random(n)) if i != first]
        pool = arena.pool
        answered = [c for c in range(len(pool.contexts)) if pool.text[c][first] is not None]
        c = answered[int(arena.rng.integers(len(answered)))]  # a random prompt the anchor answered
        battle = [first, *[i for i in others if pool.text[c][i] is not None][: k - 1]]
        if len(battle) < 2:
            continue
        await _rank_set(arena, c, battle)
    if arena.decisions:
        board = fit_bradley_terry(_comparisons_so_far(arena, out), prior=prior, intervals="none")
        out.ranking = [int(i) for i in np.argsort(-np.asarray(board.scores), kind="stable")]
        out.winner = out.ranking[0]


# --------------------------------------------------------------------------------------------- active
def _greedy_matching(score: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Disjoint pairs in decreasing ``score`` (upper triangle), at most ``size``."""
    n = score.shape[0]
    iu, ju = np.triu_indices(n, 1)
    flat = score[iu, ju]
    used = np.zeros(n, bool)
    pairs: list[tuple[int, int]] = []
    for k in np.argsort(-flat, kind="stable"):
        if not np.isfinite(flat[k]):
            break
        a, b = int(iu[k]), int(ju[k])
        if not used[a] and not used[b]:
            used[a] = used[b] = True
            pairs.append((a, b))
            if len(pairs) >= size:
                break
    return pairs


def _separated(theta: np.ndarray, low: np.ndarray, high: np.ndarray, top: int | None) -> bool:
    order = np.argsort(-theta)
    upto = len(order) - 1 if top is None else min(top, len(order) - 1)
    return bool(np.all(low[order[:upto]] > high[order[1 : upto + 1]]))


@_strategy(
    "active",
    Option("n_comparisons", int, _AT_LEAST_1, none=True, doc="comparisons at most (None: 10 n ceil(log2 n))"),
    Option("batch", int, _AT_LEAST_1, none=True, doc="pairs per round (None: n/2)"),
    Option("rule", str, choices=("rank", "information", "ucb", "discordance"), doc="how pairs are chosen"),
    Option("exploration", float, Interval(0, None), doc="UCB exploration constant c"),
    Option("prior", float, Interval(0, None, closed="neither"), doc="virtual games per item in each fit"),
    Option("level", float, Interval(0, 1, closed="neither"), doc="interval coverage for the stopping rule"),
    Option("stop_top", int, _AT_LEAST_1, none=True, doc="stop when the first stop_top intervals separate"),
    Option("candidates", int, _AT_LEAST_1, none=True, doc="pairs scored by 'discordance' (None: 4n)"),
)
async def active(
    arena: Arena,
    out: Selection,
    *,
    n_comparisons: int | None = None,
    batch: int | None = None,
    rule: str = "rank",
    exploration: float = 1.0,
    prior: float = 0.5,
    level: float = 0.95,
    stop_top: int | None = None,
    candidates: int | None = None,
) -> None:
    """Adaptive pairing for a leaderboard; stops when neighbouring intervals separate (or the budget ends).

    After a random cycle (so every item is connected) each round refits Bradley–Terry (MAP with ``prior``
    virtual games, Fisher covariance Σ) and picks a batch of disjoint pairs by

    .. math::

        \\text{rank: } p_{ij}(1-p_{ij})\\,\\Phi\\!\\left(-\\frac{|\\hat\\theta_i-\\hat\\theta_j|}{s_{ij}}\\right)\\qquad
        \\text{information: } p_{ij}(1-p_{ij})\\,s_{ij}^2\\qquad
        \\text{ucb: anchors by } \\hat\\theta_i + c\\,s_i \\text{, each against the nearest free } \\hat\\theta_j

    with :math:`s_{ij}^2 = \\operatorname{Var}(\\hat\\theta_i-\\hat\\theta_j)`. "information" is the expected
    reduction of the variance of the pair's log-odds (a D-optimal-style information gain; cf. Maystre &
    Grossglauser 2017, "Just sort it!"); "rank" (default) weights the Fisher information by the posterior
    probability that the pair is currently in the wrong order, which is what Kendall's τ pays for; "ucb" is
    exploration–exploitation matchmaking as in K-Sort Arena (Li et al. 2024, "K-Sort Arena: efficient and
    reliable benchmarking for generative models via K-wise human preferences"): items with the highest upper
    confidence bound θ̂ + c·se play first, each against the closest-rated free opponent. "discordance" picks the
    pairs whose judgment most reduces the posterior expected number of discordant pairs — the expected Kendall
    distance to the truth under the Laplace posterior N(θ̂, Σ) —

    .. math::

        D(\\Sigma) = \\sum_{k<l} \\Phi\\!\\left(-\\frac{|\\hat\\theta_k-\\hat\\theta_l|}{s_{kl}}\\right),\\qquad
        \\Sigma' = \\Sigma - \\frac{w_{ij}\\,\\Sigma x x^\\top \\Sigma}{1 + w_{ij}\\, x^\\top \\Sigma x},\\quad
        x = e_i - e_j,\\ w_{ij} = p_{ij}(1-p_{ij}),

    scoring :math:`D(\\Sigma) - D(\\Sigma')` (the rank-one information update of one comparison; the means are
    held fixed) for the ``candidates`` pairs ranked best by "rank" (default 4n, so a round costs
    O(candidates·n²)). This is the expected-reduction-in-rank-uncertainty design (cf. Chen et al. 2013,
    "Pairwise ranking aggregation in a crowdsourced setting", who pick the pair of largest expected information
    gain under the current posterior). It stops when all adjacent intervals in the estimated order are disjoint
    (or only the first ``stop_top``).

    Items of equal strength never separate, so the run is always bounded: by ``n_comparisons``, whose default
    :func:`default_active_limit` is 10·n·⌈log2 n⌉ comparisons (``Selection.stopped == "limit"`` when it is
    reached), and by the budget.

    Args:
        n_comparisons: comparisons to make at most (None: :func:`default_active_limit` of the number of items).
        batch: pairs per round (default n/2: everyone plays once per round).
    """
    from pairkit.rating import fit_bradley_terry

    n = arena.pool.n_items
    batch = batch or max(1, n // 2)
    limit = int(n_comparisons) if n_comparisons is not None else default_active_limit(n)
    perm = arena.rng.permutation(n)
    warm = [(int(perm[k]), int(perm[(k + 1) % n])) for k in range(n if n > 2 else 1)][: int(min(n, limit))]
    await arena.compare([(_shared_context(arena, a, b), a, b) for a, b in warm])
    done = len(warm)
    while done < limit:
        board = fit_bradley_terry(_comparisons_so_far(arena, out), prior=prior, intervals="fisher", level=level)
        theta, cov = board.scores, board.covariance
        if _separated(theta, board.ci_low_log, board.ci_high_log, stop_top):
            out.stopped = "separated"
            return
        size = int(min(batch, limit - done))
        d = np.diag(cov)
        if rule == "ucb":
            pairs = _ucb_matchmaking(theta, theta + exploration * np.sqrt(np.maximum(d, 0)), size)
        else:
            p = special.expit(theta[:, None] - theta[None, :])
            var = np.maximum(d[:, None] + d[None, :] - 2 * cov, 1e-12)
            score = p * (1 - p) * var
            if rule in ("rank", "discordance"):
                score = p * (1 - p) * special.ndtr(-np.abs(theta[:, None] - theta[None, :]) / np.sqrt(var))
            np.fill_diagonal(score, -np.inf)
            if rule == "discordance":
                score = _discordance_gain(theta, cov, p, var, score, candidates or 4 * n)
            pairs = _greedy_matching(score, size)
        if not pairs:  # no finite score left: another round would ask nothing and loop forever
            out.stopped = "no informative pair"
            return
        await arena.compare([(_shared_context(arena, a, b), a, b) for a, b in pairs])
        done += len(pairs)
    out.stopped = "limit"


def _discordance_gain(theta, cov, p, var, rank_score, candidates: int) -> np.ndarray:
    """n×n scores: for the ``candidates`` best pairs by ``rank_score``, the drop in the posterior expected number
    of discordant pairs after one comparison of that pair (rank-one update of ``cov``); −inf elsewhere."""
    n = len(theta)
    iu, ju = np.triu_indices(n, 1)
    flat = rank_score[iu, ju]
    top = np.argsort(-flat, kind="stable")[: min(candidates, len(flat))]
    top = top[np.isfinite(flat[top])]
    ci, cj = iu[top], ju[top]
    gap = np.abs(theta[iu] - theta[ju])
    before = special.ndtr(-gap / np.sqrt(var[iu, ju]))
    u = cov[:, ci] - cov[:, cj]  # (n, m): Σx for each candidate x = e_i − e_j
    w = p[ci, cj] * (1 - p[ci, cj])
    shrink = w / (1 + w * var[ci, cj])  # (m,)
    drop = (u[iu] - u[ju]) ** 2 * shrink  # (pairs, m): reduction of Var(θ_k − θ_l)
    after = special.ndtr(-gap[:, None] / np.sqrt(np.maximum(var[iu, ju][:, None] - drop, 1e-12)))
    out = np.full((n, n), -np.inf)
    out[ci, cj] = before.sum() - after.sum(axis=0)
    return out


def default_active_limit(n_items: int) -> int:
    """The default cap on ``active``'s comparisons: 10·n·⌈log2 n⌉ (sorting needs of the order of n·log2 n).

    >>> from pairkit.select import default_active_limit
    >>> default_active_limit(16)
    640
    """
    return int(10 * n_items * max(1, math.ceil(math.log2(max(n_items, 2)))))


def default_random_pairs(n_items: int) -> int:
    """The default number of ``random_pairs`` comparisons: n(n−1)/2, as many as a round robin.

    >>> from pairkit.select import default_random_pairs
    >>> default_random_pairs(16)
    120
    """
    return int(n_items * (n_items - 1) // 2)


def _ucb_matchmaking(theta: np.ndarray, ucb: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Anchors by decreasing upper confidence bound, each against the free item closest in rating."""
    free = np.ones(len(theta), bool)
    pairs: list[tuple[int, int]] = []
    for i in np.argsort(-ucb, kind="stable"):
        if not free[i]:
            continue
        free[i] = False
        others = np.flatnonzero(free)
        if not len(others) or len(pairs) >= size:
            break
        j = int(others[np.argmin(np.abs(theta[others] - theta[i]))])
        free[j] = False
        pairs.append((int(i), j))
    return pairs


def _comparisons_so_far(arena: Arena, out: Selection):
    out.decisions, out.weights = arena.decisions, arena.weights
    return out.comparisons()


# ------------------------------------------------------------------------------------------------ API
def _prepare(judge, cache, budget, reuse_reversed: bool, retry_unparseable: bool) -> CachedJudge:
    if isinstance(budget, (int, np.integer)):
        budget = Budget(max_calls=int(budget))
    if isinstance(judge, CachedJudge):
        if budget is not None:
            judge.budget = check_priced(judge.inner, budget)
        judge.reuse_reversed = judge.reuse_reversed or reuse_reversed
        judge.retry_unparseable = judge.retry_unparseable or retry_unparseable
        return judge
    cache = cache if isinstance(cache, JudgmentCache) or cache is None else JudgmentCache(cache)
    return CachedJudge(judge, cache, budget=budget, reuse_reversed=reuse_reversed, retry_unparseable=retry_unparseable)


async def aselect(
    strategy: str,
    judge,
    pool: Pool,
    *,
    policy: str = "random",
    budget: int | Budget | None = None,
    cache=None,
    seed: int | np.random.Generator | None = 0,
    length_rule: int | None = None,
    progress=None,
    reuse_reversed: bool = False,
    retry_unparseable: bool = False,
    **options,
) -> Selection:
    """Async :func:`select`.

    >>> import asyncio
    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Pool, aselect
    >>> judge = SimulatedJudge({"a": 3.0, "b": 0.0, "c": -3.0}, seed=0)
    >>> run = asyncio.run(aselect("knockout", judge, Pool.single(["a", "b", "c"])))
    >>> run.pool.items[run.winner]
    'a'
    """
    spec = STRATEGIES.get(strategy)
    options = spec.check(options, where=f"strategy {spec.name!r}: ")
    if reuse_reversed and policy != "random":
        raise InputError(
            f"reuse_reversed=True treats the two orders as one judgment, which only the 'random' "
            f"position policy allows (got policy={policy!r})"
        )
    wrapped = _prepare(judge, cache, budget, reuse_reversed, retry_unparseable)
    arena = Arena(wrapped, pool, policy=policy, length_rule=length_rule, seed=seed, progress=progress)
    out = Selection(
        strategy=strategy,
        pool=pool,
        policy=policy,
        records=arena.records,
        decisions=arena.decisions,
        failures=arena.failures,
        weights=arena.weights,
    )
    try:
        await spec.fn(arena, out, **options)
    except BudgetExhausted:
        out.stopped = "budget"
    out.decisions, out.weights = arena.decisions, arena.weights
    out.info["usage"] = wrapped.usage
    return out


def select(strategy: str, judge, pool: Pool, **options) -> Selection:
    """Run a selection strategy by name and return its :class:`Selection`.

    Args:
        strategy: a name in :data:`STRATEGIES`.
        judge: any comparator; it is wrapped in a :class:`~pairkit.judges.CachedJudge` (pass one to control
            the cache) so in-flight duplicates merge and budgets apply.
        pool: the candidates.
        policy: position policy (``"random"``, ``"both_average"``, ``"both_conflict_tie"``, ``"estimate"``).
        budget: a number of judge calls or a :class:`Budget`; the strategy stops when it is used up
            (``Selection.stopped == "budget"``) keeping every judgment made.
        cache: a :class:`JudgmentCache` or SQLite path (resuming a killed run repeats no paid call).
        length_rule: WildBench's K (characters) for the length rule, None to switch it off.
        reuse_reversed: answer a prompt from the cached judgment of the other order (policy ``"random"``
            only: it assumes no position bias; the k-th sample of one order stands in for the other's).
        retry_unparseable: ask again for prompts whose cached paid reply had no verdict (by default such a
            prompt raises :class:`~pairkit.judges.JudgeError` naming the cached reply, and is not paid again).
        options: the strategy's own options (``k``, ``best_of``, ``n_comparisons``, …).

    Example:

        >>> from pairkit.judges import SimulatedJudge
        >>> from pairkit.select import Pool, select
        >>> strengths = {'a': 3.0, 'b': 1.5, 'c': 0.0, 'd': -1.5}
        >>> run = select('active', SimulatedJudge(strengths, seed=0), Pool.single(list(strengths)), n_comparisons=200)
        >>> print(run.stopped, run.calls <= 200)
        separated True
        >>> print(run.leaderboard(prior=1.0).to_pandas()['item'].tolist())
        ['a', 'b', 'c', 'd']
    """
    return run_sync(aselect(strategy, judge, pool, **options))


def dry_run(strategy: str, judge, pool: Pool, *, seed: int = 0, **options) -> dict[str, float]:
    """Estimate the calls and money a run would take, without calling the judge.

    The strategy runs against a coin-flipping stand-in; each call it makes is priced by
    ``judge.estimate_cost``. Fixed designs (round robin, knockout, heap top-k) get their exact call count;
    adaptive ones an estimate. Returns ``{"calls", "estimated_cost"}``.

    >>> from pairkit.judges import SimulatedJudge
    >>> from pairkit.select import Pool, dry_run
    >>> pool = Pool.single(["a", "b", "c", "d"])
    >>> dry_run("round_robin", SimulatedJudge({"a": 1.0, "b": 0.5, "c": 0.0, "d": -0.5}), pool)
    {'calls': 6.0, 'estimated_cost': 0.0}
    """
    from pairkit.judges.base import CallableJudge, Request

    coin = np.random.default_rng(seed)
    stand_in = CallableJudge(lambda c, x, y: float(coin.random() < 0.5), judge_id="dry-run")
    options.pop("cache", None)
    sel = select(strategy, stand_in, pool, seed=seed, **options)
    refs = pool.references or (None,) * len(pool.contexts)
    cost = sum(
        judge.estimate_cost(
            Request(
                pool.context_text[r.context],
                pool.text[r.context][r.a],
                pool.text[r.context][r.b],
                r.judgment.order,
                refs[r.context],
            )
        )
        for r in sel.records
    )
    return {"calls": float(sel.calls), "estimated_cost": float(cost)}
