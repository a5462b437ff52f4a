"""Shared machinery of every pairkit loss: the reduction, input checks and the name registry.

Conventions (see ``DESIGN.md``): a loss is a pure function ``f(inputs..., *, options..., reduction="mean")``.
``reduction="none"`` returns per-example values, ``"sum"`` their (weighted) sum and ``"mean"`` their weighted
mean over the valid (unmasked) examples. Empty or fully masked input reduces to ``0`` — never NaN.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Literal

import torch

from pairkit.errors import InputError

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def reduce_loss(
    values: torch.Tensor,
    reduction: Reduction = "mean",
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce per-example loss values safely.

    ``mask`` (bool, broadcastable to ``values``) marks valid entries; masked entries contribute exactly zero
    (also to gradients, even where ``values`` is inf/NaN there). ``weights`` multiply each entry; the
    ``"mean"`` divides by the sum of weights over valid entries (the count when unweighted). An empty or
    all-masked input reduces to 0 with the dtype and device of ``values``.

    With ``reduction="none"`` masked entries are returned as 0 and weights are applied.
    """
    if reduction not in _REDUCTIONS:
        raise InputError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=values.dtype, device=values.device)
        values = values * weights
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=values.device)
        values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if weights is None:
        denom = mask.expand_as(values).sum() if mask is not None else values.numel()
        denom = torch.as_tensor(denom, dtype=values.dtype, device=values.device)
    else:
        w = weights.expand_as(values)
        if mask is not None:
            w = torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
        denom = w.sum()
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, total / safe, torch.zeros_like(total))


def check_same_shape(**tensors: torch.Tensor | None) -> None:
    """Raise :class:`InputError` naming the arguments when the given tensors' shapes differ."""
    given = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len(set(given.values())) > 1:
        desc = ", ".join(f"{k} {list(s)}" for k, s in given.items())
        raise InputError(f"shapes must match: {desc}")


def check_float_tensors(
    mask: torch.Tensor | None = None, weights: torch.Tensor | None = None, *, what: str = "", **tensors
) -> torch.Tensor:
    """Check same-shape floating-point tensors (``None`` skipped) with ``mask``/``weights`` broadcasting to them.

    Returns the first tensor. ``what`` (e.g. ``" of log-probabilities"``) is appended to the dtype error.
    """
    first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name} must be a floating-point torch tensor{what}, got {kind}")
        if first is None:
            first = t
        elif t.shape != first.shape:
            check_same_shape(**tensors)  # raises, naming every shape
    if mask is not None:
        check_broadcastable("mask", mask, first.shape)
    if weights is not None:
        check_broadcastable("weights", weights, first.shape)
    return first


def check_broadcastable(name: str, tensor: torch.Tensor | None, shape: torch.Size | tuple[int, ...]) -> None:
    """Raise :class:`InputError` when ``tensor`` (e.g. a mask or weights) cannot broadcast to ``shape``."""
    if tensor is None:
        return
    try:
        torch.broadcast_shapes(tuple(tensor.shape), tuple(shape))
    except RuntimeError:
        raise InputError(
            f"{name} of shape {list(tensor.shape)} does not broadcast to the input shape {list(shape)}"
        ) from None


# ----------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., torch.Tensor]] = {}
_FAMILY: dict[str, str] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *, family: str, aliases: tuple[str, ...] = ()) -> Callable:
    """Decorator: register a loss under ``name`` (and ``aliases``, e.g. a peer's spelling) in ``family``."""

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise RuntimeError(f"loss name {key!r} registered twice")
        _REGISTRY[name] = fn
        _FAMILY[name] = family
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return wrap


def get(name: str) -> Callable[..., torch.Tensor]:
    """Return the loss function registered under ``name`` or one of its aliases."""
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    try:
        return _REGISTRY[key]
    except KeyError:
        close = difflib.get_close_matches(key, [*_REGISTRY, *_ALIASES], n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InputError(f"unknown loss {name!r}.{hint} See pairkit.losses.names().") from None


def names(family: str | None = None, *, aliases: bool = False) -> list[str]:
    """Sorted registered loss names, optionally of one family; ``aliases=True`` includes the aliases."""
    out = [n for n in _REGISTRY if family is None or _FAMILY[n] == family]
    if aliases:
        out += [a for a, n in _ALIASES.items() if family is None or _FAMILY[n] == family]
    return sorted(out)


def canonical_name(name: str) -> str:
    """The registered name that ``name`` (possibly an alias) refers to."""
    fn = get(name)
    return next(k for k, v in _REGISTRY.items() if v is fn)


def family_of(name: str) -> str:
    """The family ('preference', 'ranking', ...) of a registered loss."""
    return _FAMILY[canonical_name(name)]
