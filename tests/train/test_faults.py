"""Regression tests for the training faults found by the CLI fuzz (issue 18, faults 4, 11 and 12)."""

import json
import math
import re
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from pairkit.cli import app  # noqa: E402
from pairkit.errors import EstimationError, InputError  # noqa: E402
from pairkit.train import TrainConfig, train_preference  # noqa: E402
from tests.train.conftest import build_model, write_jsonl  # noqa: E402
from tests.train.test_trainers import echo_pairs, params_of  # noqa: E402


def _train(*args, kind="dpo"):
    res = CliRunner().invoke(app, ["train", kind, *map(str, args)])
    assert "Traceback" not in res.output, res.output
    return res


def _dpo(model_dir, data, out, *extra):
    return _train("--model", model_dir, "--data", data, "--output", out, "--batch-size", 4, *extra)


@pytest.mark.parametrize("beta", ["nan", "-1", "0", "inf"])
def test_bad_beta_exits_2_naming_the_option(tmp_path, model_dir, beta):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(4, 0))
    res = _dpo(model_dir, data, tmp_path / "run", "--beta", beta)
    assert res.exit_code == 2, res.output
    assert "beta must be a finite number in (0, inf)" in res.output and beta in res.output
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--max-steps", "0"), ("--lr", "nan"), ("--lr", "inf"), ("--save-every", "0")]
)
def test_bad_loop_options_exit_2(tmp_path, model_dir, option, value):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(4, 0))
    res = _dpo(model_dir, data, tmp_path / "run", option, value)
    assert res.exit_code == 2, res.output
    assert option.lstrip("-").replace("-", "_") in res.output and value in res.output


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": math.nan}, {"lr": -1e-3}, {"weight_decay": -0.1}, {"max_grad_norm": 0.0}, {"warmup_steps": -1},
     {"max_steps": 0}, {"batch_size": 2.5}, {"max_prompt_length": 0}, {"seed": -1}],
)  # fmt: skip
def test_train_config_rejects_out_of_range_options(kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(InputError, match=rf"{name} must be .* got {value!r}"):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "say a", "chosen": "", "rejected": " b"}, "row 3, column 'chosen': empty completion"),
        ({"prompt": "say a", "chosen": " a", "rejected": ""}, "row 3, column 'rejected': empty completion"),
        ({"prompt": "say a", "chosen": " a", "rejected": " a"}, "row 3: chosen and rejected are the same text"),
    ],
)
def test_empty_or_identical_pairs_are_refused_naming_file_and_row(tmp_path, model_dir, row, message):
    rows = echo_pairs(4, 0)
    rows[2] = row
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    res = _dpo(model_dir, data, tmp_path / "run")
    assert res.exit_code == 2
    assert str(data) in res.output.replace("\n", "") and message in res.output


def test_unpaired_and_listwise_empty_completions_are_refused(tokenizer):
    from pairkit.train import train_listwise, train_unpaired

    model = build_model(tokenizer)
    rows = [{"prompt": "p", "completion": c, "label": i % 2 == 0} for i, c in enumerate([" a", "", " b"])]
    with pytest.raises(InputError, match="row 2, column 'completion': empty"):
        train_unpaired(model, tokenizer, rows)
    with pytest.raises(InputError, match="row 1, column 'responses': response 2 is empty"):
        train_listwise(model, tokenizer, [{"prompt": "p", "responses": [" a", ""], "scores": [1, 0]}])


def test_non_utf8_and_non_object_data_give_the_line(tmp_path, model_dir):
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(b'{"prompt": "a", "chosen": " x", "rejected": " y"}\n{"prompt": "caf\xe9", "chosen": "x"}\n')
    res = _dpo(model_dir, data, tmp_path / "run")
    assert res.exit_code == 2 and re.search(r"(line|row) 2\b", res.output) and "not UTF-8" in res.output
    data.write_text('{"prompt": "a", "chosen": " x", "rejected": " y"}\n7\n')
    res = _dpo(model_dir, data, tmp_path / "run")
    assert res.exit_code == 2 and re.search(r"(line|row) 2\b", res.output) and "Traceback" not in res.output
    data.write_text('[{"prompt": "a", "chosen": " x",\n "rejected": }]')
    res = _dpo(model_dir, data, tmp_path / "run")
    assert res.exit_code == 2 and re.search(r"line 2\b", res.output)


def test_resume_with_other_data_is_refused(tmp_path, model_dir):
    out = tmp_path / "run"
    res = _dpo(model_dir, write_jsonl(tmp_path / "a.jsonl", echo_pairs(8, 0)), out, "--max-steps", 1)
    assert res.exit_code == 0, res.output
    res = _dpo(model_dir, write_jsonl(tmp_path / "b.jsonl", echo_pairs(8, 1)), out, "--max-steps", 2, "--resume")
    assert res.exit_code == 2 and "trained on other data" in res.output


def test_resume_of_a_finished_run_warns_that_nothing_is_left(tmp_path, model_dir):
    data, out = write_jsonl(tmp_path / "a.jsonl", echo_pairs(8, 0)), tmp_path / "run"
    assert _dpo(model_dir, data, out, "--max-steps", 1).exit_code == 0
    res = _dpo(model_dir, data, out, "--max-steps", 1, "--resume")
    assert res.exit_code == 0 and "already reached step 1 of 1" in res.output


def test_resume_after_a_kill_logs_each_step_once(tokenizer, tmp_path):
    rows = echo_pairs(10, 3)
    config = TrainConfig(output_dir=str(tmp_path), batch_size=4, epochs=2, lr=5e-3, save_every=2, seed=7)

    def kill_at_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt  # step 3 is logged, its checkpoint (at 4) never written

    with pytest.raises(KeyboardInterrupt):
        train_preference(build_model(tokenizer, seed=5), tokenizer, rows, config=config, callback=kill_at_3)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')  # a line cut by the kill
    train_preference(build_model(tokenizer, seed=5), tokenizer, rows, config=config, resume=True)
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_truncated_checkpoint_is_named_on_resume(tmp_path, model_dir):
    data, out = write_jsonl(tmp_path / "a.jsonl", echo_pairs(8, 0)), tmp_path / "run"
    assert _dpo(model_dir, data, out, "--max-steps", 1).exit_code == 0
    ckpt = out / "checkpoints" / "step-1.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    res = _dpo(model_dir, data, out, "--max-steps", 2, "--resume")
    assert res.exit_code == 2 and "step-1.pt cannot be read" in res.output.replace("\n", "")


def test_nan_loss_stops_before_updating_the_model(tokenizer):
    model = build_model(tokenizer, seed=2)
    with torch.no_grad():
        model.model.norm.weight[0] = math.nan
    before = params_of(model)
    with pytest.raises(EstimationError, match="step 1: the loss is nan"):
        train_preference(model, tokenizer, echo_pairs(4, 0), config=TrainConfig(batch_size=4))
    for k, v in before.items():
        assert torch.equal(v.nan_to_num(), model.state_dict()[k].nan_to_num()), k


def test_nan_loss_option_is_refused(tokenizer):
    with pytest.raises(InputError, match="loss 'simpo': gamma must be a number, got nan"):
        train_preference(build_model(tokenizer), tokenizer, echo_pairs(4, 0), loss="simpo",
                         loss_options={"gamma": math.nan})  # fmt: skip


def _model_dir_variant(tmp_path, tokenizer, variant):
    path = tmp_path / variant
    if variant == "missing":
        return path
    path.mkdir()
    if variant == "empty":
        return path
    model = build_model(tokenizer)
    if variant == "config-only":
        model.config.save_pretrained(path)
    elif variant == "no-tokenizer":
        model.save_pretrained(path)
    elif variant == "truncated-weights":
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        weights = path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    return path


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("missing", "is not a local model directory"),
        ("empty", "has no config.json"),
        ("config-only", "has a config but no weights"),
        ("no-tokenizer", "has no tokenizer files"),
        ("truncated-weights", "weights"),
    ],
)
@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_bad_model_dirs_exit_2_at_once_without_a_hub(tmp_path, tokenizer, monkeypatch, variant, message, kind):
    import huggingface_hub

    def no_hub(*a, **k):
        raise AssertionError("a model hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    model = _model_dir_variant(tmp_path, tokenizer, variant)
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(4, 0))
    res = _train("--model", model, "--data", data, "--output", tmp_path / "run", kind=kind)
    assert res.exit_code == 2, res.output
    text = res.output.replace("\n", "")
    assert str(model) in text and message in text
    assert "sentencepiece" not in text


def test_lora_without_peft_says_how_to_install(tmp_path, model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(4, 0))
    res = _dpo(model_dir, data, tmp_path / "run", "--lora", 4)
    out = res.output.replace("\n", "")
    assert res.exit_code == 2 and "--lora needs the optional package 'peft'" in out and "pairkit[train]" in out


def test_reward_errors_name_the_file_row_before_shuffling(tmp_path, model_dir):
    rows = echo_pairs(12, 0)
    rows[4] = {"prompt": "say a", "chosen": " a"}  # row 5 of the file
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    res = _train("--model", model_dir, "--data", data, "--output", tmp_path / "rm", kind="reward")
    assert res.exit_code == 2
    assert f"{data}, row 5: needs 'chosen' and 'rejected'" in res.output.replace("\n", "")


def test_reward_held_out_split_keeps_prompts_apart():
    from pairkit.cli.train import _grouped_split

    keys = [f"p{i % 7}" for i in range(70)]
    test = _grouped_split(keys, 0.3, seed=1)
    held = {keys[i] for i in test}
    assert {keys[i] for i in range(70) if i not in set(test)}.isdisjoint(held)
    assert 18 <= len(test) <= 30  # whole prompts of 10 rows each: 0.3 of 70 rounds up to 3 prompts
    assert len(_grouped_split(keys, 0.0, seed=1)) == 0
    assert np.array_equal(test, _grouped_split(keys, 0.3, seed=1))


@pytest.mark.parametrize("kind", ["dpo", "kto", "listwise", "reward", "online"])
def test_mistyped_model_path_fails_before_torch_is_imported(tmp_path, kind):
    import subprocess

    code = (
        "import sys; from typer.testing import CliRunner; from pairkit.cli import app; "
        f"r = CliRunner().invoke(app, ['train', {kind!r}, '--model', 'no-such-dir', '--data', 'x.jsonl', "
        "'--prompts', 'p.jsonl', '--judge', 'j.json']); "
        "print(r.exit_code, 'torch' in sys.modules); print(r.output)"
    )
    if kind != "online":
        code = code.replace(", '--prompts', 'p.jsonl', '--judge', 'j.json'", "")
    else:
        code = code.replace(", '--data', 'x.jsonl'", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    first, _, rest = out.stdout.partition("\n")
    assert first == "2 False", out.stdout + out.stderr
    assert "is not a local model directory" in rest
