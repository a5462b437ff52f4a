"""Seq2SeqJudge (duoT5/monoT5 style) with a tiny T5 built from a config and a word-level tokenizer (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.judges import Request, Seq2SeqJudge, mono_shortlist  # noqa: E402
from pairkit.select import Pool, select  # noqa: E402

WORDS = "Query: Document0: Document1: Document: Relevant: true false q why answer one two three four five".split()


def tiny_t5():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: k + 3 for k, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=len(vocab), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    return transformers.T5ForConditionalGeneration(config).eval(), tok


def first_step(model, tok, text):
    """Unbatched: softmax over (true, false) at the first decoder step."""
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        z = model(input_ids=ids, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits[0, 0]
    t, f = tok.convert_tokens_to_ids(["true", "false"])
    return float(torch.softmax(z[[t, f]].double(), -1)[0])


def test_duo_probabilities_match_unbatched_runs_in_both_orders():
    model, tok = tiny_t5()
    judge = Seq2SeqJudge(model, tok, batch_size=2)
    reqs = [Request("q", "one two", "three"), Request("why", "four", "five one two three", order="ba"),
            Request("q", "answer", "answer one")]  # fmt: skip
    for r, j in zip(reqs, judge.judge_many(reqs)):
        p_first = first_step(model, tok, f"Query: {r.context} Document0: {r.first} Document1: {r.second} Relevant:")
        assert j.p_a == pytest.approx(p_first if r.order == "ab" else 1 - p_first, abs=1e-5)


def test_mono_scores_compare_and_shortlist_for_duo_rerank():
    model, tok = tiny_t5()
    mono = Seq2SeqJudge(model, tok, mode="mono")
    answers = {f"m{k}": text for k, text in enumerate(["one", "two three", "four", "five one", "answer"])}
    pool = Pool.single(answers, context="q")
    scores = {m: np.log(first_step(model, tok, f"Query: q Document: {t} Relevant:")) for m, t in answers.items()}
    j = mono.judge("q", "one", "four")
    assert j.p_a == pytest.approx(1 / (1 + np.exp(-(scores["m0"] - scores["m2"]))), abs=1e-5)
    short = mono_shortlist(mono, pool, 3)
    assert [pool.items[i] for i in short] == sorted(scores, key=scores.get, reverse=True)[:3]
    duo = Seq2SeqJudge(model, tok)
    sel = select("duo_rerank", duo, pool, shortlist=short, policy="both_average")
    assert sorted(sel.ranking) == sorted(short) and sel.calls == 6  # 3 pairs × both orders


def test_targets_must_be_single_tokens():
    model, tok = tiny_t5()
    with pytest.raises(Exception, match="one token"):
        Seq2SeqJudge(model, tok, targets=("true story", "false"))
    with pytest.raises(Exception, match="mode"):
        Seq2SeqJudge(model, tok, mode="trio")
