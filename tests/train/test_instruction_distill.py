"""Instruction distillation: a pairwise teacher's ordering distilled into a pointwise student (tiny models)."""

import itertools
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from pairkit.errors import InputError  # noqa: E402
from pairkit.judges import CallableJudge  # noqa: E402
from pairkit.train import (  # noqa: E402
    TrainConfig,
    evaluate_pointwise_ranker,
    pointwise_scores,
    read_ranking_lists,
    teacher_scores,
    train_instruction_distillation,
)
from tests.train.conftest import write_jsonl  # noqa: E402
from tests.train.test_pairwise_judge import causal_lm  # noqa: E402

NOUNS = ["alpha", "beta", "gamma", "delta", "yes", "no"]


def goodness(text):
    return text.split().count("good") - text.split().count("bad")


def teacher_fn(context, a, b):
    """P(a ≻ b) rises with the good-minus-bad word count; equal counts tie half the time."""
    d = goodness(a) - goodness(b)
    if d == 0:
        return 0.25, 0.5
    return 1 / (1 + math.exp(-2 * d)), 0.0


TEACHER = CallableJudge(teacher_fn, judge_id="goodness")


def lists(n, seed, k=4):
    rng = np.random.default_rng(seed)
    words = ["good good", "good", "", "bad", "bad bad"]
    rows = []
    for i in range(n):
        picks = rng.choice(len(words), k, replace=False)
        rows.append({"query": f"q {i % 5}", "candidates": [f"{words[p]} {rng.choice(NOUNS)}".strip() for p in picks]})
    return rows


def one_label(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return transformers.LlamaForSequenceClassification(config)


def test_teacher_scores_are_expected_wins_by_enumeration():
    rows = read_ranking_lists(lists(3, 0) + [{"prompt": "q", "responses": ["good x", "good y", "bad z"]}])
    got = teacher_scores(TEACHER, rows)
    for row, t in zip(rows, got):
        c = row["candidates"]
        ref = np.zeros(len(c))
        for i, j in itertools.permutations(range(len(c)), 2):
            p, tie = teacher_fn("", c[i], c[j])
            ref[i] += (p + 0.5 * tie) / 2 + (1 - teacher_fn("", c[j], c[i])[0] - teacher_fn("", c[j], c[i])[1]
                                             + 0.5 * teacher_fn("", c[j], c[i])[1]) / 2  # fmt: skip
        np.testing.assert_allclose(t, ref, atol=1e-12)
        assert t.sum() == pytest.approx(len(c) * (len(c) - 1) / 2)  # every pair hands out one win
    with pytest.raises(InputError, match="row 1, column 'candidates': expected a list of at least 2"):
        read_ranking_lists([{"query": "q", "candidates": ["one"]}])


def test_first_step_loss_is_ranknet_on_the_teacher_order(tokenizer):
    rows = lists(4, 1) + [{"query": "q 9", "candidates": ["good a", "bad b", "c"]}]  # lists of different lengths
    model = one_label(tokenizer)
    ref = []
    with torch.no_grad():
        for row, t in zip(rows, teacher_scores(TEACHER, read_ranking_lists(rows))):
            s = [pointwise_scores(model, tokenizer, [row["query"]], [c]).item() for c in row["candidates"]]  # unpadded
            terms = [math.log1p(math.exp(-(s[i] - s[j]))) for i, j in itertools.permutations(range(len(s)), 2)
                     if t[i] > t[j]]  # fmt: skip
            ref.append(np.mean(terms))
    res = train_instruction_distillation(
        model, tokenizer, rows, teacher=TEACHER, config=TrainConfig(batch_size=5, max_steps=1)
    )
    assert res.history[0]["loss"] == pytest.approx(np.mean(ref), rel=1e-5)
    with pytest.raises(InputError, match="give a teacher judge"):
        train_instruction_distillation(model, tokenizer, rows)
    with pytest.raises(InputError, match="num_labels=1"):
        pointwise_scores(causal_lm(tokenizer), tokenizer, ["q"], ["x"])


def test_yes_no_student_learns_the_teachers_order(tokenizer):
    model = causal_lm(tokenizer, seed=3)
    config = TrainConfig(epochs=8, batch_size=8, lr=3e-3, schedule="constant", max_length=64)
    before = evaluate_pointwise_ranker(model, tokenizer, lists(30, 7), teacher=TEACHER, yes_no=("yes", "no"))
    train_instruction_distillation(model, tokenizer, lists(48, 6), teacher=TEACHER, yes_no=("yes", "no"), config=config)
    after = evaluate_pointwise_ranker(model, tokenizer, lists(30, 7), teacher=TEACHER, yes_no=("yes", "no"))
    assert after["agreement"] > 0.85 > before["agreement"]
    assert after["teacher_calls"] == 30 * 6 and after["student_calls"] == 30 * 4


def test_cli_distill_ranker(tmp_path, tokenizer):
    from pairkit.cli import app

    model_dir = tmp_path / "student"
    one_label(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "lists.jsonl", lists(20, 2))
    teacher = tmp_path / "teacher.py"
    teacher.write_text("def prefer(context, a, b):\n    return a.count('good') >= b.count('good')\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        args = ["train", "distill-ranker", "--model", str(model_dir), "--data", str(data), "--teacher",
                "teacher:prefer", "--output", str(tmp_path / "out"), "--epochs", "1", "--max-length", "32"]  # fmt: skip
        res = CliRunner().invoke(app, args)
    finally:
        sys.path.remove(str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "held-out agreement with the teacher" in res.output
    marker = json.loads((tmp_path / "out" / "final" / "pairkit_ranker.json").read_text())
    assert marker["kind"] == "pointwise_ranker" and marker["held_out"]["lists"] >= 1


def test_cli_checks_the_yes_no_words_before_the_teacher_runs(tmp_path, tokenizer):
    from pairkit.cli import app

    model_dir = tmp_path / "lm"
    causal_lm(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "lists.jsonl", lists(12, 4))
    calls = []
    import sys
    import types

    mod = types.ModuleType("counting_teacher")
    mod.prefer = lambda context, a, b: calls.append(1) or a.count("good") >= b.count("good")
    sys.modules["counting_teacher"] = mod
    try:
        args = ["train", "distill-ranker", "--model", str(model_dir), "--data", str(data), "--teacher",
                "counting_teacher:prefer", "--output", str(tmp_path / "out"), "--yes-no",
                "--max-length", "48"]  # fmt: skip
        res = CliRunner().invoke(app, [*args, "--words", "Yes,No"])  # one token each? not in this tiny tokenizer
        assert res.exit_code != 0 and "must start with different tokens" in res.output and not calls
        res = CliRunner().invoke(app, [*args, "--words", "yes,no"])
        assert res.exit_code == 0, res.output
        assert len(calls) == 12 * 6 and "held-out agreement with the teacher" in res.output
    finally:
        del sys.modules["counting_teacher"]
