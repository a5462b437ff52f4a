"""A local Hugging Face causal LM as a pairwise judge: the verdict probability from the next-token logits.

The judge prompt (see :mod:`pairkit.judges.prompts`) ends with the opening of the verdict, ``[[``; the
probabilities of the next tokens ``A``, ``B`` and ``C`` (renormalised over the three) are P(first better),
P(second better) and P(tie) — the logit-based reading of a generative judge as in Zheng et al. (2023) and
PRP (Qin et al. 2024), without sampling. Prompts are scored in left-padded batches.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, Request
from pairkit.judges.prompts import TEMPLATES, PromptTemplate

__all__ = ["HFJudge"]

VERDICT_OPENING = "\nFinal verdict: [["


class HFJudge(ComparatorBase):
    """Judge with a ``transformers`` causal LM (a path/name to load, or a model object with its tokenizer).

    Args:
        model: a causal LM or a local path for ``AutoModelForCausalLM.from_pretrained``.
        tokenizer: its tokenizer (loaded from ``model`` when it is a path).
        template: a :data:`~pairkit.judges.prompts.TEMPLATES` name or a :class:`PromptTemplate`.
        batch_size: prompts per forward pass in :meth:`ajudge_many`.
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        template: str | PromptTemplate = "pairwise",
        batch_size: int = 8,
        device: str = "cpu",
        judge_id: str | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "model")
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model)
        if tokenizer is None:
            raise InputError("HFJudge needs the model's tokenizer when given a model object")
        self.template = TEMPLATES[template] if isinstance(template, str) else template
        self.model = model.to(device).eval()
        self.tokenizer, self.device, self.batch_size = tokenizer, device, batch_size
        self.judge_id = judge_id or f"hf:{name}"
        self.prompt_version = self.template.version + "+logits"
        ids = []
        for letter in "ABC":
            tok = tokenizer.encode(letter, add_special_tokens=False)
            if len(tok) != 1:
                raise InputError(
                    f"the tokenizer splits the verdict letter {letter!r} into {len(tok)} tokens; "
                    "HFJudge needs single-token letters"
                )
            ids.append(tok[0])
        self.verdict_ids = ids
        self._lock = threading.Lock()
        self._pending: list = []
        self.forward_batches = 0

    def cache_identity(self) -> dict:
        """The template text and the verdict opening are part of the cache key (the model is in ``judge_id``)."""
        return {"template": [self.template.system, self.template.user], "opening": VERDICT_OPENING}

    def prompt(self, request: Request) -> str:
        messages = self.template.messages(request.context, request.first, request.second, request.reference)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n\n".join(m["content"] for m in messages)
        return text + VERDICT_OPENING

    def verdict_probabilities(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, 3) probabilities of A, B, C after each prompt (softmax over the three letters' logits)."""
        import torch

        tok = self.tokenizer
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        side, tok.padding_side = tok.padding_side, "left"  # the last position is then every prompt's end
        try:
            out = []
            with self._lock, torch.no_grad():
                for start in range(0, len(prompts), self.batch_size):
                    enc = tok(
                        list(prompts[start : start + self.batch_size]),
                        return_tensors="pt",
                        padding=True,
                        add_special_tokens=False,
                    ).to(self.device)
                    positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                    logits = self.model(**enc, position_ids=positions).logits[:, -1, self.verdict_ids]
                    out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        finally:
            tok.padding_side = side
        return np.concatenate(out) if out else np.zeros((0, 3))

    def _judgments(self, requests: Sequence[Request]) -> list[Judgment]:
        probs = self.verdict_probabilities([self.prompt(r) for r in requests])
        out = []
        for r, (pa, pb, pc) in zip(requests, probs):
            shown = Judgment(
                p_a=float(pa), p_tie=float(pc), verdict="ABC"[int(np.argmax([pa, pb, pc]))], judge=self.judge_id
            )
            out.append(shown if r.order == "ab" else shown.swapped())
        return out

    async def _ajudge(self, request: Request) -> Judgment:
        # Micro-batching: requests arriving in the same event-loop turn (a strategy's round, sent through
        # caches and gathers one by one) are scored together in one forward pass per ``batch_size``.
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((request, future))
        if len(self._pending) == 1:
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        return await future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self.forward_batches += 1
        try:
            out = await asyncio.to_thread(self._judgments, [r for r, _ in batch])
        except Exception as exc:  # every waiter sees the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), judgment in zip(batch, out):
            if not future.done():
                future.set_result(judgment)

    async def ajudge_many(self, requests) -> list[Judgment]:
        """All requests in left-padded batches of ``batch_size`` (one worker thread, the event loop stays free)."""
        out = await asyncio.to_thread(self._judgments, list(requests))
        for j in out:
            self.usage.add(j)
        return out
