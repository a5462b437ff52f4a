"""OpenAIJudge against a real loopback server: parsing, logprobs, retries, cost, concurrency, kill + resume."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pairkit.judges import (
    Budget,
    CachedJudge,
    JudgeError,
    JudgmentCache,
    OpenAIJudge,
    Price,
    Request,
    parse_verdict,
    verdict_from_logprobs,
)
from pairkit.select import Pool, select
from tests.judges.fake_openai import FakeServer

PRICE = Price(2.0, 8.0)


class Sleeps:
    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds: float):
        self.waits.append(seconds)


def make_judge(server: FakeServer, **options) -> OpenAIJudge:
    defaults = dict(
        base_url=server.url, api_key="test", timeout=0.3, backoff=0.01, max_backoff=0.05, price=PRICE, seed=0
    )
    return OpenAIJudge("judge-model", **{**defaults, **options})


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("reasoning... [[A]]", "A"),
        ("[[B]] wait, on reflection [[C]]", "tie"),
        ("My final verdict is tie: [[A=B]]", "tie"),
        ("Assistant B is much better: [[B>>A]]", "B>>A"),
        ("Output (a)", "A"),
        ("output ( b )", "B"),
        ('{"reason": "b is wrong", "winner": "A"}', "A"),
        ('Thoughts. {"verdict": "tie"}', "tie"),
        ('I like [[A]]. Final: {"preference": 2}', "B"),
        ("no verdict here [A] [[D]]", None),
        ("{not json}", None),
    ],
)
def test_parse_verdict(text, label):
    assert parse_verdict(text) == label


def test_verdict_from_logprobs_renormalises_over_letters():
    content = [
        {"token": "x [["},
        {
            "token": "B",
            "top_logprobs": [
                {"token": "B", "logprob": math.log(0.6)},
                {"token": " A", "logprob": math.log(0.2)},
                {"token": "C", "logprob": math.log(0.1)},
                {"token": "Z", "logprob": math.log(0.1)},
            ],
        },
    ]
    p_first, p_tie = verdict_from_logprobs(content)
    assert p_first == pytest.approx(0.2 / 0.9) and p_tie == pytest.approx(0.1 / 0.9)
    assert verdict_from_logprobs([{"token": "A"}]) is None


def test_logprob_probabilities_orders_and_cost():
    with FakeServer() as server:
        judge = make_judge(server)
        ab = judge.judge("q", "answer 9", "answer 1")
        ba = judge.judge("q", "answer 9", "answer 1", order="ba")
        assert ab.p_a == pytest.approx(0.7 / 0.9) and ab.verdict == "A"
        assert ba.p_a == pytest.approx(0.7 / 0.9) and ba.order == "ba" and ba.verdict == "B"
        pt, ct = server.paid_tokens()
        assert judge.usage.calls == 2 and judge.usage.prompt_tokens == pt and judge.usage.completion_tokens == ct
        assert judge.usage.cost == pytest.approx(PRICE.cost(pt, ct)) == pytest.approx(ab.cost + ba.cost)
        ref = make_judge(server, template="pairwise_reference")
        with pytest.raises(ValueError, match="reference"):
            ref.judge("q", "a 1", "b 2")
        assert ref.judge("q", "a 1", "b 2", reference="ref").p_a < 0.5


def test_retries_every_fault_kind_then_succeeds_without_double_counting():
    with FakeServer(slow=1.0) as server:
        server.script.extend(["429", "500", "timeout", "malformed", "truncated", "ok"])
        sleeps = Sleeps()
        judge = make_judge(server, sleep=sleeps, max_retries=5)
        j = judge.judge("q", "answer 1", "answer 5")
        assert j.p_a < 0.5 and j.n_calls == 1
        assert judge.usage.failures == {"http_429": 1, "http_500": 1, "timeout": 1, "malformed": 1, "transport": 1}
        assert len(sleeps.waits) == 5 and sleeps.waits[0] >= 1.0  # Retry-After: 1 honoured
        assert all(w <= 0.05 for w in sleeps.waits[1:])  # capped exponential backoff with jitter
        pt, ct = server.paid_tokens()
        assert len(server.paid) == 1 and judge.usage.cost == pytest.approx(PRICE.cost(pt, ct)) == j.cost


def test_gives_up_after_max_retries_and_reports():
    with FakeServer() as server:
        server.script.extend(["500", "429", "500"])
        judge = make_judge(server, sleep=Sleeps(), max_retries=2)
        with pytest.raises(JudgeError, match=r"3 attempts \(http_500, http_429, http_500\)"):
            judge.judge("q", "a 1", "b 2")
        assert judge.usage.calls == 0 and judge.usage.cost == 0 and len(judge.failures) == 3


def test_unparseable_verdicts_are_paid_once_each():
    with FakeServer() as server:
        server.script.extend(["unparseable", "ok"])
        judge = make_judge(server, parse_retries=1)
        j = judge.judge("q", "a 3", "b 2")
        assert j.p_a > 0.5 and len(server.paid) == 2
        pt, ct = server.paid_tokens()
        assert j.cost == pytest.approx(PRICE.cost(pt, ct)) == judge.usage.cost
        assert judge.usage.failures == {"unparseable": 1}
        server.script.extend(["unparseable"])
        cached = CachedJudge(make_judge(server, parse_retries=0), budget=Budget(max_cost=1.0))
        with pytest.raises(JudgeError, match="no verdict"):
            cached.judge("q", "a 3", "b 4")
        assert cached.budget.cost == pytest.approx(PRICE.cost(*server.paid[-1][1:]))
        assert cached.budget.cost > 0 and cached.budget.calls == 1
        assert cached.inner.usage.cost == pytest.approx(cached.budget.cost)


def test_samples_without_logprobs_and_bounded_concurrency():
    with FakeServer(logprobs=False, delay=0.02) as server:
        judge = make_judge(server, logprobs=False, samples=3, temperature=1.0, max_concurrency=2)
        reqs = [Request("q", f"a {i}", f"b {10 - i}") for i in range(8)]
        out = judge.judge_many(reqs)
        assert [j.p_a for j in out] == [float(i > 10 - i) for i in range(8)]
        assert all(j.n_calls == 3 for j in out) and len(server.paid) == 24
        assert server.max_active == 2


def test_killed_run_resumes_from_cache_without_repeating_a_call(tmp_path):
    values = np.random.default_rng(1).permutation(12)
    answers = {f"m{i}": f"answer {v}" for i, v in enumerate(values)}
    cache = tmp_path / "cache.sqlite"
    with FakeServer() as server:
        server.script.extend(["ok"] * 7 + ["hang"])
        script = textwrap.dedent(f"""
            from pairkit.judges import OpenAIJudge
            from pairkit.select import Pool, select
            judge = OpenAIJudge("judge-model", base_url={server.url!r}, api_key="t", timeout=60, max_concurrency=1)
            select("merge_sort", judge, Pool.single({answers!r}, context="q"), cache={str(cache)!r}, seed=3)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script])
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 8 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert len(server.requests) == 8, "the child did not reach the hanging request"
        finally:
            proc.kill()
            proc.wait()
        assert len(JudgmentCache(cache)) == 7
        judge = make_judge(server, max_concurrency=4)
        done = select("merge_sort", judge, Pool.single(answers, context="q"), cache=cache, seed=3)
        assert done.ranking == list(np.argsort(-values))
        prompts = [p[0] for p in server.paid]
        assert len(prompts) == len(set(prompts)) == len(JudgmentCache(cache))  # no paid call repeated
        assert judge.usage.calls == len(prompts) - 7 and done.info["usage"].cache_hits >= 7


def test_config_errors():
    with pytest.raises(ValueError, match="unknown template"):
        OpenAIJudge("m", template="nope")
    with pytest.raises(ValueError, match="samples"):
        OpenAIJudge("m", samples=0)


def test_async_batch_in_one_loop_shares_the_client():
    with FakeServer() as server:
        judge = make_judge(server)

        async def run():
            out = await judge.ajudge_many([Request("q", "a 1", "b 2"), Request("q", "a 3", "b 2")])
            await judge.aclose()
            return out

        out = asyncio.run(run())
        assert out[0].p_a < 0.5 < out[1].p_a


def test_retry_after_header_forms():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from pairkit.judges.http import _retry_after

    assert _retry_after("3") == 3.0 and _retry_after("0.5") == 0.5 and _retry_after(None) is None
    assert _retry_after("soon") is None
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < _retry_after(when) <= 30


def test_image_answers_are_sent_as_image_parts():
    from pairkit.judges.http import is_image

    judge = OpenAIJudge("vision-model", base_url="http://127.0.0.1:9/v1", images=True, price=PRICE)
    png = "data:image/png;base64,iVBORw0KGgo="
    url = "https://example.org/cat.jpg?size=large"
    body = judge.payload(Request("Which picture shows a cat?", png, url, order="ba"))
    parts = body["messages"][1]["content"]
    kinds = [p["type"] for p in parts]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    assert [p["image_url"]["url"] for p in parts if p["type"] == "image_url"] == [url, png]  # shown order: b first
    assert "Which picture shows a cat?" in parts[0]["text"] and "[The End of Assistant B's Answer]" in parts[-1]["text"]
    assert body["messages"][0]["content"] == judge.template.system  # the system prompt stays text
    plain = judge.payload(Request("q", "a cat.", "a dog."))
    assert isinstance(plain["messages"][1]["content"], str)
    assert not is_image("see https://example.org/cat.jpg") and is_image(" https://x.org/a.PNG ")
    assert judge.estimate_cost(Request("q", png, url)) > judge.estimate_cost(Request("q", "a", "b"))
    text_only = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1")  # images=False: a URL is just text
    assert isinstance(text_only.payload(Request("q", png, url))["messages"][1]["content"], str)
    from pairkit.judges import judge_identity

    assert judge_identity(judge) != judge_identity(OpenAIJudge("vision-model", base_url="http://127.0.0.1:9/v1",
                                                               price=PRICE))  # fmt: skip
