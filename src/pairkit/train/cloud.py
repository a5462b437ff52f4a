"""Critique-out-Loud (CLoud) reward models: the model writes a critique of the response, then scores it.

Ankner, Paul, Cui, Chang & Ammanabrolu (2024), "Critique-out-Loud Reward Models" (arXiv 2408.11791). A causal LM
keeps its LM head (to write critiques) and gets a reward head on the final hidden state of the last token of
``prompt + response + critique``. Training has three stages: (1) SFT of the LM on oracle critiques, (2) the
fine-tuned model rewrites the critiques of the training responses itself (on-policy), (3) the reward head is
trained with Bradley–Terry on the self-written critiques jointly with the LM loss on them (weight λ).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pairkit.errors import InputError
from pairkit.train._chat import prompt_text
from pairkit.train._inputs import hidden_states_and_head
from pairkit.train._loop import TrainConfig, TrainResult, call_loss, check_number, fit
from pairkit.train._steps import normalised_rows, pad_id_of
from pairkit.train.data import collate_sequences, encode_completion, to_pairs
from pairkit.train.logprobs import token_logps_from_hidden
from pairkit.train.sampling import HFSampler

__all__ = ["CLOUD_TEMPLATE", "CLoudRewardModel", "CLoudResult", "train_cloud_reward_model"]

CLOUD_TEMPLATE = "User: {prompt}\nAssistant: {response}\nCritique of the assistant's answer: "


class CLoudRewardModel(torch.nn.Module):
    r"""A causal LM with its LM head (critiques) and a reward head (scores), as in CLoud.

    .. math::
        r(x, y, c) = w_2^\top \tanh(W_1 h_T + b_1) + b_2

    with :math:`h_T` the decoder's final hidden state at the last token of ``template(x, y) + c + EOS`` (the
    reward head of the authors' code: dense, tanh, projection; its dropout is left out). ``lm``: a transformers
    causal LM; ``tokenizer``: its tokenizer; ``template``: the text before the critique, with ``{prompt}`` and
    ``{response}`` (chat prompts are flattened with Human/Assistant tags). The head starts seeded (``seed``).

    :meth:`score` writes ``k`` critiques per response with :class:`~pairkit.train.HFSampler` and averages the
    rewards over them (self-consistency; ``k=1``: one critique). Critiques are sampled (temperature
    ``temperature``), not greedy: the paper's default decoding is greedy, the sampler here always samples.
    """

    def __init__(self, lm, tokenizer, *, template: str = CLOUD_TEMPLATE, seed: int = 0):
        super().__init__()
        if "{prompt}" not in template or "{response}" not in template:
            raise InputError("template must contain {prompt} and {response}")
        self.lm, self.tokenizer, self.template = lm, tokenizer, template
        hidden = lm.get_output_embeddings().weight.shape[1]
        dtype = lm.get_output_embeddings().weight.dtype
        g = torch.Generator().manual_seed(seed)
        self.head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        with torch.no_grad():
            for p in self.head.parameters():  # seeded, without touching the global generator
                bound = 1 / (p.shape[-1] if p.ndim == 2 else hidden) ** 0.5
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=g))
        self.head.to(dtype)

    def prefix(self, prompt, response: str) -> str:
        """The text the critique follows: the template filled with the prompt and the response."""
        return self.template.format(prompt=prompt_text(prompt), response=response)

    def encode(self, prompts: Sequence[Any], responses: Sequence[str], critiques: Sequence[str],
               config: TrainConfig | None = None) -> list[tuple[list[int], list[int]]]:  # fmt: skip
        """(prefix ids, critique ids ending with EOS) per example, truncated as the trainers do."""
        config = config or TrainConfig()
        if not len(prompts) == len(responses) == len(critiques):
            raise InputError(f"{len(prompts)} prompts, {len(responses)} responses, {len(critiques)} critiques")
        return [encode_completion(self.tokenizer, self.prefix(p, r), c, max_length=config.max_length,
                                  max_prompt_length=config.max_prompt_length,
                                  max_completion_length=config.max_completion_length)
                for p, r, c in zip(prompts, responses, critiques)]  # fmt: skip

    def forward(self, seqs: Sequence[tuple[list[int], list[int]]], *, chunk_size: int = 1024):
        """Rewards ``[n]``, per-token critique log-probabilities ``[n, T]`` and the critique mask ``[n, T]``."""
        batch = collate_sequences(seqs, pad_id_of(self.tokenizer))
        hidden, weight, bias = hidden_states_and_head(self.lm, batch["input_ids"], batch["attention_mask"])
        last = batch["attention_mask"].sum(1) - 1
        rewards = self.head(hidden[torch.arange(len(seqs)), last])[:, 0]
        mask = batch["completion_mask"]
        logps = token_logps_from_hidden(hidden, weight, batch["input_ids"], bias=bias, mask=mask,
                                        chunk_size=chunk_size)  # fmt: skip
        return rewards, logps, mask

    def rewards(self, prompts: Sequence[Any], responses: Sequence[str], critiques: Sequence[str]) -> torch.Tensor:
        """``[n]`` rewards of responses given their critiques (no critique is written; no gradient)."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(self.encode(prompts, responses, critiques))[0]
        finally:
            self.train(was)

    def critique(self, prompts: Sequence[Any], responses: Sequence[str], *, k: int = 1, max_new_tokens: int = 128,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> list[list[str]]:  # fmt: skip
        """``k`` critiques per response written by the LM head (:class:`~pairkit.train.HFSampler`, seeded)."""
        check_number("k", k, low=1, integer=True)
        texts = [self.prefix(p, r) for p, r in zip(prompts, responses, strict=True)]
        return HFSampler(self.lm, self.tokenizer).sample(texts, k=k, max_new_tokens=max_new_tokens,
                                                         temperature=temperature, top_p=top_p, seed=seed)  # fmt: skip

    def score(self, prompts: Sequence[Any], responses: Sequence[str], *, k: int = 1, max_new_tokens: int = 128,
              temperature: float = 1.0, top_p: float = 1.0,
              seed: int = 0) -> tuple[torch.Tensor, list[list[str]]]:  # fmt: skip
        r"""Critique, then score: ``(rewards [n], critiques [n][k])`` with the reward averaged over ``k`` critiques.

        .. math::
            \bar r(x, y) = \frac1k \sum_{j=1}^k r(x, y, c_j),\qquad c_j \sim \pi_{LM}(\cdot \mid x, y)
        """
        critiques = self.critique(prompts, responses, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_p=top_p, seed=seed)  # fmt: skip
        flat = self.rewards([p for p in prompts for _ in range(k)], [r for r in responses for _ in range(k)],
                            [c for cs in critiques for c in cs])  # fmt: skip
        return flat.reshape(len(prompts), k).mean(1), critiques


@dataclasses.dataclass
class CLoudResult:
    """What :func:`train_cloud_reward_model` returns.

    ``model``: the trained :class:`CLoudRewardModel`; ``sft``: stage 1's ``TrainResult``
    (critique SFT); ``reward``: stage 3's (reward head with the LM loss); ``critiques``: per training pair the
    self-written ``chosen_critique`` and ``rejected_critique`` of stage 2.
    """

    model: CLoudRewardModel
    sft: TrainResult
    reward: TrainResult
    critiques: list[dict[str, str]]


def _critique_nll(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean negative log-likelihood of each row's critique tokens ``[n]``."""
    m = mask.to(logps.dtype)
    return -(logps * m).sum(-1) / m.sum(-1).clamp_min(1)


def train_cloud_reward_model(
    model,
    tokenizer,
    data,
    *,
    lm_weight: float = 1.25,
    sft_config: TrainConfig | None = None,
    config: TrainConfig | None = None,
    template: str = CLOUD_TEMPLATE,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> CLoudResult:
    r"""Train a CLoud reward model in the paper's three stages (Ankner et al. 2024, §3).

    1. **Critique SFT** (``sft_config``): the LM learns to write the oracle critiques,
       :math:`\mathcal L_{SFT} = -\frac{1}{|c^*|}\sum_t \log \pi(c^*_t \mid x, y, c^*_{<t})` per critique.
    2. **On-policy critiques**: the fine-tuned LM rewrites the critique of every chosen and rejected response
       (one sampled critique each, :class:`~pairkit.train.HFSampler`, seed ``seed``).
    3. **Reward training** (``config``): Bradley–Terry on the self-written critiques jointly with the LM loss on
       them,

       .. math::
           \mathcal L = -\log\sigma\big(r(x, y_c, \hat c_c) - r(x, y_r, \hat c_r)\big)
           + \lambda\,\frac{-\sum_{t} \log\pi(\hat c_{c,t}) - \sum_t \log\pi(\hat c_{r,t})}{|\hat c_c| + |\hat c_r|}

       (λ = ``lm_weight``, 1.25 in the authors' 8B configuration). Reading taken: the LM term is the token mean
       over the pair's two critiques, then averaged over pairs by the training loop; the authors' code averages
       over every critique token of the batch (the same when the critiques have equal lengths).

    ``model``: a transformers causal LM (wrapped in a :class:`CLoudRewardModel` with ``template`` and the head
    seeded by ``seed``) or a :class:`CLoudRewardModel`. ``data``: pairs (any :func:`~pairkit.train.to_pairs`
    format) with ``chosen_critique`` and ``rejected_critique`` columns holding the oracle critiques (written
    by a stronger model). Each stage follows its ``TrainConfig`` (checkpoints and
    ``metrics.jsonl`` under its ``output_dir``). Stage 3's history has ``loss``, ``bt``, ``lm`` and ``accuracy``
    (chosen scored above rejected).

    Returns :class:`CLoudResult`.
    """
    check_number("lm_weight", lm_weight, low=0)
    sft_config, config = sft_config or TrainConfig(), config or TrainConfig()
    cloud = model if isinstance(model, CLoudRewardModel) else CLoudRewardModel(model, tokenizer, template=template,
                                                                                seed=seed)  # fmt: skip
    pairs, raw, source = normalised_rows(data, to_pairs)
    if len(raw) != len(pairs):
        raise InputError(f"{source}: CLoud takes one pair per row (got {len(pairs)} pairs from {len(raw)} rows)")
    for i, r in enumerate(raw, start=1):
        for key in ("chosen_critique", "rejected_critique"):
            if not isinstance(r.get(key), str):
                raise InputError(f"{source}, row {i}: needs the oracle critique {key!r} (a text)")
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]

    # stage 1: SFT of the LM head on the oracle critiques (one example per critique)
    oracle = [r["chosen_critique"] for r in raw] + [r["rejected_critique"] for r in raw]
    sft_seqs = cloud.encode(prompts + prompts, chosen + rejected, oracle, sft_config)

    def sft_step(lm, rows):
        _, logps, mask = cloud(rows, chunk_size=sft_config.chunk_size)
        nll = _critique_nll(logps, mask)
        return nll, {"lm": nll.detach()}

    sft = fit(cloud.lm, sft_seqs, sft_step, sft_config, callback=callback)

    # stage 2: the fine-tuned model rewrites every critique
    written = cloud.critique(prompts + prompts, chosen + rejected, k=1, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, seed=seed)  # fmt: skip
    n = len(pairs)
    critiques = [{"chosen_critique": written[i][0], "rejected_critique": written[n + i][0]} for i in range(n)]

    # stage 3: Bradley–Terry on (prompt, response, own critique) + λ · LM loss on the own critiques
    seqs = cloud.encode(prompts + prompts, chosen + rejected,
                        [c["chosen_critique"] for c in critiques] + [c["rejected_critique"] for c in critiques],
                        config)  # fmt: skip
    examples = [(seqs[i], seqs[n + i]) for i in range(n)]

    def reward_step(m, rows):
        flat = [a for a, _ in rows] + [b for _, b in rows]
        rewards, logps, mask = m(flat, chunk_size=config.chunk_size)
        b = len(rows)
        bt = call_loss("reward_bradley_terry", {"chosen_rewards": rewards[:b], "rejected_rewards": rewards[b:]}, {})
        m_ = mask.to(logps.dtype)
        tok = (logps * m_).sum(-1)
        count = m_.sum(-1)
        lm = -(tok[:b] + tok[b:]) / (count[:b] + count[b:]).clamp_min(1)
        loss = bt + lm_weight * lm
        acc = (rewards[:b] > rewards[b:]).double()
        return loss, {"bt": bt.detach(), "lm": lm.detach(), "accuracy": acc}

    reward = fit(cloud, examples, reward_step, config, callback=callback, losses=["reward_bradley_terry"])
    return CLoudResult(model=cloud, sft=sft, reward=reward, critiques=critiques)
