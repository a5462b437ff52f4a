"""Score a selection strategy against a known truth with a simulated judge."""

from __future__ import annotations

from typing import Any

import numpy as np

from pairkit.errors import InputError
from pairkit.judges.simulated import SimulatedJudge
from pairkit.select.arena import Pool
from pairkit.select.strategies import select

__all__ = ["simulate"]


def simulate(
    strategy: str,
    *,
    n_items: int = 32,
    budget: int | None = None,
    seed: int = 0,
    spread: float = 1.0,
    position_bias: float = 0.0,
    tie_margin: float = 0.0,
    model: str = "bt",
    policy: str = "random",
    k: int = 10,
    **options,
) -> dict[str, Any]:
    """Run ``strategy`` on ``n_items`` items with true strengths θ ~ N(0, spread²) and score its answer.

    Returns calls used, Kendall's τ_b between the strategy's scores and θ, whether the best item came out
    first (``top1_correct``), the share of the true top ``k`` found in its top ``k`` (``topk_accuracy``) and
    NDCG@k with linear gains ``n − true rank`` (Järvelin & Kekäläinen 2002).

    >>> from pairkit.select import simulate
    >>> result = simulate("round_robin", n_items=6, seed=0)
    >>> result["calls"], round(result["kendall_tau"], 3)
    (15, 0.733)
    """
    from pairkit.metrics import kendall_tau, ndcg

    if isinstance(n_items, bool) or not n_items >= 2:
        raise InputError(f"n_items must be an integer >= 2, got {n_items!r}")
    if not (np.isfinite(spread) and spread > 0):
        raise InputError(f"spread must be a finite number > 0 (the SD of the true strengths), got {spread!r}")
    if not np.isfinite(position_bias):
        raise InputError(f"position_bias must be a finite log-odds, got {position_bias!r}")
    if not (np.isfinite(tie_margin) and tie_margin >= 0):
        raise InputError(f"tie_margin must be a finite number >= 0, got {tie_margin!r}")
    if isinstance(k, bool) or not k >= 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    if budget is not None and not budget >= 1:
        raise InputError(f"budget must be an integer >= 1 (judge calls), got {budget!r}")
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, spread, n_items)
    names = [f"item{i:04d}" for i in range(n_items)]
    judge = SimulatedJudge(
        dict(zip(names, theta)), model=model, position_bias=position_bias, tie_margin=tie_margin, seed=rng
    )
    if strategy in ("heap_topk", "sliding_topk") and "k" not in options:
        options["k"] = k
    if strategy in ("random_pairs",) and "n_comparisons" not in options:
        options["n_comparisons"] = budget if budget is not None else n_items * (n_items - 1) // 2
    sel = select(strategy, judge, Pool.single(names), policy=policy, budget=budget, seed=rng, **options)
    scores = sel.scores()
    k = min(k, n_items)
    true_rank = np.argsort(np.argsort(-theta))
    top_true, top_est = set(np.argsort(-theta)[:k]), set(np.argsort(-scores, kind="stable")[:k])
    return {
        "strategy": strategy,
        "policy": policy,
        "n_items": n_items,
        "calls": sel.calls,
        "stopped": sel.stopped,
        "kendall_tau": float(kendall_tau(scores, theta)),
        "top1_correct": bool(np.argmax(scores) == np.argmax(theta)),
        "topk_accuracy": len(top_true & top_est) / k,
        "ndcg_at_k": float(ndcg(scores, (n_items - true_rank).astype(float), k=k, gain="linear")),
        "k": k,
        "seed": seed,
    }
