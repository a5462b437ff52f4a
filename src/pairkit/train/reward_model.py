"""Reward-model training: a scalar score per (prompt, response) fitted to preferences.

The model is a transformers ``AutoModelForSequenceClassification`` with ``num_labels=1`` (given a tokenizer), or
any module mapping precomputed features ``[n, d]`` to scores (``tokenizer=None``; e.g. a linear head on frozen
sentence embeddings, see :func:`mean_pooled_embeddings`). Losses come from the ``reward`` family of
:mod:`pairkit.losses` (Bradley–Terry, margin, centring, Plackett–Luce, …) and are combined by weight.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pairkit.errors import InputError
from pairkit.train._inputs import data_fields
from pairkit.train._loop import (
    TrainConfig,
    TrainResult,
    call_loss,
    check_options,
    fit,
    options_for,
    parse_loss_spec,
)
from pairkit.train.data import collate_sequences, read_records, to_listwise, to_pairs

__all__ = [
    "PALRewardModel",
    "evaluate_reward_model",
    "mean_pooled_embeddings",
    "train_reward_model",
]


def _loss_spec(name: str):
    from pairkit import losses

    return losses.spec(name)


_FAMILIES = ("reward", "reward_personalized")
# inputs a personalised reward model holds as parameters (PAL's prototypes and per-user mixture logits)
_USER_INPUTS = {"prototypes", "user_logits"}


class PALRewardModel(torch.nn.Module):
    """A reward model for PAL-A: an item projection plus ``K`` prototype ideal points and per-user mixture logits.

    ``projection`` maps a response (feature vector, or token ids with ``input_ids``/``attention_mask``) to its point
    :math:`f(y)` in a ``dim``-dimensional preference space; ``prototypes`` ``[K, dim]`` and ``user_logits``
    ``[U, K]`` are trained with it by :func:`train_reward_model` with ``loss="pal_ideal_point"``, which reads each
    pair's user from the ``user`` column. ``users``: the number of users (ids ``0..U-1``) or the list of their ids.
    A user's ideal point is :func:`pairkit.losses.pal_ideal_points` of the prototypes and the user's logits
    (uniform mixture at the start; the prototypes start as seeded Gaussian points of scale ``1/sqrt(dim)``).

    Chen, Chen, Rege, Wang & Vinayak (2025), "PAL: Sample-Efficient Personalized Reward Modeling for Pluralistic
    Alignment" (ICLR), the PAL-A model.
    """

    def __init__(self, projection: torch.nn.Module, *, dim: int, num_prototypes: int, users, seed: int = 0):
        super().__init__()
        for name, value in (("dim", dim), ("num_prototypes", num_prototypes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        ids = list(range(users)) if isinstance(users, int) and not isinstance(users, bool) else list(users)
        if not ids or len(set(ids)) != len(ids):
            raise InputError(f"users must be a count >= 1 or a list of distinct ids, got {users!r}")
        self.projection = projection
        self.user_ids = {u: i for i, u in enumerate(ids)}
        g = torch.Generator().manual_seed(seed)
        self.prototypes = torch.nn.Parameter(torch.randn(num_prototypes, dim, generator=g) / dim**0.5)
        self.user_logits = torch.nn.Parameter(torch.zeros(len(ids), num_prototypes))

    def forward(self, *args, **kwargs):
        """The projection's output: each response's point in the preference space."""
        return self.projection(*args, **kwargs)

    def user_index(self, user, where: str) -> int:
        """The row of ``user_logits`` of a user id (InputError naming ``where`` for an unknown one)."""
        try:
            return self.user_ids[user]
        except (KeyError, TypeError):
            raise InputError(f"{where}, column 'user': unknown user {user!r} (the model knows "
                             f"{len(self.user_ids)} users)") from None  # fmt: skip


def _reward_terms(loss) -> list[tuple[str, float, Callable]]:
    from pairkit import losses

    terms = []
    for name, weight in parse_loss_spec(loss):
        fn = losses.get(name)
        if losses.family_of(name) not in _FAMILIES:
            raise InputError(
                f"loss {name!r} is in family {losses.family_of(name)!r}; reward models take {' or '.join(_FAMILIES)} "
                "losses"
            )
        terms.append((name, weight, fn))
    return terms


_PRODUCED = {"chosen_rewards", "rejected_rewards", "rewards", "labels", "chosen_embeddings", "rejected_embeddings"}


def _examples(data, tokenizer, config: TrainConfig, terms=(), users=None) -> list[dict[str, Any]]:
    """Rows → ``{"items": [k token-id pairs or feature vectors], "scores": [k], "fields": {…}}``.

    Text is tokenised as (prompt, completion) with :func:`pairkit.train.data.encode_completion`, so a long
    prompt is cut before the completion (cutting the joined text from the right would drop the completions and
    leave chosen and rejected identical). Per-example loss inputs (``margin``, ``target_probs``, targets) come
    from data columns; with ``users`` (a :class:`PALRewardModel`) each pair's ``user`` column is its user's index.
    """
    source = str(data) if isinstance(data, (str, Path)) else "data"
    if isinstance(data, (str, Path)):
        data = read_records(data)
    elif hasattr(data, "to_dict"):
        data = data.to_dict(orient="records")
    rows = list(data)
    if not rows:
        raise InputError("no reward-model training rows")
    if tokenizer is None:
        out = []
        for i, r in enumerate(rows, start=1):
            if "responses" in r and "scores" in r:
                ex = {"items": [torch.as_tensor(x) for x in r["responses"]], "scores": [float(s) for s in r["scores"]]}
            elif "chosen" in r and "rejected" in r:
                ex = {"items": [torch.as_tensor(r["chosen"]), torch.as_tensor(r["rejected"])], "scores": [1.0, 0.0]}
            else:
                raise InputError(
                    f"{source}, row {i}: feature rows need 'chosen'/'rejected' or 'responses'/'scores' features"
                )
            out.append(ex)
    else:
        from pairkit.train._steps import encode, warn_truncation

        if "responses" in rows[0]:
            lists = to_listwise(rows, source=source)
            out = [
                {"seqs": encode(tokenizer, r["prompt"], r["responses"], config), "scores": r["scores"]} for r in lists
            ]
        else:
            pairs = to_pairs(rows, source=source)
            out = [{"seqs": encode(tokenizer, p["prompt"], [p["chosen"], p["rejected"]], config),
                    "scores": [1.0, 0.0]} for p in pairs]  # fmt: skip
        warn_truncation(out, config, source)
        for ex in out:
            ex["items"] = ex.pop("seqs")
        same = sum(len(ex["items"]) == 2 and ex["items"][0] == ex["items"][1] for ex in out)
        if same:
            from pairkit.train.data import TruncationWarning

            warnings.warn(
                f"{source}: {same} of {len(out)} pairs are identical after truncation to max_length="
                f"{config.max_length}; they give no gradient and tie in evaluation (raise max_length)",
                TruncationWarning,
                stacklevel=3,
            )
    if terms:
        fields = data_fields([n for n, _, _ in terms], _PRODUCED | _USER_INPUTS, rows, source)
        for i, ex in enumerate(out):
            ex["fields"] = {k: float(v[i]) for k, v in fields.items()}
    if users is not None:
        if len(rows) != len(out):
            raise InputError(f"{source}: per-user losses take one pair per row")
        for i, (r, ex) in enumerate(zip(rows, out), start=1):
            if "user" not in r:
                raise InputError(f"{source}, row {i}: the loss needs each pair's user; give it in a column 'user'")
            ex["user"] = users.user_index(r["user"], f"{source}, row {i}")
    return out


def _outputs(model, items: list, tokenizer) -> torch.Tensor:
    """The model's outputs ``[n, d]`` for token-id pairs (with a tokenizer) or feature vectors."""
    if tokenizer is None:
        out = model(torch.stack([torch.as_tensor(x) for x in items]))
    else:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        batch = collate_sequences(items, pad)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        out = out.logits if hasattr(out, "logits") else out
    return out.reshape(len(items), -1)


def _grid(rows, model, tokenizer, embeddings: bool = False):
    """Scores ``[b, K]`` (padded), labels ``[b, K]``, the validity mask and (if asked) the outputs ``[b, K, d]``."""
    flat = [x for ex in rows for x in ex["items"]]
    out = _outputs(model, flat, tokenizer)
    scores = out[:, 0]
    sizes = torch.tensor([len(ex["items"]) for ex in rows])
    mask = torch.arange(int(sizes.max()))[None, :] < sizes[:, None]
    rewards = torch.zeros(mask.shape, dtype=scores.dtype).masked_scatter(mask, scores)
    labels = torch.zeros(mask.shape, dtype=scores.dtype)
    labels[mask] = torch.tensor([s for ex in rows for s in ex["scores"]], dtype=scores.dtype)
    if embeddings:
        grid = torch.zeros((*mask.shape, out.shape[1]), dtype=out.dtype)
        grid[mask] = out
        return rewards, labels, mask, grid
    return rewards, labels, mask


def train_reward_model(
    model,
    data,
    *,
    tokenizer=None,
    loss: str | dict[str, float] = "reward_bradley_terry",
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fit a scalar reward model to pairwise (or K-wise) preferences.

    .. math::

        \\mathcal{L}_{BT} = -\\frac1B\\sum_i \\log\\sigma\\big(r(x_i, y^c_i) - r(x_i, y^r_i) - m_i\\big)

    Bradley & Terry (1952), "Rank Analysis of Incomplete Block Designs: I. The Method of Paired
    Comparisons"; as a reward model: Ouyang et al. (2022), "Training language models to follow instructions
    with human feedback" (margin :math:`m_i` from a ``margin`` column as in Touvron et al. 2023, "Llama 2").
    With K responses per prompt (``responses``/``scores`` rows) use ``loss="reward_plackett_luce"``.

    Args:
        model: ``AutoModelForSequenceClassification`` (``num_labels=1``) with ``tokenizer``, or a module on
            feature vectors with ``tokenizer=None`` (rows ``{chosen: [d], rejected: [d]}`` or
            ``{responses: [K, d], scores: [K]}``).
        data: path, DataFrame or rows (pairs in any :func:`pairkit.train.data.to_pairs` format, or listwise).
        loss: a ``reward``-family name or weighted combination (``"reward_bt+0.01*reward_centering"``), or
            ``"pal_ideal_point"`` (PAL-A) with a :class:`PALRewardModel` and a ``user`` column per pair.

    Per-step metrics: loss, accuracy (chosen scored above rejected), mean chosen/rejected reward and margin.
    """
    config = config or TrainConfig()
    terms = _reward_terms(loss)
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    declared = {i.name for n, _, _ in terms for i in _loss_spec(n).input_specs}
    personal = bool(declared & _USER_INPUTS)
    if personal and not isinstance(model, PALRewardModel):
        raise InputError(
            "a per-user loss (pal_ideal_point) trains prototypes and per-user logits with the model: wrap the "
            "projection in pairkit.train.PALRewardModel(projection, dim=…, num_prototypes=…, users=…)"
        )
    examples = _examples(data, tokenizer, config, terms, users=model if personal else None)
    inner = model.projection if isinstance(model, PALRewardModel) else model
    if tokenizer is not None and getattr(getattr(inner, "config", None), "pad_token_id", 0) is None:
        inner.config.pad_token_id = tokenizer.pad_token_id  # the classifier reads the last non-pad token
    embeddings = "embeddings" in {i.kind for n, _, _ in terms for i in _loss_spec(n).input_specs}

    def step(model, rows):
        rewards, labels, mask, *emb = _grid(rows, model, tokenizer, embeddings)
        inputs = {"rewards": rewards, "labels": labels, "mask": mask}
        pairwise = rewards.shape[1] == 2 and bool(mask.all())
        if pairwise:
            inputs.update(chosen_rewards=rewards[:, 0], rejected_rewards=rewards[:, 1])
            inputs.pop("mask")
            if rows and "fields" in rows[0]:
                inputs.update({k: torch.tensor([ex["fields"][k] for ex in rows], dtype=rewards.dtype)
                               for k in rows[0]["fields"]})  # fmt: skip
            if emb:
                inputs.update(chosen_embeddings=emb[0][:, 0], rejected_embeddings=emb[0][:, 1])
            if personal:
                users = torch.tensor([ex["user"] for ex in rows], dtype=torch.long)
                inputs.update(prototypes=model.prototypes, user_logits=model.user_logits[users])
        elif embeddings:
            raise InputError("losses on embeddings (gpm) take pairs (chosen, rejected), not lists")
        losses = sum(w * call_loss(n, inputs, options) for n, w, _ in terms)
        best = torch.where(mask, labels, -torch.inf).argmax(-1, keepdim=True)
        top = torch.where(mask, rewards, -torch.inf).argmax(-1, keepdim=True)
        stats = {"accuracy": (best == top).double().squeeze(1)}
        if emb:  # the model's own verdict on embeddings (GPM's skew-symmetric score, ArmoRM's gated rewards)
            extras = [_loss_spec(n).extra for n, _, _ in terms]
            verdict = next((e["pair_logits"] for e in extras if "pair_logits" in e), None)
            if verdict is not None:
                stats["accuracy"] = (verdict(emb[0][:, 0], emb[0][:, 1]) > 0).double().detach()
            if personal:  # the user prefers the response nearer to their ideal point
                stats["accuracy"] = (_pal_margins(model, emb[0], inputs["user_logits"], options) > 0).double()
        elif pairwise:
            r = rewards.detach()
            stats.update({"rewards/chosen": r[:, 0], "rewards/rejected": r[:, 1], "rewards/margin": r[:, 0] - r[:, 1]})
        return losses, stats

    return fit(model, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])


def _pal_margins(model, emb, user_logits, options) -> torch.Tensor:
    from pairkit.losses import pal_ideal_points

    with torch.no_grad():
        temperature = options_for("pal_ideal_point", options).get("temperature", 1.0)
        ideal = pal_ideal_points(model.prototypes, user_logits, temperature=temperature)
        return (emb[:, 1] - ideal).norm(dim=-1) - (emb[:, 0] - ideal).norm(dim=-1)


def evaluate_reward_model(
    model, data, *, tokenizer=None, batch_size: int = 64, max_length: int = 512, confidence: float = 0.95
) -> dict[str, float]:
    """Held-out pairwise accuracy of a reward model with a Clopper–Pearson interval.

    .. math::

        \\text{acc} = \\frac1n\\sum_i \\mathbb{1}[r(x_i, y^c_i) > r(x_i, y^r_i)]

    Ties (equal scores, e.g. pairs made identical by truncation) count as errors and are reported apart as
    ``ties``. Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in
    the case of the binomial". Returns ``accuracy``, ``n``, ``correct``, ``ci_low``, ``ci_high`` and the
    two-sided binomial test p-value against chance (0.5).
    """
    from scipy.stats import binomtest

    examples = _examples(data, tokenizer, TrainConfig(max_length=max_length))
    if any(len(ex["items"]) != 2 for ex in examples):
        raise InputError("evaluate_reward_model takes pairs (chosen, rejected)")
    was = model.training
    model.eval()
    margins = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            rewards, _, _ = _grid(examples[start : start + batch_size], model, tokenizer)
            margins.append(rewards[:, 0] - rewards[:, 1])
    model.train(was)
    m = torch.cat(margins)
    correct, n, ties = int((m > 0).sum()), len(m), int((m == 0).sum())
    test = binomtest(correct, n, 0.5)
    ci = test.proportion_ci(confidence_level=confidence, method="exact")
    return {
        "accuracy": correct / n,
        "n": n,
        "correct": correct,
        "ties": ties,
        "ci_low": ci.low,
        "ci_high": ci.high,
        "p_value": test.pvalue,
    }


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean of hidden states ``[n, T, d]`` → ``[n, d]`` (a row with no tokens gives zeros)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1)


def mean_pooled_embeddings(
    encoder, tokenizer, texts: Sequence[str], *, batch_size: int = 64, max_length: int = 128, normalize: bool = True
) -> torch.Tensor:
    """Frozen sentence embeddings: attention-masked mean of the encoder's last hidden states (``[n, d]``).

    .. math::

        e = \\frac{\\sum_t m_t h_t}{\\sum_t m_t}, \\qquad e \\leftarrow e / \\lVert e\\rVert_2

    Reimers & Gurevych (2019), "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks" (the pooling
    of ``all-MiniLM-L6-v2``). Texts longer than ``max_length`` tokens keep the tokenizer's truncation side.
    """
    encoder.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            h = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            e = mean_pool(h, enc["attention_mask"])
            out.append(torch.nn.functional.normalize(e, dim=-1) if normalize else e)
    return torch.cat(out) if out else torch.zeros(0, 0)
