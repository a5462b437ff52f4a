"""Loss inputs beyond sequence log-probabilities: per-example data columns and token-level tensors.

A registered loss declares its inputs (:func:`pairkit.losses.spec`). The trainers compute the log-probability
inputs themselves; the rest comes from here:

* per-example numbers (quality margins, preference probabilities, rewards, soft or regression targets) from
  named data columns (:data:`COLUMNS`), checked to be finite (probabilities in [0, 1]);
* token-level tensors ``[batch, T]`` — per-token log-probabilities of policy and reference, completion masks,
  the per-token KL divergence of the policy's next-token distribution from the reference's, and the logits of
  rejected tokens against sampled positives — computed chunk by chunk over the completion positions from the
  final hidden states, so ``[batch, T, vocab]`` logits are never built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pairkit.errors import InputError

__all__ = ["COLUMNS", "data_fields", "edit_masks", "needs_token_inputs", "token_inputs"]

# data columns that fill a loss input the trainer does not compute (the first one present is used)
COLUMNS: dict[str, tuple[str, ...]] = {
    "quality_margins": ("quality_margins", "quality_margin", "margin", "gap"),
    "preference_probs": ("preference_probs", "preference_prob", "p_chosen"),
    "target_probs": ("target_probs", "target_prob", "preference_probs", "preference_prob", "p_chosen"),
    "rewards": ("rewards", "reward", "score"),
    "values": ("values", "value"),
    "chosen_targets": ("chosen_targets", "chosen_score"),
    "rejected_targets": ("rejected_targets", "rejected_score"),
    "margin": ("margin",),
    "strength": ("strength",),
}
_PROBABILITIES = {"probs"}


def _specs(names: Sequence[str]):
    from pairkit import losses

    return [losses.spec(n) for n in names]


def needs_token_inputs(names: Sequence[str]) -> set[str]:
    """The kinds of token-level inputs (``token_logps``, ``token_kl``, ``token_logits``, …) the losses take."""
    return {inp.kind for s in _specs(names) for inp in s.input_specs if inp.shape == "[batch, T]"}


def data_fields(
    names: Sequence[str], produced: set[str], rows: Sequence[dict[str, Any]], source: str
) -> dict[str, np.ndarray]:
    """Per-example inputs of the losses ``names`` that the trainer does not produce, read from data columns.

    A required input without a column raises :class:`InputError` naming the columns looked for; an optional one
    is left out. Values must be finite numbers (probabilities in [0, 1]); a bad one is named by row and column.
    """
    wanted: dict[str, tuple[bool, str]] = {}
    for spec in _specs(names):
        for inp in spec.input_specs:
            if inp.name in produced or inp.shape != "[batch]":
                continue
            required = inp.required or wanted.get(inp.name, (False, ""))[0]
            wanted[inp.name] = (required, inp.kind)
    out: dict[str, np.ndarray] = {}
    columns = set().union(*(r.keys() for r in rows[:1])) if rows else set()
    for field, (required, kind) in wanted.items():
        candidates = COLUMNS.get(field, (field,))
        column = next((c for c in candidates if c in columns), None)
        if column is None:
            if required:
                users = [s.name for s in _specs(names) if field in [i.name for i in s.input_specs]]
                raise InputError(
                    f"{source}: loss {users[0]!r} needs {field!r} per example; give it in a column named "
                    f"{' or '.join(map(repr, candidates))}"
                )
            continue
        values = np.full(len(rows), np.nan)
        raw = [r.get(column) for r in rows]
        for i, v in enumerate(raw):
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                values[i] = float(v)
        bad = ~np.isfinite(values)
        if kind in _PROBABILITIES:
            bad |= (values < 0) | (values > 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            allowed = "a probability in [0, 1]" if kind in _PROBABILITIES else "a finite number"
            raise InputError(
                f"{source}, row {row + 1}, column {column!r}: expected {allowed}, got {raw[row]!r} "
                f"({int(bad.sum())} such rows)"
            )
        out[field] = values
    return out


def without_cache(model) -> dict[str, bool]:
    """``{"use_cache": False}`` for a transformers model (its config has ``use_cache``), else ``{}``.

    Scoring never decodes further, so the key/value cache is only memory; and a block recomputed in backward
    (activation checkpointing) would append its keys to the cache a second time.
    """
    return {"use_cache": False} if getattr(getattr(model, "config", None), "use_cache", None) is not None else {}


def hidden_states_and_head(model, input_ids, attention_mask):
    """Final hidden states ``[b, T, H]`` and the output projection (weight, bias) of a causal LM."""
    config = getattr(model, "config", None)
    if any(getattr(config, key, None) not in (None, 1.0) for key in ("final_logit_softcapping", "logit_scale")):
        raise InputError(
            "token-level losses need logits that are a linear projection of the decoder output; this model "
            "transforms them (soft-capping or scaling)"
        )
    head = model.get_output_embeddings()
    decoder = model.get_decoder()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, **without_cache(decoder)).last_hidden_state
    return hidden, head.weight, getattr(head, "bias", None)


def _logits(h, weight, bias):
    # half-precision logits lose the log-partition function to rounding: float32 (float64 stays float64)
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    z = h.to(dtype) @ weight.to(dtype).T
    return z + bias.to(dtype) if bias is not None else z


def _kl_chunk(h_pol, w_pol, b_pol, h_ref, w_ref, b_ref):
    ref = F.log_softmax(_logits(h_ref, w_ref, b_ref), -1)
    pol = F.log_softmax(_logits(h_pol, w_pol, b_pol), -1)
    return (ref.exp() * (ref - pol)).sum(-1)


def token_inputs(
    model,
    reference,
    batch: dict[str, torch.Tensor],
    kinds: set[str],
    *,
    chunk_size: int = 1024,
    cringe_k: int = 5,
    generator: torch.Generator | None = None,
    mask_head: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Token-level tensors ``[n, T]`` for the sequences of ``batch`` (``input_ids``, ``attention_mask``,
    ``completion_mask``), aligned with the label positions (position ``t`` scores token ``t``).

    .. math::

        \\ell_t = \\log\\pi(y_t\\mid y_{<t}),\\qquad
        D_t = \\sum_v \\pi_{ref}(v\\mid y_{<t})\\log\\frac{\\pi_{ref}(v\\mid y_{<t})}{\\pi(v\\mid y_{<t})}

    Returns ``logps``, ``ref_logps``, ``mask`` (the scored completion tokens) and, when ``kinds`` asks for
    them, ``hidden`` (``hidden_states``: the final hidden states, detached), ``kl`` (``token_kl``: Zeng et al.
    2024, "Token-level Direct Preference Optimization"), ``token_logits`` and ``positive_logits`` (the logit of
    each realised token and of a positive sampled from the top-``cringe_k`` others: Adolphs et al. 2022, "The
    CRINGE Loss: Learning what language not to model"). ``reference`` is
    ``(reference model, context factory)``: for a PEFT model, the model itself with ``disable_adapter``.
    With ``mask_head`` (e.g. :class:`~pairkit.train.SparseMaskHead`), ``token_weights`` holds its value on the
    hidden state that predicts each token (SparsePO's learned mask), zero off the scored tokens.
    The KL of each chunk of positions is recomputed in backward (activation checkpointing), so memory is
    ``O(chunk_size × vocab)``.
    """
    from torch.utils.checkpoint import checkpoint

    from pairkit.losses import cringe_positive_logits
    from pairkit.train.logprobs import token_logps_from_hidden

    ids, attn, comp = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    scored = comp.clone()
    scored[:, 0] = False
    h, w, b = hidden_states_and_head(model, ids, attn)
    out = {"mask": scored}
    out["logps"] = token_logps_from_hidden(h, w, ids, bias=b, mask=comp, chunk_size=chunk_size)
    ref_model, ref_context = reference
    with torch.no_grad(), ref_context():
        hr, wr, br = hidden_states_and_head(ref_model, ids, attn)
        hr, wr = hr.detach(), wr.detach()
        br = br.detach() if br is not None else None
        if wr.shape != w.shape:
            raise InputError(
                f"the reference model's vocabulary ({wr.shape[0]}) differs from the policy's ({w.shape[0]})"
            )
        out["ref_logps"] = token_logps_from_hidden(hr, wr, ids, bias=br, mask=comp, chunk_size=chunk_size)
    label_pos = scored.reshape(-1).nonzero().squeeze(1)
    pred_pos = label_pos - 1
    n_t = scored.numel()
    if mask_head is not None:
        hp = h.reshape(-1, h.shape[-1]).index_select(0, pred_pos)
        weights = mask_head(hp).reshape(-1).to(out["logps"].dtype)
        out["token_weights"] = weights.new_zeros(n_t).index_copy(0, label_pos, weights).reshape(scored.shape)
    if "hidden_states" in kinds:  # the policy's final hidden states (TPO's step similarities; no gradient)
        out["hidden"] = h.detach()
    if "token_kl" in kinds:
        hp = h.reshape(-1, h.shape[-1]).index_select(0, pred_pos)
        hq = hr.reshape(-1, hr.shape[-1]).index_select(0, pred_pos)
        parts = [
            checkpoint(_kl_chunk, hp[s : s + chunk_size], w, b, hq[s : s + chunk_size], wr, br, use_reentrant=False)
            for s in range(0, hp.shape[0], chunk_size)
        ]
        values = torch.cat(parts) if parts else hp.new_zeros(0)
        out["kl"] = values.new_zeros(n_t).index_copy(0, label_pos, values).reshape(scored.shape)
    if "token_logits" in kinds:
        hp = h.reshape(-1, h.shape[-1]).index_select(0, pred_pos)
        z = _logits(hp, w, b)  # [n_scored, vocab]: only completion positions
        targets = ids.reshape(-1).index_select(0, label_pos)
        neg = z.gather(1, targets[:, None]).squeeze(1)
        pos = cringe_positive_logits(z[None], targets[None], k=min(cringe_k, z.shape[-1] - 1), generator=generator)[0]
        out["token_logits"] = neg.new_zeros(n_t).index_copy(0, label_pos, neg).reshape(scored.shape)
        out["positive_logits"] = pos.new_zeros(n_t).index_copy(0, label_pos, pos).reshape(scored.shape)
    return out


def edit_masks(input_ids: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Which scored tokens of interleaved (chosen, rejected) rows differ between the two (``[n, T]`` bool).

    The completion tokens of each pair are aligned by :func:`pairkit.losses.token_edit_masks` (``difflib``);
    BMC's and RISE's losses weight or keep only these.
    """
    from pairkit.losses import token_edit_masks

    seqs = [row[m].tolist() for row, m in zip(input_ids, scored)]
    chosen, rejected = token_edit_masks(seqs[0::2], seqs[1::2])
    out = torch.zeros_like(scored)
    for i, marks in enumerate(m for pair in zip(chosen, rejected) for m in pair):
        out[i, scored[i].nonzero().squeeze(1)] = torch.tensor(marks, dtype=torch.bool)
    return out


def pair_token_inputs(tok: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Token tensors of interleaved (chosen, rejected) rows under the names the paired token losses declare."""
    c, r = slice(0, None, 2), slice(1, None, 2)
    out = {
        "policy_chosen_logps": tok["logps"][c],
        "policy_rejected_logps": tok["logps"][r],
        "ref_chosen_logps": tok["ref_logps"][c],
        "ref_rejected_logps": tok["ref_logps"][r],
        "chosen_mask": tok["mask"][c],
        "rejected_mask": tok["mask"][r],
        "logps": tok["logps"][c],
        "mask": tok["mask"][c],
        # SparsePO's token masks: uniform unless a mask head is given (then the loss is TDPO1 with KL, else DPO)
        "chosen_token_weights": tok.get("token_weights", tok["mask"].to(tok["logps"].dtype))[c],
        "rejected_token_weights": tok.get("token_weights", tok["mask"].to(tok["logps"].dtype))[r],
    }
    if "kl" in tok:
        out.update(chosen_kl=tok["kl"][c], rejected_kl=tok["kl"][r])
    if "edit_mask" in tok:
        out.update(chosen_edit_mask=tok["edit_mask"][c], rejected_edit_mask=tok["edit_mask"][r])
    if "token_logits" in tok:
        out.update(rejected_token_logits=tok["token_logits"][r], positive_token_logits=tok["positive_logits"][r])
    return out
