"""Weighted sums of registered losses (MPO-style mixtures, TRL's ``loss_type=[...]`` with ``loss_weights``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from pairkit.errors import InputError
from pairkit.losses._core import Reduction

__all__ = ["weighted_sum"]


def weighted_sum(terms) -> Callable[..., torch.Tensor]:
    """Build a loss that is a weighted sum of registered losses (MPO-style mixtures).

    .. math::

        \\ell = \\sum_k w_k\\, \\ell_k

    Wang et al. (2024), "Enhancing the Reasoning Ability of Multimodal Large Language Models via Mixed
    Preference Optimization" (MPO = sigmoid + bco_pair + sft). ``terms`` is a list of ``(name_or_fn, weight)``
    or ``(name_or_fn, weight, kwargs)``; keyword arguments given when calling the combined loss go to every
    term whose signature accepts them (per-term ``kwargs`` take precedence). Reductions are linear, so the
    result equals TRL's ``loss_type=[...]`` with ``loss_weights=[...]``.

    Returns ``fn(*inputs, mask=None, weights=None, reduction="mean", **kwargs)``.
    """
    from pairkit.losses._core import get

    if not terms:
        raise InputError("weighted_sum needs at least one (loss, weight) term")
    built = []
    for term in terms:
        if not isinstance(term, (tuple, list)) or len(term) not in (2, 3):
            raise InputError(f"each term must be (name_or_fn, weight) or (name_or_fn, weight, kwargs), got {term!r}")
        fn = get(term[0]) if isinstance(term[0], str) else term[0]
        params = inspect.signature(fn).parameters
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        built.append((fn, float(term[1]), dict(term[2]) if len(term) == 3 else {}, set(params), accepts_any))

    def combined(*inputs, mask=None, weights=None, reduction: Reduction = "mean", **kwargs):
        unused = set(kwargs) - set().union(*(names for *_, names, _ in built))
        if unused and not any(any_kw for *_, any_kw in built):
            raise InputError(f"no term of the combined loss accepts {sorted(unused)}")
        total = None
        for fn, weight, own, names, any_kw in built:
            kw = {k: v for k, v in kwargs.items() if any_kw or k in names}
            kw.update(own)
            value = weight * fn(*inputs, mask=mask, weights=weights, reduction=reduction, **kw)
            total = value if total is None else total + value
        return total

    combined.__doc__ = "Weighted sum of " + ", ".join(f"{w} * {getattr(f, '__name__', f)}" for f, w, *_ in built)
    return combined
