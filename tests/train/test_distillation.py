"""train_distillation: every distill- and divergence-family loss trains through it; step-1 losses equal the losses
computed by hand from the two models' outputs; the teacher never changes; resume after a kill equals one run."""

import copy
import math
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, train_distillation, train_mcmi_teacher  # noqa: E402
from tests.train.conftest import build_model, write_jsonl  # noqa: E402

ALL = losses.names("distill") + losses.names("divergence")
TEXTS = ["alpha beta gamma", "good yes", "bad no no", "delta", "user assistant", "system human good bad"]
LABELLED = [{"text": t, "label": i % 3} for i, t in enumerate(TEXTS)]
COMPLETIONS = [{"prompt": "say", "completion": c, "spans": [[0, 6], [7, 12]]}
               for c in [" alpha beta", " good yes no", " bad", " delta gamma"]]  # fmt: skip
# options without a default (TRG's neighbours and bandwidth); every other option keeps its default
REQUIRED = {"k": 2, "sigma": 1.0}


def classifier(tokenizer, seed, hidden, labels=3):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, num_labels=labels,
    )  # fmt: skip
    return transformers.LlamaForSequenceClassification(cfg).double()


def _token_level(name):
    return any("vocab" in i.shape or i.name == "span_ids" for i in losses.spec(name).input_specs)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_walk_covers_both_families_and_every_kind_of_input():
    kinds = {i.name for n in ALL for i in losses.spec(n).input_specs}
    assert len(ALL) >= 33 and {"past_logits", "class_centroids", "novel_logits", "span_ids", "cost"} <= kinds
    assert {_token_level(n) for n in ALL} == {True, False}


@pytest.mark.parametrize("name", ALL)
def test_every_distill_and_divergence_loss_trains_one_step(name, tokenizer):
    config = TrainConfig(batch_size=4, lr=1e-3, max_steps=1)
    options = {k: v for k, v in REQUIRED.items() if losses.spec(name).takes(k)}
    teacher = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # token relations over rows of different lengths warn
        if _token_level(name):
            student, teacher = build_model(tokenizer, seed=1, dtype=torch.float64), build_model(tokenizer, seed=2,
                                                                                               dtype=torch.float64)
            before, frozen = _state(student), _state(teacher)
            res = train_distillation(student, teacher, COMPLETIONS, tokenizer=tokenizer, loss=name,
                                     loss_options=options, config=config)  # fmt: skip
        elif name == "mcmi_teacher_loss":  # MCMI trains the teacher itself
            student = classifier(tokenizer, 1, 32)
            before = _state(student)
            res = train_mcmi_teacher(student, LABELLED, tokenizer=tokenizer, config=config)
        else:  # widths differ (32 vs 48): losses comparing one space go through the learned projection
            student, teacher = classifier(tokenizer, 1, 32), classifier(tokenizer, 2, 48)
            before, frozen = _state(student), _state(teacher)
            res = train_distillation(student, teacher, LABELLED, tokenizer=tokenizer, loss=name, loss_options=options,
                                     config=config, novel_classes=2)  # fmt: skip
    row = res.history[0]
    assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]) and row["grad_norm"] > 0
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    if teacher is not None:
        assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items())
        assert not teacher.training


def _alone(model, tokenizer, text):
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    return model(input_ids=ids, attention_mask=torch.ones_like(ids))


def test_step_one_logit_level_loss_equals_the_loss_on_the_models_logits(tokenizer):
    student, teacher = classifier(tokenizer, 3, 32), classifier(tokenizer, 4, 48)
    copy_s, copy_t = copy.deepcopy(student), copy.deepcopy(teacher)
    res = train_distillation(student, teacher, LABELLED, tokenizer=tokenizer, loss="dkd_loss+0.5*hinton_kd_loss",
                             config=TrainConfig(batch_size=6, max_steps=1))  # fmt: skip
    with torch.no_grad():  # each text alone (no padding), the models as built
        s = torch.cat([_alone(copy_s, tokenizer, t).logits for t in TEXTS])
        t = torch.cat([_alone(copy_t, tokenizer, t).logits for t in TEXTS])
    y = torch.tensor([r["label"] for r in LABELLED])
    log_s, log_t = torch.log_softmax(s / 4, -1), torch.log_softmax(t / 4, -1)  # τ = 4 (both defaults)
    hinton = 0.5 * 16 * (log_t.exp() * (log_t - log_s)).sum(-1) + 0.5 * torch.nn.functional.cross_entropy(
        s, y, reduction="none")  # α = 0.5: the labels column is given, so the CE term is on
    want = losses.dkd_loss(s, t, y) + 0.5 * hinton.mean()
    assert res.history[0]["loss"] == pytest.approx(float(want), rel=1e-9)
    assert res.history[0]["accuracy"] == pytest.approx(float((s.argmax(-1) == y).double().mean()))


def test_step_one_feature_level_loss_equals_rkd_on_mean_pooled_hidden_states(tokenizer):
    student, teacher = classifier(tokenizer, 5, 32), classifier(tokenizer, 6, 48)
    copy_s, copy_t = copy.deepcopy(student), copy.deepcopy(teacher)
    rows = [{"text": t} for t in TEXTS]  # no labels needed
    res = train_distillation(student, teacher, rows, tokenizer=tokenizer, loss="rkd_distance_loss+2*rkd_angle_loss",
                             config=TrainConfig(batch_size=6, max_steps=1, shuffle=False))  # fmt: skip

    def pooled(model):
        return torch.stack([_alone(model.model, tokenizer, t).last_hidden_state[0].mean(0) for t in TEXTS])

    with torch.no_grad():
        es, et = pooled(copy_s), pooled(copy_t)

    def psi(x):  # RKD's normalised distances, written out
        d = torch.cdist(x, x)
        return d / (d.sum() / (len(x) * (len(x) - 1)))

    def huber(x):
        return torch.where(x.abs() < 1, 0.5 * x * x, x.abs() - 0.5)

    n = len(TEXTS)
    off = ~torch.eye(n, dtype=torch.bool)
    distance = huber(psi(es) - psi(et))[off].mean()

    def cosines(x):  # cos of the angle at vertex j between i and k, every (j, i, k) with i, k != j
        e = torch.nn.functional.normalize(x[None, :, :] - x[:, None, :], dim=-1)
        return e @ e.transpose(1, 2)

    keep = off[:, :, None] & off[:, None, :]
    angle = huber(cosines(es) - cosines(et))[keep].sum() / (n * (n - 1) ** 2)
    assert res.history[0]["loss"] == pytest.approx(float(distance + 2 * angle), rel=1e-9)


def test_step_one_token_level_loss_equals_kl_over_the_completion_tokens(tokenizer):
    student = build_model(tokenizer, seed=7, dtype=torch.float64)
    teacher = build_model(tokenizer, seed=8, dtype=torch.float64)
    copy_s, copy_t = copy.deepcopy(student), copy.deepcopy(teacher)
    res = train_distillation(student, teacher, COMPLETIONS, tokenizer=tokenizer, loss="token_kl_divergence",
                             loss_options={"temperature": 2.0},
                             config=TrainConfig(batch_size=4, max_steps=1))  # fmt: skip
    from pairkit.train.data import encode_completion

    kls = []
    with torch.no_grad():
        for r in COMPLETIONS:  # each row alone: the logits at t-1 predict completion token t
            p, c = encode_completion(tokenizer, r["prompt"], r["completion"])
            ids = torch.tensor([p + c])
            at = slice(len(p) - 1, len(p) + len(c) - 1)
            zs, zt = copy_s(input_ids=ids).logits[0, at] / 2, copy_t(input_ids=ids).logits[0, at] / 2
            q, log_p = torch.softmax(zt, -1), torch.log_softmax(zs, -1)
            kls.append((q * (q.log() - log_p)).sum(-1))
    want = torch.cat(kls).mean()  # the mean over every completion token of the batch
    assert res.history[0]["loss"] == pytest.approx(float(want), rel=1e-9)


def test_span_ids_follow_the_character_spans(tokenizer):
    from pairkit.train.distillation import _span_ids

    text = " alpha beta gamma"
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = _span_ids(tokenizer, text, [[0, 6], [6, 11]], len(enc["input_ids"]) + 1, "row")
    for (a, b), s in zip(enc["offset_mapping"], spans):
        assert s == (0 if b <= 6 else 1 if a >= 6 and b <= 11 else -1)
    assert spans[-1] == -1  # the end-of-sequence token is in no span


def test_the_teacher_is_frozen_in_eval_mode_and_never_changes(tokenizer):
    student = classifier(tokenizer, 1, 32)
    torch.manual_seed(2)
    cfg = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                   pad_token_id=tokenizer.pad_token_id, num_labels=3,
                                   attention_dropout=0.5)  # fmt: skip
    teacher = transformers.LlamaForSequenceClassification(cfg).double().train()
    before = _state(teacher)
    runs = [train_distillation(copy.deepcopy(student), teacher, LABELLED, tokenizer=tokenizer,
                               loss="hinton_kd_loss+nd_loss", config=TrainConfig(batch_size=3, epochs=2, lr=1e-2))
            for _ in range(2)]  # fmt: skip
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    # dropout off in the teacher: two runs see the same teacher outputs, so the same losses
    assert [r["loss"] for r in runs[0].history] == [r["loss"] for r in runs[1].history]


class _Killed(Exception):
    pass


@pytest.mark.parametrize("loss", ["ps_kd_loss+dual_head_kd_loss+0.1*prototype_relation_loss", "mcmi_teacher_loss"])
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, tokenizer, loss):
    """Per-example PS-KD logits, heads, prototypes and MCMI centroids are checkpointed with the student."""

    def run(out, resume=False, kill_at=None):
        def callback(row):
            if row["step"] == kill_at:
                raise _Killed

        student, teacher = classifier(tokenizer, 1, 32), classifier(tokenizer, 2, 48)
        config = TrainConfig(batch_size=4, epochs=2, lr=1e-2, save_every=1, output_dir=str(out))
        if loss == "mcmi_teacher_loss":
            res = train_mcmi_teacher(student, LABELLED, tokenizer=tokenizer, config=config, resume=resume,
                                     callback=callback)  # fmt: skip
        else:
            res = train_distillation(student, teacher, LABELLED, tokenizer=tokenizer, loss=loss, config=config,
                                     resume=resume, callback=callback)  # fmt: skip
        return res, student

    full, model = run(tmp_path / "full")
    with pytest.raises(_Killed):
        run(tmp_path / "killed", kill_at=3)  # mid-epoch 2: the past logits and centroids of epoch 1 are in use
    resumed, again = run(tmp_path / "killed", resume=True)
    assert [r["step"] for r in resumed.history] == [4]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history[3:]], rel=1e-12)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=1e-12, atol=1e-12)
    for k, v in (full.heads or {}).items():
        torch.testing.assert_close(resumed.heads[k].weight, v.weight, rtol=1e-12, atol=1e-12)


def test_inputs_the_rows_cannot_give_are_named_before_training(tokenizer):
    student, teacher = classifier(tokenizer, 1, 32), classifier(tokenizer, 2, 48)
    with pytest.raises(InputError, match="loss 'dkd_loss' needs 'labels'.*needs a 'label' column"):
        train_distillation(student, teacher, [{"text": t} for t in TEXTS], tokenizer=tokenizer, loss="dkd_loss")
    with pytest.raises(InputError, match="needs causal-LM rows"):
        train_distillation(student, teacher, LABELLED, tokenizer=tokenizer, loss="token_kl_divergence")
    with pytest.raises(InputError, match="needs a teacher model"):
        train_distillation(student, None, LABELLED, tokenizer=tokenizer, loss="hinton_kd_loss")
    with pytest.raises(InputError, match="no default for 'k', 'sigma'"):
        train_distillation(student, teacher, LABELLED, tokenizer=tokenizer, loss="token_graph_kd_loss")
    with pytest.raises(InputError, match="family 'preference'"):
        train_distillation(student, teacher, LABELLED, tokenizer=tokenizer, loss="dpo")
    with pytest.raises(InputError, match="another model"):
        train_distillation(student, student, LABELLED, tokenizer=tokenizer)


def test_feature_vectors_and_plain_modules(tokenizer):
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    teacher = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).double()
    g = torch.Generator().manual_seed(1)
    rows = [{"text": torch.randn(5, generator=g, dtype=torch.float64), "label": i % 3} for i in range(6)]
    res = train_distillation(student, teacher, rows, loss="hinton_kd_loss+nd_loss", student_layer="1",
                             teacher_layer="1", config=TrainConfig(batch_size=6, max_steps=2, lr=1e-2))  # fmt: skip
    assert res.heads["projection"].weight.shape == (12, 8)
    with pytest.raises(InputError, match="student_layer: name the submodule"):
        train_distillation(student, teacher, rows, loss="rkd_distance_loss")


def test_cli_train_distill(tmp_path, tokenizer):
    student, teacher = tmp_path / "student", tmp_path / "teacher"
    for path, seed, hidden in ((student, 1, 32), (teacher, 2, 48)):
        classifier(tokenizer, seed, hidden).float().save_pretrained(path)
        tokenizer.save_pretrained(path)
    data = write_jsonl(tmp_path / "rows.jsonl", LABELLED)
    from pairkit.cli import app

    args = ["train", "distill", "--student", str(student), "--teacher", str(teacher), "--data", str(data),
            "--loss", "dkd_loss+nd_loss", "--loss-option", "temperature=2", "--batch-size", "3", "--max-steps", "2",
            "--output", str(tmp_path / "run")]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "final" / "config.json").exists()
    assert "projection" in torch.load(tmp_path / "run" / "final" / "distill_heads.pt")
    res = CliRunner().invoke(app, [*args[:-2], "--loss", "token_kl_divergence", "--output", str(tmp_path / "b")])
    assert res.exit_code != 0 and "needs causal-LM rows" in res.output


def test_ps_kd_targets_are_last_epochs_predictions_and_mcmi_centroids_the_models_own(tokenizer):
    """With a vanishing learning rate the logits stay z0: epoch 1 of PS-KD is plain CE (one-hot past), epoch 2 mixes
    in z0 with α = 0.8·2/2; MCMI's first centroids are the class means of softmax(z0)."""
    student = classifier(tokenizer, 9, 32)
    with torch.no_grad():
        z0 = torch.cat([_alone(copy.deepcopy(student), tokenizer, t).logits for t in TEXTS])
    y = torch.tensor([r["label"] for r in LABELLED])
    config = TrainConfig(batch_size=6, epochs=2, lr=1e-30, shuffle=False)
    res = train_distillation(copy.deepcopy(student), None, LABELLED, tokenizer=tokenizer, loss="ps_kd_loss",
                             config=config)  # fmt: skip
    first, second = (r["loss"] for r in res.history)
    assert first == pytest.approx(float(torch.nn.functional.cross_entropy(z0, y)), rel=1e-9)
    assert second == pytest.approx(float(losses.ps_kd_loss(z0, y, z0, alpha=0.8)), rel=1e-9)
    res = train_mcmi_teacher(copy.deepcopy(student), LABELLED, tokenizer=tokenizer, cmi_weight=0.5, config=config)
    p = torch.softmax(z0, -1)
    centroids = torch.stack([p[y == c].mean(0) for c in range(3)])
    want = torch.nn.functional.cross_entropy(z0, y) - 0.5 * (p * (p.log() - centroids[y].log())).sum(-1).mean()
    assert res.history[0]["loss"] == pytest.approx(float(want), rel=1e-6)  # class_centroids averages in float32


def test_label_names_map_through_the_models_label2id_or_warn(tokenizer):
    from pairkit.errors import PairkitWarning

    config = TrainConfig(batch_size=6, max_steps=1)
    named = [{"text": t, "label": ["pos", "neutral", "neg"][i % 3]} for i, t in enumerate(TEXTS)]
    teacher = classifier(tokenizer, 2, 48)
    teacher.config.label2id = {"pos": 0, "neutral": 1, "neg": 2}
    by_name = train_distillation(classifier(tokenizer, 1, 32), teacher, named, tokenizer=tokenizer, loss="dkd_loss",
                                 config=config)  # fmt: skip
    by_index = train_distillation(classifier(tokenizer, 1, 32), teacher, LABELLED, tokenizer=tokenizer,
                                  loss="dkd_loss", config=config)  # fmt: skip
    assert by_name.history[0]["loss"] == by_index.history[0]["loss"]
    reordered = [dict(r, label={"pos": "b", "neutral": "a", "neg": "c"}[r["label"]]) for r in named]
    with pytest.warns(PairkitWarning, match=r"order of first appearance: \{'b': 0, 'a': 1, 'c': 2\}"):
        train_distillation(classifier(tokenizer, 1, 32), teacher, reordered, tokenizer=tokenizer, loss="dkd_loss",
                           config=config)  # fmt: skip


def test_a_batch_coupled_token_loss_is_refused_under_data_parallel(tokenizer, monkeypatch):
    """Token states are cut to each batch's shortest row, so no gathered batch equals one process's: refused by
    name before training (PS-KD, MCMI, the other batch-coupled losses run data parallel: test_accelerate_stateful)."""
    import pairkit.train.distillation as distillation

    monkeypatch.setattr(distillation, "init_distributed", lambda: (0, 2))
    with warnings.catch_warnings(), pytest.raises(InputError, match="'token_graph_kd_loss' is batch-coupled"):
        warnings.simplefilter("ignore")  # the rows' token counts differ
        train_distillation(classifier(tokenizer, 1, 32), classifier(tokenizer, 2, 48), LABELLED, tokenizer=tokenizer,
                           loss="token_graph_kd_loss", loss_options=REQUIRED, config=TrainConfig(max_steps=1))


def test_gradient_accumulation_gives_the_step_of_the_whole_batch(tokenizer):
    """Per-example losses: two micro-batches of 3 make the loss and gradient of one batch of 6."""
    runs = [train_distillation(classifier(tokenizer, 1, 32), classifier(tokenizer, 2, 48), LABELLED,
                               tokenizer=tokenizer, loss="hinton_kd_loss+nd_loss",
                               config=TrainConfig(batch_size=6, grad_accum=accum, max_steps=1))
            for accum in (1, 2)]  # fmt: skip
    for key in ("loss", "grad_norm", "accuracy"):
        assert runs[1].history[0][key] == pytest.approx(runs[0].history[0][key], rel=1e-9)
    with pytest.raises(InputError, match="batch-coupled"):
        train_distillation(classifier(tokenizer, 1, 32), classifier(tokenizer, 2, 48), LABELLED, tokenizer=tokenizer,
                           loss="rkd_distance_loss", config=TrainConfig(batch_size=6, grad_accum=2))  # fmt: skip
