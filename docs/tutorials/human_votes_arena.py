"""Human votes in the arena: serve the answers, let annotators vote in the browser, read the live leaderboard.

``pairkit arena serve`` is a real web server (FastAPI + uvicorn, votes committed to SQLite before they are
acknowledged). In real use you send each annotator their private link and they vote in the browser; here three
scripted annotators vote through the same HTTP endpoints the page uses, each preferring the better answer with
some noise. The admin's leaderboard is then read as JSON, and the votes are exported as comparisons (for
``pairkit rank``) and as chosen/rejected pairs (for ``pairkit train``).
"""

import json
import math
import random
import socket
import subprocess
import sys
import time

import httpx

from pairkit.arena import VoteStore, demo_candidates_path
from pairkit.rating import fit_bradley_terry

candidates = [json.loads(line) for line in demo_candidates_path().read_text().splitlines()]
author = {(c["context"], c["text"]): c["candidate_id"] for c in candidates}  # only the script knows this
quality = {"aurora-70b": 1.5, "cirrus-405b": 1.0, "delta-mini": 0.0, "basalt-8b": -1.5}  # the annotators' taste

# The owner sets up the arena: the candidates, three annotators (one private link each), an admin link.
store = VoteStore("arena.sqlite")
store.set_candidates(candidates)
tokens = {name: store.add_annotator(name) for name in ("ana", "bo", "chen")}
admin = store.new_admin_token()
store.close()

with socket.socket() as probe:  # a free port on this machine
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = subprocess.Popen(  # what `pairkit arena serve --db arena.sqlite --port PORT` runs
    [sys.executable, "-c", "from pairkit.cli import main; main()", "arena", "serve", "--db", "arena.sqlite",
     "--port", str(port), "--strategy", "active", "--seed", "0"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
base = f"http://127.0.0.1:{port}"
try:
    while True:  # wait for the server to listen
        if server.poll() is not None:
            raise SystemExit(f"the arena server exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    rng = random.Random(0)
    with httpx.Client(base_url=base, headers={"Accept": "application/json"}) as client:
        for token in tokens.values():
            for _ in range(12):
                state = client.get(f"/a/{token}/state").json()  # the pair this annotator sees now
                if state["assignment"] is None:
                    break
                shown = state["assignment"]  # what the page shows: the prompt and two anonymous answers
                left, right = (author[(shown["context"], shown[side])] for side in ("left", "right"))
                p_left = 1 / (1 + math.exp(quality[right] - quality[left]))
                outcome = "left" if rng.random() < p_left else "right"
                vote = {"vote_id": state["assignment"]["id"], "outcome": outcome, "csrf": state["csrf"]}
                assert client.post(f"/a/{token}/vote", data=vote).status_code == 200
        board = client.get(f"/admin/{admin}/leaderboard.json").json()
        pairs_jsonl = client.get(f"/admin/{admin}/export/pairs.jsonl").text
        open("comparisons.csv", "wb").write(client.get(f"/admin/{admin}/export/comparisons.csv").content)
finally:
    server.terminate()
    server.wait()

print(f"{board['n_votes']} votes; leaderboard (Elo scale, 95% intervals):")
for row in board["rows"]:
    print(f"  {row['rank']}. {row['item']:<12} {row['rating']:7.1f}  [{row['ci_low']:7.1f}, {row['ci_high']:7.1f}]")
print(f"{len(pairs_jsonl.splitlines())} chosen/rejected pairs for `pairkit train`")

# The exported comparisons give the same ratings with pairkit rank's engine.
import pairkit  # noqa: E402

comps = pairkit.read_comparisons("comparisons.csv", a="a", b="b", outcome="outcome", cluster="context_id")
ref = fit_bradley_terry(comps, prior=board.get("prior", 0.0), intervals="fisher").scale("elo")
gap = max(abs(r["rating"] - ref.ratings[ref.items.index(r["item"])]) for r in board["rows"])
print(f"largest difference between the live leaderboard and a fit of the export: {gap:.1e} Elo")
assert gap < 1e-6
