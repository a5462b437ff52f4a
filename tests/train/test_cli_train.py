import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from pairkit.cli import app  # noqa: E402
from tests.train.conftest import write_jsonl  # noqa: E402
from tests.train.test_trainers import echo_pairs  # noqa: E402


def test_train_dpo_then_resume(tmp_path, model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(12, 0))
    out = tmp_path / "run"
    args = [
        "train",
        "dpo",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(out),
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--beta",
        "0.2",
        "--save-every",
        "1",
        "--max-steps",
        "2",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "model saved" in res.output
    assert (out / "final" / "config.json").exists() and (out / "checkpoints" / "step-2.pt").exists()
    res = CliRunner().invoke(app, [*args[:-1], "3", "--resume"])
    assert res.exit_code == 0, res.output
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_train_kto_and_reward(tmp_path, model_dir):
    rows = [
        {"prompt": p["prompt"], "completion": p["chosen" if i % 2 else "rejected"], "label": bool(i % 2)}
        for i, p in enumerate(echo_pairs(8, 1))
    ]
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    res = CliRunner().invoke(
        app,
        [
            "train",
            "kto",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--output",
            str(tmp_path / "kto"),
            "--batch-size",
            "4",
            "--max-steps",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    pairs = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(20, 2))
    res = CliRunner().invoke(
        app,
        [
            "train",
            "reward",
            "--model",
            str(model_dir),
            "--data",
            str(pairs),
            "--output",
            str(tmp_path / "rm"),
            "--batch-size",
            "8",
            "--max-steps",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "held-out accuracy" in res.output and "(" in res.output


def test_train_bad_input_exits_with_message(tmp_path, model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(4, 0))
    res = CliRunner().invoke(
        app,
        [
            "train",
            "dpo",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--loss",
            "dpoo",
            "--output",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 2
    assert "unknown loss" in res.output
    res = CliRunner().invoke(app, ["train", "dpo", "--model", str(tmp_path / "nope"), "--data", str(data)])
    assert res.exit_code == 2 and "not a local model directory" in res.output


def test_train_contrastive_on_pairs_and_labels(tmp_path, model_dir):
    words = ["alpha beta", "gamma delta", "good bad", "yes no", "user assistant", "system human"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": w, "positive": w + " " + w.split()[0]} for w in words])
    base = ["train", "contrastive", "--model", str(model_dir), "--batch-size", "3", "--max-steps", "2"]
    res = CliRunner().invoke(app, [*base, "--data", str(pairs), "--output", str(tmp_path / "a"),
                                   "--loss-option", "temperature=0.1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "final" / "config.json").exists()
    steps = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and all(s["loss"] > 0 for s in steps)
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"text": w, "label": i % 2} for i, w in enumerate(words)])
    res = CliRunner().invoke(app, [*base, "--data", str(labels), "--output", str(tmp_path / "b"), "--loss",
                                   "proxy_anchor"])  # fmt: skip
    assert res.exit_code == 0, res.output
    proxies = torch.load(tmp_path / "b" / "final" / "proxies.pt")
    assert proxies["proxy_anchor.proxies"].shape[0] == 2
    res = CliRunner().invoke(app, [*base, "--data", str(labels), "--output", str(tmp_path / "c")])
    assert res.exit_code != 0 and "'infonce' needs 'query'" in res.output
    targets = write_jsonl(tmp_path / "targets.jsonl", [{"text": w, "target": float(i)} for i, w in enumerate(words)])
    res = CliRunner().invoke(app, [*base, "--data", str(targets), "--output", str(tmp_path / "d"), "--loss", "conr",
                                   "--regression-loss", "mse"])  # fmt: skip
    assert res.exit_code == 0, res.output
    head = torch.load(tmp_path / "d" / "final" / "regression_head.pt")
    assert head["weight"].shape[0] == 1


def test_loss_option_reaches_the_loss_in_every_preference_command(tmp_path, model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(12, 0))

    def dpo_losses(*options):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        flags = [x for o in options for x in ("--loss-option", o)]
        res = CliRunner().invoke(app, ["train", "dpo", "--model", str(model_dir), "--data", str(data), "--output",
                                       str(out), "--batch-size", "4", "--lr", "1e-2", "--max-steps", "3", *flags])
        assert res.exit_code == 0, res.output
        return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]

    plain = dpo_losses()
    divergence = dpo_losses("f_divergence=js_divergence")
    assert divergence != plain  # the option reached the loss (the f-divergence changes steps 2-3)
    assert dpo_losses("dpo.f_divergence=js_divergence") == divergence  # scoped to the one term: the same run

    pairs = write_jsonl(tmp_path / "rm.jsonl", echo_pairs(16, 2))
    reward = ["train", "reward", "--model", str(model_dir), "--data", str(pairs), "--batch-size", "8", "--max-steps",
              "1", "--held-out", "0"]
    res = CliRunner().invoke(app, [*reward, "--output", str(tmp_path / "rm"), "--loss-option",
                                   "center_rewards_coefficient=0.5"])
    assert res.exit_code == 0, res.output
    for command in (["train", "dpo", "--data", str(data)], ["train", "kto", "--data", str(data)],
                    ["train", "listwise", "--data", str(data)], reward[:2] + ["--data", str(pairs)],
                    ["train", "online", "--prompts", str(data)],
                    ["train", "pmp", "--data", str(pairs), "--source", "reddit"]):
        res = CliRunner().invoke(app, [*command, "--model", str(model_dir), "--output", str(tmp_path / "bad"),
                                       "--loss-option", "nope=1"])
        assert res.exit_code == 2, (command, res.output)
        assert "has an option 'nope'" in res.output, (command, res.output)
    assert not (tmp_path / "bad").exists()  # refused before any model loaded or any file was written
