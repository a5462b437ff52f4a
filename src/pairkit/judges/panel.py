"""A panel of judges on every pair, their votes pooled by per-judge reliability.

:class:`PanelJudge` asks all its judges concurrently and returns the posterior probability that ``a`` is better
under the classical independent-voter model (Nitzan & Paroush 1982, "Optimal decision rules in uncertain
dichotomous choice situations"; the same pooling as Dawid & Skene 1979 with symmetric confusion): judge *k* is
right with probability :math:`q_k`, independently of the others, so with votes :math:`v_k = +1` (a), −1 (b) or 0
(tie or no decision),

.. math::

    \\log\\frac{P(a \\succ b \\mid v)}{P(b \\succ a \\mid v)} = \\sum_k v_k\\, w_k,\\qquad
    w_k = \\log\\frac{q_k}{1 - q_k},

which is the optimal weighted majority vote. The reliabilities come from human-labelled pairs
(:func:`panel_reliability`, Laplace-smoothed agreement) or are given; equal reliabilities make it a plain
majority vote with a confidence that grows with the margin. This is the panel idea of Verga et al. (2024),
"Replacing judges with juries: evaluating LLM generations with a panel of diverse models" (PoLL), with weights.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, JudgeError, Judgment, Request

__all__ = ["PanelJudge", "panel_reliability"]


def panel_reliability(votes, labels, *, smoothing: float = 1.0) -> np.ndarray:
    """(K,) each judge's probability of agreeing with the human label, Laplace-smoothed: (right + s) / (n + 2s).

    Args:
        votes: (M, K) each judge's expected score of ``a`` on M human-labelled pairs (1, ½, 0 or a probability;
            NaN: the judge was not asked). Only decisive votes (≠ ½) and decisive labels count.
        labels: (M,) the human outcome for ``a`` (1, ½, 0).

    >>> import numpy as np
    >>> from pairkit.judges import panel_reliability
    >>> votes = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    >>> print(panel_reliability(votes, [1.0, 0.0, 1.0, 0.0]).round(3))
    [0.833 0.5  ]
    """
    v, y = np.asarray(votes, dtype=float), np.asarray(labels, dtype=float)
    if v.ndim != 2 or y.shape != (v.shape[0],):
        raise InputError(f"votes must be (M, K) and labels (M,), got shapes {v.shape} and {y.shape}")
    if not smoothing >= 0:
        raise InputError(f"smoothing must be >= 0, got {smoothing!r}")
    decided = np.isfinite(v) & (v != 0.5) & (y != 0.5)[:, None]
    right = ((v > 0.5) == (y > 0.5)[:, None]) & decided
    n = decided.sum(axis=0)
    if np.any(n + 2 * smoothing == 0):
        raise InputError("a judge has no decisive vote on a decisive label; give smoothing > 0 or more labels")
    return (right.sum(axis=0) + smoothing) / (n + 2 * smoothing)


class PanelJudge(ComparatorBase):
    """Several judges per pair, pooled by reliability (see the module docstring).

    Args:
        judges: the panel (any comparators; asked concurrently).
        reliability: (K,) each judge's probability of being right, in (0, 1) (from :func:`panel_reliability`);
            default: every judge 0.75.

    >>> from pairkit.judges import CallableJudge, PanelJudge
    >>> judges = [CallableJudge(lambda c, a, b, v=v: v, judge_id=f'j{k}') for k, v in enumerate([1.0, 1.0, 0.0])]
    >>> panel = PanelJudge(judges, reliability=[0.8, 0.8, 0.6])
    >>> round(panel.judge('q', 'x', 'y').p_a, 3)
    0.914
    """

    def __init__(self, judges: Sequence, reliability: Sequence[float] | None = None) -> None:
        super().__init__()
        if len(judges) < 2:
            raise InputError(f"a panel needs at least 2 judges, got {len(judges)}")
        q = np.full(len(judges), 0.75) if reliability is None else np.asarray(reliability, dtype=float)
        if q.shape != (len(judges),) or not np.all((q > 0) & (q < 1)):
            raise InputError(f"reliability must give one probability in (0, 1) per judge, got {reliability!r}")
        self.judges, self.reliability = list(judges), q
        self.weights = np.log(q / (1 - q))
        self.judge_id = "panel(" + ",".join(j.judge_id for j in self.judges) + ")"
        self.prompt_version = "|".join(j.prompt_version for j in self.judges)
        self.priced = any(getattr(j, "priced", False) for j in self.judges)

    def cache_identity(self) -> dict:
        """Every judge's identity and the weights (part of the cache key)."""
        from pairkit.judges.cache import judge_identity

        return {"judges": [judge_identity(j) for j in self.judges], "reliability": self.reliability.round(12).tolist()}

    def estimate_cost(self, request: Request) -> float:
        return float(sum(j.estimate_cost(request) for j in self.judges))

    async def ajudge(self, request: Request) -> Judgment:
        results = await asyncio.gather(*(j.ajudge(request) for j in self.judges), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        done = [r for r in results if not isinstance(r, BaseException)]
        spent = sum(j.cost for j in done) + sum(getattr(e, "cost", 0.0) for e in failed)
        if failed:
            error = failed[0] if isinstance(failed[0], JudgeError) else JudgeError(str(failed[0]))
            error.cost = spent
            raise error
        scores = np.array([j.score for j in done])
        votes = np.sign(np.round(scores - 0.5, 12))
        log_odds = float(votes @ self.weights)
        p_a = 1.0 / (1.0 + math.exp(-log_odds)) if log_odds > -700 else 0.0
        out = Judgment(
            p_a=p_a,
            order=request.order,
            raw="; ".join(f"{j.judge_id}: {s:.3f}" for j, s in zip(self.judges, scores)),
            verdict="".join("AB="[0 if v > 0 else 1 if v < 0 else 2] for v in votes),
            cost=spent,
            prompt_tokens=sum(j.prompt_tokens for j in done),
            completion_tokens=sum(j.completion_tokens for j in done),
            n_calls=sum(j.n_calls for j in done),
            judge=self.judge_id,
        )
        self.usage.add(out)
        return replace(out, order=request.order)
