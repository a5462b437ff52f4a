"""The listwise strategy (RankGPT sliding window) with a scripted listwise judge, and with a pairwise judge."""

from __future__ import annotations

import re

import pytest

from pairkit.judges import CachedJudge, CallableChat, CallableJudge, JudgeError, JudgmentCache, ListwiseJudge
from pairkit.select import Pool, select

NUMBERED = re.compile(r"\[(\d+)\]\n(.*?)(?=\n\n\[\d+\]\n|\Z)", re.S)


def ranker(messages):
    """Ranks by the number ending each answer; leaves out the worst (the judge appends it)."""
    found = {int(n): int(text.split()[-1]) for n, text in NUMBERED.findall(messages[-1]["content"])}
    order = sorted(found, key=lambda n: -found[n])
    if "Best:" in messages[0]["content"]:
        return f"Best: [{order[0]}]"
    return "Ranking: " + " > ".join(f"[{n}]" for n in order[:-1])


POOL = Pool.single({f"m{k}": f"answer {k}" for k in range(9)}, context="q")


def test_one_pass_brings_the_best_to_the_top_and_breaks_rankings_into_pairs(tmp_path):
    chat = CallableChat(ranker)
    judge = ListwiseJudge(chat)
    sel = select("listwise", judge, POOL, window=4, step=2, cache=tmp_path / "c.sqlite")
    windows = 4  # starts 5, 3, 1, 0
    assert sel.calls == windows and chat.calls == windows and len(sel.decisions) == windows * 6
    assert POOL.items[sel.ranking[0]] == "m8"
    assert all(s == 1.0 for _, _, _, s, _ in sel.decisions)
    assert sel.weights == [3 / 5] * len(sel.decisions)  # a 4-ranking counts as 3.6 comparisons, not 6
    assert all(int(POOL.items[a][1:]) > int(POOL.items[b][1:]) for _, a, b, _, _ in sel.decisions)
    assert "missing" in sel.records[0].judgment.raw  # the left-out last place is appended and reported
    board = sel.leaderboard(prior=0.5)
    assert max(zip(board.scores, board.items))[1] == "m8"
    again = select("listwise", ListwiseJudge(CallableChat(ranker)), POOL, window=4, step=2,
                   cache=tmp_path / "c.sqlite")  # fmt: skip
    assert again.info["usage"].calls == 0 and again.ranking == sel.ranking  # all from the cache


def test_setwise_best_breaks_into_best_versus_the_rest():
    judge = ListwiseJudge(CallableChat(ranker), mode="best")
    sel = select("listwise", judge, POOL, window=3, step=2)
    assert len(sel.decisions) == 2 * sel.calls and POOL.items[sel.ranking[0]] == "m8"
    assert sel.weights == [2 / 3] * len(sel.decisions)  # best of 3: one choice, 2 pairs of weight 2/3


def test_a_pairwise_judge_ranks_each_window_by_all_pairs():
    judge = CallableJudge(lambda c, x, y: float(int(x.split()[-1]) > int(y.split()[-1])))
    sel = select("listwise", judge, POOL, window=4, step=2)
    assert POOL.items[sel.ranking[0]] == "m8" and sel.calls <= 4 * 6


def test_unparseable_and_wrong_requests():
    cached = CachedJudge(ListwiseJudge(CallableChat(lambda m: "no idea")), JudgmentCache(":memory:"))
    with pytest.raises(JudgeError, match="ranking"):
        cached.judge_many([ListwiseJudge.request("q", ["a", "b"])])
    with pytest.raises(Exception, match="listwise requests"):
        ListwiseJudge(CallableChat(ranker)).judge("q", "a", "b")
    with pytest.raises(Exception, match="at least 2"):
        ListwiseJudge.request("q", ["a"])


def test_kwise_battles_find_the_best_with_few_calls():
    chat = CallableChat(ranker)
    sel = select("kwise", ListwiseJudge(chat), POOL, k=4, rounds=6)
    assert 1 <= sel.calls <= 6 and chat.calls == sel.calls and POOL.items[sel.winner] == "m8"
    assert len(sel.decisions) == 6 * sel.calls  # each battle of 4 broken into its 6 pairs
    pairwise = CallableJudge(lambda c, x, y: float(int(x.split()[-1]) > int(y.split()[-1])))
    sel = select("kwise", pairwise, POOL, k=3)
    assert sel.calls <= 6 * 3 and POOL.items[sel.ranking[0]] == "m8"


def test_kwise_in_several_prompts_battles_only_items_that_answered():
    rows = [{"context_id": c, "candidate_id": f"m{k}", "text": f"answer {k}"} for c in ("p", "q") for k in range(5)]
    rows = [r for r in rows if not (r["context_id"] == "q" and r["candidate_id"] == "m4")]
    pool = Pool.from_records(rows)
    sel = select("kwise", ListwiseJudge(CallableChat(ranker)), pool, k=5, rounds=4)
    for rec in sel.records:
        assert all(pool.text[rec.context][i] is not None for i in (rec.a, rec.b))


def test_kwise_discordance_anchor_orders_the_whole_board_where_ucb_finds_the_top():
    from pairkit.metrics import kendall_tau

    truth = [int(name[1:]) for name in POOL.items]
    taus = {}
    for anchor in ("ucb", "discordance"):
        sel = select("kwise", ListwiseJudge(CallableChat(ranker)), POOL, k=4, rounds=8, anchor=anchor)
        assert sel.calls == 8 and POOL.items[sel.ranking[0]] == "m8"
        taus[anchor] = float(kendall_tau(sel.scores(), truth))
    assert taus["discordance"] == 1.0 and taus["ucb"] < 0.8  # ucb keeps battling at the top
    with pytest.raises(Exception, match="anchor"):
        select("kwise", ListwiseJudge(CallableChat(ranker)), POOL, anchor="best")
