"""Fuzz of the judges (issue 18): malformed replies, configs and cache states.

Each property: the judge returns a valid judgment or raises a clear pairkit error (``PairkitError``: ``InputError``,
``JudgeError``, …), never another exception, never hangs (bounded examples, a deadline per example, no network),
and never pays twice for a prompt it has cached.
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairkit.errors import PairkitError
from pairkit.judges import (
    CachedJudge,
    CallableJudge,
    JudgeError,
    Judgment,
    JudgmentCache,
    OpenAIJudge,
    Request,
    judge_from_config,
    parse_verdict,
    verdict_distribution,
)

FAST = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

VERDICTS = ["[[A]]", "[[B]]", "[[C]]", "[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]", "A++", "B+",
            "Output (a)", '{"winner": "B"}', "[[", "]]", "[[A", "[[D]]", "{", "}"]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(VERDICTS), st.text(max_size=12)), max_size=8).map("".join)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**20), 10**20), st.none(), st.text(max_size=4),
    st.booleans(), st.lists(st.integers(), max_size=2),
)  # fmt: skip
tokens = st.one_of(
    st.sampled_from(["[[", "A", "B", "C", ">", ">>", "=", "]]", " [[", "A>", "B]]", ""]), st.text(max_size=3)
)
entry = st.fixed_dictionaries(
    {},
    optional={
        "token": tokens,
        "logprob": numbers,
        "top_logprobs": st.one_of(
            st.none(),
            st.lists(st.fixed_dictionaries({}, optional={"token": tokens, "logprob": numbers}), max_size=4),
        ),
    },
)
logprob_content = st.one_of(st.none(), st.lists(entry, max_size=8))


def valid(judgment: Judgment) -> bool:
    fields = (judgment.p_a, judgment.p_tie, judgment.cost, judgment.weight)
    return (
        all(math.isfinite(x) for x in fields) and judgment.cost >= 0 and 0 <= judgment.p_a + judgment.p_tie <= 1 + 1e-9
    )


@FAST
@given(texts)
def test_parse_verdict_returns_a_label_or_none(text):
    label = parse_verdict(text)
    assert label is None or label in {"A", "B", "tie", "A>>B", "A>B", "B>A", "B>>A"}


@FAST
@given(logprob_content)
def test_logprob_reader_returns_a_distribution_or_none(content):
    try:
        dist = verdict_distribution(content)
    except PairkitError:
        return
    if dist is not None:
        assert all(math.isfinite(p) and p >= 0 for p in dist.values())
        assert sum(dist.values()) == pytest.approx(1.0)


bodies = st.fixed_dictionaries(
    {
        "choices": st.lists(
            st.fixed_dictionaries(
                {"message": st.fixed_dictionaries({"content": st.one_of(texts, st.none())})},
                optional={"logprobs": st.one_of(st.none(), st.fixed_dictionaries({"content": logprob_content}))},
            ),
            min_size=1,
            max_size=2,
        )
    },
    optional={
        "usage": st.one_of(
            st.none(),
            st.fixed_dictionaries({}, optional={"prompt_tokens": numbers, "completion_tokens": numbers}),
        )
    },
)


@FAST
@given(bodies, st.sampled_from(["graded", "arena_hard", "binary"]), st.sampled_from(["ab", "ba"]))
def test_openai_judge_on_malformed_replies_answers_or_raises_a_pairkit_error(body, scale, order):
    judge = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1", api_key="t", price=(1.0, 2.0), verdicts=scale,
                        parse_retries=0)  # fmt: skip

    async def post(payload):
        return body

    judge._post = post
    try:
        judgment = judge.judge("q", "x", "y", order=order)
    except PairkitError:
        return
    assert valid(judgment)


configs = st.fixed_dictionaries(
    {"type": st.sampled_from(["simulated", "openai", "portia", "bsm", "cgcot", "few_shot", "human", "nope", 3])},
    optional={
        "model": st.one_of(st.text(max_size=5), numbers),
        "strengths": st.one_of(numbers, st.dictionaries(st.text(max_size=3), numbers, max_size=3)),
        "price": st.one_of(numbers, st.lists(numbers, max_size=3)),
        "temperature": numbers,
        "samples": numbers,
        "max_retries": numbers,
        "timeout": numbers,
        "k": numbers,
        "chat": st.one_of(numbers, st.just({"type": "openai", "model": "m"}), st.just({"type": "human"})),
        "exemplars": st.one_of(
            numbers, st.lists(st.dictionaries(st.text(max_size=8), st.text(max_size=3)), max_size=2)
        ),
        "concept": st.one_of(st.text(max_size=5), numbers),
        "questions": st.one_of(st.lists(st.text(max_size=5), max_size=2), numbers),
        "noise": numbers,
        "position_bias": numbers,
        "bogus_option": numbers,
    },
)


@FAST
@given(configs)
def test_judge_configs_build_a_judge_or_raise_input_error(config):
    try:
        judge = judge_from_config(config)
    except PairkitError:
        return
    assert hasattr(judge, "ajudge") and isinstance(judge.judge_id, str)


requests = st.lists(
    st.tuples(st.sampled_from(["x", "y", "z"]), st.sampled_from(["x", "y", "z"]), st.sampled_from(["ab", "ba"]),
              st.integers(0, 1)).filter(lambda t: t[0] != t[1]),
    min_size=1,
    max_size=12,
)  # fmt: skip


@FAST
@given(requests, st.sets(st.sampled_from(["x", "y", "z"]), max_size=1))
def test_a_cached_prompt_is_never_paid_twice(asks, mute):
    paid: list[tuple] = []

    def fn(context, first, second):
        paid.append((first, second))
        if first in mute:
            error = JudgeError("no verdict")
            error.unparseable, error.cost, error.raw = True, 1.0, "?"
            raise error
        return Judgment(p_a=float(first > second), cost=1.0)

    cached = CachedJudge(CallableJudge(fn, priced=True), JudgmentCache(":memory:"))
    shown = set()
    for a, b, order, sample in asks:
        r = Request("q", a, b, order, sample=sample)
        shown.add((r.first, r.second, sample))
        try:
            j = cached.judge_many([r])[0]
        except JudgeError:
            continue
        assert valid(j)
    assert len(paid) == len(shown)  # one paid call per shown prompt, whatever the order, repeats and failures


damage = st.one_of(
    st.binary(max_size=64).map(lambda b: ("bytes", b)),
    st.sampled_from(
        [
            "{not json",
            "[]",
            "null",
            '{"p_a": "high"}',
            '{"p_a": 2.0}',
            '{"p_tie": -1}',
            "{}",
            '{"p_a": 0.5, "extra": 1}',
        ]
    ).map(lambda p: ("payload", p)),  # fmt: skip
    st.sampled_from(
        [
            "CREATE TABLE t (x)",
            "DROP TABLE judgments",
            "UPDATE judgment_cache_meta SET value = '9'",
            "DELETE FROM judgment_cache_meta",
        ]
    ).map(lambda s: ("sql", s)),  # fmt: skip
)


@settings(max_examples=30, deadline=4000, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(damage)
def test_a_damaged_cache_is_read_or_refused_with_a_clear_error(tmp_path_factory, change):
    path = tmp_path_factory.mktemp("cache") / "c.sqlite"
    identity = {"judge_id": "j", "prompt_version": "v"}
    request = Request("q", "x", "y")
    kind, value = change
    if kind == "bytes":
        path.write_bytes(value)
    else:
        cache = JudgmentCache(path)
        cache.put(identity, request, Judgment(p_a=1.0))
        cache.close()
        with sqlite3.connect(path) as db:
            if kind == "payload":
                db.execute("UPDATE judgments SET payload = ?", (value,))
            else:
                db.execute(value)
    try:
        found = JudgmentCache(path).get(identity, request)
    except PairkitError:
        return
    assert found is None or valid(found)
    json.dumps(found.to_dict() if found else None)


def test_unreadable_token_counts_are_counted_not_a_traceback():
    judge = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1", api_key="t", price=(1.0, 2.0))

    async def post(payload):
        usage = {"prompt_tokens": "12", "completion_tokens": 3}
        return {"choices": [{"message": {"content": "[[A]]"}}], "usage": usage}

    judge._post = post
    j = judge.judge("q", "x", "y")
    assert j.p_a == 1.0 and j.completion_tokens == 3 and judge.usage.failures == {"usage": 1}
