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
import functools
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError, PairkitWarning
from pairkit.train import _dist as dist
from pairkit.train import policy_gradient as pg
from pairkit.train._loop import (
    TrainConfig,
    atomic_save,
    check_number,
    coupled_losses,
    init_distributed,
    latest_checkpoint,
    load_checkpoint,
    parse_loss_spec,
    rank_and_world,
    set_for_all,
)
from pairkit.train.data import prompt_ids

__all__ = [
    "METHODS",
    "OnlineConfig",
    "SelfJudge",
    "check_method_loss",
    "judge_samples",
    "rate_samples",
    "sample_completions",
    "train_online",
]


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
    """Options of the online loop (the optimiser's are in ``pairkit.train.TrainConfig``).

    ``rounds`` rounds of ``prompts_per_round`` prompts (cycling through the prompts in a seeded order) with
    ``k`` samples each; ``pairs`` ``"best_vs_worst"`` (one pair per prompt) or ``"all"`` (every pair of
    differently rated samples, largest gap first); ``update_reference`` makes the policy at the start of each
    round the reference of that round (iterative DPO), else the initial policy stays the reference.

    ``per_prompt_seeds`` samples each prompt alone with a seed of its own (a hash of the round's seed, the prompt's
    position and text and the sampling options, as :class:`~pairkit.train.RaySampler` does) instead of one batched
    ``generate`` per round: the samples then do not depend on how the prompts are split, so under
    ``accelerate launch`` every process samples its share of the round's prompts (otherwise the main process
    samples them all), and one process, any number of processes and any number of Ray actors draw the same ones.

    ``fsdp_sampling`` (under FSDP only): ``"synced"`` (the default) samples from the sharded policy, every process
    in step (``synced_gpus``); ``"gathered"`` samples from a full copy of the round's starting policy made from the
    gathered weights (one gather per round instead of one per block and token: faster, but a full copy is held
    while the round runs). Both draw the samples of one process.
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
    per_prompt_seeds: bool = False
    fsdp_sampling: str = "synced"

    def __post_init__(self):
        for name in ("rounds", "prompts_per_round", "max_new_tokens"):
            check_number(name, getattr(self, name), low=1, integer=True)
        if self.epochs is not None:
            check_number("epochs", self.epochs, low=1, integer=True)
        check_number("k", self.k, low=1, integer=True)
        check_number("eval_every", self.eval_every, low=0, integer=True)
        check_number("temperature", self.temperature, low=0, low_open=True)
        check_number("top_p", self.top_p, low=0, high=1, low_open=True)
        check_number("prior", self.prior, low=0, low_open=True)
        if self.pairs not in (None, "best_vs_worst", "all"):
            raise InputError(f"pairs must be 'best_vs_worst' or 'all', got {self.pairs!r}")
        if self.fsdp_sampling not in ("synced", "gathered"):
            raise InputError(f"fsdp_sampling must be 'synced' or 'gathered', got {self.fsdp_sampling!r}")


METHODS: dict[str, dict[str, Any]] = {
    # Guo et al. (2024), "Direct Language Model Alignment from Online AI Feedback": fresh samples from the
    # current policy every step, an AI judge picks the preferred one, the SFT model stays the reference.
    "online_dpo": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Xiong et al. (2024), "Iterative Preference Learning from Human Feedback: Bridging Theory and Practice for
    # RLHF under KL-Constraint": rounds of sampling, best-vs-worst pairs by a preference oracle, DPO training,
    # with the round's starting policy as the next reference.
    "iterative_dpo": {"update_reference": True, "epochs": 2, "pairs": "best_vs_worst"},
    # Yuan et al. (2024), "Self-Rewarding Language Models": the policy judges its own samples (LLM-as-a-judge),
    # best vs worst, iterative DPO with the previous iterate as reference.
    "self_rewarding": {"update_reference": True, "epochs": 1, "pairs": "best_vs_worst"},
    # Wang et al. (2024), "CREAM: Consistency Regularized Self-Rewarding Language Models": self-rewarding whose
    # DPO labels are softened by the rank consistency of the current and previous iterate as judges.
    "cream": {"update_reference": True, "epochs": 1, "pairs": "best_vs_worst"},
    # Zhou et al. (2025), "Self-Consistency of the Internal Reward Models Improves Self-Rewarding Language Models":
    # the policy's generative (LLM-as-a-judge) and implicit DPO rewards are trained to agree on pairs of its own
    # samples, and DPO trains on the pairs where they agree.
    "scir": {"update_reference": True, "epochs": 2, "pairs": "all"},
    # Chen et al. (2024), "Self-Play Fine-Tuning Converts Weak Language Models to Strong Language Models": the
    # data's answer is chosen, the policy's own sample rejected, the previous iterate is the reference.
    "spin": {"update_reference": True, "epochs": 1, "pairs": "best_vs_worst"},
    # Wu et al. (2024), "Self-Play Preference Optimization for Language Model Alignment" (soft win rates).
    "sppo": {"update_reference": True, "epochs": 1, "pairs": "best_vs_worst"},
    # Mukobi et al. (2023), "SuperHF: Supervised Iterative Learning from Human Feedback".
    "superhf": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Song et al. (2024), "The Importance of Online Data: Understanding Preference Fine-tuning via Coverage".
    "hypo": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Wu et al. (2023), "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment".
    "p3o": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Ahmadian et al. (2024), "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    # Feedback in LLMs".
    "rloo": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Shao et al. (2024), "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models".
    "grpo": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
    # Lai et al. (2024), "Step-DPO: Step-wise Preference Optimization for Long-chain Reasoning of LLMs", on step
    # pairs from a tree the policy expands (Xie et al. 2024, "Monte Carlo Tree Search Boosts Reasoning via
    # Iterative Preference Learning"): siblings judged, best vs worst step, the best child expanded next.
    "step_dpo": {"update_reference": False, "epochs": 1, "pairs": "best_vs_worst"},
}

# what each method needs: a judge ("given", the policy itself, or none) and offline data
_JUDGE = {"self_rewarding": "self", "cream": "self", "spin": None, "hypo": None, "scir": None}
_DATA = {"spin": "a reference answer per prompt ('chosen', 'completion' or 'response')",
         "hypo": "offline preference pairs (prompt, chosen, rejected)"}  # fmt: skip
_SAMPLE_METHODS = ("rloo", "grpo", "p3o", "sppo", "superhf")


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
    without special tokens. A model sharded by FSDP (several processes) generates with ``synced_gpus=True``: a
    process whose sequences ended keeps running the forward passes (whose parameter gathers are collectives, and
    whose tokens it discards) until every process's ended, so every process must make the same calls.
    """
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):  # left padding: every prompt ends where generation starts
        input_ids[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
        attention[i, width - len(x) :] = 1
    from pairkit.train._fsdp import is_sharded

    synced = is_sharded(model) and rank_and_world()[1] > 1
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
                **({"synced_gpus": True} if synced else {}),
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


class SelfJudge:
    """The policy as its own judge (self-rewarding): an :class:`~pairkit.judges.HFJudge` over the live model.

    ``judge_id`` holds a hash of the policy's weights at construction, so the judgment cache never answers a
    changed policy with an earlier one's verdicts; make a new one each round. Yuan et al. (2024),
    "Self-Rewarding Language Models" (the model reads a judge prompt; here its verdict is the probability of
    the next tokens ``A``/``B``/``C``, see :class:`~pairkit.judges.HFJudge`).
    """

    def __new__(cls, model, tokenizer, *, template: str = "pairwise"):
        from pairkit.judges import HFJudge
        from pairkit.train._steps import weights_fingerprint

        return HFJudge(model, tokenizer, template=template, judge_id=f"self:{weights_fingerprint(model)}")


def train_online(
    model,
    tokenizer,
    prompts: Sequence[Any] | None,
    judge=None,
    *,
    method: str = "online_dpo",
    loss: str | dict[str, float] = "dpo",
    beta: float = 0.1,
    loss_options: dict[str, Any] | None = None,
    method_options: dict[str, Any] | None = None,
    data=None,
    config: TrainConfig | None = None,
    online: OnlineConfig | None = None,
    eval_prompts: Sequence[Any] | None = None,
    budget: int | None = None,
    sampler=None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Online / iterative preference optimisation of a causal LM with any pairkit comparator as the judge.

    .. math::

        y_{i,1..k} \\sim \\pi_{\\theta_t}(\\cdot\\mid x_i),\\quad
        \\hat\\theta_{i,\\cdot} = \\mathrm{BT}(\\text{judge}(y_{i,a} \\text{ vs } y_{i,b})),\\quad
        \\theta_{t+1} = \\theta_t - \\eta\\nabla \\sum_i \\ell\\big(y_{i,\\arg\\max\\hat\\theta},
        y_{i,\\arg\\min\\hat\\theta}; \\pi_{ref}\\big)

    ``method`` (:data:`METHODS`; each cites its paper):

    * pairs from the judge's ratings, trained with ``loss`` (any pairwise loss or weighted sum of
      :mod:`pairkit.losses`): ``"online_dpo"`` (Guo et al. 2024, "Direct Language Model Alignment from Online AI
      Feedback": the initial policy stays the reference), ``"iterative_dpo"`` (Xiong et al. 2024, "Iterative
      Preference Learning from Human Feedback": the policy at the start of a round is that round's reference);
    * the policy as its own judge (:class:`SelfJudge`, no ``judge`` needed): ``"self_rewarding"`` (Yuan et al.
      2024) and ``"cream"`` (Wang et al. 2024: the previous iterate judges too, and the DPO labels are smoothed
      by the rank consistency :math:`C` of the two, :func:`~pairkit.train.policy_gradient.cream_consistency`);
    * ``"scir"`` (Zhou et al. 2025, "Self-Consistency of the Internal Reward Models Improves Self-Rewarding
      Language Models"): no judge; the policy's generative judge and its implicit DPO reward are trained to agree
      on all pairs of its samples, and DPO trains the pairs where they agree
      (:func:`~pairkit.train._online_methods.train_scir_round`; options ``consistency_weight``, ``threshold``,
      ``template``);
    * offline data in the loop (``data``): ``"spin"`` (Chen et al. 2024, "Self-Play Fine-Tuning…": the data's
      answer is chosen, the policy's first sample rejected; ``method_options={"alpha": a}`` makes the reference
      the geometric mixture :math:`\\pi_t^{1/(1+a)}\\pi_0^{a/(1+a)}` of the previous and the initial policy, the
      KL-regularised self-play of Alami et al. 2024, "Investigating Regularization of Self-Play Language
      Models"; ``{"history": h}`` draws each prompt's rejected sample from one of the last ``h`` iterates
      :math:`\\pi_{t-h+1..t}` chosen uniformly, ``h = 0`` from all of them :math:`\\pi_{0..t}` — the same paper's
      fictitious play, :math:`y' \\sim \\frac{1}{|H|}\\sum_{s \\in H}\\pi_s`; every iterate is kept in memory
      and saved under ``output_dir/iterates`` for resume), ``"hypo"`` (Song et al. 2024: DPO on the offline
      pairs plus ``kl_weight`` × the reverse KL to the reference on the policy's own samples of the same prompts,
      :func:`~pairkit.train.policy_gradient.score_function_kl`);
    * objectives on all judged samples (:mod:`pairkit.train.policy_gradient`; rewards are the per-prompt
      Bradley–Terry ratings): ``"rloo"`` (Ahmadian et al. 2024), ``"grpo"`` (Shao et al. 2024), ``"p3o"`` (Wu et
      al. 2023), ``"sppo"`` (Wu et al. 2024, soft win rates from the judge), ``"superhf"`` (Mukobi et al. 2023).
      ``beta`` is the KL coefficient there (1/η for SPPO); ``method_options`` holds the clipping ranges etc.
    * ``"step_dpo"``: step-level pairs from a tree the policy expands one step (text up to
      ``method_options["delimiter"]``, default a newline) at a time, ``depth`` steps deep; sibling steps are judged
      in the context of the prompt and the steps so far, best vs worst gives a pair, the best is expanded
      (Lai et al. 2024, "Step-DPO…"; the tree of Xie et al. 2024, "Monte Carlo Tree Search
      Boosts Reasoning via Iterative Preference Learning", searched greedily here, not by MCTS).

    Explicit ``online`` fields override the method's defaults.

    ``sampler`` (:mod:`pairkit.train.sampling`) draws the samples: by default an
    :class:`~pairkit.train.HFSampler` over the policy itself (on-policy); a :class:`~pairkit.train.VLLMSampler`
    (its ``update_weights`` loads the policy into the engine every round) or an
    :class:`~pairkit.train.OpenAISampler` (a server's model: off-policy); an ``HFSampler`` over a frozen copy of
    the starting policy trains on pairs sampled from the initial policy only (the offline baseline).

    With ``config.output_dir`` set, samples (keyed by a hash of the policy's weights, the prompts and the
    sampling options), judgments (SQLite), a checkpoint per round and ``metrics.jsonl`` are written there and
    ``resume=True`` continues after the last finished round, drawing no sample twice and repeating no judge
    call; a resume with other prompts or data, another starting model or another method is refused.

    Data parallel (``accelerate launch --multi_gpu``, ``torchrun``; the process group of
    ``pairkit.train.init_distributed``): every process runs this function; the main process alone reads and
    writes the caches, calls the judge and writes checkpoints and metrics, and hands its decisions, ratings and
    metrics rows to the others; each minibatch is split between the processes and their gradients summed, so every
    process ends with the weights of one process (to rounding). With ``online.per_prompt_seeds`` the processes
    sample their shares of each round's prompts; otherwise the main process samples. A batch-coupled loss
    (``sft``, ``dr_dpo``, ``aot``, …) is computed on every process's rows of the minibatch gathered in order, as in
    :func:`~pairkit.train.train_preference`, so every minibatch must hold a pair for every process (refused
    otherwise, naming the loss).

    FSDP (``config.fsdp``, ``accelerate launch --use_fsdp``; torch's ``fully_shard``, as the offline trainers, with
    accelerate's ``--fsdp_*`` options, :mod:`pairkit.train._fsdp`): the policy's parameters, gradients and optimiser
    state are sharded over the processes, so every process takes part in every forward pass of the policy. Sampling
    runs in all processes with transformers' ``synced_gpus=True`` (the route transformers and TRL take under ZeRO-3
    and FSDP: a process whose sequences ended keeps running forward passes until all have ended), each process
    making the same number of ``generate`` calls: with ``per_prompt_seeds`` each samples its share of the round's
    prompts (a process with a smaller share makes one more call, whose samples it drops), otherwise every process
    draws the whole round (the same samples). ``online.fsdp_sampling="gathered"`` samples from a full copy of the
    round's starting policy instead (gathered once per round: faster, more memory). The policy's log-probabilities
    (the training steps, the KL, the policy-gradient methods' log-probabilities before the update) run inside the
    sharded root's forward hooks, a process holding no example of a minibatch running one with weight 0; the
    reference (and SPIN's earlier iterates) is a frozen full copy in each process, as the offline trainers' live
    reference, made from the gathered weights when it moves. The sample cache hashes the gathered weights (the same
    key as one process); checkpoints hold the whole model and optimizer states, written by the main process and
    re-sharded on resume (a run resumes with FSDP if it started with it). The main process alone still owns the
    caches and calls the judge; a policy judging itself (``self_rewarding``, ``cream``) judges there as a full copy
    made from the gathered weights at the start of the round. Every method runs under FSDP.

    ``eval_prompts`` with ``online.eval_every`` > 0 measure the judge's win rate of the policy against the
    initial policy (one sample each, both orders shown: position bias cancels). ``budget`` caps the judge calls
    of the whole run.

    Returns one metrics row per round: loss, reward margin and accuracy of the implicit rewards (pair methods),
    pairs, prompts without a pair, the KL of the policy from the reference on the round's samples, judge calls
    (paid and cached), cost, ``win_rate`` on evaluation rounds, and the seconds spent per phase
    (``time/generate``, ``time/judge``, ``time/fit`` — the ratings — and ``time/train``, which includes any
    second judging a method does, such as CREAM's previous iterate).
    """
    from pairkit.judges import Budget, CachedJudge, JudgmentCache
    from pairkit.train import _fsdp
    from pairkit.train import _online_methods as om
    from pairkit.train._steps import loss_terms, pad_id_of, pair_step, trainer_options, weights_fingerprint

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}")
    config = config or TrainConfig()
    online = online or OnlineConfig()
    online = dataclasses.replace(online, **{k: v for k, v in METHODS[method].items() if getattr(online, k) is None})
    opts = om.method_options(method, method_options)
    judge_kind = _JUDGE.get(method, "given")
    if judge_kind == "given" and judge is None:
        raise InputError(f"method {method!r} needs a judge (a pairkit comparator)")
    if (judge_kind is not None or method == "scir") and online.k < 2:
        raise InputError(f"method {method!r} compares samples of a prompt: k must be at least 2, got {online.k}")
    rows = None
    if method in _DATA:
        if data is None:
            raise InputError(f"method {method!r} needs data: {_DATA[method]}")
        rows = _method_rows(method, data)
        prompts = [r["prompt"] for r in rows]
    elif data is not None:
        raise InputError(f"method {method!r} takes no data (only {', '.join(sorted(_DATA))} do)")
    prompts = list(prompts or [])
    if len(prompts) == 0:
        raise InputError("train_online needs at least one prompt")
    # beta is the KL coefficient of RLOO/GRPO/P3O/SuperHF (0: no KL term, no reference pass), else in (0, inf)
    check_number("beta", beta, low=0, low_open=method not in ("rloo", "grpo", "p3o", "superhf"))
    check_method_loss(method, loss)
    if method == "cream":
        loss = "cdpo"
    terms = options = None
    if method not in _SAMPLE_METHODS and method != "scir":  # these train their own objective, not ``loss``
        terms = loss_terms(loss, "preference")
        options = trainer_options(terms, beta, loss_options)
    pad_id = pad_id_of(tokenizer)
    _, world = init_distributed()
    plan = _fsdp.settings() if _fsdp.fsdp_requested(config) else None  # --fsdp_* options: checked in one process too
    sharded = world > 1 and plan is not None
    _fsdp.sync_weights(model, config)  # --fsdp_sync_module_states: process 0's weights, before anything reads them
    out_dir = Path(config.output_dir) if config.output_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
        identity = {"method": method, "model": weights_fingerprint(model),
                    "prompts": _hash_prompts(rows if rows is not None else prompts)}  # fmt: skip
        dist.on_main(lambda: _check_run(out_dir, resume, identity))
    # data parallel: only the main process opens the judgment cache and calls the judge (see pairkit.train._dist)
    on_disk = out_dir is not None and dist.is_main()
    cache = JudgmentCache(out_dir / "judgments.sqlite") if on_disk else JudgmentCache(":memory:")
    shared_budget = Budget(max_calls=budget) if budget is not None else None
    judged = CachedJudge(judge, cache, budget=shared_budget) if judge is not None else None

    initial = _frozen(model)
    reference = initial
    if sharded:
        _fsdp.shard(model, plan)

    def snapshot():
        """A frozen full copy of the policy now (under FSDP from its gathered weights: a collective)."""
        return _gathered_copy(model, initial) if sharded else _frozen(model)
    from pairkit.train.sampling import HFSampler

    if sampler is None:
        sampler = HFSampler(model, tokenizer, per_prompt=online.per_prompt_seeds)
    elif not callable(getattr(sampler, "sample", None)) or not callable(getattr(sampler, "identity", None)):
        raise InputError(f"sampler must have sample(...) and identity() (see pairkit.train.sampling), got {sampler!r}")
    elif method == "spin" and opts["history"] != 1:
        raise InputError("spin's history option samples from earlier iterates of the policy itself; it cannot be "
                         "combined with a given sampler")  # fmt: skip
    if world > 1 and not _shardable(sampler) and dist.is_main():
        in_step = _fsdp.is_sharded(getattr(sampler, "model", None)) and online.fsdp_sampling == "synced"
        where = ("every process draws the whole round (the same samples: FSDP needs them all in each forward pass)"
                 if in_step else "only the main process samples")  # fmt: skip
        warnings.warn(f"{type(sampler).__name__}: {where}; with the default sampler and per_prompt_seeds=True "
                      "(--per-prompt-seeds) every process samples its share of each round's prompts", PairkitWarning,
                      stacklevel=2)  # fmt: skip
    iterates: list = []  # SPIN with history: the policies at the start of earlier rounds (pi_0 first)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    start = 0
    last_start = None  # CREAM: the policy at the start of the previous round (the previous iterate)
    if resume:
        ckpt = latest_checkpoint(out_dir) if out_dir else None
        if ckpt is None:
            raise InputError(f"resume=True but no round checkpoint under {str(out_dir)!r}/checkpoints")
        state = load_checkpoint(ckpt)
        if bool(state.get("fsdp")) != sharded:
            was = "with" if state.get("fsdp") else "without"
            raise InputError(f"cannot resume from {ckpt}: it was written {was} FSDP; resume it {was} fsdp (and, "
                             "with it, with more than one process)")  # fmt: skip
        if sharded:  # whole states, re-sharded
            _fsdp.load_checkpoint_states(model, optimizer, state["model"], state["optimizer"])
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        history = list(state["history"])
        if state.get("previous") is not None:
            last_start = _frozen(initial)
            last_start.load_state_dict(state["previous"])
        if method == "spin" and opts["history"] != 1:
            iterates = [_load_iterate(out_dir, r, initial) for r in range(start)]
    order = np.random.default_rng(config.seed).permutation(len(prompts))
    metrics_path = out_dir / "metrics.jsonl" if out_dir else None
    if metrics_path is not None and dist.is_main():
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")
    for rnd in range(start, online.rounds):
        start_copy = functools.cache(snapshot)  # one frozen copy of the round's starting policy serves all below
        previous, last_start = last_start, (start_copy() if method == "cream" else None)
        if online.update_reference:  # iterative DPO: the policy at the start of the round
            reference = start_copy()
        pick = [order[(rnd * online.prompts_per_round + i) % len(prompts)] for i in range(online.prompts_per_round)]
        batch_prompts = [prompts[i] for i in pick]
        row: dict[str, float] = {"round": rnd + 1}
        round_judge = judged
        if judge_kind == "self":
            # FSDP: the main process judges alone, with a full copy of the policy (the same judge_id)
            round_judge = CachedJudge(SelfJudge(start_copy() if sharded else model, tokenizer), cache,
                                      budget=shared_budget)  # fmt: skip
        calls_before = round_judge.usage.calls if round_judge is not None else 0
        hits_before = round_judge.usage.cache_hits if round_judge is not None else 0
        if hasattr(sampler, "update_weights"):  # an external engine samples from this round's policy
            policy_now = start_copy() if sharded else model
            dist.on_main(lambda policy_now=policy_now: sampler.update_weights(policy_now))
        round_sampler = sampler
        if sharded and online.fsdp_sampling == "gathered" and isinstance(sampler, HFSampler) and sampler.model is model:
            round_sampler = HFSampler(start_copy(), tokenizer, per_prompt=sampler.per_prompt)  # the whole weights
        if method == "step_dpo":
            tree_pairs, tree_counts, samples = _step_tree(
                round_sampler, batch_prompts, round_judge, online, opts, config.seed, rnd, out_dir
            )
        else:
            clock = time.perf_counter()
            if method == "spin" and opts["history"] != 1:  # fictitious play: a mixture of earlier iterates samples
                iterates.append(start_copy())
                if out_dir is not None:
                    dist.on_main(lambda rnd=rnd: _save_iterate(out_dir, rnd, iterates[-1]))
                keep = iterates if opts["history"] == 0 else iterates[-opts["history"] :]
                choices = np.random.default_rng([config.seed, rnd, 41]).integers(len(keep), size=len(batch_prompts))
                round_sampler = _HistorySampler(keep, tokenizer, choices)
                row["opponent_mean_age"] = float(np.mean(len(keep) - 1 - choices))
            samples = _samples(round_sampler, batch_prompts, online, config.seed, rnd, out_dir)
            row["time/generate"] = time.perf_counter() - clock
        row["kl"] = _sample_kl(model, reference, tokenizer, batch_prompts, samples, config, pad_id)
        sel = ratings = None
        if judge_kind is not None and method != "step_dpo":
            clock = time.perf_counter()
            sel, ratings, row["time/judge"], row["time/fit"] = _judged(
                round_judge, batch_prompts, samples, online, seed=config.seed * 1_000_003 + rnd
            )
        train_clock = time.perf_counter()
        round_options = options
        if method == "cream":
            consistency = 1.0
            if previous is not None:
                prev_judge = CachedJudge(SelfJudge(previous, tokenizer), cache, budget=shared_budget)
                _, prev_ratings, *_ = _judged(prev_judge, batch_prompts, samples, online,
                                              seed=config.seed * 1_000_003 + rnd)  # fmt: skip
                consistency = pg.cream_consistency(ratings, prev_ratings)
                calls_before -= prev_judge.usage.calls
                hits_before -= prev_judge.usage.cache_hits
            row["consistency"] = consistency
            # C l(y+, y-) + (1 - C) l(y-, y+) is cDPO with eps = 1 - C; cDPO takes eps < 1, so below C = 1/2 the
            # pair is reversed and eps = C (the same objective); the pair metrics then read in the reversed order
            reverse = consistency < 0.5
            row["labels_reversed"] = float(reverse)
            round_options = set_for_all(options, "label_smoothing", consistency if reverse else 1.0 - consistency)
        if method in _SAMPLE_METHODS:
            row.update(om.train_samples_round(
                method, model, reference, tokenizer, batch_prompts, samples, ratings=ratings,
                decisions=sel.decisions, beta=beta, options=opts, optimizer=optimizer, params=params, config=config,
                epochs=online.epochs, rnd=rnd, pad_id=pad_id,
            ))  # fmt: skip
        elif method == "scir":
            row.update(om.train_scir_round(
                model, reference, tokenizer, batch_prompts, samples, beta=beta, options=opts, optimizer=optimizer,
                params=params, config=config, epochs=online.epochs, rnd=rnd, pad_id=pad_id,
            ))  # fmt: skip
        elif method == "hypo":
            row.update(om.train_hypo_round(
                model, reference, tokenizer, [rows[i] for i in pick], samples, terms=terms, options=options,
                beta=beta, kl_weight=opts["kl_weight"], optimizer=optimizer, params=params, config=config,
                epochs=online.epochs, rnd=rnd, pad_id=pad_id,
            ))  # fmt: skip
        else:
            if method == "spin":
                pair_rows, counts = _spin_pairs([rows[i] for i in pick], samples)
            elif method == "step_dpo":
                pair_rows, counts = tree_pairs, tree_counts
            else:
                pair_rows, counts = _round_pairs(batch_prompts, samples, ratings, online.pairs)
                if method == "cream" and row["labels_reversed"]:
                    pair_rows = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in pair_rows]
            row.update(pairs=len(pair_rows), **counts)
            if pair_rows:
                live = (reference, nullcontext)
                prepare = None
                if method == "spin" and opts["alpha"] > 0:
                    live, prepare = None, _mixture_reference(reference, initial, opts["alpha"], pad_id, config)
                step = pair_step(terms, round_options, beta, pad_id, config, live)
                row.update(_train_round(model, tokenizer, pair_rows, terms, step, optimizer, params, config, online,
                                        rnd, prepare))  # fmt: skip
            else:
                warnings.warn(f"round {rnd + 1}: no prompt gave a pair (all samples rated alike)", PairkitWarning,
                              stacklevel=2)  # fmt: skip
        row["time/train"] = time.perf_counter() - train_clock

        evaluating = (judged or round_judge) is not None and eval_prompts and online.eval_every
        evaluating = evaluating and (rnd + 1) % online.eval_every == 0
        # FSDP: every process takes part in the policy's evaluation samples and in gathering the checkpoint
        own = _eval_samples(model, tokenizer, eval_prompts, online, config.seed + 7) if evaluating and sharded else None
        self_now = snapshot() if evaluating and sharded and judge_kind == "self" else model
        states = _fsdp.checkpoint_states(model, optimizer) if sharded and out_dir is not None else None

        # the main process's judges counted the calls; it writes the checkpoint and the metrics row
        def judge_metrics(row=row, calls_before=calls_before, hits_before=hits_before, rnd=rnd, samples=samples,
                          round_judge=round_judge, last_start=last_start, own=own, states=states,
                          evaluating=evaluating, self_now=self_now):  # fmt: skip
            eval_judge = judged or round_judge
            if evaluating:
                if judge_kind == "self":  # the policy judging itself against its start: this round's weights
                    eval_judge = CachedJudge(SelfJudge(self_now, tokenizer), cache, budget=shared_budget)
                row["win_rate"] = win_rate(model, initial, tokenizer, eval_prompts, eval_judge, online=online,
                                           seed=config.seed + 7, policy_samples=own)  # fmt: skip
                if eval_judge is not round_judge and eval_judge is not judged:
                    calls_before -= eval_judge.usage.calls
            row.update(
                judge_calls=(round_judge.usage.calls if round_judge is not None else 0) - calls_before,
                judge_cache_hits=(round_judge.usage.cache_hits if round_judge is not None else 0) - hits_before,
                judge_cost=float(judged.usage.cost) if judged is not None else 0.0,
                sample_chars=float(np.mean([len(s) for ss in samples for s in ss])),
            )
            if out_dir is not None:
                _save_round(out_dir, model, optimizer, rnd + 1, history + [row], last_start, states)
                with open(metrics_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
            return row

        row = dist.on_main(judge_metrics)  # every process: the main one's row, once its checkpoint is written
        history.append(row)
        if callback is not None:
            callback(row)
    return history


_OWN_LOSS = {"cream": "its own consistency-smoothed DPO", "scir": "its own DPO and consistency loss"}


def check_method_loss(method: str, loss) -> None:
    """CREAM and SCIR train their own DPO objective: any ``loss`` but ``"dpo"`` is an InputError (checked by the
    CLI before the model is loaded)."""
    if method in _OWN_LOSS and parse_loss_spec(loss) != [("dpo", 1.0)]:
        raise InputError(f"method {method!r} trains {_OWN_LOSS[method]}; give loss='dpo', not {loss!r}")


def _frozen(model):
    copy_ = copy.deepcopy(model).eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def _hash_prompts(items) -> str:
    import hashlib

    return hashlib.blake2b(json.dumps(items, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _check_run(out_dir: Path, resume: bool, identity: dict[str, str]) -> None:
    """Record what a run started with; on resume, refuse other prompts/data, another model or method."""
    path = out_dir / "run.json"
    if resume and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        what = {"prompts": "prompts (or data)", "model": "starting model (its weights)", "method": "method"}
        for key, label in what.items():
            if key in saved and saved[key] != identity[key]:
                extra = f" ({saved[key]!r} then, {identity[key]!r} now)" if key == "method" else ""
                raise InputError(
                    f"cannot resume the run in {str(out_dir)!r}: its {label} differ from the ones it started "
                    f"with{extra}; give the same ones, or a new output directory"
                )
        return
    if not resume:
        _atomic_json(path, identity)


def _method_rows(method: str, data) -> list[dict[str, Any]]:
    """SPIN: rows of prompt and reference answer; HyPO: preference pairs (errors name the file and row)."""
    from pairkit.train._steps import normalised_rows
    from pairkit.train.data import to_pairs

    if method == "hypo":
        return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                for r in normalised_rows(data, to_pairs)[0]]  # fmt: skip

    def answers(rows, source):
        out = []
        for n, r in enumerate(rows, start=1):
            key = next((c for c in ("chosen", "completion", "response") if isinstance(r, dict) and c in r), None)
            if key is None or "prompt" not in r:
                raise InputError(f"{source}, row {n}: SPIN needs 'prompt' and a reference answer in 'chosen', "
                                 "'completion' or 'response'")  # fmt: skip
            answer = r[key]
            if isinstance(answer, list) and answer and isinstance(answer[-1], dict):
                answer = answer[-1].get("content")
            if not isinstance(answer, str) or not answer:
                raise InputError(f"{source}, row {n}, column {key!r}: the reference answer must be non-empty text")
            out.append({"prompt": r["prompt"], "chosen": answer})
        return out

    return normalised_rows(data, answers)[0]


def _spin_pairs(rows, samples) -> tuple[list[dict[str, Any]], dict[str, int]]:
    pairs, same = [], 0
    for r, ss in zip(rows, samples):
        if not ss[0] or ss[0] == r["chosen"]:
            same += 1
            continue
        pairs.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": ss[0]})
    return pairs, {"prompts_without_pair": same, "identical_or_empty_pairs": same}


def _mixture_reference(reference, initial, alpha: float, pad_id: int, config):
    """Fill each example's reference log-probs with the geometric mixture of the previous and initial policy."""
    from pairkit.train._steps import seq_logps

    def prepare(examples):
        with torch.no_grad():
            for ex in examples:
                prev = seq_logps(reference, ex["seqs"], pad_id, config.chunk_size)[0].double()
                first = seq_logps(initial, ex["seqs"], pad_id, config.chunk_size)[0].double()
                ex["ref"] = (prev + alpha * first) / (1 + alpha)

    return prepare


class _HistorySampler:
    """Each prompt's samples from one of ``iterates``: prompt ``i`` from ``iterates[choices[i]]`` (the opponent of
    fictitious play; the choices are drawn uniformly by the loop)."""

    def __init__(self, iterates, tokenizer, choices):
        from pairkit.train.sampling import HFSampler

        self.samplers = [HFSampler(m, tokenizer) for m in iterates]
        self.choices = np.asarray(choices)

    def sample(self, prompts, **kw):
        out = [None] * len(prompts)
        for u in np.unique(self.choices):
            idx = np.flatnonzero(self.choices == u)
            for i, ss in zip(idx, self.samplers[u].sample([prompts[i] for i in idx], **kw)):
                out[i] = ss
        return out

    def identity(self):
        return {"backend": "hf-history", "policies": [s.identity()["policy"] for s in self.samplers],
                "choices": self.choices.tolist()}


def _save_iterate(out_dir: Path, rnd: int, model) -> None:
    (out_dir / "iterates").mkdir(exist_ok=True)
    atomic_save(model.state_dict(), out_dir / "iterates" / f"round-{rnd + 1}.pt")


def _load_iterate(out_dir: Path | None, rnd: int, like):
    path = out_dir / "iterates" / f"round-{rnd + 1}.pt" if out_dir else None
    if path is None or not path.exists():
        raise InputError(f"cannot resume spin with history: the policy of round {rnd + 1} was not saved under "
                         f"{str(out_dir)!r}/iterates")  # fmt: skip
    model = _frozen(like)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


def _samples(sampler, prompts, online: OnlineConfig, seed: int, rnd: int, out_dir: Path | None, step=0):
    """The round's samples: read back when a killed run already drew them, else drawn and saved first.

    Data parallel, the main process reads and writes the sample cache; a sampler that seeds each prompt on its own
    (:func:`_shardable`) is run by every process on its share of the prompts, any other by the main process."""
    from pairkit.train._fsdp import is_sharded

    name = f"round-{rnd + 1}.json" if not step else f"round-{rnd + 1}-step-{step}.json"
    path = out_dir / "samples" / name if out_dir else None
    # FSDP: the sampler draws from the sharded policy, so every process samples, and hashes its gathered weights
    collective = rank_and_world()[1] > 1 and is_sharded(getattr(sampler, "model", None))
    identity = sampler.identity() if collective and path is not None else None

    def cached():
        key = {"prompts": [_prompt_str(p) for p in prompts], "k": online.k, "temperature": online.temperature,
               "top_p": online.top_p, "max_new_tokens": online.max_new_tokens, "seed": seed}  # fmt: skip
        if path is not None:  # samples of another policy (changed weights) or sampler are never reused
            key.update(identity if identity is not None else sampler.identity())
        if path is not None and path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("key") == key:
                return None, saved["samples"]
        return key, None

    key, samples = dist.on_main(cached)
    if samples is not None:
        return samples
    kw = dict(k=online.k, max_new_tokens=online.max_new_tokens, temperature=online.temperature, top_p=online.top_p,
              seed=seed * 1_000_003 + rnd + 7919 * step)  # fmt: skip
    if collective:
        samples = _sample_in_step(sampler, prompts, kw)
    elif rank_and_world()[1] > 1 and _shardable(sampler):
        mine = dist.share(range(len(prompts)))
        samples = dist.gathered(lambda: sampler.sample_range(prompts, mine.start, mine.stop, **kw))
    else:
        samples = dist.on_main(lambda: sampler.sample(prompts, **kw))
    if len(samples) != len(prompts) or any(len(ss) != online.k for ss in samples):
        raise InputError(f"the sampler returned {[len(ss) for ss in samples]} samples for {len(prompts)} prompts; "
                         f"expected {online.k} per prompt")  # fmt: skip
    if path is not None:
        dist.on_main(lambda: _atomic_json(path, {"key": key, "samples": samples}))
    return samples


def _sample_in_step(sampler, prompts, kw) -> list[list[str]]:
    """Samples from a policy sharded by FSDP: every process makes the same number of ``generate`` calls
    (synchronised by ``synced_gpus``, see :func:`sample_completions`). A per-prompt sampler draws each process's
    share, a process with a smaller share making one more call (its first prompt's, dropped); any other draws the
    whole round in every process (the same samples; the main process's are kept)."""
    if not _shardable(sampler):
        drawn = sampler.sample(prompts, **kw)
        return dist.on_main(lambda: drawn)
    mine = dist.share(range(len(prompts)))
    extra = -(-len(prompts) // rank_and_world()[1]) - len(mine)

    def draw():
        out = sampler.sample_range(prompts, mine.start, mine.stop, **kw)
        for _ in range(extra):
            sampler.sample_range(prompts, 0, 1, **kw)
        return out

    return dist.gathered(draw)


def _shardable(sampler) -> bool:
    """Whether each prompt's samples depend on that prompt alone (its seed too), so processes can share a round."""
    return bool(getattr(sampler, "per_prompt", False)) and callable(getattr(sampler, "sample_range", None))


def _judged(judge, prompts, samples, online: OnlineConfig, *, seed: int):
    """The main process judges and rates the samples; every process gets the decisions and the ratings (and the
    seconds judging and fitting took)."""

    def run():
        clock = time.perf_counter()
        sel = judge_samples(judge, prompts, samples, strategy=online.strategy, policy=online.position_policy,
                            seed=seed)  # fmt: skip
        judging = time.perf_counter() - clock
        ratings = rate_samples(sel, len(prompts), online.k, prior=online.prior)
        return sel.decisions, ratings, judging, time.perf_counter() - clock - judging

    decisions, ratings, judging, fitting = dist.on_main(run)
    return _Decisions(decisions), ratings, judging, fitting


@dataclasses.dataclass
class _Decisions:
    decisions: list


def _step_tree(sampler, prompts, judge, online: OnlineConfig, opts, seed: int, rnd: int, out_dir):
    """Step-level pairs from a tree the policy expands, one step (up to ``delimiter``) at a time.

    .. math::

        s_{i,1..k}^{(d)} \\sim \\pi(\\cdot \\mid x_i, s_i^{(<d)}),\\qquad
        (x_i s_i^{(<d)},\\ s^{(d)}_{i,\\arg\\max\\hat\\theta},\\ s^{(d)}_{i,\\arg\\min\\hat\\theta}),\\qquad
        s_i^{(d)} = s^{(d)}_{i,\\arg\\max\\hat\\theta}

    At each depth the ``k`` sibling steps of every open node are judged against each other (their context is the
    prompt and the steps so far), rated (Bradley–Terry), give a best-vs-worst step pair, and the best one is
    expanded next: a greedy (beam-width 1) tree search. A node closes when its best step has no delimiter (the
    answer ended) or is empty. Steps are cached per round and depth like the samples. Returns the pairs, counts
    and the first-depth steps.
    """
    delimiter, depth = opts["delimiter"], opts["depth"]
    bad = next((p for p in prompts if not isinstance(p, str)), None)
    if bad is not None:
        raise InputError(f"step_dpo extends text prompts step by step; got a {type(bad).__name__} prompt {bad!r}")
    prefixes = [""] * len(prompts)
    open_ = list(range(len(prompts)))
    rows, tied, identical, first = [], 0, 0, None
    for d in range(depth):
        if not open_:
            break
        contexts = [prompts[i] + prefixes[i] for i in open_]
        drawn = _samples(sampler, contexts, online, seed, rnd, out_dir, step=d + 1)
        steps = [[_cut(s, delimiter) for s in ss] for ss in drawn]
        if first is None:
            first = steps
        ratings = _judged(judge, contexts, steps, online, seed=seed * 1_000_003 + rnd + 7919 * (d + 1))[1]
        pairs, counts = _round_pairs(contexts, steps, ratings, "best_vs_worst")
        rows += pairs
        tied += counts["prompts_without_pair"]
        identical += counts["identical_or_empty_pairs"]
        still = []
        for n, i in enumerate(open_):
            best = steps[n][int(np.argmax(ratings[n]))]
            prefixes[i] += best
            if best and best.endswith(delimiter):
                still.append(i)
        open_ = still
    return rows, {"prompts_without_pair": tied, "identical_or_empty_pairs": identical}, first


def _cut(text: str, delimiter: str) -> str:
    """The first step of ``text``: up to and including the first ``delimiter`` (all of it when there is none)."""
    at = text.find(delimiter)
    return text if at < 0 else text[: at + len(delimiter)]


def _sample_kl(model, reference, tokenizer, prompts, samples, config, pad_id) -> float:
    """Monte Carlo KL of the policy from the reference on the round's own samples (drawn from the policy).

    .. math::

        \\widehat{\\mathrm{KL}}(\\pi\\,\\|\\,\\pi_{ref}) = \\frac{1}{nk}\\sum_{i,j}
        \\log\\pi(y_{ij}\\mid x_i) - \\log\\pi_{ref}(y_{ij}\\mid x_i), \\qquad y_{ij}\\sim\\pi(\\cdot\\mid x_i)

    Schulman (2020), "Approximating KL Divergence" (the unbiased k1 estimator; it can be negative on few samples).
    """
    from pairkit.train._fsdp import is_sharded, sharded_call
    from pairkit.train._steps import encode, seq_logps

    seqs = [(p, c) for prompt, ss in zip(prompts, samples) for p, c, _ in encode(tokenizer, prompt, ss, config)]
    share = dist.share(seqs)  # data parallel: each process its share, the sum over all
    sharded = is_sharded(model)
    gap = 0.0
    if share or sharded:  # FSDP: a process with no share runs the policy on one sequence too (not counted)
        run = share or seqs[:1]
        was = model.training
        model.eval()
        with torch.no_grad():
            if sharded:
                mine = sharded_call(model, lambda m: seq_logps(m, run, pad_id, config.chunk_size)[0])
            else:
                mine = seq_logps(model, run, pad_id, config.chunk_size)[0]
            ref = seq_logps(reference, run, pad_id, config.chunk_size)[0]
        model.train(was)
        gap = float((mine - ref).double().sum()) if share else 0.0
    return dist.total(gap)[0] / len(seqs)


def _train_round(model, tokenizer, rows, terms, step, optimizer, params, config, online, rnd: int, prepare=None):
    """``online.epochs`` passes over the round's pairs in batches of ``config.batch_size``; mean metrics."""
    from pairkit.train._fsdp import is_sharded
    from pairkit.train._online_methods import Sums, apply_update, minibatch_share, policy_pass
    from pairkit.train._steps import pair_examples

    examples = pair_examples(tokenizer, rows, config, terms)
    rng = np.random.default_rng([config.seed, rnd])
    perms = [rng.permutation(len(examples)) for _ in range(online.epochs)]
    batches = [[perm[s : s + config.batch_size] for s in range(0, len(examples), config.batch_size)] for perm in perms]
    # data parallel: each minibatch is split between the processes (dist.share), the gradients summed. FSDP: every
    # process runs the step (its passes gather the sharded weights); one holding no example of the minibatch runs
    # the minibatch's first with weight 0
    sharded = is_sharded(model)
    coupled = coupled_losses([name for name, *_ in terms or ()])  # computed on the gathered minibatch (loss_values)
    runs = [[minibatch_share(b, sharded, coupled) for b in epoch] for epoch in batches]
    if prepare is not None:
        prepare([examples[j] for j in sorted({int(j) for epoch in runs for idx, _ in epoch for j in idx})])
    model.train(config.dropout)
    sums = Sums()
    for epoch in runs:
        for n, (idx, weight) in enumerate(epoch):
            whole = min(config.batch_size, len(examples) - n * config.batch_size)
            if not len(idx):
                apply_update(None, optimizer, params, config, rnd)
                continue
            chunk = [examples[j] for j in idx]
            losses, stats = policy_pass(model, step, chunk)
            apply_update(losses.float().sum() * weight / whole, optimizer, params, config, rnd, sharded=sharded)
            if weight:
                sums.add(len(idx), loss=losses, **stats)
    return sums.mean()


def _save_round(out_dir: Path, model, optimizer, rnd: int, history, previous=None, states=None) -> None:
    """The round's checkpoint; ``states``: the whole model and optimizer states of a model sharded by FSDP (as
    :func:`pairkit.train._fsdp.checkpoint_states` gathered them), else the model's and optimizer's own."""
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model_state, optimizer_state = states if states is not None else (model.state_dict(), optimizer.state_dict())
    state = {
        "model": model_state,
        "optimizer": optimizer_state,
        "fsdp": states is not None,
        "step": rnd,
        "history": history,
        "previous": previous.state_dict() if previous is not None else None,
    }
    atomic_save(state, ckpt_dir / f"step-{rnd}.pt")
    for old in ckpt_dir.glob("step-*.pt"):  # the loop resumes from the last round only
        if old.name != f"step-{rnd}.pt":
            old.unlink()


def win_rate(model, initial, tokenizer, prompts, judge, *, online: OnlineConfig, seed: int = 0,
             policy_samples=None) -> float:
    """The judge's win rate of ``model`` against ``initial``: one sample each per prompt, both orders shown.

    .. math::

        \\mathrm{WR} = \\frac{1}{n}\\sum_i \\tfrac12\\big(s(y_i, y^0_i) + 1 - s(y^0_i, y_i)\\big)

    where :math:`s(u, v)` is the judge's expected score of the answer shown first. Ties count one half.
    ``policy_samples``: ``model``'s samples when already drawn (:func:`_eval_samples`; under FSDP by every process).
    """
    from pairkit.select import Pool, select

    mine = policy_samples if policy_samples is not None else _eval_samples(model, tokenizer, prompts, online, seed)
    base = _eval_samples(initial, tokenizer, prompts, online, seed)
    texts = tuple((m[0], b[0]) for m, b in zip(mine, base))
    pool = Pool(("policy", "initial"), tuple(map(str, range(len(prompts)))),
                tuple(_prompt_str(p) for p in prompts), texts)  # fmt: skip
    sel = select("round_robin", judge, pool, policy="both_average", seed=seed)
    scores = [s if a == 0 else 1.0 - s for _, a, _, s, _ in sel.decisions]
    return float(np.mean(scores)) if scores else 0.5


def _eval_samples(model, tokenizer, prompts, online: OnlineConfig, seed: int) -> list[list[str]]:
    """One sample per prompt for :func:`win_rate` (seeded; the same for the policy and its start)."""
    return sample_completions(model, tokenizer, prompts, k=1, max_new_tokens=online.max_new_tokens,
                              temperature=online.temperature, top_p=online.top_p, seed=seed)  # fmt: skip


def _gathered_copy(model, like):
    """A frozen full copy of a model sharded by FSDP: ``like`` (an unsharded frozen model of the same
    architecture) copied, with the gathered weights (a collective: every process must call it)."""
    from pairkit.train._fsdp import full_state_dict

    state = full_state_dict(model)
    out = copy.deepcopy(like)
    out.load_state_dict(state)
    return out
