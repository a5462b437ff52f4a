"""CDR and follow-up likelihood judges with tiny GPT-2s built from configs (no downloads), checked against
unpadded one-sequence-at-a-time log-likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.judges import DensityRatioJudge, FollowUpJudge, Request, continuation_log_likelihoods  # noqa: E402
from tests.judges.test_local import tiny_judge  # noqa: E402

TOKENIZER = tiny_judge().tokenizer


def tiny_lm(seed: int):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(TOKENIZER), n_positions=512, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config).eval()  # no dropout


def slow_ll(model, prefix: str, continuation: str) -> float:
    p = TOKENIZER.encode(prefix, add_special_tokens=False)
    c = TOKENIZER.encode(continuation, add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].double(), -1)
    return sum(float(logp[len(p) - 1 + t, tok]) for t, tok in enumerate(c))


def test_batched_continuation_likelihoods_equal_one_at_a_time():
    model = tiny_lm(0)
    prefixes = ["user: hi\nassistant: ", "a much longer prefix than the others here: ", "x"]
    conts = ["hello there", "ok", "a longer continuation of text"]
    got = continuation_log_likelihoods(model, TOKENIZER, prefixes, conts, batch_size=2)
    want = [slow_ll(model, p, c) for p, c in zip(prefixes, conts)]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_density_ratio_is_strong_minus_weak_and_order_free():
    strong, weak = tiny_lm(1), tiny_lm(2)
    judge = DensityRatioJudge(strong, weak, TOKENIZER, strong_system="Be strict.", temperature=2.0)
    ra = slow_ll(strong, "system: Be strict.\nuser: q\nassistant: ", "yes") - slow_ll(
        weak, "user: q\nassistant: ", "yes"
    )
    rb = slow_ll(strong, "system: Be strict.\nuser: q\nassistant: ", "no!") - slow_ll(
        weak, "user: q\nassistant: ", "no!"
    )
    j, k = judge.judge_many([Request("q", "yes", "no!"), Request("q", "yes", "no!", order="ba")])
    assert j.p_a == pytest.approx(special.expit((ra - rb) / 2.0), abs=1e-4) and k.p_a == pytest.approx(j.p_a)
    same = DensityRatioJudge(strong, strong, TOKENIZER).judge("q", "yes", "no!")
    assert same.p_a == pytest.approx(0.5)  # a model over itself: every ratio is 0


def test_follow_up_reward_is_positive_minus_negative_follow_up_likelihood():
    model = tiny_lm(3)
    judge = FollowUpJudge(model, TOKENIZER, positive=["thanks"], negative=["wrong", "no"])

    def reward(answer):
        base = f"user: q\nassistant: {answer}\n"
        pos = slow_ll(model, base, "user: thanks\n")
        neg = np.mean([slow_ll(model, base, f"user: {f}\n") for f in ("wrong", "no")])
        return pos - neg

    j = judge.judge("q", "good", "bad")
    assert j.p_a == pytest.approx(special.expit(reward("good") - reward("bad")), abs=1e-4)
    with pytest.raises(Exception, match="positive"):
        FollowUpJudge(model, TOKENIZER, positive=[])
    with pytest.raises(Exception, match="temperature"):
        FollowUpJudge(model, TOKENIZER, temperature=0)
