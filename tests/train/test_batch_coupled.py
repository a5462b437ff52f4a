"""Batch-coupled losses are refused under gradient accumulation (which would silently change their objective)."""

import pytest

torch = pytest.importorskip("torch")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, train_preference  # noqa: E402
from pairkit.train._loop import check_batch_coupled  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

ROWS = [{"prompt": "say a", "chosen": " a a", "rejected": " b b"}] * 4


@pytest.mark.parametrize("loss", ["dr_dpo", "aot", "aot_unpaired", "sft", "pair_sft"])
def test_batch_coupled_loss_is_refused_under_accumulation(loss):
    with pytest.raises(InputError, match="batch-coupled.*grad_accum=2"):
        check_batch_coupled(["dpo", loss], 2)
    check_batch_coupled(["dpo", loss], 1)  # the whole batch at once: fine
    check_batch_coupled(["dpo", "ipo"], 4)  # per-pair losses may be accumulated


def test_trainer_refuses_before_training(tokenizer):
    model = build_model(tokenizer, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match="'dr_dpo' is batch-coupled"):
        train_preference(
            model, tokenizer, ROWS, loss="dpo+dr_dpo", config=TrainConfig(batch_size=4, grad_accum=2, max_steps=1)
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
