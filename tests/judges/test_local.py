"""HFJudge with a tiny random GPT-2 and a locally built tokenizer (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.judges import Request  # noqa: E402
from pairkit.judges.local import HFJudge  # noqa: E402


def tiny_judge():
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = sorted(set("".join(chr(c) for c in range(32, 127)) + "\n'’"))
    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(chars)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=2048, n_embd=16, n_layer=1, n_head=2)
    return HFJudge(transformers.GPT2LMHeadModel(config), tok, batch_size=3)


def test_batched_left_padded_probabilities_match_single_forward():
    judge = tiny_judge()
    reqs = [
        Request("q", "short", "a much longer answer here"),
        Request("why?", "x", "y", order="ba"),
        Request("q2", "some text", "other text"),
        Request("q", "a", "b"),
    ]
    batched = judge.judge_many(reqs)
    for r, j in zip(reqs, batched):
        ids = judge.tokenizer(judge.prompt(r), return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = judge.model(ids).logits[0, -1]
        p = torch.softmax(logits[judge.verdict_ids], -1).numpy()
        first, tie = p[0], p[2]
        expect_a = first if r.order == "ab" else p[1]
        assert j.p_a == pytest.approx(expect_a, abs=1e-5) and j.p_tie == pytest.approx(tie, abs=1e-5)
        assert j.order == r.order
    assert judge.usage.calls == 4
    single = judge.judge("q", "a", "b")
    assert single.p_a == pytest.approx(batched[3].p_a, abs=1e-5)
    assert np.isclose(single.p_a + single.p_b + single.p_tie, 1.0)


def test_a_selection_round_is_scored_in_one_batch():
    from pairkit.select import Pool, select

    judge = tiny_judge()
    judge.batch_size = 64
    pool = Pool.single({f"m{i}": f"answer {i}" for i in range(8)}, context="q")
    sel = select("round_robin", judge, pool)
    assert sel.calls == 28 and judge.forward_batches == 1
    single = tiny_judge()
    for rec in sel.records:
        r = Request("q", pool.text[0][rec.a], pool.text[0][rec.b], order=rec.judgment.order)
        ids = single.tokenizer(single.prompt(r), return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            p = torch.softmax(single.model(ids).logits[0, -1][single.verdict_ids], -1).numpy()
        assert rec.judgment.p_a == pytest.approx(p[0] if r.order == "ab" else p[1], abs=1e-5)
