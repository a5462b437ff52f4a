"""The trainer under ``accelerate launch`` with two CPU processes (a subprocess; gloo): both ranks end with the same
parameters, equal to one process training on the whole batch, with full replicas (``--multi_gpu``) and with the
model sharded by FSDP2 (``--use_fsdp``)."""

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


def _launch(tmp_path, worker_mode, *mode):
    exe = shutil.which("accelerate") or pytest.skip("no accelerate launcher on PATH")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    worker = str(ROOT / "tests/train/accelerate_worker.py")
    cmd = [exe, "launch", *mode, "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_port()), worker, str(tmp_path),
           worker_mode]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"rank-{r}.pt") for r in (0, 1)], done.stderr


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_data_parallel(tmp_path):
    from pairkit.train import TrainConfig, train_preference
    from tests.train.test_trainers import echo_pairs
    from tests.train.tiny import CharTokenizer, TinyCausalLM

    (r0, r1), _ = _launch(tmp_path, "dp", "--multi_gpu")
    model = TinyCausalLM(seed=6)
    train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2, lr=1e-2))
    start = TinyCausalLM(seed=6).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(r0[k], r1[k])  # both ranks hold the same parameters
        torch.testing.assert_close(r0[k], v, atol=1e-10, rtol=1e-9)  # = one process on the whole batch
    assert any(not torch.equal(r0[k], start[k]) for k in start)  # training moved the weights


@pytest.mark.slow
def test_accelerate_fsdp_shards_the_model_and_equals_one_process_on_the_whole_batch(tmp_path):
    """``--use_fsdp``: every parameter is a ``Shard(0)`` DTensor holding half its rows on each rank (the tied GPT-2
    head and embeddings included), yet the losses and the weights after two steps (the second resumed from the
    first's checkpoint) equal one process's on the same global batches, to 1e-5 (float32; the chunked head and
    the reduce-scatter sum in another order)."""
    from pairkit.testing import tiny_causal_lm
    from pairkit.train import TrainConfig, train_preference
    from tests.train.test_trainers import echo_pairs

    (r0, r1), _ = _launch(tmp_path, "fsdp", "--use_fsdp")
    model, tok = tiny_causal_lm(seed=6)
    result = train_preference(model, tok, echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2, lr=1e-2))
    for r in (r0, r1):
        torch.testing.assert_close(r["losses"], [row["loss"] for row in result.history], atol=1e-5, rtol=0)
        for name, p in model.named_parameters():
            placements, local, whole = r["shards"][name]
            assert placements == "(Shard(dim=0),)" and whole == tuple(p.shape)
            assert local[0] == -(-p.shape[0] // 2) if r is r0 else local[0] == p.shape[0] // 2  # half the rows
        for k, v in model.state_dict().items():
            torch.testing.assert_close(r["state"][k], v, atol=1e-5, rtol=1e-5)
    start = tiny_causal_lm(seed=6)[0].state_dict()
    assert any((r0["state"][k] - start[k]).abs().max() > 1e-3 for k in start)  # training moved the weights
    assert result.history[0]["loss"] != result.history[1]["loss"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
