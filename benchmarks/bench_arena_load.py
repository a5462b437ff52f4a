"""Arena durability and latency: concurrent annotators on loopback, the server SIGKILLed mid-run and restarted.

    python benchmarks/bench_arena_load.py [--annotators 50] [--seconds 60] [--strategy active] [--items 12] [--think 0]

Each simulated annotator loops: GET its current pair (``/a/<token>/state``), POST a vote (``Accept:
application/json``), then waits ``--think`` seconds on average (exponential; 0, the default, is a closed loop that
measures the server at saturation: each request then waits for the other annotators' ones). Halfway through, the
server process is killed with SIGKILL and started again on the same port; clients retry until it is back. At the end
every vote the server acknowledged (HTTP 200) must be in the database exactly once with the outcome sent. Prints
p50/p95 latency of the vote POST and of the next-pair GET, votes per second, and the server's peak memory. No peer
offers this; the numbers are pairkit's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pairkit.arena import VoteStore  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([*args, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("server did not start in 60 s")


def peak_rss_mb(proc: subprocess.Popen) -> float:
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def annotator(client, base: str, token: str, stop: float, acked: dict, lat_vote: list, lat_next: list,
                    rng: np.random.Generator, errors: list, think: float) -> None:
    import httpx

    while time.monotonic() < stop:
        try:
            t0 = time.perf_counter()
            state = (await client.get(f"{base}/a/{token}/state")).json()
            lat_next.append((time.perf_counter(), time.perf_counter() - t0))
            if state["assignment"] is None:
                return
            outcome = ["left", "right", "tie", "both_bad"][int(rng.integers(4))]
            vote_id = state["assignment"]["id"]
            t0 = time.perf_counter()
            r = await client.post(f"{base}/a/{token}/vote", data={"vote_id": vote_id, "outcome": outcome,
                                                                   "csrf": state["csrf"]},
                                  headers={"Accept": "application/json"})
            if r.status_code == 200:
                lat_vote.append((time.perf_counter(), time.perf_counter() - t0))
                acked[vote_id] = outcome
            else:
                errors.append(f"{r.status_code}: {r.text[:100]}")
            if think > 0:
                await asyncio.sleep(min(rng.exponential(think), max(0.0, stop - time.monotonic())))
        except (httpx.HTTPError, json.JSONDecodeError):
            await asyncio.sleep(0.05)  # the server is down (killed): retry until it is back


async def drive(base: str, tokens: list[str], seconds: float, kill_at: float, restart, think: float) -> dict:
    import httpx

    acked: dict[str, str] = {}
    lat_vote: list[float] = []
    lat_next: list[float] = []
    errors: list[str] = []
    start_t = time.monotonic()
    stop = start_t + seconds
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        tasks = [
            asyncio.create_task(annotator(client, base, t, stop, acked, lat_vote, lat_next,
                                          np.random.default_rng(k), errors, think))
            for k, t in enumerate(tokens)
        ]
        await asyncio.sleep(kill_at)
        restarted = time.perf_counter()
        n_before = len(acked)
        await asyncio.to_thread(restart)
        await asyncio.gather(*tasks)
    return {"acked": acked, "lat_vote": lat_vote, "lat_next": lat_next, "errors": errors, "before_kill": n_before,
            "restarted": restarted,
            "elapsed": time.monotonic() - start_t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--strategy", default="active")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--think", type=float, default=0.0, help="mean seconds an annotator takes between votes")
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="arena-load-"))
    rows = [{"context_id": f"p{c}", "context": f"prompt {c}", "candidate_id": f"model-{i}",
             "text": f"answer of model {i} to prompt {c} " + "lorem ipsum " * 20}
            for c in range(opts.prompts) for i in range(opts.items)]
    cand = tmp / "candidates.jsonl"
    cand.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp / "arena.sqlite"
    store = VoteStore(db)
    store.set_candidates(rows)
    tokens = [store.add_annotator(f"ann{k}") for k in range(opts.annotators)]
    store.close()
    port = free_port()
    args = [sys.executable, "-c", "from pairkit.cli import main; main()", "arena", "serve", str(cand), "--db",
            str(db), "--strategy", opts.strategy, "--seed", "0"]
    server = {"proc": start(args, port)}
    peaks = []

    def restart() -> None:
        peaks.append(peak_rss_mb(server["proc"]))
        server["proc"].send_signal(signal.SIGKILL)
        server["proc"].wait()
        server["proc"] = start(args, port)

    out = asyncio.run(drive(f"http://127.0.0.1:{port}", tokens, opts.seconds, opts.seconds / 2, restart, opts.think))
    peaks.append(peak_rss_mb(server["proc"]))
    server["proc"].send_signal(signal.SIGKILL)
    server["proc"].wait()

    store = VoteStore(db)
    stored = {v["vote_id"]: v["outcome"] for v in store.votes(include_undone=True)}
    all_ids = [v["vote_id"] for v in store.votes(include_undone=True)]
    missing = [k for k in out["acked"] if k not in stored]
    wrong = [k for k, o in out["acked"].items() if k in stored and stored[k] != o]
    def ms(samples, steady=False):
        """Latencies in ms; ``steady``: without the 10 s from the kill on (restart and warm-up)."""
        keep = [lat for t, lat in samples if not (steady and out["restarted"] <= t <= out["restarted"] + 10)]
        return 1000 * np.array(keep)

    vote_ms, next_ms = ms(out["lat_vote"]), ms(out["lat_next"])
    print(f"arena load: {opts.annotators} annotators, {opts.seconds:.0f} s, strategy {opts.strategy}, "
          f"{opts.items} items × {opts.prompts} prompts, think {opts.think:g} s; SIGKILL + restart at "
          f"{opts.seconds / 2:.0f} s")
    print(f"acknowledged votes: {len(out['acked'])} ({out['before_kill']} before the kill); stored: {len(stored)}; "
          f"acknowledged but missing: {len(missing)}; outcome differs: {len(wrong)}; duplicates: "
          f"{len(all_ids) - len(set(all_ids))}; refused: {len(out['errors'])}")
    print(f"votes per second: {len(out['acked']) / out['elapsed']:.1f} (including the restart)")
    print(f"vote POST latency: p50 {np.percentile(vote_ms, 50):.1f} ms, p95 {np.percentile(vote_ms, 95):.1f} ms, "
          f"max {vote_ms.max():.1f} ms")
    print(f"next-pair GET latency: p50 {np.percentile(next_ms, 50):.1f} ms, p95 {np.percentile(next_ms, 95):.1f} ms")
    steady_vote, steady_next = ms(out["lat_vote"], True), ms(out["lat_next"], True)
    print(f"steady state (the 10 s from the kill left out): vote p95 {np.percentile(steady_vote, 95):.1f} ms, "
          f"next-pair p95 {np.percentile(steady_next, 95):.1f} ms")
    print(f"server peak RSS: {max(peaks):.0f} MB; load average {os.getloadavg()[0]:.1f}")
    if missing or wrong or len(all_ids) != len(set(all_ids)):
        raise SystemExit("DURABILITY FAILURE")


if __name__ == "__main__":
    main()
