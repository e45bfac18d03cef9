"""An OTLP/HTTP trace receiver on 127.0.0.1 for tests: what a collector would receive."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

#: Largest request body accepted (bytes); a bigger one is answered 413 and dropped.
MAX_BODY = 4 * 1024 * 1024


@dataclass
class ReceivedSpan:
    """One span as decoded from the wire (ids as hex, attributes as plain values)."""

    name: str
    span_id: str
    parent_id: str
    trace_id: str
    kind: int
    status_code: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[str]
    scope: str


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass
class Receiver:
    """Spans received so far, and the endpoint to export them to."""

    endpoint: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        """Decode one ExportTraceServiceRequest and keep its spans."""
        request = ExportTraceServiceRequest.FromString(body)
        decoded = [
            ReceivedSpan(
                name=span.name,
                span_id=span.span_id.hex(),
                parent_id=span.parent_span_id.hex(),
                trace_id=span.trace_id.hex(),
                kind=span.kind,
                status_code=span.status.code,
                attributes=_attributes(span.attributes),
                events=[(e.name, _attributes(e.attributes)) for e in span.events],
                links=[link.span_id.hex() for link in span.links],
                scope=scope_spans.scope.name,
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.lock:
            self.spans.extend(decoded)

    def named(self, name: str) -> list[ReceivedSpan]:
        """The received spans with this name, in arrival order."""
        with self.lock:
            return [s for s in self.spans if s.name == name]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/v1/traces" or length > MAX_BODY:
                self.send_error(404 if self.path != "/v1/traces" else 413)
                return
            body = self.rfile.read(length)
            try:
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)[: MAX_BODY + 1]
                receiver.add(body)
            except Exception as exc:  # a bad request is recorded, never raised here
                receiver.errors.append(f"{type(exc).__name__}: {exc}")
                self.send_error(400)
                return
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on what was received, not on access logs."""

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """Serve OTLP/HTTP traces on an ephemeral 127.0.0.1 port for the duration of the block."""
    receiver = Receiver(endpoint="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
