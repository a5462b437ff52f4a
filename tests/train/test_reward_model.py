import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, evaluate_reward_model, train_reward_model  # noqa: E402
from tests.train.test_trainers import echo_pairs  # noqa: E402


def linear_pairs(n, d, seed):
    """Features with a true linear reward; the chosen side wins with BT probability."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    p = torch.sigmoid(2.0 * (a - b) @ w)
    a_wins = torch.rand(n, generator=g) < p
    chosen, rejected = torch.where(a_wins[:, None], a, b), torch.where(a_wins[:, None], b, a)
    return [{"chosen": c, "rejected": r} for c, r in zip(chosen, rejected)], w


def test_linear_head_learns_bt_direction_and_beats_chance():
    rows, w = linear_pairs(800, 8, 0)
    train, test = rows[:400], rows[400:]
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 1)
    before = evaluate_reward_model(head, test)
    res = train_reward_model(head, train, config=TrainConfig(epochs=10, batch_size=100, lr=5e-2))
    after = evaluate_reward_model(head, test)
    cos = torch.nn.functional.cosine_similarity(head.weight[0].detach(), w, dim=0)
    assert cos > 0.95
    assert after["ci_low"] > 0.7 and after["accuracy"] > before["accuracy"]
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert after["n"] == 400 and 0 <= after["p_value"] < 1e-6


def test_linear_head_matches_logistic_regression_mle():
    sklearn = pytest.importorskip("sklearn.linear_model")
    train, _ = linear_pairs(300, 4, 2)
    d = torch.stack([r["chosen"] - r["rejected"] for r in train]).double().numpy()
    x, y = np.concatenate([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))]
    ref = sklearn.LogisticRegression(fit_intercept=False, C=1e6, max_iter=5000, tol=1e-10).fit(x, y).coef_[0]
    head = torch.nn.Linear(4, 1, bias=False).double()
    rows = [{"chosen": r["chosen"].double(), "rejected": r["rejected"].double()} for r in train]
    config = TrainConfig(epochs=120, batch_size=300, lr=5e-2, max_grad_norm=None, schedule="constant")
    train_reward_model(head, rows, config=config)
    np.testing.assert_allclose(head.weight[0].detach().numpy(), ref, rtol=2e-3, atol=2e-3)


def test_sequence_classifier_on_text_pairs(tokenizer):
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(config)
    train, held = echo_pairs(64, 0), echo_pairs(64, 1)
    before = evaluate_reward_model(model, held, tokenizer=tokenizer)["accuracy"]
    res = train_reward_model(
        model,
        train,
        tokenizer=tokenizer,
        loss="reward_bradley_terry",
        config=TrainConfig(epochs=12, batch_size=16, lr=2e-2),
    )
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]
    after = evaluate_reward_model(model, held, tokenizer=tokenizer)["accuracy"]
    assert after > 0.85 and after > before + 0.2


def test_plackett_luce_on_feature_lists_and_centring_combination():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, generator=g)
    rows = []
    for k in range(90):
        items = torch.randn(3 + k % 2, 6, generator=g)  # ragged lists of 3 and 4
        rows.append({"responses": list(items), "scores": (items @ w).tolist()})
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 1)
    res = train_reward_model(
        head, rows, loss="reward_plackett_luce", config=TrainConfig(epochs=10, batch_size=16, lr=5e-2)
    )
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]
    assert res.history[-1]["accuracy"] > 0.8  # top-scored response ranked first
    pairs = [
        {"chosen": r["responses"][int(np.argmax(r["scores"]))], "rejected": r["responses"][int(np.argmin(r["scores"]))]}
        for r in rows
    ]
    res = train_reward_model(
        head, pairs, loss="reward_bt+0.01*reward_centering", config=TrainConfig(epochs=3, batch_size=16, lr=5e-2)
    )
    assert res.history[-1]["accuracy"] > 0.9
    with pytest.raises(InputError, match="family"):
        train_reward_model(head, pairs, loss="dpo")


def _two_user_pairs(n, d, seed):
    """Users 'a' and 'b' with opposite ideal points ±w: each prefers the response nearer to theirs."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    rows = []
    for i in range(n):
        user = "a" if i % 2 == 0 else "b"
        ideal = w if user == "a" else -w
        x, y = torch.randn(d, generator=g), torch.randn(d, generator=g)
        near = (x - ideal).norm() < (y - ideal).norm()
        rows.append({"chosen": x if near else y, "rejected": y if near else x, "user": user})
    return rows


def test_pal_trains_prototypes_user_mixtures_and_projection_from_the_user_column():
    from pairkit.losses import pal_ideal_point_loss
    from pairkit.train import PALRewardModel

    rows = _two_user_pairs(8, 3, 0)
    torch.manual_seed(0)
    model = PALRewardModel(torch.nn.Linear(3, 3), dim=3, num_prototypes=2, users=["a", "b"])
    with torch.no_grad():
        model.user_logits.copy_(torch.tensor([[1.0, -1.0], [-0.5, 0.5]]))
        x = torch.stack([r["chosen"] for r in rows]), torch.stack([r["rejected"] for r in rows])
        users = torch.tensor([0 if r["user"] == "a" else 1 for r in rows])
        want = pal_ideal_point_loss(model(x[0]), model(x[1]), model.prototypes, model.user_logits[users], scale=2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_reward_model(model, rows, loss="pal", loss_options={"scale": 2.0},
                             config=TrainConfig(batch_size=8, max_steps=1, lr=1e-2))  # fmt: skip
    row = res.history[0]
    assert row["loss"] == pytest.approx(float(want), rel=1e-6) and np.isfinite(row["grad_norm"])
    assert all(not torch.equal(before[k], model.state_dict()[k]) for k in before)  # every parameter moved


def test_pal_learns_two_opposite_users():
    from pairkit.train import PALRewardModel

    rows = _two_user_pairs(200, 3, 1)
    torch.manual_seed(1)
    model = PALRewardModel(torch.nn.Linear(3, 3), dim=3, num_prototypes=2, users=["a", "b"])
    logs = []
    train_reward_model(model, rows, loss="pal", loss_options={"scale": 4.0}, callback=logs.append,
                       config=TrainConfig(batch_size=100, epochs=30, lr=5e-2, schedule="constant"))  # fmt: skip
    # one shared point cannot serve both users (chance is 0.5); the two mixtures can
    assert np.mean([r["accuracy"] for r in logs[-4:]]) > 0.8
    mix = torch.softmax(model.user_logits.detach(), -1)
    assert (mix[0] - mix[1]).abs().max() > 0.3


def test_pal_needs_its_model_and_a_known_user_per_row():
    from pairkit.train import PALRewardModel

    rows = _two_user_pairs(4, 3, 2)
    with pytest.raises(InputError, match="PALRewardModel"):
        train_reward_model(torch.nn.Linear(3, 3), rows, loss="pal")
    model = PALRewardModel(torch.nn.Linear(3, 3), dim=3, num_prototypes=2, users=["a", "b"])
    with pytest.raises(InputError, match="row 1: the loss needs each pair's user"):
        train_reward_model(model, [{k: v for k, v in r.items() if k != "user"} for r in rows], loss="pal")
    with pytest.raises(InputError, match="row 2, column 'user': unknown user 'zed'"):
        train_reward_model(model, [rows[0], dict(rows[1], user="zed")], loss="pal")
    with pytest.raises(InputError, match="num_prototypes"):
        PALRewardModel(torch.nn.Linear(3, 3), dim=3, num_prototypes=0, users=2)
