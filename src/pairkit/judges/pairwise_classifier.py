"""A trained pairwise cross-encoder as a judge: one classifier reads (context, first, second) together.

The model is a ``transformers`` sequence classifier with 2 labels (first better, second better) or 3 (plus a
tie), or a causal LM whose verdict is its next-token distribution over the words ``A``, ``B`` (and ``tie``) after
a prompt showing the context and both answers (:func:`encode_verdict_prompt`; the generative pairwise judge
of e.g. the Pairwise RM of Liu et al. 2025, "Pairwise RM: Perform Best-of-N Sampling with Knockout Tournament"),
both trained by :func:`pairkit.train.train_pairwise_judge`. Reading both candidates at once is the pairwise
ranker of Jiang et al. (2023), "LLM-Blender: Ensembling Large Language Models with Pairwise Ranking and
Generative Fusion" (PairRanker). With ``symmetric=True`` (the default) each request is scored in both orders
and the two readings are averaged, so P(a ≻ b) = P(b ≺ a) exactly and the order shown cannot matter:

.. math::

    P(a \\succ b) = \\tfrac12\\big(p_{ab}[\\text{first}] + p_{ba}[\\text{second}]\\big),\\qquad
    P(\\text{tie}) = \\tfrac12\\big(p_{ab}[\\text{tie}] + p_{ba}[\\text{tie}]\\big)

A directory saved by the trainer holds ``pairkit_judge.json``; ``{"type": "huggingface", "model": DIR}``
then loads this judge (a plain causal LM directory loads :class:`~pairkit.judges.local.HFJudge`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pairkit._optional import requires
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, Request
from pairkit.judges.local import HFJudge

__all__ = [
    "MARKER",
    "VERDICTS",
    "VERDICT_TEMPLATE",
    "PairwiseClassifierJudge",
    "encode_pairwise",
    "encode_verdict_prompt",
    "is_pairwise_classifier",
    "verdict_token_ids",
]

MARKER = "pairkit_judge.json"
"""File written beside a trained pairwise classifier: its labels and encoding options."""


def is_pairwise_classifier(path) -> bool:
    """Whether ``path`` is a directory saved by :func:`pairkit.train.save_pairwise_judge`.

    >>> import tempfile
    >>> from pairkit.judges import is_pairwise_classifier
    >>> is_pairwise_classifier(tempfile.mkdtemp())  # an empty directory is no saved pairwise judge
    False
    """
    return isinstance(path, (str, Path)) and (Path(path) / MARKER).is_file()


def encode_pairwise(
    tokenizer, contexts: Sequence[str], firsts: Sequence[str], seconds: Sequence[str], *, max_length: int = 512
) -> list[list[int]]:
    """Token ids ``[CLS|BOS] context SEP first SEP second SEP`` per example, at most ``max_length`` long.

    Both answers get the same cap, ``max(⌊(L − |context|)/2⌋, ⌊L/3⌋)`` with ``L`` the room left after the
    special tokens, so swapping them swaps their token spans exactly; the context keeps its last tokens
    (the question is usually at its end) and fills what the answers leave.

    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> words = ['[UNK]', '[PAD]', '[SEP]', '[CLS]', 'A', 'B', 'tie', 'Paris', 'Lyon', 'capital']
    >>> vocab = {word: i for i, word in enumerate(words)}
    >>> word_level = Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))
    >>> word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token='[UNK]', pad_token='[PAD]',
    ...                                     sep_token='[SEP]', cls_token='[CLS]')
    >>> from pairkit.judges import encode_pairwise
    >>> encode_pairwise(tokenizer, ['capital'], ['Paris'], ['Lyon'])
    [[3, 9, 2, 7, 2, 8, 2]]
    """
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    seps = [sep] if sep is not None else []
    return _join(tokenizer, contexts, firsts, seconds, [start] if start is not None else [], [seps] * 3, max_length)


VERDICTS = ("A", "B", "tie")
"""The verdict words a causal-LM judge scores at the next position: first better, second better, tie."""

VERDICT_TEMPLATE = ("\n\nAnswer A:\n", "\n\nAnswer B:\n", "\n\nThe better answer (A, B or tie) is")
"""The text between context and first answer, between the answers, and after the second answer."""


def encode_verdict_prompt(
    tokenizer, contexts: Sequence[str], firsts: Sequence[str], seconds: Sequence[str], *, max_length: int = 512
) -> list[list[int]]:
    """Token ids ``[BOS] context "Answer A:" first "Answer B:" second "The better answer … is"`` per example.

    The prompt of a causal-LM judge whose next-token logits of the verdict words (:data:`VERDICTS`) are its
    verdict. Truncation is that of :func:`encode_pairwise` (equal caps for both answers, the context cut from
    the left), so swapping the answers swaps their token spans exactly.

    Example:

        >>> from pairkit.judges import encode_verdict_prompt
        >>> from pairkit.testing import char_tokenizer
        >>> tokenizer = char_tokenizer()
        >>> ids = encode_verdict_prompt(tokenizer, ["Capital?"], ["Paris"], ["Lyon"])[0]
        >>> print(tokenizer.decode(ids, skip_special_tokens=True))
        Capital?
        <BLANKLINE>
        Answer A:
        Paris
        <BLANKLINE>
        Answer B:
        Lyon
        <BLANKLINE>
        The better answer (A, B or tie) is
    """
    pieces = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in VERDICT_TEMPLATE]
    start = tokenizer.bos_token_id
    return _join(tokenizer, contexts, firsts, seconds, [start] if start is not None else [], pieces, max_length)


def verdict_token_ids(tokenizer, verdicts: Sequence[str]) -> list[int]:
    """The first token id of each verdict word (after a space); they must differ.

    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> words = ['[UNK]', '[PAD]', '[SEP]', '[CLS]', 'A', 'B', 'tie', 'Paris', 'Lyon', 'capital']
    >>> vocab = {word: i for i, word in enumerate(words)}
    >>> word_level = Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))
    >>> word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token='[UNK]', pad_token='[PAD]',
    ...                                     sep_token='[SEP]', cls_token='[CLS]')
    >>> from pairkit.judges import verdict_token_ids
    >>> verdict_token_ids(tokenizer, ['A', 'B', 'tie'])
    [4, 5, 6]
    """
    ids = [tokenizer(" " + v, add_special_tokens=False)["input_ids"] for v in verdicts]
    first = [x[0] if x else None for x in ids]
    if None in first or len(set(first)) != len(first):
        raise InputError(
            f"the words {list(verdicts)} must start with different tokens in this tokenizer (a leading space is "
            "added); choose words that are single, distinct tokens"
        )
    return first


def _join(tokenizer, contexts, firsts, seconds, head: list[int], seps: list[list[int]], max_length: int):
    if not len(contexts) == len(firsts) == len(seconds):
        raise InputError("contexts, firsts and seconds must have the same length")
    if not contexts:
        return []
    room = max_length - len(head) - sum(len(s) for s in seps)
    if room < 3:
        raise InputError(f"max_length={max_length} leaves no room for a context and two answers")
    n = len(contexts)
    enc = tokenizer([*contexts, *firsts, *seconds], add_special_tokens=False, verbose=False)["input_ids"]
    out = []
    for c, a, b in zip(enc[:n], enc[n : 2 * n], enc[2 * n :]):
        cap = max((room - len(c)) // 2, room // 3)
        a, b = a[:cap], b[:cap]
        keep = room - len(a) - len(b)
        c = c[len(c) - keep :] if keep > 0 else []
        out.append(head + c + seps[0] + a + seps[1] + b + seps[2])
    return out


def pairwise_logits(model, tokenizer, ids: Sequence[list[int]], verdict_ids: Sequence[int] | None = None):
    """Verdict logits ``[n, K]`` for encoded sequences (right-padded, one forward pass).

    A sequence classifier's logits; with ``verdict_ids``, a causal LM's next-token logits of those tokens at
    each sequence's last position (only those K rows of the output projection are computed).
    """
    with requires("train", "a pairwise judge"):
        import torch

    from pairkit.train.data import collate_sequences

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = collate_sequences([(list(x), []) for x in ids], pad)
    device = next(model.parameters()).device
    input_ids, attention = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    if verdict_ids is None:
        out = model(input_ids=input_ids, attention_mask=attention)
        return out.logits if hasattr(out, "logits") else out
    last = attention.sum(-1) - 1
    rows = torch.arange(len(ids), device=device)
    config = getattr(model, "config", None)
    if any(getattr(config, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale")):
        return model(input_ids=input_ids, attention_mask=attention).logits[rows, last][:, list(verdict_ids)]
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state[rows, last]
    head = model.get_output_embeddings()
    z = hidden @ head.weight[list(verdict_ids)].T
    return z + head.bias[list(verdict_ids)] if getattr(head, "bias", None) is not None else z


class PairwiseClassifierJudge(HFJudge):
    """Judge with a trained pairwise sequence classifier or causal-LM verdict head (a saved directory or a model
    object with its tokenizer).

    Args:
        model: a directory saved by :func:`pairkit.train.save_pairwise_judge`, or an
            ``AutoModelForSequenceClassification`` with 2 or 3 labels (first, second[, tie]), or (with
            ``verdicts``) an ``AutoModelForCausalLM`` read through :func:`encode_verdict_prompt`.
        tokenizer: its tokenizer (loaded from ``model`` when it is a path).
        verdicts: for a causal LM, its verdict words (first better, second better[, tie]), e.g. :data:`VERDICTS`;
            a saved directory records them.
        symmetric: score both orders and average (exact symmetry); ``False`` reads only the order shown.
        max_length: tokens per encoded (context, first, second); default from the saved marker, else 512.
        batch_size: requests per forward pass.

    Example:

        >>> from pairkit.judges import PairwiseClassifierJudge
        >>> from pairkit.testing import tiny_pair_classifier
        >>> model, tokenizer = tiny_pair_classifier(num_labels=3)  # first, second, tie
        >>> judgment = PairwiseClassifierJudge(model, tokenizer).judge("Capital of France?", "Paris.", "Lyon.")
        >>> round(judgment.p_a + judgment.p_b + judgment.p_tie, 6)
        1.0
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        symmetric: bool = True,
        max_length: int | None = None,
        batch_size: int = 16,
        device: str = "cpu",
        judge_id: str | None = None,
        verdicts: Sequence[str] | None = None,
    ) -> None:
        ComparatorBase.__init__(self)
        import threading

        name = str(model) if isinstance(model, (str, Path)) else "model"
        meta = {}
        if isinstance(model, (str, Path)):
            with requires("train", "a pairwise classifier judge"):
                from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

            path = Path(model)
            if not is_pairwise_classifier(path):
                raise InputError(f"{str(path)!r} has no {MARKER}; train it with 'pairkit train pairwise-judge'")
            meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path, local_files_only=True)
            verdicts = verdicts or meta.get("verdicts")
            auto = AutoModelForCausalLM if verdicts else AutoModelForSequenceClassification
            model = auto.from_pretrained(path, local_files_only=True)
        if tokenizer is None:
            raise InputError("PairwiseClassifierJudge needs the model's tokenizer when given a model object")
        self.verdicts = tuple(verdicts) if verdicts else None
        self.verdict_ids = verdict_token_ids(tokenizer, self.verdicts) if self.verdicts else None
        k = len(self.verdicts) if self.verdicts else int(model.config.num_labels)
        if k not in (2, 3):
            raise InputError(f"a pairwise classifier has 2 or 3 labels (first, second[, tie]); this one has {k}")
        self.model = model.to(device).eval()
        self.tokenizer, self.device, self.batch_size = tokenizer, device, batch_size
        self.symmetric = bool(symmetric)
        self.max_length = int(max_length or meta.get("max_length", 512))
        self.judge_id = judge_id or f"pairwise:{name}"
        kind = "pairwise-verdict-lm-v1" if self.verdicts else "pairwise-classifier-v1"
        self.prompt_version = f"{kind}+{'sym' if self.symmetric else 'shown'}"
        self._lock = threading.Lock()
        self._pending: list = []
        self.forward_batches = 0

    def cache_identity(self) -> dict:
        """Encoding options are part of the cache key (the model is in ``judge_id``)."""
        out = {"max_length": self.max_length, "symmetric": self.symmetric}
        return {**out, "verdicts": list(self.verdicts)} if self.verdicts else out

    def prompt(self, request: Request) -> str:  # pragma: no cover - no text prompt
        raise NotImplementedError("a pairwise classifier reads token ids, not a text prompt")

    def shown_probabilities(self, contexts, firsts, seconds) -> np.ndarray:
        """(N, 3) probabilities of first better, second better and tie for the order given (no averaging)."""
        with requires("train", "a pairwise classifier judge"):
            import torch

        out = []
        with self._lock, torch.no_grad():
            for s in range(0, len(contexts), self.batch_size):
                sl = slice(s, s + self.batch_size)
                encode = encode_verdict_prompt if self.verdicts else encode_pairwise
                ids = encode(self.tokenizer, contexts[sl], firsts[sl], seconds[sl], max_length=self.max_length)
                logits = pairwise_logits(self.model, self.tokenizer, ids, self.verdict_ids)
                p = torch.softmax(logits.float(), -1).cpu().numpy()
                out.append(np.pad(p, ((0, 0), (0, 3 - p.shape[1]))))
        return np.concatenate(out) if out else np.zeros((0, 3))

    def probabilities(self, contexts, a, b) -> np.ndarray:
        """(N, 3) probabilities that ``a`` is better, ``b`` is better, tie (both orders averaged if symmetric)."""
        contexts, a, b = list(contexts), list(a), list(b)
        if not self.symmetric:
            return self.shown_probabilities(contexts, a, b)
        p = self.shown_probabilities(contexts + contexts, a + b, b + a)
        ab, ba = p[: len(a)], p[len(a) :]
        return 0.5 * (ab + ba[:, [1, 0, 2]])

    def _judgments(self, requests: Sequence[Request]) -> list[Judgment]:
        ctx = [r.context for r in requests]
        p = self.probabilities(ctx, [r.first for r in requests], [r.second for r in requests])
        out = []
        for r, (pf, ps, pt) in zip(requests, p):
            total = pf + ps + pt
            shown = Judgment(
                p_a=float(pf / total), p_tie=float(pt / total), verdict="ABC"[int(np.argmax([pf, ps, pt]))],
                judge=self.judge_id,
            )  # fmt: skip
            out.append(shown if r.order == "ab" else shown.swapped())
        return out
