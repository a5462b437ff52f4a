"""Fault cases for the judge layer (``pairkit judge``, OpenAIJudge, the judgment cache, selection strategies).

Each case runs the CLI (or a short library script) in a fresh process against a loopback OpenAI-compatible server
(``tests/judges/fake_openai.py``) that rate-limits, stalls, answers garbage or graded verdicts, and classifies the
outcome: ``clean`` (exit 0 with the right result, or exit 2 with one precise line), ``vague`` (exit 2 but the
message does not name the problem), ``traceback``, ``silent`` (exit 0 with a wrong result or an ignored
setting), ``hang`` (no end within the case's bound) and ``paid_twice`` (a paid prompt paid again).

    python benchmarks/fuzz_judges.py                 # this worktree's src
    python benchmarks/fuzz_judges.py --src /path/to/other/src   # e.g. main before a change

Prints one line per case and the totals per class.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.judges.fake_openai import FakeServer  # noqa: E402

HANG = 25.0


class Ctx:
    def __init__(self, src: str, tmp: Path, server: FakeServer, other: FakeServer):
        self.src, self.tmp, self.server, self.other = src, tmp, server, other
        self.n = 0

    def path(self, name: str) -> Path:
        self.n += 1
        return self.tmp / f"{self.n}-{name}"

    def env(self) -> dict:
        return {**os.environ, "PYTHONPATH": self.src, "COLUMNS": "200"}

    def candidates(self, values=(3, 9, 1, 5), texts=None) -> Path:
        p = self.path("cands.jsonl")
        rows = texts or [f"answer {v}" for v in values]
        p.write_text("".join(json.dumps({"context_id": "q", "candidate_id": f"m{i}", "text": t}) + "\n"
                             for i, t in enumerate(rows)))
        return p

    def config(self, **options) -> Path:
        p = self.path("judge.json")
        base = {"type": "openai", "model": "judge-model", "base_url": self.server.url, "api_key": "t"}
        p.write_text(json.dumps({**base, **options}))
        return p

    def simulated(self, **options) -> Path:
        p = self.path("sim.json")
        p.write_text(json.dumps({"type": "simulated", "strengths": {"m0": 1, "m1": 2, "m2": 0, "m3": 3}, **options}))
        return p

    def cli(self, *args, timeout: float = HANG):
        cmd = [sys.executable, "-c", "from pairkit.cli import main; main()", "judge", *map(str, args)]
        return self.run(cmd, timeout)

    def script(self, code: str, timeout: float = HANG):
        return self.run([sys.executable, "-c", code], timeout)

    def run(self, cmd, timeout):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=self.tmp)
        except subprocess.TimeoutExpired:
            return None
        return out

    def reset(self):
        for s in (self.server, self.other):
            s.script.clear()
            s.paid.clear()
            s.requests.clear()
            s.delay = 0.0


def judged(out, *words, ok=None):
    """Classify a finished process: exit 2 must name every word; exit 0 is checked by ``ok``."""
    if out is None:
        return "hang", "no end"
    err = out.stderr
    if "Traceback" in err or out.returncode not in (0, 2):
        return "traceback", err.strip().splitlines()[-1][:120] if err.strip() else f"exit {out.returncode}"
    if out.returncode == 2:
        line = err.strip().splitlines()[-1] if err.strip() else ""
        if all(w.lower() in err.lower() for w in words):
            return "clean", line[:120]
        return "vague", line[:120]
    if ok is None:
        return "silent", "accepted"
    return ok(out)


# ------------------------------------------------------------------------------------------------- cases
def retry_after_seconds(c):
    c.server.script.extend(["429:3600"])
    out = c.cli(c.candidates(), "--judge", c.config(), "--strategy", "knockout")
    return judged(out, "retry-after", ok=lambda o: ("clean", "warned") if "retry-after" in o.stderr.lower()
                  else ("silent", "no word of the long Retry-After"))


def retry_after_date(c):
    c.server.script.extend(["429:date+3600"])
    out = c.cli(c.candidates(), "--judge", c.config(), "--strategy", "knockout")
    return judged(out, "retry-after", ok=lambda o: ("clean", "warned") if "retry-after" in o.stderr.lower()
                  else ("silent", "no word of the long Retry-After"))


def default_call_bound(c):
    out = c.script(
        "from pairkit.judges import OpenAIJudge\n"
        "j = OpenAIJudge('m')\n"
        "b = getattr(j, 'max_call_seconds', None)\n"
        "if b is None:\n"
        "    waits = sum(min(j.max_backoff, j.backoff * 2 ** k) for k in range(j.max_retries))\n"
        "    b = j.timeout * (j.max_retries + 1) + waits\n"
        "print(b)"
    )
    if out is None or out.returncode:
        return "traceback", "no bound"
    bound = float(out.stdout.split()[-1])
    return ("clean", f"worst case {bound:.0f} s per call") if bound <= 150 else ("hang", f"worst case {bound:.0f} s")


def _reuse_case(c, first: dict, second: dict, *, other_server=False):
    cache = c.path("cache.sqlite")
    cands = c.candidates()
    o1 = c.cli(cands, "--judge", c.config(**first), "--cache", cache, "--strategy", "round_robin")
    if o1 is None or o1.returncode:
        return judged(o1)
    paid_before = len(c.server.paid) + len(c.other.paid)
    cfg = c.config(**second) if not other_server else c.config(base_url=c.other.url, **second)
    o2 = c.cli(cands, "--judge", cfg, "--cache", cache, "--strategy", "round_robin")
    if o2 is None or o2.returncode:
        return judged(o2)
    paid = len(c.server.paid) + len(c.other.paid) - paid_before
    return ("clean", f"{paid} new paid calls") if paid else ("silent", "answers of another setting reused")


def cache_base_url(c):
    return _reuse_case(c, {}, {}, other_server=True)


def cache_temperature(c):
    return _reuse_case(c, {"temperature": 0.0}, {"temperature": 0.7})


def cache_logprobs(c):
    return _reuse_case(c, {"logprobs": True}, {"logprobs": False})


def cache_samples(c):
    return _reuse_case(c, {"temperature": 1.0}, {"temperature": 1.0, "samples": 2})


def cache_extra_body(c):
    return _reuse_case(c, {"extra_body": {"top_p": 1.0}}, {"extra_body": {"top_p": 0.5}})


def cache_max_tokens(c):
    return _reuse_case(c, {}, {"max_tokens": 16})


def cache_same_setting_reused(c):
    cache = c.path("cache.sqlite")
    cands, cfg = c.candidates(), c.config()
    c.cli(cands, "--judge", cfg, "--cache", cache)
    before = len(c.server.paid)
    out = c.cli(cands, "--judge", cfg, "--cache", cache)
    if out is None or out.returncode:
        return judged(out)
    return ("clean", "all from cache") if len(c.server.paid) == before else ("paid_twice", "same request paid again")


def _foreign(c, sql: str):
    cache = c.path("foreign.sqlite")
    db = sqlite3.connect(cache)
    db.executescript(sql)
    db.commit()
    db.close()
    out = c.cli(c.candidates(), "--judge", c.simulated(), "--cache", cache)
    return judged(out, "cache")


def cache_foreign_same_table(c):
    return _foreign(c, "CREATE TABLE judgments (x INTEGER); INSERT INTO judgments VALUES (1);")


def cache_foreign_other_tables(c):
    return _foreign(c, "CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ann');")


def cache_not_sqlite(c):
    cache = c.path("garbage.sqlite")
    cache.write_bytes(os.urandom(8192))
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--cache", cache), "cache")


def cache_damaged_page(c):
    cache = c.path("damaged.sqlite")
    values = list(range(40))
    cands = c.candidates(texts=[f"answer {'x' * 300} {v}" for v in values])
    strengths = {f"m{i}": float(v) for i, v in enumerate(values)}
    cfg = c.path("sim.json")
    cfg.write_text(json.dumps({"type": "simulated", "strengths": strengths}))
    first = c.cli(cands, "--judge", cfg, "--cache", cache, "--strategy", "round_robin")
    if first is None or first.returncode:
        return judged(first)
    for suffix in ("-wal", "-shm"):
        Path(str(cache) + suffix).unlink(missing_ok=True)
    data = bytearray(cache.read_bytes())
    page = 4096
    for p in range(2, len(data) // page - 1, 3):  # scribble over every third page's header
        data[p * page : p * page + 64] = os.urandom(64)
    cache.write_bytes(bytes(data))
    return judged(c.cli(cands, "--judge", cfg, "--cache", cache, "--strategy", "round_robin"), "cache")


def cache_is_directory(c):
    d = c.path("dir.sqlite")
    d.mkdir()
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--cache", d), "cache")


def max_cost_without_price(c):
    out = c.cli(c.candidates(), "--judge", c.config(), "--max-cost", "0.01")
    return judged(out, "price")


def negative_price(c):
    return judged(c.cli(c.candidates(), "--judge", c.config(price=[-1, -1]), "--max-cost", "1"), "price")


def price_not_numbers(c):
    return judged(c.cli(c.candidates(), "--judge", c.config(price=["a", "b"])), "price")


def unparseable_rerun(c):
    cache = c.path("cache.sqlite")
    cands, cfg = c.candidates(values=(1, 2)), c.config(parse_retries=0)
    c.server.script.extend(["unparseable"])
    c.cli(cands, "--judge", cfg, "--cache", cache)
    paid = len(c.server.paid)
    c.server.script.extend(["unparseable"])
    out = c.cli(cands, "--judge", cfg, "--cache", cache)
    if len(c.server.paid) > paid:
        return "paid_twice", f"{len(c.server.paid)} paid for 1 prompt"
    return judged(out, "unparseable", ok=lambda o: ("clean", "cached failure reported"))


def two_processes(c):
    cache = c.path("cache.sqlite")
    cands = c.candidates(values=range(8))
    cfg = c.config(max_concurrency=4)
    c.server.delay = 0.2
    cmd = [sys.executable, "-c", "from pairkit.cli import main; main()", "judge", str(cands), "--judge", str(cfg),
           "--cache", str(cache), "--strategy", "round_robin"]
    procs = [subprocess.Popen(cmd, env=c.env(), cwd=c.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=60) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        return "hang", "two processes did not finish"
    prompts = [p[0] for p in c.server.paid]
    dup = len(prompts) - len(set(prompts))
    if dup:
        return "paid_twice", f"{dup} of {len(set(prompts))} prompts paid twice"
    if any("Traceback" in e for _, e in outs):
        return "traceback", "a process failed"
    if any(p.returncode for p in procs):
        return ("clean", "second refused clearly") if all("cache" in e.lower() for _, e in outs if e) else (
            "vague", outs[1][1].strip()[-120:])
    return "clean", f"{len(prompts)} prompts paid once"


def kill_and_resume(c):
    cache = c.path("cache.sqlite")
    cands = c.candidates(values=range(10))
    cfg = c.config(max_concurrency=4)
    c.server.delay = 0.3
    cmd = [sys.executable, "-c", "from pairkit.cli import main; main()", "judge", str(cands), "--judge", str(cfg),
           "--cache", str(cache), "--strategy", "round_robin"]
    proc = subprocess.Popen(cmd, env=c.env(), cwd=c.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(c.server.requests) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # calls in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let the server finish the orphaned requests
    c.server.delay = 0.0
    out = c.cli(cands, "--judge", cfg, "--cache", cache, "--strategy", "round_robin")
    prompts = [p[0] for p in c.server.paid]
    dup = len(prompts) - len(set(prompts))
    if dup > 4:
        return "paid_twice", f"{dup} repeated (> concurrency 4)"
    if out is None or out.returncode:
        return judged(out)
    return ("clean", f"{dup} repeated, reported") if "in flight" in out.stderr else (
        "silent", f"{dup} repeated, not reported")


def candidates_not_utf8(c):
    p = c.path("latin1.jsonl")
    p.write_bytes(b'{"context_id": "q", "candidate_id": "m0", "text": "caf\xe9 1"}\n'
                  b'{"context_id": "q", "candidate_id": "m1", "text": "tea 2"}\n')
    return judged(c.cli(p, "--judge", c.simulated()), "utf-8", "row 1")


def strength_high(c):
    cfg = c.path("sim.json")
    cfg.write_text(json.dumps({"type": "simulated", "strengths": {"m0": "high", "m1": 1}}))
    return judged(c.cli(c.candidates(values=(1, 2)), "--judge", cfg), "high")


def config_not_object(c):
    cfg = c.path("list.json")
    cfg.write_text("[1, 2]")
    return judged(c.cli(c.candidates(), "--judge", cfg), "type")


def _option(c, strategy, *options, words=(), extra=()):
    args = [c.candidates(), "--judge", c.simulated(), "--strategy", strategy, *extra]
    for o in options:
        args += ["--option", o]
    return judged(c.cli(*args), *words, ok=lambda o: ("clean", "ran with a default"))


def random_pairs_no_count(c):
    return _option(c, "random_pairs")


def random_pairs_negative(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "random_pairs", "--option",
                        "n_comparisons=-3"), "n_comparisons")


def random_pairs_batch_zero(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "random_pairs", "--option",
                        "n_comparisons=10", "--option", "batch=0"), "batch")


def swiss_rounds_zero(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "swiss", "--option", "rounds=0"),
                  "rounds")


def round_robin_repeats_zero(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--option", "repeats=0"), "repeats")


def knockout_best_of_nan(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "knockout", "--option",
                        "best_of=NaN"), "best_of")


def duo_depth_negative(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "duo_rerank", "--option",
                        "depth=-1"), "depth")


def sliding_initial_bad(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "sliding_topk", "--option",
                        "initial=[99]"), "initial")


def heap_k_zero(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--strategy", "heap_topk", "--k", "0"), "k")


def length_rule_negative(c):
    return judged(c.cli(c.candidates(), "--judge", c.simulated(), "--length-rule", "-5"), "length")


def timeout_negative(c):
    return judged(c.cli(c.candidates(), "--judge", c.config(timeout=-1)), "timeout")


def tie_from_logprobs(c):
    c.server.script.extend(["verdict:A=B"])
    out = c.script(
        "from pairkit.judges import OpenAIJudge\n"
        f"j = OpenAIJudge('m', base_url={c.server.url!r}, api_key='t')\n"
        "r = j.judge('q', 'answer 1', 'answer 2')\n"
        "print(r.p_a, r.p_tie)"
    )
    if out is None or out.returncode:
        return judged(out)
    p_a, p_tie = map(float, out.stdout.split()[-2:])
    return ("clean", f"p_tie {p_tie:.2f}") if p_tie > 0.5 else ("silent", f"[[A=B]] read as p_a {p_a:.2f}")


def length_rule_graded(c):
    c.server.script.extend(["slightly"] * 4)
    long = "answer " + "very " * 200 + "9"
    out = c.script(
        "from pairkit.judges import OpenAIJudge\n"
        "from pairkit.select import Pool, select\n"
        f"j = OpenAIJudge('m', base_url={c.server.url!r}, api_key='t', logprobs=False)\n"
        f"pool = Pool.single({{'long': {long!r}, 'short': 'answer 1'}}, context='q')\n"
        "s = select('round_robin', j, pool, length_rule=100)\n"
        "print(s.decisions[0][3])"
    )
    if out is None or out.returncode:
        return judged(out)
    s = float(out.stdout.split()[-1])
    return ("clean", "slight win by the longer answer -> tie") if s == 0.5 else ("silent", f"decision {s}")


CASES = [v for k, v in list(globals().items()) if callable(v) and getattr(v, "__module__", "") == __name__
         and k not in ("judged", "main") and not k.startswith("_") and not isinstance(v, type)
         and v.__code__.co_varnames[:1] == ("c",)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(ROOT / "src"))
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp, FakeServer(slow=1.0) as server, FakeServer(invert=True) as other:
        ctx = Ctx(args.src, Path(tmp), server, other)
        for case in CASES:
            if args.only and args.only not in case.__name__:
                continue
            ctx.reset()
            start = time.monotonic()
            try:
                kind, note = case(ctx)
            except Exception as exc:  # a harness failure is reported, not hidden
                kind, note = "harness", f"{type(exc).__name__}: {exc}"
            counts[kind] += 1
            print(f"{case.__name__:28s} {kind:10s} {time.monotonic() - start:5.1f}s  {note}", flush=True)
    total = sum(counts.values())
    print(f"\n{total} cases: " + ", ".join(f"{k} {counts[k]}" for k in
                                          ("clean", "vague", "traceback", "silent", "hang", "paid_twice", "harness")))


if __name__ == "__main__":
    main()
