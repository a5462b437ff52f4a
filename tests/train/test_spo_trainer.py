"""SPO through the preference trainer: degraded samples from key-content columns, the degree head, step-1 loss."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, spo_degraded_samples, train_preference  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402
from tests.train.test_every_loss import _full_logits  # noqa: E402

ROWS = [
    {"prompt": "say alpha", "chosen": " alpha beta alpha gamma", "rejected": " delta gamma",
     "chosen_key_content": [" beta", " gamma"], "rejected_key_content": [" delta"]},
    {"prompt": "say beta", "chosen": " beta alpha", "rejected": " alpha gamma delta",
     "chosen_key_content": [" alpha"], "rejected_key_content": [" gamma", " delta", " alpha"]},
    {"prompt": "say gamma", "chosen": " gamma alpha", "rejected": " beta",
     "chosen_key_content": [" alpha"], "rejected_key_content": [" beta"]},
    {"prompt": "say delta", "chosen": " delta beta", "rejected": " gamma alpha",
     "chosen_key_content": [" beta"], "rejected_key_content": [" gamma"]},
]  # fmt: skip


def test_degraded_samples_remove_the_counted_spans_of_the_labelled_side():
    for seed in range(5):
        samples, classes = spo_degraded_samples(ROWS, ROWS, seed)
        degrees = classes // 2
        assert degrees == 4  # 1 + the most key spans in a row (3)
        for row, (prompt, text, label) in zip(ROWS, samples):
            side, j = divmod(label, degrees)
            response, spans = (row["chosen"], row["chosen_key_content"]) if side == 0 else \
                (row["rejected"], row["rejected_key_content"])  # fmt: skip
            assert prompt == row["prompt"] and j <= len(spans)
            assert len(text) == len(response) - sum(len(s) for s in spans if s not in text)
            assert sum(s not in text for s in spans) == j  # the spans here occur once each
    labels = [lab for seed in range(40) for *_, lab in spo_degraded_samples(ROWS, ROWS, seed)[0]]
    assert {lab // 4 for lab in labels} == {0, 1} and len(set(labels)) > 4  # both sides, several degrees drawn


def test_bad_key_content_is_named_by_row_and_column():
    bad = [dict(ROWS[0]), dict(ROWS[1], chosen_key_content=[" omega"])]
    with pytest.raises(InputError, match=r"row 2, column 'chosen_key_content': ' omega' does not occur"):
        spo_degraded_samples(bad, bad, 0)
    mixed = [dict(ROWS[0]), {k: v for k, v in ROWS[1].items() if not k.endswith("key_content")}]
    with pytest.raises(InputError, match="row 2: SPO's degraded samples need"):
        spo_degraded_samples(mixed, mixed, 0)


def test_step_one_loss_equals_dpo_plus_the_degree_cross_entropy_by_hand(tokenizer):
    from pairkit.train.data import encode_completion

    dt = torch.float64
    ref = build_model(tokenizer, seed=5, dtype=dt)  # a reference other than the policy: the DPO term is not ln 2
    torch.manual_seed(9)
    head = torch.nn.Linear(32, 8, dtype=dt)
    head0 = {k: v.clone() for k, v in head.state_dict().items()}
    res = train_preference(build_model(tokenizer, seed=4, dtype=dt), tokenizer, ROWS, loss="spo", reference=ref,
                           loss_options={"ssl_weight": 0.5}, degree_head=head,
                           config=TrainConfig(batch_size=4, max_steps=1, seed=3))  # fmt: skip
    model = build_model(tokenizer, seed=4, dtype=dt)
    ids, mask, lp, lr, tok = _full_logits(tokenizer, ROWS, model, ref)
    pol, rfr = tok(lp).sum(1), tok(lr).sum(1)
    margin = (pol[0::2] - rfr[0::2]) - (pol[1::2] - rfr[1::2])
    dpo = [-math.log(1 / (1 + math.exp(-0.1 * float(m)))) for m in margin]
    head.load_state_dict(head0)
    ce = []
    for prompt, text, label in spo_degraded_samples(ROWS, ROWS, 3)[0]:
        p, c = encode_completion(tokenizer, prompt, text)
        with torch.no_grad():
            h = model.model(input_ids=torch.tensor([p + c])).last_hidden_state[0, -1]
            z = head(h)
        ce.append(float(torch.logsumexp(z, 0) - z[label]))
    want = np.mean(dpo) + 0.5 * np.mean(ce)
    assert res.history[0]["loss"] == pytest.approx(want, rel=1e-9)


def test_default_head_is_trained_and_missing_columns_warn(tokenizer):
    model = build_model(tokenizer, seed=1)
    res = train_preference(model, tokenizer, ROWS, loss="spo", config=TrainConfig(batch_size=4, max_steps=2))
    assert model.spo_degree_head.out_features == 8 and math.isfinite(res.history[-1]["loss"])
    plain = [{k: v for k, v in r.items() if not k.endswith("key_content")} for r in ROWS]
    with pytest.warns(UserWarning, match="preference-degree term is left out"):
        train_preference(build_model(tokenizer), tokenizer, plain, loss="spo", config=TrainConfig(max_steps=1))
    with pytest.raises(InputError, match="degree_head is SPO's"):
        train_preference(build_model(tokenizer), tokenizer, plain, loss="dpo", degree_head=torch.nn.Linear(32, 8))
    with pytest.raises(InputError, match=r"degree_head must map \[hidden=32\] to \[8\]"):
        train_preference(build_model(tokenizer), tokenizer, ROWS, loss="spo", degree_head=torch.nn.Linear(32, 6))
