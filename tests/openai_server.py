"""A small OpenAI-compatible HTTP server on 127.0.0.1, scripted per request.

Each POST to ``/v1/chat/completions`` takes the next :class:`Reply` from the
script (the last one repeats). Replies that the SDK retries carry
``retry-after-ms: 1`` so its backoff stays at a millisecond.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """One scripted answer: an HTTP status and a body (a chat completion by default)."""

    status: int = 200
    content: str | None = '{"rules": []}'
    usage: dict[str, Any] | None = field(
        default_factory=lambda: {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    )
    model: str = "gpt-4o-mini-2024-07-18"
    finish_reason: str = "stop"

    def body(self) -> bytes:
        """The JSON body the server sends."""
        if self.status != 200:
            return json.dumps(
                {"error": {"message": f"scripted {self.status}", "type": "x"}}
            ).encode()
        message = {"role": "assistant", "content": self.content}
        payload: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            payload["usage"] = self.usage
        return json.dumps(payload).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(min(length, 1_000_000))
        reply = self.server.next_reply()
        body = reply.body()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("retry-after-ms", "1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: list[Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.requests = 0
        self._lock = threading.Lock()

    def next_reply(self) -> Reply:
        with self._lock:
            reply = self.script[min(self.requests, len(self.script) - 1)]
            self.requests += 1
            return reply


@contextmanager
def openai_server(script: list[Reply]) -> Iterator[_Server]:
    """Serve ``script`` on an ephemeral port; yields the server (``.requests``, ``.url``)."""
    server = _Server(script)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def base_url(server: _Server) -> str:
    """The ``base_url`` for ``openai.OpenAI`` pointed at ``server``."""
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/v1"
