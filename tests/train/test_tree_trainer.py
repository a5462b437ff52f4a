"""TPO (preference trees) through the listwise trainer: step-segmented responses to per-token tree inputs."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.losses import tpo_loss  # noqa: E402
from pairkit.train import TrainConfig, train_listwise  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

ROWS = [
    {"prompt": "say alpha", "responses": [[" alpha", " alpha beta"], [" alpha", " gamma"], [" delta", " no"]],
     "scores": [2.0, 1.0, 0.0]},
    {"prompt": "say good", "responses": [[" good"], [" bad", " bad yes"], [" good", " yes"]],
     "scores": [1.0, 0.0, 2.0]},
]  # fmt: skip


def _slow_inputs(model, tokenizer, rows):
    """Each response alone (no batch, no padding): steps tokenised one by one, log-probs by log-softmax."""
    out = {k: [] for k in ("logps", "steps", "hidden")}
    t_max = max(
        len(tokenizer(r["prompt"])["input_ids"]) + sum(len(tokenizer(s, add_special_tokens=False)["input_ids"])
                                                      for s in steps) + 1
        for r in rows for steps in r["responses"]
    )  # fmt: skip
    for r in rows:
        lp_rows, st_rows, h_rows = [], [], []
        for steps in r["responses"]:
            ids = list(tokenizer(r["prompt"])["input_ids"])
            marks = [0] * len(ids)
            for k, s in enumerate(steps, start=1):
                piece = tokenizer(s, add_special_tokens=False)["input_ids"]
                ids += piece
                marks += [k] * len(piece)
            ids.append(tokenizer.eos_token_id)
            marks.append(0)
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = model(input_ids=x).logits[0].log_softmax(-1)
                hidden = model.model(input_ids=x).last_hidden_state[0]
            lp = torch.zeros(t_max, dtype=torch.float64)
            lp[1 : len(ids)] = logits[:-1].gather(-1, x[0, 1:, None]).squeeze(-1)
            st = torch.zeros(t_max, dtype=torch.long)
            st[: len(ids)] = torch.tensor(marks)
            h = torch.zeros(t_max, hidden.shape[-1], dtype=torch.float64)
            h[: len(ids)] = hidden
            lp_rows.append(lp * (st > 0))
            st_rows.append(st)
            h_rows.append(h)
        out["logps"].append(torch.stack(lp_rows))
        out["steps"].append(torch.stack(st_rows))
        out["hidden"].append(torch.stack(h_rows))
    return {k: torch.stack(v) for k, v in out.items()}


def test_tpo_step_one_equals_a_slow_per_response_computation(tokenizer):
    policy = build_model(tokenizer, seed=3, dtype=torch.float64)
    reference = build_model(tokenizer, seed=4, dtype=torch.float64)
    want_policy, want_ref = _slow_inputs(policy, tokenizer, ROWS), _slow_inputs(reference, tokenizer, ROWS)
    scores = torch.tensor([r["scores"] for r in ROWS], dtype=torch.float64)
    want = tpo_loss(want_policy["logps"], want_ref["logps"], scores, want_policy["steps"], want_policy["hidden"],
                    beta=0.5)  # fmt: skip
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    res = train_listwise(policy, tokenizer, ROWS, loss="tpo", beta=0.5, reference=reference,
                         config=TrainConfig(batch_size=2, max_steps=1))  # fmt: skip
    row = res.history[0]
    assert row["loss"] == pytest.approx(float(want), rel=1e-9)
    assert abs(row["loss"] - math.log(2)) > 1e-4 and math.isfinite(row["grad_norm"])
    assert any(not torch.equal(v, policy.state_dict()[k]) for k, v in before.items())


def test_tpo_with_the_initial_model_as_reference_starts_at_ln2_and_plain_responses_are_one_step(tokenizer):
    rows = [{"prompt": "say alpha", "responses": [" alpha", " beta", " gamma"], "scores": [2, 0, 1]}] * 2
    res = train_listwise(build_model(tokenizer, seed=1), tokenizer, rows, loss="tpo",
                         config=TrainConfig(batch_size=2, max_steps=1))  # fmt: skip
    assert res.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-7)  # policy = reference: every reward 0
    assert res.history[0]["accuracy"] == 0.0  # all rewards tie: the best response is not (yet) ranked first


def test_tpo_bad_rows_raise(tokenizer):
    model = build_model(tokenizer)
    with pytest.raises(InputError, match=r"row 1, response 2: steps must be non-empty strings"):
        train_listwise(model, tokenizer, [{"prompt": "p", "responses": [[" a"], [""]], "scores": [1, 0]}], loss="tpo")
    mixed = [ROWS[0], {"prompt": "q", "responses": [[" a"], [" b"]], "scores": [1, 0]}]
    with pytest.raises(InputError, match="same number of responses"):
        train_listwise(model, tokenizer, mixed, loss="tpo", config=TrainConfig(batch_size=2))
