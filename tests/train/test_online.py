"""The online loop: a tiny Llama built from a config samples, a scripted judge compares, the policy learns."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit.judges import CallableJudge  # noqa: E402
from pairkit.train import OnlineConfig, TrainConfig, rate_samples, train_online  # noqa: E402
from pairkit.train.online import judge_samples  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402
from tests.train.test_trainers import params_of  # noqa: E402

WORDS = "alpha beta gamma delta good bad yes no".split()
PROMPTS = [f"say {w}" for w in WORDS] * 2
EVAL = [f"{v} {w}" for v in ("tell", "write") for w in WORDS]


def prefers_a(context, first, second):
    """A scripted judge with a known, checkable preference: more letters 'a' wins; equal counts tie."""
    a, b = first.count("a"), second.count("a")
    return 1.0 if a > b else 0.0 if a < b else 0.5


def _run(tokenizer, out=None, *, rounds=3, resume=False, judge=None, method="online_dpo", callback=None, **online):
    model = build_model(tokenizer, seed=0)
    cfg = OnlineConfig(rounds=rounds, prompts_per_round=8, k=4, max_new_tokens=8, **online)
    config = TrainConfig(lr=2e-2, batch_size=8, seed=0, output_dir=str(out) if out else None)
    hist = train_online(model, tokenizer, PROMPTS, judge or CallableJudge(prefers_a), method=method, config=config,
                        online=cfg, eval_prompts=EVAL, resume=resume, callback=callback)  # fmt: skip
    return model, hist


def test_online_dpo_raises_the_judge_win_rate_against_the_initial_policy(tokenizer):
    # fixed seeds: 0.5 at the start by construction (policy = initial: the same seeded samples, all ties); measured
    # 0.97 after 10 rounds; the bar 0.8 is the target (tolerance 0.17 below the measured value, for other
    # torch/transformers builds). benchmarks/bench_online.py --curve draws the whole curve over 3 seeds.
    from pairkit.train.online import win_rate

    start = build_model(tokenizer, seed=0)
    cfg = OnlineConfig(max_new_tokens=8)
    assert win_rate(start, start, tokenizer, EVAL, CallableJudge(prefers_a), online=cfg) == 0.5
    _, hist = _run(tokenizer, rounds=10, eval_every=10)
    assert hist[-1]["win_rate"] >= 0.8
    assert np.mean([h["loss"] for h in hist[-3:]]) < math.log(2) - 0.03 < hist[0]["loss"] + 1e-9
    assert all(h["judge_calls"] >= 8 * 6 for h in hist)  # all pairs of 4 samples in 8 prompts


def test_iterative_dpo_moves_the_reference_every_round(tokenizer):
    """With the round's starting policy as reference and one step per round, every round starts at ln 2."""
    _, iterative = _run(tokenizer, rounds=2, method="iterative_dpo", epochs=1)
    _, online = _run(tokenizer, rounds=2, method="online_dpo")
    assert [h["loss"] for h in iterative] == pytest.approx([math.log(2)] * 2, abs=1e-7)
    assert abs(online[1]["loss"] - math.log(2)) > 1e-4  # the initial policy stays the reference
    assert online[0]["kl"] == 0.0 and iterative[1]["kl"] == 0.0 and online[1]["kl"] != 0.0


def test_kill_and_resume_draws_no_sample_twice_and_repeats_no_judge_call(tokenizer, tmp_path):
    full, hist_full = _run(tokenizer, tmp_path / "a")
    calls = {"n": 0}

    def dies_in_round_2(context, first, second):
        calls["n"] += 1
        if calls["n"] == 48 + 20:  # 48 calls per round: the kill lands in round 2, after its samples are saved
            raise KeyboardInterrupt
        return prefers_a(context, first, second)

    with pytest.raises(KeyboardInterrupt):
        _run(tokenizer, tmp_path / "b", judge=CallableJudge(dies_in_round_2, judge_id="prefers_a"))
    assert (tmp_path / "b" / "samples" / "round-2.json").exists()
    resumed, hist = _run(tokenizer, tmp_path / "b", resume=True)
    assert [h["round"] for h in hist] == [1, 2, 3]
    assert hist[1]["judge_cache_hits"] == 19 and hist[1]["judge_calls"] == 48 - 19
    for k, v in params_of(full).items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-3.pt"]
    assert hist_full[2]["loss"] == pytest.approx(hist[2]["loss"], abs=0)


def test_rate_samples_orders_each_prompt_by_its_own_judgments():
    samples = [["a", "aaa", "aa", ""], ["bbb", "aa", "a", "aaaa"]]
    sel = judge_samples(CallableJudge(prefers_a), ["p", "q"], samples)
    ratings = rate_samples(sel, 2, 4)
    assert list(np.argsort(-ratings[0])) == [1, 2, 0, 3]
    assert list(np.argsort(-ratings[1])[:3]) == [3, 1, 2]
    assert np.all(np.isfinite(ratings)) and sel.calls == 12


def test_online_options_are_checked():
    from pairkit.errors import InputError

    with pytest.raises(InputError, match="k must be an integer in"):
        OnlineConfig(k=0)
    with pytest.raises(InputError, match="temperature must be a finite number in"):
        OnlineConfig(temperature=float("nan"))
    with pytest.raises(InputError, match="pairs must be"):
        OnlineConfig(pairs="best")
    with pytest.raises(InputError, match="fsdp_sampling must be 'synced' or 'gathered', got 'all'"):
        OnlineConfig(fsdp_sampling="all")


def test_cli_train_online_runs_and_resumes(tmp_path, model_dir):
    from typer.testing import CliRunner

    from pairkit.cli import app
    from tests.train.conftest import write_jsonl

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS[:4]])
    out = tmp_path / "run"
    args = ["train", "online", "--model", str(model_dir), "--prompts", str(prompts), "--judge",
            "tests.train.test_online:prefers_a", "--samples", "3", "--prompts-per-round", "2", "--max-new-tokens", "4",
            "--lr", "1e-2", "--output", str(out), "--rounds"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "2"])
    assert res.exit_code == 0, res.output
    assert "model saved" in res.output and (out / "final" / "config.json").exists()
    res = CliRunner().invoke(app, [*args, "3", "--resume"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3] and rows[0]["judge_calls"] == 2 * 3
    bad = CliRunner().invoke(app, [*args[:7], "nope:nothing", *args[8:], "1"])
    assert bad.exit_code == 2 and "neither a judge config file nor an importable" in bad.output
