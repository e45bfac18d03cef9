"""The bridge: learning-run signals in, spans out; each step's span current while the step runs."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from blinker import ANY
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

from rulechef_trace import __version__, events
from rulechef_trace import signals as sig
from rulechef_trace.otel import _attributes as attrs
from rulechef_trace.otel import _current, _llm

logger = logging.getLogger("rulechef_trace")

#: Instrumentation scope name of every span the bridge makes.
SCOPE = "rulechef_trace"

#: The step event that follows (and ends) each live step's span.
_EVENT_OF_STEP = {
    "synthesis": "synthesized",
    "patch": "patch_decided",
    "guide": "guided",
    "critic": "critiqued",
    "audit": "audit_applied",
}
_REFINE_STEPS = frozenset({"patch", "guide", "critic"})
_REFINE_EVENTS = frozenset({"iteration_evaluated", "critiqued", "guided", "patch_decided"})
Payload = Mapping[str, Any]
#: Run statuses that mark the run span ERROR; "completed" marks it OK, others leave it unset.
_FAILED = frozenset({"failed", "llm_error"})


@dataclass
class _Step:
    """A live step: started by step_started, current until step_ended, ended by its event."""

    kind: str
    key: tuple[Any, ...]
    span: Span | None  #: None for a step without a span of its own (per-class calls)
    context: Context  #: where spans made inside the step attach
    frame: _current.Frame | None = None
    enriched: bool = False  #: its event came while it still ran
    ended_ns: int = 0


@dataclass
class _Run:
    """What the bridge knows about one run in progress."""

    run_id: str
    kind: str
    span: Span
    context: Context
    base_ns: int  #: wall clock (ns) at the run's t = 0
    perf0_ns: int  #: perf_counter (ns) at the run's t = 0
    last_ns: int  #: when the previous event came
    thread: int
    sender: Any
    dataset: Any
    server: attrs.Attributes
    initial_rules: int = 0
    rule_count: int = 0  #: working rules after the last event that moved them
    examples: Any = None
    classes: int | None = None
    refine: Span | None = None
    refine_context: Context | None = None
    steps: list[_Step] = field(default_factory=list)
    pending: _Step | None = None  #: ended, waiting for its event

    def at(self, payload: Payload) -> int:
        """When an event happened (ns), from its ``t``."""
        return self.base_ns + _ns(payload.get("t"))

    def now(self) -> int:
        """Now (ns), on the clock the events' ``t`` uses."""
        return self.base_ns + time.perf_counter_ns() - self.perf0_ns

    def parent(self) -> Context:
        """Where spans made now attach: the innermost live step, the refine loop, the run."""
        if self.steps:
            return self.steps[-1].context
        if self.refine_context is not None:
            return self.refine_context
        return self.context


#: What handles one event type: (bridge, run, event type, payload, event time in ns).
Handler = Callable[["OTelBridge", _Run, str, Payload, int], None]


class OTelBridge:
    """A detachable listener that turns learning runs into OpenTelemetry spans.

    Args:
        chef: The ``RuleChef`` (or its ``LearningPipeline``) to follow; None
            follows every chef in the process.
        tracer_provider: The provider to use; None uses the global one (as set
            by ``opentelemetry.trace.set_tracer_provider``), looked up lazily.
        set_current: Whether each step's span is the current span, in the
            run's thread, while the step runs (so spans other code makes
            meanwhile, an LLM instrumentation's say, nest under it).
        llm_spans: Whether each LLM call gets a ``chat {model}`` span; False
            leaves LLM spans to another instrumentation.
    """

    def __init__(
        self,
        chef: Any = None,
        *,
        tracer_provider: TracerProvider | None = None,
        set_current: bool = True,
        llm_spans: bool = True,
    ):
        self.chef = getattr(chef, "_chef", chef)
        self.set_current = set_current
        self.llm_spans = llm_spans
        self.tracer: Tracer = otel_trace.get_tracer(
            SCOPE, __version__, tracer_provider=tracer_provider
        )
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        # (chef, dataset) -> the last completed learn run's span, for rank_rules' link
        self._learned: dict[tuple[int, Any], tuple[Any, SpanContext, str]] = {}
        self._subscription = sig.Subscription(self._receive, self.chef)
        self._step_receivers = {s: partial(self._receive, s.name) for s in sig.STEP_SIGNALS}

    @property
    def attached(self) -> bool:
        """Whether the bridge currently receives events."""
        return self._subscription.connected

    def attach(self) -> OTelBridge:
        """Connect to every signal (idempotent). Returns the bridge."""
        if self._subscription.connected:
            return self
        sender = ANY if self.chef is None else self.chef
        for signal, receiver in self._step_receivers.items():
            signal.connect(receiver, sender=sender, weak=False)
        self._subscription.connect()
        return self

    def detach(self) -> None:
        """Disconnect (idempotent); spans of runs still in progress are ended as incomplete.

        Safe from any thread: a step span current in a run's thread stops
        being current at that thread's next signal.
        """
        if not self._subscription.connected:
            return
        with self._lock:
            left = list(self._runs.values())
            self._runs.clear()
        if left:
            logger.warning(
                "rulechef_trace: OTel bridge detached during %d run(s); their spans end as "
                "incomplete",
                len(left),
            )
        now = time.time_ns()
        for run in left:
            self._end_incomplete(run, now)
        # Disconnected last, so the hooks stay installed until every frame is released.
        self._subscription.disconnect()
        for signal, receiver in self._step_receivers.items():
            signal.disconnect(receiver)

    def __enter__(self) -> OTelBridge:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- receiving ---------------------------------------------------------

    def _receive(self, signal_name: str, sender: Any, /, **payload: Any) -> None:
        run_id = str(payload.get("run_id"))
        if signal_name == "run_started":
            self._start(run_id, sender, payload)
            return
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            return  # the run began before the bridge was attached
        if run.pending is not None and signal_name != _EVENT_OF_STEP[run.pending.kind]:
            _end_pending(run)  # its event does not come
        if signal_name == "step_started":
            self._step_started(run, payload)
        elif signal_name == "step_ended":
            self._step_ended(run, payload)
        elif signal_name == "finalized":
            with self._lock:
                self._runs.pop(run_id, None)
            self._finish(run, payload, run.at(payload))
        else:
            at = run.at(payload)
            if _in_refinement(signal_name, payload):
                _open_refine(self.tracer, run)
            try:
                _HANDLERS.get(signal_name, _on_other)(self, run, signal_name, payload, at)
            finally:
                run.last_ns = at
                if isinstance(payload.get("rules_after"), list):
                    run.rule_count = len(payload["rules_after"])

    def _start(self, run_id: str, sender: Any, payload: Payload) -> None:
        thread = threading.get_ident()
        with self._lock:
            # A run of this thread with no step open is over: its finalized was lost.
            stale = [r for r in self._runs.values() if r.thread == thread and not r.steps]
            for old in stale:
                del self._runs[old.run_id]
        for old in stale:
            self._end_incomplete(old, time.time_ns(), status="finalized_lost")
        t = _ns(payload.get("t"))
        base, perf0 = time.time_ns() - t, time.perf_counter_ns() - t
        name = f"rulechef.{payload.get('kind') or 'run'}"
        parent = otel_context.get_current()
        links, pruned = self._links(sender, payload)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={**attrs.run_start(payload, name), **pruned},
            start_time=base,
            links=links,
        )
        run = _Run(
            run_id=run_id,
            kind=str(payload.get("kind")),
            span=span,
            context=otel_trace.set_span_in_context(span, parent),
            base_ns=base,
            perf0_ns=perf0,
            last_ns=base,
            thread=thread,
            sender=sender,
            dataset=payload.get("dataset"),
            server=_llm.server_attributes(sender),
            initial_rules=len(payload.get("rules") or []),
            rule_count=len(payload.get("rules") or []),
        )
        with self._lock:
            self._runs[run_id] = run

    # -- live steps --------------------------------------------------------

    def _step_started(self, run: _Run, payload: Payload) -> None:
        kind = str(payload.get("step"))
        if kind in _REFINE_STEPS or payload.get("stage") == "mid_refinement":
            _open_refine(self.tracer, run)
        parent = run.parent()
        key = tuple(payload.get(k) for k in ("seq", "step", "iteration", "stage", "label"))
        name = attrs.STEP_SPANS.get(kind)
        if name is None:
            run.steps.append(_Step(kind, key, None, parent))
            return
        span = self.tracer.start_span(
            name, context=parent, attributes=attrs.step_start(payload), start_time=run.now()
        )
        step = _Step(kind, key, span, otel_trace.set_span_in_context(span, parent))
        run.steps.append(step)
        if self.set_current:
            # Last: whatever failed before leaves nothing current.
            step.frame = _current.enter(run.run_id, key, span, id(self))

    def _step_ended(self, run: _Run, payload: Payload) -> None:
        index = _innermost(run.steps, str(payload.get("step")))
        if index < 0:
            return
        now = run.now()
        closed = run.steps[index:]
        del run.steps[index:]
        for step in reversed(closed):
            self._release(step)
        step = closed[0]
        for inner in closed[1:]:  # steps whose end never came
            if inner.span is not None:
                inner.span.end(end_time=now)
        if step.span is None:
            return
        step.ended_ns = now
        if step.enriched:
            step.span.end(end_time=now)
        else:
            run.pending = step

    def _release(self, step: _Step) -> None:
        if step.frame is not None:
            _current.leave(step.frame, id(self))

    # -- the end of a run --------------------------------------------------

    def _finish(self, run: _Run, payload: Payload, at: int) -> None:
        try:
            self._close_steps(run, at)
            run.classes = attrs.class_count(payload) or run.classes
            inputs = attrs.run_input(run.examples, run.classes, run.initial_rules)
            span = run.span
            span.set_attributes(attrs.run_end(payload, inputs))
            error = payload.get("error")
            if payload.get("status") in _FAILED or error:
                mark_failed(span, error or {}, at)
            elif payload.get("status") == "completed":
                span.set_status(Status(StatusCode.OK))
            self._remember(run, payload)
        finally:
            run.span.end(end_time=at)

    def _close_steps(self, run: _Run, at: int) -> None:
        """End every span of the run still open (releasing their frames first)."""
        steps, run.steps = run.steps, []
        for step in reversed(steps):
            self._release(step)
        _end_pending(run)
        for step in reversed(steps):
            if step.span is not None:
                step.span.end(end_time=at)
        if run.refine is not None:
            run.refine.end(end_time=at)
            run.refine = run.refine_context = None

    def _end_incomplete(self, run: _Run, at: int, status: str = "incomplete") -> None:
        try:
            self._close_steps(run, at)
            run.span.set_attribute("rulechef.run.status", status)
        finally:
            run.span.end(end_time=at)

    # -- links between runs ------------------------------------------------

    def _links(self, sender: Any, payload: Payload) -> tuple[list[Link], dict[str, str]]:
        """A rank_rules run links to the last completed learn run of the same chef and dataset."""
        if payload.get("kind") != "rank_rules":
            return [], {}
        known = self._learned.get((id(sender), payload.get("dataset")))
        if known is None or known[0]() is not sender:
            return [], {}
        _, context, learn_id = known
        link = Link(context, {"rulechef.link": "pruned_run", "rulechef.run.id": learn_id})
        return [link], {"rulechef.pruned_run.id": learn_id}

    def _remember(self, run: _Run, payload: Payload) -> None:
        if run.kind != "learn" or payload.get("status") != "completed":
            return
        try:
            ref = weakref.ref(run.sender)
        except TypeError:
            return  # a sender that cannot be weakly referenced is never linked to
        with self._lock:  # chefs gone since are forgotten
            self._learned = {k: v for k, v in self._learned.items() if v[0]() is not None}
            self._learned[(id(run.sender), run.dataset)] = (
                ref,
                run.span.get_span_context(),
                run.run_id,
            )


def attach(
    chef: Any = None,
    *,
    tracer_provider: TracerProvider | None = None,
    llm_spans: bool = True,
) -> OTelBridge:
    """Send every run of ``chef`` (None: of every chef) to OpenTelemetry from now on.

    Args:
        chef: A ``RuleChef`` or its ``LearningPipeline``; None for all chefs.
        tracer_provider: A provider to use instead of the global one.
        llm_spans: False when another instrumentation (OpenInference's, the
            official OpenAI one) already makes a span per LLM call.

    Returns:
        The attached :class:`OTelBridge`; call ``.detach()`` or use it as a
        context manager (``with otel.attach(chef): ...``).
    """
    return OTelBridge(chef, tracer_provider=tracer_provider, llm_spans=llm_spans).attach()


# ---------------------------------------------------------------------------
# Spans and events per event type
# ---------------------------------------------------------------------------


def _ns(seconds: Any) -> int:
    return int(seconds * 1e9) if isinstance(seconds, (int, float)) else 0


def _in_refinement(kind: str, payload: Payload) -> bool:
    """Whether an event belongs to the refinement loop (and so to ``rulechef.refine``)."""
    if kind == "audit_applied":
        return payload.get("stage") == "mid_refinement"
    return kind in _REFINE_EVENTS


def _open_refine(tracer: Tracer, run: _Run) -> Span:
    """The run's ``rulechef.refine`` span, started at the previous event when not open yet."""
    if run.refine is None:
        run.refine = tracer.start_span(
            "rulechef.refine",
            context=run.context,
            attributes={**attrs.CHAIN, "input.value": f"{run.rule_count} rules"},
            start_time=run.last_ns,
        )
        run.refine_context = otel_trace.set_span_in_context(run.refine, run.context)
    return run.refine


def _innermost(steps: list[_Step], kind: str) -> int:
    """The index of the innermost live step of ``kind``, or -1."""
    for index in range(len(steps) - 1, -1, -1):
        if steps[index].kind == kind:
            return index
    return -1


def _end_pending(run: _Run) -> None:
    step, run.pending = run.pending, None
    if step is not None and step.span is not None:
        step.span.end(end_time=step.ended_ns)


def _step_span(tracer: Tracer, run: _Run, kind: str, name: str) -> tuple[Span, bool]:
    """The span an event of step ``kind`` describes, and whether the event ends it.

    The live step's span when there is one (ended, or still running when the
    event came from inside the step); else, for a rulechef without step
    signals, a span from the previous event to this one.
    """
    pending = run.pending
    if pending is not None and pending.kind == kind and pending.span is not None:
        run.pending = None
        return pending.span, True
    for step in reversed(run.steps):
        if step.kind == kind and step.span is not None:
            step.enriched = True
            return step.span, False
    span = tracer.start_span(
        name, context=run.parent(), attributes=attrs.CHAIN, start_time=run.last_ns
    )
    return span, True


def _step_event(kind: str, name: str, attributes: Callable[[Payload], attrs.Attributes]) -> Handler:
    """A handler that enriches (and ends) the span of the step the event reports."""

    def handle(bridge: OTelBridge, run: _Run, event: str, payload: Payload, at: int) -> None:
        span, ends = _step_span(bridge.tracer, run, kind, name)
        try:
            if event == "synthesized":
                data = payload.get("data") or {}
                run.examples = data.get("examples")
                run.classes = attrs.class_count(payload)
            if not span.is_recording():
                return
            span.set_attributes(attributes(payload))
            if event == "patch_decided":
                span.add_event("gen_ai.evaluation.result", attrs.evaluation(payload), at)
            error = payload.get("llm_error")
            if isinstance(error, Mapping):
                span.set_status(Status(StatusCode.ERROR, f"LLM call failed: {error.get('type')}"))
        finally:
            if ends:
                span.end(end_time=at)

    return handle


def _after_the_fact(name: str, attributes: Callable[[Payload], attrs.Attributes]) -> Handler:
    """A handler that records an event as a span from the previous event to this one."""

    def handle(bridge: OTelBridge, run: _Run, kind: str, payload: Payload, at: int) -> None:
        span = bridge.tracer.start_span(
            name,
            context=run.parent(),
            attributes={**attrs.CHAIN, **attributes(payload)},
            start_time=run.last_ns,
        )
        span.end(end_time=at)

    return handle


def _on_iteration(bridge: OTelBridge, run: _Run, kind: str, payload: Payload, at: int) -> None:
    refine = _open_refine(bridge.tracer, run)
    refine.add_event("rulechef.iteration", attributes=attrs.iteration(payload), timestamp=at)


def _on_refined(bridge: OTelBridge, run: _Run, kind: str, payload: Payload, at: int) -> None:
    refine = _open_refine(bridge.tracer, run)
    try:
        refine.set_attributes(attrs.refined(payload))
    finally:
        refine.end(end_time=at)
        run.refine = run.refine_context = None


def _on_llm_called(bridge: OTelBridge, run: _Run, kind: str, payload: Payload, at: int) -> None:
    """One CLIENT span per LLM call, under the step that made it."""
    if not bridge.llm_spans:
        return
    span = bridge.tracer.start_span(
        _llm.span_name(payload),
        context=run.parent(),
        kind=SpanKind.CLIENT,
        attributes=_llm.sampling_attributes(payload, run.server),
        start_time=max(run.base_ns, at - _ns(payload.get("duration_s"))),
    )
    try:
        if span.is_recording():  # a span sampled out is not worth its attributes
            span.set_attributes(_llm.call_attributes(payload, run.server))
            if payload.get("status") == "error":
                mark_failed(span, payload.get("error") or {}, at)
    finally:
        span.end(end_time=at)


def _on_other(bridge: OTelBridge, run: _Run, kind: str, payload: Payload, at: int) -> None:
    """Any event type without a handler of its own: one span event on the innermost open span.

    The innermost open span is the live step's, else the refine loop's, else
    the run's. The event carries the payload's numbers and flags and, for a
    type the catalogue says moves rules, its rule changes (ids and counts);
    never text. A type a newer core sends, unknown to the catalogue, gets the
    numbers and flags only.
    """
    try:
        moves_rules = events.by_name(kind).moves_rules
    except KeyError:
        moves_rules = False
    span = otel_trace.get_current_span(run.parent())
    span.add_event(f"rulechef.{kind}", attributes=attrs.other(payload, moves_rules), timestamp=at)


def mark_failed(span: Span, error: Mapping[str, Any], at: int) -> None:
    """ERROR status, ``error.type`` and an ``exception`` event, as the conventions record errors."""
    kind = str(error.get("type") or "_OTHER")
    message = str(error.get("message") or "")
    span.set_attribute("error.type", kind)
    span.add_event(
        "exception",
        attributes={"exception.type": kind, "exception.message": message},
        timestamp=at,
    )
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))


# Handled by the bridge itself: they open and close the run span.
_LIFECYCLE = ("run_started", "finalized")

#: The event types with a span (or span event) of their own; every other type,
#: a new one included, gets _on_other's span event (tests/test_event_catalogue.py).
_HANDLERS: dict[str, Handler] = {
    "llm_called": _on_llm_called,
    "synthesized": _step_event("synthesis", "rulechef.synthesize", attrs.synthesized),
    "patch_decided": _step_event("patch", "rulechef.patch", attrs.patch),
    "audit_applied": _step_event("audit", "rulechef.audit", attrs.audit),
    "guided": _step_event("guide", "rulechef.guide", attrs.guided),
    "critiqued": _step_event("critic", "rulechef.critique", attrs.critiqued),
    "pruned": _after_the_fact("rulechef.prune", attrs.pruned),
    "rules_edited": _after_the_fact("rulechef.rules_edited", attrs.edited),
    "iteration_evaluated": _on_iteration,
    "refined": _on_refined,
}
