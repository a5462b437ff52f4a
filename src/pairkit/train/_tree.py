"""Inputs of the preference-tree losses (TPO) for the listwise trainer: step-segmented responses.

A tree row holds K responses to one prompt, each a list of reasoning steps (``responses`` as lists of strings, or a
``steps`` column beside the joined ``responses``), with scores. The trainer gives each completion token the
1-based index of the step it belongs to (0 outside every step: the prompt, padding, EOS or template tokens), and the
loss receives per-token log-probabilities of policy and reference, the step indices and the policy's final hidden
states, all ``[batch, K, T(, H)]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError

__all__ = ["step_token_index", "tree_inputs", "tree_rows"]


def tree_rows(raw: Sequence[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Rows with ``steps`` (per response, its list of step strings) and ``responses`` the joined steps."""
    out = []
    for i, row in enumerate(raw, start=1):
        where = f"{source}, row {i}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a dict with 'prompt', 'responses' and 'scores'")
        responses, steps = row.get("responses"), row.get("steps")
        if steps is None and isinstance(responses, Sequence) and not isinstance(responses, str):
            steps = [list(r) if isinstance(r, (list, tuple)) else [r] for r in responses]
        if not isinstance(steps, Sequence) or isinstance(steps, str) or not steps:
            raise InputError(f"{where}: tree rows need 'responses' as lists of steps (or a 'steps' column)")
        for k, response in enumerate(steps, start=1):
            if not response or not all(isinstance(s, str) and s for s in response):
                raise InputError(f"{where}, response {k}: steps must be non-empty strings, got {response!r:.80}")
        joined = ["".join(s) for s in steps]
        if isinstance(responses, Sequence) and not isinstance(responses, str) and len(responses) != len(joined):
            raise InputError(f"{where}: 'steps' has {len(joined)} responses and 'responses' {len(responses)}")
        out.append(dict(row, responses=joined, steps=[list(s) for s in steps]))
    return out


def step_token_index(tokenizer, steps: Sequence[str], n_completion: int) -> list[int]:
    """The step (1-based) of each of the first ``n_completion`` completion tokens; 0 after the last step.

    Step ``k`` ends where the tokenisation of the first ``k`` steps ends (so a token that straddles two steps
    belongs to the later one).
    """
    ends = [len(tokenizer("".join(steps[: k + 1]), add_special_tokens=False)["input_ids"]) for k in range(len(steps))]
    index = np.searchsorted(np.asarray(ends), np.arange(n_completion), side="right") + 1
    index[index > len(steps)] = 0
    return index.tolist()


def tree_inputs(tok: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], rows, k: int) -> dict[str, Any]:
    """The TPO inputs ``[b, K, T(, H)]`` from the trainer's token tensors of the ``b * K`` sequences."""
    n, t = batch["input_ids"].shape
    step = torch.zeros((n, t), dtype=torch.long)
    starts = (~batch["completion_mask"]).cumprod(-1).sum(-1)  # the prompt length of each (right-padded) sequence
    flat = [s for ex in rows for s in ex["step_index"]]
    for i, (start, index) in enumerate(zip(starts.tolist(), flat)):
        step[i, start : start + len(index)] = torch.tensor(index, dtype=torch.long)
    step = torch.where(tok["mask"], step, torch.zeros_like(step))
    b = n // k
    return {
        "policy_logps": tok["logps"].reshape(b, k, t),
        "ref_logps": tok["ref_logps"].reshape(b, k, t),
        "step_index": step.reshape(b, k, t),
        "hidden_states": tok["hidden"].reshape(b, k, t, -1),
    }
