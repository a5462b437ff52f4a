"""The online loop: the policy samples, any pairkit comparator judges, ratings build the pairs, the trainer learns.

One round:

1. ``prompts_per_round`` prompts → ``k`` completions each from the current policy (transformers ``generate``,
   seeded per round; saved under ``output_dir/samples`` before judging, so a killed run never samples a round
   twice);
2. every comparator of :mod:`pairkit.judges` judges them, scheduled by a :mod:`pairkit.select` strategy
   (``round_robin`` = all pairs within a prompt, ``knockout``, …) and a position policy; the judgments go
   through a SQLite :class:`~pairkit.judges.JudgmentCache` (``output_dir/judgments.sqlite``), so no judge call is
   repeated after a kill;
3. per prompt, a Bradley–Terry fit over its ``k`` samples (with a weak prior, so an undefeated sample has a
   finite rating) rates them, and pairs are built from the ratings: best vs worst, or all pairs ordered by
   rating gap;
4. the trainer takes ``epochs`` passes over the round's pairs with any pairwise loss of
   :mod:`pairkit.losses`, with one optimiser kept across rounds.

After each round the model, the optimiser, the reference (when it moves) and the random state are saved;
``resume=True`` continues after the last finished round, and ``metrics.jsonl`` holds one row per round.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit.errors import EstimationError, InputError, PairkitWarning
from pairkit.train._loop import TrainConfig, _clip, _load_checkpoint, atomic_save, check_number, latest_checkpoint
from pairkit.train.data import prompt_ids

__all__ = ["METHODS", "OnlineConfig", "judge_samples", "rate_samples", "sample_completions", "train_online"]


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
    """Options of the online loop (the optimiser's are in ``pairkit.train.TrainConfig``).

    ``rounds`` rounds of ``prompts_per_round`` prompts (cycling through the prompts in a seeded order) with
    ``k`` samples each; ``pairs`` ``"best_vs_worst"`` (one pair per prompt) or ``"all"`` (every pair of
    differently rated samples, largest gap first); ``update_reference`` makes the policy at the start of each
    round the reference of that round (iterative DPO), else the initial policy stays the reference.
    """

    rounds: int = 10
    prompts_per_round: int = 8
    k: int = 4
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    strategy: str = "round_robin"
    position_policy: str = "random"
    pairs: str | None = None
    epochs: int | None = None
    update_reference: bool | None = None
    prior: float = 0.5
    eval_every: int = 0

    def __post_init__(self):
        for name in ("rounds", "prompts_per_round", "max_new_tokens"):
            check_number(name, getattr(self, name), low=1, integer=True)
        if self.epochs is not None:
            check_number("epochs", self.epochs, low=1, integer=True)
        check_number("k", self.k, low=2, integer=True)
        check_number("eval_every", self.eval_every, low=0, integer=True)
        check_number("temperature", self.temperature, low=0, low_open=True)
        check_number("top_p", self.top_p, low=0, high=1, low_open=True)
        check_number("prior", self.prior, low=0, low_open=True)
        if self.pairs not in (None, "best_vs_worst", "all"):
            raise InputError(f"pairs must be 'best_vs_worst' or 'all', got {self.pairs!r}")


METHODS: dict[str, dict[str, Any]] = {
    # Guo et al. (2024), "Direct Language Model Alignment from Online AI Feedback": fresh samples from the
    # current policy every step, an AI judge picks the preferred one, the SFT model stays the reference.
    "online_dpo": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Xiong et al. (2024), "Iterative Preference Learning from Human Feedback: Bridging Theory and Practice for
    # RLHF under KL-Constraint": rounds of sampling, best-vs-worst pairs by a preference oracle, DPO training,
    # with the round's starting policy as the next reference.
    "iterative_dpo": {"update_reference": True, "epochs": 2, "pairs": "best_vs_worst"},
}


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[Any],
    *,
    k: int = 4,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[list[str]]:
    """``k`` sampled completions per prompt from a transformers causal LM (one batched, seeded ``generate``).

    .. math::

        y_{i,j} \\sim \\pi(\\cdot \\mid x_i),\\quad j = 1..k \\qquad
        (\\text{temperature } T,\\ \\text{nucleus } p)

    Nucleus sampling: Holtzman et al. (2020), "The Curious Case of Neural Text Degeneration". Prompts given as
    chat messages use the tokenizer's chat template (as in training). Completions stop at EOS and are decoded
    without special tokens.
    """
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):  # left padding: every prompt ends where generation starts
        input_ids[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
        attention[i, width - len(x) :] = 1
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=k,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
    finally:
        model.train(was_training)
        torch.set_rng_state(state)
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [texts[i * k : (i + 1) * k] for i in range(len(ids))]


def judge_samples(judge, prompts: Sequence[Any], samples: Sequence[Sequence[str]], *, strategy="round_robin",
                  policy="random", cache=None, seed: int = 0, **options):  # fmt: skip
    """Judge each prompt's samples against each other with a selection strategy; returns the ``Selection``.

    Candidates are the sample indices ``"0" … "k-1"`` within each prompt (context); see
    :func:`pairkit.select.select` for the strategies, position policies and the cache.
    """
    from pairkit.select import Pool, select

    k = len(samples[0])
    contexts = tuple(str(i) for i in range(len(prompts)))
    texts = tuple(_prompt_str(p) for p in prompts)
    pool = Pool(tuple(str(j) for j in range(k)), contexts, texts, tuple(tuple(s) for s in samples))
    return select(strategy, judge, pool, policy=policy, cache=cache, seed=seed, **options)


def rate_samples(selection, n_prompts: int, k: int, *, prior: float = 0.5) -> np.ndarray:
    """Per-prompt Bradley–Terry ratings ``[n_prompts, k]`` of the samples from a selection's decisions.

    .. math::

        \\hat\\theta = \\arg\\max_\\theta \\sum_{(i,j)} s_{ij}\\log\\sigma(\\theta_i-\\theta_j)
        + (1-s_{ij})\\log\\sigma(\\theta_j-\\theta_i) + \\text{prior}

    Bradley & Terry (1952), "Rank Analysis of Incomplete Block Designs: I. The Method of Paired Comparisons".
    Each (prompt, sample) is its own item, so prompts do not share strengths; ``prior`` virtual games against a
    unit-strength player keep an undefeated sample finite. Samples never compared get the prior's rating 0.
    """
    from pairkit.data import Comparisons
    from pairkit.rating import fit_bradley_terry

    ratings = np.zeros((n_prompts, k))
    if not selection.decisions:
        return ratings
    c, a, b, s, _ = (np.asarray(x) for x in zip(*selection.decisions))
    comps = Comparisons.from_arrays(
        c * k + a, c * k + b, s.astype(float), items=[str(i) for i in range(n_prompts * k)], source="judgments"
    )
    board = fit_bradley_terry(comps, prior=prior, intervals="none")
    return np.asarray(board.log_strength, dtype=float).reshape(n_prompts, k)


def _prompt_str(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def _round_pairs(prompts, samples, ratings, rule: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairs from rated samples, and counts of prompts that gave none (tied ratings, identical texts)."""
    rows, tied, identical = [], 0, 0
    for prompt, texts, r in zip(prompts, samples, ratings):
        order = np.argsort(-r, kind="stable")
        if rule == "best_vs_worst":
            candidates = [(order[0], order[-1])]
        else:
            candidates = [(i, j) for x, i in enumerate(order) for j in order[x + 1 :]]
            candidates.sort(key=lambda ij: -(r[ij[0]] - r[ij[1]]))
        made = 0
        for i, j in candidates:
            if not r[i] - r[j] > 1e-9:
                continue
            if texts[i] == texts[j] or not texts[i] or not texts[j]:
                identical += 1
                continue
            rows.append({"prompt": prompt, "chosen": texts[i], "rejected": texts[j], "gap": float(r[i] - r[j])})
            made += 1
        tied += made == 0
    return rows, {"prompts_without_pair": tied, "identical_or_empty_pairs": identical}


def _atomic_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def train_online(
    model,
    tokenizer,
    prompts: Sequence[Any],
    judge,
    *,
    method: str = "online_dpo",
    loss: str | dict[str, float] = "dpo",
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    online: OnlineConfig | None = None,
    eval_prompts: Sequence[Any] | None = None,
    budget: int | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Online / iterative preference optimisation of a causal LM with any pairkit comparator as the judge.

    .. math::

        y_{i,1..k} \\sim \\pi_{\\theta_t}(\\cdot\\mid x_i),\\quad
        \\hat\\theta_{i,\\cdot} = \\mathrm{BT}(\\text{judge}(y_{i,a} \\text{ vs } y_{i,b})),\\quad
        \\theta_{t+1} = \\theta_t - \\eta\\nabla \\sum_i \\ell\\big(y_{i,\\arg\\max\\hat\\theta},
        y_{i,\\arg\\min\\hat\\theta}; \\pi_{ref}\\big)

    ``method``: ``"online_dpo"`` (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback":
    the initial policy stays the reference, one pass over each round's fresh pairs) or ``"iterative_dpo"``
    (Xiong et al. 2024, "Iterative Preference Learning from Human Feedback: Bridging Theory and Practice for
    RLHF under KL-Constraint": the policy at the start of a round is that round's reference). Explicit
    ``online`` fields override the method's defaults. ``loss`` is any pairwise preference loss (or weighted
    sum) of :mod:`pairkit.losses`.

    With ``config.output_dir`` set, samples, judgments (SQLite), a checkpoint per round and ``metrics.jsonl``
    are written there and ``resume=True`` continues after the last finished round, drawing no sample twice
    and repeating no judge call. ``eval_prompts`` with ``online.eval_every`` > 0 measure the judge's win rate of
    the policy against the initial policy (one sample each, both orders shown: position bias cancels).
    ``budget`` caps the judge calls of the whole run.

    Returns one metrics row per round: loss, reward margin and accuracy of the implicit rewards, pairs,
    prompts without a pair, the KL of the policy from the reference on the round's samples, judge calls (paid
    and cached), cost, and ``win_rate`` on evaluation rounds.
    """
    from pairkit.judges import Budget, CachedJudge, JudgmentCache
    from pairkit.train.trainers import _losses, _options, _pad_id, _pair_step

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}")
    config = config or TrainConfig()
    online = online or OnlineConfig()
    online = dataclasses.replace(online, **{k: v for k, v in METHODS[method].items() if getattr(online, k) is None})
    prompts = list(prompts)
    if len(prompts) == 0:
        raise InputError("train_online needs at least one prompt")
    terms = _losses(loss, "preference")
    options = _options(terms, beta, loss_options)
    pad_id = _pad_id(tokenizer)
    out_dir = Path(config.output_dir) if config.output_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    cache = JudgmentCache(out_dir / "judgments.sqlite") if out_dir else JudgmentCache(":memory:")
    if out_dir:
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    judged = CachedJudge(judge, cache, budget=Budget(max_calls=budget) if budget is not None else None)

    initial = copy.deepcopy(model).eval()
    for p in initial.parameters():
        p.requires_grad_(False)
    reference = initial
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    start = 0
    if resume:
        ckpt = latest_checkpoint(out_dir) if out_dir else None
        if ckpt is None:
            raise InputError(f"resume=True but no round checkpoint under {str(out_dir)!r}/checkpoints")
        state = _load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        history = list(state["history"])
    order = np.random.default_rng(config.seed).permutation(len(prompts))
    metrics_path = out_dir / "metrics.jsonl" if out_dir else None
    if metrics_path is not None:
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    for rnd in range(start, online.rounds):
        if online.update_reference:  # iterative DPO: the policy at the start of the round
            reference = copy.deepcopy(model).eval()
            for p in reference.parameters():
                p.requires_grad_(False)
        pick = [order[(rnd * online.prompts_per_round + i) % len(prompts)] for i in range(online.prompts_per_round)]
        batch_prompts = [prompts[i] for i in pick]
        samples = _samples(model, tokenizer, batch_prompts, online, config.seed, rnd, out_dir)
        calls_before, hits_before = judged.usage.calls, judged.usage.cache_hits
        sel = judge_samples(
            judged, batch_prompts, samples, strategy=online.strategy, policy=online.position_policy,
            seed=config.seed * 1_000_003 + rnd,
        )  # fmt: skip
        ratings = rate_samples(sel, len(batch_prompts), online.k, prior=online.prior)
        rows, counts = _round_pairs(batch_prompts, samples, ratings, online.pairs)
        row: dict[str, float] = {"round": rnd + 1, "pairs": len(rows), **counts}
        row["kl"] = _sample_kl(model, reference, tokenizer, batch_prompts, samples, config, pad_id)
        if rows:
            step = _pair_step(terms, options, beta, pad_id, config, (reference, nullcontext))
            row.update(_train_round(model, tokenizer, rows, terms, step, optimizer, params, config, online, rnd))
        else:
            warnings.warn(f"round {rnd + 1}: no prompt gave a pair (all samples rated alike)", PairkitWarning,
                          stacklevel=2)  # fmt: skip
        if eval_prompts and online.eval_every and (rnd + 1) % online.eval_every == 0:
            row["win_rate"] = win_rate(model, initial, tokenizer, eval_prompts, judged, online=online,
                                       seed=config.seed + 7)  # fmt: skip
        row.update(
            judge_calls=judged.usage.calls - calls_before,
            judge_cache_hits=judged.usage.cache_hits - hits_before,
            judge_cost=float(judged.usage.cost),
            sample_chars=float(np.mean([len(s) for ss in samples for s in ss])),
        )
        history.append(row)
        if out_dir is not None:
            _save_round(out_dir, model, optimizer, rnd + 1, history)
            with open(metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        if callback is not None:
            callback(row)
    return history


def _samples(model, tokenizer, prompts, online: OnlineConfig, seed: int, rnd: int, out_dir: Path | None):
    """The round's samples: read back when a killed run already drew them, else drawn and saved first."""
    path = out_dir / "samples" / f"round-{rnd + 1}.json" if out_dir else None
    key = {"prompts": [_prompt_str(p) for p in prompts], "k": online.k, "temperature": online.temperature,
           "top_p": online.top_p, "max_new_tokens": online.max_new_tokens, "seed": seed}  # fmt: skip
    if path is not None and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["samples"]
    samples = sample_completions(
        model, tokenizer, prompts, k=online.k, max_new_tokens=online.max_new_tokens,
        temperature=online.temperature, top_p=online.top_p, seed=seed * 1_000_003 + rnd,
    )  # fmt: skip
    if path is not None:
        _atomic_json(path, {"key": key, "samples": samples})
    return samples


def _sample_kl(model, reference, tokenizer, prompts, samples, config, pad_id) -> float:
    """Monte Carlo KL of the policy from the reference on the round's own samples (drawn from the policy).

    .. math::

        \\widehat{\\mathrm{KL}}(\\pi\\,\\|\\,\\pi_{ref}) = \\frac{1}{nk}\\sum_{i,j}
        \\log\\pi(y_{ij}\\mid x_i) - \\log\\pi_{ref}(y_{ij}\\mid x_i), \\qquad y_{ij}\\sim\\pi(\\cdot\\mid x_i)

    Schulman (2020), "Approximating KL Divergence" (the unbiased k1 estimator; it can be negative on few samples).
    """
    from pairkit.train.trainers import _encode, _seq_logps

    seqs = [(p, c) for prompt, ss in zip(prompts, samples) for p, c, _ in _encode(tokenizer, prompt, ss, config)]
    was = model.training
    model.eval()
    with torch.no_grad():
        mine = _seq_logps(model, seqs, pad_id, config.chunk_size)[0]
        ref = _seq_logps(reference, seqs, pad_id, config.chunk_size)[0]
    model.train(was)
    return float((mine - ref).double().mean())


def _train_round(model, tokenizer, rows, terms, step, optimizer, params, config, online, rnd: int):
    """``online.epochs`` passes over the round's pairs in batches of ``config.batch_size``; mean metrics."""
    from pairkit.train.trainers import _pair_examples

    examples = _pair_examples(tokenizer, rows, config, terms)
    model.train(config.dropout)
    sums: dict[str, float] = {}
    n_seen = 0
    rng = np.random.default_rng([config.seed, rnd])
    for _ in range(online.epochs):
        perm = rng.permutation(len(examples))
        for start in range(0, len(examples), config.batch_size):
            batch = [examples[j] for j in perm[start : start + config.batch_size]]
            losses, stats = step(model, batch)
            value = losses.float().sum() / len(batch)
            if not math.isfinite(value.item()):
                raise EstimationError(
                    f"round {rnd + 1}: the loss is {value.item()}; the model was not updated (lower the learning "
                    "rate, check beta and the loss options)"
                )
            value.backward()
            _clip(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for key, v in {"loss": losses, **stats}.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach().double().sum())
            n_seen += len(batch)
    return {k: v / n_seen for k, v in sums.items()}


def _save_round(out_dir: Path, model, optimizer, rnd: int, history) -> None:
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": rnd,
        "history": history,
    }
    atomic_save(state, ckpt_dir / f"step-{rnd}.pt")
    for old in ckpt_dir.glob("step-*.pt"):  # the loop resumes from the last round only
        if old.name != f"step-{rnd}.pt":
            old.unlink()


def win_rate(model, initial, tokenizer, prompts, judge, *, online: OnlineConfig, seed: int = 0) -> float:
    """The judge's win rate of ``model`` against ``initial``: one sample each per prompt, both orders shown.

    .. math::

        \\mathrm{WR} = \\frac{1}{n}\\sum_i \\tfrac12\\big(s(y_i, y^0_i) + 1 - s(y^0_i, y_i)\\big)

    where :math:`s(u, v)` is the judge's expected score of the answer shown first. Ties count one half.
    """
    from pairkit.select import Pool, select

    kw = dict(k=1, max_new_tokens=online.max_new_tokens, temperature=online.temperature, top_p=online.top_p,
              seed=seed)  # fmt: skip
    mine = sample_completions(model, tokenizer, prompts, **kw)
    base = sample_completions(initial, tokenizer, prompts, **kw)
    texts = tuple((m[0], b[0]) for m, b in zip(mine, base))
    pool = Pool(("policy", "initial"), tuple(map(str, range(len(prompts)))),
                tuple(_prompt_str(p) for p in prompts), texts)  # fmt: skip
    sel = select("round_robin", judge, pool, policy="both_average", seed=seed)
    scores = [s if a == 0 else 1.0 - s for _, a, _, s, _ in sel.decisions]
    return float(np.mean(scores)) if scores else 0.5
