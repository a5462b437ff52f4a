"""The judgment cache under the fuzz's faults (issue 18): the key is the full request, the file has a schema
version, old/foreign/damaged files are refused, unparseable paid replies are kept, two processes share calls,
and calls in flight at a kill are bounded and reported."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from pairkit.errors import InputError
from pairkit.judges import (
    CachedJudge,
    CacheWarning,
    JudgeError,
    JudgmentCache,
    OpenAIJudge,
    Request,
    SimulatedJudge,
    cache_key,
    judge_identity,
)
from pairkit.judges.cache import SCHEMA_VERSION, CachedFailure
from pairkit.select import Pool, select
from tests.judges.fake_openai import FakeServer

REQ = Request("q", "answer 1", "answer 2")


def http_judge(url="http://127.0.0.1:9/v1", **options):
    return OpenAIJudge("judge-model", **{"base_url": url, "api_key": "t", "seed": 0, **options})


@pytest.mark.parametrize(
    "change",
    [
        {"base_url": "http://127.0.0.1:10/v1"},
        {"model": "other-model"},
        {"temperature": 0.7},
        {"max_tokens": 16},
        {"logprobs": False},
        {"top_logprobs": 3},
        {"samples": 2},
        {"extra_body": {"top_p": 0.5}},
        {"extra_body": {"n": 2}},
        {"template": "pairwise_reference"},
    ],
)
def test_the_key_is_the_full_request(change):
    """base_url, temperature, logprobs, samples and extra fields were left out of the key: answers leaked."""
    base = dict(model="judge-model", base_url="http://127.0.0.1:9/v1", api_key="t")
    one, other = OpenAIJudge(**base), OpenAIJudge(**{**base, **change})
    req = Request("q", "answer 1", "answer 2", reference="r")
    assert cache_key(judge_identity(one), req) != cache_key(judge_identity(other), req)
    assert cache_key(judge_identity(one), req) == cache_key(judge_identity(OpenAIJudge(**base)), req)
    # ... and the api key, the concurrency and the retry settings do not change answers, so they share entries
    same = OpenAIJudge(**{**base, "api_key": "other", "max_concurrency": 2, "max_retries": 1})
    assert cache_key(judge_identity(one), req) == cache_key(judge_identity(same), req)


def test_the_key_covers_context_items_order_and_sample():
    ident = judge_identity(http_judge())
    keys = {
        cache_key(ident, r)
        for r in (
            REQ,
            Request("q2", "answer 1", "answer 2"),
            Request("q", "answer 1", "answer 3"),
            Request("q", "answer 1", "answer 2", order="ba"),
            Request("q", "answer 1", "answer 2", sample=1),
            Request("q", "answer 1", "answer 2", reference="ref"),
        )
    }
    assert len(keys) == 6
    assert cache_key(ident, Request("q", "answer 2", "answer 1", order="ba")) == cache_key(ident, REQ)  # same prompt


def test_answers_of_another_server_are_not_reused(tmp_path):
    pool = Pool.single({"a": "answer 1", "b": "answer 2", "c": "answer 3"}, context="q")
    cache = tmp_path / "c.sqlite"
    with FakeServer() as server, FakeServer(invert=True) as other:
        first = select("round_robin", http_judge(server.url), pool, cache=cache)
        second = select("round_robin", http_judge(other.url), pool, cache=cache)
        again = select("round_robin", http_judge(other.url), pool, cache=cache)
        assert len(server.paid) == len(other.paid) == 3
        assert again.info["usage"].calls == 0 and again.info["usage"].cache_hits == 3
    assert [d[3] for d in first.decisions] == pytest.approx([1 - d[3] for d in second.decisions])


def make_sqlite(path, *statements):
    db = sqlite3.connect(path)
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()
    return path


def test_schema_version_is_written_and_checked(tmp_path):
    path = tmp_path / "c.sqlite"
    JudgmentCache(path).close()
    db = sqlite3.connect(path)
    assert dict(db.execute("SELECT name, value FROM judgment_cache_meta")) == {
        "application": "pairkit judgment cache",
        "schema_version": str(SCHEMA_VERSION),
    }
    db.execute("UPDATE judgment_cache_meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(InputError, match="schema version '99'; this pairkit reads version 2"):
        JudgmentCache(path)


@pytest.mark.parametrize(
    ("statements", "words"),
    [
        (
            ["CREATE TABLE judgments (key TEXT PRIMARY KEY, judge_id TEXT, prompt_version TEXT, payload TEXT)"],
            "older pairkit (schema version 1)",
        ),
        (["CREATE TABLE judgments (x INTEGER)", "INSERT INTO judgments VALUES (1)"], "not a pairkit judgment cache"),
        (["CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ann')"], "holds the tables users"),
        (
            ["CREATE TABLE meta (name TEXT, value TEXT)", "INSERT INTO meta VALUES ('application', 'x')"],
            "not a pairkit",
        ),
    ],
)
def test_old_and_foreign_files_are_refused_and_left_alone(tmp_path, statements, words):
    """A foreign schema was a traceback (no such column) or silently written into."""
    path = make_sqlite(tmp_path / "other.sqlite", *statements)
    before = path.read_bytes()
    with pytest.raises(InputError, match=re.escape(words)):
        JudgmentCache(path)
    db = sqlite3.connect(path)
    assert "judgment_claims" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert path.read_bytes() == before


def test_damaged_and_non_database_files_are_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(InputError, match="cannot be used: file is not a database; if the file is damaged"):
        JudgmentCache(garbage)
    path = tmp_path / "damaged.sqlite"
    judge = CachedJudge(SimulatedJudge({f"answer {'x' * 500} {i}": float(i) for i in range(40)}), path)
    texts = list(judge.inner.strengths)
    judge.judge_many([Request("q", a, b) for a in texts[:20] for b in texts[20:]])
    judge.cache.close()
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // 4096 - 1, 3):  # scribble over every third page's header
        data[page * 4096 : page * 4096 + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"damaged.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(InputError, match="damaged.sqlite' cannot be used"):
        JudgmentCache(path)
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        JudgmentCache(tmp_path / "dir.sqlite")


@pytest.mark.timeout(60)
def test_an_unparseable_paid_reply_is_cached_and_not_paid_again(tmp_path):
    """A paid reply without a verdict was never cached: every rerun paid for it again."""
    cache = tmp_path / "c.sqlite"
    with FakeServer() as server:
        server.script.extend(["unparseable"])
        with pytest.raises(JudgeError, match="no verdict"):
            CachedJudge(http_judge(server.url, parse_retries=0, price=(2, 8)), cache).judge("q", "a 1", "b 2")
        assert len(server.paid) == 1
        rerun = CachedJudge(http_judge(server.url, parse_retries=0, price=(2, 8)), cache)
        with pytest.raises(CachedFailure, match=r"--retry-unparseable.*|.*I cannot decide") as err:
            rerun.judge("q", "a 1", "b 2")
        assert "I cannot decide" in str(err.value) and "retry-unparseable" in str(err.value)
        assert len(server.paid) == 1 and rerun.usage.calls == 0 and rerun.usage.cost == 0
        # an explicit policy asks again, and the answer replaces the failure
        retry = CachedJudge(http_judge(server.url, parse_retries=0), cache, retry_unparseable=True)
        assert retry.judge("q", "a 1", "b 2").p_a < 0.5 and len(server.paid) == 2
        assert CachedJudge(http_judge(server.url, parse_retries=0), cache).judge("q", "a 1", "b 2").cached


def child(url: str, cache, answers: dict, *, concurrency: int, strategy: str = "round_robin") -> str:
    return textwrap.dedent(f"""
        from pairkit.judges import OpenAIJudge
        from pairkit.select import Pool, select
        judge = OpenAIJudge("judge-model", base_url={url!r}, api_key="t", max_concurrency={concurrency})
        sel = select({strategy!r}, judge, Pool.single({answers!r}, context="q"), cache={str(cache)!r}, seed=3)
        print(sel.calls, sel.info["usage"].calls, sel.info["usage"].cache_hits)
    """)


@pytest.mark.timeout(120)
def test_two_processes_on_one_cache_pay_each_prompt_once(tmp_path):
    """Two `pairkit judge` runs on one cache paid all 120 prompts twice, without a lock or a warning."""
    answers = {f"m{i}": f"answer {i}" for i in range(8)}
    cache = tmp_path / "shared.sqlite"
    with FakeServer(delay=0.15) as server:
        script = child(server.url, cache, answers, concurrency=4)
        procs = [
            subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=100) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        prompts = Counter(p[0] for p in server.paid)
    assert len(prompts) == 28 and max(prompts.values()) == 1  # every prompt paid exactly once
    stats = [tuple(map(int, out.split())) for out, _ in outs]
    assert all(calls == 28 for calls, _, _ in stats)
    assert sum(paid for _, paid, _ in stats) == 28  # the waiting process took the other's answers


@pytest.mark.timeout(120)
def test_calls_in_flight_at_a_kill_are_bounded_by_the_concurrency_and_reported(tmp_path):
    """Calls in flight at a kill were paid again without a word (102 requests for 91 prompts after three kills)."""
    answers = {f"m{i}": f"answer {i}" for i in range(10)}
    cache = tmp_path / "killed.sqlite"
    with FakeServer() as server:
        server.script.extend(["ok"] * 6 + ["hang"] * 40)
        proc = subprocess.Popen([sys.executable, "-c", child(server.url, cache, answers, concurrency=3)])
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 9 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(0.3)
            assert len(server.requests) == 9, "the child did not reach its hanging calls"
        finally:
            proc.kill()
            proc.wait()
        server.script.clear()
        with pytest.warns(CacheWarning, match=r"^3 judge call\(s\) were in flight when a previous run"):
            reopened = JudgmentCache(cache)
        assert reopened.abandoned == 3 and len(reopened) == 6
        done = select("round_robin", http_judge(server.url), Pool.single(answers, context="q"), cache=reopened, seed=3)
        assert done.calls == 45 and done.info["usage"].calls == 39
        prompts = Counter(p[0] for p in server.paid)
        assert len(prompts) == 45 and max(prompts.values()) == 1


def test_wrapping_judges_key_by_their_inner_judges_and_pass_on_the_price():
    from pairkit.judges import EscalatingJudge

    cheap, strong = http_judge(temperature=0.0), OpenAIJudge("strong", base_url="http://127.0.0.1:9/v1", price=(1, 2))
    one = EscalatingJudge([cheap, strong], [0.9])
    other = EscalatingJudge([http_judge(temperature=0.5), strong], [0.9])
    assert cache_key(judge_identity(one), REQ) != cache_key(judge_identity(other), REQ)
    assert one.priced and not EscalatingJudge([cheap, http_judge()], [0.9]).priced
