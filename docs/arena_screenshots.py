"""Regenerate the README's arena screenshots: the demo arena, a few votes, the voting and the admin page.

    python docs/arena_screenshots.py        # needs the arena extra, playwright and Debian's chromium
"""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from playwright.sync_api import sync_playwright

from pairkit.arena import VoteStore, demo_candidates_path

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
STRENGTH = {"aurora-70b": 1.2, "basalt-8b": -1.5, "cirrus-405b": 1.0, "delta-mini": -0.8}


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    db = tmp / "demo.sqlite"
    store = VoteStore(db)
    tokens = [store.add_annotator(n) for n in ("alice", "bob", "carol")]
    store.close()
    port = 8765
    proc = subprocess.Popen([sys.executable, "-c", "from pairkit.cli import main; main()", "arena", "serve",
                             str(demo_candidates_path()), "--db", str(db), "--port", str(port), "--seed", "1",
                             "--quota", "20"], stdout=subprocess.PIPE, text=True)
    admin = next(line for line in proc.stdout if "admin link" in line).split()[-1]
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(base + "/healthz")
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    rng = np.random.default_rng(0)
    store = VoteStore(db)
    with httpx.Client(base_url=base, headers={"Accept": "application/json"}) as client:
        for _ in range(10):
            for token in tokens[1:]:
                s = client.get(f"/a/{token}/state").json()
                if s["assignment"] is None:
                    continue
                pair = store.open_assignment(store.annotator_by_token(token).id)
                p = 1 / (1 + np.exp(STRENGTH[pair.right_id] - STRENGTH[pair.left_id]))
                outcome = "left" if rng.random() < p else "right"
                client.post(f"/a/{token}/vote", data={"vote_id": s["assignment"]["id"], "outcome": outcome,
                                                      "csrf": s["csrf"]})
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(f"{base}/a/{tokens[0]}")
            page.screenshot(path=str(HERE / "arena-vote.png"))
            page.goto(admin)
            page.screenshot(path=str(HERE / "arena-admin.png"), full_page=True)
            browser.close()
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
