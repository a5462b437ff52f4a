"""Sequence-to-sequence judges in the style of monoT5 and duoT5: a probability from the first decoder step.

duoT5 (Pradeep, Nogueira & Lin 2021, "The Expando-Mono-Duo design pattern for text ranking with pretrained
sequence-to-sequence models") reads ``Query: q Document0: d0 Document1: d1 Relevant:`` and is trained to answer
``true`` when ``d0`` is the better one; the judgment is the softmax over the two target tokens' logits at the
decoder's first step,

.. math::

    p(d_0 \\succ d_1) = \\frac{e^{z_{\\text{true}}}}{e^{z_{\\text{true}}} + e^{z_{\\text{false}}}}.

monoT5 (Nogueira et al. 2020, "Document ranking with a pretrained sequence-to-sequence model") scores one answer,
``Query: q Document: d Relevant:``, by :math:`s(d) = \\log p(\\text{true})` over the two targets; as a pairwise
judge its comparison is :math:`\\sigma(s(d_a) - s(d_b))`, and :func:`mono_shortlist` gives the mono stage of
Expando-Mono-Duo: the best ``depth`` answers by monoT5, to be reranked pairwise by ``duo_rerank``. Other targets
(``("A", "B")``) and templates suit seq2seq judges trained on other formats.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from pairkit._optional import requires
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, MicroBatched, Request

__all__ = ["Seq2SeqJudge", "mono_shortlist"]

DUO = "Query: {question} Document0: {answer_a} Document1: {answer_b} Relevant:"
MONO = "Query: {question} Document: {answer} Relevant:"


class Seq2SeqJudge(MicroBatched, ComparatorBase):
    """A seq2seq model as a pairwise judge (duoT5, ``mode="duo"``) or a pointwise scorer (monoT5, ``"mono"``).

    Args:
        model: an ``AutoModelForSeq2SeqLM`` (object or local path) with ``tokenizer``.
        mode: ``"duo"`` (the pair in one input; the shown order matters) or ``"mono"`` (each answer alone).
        template: the input text (``{question}``, ``{answer_a}``, ``{answer_b}`` for duo; ``{answer}`` for mono).
        targets: the (positive, negative) target words; each must be one token.
        batch_size: inputs per forward pass.

    Example:

        >>> from pairkit.judges import Seq2SeqJudge
        >>> from pairkit.testing import tiny_seq2seq
        >>> model, tokenizer = tiny_seq2seq(words=("true", "false"))  # a T5 with random weights
        >>> 0 < Seq2SeqJudge(model, tokenizer).judge("why", "one", "two").p_a < 1
        True
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        mode: str = "duo",
        template: str | None = None,
        targets: tuple[str, str] = ("true", "false"),
        batch_size: int = 16,
        device: str = "cpu",
        judge_id: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("duo", "mono"):
            raise InputError(f"mode must be 'duo' or 'mono', got {mode!r}")
        if isinstance(model, str):
            with requires("train", "Seq2SeqJudge"):
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            name = model
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, local_files_only=True)
            model = AutoModelForSeq2SeqLM.from_pretrained(model, local_files_only=True)
        else:
            name = getattr(getattr(model, "config", None), "_name_or_path", "model")
        if tokenizer is None:
            raise InputError("Seq2SeqJudge needs the model's tokenizer when given a model object")
        ids = []
        for word in targets:
            tok = tokenizer.encode(word, add_special_tokens=False)
            if len(tok) != 1:
                raise InputError(
                    f"the target {word!r} is {len(tok)} tokens for this tokenizer; targets must be one token"
                )
            ids.append(tok[0])
        self.model, self.tokenizer, self.mode = model.to(device).eval(), tokenizer, mode
        self.template = template or (DUO if mode == "duo" else MONO)
        self.targets, self.target_ids = tuple(targets), ids
        self.batch_size, self.device = batch_size, device
        self.judge_id = judge_id or f"{mode}:{name}"
        self.prompt_version = f"seq2seq-{mode}-v1"
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, str], float] = {}

    def cache_identity(self) -> dict:
        """The input template and the targets (the model is in ``judge_id``)."""
        return {"template": self.template, "targets": list(self.targets)}

    def first_step_log_probs(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) log p(positive target) over the two targets at the decoder's first step, for each input text."""
        with requires("train", "Seq2SeqJudge"):
            import torch

        start = self.model.config.decoder_start_token_id
        out = []
        with self._lock, torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[s : s + self.batch_size]), return_tensors="pt", padding=True)
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                dec = torch.full((enc["input_ids"].shape[0], 1), start, dtype=torch.long, device=self.device)
                logits = self.model(**enc, decoder_input_ids=dec).logits[:, 0, self.target_ids].float()
                out.append(torch.log_softmax(logits, dim=-1)[:, 0].cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros(0)

    def pointwise_scores(self, contexts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """(N,) monoT5 scores log p(true | question, answer) (memoised)."""
        todo = [(c, a) for c, a in dict.fromkeys(zip(contexts, answers)) if (c, a) not in self._memo]
        if todo:
            texts = [self.template.format(question=c, answer=a) for c, a in todo]
            self._memo.update(zip(todo, self.first_step_log_probs(texts).tolist()))
        return np.array([self._memo[(c, a)] for c, a in zip(contexts, answers)])

    def _judgments(self, requests: Sequence[Request]) -> list[Judgment]:
        if self.mode == "mono":
            s = self.pointwise_scores(
                [r.context for r in requests] * 2, [r.a for r in requests] + [r.b for r in requests]
            )
            n = len(requests)
            p = 1.0 / (1.0 + np.exp(-(s[:n] - s[n:])))
            return [Judgment(p_a=float(x), order=r.order, judge=self.judge_id) for r, x in zip(requests, p)]
        texts = [self.template.format(question=r.context, answer_a=r.first, answer_b=r.second) for r in requests]
        p_first = np.exp(self.first_step_log_probs(texts))
        out = []
        for r, p in zip(requests, p_first):
            shown = Judgment(p_a=float(p), judge=self.judge_id, verdict="A" if p >= 0.5 else "B")
            out.append(shown if r.order == "ab" else shown.swapped())
        return out

    async def _batch(self, requests: list[Request]) -> list[Judgment]:
        return await asyncio.to_thread(self._judgments, requests)


def mono_shortlist(judge: Seq2SeqJudge, pool, depth: int, *, context: int = 0) -> list[int]:
    """The mono stage of Expando-Mono-Duo: the ``depth`` best items of ``pool`` in ``context`` by the monoT5 score,
    best first — pass it as ``shortlist`` to ``select("duo_rerank", …)``.

    Example:

        >>> from pairkit.judges import Seq2SeqJudge, mono_shortlist
        >>> from pairkit.select import Pool
        >>> from pairkit.testing import tiny_seq2seq
        >>> model, tokenizer = tiny_seq2seq()
        >>> pool = Pool.single({"m0": "one", "m1": "two three", "m2": "four", "m3": "five"}, context="q")
        >>> shortlist = mono_shortlist(Seq2SeqJudge(model, tokenizer, mode="mono"), pool, 2)
        >>> len(shortlist), len(set(shortlist))
        (2, 2)
    """
    if not (isinstance(depth, int) and depth >= 1):
        raise InputError(f"depth must be an integer >= 1, got {depth!r}")
    items = [int(i) for i in pool.present(context)]
    scores = judge.pointwise_scores([pool.context_text[context]] * len(items), [pool.text[context][i] for i in items])
    order = np.argsort(-scores, kind="stable")[:depth]
    return [items[k] for k in order]
