"""A tiny OpenAI chat-completions (and plain completions) server on 127.0.0.1 that misbehaves on request.

`faults` is consumed one entry per request: "429" (with Retry-After), "500", "hang" (no reply
until stopped), "malformed", "empty" (no choices), "drop" (close the socket), "400"; "ok" or an empty
list answers normally with `reply(body) -> str` (or `(text, finish_reason)`), in the shape of the path asked:
/chat/completions or /completions. `hold_after=N` answers N requests, then
holds every later one until `release` is set and drops it unanswered (a run to kill mid-way).
`answered` counts only complete normal replies: the requests a real API would bill."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def default_reply(body: dict) -> str:
    return "The answer follows from the facts. So the answer is yes."


class FakeOpenAI:
    def __init__(self, reply: Callable[[dict], str] = default_reply, faults: list[str] | None = None,
                 retry_after: str = "0.3", hold_after: int | None = None, delay_s: float = 0.0):
        self.reply, self.faults, self.retry_after, self.hold_after = reply, list(faults or []), retry_after, hold_after
        self.delay_s = delay_s  # time to "think" before a normal answer, so concurrent requests overlap
        self.inflight = self.max_inflight = 0
        self.received = 0
        self.answered = 0
        self.bodies: list[dict] = []  # bodies of answered requests
        self.paths: list[str] = []  # their URL paths
        self.release = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict, path: str) -> str:
        """Pick this request's fate; a normal answer is counted here, before it is sent."""
        with self._lock:
            self.received += 1
            if self.hold_after is not None and self.answered >= self.hold_after:
                return "hold"
            fault = self.faults.pop(0) if self.faults else "ok"
            if fault == "ok":
                self.answered += 1
                self.bodies.append(body)
                self.paths.append(path)
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fault = fake._next(body, self.path)
                if fault in ("hold", "hang"):
                    (fake.release if fault == "hold" else fake._stop).wait()
                    self.close_connection = True
                    return
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault == "429":
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": fake.retry_after})
                if fault == "400":
                    return self._send(400, {"error": {"message": "bad model"}})
                if fault == "500":
                    return self._send(500, {"error": {"message": "boom"}})
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"message": ')
                if fault == "empty":
                    return self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
                with fake._lock:
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                time.sleep(fake.delay_s)
                with fake._lock:
                    fake.inflight -= 1
                content = fake.reply(body)
                content, finish = content if isinstance(content, tuple) else (content, "stop")
                if self.path.endswith("/chat/completions"):
                    kind, choice = "chat.completion", {"message": {"role": "assistant", "content": content}}
                else:
                    kind, choice = "text_completion", {"text": content}
                self._send(200, {
                    "id": "cmpl-fake", "object": kind, "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": finish, **choice}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                })

            def _send(self, status: int, payload, headers: dict | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        return Handler
