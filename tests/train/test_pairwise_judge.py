"""Pairwise judge trainer: a tiny Llama sequence classifier built from a config reads (context, A, B)."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from pairkit.errors import InputError, PairkitWarning  # noqa: E402
from pairkit.judges import PairwiseClassifierJudge, Request, judge_from_config  # noqa: E402
from pairkit.judges.pairwise_classifier import encode_pairwise  # noqa: E402
from pairkit.train import (  # noqa: E402
    TrainConfig,
    evaluate_pairwise_judge,
    read_pairwise_judgments,
    save_pairwise_judge,
    train_pairwise_judge,
)
from tests.train.conftest import write_jsonl  # noqa: E402

NOUNS = ["alpha", "beta", "gamma", "delta", "yes", "no"]


def classifier(tokenizer, labels, seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, num_labels=labels, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return transformers.LlamaForSequenceClassification(config)


def votes(n, seed, ties=False):
    """Learnable: 'good …' beats 'bad …'; with ties, two 'good' answers tie. Winners on both sides."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x, y = rng.choice(NOUNS, 2, replace=False)
        kind = rng.integers(3 if ties else 2)
        if kind == 2:
            rows.append({"prompt": f"q {i % 7}", "response_a": f"good {x}", "response_b": f"good {y}", "winner": "tie"})
        else:
            good, bad = f"good {x}", f"bad {y}"
            a, b, w = (good, bad, "model_a") if kind == 0 else (bad, good, "model_b")
            rows.append({"prompt": f"q {i % 7}", "response_a": a, "response_b": b, "winner": w})
    return rows


def test_rows_in_both_formats_and_bad_outcomes(tmp_path):
    pairs = read_pairwise_judgments([{"prompt": "p", "chosen": "x", "rejected": "y"}])
    assert pairs == [{"context": "p", "a": "x", "b": "y", "label": 0}]
    rows = [
        {"question": "q", "a": "1", "b": "2", "outcome": 0},
        {"context": "q", "answer_a": "1", "answer_b": "2", "label": "tie"},
        {"prompt": [{"role": "user", "content": "hi"}], "response_a": "1", "response_b": "2", "winner": "A"},
    ]
    assert [r["label"] for r in read_pairwise_judgments(rows)] == [1, 2, 0]
    assert read_pairwise_judgments(rows)[2]["context"].endswith("Human: hi\n\nAssistant:")
    with pytest.warns(PairkitWarning, match="dropped 1 tie rows of 3"):
        assert len(read_pairwise_judgments(rows, ties="drop")) == 2
    path = write_jsonl(tmp_path / "v.jsonl", [rows[0], {"prompt": "q", "a": "1", "b": "2", "winner": 0.7}])
    with pytest.raises(InputError, match=r"v.jsonl, row 2, column 'winner': outcome 0.7"):
        read_pairwise_judgments(path)
    with pytest.raises(InputError, match="row 1: needs 'chosen'/'rejected'"):
        read_pairwise_judgments([{"prompt": "q", "a": "1"}])


def test_encoding_is_symmetric_and_capped(tokenizer):
    ctx, a, b = "a long context " * 20, "first answer text", "second"
    (ab, ba), (short,) = (
        encode_pairwise(tokenizer, [ctx, ctx], [a, b], [b, a], max_length=40),
        encode_pairwise(tokenizer, ["q"], ["x"], ["y"]),
    )
    sep, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    assert len(ab) == len(ba) == 40 and ab[0] == bos and ab[-1] == sep
    ids = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert short == [bos, *ids("q"), sep, *ids("x"), sep, *ids("y"), sep]
    # the two answers' spans are exchanged, the context (cut from the left) is the same
    cut_ab, cut_ba = [i for i, t in enumerate(ab) if t == sep], [i for i, t in enumerate(ba) if t == sep]
    assert ab[1 : cut_ab[0]] == ba[1 : cut_ba[0]] == ids(ctx)[-(cut_ab[0] - 1) :]
    assert ab[cut_ab[0] + 1 : cut_ab[1]] == ba[cut_ba[1] + 1 : cut_ba[2]] == ids(a)
    with pytest.raises(InputError, match="max_length=4"):
        encode_pairwise(tokenizer, ["q"], ["x"], ["y"], max_length=4)


def test_first_step_loss_equals_hand_computed_reference(tokenizer):
    rows = votes(6, 1, ties=True)
    model = classifier(tokenizer, 3)
    lam = 0.7
    parsed = read_pairwise_judgments(rows)
    ref = []
    with torch.no_grad():
        for r in parsed:  # one example at a time, no padding: an independent path through the model
            (ab,) = encode_pairwise(tokenizer, [r["context"]], [r["a"]], [r["b"]])
            (ba,) = encode_pairwise(tokenizer, [r["context"]], [r["b"]], [r["a"]])
            p = torch.softmax(model(torch.tensor([ab])).logits[0], -1).tolist()
            q = torch.softmax(model(torch.tensor([ba])).logits[0], -1).tolist()
            y = r["label"]
            y_swapped = {0: 1, 1: 0, 2: 2}[y]
            ce = -0.5 * (math.log(p[y]) + math.log(q[y_swapped]))
            sym = (p[0] - q[1]) ** 2 + (p[1] - q[0]) ** 2 + (p[2] - q[2]) ** 2
            ref.append(ce + lam * sym)
    config = TrainConfig(batch_size=6, max_steps=1, lr=1e-3)
    result = train_pairwise_judge(model, tokenizer, rows, symmetry=lam, config=config)
    assert result.history[0]["loss"] == pytest.approx(np.mean(ref), rel=1e-5)


def _acs(z, y, tau, rho):
    """Mao, Mohri & Zhong's rho-margin comp-sum loss of one example, written from their definition:
    Phi^tau(sum_{y' != y} Phi_rho(h_y - h_y')) with Phi_rho(t) = min(max(0, 1 - t / rho), 1)."""
    u = sum(min(max(0.0, 1.0 - (z[y] - z[k]) / rho), 1.0) for k in range(len(z)) if k != y)
    return math.log1p(u) if tau == 1 else ((1 + u) ** (1 - tau) - 1) / (1 - tau)


def test_a_classification_loss_replaces_the_cross_entropy_step_one_by_hand(tokenizer):
    rows = votes(6, 4, ties=True)
    model = classifier(tokenizer, 3, seed=3)
    lam, tau, rho = 0.3, 0.5, 2.0
    ref = []
    with torch.no_grad():
        for r in read_pairwise_judgments(rows):
            (ab,) = encode_pairwise(tokenizer, [r["context"]], [r["a"]], [r["b"]])
            (ba,) = encode_pairwise(tokenizer, [r["context"]], [r["b"]], [r["a"]])
            p = torch.softmax(model(torch.tensor([ab])).logits[0].double(), -1)
            q = torch.softmax(model(torch.tensor([ba])).logits[0].double(), -1)
            y, y_swapped = r["label"], {0: 1, 1: 0, 2: 2}[r["label"]]
            term = 0.5 * (_acs(p.log().tolist(), y, tau, rho) + _acs(q.log().tolist(), y_swapped, tau, rho))
            ref.append(term + lam * float(((p - q[[1, 0, 2]]) ** 2).sum()))
    config = TrainConfig(batch_size=6, max_steps=1, lr=1e-3)
    result = train_pairwise_judge(model, tokenizer, rows, symmetry=lam, loss="adversarial_comp_sum",
                                  loss_options={"tau": tau, "rho": rho}, config=config)  # fmt: skip
    assert result.history[0]["loss"] == pytest.approx(np.mean(ref), rel=1e-5)


def test_every_classification_loss_trains_the_judge_or_is_refused_by_name(tokenizer):
    from pairkit import losses
    from pairkit.train.pairwise_judge import INPUTS as JUDGE_INPUTS

    refused = [n for n in losses.names("classification")
               if not {i.name for i in losses.spec(n).input_specs if i.required} <= {k for k, _ in JUDGE_INPUTS}]
    assert refused == ["p2c_loss"]  # fmt: skip

    for name in losses.names("classification"):
        needs = {i.name for i in losses.spec(name).input_specs if i.required}
        model = classifier(tokenizer, 2, seed=1)
        before = [p.detach().clone() for p in model.parameters()]
        config = TrainConfig(batch_size=4, max_steps=1, lr=1e-3)
        if not needs <= {name for name, _ in JUDGE_INPUTS}:  # P2C: two same-class inputs, a preference head
            with pytest.raises(InputError, match=f"{name}.*train it with train_semi_supervised"):
                train_pairwise_judge(model, tokenizer, votes(4, 5), loss=name, config=config)
            continue
        row = train_pairwise_judge(model, tokenizer, votes(4, 5), loss=name, config=config).history[0]
        assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]), name
        assert row["grad_norm"] == 0 or any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), name
    with pytest.raises(InputError, match="family 'preference'"):
        train_pairwise_judge(classifier(tokenizer, 2), tokenizer, votes(4, 5), loss="dpo")


def test_pass_at_n_and_ensloss_step_one_by_hand(tokenizer):
    """pass@N on the correct verdict's probability; EnsLoss on the log-odds of first over second (no ties)."""
    from pairkit.losses import ensloss_derivatives

    rows = votes(6, 7)
    model = classifier(tokenizer, 2, seed=5)
    lam, big_n = 0.4, 4
    p_rows, q_rows, labels = [], [], []
    with torch.no_grad():
        for r in read_pairwise_judgments(rows):
            (ab,) = encode_pairwise(tokenizer, [r["context"]], [r["a"]], [r["b"]])
            (ba,) = encode_pairwise(tokenizer, [r["context"]], [r["b"]], [r["a"]])
            p_rows.append(torch.softmax(model(torch.tensor([ab])).logits[0].double(), -1))
            q_rows.append(torch.softmax(model(torch.tensor([ba])).logits[0].double(), -1))
            labels.append(r["label"])
    p, q, y = torch.stack(p_rows), torch.stack(q_rows), torch.tensor(labels)
    sym = ((p - q[:, [1, 0]]) ** 2).sum(-1)
    p_y, q_y = p.gather(1, y[:, None]).squeeze(1), q.gather(1, (1 - y)[:, None]).squeeze(1)
    ref = 0.5 * (-torch.log(1 - (1 - p_y) ** big_n) - torch.log(1 - (1 - q_y) ** big_n)) + lam * sym
    config = TrainConfig(batch_size=6, max_steps=1, lr=1e-3)
    res = train_pairwise_judge(model, tokenizer, rows, symmetry=lam, loss="pass_at_n_loss",
                               loss_options={"n": big_n}, config=config)  # fmt: skip
    assert res.history[0]["loss"] == pytest.approx(float(ref.mean()), rel=1e-5)
    # EnsLoss (symmetry 0): per order the mean of sg(g)·m with m = ±(log p_first − log p_second) the signed margin
    # (+ when the answer shown first won) and g the sampler's derivatives at the step's seed
    from pairkit.train.pairwise_judge import step_seed

    res = train_pairwise_judge(classifier(tokenizer, 2, seed=5), tokenizer, rows, symmetry=0.0, loss="ensloss",
                               loss_options={"seed": 11}, config=TrainConfig(batch_size=6, max_steps=1, lr=1e-3))
    seed = step_seed({"seed": 11}, [{"index": i} for i in range(6)])
    halves = []
    for probs, first_won in ((p, y == 0), (q, y == 1)):  # the swapped order: the first shown is the true b
        m = (probs[:, 0].log() - probs[:, 1].log()) * (2.0 * first_won.double() - 1.0)
        halves.append((ensloss_derivatives(m, seed=seed) * m).mean())
    assert res.history[0]["loss"] == pytest.approx(float(0.5 * (halves[0] + halves[1])), rel=1e-4)
    other = train_pairwise_judge(classifier(tokenizer, 2, seed=5), tokenizer, rows, symmetry=0.0, loss="ensloss",
                                 loss_options={"seed": 12}, config=TrainConfig(batch_size=6, max_steps=1, lr=1e-3))
    assert other.history[0]["loss"] != res.history[0]["loss"]  # another seed, another random loss
    with pytest.raises(InputError, match="binary labels.*ties='drop'"):
        train_pairwise_judge(classifier(tokenizer, 3), tokenizer, votes(6, 1, ties=True), loss="ensloss")


def test_smooth_adversarial_comp_sum_perturbs_the_embeddings(tokenizer):
    """ν = 0: the comp-sum loss (cross-entropy at τ = ρ = 1), the same step as the default; ν > 0 adds the change of
    the margins at the FGSM point, larger for a larger ε."""
    rows = votes(6, 8)
    config = TrainConfig(batch_size=6, max_steps=1, lr=1e-3)

    def first(**kw):
        return train_pairwise_judge(classifier(tokenizer, 2, seed=6), tokenizer, rows, config=config, **kw).history[0]

    base = first()
    assert first(loss="smooth_adversarial_comp_sum", loss_options={"nu": 0.0})["loss"] == pytest.approx(
        base["loss"], rel=1e-6)  # fmt: skip
    torch.manual_seed(0)
    small = first(loss="smooth_adversarial_comp_sum", adversarial_epsilon=1e-3)["loss"]
    torch.manual_seed(0)
    large = first(loss="smooth_adversarial_comp_sum", adversarial_epsilon=1e-1)["loss"]
    assert base["loss"] < small < large
    with pytest.raises(InputError, match="adversarial_epsilon must be"):
        first(loss="smooth_adversarial_comp_sum", adversarial_epsilon=0.0)


def test_smooth_adversarial_step_one_equals_an_fgsm_computed_by_hand(tokenizer):
    """The adversarial point: the random start the trainer draws (same seed), one signed-gradient step of the squared
    change of the margins, the loss comp-sum(clean) + ν‖Δ(x') − Δ(x)‖ averaged over both orders, plus symmetry."""
    from pairkit.train.data import collate_sequences

    rows, eps, nu, lam = votes(5, 9), 0.05, 0.7, 0.2
    model = classifier(tokenizer, 2, seed=8)
    parsed = read_pairwise_judgments(rows)
    ctx, a, b = [r["context"] for r in parsed], [r["a"] for r in parsed], [r["b"] for r in parsed]
    batch = collate_sequences([(x, []) for x in encode_pairwise(tokenizer, ctx + ctx, a + b, b + a)],
                              tokenizer.pad_token_id)  # fmt: skip
    y = torch.tensor([r["label"] for r in parsed])
    y2 = torch.cat([y, 1 - y])[:, None]

    def logits(delta=None):
        handle = None
        if delta is not None:
            handle = model.get_input_embeddings().register_forward_hook(lambda m, i, out: out + delta)
        try:
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        finally:
            if handle is not None:
                handle.remove()

    def margins(z):
        return z.gather(1, y2) - z

    clean = logits().detach()
    torch.manual_seed(123)
    shape = (*batch["input_ids"].shape, model.config.hidden_size)
    start = (1e-3 * eps * torch.randn(shape)).requires_grad_(True)
    (grad,) = torch.autograd.grad((margins(logits(start)) - margins(clean)).square().sum(), start)
    with torch.no_grad():
        adv = logits(eps * grad.sign())
        lp, lp_adv = torch.log_softmax(clean, -1).double(), torch.log_softmax(adv, -1).double()
        value = -lp.gather(1, y2).squeeze(1) + nu * (margins(lp_adv) - margins(lp)).norm(dim=-1)
        p = lp.exp()
        sym = ((p[:5] - p[5:][:, [1, 0]]) ** 2).sum(-1)
        ref = (0.5 * (value[:5] + value[5:]) + lam * sym).mean()
    torch.manual_seed(123)
    res = train_pairwise_judge(model, tokenizer, rows, symmetry=lam, loss="smooth_adversarial_comp_sum",
                               loss_options={"nu": nu}, adversarial_epsilon=eps,
                               config=TrainConfig(batch_size=5, max_steps=1, shuffle=False))  # fmt: skip
    assert res.history[0]["loss"] == pytest.approx(float(ref), rel=1e-4)
    assert float((margins(lp_adv) - margins(lp)).norm(dim=-1).min()) > 0
    model = classifier(tokenizer, 2, seed=8)
    torch.manual_seed(123)  # PGD with one step of size ε from 0 is this FGSM exactly
    again = train_pairwise_judge(model, tokenizer, rows, symmetry=lam,
                                 loss="smooth_adversarial_comp_sum", loss_options={"nu": nu}, adversarial_epsilon=eps,
                                 adversarial_steps=1, adversarial_step_size=eps, adversarial_norm="inf",
                                 adversarial_random_start=False,
                                 config=TrainConfig(batch_size=5, max_steps=1, shuffle=False))  # fmt: skip
    assert again.history[0]["loss"] == res.history[0]["loss"]


def _orders(tokenizer, model, n, seed, **attack):
    from pairkit.train.pairwise_judge import _encoded, _Orders

    examples = _encoded(model, tokenizer, votes(n, seed), 64, "keep", None)
    options = {"epsilon": 0.05, "steps": 1, "step_size": None, "norm": "inf", "random_start": False} | attack
    return _Orders(model, tokenizer, examples, None, torch.tensor([1, 0]), options)


def _reference_pgd(orders, eps, steps, alpha, norm, start):
    """PGD written out slowly: per-example norms and projections in a Python loop, from ``start`` (the trainer's
    first point, drawn with the same seed), the first gradient at ``start`` and the iterate from 0 unless random."""
    y = orders.labels[:, None]
    clean = orders.logits.detach()

    def grad_at(delta):
        delta = delta.clone().requires_grad_(True)
        z = orders._perturbed({"value": delta})
        change = (z.gather(-1, y) - z) - (clean.gather(-1, y) - clean)
        return torch.autograd.grad(change.square().sum(), delta)[0]

    probe, iterate = start, (start if orders.attack["random_start"] else torch.zeros_like(start))
    for t in range(steps):
        g = grad_at(probe if t == 0 else iterate)
        new = torch.empty_like(iterate)
        for i in range(len(iterate)):
            if norm == "inf":
                new[i] = torch.minimum(torch.maximum(iterate[i] + alpha * torch.sign(g[i]), -eps * torch.ones(1)),
                                       eps * torch.ones(1))  # fmt: skip
            else:
                gi = math.sqrt(float((g[i].double() ** 2).sum()))
                moved = iterate[i] + (alpha / gi) * g[i] if gi > 0 else iterate[i].clone()
                size = math.sqrt(float((moved.double() ** 2).sum()))
                new[i] = moved * (eps / size) if size > eps else moved
        iterate = new
    return iterate


@pytest.mark.parametrize(("norm", "random_start"), [("inf", False), ("inf", True), ("2", False), ("2", True)])
def test_pgd_matches_a_slow_reference_and_stays_in_the_ball(tokenizer, norm, random_start):
    model = classifier(tokenizer, 2, seed=3)
    eps, steps = 0.05, 4
    torch.manual_seed(7)
    orders = _orders(tokenizer, model, 4, 5, steps=steps, norm=norm, random_start=random_start)
    orders.adversarial()
    delta = orders.perturbation
    first: dict = {}
    torch.manual_seed(7)
    orders._perturbed(first, orders._start)  # the same first point, drawn again from the same seed
    ref = _reference_pgd(orders, eps, steps, 2.5 * eps / steps, norm, first["value"].detach())
    assert torch.allclose(delta, ref, atol=1e-6, rtol=0)
    per_example = delta.flatten(1).abs().amax(1) if norm == "inf" else delta.flatten(1).norm(dim=1)
    assert float(per_example.max()) <= eps * (1 + 1e-6) and float(per_example.min()) > 0.5 * eps


def test_more_pgd_steps_find_a_larger_inner_objective(tokenizer):
    """On a fixed model, 10 PGD steps reach a larger ‖Δ(x') − Δ(x)‖² than one FGSM step (summed over the batch)."""
    model = classifier(tokenizer, 2, seed=4)

    def objective(**attack):
        torch.manual_seed(0)
        orders = _orders(tokenizer, model, 6, 11, epsilon=0.1, **attack)
        z, clean, y = orders.adversarial().detach(), orders.logp.detach(), orders.labels[:, None]
        return float(((z.gather(-1, y) - z) - (clean.gather(-1, y) - clean)).square().sum())

    one, ten = objective(steps=1), objective(steps=10)
    assert ten > one > 0
    with pytest.raises(InputError, match="adversarial_steps must be an integer >= 1"):
        train_pairwise_judge(model, tokenizer, votes(4, 1), loss="smooth_adversarial_comp_sum", adversarial_steps=0)
    with pytest.raises(InputError, match="adversarial_norm must be one of 'inf', '2'"):
        train_pairwise_judge(model, tokenizer, votes(4, 1), adversarial_norm="1")


def test_learns_votes_with_ties_and_loads_as_a_symmetric_judge(tmp_path, tokenizer):
    model = classifier(tokenizer, 3)
    config = TrainConfig(epochs=12, batch_size=16, lr=3e-3, schedule="constant")
    train_pairwise_judge(model, tokenizer, votes(96, 2, ties=True), config=config)
    res = evaluate_pairwise_judge(model, tokenizer, votes(60, 3, ties=True))
    assert res["n"] == 60 and res["chance"] == pytest.approx(max(res["ties"] / 60, (1 - res["ties"] / 60) / 2))
    assert res["accuracy"] > 0.8 and res["ci_low"] > res["chance"] and res["position_consistency"] > 0.8
    final = save_pairwise_judge(model, tokenizer, tmp_path / "run", max_length=64, metrics=res)
    judge = judge_from_config(json.loads((tmp_path / "run" / "judge.json").read_text()))
    assert isinstance(judge, PairwiseClassifierJudge) and judge.max_length == 64 and final.name == "final"
    reqs = [Request("q 1", "good alpha", "bad beta"), Request("q 1", "bad beta", "good alpha", order="ba")]
    j1, j2 = judge.judge_many(reqs)
    assert j1.p_a > 0.5 and j1.p_a == pytest.approx(j2.p_b, abs=1e-6) and j1.p_tie == pytest.approx(j2.p_tie)
    assert j1.p_a + j1.p_b + j1.p_tie == pytest.approx(1.0)
    # the judge is the trained model: its probability equals the averaged two-order softmax
    (ab, ba) = encode_pairwise(tokenizer, ["q 1"] * 2, ["good alpha", "bad beta"], ["bad beta", "good alpha"])
    with torch.no_grad():
        p, q = (torch.softmax(judge.model(torch.tensor([x])).logits[0], -1) for x in (ab, ba))
    assert j1.p_a == pytest.approx(float(p[0] + q[1]) / 2, abs=1e-5)
    # and it plugs into a selection strategy: the 'good' answers rank first
    from pairkit.select import Pool, select

    pool = Pool.single({"g1": "good alpha", "b1": "bad gamma", "g2": "good delta", "b2": "bad yes"}, context="q 2")
    board = select("round_robin", judge, pool).leaderboard()
    assert set(board.to_pandas()["item"].head(2)) == {"g1", "g2"}


def test_two_label_model_refuses_ties_and_bad_options(tokenizer):
    model = classifier(tokenizer, 2)
    with pytest.raises(InputError, match="rows are ties but the model has 2 labels"):
        train_pairwise_judge(model, tokenizer, votes(20, 0, ties=True), config=TrainConfig(max_steps=1))
    with pytest.raises(InputError, match="symmetry must be"):
        train_pairwise_judge(model, tokenizer, votes(4, 0), symmetry=-1.0)
    with pytest.raises(InputError, match="2 or 3 labels"):
        train_pairwise_judge(classifier(tokenizer, 4), tokenizer, votes(4, 0))


def test_cli_trains_reports_and_writes_a_judge_config(tmp_path, tokenizer):
    from pairkit.cli import app

    model_dir = tmp_path / "base"
    classifier(tokenizer, 2).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "votes.jsonl", votes(40, 5))
    out = tmp_path / "judge"
    args = ["train", "pairwise-judge", "--model", str(model_dir), "--data", str(data), "--output", str(out)]
    res = CliRunner().invoke(app, [*args, "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--max-length", "32"])
    assert res.exit_code == 0, res.output
    assert "held-out accuracy" in res.output and "position consistency" in res.output
    ev = json.loads((out / "eval.json").read_text())
    assert ev["ties"] == 0 and ev["chance"] == 0.5 and ev["n"] >= 8
    judge = judge_from_config(json.loads((out / "judge.json").read_text()))
    assert judge.model.config.num_labels == 2 and judge.max_length == 32
    res = CliRunner().invoke(app, [*args, "--held-out", "1.5"])
    assert res.exit_code != 0 and "--held-out must be in [0, 1)" in res.output
    res = CliRunner().invoke(app, [*args, "--max-steps", "1", "--max-length", "32", "--loss", "adversarial_comp_sum",
                                   "--loss-option", "rho=2", "--output", str(tmp_path / "acs")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [*args, "--loss", "p2c_loss"])
    assert res.exit_code != 0 and "'p2c_loss' needs 'logits_a'" in res.output, res.output
    pgd = ["--loss", "smooth_adversarial_comp_sum", "--adversarial", "steps=3", "--adversarial", "norm=2",
           "--adversarial", "random_start=true"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--max-steps", "1", "--max-length", "32", *pgd, "--output",
                                   str(tmp_path / "pgd")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [*args, "--adversarial", "steps=0"])
    assert res.exit_code != 0 and "adversarial_steps must be an integer >= 1" in res.output, res.output
    res = CliRunner().invoke(app, [*args, "--adversarial", "radius=1"])
    assert res.exit_code != 0 and "not an attack option" in res.output, res.output


def test_raw_rows_with_a_label_column_are_read_not_taken_as_parsed(tokenizer):
    raw = [
        {"prompt": "q", "a": "good x", "b": "bad y", "label": "b"},
        {"prompt": "q", "a": "1", "b": "2", "label": "a"},
    ]
    model = classifier(tokenizer, 2)
    res = evaluate_pairwise_judge(model, tokenizer, raw)
    assert res["n"] == 2 and res["ties"] == 0
    with pytest.raises(InputError, match="row 1, column 'label': outcome 'sideways'"):
        evaluate_pairwise_judge(model, tokenizer, [{"prompt": "q", "a": "1", "b": "2", "label": "sideways"}])


# ------------------------------------------------------------------------------ causal-LM verdict head


def causal_lm(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def test_verdict_head_first_step_equals_full_lm_logits_one_at_a_time(tokenizer):
    """The verdict logits are the LM's full next-token logits at the last prompt token, restricted to A/B/tie."""
    from pairkit.judges.pairwise_classifier import VERDICTS, encode_verdict_prompt, verdict_token_ids

    rows = votes(6, 4, ties=True)
    model = causal_lm(tokenizer)
    vid = verdict_token_ids(tokenizer, VERDICTS)
    lam = 0.5
    ref = []
    with torch.no_grad():
        for r in read_pairwise_judgments(rows):
            (ab,) = encode_verdict_prompt(tokenizer, [r["context"]], [r["a"]], [r["b"]])
            (ba,) = encode_verdict_prompt(tokenizer, [r["context"]], [r["b"]], [r["a"]])
            p = torch.softmax(model(torch.tensor([ab])).logits[0, -1, vid], -1).tolist()
            q = torch.softmax(model(torch.tensor([ba])).logits[0, -1, vid], -1).tolist()
            y = r["label"]
            ce = -0.5 * (math.log(p[y]) + math.log(q[{0: 1, 1: 0, 2: 2}[y]]))
            ref.append(ce + lam * ((p[0] - q[1]) ** 2 + (p[1] - q[0]) ** 2 + (p[2] - q[2]) ** 2))
    res = train_pairwise_judge(
        model, tokenizer, rows, symmetry=lam, verdicts=VERDICTS, config=TrainConfig(batch_size=6, max_steps=1)
    )
    assert res.history[0]["loss"] == pytest.approx(np.mean(ref), rel=1e-5)
    (ab,) = encode_verdict_prompt(tokenizer, ["q"], ["x"], ["y"])
    assert tokenizer.decode(ab).endswith("The better answer (A, B or tie) is")
    with pytest.raises(InputError, match="must start with different tokens"):
        verdict_token_ids(tokenizer, ["A", "A"])


def test_verdict_head_learns_saves_and_judges_in_a_strategy(tmp_path, tokenizer):
    from pairkit.judges.pairwise_classifier import VERDICTS

    model = causal_lm(tokenizer, seed=1)
    config = TrainConfig(epochs=10, batch_size=16, lr=3e-3, schedule="constant")
    train_pairwise_judge(model, tokenizer, votes(96, 2), verdicts=VERDICTS[:2], config=config)
    res = evaluate_pairwise_judge(model, tokenizer, votes(60, 3), verdicts=VERDICTS[:2])
    assert res["accuracy"] > 0.8 and res["ci_low"] > res["chance"] == 0.5
    save_pairwise_judge(model, tokenizer, tmp_path / "run", max_length=96, metrics=res, verdicts=VERDICTS[:2])
    judge = judge_from_config(json.loads((tmp_path / "run" / "judge.json").read_text()))
    assert isinstance(judge, PairwiseClassifierJudge) and judge.verdicts == ("A", "B")
    assert type(judge.model).__name__ == "LlamaForCausalLM"
    j1, j2 = judge.judge_many([Request("q 1", "good alpha", "bad beta"), Request("q 1", "bad beta", "good alpha")])
    assert j1.p_a > 0.5 and j1.p_a == pytest.approx(j2.p_b, abs=1e-6) and j1.p_tie == 0.0
    from pairkit.select import Pool, select

    pool = Pool.single({"g1": "good alpha", "b1": "bad gamma", "g2": "good delta", "b2": "bad yes"}, context="q 2")
    board = select("round_robin", judge, pool).leaderboard()
    assert set(board.to_pandas()["item"].head(2)) == {"g1", "g2"}


def test_cli_verdict_head(tmp_path, tokenizer):
    from pairkit.cli import app

    model_dir = tmp_path / "lm"
    causal_lm(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "votes.jsonl", votes(30, 6, ties=True))
    out = tmp_path / "judge"
    args = ["train", "pairwise-judge", "--model", str(model_dir), "--data", str(data), "--output", str(out)]
    res = CliRunner().invoke(app, [*args, "--verdict-head", "--epochs", "1", "--batch-size", "8", "--max-length", "48"])
    assert res.exit_code == 0, res.output
    marker = json.loads((out / "final" / "pairkit_judge.json").read_text())
    assert marker["kind"] == "pairwise_verdict_lm" and marker["verdicts"] == ["A", "B", "tie"]
    judge = judge_from_config(json.loads((out / "judge.json").read_text()))
    assert judge.verdicts == ("A", "B", "tie") and judge.max_length == 48
