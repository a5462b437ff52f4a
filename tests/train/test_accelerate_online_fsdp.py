"""The online loop under ``accelerate launch --use_fsdp`` with two CPU processes (a subprocess; gloo), against one
process (the runs of tests/train/accelerate_online_worker.py, mode ``fsdp``).

The policy is sharded by FSDP2 (every parameter a ``Shard(0)`` DTensor, half its rows on each process); the
processes sample in step (``synced_gpus``), the main process alone calls the judge and writes the caches. The
two-process online DPO run is stopped in round 2 (the judge failing on the main process) and resumed from the
checkpoint of round 1 (whole states, re-sharded); compared with one process running the same two rounds without a
stop: the same samples and sample-cache keys (the gathered weights hash as one process's), the same judge calls (all
by rank 0, none twice), the same metrics and the same weights (float64; tolerance 1e-9: the two halves of each
minibatch are reduced in another order). Every other method (CREAM's self-judging, SCIR, HyPO, SPIN with earlier
iterates and a mixture reference, step-DPO, the policy-gradient methods), batched sampling in every process with a
moving reference and a win rate, and uneven shares end with the weights and metrics of one process too.
"""

import json
import sqlite3

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tests.train.accelerate_online_worker import FSDP_RUNS, load, run_method  # noqa: E402
from tests.train.test_accelerate_online import launch_online  # noqa: E402

pytestmark = pytest.mark.slow
TOL = {"atol": 1e-9, "rtol": 1e-9}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    return launch_online(tmp_path_factory.mktemp("online-fsdp"), "fsdp", "--use_fsdp")


def _saved(run_dir):
    return {p.name: json.loads(p.read_text()) for p in sorted((run_dir / "samples").glob("*.json"))}


def test_fsdp_shards_every_parameter(launched):
    _, (r0, r1), model, _ = launched
    for name, p in model.named_parameters():
        for r, rows in ((r0, -(-p.shape[0] // 2)), (r1, p.shape[0] // 2)):
            placements, local, whole = r["shards"][name]
            assert placements == "(Shard(dim=0),)" and whole == tuple(p.shape) and local[0] == rows, name


def test_fsdp_processes_draw_the_samples_and_make_the_judge_calls_of_one_process_once_on_rank_0(launched):
    out, _, _, hist = launched
    sharded, single = _saved(out / "run"), _saved(out / "single")
    assert list(sharded) == ["round-1.json", "round-2.json"]
    assert [s["samples"] for s in sharded.values()] == [s["samples"] for s in single.values()]
    assert sharded["round-1.json"]["key"] == single["round-1.json"]["key"]  # the gathered weights hash alike
    calls = [json.loads(x) for x in (out / "calls.jsonl").read_text().splitlines()]
    one = [json.loads(x) for x in (out / "calls-single.jsonl").read_text().splitlines()]
    assert {rank for rank, *_ in calls} == {"0"}
    assert sorted(c[1:] for c in calls) == sorted(c[1:] for c in one) and len(calls) == 2 * 48  # none twice
    with sqlite3.connect(out / "run" / "judgments.sqlite") as db:
        keys = [r[0] for r in db.execute("SELECT key FROM judgments")]
    assert len(keys) == len(set(keys)) == len(calls)
    assert [h["judge_calls"] for h in hist] == [48, 48]


def test_fsdp_stopped_and_resumed_run_trains_the_weights_of_one_uninterrupted_process(launched):
    _, (r0, r1), model, hist = launched
    assert r0["stopped"] and r1["stopped"] and not r0["redrawn"]
    assert [h["judge_calls"] for h in r0["history"]] == [48, 48 - 19]  # 19 cached before the stop
    start = load(launched[0] / "tiny")[0].state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(r0["weights"][k], r1["weights"][k])
        torch.testing.assert_close(r0["weights"][k], v, **TOL)
    assert any((v - start[k]).abs().max() > 1e-3 for k, v in model.state_dict().items())  # training moved them
    assert r0["history"] == r1["history"]
    for mine, one in zip(r0["history"], hist):
        for key in ("loss", "accuracy", "rewards/margin", "kl", "pairs", "sample_chars"):
            assert mine[key] == pytest.approx(one[key], abs=1e-9), key


@pytest.mark.parametrize("name", sorted(FSDP_RUNS))
def test_fsdp_paths_train_the_weights_of_one_process(launched, name):
    out, (r0, r1), _, _ = launched
    weights, hist = run_method(out / "tiny", name, FSDP_RUNS)
    assert r0["runs"][name][1] == r1["runs"][name][1]
    assert len(hist) == len(r0["runs"][name][1])
    for mine, one in zip(r0["runs"][name][1], hist):
        assert set(mine) == set(one)
        for key, value in one.items():
            assert mine[key] == pytest.approx(value, abs=1e-9), key
    for k, v in weights.items():
        torch.testing.assert_close(r0["runs"][name][0][k], v, **TOL)
        assert torch.equal(r0["runs"][name][0][k], r1["runs"][name][0][k])
