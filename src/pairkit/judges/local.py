"""A local Hugging Face causal LM as a pairwise judge: verdict probabilities from the model's likelihoods.

The judge prompt (see :mod:`pairkit.judges.prompts`) ends with the opening of the verdict, ``[[``. Every verdict
the template asks for is scored whole by teacher forcing: the log-likelihood of its tokens (``A>>B]]``,
``A>B]]``, ``A=B]]``, ``B>A]]``, ``B>>A]]`` for the default five-level template; ``A]]``, ``B]]``, ``C]]`` for
MT-Bench's), renormalised over the verdicts,

.. math::

    P(v \\mid x) \\propto \\exp \\sum_t \\log p(v_t \\mid x, v_{<t}),

and the distribution is scored on a :class:`~pairkit.judges.prompts.VerdictScale` — the logit-based reading of a
generative judge as in Zheng et al. (2023) and PRP (Qin et al. 2024, "Large language models are effective text
rankers with pairwise ranking prompting"), extended to multi-token verdicts, without sampling. Prompts are scored
in left-padded batches, and only the logits of the verdict positions are computed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from pairkit._optional import requires
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, MicroBatched, Request
from pairkit.judges.prompts import GRADED, TEMPLATES, PromptTemplate, VerdictScale, verdict_scale

__all__ = ["HFJudge"]

VERDICT_OPENING = "\nFinal verdict: [["


class HFJudge(MicroBatched, ComparatorBase):
    """Judge with a ``transformers`` causal LM (a path/name to load, or a model object with its tokenizer).

    Args:
        model: a causal LM or a local path for ``AutoModelForCausalLM.from_pretrained``.
        tokenizer: its tokenizer (loaded from ``model`` when it is a path).
        template: a :data:`~pairkit.judges.prompts.TEMPLATES` name or a :class:`PromptTemplate` (default: the
            five-level ``"pairwise_graded"``; ``"pairwise"`` reads ``[[A]]``/``[[B]]``/``[[C]]``).
        verdicts: how the verdicts score and weigh (a :data:`~pairkit.judges.prompts.VERDICT_SCALES` name).
        batch_size: prompts per forward pass in :meth:`ajudge_many`.

    Example:

        >>> from pairkit.judges import HFJudge
        >>> from pairkit.testing import tiny_causal_lm
        >>> model, tokenizer = tiny_causal_lm()  # random weights: in earnest, from_pretrained(...)
        >>> judgment = HFJudge(model, tokenizer).judge("Capital of France?", "Paris.", "Lyon.")
        >>> bool(0 < judgment.p_a < 1), bool(0 < judgment.p_tie < 1)
        (True, True)
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        template: str | PromptTemplate = "pairwise_graded",
        verdicts: str | VerdictScale = "graded",
        batch_size: int = 8,
        device: str = "cpu",
        judge_id: str | None = None,
    ) -> None:
        super().__init__()
        with requires("train", "the local Hugging Face judge"):
            from transformers import AutoModelForCausalLM, AutoTokenizer

        name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "model")
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise InputError("HFJudge needs the model's tokenizer when given a model object")
        if isinstance(template, str) and template not in TEMPLATES:
            raise InputError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
        self.template = TEMPLATES[template] if isinstance(template, str) else template
        self.verdicts = verdict_scale(verdicts)
        self.model = model.to(device).eval()
        self.tokenizer, self.device, self.batch_size = tokenizer, device, batch_size
        self.judge_id = judge_id or f"hf:{name}"
        self.prompt_version = self.template.version + "+likelihood"
        self.labels: tuple[str, ...] = GRADED if "[[A>>B]]" in self.template.system else ("A", "B", "C")
        if any(not tokenizer.encode(label + "]]", add_special_tokens=False) for label in self.labels):
            raise InputError("the tokenizer encodes a verdict to no tokens; HFJudge cannot score it")
        self._lock = threading.Lock()
        self._pending: list = []
        self.forward_batches = 0

    def cache_identity(self) -> dict:
        """The template text, the verdict opening and the scale are part of the cache key (the model is in
        ``judge_id``)."""
        return {
            "template": [self.template.system, self.template.user],
            "opening": VERDICT_OPENING,
            "verdicts": self.verdicts.identity(),
        }

    def prompt(self, request: Request) -> str:
        messages = self.template.messages(request.context, request.first, request.second, request.reference)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n\n".join(m["content"] for m in messages)
        return text + VERDICT_OPENING

    def verdict_log_likelihoods(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, L) log-likelihood of each verdict of :attr:`labels` (with its closing ``]]``) after each prompt
        (:func:`~pairkit.judges.likelihood.continuation_log_likelihoods`: token ids of prompt and verdict
        concatenated, left-padded batches, only the verdict positions' logits computed)."""
        from pairkit.judges.likelihood import continuation_log_likelihoods

        n_labels = len(self.labels)
        with self._lock:
            ll = continuation_log_likelihoods(
                self.model,
                self.tokenizer,
                [p for p in prompts for _ in self.labels],
                [label + "]]" for _ in prompts for label in self.labels],
                batch_size=self.batch_size * n_labels,
                device=self.device,
            )
        return ll.reshape(len(prompts), n_labels)

    def verdict_probabilities(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, L) probabilities of the verdicts of :attr:`labels` (softmax of their log-likelihoods)."""
        ll = self.verdict_log_likelihoods(prompts)
        ll = ll - ll.max(axis=1, keepdims=True)
        p = np.exp(ll)
        return p / p.sum(axis=1, keepdims=True)

    def _judgments(self, requests: Sequence[Request]) -> list[Judgment]:
        probs = self.verdict_probabilities([self.prompt(r) for r in requests])
        out = []
        for r, row in zip(requests, probs):
            p_first, p_tie, weight = self.verdicts.expect(dict(zip(self.labels, row)))
            shown = Judgment(
                p_a=min(p_first, 1.0 - p_tie),
                p_tie=p_tie,
                verdict=self.labels[int(np.argmax(row))],
                weight=weight,
                judge=self.judge_id,
            )
            out.append(shown if r.order == "ab" else shown.swapped())
        return out

    async def _batch(self, requests: list[Request]) -> list[Judgment]:
        self.forward_batches += 1
        return await asyncio.to_thread(self._judgments, requests)

    async def ajudge_many(self, requests) -> list[Judgment]:
        """All requests in left-padded batches of ``batch_size`` (one worker thread, the event loop stays free)."""
        out = await asyncio.to_thread(self._judgments, list(requests))
        for j in out:
            self.usage.add(j)
        return out
