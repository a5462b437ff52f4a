"""Collect named intermediate outputs (hidden states) of a model for feature-level distillation.

The feature distillers in :mod:`pairkit.losses.distill_feature` take tensors; this helper gets them from any
``torch.nn.Module`` — a Hugging Face model included — with forward hooks on named submodules, removed again
when the forward pass ends (also on error).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch

from pairkit.errors import InputError

__all__ = ["collect_hidden_states"]


def _first_tensor(output: Any) -> torch.Tensor:
    """A module's output tensor: the tensor itself, the first element of a tuple/list, or ``last_hidden_state``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    raise InputError(f"cannot take a hidden state from a module output of type {type(output).__name__}")


def collect_hidden_states(
    model: torch.nn.Module, names: Sequence[str], *args: Any, detach: bool = False, **kwargs: Any
) -> tuple[Any, dict[str, torch.Tensor]]:
    """Run ``model(*args, **kwargs)`` once and return ``(outputs, {name: hidden state})`` for the named submodules.

    ``names`` are module paths as in ``model.named_modules()`` (for a Llama causal LM e.g. ``"model.layers.0"``,
    ``"model.norm"``; for GPT-2 ``"transformer.h.1"``). Each collected tensor is the module's output — the first
    element when the module returns a tuple, as decoder layers do — so it is ``[batch, T, hidden]`` for a
    transformer block. Gradients flow through the collected tensors unless ``detach=True`` (use that, or
    ``torch.no_grad()``, for the teacher). A module that runs more than once in the pass (a shared block) raises
    :class:`~pairkit.errors.InputError`, since one name would then stand for several tensors.

    Unknown names raise :class:`~pairkit.errors.InputError` with the closest module names.
    """
    if isinstance(names, str):
        names = [names]
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        hints = {n: difflib.get_close_matches(n, list(modules), n=3) for n in missing}
        detail = "; ".join(f"{n!r} (closest: {', '.join(h) or 'none'})" for n, h in hints.items())
        raise InputError(f"model has no submodule {detail}")
    if len(set(names)) != len(names):
        raise InputError(f"names must be distinct, got {list(names)}")
    collected: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if name in collected:
                raise InputError(f"submodule {name!r} ran more than once in one forward pass")
            tensor = _first_tensor(output)
            collected[name] = tensor.detach() if detach else tensor

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        outputs = model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    not_run = [n for n in names if n not in collected]
    if not_run:
        raise InputError(f"submodules {not_run} did not run in the forward pass")
    return outputs, {n: collected[n] for n in names}
