"""Trust or Escalate: threshold calibration vs a brute-force reference, its coverage guarantee, escalation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pairkit.errors import InputError
from pairkit.judges import CallableJudge, EscalatingJudge, calibrate_threshold, confidence


def brute_force(c, correct, target, delta):
    """Walk the distinct confidences from the top; stop at the first binomial test that fails."""
    best = np.inf
    for lam in sorted(set(c), reverse=True):
        keep = c >= lam
        n, errors = keep.sum(), (~correct[keep]).sum()
        if target**n > delta:  # untestable: even zero errors could not reject
            continue
        if stats.binom.cdf(errors, n, 1 - target) > delta:
            break
        best = lam
    return best


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(0, 10_000), st.sampled_from([0.6, 0.8, 0.9]), st.sampled_from([0.05, 0.2]))
def test_matches_brute_force(m, seed, target, delta):
    rng = np.random.default_rng(seed)
    c = np.round(rng.uniform(0.5, 1.0, m), 2)  # rounding makes ties in confidence
    correct = rng.random(m) < c
    cal = calibrate_threshold(c, correct, target=target, delta=delta)
    assert cal.threshold == brute_force(c, correct, target, delta)
    if np.isfinite(cal.threshold):
        keep = c >= cal.threshold
        assert cal.n_trusted == keep.sum() and cal.agreement == pytest.approx(correct[keep].mean())


def test_guarantee_holds_in_repeated_calibrations():
    rng = np.random.default_rng(0)
    target, delta, reps = 0.85, 0.1, 300
    c = rng.uniform(0.5, 1.0, (reps, 500))
    correct = rng.random((reps, 500)) < c  # P(agree | confidence c) = c
    thresholds = np.array(
        [calibrate_threshold(c[r], correct[r], target=target, delta=delta).threshold for r in range(reps)]
    )
    finite = np.isfinite(thresholds)
    true_agreement = np.where(finite, (1 + np.where(finite, thresholds, 1.0)) / 2, 1.0)  # E[c | c >= λ], c ~ U(.5, 1)
    assert finite.mean() > 0.7
    assert np.mean(true_agreement >= target) >= 1 - delta  # trusting nothing (λ = ∞) satisfies it trivially
    assert np.median(thresholds[finite]) < 0.8  # and it is not vacuous: the exact boundary is λ = 0.7


def test_escalation_trusts_confident_judgments_and_sums_cost():
    weak = CallableJudge(lambda c, x, y: 0.55 if "hard" in c else 0.95, judge_id="weak")
    strong = CallableJudge(lambda c, x, y: 0.1, judge_id="strong")
    judge = EscalatingJudge([weak, strong], [0.9])
    easy, hard = judge.judge("easy", "a", "b"), judge.judge("hard", "a", "b")
    assert easy.judge == "weak" and easy.p_a == 0.95 and easy.n_calls == 1
    assert hard.judge == "strong" and hard.p_a == 0.1 and hard.n_calls == 2
    assert judge.escalations.tolist() == [1, 1] and confidence(hard) == 0.9
    with pytest.raises(InputError, match="one threshold per judge"):
        EscalatingJudge([weak, strong], [])
    assert calibrate_threshold([0.9, 0.8], [False, False]).threshold == np.inf
    with pytest.raises(InputError, match="equal length"):
        calibrate_threshold([0.9], [True, False])
