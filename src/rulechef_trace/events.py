"""The event catalogue: every event type of the package, declared once.

The signals (:data:`rulechef_trace.signals.ALL_SIGNALS`), the trace format's
event types (:data:`rulechef_trace.trace.EVENT_TYPES`) and the readers'
registries all follow this tuple; ``tests/test_event_catalogue.py`` fails when
a reader (story, HTML, OpenTelemetry bridge, schema) lacks an entry for one.

To add an event type: declare it here (in emit order), emit it from the
capture, describe it in each reader, and test it (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

__all__ = [
    "CATALOGUE",
    "EVENT_TYPES",
    "RULE_MOVES",
    "STEP_SIGNALS",
    "EventType",
    "Header",
    "by_name",
]

#: The keys of every event that changes the working rule set.
RULE_MOVES = ("added", "removed", "rules_after")


class Header(TypedDict):
    """The keys every payload and every trace event carries."""

    run_id: str
    seq: int
    t: float


@dataclass(frozen=True)
class EventType:
    """One event type: its signal's name and doc, and what its payload must hold.

    Attributes:
        name: The signal's name and the trace event's ``type``.
        doc: One line for the signal's ``doc`` and the docs.
        moves_rules: Whether the event carries ``added``/``removed``/``rules_after``.
        required: The payload keys (besides the header) the schema requires.
    """

    name: str
    doc: str
    moves_rules: bool
    required: tuple[str, ...]


def _moving(name: str, doc: str, *required: str) -> EventType:
    return EventType(name, doc, True, (*required, *RULE_MOVES))


def _still(name: str, doc: str, *required: str) -> EventType:
    return EventType(name, doc, False, required)


#: Every event type, in the order a run first emits them.
CATALOGUE: tuple[EventType, ...] = (
    _still(
        "run_started",
        "A learn_rules() run or a pruning rank_rules() call began.",
        "kind",
        "started_at",
        "rules",
    ),
    _still(
        "llm_called",
        "rulechef made one LLM call: step, model, tokens, latency, status; never content.",
        "step",
        "status",
        "duration_s",
        "usage",
    ),
    _moving(
        "synthesized",
        "Bulk, per-class or incremental synthesis produced the working rules.",
        "mode",
        "count",
    ),
    _still(
        "iteration_evaluated",
        "A refinement iteration measured the working rules.",
        "iteration",
        "max_iterations",
        "metrics",
    ),
    _still(
        "critiqued",
        "The coordinator's critic reviewed the rules.",
        "iteration",
        "returned",
        "rules_with_feedback",
    ),
    _still(
        "guided",
        "The coordinator gave refinement guidance and said whether to go on.",
        "iteration",
        "should_continue",
    ),
    _moving(
        "patch_decided",
        "A refinement patch was accepted, rejected, or came back empty.",
        "iteration",
        "outcome",
        "accepted",
    ),
    _moving(
        "audit_applied",
        "A mid-refinement or final audit merged/removed rules, or reverted.",
        "stage",
        "actions",
        "reverted",
    ),
    _moving("pruned", "Weak or harmful rules were dropped.", "reason"),
    _moving(
        "refined",
        "The refinement loop ended: why, and which iteration's rules it kept.",
        "iterations",
        "max_iterations",
        "stop_reason",
        "kept_earlier",
    ),
    _moving(
        "rules_edited",
        "The rules were changed outside learning: delete_rule(), load_rules().",
        "method",
    ),
    _still(
        "finalized",
        "The run ended, in any way. Always the last event.",
        "status",
        "rules",
        "duration_s",
    ),
)

#: Signals sent while a run goes but never recorded in a trace: a step's start
#: and end, so a live consumer (the OpenTelemetry bridge, the live view) can
#: hold a span or a status line open for exactly as long as the step runs.
#: Their payload: the header plus ``step``, ``iteration``, ``label`` and ``stage``.
STEP_SIGNALS: tuple[tuple[str, str], ...] = (
    ("step_started", "A step of the run (synthesis, a patch, an audit...) began."),
    ("step_ended", "The step begun by the last unmatched step_started ended."),
)

#: The event types' names, in emit order.
EVENT_TYPES: tuple[str, ...] = tuple(e.name for e in CATALOGUE)

_BY_NAME = {e.name: e for e in CATALOGUE}


def by_name(name: str) -> EventType:
    """Return the catalogue entry of ``name``.

    Raises:
        KeyError: for a name the catalogue does not declare.
    """
    return _BY_NAME[name]
