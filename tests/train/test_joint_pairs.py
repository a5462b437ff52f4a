"""Joint instruction-response preferences (DOVE): each response under its own prompt, through train_preference."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, to_pairs, train_preference  # noqa: E402
from pairkit.train._steps import pair_examples as _pair_examples  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

ROWS = [
    {"chosen_prompt": "say alpha", "chosen": " alpha", "rejected_prompt": "say beta", "rejected": " gamma"},
    {"chosen_prompt": "say beta", "chosen": " beta", "rejected_prompt": "say alpha", "rejected": " beta"},
]


def test_joint_rows_keep_each_prompt_and_other_consumers_refuse_them(tokenizer):
    pairs = to_pairs(ROWS, joint=True)
    assert pairs[0] == {"prompt": "say alpha", "chosen": " alpha", "rejected": " gamma", "rejected_prompt": "say beta"}
    # the same completion under another prompt is a real preference (not an identical pair)
    assert pairs[1]["chosen"] == pairs[1]["rejected"] and pairs[1]["rejected_prompt"] == "say alpha"
    with pytest.raises(InputError, match="joint preferences"):
        to_pairs(ROWS)
    with pytest.raises(InputError, match="both 'chosen_prompt' and 'rejected_prompt'"):
        to_pairs([{"chosen_prompt": "x", "chosen": "a", "rejected": "b"}], joint=True)
    ex = _pair_examples(tokenizer, ROWS, TrainConfig(), joint=True)
    chosen_seq, rejected_seq = ex[0]["seqs"]
    same_prompt = _pair_examples(tokenizer, [{**ROWS[0], "rejected_prompt": "say alpha"}], TrainConfig(), joint=True)
    assert chosen_seq[0] != rejected_seq[0]  # the rejected response is encoded under its own prompt
    assert same_prompt[0]["seqs"][1][0] == chosen_seq[0]


def test_dove_trains_through_train_preference(tokenizer):
    assert losses.get("dove") is losses.dpo_loss
    model = build_model(tokenizer, seed=3)
    before = [p.detach().clone() for p in model.parameters()]
    res = train_preference(model, tokenizer, ROWS * 2, loss="dove", config=TrainConfig(batch_size=4, lr=1e-3))
    assert res.step >= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
