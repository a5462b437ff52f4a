"""A loopback OpenAI chat-completions server for reliability tests, with scripted faults.

Each request takes the next action from ``server.script`` (default ``"ok"``): ``"ok"``, ``"429"`` (with
``Retry-After``), ``"500"``, ``"timeout"`` (answers after ``slow`` seconds), ``"malformed"`` (non-JSON 200),
``"truncated"`` (a body shorter than its Content-Length), ``"unparseable"`` (a paid reply without a verdict) and
``"hang"`` (never answers in time). The verdict of ``"ok"`` compares the numbers ending both answers.
Paid responses (those carrying ``usage``) are recorded per prompt in ``server.paid``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.S)


class FakeServer(ThreadingHTTPServer):
    def __init__(self, *, logprobs: bool = True, slow: float = 1.0, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: deque[str] = deque()
        self.logprobs, self.slow, self.delay = logprobs, slow, delay
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
