"""BatchJudge against a loopback batch API: one batch per round, half price, resumable, never paid twice."""

from __future__ import annotations

import sqlite3

import pytest

from pairkit.judges import BatchJudge, CachedJudge, JudgeError, JudgmentCache, OpenAIJudge, Price
from pairkit.select import Pool, select
from tests.judges.fake_batch import FakeBatchServer

PRICE = Price(2.0, 8.0)


class Killed(BaseException):
    """Stands in for a kill -9 at a chosen moment (not an Exception, so nothing catches it)."""


def judge_for(server, **options):
    return OpenAIJudge("m", base_url=server.url, api_key="t", price=PRICE, logprobs=False, backoff=0.0, **options)


async def no_wait(seconds):
    return None


POOL = Pool.single({f"m{k}": f"answer {k}" for k in range(5)}, context="q")


def run(server, cache, **options):
    batch = BatchJudge(judge_for(server), cache, poll_interval=1.0, sleep=options.pop("sleep", no_wait), **options)
    return batch, select("round_robin", CachedJudge(batch, cache), POOL, **options)


def test_a_round_is_one_batch_at_half_price_and_a_rerun_pays_nothing(tmp_path):
    cache = JudgmentCache(tmp_path / "c.sqlite")
    with FakeBatchServer() as server:
        batch, sel = run(server, cache)
        assert batch.batches_created == 1 and len(server.batches) == 1 and sel.calls == 10
        for rec in sel.records:  # the larger number wins
            assert rec.judgment.p_a == (1.0 if rec.a > rec.b else 0.0)
        assert sum(r.judgment.cost for r in sel.records) == pytest.approx(sel.info["usage"].cost)
        assert all(r.judgment.cost > 0 for r in sel.records)
        again_batch, again = run(server, cache)
        assert again_batch.batches_created == 0 and again.info["usage"].calls == 0 and len(server.batches) == 1
        assert max(server.paid.values()) == 1 and len(server.paid) == 10


def test_batch_price_is_the_discounted_online_price(tmp_path):
    with FakeBatchServer() as server:
        batch = BatchJudge(judge_for(server), tmp_path / "c.sqlite", sleep=no_wait)
        j = batch.judge("q", "answer 3", "answer 1")
        body_tokens = j.prompt_tokens, j.completion_tokens
    assert j.p_a == 1.0 and j.cost == pytest.approx(0.5 * PRICE.cost(*body_tokens))


def test_a_run_killed_while_waiting_resumes_the_same_batch(tmp_path):
    path = tmp_path / "c.sqlite"

    async def killed(seconds):
        raise Killed

    with FakeBatchServer(polls=3) as server:
        with pytest.raises(Killed):
            run(server, JudgmentCache(path), sleep=killed)
        assert len(server.batches) == 1
        batch, sel = run(server, JudgmentCache(path))
        assert batch.batches_created == 0 and len(server.batches) == 1 and sel.calls == 10
        assert max(server.paid.values()) == 1


def test_a_kill_between_submission_and_ledger_is_found_by_metadata(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    original = BatchJudge._record

    def record(self, submission, **fields):
        if fields.get("status") == "submitted" and not getattr(record, "done", False):
            record.done = True
            raise Killed
        return original(self, submission, **fields)

    with FakeBatchServer() as server:
        monkeypatch.setattr(BatchJudge, "_record", record)
        with pytest.raises(Killed):
            run(server, JudgmentCache(path))
        monkeypatch.setattr(BatchJudge, "_record", original)
        batch, sel = run(server, JudgmentCache(path))
        assert batch.batches_created == 0 and len(server.batches) == 1 and sel.calls == 10
        assert max(server.paid.values()) == 1


def test_a_completed_batch_whose_answers_were_not_stored_is_downloaded_not_resubmitted(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    with FakeBatchServer() as server:
        monkeypatch.setattr(JudgmentCache, "put", lambda *a, **k: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            run(server, JudgmentCache(path))
        monkeypatch.undo()
        with sqlite3.connect(path) as db:  # a killed process's claims are reaped with it (here it lives on)
            db.execute("DELETE FROM judgment_claims")
        batch, sel = run(server, JudgmentCache(path))
        assert batch.batches_created == 0 and len(server.batches) == 1 and sel.calls == 10


def test_max_wait_leaves_the_batch_for_the_next_run(tmp_path):
    path = tmp_path / "c.sqlite"
    with FakeBatchServer(polls=50) as server:
        batch = BatchJudge(judge_for(server), path, poll_interval=1.0, max_wait=1.5, sleep=no_wait)
        with pytest.raises(JudgeError, match="run again to keep waiting"):
            batch.judge("q", "answer 1", "answer 2")
        server.polls = 0
        again = BatchJudge(judge_for(server), path, sleep=no_wait)
        assert again.judge("q", "answer 1", "answer 2").p_a == 0.0
        assert again.batches_created == 0 and len(server.batches) == 1


def test_unparseable_batch_replies_are_cached_as_such(tmp_path):
    path = tmp_path / "c.sqlite"
    with FakeBatchServer() as server:
        for _ in range(2):
            cached = CachedJudge(BatchJudge(judge_for(server), path, sleep=no_wait), path)
            with pytest.raises(JudgeError, match="no verdict"):
                cached.judge("q", "mute 1", "answer 2")
        assert len(server.batches) == 1 and max(server.paid.values()) == 1


def test_options_are_checked():
    judge = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1", samples=2)
    with pytest.raises(Exception, match="samples=2"):
        BatchJudge(judge, ":memory:")
    with pytest.raises(Exception, match="poll_interval"):
        BatchJudge(OpenAIJudge("m"), ":memory:", poll_interval=0)
    with pytest.raises(Exception, match="OpenAI-compatible"):
        BatchJudge(object(), ":memory:")


def test_pairkit_judge_with_a_batch_config_submits_one_batch_and_resumes(tmp_path):
    import json

    from typer.testing import CliRunner

    from pairkit.cli import app

    rows = [{"context_id": "q", "candidate_id": f"m{k}", "text": f"answer {k}"} for k in range(4)]
    cands = tmp_path / "c.jsonl"
    cands.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeBatchServer() as server:
        config = tmp_path / "judge.json"
        config.write_text(json.dumps({"type": "openai", "model": "m", "base_url": server.url, "api_key": "t",
                                      "logprobs": False, "batch": {"poll_interval": 0.01}}))  # fmt: skip
        cache = tmp_path / "cache.sqlite"
        for _ in range(2):
            result = CliRunner().invoke(app, ["judge", str(cands), "--judge", str(config), "--cache", str(cache)])
            assert result.exit_code == 0, result.output
        assert len(server.batches) == 1 and max(server.paid.values()) == 1 and len(server.paid) == 6
        no_cache = CliRunner().invoke(app, ["judge", str(cands), "--judge", str(config)])
        assert no_cache.exit_code == 2 and "--cache" in no_cache.output
