"""RayJudge on a local 2-CPU Ray cluster: the same judgments as in one process, the cache kept by the driver."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from pairkit.judges import CachedJudge, JudgmentCache, RayJudge, SimulatedJudge, judge_identity  # noqa: E402
from pairkit.select import Pool, select  # noqa: E402

STRENGTHS = {f"answer {k}": 0.3 * k for k in range(6)}


def make_judge():
    return SimulatedJudge(STRENGTHS, soft=True, position_bias=0.2)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_actors_judge_like_one_process_and_the_driver_keeps_the_cache(cluster, tmp_path):
    remote = RayJudge(make_judge, n_actors=2)
    assert judge_identity(remote) == judge_identity(make_judge())  # cached answers are shared with a local run
    pool = Pool.single({f"m{k}": text for k, text in enumerate(STRENGTHS)}, context="q")
    cache = JudgmentCache(tmp_path / "c.sqlite")
    sel = select("round_robin", CachedJudge(remote, cache), pool, policy="both_average")
    local = select("round_robin", make_judge(), pool, policy="both_average")
    got = sorted((r.a, r.b, r.judgment.order, round(r.judgment.p_a, 12)) for r in sel.records)
    want = sorted((r.a, r.b, r.judgment.order, round(r.judgment.p_a, 12)) for r in local.records)
    assert got == want and len(got) == 30 and remote.rounds == 1  # one round, split over the two actors
    assert len(cache) == 30
    again = select("round_robin", CachedJudge(make_judge(), cache), pool, policy="both_average")
    assert again.info["usage"].calls == 0  # a local judge reuses what the actors judged
    remote.shutdown()


def test_factory_is_checked(cluster):
    with pytest.raises(Exception, match="factory"):
        RayJudge("not callable")
    with pytest.raises(Exception, match="n_actors"):
        RayJudge(make_judge, n_actors=0)
