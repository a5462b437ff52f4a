"""The trainers' shared steps (private to :mod:`pairkit.train`): reading and encoding rows, reference log-probabilities,
the loss terms and the paired training step, used by the offline trainers, the reward model and the online loop."""

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

from pairkit.errors import InputError
from pairkit.train import _dist as dist
from pairkit.train._inputs import data_fields, edit_masks, pair_token_inputs, token_inputs
from pairkit.train._loop import (
    TrainConfig,
    call_loss,
    check_number,
    check_options,
    init_distributed,
    parse_loss_spec,
    rank_and_world,
)
from pairkit.train.construct import SPO_KEY_COLUMNS, spo_degraded_samples
from pairkit.train.data import TruncationWarning, collate_sequences, encode_completion, read_records, to_pairs
from pairkit.train.logprobs import completion_logps

__all__ = [
    "PAIR_INPUTS",
    "RATIONALE_PROMPT",
    "UNPAIRED_INPUTS",
    "attach_fields",
    "attach_rationales",
    "combine_losses",
    "seq_logps",
    "token_logps",
    "encode",
    "field_inputs",
    "flat_logps",
    "loss_terms",
    "normalised_rows",
    "pad_id_of",
    "pair_examples",
    "pair_step",
    "prepare_reference",
    "reference_logps",
    "trainer_options",
    "warn_truncation",
    "weights_fingerprint",
]


def loss_terms(loss, family: str | tuple[str, ...]) -> list[tuple[str, float, Callable]]:
    from pairkit import losses

    families = (family,) if isinstance(family, str) else tuple(family)
    terms = []
    for name, weight in parse_loss_spec(loss):
        fn = losses.get(name)
        fam = losses.family_of(name)
        if fam not in families:
            allowed = " or ".join(map(repr, families))
            raise InputError(f"loss {name!r} is in family {fam!r}; this trainer takes {allowed} losses")
        terms.append((name, weight, fn))
    return terms


def normalised_rows(data, normalise: Callable[..., list[dict[str, Any]]]):
    """Rows of a path, DataFrame or list through ``normalise`` (``to_pairs``, …), errors naming the file.

    Returns the normalised rows, the raw rows (for extra per-example columns) and the source name.
    """
    source = str(data) if isinstance(data, (str, Path)) else "data"
    if isinstance(data, (str, Path)):
        rows = read_records(data)
    else:
        rows = data.to_dict(orient="records") if hasattr(data, "to_dict") else list(data)
    return normalise(rows, source=source), rows, source


def encode(tokenizer, prompt, completions: Sequence[str], config: TrainConfig) -> list[tuple]:
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


def pad_id_of(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)


def token_logps(model, seqs, pad_id: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token completion log-probabilities ``[n, T]`` and the mask of scored tokens ``[n, T]``."""
    batch = collate_sequences(seqs, pad_id)
    tok = completion_logps(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], chunk_size=chunk_size
    )
    scored = batch["completion_mask"].clone()
    scored[:, 0] = False
    return tok, scored


def seq_logps(model, seqs, pad_id: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probabilities ``[n]`` and scored-token counts ``[n]`` of (prompt, completion) ids."""
    tok, scored = token_logps(model, seqs, pad_id, chunk_size)
    return tok.sum(-1), scored.sum(-1)


def weights_fingerprint(model) -> str:
    """A hash of the model's class and whole state dict. A model sharded by FSDP is hashed as its gathered whole
    weights (a collective: every process must call it), so it hashes as the same model in one process does."""
    from pairkit.train._fsdp import full_state_dict, is_sharded

    sharded = is_sharded(model)
    state = full_state_dict(model) if sharded else model.state_dict()
    h = hashlib.blake2b(digest_size=16)
    h.update((type(model).__name__.removeprefix("FSDP") if sharded else type(model).__name__).encode())
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def reference_logps(model, examples, pad_id: int, config: TrainConfig, cache_dir: str | Path | None) -> None:
    """Fill ``example["ref"]`` (``[k]`` float64) for every example, from the on-disk cache when present."""
    h = hashlib.blake2b(digest_size=16)
    h.update(weights_fingerprint(model).encode())
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
                logps, _ = seq_logps(model, flat, pad_id, config.chunk_size)
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


def prepare_reference(model, examples, pad_id, config, reference, cache_dir, live: bool = False):
    """How the trainer gets reference log-probabilities.

    Returns None when they are precomputed into ``example["ref"]``, else ``(reference model, context factory)``
    for computing them on the fly: the PEFT model with its adapter disabled (``reference="adapter"``), a given
    model (any model sharing the tokenizer, e.g. a teacher), or — when token-level losses need the reference's
    next-token distributions (``live=True``) — a frozen copy of the initial model. Under FSDP with process 0's
    weights broadcast (``--fsdp_cpu_ram_efficient_loading``), they are broadcast first.
    """
    from pairkit.train._fsdp import sync_weights

    sync_weights(model, config)
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
    reference_logps(model, examples, pad_id, config, cache_dir)
    return None


def flat_logps(model, rows, pad_id, config, live):
    """Policy and reference log-probabilities ``[n_seqs]`` and scored-token counts of the rows' sequences."""
    flat = [s for ex in rows for s in ex["seqs"]]
    policy, lengths = seq_logps(model, flat, pad_id, config.chunk_size)
    if live is not None:
        ref_model, context = live
        with torch.no_grad(), context():
            ref, _ = seq_logps(ref_model, flat, pad_id, config.chunk_size)
    else:
        ref = torch.cat([ex["ref"] for ex in rows])
    return policy, ref.to(policy.dtype), lengths.to(policy.dtype)


def field_inputs(rows, dtype) -> dict[str, torch.Tensor]:
    """Per-example data columns of the rows (``example["fields"]``) as ``[batch]`` tensors."""
    if not rows or "fields" not in rows[0]:
        return {}
    return {k: torch.tensor([ex["fields"][k] for ex in rows], dtype=dtype) for k in rows[0]["fields"]}


def attach_fields(examples, terms, produced: set[str], raw, source) -> None:
    fields = data_fields([n for n, _, _ in terms], produced, raw, source)
    for i, ex in enumerate(examples):
        ex["fields"] = {k: float(v[i]) for k, v in fields.items()}


def combine_losses(terms, inputs, options) -> torch.Tensor:
    """The weighted sum of the terms' per-example values ``[batch]`` (each by :func:`loss_values`)."""
    return sum(weight * loss_values(name, inputs, options) for name, weight, _ in terms)


_ROW_AXES = ("batch", "n")  # the dimension names of a loss input's rows (pairkit.losses.spec shapes)


def loss_values(name: str, inputs: dict[str, Any], options: dict[str, Any]) -> torch.Tensor:
    """:func:`~pairkit.train._loop.call_loss` per example; under data parallel a batch-coupled loss is exact.

    Data parallel, each process holds a consecutive share of the step's batch. A loss whose value for one example
    depends on the others (its spec says ``batch_coupled``: Dr. DPO's soft minimum, AOT's quantiles, the SFT
    term's batch token mean, KTO's KL reference point, …) is computed on every process's rows gathered in order
    (:func:`pairkit.train._dist.whole_batch`, only this process's rows carrying gradient); this process gets its
    slice of the values, with the gradient of the whole batch's mean on its rows
    (:func:`pairkit.train._dist.whole_batch_values`), so the summed gradients and the logged loss are those of one
    process on the whole batch. An input that is not one row per example (learnable proxies or prototypes) is the
    same on every process; its gradient is divided by the number of processes, which all compute the loss. An
    input whose rows are not its first axis, or a per-token input (its length is each batch's longest row), cannot
    be gathered so: :class:`InputError` names the loss. One process, or a per-example loss: ``call_loss`` itself.
    """
    from pairkit import losses

    spec = losses.spec(name)
    if not spec.batch_coupled or rank_and_world()[1] == 1:
        return call_loss(name, inputs, options)
    gathered = {k: v for k, v in inputs.items() if k != "token"}
    rows: list[str] = ["mask"] if isinstance(inputs.get("mask"), torch.Tensor) and "mask" in spec.keywords else []
    for inp in spec.input_specs:
        dims = [d.strip() for d in inp.shape.strip("[]").split(",")]
        key = inp.name if inp.name in inputs else f"policy_{inp.name}"
        if not isinstance(inputs.get(key), torch.Tensor):
            continue
        if dims[0] in _ROW_AXES and "T" not in dims:
            rows.append(key)
        elif "T" in dims or any(d in _ROW_AXES for d in dims):
            raise InputError(f"loss {name!r} is batch-coupled and its input {inp.name!r} {inp.shape} cannot be "
                             "gathered over the processes (per-token, or its rows are not its first axis): data "
                             "parallel cannot give it one process's whole batch; run it in one process")  # fmt: skip
    world = rank_and_world()[1]
    for key, value in gathered.items():  # a parameter (proxies, prototypes): every process gets all of dL/dp
        if key not in rows and isinstance(value, torch.Tensor) and value.requires_grad:
            gathered[key] = value.detach() + (value - value.detach()) / world
    for key in rows:
        if inputs[key].ndim > 1 and not dist.same_trailing_shape(inputs[key]):
            raise InputError(f"loss {name!r} is batch-coupled and its input {key!r} has shape "
                             f"{list(inputs[key].shape)}, which differs between the processes after the rows: data "
                             "parallel cannot gather one process's whole batch; run it in one process")  # fmt: skip
        gathered[key] = dist.whole_batch(inputs[key])
    n = inputs[rows[0]].shape[0] if rows else 0
    return dist.whole_batch_values(call_loss(name, gathered, options), n)


def trainer_options(terms, beta: float, loss_options: dict[str, Any] | None) -> dict[str, Any]:
    # beta <= 0 trains away from the preferences or not at all; NaN would train every weight to NaN. Checked
    # here once (the trainer's metrics use it too); the losses are then called without their per-call check.
    check_number("beta", beta, low=0, low_open=True)
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    options.setdefault("beta", float(beta))
    return options


# ------------------------------------------------------------------------------------------------ paired


PAIR_INPUTS = {
    "policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
    "chosen_lengths", "rejected_lengths", "rationale_logps", "degree_logits", "degree_labels",
}  # fmt: skip

RATIONALE_PROMPT = "{prompt}\n\nResponse A:\n{chosen}\n\nResponse B:\n{rejected}\n\nResponse A is better because"
"""The prompt under which the policy scores a pair's rationale (rationale-augmented DPO): the rationale is the
completion, conditioned on the prompt, both responses and which one won."""


def attach_rationales(tokenizer, examples, pairs, raw, config: TrainConfig, source: str) -> None:
    """Encode each pair's ``rationale`` column after :data:`RATIONALE_PROMPT` (for the losses that score it)."""
    bad = [i for i, r in enumerate(raw) if not (isinstance(r.get("rationale"), str) and r["rationale"].strip())]
    if bad:
        raise InputError(
            f"{source}, row {bad[0] + 1}: a loss scores the pair's rationale, so every row needs a non-empty "
            f"'rationale' column ({len(bad)} rows lack one)"
        )
    for ex, p, r in zip(examples, pairs, raw):
        prompt = RATIONALE_PROMPT.format(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"])
        ex["rationale"] = [s[:2] for s in encode(tokenizer, prompt, [" " + r["rationale"].strip()], config)]


def attach_degraded(tokenizer, examples, pairs, raw, config: TrainConfig, source: str) -> int:
    """Encode SPO's degraded samples (:func:`spo_degraded_samples`) into the examples; returns the class count
    (0, with a warning, when no row has key content: SPO then trains its alignment term only)."""
    if not any(any(c in r for c in SPO_KEY_COLUMNS) for r in raw):
        warnings.warn(
            f"{source}: no {' or '.join(map(repr, SPO_KEY_COLUMNS))} column, so SPO's self-supervised "
            "preference-degree term is left out (the loss is DPO's)",
            stacklevel=4,
        )
        return 0
    samples, classes = spo_degraded_samples(pairs, raw, config.seed, source)
    for ex, (prompt, text, label) in zip(examples, samples):
        ex["degraded"] = [s[:2] for s in encode(tokenizer, prompt, [text], config)]
        ex["degree"] = label
    return classes


UNPAIRED_INPUTS = {"policy_logps", "ref_logps", "labels", "desirable", "policy_kl_logps", "ref_kl_logps", "lengths"}


def pair_examples(tokenizer, data, config: TrainConfig, terms=(), joint: bool = False) -> list[dict[str, Any]]:
    pairs, raw, source = normalised_rows(data, functools.partial(to_pairs, joint=joint))
    examples = [
        {
            "seqs": encode(tokenizer, p["prompt"], [p["chosen"]], config)
            + encode(tokenizer, p.get("rejected_prompt", p["prompt"]), [p["rejected"]], config)
        }
        for p in pairs
    ]
    warn_truncation(examples, config, source)
    same = sum(ex["seqs"][0] == ex["seqs"][1] for ex in examples)
    if same:
        warnings.warn(
            f"{source}: {same} of {len(examples)} pairs have chosen and rejected identical after truncation to "
            f"max_length={config.max_length} (they give no gradient); raise max_length or lower max_prompt_length",
            TruncationWarning,
            stacklevel=3,
        )
    if terms:
        attach_fields(examples, terms, PAIR_INPUTS, raw, source)
        from pairkit import losses

        if any(losses.spec(n).accepts("rationale_logps") for n, _, _ in terms):
            attach_rationales(tokenizer, examples, pairs, raw, config, source)
        if any(losses.spec(n).accepts("degree_logits") for n, _, _ in terms):
            classes = attach_degraded(tokenizer, examples, pairs, raw, config, source)
            for ex in examples:
                ex["degree_classes"] = classes
    return examples


def warn_truncation(examples, config: TrainConfig, source: str) -> None:
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


def degree_logits(model, head, rows, pad_id) -> torch.Tensor:
    """SPO's classifier on the final hidden state of each degraded sample's last token ``[batch, classes]``."""
    from pairkit.train._inputs import hidden_states_and_head

    batch = collate_sequences([ex["degraded"][0] for ex in rows], pad_id)
    h, _, _ = hidden_states_and_head(model, batch["input_ids"], batch["attention_mask"])
    last = batch["attention_mask"].sum(1) - 1
    return head(h[torch.arange(h.shape[0]), last])


def pair_step(
    terms, options, beta, pad_id, config, live, token_kinds=frozenset(), mask_head=None, degree_head=None
):
    from pairkit import losses

    edits = bool(token_kinds) and any(losses.spec(n).accepts("chosen_edit_mask") for n, _, _ in terms)

    def step(model, rows):
        policy, ref, lengths = flat_logps(model, rows, pad_id, config, live)
        pc, pr, rc, rr = policy[0::2], policy[1::2], ref[0::2], ref[1::2]
        inputs = {
            "policy_chosen_logps": pc,
            "policy_rejected_logps": pr,
            "ref_chosen_logps": rc,
            "ref_rejected_logps": rr,
            "chosen_lengths": lengths[0::2],
            "rejected_lengths": lengths[1::2],
            **field_inputs(rows, pc.dtype),
        }
        if rows and "rationale" in rows[0]:
            rationale, _ = seq_logps(model, [ex["rationale"][0] for ex in rows], pad_id, config.chunk_size)
            inputs["rationale_logps"] = rationale.to(pc.dtype)
        if degree_head is not None and rows and "degraded" in rows[0]:
            inputs["degree_logits"] = degree_logits(model, degree_head, rows, pad_id)
            inputs["degree_labels"] = torch.tensor([ex["degree"] for ex in rows], device=pc.device)
        if token_kinds:
            batch = collate_sequences([s for ex in rows for s in ex["seqs"]], pad_id)
            tok = token_inputs(model, live, batch, set(token_kinds), chunk_size=config.chunk_size, mask_head=mask_head)
            if edits:  # BMC / RISE: the tokens where chosen and rejected differ
                tok["edit_mask"] = edit_masks(batch["input_ids"], tok["mask"])
            inputs["token"] = pair_token_inputs(tok)
        losses = combine_losses(terms, inputs, options)
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
