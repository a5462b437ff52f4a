"""CLoud reward models on a tiny Llama from a config: the three stages, step 1 by hand, k-critique scoring, seeds."""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import CLoudRewardModel, TrainConfig, train_cloud_reward_model  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

ROWS = [
    {"prompt": "Is two bigger than one?", "chosen": "yes", "rejected": "no",
     "chosen_critique": "Correct and short.", "rejected_critique": "Wrong: two is bigger."},
    {"prompt": "Say hello.", "chosen": "hello", "rejected": "bye",
     "chosen_critique": "It says hello as asked.", "rejected_critique": "It does not say hello."},
    {"prompt": "Name a colour.", "chosen": "blue", "rejected": "seven",
     "chosen_critique": "Blue is a colour.", "rejected_critique": "Seven is a number, not a colour."},
]  # fmt: skip
GEN = {"max_new_tokens": 6, "temperature": 1.0}


def _run(tokenizer, tmp_path=None, lr=1e-2, seed=0):
    lm = build_model(tokenizer, seed=seed)
    sft = TrainConfig(batch_size=6, epochs=2, lr=1e-2, output_dir=None if tmp_path is None else str(tmp_path / "sft"))
    rm = TrainConfig(batch_size=3, max_steps=1, lr=lr, output_dir=None if tmp_path is None else str(tmp_path / "rm"))
    return train_cloud_reward_model(lm, tokenizer, ROWS, sft_config=sft, config=rm, lm_weight=0.7, seed=seed, **GEN)


def test_three_stages_run_and_step_one_is_bt_plus_lambda_lm_by_hand(tokenizer, tmp_path):
    # lr 1e-30: stage 3's single update leaves every weight as it was, so step 1 can be recomputed afterwards
    res = _run(tokenizer, tmp_path, lr=1e-30)
    assert len(res.sft.history) == 2 and res.sft.history[-1]["lm"] < res.sft.history[0]["lm"]
    assert len(res.reward.history) == 1 and len(res.critiques) == 3
    assert (tmp_path / "sft" / "metrics.jsonl").exists() and (tmp_path / "rm" / "checkpoints").exists()
    model = res.model
    lm, tok = model.lm, model.tokenizer
    eos = tok.eos_token_id
    total = 0.0
    model.eval()
    for row, crit in zip(ROWS, res.critiques):
        rewards, nll_sum, count = [], 0.0, 0
        sides = ((row["chosen"], crit["chosen_critique"]), (row["rejected"], crit["rejected_critique"]))
        for response, critique in sides:
            text = f"User: {row['prompt']}\nAssistant: {response}\nCritique of the assistant's answer: "
            prefix = tok(text)["input_ids"]
            comp = tok(critique, add_special_tokens=False)["input_ids"] + [eos]
            ids = torch.tensor([prefix + comp])
            with torch.no_grad():
                h = lm.get_decoder()(input_ids=ids).last_hidden_state
                logits = lm(input_ids=ids).logits
                rewards.append(float(model.head(h[0, -1])[0]))
                logp = torch.log_softmax(logits[0, :-1].double(), -1)[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
            nll_sum += -float(logp[len(prefix) - 1 :].sum())
            count += len(comp)
        bt = -float(torch.nn.functional.logsigmoid(torch.tensor(rewards[0] - rewards[1], dtype=torch.float64)))
        total += bt + 0.7 * nll_sum / count
    assert res.reward.history[0]["loss"] == pytest.approx(total / 3, rel=1e-5)


def test_scoring_with_k_critiques_averages_k_rewards_and_is_seeded(tokenizer):
    model = CLoudRewardModel(build_model(tokenizer, seed=1), tokenizer, seed=1)
    prompts, responses = ["Say hello.", "Name a colour."], ["hello", "seven"]
    rewards, critiques = model.score(prompts, responses, k=3, seed=5, **GEN)
    assert rewards.shape == (2,) and [len(c) for c in critiques] == [3, 3]
    for i in range(2):
        each = model.rewards([prompts[i]] * 3, [responses[i]] * 3, critiques[i])
        assert float(rewards[i]) == pytest.approx(float(each.mean()), rel=1e-6)
    again, critiques2 = model.score(prompts, responses, k=3, seed=5, **GEN)
    assert critiques2 == critiques and torch.equal(again, rewards)
    one, _ = model.score(prompts, responses, k=1, seed=5, **GEN)
    assert one.shape == (2,)


def test_training_is_reproducible_with_seeds(tokenizer):
    a, b = _run(tokenizer), _run(tokenizer)
    assert a.critiques == b.critiques
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.reward.history[0]["loss"] == b.reward.history[0]["loss"]


def test_missing_oracle_critique_is_named(tokenizer):
    rows = copy.deepcopy(ROWS)
    del rows[1]["rejected_critique"]
    with pytest.raises(InputError, match="row 2.*rejected_critique"):
        train_cloud_reward_model(build_model(tokenizer), tokenizer, rows)
