"""A loopback OpenAI batch API (files, batches, file content) for BatchJudge tests.

A batch completes after ``polls`` status polls; every line is answered like ``fake_openai``'s "ok" action (the
larger number ending an answer wins) with token usage, and counted in ``server.paid`` by custom id — so a test can
check that no request was paid twice. Answers whose text contains "mute" get a reply without a verdict.
"""

from __future__ import annotations

import email.parser
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from tests.judges.fake_openai import ANSWER


class FakeBatchServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *, polls: int = 2):
        super().__init__(("127.0.0.1", 0), Handler)
        self.polls = polls
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.paid: Counter = Counter()
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

    def answer(self, line: dict) -> dict:
        user = line["body"]["messages"][-1]["content"]
        answers = dict(ANSWER.findall(user))
        if "mute" in user:
            text = "I cannot decide."
        else:
            qa, qb = (int(answers[k].split()[-1]) for k in "AB")
            text = "[[A>>B]]" if qa > qb else "[[B>>A]]" if qb > qa else "[[A=B]]"
        self.paid[line["custom_id"]] += 1
        body = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": len(text) // 4},
        }
        return {
            "id": "r",
            "custom_id": line["custom_id"],
            "response": {"status_code": 200, "body": body},
            "error": None,
        }


class Handler(BaseHTTPRequestHandler):
    server: FakeBatchServer

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, status: int = 200):
        self._send(status, json.dumps(obj).encode())

    def do_POST(self):
        srv = self.server
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        path = urlparse(self.path).path
        with srv.lock:
            if path == "/v1/files":
                message = email.parser.BytesParser().parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw
                )
                parts = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                         for p in message.get_payload()}  # fmt: skip
                assert parts["purpose"] == b"batch"
                file_id = f"file-{len(srv.files)}"
                srv.files[file_id] = parts["file"]
                return self._json({"id": file_id, "object": "file", "purpose": "batch"})
            if path == "/v1/batches":
                req = json.loads(raw)
                assert req["endpoint"] == "/v1/chat/completions" and req["input_file_id"] in srv.files
                batch_id = f"batch-{len(srv.batches)}"
                srv.batches[batch_id] = {"id": batch_id, "status": "in_progress", "input_file_id": req["input_file_id"],
                                         "metadata": req.get("metadata"), "polls": 0}  # fmt: skip
                return self._json(self._public(srv.batches[batch_id]))
        return self._json({"error": "not found"}, 404)

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k != "polls"}

    def do_GET(self):
        srv = self.server
        url = urlparse(self.path)
        with srv.lock:
            if url.path == "/v1/batches":
                return self._json({"data": [self._public(b) for b in srv.batches.values()]})
            if url.path.startswith("/v1/batches/"):
                batch = srv.batches[url.path.rsplit("/", 1)[1]]
                batch["polls"] += 1
                if batch["status"] == "in_progress" and batch["polls"] >= srv.polls:
                    lines = [json.loads(x) for x in srv.files[batch["input_file_id"]].decode().splitlines() if x]
                    out = "".join(json.dumps(srv.answer(line)) + "\n" for line in lines).encode()
                    file_id = f"file-{len(srv.files)}"
                    srv.files[file_id] = out
                    batch.update(status="completed", output_file_id=file_id, error_file_id=None)
                return self._json(self._public(batch))
            if url.path.startswith("/v1/files/") and url.path.endswith("/content"):
                return self._send(200, srv.files[url.path.split("/")[3]], "application/jsonl")
        return self._json({"error": "not found"}, 404)
