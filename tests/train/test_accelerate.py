"""The trainer under ``accelerate launch`` with two CPU processes (a subprocess; gloo): both ranks end with the same
parameters, equal to one process training on the whole batch; ``--use_fsdp`` is refused loudly (a warning), not
silently run as something else."""

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


def _launch(tmp_path, *mode):
    exe = shutil.which("accelerate") or pytest.skip("no accelerate launcher on PATH")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    worker = str(ROOT / "tests/train/accelerate_worker.py")
    cmd = [exe, "launch", *mode, "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_port()), worker, str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"rank-{r}.pt") for r in (0, 1)], done.stderr


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_data_parallel(tmp_path):
    from pairkit.train import TrainConfig, train_preference
    from tests.train.test_trainers import echo_pairs
    from tests.train.tiny import CharTokenizer, TinyCausalLM

    (r0, r1), _ = _launch(tmp_path, "--multi_gpu")
    model = TinyCausalLM(seed=6)
    train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2, lr=1e-2))
    start = TinyCausalLM(seed=6).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(r0[k], r1[k])  # both ranks hold the same parameters
        torch.testing.assert_close(r0[k], v, atol=1e-10, rtol=1e-9)  # = one process on the whole batch
    assert any(not torch.equal(r0[k], start[k]) for k in start)  # training moved the weights


@pytest.mark.slow
def test_accelerate_fsdp_request_warns_that_the_trainer_runs_data_parallel(tmp_path):
    (r0, r1), stderr = _launch(tmp_path, "--use_fsdp")
    assert "does not shard the model (FSDP)" in stderr
    assert all(torch.equal(r0[k], r1[k]) for k in r0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
