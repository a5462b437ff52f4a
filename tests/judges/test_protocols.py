"""Protocol judges (PORTIA, Branch-Solve-Merge, CGCoT, few-shot retrieval) against scripted chat models.

Every scripted chat is a deterministic function of the prompt it is sent; the quality of an answer is the number
of times the word "good" occurs in it, so the right verdict is known.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from pairkit.judges import (
    BSMJudge,
    CachedJudge,
    CallableChat,
    CallableJudge,
    CGCoTJudge,
    ChatReply,
    FewShotJudge,
    JudgeError,
    PortiaJudge,
    Request,
    align_segments,
    retrieve_exemplars,
    split_points,
)
from pairkit.select import Pool, select

ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.S)
PART = re.compile(r"\[The Start of Assistant ([AB])'s Answer, part (\d+) of (\d+)\]\n(.*?)\n\[The End", re.S)


def quality(text: str) -> int:
    return len(re.findall(r"\bgood\b", text))


def biased_chat(messages):
    """Plain prompts: right when the gap is >= 2, otherwise always the first shown (position bias).
    Merged (PORTIA) prompts: reads every part and is right."""
    user = messages[-1]["content"]
    parts = PART.findall(user)
    if parts:
        q = {"A": 0, "B": 0}
        for who, _, _, text in parts:
            q[who] += quality(text)
        verdict = "[[A>B]]" if q["A"] > q["B"] else "[[B>A]]" if q["B"] > q["A"] else "[[A=B]]"
        return ChatReply("merged. " + verdict, 0.5)
    q = {who: quality(text) for who, text in ANSWER.findall(user)}
    if abs(q["A"] - q["B"]) >= 2:
        return ChatReply("[[A>>B]]" if q["A"] > q["B"] else "[[B>>A]]", 0.5)
    return ChatReply("The first one. [[A>B]]", 0.5)


LONG_A = "This is good. It is correct here. Another good point is made. A closing line follows here."
LONG_B = "This is fine. It is correct too. A further good point is made. A closing line follows too."


# ---------------------------------------------------------------------------------------------- PORTIA
def test_split_points_keep_sentences_whole_and_parts_join_back():
    text = "One. Two three! Four?\nFive: six; seven"
    pts = split_points(text)
    assert all(0 < p < len(text) for p in pts) and pts == sorted(set(pts))
    for k in (1, 2, 3, 5, 9):
        a, b, how = align_segments(text, LONG_A, k)
        assert "".join(a) == text and "".join(b) == LONG_A
        assert len(a) == len(b) == min(k, len(split_points(text)) + 1, len(split_points(LONG_A)) + 1)
        assert how == ("whole" if len(a) == 1 else how)


def test_length_alignment_cuts_at_the_boundaries_nearest_equal_lengths():
    text = "aaaa. " * 9  # nine equal sentences: thirds end after sentences 3 and 6
    parts, _, how = align_segments(text.strip(), text.strip(), 3, threshold=0.0)
    assert how == "length" and [len(p.strip()) for p in parts] == [17, 17, 17]


def _reference_best(first: str, second: str, k: int) -> float:
    """Brute force, written independently: the best mean Jaccard over all cut combinations."""

    def words(t):
        return set(re.findall(r"\w+", t.lower()))

    def cuts(text):
        pts = [m.end() for m in re.finditer(r"(?<=[.!?;:])\s+|\n+", text) if 0 < m.end() < len(text)]
        for c in itertools.combinations(sorted(set(pts)), k - 1):
            b = [0, *c, len(text)]
            yield [text[b[i] : b[i + 1]] for i in range(k)]

    best = -1.0
    for pa in cuts(first):
        for pb in cuts(second):
            s = 0.0
            for x, y in zip(pa, pb):
                u = words(x) | words(y)
                s += len(words(x) & words(y)) / len(u) if u else 0.0
            best = max(best, s / k)
    return best


def test_semantic_alignment_finds_the_best_cuts_and_aligns_topics():
    first = "Cats purr. Cats nap all day long in the warm sun by the window. Dogs bark. Birds sing at dawn."
    second = "Cats purr and nap. Dogs bark at night and guard the house all year round with care. Birds sing."
    a, b, how = align_segments(first, second, 3, threshold=0.99)
    assert how == "semantic"
    words = [(set(re.findall(r"\w+", x.lower())), set(re.findall(r"\w+", y.lower()))) for x, y in zip(a, b)]
    got = np.mean([len(x & y) / len(x | y) for x, y in words])
    assert got == pytest.approx(_reference_best(first, second, 3), abs=1e-12)
    assert "Dogs" in a[1] and "Dogs" in b[1] and "Birds" in a[2] and "Birds" in b[2]


def test_portia_merges_only_inconsistent_pairs_and_fixes_their_position_bias():
    chat = CallableChat(biased_chat, chat_id="biased", priced=True)
    judge = PortiaJudge(chat, k=3)
    # gap 1: the plain prompt says "first" in both orders (inconsistent) -> merged prompt, right in both orders
    close = judge.judge("q", LONG_A, LONG_B)
    assert close.p_a == pytest.approx(0.75) and close.n_calls == 4 and close.cost == pytest.approx(2.0)
    assert judge.merged == 1 and close.verdict.startswith("merged:")
    reversed_ = judge.judge("q", LONG_A, LONG_B, order="ba")
    assert reversed_.p_a == pytest.approx(close.p_a) and judge.merged == 2
    # gap 2: consistent in both orders -> 2 calls, no merge
    clear = judge.judge("q", "good good good.", "good.")
    assert clear.p_a == 1.0 and clear.n_calls == 2 and judge.merged == 2
    # "always": the merged prompt in the shown order only
    always = PortiaJudge(chat, k=3, mode="always").judge("q", LONG_B, LONG_A)
    assert always.n_calls == 1 and always.p_a == pytest.approx(0.25)


def test_without_portia_the_scripted_judge_is_position_inconsistent():
    from pairkit.judges import TEMPLATES

    t = TEMPLATES["pairwise_graded"]
    first = biased_chat(t.messages("q", LONG_A, LONG_B)).text
    second = biased_chat(t.messages("q", LONG_B, LONG_A)).text
    assert first.endswith("[[A>B]]") and second.endswith("[[A>B]]")  # "the first one" both times


def test_portia_unparseable_reply_is_cached_and_not_paid_again():
    calls = []

    def mute(messages):
        calls.append(1)
        return ChatReply("I cannot decide.", 1.0)

    cached = CachedJudge(PortiaJudge(CallableChat(mute, priced=True)))
    for _ in range(2):
        with pytest.raises(JudgeError, match="no verdict"):
            cached.judge("q", "a.", "b.")
    assert len(calls) == 2 and cached.usage.cost == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------- Branch-Solve-Merge
def bsm_chat(messages):
    user = messages[-1]["content"]
    if "[Criterion]" not in user:
        return "Here is my plan:\n1. Criterion: correctness - is it right\n2. Criterion: brevity - is it short\n"
    q = {who: text for who, text in ANSWER.findall(user)}
    if "correctness" in user:
        return f"[[Score A: {min(10, 1 + quality(q['A']))}]] [[Score B: {min(10, 1 + quality(q['B']))}]]"
    return f"Score A: {max(1, 10 - len(q['A']) // 10)}, Score B: {max(1, 10 - len(q['B']) // 10)}"


def test_bsm_sums_per_criterion_scores():
    chat = CallableChat(bsm_chat)
    judge = BSMJudge(chat)
    a, b = "good good " * 3, "good"  # a: correctness 7 vs 2, brevity 7 vs 10 -> 14 vs 12
    j = judge.judge("q", a, b)
    assert j.p_a == 1.0 and j.n_calls == 3 and "14 vs 12" in j.raw
    assert judge.judge("q", a, b, order="ba").p_a == 1.0  # the same answer wins whichever is shown first
    # a long answer better on correctness loses on the sum: 3 + 1 < 1 + 10
    j = judge.judge("q", "good good " + "x" * 200, "ok")
    assert j.p_a == 0.0
    tie = judge.judge("q", "same", "same")
    assert tie.p_tie == 1.0


def test_bsm_missing_criteria_or_scores_raise_unparseable():
    with pytest.raises(JudgeError, match="criteria") as info:
        BSMJudge(CallableChat(lambda m: "no plan")).judge("q", "a", "b")
    assert info.value.unparseable

    def no_scores(messages):
        return "Criterion: x - y" if "[Criterion]" not in messages[-1]["content"] else "Score A: 11 Score B: 3"

    with pytest.raises(JudgeError, match="scores 1-10") as info:
        BSMJudge(CallableChat(no_scores)).judge("q", "a", "b")
    assert info.value.unparseable


# ------------------------------------------------------------------------------------------------ CGCoT
def cgcot_chat(messages):
    user = messages[-1]["content"]
    if "[Analysis of Text A]" in user:
        a = int(re.search(r"\[Analysis of Text A\]\n.*?(\d+)", user, re.S).group(1))
        b = int(re.search(r"\[Analysis of Text B\]\n.*?(\d+)", user, re.S).group(1))
        return "[[A]]" if a > b else "[[B]]"
    if user.endswith("How positive is it?"):
        return "It is positive."
    text = messages[1]["content"]  # the first question of the chain carries the text
    return f"It says good {quality(text)} times."


def test_cgcot_breakdowns_once_per_text_and_bradley_terry_recovers_the_order():
    chat = CallableChat(cgcot_chat)
    judge = CGCoTJudge(chat, concept="positive", questions=["How many times does it say good?", "How positive is it?"])
    texts = {f"t{k}": " ".join(["good"] * k + ["plain"] * (5 - k)) for k in range(5)}
    sel = select("round_robin", judge, Pool.single(texts, context="reviews"), policy="both_average")
    board = sel.leaderboard(prior=0.5)
    assert list(np.array(board.items)[np.argsort(-board.scores)]) == ["t4", "t3", "t2", "t1", "t0"]
    pairs = 5 * 4 // 2
    assert chat.calls == 5 * 2 + 2 * pairs  # two chain questions per text (made once), one call per shown pair
    assert sum(r.judgment.n_calls for r in sel.records) == chat.calls


def test_cgcot_checks_its_options():
    with pytest.raises(Exception, match="questions"):
        CGCoTJudge(CallableChat(cgcot_chat), concept="x", questions="not a list")
    with pytest.raises(Exception, match="concept"):
        CGCoTJudge(CallableChat(cgcot_chat), concept=" ", questions=["q"])


# --------------------------------------------------------------------------------------- few-shot retrieval
EXEMPLARS = [
    {"context": "how do I bake bread at home", "chosen": "knead and proof", "rejected": "buy some"},
    {"context": "best way to learn python", "chosen": "write programs", "rejected": "read only"},
    {"context": "how to bake a cake", "a": "mix and bake", "b": "freeze it", "winner": "a"},
    {"context": "what is the capital of france", "a": "Lyon", "b": "Paris", "winner": "b"},
]


def test_retrieval_matches_a_brute_force_token_overlap():
    query = "how do I bake a cake at home"
    contexts = [e["context"] for e in EXEMPLARS]

    def jaccard(x, y):
        x, y = set(x.lower().split()), set(y.lower().split())
        return len(x & y) / len(x | y)

    expected = sorted(range(len(contexts)), key=lambda i: (-jaccard(query, contexts[i]), i))[:2]
    assert retrieve_exemplars(query, contexts, 2) == expected == [0, 2]
    enc = retrieve_exemplars(query, contexts, 1, encoder=lambda ts: np.array([[len(t), 1.0] for t in ts]))
    assert len(enc) == 1


def test_few_shot_prompt_shows_the_nearest_exemplars_with_alternating_winners():
    seen = []

    def chat(messages):
        seen.append(messages)
        return "[[A]]"

    judge = FewShotJudge(CallableChat(chat), EXEMPLARS, k=2)
    j = judge.judge("how do I bake a cake at home", "x", "y")
    messages = seen[-1]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "bake bread" in messages[1]["content"] and "how to bake a cake" in messages[3]["content"]
    assert messages[2]["content"].endswith("[[A]]") and messages[4]["content"].endswith("[[B]]")  # alternated
    assert ANSWER.findall(messages[1]["content"])[0][1] == "knead and proof"
    assert ANSWER.findall(messages[3]["content"])[1][1] == "mix and bake"  # the winner moved to second place
    assert j.p_a == 1.0 and j.n_calls == 1
    assert FewShotJudge(CallableChat(chat), EXEMPLARS, k=0).messages(Request("q", "x", "y"))[1]["role"] == "user"


def test_few_shot_refuses_bad_exemplars():
    with pytest.raises(Exception, match="exemplar 1"):
        FewShotJudge(CallableChat(lambda m: "[[A]]"), [{"context": "q", "a": "x", "b": "y", "winner": "c"}])
    with pytest.raises(Exception, match="chat model"):
        FewShotJudge(object(), EXEMPLARS)


def test_protocol_cache_keys_change_with_their_settings():
    from pairkit.judges import judge_identity

    chat = CallableChat(biased_chat, chat_id="c")
    keys = {
        str(judge_identity(PortiaJudge(chat, k=3))),
        str(judge_identity(PortiaJudge(chat, k=2))),
        str(judge_identity(PortiaJudge(CallableChat(biased_chat, chat_id="d"), k=3))),
        str(judge_identity(FewShotJudge(chat, EXEMPLARS, k=1))),
        str(judge_identity(FewShotJudge(chat, EXEMPLARS[:2], k=1))),
    }
    assert len(keys) == 5


def test_portia_from_config_over_an_openai_compatible_server_counts_every_paid_call():
    from pairkit.judges import judge_from_config
    from pairkit.judges.http import Price
    from tests.judges.fake_openai import FakeServer

    with FakeServer() as server:
        chat = {"type": "openai", "model": "m", "base_url": server.url, "api_key": "t", "price": [2.0, 8.0]}
        judge = judge_from_config({"type": "portia", "chat": chat, "k": 2})
        assert isinstance(judge, PortiaJudge) and judge.priced
        cached = CachedJudge(judge)
        j = cached.judge("q", "answer 7", "answer 3")
        again = cached.judge("q", "answer 7", "answer 3")
        paid = server.paid
    assert j.p_a > 0.5 and j.n_calls == 2 and again.cached and len(paid) == 2  # consistent: no merge, no re-pay
    assert j.cost == pytest.approx(sum(Price(2.0, 8.0).cost(p[1], p[2]) for p in paid))
    with pytest.raises(Exception, match="needs 'chat'"):
        judge_from_config({"type": "bsm"})
    with pytest.raises(Exception, match="must be an 'openai' judge"):
        judge_from_config({"type": "bsm", "chat": {"type": "simulated", "strengths": {"a": 1}}})


# ------------------------------------------------------------------------------------ simulated annotators
def copy_the_examples(messages):
    """Prefers the answer whose first letter won most of the shown examples (x… or y…)."""
    votes = {"x": 0, "y": 0}
    for shown, verdict in zip(messages[1:-1:2], messages[2:-1:2]):
        answers = dict(ANSWER.findall(shown["content"]))
        winner = answers["A"] if verdict["content"].endswith("[[A]]") else answers["B"]
        votes[winner[0]] += 1
    liked = max(votes, key=votes.get)
    return "[[A]]" if dict(ANSWER.findall(messages[-1]["content"]))["A"].startswith(liked) else "[[B]]"


def annotator(winners):
    return [{"context": f"q{k}", "a": f"x{k}", "b": f"y{k}", "winner": w} for k, w in enumerate(winners)]


def test_simulated_annotators_average_and_their_disagreement_is_the_confidence():
    from pairkit.judges import EscalatingJudge, SimulatedAnnotatorsJudge, confidence

    chat = CallableChat(copy_the_examples, priced=True)
    # annotators 1 and 3 prefer x-answers, annotator 2 y-answers: 2 of 3 say x
    judge = SimulatedAnnotatorsJudge(chat, [annotator("aaa"), annotator("bbb"), annotator("aaa")])
    j = judge.judge("q", "x", "y")
    assert j.p_a == pytest.approx(2 / 3) and j.n_calls == 3 and confidence(j) == pytest.approx(2 / 3)
    agree = SimulatedAnnotatorsJudge(chat, [annotator("aaa"), annotator("aaa")]).judge("q", "x", "y")
    assert agree.p_a == 1.0 and confidence(agree) == 1.0
    strong = CallableJudge(lambda c, x, y: 0.0, judge_id="strong")
    cascade = EscalatingJudge([judge, strong], [0.9])
    assert cascade.judge("q", "x", "y").p_a == 0.0  # 2/3 agreement < 0.9: escalated
    with pytest.raises(Exception, match="at least 2 annotators"):
        SimulatedAnnotatorsJudge(chat, [annotator("a")])


# ------------------------------------------------------------------------------------------ PRD discussion
def stubborn(verdict):
    def chat(messages):
        return f"I keep my view. {verdict}"

    return CallableChat(chat, chat_id=f"stubborn{verdict}")


def persuadable(messages):
    last = messages[-1]["content"]
    if last.startswith("Another reviewer"):
        other = re.findall(r"\[\[[^\]]+\]\]", last)[-1]
        return f"You convinced me. {other}"
    return "My first view. [[B>A]]"


def test_discussion_stops_when_the_reviewers_agree():
    from pairkit.judges import DiscussionJudge

    judge = DiscussionJudge(stubborn("[[A>>B]]"), CallableChat(persuadable), max_turns=4)
    j = judge.judge("q", "x", "y")
    # initial A>>B vs B>A; reviewer 1 (stubborn) speaks first, then reviewer 2 adopts A>>B: 2 + 2 calls
    assert j.p_a == 1.0 and j.n_calls == 4 and judge.turns_used == [2]
    same = DiscussionJudge(stubborn("[[A>B]]"), stubborn("[[A>>B]]")).judge("q", "x", "y")
    assert same.n_calls == 2 and same.p_a == pytest.approx((0.75 + 1.0) / 2)  # same winner: no discussion


def test_discussion_that_never_agrees_averages_after_max_turns():
    from pairkit.judges import DiscussionJudge

    judge = DiscussionJudge(stubborn("[[A>>B]]"), stubborn("[[B>>A]]"), max_turns=3)
    j = judge.judge("q", "x", "y", order="ba")
    assert j.n_calls == 5 and j.p_a == pytest.approx(0.5) and judge.turns_used == [3]
    with pytest.raises(JudgeError, match="no verdict") as info:
        DiscussionJudge(CallableChat(lambda m: "hmm")).judge("q", "x", "y")
    assert info.value.unparseable


# ------------------------------------------------------------------------------------------ pointwise scores
RATED = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End", re.S)


def rater(messages):
    """Rates by the number of "good"s (1 + count, at most 10); the rating token carries log-probs over 3 values."""
    answer = RATED.search(messages[-1]["content"]).group(1)
    r = min(10, 1 + quality(answer))
    alts = [(r, 0.6), (max(1, r - 1), 0.3), (min(10, r + 1) if r < 10 else 1, 0.1)]
    content = [{"token": "Rating: [[", "logprob": 0.0},
               {"token": str(r), "logprob": math.log(0.6),
                "top_logprobs": [{"token": str(v), "logprob": math.log(p)} for v, p in alts]},
               {"token": "]]", "logprob": 0.0}]  # fmt: skip
    return ChatReply(f"Rating: [[{r}]]", 0.1, logprobs=content)


def test_soft_rating_is_the_expectation_over_the_rating_token():
    from pairkit.judges import soft_rating

    reply = rater([{"content": "[The Start of Assistant's Answer]\ngood good\n[The End"}])
    assert soft_rating(reply.text, reply.logprobs, 1, 10) == pytest.approx(3 * 0.6 + 2 * 0.3 + 4 * 0.1)
    assert soft_rating("Rating: [[7]]", None, 1, 10) == 7.0
    assert soft_rating("Rating: [[11]]", None, 1, 10) is None and soft_rating("no rating", None, 1, 10) is None


def test_pointwise_judge_rates_each_answer_once_and_shortlists_for_duo_rerank():
    from pairkit.judges import PointwiseJudge, pointwise_shortlist

    chat = CallableChat(rater, priced=True)
    judge = PointwiseJudge(chat, checklist=["Is it correct?", "Is it complete?"])
    texts = {f"m{k}": " ".join(["good"] * k) + " end" for k in range(5)}
    pool = Pool.single(texts, context="q")
    sel = select("round_robin", judge, pool)
    assert chat.calls == 5 and sum(r.judgment.n_calls for r in sel.records) == 5  # one rating per answer
    soft = {k: (3 * 0.6 + 2 * 0.3 + 4 * 0.1) - 2 + k for k in range(1, 4)}  # the expectation shifts with r
    rec = next(r for r in sel.records if {r.a, r.b} == {1, 3})
    expected = 1 / (1 + math.exp(-(soft[rec.a] - soft[rec.b])))
    assert rec.judgment.p_a == pytest.approx(expected)
    assert "Is it complete?" in judge.rating_messages("q", "x")[0]["content"]
    assert pointwise_shortlist(judge, pool, 3) == [4, 3, 2] and chat.calls == 5  # ratings reused
    with pytest.raises(JudgeError, match="rating") as info:
        PointwiseJudge(CallableChat(lambda m: "fine")).judge("q", "a", "b")
    assert info.value.unparseable
