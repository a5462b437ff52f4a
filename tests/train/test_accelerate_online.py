"""The online loop under ``accelerate launch`` with two CPU processes (a subprocess; gloo), against one process.

Each process samples its share of a round's prompts (``per_prompt_seeds``); the main process alone reads and
writes the sample and judgment caches and calls the judge; the pairs are trained data parallel. The two-process
run of online DPO is stopped in round 2 (the judge failing on the main process) and resumed; compared with one
process running the same two rounds without a stop: the same samples, the same judge calls (all made by rank 0,
none twice, none repeated after the resume), the same per-round metrics and the same weights (float64; tolerance
1e-9: the two halves of each minibatch are summed in another order). One round of a method per other data
parallel code path (policy-gradient chunks, HyPO, SCIR, SPIN, step-DPO) ends with the weights of one process too.
"""

import json
import sqlite3

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tests.train.accelerate_online_worker import METHODS, logged, run, run_method  # noqa: E402
from tests.train.test_accelerate import _launch  # noqa: E402

pytestmark = pytest.mark.slow
TOL = {"atol": 1e-9, "rtol": 1e-9}


def launch_online(out, mode, flag):
    """The worker's runs (``mode``) under ``accelerate launch flag`` and one process's two rounds of online DPO:
    ``(out, rank results, one process's model, its metrics rows)``."""
    from tests.train.conftest import build_model, build_tokenizer

    model_dir = out / "tiny"
    tok = build_tokenizer()
    build_model(tok, seed=0).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    ranks, _ = _launch(out, mode, flag, worker="accelerate_online_worker.py", args=[str(model_dir)])
    model, hist = run(model_dir, out / "single", logged(out / "calls-single.jsonl"))
    return out, ranks, model, hist


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    return launch_online(tmp_path_factory.mktemp("online-dp"), "online", "--multi_gpu")


def _calls(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _samples(run_dir):
    return {p.name: json.loads(p.read_text())["samples"] for p in sorted((run_dir / "samples").glob("*.json"))}


def test_two_processes_draw_the_samples_and_make_the_judge_calls_of_one_process_once_on_rank_0(launched):
    out, (r0, r1), _, hist = launched
    assert _samples(out / "run") == _samples(out / "single") and len(_samples(out / "run")) == 2
    calls, single = _calls(out / "calls.jsonl"), _calls(out / "calls-single.jsonl")
    assert {rank for rank, *_ in calls} == {"0"}  # only the main process called the judge
    assert sorted(c[1:] for c in calls) == sorted(c[1:] for c in single) and len(calls) == 2 * 48  # none twice
    with sqlite3.connect(out / "run" / "judgments.sqlite") as db:
        keys = [r[0] for r in db.execute("SELECT key FROM judgments")]
    assert len(keys) == len(set(keys)) == len(calls)  # one row per call
    assert [h["judge_calls"] for h in hist] == [48, 48]


def test_two_processes_train_the_weights_and_report_the_metrics_of_one_process(launched):
    out, (r0, r1), model, hist = launched
    for k, v in model.state_dict().items():
        assert torch.equal(r0["weights"][k], r1["weights"][k])  # both ranks hold the same replica
        torch.testing.assert_close(r0["weights"][k], v, **TOL)  # = one process on the whole batch
    assert r0["history"] == r1["history"] and len(hist) == 2
    for mine, one in zip(r0["history"], hist):
        assert set(mine) == set(one)
        for key in ("loss", "accuracy", "rewards/margin", "kl", "pairs", "judge_cost", "sample_chars"):
            assert mine[key] == pytest.approx(one[key], abs=1e-9), key
    assert hist[1]["loss"] != hist[0]["loss"] and hist[1]["kl"] != 0.0  # the policy moved in round 1


def test_two_processes_stopped_in_round_2_resume_without_redrawing_or_rejudging(launched):
    _, (r0, r1), _, _ = launched
    assert r0["stopped"] and r1["stopped"]  # the main process's failure stopped both
    assert not r0["redrawn"]  # round 2's samples were read back, not drawn again
    assert [h["judge_calls"] for h in r0["history"]] == [48, 48 - 19]  # 19 cached before the stop
    assert r0["history"][1]["judge_cache_hits"] == 19


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_data_parallel_path_trains_the_weights_of_one_process(launched, method):
    out, (r0, r1), _, _ = launched
    weights, hist = run_method(out / "tiny", method)
    assert r0["methods"][method][1] == r1["methods"][method][1]
    for key, value in hist[0].items():
        assert r0["methods"][method][1][0][key] == pytest.approx(value, abs=1e-9), key
    for k, v in weights.items():
        torch.testing.assert_close(r0["methods"][method][0][k], v, **TOL)
        assert torch.equal(r0["methods"][method][0][k], r1["methods"][method][0][k])
