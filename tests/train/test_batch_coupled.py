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


def test_data_parallel_refuses_a_batch_coupled_loss_whose_inputs_cannot_be_gathered(monkeypatch):
    """Under data parallel a batch-coupled loss is computed on every process's rows gathered in order; a per-token
    input (its length is each process's longest row) cannot be, so the loss is refused by name before any
    collective runs (two processes faked: a gather here would hang)."""
    from pairkit.train import _steps

    monkeypatch.setattr(_steps, "rank_and_world", lambda: (0, 2))
    tokens = torch.randn(3, 5, 4)
    with pytest.raises(InputError, match="'token_graph_kd_loss' is batch-coupled.*'student_tokens'.*one process"):
        _steps.loss_values("token_graph_kd_loss", {"student_tokens": tokens, "teacher_tokens": tokens}, {})
    # a per-example loss is not gathered: called as it is
    values = _steps.loss_values("dpo", {k: torch.zeros(3) for k in ("policy_chosen_logps", "policy_rejected_logps",
                                                                   "ref_chosen_logps", "ref_rejected_logps")},
                                {"beta": 0.1})  # fmt: skip
    assert values.shape == (3,)
