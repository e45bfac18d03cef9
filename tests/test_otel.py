"""The OpenTelemetry bridge, checked with the SDK's in-memory span exporter."""

from __future__ import annotations

import contextvars
import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from rulechef_trace import Trace, otel, record_trace
from tests.scripted import (
    BREAK,
    DATA,
    FIX_ALL,
    FIX_NEG,
    FIX_POS,
    ScriptedLLM,
    StopAfterCoordinator,
    audit_merge,
    make_chef,
    rule,
    task,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def global_exporter() -> Iterator[InMemorySpanExporter]:
    """An in-memory exporter on the global TracerProvider (set once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def exporter(global_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The global exporter, emptied for this test."""
    global_exporter.clear()
    return global_exporter


def merge_pos(prompt: str) -> dict[str, Any]:
    return audit_merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely")(prompt)


def rich_chef(tmp_path: Any, llm: ScriptedLLM | None = None) -> Any:
    """Accepted and rejected patches, a mid-refinement merge, four iterations."""
    llm = llm or ScriptedLLM(patch=[FIX_POS, BREAK, FIX_NEG], audit=[merge_pos, {"actions": []}])
    return make_chef(tmp_path, llm, "agentic")


def learn_with_bridge(chef: Any, **kwargs: Any) -> Trace:
    with record_trace(chef, write=False, strict=True) as recorder, otel.attach(chef):
        chef.learn_rules(**kwargs)
    (recorded,) = recorder.traces
    return recorded


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


# --- shape -----------------------------------------------------------------


def test_a_learning_run_is_one_span_with_a_child_per_step(tmp_path, exporter):
    learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    (synth,) = named(spans, "rulechef.synthesize")
    (refine,) = named(spans, "rulechef.refine")
    patches = named(spans, "rulechef.patch")
    mid, final = named(spans, "rulechef.audit")
    assert run.parent is None
    assert {s.context.trace_id for s in spans if s.context} == {run.context.trace_id}
    assert parent_of(synth) == parent_of(refine) == parent_of(final) == span_id(run)
    assert {parent_of(s) for s in [*patches, mid]} == {span_id(refine)}
    assert mid.attributes["rulechef.audit.stage"] == "mid_refinement"
    assert final.attributes["rulechef.audit.stage"] == "final"
    assert len(spans) == 1 + 1 + 1 + len(patches) + 2
    for child in spans:
        assert run.start_time <= child.start_time <= child.end_time <= run.end_time


def test_steps_and_iterations_carry_the_traces_ids_counts_and_metrics(tmp_path, exporter):
    recorded = learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    (refine,) = named(spans, "rulechef.refine")
    assert run.attributes["rulechef.run.id"] == recorded.run["id"]
    assert run.attributes["rulechef.run.status"] == "completed"
    assert list(run.attributes["rulechef.rules.final"]) == recorded.final_rules
    assert run.attributes["rulechef.f1"] == recorded.final_metrics["f1"] == 1.0
    assert run.attributes["rulechef.param.max_refinement_iterations"] == 5
    assert run.status.status_code is StatusCode.OK

    events = recorded.events_of("patch_decided")
    patches = named(spans, "rulechef.patch")
    assert (
        [p.attributes["rulechef.patch.outcome"] for p in patches]
        == [e["outcome"] for e in events]
        == ["accepted", "rejected", "accepted"]
    )
    for span, event in zip(patches, events, strict=True):
        assert list(span.attributes["rulechef.rules.added"]) == event["added"]
        assert span.attributes["rulechef.after.f1"] == event["metrics_after"]["f1"]
        assert span.attributes["rulechef.rules.count"] == len(event["rules_after"])
    assert (
        list(patches[1].attributes["rulechef.patch.proposed_added"])
        == (events[1]["proposed"]["added"])
    )

    iterations = [e for e in refine.events if e.name == "rulechef.iteration"]
    assert [e.attributes["rulechef.f1"] for e in iterations] == [
        e["metrics"]["f1"] for e in recorded.events_of("iteration_evaluated")
    ]
    assert refine.attributes["rulechef.refine.stop_reason"] == "target_reached"
    (mid, _) = named(spans, "rulechef.audit")
    merge = recorded.events_of("audit_applied")[0]["actions"][0]
    assert mid.attributes["rulechef.audit.merges"] == 1
    assert list(mid.attributes["rulechef.rules.added"]) == [merge["result"]]


def test_attributes_hold_no_text(tmp_path, exporter):
    recorded = learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    values: list[Any] = []
    for span in exporter.get_finished_spans():
        values += list(span.attributes.values())
        for event in span.events:
            values += list(event.attributes.values())
    flat = {str(v) for value in values for v in (value if isinstance(value, tuple) else [value])}
    names = {entry["name"] for entry in recorded["rules"].values()}
    texts = {text for text, _ in DATA} | {task().description, "custom advice", "keep going"}
    assert names and not flat & names
    assert not any(text in value for value in flat for text in texts)


def test_a_failed_run_has_error_status_and_ends_every_span(tmp_path, exporter):
    class Boom(StopAfterCoordinator):
        def guide_refinement(self, eval_result: Any, iteration: int, max_iterations: int) -> tuple:
            raise LookupError("coordinator lost its notes")

    chef = make_chef(tmp_path, ScriptedLLM(), Boom())
    with otel.attach(chef), pytest.raises(LookupError):
        chef.learn_rules(max_refinement_iterations=2)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "LookupError: coordinator lost its notes"
    assert run.attributes["error.type"] == "LookupError"
    assert run.attributes["rulechef.run.status"] == "failed"
    (exception,) = [e for e in run.events if e.name == "exception"]
    assert exception.attributes["exception.message"] == "coordinator lost its notes"
    assert [s.name for s in spans if s.name == "rulechef.refine"] == ["rulechef.refine"]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_rank_rules_prune_is_a_span_of_its_own(tmp_path, exporter):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    chef.learn_rules(max_refinement_iterations=2)
    harmful = rule("broad", "day|thing|food|trip|mess", "pos", priority=9)
    chef.load_rules(
        [*(r.to_dict() for r in chef.dataset.rules), {**harmful, "content": harmful["pattern"]}]
    )
    broad = next(r.id for r in chef.dataset.rules if r.name == "broad")
    with otel.attach(chef):
        chef.rank_rules(prune=True, verbose=False)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.rank_rules")
    (prune,) = named(spans, "rulechef.prune")
    assert len(spans) == 2 and parent_of(prune) == span_id(run)
    assert prune.attributes["rulechef.prune.reason"] == "harmful_rules"
    assert list(prune.attributes["rulechef.rules.removed"]) == [broad]
    assert "rulechef.ensemble.f1" in prune.attributes


# --- context -----------------------------------------------------------------


class TracedLLM(ScriptedLLM):
    """A client whose calls open spans, as an OpenAI instrumentation would."""

    def create(self, **kwargs: Any) -> Any:
        with trace.get_tracer("llm").start_as_current_span("llm.call"):
            return super().create(**kwargs)


def test_run_nests_under_the_current_span_and_llm_calls_nest_under_the_run(tmp_path, exporter):
    chef = make_chef(tmp_path, TracedLLM(patch=[FIX_ALL]))
    tracer = trace.get_tracer("app")
    with otel.attach(chef), tracer.start_as_current_span("request") as request:
        chef.learn_rules(max_refinement_iterations=2)
        assert trace.get_current_span() is request
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    calls = named(spans, "llm.call")
    assert parent_of(run) == request.get_span_context().span_id
    assert len(calls) >= 3 and {parent_of(c) for c in calls} == {span_id(run)}


def test_set_current_false_leaves_the_context_alone(tmp_path, exporter):
    chef = make_chef(tmp_path, TracedLLM())
    with otel.OTelBridge(chef, set_current=False):
        chef.learn_rules(max_refinement_iterations=1)
    calls = named(list(exporter.get_finished_spans()), "llm.call")
    assert calls and all(c.parent is None for c in calls)


def test_concurrent_runs_on_different_chefs_keep_their_own_spans(tmp_path, exporter):
    chefs = [
        make_chef(tmp_path / str(i), ScriptedLLM(patch=[BREAK, FIX_ALL]), name=f"chef{i}")
        for i in range(4)
    ]
    with otel.attach(), ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda c: c.learn_rules(max_refinement_iterations=3), chefs))
    spans = list(exporter.get_finished_spans())
    runs = named(spans, "rulechef.learn")
    assert sorted(r.attributes["rulechef.dataset"] for r in runs) == [f"chef{i}" for i in range(4)]
    for run in runs:
        mine = [s for s in spans if s.context.trace_id == run.context.trace_id]
        assert sorted(s.name for s in mine) == sorted(
            [
                "rulechef.learn",
                "rulechef.synthesize",
                "rulechef.refine",
                "rulechef.patch",
                "rulechef.patch",
                "rulechef.audit",
            ]
        )
        patches = named(mine, "rulechef.patch")
        assert [p.attributes["rulechef.patch.outcome"] for p in patches] == ["rejected", "accepted"]


# --- attaching and detaching -------------------------------------------------


def test_bridge_follows_only_its_chef_and_stops_when_detached(tmp_path, exporter):
    mine = make_chef(tmp_path / "a", ScriptedLLM(), name="mine")
    other = make_chef(tmp_path / "b", ScriptedLLM(), name="other")
    bridge = otel.attach(mine._pipeline)
    assert bridge.attached and bridge.attach() is bridge
    other.learn_rules(max_refinement_iterations=1)
    mine.learn_rules(max_refinement_iterations=1)
    bridge.detach()
    bridge.detach()
    mine.learn_rules(max_refinement_iterations=1)
    runs = named(list(exporter.get_finished_spans()), "rulechef.learn")
    assert [r.attributes["rulechef.dataset"] for r in runs] == ["mine"]


def test_explicit_tracer_provider(tmp_path, exporter):
    private = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(private))
    chef = make_chef(tmp_path, ScriptedLLM())
    with otel.attach(chef, tracer_provider=provider):
        chef.learn_rules(max_refinement_iterations=1)
    assert exporter.get_finished_spans() == ()
    names = [s.name for s in private.get_finished_spans()]
    assert "rulechef.learn" in names
    (span,) = named(list(private.get_finished_spans()), "rulechef.learn")
    assert span.instrumentation_scope.name == otel.SCOPE


def test_detaching_during_a_run_ends_its_spans_as_incomplete(tmp_path, exporter, caplog):
    holder: dict[str, otel.OTelBridge] = {}

    def patch_then_detach(prompt: str) -> dict[str, Any]:
        holder["bridge"].detach()
        return {"rules": []}

    chef = make_chef(tmp_path, ScriptedLLM(patch=patch_then_detach))
    holder["bridge"] = otel.attach(chef)
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        # The run's context stays with the run: detaching mid-run cannot restore it.
        contextvars.copy_context().run(chef.learn_rules, max_refinement_iterations=1)
    (run,) = named(list(exporter.get_finished_spans()), "rulechef.learn")
    assert run.attributes["rulechef.run.status"] == "incomplete"
    assert "detached during 1 run(s)" in caplog.text


# --- optional dependency -----------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_importing_rulechef_trace_does_not_import_opentelemetry():
    done = run_python(
        "import sys\n"
        "import rulechef_trace, rulechef_trace.pytest_plugin, rulechef_trace.recorder\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    assert done.returncode == 0, done.stderr


def test_otel_without_opentelemetry_names_the_extra():
    done = run_python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "import rulechef_trace\n"
        "try:\n"
        "    import rulechef_trace.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "rulechef-trace[otel]"' in done.stdout


def test_record_trace_otel_switch_sends_the_run_as_spans(tmp_path, exporter):
    chef = rich_chef(tmp_path)
    with record_trace(chef, write=False, otel=True) as recorder:
        chef.learn_rules(max_refinement_iterations=3)
    (run,) = named(list(exporter.get_finished_spans()), "rulechef.learn")
    assert run.attributes["rulechef.run.id"] == recorder.last.run["id"]
    assert not recorder.attached


def test_two_bridges_on_one_run_leave_no_ended_span_current(tmp_path, exporter):
    chef = rich_chef(tmp_path)
    before = trace.get_current_span()
    with otel.attach(), record_trace(chef, write=False, otel=True):
        chef.learn_rules(max_refinement_iterations=2)
    assert trace.get_current_span() is before
    assert len(named(list(exporter.get_finished_spans()), "rulechef.learn")) == 2


def test_a_bridge_detached_mid_run_does_not_leave_the_run_span_current(tmp_path, exporter):
    from rulechef_trace import patch_decided

    chef = rich_chef(tmp_path)
    before = trace.get_current_span()
    leaving = otel.attach(chef)

    def detach_leaving(sender: Any, **event: Any) -> None:
        leaving.detach()

    with otel.attach(), patch_decided.connected_to(detach_leaving, sender=chef):
        chef.learn_rules(max_refinement_iterations=2)
    assert trace.get_current_span() is before
    assert otel._active == {}


def test_every_rulechef_span_is_an_openinference_chain_step(tmp_path, exporter):
    """Phoenix and MLflow read openinference.span.kind; every package span says CHAIN."""
    learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    assert {s.name for s in spans} >= {"rulechef.learn", "rulechef.refine", "rulechef.patch"}
    assert {s.attributes["openinference.span.kind"] for s in spans} == {"CHAIN"}
