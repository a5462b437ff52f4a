"""Graded five-level verdicts and multi-token log-prob reading (issue 15's two defects), with scripted judges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairkit.errors import InputError
from pairkit.judges import (
    VERDICT_SCALES,
    CallableJudge,
    Judgment,
    OpenAIJudge,
    VerdictScale,
    parse_verdict,
    verdict_distribution,
    verdict_from_logprobs,
)
from pairkit.rating import fit_bradley_terry
from pairkit.select import Pool, select
from tests.judges.fake_openai import FakeServer


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("[[A>>B]]", "A>>B"),
        ("[[A>B]]", "A>B"),
        ("[[ A = B ]]", "tie"),
        ("[[B=A]]", "tie"),
        ("[[B>A]]", "B>A"),
        ("[[B>>A]]", "B>>A"),
        ("[[A<B]]", "B>A"),
        ('{"reason": "…", "choice": "A++"}', "A>>B"),
        ('{"choice": "B+"}', "B>A"),
        ('{"choice": "A=B"}', "tie"),
    ],
)
def test_parse_graded_verdicts(text, label):
    assert parse_verdict(text) == label


def test_scales_score_and_weigh_the_levels():
    graded, arena, binary = (VERDICT_SCALES[k] for k in ("graded", "arena_hard", "binary"))
    assert [graded.probabilities(x)[0] for x in ("A>>B", "A>B", "B>A", "B>>A")] == [1.0, 0.75, 0.25, 0.0]
    assert graded.probabilities("tie") == (0.0, 1.0) and graded.probabilities("A") == (1.0, 0.0)
    assert [arena.weight(x) for x in ("A>>B", "A>B", "tie", "B>A", "B>>A", "A")] == [3, 1, 1, 1, 3, 1]
    assert arena.probabilities("A>B") == (1.0, 0.0) and binary.probabilities("B>A") == (0.0, 0.0)
    with pytest.raises(InputError, match="A=B"):
        VerdictScale("bad", {"A>>B": 1, "A>B": 0.7, "A=B": 0.6, "B>A": 0.3, "B>>A": 0})
    with pytest.raises(InputError, match="weight"):
        VerdictScale("bad", dict(VERDICT_SCALES["graded"].scores), {"A>>B": -1.0})
    with pytest.raises(InputError, match="verdicts must be one of"):
        OpenAIJudge("m", verdicts="five")


def graded_judge(scale: str = "graded", slight_margin: int = 3):
    """A scripted text judge: a much better number wins strongly, a close one slightly (as text verdicts)."""
    s = VERDICT_SCALES[scale]

    def fn(context, first, second):
        x, y = int(first.split()[-1]), int(second.split()[-1])
        label = "tie" if x == y else ("A" if x > y else "B") + (">>" if abs(x - y) > slight_margin else ">")
        label = {"A>>": "A>>B", "A>": "A>B", "B>>": "B>>A", "B>": "B>A"}.get(label, label)
        p_first, p_tie = s.probabilities(label)
        return Judgment(p_a=p_first, p_tie=p_tie, verdict=label, weight=s.weight(label))

    return CallableJudge(fn, judge_id=f"graded-{scale}")


def test_wildbench_length_rule_fires_on_a_slight_text_win_by_a_much_longer_answer():
    """`A>B` and `A>>B` both parsed to 1.0, so the length rule never fired on text verdicts."""
    pool = Pool.single(
        {"long-slight": "answer " + "padding " * 200 + "6", "short": "answer 5", "long-clear": "x " * 300 + "answer 9"},
        context="q",
    )
    ruled = select("round_robin", graded_judge(), pool, policy="both_average", length_rule=500)
    by_pair = {(min(a, b), max(a, b)): (s if a < b else 1 - s) for _, a, b, s, _ in ruled.decisions}
    assert by_pair[(0, 1)] == 0.5  # slightly better and 1,600 characters longer: a tie
    assert by_pair[(1, 2)] == 0.0  # much better (9 vs 5) and longer: the clear win stands
    plain = select("round_robin", graded_judge(), pool, policy="both_average")
    assert {(min(a, b), max(a, b)): (s if a < b else 1 - s) for _, a, b, s, _ in plain.decisions}[(0, 1)] == 0.75


def test_arena_hard_counts_a_strong_win_three_times():
    pool = Pool.single({f"m{i}": f"answer {v}" for i, v in enumerate([1, 2, 9])}, context="q")
    sel = select("round_robin", graded_judge("arena_hard"), pool, seed=0)
    weights = dict(zip([(a, b) for _, a, b, _, _ in sel.decisions], sel.weights))
    strong = {(0, 2), (2, 0), (1, 2), (2, 1)}
    assert all(w == 3.0 for p, w in weights.items() if p in strong)
    assert all(w == 1.0 for p, w in weights.items() if p not in strong)
    comps = sel.comparisons()
    np.testing.assert_array_equal(np.sort(comps.weight), [1.0, 3.0, 3.0])
    # the leaderboard is the weighted BT fit: the same as repeating the strong wins three times
    board = sel.leaderboard(prior=1.0, intervals="none")
    a, b, s = (np.array(x) for x in zip(*[(d[1], d[2], d[3]) for d in sel.decisions]))
    reps = np.array(sel.weights, int)
    from pairkit.data import Comparisons

    repeated = Comparisons.from_arrays(np.repeat(a, reps), np.repeat(b, reps), np.repeat(s, reps), items=pool.items)
    np.testing.assert_allclose(
        board.log_strength, fit_bradley_terry(repeated, prior=1.0, intervals="none").log_strength, atol=1e-6
    )


def lp(p: float) -> float:
    return math.log(p)


def tokens(*pieces):
    """logprobs.content entries: (token, [(alternative, p), …]) — the first alternative is the sampled token."""
    out = []
    for tok, alts in pieces:
        tops = [{"token": t, "logprob": lp(p)} for t, p in alts] if alts else []
        out.append({"token": tok, "logprob": tops[0]["logprob"] if tops else 0.0, "top_logprobs": tops})
    return out


def test_a_multi_token_tie_is_read_as_a_tie():
    """Only the token after `[[` was read, so `[[A=B]]` came out as P(A) ≈ 0.99."""
    content = tokens(
        ("Close call. [[", []),
        ("A", [("A", 0.99), ("B", 0.01)]),
        ("=", [("=", 0.9), (">>", 0.06), (">", 0.04)]),
        ("B", [("B", 1.0)]),
        ("]]", []),
    )
    dist = verdict_distribution(content)
    assert dist["tie"] == pytest.approx(0.99 * 0.9 + 0.01)  # B then "=" by the sampled verdict's shape: B=A
    assert dist["A>>B"] == pytest.approx(0.99 * 0.06) and dist["A>B"] == pytest.approx(0.99 * 0.04)
    p_first, p_tie = verdict_from_logprobs(content)
    assert p_tie > 0.89 and p_first == pytest.approx(0.99 * 0.06 + 0.99 * 0.04 * 0.75)
    assert verdict_from_logprobs(content, "binary")[0] == pytest.approx(0.99 * 0.1)


def test_levels_read_whole_and_single_letters_as_before():
    strong = tokens(
        ("[[", []), ("B", [("B", 0.8), ("A", 0.2)]), (">>", [(">>", 0.7), (">", 0.3)]), ("A", []), ("]]", [])
    )
    dist = verdict_distribution(strong)
    assert dist == pytest.approx({"B>>A": 0.8 * 0.7, "B>A": 0.8 * 0.3, "A>>B": 0.2})
    # a token that holds the bracket and the letter, spaces, and a reply cut off after the letter
    fused = tokens(("x [[B", [("x [[B", 0.6), ("x [[A", 0.3), ("x [[C", 0.1)]), ("]]", []))
    assert verdict_distribution(fused) == pytest.approx({"B": 0.6, "A": 0.3, "tie": 0.1})
    cut = tokens(("x [[", []), ("B", [("B", 0.6), (" A", 0.2), ("C", 0.1), ("Z", 0.1)]))
    assert verdict_distribution(cut) == pytest.approx({"B": 0.6 / 0.9, "A": 0.2 / 0.9, "tie": 0.1 / 0.9})
    assert verdict_distribution(tokens(("no verdict", []))) is None


@pytest.mark.timeout(60)
def test_openai_judge_reads_a_tie_and_levels_from_a_server():
    with FakeServer() as server:
        server.script.extend(["verdict:A=B", "verdict:B>>A", "slightly"])
        judge = OpenAIJudge("m", base_url=server.url, api_key="t", verdicts="arena_hard")
        tie = judge.judge("q", "answer 1", "answer 2")
        assert tie.p_tie == pytest.approx(0.99 * 0.9 + 0.01) and tie.winner == "tie"
        strong = judge.judge("q", "answer 1", "answer 2")
        # B>>A 0.99·0.9 (×3), B>A 0.99·0.06, B=A 0.99·0.04, and "A" at the first letter read as A>>B (×3)
        assert strong.p_a == pytest.approx(0.01) and strong.p_tie == pytest.approx(0.99 * 0.04)
        assert strong.weight == pytest.approx(0.99 * 0.9 * 3 + 0.99 * 0.1 + 0.01 * 3)
        text_only = OpenAIJudge("m", base_url=server.url, api_key="t", logprobs=False)
        slight = text_only.judge("q", "answer 7", "answer 2")
        assert slight.verdict == "A>B" and slight.p_a == 0.75 and slight.weight == 1.0
