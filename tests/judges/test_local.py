"""HFJudge with a tiny random GPT-2 and a locally built tokenizer (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.judges import Request  # noqa: E402
from pairkit.judges.local import HFJudge  # noqa: E402


def tiny_judge(**options):
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = sorted(set("".join(chr(c) for c in range(32, 127)) + "\n'’"))
    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(chars)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=2048, n_embd=16, n_layer=1, n_head=2)
    return HFJudge(transformers.GPT2LMHeadModel(config), tok, **{"batch_size": 3, **options})


def reference_distribution(judge, request) -> dict[str, float]:
    """Slow and obvious: one unpadded forward pass per verdict, log-probs of its tokens summed, softmax."""
    prompt = judge.tokenizer.encode(judge.prompt(request), add_special_tokens=False)
    lls = []
    for label in judge.labels:
        cont = judge.tokenizer.encode(label + "]]", add_special_tokens=False)
        ids = torch.tensor([prompt + cont])
        with torch.no_grad():
            logp = torch.log_softmax(judge.model(ids).logits[0].double(), -1)
        lls.append(sum(float(logp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(cont)))
    p = np.exp(np.array(lls) - max(lls))
    return dict(zip(judge.labels, p / p.sum()))


def expected_p_a(judge, request) -> tuple[float, float]:
    p_first, p_tie, _ = judge.verdicts.expect(reference_distribution(judge, request))
    return (p_first if request.order == "ab" else 1 - p_first - p_tie), p_tie


@pytest.mark.parametrize("template", ["pairwise_graded", "pairwise"])
def test_batched_left_padded_probabilities_match_unpadded_forward_passes(template):
    judge = tiny_judge(template=template)
    assert judge.labels == (("A>>B", "A>B", "A=B", "B>A", "B>>A") if template == "pairwise_graded" else ("A", "B", "C"))
    reqs = [
        Request("q", "short", "a much longer answer here"),
        Request("why?", "x", "y", order="ba"),
        Request("q2", "some text", "other text"),
        Request("q", "a", "b"),
    ]
    batched = judge.judge_many(reqs)
    for r, j in zip(reqs, batched):
        p_a, p_tie = expected_p_a(judge, r)
        assert j.p_a == pytest.approx(p_a, abs=1e-5) and j.p_tie == pytest.approx(p_tie, abs=1e-5)
        assert j.order == r.order
    assert judge.usage.calls == 4
    single = judge.judge("q", "a", "b")
    assert single.p_a == pytest.approx(batched[3].p_a, abs=1e-5)
    assert np.isclose(single.p_a + single.p_b + single.p_tie, 1.0)


def test_graded_levels_are_scored_on_the_scale():
    judge = tiny_judge(verdicts="arena_hard")
    r = Request("q", "x", "y")
    dist = reference_distribution(judge, r)
    j = judge.judge_many([r])[0]
    assert j.p_a == pytest.approx(dist["A>>B"] + dist["A>B"], abs=1e-5)  # a win is a win on Arena-Hard's scale
    assert j.p_tie == pytest.approx(dist["A=B"], abs=1e-5)
    assert j.weight == pytest.approx(3 * (dist["A>>B"] + dist["B>>A"]) + dist["A>B"] + dist["A=B"] + dist["B>A"])


def test_a_selection_round_is_scored_in_one_batch():
    from pairkit.select import Pool, select

    judge = tiny_judge()
    judge.batch_size = 64
    pool = Pool.single({f"m{i}": f"answer {i}" for i in range(8)}, context="q")
    sel = select("round_robin", judge, pool)
    assert sel.calls == 28 and judge.forward_batches == 1
    single = tiny_judge()
    for rec in sel.records[:4]:
        r = Request("q", pool.text[0][rec.a], pool.text[0][rec.b], order=rec.judgment.order)
        assert rec.judgment.p_a == pytest.approx(expected_p_a(single, r)[0], abs=1e-5)
