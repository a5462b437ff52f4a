"""CGCoT breakdowns and pointwise ratings persist in the judgment cache file: a run killed before its judgments were
saved, restarted in a new process on the same file, pays for none of them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pairkit.judges import CachedJudge, CallableChat, CGCoTJudge, JudgmentCache, PointwiseJudge

ROOT = Path(__file__).resolve().parents[2]

# Scripted chat models, run by this test and by the restarted process (quality = the number of "good"s).
CHATS = r"""
import re

def quality(text):
    return len(re.findall(r"\bgood\b", text))

def cgcot_chat(messages):
    user = messages[-1]["content"]
    if "[Analysis of Text A]" in user:
        a, b = (int(re.search(rf"\[Analysis of Text {x}\]\n.*?(\d+)", user, re.S).group(1)) for x in "AB")
        return "[[A]]" if a > b else "[[B]]"
    return f"It says good {quality(messages[1]['content'])} times."

def rater(messages):
    return f"Rating: [[{1 + quality(messages[-1]['content'].split('[The End')[0])}]]"
"""
RESTART = CHATS + r"""
import json, sys
from pairkit.judges import CachedJudge, CallableChat, CGCoTJudge, PointwiseJudge
path, texts, questions = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
cg = CallableChat(cgcot_chat)
cached = CachedJudge(CGCoTJudge(cg, concept="positive", questions=questions), path)
verdicts = [cached.judge("reviews", texts[i], texts[j]).p_a for i, j in [(3, 0), (1, 2)]]
pw = CallableChat(rater)
rated = CachedJudge(PointwiseJudge(pw), path)
p = [rated.judge("q", texts[i], texts[j]).p_a for i, j in [(0, 2), (3, 1)]]  # pairs not judged before
print(json.dumps({"cgcot_calls": cg.calls, "verdicts": verdicts, "pointwise_calls": pw.calls, "p": p}))
"""
scripted: dict = {}
exec(CHATS, scripted)
QUESTIONS = ["How many times does it say good?", "How positive is it?"]
TEXTS = [" ".join(["good"] * k + ["plain"] * (4 - k)) for k in range(4)]


def killed_at_compare(messages):
    """The breakdown questions are answered; the run dies at the comparison (before any judgment is saved)."""
    if "[Analysis of Text A]" in messages[-1]["content"]:
        raise KeyboardInterrupt("killed")
    return scripted["cgcot_chat"](messages)


def test_a_restarted_process_pays_no_breakdown_or_rating_again(tmp_path):
    path = str(tmp_path / "judgments.sqlite")
    dying = CallableChat(killed_at_compare, chat_id="cgcot_chat")  # the same model as after the restart
    first = CachedJudge(CGCoTJudge(dying, concept="positive", questions=QUESTIONS), path)
    for i, j in [(3, 0), (1, 2)]:
        with pytest.raises(KeyboardInterrupt):
            first.judge("reviews", TEXTS[i], TEXTS[j])
    assert dying.calls == 4 * 2 and len(JudgmentCache(path)) == 0  # 4 breakdowns made, no judgment saved
    rater_chat = CallableChat(scripted["rater"], chat_id="rater")
    rated = CachedJudge(PointwiseJudge(rater_chat), path)
    rated.judge("q", TEXTS[0], TEXTS[1])
    rated.judge("q", TEXTS[2], TEXTS[3])
    assert rater_chat.calls == 4
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", RESTART, path, json.dumps(TEXTS), json.dumps(QUESTIONS)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["cgcot_calls"] == 2  # only the two comparisons; no breakdown question asked again
    assert got["verdicts"] == [1.0, 0.0]
    assert got["pointwise_calls"] == 0 and got["p"][0] < 0.5 < got["p"][1]  # the stored ratings decide


def test_a_changed_judge_does_not_reuse_the_stored_work(tmp_path):
    cache = JudgmentCache(tmp_path / "c.sqlite")
    one, other = CallableChat(scripted["cgcot_chat"]), CallableChat(scripted["cgcot_chat"])
    CachedJudge(CGCoTJudge(one, concept="positive", questions=QUESTIONS), cache).judge("r", TEXTS[0], TEXTS[1])
    CachedJudge(CGCoTJudge(other, concept="positive", questions=QUESTIONS[:1]), cache).judge("r", TEXTS[0], TEXTS[1])
    assert one.calls == 2 * 2 + 1 and other.calls == 2 * 1 + 1  # other questions: other breakdowns, asked anew
    assert cache.get_memo({"judge_id": "nobody"}, "cgcot_breakdown", ("r", TEXTS[0])) is None
