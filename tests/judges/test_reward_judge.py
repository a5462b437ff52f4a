"""RewardModelJudge: a trained reward model (or a CLoud critique-then-score model) as a comparator."""

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.judges import Request, RewardModelJudge, judge_from_config  # noqa: E402
from pairkit.testing import tiny_causal_lm  # noqa: E402


def _reward_model(tokenizer, seed=0, labels=1):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=16, n_layer=1, n_head=2,
                                     num_labels=labels, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    return transformers.GPT2ForSequenceClassification(config).eval()


def _by_hand(model, tokenizer, prompt, answer):
    """r(x, y) from one unpadded sequence: prompt tokens, answer tokens, EOS."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] + tokenizer(answer, add_special_tokens=False)[
        "input_ids"
    ] + [tokenizer.eos_token_id]
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_probability_is_the_logistic_of_the_reward_difference_batched_as_one_by_one():
    _, tokenizer = tiny_causal_lm()
    rm = _reward_model(tokenizer)
    judge = RewardModelJudge(rm, tokenizer, batch_size=2, temperature=0.5)
    prompts = ["Capital of France?", "2 + 2 = ?", "Name a colour."]
    a, b = ["Paris.", "four, of course", "red"], ["Lyon is the capital city.", "5", "a very long blue answer"]
    got = judge.judge_many([Request(p, x, y) for p, x, y in zip(prompts, a, b)])
    for p, x, y, j in zip(prompts, a, b, got):
        d = (_by_hand(rm, tokenizer, p, x) - _by_hand(rm, tokenizer, p, y)) / 0.5
        assert j.p_a == pytest.approx(1 / (1 + math.exp(-d)), abs=1e-6)
    swapped = judge.judge(prompts[0], b[0], a[0])
    assert swapped.p_a == pytest.approx(1 - got[0].p_a, abs=1e-12)  # each answer is scored alone


def test_a_saved_reward_model_loads_from_a_judge_config(tmp_path):
    _, tokenizer = tiny_causal_lm()
    rm = _reward_model(tokenizer, seed=3)
    rm.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    (tmp_path / "judge.json").write_text(json.dumps({"type": "reward_model", "model": str(tmp_path / "rm")}))
    judge = judge_from_config(json.loads((tmp_path / "judge.json").read_text()), source="judge.json")
    direct = RewardModelJudge(rm, tokenizer).judge("q", "yes", "no").p_a
    assert judge.judge("q", "yes", "no").p_a == pytest.approx(direct, abs=1e-6)
    assert judge.judge_id.startswith("reward:")


def test_a_multi_label_model_is_refused():
    _, tokenizer = tiny_causal_lm()
    with pytest.raises(InputError, match="one-output reward model; this one has 3 labels"):
        RewardModelJudge(_reward_model(tokenizer, labels=3), tokenizer)


def test_a_cloud_model_is_judged_by_its_critique_averaged_rewards():
    from pairkit.train import CLoudRewardModel

    lm, tokenizer = tiny_causal_lm(seed=5)
    cloud = CLoudRewardModel(lm, tokenizer, seed=1)
    judge = RewardModelJudge(cloud, critiques=2, seed=7)
    rewards, _ = cloud.score(["q", "q"], ["yes", "no"], k=2, seed=7, max_new_tokens=128)
    want = 1 / (1 + math.exp(-float(rewards[0] - rewards[1])))
    assert judge.judge("q", "yes", "no").p_a == pytest.approx(want, abs=1e-6)
    assert judge.cache_identity()["critiques"] == 2
