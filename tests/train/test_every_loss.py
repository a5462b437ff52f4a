"""Every registered preference and reward loss trains one step through a built-in trainer — no exclusions.

The trainer is chosen from the loss's declared inputs (:func:`pairkit.losses.spec`): listwise log-probabilities
``[batch, list]`` → :func:`train_listwise`, single-response ``policy_logps`` → :func:`train_unpaired`, reward
inputs → :func:`train_reward_model`, everything else (sequence- and token-level pairs) →
:func:`train_preference`. Per-example inputs come from data columns.
"""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, train_listwise, train_preference, train_reward_model, train_unpaired  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402
from tests.train.test_trainers import echo_pairs, params_of  # noqa: E402

ALL = (
    losses.names("preference")
    + losses.names("reward")
    + losses.names("preference_tree")
    + losses.names("reward_personalized")
)


def _trainer(name):
    spec = losses.spec(name)
    shapes = {i.name: i.shape for i in spec.input_specs}
    if spec.family in ("reward", "reward_personalized"):
        return "reward"
    if spec.family == "preference_tree":
        return "listwise"
    if shapes.get("policy_logps") == "[batch, list]":
        return "listwise"
    if "policy_logps" in shapes:
        return "unpaired"
    return "pairwise"


def _pairs(n=4):
    rows = echo_pairs(n, 7)
    for i, r in enumerate(rows):  # per-pair columns for the losses that declare them
        r.update(margin=1.0 + i, p_chosen=0.8, chosen_score=2.0, rejected_score=-1.0, rationale="it echoes")
    return rows


def test_every_loss_is_routed_to_a_trainer():
    assert {_trainer(n) for n in ALL} == {"reward", "listwise", "unpaired", "pairwise"}
    assert {"mmpo", "irepo", "dro", "tdpo1", "tdpo2", "sparse_po", "pairwise_cringe", "gpm"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_registered_loss_trains_one_step(name, tokenizer):
    kind = _trainer(name)
    config = TrainConfig(batch_size=4, lr=1e-3)
    if kind == "reward":
        # heads on embeddings (GPM, ArmoRM) give 2k-dimensional outputs
        d = 4 if any(i.shape == "[batch, 2k]" for i in losses.spec(name).input_specs) else 1
        torch.manual_seed(0)
        head = torch.nn.Linear(6, d)
        g = torch.Generator().manual_seed(1)
        rows = [
            {"chosen": torch.randn(6, generator=g), "rejected": torch.randn(6, generator=g),
             "margin": 0.5, "p_chosen": 0.9, "chosen_score": 1.0, "rejected_score": 0.0}
            for _ in range(4)
        ]  # fmt: skip
        if name == "reward_plackett_luce":
            rows = [{"responses": [r["chosen"], r["rejected"], r["chosen"] * 2], "scores": [1, 0, 2]} for r in rows]
        if losses.family_of(name) == "reward_personalized":  # PAL: prototypes and per-user logits with the head
            from pairkit.train import PALRewardModel

            head = PALRewardModel(torch.nn.Linear(6, 3), dim=3, num_prototypes=2, users=2)
            rows = [dict(r, user=i % 2) for i, r in enumerate(rows)]
        model, before = head, params_of(head)
        res = train_reward_model(head, rows, loss=name, config=config)
    else:
        model = build_model(tokenizer, seed=12)
        before = params_of(model)
        if kind == "pairwise":
            res = train_preference(model, tokenizer, _pairs(), loss=name, config=config)
        elif kind == "unpaired":
            rows = [{"prompt": "say alpha", "completion": c, "label": good, "reward": 1.0 if good else -1.0}
                    for c, good in [(" alpha", True), (" beta", False)] * 2]  # fmt: skip
            res = train_unpaired(model, tokenizer, rows, loss=name, config=config)
        else:
            responses = [" alpha", " beta", " gamma"]
            if losses.family_of(name) == "preference_tree":  # responses as lists of steps
                responses = [[" alpha", " alpha"], [" beta"], [" gamma", " beta"]]
            rows = [{"prompt": "say alpha", "responses": responses, "scores": [2.0, 0.0, 1.0]}] * 4
            res = train_listwise(model, tokenizer, rows, loss=name, config=config)
    row = res.history[0]
    assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"])
    moved = any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # at policy == reference some losses have no gradient yet (inactive hinges, IPO's target 1/(2β) is not), most do
    assert moved or row["grad_norm"] == 0.0


def test_per_pair_columns_reach_the_loss(tokenizer):
    """mmpo with a large quality margin pushes harder than with a small one (same data otherwise)."""
    grads = {}
    for margin in (0.0, 5.0):
        rows = [dict(r, margin=margin) for r in echo_pairs(4, 3)]
        res = train_preference(
            build_model(tokenizer, seed=2), tokenizer, rows, loss="mmpo", config=TrainConfig(batch_size=4)
        )
        grads[margin] = res.history[0]["grad_norm"]
    assert grads[0.0] < 1e-9 < grads[5.0]  # margin 0: target ½ = σ(0), the loss is at its minimum at step 1
    rows = [dict(r, p_chosen=p) for r, p in zip(echo_pairs(2, 3), [0.7, 1.5])]
    with pytest.raises(InputError, match=r"row 2, column 'p_chosen': expected a probability in \[0, 1\], got 1.5"):
        train_preference(build_model(tokenizer), tokenizer, rows, loss="irepo")
    with pytest.raises(InputError, match="needs 'quality_margins' per example; give it in a column named"):
        train_preference(build_model(tokenizer), tokenizer, echo_pairs(2, 3), loss="mmpo")


def _full_logits(tokenizer, rows, model, ref):
    """Token ids, scored-token mask, full log-softmaxes of policy and reference, and the realised-token picker."""
    from pairkit.train.data import collate_sequences, encode_completion

    seqs = [encode_completion(tokenizer, r["prompt"], c) for r in rows for c in (r["chosen"], r["rejected"])]
    batch = collate_sequences(seqs, tokenizer.pad_token_id)
    ids, mask = batch["input_ids"], batch["completion_mask"].clone()
    mask[:, 0] = False
    with torch.no_grad():
        lp = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
        lr = ref(input_ids=ids, attention_mask=batch["attention_mask"]).logits.log_softmax(-1)

    def tok(z):
        return torch.nn.functional.pad(z[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1), (1, 0)) * mask

    return ids, mask, lp, lr, tok


def test_token_level_tdpo_matches_a_direct_computation(tokenizer):
    """The trainer's TDPO1 step-1 loss equals the loss on per-token inputs computed from full logits."""
    from pairkit.losses import tdpo1_loss, token_kl

    rows = echo_pairs(4, 5)
    model = build_model(tokenizer, seed=4, dtype=torch.float64)
    ref = build_model(tokenizer, seed=5, dtype=torch.float64)  # a different reference: the KL terms are non-zero
    res = train_preference(
        model, tokenizer, rows, loss="tdpo1", reference=ref, config=TrainConfig(batch_size=4, max_steps=1)
    )
    ids, mask, lp, lr, tok = _full_logits(tokenizer, rows, build_model(tokenizer, seed=4, dtype=torch.float64), ref)
    kl = torch.nn.functional.pad(token_kl(lr[:, :-1], lp[:, :-1]), (1, 0)) * mask
    tp, tr = tok(lp), tok(lr)
    want = tdpo1_loss(tp[0::2], tp[1::2], tr[0::2], tr[1::2], kl[0::2], kl[1::2], beta=0.1,
                      chosen_mask=mask[0::2], rejected_mask=mask[1::2])  # fmt: skip
    assert res.history[0]["loss"] == pytest.approx(float(want), rel=1e-9)


def test_dropout_is_off_by_default_so_step_one_dpo_loss_is_ln2(tokenizer):
    import transformers

    def gpt2():
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                      resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)  # fmt: skip
        return transformers.GPT2LMHeadModel(cfg)

    rows = echo_pairs(8, 1)
    first = train_preference(gpt2(), tokenizer, rows, config=TrainConfig(batch_size=8, max_steps=1)).history[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-7)
    torch.manual_seed(3)
    noisy = train_preference(gpt2(), tokenizer, rows, config=TrainConfig(batch_size=8, max_steps=1, dropout=True))
    assert abs(noisy.history[0]["loss"] - math.log(2)) > 1e-4


def test_truncation_cuts_prompts_first_and_warns_with_counts(tokenizer):
    from pairkit.train import TruncationWarning
    from pairkit.train.data import encode_completion

    long_prompt = "alpha beta gamma delta " * 20
    p, c = encode_completion(tokenizer, long_prompt, " yes yes", max_length=16)
    full_c = encode_completion(tokenizer, "x", " yes yes")[1]
    assert c == full_c and len(p) + len(c) == 16  # the completion survives whole; the prompt keeps its end
    p, c = encode_completion(tokenizer, long_prompt, " yes " * 30, max_length=16, max_completion_length=6)
    assert len(c) == 6 and len(p) == 10
    rows = [{"prompt": long_prompt, "chosen": " yes", "rejected": " no"}] * 3 + echo_pairs(2, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_preference(build_model(tokenizer), tokenizer, rows, config=TrainConfig(batch_size=5, max_length=24))
    messages = [str(w.message) for w in caught if issubclass(w.category, TruncationWarning)]
    assert any("3 of 5 rows were truncated" in m for m in messages), messages
    assert not any("identical" in m for m in messages)
    same_start = [{"prompt": "say", "chosen": " alpha beta gamma good", "rejected": " alpha beta gamma bad"}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_preference(build_model(tokenizer), tokenizer, same_start * 2,
                         config=TrainConfig(batch_size=2, max_length=4))  # fmt: skip
    assert any("2 of 2 pairs have chosen and rejected identical" in str(w.message) for w in caught)


def test_reward_evaluation_reports_ties_apart(tokenizer):
    from pairkit.train import evaluate_reward_model

    head = torch.nn.Linear(3, 1)
    x = torch.ones(3)
    rows = [{"chosen": x, "rejected": x}] * 3 + [{"chosen": x, "rejected": -x}]
    res = evaluate_reward_model(head, rows)
    assert res["ties"] == 3 and res["n"] == 4 and res["correct"] + res["ties"] <= 4


def test_any_model_can_be_the_reference(tokenizer):
    teacher = build_model(tokenizer, seed=21)
    rows = echo_pairs(4, 2)
    res = train_preference(build_model(tokenizer, seed=20), tokenizer, rows, reference=teacher,
                           config=TrainConfig(batch_size=4, max_steps=1))  # fmt: skip
    assert abs(res.history[0]["loss"] - math.log(2)) > 1e-4  # policy ≠ reference at step 1
    assert all(not p.requires_grad for p in teacher.parameters())
    same = train_preference(build_model(tokenizer, seed=20), tokenizer, rows, reference=build_model(tokenizer, seed=20),
                            config=TrainConfig(batch_size=4, max_steps=1))  # fmt: skip
    assert same.history[0]["loss"] == pytest.approx(np.log(2), abs=1e-7)


def test_the_rationale_column_reaches_rationale_dpo(tokenizer):
    """γ > 0 adds the rationale's NLL (its value is the step-1 loss difference); a row without one is named."""
    rows = [dict(r, rationale="the first one says alpha") for r in echo_pairs(4, 3)]
    loss = {}
    for gamma in (0.0, 1.0):
        res = train_preference(
            build_model(tokenizer, seed=2), tokenizer, rows, loss="rationale_dpo",
            loss_options={"gamma": gamma}, config=TrainConfig(batch_size=4, max_steps=1),
        )  # fmt: skip
        loss[gamma] = res.history[0]["loss"]
    assert loss[1.0] > loss[0.0] + 1.0  # a random tiny LM gives the rationale a large NLL
    rows[2]["rationale"] = " "
    with pytest.raises(InputError, match="row 3: a loss scores the pair's rationale"):
        train_preference(build_model(tokenizer), tokenizer, rows, loss="rdpo")


@pytest.mark.parametrize("name", ["rise", "bmc"])
def test_edit_masks_reach_rise_and_bmc(tokenizer, name):
    """The trainer marks the tokens where chosen and rejected differ (difflib on completion ids): its step-1
    loss equals the loss on per-token inputs with those masks, computed here from full logits."""
    from pairkit.losses import get, token_edit_masks

    rows = [{"prompt": f"say {w}", "chosen": f" {w} good alpha", "rejected": f" {w} bad alpha"}
            for w in ("beta", "gamma", "delta", "yes")]  # fmt: skip
    model = build_model(tokenizer, seed=4, dtype=torch.float64)
    ref = build_model(tokenizer, seed=5, dtype=torch.float64)
    res = train_preference(
        model, tokenizer, rows, loss=name, reference=ref, config=TrainConfig(batch_size=4, max_steps=1)
    )
    ids, mask, lp, lr, tok = _full_logits(tokenizer, rows, build_model(tokenizer, seed=4, dtype=torch.float64), ref)
    tp, tr = tok(lp), tok(lr)
    comp = [ids[i][mask[i]].tolist() for i in range(len(ids))]
    ce, re_ = token_edit_masks(comp[0::2], comp[1::2])
    edit = torch.zeros_like(mask)
    for i, m in enumerate(x for pair in zip(ce, re_) for x in pair):
        edit[i, mask[i].nonzero().squeeze(1)] = torch.tensor(m)
    assert 0 < int(edit.sum()) < int(mask.sum())  # the pairs differ in some tokens, not all
    want = get(name)(tp[0::2], tp[1::2], tr[0::2], tr[1::2], chosen_edit_mask=edit[0::2],
                     rejected_edit_mask=edit[1::2], chosen_mask=mask[0::2], rejected_mask=mask[1::2])  # fmt: skip
    unmasked = get(name)(tp[0::2], tp[1::2], tr[0::2], tr[1::2], chosen_mask=mask[0::2], rejected_mask=mask[1::2])
    assert res.history[0]["loss"] == pytest.approx(float(want), rel=1e-9)
    assert float(want) != pytest.approx(float(unmasked), rel=1e-6)
