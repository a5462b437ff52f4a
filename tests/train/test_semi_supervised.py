"""Semi-supervised, regression and judge training of the consistency, regularizer, regression and classification losses.

Every loss of the ``consistency``, ``regularizer`` (except CCS, which has its own probe trainer) and ``regression``
families, and the four classification losses that need more than logits and labels, trains one step through the
trainer whose input table covers its declared inputs — no exclusions. Step-1 losses are compared with by-hand
computations from the model's outputs in float64.
"""

import copy
import math

import pytest

torch = pytest.importorskip("torch")

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, text_augment, train_regression, train_semi_supervised  # noqa: E402
from pairkit.train import regression as regression_module  # noqa: E402
from pairkit.train import semi_supervised as semi_module  # noqa: E402

F = torch.nn.functional
CLASSIFICATION = ("ensloss", "pass_at_n_loss", "smooth_adversarial_comp_sum", "p2c_loss")
WALK = sorted(
    [n for n in losses.names("consistency") + losses.names("regularizer") if n != "ccs"]
    + losses.names("regression")
    + list(CLASSIFICATION)
)


def _rows(n_lab=6, n_unl=12, dim=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = [{"features": torch.randn(dim, generator=g, dtype=torch.float64), "label": i % classes} for i in range(n_lab)]
    unl = [{"features": torch.randn(dim, generator=g, dtype=torch.float64)} for _ in range(n_unl)]
    return lab, unl


def _encoder(seed=0, dim=5, out=4):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(dim, out), torch.nn.Tanh()).double()


def _head(seed=1, dim=4, classes=3):
    torch.manual_seed(seed)
    return torch.nn.Linear(dim, classes).double()


def _noisy(x):
    return x + 0.3 * torch.randn_like(x)


def _params(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _trainer(name):
    """The trainer whose table makes every required input of the loss (regression family: train_regression)."""
    from pairkit.train import pairwise_judge

    need = {i.name for i in losses.spec(name).input_specs if i.required}
    if losses.family_of(name) == "regression":
        return "regression"
    if need <= set(semi_module.INPUTS):
        return "semi_supervised"
    if need <= {name for name, _ in pairwise_judge.INPUTS}:
        return "pairwise_judge"
    return None


def test_the_walk_has_every_family_member_and_each_is_routed():
    assert {"fixmatch_loss", "simmatchv2_edge_edge_loss", "lol", "directional_moment_loss", "cs_ib_loss"} <= set(WALK)
    assert {n: _trainer(n) for n in WALK if _trainer(n) is None} == {}
    assert {_trainer(n) for n in CLASSIFICATION} == {"semi_supervised", "pairwise_judge"}


@pytest.mark.parametrize("name", WALK)
def test_every_loss_trains_one_step(name, tokenizer):
    kind = _trainer(name)
    config = TrainConfig(batch_size=6, max_steps=1, lr=1e-2)
    if kind == "pairwise_judge":
        from pairkit.train import train_pairwise_judge
        from tests.train.test_pairwise_judge import classifier, votes

        model = classifier(tokenizer, 2, seed=1)
        before = _params(model)
        row = train_pairwise_judge(model, tokenizer, votes(6, 5), loss=name, config=config).history[0]
        modules = [model]
    elif kind == "regression":
        lab, unl = _rows(n_lab=12)
        rows = [{"features": r["features"], "target": float(r["features"].sum())} for r in lab]
        model, head = _encoder(), torch.nn.Linear(4, 1).double()
        before = _params(model, head)
        row = train_regression(model, rows, loss=name, head=head, config=TrainConfig(batch_size=12, lr=1e-2)).history[0]
        modules = [model, head]
    else:
        lab, unl = _rows()
        model, head = _encoder(), _head()
        before = _params(model, head)
        options = {"threshold": 0.3} if losses.spec(name).takes("threshold") else None
        res = train_semi_supervised(model, lab, unl, strong_augment=_noisy, loss=name, loss_options=options,
                                    head=head, ratio=2, text_directions=torch.randn(3, 4, dtype=torch.float64),
                                    config=config)  # fmt: skip
        row = res.history[0]
        modules = [model, head]
        assert math.isfinite(row[name])
    assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]), name
    moved = any(not torch.equal(a, b) for a, b in zip(before, _params(*modules)))
    assert moved and row["grad_norm"] > 0, name


def test_fixmatch_step_one_by_hand_and_unconfident_rows_add_nothing():
    lab, unl = _rows(n_lab=4, n_unl=8)
    tau = 0.42

    def strong(x):
        return 0.5 * x.flip(-1) + 0.1

    def weak(x):
        return x * 0.9

    encoder, head = _encoder(3), _head(4)
    enc0, head0 = copy.deepcopy(encoder), copy.deepcopy(head)
    config = TrainConfig(batch_size=4, max_steps=1, lr=1e-2)
    res = train_semi_supervised(encoder, lab, unl, weak_augment=weak, strong_augment=strong, head=head, ratio=2,
                                loss="fixmatch_loss", loss_options={"threshold": tau}, config=config)  # fmt: skip
    with torch.no_grad():
        xl = torch.stack([r["features"] for r in lab])
        y = torch.tensor([r["label"] for r in lab])
        xu = torch.stack([r["features"] for r in unl])
        sup = sum(-F.log_softmax(head0(enc0(weak(xl[i]))), -1)[y[i]] for i in range(4)) / 4
        unsup, confident = 0.0, 0
        for i in range(8):  # one unlabelled row at a time; every row is drawn once (μB = 8 rows)
            q = F.softmax(head0(enc0(weak(xu[i]))), -1)
            if q.max() >= tau:
                confident += 1
                unsup += -F.log_softmax(head0(enc0(strong(xu[i]))), -1)[q.argmax()]
        unsup = unsup / 8  # the paper's 1/(μB): rows below τ count in the mean with 0
    assert 0 < confident < 8
    assert res.history[0]["supervised"] == pytest.approx(float(sup), rel=1e-12)
    assert res.history[0]["fixmatch_loss"] == pytest.approx(float(unsup), rel=1e-12)
    assert res.history[0]["loss"] == pytest.approx(float(sup + unsup), rel=1e-12)
    # τ = 1: no pseudo-label counts — the step equals a run without the consistency term (weight 0)
    runs = [train_semi_supervised(_encoder(3), lab, unl, weak_augment=weak, strong_augment=strong, head=_head(4),
                                  ratio=2, loss=spec, loss_options={"threshold": 1.0}, config=config).history[0]
            for spec in ("fixmatch_loss", "0*fixmatch_loss")]  # fmt: skip
    assert runs[0]["fixmatch_loss"] == 0.0
    assert runs[0]["loss"] == runs[1]["loss"] and runs[0]["grad_norm"] == runs[1]["grad_norm"]


def _shrink_setup(seed=11, classes=6):
    lab, unl = _rows(n_lab=6, n_unl=12, classes=classes, seed=seed)
    head = _head(seed + 1, dim=8, classes=classes)
    with torch.no_grad():
        head.weight.mul_(5.0)  # confidences 0.3-0.9: some rows certain, some shrunk
    return lab, unl, _encoder(seed, out=8), head


def _strong(x):
    return 0.6 * x.flip(-1) - 0.1


def test_shrinkmatch_trains_the_auxiliary_head_and_never_the_classifier():
    # one step with the term at weight 1 and at weight 0 (no clipping, which would couple the parameters): AdamW
    # moves each parameter by its own gradient, so the classifier moves equally (its gradient is the supervised
    # one only) while the auxiliary head and the encoder move differently
    lab, unl, *_ = _shrink_setup()
    runs = []
    for spec in ("shrinkmatch_loss", "0*shrinkmatch_loss"):
        _, _, encoder, head = _shrink_setup()
        res = train_semi_supervised(encoder, lab, unl, strong_augment=_strong, head=head, ratio=2, loss=spec,
                                    loss_options={"threshold": 0.55},
                                    config=TrainConfig(batch_size=6, max_steps=1, lr=1e-2, max_grad_norm=None))
        runs.append((res, _params(encoder), _params(head), _params(res.heads["auxiliary"])))
    (res, enc_a, head_a, aux_a), (_, enc_b, head_b, aux_b) = runs
    assert res.history[0]["shrinkmatch_loss"] > 0
    for a, b in zip(head_a, head_b):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(aux_a[-1], aux_b[-1]) and not torch.equal(enc_a[0], enc_b[0])


def test_shrinkmatch_with_two_classes_leaves_fixmatch_as_it_was():
    # nothing lies between the top-1 class and the last: the term is 0, and building the auxiliary head draws no
    # random numbers, so the augmentations (and the whole run) are FixMatch's
    lab, unl = _rows(n_lab=4, n_unl=8, classes=2, seed=12)
    runs = []
    for spec in ("fixmatch_loss", "fixmatch_loss+shrinkmatch_loss"):
        torch.manual_seed(0)
        encoder, head = _encoder(12), _head(13, classes=2)
        res = train_semi_supervised(encoder, lab, unl, strong_augment=_noisy, head=head, ratio=2, loss=spec,
                                    loss_options={"threshold": 0.6}, config=TrainConfig(batch_size=4, epochs=3))
        runs.append((res, _params(encoder, head)))
    assert [r["shrinkmatch_loss"] for r in runs[1][0].history] == [0.0] * 3
    assert [r["loss"] for r in runs[1][0].history] == [r["loss"] for r in runs[0][0].history]
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_shrinkmatch_step_one_by_hand_with_the_auxiliary_head_and_running_certain_ratio():
    lab, unl, encoder, head = _shrink_setup()
    enc0, head0 = copy.deepcopy(encoder), copy.deepcopy(head)
    tau, snaps = 0.55, []
    config = TrainConfig(batch_size=3, max_steps=3, epochs=3, lr=5e-2, schedule="constant")
    res = train_semi_supervised(encoder, lab, unl, strong_augment=_strong, head=head, ratio=2,
                                loss="fixmatch_loss+shrinkmatch_loss", loss_options={"threshold": tau},
                                config=config, callback=lambda r: snaps.append((copy.deepcopy(encoder),
                                copy.deepcopy(head))))  # fmt: skip
    aux = res.heads["auxiliary"]
    assert isinstance(aux[1], torch.nn.BatchNorm1d) and aux[-1].out_features == 6
    xu = torch.stack([r["features"] for r in unl])
    models = [(enc0, head0)] + snaps[:-1]  # the model before each step
    r = None
    for step, (enc, hd) in enumerate(models):
        rows = xu[semi_module._draw(step * 6, 6, len(unl), config.seed)]
        with torch.no_grad():
            q = F.softmax(hd(enc(rows)), -1)
        frac = sum(1 for i in range(6) if float(q[i].max()) >= tau) / 6
        r = frac if r is None else 0.999 * r + 0.001 * frac  # the authors' running certain ratio
        assert res.history[step]["certain_ratio"] == pytest.approx(r, rel=1e-12)
    assert 0 < res.history[0]["certain_ratio"] < 1
    # step 1's term: the loss on the classifier's weak logits and a fresh auxiliary head (train mode) on the strong view
    aux0 = semi_module.aux_mlp(8, 6, torch.float64, config.seed + 4).train()
    rows = xu[semi_module._draw(0, 6, len(unl), config.seed)]
    with torch.no_grad():
        first = res.history[0]["certain_ratio"]
        ref = losses.shrinkmatch_loss(head0(enc0(rows)), aux0(enc0(_strong(rows))), threshold=tau, certain_ratio=first)
    assert float(ref) > 0
    assert res.history[0]["shrinkmatch_loss"] == pytest.approx(float(ref), rel=1e-12)
    # a fixed certain_ratio is used as given; "shared" puts the term on the classifier (no auxiliary head)
    fixed = train_semi_supervised(_shrink_setup()[2], lab, unl, strong_augment=_strong, head=_shrink_setup()[3],
                                  ratio=2, loss="shrinkmatch_loss", aux_head="shared", config=config,
                                  loss_options={"threshold": tau, "certain_ratio": 0.5})  # fmt: skip
    assert "auxiliary" not in fixed.heads and "certain_ratio" not in fixed.history[0]
    with torch.no_grad():
        ref = losses.shrinkmatch_loss(head0(enc0(rows)), head0(enc0(_strong(rows))), threshold=tau, certain_ratio=0.5)
    assert fixed.history[0]["shrinkmatch_loss"] == pytest.approx(float(ref), rel=1e-12)
    with pytest.raises(InputError, match="aux_head='mlp' normalises"):
        train_semi_supervised(_encoder(), lab[:1] + lab[1:2], unl, strong_augment=_strong, ratio=1,
                              loss="shrinkmatch_loss", config=TrainConfig(batch_size=1))  # fmt: skip
    with pytest.raises(InputError, match="aux_head must be"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_strong, loss="shrinkmatch_loss", aux_head="x")


def _ema(decay, *pairs):
    """The EMA teacher by hand: ``t <- decay t + (1 - decay) p`` over the models' parameters, in order."""
    teacher = copy.deepcopy(pairs[0])
    with torch.no_grad():
        for model in pairs[1:]:
            for t, p in zip(teacher.parameters(), model.parameters()):
                t.copy_(decay * t + (1 - decay) * p)
    return teacher


@pytest.mark.parametrize("decay", [0.9, 0.0])
def test_simmatchv2_node_edge_at_step_two_uses_the_bank_of_step_one(decay):
    lab, unl = _rows(n_lab=4, n_unl=8, seed=3)
    t = 0.2

    def strong(x):
        return 0.7 * x - 0.2

    encoder, head = _encoder(5), _head(6)
    enc0, head0 = copy.deepcopy(encoder), copy.deepcopy(head)
    after_one = {}

    def snapshot(row):
        if row["step"] == 1:
            after_one["enc"], after_one["head"] = copy.deepcopy(encoder), copy.deepcopy(head)

    config = TrainConfig(batch_size=4, epochs=2, lr=5e-2, schedule="constant")
    res = train_semi_supervised(encoder, lab, unl, strong_augment=strong, head=head, ratio=2, bank_size=8,
                                loss="simmatchv2_node_edge_loss", loss_options={"temperature": t}, config=config,
                                ema_decay=decay, projection=None, callback=snapshot)  # fmt: skip
    with torch.no_grad():
        xu = torch.stack([r["features"] for r in unl])
        bank = F.normalize(enc0(xu), dim=-1)  # step 1's weak view by the teacher, a copy of the model before step 1
        bank_probs = F.softmax(head0(enc0(xu)), -1)
        enc1, head1 = after_one["enc"], after_one["head"]
        # the weak side at step 2: the teacher after one update (decay 0: the model itself)
        tenc, thead = _ema(decay, enc0, enc1), _ema(decay, head0, head1)
        ref = 0.0
        for i in range(8):
            e_s = F.normalize(enc1(strong(xu[i])), dim=-1)
            p_w = F.softmax(thead(tenc(xu[i])), -1)
            edges = F.softmax(e_s @ bank.T / t, -1)
            ref += -(p_w * torch.log(edges @ bank_probs)).sum()
        ref = ref / 8
    assert res.history[1]["simmatchv2_node_edge_loss"] == pytest.approx(float(ref), rel=1e-10)


def test_the_ema_teacher_is_the_formula_after_k_steps_and_fills_both_banks(tmp_path):
    from pairkit.train._loop import latest_checkpoint, load_checkpoint

    lab, unl = _rows(n_lab=4, n_unl=8, seed=9)
    encoder, head = _encoder(9), _head(10)
    torch.manual_seed(11)
    projection = torch.nn.Linear(4, 3).double()
    parts = (encoder, head, projection)
    models = [copy.deepcopy(parts)]
    config = TrainConfig(batch_size=4, max_steps=5, epochs=5, lr=5e-2, schedule="constant", output_dir=str(tmp_path))
    res = train_semi_supervised(encoder, lab, unl, strong_augment=_noisy, head=head, ratio=2, bank_size=8,
                                loss="simmatchv2_node_node_loss+simmatchv2_edge_edge_loss", ema_decay=0.8,
                                projection=projection, config=config,
                                callback=lambda r: models.append(copy.deepcopy(parts)))  # fmt: skip
    teacher = [_ema(0.8, *(m[i] for m in models)) for i in range(3)]  # T_k = 0.8 T_(k-1) + 0.2 θ_k, T_0 = θ_0
    got = [res.heads[k] for k in ("teacher_encoder", "teacher_classifier", "teacher_projection")]
    for a, b in zip(_params(*got), _params(*teacher)):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)
    assert not torch.equal(_params(teacher[2])[0], _params(projection)[0])  # the teacher lags the model
    # the last step's banks come from the teacher of that step (T_4): its weak views of the step's rows
    enc4, head4, proj4 = (_ema(0.8, *(m[i] for m in models[:-1])) for i in range(3))
    xu = torch.stack([r["features"] for r in unl])
    drawn = xu[semi_module._draw(4 * 8, 8, 8, config.seed)]
    with torch.no_grad():
        torch.testing.assert_close(res.memory_bank["embeddings"], F.normalize(proj4(enc4(drawn)), dim=-1))
        torch.testing.assert_close(res.memory_bank["probs"], F.softmax(head4(enc4(drawn)), -1))
        xl = torch.stack([r["features"] for r in lab])
        state = load_checkpoint(latest_checkpoint(tmp_path))["model"]
        torch.testing.assert_close(state["labelled_embeddings"], F.normalize(proj4(enc4(xl)), dim=-1))
    with pytest.raises(InputError, match="ema_decay must be"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, loss="simmatchv2_edge_edge_loss",
                              ema_decay=1.5)  # fmt: skip
    with pytest.raises(InputError, match="projection must be"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, loss="simmatchv2_edge_edge_loss",
                              projection=0)  # fmt: skip


def test_simmatchv2_edge_edge_step_one_by_hand_through_the_authors_projection_head():
    lab, unl = _rows(n_lab=4, n_unl=8, seed=13)
    encoder, head = _encoder(13), _head(14)
    enc0 = copy.deepcopy(encoder)
    config = TrainConfig(batch_size=4, max_steps=1, lr=5e-2)
    res = train_semi_supervised(encoder, lab, unl, strong_augment=_strong, head=head, ratio=2, bank_size=8,
                                loss="simmatchv2_edge_edge_loss", config=config)  # fmt: skip
    proj0 = semi_module.projection_mlp(4, 128, torch.float64, config.seed + 7)
    assert proj0[0].weight.shape == (4, 4) and proj0[2].weight.shape == (128, 4)
    xu = torch.stack([r["features"] for r in unl])
    with torch.no_grad():
        bank = F.normalize(proj0(enc0(xu)), dim=-1)  # step 1: the teacher's (= the model's) weak view of the batch
        ref = 0.0
        for i in range(8):
            target = F.softmax(F.normalize(proj0(enc0(xu[i])), dim=-1) @ bank.T / 0.1, -1)
            ref += -(target * F.log_softmax(F.normalize(proj0(enc0(_strong(xu[i]))), dim=-1) @ bank.T / 0.1, -1)).sum()
    assert res.history[0]["simmatchv2_edge_edge_loss"] == pytest.approx(float(ref / 8), rel=1e-10)
    assert res.memory_bank["embeddings"].shape == (8, 128)
    assert not torch.equal(res.heads["projection"][0].weight, proj0[0].weight)  # trained by the graph term
    torch.testing.assert_close(res.heads["teacher_projection"][0].weight, 0.999 * proj0[0].weight
                               + 0.001 * res.heads["projection"][0].weight, rtol=1e-13, atol=1e-15)  # fmt: skip


def test_the_memory_bank_is_first_in_first_out():
    lab, unl = _rows(n_lab=2, n_unl=7, seed=4)
    seen = []

    def weak(x):
        if x.shape[0] == 3:  # the unlabelled batch (ratio 3 x batch 1); the labelled batch has one row
            seen.append(x.clone())
        return x

    encoder = torch.nn.Identity()  # fixed embeddings: the bank holds exactly the drawn rows, normalised
    config = TrainConfig(batch_size=1, epochs=2, lr=1e-2)
    res = train_semi_supervised(encoder, lab, unl, weak_augment=weak, strong_augment=_noisy, ratio=3, bank_size=5,
                                loss="simmatchv2_edge_edge_loss", projection=None, config=config)  # fmt: skip
    drawn = torch.cat(seen)
    assert drawn.shape[0] == 12
    torch.testing.assert_close(res.memory_bank["embeddings"], F.normalize(drawn[-5:], dim=-1))
    assert res.memory_bank["probs"].shape == (5, 2)
    assert torch.allclose(res.memory_bank["probs"].sum(-1), torch.ones(5, dtype=torch.float64))
    # each pass over the unlabelled rows draws every row once before any repeats
    assert sorted(drawn[:7].sum(-1).tolist()) == pytest.approx(sorted(torch.stack(
        [r["features"] for r in unl]).sum(-1).tolist()))  # fmt: skip


def test_resume_equals_an_uninterrupted_run(tmp_path):
    lab, unl = _rows(n_lab=6, n_unl=10, seed=5)
    spec = "fixmatch_loss+shrinkmatch_loss+simmatchv2_node_node_loss+simmatchv2_node_edge_loss"

    def run(steps, out, resume=False):
        config = TrainConfig(batch_size=3, epochs=2, max_steps=steps, lr=1e-2, schedule="constant",
                             output_dir=str(out))
        encoder, head = _encoder(7), _head(8)
        res = train_semi_supervised(encoder, lab, unl, strong_augment=_noisy, head=head, ratio=2, bank_size=4,
                                    loss=spec, loss_options={"threshold": 0.3}, config=config, resume=resume,
                                    ema_decay=0.7)  # fmt: skip
        heads = [res.heads[k] for k in ("auxiliary", "teacher_encoder", "teacher_classifier")]
        return res, _params(encoder, head, *heads) + [b.clone() for b in res.heads["auxiliary"].buffers()]

    full, full_params = run(4, tmp_path / "a")
    run(2, tmp_path / "b")
    resumed, resumed_params = run(4, tmp_path / "b", resume=True)
    assert len(full.history) == 4 and [r["step"] for r in resumed.history] == [3, 4]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history[2:]], rel=1e-12)
    for a, b in zip(full_params, resumed_params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(resumed.memory_bank["embeddings"], full.memory_bank["embeddings"], rtol=0, atol=0)
    assert [r["certain_ratio"] for r in resumed.history] == [r["certain_ratio"] for r in full.history[2:]]


def test_relation_losses_against_a_given_reference_and_two_views():
    lab, unl = _rows()
    ref = _encoder(seed=9)
    for reference in (ref, "views"):
        res = train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, head=_head(), ratio=2,
                                    loss="relation_consistency_loss", reference=reference,
                                    config=TrainConfig(batch_size=6, max_steps=1))  # fmt: skip
        assert res.history[0]["relation_consistency_loss"] > 0
    # the default reference is a frozen copy of the model: the relations agree at step 1
    res = train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, head=_head(), ratio=2,
                                loss="relation_consistency_loss", config=TrainConfig(batch_size=6, max_steps=1))
    assert res.history[0]["relation_consistency_loss"] == pytest.approx(0.0, abs=1e-12)


def test_refusals_name_the_input_or_option():
    lab, unl = _rows()
    with pytest.raises(InputError, match="'ccs' needs 'positive_logits'.*train_semi_supervised does not make"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, loss="ccs")
    with pytest.raises(InputError, match="needs text_directions"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, loss="directional_moment_loss")
    with pytest.raises(InputError, match="strong_augment is required"):
        train_semi_supervised(_encoder(), lab, unl)
    with pytest.raises(InputError, match="family 'preference'"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, loss="dpo")
    with pytest.raises(InputError, match="ratio must be"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, ratio=0)
    with pytest.raises(InputError, match="row 2, column 'label'"):
        train_semi_supervised(_encoder(), [lab[0], dict(lab[1], label=1.5)], unl, strong_augment=_noisy)
    with pytest.raises(InputError, match="'ensloss' needs 'scores'"):
        train_semi_supervised(_encoder(), lab, unl, strong_augment=_noisy, loss="ensloss")
    rows = [{"features": r["features"], "target": "x"} for r in lab]
    with pytest.raises(InputError, match="row 1, column 'target'"):
        train_regression(_encoder(), rows)
    with pytest.raises(InputError, match="family 'consistency'"):
        train_regression(_encoder(), rows, loss="fixmatch_loss")


def test_cs_ib_step_one_equals_the_loss_on_the_models_outputs():
    lab, _ = _rows(n_lab=10, seed=6)
    rows = [{"features": r["features"], "target": [float(r["features"][0]), float(r["features"][1] ** 2)]}
            for r in lab]  # fmt: skip
    encoder, head = _encoder(2), torch.nn.Linear(4, 2).double()
    enc0, head0 = copy.deepcopy(encoder), copy.deepcopy(head)
    opts = {"beta": 0.1, "sigma_x": 2.0}
    res = train_regression(encoder, rows, head=head, loss_options=opts, config=TrainConfig(batch_size=10, lr=1e-2))
    x = torch.stack([r["features"] for r in lab])
    y = torch.tensor([r["target"] for r in rows], dtype=torch.float64)
    with torch.no_grad():
        t = enc0(x)
        expected = losses.cs_ib_loss(x, t, y, head0(t), **opts)
        mae = (head0(t) - y).abs().mean()
    assert res.history[0]["loss"] == pytest.approx(float(expected), rel=1e-12)
    assert res.history[0]["mae"] == pytest.approx(float(mae), rel=1e-12)
    assert set(res.heads) == {"regression"} and regression_module.INPUTS.keys() == {"inputs", "latents", "targets",
                                                                                    "predictions"}  # fmt: skip


def test_text_augment_drops_and_masks_tokens():
    ids = list(range(10, 30))
    torch.manual_seed(0)
    assert text_augment(drop=0.0)([ids]) == [ids]
    (masked,) = text_augment(drop=0.0, span=0.25, mask_id=3)([ids])
    assert len(masked) == 20 and masked.count(3) == 5
    start = masked.index(3)
    assert masked[start : start + 5] == [3] * 5
    assert masked[:start] + masked[start + 5 :] == ids[:start] + ids[start + 5 :]
    (dropped,) = text_augment(drop=1.0)([ids])
    assert len(dropped) == 1 and dropped[0] in ids  # at least one token is kept
    (cut,) = text_augment(drop=0.0, span=0.5)([ids])
    assert len(cut) == 10 and all(a < b for a, b in zip(cut, cut[1:]))


def test_a_hugging_face_encoder_trains_on_texts_with_the_default_augmentations(tokenizer):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).double()
    lab = [{"text": f"{w} good yes", "label": "pos"} for w in ("alpha", "beta")]
    lab += [{"text": f"{w} bad no", "label": "neg"} for w in ("gamma", "delta")]
    unl = [{"text": f"{w} {v} yes"} for w in ("alpha", "gamma") for v in ("good", "bad")]
    res = train_semi_supervised(model, lab, unl, tokenizer=tokenizer, ratio=1, loss="fixmatch_loss",
                                loss_options={"threshold": 0.5}, config=TrainConfig(batch_size=4, epochs=2))
    assert len(res.history) == 2 and all(math.isfinite(r["loss"]) for r in res.history)
    assert res.heads["classifier"].out_features == 2


def test_cli_trains_a_text_classifier_and_saves_the_head(tmp_path, tokenizer):
    transformers = pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from pairkit.cli import app
    from tests.train.conftest import write_jsonl

    cfg = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    lab = write_jsonl(tmp_path / "l.jsonl", [{"text": f"{w} good", "label": w == "alpha"} for w in ("alpha", "beta")]
                      + [{"text": "gamma bad", "label": "neg"}])  # fmt: skip
    unl = write_jsonl(tmp_path / "u.jsonl", [{"text": "alpha yes"}, {"text": "beta no"}])
    args = ["train", "semi-supervised", "--model", str(tmp_path / "enc"), "--labeled", str(lab), "--unlabeled",
            str(unl), "--output", str(tmp_path / "run"), "--batch-size", "3", "--ratio", "1"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "row 1, column 'label'" in res.output  # True is not a class name
    write_jsonl(lab, [{"text": f"{w} good", "label": "pos"} for w in ("alpha", "beta")] + [{"text": "x", "label": 0}])
    res = CliRunner().invoke(app, [*args, "--loss-option", "threshold=0.5"])
    assert res.exit_code == 0, res.output
    head = torch.load(tmp_path / "run" / "final" / "classifier_head.pt")
    assert head["weight"].shape == (2, 16) and (tmp_path / "run" / "metrics.jsonl").exists()
    # the teacher, projection and auxiliary-head options reach the trainer
    res = CliRunner().invoke(app, [*args, "--loss", "simmatchv2_edge_edge_loss", "--projection", "-3"])
    assert res.exit_code != 0 and "projection must be" in res.output
    res = CliRunner().invoke(app, [*args, "--loss", "shrinkmatch_loss", "--aux-head", "none"])
    assert res.exit_code != 0 and "aux_head must be" in res.output
