"""Trust or Escalate: trust a judge only above a calibrated confidence, else ask a stronger one.

Jung, Brahman & Choi (2024), "Trust or Escalate: LLM judges with provable guarantees for human agreement".
A threshold λ is calibrated on human-labelled comparisons so that, with probability at least 1 − δ over the
calibration sample, the judge agrees with humans at rate ≥ 1 − α on the comparisons it is trusted with
(confidence ≥ λ). Thresholds are tested from the most to the least confident by fixed-sequence testing, each
with an exact binomial test of H₀: risk(λ) > α, and the smallest λ before the first non-rejection is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, Request

__all__ = ["Calibration", "EscalatingJudge", "calibrate_threshold", "confidence"]


def confidence(judgment: Judgment) -> float:
    """A judgment's confidence: the probability of its most probable outcome (a, b or tie).

    >>> from pairkit.judges import Judgment, confidence
    >>> confidence(Judgment(p_a=0.7, p_tie=0.2)), confidence(Judgment(p_a=0.1, p_tie=0.1))
    (0.7, 0.8)
    """
    return max(judgment.p_a, judgment.p_b, judgment.p_tie)


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold: trust the judge when its confidence ≥ ``threshold`` (inf: never).

    >>> from pairkit.judges import Calibration
    >>> cal = Calibration(threshold=0.8, coverage=0.4, agreement=0.92, n_trusted=40, target=0.9, delta=0.1)
    >>> cal.threshold, cal.n_trusted
    (0.8, 40)
    """

    threshold: float
    coverage: float
    agreement: float
    n_trusted: int
    target: float
    delta: float


def calibrate_threshold(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    *,
    target: float = 0.9,
    delta: float = 0.1,
) -> Calibration:
    """Smallest confidence threshold whose human agreement is ≥ ``target`` with probability ≥ 1 − ``delta``.

    .. math::

        \\hat\\lambda = \\min\\{\\lambda_k : p(\\lambda_j) \\le \\delta\\ \\forall j \\le k\\},\\qquad
        p(\\lambda) = P\\big(\\mathrm{Bin}(n(\\lambda), \\alpha) \\le e(\\lambda)\\big),\\ \\alpha = 1 - \\text{target}

    with :math:`n(\\lambda)` the calibration comparisons with confidence ≥ λ, :math:`e(\\lambda)` the judge's
    disagreements with humans among them and :math:`\\lambda_1 > \\lambda_2 > \\dots` the distinct confidences,
    starting at the first that admits enough comparisons to reject at all (:math:`(1-\\alpha)^{n} \\le \\delta`).
    Jung et al. (2024), "Trust or Escalate" (fixed-sequence testing, Bauer 1991).

    Args:
        confidence: (M,) the judge's confidence on human-labelled comparisons.
        correct: (M,) whether the judge agreed with the human label.

    >>> import numpy as np
    >>> from pairkit.judges import calibrate_threshold
    >>> conf = np.linspace(0.5, 1.0, 50)
    >>> correct = np.random.default_rng(0).random(50) < conf
    >>> cal = calibrate_threshold(conf, correct, target=0.8, delta=0.1)
    >>> round(float(cal.threshold), 3), round(float(cal.coverage), 3), round(float(cal.agreement), 3)
    (0.898, 0.22, 1.0)
    """
    c = np.asarray(confidence, float)
    y = np.asarray(correct)
    if c.ndim != 1 or c.shape != y.shape or not len(c):
        raise InputError(
            f"confidence and correct must be non-empty 1-D arrays of equal length, got shapes {c.shape} and {y.shape}"
        )
    if not np.isfinite(c).all():
        raise InputError(f"confidence has {int((~np.isfinite(c)).sum())} non-finite value(s)")
    if not (0 < target < 1 and 0 < delta < 1):
        raise InputError(f"target and delta must lie in (0, 1), got {target!r} and {delta!r}")
    order = np.argsort(-c, kind="stable")
    c, wrong = c[order], ~y[order].astype(bool)
    # a threshold at a distinct confidence value admits every comparison with at least that confidence
    last = np.flatnonzero(np.r_[c[1:] != c[:-1], True])
    n = last + 1
    errors = np.cumsum(wrong)[last]
    from scipy import stats  # lazily: scipy.stats takes ~0.5 s to import

    p_values = stats.binom.cdf(errors, n, 1.0 - target)
    # Thresholds admitting fewer than n_min comparisons cannot reject even with no error ((1-α)^n > δ); the
    # sequence starts after them instead of stopping at once.
    n_min = int(np.ceil(np.log(delta) / np.log(target)))
    start = int(np.searchsorted(n, n_min))
    failed = np.flatnonzero(p_values[start:] > delta)
    k = start + (failed[0] if len(failed) else len(last) - start)
    if k == start:
        return Calibration(float("inf"), 0.0, float("nan"), 0, target, delta)
    m = int(n[k - 1])
    return Calibration(float(c[last[k - 1]]), m / len(c), 1.0 - errors[k - 1] / m, m, target, delta)


class EscalatingJudge(ComparatorBase):
    """Ask ``judges`` in order (cheap to strong); trust the first whose confidence reaches its threshold.

    ``thresholds[k]`` belongs to ``judges[k]`` (from :func:`calibrate_threshold`); the last judge is always
    trusted. The returned judgment names the judge that answered and carries the cost of every judge asked.

    >>> from pairkit.judges import CallableJudge, EscalatingJudge
    >>> cheap = CallableJudge(lambda context, a, b: 0.55, judge_id='cheap')
    >>> strong = CallableJudge(lambda context, a, b: 1.0, judge_id='strong')
    >>> judge = EscalatingJudge([cheap, strong], thresholds=[0.9])
    >>> round(judge.judge('q', 'x', 'y').p_a, 3)
    1.0
    """

    def __init__(self, judges: Sequence, thresholds: Sequence[float | Calibration]) -> None:
        super().__init__()
        if len(judges) < 2 or len(thresholds) != len(judges) - 1:
            raise InputError(
                f"need at least 2 judges and one threshold per judge but the last; got {len(judges)} "
                f"judges and {len(thresholds)} thresholds"
            )
        self.judges = list(judges)
        self.thresholds = [t.threshold if isinstance(t, Calibration) else float(t) for t in thresholds]
        self.judge_id = "escalate(" + ">".join(j.judge_id for j in self.judges) + ")"
        self.prompt_version = "|".join(
            f"{j.prompt_version}@{t:g}" for j, t in zip(self.judges, [*self.thresholds, 0.0])
        )
        self.escalations = np.zeros(len(self.judges), dtype=np.int64)
        self.priced = any(getattr(j, "priced", False) for j in self.judges)

    def cache_identity(self) -> dict:
        """Every judge's identity and threshold (part of the cache key)."""
        from pairkit.judges.cache import judge_identity

        return {"judges": [judge_identity(j) for j in self.judges], "thresholds": self.thresholds}

    async def ajudge(self, request: Request) -> Judgment:
        spent = [0.0, 0, 0, 0]
        for k, judge in enumerate(self.judges):
            judgment = await judge.ajudge(request)
            spent = [
                spent[0] + judgment.cost,
                spent[1] + judgment.prompt_tokens,
                spent[2] + judgment.completion_tokens,
                spent[3] + judgment.n_calls,
            ]
            if k == len(self.judges) - 1 or confidence(judgment) >= self.thresholds[k]:
                self.escalations[k] += 1
                out = replace(
                    judgment,
                    cost=spent[0],
                    prompt_tokens=spent[1],
                    completion_tokens=spent[2],
                    n_calls=spent[3],
                    judge=judgment.judge or judge.judge_id,
                )
                self.usage.add(out)
                return out
        raise AssertionError("unreachable")  # pragma: no cover
