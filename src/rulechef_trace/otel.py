"""OpenTelemetry bridge: each learning run becomes one span, its steps child spans and events.

Needs the ``otel`` extra (``pip install "rulechef-trace[otel]"``, i.e.
``opentelemetry-api``); nothing else in rulechef_trace imports OpenTelemetry.
Spans go to the globally configured ``TracerProvider``, so whatever exporter
the application set up (OTLP to Jaeger, Tempo, Honeycomb, a collector...)
receives them::

    from rulechef_trace import otel

    with otel.attach(chef):
        chef.learn_rules()

The shape of a learning run (``rulechef.rank_rules(prune=True)`` is a run of
its own, with one ``rulechef.prune`` child)::

    rulechef.learn                      the run; status ERROR when it raised
      rulechef.synthesize               bulk / per-class / incremental synthesis
      rulechef.prune                    weak rules dropped (incremental runs)
      rulechef.refine                   the refinement loop
        events rulechef.iteration, rulechef.guided, rulechef.critiqued
        rulechef.patch                  one per patch: accepted / rejected / empty
        rulechef.audit                  mid-refinement audit
      rulechef.audit                    final audit

A step span starts at the previous event of its run and ends at its own
event, so the waterfall shows where the time (the LLM calls) went. While a
run is in progress its span is the current span of the run's context, so
spans other instrumentations open meanwhile (an OpenAI client's, say) nest
under it, and the run span itself nests under whatever span was current when
the run began.

Attributes follow the trace's privacy rule: rule ids, counts, flags and
metrics; never rule names, patterns, input text, prompts or LLM answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from rulechef_trace import __version__
from rulechef_trace import signals as sig

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'rulechef_trace.otel needs opentelemetry-api: pip install "rulechef-trace[otel]"'
    ) from exc

__all__ = ["SCOPE", "OTelBridge", "attach"]

logger = logging.getLogger("rulechef_trace")

#: Instrumentation scope name of every span the bridge makes.
SCOPE = "rulechef_trace"

_REFINEMENT_EVENTS = frozenset({"iteration_evaluated", "critiqued", "guided", "patch_decided"})
#: Run statuses that mark the run span ERROR; "completed" marks it OK, others leave it unset.
_FAILED = frozenset({"failed", "llm_error"})
#: OpenInference's span kind, so Phoenix and MLflow show rulechef steps as chain steps.
_CHAIN = {"openinference.span.kind": "CHAIN"}
_METRICS = ("f1", "precision", "recall", "exact_match", "docs", "failures")

Attributes = dict[str, Any]


@dataclass
class _Run:
    """What the bridge knows about one run in progress."""

    span: Span
    context: Context
    current: str | None  #: the run id, when the run's span was made current
    base_ns: int
    last_ns: int
    refine: Span | None = None
    refine_context: Context | None = None

    def parent(self) -> tuple[Span, Context]:
        """The span (and its context) that steps attach to now."""
        if self.refine is not None and self.refine_context is not None:
            return self.refine, self.refine_context
        return self.span, self.context


#: What handles one event type: (tracer, run, event type, payload, event time in ns).
Handler = Callable[[Tracer, _Run, str, Mapping[str, Any], int], None]


class OTelBridge:
    """A detachable listener that turns learning runs into OpenTelemetry spans.

    Args:
        chef: The ``RuleChef`` (or its ``LearningPipeline``) to follow; None
            follows every chef in the process.
        tracer_provider: The provider to use; None uses the global one (as set
            by ``opentelemetry.trace.set_tracer_provider``), looked up lazily.
        set_current: Whether a run's span is the current span while the run is
            in progress (so spans made meanwhile nest under it).
    """

    def __init__(
        self,
        chef: Any = None,
        *,
        tracer_provider: TracerProvider | None = None,
        set_current: bool = True,
    ):
        self.chef = getattr(chef, "_chef", chef)
        self.set_current = set_current
        self._tracer = otel_trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._subscription = sig.Subscription(self._receive, self.chef)

    @property
    def attached(self) -> bool:
        """Whether the bridge currently receives events."""
        return self._subscription.connected

    def attach(self) -> OTelBridge:
        """Connect to every signal (idempotent). Returns the bridge."""
        self._subscription.connect()
        return self

    def detach(self) -> None:
        """Disconnect (idempotent); spans of runs still in progress are ended as incomplete."""
        if not self._subscription.connected:
            return
        self._subscription.disconnect()
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
            _end_incomplete(run, now)

    def __enter__(self) -> OTelBridge:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- receiving ---------------------------------------------------------

    def _receive(self, signal_name: str, sender: Any, /, **payload: Any) -> None:
        run_id = str(payload.get("run_id"))
        if signal_name == "run_started":
            self._start(run_id, payload)
            return
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            return  # the run began before the bridge was attached
        at = run.base_ns + _ns(payload.get("t"))
        if signal_name == "finalized":
            with self._lock:
                self._runs.pop(run_id, None)
            _finish(run, payload, at)
            return
        if _in_refinement(signal_name, payload):
            _open_refine(self._tracer, run)
        handler = _HANDLERS.get(signal_name, _on_other)
        handler(self._tracer, run, signal_name, payload, at)
        run.last_ns = at

    def _start(self, run_id: str, payload: Mapping[str, Any]) -> None:
        base = time.time_ns() - _ns(payload.get("t"))
        parent = otel_context.get_current()
        span = self._tracer.start_span(
            f"rulechef.{payload.get('kind') or 'run'}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=_start_attributes(payload),
            start_time=base,
        )
        ctx = otel_trace.set_span_in_context(span, parent)
        if self.set_current:
            _enter_run(run_id, ctx)
        with self._lock:
            self._runs[run_id] = _Run(span, ctx, run_id if self.set_current else None, base, base)


def attach(chef: Any = None, *, tracer_provider: TracerProvider | None = None) -> OTelBridge:
    """Send every run of ``chef`` (None: of every chef) to OpenTelemetry from now on.

    Args:
        chef: A ``RuleChef`` or its ``LearningPipeline``; None for all chefs.
        tracer_provider: A provider to use instead of the global one.

    Returns:
        The attached :class:`OTelBridge`; call ``.detach()`` or use it as a
        context manager (``with otel.attach(chef): ...``).
    """
    return OTelBridge(chef, tracer_provider=tracer_provider).attach()


# ---------------------------------------------------------------------------
# Spans and events per event type
# ---------------------------------------------------------------------------


def _ns(seconds: Any) -> int:
    return int(seconds * 1e9) if isinstance(seconds, (int, float)) else 0


def _step_span(name: str, attributes: Callable[[Mapping[str, Any]], Attributes]) -> Handler:
    """A handler that records an event as a child span from the previous event to this one."""

    def handle(tracer: Tracer, run: _Run, kind: str, payload: Mapping[str, Any], at: int) -> None:
        _, parent = run.parent()
        span = tracer.start_span(
            name,
            context=parent,
            attributes={**_CHAIN, **attributes(payload)},
            start_time=run.last_ns,
        )
        span.end(end_time=at)

    return handle


def _span_event(name: str, attributes: Callable[[Mapping[str, Any]], Attributes]) -> Handler:
    """A handler that records an event as a span event on the current step parent."""

    def handle(tracer: Tracer, run: _Run, kind: str, payload: Mapping[str, Any], at: int) -> None:
        span, _ = run.parent()
        span.add_event(name, attributes=_clean(attributes(payload)), timestamp=at)

    return handle


def _in_refinement(kind: str, payload: Mapping[str, Any]) -> bool:
    """Whether an event belongs to the refinement loop (and so to ``rulechef.refine``)."""
    if kind == "audit_applied":
        return payload.get("stage") == "mid_refinement"
    return kind in _REFINEMENT_EVENTS


def _open_refine(tracer: Tracer, run: _Run) -> Span:
    """The run's ``rulechef.refine`` span, started at the previous event when not open yet."""
    if run.refine is None:
        run.refine = tracer.start_span(
            "rulechef.refine", context=run.context, attributes=_CHAIN, start_time=run.last_ns
        )
        run.refine_context = otel_trace.set_span_in_context(run.refine, run.context)
    return run.refine


def _on_refined(tracer: Tracer, run: _Run, kind: str, payload: Mapping[str, Any], at: int) -> None:
    refine = _open_refine(tracer, run)
    refine.set_attributes(_clean(_refined_attributes(payload)))
    refine.end(end_time=at)
    run.refine = run.refine_context = None


def _on_other(tracer: Tracer, run: _Run, kind: str, payload: Mapping[str, Any], at: int) -> None:
    """An event type this bridge does not know (a newer core): scalars only, as an event."""
    span, _ = run.parent()
    scalars = {
        f"rulechef.{k}": v
        for k, v in payload.items()
        if k not in ("run_id", "rule_names") and isinstance(v, (bool, int, float))
    }
    span.add_event(f"rulechef.{kind}", attributes=scalars, timestamp=at)


def _finish(run: _Run, payload: Mapping[str, Any], at: int) -> None:
    if run.refine is not None:
        run.refine.end(end_time=at)
    span = run.span
    span.set_attributes(_clean(_final_attributes(payload)))
    error = payload.get("error")
    if payload.get("status") in _FAILED or error:
        _mark_failed(span, error or {}, at)
    elif payload.get("status") == "completed":
        span.set_status(Status(StatusCode.OK))
    span.end(end_time=at)
    if run.current is not None:
        _leave_run(run.current)


# Several bridges may follow one run; contexts must be restored in reverse
# order, which blinker's receiver order does not give. So the first bridge to
# see a run makes its span current and the last one to finish restores.
_active_lock = threading.Lock()
_active: dict[str, tuple[Token[Context], int]] = {}


def _enter_run(run_id: str, ctx: Context) -> None:
    with _active_lock:
        if run_id in _active:
            token, count = _active[run_id]
            _active[run_id] = (token, count + 1)
            return
        _active[run_id] = (otel_context.attach(ctx), 1)


def _leave_run(run_id: str, *, restore: bool = True) -> None:
    with _active_lock:
        if run_id not in _active:
            return
        token, count = _active.pop(run_id)
        if count > 1:
            _active[run_id] = (token, count - 1)
            return
    if restore:
        otel_context.detach(token)


def _mark_failed(span: Span, error: Mapping[str, Any], at: int) -> None:
    kind = str(error.get("type") or "Exception")
    message = str(error.get("message") or "")
    span.set_attribute("error.type", kind)
    span.add_event(
        "exception",
        attributes={"exception.type": kind, "exception.message": message},
        timestamp=at,
    )
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))


def _end_incomplete(run: _Run, at: int) -> None:
    if run.refine is not None:
        run.refine.end(end_time=at)
    run.span.set_attribute("rulechef.run.status", "incomplete")
    run.span.end(end_time=at)
    if run.current is not None:
        # The context can be restored only from the run's own context.
        _leave_run(run.current, restore=otel_trace.get_current_span() is run.span)


# ---------------------------------------------------------------------------
# Attributes (ids, counts, flags, metrics; never text)
# ---------------------------------------------------------------------------


def _clean(attributes: Attributes) -> Attributes:
    """Drop None values and turn lists into tuples, as OpenTelemetry wants them."""
    out: Attributes = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _ids(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, Sequence) else []


def _metrics(prefix: str, metrics: Mapping[str, Any] | None) -> Attributes:
    metrics = metrics or {}
    return {
        f"{prefix}.{key}": metrics[key]
        for key in _METRICS
        if isinstance(metrics.get(key), (int, float))
    }


def _changes(payload: Mapping[str, Any]) -> Attributes:
    added, removed = _ids(payload.get("added")), _ids(payload.get("removed"))
    return {
        "rulechef.rules.added": added,
        "rulechef.rules.removed": removed,
        "rulechef.rules.added_count": len(added),
        "rulechef.rules.removed_count": len(removed),
        "rulechef.rules.count": len(_ids(payload.get("rules_after"))),
    }


def _merge_counts(payload: Mapping[str, Any]) -> Attributes:
    return {
        f"rulechef.{key}_count": len(payload[key])
        for key in ("replaced", "deleted", "collapsed", "deduped")
        if isinstance(payload.get(key), list)
    }


def _start_attributes(payload: Mapping[str, Any]) -> Attributes:
    params = payload.get("params") or {}
    coordinator = payload.get("coordinator") or {}
    attributes: Attributes = {
        **_CHAIN,
        "rulechef.run.id": payload.get("run_id"),
        "rulechef.run.kind": payload.get("kind"),
        "rulechef.dataset": payload.get("dataset"),
        "rulechef.task": payload.get("task"),
        "rulechef.task_type": payload.get("task_type"),
        "rulechef.version": payload.get("rulechef_version"),
        "rulechef.coordinator": coordinator.get("class"),
        "rulechef.rules.initial_count": len(_ids(payload.get("rules"))),
    }
    for key, value in params.items():
        if isinstance(value, (str, bool, int, float)):
            attributes[f"rulechef.param.{key}"] = value
    return _clean(attributes)


def _synthesized_attributes(payload: Mapping[str, Any]) -> Attributes:
    data = payload.get("data") or {}
    return _clean(
        {
            "rulechef.synthesis.mode": payload.get("mode"),
            "rulechef.synthesis.count": payload.get("count"),
            "rulechef.data.examples": data.get("examples"),
            "rulechef.data.corrections": data.get("corrections"),
            "rulechef.data.feedback": data.get("feedback"),
            **_changes(payload),
            **_merge_counts(payload),
        }
    )


def _patch_attributes(payload: Mapping[str, Any]) -> Attributes:
    proposed = payload.get("proposed") or {}
    failures = payload.get("failures") or {}
    return _clean(
        {
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.patch.outcome": payload.get("outcome"),
            "rulechef.patch.accepted": payload.get("accepted"),
            "rulechef.patch.on_dev": payload.get("on_dev"),
            "rulechef.patch.failures": failures.get("count"),
            "rulechef.patch.proposed_added": _ids(proposed.get("added")) or None,
            "rulechef.patch.proposed_removed": _ids(proposed.get("removed")) or None,
            **_metrics("rulechef.before", payload.get("metrics_before")),
            **_metrics("rulechef.after", payload.get("metrics_after")),
            **_changes(payload),
            **_merge_counts(payload),
        }
    )


def _audit_attributes(payload: Mapping[str, Any]) -> Attributes:
    actions = payload.get("actions") or []
    kinds = [a.get("action") for a in actions if isinstance(a, Mapping)]
    return _clean(
        {
            "rulechef.audit.stage": payload.get("stage"),
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.audit.proposed": payload.get("proposed"),
            "rulechef.audit.applied": len(actions),
            "rulechef.audit.skipped": len(payload.get("skipped") or []),
            "rulechef.audit.merges": kinds.count("merge"),
            "rulechef.audit.removals": kinds.count("remove"),
            "rulechef.audit.reverted": payload.get("reverted"),
            **_metrics("rulechef.before", payload.get("metrics_before")),
            **_metrics("rulechef.after", payload.get("metrics_after")),
            **_changes(payload),
        }
    )


def _pruned_attributes(payload: Mapping[str, Any]) -> Attributes:
    return _clean(
        {
            "rulechef.prune.reason": payload.get("reason"),
            **_metrics("rulechef.ensemble", payload.get("ensemble")),
            **_changes(payload),
        }
    )


def _iteration_attributes(payload: Mapping[str, Any]) -> Attributes:
    return {
        "rulechef.iteration": payload.get("iteration"),
        "rulechef.max_iterations": payload.get("max_iterations"),
        "rulechef.rules.count": payload.get("rule_count"),
        **_metrics("rulechef", payload.get("metrics")),
    }


def _guided_attributes(payload: Mapping[str, Any]) -> Attributes:
    return {
        "rulechef.iteration": payload.get("iteration"),
        "rulechef.guided.should_continue": payload.get("should_continue"),
        "rulechef.guided.guidance_chars": payload.get("guidance_chars"),
    }


def _critiqued_attributes(payload: Mapping[str, Any]) -> Attributes:
    return {
        "rulechef.iteration": payload.get("iteration"),
        "rulechef.critique.returned": payload.get("returned"),
        "rulechef.critique.rules_with_feedback": _ids(payload.get("rules_with_feedback")),
        "rulechef.critique.task_guidance": payload.get("task_guidance"),
    }


def _refined_attributes(payload: Mapping[str, Any]) -> Attributes:
    return {
        "rulechef.refine.stop_reason": payload.get("stop_reason"),
        "rulechef.refine.iterations": payload.get("iterations"),
        "rulechef.max_iterations": payload.get("max_iterations"),
        "rulechef.refine.kept_earlier": payload.get("kept_earlier"),
        "rulechef.refine.kept_iteration": payload.get("kept_iteration"),
        **_metrics("rulechef", payload.get("metrics")),
        **_changes(payload),
    }


def _final_attributes(payload: Mapping[str, Any]) -> Attributes:
    stats = payload.get("stats") or {}
    rules = _ids(payload.get("rules"))
    return {
        "rulechef.run.status": payload.get("status"),
        "rulechef.rules.final": rules,
        "rulechef.rules.count": len(rules),
        "rulechef.duration_s": payload.get("duration_s"),
        "rulechef.hook_errors": stats.get("hook_errors"),
        "rulechef.receiver_errors": stats.get("receiver_errors"),
        **_metrics("rulechef", payload.get("metrics")),
    }


def _on_llm_called(
    tracer: Tracer, run: _Run, kind: str, payload: Mapping[str, Any], at: int
) -> None:
    """One CLIENT span per LLM call, named ``chat {model}``, with GenAI attributes."""
    _, parent = run.parent()
    model = payload.get("model")
    usage = payload.get("usage") or {}
    reason = payload.get("finish_reason")
    span = tracer.start_span(
        f"chat {model}" if model else "chat",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes=_clean(
            {
                "openinference.span.kind": "LLM",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.response.model": payload.get("response_model"),
                "gen_ai.usage.input_tokens": usage.get("input_tokens"),
                "gen_ai.usage.output_tokens": usage.get("output_tokens"),
                "gen_ai.response.finish_reasons": [reason] if reason else None,
                "rulechef.llm.step": payload.get("step"),
                "rulechef.iteration": payload.get("iteration"),
            }
        ),
        start_time=max(run.base_ns, at - _ns(payload.get("duration_s"))),
    )
    if payload.get("status") == "error":
        _mark_failed(span, payload.get("error") or {}, at)
    span.end(end_time=at)


# Handled by the bridge itself: they open and close the run span.
_LIFECYCLE = ("run_started", "finalized")

_HANDLERS: dict[str, Handler] = {
    "llm_called": _on_llm_called,
    "synthesized": _step_span("rulechef.synthesize", _synthesized_attributes),
    "patch_decided": _step_span("rulechef.patch", _patch_attributes),
    "audit_applied": _step_span("rulechef.audit", _audit_attributes),
    "pruned": _step_span("rulechef.prune", _pruned_attributes),
    "iteration_evaluated": _span_event("rulechef.iteration", _iteration_attributes),
    "guided": _span_event("rulechef.guided", _guided_attributes),
    "critiqued": _span_event("rulechef.critiqued", _critiqued_attributes),
    "refined": _on_refined,
}
