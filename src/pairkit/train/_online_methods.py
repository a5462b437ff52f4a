"""One round of training for the online methods that do not train a pairwise loss on judged pairs.

Each function takes the round's prompts and samples (``k`` per prompt), the judge's ratings and decisions when the
method uses a judge, and takes optimiser steps over minibatches of whole prompt groups (``batch_size`` sequences,
at least one prompt), returning the round's mean metrics. Log-probabilities of the sampling policy and of the
reference are computed once per round before the first update (so later minibatches see importance ratios ≠ 1,
which the clipped objectives need).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from pairkit.errors import EstimationError, InputError
from pairkit.train import policy_gradient as pg
from pairkit.train._loop import clip_gradients
from pairkit.train._steps import token_logps
from pairkit.train.data import collate_sequences

# options each method accepts (besides beta), with their defaults and ranges (low, high, low_open)
METHOD_OPTIONS: dict[str, dict[str, tuple[Any, tuple]]] = {
    "grpo": {"epsilon_low": (0.2, (0, 1, True)), "epsilon_high": (0.2, (0, None, True)),
             "scale": ("group", ("group", "batch", "none")), "aggregation": ("sequence", ("sequence", "token"))},
    "rloo": {"epsilon_low": (0.2, (0, 1, True)), "epsilon_high": (0.2, (0, None, True)),
             "scale": ("none", ("none", "batch"))},
    "p3o": {"epsilon": (0.2, (0, 1, True)), "clipping": ("joint", ("joint", "separate"))},
    "sppo": {},
    "superhf": {},
    "hypo": {"kl_weight": (0.1, (0, None, False))},
    "spin": {"alpha": (0.0, (0, None, False))},
    "step_dpo": {"depth": (3, (1, None, False, True)), "delimiter": ("\n", None)},
}  # fmt: skip


def method_options(method: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The method's options with defaults filled in; unknown names and out-of-range values raise InputError."""
    from pairkit.train._loop import check_number

    allowed = METHOD_OPTIONS.get(method, {})
    out = {k: v[0] for k, v in allowed.items()}
    for key, value in (given or {}).items():
        if key not in allowed:
            raise InputError(f"method {method!r} has no option {key!r}; it accepts {sorted(allowed) or 'none'}")
        spec = allowed[key][1]
        if isinstance(allowed[key][0], str):
            if spec is None and (not isinstance(value, str) or not value):
                raise InputError(f"{method} option {key} must be a non-empty string, got {value!r}")
            if spec is not None and value not in spec:
                raise InputError(f"{method} option {key} must be one of {list(spec)}, got {value!r}")
        else:
            low, high, low_open, *integer = spec
            check_number(key, value, low=low, high=high, low_open=low_open, integer=bool(integer))
            value = int(value) if integer else float(value)
        out[key] = value
    return out


def _groups(n_prompts: int, per_prompt: int, batch_size: int) -> list[np.ndarray]:
    """Minibatches of whole prompt groups: prompt indices, ``batch_size // per_prompt`` (at least 1) at a time."""
    size = max(1, batch_size // per_prompt)
    return [np.arange(s, min(s + size, n_prompts)) for s in range(0, n_prompts, size)]


def apply_update(loss: torch.Tensor, optimizer, params, config, rnd: int) -> None:
    if not math.isfinite(loss.item()):
        raise EstimationError(
            f"round {rnd + 1}: the loss is {loss.item()}; the model was not updated (lower the learning rate, "
            "check beta and the method options)"
        )
    loss.backward()
    clip_gradients(params, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class Sums:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, n: int, **values: torch.Tensor | float) -> None:
        for key, v in values.items():
            v = float(v.detach().double().sum()) if isinstance(v, torch.Tensor) else float(v) * n
            self.sums[key] = self.sums.get(key, 0.0) + v
        self.n += n

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


def train_samples_round(
    method: str,
    model,
    reference,
    tokenizer,
    prompts,
    samples,
    *,
    ratings: np.ndarray,
    decisions,
    beta: float,
    options: dict[str, Any],
    optimizer,
    params,
    config,
    epochs: int,
    rnd: int,
    pad_id: int,
) -> dict[str, float]:
    """One round of RLOO, GRPO, P3O, SPPO or SuperHF on the round's samples (see :mod:`pairkit.train.policy_gradient`).

    Rewards are the per-prompt Bradley–Terry ratings of the samples from the judge's pairwise decisions; SPPO
    uses the samples' judged win rates; SuperHF trains on each prompt's best-rated sample.
    """
    from pairkit.train._steps import encode

    n, k = ratings.shape
    if method == "superhf":
        keep = [[int(np.argmax(r))] for r in ratings]
    elif method == "sppo":
        wr = pg.win_rates(decisions, n, k)
        keep = [[int(np.argmax(w)), int(np.argmin(w))] if w.max() > w.min() else [] for w in wr]
    else:
        keep = [list(range(k)) for _ in range(n)]
    per_prompt = max(len(x) for x in keep)
    if per_prompt == 0:
        return {"loss": 0.0, "trained_sequences": 0.0}
    seqs = [[(p, c) for p, c, _ in encode(tokenizer, prompts[i], [samples[i][j] for j in keep[i]], config)]
            for i in range(n)]  # fmt: skip
    chunks = [g for g in _groups(n, per_prompt, config.batch_size) if any(keep[i] for i in g)]
    # the sampling policy's and the reference's log-probs, before any update of this round; the first chunk
    # trained needs no extra pass for the former (nothing has changed yet) unless the rewards need it (RLOO/P3O KL)
    rng = np.random.default_rng([config.seed, rnd, 17])
    perms = [rng.permutation(len(chunks)) for _ in range(epochs)]
    need_old = method in ("grpo", "rloo", "p3o")
    old_everywhere = method in ("rloo", "p3o") and beta > 0
    need_ref = method == "sppo" or (need_old and beta > 0)
    fixed = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for c, g in enumerate(chunks):
            flat = [s for i in g for s in seqs[i]]
            if need_old and (old_everywhere or c != perms[0][0]):
                old, mask = token_logps(model, flat, pad_id, config.chunk_size)
            else:
                old, mask = None, None
            ref = token_logps(reference, flat, pad_id, config.chunk_size)[0] if need_ref else None
            fixed.append([old, ref, mask])
    model.train(was)
    rows = [(i, j) for g in chunks for i in g for j in keep[i]]
    values = _targets(method, ratings, decisions, keep, rows, chunks, fixed, beta, options)
    model.train(config.dropout)
    sums = Sums()
    for perm in perms:
        for c in perm:
            g = chunks[c]
            flat = [s for i in g for s in seqs[i]]
            v = values[c]
            if method == "superhf":
                from pairkit.train._inputs import token_inputs

                kinds = {"token_kl"} if beta > 0 else set()
                tok = token_inputs(model, (reference, nullcontext), collate_sequences(flat, pad_id), kinds,
                                   chunk_size=config.chunk_size)  # fmt: skip
                kl = tok["kl"] if beta > 0 else torch.zeros_like(tok["logps"])
                per = pg.superhf_loss(tok["logps"], kl, tok["mask"], beta=beta)
                count = len(per)
                stats = {"nll": -(tok["logps"] * tok["mask"]).sum(-1) / tok["mask"].sum(-1).clamp_min(1)}
            else:
                logps, mask = token_logps(model, flat, pad_id, config.chunk_size)
                if need_old and fixed[c][0] is None:  # the first chunk: the sampling policy is the current one
                    fixed[c][0] = logps.detach()
                old, ref, _ = fixed[c]
                per, count, stats = _objective(method, logps, old, ref, mask, v, beta, {**options, "group": k})
            apply_update(per.sum() / count, optimizer, params, config, rnd)
            sums.add(count, loss=per, **stats)
    out = sums.mean()
    out["trained_sequences"] = float(len(rows))
    return out


def _targets(method, ratings, decisions, keep, rows, chunks, fixed, beta, options):
    """Per-chunk per-sequence values: advantages (GRPO, RLOO), KL-penalised rewards (P3O), win rates (SPPO)."""
    dt = torch.float64
    if method == "superhf":
        return [None] * len(chunks)
    if method == "sppo":
        n, k = ratings.shape
        wr = pg.win_rates(decisions, n, k)
        return [torch.tensor([wr[i, j] for i in g for j in keep[i]], dtype=dt) for g in chunks]
    r = torch.as_tensor(ratings, dtype=dt)
    if method in ("rloo", "p3o") and beta > 0:  # KL penalty in the reward: r - beta * sum_t (log pi_old - log pi_ref)
        kl = torch.cat([((old - ref) * mask).sum(-1).double() for old, ref, mask in fixed])
        flat_idx = [i * r.shape[1] + j for i, j in rows]
        pen = torch.zeros(r.numel(), dtype=dt)
        pen[flat_idx] = kl
        r = r - beta * pen.view_as(r)
    if method == "grpo":
        adv = pg.group_advantages(r, baseline="mean", scale=options["scale"])
    elif method == "rloo":
        adv = pg.group_advantages(r, baseline="leave_one_out", scale=options["scale"])
    elif method == "p3o":
        adv = r
    else:
        raise InputError(f"unknown sample method {method!r}")
    return [torch.stack([adv[i, j] for i in g for j in keep[i]]) for g in chunks]


def _objective(method, logps, old, ref, mask, values, beta, options):
    dt = logps.dtype
    old = old.to(dt) if old is not None else None
    ref = ref.to(dt) if ref is not None else None
    if method == "grpo":
        per = pg.grpo_loss(logps, old, values, mask, ref_logps=ref, beta=beta, epsilon_low=options["epsilon_low"],
                           epsilon_high=options["epsilon_high"], aggregation=options["aggregation"])  # fmt: skip
        return per, len(per), {"advantage_abs": values.abs()}
    if method == "rloo":
        per = pg.rloo_loss(logps, old, values, mask, epsilon_low=options["epsilon_low"],
                           epsilon_high=options["epsilon_high"])  # fmt: skip
        return per, len(per), {"advantage_abs": values.abs()}
    m = mask.to(dt)
    seq = (logps * m).sum(-1)
    seq_old, seq_ref = ((x * m).sum(-1) if x is not None else None for x in (old, ref))
    if method == "p3o":
        k = options["group"]  # every sample of a prompt is kept: pairs within each group of k rows
        a, b = np.triu_indices(k, 1)
        starts = np.arange(0, len(values), k)[:, None]
        pairs = torch.as_tensor(np.stack([(starts + a).ravel(), (starts + b).ravel()], 1), dtype=torch.long)
        per = pg.p3o_loss(seq, seq_old, values, pairs, epsilon=options["epsilon"], clipping=options["clipping"])
        return per, len(per), {"reward_gap_abs": (values[pairs[:, 0]] - values[pairs[:, 1]]).abs()}
    if method == "sppo":
        per = pg.sppo_loss(seq, seq_ref, values, beta=beta)
        return per, len(per), {"win_rate_target": values, "log_ratio": (seq - seq_ref).detach()}
    raise InputError(f"unknown sample method {method!r}")


def train_hypo_round(
    model, reference, tokenizer, rows, samples, *, terms, options, beta, kl_weight, optimizer, params, config,
    epochs, rnd, pad_id,
) -> dict[str, float]:  # fmt: skip
    """HyPO: the preference loss on the round's offline pairs plus ``kl_weight`` × the reverse KL to the
    reference, estimated on the policy's own samples of the same prompts
    (:func:`~pairkit.train.policy_gradient.score_function_kl`).

    .. math::

        \\mathcal{L} = \\frac{1}{B}\\sum_i \\ell_{DPO}(x_i, y^c_i, y^r_i)
        + \\lambda\\,\\frac{1}{Bk}\\sum_{i,j}
        \\operatorname{sg}\\Big(\\log\\frac{\\pi_\\theta(y_{ij})}{\\pi_{ref}(y_{ij})}\\Big)\\log\\pi_\\theta(y_{ij}),
        \\qquad y_{ij} \\sim \\pi_\\theta(\\cdot\\mid x_i)
    """
    from pairkit.train._steps import encode, pair_examples, pair_step, seq_logps

    examples = pair_examples(tokenizer, rows, config, terms)
    online_seqs = [[(p, c) for p, c, _ in encode(tokenizer, r["prompt"], ss, config)] for r, ss in zip(rows, samples)]
    step = pair_step(terms, options, beta, pad_id, config, (reference, nullcontext))
    model.train(config.dropout)
    sums = Sums()
    rng = np.random.default_rng([config.seed, rnd, 29])
    for _ in range(epochs):
        perm = rng.permutation(len(examples))
        for s in range(0, len(examples), config.batch_size):
            idx = perm[s : s + config.batch_size]
            losses, stats = step(model, [examples[i] for i in idx])
            flat = [q for i in idx for q in online_seqs[i]]
            pol, _ = seq_logps(model, flat, pad_id, config.chunk_size)
            with torch.no_grad():
                ref, _ = seq_logps(reference, flat, pad_id, config.chunk_size)
            kl = pg.score_function_kl(pol, ref.to(pol.dtype))
            loss = losses.float().sum() / len(idx) + kl_weight * kl.float().mean()
            apply_update(loss, optimizer, params, config, rnd)
            sums.add(len(idx), loss=losses, **stats, online_kl=float((pol - ref).detach().double().mean()))
    return sums.mean()
