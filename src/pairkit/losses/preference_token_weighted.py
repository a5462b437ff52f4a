"""Token-weighted DPO losses for pairs built by editing one response into the other: BMC and RISE.

Both papers build pairs whose two responses differ in a few tokens (BMC: a pseudo-winner written by improving the
loser with the winner as a guide; RISE: subtle errors injected into a correct solution by the model itself, see
the construction rules ``bmc_pseudo_winner`` and ``rise_self_edit`` of :mod:`pairkit.curate`), and weight the
per-token log ratios so that the edited tokens carry the signal. Inputs are per-token log-probabilities
``[batch, time]`` of the realised tokens with bool completion masks; ``chosen_edit_mask`` /
``rejected_edit_mask`` (bool ``[batch, time]``) mark the edited tokens (:func:`token_edit_masks` computes them
from token ids; :func:`pairkit.train.train_preference` does so for every pair). Without edit masks every
completion token counts as edited.
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F

from pairkit._spec import Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_token_mask, check_tokens
from pairkit.losses._core import (
    TOKEN_MASKS,
    TOKEN_PAIR_REF,
    Reduction,
    check_broadcastable,
    keyword,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses._pairs import BETA, FAMILY

__all__ = ["bmc_loss", "bmc_token_weights", "rise_loss", "token_edit_masks"]

EDIT_MASKS = (
    keyword("chosen_edit_mask", "token_mask", "[batch, T]", doc="edited tokens of the chosen response"),
    keyword("rejected_edit_mask", "token_mask", "[batch, T]", doc="edited tokens of the rejected response"),
)
_INPUTS = (*TOKEN_PAIR_REF[:4], *EDIT_MASKS, *TOKEN_MASKS)


def token_edit_masks(chosen_ids, rejected_ids, *, ignore=()) -> tuple[list[list[bool]], list[list[bool]]]:
    """Which tokens of each (chosen, rejected) pair of token-id sequences were edited (an alignment by difflib).

    A token is edited when the longest-matching-block alignment (``difflib.SequenceMatcher``) replaces,
    deletes or inserts it; ids in ``ignore`` (e.g. stop words, as BMC's authors do) are never marked. Returns one
    bool list per sequence, for the chosen and for the rejected side.
    """
    if len(chosen_ids) != len(rejected_ids):
        raise InputError(f"chosen_ids and rejected_ids must pair up, got {len(chosen_ids)} and {len(rejected_ids)}")
    ignore = set(ignore)
    out_c, out_r = [], []
    for c, r in zip(chosen_ids, rejected_ids):
        c, r = list(c), list(r)
        mc, mr = [False] * len(c), [False] * len(r)
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, r, c, autojunk=False).get_opcodes():
            if tag == "equal":
                continue
            for i in range(i1, i2):
                mr[i] = r[i] not in ignore
            for j in range(j1, j2):
                mc[j] = c[j] not in ignore
        out_c.append(mc)
        out_r.append(mr)
    return out_c, out_r


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(-1)


def _parts(pc, pr, rc, rr, chosen_edit_mask, rejected_edit_mask, chosen_mask, rejected_mask, mask, weights):
    first = check_tokens(
        {"policy_chosen_logps": pc, "policy_rejected_logps": pr, "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    )
    cm = check_token_mask("chosen_mask", chosen_mask, first)
    rm = check_token_mask("rejected_mask", rejected_mask, first)
    ce = cm & check_token_mask("chosen_edit_mask", chosen_edit_mask, first)
    re = rm & check_token_mask("rejected_edit_mask", rejected_edit_mask, first)
    check_broadcastable("mask", mask, first.shape[:1])
    check_broadcastable("weights", weights, first.shape[:1])
    return cm, rm, ce, re


def bmc_token_weights(logps: torch.Tensor, edit_mask: torch.Tensor, *, delta: float = 2.0) -> torch.Tensor:
    """BMC's token weights :math:`w_t = 1 + e_t \\min(1/\\operatorname{sg}[\\pi_\\theta(y_t)], \\delta)`.

    ``logps`` ``[batch, time]`` per-token log-probabilities of the policy (detached here), ``edit_mask`` bool of
    the same shape. Returns ``[batch, time]``.
    """
    confidence = torch.exp(-logps.detach()).clamp(max=delta)
    return 1.0 + edit_mask.to(logps.dtype) * confidence


@register(
    "bmc",
    inputs=_INPUTS,
    family=FAMILY,
    aliases=("dpo_bmc",),
    options=(BETA, Option("delta", float, Interval(1, None), doc="cap δ of the inverse-confidence weight")),
)
def bmc_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    chosen_edit_mask: torch.Tensor | None = None,
    rejected_edit_mask: torch.Tensor | None = None,
    beta: float = 0.1,
    delta: float = 2.0,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """BMC: DPO with the log ratios of edited tokens up-weighted by the policy's inverse confidence.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big[\\sum_t w_{c,t}\\rho_{c,t} - \\sum_t w_{r,t}\\rho_{r,t}\\Big]\\Big),
        \\qquad w_t = 1 + e_t \\min\\big(1/\\operatorname{sg}[\\pi_\\theta(y_t\\mid x, y_{<t})],\\ \\delta\\big)

    with :math:`\\rho_t = \\log\\pi_\\theta(y_t) - \\log\\pi_{ref}(y_t)` and :math:`e_t` the edit masks.
    Jiang et al. (2025), "Bridging and Modeling Correlations in Pairwise Data for Direct Preference Optimization"
    (the modelling phase; the bridging phase is the ``bmc_pseudo_winner`` rule of :mod:`pairkit.curate`). Reading
    taken: the weights come from the policy and multiply the per-token log *ratio* (the paper's token-level
    reward); the authors' trainer weights the policy's and the reference's log-probabilities each by its own model's
    confidence, which differs only through the reference term. δ = 2 is the authors' default. Weights are not
    differentiated.

    Args: four ``[batch, time]`` log-probability tensors; edit and completion masks ``[batch, time]`` bool;
    ``mask``, ``weights`` ``[batch]``. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    cm, rm, ce, re = _parts(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
        chosen_edit_mask, rejected_edit_mask, chosen_mask, rejected_mask, mask, weights,
    )  # fmt: skip
    wc = bmc_token_weights(policy_chosen_logps, ce, delta=delta)
    wr = bmc_token_weights(policy_rejected_logps, re, delta=delta)
    margin = _masked_sum(wc * (policy_chosen_logps - ref_chosen_logps), cm) - _masked_sum(
        wr * (policy_rejected_logps - ref_rejected_logps), rm
    )
    return reduce_loss(-F.logsigmoid(beta * margin), reduction, mask=mask, weights=weights)


@register(
    "rise",
    inputs=_INPUTS,
    family=FAMILY,
    aliases=("rise_dpo",),
    options=(BETA, weight_option("alpha", "weight α of the chosen response's NLL term")),
)
def rise_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    chosen_edit_mask: torch.Tensor | None = None,
    rejected_edit_mask: torch.Tensor | None = None,
    beta: float = 0.1,
    alpha: float = 0.0,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """RISE: subtle-error-aware DPO — the margin over the edited (error) tokens only, plus an NLL term.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big[\\sum_t e_{c,t}\\,\\rho_{c,t} - \\sum_t e_{r,t}\\,\\rho_{r,t}\\Big]\\Big)
                - \\frac{\\alpha}{|y_c|}\\sum_t \\log\\pi_\\theta(y_{c,t}\\mid x, y_{c,<t})

    Xu et al. (2025), "Subtle Errors in Reasoning: Preference Learning via Error-injected Self-editing" (RISE).
    For a self-edited pair (correct solution, the same solution with an injected error) :math:`e` marks the
    edited tokens, so the preference signal sits on the error; for sampled pairs give no edit masks and the margin
    is DPO's over the whole completions. Reading taken: the error-token mask restricts both sides' sums (tokens
    the edit did not touch carry no margin); α weighs the length-normalised NLL of the chosen response, the
    regulariser the paper adds (α = 0 turns it off).

    Args: four ``[batch, time]`` log-probability tensors; edit and completion masks ``[batch, time]`` bool;
    ``mask``, ``weights`` ``[batch]``. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    cm, rm, ce, re = _parts(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
        chosen_edit_mask, rejected_edit_mask, chosen_mask, rejected_mask, mask, weights,
    )  # fmt: skip
    margin = _masked_sum(policy_chosen_logps - ref_chosen_logps, ce) - _masked_sum(
        policy_rejected_logps - ref_rejected_logps, re
    )
    values = -F.logsigmoid(beta * margin)
    if alpha:
        counts = cm.sum(-1).clamp(min=1).to(values.dtype)
        values = values - alpha * _masked_sum(policy_chosen_logps, cm) / counts
    return reduce_loss(values, reduction, mask=mask, weights=weights)
