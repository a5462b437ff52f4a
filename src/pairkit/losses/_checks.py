"""Shared input checks of the losses (lists with masks, token tensors, lengths, pairs of distributions).

Public within the package (imported by its modules), not part of the package's ``__all__``.
"""

from __future__ import annotations

import torch

from pairkit.errors import InputError
from pairkit.losses._core import check_broadcastable, check_float_tensors, check_same_shape


def check_distributions(names: tuple[str, str], a: torch.Tensor, b: torch.Tensor, mask, weights) -> None:
    """Shape checks shared by every two-distribution divergence."""
    for name, x in zip(names, (a, b)):
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] == 0:
            raise InputError(f"{name} must have shape [..., vocab] with vocab >= 1, got {list(x.shape)}")
    check_same_shape(**{names[0]: a, names[1]: b})
    lead = a.shape[:-1]
    check_broadcastable("mask", mask, lead)
    check_broadcastable("weights", weights, lead)
    if mask is not None and torch.as_tensor(mask).dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor over the leading dims {list(lead)}, got {mask.dtype}")


def check_lengths(name: str, lengths, like: torch.Tensor) -> torch.Tensor:
    """Completion lengths as a float tensor like ``like``, clamped at 1 (as TRL does) so empty ones stay finite."""
    lengths = torch.as_tensor(lengths, dtype=like.dtype, device=like.device)
    check_broadcastable(name, lengths, like.shape)
    return lengths.clamp(min=1.0)


def check_token_mask(name: str, mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    mask = torch.as_tensor(mask, device=like.device)
    if tuple(mask.shape) != tuple(like.shape):
        raise InputError(f"{name} must have the token shape {list(like.shape)}, got {list(mask.shape)}")
    if mask.dtype != torch.bool:
        raise InputError(f"{name} must be a bool tensor (True = completion token), got {mask.dtype}")
    return mask


def check_tokens(tensors: dict[str, torch.Tensor | None]) -> torch.Tensor:
    first = check_float_tensors(None, None, **tensors)
    if first.dim() != 2:
        raise InputError(f"token-level inputs must be [batch, time], got shape {list(first.shape)}")
    return first


def prepare_lists(scores, labels, mask, *, labels_name: str = "labels"):
    """Tensors ``scores``, ``labels`` (same float dtype) and a full-shape bool ``mask``.

    Masked scores and labels are replaced by 0 so that NaN/inf padding cannot leak into values or gradients.
    """
    scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        scores = scores.to(torch.get_default_dtype())
    if scores.ndim == 0:
        raise InputError("scores must have a list axis (shape [..., list]); got a scalar")
    labels = torch.as_tensor(labels, dtype=scores.dtype, device=scores.device)
    check_same_shape(scores=scores, **{labels_name: labels})
    if mask is None:
        mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    else:
        mask = torch.as_tensor(mask, device=scores.device)
        if mask.dtype != torch.bool:
            raise InputError(f"mask must be a boolean tensor (True = valid list entry); got dtype {mask.dtype}")
        check_broadcastable("mask", mask, scores.shape)
        mask = mask.expand(scores.shape)
    bad = mask & ~torch.isfinite(labels)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(
            f"{labels_name} must be finite at valid (unmasked) entries; {labels_name}{list(idx)} = "
            f"{labels[idx].item()}. Mask padded entries with mask=False instead of sentinel values."
        )
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    return torch.where(mask, scores, zero), torch.where(mask, labels, zero), mask


def check_list_inputs(
    scores: torch.Tensor, labels, mask, weights, *, names=("scores", "labels")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a ``[batch, list]`` score tensor with its labels and mask; return (labels, valid mask)."""
    if not (isinstance(scores, torch.Tensor) and scores.is_floating_point()):
        raise InputError(f"{names[0]} must be a floating-point torch tensor")
    if scores.dim() != 2:
        raise InputError(f"{names[0]} must be [batch, list], got shape {list(scores.shape)}")
    labels = torch.as_tensor(labels, device=scores.device)
    if tuple(labels.shape) != tuple(scores.shape):
        raise InputError(f"{names[1]} must have the shape {list(scores.shape)} of {names[0]}, got {list(labels.shape)}")
    labels = labels.to(scores.dtype)
    if mask is None:
        valid = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    else:
        valid = torch.as_tensor(mask, device=scores.device)
        if tuple(valid.shape) != tuple(scores.shape) or valid.dtype != torch.bool:
            raise InputError(
                f"mask must be a bool tensor of shape {list(scores.shape)}, got {valid.dtype} {list(valid.shape)}"
            )
    if bool(torch.isnan(labels[valid]).any()):
        raise InputError(f"{names[1]} contain NaN at valid positions; mask those responses out instead")
    check_broadcastable("weights", weights, scores.shape[:1])
    return labels, valid
