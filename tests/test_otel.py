"""The OpenTelemetry bridge, checked with the SDK's in-memory span exporter."""

from __future__ import annotations

import contextvars
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel tests need opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Link, SpanKind, StatusCode

from rulechef_trace import Trace, otel, record_trace
from rulechef_trace import signals as sig
from rulechef_trace.otel import _attributes, _current, _llm
from tests.scripted import (
    BREAK,
    DATA,
    FIX_ALL,
    FIX_NEG,
    FIX_POS,
    ScriptedLLM,
    StopAfterCoordinator,
    audit_merge,
    last_trace,
    make_chef,
    prompt_kind,
    rule,
    task,
)

ROOT = Path(__file__).resolve().parents[1]

if TYPE_CHECKING:

    class FinishedSpan(ReadableSpan):
        """A span the SDK has ended: the SDK types these as optional until then."""

        @property
        def attributes(self) -> Mapping[str, Any]: ...
        @property
        def start_time(self) -> int: ...
        @property
        def end_time(self) -> int: ...


#: The step span each prompt kind's call must sit under.
STEP_OF_PROMPT = {
    "per_class": "rulechef.synthesize",
    "synthesis": "rulechef.synthesize",
    "patch": "rulechef.patch",
    "audit": "rulechef.audit",
    "guide": "rulechef.guide",
    "critic": "rulechef.critique",
}


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
def exporter(global_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The global exporter, emptied for this test; no package span may stay current after it."""
    global_exporter.clear()
    yield global_exporter
    assert _current.frames() == {}
    assert not _current._sweeping


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


def finished(spans: Iterable[ReadableSpan]) -> list[FinishedSpan]:
    """The spans, checked to be ended: each has its times and an attributes mapping."""
    spans = list(spans)
    assert all(None not in (s.attributes, s.start_time, s.end_time) for s in spans)
    return cast("list[FinishedSpan]", spans)


def named(spans: Any, name: str) -> list[FinishedSpan]:
    return sorted(finished(s for s in spans if s.name == name), key=lambda s: s.start_time)


def attrs(item: Event | Link) -> Mapping[str, Any]:
    """A span event's or link's attributes (the SDK gives every recorded one a mapping)."""
    assert item.attributes is not None
    return item.attributes


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()  # typed, unlike the SDK's ``context`` property
    assert context is not None
    return context.span_id


def ancestors(span: ReadableSpan, spans: Any) -> list[str]:
    """The names of a span's ancestors, innermost first."""
    by_id = {span_id(s): s for s in spans}
    names, parent = [], parent_of(span)
    while parent is not None and parent in by_id:
        names.append(by_id[parent].name)
        parent = parent_of(by_id[parent])
    return names


def under_their_steps(calls: list[FinishedSpan], spans: Any) -> bool:
    """Whether each instrumented call's parent is the step span its prompt kind belongs to."""
    return all(ancestors(c, spans)[0] == STEP_OF_PROMPT[c.attributes["kind"]] for c in calls)


def chats(spans: Any) -> list[FinishedSpan]:
    return sorted(
        finished(s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time
    )


class TracedLLM(ScriptedLLM):
    """A client whose calls open spans, as an OpenAI instrumentation does (kind of call noted)."""

    def create(self, **kwargs: Any) -> Any:
        kind = prompt_kind(kwargs["messages"][-1]["content"])
        with trace.get_tracer("llm").start_as_current_span("llm.call", attributes={"kind": kind}):
            return super().create(**kwargs)


class MeteredLLM(ScriptedLLM):
    """A client that answers like OpenAI: model, finish reason and token usage."""

    base_url = "https://api.openai.com/v1/"

    def create(self, **kwargs: Any) -> Any:
        response = super().create(**kwargs)
        response.model = "gpt-4o-mini-2024-07-18"
        response.choices[0].finish_reason = "stop"
        response.usage = SimpleNamespace(
            prompt_tokens=100,
            completion_tokens=20,
            total_tokens=120,
            prompt_tokens_details=SimpleNamespace(cached_tokens=30),
            completion_tokens_details=None,
        )
        return response


# --- shape -----------------------------------------------------------------


def test_a_learning_run_is_one_span_with_a_child_per_step_and_llm_calls_under_their_step(
    tmp_path, exporter
):
    """Run -> synthesize / refine / final audit; refine -> critique, guide, patch, mid audit."""
    recorded = learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    (synth,) = named(spans, "rulechef.synthesize")
    (refine,) = named(spans, "rulechef.refine")
    patches = named(spans, "rulechef.patch")
    guides, critiques = named(spans, "rulechef.guide"), named(spans, "rulechef.critique")
    mid, final = named(spans, "rulechef.audit")
    assert run.parent is None
    assert {s.context.trace_id for s in spans if s.context} == {run.context.trace_id}
    assert parent_of(synth) == parent_of(refine) == parent_of(final) == span_id(run)
    steps_in_refine = [*patches, *guides, *critiques, mid]
    assert {parent_of(s) for s in steps_in_refine} == {span_id(refine)}
    assert (len(patches), len(guides), len(critiques)) == (3, 3, 2)
    assert mid.attributes["rulechef.audit.stage"] == "mid_refinement"
    assert final.attributes["rulechef.audit.stage"] == "final"
    calls = recorded.events_of("llm_called")
    assert len(chats(spans)) == len(calls) == 12
    for chat in chats(spans):
        parent = next(s for s in spans if span_id(s) == parent_of(chat))
        assert parent.name == STEP_OF_PROMPT[chat.attributes["rulechef.llm.step"]]
        assert parent.start_time <= chat.start_time <= chat.end_time <= parent.end_time
    assert len(spans) == 1 + 1 + 1 + len(steps_in_refine) + 1 + len(calls)
    for child in spans:
        assert run.start_time <= child.start_time <= child.end_time <= run.end_time


def test_steps_and_iterations_carry_the_traces_ids_counts_and_metrics(tmp_path, exporter):
    """Run, patch, audit, guide and critique spans hold what the trace's events say."""
    recorded = learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    (refine,) = named(spans, "rulechef.refine")
    assert run.attributes["rulechef.run.id"] == recorded.run["id"]
    assert run.attributes["rulechef.run.status"] == "completed"
    assert list(run.attributes["rulechef.rules.final"]) == recorded.final_rules
    assert recorded.final_metrics is not None
    assert run.attributes["rulechef.f1"] == recorded.final_metrics["f1"] == 1.0
    assert run.attributes["rulechef.param.max_refinement_iterations"] == 5
    assert run.attributes["rulechef.llm.calls"] == 12
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
        assert span.attributes["rulechef.llm.calls"] == event["llm"]["calls"] == 1
    assert (
        list(patches[1].attributes["rulechef.patch.proposed_added"])
        == (events[1]["proposed"]["added"])
    )

    iterations = [e for e in refine.events if e.name == "rulechef.iteration"]
    assert [attrs(e)["rulechef.f1"] for e in iterations] == [
        e["metrics"]["f1"] for e in recorded.events_of("iteration_evaluated")
    ]
    assert refine.attributes["rulechef.refine.stop_reason"] == "target_reached"
    (mid, _) = named(spans, "rulechef.audit")
    merge = recorded.events_of("audit_applied")[0]["actions"][0]
    assert mid.attributes["rulechef.audit.merges"] == 1
    assert list(mid.attributes["rulechef.rules.added"]) == [merge["result"]]
    guides = named(spans, "rulechef.guide")
    assert [g.attributes["rulechef.guided.should_continue"] for g in guides] == [
        e["should_continue"] for e in recorded.events_of("guided")
    ]
    critiques = named(spans, "rulechef.critique")
    assert [c.attributes["rulechef.iteration"] for c in critiques] == [
        e["iteration"] for e in recorded.events_of("critiqued")
    ]


def test_spans_say_what_they_are_in_openinference_and_genai_terms(tmp_path, exporter):
    """CHAIN for rulechef spans, LLM for calls; the run is an invoke_workflow; summaries set."""
    learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    steps = [s for s in spans if s.name.startswith("rulechef.")]
    assert {s.attributes["openinference.span.kind"] for s in steps} == {"CHAIN"}
    assert {s.attributes["openinference.span.kind"] for s in chats(spans)} == {"LLM"}
    assert {s.kind for s in steps} == {SpanKind.INTERNAL}
    assert {s.kind for s in chats(spans)} == {SpanKind.CLIENT}
    (run,) = named(spans, "rulechef.learn")
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["gen_ai.workflow.name"] == "rulechef.learn"
    assert run.attributes["input.value"] == "12 examples, 2 classes"
    assert run.attributes["output.value"] == "3 rules, F1 100.0 %"
    first = named(spans, "rulechef.patch")[0]
    assert first.attributes["input.value"] == "iteration 1: 4 failures, F1 80.0 %"
    assert first.attributes["output.value"] == "accepted: F1 80.0 % -> 90.9 %, 3 rules"
    assert all("output.value" in s.attributes for s in steps)


def test_a_patch_decision_is_a_genai_evaluation_result(tmp_path, exporter):
    """Each patch span has one gen_ai.evaluation.result event: f1, its score, the outcome."""
    recorded = learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    patches = named(exporter.get_finished_spans(), "rulechef.patch")
    results = [[e for e in p.events if e.name == "gen_ai.evaluation.result"] for p in patches]
    assert [len(r) for r in results] == [1, 1, 1]
    decided = recorded.events_of("patch_decided")
    for (result,), event in zip(results, decided, strict=True):
        assert attrs(result)["gen_ai.evaluation.name"] == "f1"
        assert attrs(result)["gen_ai.evaluation.score.value"] == event["metrics_after"]["f1"]
        assert attrs(result)["gen_ai.evaluation.score.label"] == event["outcome"]


def test_llm_spans_carry_genai_attributes_from_the_call(tmp_path, exporter):
    """Model, provider, server, usage and finish reason as the GenAI conventions name them."""
    chef = make_chef(tmp_path, MeteredLLM(patch=[FIX_ALL]))
    learn_with_bridge(chef, max_refinement_iterations=2)
    spans = chats(exporter.get_finished_spans())
    assert spans and {s.name for s in spans} == {"chat gpt-4o-mini"}
    attributes = spans[0].attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["server.address"] == "api.openai.com"
    assert attributes["server.port"] == 443
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == attributes["llm.token_count.prompt"] == 100
    assert attributes["gen_ai.usage.output_tokens"] == 20
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 30
    chars = attributes["rulechef.llm.response_chars"]
    assert attributes["output.value"] == f"{chars} characters, finish stop"
    assert {s.status.status_code for s in spans} == {StatusCode.UNSET}


def test_tokens_a_provider_did_not_report_are_left_out_not_zero(tmp_path, exporter):
    """A client without usage gives spans without token attributes, and no provider guess."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL], usage=False))
    learn_with_bridge(chef, max_refinement_iterations=2)
    counted = ("gen_ai.usage", "llm.token_count")
    for span in chats(exporter.get_finished_spans()):
        assert not [key for key in span.attributes if key.startswith(counted)]
        assert "gen_ai.provider.name" not in span.attributes


def test_a_failed_llm_call_is_an_error_span_and_its_step_says_so(tmp_path, exporter):
    """The patch call raised: its span and the patch span are ERROR, outcome llm_error."""
    llm = ScriptedLLM(patch=[TimeoutError("the LLM took too long"), FIX_ALL])
    recorded = learn_with_bridge(make_chef(tmp_path, llm), max_refinement_iterations=3)
    (error,) = [e["error"] for e in recorded.events_of("llm_called") if e["error"]]
    assert error["type"].endswith("TimeoutError")
    spans = list(exporter.get_finished_spans())
    failed = [s for s in chats(spans) if s.status.status_code is StatusCode.ERROR]
    (call,) = failed
    assert call.attributes["error.type"] == error["type"]
    assert call.status.description == f"{error['type']}: the LLM took too long"
    assert call.attributes["output.value"] == f"error: {error['type']}"
    first = named(spans, "rulechef.patch")[0]
    assert parent_of(call) == span_id(first)
    assert first.attributes["rulechef.patch.outcome"] == "llm_error"
    assert first.attributes["error.type"] == error["type"]
    assert first.status.status_code is StatusCode.ERROR
    (result,) = [e for e in first.events if e.name == "gen_ai.evaluation.result"]
    assert attrs(result)["gen_ai.evaluation.score.label"] == "llm_error"
    assert "gen_ai.evaluation.score.value" not in attrs(result)
    (run,) = named(spans, "rulechef.learn")
    assert run.status.status_code is StatusCode.OK


def test_a_run_whose_llm_calls_all_failed_is_an_error(tmp_path, exporter):
    """llm_error runs are ERROR with the LLM's error type, like failed ones."""
    boom = ConnectionError("no route to the LLM")
    chef = make_chef(tmp_path, ScriptedLLM(per_class=boom, synthesis=boom))
    recorded = learn_with_bridge(chef, max_refinement_iterations=2)
    kind = recorded.run["error"]["type"]
    assert kind.endswith("ConnectionError")
    (run,) = named(exporter.get_finished_spans(), "rulechef.learn")
    assert run.attributes["rulechef.run.status"] == "llm_error"
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["error.type"] == kind
    assert run.attributes["output.value"] == f"llm_error ({kind}): 0 rules"


def test_llm_spans_false_leaves_llm_calls_to_another_instrumentation(tmp_path, exporter):
    """No chat spans; the other instrumentation's spans still sit under the step spans."""
    chef = make_chef(tmp_path, TracedLLM(patch=[FIX_ALL]))
    with otel.attach(chef, llm_spans=False):
        chef.learn_rules(max_refinement_iterations=2)
    spans = list(exporter.get_finished_spans())
    assert chats(spans) == []
    calls = named(spans, "llm.call")
    assert calls and under_their_steps(calls, spans)


HEX = re.compile(r"[0-9a-f]+")


def test_attributes_hold_no_text(tmp_path, exporter):
    """No example, rule name, task description or coordinator advice in any attribute."""
    recorded = learn_with_bridge(rich_chef(tmp_path), max_refinement_iterations=5)
    values: list[Any] = []
    for span in exporter.get_finished_spans():
        values += [span.name, *span.attributes.values()]
        for event in span.events:
            values += list(event.attributes.values())
    flat = {str(v) for value in values for v in (value if isinstance(value, tuple) else [value])}
    names = {entry["name"] for entry in recorded["rules"].values()}
    texts = {text for text, _ in DATA} | {task().description, "custom advice", "keep going"}
    # Words that are hex ("bad") can occur inside a random id by chance: not text.
    texts |= {word for text, _ in DATA for word in text.split() if not HEX.fullmatch(word)}
    assert names and not flat & names
    assert not any(text in value for value in flat for text in texts)


def test_a_failed_run_has_error_status_and_ends_every_span(tmp_path, exporter):
    """The coordinator raised in guidance: run ERROR, the guide span ended, nothing current."""

    class Boom(StopAfterCoordinator):
        def guide_refinement(
            self, eval_result: Any, iteration: int, max_iterations: int
        ) -> tuple[str, bool]:
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
    assert attrs(exception)["exception.message"] == "coordinator lost its notes"
    assert [s.name for s in spans if s.name == "rulechef.refine"] == ["rulechef.refine"]
    (guide,) = named(spans, "rulechef.guide")  # its event never came: ended at the step's end
    assert "rulechef.guided.should_continue" not in guide.attributes
    assert guide.end_time <= run.end_time
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_an_incremental_synthesis_holds_its_prune(tmp_path, exporter):
    """synthesized and pruned come while the synthesis step runs: prune is its child."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, BREAK]))
    chef.learn_rules(max_refinement_iterations=1, run_evaluation=False)
    weak = next(r for r in chef.dataset.rules if r.name == "neg words")
    weak.times_applied, weak.successes, weak.failures = 3, 0, 3
    chef.buffer.add_human_example({"text": "lovely stay"}, {"label": "pos"})
    with otel.attach(chef):
        chef.learn_rules(incremental_only=True, max_refinement_iterations=1)
    spans = list(exporter.get_finished_spans())
    (synth,) = named(spans, "rulechef.synthesize")
    (prune,) = named(spans, "rulechef.prune")
    assert synth.attributes["rulechef.synthesis.mode"] == "incremental"
    assert parent_of(prune) == span_id(synth)
    assert prune.attributes["rulechef.prune.reason"] == "weak_rules"
    (call,) = [c for c in chats(spans) if c.attributes["rulechef.llm.step"] == "synthesis"]
    assert parent_of(call) == span_id(synth)


def test_rank_rules_prune_is_a_span_of_its_own(tmp_path, exporter):
    """rank_rules(prune=True) is a run with one prune child; no learn run seen, no link."""
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
    assert run.links == ()


def test_rank_rules_links_to_the_learn_run_it_pruned(tmp_path, exporter):
    """The rank_rules span links to the last completed learn run of the same chef and dataset."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    other = make_chef(tmp_path / "other", ScriptedLLM(patch=[FIX_ALL]), name="other")
    with otel.attach():
        chef.learn_rules(max_refinement_iterations=2)
        other.learn_rules(max_refinement_iterations=2)
        chef.rank_rules(prune=True, verbose=False)
    spans = list(exporter.get_finished_spans())
    learned = {s.attributes["rulechef.dataset"]: s for s in named(spans, "rulechef.learn")}
    (ranked,) = named(spans, "rulechef.rank_rules")
    (link,) = ranked.links
    assert link.context.span_id == span_id(learned["reviews"])
    assert link.context.trace_id == learned["reviews"].context.trace_id
    assert attrs(link)["rulechef.run.id"] == learned["reviews"].attributes["rulechef.run.id"]
    assert ranked.attributes["rulechef.pruned_run.id"] == attrs(link)["rulechef.run.id"]


# --- context -----------------------------------------------------------------


def test_every_span_made_inside_an_llm_call_has_its_step_span_among_its_ancestors(
    tmp_path, exporter
):
    """A span opened inside create() (as an LLM instrumentation does) nests under its step."""
    llm = TracedLLM(patch=[FIX_POS, BREAK, FIX_NEG], audit=[merge_pos, {"actions": []}])
    learn_with_bridge(rich_chef(tmp_path, llm), max_refinement_iterations=5)
    spans = list(exporter.get_finished_spans())
    calls = named(spans, "llm.call")
    assert len(calls) == 12
    for call in calls:
        chain = ancestors(call, spans)
        assert chain[0] == STEP_OF_PROMPT[call.attributes["kind"]]
        assert chain[-1] == "rulechef.learn"
    patch_calls = [c for c in calls if c.attributes["kind"] == "patch"]
    assert len(patch_calls) == 3
    assert {tuple(ancestors(c, spans)[:2]) for c in patch_calls} == {
        ("rulechef.patch", "rulechef.refine")
    }


def test_run_nests_under_the_current_span_which_is_current_again_after(tmp_path, exporter):
    """The run is a child of the caller's span; between and after steps that span is current."""
    chef = make_chef(tmp_path, TracedLLM(patch=[FIX_ALL]))
    tracer = trace.get_tracer("app")
    seen: list[Any] = []

    def between_steps(sender: Any, **event: Any) -> None:
        seen.append(trace.get_current_span())

    with (
        otel.attach(chef),
        sig.iteration_evaluated.connected_to(between_steps, sender=chef),
        tracer.start_as_current_span("request") as request,
    ):
        chef.learn_rules(max_refinement_iterations=2)
        assert trace.get_current_span() is request
    (run,) = named(list(exporter.get_finished_spans()), "rulechef.learn")
    assert parent_of(run) == request.get_span_context().span_id
    assert seen and all(span is request for span in seen)


def test_set_current_false_leaves_the_context_alone(tmp_path, exporter):
    """No step span is ever current: spans made inside calls are roots."""
    chef = make_chef(tmp_path, TracedLLM())
    with otel.OTelBridge(chef, set_current=False):
        chef.learn_rules(max_refinement_iterations=1)
    calls = named(list(exporter.get_finished_spans()), "llm.call")
    assert calls and all(c.parent is None for c in calls)


def test_concurrent_runs_on_different_chefs_keep_their_own_spans(tmp_path, exporter):
    """Four chefs in four threads: four traces, each with its own steps and calls."""
    chefs = [
        make_chef(tmp_path / str(i), TracedLLM(patch=[BREAK, FIX_ALL]), name=f"chef{i}")
        for i in range(4)
    ]
    with otel.attach(), ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda c: c.learn_rules(max_refinement_iterations=3), chefs))
    spans = list(exporter.get_finished_spans())
    runs = named(spans, "rulechef.learn")
    assert sorted(r.attributes["rulechef.dataset"] for r in runs) == [f"chef{i}" for i in range(4)]
    for run in runs:
        mine = [s for s in spans if s.context.trace_id == run.context.trace_id]
        steps = sorted(s.name for s in mine if s.name.startswith("rulechef."))
        assert steps == sorted(
            ["rulechef.learn", "rulechef.synthesize", "rulechef.refine"]
            + ["rulechef.guide"] * 2
            + ["rulechef.patch"] * 2
            + ["rulechef.audit"]
        )
        patches = named(mine, "rulechef.patch")
        assert [p.attributes["rulechef.patch.outcome"] for p in patches] == ["rejected", "accepted"]
        calls = named(mine, "llm.call")
        assert calls and len(chats(mine)) == len(calls)
        assert under_their_steps(calls, mine)


# --- attaching and detaching -------------------------------------------------


def test_bridge_follows_only_its_chef_and_stops_when_detached(tmp_path, exporter):
    """A chef's bridge ignores other chefs and, once detached, every run."""
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
    """tracer_provider= sends every span there and none to the global provider."""
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
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == otel.SCOPE


def test_detaching_during_a_run_ends_its_spans_as_incomplete(tmp_path, exporter, caplog):
    """Detached inside a patch call: the run span ends as incomplete, with a warning."""
    holder: dict[str, otel.OTelBridge] = {}

    def patch_then_detach(prompt: str) -> dict[str, Any]:
        holder["bridge"].detach()
        return {"rules": []}

    chef = make_chef(tmp_path, ScriptedLLM(patch=patch_then_detach))
    holder["bridge"] = otel.attach(chef)
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        contextvars.copy_context().run(chef.learn_rules, max_refinement_iterations=1)
    spans = list(exporter.get_finished_spans())
    (run,) = named(spans, "rulechef.learn")
    assert run.attributes["rulechef.run.status"] == "incomplete"
    assert "detached during 1 run(s)" in caplog.text
    (patch,) = named(spans, "rulechef.patch")
    assert patch.end_time <= run.end_time


def test_a_bridge_detached_from_another_thread_leaves_no_span_current_in_the_run_thread(
    tmp_path, exporter, caplog
):
    """The run's thread gets its context back at its next signal; later spans are roots."""
    holder: dict[str, otel.OTelBridge] = {}
    inside: list[Any] = []

    def patch_detached_from_elsewhere(prompt: str) -> dict[str, Any]:
        inside.append(trace.get_current_span())
        other = threading.Thread(target=holder["bridge"].detach)
        other.start()
        other.join()
        return {"rules": []}

    chef = make_chef(tmp_path, ScriptedLLM(patch=patch_detached_from_elsewhere))
    holder["bridge"] = otel.attach(chef)
    app = trace.get_tracer("app")

    def worker() -> tuple[Any, Any]:
        chef.learn_rules(max_refinement_iterations=1)
        after = trace.get_current_span()
        with app.start_as_current_span("later") as later:
            return after, later

    with (
        caplog.at_level(logging.WARNING, logger="rulechef_trace"),
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        after, later = pool.submit(worker).result()
    assert inside and inside[0].name == "rulechef.patch"
    assert after is trace.INVALID_SPAN
    assert later.parent is None
    (run,) = named(exporter.get_finished_spans(), "rulechef.learn")
    assert run.attributes["rulechef.run.status"] == "incomplete"


def test_a_lost_finalized_leaves_no_span_current_and_the_next_run_ends_the_stale_one(
    tmp_path, exporter
):
    """finalized never reaches the bridge: nothing stays current; the next run closes it."""
    chef = make_chef(tmp_path, TracedLLM(patch=[FIX_ALL]))
    with otel.attach(chef):
        with sig.finalized.muted():
            chef.learn_rules(max_refinement_iterations=2)
        assert trace.get_current_span() is trace.INVALID_SPAN
        assert _current.frames() == {}
        assert named(exporter.get_finished_spans(), "rulechef.learn") == []
        chef.learn_rules(max_refinement_iterations=1)
    runs = named(exporter.get_finished_spans(), "rulechef.learn")
    assert [r.attributes["rulechef.run.status"] for r in runs] == ["finalized_lost", "completed"]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (_attributes, "step_start"),
        (_attributes, "evaluation"),
        (_attributes, "run_end"),
        (_llm, "call_attributes"),
    ],
)
def test_an_exception_in_the_bridge_leaves_no_span_current(
    tmp_path, exporter, caplog, monkeypatch, module, name
):
    """Whatever part of the bridge raises, the run goes on and every span is ended."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bridge bug")

    monkeypatch.setattr(module, name, broken)
    chef = make_chef(tmp_path, TracedLLM(patch=[FIX_ALL]))
    with caplog.at_level(logging.ERROR, logger="rulechef_trace"), otel.attach(chef):
        chef.learn_rules(max_refinement_iterations=2)
    assert "bridge bug" in caplog.text
    assert trace.get_current_span() is trace.INVALID_SPAN
    (run,) = named(exporter.get_finished_spans(), "rulechef.learn")
    assert run.end_time is not None


def test_record_trace_otel_switch_sends_the_run_as_spans(tmp_path, exporter):
    """record_trace(otel=True) attaches a bridge for the recording's duration."""
    chef = rich_chef(tmp_path)
    with record_trace(chef, write=False, otel=True) as recorder:
        chef.learn_rules(max_refinement_iterations=3)
    (run,) = named(list(exporter.get_finished_spans()), "rulechef.learn")
    assert run.attributes["rulechef.run.id"] == last_trace(recorder).run["id"]
    assert not recorder.attached


def test_two_bridges_on_one_run_leave_no_ended_span_current(tmp_path, exporter):
    """Two bridges share each step's frame; the caller's span is current afterwards."""
    chef = rich_chef(tmp_path, TracedLLM(patch=[FIX_POS], audit=[{"actions": []}]))
    before = trace.get_current_span()
    with otel.attach(), record_trace(chef, write=False, otel=True):
        chef.learn_rules(max_refinement_iterations=2)
    assert trace.get_current_span() is before
    spans = list(exporter.get_finished_spans())
    assert len(named(spans, "rulechef.learn")) == 2
    calls = named(spans, "llm.call")
    assert calls and under_their_steps(calls, spans)


def test_a_bridge_detached_mid_run_does_not_leave_the_run_span_current(tmp_path, exporter):
    """One of two bridges leaves at a patch decision; the other goes on; nothing stays current."""
    from rulechef_trace import patch_decided

    chef = rich_chef(tmp_path)
    before = trace.get_current_span()
    leaving = otel.attach(chef)

    def detach_leaving(sender: Any, **event: Any) -> None:
        leaving.detach()

    with otel.attach(), patch_decided.connected_to(detach_leaving, sender=chef):
        chef.learn_rules(max_refinement_iterations=2)
    assert trace.get_current_span() is before


# --- optional dependency -----------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_importing_rulechef_trace_does_not_import_opentelemetry():
    """Only rulechef_trace.otel imports OpenTelemetry."""
    done = run_python(
        "import sys\n"
        "import rulechef_trace, rulechef_trace.pytest_plugin, rulechef_trace.recorder\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    assert done.returncode == 0, done.stderr


def test_otel_without_opentelemetry_names_the_extra():
    """Without opentelemetry-api the import error says which extra to install."""
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


def test_an_edit_run_is_a_run_span_with_one_edit_span(tmp_path, exporter):
    """delete_rule under the bridge: a rulechef.edit run span, its child says what changed."""
    chef = make_chef(tmp_path, ScriptedLLM())
    learn_with_bridge(chef, max_refinement_iterations=1)
    exporter.clear()
    victim = chef.dataset.rules[0].id
    with otel.attach(chef):
        chef.delete_rule(victim)
    spans = list(exporter.get_finished_spans())
    (edit,) = named(spans, "rulechef.rules_edited")
    assert edit.attributes["rulechef.edit.method"] == "delete_rule"
    assert tuple(edit.attributes["rulechef.rules.removed"]) == (victim,)
    (run,) = [s for s in spans if s.parent is None]
    assert run.name == "rulechef.edit"
    assert parent_of(edit) == run.context.span_id
