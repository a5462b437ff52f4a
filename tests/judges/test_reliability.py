"""Regressions for the judge-layer faults of the fuzz (issue 18), each built from its failing case.

Retry-After honoured without a cap, ~6 minutes per call by default, ``--max-cost`` without a price, negative or
non-numeric prices, non-UTF-8 candidates, a strength of "high", strategies without a count or with options
that never end.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.errors import InputError
from pairkit.judges import Budget, CachedJudge, CallableJudge, JudgeError, OpenAIJudge, RetryWarning
from pairkit.judges.config import judge_from_config
from pairkit.select import STRATEGIES, Pool, select
from tests.judges.fake_openai import FakeServer

runner = CliRunner()


def http_judge(server: FakeServer, **options) -> OpenAIJudge:
    return OpenAIJudge("judge-model", **{"base_url": server.url, "api_key": "t", "seed": 0, **options})


@pytest.mark.timeout(30)
@pytest.mark.parametrize("retry_after", ["3600", "date+3600"])
def test_a_long_retry_after_gives_the_call_up_at_once_with_a_warning(retry_after):
    """`Retry-After: 3600` (or an HTTP date an hour ahead) was slept out: the run hung for an hour."""
    with FakeServer() as server:
        server.script.extend([f"429:{retry_after}"])
        judge = http_judge(server)
        start = time.monotonic()
        with pytest.warns(RetryWarning, match="max_retry_after=60"), pytest.raises(JudgeError, match="Retry-After"):
            judge.judge("q", "answer 1", "answer 2")
        assert time.monotonic() - start < 5
        assert judge.usage.failures == {"http_429": 1, "retry_after_too_long": 1}
        assert judge.usage.calls == 0 and len(server.requests) == 1


@pytest.mark.timeout(30)
def test_a_short_retry_after_is_waited_out():
    with FakeServer() as server:
        server.script.extend(["429:0.2"])
        judge = http_judge(server)
        start = time.monotonic()
        assert judge.judge("q", "answer 1", "answer 2").p_a < 0.5
        assert time.monotonic() - start >= 0.2 and judge.usage.failures == {"http_429": 1}


@pytest.mark.timeout(30)
def test_one_call_ends_within_max_call_seconds_against_a_stalling_server():
    """The defaults allowed 6 attempts × 60 s plus backoff: ~6.5 minutes per call against a stalling server."""
    with FakeServer(slow=5.0) as server:
        server.script.extend(["timeout"] * 20)
        judge = http_judge(server, timeout=0.4, backoff=0.05, max_retries=50, max_call_seconds=1.5)
        start = time.monotonic()
        with pytest.warns(RetryWarning, match="max_call_seconds=1.5"), pytest.raises(JudgeError, match="1.5 s"):
            judge.judge("q", "answer 1", "answer 2")
        assert time.monotonic() - start < 2.5
        assert 2 <= judge.usage.failures["timeout"] <= 5


def test_default_bounds_are_sane():
    judge = OpenAIJudge("m")
    assert judge.max_call_seconds == 120 and judge.connect_timeout == 10 and judge.timeout == 60
    assert judge.max_retries == 4 and judge.max_retry_after == 60


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"timeout": -1}, "timeout must be a number > 0, got -1"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_call_seconds": float("inf")}, "max_call_seconds"),
        ({"samples": 0}, "samples"),
        ({"price": [-1, 2]}, "input_per_million must be a finite number >= 0"),
        ({"price": ["a", "b"]}, "price input_per_million"),
        ({"price": [1]}, "price must be [input, output]"),
        ({"tempreture": 1}, "a 'openai' judge has no option 'tempreture'; it takes: api_key"),
    ],
)
def test_judge_options_are_checked_with_the_option_named(options, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        judge_from_config({"type": "openai", "model": "m", **options}, source="judge.json")


def test_max_cost_without_a_price_is_an_error():
    """45 paid calls and "cost 0.0000" with `--max-cost` and no price: the limit could never stop the run."""
    with FakeServer() as server:
        pool = Pool.single({"a": "answer 1", "b": "answer 2"}, context="q")
        with pytest.raises(InputError, match=r"max_cost=0.01 needs a judge with a price.*\"price\""):
            select("round_robin", http_judge(server), pool, budget=Budget(max_cost=0.01))
        with pytest.raises(InputError, match="needs a judge with a price"):
            CachedJudge(CallableJudge(lambda c, x, y: 1.0), budget=Budget(max_cost=1))
        priced = select("round_robin", http_judge(server, price=[2, 8]), pool, budget=Budget(max_cost=0.01))
        assert priced.info["usage"].cost > 0 and len(server.paid) == 1


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def candidates(tmp_path, n=4):
    rows = [{"context_id": "q", "candidate_id": f"m{i}", "text": f"answer {i}"} for i in range(n)]
    return write(tmp_path, "cands.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def simulated(tmp_path, strengths=None):
    strengths = strengths or {"m0": 0.0, "m1": 1.0, "m2": 2.0, "m3": 3.0}
    return write(tmp_path, "sim.json", json.dumps({"type": "simulated", "strengths": strengths}))


def judge_cli(*args):
    return runner.invoke(app, ["judge", *map(str, args)])


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for w in words:
        assert w in result.output, result.output


def test_cli_judge_input_faults_are_one_line_errors(tmp_path):
    latin1 = write(
        tmp_path,
        "latin1.jsonl",
        b'{"context_id": "q", "candidate_id": "m0", "text": "tea 2"}\n'
        b'{"context_id": "q", "candidate_id": "m1", "text": "caf\xe9 1"}\n',
    )
    one_line_error(judge_cli(latin1, "--judge", simulated(tmp_path)), "row 2: not UTF-8", "0xe9")
    high = write(tmp_path, "high.json", json.dumps({"type": "simulated", "strengths": {"m0": "high", "m1": 1}}))
    one_line_error(judge_cli(candidates(tmp_path), "--judge", high), "strength of candidate 'm0'", "'high'")
    config = simulated(tmp_path)
    one_line_error(judge_cli(candidates(tmp_path), "--judge", config, "--length-rule", "-5"), "length_rule")
    price = write(tmp_path, "p.json", json.dumps({"type": "openai", "model": "m", "price": [-1, 1]}))
    one_line_error(judge_cli(candidates(tmp_path), "--judge", price), "p.json", "input_per_million")
    free = write(tmp_path, "free.json", json.dumps({"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9"}))
    one_line_error(judge_cli(candidates(tmp_path), "--judge", free, "--max-cost", "0.01"), "needs a judge with a price")


def test_cli_judge_candidates_with_a_bom_are_read(tmp_path):
    cands = write(tmp_path, "bom.jsonl", "\ufeff" + candidates(tmp_path).read_text())
    result = judge_cli(cands, "--judge", simulated(tmp_path), "--strategy", "knockout")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("strategy", "option", "words"),
    [
        ("random_pairs", "n_comparisons=-3", "n_comparisons must be an integer >= 1 or None, got -3"),
        ("random_pairs", "batch=0", "batch must be an integer >= 1, got 0"),
        ("swiss", "rounds=0", "rounds must be an integer >= 1 or None, got 0"),
        ("round_robin", "repeats=0", "repeats must be an integer >= 1, got 0"),
        ("knockout", "best_of=NaN", "best_of must be an integer >= 1, got nan"),
        ("duo_rerank", "depth=-1", "depth must be an integer >= 2 or None, got -1"),
        ("sliding_topk", "initial=[99]", "initial must list item indices in 0..3"),
        ("active", "rule=fast", "rule must be one of 'rank', 'information', 'ucb'"),
        ("merge_sort", "k=3", "strategy 'merge_sort' has no option(s) k; it accepts: none"),
    ],
)
def test_cli_strategy_options_are_checked(tmp_path, strategy, option, words):
    """`batch=0` looped for ever; `repeats=0`, `rounds=0`, `depth=-1` were accepted; NaN and [99] were tracebacks."""
    result = judge_cli(candidates(tmp_path), "--judge", simulated(tmp_path), "--strategy", strategy, "--option", option)
    one_line_error(result, f"strategy {strategy!r}", words)


def test_random_pairs_without_a_count_makes_as_many_as_a_round_robin(tmp_path):
    """`random_pairs` without `n_comparisons` was a TypeError traceback."""
    result = judge_cli(candidates(tmp_path, 5), "--judge", simulated(tmp_path, {f"m{i}": i for i in range(5)}),
                       "--strategy", "random_pairs")
    assert result.exit_code == 0, result.output
    assert "random_pairs: 10 judgments" in result.output


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_ends_without_a_budget_against_a_judge_that_only_ties(name):
    """Bounded everything: a judge that answers only ties (nothing ever separates) still lets every strategy end."""
    n = 7
    pool = Pool.single({f"m{i}": f"answer {i}" for i in range(n)}, context="q")
    judge = CallableJudge(lambda c, x, y: (0.0, 1.0), judge_id="ties")
    sel = select(name, judge, pool, seed=1)
    bound = {"active": 10 * n * 3, "round_robin": n * (n - 1) // 2, "random_pairs": n * (n - 1) // 2}
    assert 1 <= sel.calls <= bound.get(name, n * n)
