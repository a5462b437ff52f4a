"""One round of training for the online methods that do not train a pairwise loss on judged pairs.

Each function takes the round's prompts and samples (``k`` per prompt), the judge's ratings and decisions when the
method uses a judge, and takes optimiser steps over minibatches of whole prompt groups (``batch_size`` sequences,
at least one prompt), returning the round's mean metrics. Log-probabilities of the sampling policy and of the
reference are computed once per round before the first update (so later minibatches see importance ratios ≠ 1,
which the clipped objectives need).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from pairkit.errors import EstimationError, InputError
from pairkit.train import _dist as dist
from pairkit.train import policy_gradient as pg
from pairkit.train._loop import all_reduce_gradients, clip_gradients, coupled_losses, rank_and_world
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
    "spin": {"alpha": (0.0, (0, None, False)), "history": (1, (0, None, False, True))},
    "step_dpo": {"depth": (3, (1, None, False, True)), "delimiter": ("\n", None)},
    "scir": {"consistency_weight": (1.0, (0, None, False)), "threshold": (0.0, (0, 0.5, False)),
             "template": ("pairwise", None)},
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


def apply_update(loss: torch.Tensor | None, optimizer, params, config, rnd: int, *, sharded: bool = False) -> None:
    """One optimiser step on ``loss``: this process's share of the minibatch's loss (its examples' summed losses
    over the minibatch's size; None when it holds none of them). Data parallel, the gradients are summed over
    the processes (``all_reduce_gradients`` of the offline trainers' loop), so every process takes the step of one
    process on the whole minibatch; a non-finite loss stops all of them before the update. ``sharded`` (FSDP, every
    process passing a loss): the backward reduce-scatters the gradients, averaged, so the loss is scaled by the
    number of processes (as in the offline loop)."""
    value = dist.total(loss.item() if loss is not None else 0.0)[0]
    if not math.isfinite(value):
        raise EstimationError(
            f"round {rnd + 1}: the loss is {value}; the model was not updated (lower the learning rate, "
            "check beta and the method options)"
        )
    if loss is not None and loss.requires_grad:
        (loss * rank_and_world()[1] if sharded else loss).backward()
    if not sharded:
        all_reduce_gradients(params)
    clip_gradients(params, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def minibatch_share(batch, sharded: bool, coupled: Sequence[str] = ()) -> tuple[np.ndarray, float]:
    """This process's share of a minibatch (``dist.share``) and its weight 1. Under FSDP (``sharded``) every process
    must run the same forward and backward passes (they gather and reduce the sharded weights), so a process that
    holds no example of the minibatch runs its first one with weight 0.

    ``coupled``: the batch-coupled losses of the step, computed on every process's rows gathered
    (:func:`pairkit.train._steps.loss_values`), so every process must hold a row of the minibatch (the same on
    every process: refused on all of them otherwise)."""
    world = rank_and_world()[1]
    if coupled and len(batch) < world:
        raise InputError(f"loss {', '.join(map(repr, coupled))} is batch-coupled: data parallel over {world} processes "
                         f"computes it on the gathered minibatch, which needs a row on every process, but a "
                         f"minibatch holds {len(batch)}; choose a batch_size (and a round size) whose last minibatch "
                         "has a row for every process, or fewer processes")  # fmt: skip
    idx = dist.share(batch)
    return (batch[:1], 0.0) if sharded and not len(idx) else (idx, 1.0)


def policy_pass(model, fn, *args):
    """``fn(model, *args)``; for a model sharded by FSDP, inside the sharded root's forward hooks (a collective)."""
    from pairkit.train._fsdp import is_sharded, sharded_call

    return sharded_call(model, fn, *args) if is_sharded(model) else fn(model, *args)


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
        """The means over every example added (on all processes, data parallel: each added its own share)."""
        keys = dist.union_keys(self.sums)
        *sums, n = dist.total(*(self.sums.get(k, 0.0) for k in keys), self.n)
        return {k: v / max(n, 1) for k, v in zip(keys, sums)}


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
    from pairkit.train._fsdp import is_sharded
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
    # data parallel: the processes share this pass (chunks dealt round-robin) and hold every chunk's results;
    # the first chunk's sampling-policy log-probs are then taken here too (its training pass is split)
    dp = rank_and_world()[1] > 1
    sharded = is_sharded(model)
    fixed = {}
    was = model.training
    model.eval()
    with torch.no_grad():
        mine = dist.mine(len(chunks)) if dp else range(len(chunks))
        for c in mine:
            flat = [s for i in chunks[c] for s in seqs[i]]
            if need_old and (old_everywhere or dp or c != perms[0][0]):
                old, mask = policy_pass(model, token_logps, flat, pad_id, config.chunk_size)
            else:
                old, mask = None, None
            ref = token_logps(reference, flat, pad_id, config.chunk_size)[0] if need_ref else None
            fixed[int(c)] = [old, ref, mask]
        if sharded and need_old:  # FSDP: as many policy passes as the process with most chunks (the extra dropped)
            for _ in range(-(-len(chunks) // rank_and_world()[1]) - len(mine)):
                policy_pass(model, token_logps, [s for i in chunks[0] for s in seqs[i]], pad_id, config.chunk_size)
    fixed = dist.merged(fixed) if dp else fixed
    fixed = [fixed[c] for c in range(len(chunks))]
    model.train(was)
    rows = [(i, j) for g in chunks for i in g for j in keep[i]]
    values = _targets(method, ratings, decisions, keep, rows, chunks, fixed, beta, options)
    model.train(config.dropout)
    sums = Sums()
    for perm in perms:
        for c in perm:
            # data parallel: this process trains a contiguous share of the chunk's prompt groups, rows lo:hi
            g = chunks[c]
            ends = np.cumsum([0] + [len(keep[i]) for i in g])
            part, weight = minibatch_share(np.arange(len(g)), sharded)  # FSDP: no share runs the first, weight 0
            lo, hi = (int(ends[part[0]]), int(ends[part[-1] + 1])) if len(part) else (0, 0)
            flat = [s for i in g[part] for s in seqs[i]] if len(part) else []
            v = values[c][lo:hi] if values[c] is not None else None
            per, count, stats = None, 0, {}
            if not flat:
                pass
            elif method == "superhf":
                from pairkit.train._inputs import token_inputs

                kinds = {"token_kl"} if beta > 0 else set()
                tok = policy_pass(model, functools.partial(token_inputs, chunk_size=config.chunk_size),
                                  (reference, nullcontext), collate_sequences(flat, pad_id), kinds)  # fmt: skip
                kl = tok["kl"] if beta > 0 else torch.zeros_like(tok["logps"])
                per = pg.superhf_loss(tok["logps"], kl, tok["mask"], beta=beta)
                count = len(per)
                stats = {"nll": -(tok["logps"] * tok["mask"]).sum(-1) / tok["mask"].sum(-1).clamp_min(1)}
            else:
                logps, mask = policy_pass(model, token_logps, flat, pad_id, config.chunk_size)
                if need_old and fixed[c][0] is None:  # the first chunk: the sampling policy is the current one
                    fixed[c][0] = logps.detach()
                width = logps.shape[1]  # right padding: this share's sequences fit the chunk's first columns
                old, ref = (x[lo:hi, :width] if x is not None else None for x in fixed[c][:2])
                per, count, stats = _objective(method, logps, old, ref, mask, v, beta, {**options, "group": k})
                if dp and method == "grpo" and options["aggregation"] == "token":  # the whole chunk's token mean
                    whole = fixed[c][2]
                    per = per * (int(mask.sum()) / len(mask) * len(whole) / max(int(whole.sum()), 1))
            whole_count = dist.total(count * weight)[0] if dp else count
            apply_update(per.sum() * weight / whole_count if per is not None else None, optimizer, params, config, rnd,
                         sharded=sharded)  # fmt: skip
            if per is not None and weight:
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
    from pairkit.train._fsdp import is_sharded
    from pairkit.train._steps import encode, pair_examples, pair_step, seq_logps

    examples = pair_examples(tokenizer, rows, config, terms)
    online_seqs = [[(p, c) for p, c, _ in encode(tokenizer, r["prompt"], ss, config)] for r, ss in zip(rows, samples)]
    step = pair_step(terms, options, beta, pad_id, config, (reference, nullcontext))

    def forward(m, chunk, flat):
        return *step(m, chunk), seq_logps(m, flat, pad_id, config.chunk_size)[0]

    sharded = is_sharded(model)
    coupled = coupled_losses([name for name, *_ in terms])  # computed on the gathered minibatch (loss_values)
    model.train(config.dropout)
    sums = Sums()
    rng = np.random.default_rng([config.seed, rnd, 29])
    for _ in range(epochs):
        perm = rng.permutation(len(examples))
        for s in range(0, len(examples), config.batch_size):
            batch = perm[s : s + config.batch_size]
            idx, weight = minibatch_share(batch, sharded, coupled)  # data parallel: this process's share
            if not len(idx):
                apply_update(None, optimizer, params, config, rnd)
                continue
            flat = [q for i in idx for q in online_seqs[i]]
            losses, stats, pol = policy_pass(model, forward, [examples[i] for i in idx], flat)
            with torch.no_grad():
                ref, _ = seq_logps(reference, flat, pad_id, config.chunk_size)
            kl = pg.score_function_kl(pol, ref.to(pol.dtype))
            per_prompt = len(flat) / len(idx)  # k samples of each prompt
            loss = (losses.float().sum() + kl_weight * kl.float().sum() / per_prompt) * weight / len(batch)
            apply_update(loss, optimizer, params, config, rnd, sharded=sharded)
            if weight:
                sums.add(len(idx), loss=losses, **stats, online_kl=float((pol - ref).detach().double().mean()))
    return sums.mean()


def scir_pairs(samples) -> list[tuple[int, int, int]]:
    """SCIR's unlabeled pairs: (prompt, i, j) for every i < j of different, non-empty samples of a prompt."""
    return [(n, i, j) for n, ss in enumerate(samples) for i in range(len(ss)) for j in range(i + 1, len(ss))
            if ss[i] and ss[j] and ss[i] != ss[j]]  # fmt: skip


def scir_judge_sequences(judge, tokenizer, prompt, first: str, second: str) -> list[tuple[list[int], list[int]]]:
    """The four (judge prompt ids, verdict ids) sequences of one pair: shown as (first, second) then swapped,
    each followed by the verdict ``A]]`` and ``B]]`` (``judge`` is the :class:`~pairkit.judges.HFJudge` whose
    ``prompt`` renders the judge prompt, ending in the verdict opening ``[[``)."""
    from pairkit.judges.base import Request

    context = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
    out = []
    for order in ("ab", "ba"):
        text = judge.prompt(Request(context, first, second, order=order))
        ids = tokenizer.encode(text, add_special_tokens=False)
        out += [(ids, tokenizer.encode(label + "]]", add_special_tokens=False)) for label in ("A", "B")]
    return out


def train_scir_round(
    model, reference, tokenizer, prompts, samples, *, beta, options, optimizer, params, config, epochs, rnd, pad_id,
) -> dict[str, float]:  # fmt: skip
    """One round of SCIR: consistency between the policy's two internal reward models, DPO on the pairs where
    they agree.

    Zhou et al. (2025), "Self-Consistency of the Internal Reward Models Improves Self-Rewarding Language Models"
    (arXiv:2502.08922). For every pair :math:`(y_1, y_2)` of a prompt's samples the policy predicts the
    preference twice: as a generative judge (LLM-as-a-judge, the verdict tokens ``A``/``B`` after the judge
    prompt, both presentation orders averaged) and through its implicit DPO reward:

    .. math::

        p_G &= \\tfrac12\\big[\\sigma(\\ell^{(12)}_A - \\ell^{(12)}_B) + \\sigma(\\ell^{(21)}_B - \\ell^{(21)}_A)\\big],
        \\qquad \\ell^{(12)}_v = \\log\\pi_\\theta(v\\texttt{]]} \\mid \\text{judge}(x, y_1, y_2)) \\\\
        p_D &= \\sigma(r_1 - r_2), \\qquad
        r_j = \\beta\\big(\\log\\pi_\\theta(y_j\\mid x) - \\log\\pi_{ref}(y_j\\mid x)\\big) \\\\
        \\mathcal{L} &= \\frac1P\\sum_{pairs} m\\,\\big[-\\log\\sigma\\big(s\\,(r_1 - r_2)\\big)\\big]
        + \\lambda\\,(p_G - p_D)\\big(\\operatorname{logit} p_G - \\operatorname{logit} p_D\\big)

    where :math:`s = \\operatorname{sign}(\\bar p - \\tfrac12)` with :math:`\\bar p = \\operatorname{sg}(\\tfrac12
    (p_G + p_D))`, and the mask :math:`m = 1` when the two internal rewards agree,
    :math:`(p_G - \\tfrac12)(p_D - \\tfrac12) > 0`, with confidence :math:`|\\bar p - \\tfrac12| \\ge \\tau`
    (``threshold``). The consistency term is the symmetric KL divergence of the two Bernoulli predictions; both
    internal reward models receive its gradient. Options: ``consistency_weight`` λ (1), ``threshold`` τ (0),
    ``template`` (the judge prompt, ``"pairwise"``).

    **Reading taken.** The paper's text available to us gives the components (two internal reward models, a
    consistency loss on their preference probabilities of each unlabeled pair, DPO on the consistent pairs
    only) but not every formula; the choices here are ours: the symmetric KL as the inconsistency penalty, the
    verdict probability renormalised over ``A`` and ``B`` (ties dropped) and averaged over both orders, the
    label from the mean of the two probabilities, and the round's starting policy as the reference (the
    self-rewarding iteration). At a round's first step :math:`p_D = \\tfrac12` exactly (policy = reference), so
    no pair is consistent yet and only the consistency term trains; the DPO term starts in the next step
    (hence two epochs per round by default).
    """
    from pairkit.judges import HFJudge
    from pairkit.train._fsdp import is_sharded
    from pairkit.train._steps import encode, seq_logps

    def forward(m, seqs, verdicts):
        return (seq_logps(m, seqs, pad_id, config.chunk_size)[0].view(-1, 2),
                seq_logps(m, verdicts, pad_id, config.chunk_size)[0].view(-1, 4))  # fmt: skip

    sharded = is_sharded(model)
    lam, tau = options["consistency_weight"], options["threshold"]
    # the judge only renders the prompts (the policy scores them below); FSDP: not over the sharded policy
    judge = HFJudge(reference if sharded else model, tokenizer, template=options["template"])
    pairs = scir_pairs(samples)
    if not pairs:
        return {"loss": 0.0, "pairs": 0.0}
    enc = {(n, j): encode(tokenizer, prompts[n], [samples[n][j]], config)[0][:2]
           for n, i, j2 in pairs for j in (i, j2)}  # fmt: skip
    jseqs = [scir_judge_sequences(judge, tokenizer, prompts[n], samples[n][i], samples[n][j]) for n, i, j in pairs]
    with torch.no_grad():
        keys = list(enc)
        ref_lp = dict(zip(keys, seq_logps(reference, [enc[key] for key in keys], pad_id, config.chunk_size)[0]))
    rng = np.random.default_rng([config.seed, rnd, 31])
    model.train(config.dropout)
    sums = Sums()
    for _ in range(epochs):
        perm = rng.permutation(len(pairs))
        for s in range(0, len(pairs), config.batch_size):
            batch = perm[s : s + config.batch_size]
            idx, weight = minibatch_share(batch, sharded)  # data parallel: this process's share of the minibatch
            if not len(idx):
                apply_update(None, optimizer, params, config, rnd)
                continue
            seqs = [enc[pairs[p][0], pairs[p][c]] for p in idx for c in (1, 2)]
            pol, ll = policy_pass(model, forward, seqs, [q for p in idx for q in jseqs[p]])
            ref = torch.stack([torch.stack([ref_lp[pairs[p][0], pairs[p][c]] for c in (1, 2)]) for p in idx])
            r = beta * (pol - ref.to(pol.dtype))
            loss, stats = scir_loss(r[:, 0] - r[:, 1], ll, consistency_weight=lam, threshold=tau)
            apply_update(loss.sum() * weight / len(batch), optimizer, params, config, rnd, sharded=sharded)
            if weight:
                sums.add(len(idx), loss=loss, **stats)
    out = sums.mean()
    out["pairs"] = float(len(pairs))
    return out


def scir_loss(margin: torch.Tensor, verdict_ll: torch.Tensor, *, consistency_weight: float = 1.0,
              threshold: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """Per-pair SCIR loss ``[P]`` from the implicit reward margins ``r_1 - r_2`` ``[P]`` and the verdict
    log-likelihoods ``[P, 4]`` (order (1, 2): ``A``, ``B``; order (2, 1): ``A``, ``B``); see
    :func:`train_scir_round` for the formula. Returns the losses and per-pair statistics."""
    ll = verdict_ll
    p_g = 0.5 * (torch.sigmoid(ll[:, 0] - ll[:, 1]) + torch.sigmoid(ll[:, 3] - ll[:, 2]))
    p_d = torch.sigmoid(margin)
    logit_g = torch.log(p_g) - torch.log1p(-p_g)
    consistency = (p_g - p_d) * (logit_g - margin)
    with torch.no_grad():
        mean = 0.5 * (p_g + p_d)
        agree = ((p_g - 0.5) * (p_d - 0.5) > 0) & ((mean - 0.5).abs() >= threshold)
        sign = torch.where(mean > 0.5, 1.0, -1.0).to(margin.dtype)
    dpo = torch.nn.functional.softplus(-sign * margin) * agree.to(margin.dtype)
    stats = {"consistent": agree.double(), "gap": (p_g - p_d).detach().abs(), "p_generative": p_g.detach()}
    return dpo + consistency_weight * consistency, stats
