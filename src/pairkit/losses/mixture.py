"""Weighted sums of registered losses (MPO-style mixtures, TRL's ``loss_type=[...]`` with ``loss_weights``)."""

from __future__ import annotations

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
    term whose spec declares them as an input or option (per-term ``kwargs`` take precedence); a function must
    be a registered loss (see ``pairkit.losses.register``). Reductions are linear, so the
    result equals TRL's ``loss_type=[...]`` with ``loss_weights=[...]``.

    Returns ``fn(*inputs, mask=None, weights=None, reduction="mean", **kwargs)``.
    """
    from pairkit.losses._core import REGISTRY, spec

    if not terms:
        raise InputError("weighted_sum needs at least one (loss, weight) term")
    by_fn = {s.fn: s for s in REGISTRY.specs()}
    built = []
    for term in terms:
        if not isinstance(term, (tuple, list)) or len(term) not in (2, 3):
            raise InputError(f"each term must be (name_or_fn, weight) or (name_or_fn, weight, kwargs), got {term!r}")
        found = spec(term[0]) if isinstance(term[0], str) else by_fn.get(term[0])
        if found is None:
            raise InputError(
                f"{term[0]!r} is not a registered loss; register it with pairkit.losses.register (declaring its "
                "inputs and options) to combine it"
            )
        built.append((found, float(term[1]), dict(term[2]) if len(term) == 3 else {}))

    def combined(*inputs, mask=None, weights=None, reduction: Reduction = "mean", **kwargs):
        unused = [k for k in kwargs if not any(s.accepts(k) for s, *_ in built)]
        if unused:
            raise InputError(f"no term of the combined loss accepts {sorted(unused)}")
        total = None
        for s, weight, own in built:
            kw = {k: v for k, v in kwargs.items() if s.accepts(k)}
            kw.update(own)
            value = weight * s.fn(*inputs, mask=mask, weights=weights, reduction=reduction, **kw)
            total = value if total is None else total + value
        return total

    combined.__doc__ = "Weighted sum of " + ", ".join(f"{w} * {s.name}" for s, w, _ in built)
    return combined
