"""The web app through FastAPI's test client: votes, errors, safety, and the leaderboard against the library."""

import json
import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")

from pairkit.arena import ArenaSettings, PairChooser, VoteStore, create_app, leaderboard_summary  # noqa: E402
from pairkit.select import Pool  # noqa: E402

from .conftest import HOSTILE, candidate_rows  # noqa: E402

JSON = {"Accept": "application/json"}


def state(client, token):
    r = client.get(f"/a/{token}/state")
    assert r.status_code == 200, r.text
    return r.json()


def vote(client, token, outcome="left", **extra):
    s = state(client, token)
    data = {"vote_id": s["assignment"]["id"], "outcome": outcome, "csrf": s["csrf"], **extra}
    return client.post(f"/a/{token}/vote", data=data, headers=JSON), s


def test_vote_is_stored_once_with_its_display_order(client):
    c, store, tokens, _ = client
    page = c.get(f"/a/{tokens['alice']}")
    assert page.status_code == 200 and 'id="vote-form"' in page.text
    r, s = vote(c, tokens["alice"], "left:2", reason="clearer")
    assert r.json() == {"stored": True, "vote_id": s["assignment"]["id"]}
    again = c.post(
        f"/a/{tokens['alice']}/vote",
        data={"vote_id": s["assignment"]["id"], "outcome": "left", "csrf": s["csrf"]},
        headers=JSON,
    )
    assert again.status_code == 200 and again.json()["stored"] is False  # idempotent by vote id
    [row] = store.votes()
    assert (row["outcome"], row["strength"], row["reason"], row["annotator"]) == ("left", 2, "clearer", "alice")
    shown = store.annotator_pairs(store.annotator_by_token(tokens["alice"]).id)[0]
    assert (row["context_id"], row["left_id"], row["right_id"]) == tuple(shown)
    assert row["latency_ms"] >= 0


def test_form_post_redirects_back_to_the_next_pair(client):
    c, store, tokens, _ = client
    s = state(c, tokens["bob"])
    r = c.post(
        f"/a/{tokens['bob']}/vote",
        data={"vote_id": s["assignment"]["id"], "outcome": "tie", "csrf": s["csrf"]},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/a/{tokens['bob']}"
    assert state(c, tokens["bob"])["assignment"]["id"] != s["assignment"]["id"]


def test_undo_shows_the_same_pair_again_and_keeps_the_log(client):
    c, store, tokens, _ = client
    _, first = vote(c, tokens["alice"], "right")
    r = c.post(f"/a/{tokens['alice']}/undo", data={"csrf": first["csrf"]}, headers=JSON)
    assert r.json() == {"undone": True}
    again = state(c, tokens["alice"])
    who = store.annotator_by_token(tokens["alice"]).id
    shown = store.annotator_pairs(who)
    assert tuple(shown[-1]) == tuple(shown[0])  # same context, same sides
    assert again["done"] == 0 and store.votes() == []
    assert [v["undone"] for v in store.votes(include_undone=True)] == [1]
    # The undone vote id is closed: a late resubmission is refused with a clear 409.
    late = c.post(
        f"/a/{tokens['alice']}/vote",
        data={"vote_id": first["assignment"]["id"], "outcome": "left", "csrf": first["csrf"]},
        headers=JSON,
    )
    assert late.status_code == 409 and "undone" in late.json()["error"]


def test_errors_are_4xx_with_a_message(client):
    c, store, tokens, admin = client
    assert c.get("/a/not-a-token").status_code == 403
    assert "private link" in c.get("/a/not-a-token").text
    assert c.get("/admin/not-a-token").status_code == 403
    assert c.get(f"/admin/{tokens['alice']}").status_code == 403  # an annotator token is not an admin token
    s = state(c, tokens["alice"])
    bad_csrf = c.post(
        f"/a/{tokens['alice']}/vote", data={"vote_id": s["assignment"]["id"], "outcome": "left", "csrf": "x"},
        headers=JSON,
    )
    assert bad_csrf.status_code == 403 and "CSRF" in bad_csrf.json()["error"]
    # Bob's CSRF token does not work on Alice's link, nor can Bob vote on Alice's pair.
    bob = state(c, tokens["bob"])
    assert c.post(
        f"/a/{tokens['alice']}/vote", data={"vote_id": s["assignment"]["id"], "outcome": "left", "csrf": bob["csrf"]},
        headers=JSON,
    ).status_code == 403
    foreign = c.post(
        f"/a/{tokens['bob']}/vote", data={"vote_id": s["assignment"]["id"], "outcome": "left", "csrf": bob["csrf"]},
        headers=JSON,
    )
    assert foreign.status_code == 404 and "no pair" in foreign.json()["error"]
    unknown = c.post(
        f"/a/{tokens['alice']}/vote", data={"vote_id": "nope", "outcome": "left", "csrf": s["csrf"]}, headers=JSON
    )
    assert unknown.status_code == 404
    bad_outcome = c.post(
        f"/a/{tokens['alice']}/vote", data={"vote_id": s["assignment"]["id"], "outcome": "maybe", "csrf": s["csrf"]},
        headers=JSON,
    )
    assert bad_outcome.status_code == 400 and "outcome must be one of" in bad_outcome.json()["error"]
    huge = c.post(
        f"/a/{tokens['alice']}/vote",
        data={"vote_id": s["assignment"]["id"], "outcome": "left", "csrf": s["csrf"], "reason": "x" * 100_000},
    )
    assert huge.status_code == 413 and "at most 32768" in huge.text
    assert "default-src 'none'" in huge.headers["content-security-policy"]
    page = c.get(f"/a/{tokens['alice']}")
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer" and "script-src 'self'" in page.headers[
        "content-security-policy"]
    assert "no-store" not in c.get("/static/arena.js").headers.get("cache-control", "")
    long_reason = c.post(
        f"/a/{tokens['alice']}/vote",
        data={"vote_id": s["assignment"]["id"], "outcome": "left", "csrf": s["csrf"], "reason": "x" * 5000},
        headers=JSON,
    )
    assert long_reason.status_code == 400 and "at most 2000" in long_reason.json()["error"]
    assert store.votes() == []


def test_tokens_are_stored_hashed(arena, tmp_path):
    store, _, tokens, admin = arena
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("arena.sqlite*"))
    for token in [*tokens.values(), admin]:
        assert token.encode() not in raw


def test_hostile_candidate_texts_are_escaped(tmp_path):
    from fastapi.testclient import TestClient

    store = VoteStore(tmp_path / "x.sqlite")
    rows = candidate_rows(n_items=4, contexts=("c",), texts=HOSTILE)
    rows[0]["context"] = "<script>window.__xss = 9</script> what?"
    store.set_candidates(rows)
    token = store.add_annotator("eve")
    app = create_app(store, PairChooser(Pool.from_records(rows), "round_robin", seed=1), ArenaSettings())
    with TestClient(app) as c:
        seen = ""
        for _ in range(6):
            page = c.get(f"/a/{token}")
            seen += page.text
            assert "<script>window" not in page.text and "<img src=\"x\" onerror" not in page.text
            assert not re.search(r"(href|src)\s*=\s*[\"']?\s*javascript:", page.text, re.I)  # only as text
            assert "<svg" not in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            s = state(c, token)
            c.post(f"/a/{token}/vote", data={"vote_id": s["assignment"]["id"], "outcome": "tie", "csrf": s["csrf"]})
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in seen
        assert "&lt;img src=x onerror=" in seen


def test_quota_completion_code_and_prolific_parameters(client):
    c, store, tokens, _ = client
    carol = store.add_annotator("carol", quota=5)
    store_id = store.annotator_by_token(carol).id
    c.get(f"/a/{carol}?PROLIFIC_PID=p123&STUDY_ID=s9&SESSION_ID=x1&other=ignored")
    assert store.annotator_by_token(carol).params == {"PROLIFIC_PID": "p123", "STUDY_ID": "s9", "SESSION_ID": "x1"}
    vote(c, carol, "skip")  # skips do not count towards the quota
    for _ in range(5):
        r, _ = vote(c, carol, "left")
        assert r.status_code == 200
    done = c.get(f"/a/{carol}")
    assert 'id="completion-code"' in done.text and "C0DE" in done.text and "quota of 5" in done.text
    assert state(c, carol)["finished"] is True
    # Without a quota an annotator is done when every pair in every prompt has been shown to them.
    for _ in range(18):
        vote(c, tokens["bob"], "tie")
    assert "no more pairs" in c.get(f"/a/{tokens['bob']}").text
    assert json.loads(store.votes(annotator_id=store_id)[0]["params"])["PROLIFIC_PID"] == "p123"


def test_admin_leaderboard_equals_fit_of_the_export(client, tmp_path):
    from typer.testing import CliRunner

    from pairkit.cli import app
    from pairkit.data import read_comparisons
    from pairkit.rating import fit_bradley_terry

    c, store, tokens, admin = client
    rng = np.random.default_rng(0)
    strength = {"m0": 1.5, "m1": 0.5, "m2": 0.0, "m3": -1.0}
    for k in range(36):
        token = tokens["alice" if k % 2 else "bob"]
        s = state(c, token)
        who = store.annotator_by_token(token).id
        _, left, right = store.annotator_pairs(who)[-1]
        p = 1 / (1 + np.exp(strength[right] - strength[left]))
        outcome = "left" if rng.random() < p else "right"
        if k % 7 == 0:
            outcome = "both_bad"
        c.post(f"/a/{token}/vote", data={"vote_id": s["assignment"]["id"], "outcome": outcome, "csrf": s["csrf"]})
    board = c.get(f"/admin/{admin}/leaderboard.json").json()
    out = tmp_path / "out.parquet"
    res = CliRunner().invoke(app, ["arena", "export", "--db", store.path, "--comparisons", str(out), "--pairs",
                                   str(tmp_path / "pairs.jsonl"), "--votes", str(tmp_path / "votes.csv")])
    assert res.exit_code == 0, res.output
    comps = read_comparisons(out, a="a", b="b", outcome="outcome", a_first="a_first", cluster="context_id")
    assert len(comps) == 36
    ref = fit_bradley_terry(comps, prior=board.get("prior", 0.0), intervals="fisher").scale("elo")
    ours = {r["item"]: r["rating"] for r in board["rows"]}
    theirs = dict(zip(ref.items, ref.ratings))
    assert ours.keys() == theirs.keys()
    np.testing.assert_allclose([ours[k] for k in theirs], list(theirs.values()), atol=1e-10, rtol=0)
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == int(np.sum((comps.outcome == 1) | (comps.outcome == 0)))
    assert {"prompt", "chosen", "rejected"} <= set(pairs[0])
    page = c.get(f"/admin/{admin}")
    assert page.status_code == 200 and 'id="leaderboard"' in page.text and "alice" in page.text
    # The admin page's downloads are the CLI's files.
    assert f'href="/admin/{admin}/export/pairs.jsonl"' in page.text
    pairs_dl = c.get(f"/admin/{admin}/export/pairs.jsonl")
    assert pairs_dl.content == (tmp_path / "pairs.jsonl").read_bytes()
    assert 'filename="pairs.jsonl"' in pairs_dl.headers["content-disposition"]
    assert c.get(f"/admin/{admin}/export/votes.csv").content == (tmp_path / "votes.csv").read_bytes()
    (tmp_path / "dl.parquet").write_bytes(c.get(f"/admin/{admin}/export/comparisons.parquet").content)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dl.parquet"), pd.read_parquet(out))
    assert c.get(f"/admin/{admin}/export/comparisons.xlsx", headers=JSON).status_code == 400
    assert c.get(f"/admin/{tokens['alice']}/export/votes.csv").status_code == 403  # an annotator link is not admin


def test_leaderboard_warns_when_the_mle_does_not_exist():
    votes = [
        {"vote_id": str(k), "annotator": "a", "context_id": "c", "left_id": "x", "right_id": "y", "outcome": "left",
         "strength": 1, "kind": "normal", "undone": 0, "voted_at": 0.0}
        for k in range(3)
    ]
    out = leaderboard_summary(votes, ["x", "y", "z"])
    assert out["prior"] == 1.0 and "never compared" in out["warnings"][0] and "'z'" in out["warnings"][0]
    assert "from the prior alone" in out["warnings"][1]  # the rating's warnings are shown, not swallowed


def test_reveal_shows_the_models_after_the_vote(arena):
    from fastapi.testclient import TestClient

    store, chooser, tokens, _ = arena
    with TestClient(create_app(store, chooser, ArenaSettings(reveal=True))) as c:
        assert 'id="reveal"' not in c.get(f"/a/{tokens['alice']}").text
        vote(c, tokens["alice"], "right")
        last = store.votes()[-1]
        page = c.get(f"/a/{tokens['alice']}").text
        assert f"A was <b>{last['left_id']}</b>, B was <b>{last['right_id']}</b>" in page


def test_k_wise_battle_through_the_web_app(tmp_path):
    """`--k 3`: the page shows three answers with rank selectors; a ranking posted as form fields is stored as its
    pairwise votes and moves the leaderboard; a pair vote on a battle is refused with a clear message."""
    from fastapi.testclient import TestClient

    rows = candidate_rows(n_items=4)
    store = VoteStore(tmp_path / "k.sqlite")
    store.set_candidates(rows)
    token = store.add_annotator("ann")
    admin = store.new_admin_token()
    app = create_app(store, PairChooser(Pool.from_records(rows), "round_robin", k=3, seed=0), ArenaSettings())
    with TestClient(app) as c:
        page = c.get(f"/a/{token}")
        assert page.text.count('<select name="rank" required>') == 3 and 'action="/a/' in page.text
        s = state(c, token)
        answers = s["assignment"]["answers"]
        assert len(answers) == 3 and s["assignment"]["left"] == answers[0]
        wrong = c.post(f"/a/{token}/vote", data={"vote_id": s["assignment"]["id"], "outcome": "left",
                                                 "csrf": s["csrf"]}, headers=JSON)
        assert wrong.status_code == 400 and "rank them instead" in wrong.json()["error"]
        bad = c.post(f"/a/{token}/rank", data={"vote_id": s["assignment"]["id"], "rank": ["1", "9", "2"],
                                                "csrf": s["csrf"]}, headers=JSON)
        assert bad.status_code == 400 and "1..3" in bad.json()["error"]
        ok = c.post(f"/a/{token}/rank", data={"vote_id": s["assignment"]["id"], "rank": ["3", "1", "2"],
                                               "csrf": s["csrf"]})
        assert ok.status_code == 200  # redirected to the next battle
        assert state(c, token)["done"] == 1
        board = c.get(f"/admin/{admin}/leaderboard.json").json()
        assert board["n_votes"] == 3
    store.close()
