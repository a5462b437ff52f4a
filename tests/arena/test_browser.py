"""End to end in a real browser: Debian's chromium driven by Playwright, the arena served by uvicorn for real.

An annotator votes with the mouse and the keyboard, undoes, reloads mid-session and resumes, survives a server
kill and restart; the admin page's leaderboard updates live; both pages are screenshotted; hostile candidate
texts never run.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from pairkit.arena import VoteStore

from .conftest import HOSTILE, candidate_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``pairkit arena serve`` in a subprocess on a free loopback port."""

    def __init__(self, candidates, db, *extra):
        self.args = [sys.executable, "-c", "from pairkit.cli import main; main()", "arena", "serve",
                     *([str(candidates)] if candidates else []), "--db", str(db), "--seed", "0", *extra]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.output = ""

    def start(self):
        import httpx

        self.proc = subprocess.Popen([*self.args, "--port", str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"arena server exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("arena server did not come up in 30 s")
        self.proc.stdout.flush()
        return self

    def admin_link(self) -> str:
        # The first lines are printed before uvicorn starts listening, so they are there by now.
        line = ""
        while "admin link" not in line:
            line = self.proc.stdout.readline()
            self.output += line
        return re.search(r"(http://\S+/admin/\S+)", line).group(1)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = b.new_context()
        # Generous: CI machines may be shared and slow; nothing here waits unless something is wrong.
        context.set_default_timeout(60_000)
        context.set_default_navigation_timeout(60_000)
        yield context
        context.close()
        b.close()


def new_arena(tmp_path, rows, name, *extra) -> tuple[Server, str]:
    """Candidates written as JSONL, one annotator, and a server (not started) over them."""
    cand = tmp_path / f"{name}.jsonl"
    cand.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    db = tmp_path / f"{name}.sqlite"
    store = VoteStore(db)
    token = store.add_annotator(name)
    store.close()
    return Server(cand, db, *extra), token


def vote_id(page) -> str:
    return page.locator('#vote-form input[name="vote_id"]').get_attribute("value")


def progress(page) -> int:
    return int(page.inner_text("#progress").split()[0])


def test_vote_undo_resume_restart_and_live_leaderboard(browser, tmp_path):
    server, token = new_arena(tmp_path, candidate_rows(), "alice", "--strategy", "active")
    db = tmp_path / "alice.sqlite"
    server.start()
    try:
        admin_url = server.admin_link()
        link = f"{server.url}/a/{token}"
        admin = browser.new_page()
        admin.goto(admin_url)
        assert "no votes yet" in admin.inner_text("#board")
        page = browser.new_page()
        page.goto(link)
        first = vote_id(page)
        assert progress(page) == 0

        with page.expect_navigation():
            page.click('button[value="left"]')  # the mouse
        second = vote_id(page)
        assert second != first and progress(page) == 1
        with page.expect_navigation():
            page.keyboard.press("b")  # the keyboard
        with page.expect_navigation():
            page.keyboard.press("Shift+A")  # much better
        page.fill('textarea[name="reason"]', "tie ok")  # typing in the reason box does not vote
        page.keyboard.press("Escape")
        assert progress(page) == 3
        with page.expect_navigation():
            page.keyboard.press("t")
        assert progress(page) == 4
        before_undo = vote_id(page)
        with page.expect_navigation():
            page.keyboard.press("u")  # undo the tie: the same pair again
        assert progress(page) == 3
        redo = vote_id(page)
        assert redo != before_undo

        page.reload()  # closing the tab or reloading continues with the same pair
        assert vote_id(page) == redo and progress(page) == 3

        # The live leaderboard picked up the votes over server-sent events, without a reload.
        playwright_api.expect(admin.locator("#n-votes")).to_have_text("3", timeout=60_000)
        assert admin.locator("#leaderboard tbody tr").count() == 4
        admin.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "vote.png"), full_page=True)
        assert (tmp_path / "admin.png").stat().st_size > 5_000 and (tmp_path / "vote.png").stat().st_size > 5_000

        server.kill()  # SIGKILL mid-session: nothing acknowledged is lost, the pair shown stays
        server.start()
        page.reload()
        assert vote_id(page) == redo and progress(page) == 3
        with page.expect_navigation():
            page.keyboard.press("x")
        assert progress(page) == 4
    finally:
        server.kill()
    store = VoteStore(db)
    log = store.votes(include_undone=True)
    assert [(v["outcome"], v["strength"], v["undone"]) for v in log] == [
        ("left", 1, 0), ("right", 1, 0), ("left", 2, 0), ("tie", 1, 1), ("both_bad", 1, 0)
    ]
    assert log[3]["reason"] == "tie ok"
    assert {(v["left_id"], v["right_id"]) for v in log} <= {(f"m{i}", f"m{j}") for i in range(4) for j in range(4)}


def test_hostile_candidate_texts_never_run(browser, tmp_path):
    rows = candidate_rows(n_items=4, contexts=("c",), texts=HOSTILE)
    rows[0]["context"] = "<script>window.__xss = 9</script> **what** is ![img](javascript:alert(1))?"
    server, token = new_arena(tmp_path, rows, "eve", "--strategy", "round_robin")
    server.start()
    try:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/a/{token}")
        shown = ""
        for _ in range(4):
            shown += page.inner_text("main")
            assert page.evaluate("window.__xss") is None
            with page.expect_navigation():
                page.keyboard.press("t")
        assert dialogs == []
        assert page.evaluate("window.__xss") is None
        assert "<script>window.__xss = 1</script>" in shown  # shown as text, not run
        assert '<img src=x onerror="window.__xss = 2">' in shown
        assert "what" in shown
    finally:
        server.kill()


def test_k_wise_battle_ranked_in_the_browser(browser, tmp_path):
    """`--k 3`: the annotator ranks three answers with the selectors (a tie included), submits, and the ranking is
    stored as its three pairwise votes; the page refuses to submit an unranked answer (the selects are required)."""
    server, token = new_arena(tmp_path, candidate_rows(), "kim", "--k", "3", "--strategy", "round_robin")
    server.start()
    try:
        page = browser.new_page()
        page.goto(f"{server.url}/a/{token}")
        selects = page.locator('#rank-form select[name="rank"]')
        assert selects.count() == 3
        battle = page.locator('#rank-form input[name="vote_id"]').get_attribute("value")
        page.click("#submit-ranking")  # nothing ranked yet: the browser keeps the form (required fields)
        assert page.locator('#rank-form input[name="vote_id"]').get_attribute("value") == battle
        for k, rank in enumerate(["2", "1", "2"]):
            selects.nth(k).select_option(rank)
        with page.expect_navigation():
            page.click("#submit-ranking")
        assert progress(page) == 1
        assert page.locator('#rank-form input[name="vote_id"]').get_attribute("value") != battle
    finally:
        server.kill()
    store = VoteStore(tmp_path / "kim.sqlite")
    votes = store.votes()
    assert len(votes) == 3 and {v["vote_id"].split("/")[0] for v in votes} == {battle}
    assert sorted(v["outcome"] for v in votes) == ["left", "right", "tie"]  # 2 vs 1, 2 vs 2, 1 vs 2
    store.close()
