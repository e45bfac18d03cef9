"""OpenTelemetry bridge: each learning run becomes a trace of step spans and LLM call spans.

Needs the ``otel`` extra (``pip install "rulechef-trace[otel]"``, i.e.
``opentelemetry-api``); nothing else in rulechef_trace imports OpenTelemetry.
Spans go to the globally configured ``TracerProvider``, so whatever exporter
the application set up (OTLP to Jaeger, Tempo, Phoenix, MLflow, Langfuse, a
collector...) receives them::

    from rulechef_trace import otel

    with otel.attach(chef):
        chef.learn_rules()

The shape of a learning run (``rulechef.rank_rules(prune=True)`` is a run of
its own, with one ``rulechef.prune`` child and a link to the learn run)::

    rulechef.learn                      the run: a GenAI workflow invocation
      rulechef.synthesize               bulk / per-class / incremental synthesis
        chat gpt-4o-mini                one CLIENT span per LLM call
        rulechef.prune                  weak rules dropped (incremental runs)
      rulechef.refine                   the refinement loop (events rulechef.iteration)
        rulechef.critique, rulechef.guide, rulechef.patch, rulechef.audit
          chat gpt-4o-mini
      rulechef.audit                    final audit

Each step's span is opened when the step begins and is the current span, in
the run's thread, until the step ends, so spans another instrumentation
opens inside the step (an OpenAI client's, say) are its children. The step's
event then completes and ends it. The run span nests under whatever span was
current when the run began.

Attributes follow the trace's privacy rule: rule ids, counts, flags, metrics
and summaries made of them; never rule names, patterns, input text, prompts
or LLM answers.
"""

from __future__ import annotations

try:
    import opentelemetry.context
    import opentelemetry.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'rulechef_trace.otel needs opentelemetry-api: pip install "rulechef-trace[otel]"'
    ) from exc

# _HANDLERS and _LIFECYCLE: the event types with handling of their own (the rest get a span event).
from rulechef_trace.otel._bridge import _HANDLERS as _HANDLERS
from rulechef_trace.otel._bridge import _LIFECYCLE as _LIFECYCLE
from rulechef_trace.otel._bridge import SCOPE, OTelBridge, attach

__all__ = ["SCOPE", "OTelBridge", "attach"]
