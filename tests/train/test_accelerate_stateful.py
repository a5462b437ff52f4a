"""The trainers with state across steps under ``accelerate launch`` with two CPU processes (gloo): semi-supervised
(FixMatch with random augmentations, SimMatchV2's FIFO and labelled banks, the batch-coupled relation consistency
loss, ShrinkMatch's batch-normalised auxiliary head) and distillation (PS-KD's past-logit table, MCMI's centroids,
batch-coupled RKD) end with the weights and per-example state of one process on the whole batch, on both ranks;
resumed under two processes they equal the uninterrupted run. One launch (``accelerate_stateful_worker.runs``)
serves every assertion; the one-process runs are the same function in this process. Tolerance 1e-12 (float64;
sums over processes in another order)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig  # noqa: E402
from pairkit.train._loop import check_collective  # noqa: E402
from tests.train.test_accelerate import _launch  # noqa: E402

TOL = {"atol": 1e-12, "rtol": 0}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    from tests.train.accelerate_stateful_worker import runs

    (r0, r1), _ = _launch(tmp_path_factory.mktemp("two"), "stateful", "--multi_gpu",
                          worker="accelerate_stateful_worker.py")  # fmt: skip
    return r0, r1, runs(str(tmp_path_factory.mktemp("one")))


def _same(launched, name, keys=None):
    r0, r1, one = launched
    assert r0["world"] == r1["world"] == 2
    state = one[name]["state"]
    for k in keys or state:
        assert torch.equal(r0[name]["state"][k], r1[name]["state"][k]), k  # every process holds the same
        torch.testing.assert_close(r0[name]["state"][k], state[k], **TOL, msg=lambda m, k=k: f"{name} {k}: {m}")
    torch.testing.assert_close(r0[name]["losses"], one[name]["losses"], **TOL)
    return state


@pytest.mark.slow
def test_semi_supervised_two_processes_equal_one(launched):
    """Each process draws its share of the step's unlabelled rows and of its seeded augmentations; the banks take
    every process's rows in the batch's order; relation consistency and ShrinkMatch's batch-normalised auxiliary head
    run on the gathered batch; ShrinkMatch's certain ratio counts every process's rows."""
    for name in ("fixmatch", "relation"):
        state = _same(launched, name)
        assert int(state["drawn"]) == 4 * 4 * 2  # four steps of 4 labelled rows, ratio 2
    state = _same(launched, "simmatch")
    assert int(state["bank_filled"]) == 6 and int(state["bank_next"]) == (5 * 8) % 6  # 5 steps of 8 unlabelled rows
    assert state["bank_embeddings"].norm(dim=-1).sub(1).abs().max() < 1e-12
    state = _same(launched, "shrinkmatch")  # the auxiliary MLP's batch-norm statistics and the running ratio too
    assert 0 < float(state["certain_ratio"]) < 1 and float(state["aux_head.1.running_var"].sub(1).abs().max()) > 1e-3
    fixmatch, relation = launched[2]["fixmatch"]["state"], launched[2]["relation"]["state"]
    assert (fixmatch["head.weight"] - relation["head.weight"]).abs().max() > 1e-6  # the coupled term mattered


@pytest.mark.slow
def test_distillation_two_processes_equal_one(launched):
    """PS-KD's past logits and the visit counts hold every process's rows; MCMI's centroids come from both
    processes' shares of the data; RKD's distance and angle terms are computed on the gathered batch."""
    ps_kd = _same(launched, "ps_kd")
    assert ps_kd["visits"].tolist() == [3] * 8 and ps_kd["past_logits"].abs().min() > 0
    mcmi = _same(launched, "mcmi")
    assert int(mcmi["centroid_epoch"]) == 2
    torch.testing.assert_close(mcmi["centroids"].sum(-1), torch.ones(3, dtype=torch.float64))
    assert (mcmi["centroids"] - 1 / 3).abs().max() > 1e-3  # the model's own predictions, not the uniform start
    _same(launched, "rkd")


@pytest.mark.slow
def test_resume_under_two_processes_equals_the_uninterrupted_run(launched):
    """Two steps (a checkpoint written once), then resumed by both processes: the banks, past logits, weights and
    the losses of the remaining steps equal the uninterrupted run's."""
    r0, r1, _ = launched
    for name, tail in (("simmatch", 3), ("ps_kd", 3)):
        _same(launched, f"{name}_resumed")
        for r in (r0, r1):
            for k, v in r[name]["state"].items():
                torch.testing.assert_close(r[f"{name}_resumed"]["state"][k], v, **TOL)
            torch.testing.assert_close(r[f"{name}_resumed"]["losses"], r[name]["losses"][-tail:], **TOL)


def test_a_step_without_a_row_for_every_process_is_refused():
    """Processes that share state must each run every micro-batch: 10 rows in batches of 4 leave a last step of 2."""
    check_collective(10, TrainConfig(batch_size=4), 2)
    check_collective(10, TrainConfig(batch_size=4, grad_accum=3), 1)
    with pytest.raises(InputError, match=r"at least 4 rows in every step.*leave a step of 2"):
        check_collective(10, TrainConfig(batch_size=4, grad_accum=2), 2)
    with pytest.raises(InputError, match=r"at least 3 rows.*leave a step of 1"):
        check_collective(9, TrainConfig(batch_size=4), 3)

