"""Span-level distillation of language models: token relations inside a sequence's spans.

Inputs are the student's and the teacher's next-token logits on the same sequences, ``[batch, T, vocab]``, and the
spans of each sequence (``span_ids [batch, T]``, from the caller's chunker). The teacher is used as given: detach it
(or compute it under ``torch.no_grad()``) for offline distillation. Token-by-token divergences are in
:mod:`pairkit.losses.divergence`.
"""

from __future__ import annotations

import torch

from pairkit._spec import Input
from pairkit.errors import InputError
from pairkit.losses._core import TOKEN_STUDENT_TEACHER, Reduction, check_broadcastable, reduce_loss, register
from pairkit.losses._embeddings import safe_norm

__all__ = ["span_correlation_kd_loss"]


def _check(student_logits, teacher_logits, span_ids, mask, weights) -> None:
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()) or x.dim() != 3 or x.shape[-1] == 0:
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            shape = list(x.shape) if isinstance(x, torch.Tensor) else ""
            raise InputError(f"{name} must be a floating-point [batch, T, vocab] tensor, got {got} {shape}")
    if student_logits.shape != teacher_logits.shape:
        raise InputError(
            f"student_logits {list(student_logits.shape)} and teacher_logits {list(teacher_logits.shape)} must match"
        )
    lead = tuple(student_logits.shape[:2])
    if not isinstance(span_ids, torch.Tensor) or span_ids.is_floating_point() or span_ids.dtype == torch.bool:
        got = span_ids.dtype if isinstance(span_ids, torch.Tensor) else type(span_ids).__name__
        raise InputError(f"span_ids must be an integer tensor [batch, T], got {got}")
    if tuple(span_ids.shape) != lead:
        raise InputError(f"span_ids must have shape {list(lead)}, got {list(span_ids.shape)}")
    if mask is not None:
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or tuple(mask.shape) != lead:
            got = f"{mask.dtype} {list(mask.shape)}"
            raise InputError(f"mask must be a bool token mask of shape {list(lead)}, got {got}")
    check_broadcastable("weights", weights, lead)


@register(
    "span_correlation_kd_loss",
    inputs=(
        *TOKEN_STUDENT_TEACHER,
        Input("span_ids", "span_ids", "[batch, T]", doc="span of each token; consecutive equal ids >= 0 form a span"),
    ),
    family="distill",
    aliases=("mgsr_span", "span_correlation_kd", "span_relation_kd"),
)
def span_correlation_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    span_ids: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""MGSR's span-level correlation consistency: keep the relation of neighbouring tokens inside each span.

    With :math:`p_t = \operatorname{softmax}(z_t)` a model's next-token distribution at position ``t``, the
    relation of two neighbouring tokens of one span (a noun, verb or prepositional phrase from a chunker) is the
    elementwise (Hadamard) product of their distributions; the student's relation is pulled to the teacher's:

    .. math::
        r_t = p_t \odot p_{t+1}, \qquad
        \ell_t = \big\lVert r^{t}_t - r^{s}_t \big\rVert_2
        \quad\text{for each } t \text{ with } \mathrm{span}(t) = \mathrm{span}(t+1),

    and the ``"mean"`` is over these pairs (over the batch). Positions ``t`` and ``t+1`` form a pair when their
    ``span_ids`` are equal and non-negative (``-1``: outside every span) and both are unmasked; with
    ``reduction="none"`` the pair's value sits at its first position (``[batch, T]``, 0 elsewhere).

    Liu et al. (2024), "Multi-Granularity Semantic Revision for Large Language Model Distillation"
    (arXiv:2407.10068; ACL 2026), the span-level term :math:`\mathcal L_{span}` of
    :math:`\mathcal L_{SFT} + \mathcal L_{DAC\text{-}KL} + \mathcal L_{span}`. Its token-level DAC-KL loss (a
    learned sub-network clipping the teacher's distribution) and the sequence-level correction (SCRG) are not
    here.

    Reading taken: the paper's own text could not be read here; the term is written from public reviews of it,
    which agree that its Eq. (10) takes the Hadamard product of adjacent tokens' probability vectors within a span
    and that the L2 distance between the teacher's and the student's products is minimised. Taken here: the full
    vocabulary distributions at temperature 1, the ℓ2 norm itself (not its square), and the mean over all pairs.
    The chunker is the caller's: ``span_ids`` marks its spans on the tokens.

    Args:
        student_logits, teacher_logits: ``[batch, T, vocab]`` logits at the same positions.
        span_ids: ``[batch, T]`` integers (``-1`` outside every span). mask, weights: ``[batch, T]``.
    Returns ``[batch, T]`` with ``reduction="none"``, else a scalar.
    """
    _check(student_logits, teacher_logits, span_ids, mask, weights)
    dtype = torch.float32 if student_logits.dtype in (torch.float16, torch.bfloat16) else student_logits.dtype
    batch, length = student_logits.shape[:2]
    p_s = torch.softmax(student_logits.to(dtype), dim=-1)
    p_t = torch.softmax(teacher_logits.to(dtype), dim=-1)
    diff = p_t[:, :-1] * p_t[:, 1:] - p_s[:, :-1] * p_s[:, 1:]  # [batch, T-1, vocab]
    spans = span_ids.to(student_logits.device)
    pairs = (spans[:, :-1] == spans[:, 1:]) & (spans[:, :-1] >= 0)
    if mask is not None:
        keep = torch.as_tensor(mask, device=student_logits.device)
        pairs = pairs & keep[:, :-1] & keep[:, 1:]
    pad = torch.zeros(batch, min(length, 1), dtype=dtype, device=student_logits.device)
    values = torch.cat([safe_norm(diff), pad], dim=1)
    valid = torch.cat([pairs, pad.bool()], dim=1)
    return reduce_loss(values.to(student_logits.dtype), reduction, mask=valid, weights=weights)
