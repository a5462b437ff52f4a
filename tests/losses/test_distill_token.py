"""MGSR's span-level correlation consistency against a slow loop reference and closed forms.

Liu et al. (2024), "Multi-Granularity Semantic Revision for Large Language Model Distillation": for neighbouring
tokens of one span, the Hadamard product of their next-token distributions; the l2 distance between the teacher's
and the student's products, averaged over the pairs. Reference: float64 loops over sequences, positions and vocab.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _logits(b=3, t=6, v=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, t, v, generator=g, dtype=torch.float64)
    return s, torch.randn(b, t, v, generator=g, dtype=torch.float64)


def _softmax(row):
    top = max(row)
    z = sum(math.exp(x - top) for x in row)
    return [math.exp(x - top) / z for x in row]


def _ref(s, t, spans, mask=None):
    pair_values = []
    per_position = [[0.0] * s.shape[1] for _ in range(s.shape[0])]
    for b in range(s.shape[0]):
        for i in range(s.shape[1] - 1):
            a, c = int(spans[b][i]), int(spans[b][i + 1])
            if a < 0 or a != c or (mask is not None and not (mask[b][i] and mask[b][i + 1])):
                continue
            ps0, ps1 = _softmax(s[b, i].tolist()), _softmax(s[b, i + 1].tolist())
            pt0, pt1 = _softmax(t[b, i].tolist()), _softmax(t[b, i + 1].tolist())
            d = math.sqrt(sum((x0 * x1 - y0 * y1) ** 2 for x0, x1, y0, y1 in zip(pt0, pt1, ps0, ps1)))
            per_position[b][i] = d
            pair_values.append(d)
    return per_position, pair_values


SPANS = torch.tensor([[0, 0, 0, -1, 1, 1], [2, 2, 3, 3, 3, -1], [-1, 4, -1, 5, 5, 6]])


def test_span_correlation_matches_loop_reference():
    s, t = _logits()
    per_position, pairs = _ref(s, t, SPANS.tolist())
    got = L.span_correlation_kd_loss(s, t, SPANS, reduction="none")
    assert got.tolist() == [pytest.approx(row, rel=1e-12, abs=1e-15) for row in per_position]
    assert len(pairs) == 7
    assert float(L.get("mgsr_span")(s, t, SPANS)) == pytest.approx(sum(pairs) / len(pairs), rel=1e-12)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 1] = False  # removes the pairs (0, 1) and (1, 2) of sequence 0
    _, masked_pairs = _ref(s, t, SPANS.tolist(), mask.tolist())
    assert len(masked_pairs) == 5
    assert float(L.span_correlation_kd_loss(s, t, SPANS, mask=mask, reduction="sum")) == pytest.approx(
        sum(masked_pairs), rel=1e-12
    )


def test_span_correlation_closed_form_two_word_vocabulary():
    # student p = (a, 1 - a) and teacher q = (c, 1 - c) at both tokens of one span:
    # || (c^2, (1-c)^2) - (a^2, (1-a)^2) ||_2
    a, c = 0.3, 0.8
    s = torch.tensor([[[math.log(a), math.log(1 - a)]] * 2], dtype=torch.float64)
    t = torch.tensor([[[math.log(c), math.log(1 - c)]] * 2], dtype=torch.float64)
    want = math.hypot(c * c - a * a, (1 - c) ** 2 - (1 - a) ** 2)
    assert float(L.span_correlation_kd_loss(s, t, torch.tensor([[7, 7]]))) == pytest.approx(want, rel=1e-12)


def test_span_correlation_is_zero_without_spans_or_for_a_copy():
    s, t = _logits(seed=1)
    outside = torch.full((3, 6), -1)
    singletons = torch.arange(6).repeat(3, 1)  # every token its own span: no pairs
    for spans in (outside, singletons):
        out = L.span_correlation_kd_loss(s, t, spans)
        assert float(out) == 0.0 and not torch.isnan(out)
    assert float(L.span_correlation_kd_loss(t, t, SPANS)) == 0.0
    # a constant shift of the logits leaves the distributions, so the relations, unchanged
    assert float(L.span_correlation_kd_loss(t + 3.0, t, SPANS)) == pytest.approx(0.0, abs=1e-15)


def test_span_correlation_gradient_flows_only_to_span_tokens():
    s, t = _logits(seed=2)
    s.requires_grad_(True)
    L.span_correlation_kd_loss(s, t, SPANS).backward()
    in_pair = torch.zeros(3, 6, dtype=torch.bool)
    same = (SPANS[:, :-1] == SPANS[:, 1:]) & (SPANS[:, :-1] >= 0)
    in_pair[:, :-1] |= same
    in_pair[:, 1:] |= same
    assert torch.all(s.grad[~in_pair] == 0) and torch.all(s.grad[in_pair].abs().sum(-1) > 0)
    s2, t2 = _logits(b=2, t=4, v=3, seed=3)
    s2.requires_grad_(True)
    spans = torch.tensor([[0, 0, 1, 1], [-1, 2, 2, 2]])
    assert torch.autograd.gradcheck(lambda x: L.span_correlation_kd_loss(x, t2, spans), (s2,))


def test_span_correlation_rejects_bad_inputs():
    s, t = _logits()
    with pytest.raises(InputError, match="must match"):
        L.span_correlation_kd_loss(s, t[:, :5], SPANS)
    with pytest.raises(InputError, match="integer"):
        L.span_correlation_kd_loss(s, t, SPANS.double())
    with pytest.raises(InputError, match=r"span_ids must have shape \[3, 6\]"):
        L.span_correlation_kd_loss(s, t, SPANS[:, :5])
    with pytest.raises(InputError, match="token mask"):
        L.span_correlation_kd_loss(s, t, SPANS, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(InputError, match="batch, T, vocab"):
        L.span_correlation_kd_loss(s[:, 0], t[:, 0], SPANS)


def test_a_student_trained_on_the_span_loss_takes_the_teachers_relations():
    """A training objective on logits the caller computes (no built-in trainer for LLM token distillation here):
    optimising a student's logits lowers the loss towards 0."""
    s, t = _logits(b=2, t=5, v=4, seed=4)
    spans = torch.tensor([[0, 0, 0, 1, 1], [2, 2, -1, 3, 3]])
    student = s.clone().requires_grad_(True)
    start = float(L.span_correlation_kd_loss(student.detach(), t, spans))
    for _ in range(80):
        (grad,) = torch.autograd.grad(L.span_correlation_kd_loss(student, t, spans), student)
        with torch.no_grad():
            student -= 5.0 * grad
    assert float(L.span_correlation_kd_loss(student.detach(), t, spans)) < 0.25 * start
