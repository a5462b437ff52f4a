"""Preference-model pre-training: the PMP pair builders against a by-hand example, and the two-stage run."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.errors import DroppedRowsWarning, InputError  # noqa: E402
from pairkit.train import (  # noqa: E402
    TrainConfig,
    pmp_pairs,
    pretrain_preference_model,
    stack_exchange_scores,
    train_reward_model,
)

VOTED = [
    {"question": "Q1", "answers": ["a", "b", "c"], "upvotes": [10, 0, -2], "accepted": [False, True, False]},
    {"question": "Q2", "answers": ["d", "e"], "upvotes": [1, 2], "accepted": [True, False]},  # both score 2: a tie
    {"question": "Q3", "answers": ["f"], "upvotes": [5]},
]


def test_scores_by_hand():
    # round(log2 11) = 3; log2 1 = 0, +1 accepted; negative votes -> -1; round(log2 2)+1 = 2; round(log2 3) = 2
    assert stack_exchange_scores([10, 0, -2, 1, 2], [0, 1, 0, 1, 0]).tolist() == [3, 1, -1, 2, 2]
    assert stack_exchange_scores([-5], [True]).tolist() == [-1]  # reading taken: negative wins over accepted
    with pytest.raises(InputError):
        stack_exchange_scores([np.nan])


def test_ranked_and_binary_pairs_match_a_by_hand_example():
    with pytest.warns(DroppedRowsWarning, match="2 of 3 questions"):
        ranked = pmp_pairs(VOTED, mode="ranked")
    # scores a=3, b=1, c=-1: a>b, a>c, b>c; Q2 ties, Q3 has one answer
    assert ranked[["prompt", "chosen", "rejected"]].values.tolist() == [
        ["Q1", "a", "b"], ["Q1", "a", "c"], ["Q1", "b", "c"]]  # fmt: skip
    assert ranked["chosen_score"].tolist() == [3, 3, 1] and ranked["rejected_score"].tolist() == [1, -1, -1]
    with pytest.warns(DroppedRowsWarning):
        binary = pmp_pairs(VOTED)
    assert binary[["chosen", "rejected"]].values.tolist() == [
        ["GOOD: a", "BAD: a"], ["BAD: b", "GOOD: b"],   # a > b
        ["GOOD: a", "BAD: a"], ["BAD: c", "GOOD: c"],   # a > c
        ["GOOD: b", "BAD: b"], ["BAD: c", "GOOD: c"],   # b > c
    ]  # fmt: skip
    assert (binary["prompt"] == "Q1").all()


def test_given_scores_and_sampling_pairs_per_question():
    rows = [{"prompt": "P", "answers": list("wxyz"), "scores": [4.0, 3.0, 2.0, 1.0]}]
    assert len(pmp_pairs(rows, mode="ranked", score="given")) == 6
    some = pmp_pairs(rows, mode="ranked", score="given", pairs_per_question=2, seed=1)
    assert len(some) == 2 and (some["chosen_score"] > some["rejected_score"]).all()
    assert some.equals(pmp_pairs(rows, mode="ranked", score="given", pairs_per_question=2, seed=1))
    with pytest.raises(InputError, match="upvotes"):
        pmp_pairs(rows)
    with pytest.raises(InputError, match="mode"):
        pmp_pairs(rows, mode="listwise")


def _classifier(tokenizer, seed=0):
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    return transformers.LlamaForSequenceClassification(config)


def test_two_stage_run_starts_stage_two_from_stage_one_weights(tokenizer, tmp_path):
    voted = [{"question": f"q{i}", "answers": ["good answer", "bad", "meh"], "upvotes": [8, -1, 1]}
             for i in range(4)]  # fmt: skip
    finetune = [{"prompt": "hi", "chosen": "yes good", "rejected": "no bad"}] * 4
    pmp_cfg = TrainConfig(batch_size=8, max_steps=3, lr=1e-2, output_dir=str(tmp_path / "pmp"))
    ft_cfg = TrainConfig(batch_size=4, epochs=2, lr=1e-2, output_dir=str(tmp_path / "ft"))
    model = _classifier(tokenizer)
    start = copy.deepcopy(model)
    first, second = pretrain_preference_model(model, tokenizer, voted, finetune, pmp_config=pmp_cfg, config=ft_cfg)
    assert len(first.history) == 3 and len(second.history) == 2
    assert (tmp_path / "pmp" / "metrics.jsonl").exists() and (tmp_path / "ft" / "metrics.jsonl").exists()
    # the same two stages by hand give the same weights: stage 2 started from stage 1's
    by_hand = copy.deepcopy(start)
    train_reward_model(by_hand, pmp_pairs(voted), tokenizer=tokenizer, config=pmp_cfg)
    after_pmp = copy.deepcopy(by_hand)
    train_reward_model(by_hand, finetune, tokenizer=tokenizer, config=ft_cfg)
    for (k, a), b in zip(model.state_dict().items(), by_hand.state_dict().values()):
        assert torch.equal(a, b), k
    # and not from the initial weights
    no_pmp = copy.deepcopy(start)
    train_reward_model(no_pmp, finetune, tokenizer=tokenizer, config=ft_cfg)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), no_pmp.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(after_pmp.state_dict().values(), start.state_dict().values()))
