import copy
import json
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import (  # noqa: E402
    TrainConfig,
    evaluate_preference,
    train_listwise,
    train_preference,
    train_unpaired,
)
from pairkit.train._loop import parse_loss_spec  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "good", "bad", "yes", "no"]


def echo_pairs(n, seed, chat=False):
    """Learnable signal: the chosen answer repeats the prompt's word, the rejected one another word."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(len(WORDS), 2, replace=False)
        prompt = f"say {WORDS[a]}"
        if chat:
            prompt = [{"role": "user", "content": prompt}]
        rows.append({"prompt": prompt, "chosen": f" {WORDS[a]} {WORDS[a]}", "rejected": f" {WORDS[b]} {WORDS[b]}"})
    return rows


def params_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_dpo_loss_falls_and_heldout_accuracy_rises(tokenizer):
    model = build_model(tokenizer, seed=1)
    ref = copy.deepcopy(model)
    train, held = echo_pairs(64, 0, chat=True), echo_pairs(48, 1, chat=True)
    before = evaluate_preference(model, tokenizer, held)
    result = train_preference(
        model, tokenizer, train, loss="dpo", beta=0.5, config=TrainConfig(epochs=10, batch_size=16, lr=3e-2)
    )
    losses = [r["loss"] for r in result.history]
    assert losses[0] == pytest.approx(np.log(2), abs=1e-6)  # policy == reference at the first step
    assert np.mean(losses[-4:]) < 0.2 * losses[0]
    after = evaluate_preference(model, tokenizer, held, beta=0.5, reference_model=ref)
    assert after["accuracy"] >= 0.85 > 0.6 > before["accuracy"]
    assert result.history[-1]["rewards/margin"] > 0


def test_weighted_combination_adds_sft_term(tokenizer):
    rows = echo_pairs(8, 2)
    hist = {}
    for spec in ("dpo", "dpo+0.5*sft"):
        model = build_model(tokenizer, seed=3)
        hist[spec] = train_preference(
            model, tokenizer, rows, loss=spec, config=TrainConfig(batch_size=8, max_steps=1)
        ).history[0]
    nll = -hist["dpo"]["logps/chosen"]  # the first step's chosen log-likelihood, per token below
    assert hist["dpo+0.5*sft"]["loss"] > hist["dpo"]["loss"] + 0.5 * nll / 10
    assert parse_loss_spec("dpo+0.5*sft") == [("dpo", 1.0), ("sft", 0.5)]
    with pytest.raises(InputError, match="WEIGHT"):
        parse_loss_spec("x*dpo")


def _run(tokenizer, out, *, stop_at=None, resume=False, rows=None, **kw):
    model = build_model(tokenizer, seed=5)
    config = TrainConfig(output_dir=str(out), batch_size=4, epochs=2, lr=5e-3, save_every=2, seed=7, **kw)

    def stop(row):
        if stop_at is not None and row["step"] == stop_at:
            raise KeyboardInterrupt

    try:
        train_preference(model, tokenizer, rows, config=config, resume=resume, callback=stop)
    except KeyboardInterrupt:
        pass
    return model


def test_resume_reproduces_uninterrupted_run_exactly(tokenizer, tmp_path):
    rows = echo_pairs(10, 3)  # 3 steps per epoch, last batch partial; 6 steps
    full = _run(tokenizer, tmp_path / "a", rows=rows)
    _run(tokenizer, tmp_path / "b", rows=rows, stop_at=3)  # checkpoint at step 2, step 3 lost
    resumed = _run(tokenizer, tmp_path / "b", rows=rows, resume=True)
    for k, v in params_of(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    log_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_a] == list(range(1, 7))
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-2.pt", "step-4.pt", "step-6.pt"]
    assert len(list((tmp_path / "a" / "ref_cache").glob("ref-logps-*.pt"))) == 1


def test_resume_with_more_steps_follows_the_longer_schedule(tokenizer, tmp_path):
    """A finished 1-step run ends with the linear schedule at rate 0; resumed with max_steps=2 its second step takes
    the 2-step schedule's rate (lr / 2), so it equals an uninterrupted 2-step run (it used to take rate 0)."""
    rows = echo_pairs(8, 4)
    runs = {}
    for name, steps in (("once", 2), ("first", 1), ("resumed", 2)):
        model = build_model(tokenizer, seed=6, dtype=torch.float64)
        config = TrainConfig(batch_size=4, max_steps=steps, lr=1e-2, output_dir=str(tmp_path / name.replace("first",
                             "resumed")))  # fmt: skip
        runs[name] = (model, train_preference(model, tokenizer, rows, config=config, resume=name == "resumed"))
    assert runs["resumed"][1].history[-1]["lr"] == runs["once"][1].history[-1]["lr"] == 5e-3
    for k, v in params_of(runs["once"][0]).items():
        torch.testing.assert_close(runs["resumed"][0].state_dict()[k], v, atol=1e-12, rtol=0)


def test_gradient_accumulation_matches_full_batch(tokenizer):
    rows = echo_pairs(8, 4)
    out = {}
    for accum in (1, 4):
        model = build_model(tokenizer, seed=6, dtype=torch.float64)
        train_preference(
            model, tokenizer, rows, config=TrainConfig(batch_size=8, grad_accum=accum, max_steps=2, lr=1e-2)
        )
        out[accum] = params_of(model)
    for k in out[1]:
        torch.testing.assert_close(out[1][k], out[4][k], atol=1e-10, rtol=1e-9)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_path):
    """A worker as ``accelerate launch`` or ``torchrun`` start it: the environment describes the process group
    and nobody joins it; the trainer does (``init_distributed``)."""
    import os

    from tests.train.tiny import CharTokenizer, TinyCausalLM

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    try:
        model = TinyCausalLM(seed=6)
        config = TrainConfig(batch_size=8, max_steps=3, lr=1e-2)
        train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=config)
        assert torch.distributed.get_world_size() == world
        if rank == 0:
            torch.save(params_of(model), out_path)
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_data_parallel_matches_one_process(tmp_path):
    from tests.train.tiny import CharTokenizer, TinyCausalLM

    out_path = str(tmp_path / "ddp.pt")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), out_path), nprocs=2, join=True)
    ddp = torch.load(out_path)
    model = TinyCausalLM(seed=6)
    train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=3, lr=1e-2))
    for k, v in params_of(model).items():
        torch.testing.assert_close(ddp[k], v, atol=1e-10, rtol=1e-9)
    assert not torch.equal(v, TinyCausalLM(seed=6).state_dict()[k])  # training moved the weights


def test_peft_adapter_reference_matches_precomputed(tokenizer):
    peft = pytest.importorskip("peft")
    rows = echo_pairs(8, 5)
    hist = {}
    for reference in ("precompute", "adapter"):
        model = build_model(tokenizer, seed=8)
        torch.manual_seed(0)
        lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8))
        res = train_preference(
            lora, tokenizer, rows, reference=reference, config=TrainConfig(batch_size=4, max_steps=3, lr=1e-2)
        )
        hist[reference] = [r["loss"] for r in res.history]
    np.testing.assert_allclose(hist["adapter"], hist["precompute"], rtol=1e-5)
    assert hist["adapter"][-1] < hist["adapter"][0]
    with pytest.raises(InputError, match="PEFT"):
        train_preference(build_model(tokenizer), tokenizer, rows, reference="adapter")


def test_kto_unpaired_loss_falls(tokenizer):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(32):
        a, b = rng.choice(len(WORDS), 2, replace=False)
        good = i % 2 == 0
        word = WORDS[a] if good else WORDS[b]
        rows.append({"prompt": f"say {WORDS[a]}", "completion": f" {word} {word}", "label": good})
    model = build_model(tokenizer, seed=9)
    res = train_unpaired(model, tokenizer, rows, loss="kto", config=TrainConfig(epochs=5, batch_size=16, lr=1e-2))
    losses = [r["loss"] for r in res.history]
    assert np.mean(losses[-2:]) < losses[0]
    assert res.history[-1]["rewards/desirable_sum"] > res.history[-1]["rewards/undesirable_sum"]


def test_listwise_lipo_loss_falls(tokenizer):
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(24):
        a, b, c = rng.choice(len(WORDS), 3, replace=False)
        rows.append(
            {
                "prompt": f"say {WORDS[a]}",
                "responses": [f" {WORDS[b]}", f" {WORDS[a]} {WORDS[a]}", f" {WORDS[a]} {WORDS[c]}"],
                "scores": [0.0, 2.0, 1.0],
            }
        )
    rows[0]["responses"].append(" yes")  # ragged lists are padded and masked
    rows[0]["scores"].append(-1.0)
    model = build_model(tokenizer, seed=10)
    res = train_listwise(model, tokenizer, rows, loss="lipo", config=TrainConfig(epochs=5, batch_size=8, lr=1e-2))
    losses = [r["loss"] for r in res.history]
    assert np.mean(losses[-3:]) < 0.7 * losses[0]
    assert res.history[-1]["accuracy"] > 0.5


def _completion_logps(model, tokenizer, prompt, completion):
    """Sum of the completion tokens' log-probabilities after the prompt, and their number (one sequence at a time)."""
    from pairkit.train.data import encode_completion

    p, c = encode_completion(tokenizer, prompt, completion)
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = model(input_ids=ids).logits.double().log_softmax(-1)[0, :-1]
    picked = logp.gather(-1, ids[0, 1:, None]).squeeze(-1)[len(p) - 1 :]
    return float(picked.sum()), len(c)


def test_listwise_aft_step_one_is_the_constraint_alignment_loss_and_it_falls(tokenizer):
    """AFT through train_listwise: responses scored 1 (correct) / 0, length-normalised log-likelihoods."""
    from pairkit.losses import aft_loss

    rows = [{"prompt": f"say {w}", "responses": [f" {w} {w}", f" {v}", f" {w} {v} {v}"], "scores": [1, 0, 0]}
            for w, v in zip(WORDS[:4], WORDS[4:])]  # fmt: skip
    model = build_model(tokenizer, seed=21)
    frozen = copy.deepcopy(model)
    res = train_listwise(model, tokenizer, rows, loss="aft", config=TrainConfig(batch_size=4, max_steps=1, lr=1e-12,
                                                                                shuffle=False))  # fmt: skip
    got = [[_completion_logps(frozen, tokenizer, r["prompt"], c) for c in r["responses"]] for r in rows]
    logps = torch.tensor([[g[0] for g in row] for row in got], dtype=torch.float64)
    lengths = torch.tensor([[g[1] for g in row] for row in got], dtype=torch.float64)
    want = aft_loss(logps, torch.tensor([r["scores"] for r in rows]), lengths=lengths)
    assert res.history[0]["loss"] == pytest.approx(float(want), rel=1e-4)
    # the ranking term alone falls towards 0; with the boundary the negatives are held near the positives, so the
    # sum has a floor above 0 (about 1.5 here) and falls less
    for options, factor in (({"constraint": "none"}, 0.5), ({}, 0.99)):
        h = train_listwise(build_model(tokenizer, seed=21), tokenizer, rows * 4, loss="aft", loss_options=options,
                           config=TrainConfig(epochs=6, batch_size=8, lr=1e-2)).history  # fmt: skip
        assert np.mean([r["loss"] for r in h[-2:]]) < factor * h[0]["loss"], options


def test_bad_loss_and_options_raise(tokenizer):
    model = build_model(tokenizer)
    rows = echo_pairs(4, 0)
    with pytest.raises(InputError, match="needs 'policy_logps'"):
        train_preference(model, tokenizer, rows, loss="kto")
    with pytest.raises(InputError, match="option 'gamma'"):
        train_preference(model, tokenizer, rows, loss="dpo", loss_options={"gamma": 1.0})
    with pytest.raises(InputError, match="unknown loss"):
        train_preference(model, tokenizer, rows, loss="dpoo")
    with pytest.raises(InputError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_bf16_autocast_runs_and_stays_close_to_float32(tokenizer):
    rows = echo_pairs(8, 6)
    first = {}
    for bf16 in (False, True):
        model = build_model(tokenizer, seed=11)
        res = train_preference(
            model, tokenizer, rows, config=TrainConfig(batch_size=4, max_steps=2, lr=1e-2, bf16=bf16)
        )
        first[bf16] = res.history[1]
        assert np.isfinite(res.history[1]["loss"])
    # bf16 matmuls (8-bit mantissa) perturb the log-probabilities by ~1e-2 relative
    assert first[True]["loss"] == pytest.approx(first[False]["loss"], rel=0.05)


def test_curriculum_order_is_kept_without_shuffling(tokenizer):
    from pairkit.train import curriculum_pairs

    samples = {
        "prompt": ["say alpha"] * 4 + ["say beta"] * 3,
        "response": [" alpha", " beta", " gamma", " no", " beta", " yes", " bad"],
        "score": [3.0, 1.0, 0.0, -2.0, 2.0, 0.5, 0.0],
    }
    pairs = curriculum_pairs(samples)
    seen = []

    def record(model, rows):
        seen.extend(r["seqs"][1] for r in rows)  # the rejected sequence identifies the pair
        return torch.zeros(len(rows), requires_grad=True), {}

    from pairkit.train._loop import fit
    from pairkit.train._steps import pair_examples as _pair_examples

    config = TrainConfig(batch_size=2, epochs=2, shuffle=False)
    examples = _pair_examples(tokenizer, pairs, config)
    model = build_model(tokenizer)
    fit(model, examples, record, config)
    order = [ex["seqs"][1] for ex in examples]
    assert seen == order * 2 and list(pairs["stage"]) == sorted(pairs["stage"])
