"""Preference, unpaired and listwise trainers for transformers causal LMs (plain PyTorch loops).

Each trainer tokenises its data once, gets the reference model's sequence log-probabilities (precomputed
once and cached on disk, keyed by a hash of the model's weights and the token ids; or, for a PEFT model with
``reference="adapter"``, the same model with its adapter disabled), and runs the shared loop of
:mod:`pairkit.train._loop` with the loss looked up by name in :mod:`pairkit.losses`.

Metrics per step: the loss, the implicit rewards :math:`\\beta(\\log\\pi - \\log\\pi_{ref})` (Rafailov et al.
2023) of chosen/rejected (or desirable/undesirable, or best/other) responses, their margin and the
implicit-reward accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError
from pairkit.train import _dist as dist
from pairkit.train._inputs import needs_token_inputs, token_inputs
from pairkit.train._loop import (
    TrainConfig,
    TrainResult,
    fit,
)
from pairkit.train._steps import (
    UNPAIRED_INPUTS,
    attach_fields,
    combine_losses,
    encode,
    field_inputs,
    flat_logps,
    loss_terms,
    normalised_rows,
    pad_id_of,
    pair_examples,
    pair_step,
    prepare_reference,
    seq_logps,
    trainer_options,
    warn_truncation,
)
from pairkit.train.data import TruncationWarning, collate_sequences, to_listwise, to_unpaired  # noqa: F401  (TruncationWarning lived here)

__all__ = [
    "CheckedLoss",
    "SparseMaskHead",
    "check_loss",
    "evaluate_preference",
    "train_listwise",
    "train_preference",
    "train_unpaired",
]


class SparseMaskHead(torch.nn.Module):
    """SparsePO's learned token mask: a linear map of the policy's hidden state and a ReLU, one weight per token.

    .. math::

        m_t = \\max\\big(0,\\ w^\\top h_{t-1} + b\\big)

    Christopoulou et al. (2024), "SparsePO: Controlling Preference Alignment of LLMs via Sparse Token Masks" (the
    learned-mask variant; the ReLU makes masks sparse). :math:`h_{t-1}` is the final hidden state that predicts
    token :math:`t`, ``[n, hidden]`` → ``[n]``. Initialised to :math:`w = 0, b = 1`: every mask starts at 1, so
    training starts from TDPO1 (with the KL terms) and the mask is learned through the loss. Pass it to
    :func:`train_preference` with ``loss="sparse_po"``.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.proj.weight)
        torch.nn.init.ones_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Mask values ``[n]`` (≥ 0) for final hidden states ``[n, hidden]``."""
        return torch.relu(self.proj(hidden.to(self.proj.weight.dtype))).squeeze(-1)


@dataclasses.dataclass(frozen=True)
class CheckedLoss:
    """A preference loss (or weighted sum of losses), its ``beta`` and its options, checked once by :func:`check_loss`.

    ``terms`` holds ``(name, weight, function)`` per loss term, ``options`` the checked loss options (``beta``
    included) and ``beta`` the KL strength, in :math:`(0, \\infty)`.
    """

    terms: tuple[tuple[str, float, Callable], ...]
    options: dict[str, Any]
    beta: float


def check_loss(
    loss: str | dict[str, float] = "dpo",
    *,
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    family: str | tuple[str, ...] = "preference",
) -> CheckedLoss:
    """Check a preference loss, ``beta`` and the loss options once, before any model is loaded.

    Every name must be a registered loss of ``family`` (:func:`train_listwise` also takes ``"preference_tree"``),
    ``beta`` must be in :math:`(0, \\infty)` and every option must be declared by a loss, inside its range;
    otherwise :class:`~pairkit.errors.InputError` names what is wrong. Give the result as ``loss=`` to
    :func:`train_preference`, :func:`train_unpaired` or :func:`train_listwise`: they take ``beta`` and the options
    from it and do not check them again.

    >>> checked = check_loss("dpo+0.2*sft", beta=0.5)
    >>> [(name, weight) for name, weight, _ in checked.terms], checked.beta
    ([('dpo', 1.0), ('sft', 0.2)], 0.5)
    """
    terms = loss_terms(loss, family)
    return CheckedLoss(tuple(terms), trainer_options(terms, beta, loss_options), float(beta))


def _checked(loss, beta: float, loss_options: dict[str, Any] | None, family="preference") -> CheckedLoss:
    """The trainers' one check: a :class:`CheckedLoss` is used as it is, anything else is checked here."""
    if not isinstance(loss, CheckedLoss):
        return check_loss(loss, beta=beta, loss_options=loss_options, family=family)
    if loss_options:
        raise InputError("loss is a CheckedLoss: give loss_options to check_loss, not to the trainer")
    return loss


def _degree_head(model, head, classes: int, seed: int) -> torch.nn.Module:
    """SPO's classifier: the given one (checked to give ``classes`` logits) or a seeded linear layer."""
    weight = model.get_output_embeddings().weight
    if head is None:
        g = torch.Generator().manual_seed(seed)
        head = torch.nn.Linear(weight.shape[1], classes, dtype=weight.dtype)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=g, dtype=weight.dtype) * 0.02)
            head.bias.zero_()
        return head.to(weight.device)
    with torch.no_grad():
        out = head(weight.new_zeros(1, weight.shape[1]))
    if out.shape != (1, classes):
        raise InputError(f"degree_head must map [hidden={weight.shape[1]}] to [{classes}] logits (2 × (1 + the most "
                         f"key-content spans in a row)), got {list(out.shape[1:])}")  # fmt: skip
    return head


def train_preference(
    model,
    tokenizer,
    data,
    *,
    loss: str | dict[str, float] | CheckedLoss = "dpo",
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    reference: str | torch.nn.Module = "precompute",
    ref_cache_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    mask_head: torch.nn.Module | None = None,
    degree_head: torch.nn.Module | None = None,
) -> TrainResult:
    """Train a causal LM on chosen/rejected pairs with a pairwise preference loss (or a weighted sum).

    .. math::

        \\mathcal{L} = \\frac{1}{B}\\sum_{i} \\sum_k w_k\\,\\ell_k\\big(\\log\\pi(y^c_i), \\log\\pi(y^r_i),
        \\log\\pi_{ref}(y^c_i), \\log\\pi_{ref}(y^r_i)\\big)

    DPO: Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model". ``loss`` is a registered ``preference``-family name (``"dpo"``, ``"ipo"``, …), or a weighted
    combination such as ``"dpo+0.2*sft"`` / ``{"dpo": 1, "sft": 0.2}``; ``sft`` is the token-mean negative
    log-likelihood of the chosen responses (the MPO mixture of Wang et al. 2024, "Enhancing the Reasoning
    Ability of Multimodal Large Language Models via Mixed Preference Optimization").

    Args:
        model: a transformers causal LM (optionally a PEFT model).
        tokenizer: its tokenizer; the chat template is used for message prompts when present.
        data: a file path (JSON/JSONL/Parquet), a DataFrame or a list of rows in a format of
            :func:`pairkit.train.data.to_pairs`.
        reference: ``"precompute"`` (the initial model, cached under ``ref_cache_dir`` or
            ``output_dir/ref_cache``) or ``"adapter"`` (PEFT model with the adapter disabled).
        mask_head: SparsePO's learned token mask (:class:`SparseMaskHead`) for ``loss="sparse_po"``; it is
            registered on the model as the submodule ``sparse_po_mask`` (trained, checkpointed and saved with
            it). Without one SparsePO's masks are uniform.
        degree_head: SPO's preference-degree classifier for ``loss="spo"``: a module from the final hidden state
            of a degraded sample's last token ``[hidden]`` to ``[2D]`` class logits. The degraded samples are made
            from the ``chosen_key_content`` / ``rejected_key_content`` columns (lists of substrings of the
            response; :func:`pairkit.train.spo_degraded_samples` says how); without a head one
            ``torch.nn.Linear(hidden, 2D)`` is made (seeded by ``config.seed``). It is registered on the model as
            the submodule ``spo_degree_head`` and trained with it. Without those columns SPO trains its DPO term
            only (with a warning).

    Data parallel (``accelerate launch``, ``torchrun``): each step's batch is split between the processes in
    order and the gradients summed, which gives one process's update on the whole batch. A batch-coupled loss
    (``sft``, ``dr_dpo``, ``aot``, ``aot_unpaired``: its ``pairkit.losses.spec(name).batch_coupled``) is computed on
    every process's rows gathered in order, only this process's carrying gradient, weighted so that the summed
    gradients and the logged loss are one process's on the whole batch
    (:func:`pairkit.train._steps.loss_values`); every process must then get a pair of every step (the last batch
    of an epoch too), and ``grad_accum`` must be 1.
    """
    config = config or TrainConfig()
    checked = _checked(loss, beta, loss_options)
    terms, options, beta = list(checked.terms), checked.options, checked.beta
    token_kinds = needs_token_inputs([n for n, _, _ in terms])
    if mask_head is not None:
        if "token_weights" not in token_kinds:
            raise InputError(
                f"mask_head is SparsePO's learned token mask; loss {[n for n, *_ in terms]} takes no token weights"
            )
        model.add_module("sparse_po_mask", mask_head)
    examples = pair_examples(tokenizer, data, config, terms, joint=True)
    classes = examples[0].get("degree_classes", 0) if examples else 0
    if degree_head is not None and not classes:
        raise InputError("degree_head is SPO's preference-degree classifier: give loss 'spo' and rows with a "
                         "'chosen_key_content' or 'rejected_key_content' column")  # fmt: skip
    if classes:
        degree_head = _degree_head(model, degree_head, classes, config.seed)
        model.add_module("spo_degree_head", degree_head)
    pad_id = pad_id_of(tokenizer)
    live = prepare_reference(model, examples, pad_id, config, reference, ref_cache_dir, live=bool(token_kinds))
    step = pair_step(terms, options, beta, pad_id, config, live, frozenset(token_kinds), mask_head, degree_head)
    return fit(model, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])


def evaluate_preference(
    model, tokenizer, data, *, beta: float = 0.1, reference_model=None, config: TrainConfig | None = None
) -> dict[str, float]:
    """Implicit-reward accuracy and mean margin of ``model`` on held-out pairs.

    .. math::

        \\text{acc} = \\frac{1}{n}\\sum_i \\mathbb{1}\\big[\\beta(\\log\\tfrac{\\pi(y^c_i)}{\\pi_{ref}(y^c_i)}
        - \\log\\tfrac{\\pi(y^r_i)}{\\pi_{ref}(y^r_i)}) > 0\\big]

    With ``reference_model=None`` the log-likelihood margin of the model itself is used.
    """
    config = config or TrainConfig()
    examples = pair_examples(tokenizer, data, config, joint=True)
    pad_id = pad_id_of(tokenizer)
    margins = []
    with torch.no_grad():
        for start in range(0, len(examples), config.batch_size):
            flat = [s for ex in examples[start : start + config.batch_size] for s in ex["seqs"]]
            was = model.training
            model.eval()
            pol, _ = seq_logps(model, flat, pad_id, config.chunk_size)
            model.train(was)
            ref = seq_logps(reference_model, flat, pad_id, config.chunk_size)[0] if reference_model else 0 * pol
            m = beta * ((pol - ref)[0::2] - (pol - ref)[1::2])
            margins.append(m.double())
    margins = torch.cat(margins)
    return {
        "accuracy": float((margins > 0).double().mean()),
        "margin": float(margins.mean()),
        "n": len(margins),
        "ties": int((margins == 0).sum()),
    }


# ---------------------------------------------------------------------------------------------- unpaired


def train_unpaired(
    model,
    tokenizer,
    data,
    *,
    loss: str | dict[str, float] | CheckedLoss = "kto",
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    reference: str | torch.nn.Module = "precompute",
    ref_cache_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on completions labelled desirable/undesirable (KTO, APO-unpaired, …).

    .. math::

        \\mathcal{L} = \\frac{1}{B}\\sum_i \\ell\\big(\\log\\pi(y_i), \\log\\pi_{ref}(y_i), d_i, z_0\\big),\\quad
        z_0 = \\max\\Big(0, \\tfrac{1}{B}\\sum_i \\log\\tfrac{\\pi(y'_i\\mid x_i)}{\\pi_{ref}(y'_i\\mid x_i)}\\Big)

    Ethayarajh et al. (2024), "KTO: Model Alignment as Prospect Theoretic Optimization". The KL reference
    point :math:`z_0` uses mismatched completions :math:`y'_i` (another row's completion under prompt
    :math:`x_i`, a fixed random derangement); the loss receives ``policy_kl_logps``/``ref_kl_logps`` and, if
    it asks for it, ``kl`` (the detached batch estimate). Data parallel, KTO's batch reference point (and any
    batch-coupled loss) is computed on every process's rows, as in :func:`train_preference`, so N processes train
    as one on the whole batch.
    """
    config = config or TrainConfig()
    checked = _checked(loss, beta, loss_options)
    terms, options, beta = list(checked.terms), checked.options, checked.beta
    rows, raw, source = normalised_rows(data, to_unpaired)
    n = len(rows)
    if n < 2:
        raise InputError(
            "unpaired training needs at least 2 rows (the KL term pairs each prompt with another completion)"
        )
    shift = np.random.default_rng(config.seed).integers(1, n)
    examples = []
    for i, r in enumerate(rows):
        other = rows[(i + shift) % n]["completion"]
        examples.append(
            {"seqs": encode(tokenizer, r["prompt"], [r["completion"], other], config), "label": r["label"]}
        )
    warn_truncation(examples, config, source)
    attach_fields(examples, terms, UNPAIRED_INPUTS, raw, source)
    pad_id = pad_id_of(tokenizer)
    live = prepare_reference(model, examples, pad_id, config, reference, ref_cache_dir)

    def step(model, batch_rows):
        policy, ref, lengths = flat_logps(model, batch_rows, pad_id, config, live)
        labels = torch.tensor([ex["label"] for ex in batch_rows], dtype=torch.bool)
        pl, rl, pkl, rkl = policy[0::2], ref[0::2], policy[1::2], ref[1::2]
        with torch.no_grad():  # the batch's mean over every process's rows (data parallel: the whole batch's)
            total, count = dist.total(float((pkl - rkl).sum()), len(pkl))
            kl = torch.tensor(total / count, dtype=pl.dtype).clamp_min(0)
        inputs = {
            "policy_logps": pl,
            "ref_logps": rl,
            "labels": labels,
            "desirable": labels,
            "policy_kl_logps": pkl,
            "ref_kl_logps": rkl,
            "lengths": lengths[0::2],
            **field_inputs(batch_rows, pl.dtype),
        }
        losses = combine_losses(terms, inputs, options)
        rew = (beta * (pl - rl)).detach()
        good = labels.double()
        stats = {
            "rewards/desirable_sum": rew * good,
            "rewards/undesirable_sum": rew * (1 - good),
            "desirable_fraction": good,
            "kl": kl.expand_as(rew),
        }
        return losses, stats

    return fit(model, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])


# ---------------------------------------------------------------------------------------------- listwise


def train_listwise(
    model,
    tokenizer,
    data,
    *,
    loss: str | dict[str, float] | CheckedLoss = "lipo",
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    reference: str | torch.nn.Module = "precompute",
    ref_cache_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on K responses per prompt with scores (or ranks) using a listwise preference loss (LiPO, …).

    .. math::

        \\mathcal{L} = \\frac{1}{B}\\sum_i \\ell\\big(\\log\\pi(y_{i,1..K}), \\log\\pi_{ref}(y_{i,1..K}),
        s_{i,1..K}, m_{i,1..K}\\big)

    Liu et al. (2024), "LiPO: Listwise Preference Optimization through Learning-to-Rank". Lists of different
    lengths are padded; the loss receives ``mask`` ``[batch, K]``.

    Preference-tree losses (``tpo``, family ``preference_tree``) take rows whose ``responses`` are lists of
    reasoning steps (or a ``steps`` column beside them): the trainer tokenises the joined steps, marks each
    completion token with its step, and passes per-token log-probabilities of policy and reference, the step
    indices and the policy's final hidden states ``[batch, K, T(, H)]`` (the reference is then run alongside, as
    for token-level losses; every list of a batch must have the same K). See :mod:`pairkit.train._tree`.
    """
    from pairkit import losses as registry
    from pairkit.train._tree import step_token_index, tree_inputs, tree_rows

    config = config or TrainConfig()
    checked = _checked(loss, beta, loss_options, ("preference", "preference_tree"))
    terms, options, beta = list(checked.terms), checked.options, checked.beta
    tree = any(registry.family_of(n) == "preference_tree" for n, _, _ in terms)
    normalise = (lambda raw, source: to_listwise(tree_rows(raw, source), source=source)) if tree else to_listwise
    rows, raw, source = normalised_rows(data, normalise)
    examples = [{"seqs": encode(tokenizer, r["prompt"], r["responses"], config), "scores": r["scores"]} for r in rows]
    if tree:
        for ex, r in zip(examples, tree_rows(raw, source)):
            ex["step_index"] = [step_token_index(tokenizer, s, len(c)) for s, (_, c, _) in zip(r["steps"], ex["seqs"])]
    warn_truncation(examples, config, source)
    pad_id = pad_id_of(tokenizer)
    live = prepare_reference(model, examples, pad_id, config, reference, ref_cache_dir, live=tree)

    def step(model, batch_rows):
        sizes = [len(ex["seqs"]) for ex in batch_rows]
        token = {}
        if tree:
            if len(set(sizes)) > 1:
                raise InputError(f"tree losses need the same number of responses in every list of a batch, got {sizes}")
            batch = collate_sequences([s for ex in batch_rows for s in ex["seqs"]], pad_id)
            tok = token_inputs(model, live, batch, {"hidden_states"}, chunk_size=config.chunk_size)
            token = tree_inputs(tok, batch, batch_rows, sizes[0])
            policy, ref, lengths = tok["logps"].sum(-1), tok["ref_logps"].sum(-1), tok["mask"].sum(-1)
            lengths = lengths.to(policy.dtype)
        else:
            policy, ref, lengths = flat_logps(model, batch_rows, pad_id, config, live)
        k = max(sizes)
        mask = torch.arange(k)[None, :] < torch.tensor(sizes)[:, None]
        scores = torch.zeros(mask.shape, dtype=policy.dtype)
        scores[mask] = torch.tensor([s for ex in batch_rows for s in ex["scores"]], dtype=policy.dtype)

        def grid(flat, fill=0.0):
            out = torch.full(mask.shape, fill, dtype=flat.dtype)
            return out.masked_scatter(mask, flat)

        pl, rl = grid(policy), grid(ref)
        inputs = {
            "policy_logps": pl,
            "ref_logps": rl,
            "labels": scores,
            "scores": scores,
            "mask": mask,
            "lengths": grid(lengths, 1.0),
            "token": token,
        }
        if tree:  # lists of one length: no padding mask (TPO's mask is per tree)
            inputs.pop("mask")
        best = torch.where(mask, scores, -torch.inf).argmax(-1, keepdim=True)
        losses = combine_losses(terms, inputs, options)
        if tree:  # the tree's own verdict: the best response's adaptive step reward above every other's (no ties)
            from pairkit.losses import adaptive_step_rewards

            with torch.no_grad():
                rew = adaptive_step_rewards(token["policy_logps"] - token["ref_logps"], token["step_index"],
                                            token["hidden_states"])  # fmt: skip
                top = rew.gather(-1, best)
                others = rew.scatter(-1, best, -torch.inf).max(-1, keepdim=True).values
            stats = {"accuracy": (top > others).double().squeeze(1)}
        else:
            rew = torch.where(mask, beta * (pl - rl), -torch.inf).detach()
            stats = {"accuracy": (rew.argmax(-1, keepdim=True) == best).double().squeeze(1)}
        return losses, stats

    return fit(model, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])
