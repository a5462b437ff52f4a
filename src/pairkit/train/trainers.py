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

import copy
import functools
import hashlib
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError, PairkitWarning
from pairkit.train._inputs import data_fields, needs_token_inputs, pair_token_inputs, token_inputs
from pairkit.train._loop import (
    TrainConfig,
    TrainResult,
    call_loss,
    check_number,
    check_options,
    fit,
    init_distributed,
    parse_loss_spec,
)
from pairkit.train.data import collate_sequences, encode_completion, read_records, to_listwise, to_pairs, to_unpaired
from pairkit.train.logprobs import completion_logps

__all__ = [
    "SparseMaskHead",
    "TruncationWarning",
    "evaluate_preference",
    "train_listwise",
    "train_preference",
    "train_unpaired",
]


class TruncationWarning(PairkitWarning):
    """Sequences were cut to fit ``max_length`` (the warning gives the counts)."""


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


def _losses(loss, family: str) -> list[tuple[str, float, Callable]]:
    from pairkit import losses

    terms = []
    for name, weight in parse_loss_spec(loss):
        fn = losses.get(name)
        fam = losses.family_of(name)
        if fam != family:
            raise InputError(f"loss {name!r} is in family {fam!r}; this trainer takes {family!r} losses")
        terms.append((name, weight, fn))
    return terms


def _normalised(data, normalise: Callable[..., list[dict[str, Any]]]):
    """Rows of a path, DataFrame or list through ``normalise`` (``to_pairs``, …), errors naming the file.

    Returns the normalised rows, the raw rows (for extra per-example columns) and the source name.
    """
    source = str(data) if isinstance(data, (str, Path)) else "data"
    if isinstance(data, (str, Path)):
        rows = read_records(data)
    else:
        rows = data.to_dict(orient="records") if hasattr(data, "to_dict") else list(data)
    return normalise(rows, source=source), rows, source


def _encode(tokenizer, prompt, completions: Sequence[str], config: TrainConfig) -> list[tuple]:
    """(prompt ids, completion ids, truncated?) per completion."""
    return [
        encode_completion(
            tokenizer,
            prompt,
            c,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
            max_completion_length=config.max_completion_length,
            report=True,
        )
        for c in completions
    ]


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)


def _token_logps(model, seqs, pad_id: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token completion log-probabilities ``[n, T]`` and the mask of scored tokens ``[n, T]``."""
    batch = collate_sequences(seqs, pad_id)
    tok = completion_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], chunk_size=chunk_size
    )
    scored = batch["completion_mask"].clone()
    scored[:, 0] = False
    return tok, scored


def _seq_logps(model, seqs, pad_id: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probabilities ``[n]`` and scored-token counts ``[n]`` of (prompt, completion) ids."""
    tok, scored = _token_logps(model, seqs, pad_id, chunk_size)
    return tok.sum(-1), scored.sum(-1)


def _fingerprint(model) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _reference_logps(model, examples, pad_id: int, config: TrainConfig, cache_dir: str | Path | None) -> None:
    """Fill ``example["ref"]`` (``[k]`` float64) for every example, from the on-disk cache when present."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_fingerprint(model).encode())
    for ex in examples:
        h.update(repr(ex["seqs"]).encode())
    path = Path(cache_dir) / f"ref-logps-{h.hexdigest()}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        refs = torch.load(path)
    else:
        was_training = model.training
        model.eval()
        refs = []
        with torch.no_grad():
            for start in range(0, len(examples), config.batch_size):
                chunk = examples[start : start + config.batch_size]
                flat = [s for ex in chunk for s in ex["seqs"]]
                logps, _ = _seq_logps(model, flat, pad_id, config.chunk_size)
                offsets = np.cumsum([0] + [len(ex["seqs"]) for ex in chunk])
                refs += [logps[a:b].double() for a, b in zip(offsets[:-1], offsets[1:])]
        model.train(was_training)
        if path is not None and init_distributed()[0] == 0:  # one writer under data parallel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(refs, tmp)
            tmp.replace(path)
    for ex, ref in zip(examples, refs):
        ex["ref"] = ref


def _prepare_reference(model, examples, pad_id, config, reference, cache_dir, live: bool = False):
    """How the trainer gets reference log-probabilities.

    Returns None when they are precomputed into ``example["ref"]``, else ``(reference model, context factory)``
    for computing them on the fly: the PEFT model with its adapter disabled (``reference="adapter"``), a given
    model (any model sharing the tokenizer, e.g. a teacher), or — when token-level losses need the reference's
    next-token distributions (``live=True``) — a frozen copy of the initial model.
    """
    if isinstance(reference, torch.nn.Module):
        reference.eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        return reference, nullcontext
    if reference == "adapter":
        if not hasattr(model, "disable_adapter"):
            raise InputError("reference='adapter' needs a PEFT model (peft.get_peft_model(model, LoraConfig(...)))")
        return model, model.disable_adapter
    if reference != "precompute":
        raise InputError(f"reference must be 'precompute', 'adapter' or a model, got {reference!r}")
    if live:
        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        return frozen, nullcontext
    if cache_dir is None and config.output_dir is not None:
        cache_dir = Path(config.output_dir) / "ref_cache"
    _reference_logps(model, examples, pad_id, config, cache_dir)
    return None


def _flat_logps(model, rows, pad_id, config, live):
    """Policy and reference log-probabilities ``[n_seqs]`` and scored-token counts of the rows' sequences."""
    flat = [s for ex in rows for s in ex["seqs"]]
    policy, lengths = _seq_logps(model, flat, pad_id, config.chunk_size)
    if live is not None:
        ref_model, context = live
        with torch.no_grad(), context():
            ref, _ = _seq_logps(ref_model, flat, pad_id, config.chunk_size)
    else:
        ref = torch.cat([ex["ref"] for ex in rows])
    return policy, ref.to(policy.dtype), lengths.to(policy.dtype)


def _field_inputs(rows, dtype) -> dict[str, torch.Tensor]:
    """Per-example data columns of the rows (``example["fields"]``) as ``[batch]`` tensors."""
    if not rows or "fields" not in rows[0]:
        return {}
    return {k: torch.tensor([ex["fields"][k] for ex in rows], dtype=dtype) for k in rows[0]["fields"]}


def _attach_fields(examples, terms, produced: set[str], raw, source) -> None:
    fields = data_fields([n for n, _, _ in terms], produced, raw, source)
    for i, ex in enumerate(examples):
        ex["fields"] = {k: float(v[i]) for k, v in fields.items()}


def _combine(terms, inputs, options) -> torch.Tensor:
    return sum(weight * call_loss(name, inputs, options) for name, weight, _ in terms)


def _options(terms, beta: float, loss_options: dict[str, Any] | None) -> dict[str, Any]:
    # beta <= 0 trains away from the preferences or not at all; NaN would train every weight to NaN. Checked
    # here once (the trainer's metrics use it too); the losses are then called without their per-call check.
    check_number("beta", beta, low=0, low_open=True)
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    options.setdefault("beta", float(beta))
    return options


# ------------------------------------------------------------------------------------------------ paired


_PAIR_INPUTS = {
    "policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
    "chosen_lengths", "rejected_lengths",
}  # fmt: skip


_UNPAIRED_INPUTS = {"policy_logps", "ref_logps", "labels", "desirable", "policy_kl_logps", "ref_kl_logps", "lengths"}


def _pair_examples(tokenizer, data, config: TrainConfig, terms=(), joint: bool = False) -> list[dict[str, Any]]:
    pairs, raw, source = _normalised(data, functools.partial(to_pairs, joint=joint))
    examples = [
        {
            "seqs": _encode(tokenizer, p["prompt"], [p["chosen"]], config)
            + _encode(tokenizer, p.get("rejected_prompt", p["prompt"]), [p["rejected"]], config)
        }
        for p in pairs
    ]
    _warn_truncation(examples, config, source)
    same = sum(ex["seqs"][0] == ex["seqs"][1] for ex in examples)
    if same:
        warnings.warn(
            f"{source}: {same} of {len(examples)} pairs have chosen and rejected identical after truncation to "
            f"max_length={config.max_length} (they give no gradient); raise max_length or lower max_prompt_length",
            TruncationWarning,
            stacklevel=3,
        )
    if terms:
        _attach_fields(examples, terms, _PAIR_INPUTS, raw, source)
    return examples


def _warn_truncation(examples, config: TrainConfig, source: str) -> None:
    cut = sum(any(s[2] for s in ex["seqs"]) for ex in examples)
    for ex in examples:
        ex["seqs"] = [(p, c) for p, c, _ in ex["seqs"]]
    if cut:
        warnings.warn(
            f"{source}: {cut} of {len(examples)} rows were truncated to fit max_length={config.max_length} "
            f"(prompts first, from the left; then completions from the right)",
            TruncationWarning,
            stacklevel=4,
        )


def _pair_step(terms, options, beta, pad_id, config, live, token_kinds=frozenset(), mask_head=None):
    def step(model, rows):
        policy, ref, lengths = _flat_logps(model, rows, pad_id, config, live)
        pc, pr, rc, rr = policy[0::2], policy[1::2], ref[0::2], ref[1::2]
        inputs = {
            "policy_chosen_logps": pc,
            "policy_rejected_logps": pr,
            "ref_chosen_logps": rc,
            "ref_rejected_logps": rr,
            "chosen_lengths": lengths[0::2],
            "rejected_lengths": lengths[1::2],
            **_field_inputs(rows, pc.dtype),
        }
        if token_kinds:
            batch = collate_sequences([s for ex in rows for s in ex["seqs"]], pad_id)
            tok = token_inputs(model, live, batch, set(token_kinds), chunk_size=config.chunk_size, mask_head=mask_head)
            inputs["token"] = pair_token_inputs(tok)
        losses = _combine(terms, inputs, options)
        rew_c, rew_r = (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()
        stats = {
            "rewards/chosen": rew_c,
            "rewards/rejected": rew_r,
            "rewards/margin": rew_c - rew_r,
            "accuracy": (rew_c > rew_r).double(),
            "logps/chosen": pc.detach(),
            "logps/rejected": pr.detach(),
        }
        return losses, stats

    return step


def train_preference(
    model,
    tokenizer,
    data,
    *,
    loss: str | dict[str, float] = "dpo",
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    reference: str | torch.nn.Module = "precompute",
    ref_cache_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    mask_head: torch.nn.Module | None = None,
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
    """
    config = config or TrainConfig()
    terms = _losses(loss, "preference")
    options = _options(terms, beta, loss_options)
    token_kinds = needs_token_inputs([n for n, _, _ in terms])
    if mask_head is not None:
        if "token_weights" not in token_kinds:
            raise InputError(f"mask_head is SparsePO's learned token mask; loss {loss!r} takes no token weights")
        model.add_module("sparse_po_mask", mask_head)
    examples = _pair_examples(tokenizer, data, config, terms, joint=True)
    pad_id = _pad_id(tokenizer)
    live = _prepare_reference(model, examples, pad_id, config, reference, ref_cache_dir, live=bool(token_kinds))
    step = _pair_step(terms, options, beta, pad_id, config, live, frozenset(token_kinds), mask_head)
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
    examples = _pair_examples(tokenizer, data, config, joint=True)
    pad_id = _pad_id(tokenizer)
    margins = []
    with torch.no_grad():
        for start in range(0, len(examples), config.batch_size):
            flat = [s for ex in examples[start : start + config.batch_size] for s in ex["seqs"]]
            was = model.training
            model.eval()
            pol, _ = _seq_logps(model, flat, pad_id, config.chunk_size)
            model.train(was)
            ref = _seq_logps(reference_model, flat, pad_id, config.chunk_size)[0] if reference_model else 0 * pol
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
    loss: str | dict[str, float] = "kto",
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
    it asks for it, ``kl`` (the detached batch estimate).
    """
    config = config or TrainConfig()
    terms = _losses(loss, "preference")
    options = _options(terms, beta, loss_options)
    rows, raw, source = _normalised(data, to_unpaired)
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
            {"seqs": _encode(tokenizer, r["prompt"], [r["completion"], other], config), "label": r["label"]}
        )
    _warn_truncation(examples, config, source)
    _attach_fields(examples, terms, _UNPAIRED_INPUTS, raw, source)
    pad_id = _pad_id(tokenizer)
    live = _prepare_reference(model, examples, pad_id, config, reference, ref_cache_dir)

    def step(model, batch_rows):
        policy, ref, lengths = _flat_logps(model, batch_rows, pad_id, config, live)
        labels = torch.tensor([ex["label"] for ex in batch_rows], dtype=torch.bool)
        pl, rl, pkl, rkl = policy[0::2], ref[0::2], policy[1::2], ref[1::2]
        kl = (pkl - rkl).mean().clamp_min(0).detach()
        inputs = {
            "policy_logps": pl,
            "ref_logps": rl,
            "labels": labels,
            "desirable": labels,
            "policy_kl_logps": pkl,
            "ref_kl_logps": rkl,
            "lengths": lengths[0::2],
            **_field_inputs(batch_rows, pl.dtype),
        }
        losses = _combine(terms, inputs, options)
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
    loss: str | dict[str, float] = "lipo",
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
    """
    config = config or TrainConfig()
    terms = _losses(loss, "preference")
    options = _options(terms, beta, loss_options)
    rows, _, source = _normalised(data, to_listwise)
    examples = [{"seqs": _encode(tokenizer, r["prompt"], r["responses"], config), "scores": r["scores"]} for r in rows]
    _warn_truncation(examples, config, source)
    pad_id = _pad_id(tokenizer)
    live = _prepare_reference(model, examples, pad_id, config, reference, ref_cache_dir)

    def step(model, batch_rows):
        policy, ref, lengths = _flat_logps(model, batch_rows, pad_id, config, live)
        sizes = [len(ex["seqs"]) for ex in batch_rows]
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
        }
        best = torch.where(mask, scores, -torch.inf).argmax(-1, keepdim=True)
        losses = _combine(terms, inputs, options)
        rew = torch.where(mask, beta * (pl - rl), -torch.inf).detach()
        stats = {"accuracy": (rew.argmax(-1, keepdim=True) == best).double().squeeze(1)}
        return losses, stats

    return fit(model, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])
