"""The OpenTelemetry bridge over the real wire: OTLP/HTTP protobuf to a loopback receiver."""

from __future__ import annotations

import gzip as gz
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="needs the OTLP exporter")
pytest.importorskip("opentelemetry.proto", reason="needs opentelemetry-proto")

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as WireSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as WireStatus
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from rulechef_trace import otel, record_trace
from tests.otlp_receiver import Receiver, otlp_receiver
from tests.scripted import BREAK, FIX_NEG, FIX_POS, make_chef
from tests.test_otel import STEP_OF_PROMPT, MeteredLLM, merge_pos


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A fresh OTLP/HTTP receiver on 127.0.0.1."""
    with otlp_receiver() as received:
        yield received


def export_a_traced_run(tmp_path: Any, receiver: Receiver, *, batch: bool, gzip: bool) -> Any:
    """Run an agentic learn with the bridge on a provider exporting to ``receiver``."""
    exporter = OTLPSpanExporter(
        endpoint=receiver.endpoint,
        timeout=5,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    slow = TimeoutError("the LLM took too long")
    llm = MeteredLLM(patch=[slow, FIX_POS, BREAK, FIX_NEG], audit=[merge_pos, {"actions": []}])
    chef = make_chef(tmp_path, llm, "agentic")
    try:
        with (
            record_trace(chef, write=False, strict=True) as recorder,
            otel.attach(chef, tracer_provider=provider),
        ):
            chef.learn_rules(max_refinement_iterations=6)
        assert provider.force_flush(timeout_millis=5000)
    finally:
        provider.shutdown()
    (recorded,) = recorder.traces
    return recorded


@pytest.mark.parametrize(("batch", "gzip"), [(False, False), (True, True)])
def test_the_span_tree_arrives_over_otlp_http_as_sent(
    tmp_path: Any, receiver: Receiver, batch: bool, gzip: bool
) -> None:
    """Parents, kinds, statuses and key attributes survive the protobuf encoding."""
    recorded = export_a_traced_run(tmp_path, receiver, batch=batch, gzip=gzip)
    assert receiver.errors == []
    by_id = {s.span_id: s for s in receiver.spans}
    (run,) = receiver.named("rulechef.learn")
    (synth,) = receiver.named("rulechef.synthesize")
    (refine,) = receiver.named("rulechef.refine")
    patches = receiver.named("rulechef.patch")
    audits = receiver.named("rulechef.audit")
    in_refine = [*patches, *receiver.named("rulechef.guide"), *receiver.named("rulechef.critique")]
    assert run.parent_id == ""
    assert {s.trace_id for s in receiver.spans} == {run.trace_id}
    assert {s.scope for s in receiver.spans} == {otel.SCOPE}
    assert synth.parent_id == refine.parent_id == run.span_id
    assert {s.parent_id for s in in_refine} == {refine.span_id}
    stages = {a.attributes["rulechef.audit.stage"]: a.parent_id for a in audits}
    assert stages == {"mid_refinement": refine.span_id, "final": run.span_id}

    calls = [s for s in receiver.spans if s.name.startswith("chat ")]
    assert len(calls) == len(recorded.events_of("llm_called"))
    for call in calls:
        step = by_id[call.parent_id]
        assert step.name == STEP_OF_PROMPT[call.attributes["rulechef.llm.step"]]
        assert call.kind == WireSpan.SPAN_KIND_CLIENT
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.provider.name"] == "openai"
        assert call.attributes["openinference.span.kind"] == "LLM"
    ok = [c for c in calls if c.status_code != WireStatus.STATUS_CODE_ERROR]
    assert {c.attributes["gen_ai.usage.input_tokens"] for c in ok} == {100}
    (failed,) = [c for c in calls if c.status_code == WireStatus.STATUS_CODE_ERROR]
    assert failed.attributes["error.type"].endswith("TimeoutError")
    assert by_id[failed.parent_id] is patches[0]
    assert patches[0].status_code == WireStatus.STATUS_CODE_ERROR

    assert run.attributes["rulechef.run.id"] == recorded.run["id"]
    assert run.attributes["rulechef.run.status"] == "completed"
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["rulechef.f1"] == 1.0
    assert run.status_code == WireStatus.STATUS_CODE_OK
    assert [p.attributes["rulechef.patch.outcome"] for p in patches] == [
        e["outcome"] for e in recorded.events_of("patch_decided")
    ]
    assert [
        [attributes["gen_ai.evaluation.score.label"] for name, attributes in p.events]
        for p in patches
    ] == [[e["outcome"]] for e in recorded.events_of("patch_decided")]
    steps = [s for s in receiver.spans if s.name.startswith("rulechef.")]
    assert {s.kind for s in steps} == {WireSpan.SPAN_KIND_INTERNAL}
    assert {s.attributes["openinference.span.kind"] for s in steps} == {"CHAIN"}
    assert all(s.attributes["output.value"] for s in steps)


def test_the_receiver_decodes_gzip_and_rejects_a_wrong_path(receiver: Receiver) -> None:
    """The receiver itself: gzip bodies decoded, other paths refused, nothing raised."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name, span.span_id, span.trace_id = "probe", b"\x01" * 8, b"\x02" * 16
    body = gz.compress(request.SerializeToString())
    post = urllib.request.Request(
        receiver.endpoint, data=body, headers={"Content-Encoding": "gzip"}, method="POST"
    )
    with urllib.request.urlopen(post, timeout=5) as answer:
        assert answer.status == 200
    assert [s.name for s in receiver.spans] == ["probe"]
    wrong = urllib.request.Request(receiver.endpoint + "x", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(wrong, timeout=5)
