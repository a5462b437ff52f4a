"""Judges from language-model likelihoods: strong-over-weak density ratios (CDR) and follow-up likelihood (FLR).

Both score each answer on its own (the order shown cannot matter) and compare the scores with a logistic link,

.. math::

    p_a = \\sigma\\big((r(x, y_a) - r(x, y_b)) / \\tau\\big),

with, for :class:`DensityRatioJudge` (Xu et al. 2024, "CDR: customizable density ratios of strong-over-weak LLMs
for preference annotation"),

.. math::

    r(x, y) = \\log \\pi_{\\text{strong}}(y \\mid s, x) - \\log \\pi_{\\text{weak}}(y \\mid x)

(``s``: an optional system prompt for the strong model — the "customizable" rubric) and, for
:class:`FollowUpJudge` (Zhang et al. 2024, "Aligning language models using follow-up likelihood as reward
signal"),

.. math::

    r(x, y) = \\overline{\\log \\pi(f \\mid x, y)}_{f \\in F^+} - \\overline{\\log \\pi(f \\mid x, y)}_{f \\in F^-}

the likelihood that the user follows up positively ("Thank you, that is exactly what I needed") rather than
negatively ("That is not what I asked for"), and, for :class:`RewardModelJudge`, the scalar output of a trained
reward model (the Bradley–Terry link of the reward trainer with :math:`\\tau = 1`). Log-likelihoods are summed
over the continuation's tokens, scored in left-padded batches that compute only the continuation positions'
logits; an answer's score is computed once per process (memoised by prompt and answer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from pairkit._optional import requires
from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, MicroBatched, Request

__all__ = ["DensityRatioJudge", "FollowUpJudge", "continuation_log_likelihoods"]

POSITIVE = (
    "Thank you, that is exactly what I needed.",
    "Great answer, thanks!",
    "Perfect, that solves my problem.",
)
NEGATIVE = (
    "That is not what I asked for.",
    "This answer is wrong.",
    "That does not help me at all.",
)


def continuation_log_likelihoods(
    model, tokenizer, prefixes: Sequence[str], continuations: Sequence[str], *, batch_size: int = 8, device="cpu"
) -> np.ndarray:
    """(N,) summed log-probabilities of each continuation's tokens after its prefix (token ids concatenated;
    ``model`` in eval mode).

    Sequences are left-padded so that every continuation ends at the last position; only the last
    ``max continuation length + 1`` logits of a batch are computed.

    Example:

        >>> from pairkit.judges import continuation_log_likelihoods
        >>> from pairkit.testing import tiny_causal_lm
        >>> model, tokenizer = tiny_causal_lm()
        >>> lls = continuation_log_likelihoods(model, tokenizer, ["Q: hi\\nA: "] * 2, ["hello", "hello there"])
        >>> lls.shape, bool(lls[1] < lls[0])  # a longer continuation has more tokens to pay for
        ((2,), True)
    """
    with requires("train", "the likelihood judges"):
        import torch

    if len(prefixes) != len(continuations):
        raise InputError(f"{len(prefixes)} prefixes but {len(continuations)} continuations")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    out = []
    with torch.no_grad():
        for start in range(0, len(prefixes), batch_size):
            pre = [tokenizer.encode(p, add_special_tokens=False) for p in prefixes[start : start + batch_size]]
            con = [tokenizer.encode(c, add_special_tokens=False) for c in continuations[start : start + batch_size]]
            if any(not c for c in con):
                raise InputError("a continuation encodes to no tokens; nothing to score")
            seqs = [p + c for p, c in zip(pre, con)]
            width, cmax = max(map(len, seqs)), max(map(len, con))
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for k, seq in enumerate(seqs):
                ids[k, width - len(seq) :] = torch.tensor(seq)
                mask[k, width - len(seq) :] = 1
            keep = min(cmax + 1, width)
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
                logits_to_keep=keep,
            ).logits[:, -keep:]
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token_lp = logp.gather(-1, ids[:, width - keep + 1 :].to(device)[..., None])[..., 0].cpu()
            lengths = torch.tensor([len(c) for c in con])
            valid = torch.arange(keep - 1)[None, :] >= (keep - 1 - lengths)[:, None]
            out.append((token_lp * valid).sum(-1).numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def _load(model, tokenizer, what: str):
    if isinstance(model, str):
        with requires("train", "the likelihood judges"):
            from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True)
    if tokenizer is None:
        raise InputError(f"{what} needs the model's tokenizer when given a model object")
    return model, tokenizer


def _chat(tokenizer, messages: list[dict], generation: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + ("assistant: " if generation else "")


class _ScoreJudge(MicroBatched, ComparatorBase):
    """Pairwise judgments from per-answer scores ``r(x, y)`` (memoised), compared with a logistic link."""

    def __init__(self, *, temperature: float, batch_size: int, device: str, judge_id: str) -> None:
        ComparatorBase.__init__(self)
        self.temperature, self.batch_size, self.device, self.judge_id = temperature, batch_size, device, judge_id
        self._memo: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def scores(self, contexts: Sequence[str], answers: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _judgments(self, requests: Sequence[Request]) -> list[Judgment]:
        from scipy import special

        with self._lock:
            todo = list(
                dict.fromkeys((r.context, t) for r in requests for t in (r.a, r.b) if (r.context, t) not in self._memo)
            )
            if todo:
                self._memo.update(zip(todo, self.scores([c for c, _ in todo], [t for _, t in todo]).tolist()))
        out = []
        for r in requests:
            ra, rb = self._memo[(r.context, r.a)], self._memo[(r.context, r.b)]
            p = float(special.expit((ra - rb) / self.temperature))
            out.append(Judgment(p_a=p, order=r.order, raw=f"r(a)={ra:.4f} r(b)={rb:.4f}", judge=self.judge_id))
        return out

    async def _batch(self, requests: list[Request]) -> list[Judgment]:
        return await asyncio.to_thread(self._judgments, requests)


_OPTIONS = (
    Option("temperature", float, Interval(0, None, closed="neither"), doc="τ of the logistic link"),
    Option("batch_size", int, Interval(1, None), doc="sequences per forward pass"),
)


class DensityRatioJudge(_ScoreJudge):
    """CDR: the answer whose likelihood rises more from a weak to a strong model is better (see the module).

    Args:
        strong, weak: causal LMs (objects, or local paths) sharing ``tokenizer``.
        strong_system: a system prompt for the strong model only (the rubric that customises the ratio).
        temperature: τ of the logistic link on the score difference.

    Example:

        >>> from pairkit.judges import DensityRatioJudge
        >>> from pairkit.testing import tiny_causal_lm
        >>> strong, tokenizer = tiny_causal_lm(seed=0)
        >>> weak, _ = tiny_causal_lm(seed=1)
        >>> 0 < DensityRatioJudge(strong, weak, tokenizer).judge("Capital of France?", "Paris.", "Lyon.").p_a < 1
        True
    """

    prompt_version = "cdr-v1"

    @declare_options(*_OPTIONS)
    def __init__(
        self,
        strong,
        weak,
        tokenizer=None,
        *,
        strong_system: str | None = None,
        temperature: float = 1.0,
        batch_size: int = 8,
        device: str = "cpu",
        judge_id: str | None = None,
    ) -> None:
        strong, tokenizer = _load(strong, tokenizer, "DensityRatioJudge")
        weak, _ = _load(weak, tokenizer, "DensityRatioJudge")
        names = [getattr(getattr(m, "config", None), "_name_or_path", "model") for m in (strong, weak)]
        super().__init__(temperature=temperature, batch_size=batch_size, device=device,
                         judge_id=judge_id or f"cdr:{names[0]}/{names[1]}")  # fmt: skip
        self.strong, self.weak = strong.to(device).eval(), weak.to(device).eval()
        self.tokenizer, self.strong_system = tokenizer, strong_system

    def cache_identity(self) -> dict:
        """The strong model's system prompt and the temperature (the models are in ``judge_id``)."""
        return {"strong_system": self.strong_system, "temperature": self.temperature}

    def scores(self, contexts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """(N,) log-density ratios r(x, y) = log π_strong(y | s, x) − log π_weak(y | x)."""
        system = [{"role": "system", "content": self.strong_system}] if self.strong_system else []
        strong_prefix = [_chat(self.tokenizer, [*system, {"role": "user", "content": c}], True) for c in contexts]
        weak_prefix = [_chat(self.tokenizer, [{"role": "user", "content": c}], True) for c in contexts]
        options = {"batch_size": self.batch_size, "device": self.device}
        s = continuation_log_likelihoods(self.strong, self.tokenizer, strong_prefix, answers, **options)
        w = continuation_log_likelihoods(self.weak, self.tokenizer, weak_prefix, answers, **options)
        return s - w


class FollowUpJudge(_ScoreJudge):
    """FLR: the answer after which the user more likely follows up positively than negatively is better.

    Args:
        model: a causal LM (object or local path) with ``tokenizer``.
        positive, negative: the follow-up utterances averaged on each side.
        temperature: τ of the logistic link on the score difference.

    Example:

        >>> from pairkit.judges import FollowUpJudge
        >>> from pairkit.testing import tiny_causal_lm
        >>> model, tokenizer = tiny_causal_lm()
        >>> judge = FollowUpJudge(model, tokenizer, positive=["Thanks!"], negative=["That is wrong."])
        >>> 0 < judge.judge("Capital of France?", "Paris.", "Lyon.").p_a < 1
        True
    """

    prompt_version = "flr-v1"

    @declare_options(*_OPTIONS)
    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        positive: Sequence[str] = POSITIVE,
        negative: Sequence[str] = NEGATIVE,
        temperature: float = 1.0,
        batch_size: int = 8,
        device: str = "cpu",
        judge_id: str | None = None,
    ) -> None:
        model, tokenizer = _load(model, tokenizer, "FollowUpJudge")
        name = getattr(getattr(model, "config", None), "_name_or_path", "model")
        super().__init__(
            temperature=temperature, batch_size=batch_size, device=device, judge_id=judge_id or f"flr:{name}"
        )
        for side, texts in (("positive", positive), ("negative", negative)):
            if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t for t in texts):
                raise InputError(f"{side} must be a non-empty list of follow-up utterances, got {texts!r}")
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.positive, self.negative = tuple(positive), tuple(negative)

    def cache_identity(self) -> dict:
        """The follow-ups and the temperature (the model is in ``judge_id``)."""
        return {"positive": list(self.positive), "negative": list(self.negative), "temperature": self.temperature}

    def scores(self, contexts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """(N,) follow-up likelihood rewards: mean log π(f⁺ | x, y) − mean log π(f⁻ | x, y)."""
        follow = [*self.positive, *self.negative]
        prefixes, conts = [], []
        for c, a in zip(contexts, answers):
            base = _chat(self.tokenizer, [{"role": "user", "content": c}, {"role": "assistant", "content": a}], False)
            for f in follow:
                full = _chat(self.tokenizer, [{"role": "user", "content": c}, {"role": "assistant", "content": a},
                                              {"role": "user", "content": f}], False)  # fmt: skip
                if not full.startswith(base):  # a chat template that rewrites earlier turns: plain text instead
                    base, full = f"user: {c}\nassistant: {a}\n", f"user: {c}\nassistant: {a}\nuser: {f}\n"
                prefixes.append(base)
                conts.append(full[len(base) :])
        ll = continuation_log_likelihoods(
            self.model, self.tokenizer, prefixes, conts, batch_size=self.batch_size, device=self.device
        ).reshape(len(answers), len(follow))
        n = len(self.positive)
        return ll[:, :n].mean(axis=1) - ll[:, n:].mean(axis=1)


class RewardModelJudge(_ScoreJudge):
    """A trained reward model as a comparator: :math:`p_a = \\sigma((r(x, y_a) - r(x, y_b)) / \\tau)`.

    ``model`` is a one-output sequence-classification model (an object, or a local directory as
    ``pairkit train reward`` saves it); each answer is encoded as the reward trainer encodes it (prompt cut
    first, completion ending with EOS, at most ``max_length`` tokens), so the judge's :math:`r` is the trained
    reward exactly. With ``τ = 1`` the probability is the Bradley–Terry probability the model was trained on.

    ``model`` may instead be a :class:`~pairkit.train.CLoudRewardModel` (Ankner et al. 2024, "Critique-out-Loud
    Reward Models"): it writes ``critiques`` critiques per answer and averages their rewards (seeded by
    ``seed``).

    Example:

        >>> import transformers
        >>> from pairkit.judges import RewardModelJudge
        >>> from pairkit.testing import tiny_causal_lm
        >>> lm, tokenizer = tiny_causal_lm()  # in earnest: RewardModelJudge("runs/rm/final")
        >>> config = transformers.GPT2Config(**{**lm.config.to_dict(), "num_labels": 1})
        >>> rm = transformers.GPT2ForSequenceClassification(config)
        >>> judgment = RewardModelJudge(rm, tokenizer).judge("Capital of France?", "Paris.", "Lyon.")
        >>> bool(0 < judgment.p_a < 1)
        True
    """

    prompt_version = "reward-v1"

    @declare_options(
        *_OPTIONS,
        Option("max_length", int, Interval(2, None), doc="tokens per prompt + answer; the prompt is cut first"),
        Option("critiques", int, Interval(1, None), doc="critiques averaged per answer (CLoud models)"),
    )
    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        temperature: float = 1.0,
        max_length: int = 512,
        critiques: int = 1,
        seed: int = 0,
        batch_size: int = 8,
        device: str = "cpu",
        judge_id: str | None = None,
    ) -> None:
        if isinstance(model, str):
            with requires("train", "the reward-model judge"):
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(model, local_files_only=True, num_labels=1)
        self.cloud = hasattr(model, "critique") and hasattr(model, "rewards")  # a CLoudRewardModel
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise InputError("RewardModelJudge needs the model's tokenizer when given a model object")
        if not self.cloud:
            labels = getattr(getattr(model, "config", None), "num_labels", 1)
            if labels != 1:
                raise InputError(f"RewardModelJudge needs a one-output reward model; this one has {labels} labels")
        name = getattr(getattr(getattr(model, "lm", model), "config", None), "_name_or_path", "model")
        super().__init__(temperature=temperature, batch_size=batch_size, device=device,
                         judge_id=judge_id or f"reward:{name}")  # fmt: skip
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.max_length, self.critiques, self.seed = max_length, critiques, seed

    def cache_identity(self) -> dict:
        """Temperature, length budget and (CLoud) critiques per answer; the model is in ``judge_id``."""
        return {"temperature": self.temperature, "max_length": self.max_length,
                **({"critiques": self.critiques, "seed": self.seed} if self.cloud else {})}  # fmt: skip

    def scores(self, contexts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """(N,) rewards r(x, y) (CLoud: averaged over the critiques)."""
        with requires("train", "the reward-model judge"):
            import torch

        if self.cloud:
            rewards, _ = self.model.score(list(contexts), list(answers), k=self.critiques, seed=self.seed)
            return rewards.double().cpu().numpy()
        from pairkit.train.data import collate_sequences, encode_completion

        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        out = []
        with torch.no_grad():
            for start in range(0, len(answers), self.batch_size):
                seqs = [encode_completion(self.tokenizer, c, a, max_length=self.max_length)
                        for c, a in zip(contexts[start : start + self.batch_size],
                                        answers[start : start + self.batch_size])]  # fmt: skip
                batch = collate_sequences(seqs, pad)
                logits = self.model(input_ids=batch["input_ids"].to(self.device),
                                    attention_mask=batch["attention_mask"].to(self.device)).logits  # fmt: skip
                out.append(logits.reshape(len(seqs)).double().cpu().numpy())
        return np.concatenate(out)
