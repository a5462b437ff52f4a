"""The trainer under ``accelerate launch`` with two CPU processes (a subprocess; gloo): both ranks end with the same
parameters, equal to one process training on the whole batch, with full replicas (``--multi_gpu``) and with the
model sharded by FSDP2 (``--use_fsdp``, also with a LoRA adapter and with accelerate's other ``--fsdp_*`` options)."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[2]


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, worker_mode, *mode, worker="accelerate_worker.py", args=()):
    exe = shutil.which("accelerate") or pytest.skip("no accelerate launcher on PATH")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    worker = str(ROOT / "tests/train" / worker)
    cmd = [exe, "launch", *mode, "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_port()), worker, str(tmp_path),
           worker_mode, *args]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"rank-{r}.pt") for r in (0, 1)], done.stderr


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    """One ``--multi_gpu`` launch (plain data parallel): DPO, then the batch-coupled runs of the worker."""
    return _launch(tmp_path_factory.mktemp("dp"), "dp", "--multi_gpu")[0]


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_data_parallel(dp_run):
    from pairkit.train import TrainConfig, train_preference
    from tests.train.test_trainers import echo_pairs
    from tests.train.tiny import CharTokenizer, TinyCausalLM

    r0, r1 = dp_run
    model = TinyCausalLM(seed=6)
    train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2, lr=1e-2))
    start = TinyCausalLM(seed=6).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(r0[k], r1[k])  # both ranks hold the same parameters
        torch.testing.assert_close(r0[k], v, atol=1e-10, rtol=1e-9)  # = one process on the whole batch
    assert any(not torch.equal(r0[k], start[k]) for k in start)  # training moved the weights


def _differ(a, b):
    """The largest difference between two runs' weights and logged histories."""
    weights = max(float((a["state"][k] - b["state"][k]).abs().max()) for k in a["state"])
    logged = max(abs(x[k] - y[k]) for x, y in zip(a["history"], b["history"]) for k in x)
    return max(weights, logged)


COUPLED = ["dpo+sft", "dr_dpo", "aot", "kto", "infonce", "supcon+proxy_anchor", "ntxent", "cs_ib_loss", "ensloss"]


@pytest.mark.slow
@pytest.mark.parametrize("run", COUPLED)
def test_batch_coupled_losses_under_two_processes_equal_one_process(dp_run, run):
    """A batch-coupled loss (the SFT term's token mean, Dr. DPO's soft minimum, AOT's quantiles, KTO's KL point,
    in-batch negatives, label pairs, proxies, the CS-IB's Parzen estimates, EnsLoss's per-batch draw; in
    train_preference, train_unpaired, train_contrastive, train_regression, train_pairwise_judge) under two gloo
    processes — each holding half of each step's batch
    (4 + 4 rows, 2 + 2, then 4 + 4 of the next epoch) — gives the weights (and proxies) and the logged metrics
    (loss, accuracy, rewards, grad norm) of one process on the whole batch after three steps: float64, to 1e-10
    (the sums run in another order). Both ranks hold the same weights."""
    from tests.train.accelerate_worker import coupled_run

    one = coupled_run(run)
    r0, r1 = (r["coupled"][run] for r in dp_run)
    assert sorted(r0["state"]) == sorted(one["state"]) and [sorted(h) for h in r0["history"]] == [
        sorted(h) for h in one["history"]]  # fmt: skip
    for k in one["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["history"] == r1["history"]
    assert _differ(r0, one) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("run", COUPLED)
def test_batch_coupled_terms_computed_on_each_share_differ_from_one_process(dp_run, run):
    """The equality above can fail: computing the batch-coupled terms on each process's share alone (the bug this
    fixes) moves the weights or the metrics of the same two runs by far more than its tolerance."""
    from tests.train.accelerate_worker import coupled_run

    assert _differ(dp_run[0]["coupled"][f"{run} local"], coupled_run(run)) > 1e-6


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    """One ``--use_fsdp`` launch (the launcher's default options): plain and LoRA runs (the worker's ``fsdp``)."""
    return _launch(tmp_path_factory.mktemp("fsdp"), "fsdp", "--use_fsdp")[0]


def _one_process(model, tok, **kw):
    from pairkit.train import TrainConfig, train_preference
    from tests.train.test_trainers import echo_pairs

    config = TrainConfig(batch_size=8, max_steps=2, lr=1e-2)
    return train_preference(model, tok, echo_pairs(12, 4), config=config, **kw)


@pytest.mark.slow
def test_accelerate_fsdp_shards_the_model_and_equals_one_process_on_the_whole_batch(fsdp_run):
    """``--use_fsdp``: every parameter is a ``Shard(0)`` DTensor holding half its rows on each rank (the tied GPT-2
    head and embeddings included), yet the losses and the weights after two steps (the second resumed from the
    first's checkpoint) equal one process's on the same global batches, to 1e-5 (float32; the chunked head and
    the reduce-scatter sum in another order)."""
    from pairkit.testing import tiny_causal_lm

    r0, r1 = fsdp_run
    model, tok = tiny_causal_lm(seed=6)
    result = _one_process(model, tok)
    for r in (r0, r1):
        torch.testing.assert_close(r["losses"], [row["loss"] for row in result.history], atol=1e-5, rtol=0)
        assert r["groups"] == [("GPT2Block", False, False)]  # the model's _no_split_modules; no checkpointing
        for name, p in model.named_parameters():
            placements, local, whole = r["shards"][name]
            assert placements == "(Shard(dim=0),)" and whole == tuple(p.shape)
            assert local[0] == -(-p.shape[0] // 2) if r is r0 else local[0] == p.shape[0] // 2  # half the rows
        for k, v in model.state_dict().items():
            torch.testing.assert_close(r["state"][k], v, atol=1e-5, rtol=1e-5)
    start = tiny_causal_lm(seed=6)[0].state_dict()
    assert any((r0["state"][k] - start[k]).abs().max() > 1e-3 for k in start)  # training moved the weights
    assert result.history[0]["loss"] != result.history[1]["loss"]


@pytest.mark.slow
def test_accelerate_fsdp_batch_coupled_loss_equals_one_process(fsdp_run):
    """DPO + SFT (the SFT term's token mean spans the batch) with the model sharded by FSDP2: the gathered batch's
    term gives one process's weights and logged metrics after three steps to 1e-5 (float32); computed on each
    process's share it differs by more."""
    from tests.train.accelerate_worker import coupled_run

    one = coupled_run("dpo+sft", gpt2=True)
    for r in fsdp_run:
        assert _differ(r["coupled"]["dpo+sft"], one) < 1e-5
    assert _differ(fsdp_run[0]["coupled"]["dpo+sft local"], one) > 1e-4


def _check_lora(runs):
    """Each rank's LoRA run (``accelerate_worker.lora_run``) against one process: only the adapter trains, the base
    comes back bit for bit, and the losses and the saved adapter (peft's own selection from the gathered state dict)
    equal one process's to 1e-6."""
    import peft

    from tests.train.accelerate_worker import lora_tiny

    model, tok = lora_tiny()
    result = _one_process(model, tok, reference="adapter")
    adapter = peft.get_peft_model_state_dict(model)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert len(trainable) == 8 and all("lora_" in n for n in trainable)  # A and B of c_attn, c_proj, c_fc, mlp c_proj
    for r in runs:
        torch.testing.assert_close(r["losses"], [row["loss"] for row in result.history], atol=1e-6, rtol=0)
        assert r["trainable"] == trainable
        assert r["base_moved"] == 0.0  # frozen: gathered bit for bit
        assert sorted(r["adapter"]) == sorted(adapter)
        for k, v in adapter.items():
            torch.testing.assert_close(r["adapter"][k], v, atol=1e-6, rtol=0)
    assert max(float(v.abs().max()) for k, v in adapter.items() if "lora_B" in k) > 1e-3  # B starts at 0: it trained


@pytest.mark.slow
def test_accelerate_fsdp_lora_trains_only_the_adapter_and_equals_one_process(fsdp_run):
    """LoRA (peft, rank 2 on every linear layer, the reference is the base with the adapter disabled) under FSDP2:
    the frozen base and the trainable adapter share each block's group (FSDP2 reduces only the gradients that
    exist). After two steps (the second resumed) it equals one process (:func:`_check_lora`; float32, the
    adapter's values are about 1e-2)."""
    assert [r["lora"]["groups"] for r in fsdp_run] == [[("GPT2Block", False, False)]] * 2
    _check_lora([r["lora"] for r in fsdp_run])


@pytest.mark.slow
def test_accelerate_fsdp_options_are_honoured(tmp_path):
    """accelerate's ``--fsdp_*`` options change what FSDP2 does, not the arithmetic: with parameters offloaded to the
    CPU (``CPUOffloadPolicy``), activation checkpointing of the wrapped modules, no resharding after forward,
    forward prefetch, and ``--fsdp_transformer_layer_cls_to_wrap GPT2Attention,GPT2MLP`` (so the attention and MLP
    modules are the groups instead of the whole block), the losses and the weights after two steps (the second
    resumed) equal one process's to 1e-5. Process 1 starts from other weights: ``cpu_ram_efficient_loading`` (the
    launcher's default) broadcasts process 0's before the reference log-probabilities are computed. The LoRA run
    under the same options equals one process too. An unsupported option (``HYBRID_SHARD``) is refused naming it, on
    every process."""
    from pairkit.testing import tiny_causal_lm

    flags = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_offload_params", "true", "--fsdp_activation_checkpointing",
             "true", "--fsdp_reshard_after_forward", "false", "--fsdp_forward_prefetch", "true",
             "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_transformer_layer_cls_to_wrap",
             "GPT2Attention,GPT2MLP", "--fsdp_state_dict_type", "FULL_STATE_DICT"]  # fmt: skip
    (r0, r1), _ = _launch(tmp_path, "options", *flags)
    model, tok = tiny_causal_lm(seed=6)
    result = _one_process(model, tok)
    for r in (r0, r1):
        assert r["groups"] == [("GPT2Attention", True, True), ("GPT2MLP", True, True)]  # checkpointed, offloaded
        assert all(placements == "(Shard(dim=0),)" for placements, _, _ in r["shards"].values())
        torch.testing.assert_close(r["losses"], [row["loss"] for row in result.history], atol=1e-5, rtol=0)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(r["state"][k], v, atol=1e-5, rtol=1e-5)
        assert "--fsdp_sharding_strategy" in r["refused"] and "HYBRID_SHARD" in r["refused"]
        assert r["lora"]["groups"] == r["groups"]
    _check_lora([r0["lora"], r1["lora"]])  # with these options too (the adapter's names survive checkpointing)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
