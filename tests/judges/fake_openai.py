"""A loopback OpenAI chat-completions server for reliability tests, with scripted faults.

Each request takes the next action from ``server.script`` (default ``"ok"``): ``"ok"``, ``"429"`` (with
``Retry-After``), ``"500"``, ``"timeout"`` (answers after ``slow`` seconds), ``"malformed"`` (non-JSON 200),
``"truncated"`` (a body shorter than its Content-Length), ``"unparseable"`` (a paid reply without a verdict) and
``"hang"`` (never answers in time). The verdict of ``"ok"`` compares the numbers ending both answers.

``"429:<value>"`` sends ``Retry-After: <value>`` (``"429:date+3600"``: an HTTP date an hour ahead).
``"slightly"`` answers ``[[A>B]]``/``[[B>A]]`` for the larger number. ``"verdict:<label>"`` answers
``[[<label>]]`` (e.g. ``A=B``, ``A>>B``) with its log-probs split into one token per piece (``[[``, ``A``, ``=``,
``B``, ``]]``), the first letter carrying 0.99 of its position's mass.

``invert=True`` makes a server that prefers the smaller number. Paid responses (those carrying ``usage``) are
recorded per prompt in ``server.paid``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.S)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a "hang" request must not hold up the test's exit

    def __init__(self, *, logprobs: bool = True, slow: float = 1.0, delay: float = 0.0, invert: bool = False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: deque[str] = deque()
        self.logprobs, self.slow, self.delay, self.invert = logprobs, slow, delay, invert
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.paid: list[tuple[str, int, int]] = []
        self.active = 0
        self.max_active = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # a killed client is normal
            super().handle_error(request, client_address)

    def paid_tokens(self) -> tuple[int, int]:
        return sum(p[1] for p in self.paid), sum(p[2] for p in self.paid)


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_POST(self):
        srv = self.server
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = payload["messages"][-1]["content"]
        with srv.lock:
            action = srv.script.popleft() if srv.script else "ok"
            srv.requests.append(action)
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
        try:
            time.sleep(srv.delay)
            self._act(action, payload, user)
        finally:
            with srv.lock:
                srv.active -= 1

    def _act(self, action: str, payload: dict, user: str):
        srv = self.server
        if action == "429":
            return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "1"})
        if action.startswith("429:"):
            value = action[4:]
            if value.startswith("date+"):
                from datetime import datetime, timedelta, timezone
                from email.utils import format_datetime

                when = datetime.now(timezone.utc) + timedelta(seconds=float(value[5:]))
                value = format_datetime(when, usegmt=True)
            return self._send(429, b'{"error": "rate limited"}', {"Retry-After": value})
        if action.startswith("verdict:"):
            return self._graded(action[8:], payload, user)
        if action == "slightly":  # Arena-Hard style "slightly better" for the larger number
            qa, qb = (int(a.split()[-1]) for a in dict(ANSWER.findall(user)).values())
            return self._graded("A>B" if qa > qb else "B>A" if qb > qa else "A=B", payload, user)
        if action == "500":
            return self._send(500, b'{"error": "internal"}')
        if action in ("timeout", "hang"):
            time.sleep(srv.slow if action == "timeout" else 30)
            return self._send(500, b"{}")
        if action == "malformed":
            return self._send(200, b"<html>upstream error</html>")
        if action == "truncated":
            self._send(200, b'{"choices": [{"mess', length=400)
            self.close_connection = True
            return None
        answers = dict(ANSWER.findall(user))
        if action == "unparseable":
            text = "Both answers have merits; I cannot decide."
        else:
            qa, qb = (int(answers[k].split()[-1]) for k in "AB")
            if srv.invert:  # a different server (or setting) that judges the other way
                qa, qb = qb, qa
            verdict = "A" if qa > qb else "B" if qb > qa else "C"
            text = f"Comparing the two answers carefully. [[{verdict}]]"
        prompt_tokens, completion_tokens = len(user) // 4, len(text) // 4
        with srv.lock:
            srv.paid.append((user, prompt_tokens, completion_tokens))
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if payload.get("logprobs") and srv.logprobs and action == "ok":
            other = {"A": "B", "B": "A", "C": "A"}[verdict]
            tops = [
                {"token": verdict, "logprob": -0.35667494393873245},  # 0.7
                {"token": other, "logprob": -1.6094379124341003},  # 0.2
                {"token": " the", "logprob": -2.3025850929940455},
            ]  # 0.1, not a verdict letter
            choice["logprobs"] = {
                "content": [
                    {"token": "Comparing", "logprob": 0.0, "top_logprobs": []},
                    {"token": " [[", "logprob": 0.0, "top_logprobs": []},
                    {"token": verdict, "logprob": tops[0]["logprob"], "top_logprobs": tops},
                    {"token": "]]", "logprob": 0.0, "top_logprobs": []},
                ]
            }
        body = {
            "id": "x",
            "object": "chat.completion",
            "model": payload["model"],
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return self._send(200, json.dumps(body).encode())

    def _graded(self, label: str, payload: dict, user: str):
        srv = self.server
        text = f"Both are close. [[{label}]]"
        prompt_tokens, completion_tokens = len(user) // 4, len(text) // 4
        with srv.lock:
            srv.paid.append((user, prompt_tokens, completion_tokens))
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if payload.get("logprobs") and srv.logprobs:
            pieces = re.findall(r"[AB]|>>|>|=", label)
            content = [{"token": "Both are close.", "logprob": 0.0, "top_logprobs": []},
                       {"token": " [[", "logprob": 0.0, "top_logprobs": []}]
            for k, piece in enumerate(pieces):
                if k == 0:
                    other = "B" if piece == "A" else "A"
                    tops = [{"token": piece, "logprob": math.log(0.99)}, {"token": other, "logprob": math.log(0.01)}]
                elif piece in (">>", ">", "="):
                    rest = [t for t in (">>", ">", "=") if t != piece]
                    tops = [{"token": piece, "logprob": math.log(0.9)}, {"token": rest[0], "logprob": math.log(0.06)},
                            {"token": rest[1], "logprob": math.log(0.04)}]
                else:
                    tops = [{"token": piece, "logprob": 0.0}]
                content.append({"token": piece, "logprob": tops[0]["logprob"], "top_logprobs": tops})
            content.append({"token": "]]", "logprob": 0.0, "top_logprobs": []})
            choice["logprobs"] = {"content": content}
        body = {
            "id": "x",
            "object": "chat.completion",
            "model": payload["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
        return self._send(200, json.dumps(body).encode())
