"""The event catalogue: every event type of the package, declared once.

The signals (:data:`rulechef_trace.signals.ALL_SIGNALS`), the trace format's
event types (:data:`rulechef_trace.trace.EVENT_TYPES`), the schema's per-type
branches (generated into ``data/trace-v1.schema.json``) and the readers'
generic treatment of a type all follow this tuple; ``tests/test_event_catalogue.py``
fails when a type lacks its describer or the shipped schema is not the
generated one.

To add an event type: declare it here (in emit order), emit it from the
capture, describe it in ``report/describe.py``, test it, and regenerate the
schema (docs/architecture.md, "Add an event type").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

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
    """One event type: its signal's name and doc, and what its payload holds.

    Attributes:
        name: The signal's name and the trace event's ``type``.
        doc: One line for the signal's ``doc``, the docs, and the schema's
            description of the type.
        moves_rules: Whether the event carries ``added``/``removed``/``rules_after``.
        required: The payload keys (besides the header) the schema requires.
        properties: The JSON Schema of payload keys, by key, as the trace
            schema's branch for the type holds them (``$ref`` into its
            ``$defs``); the rule moves of a rule-moving type are added by the
            generator, and keys not listed may hold anything.
    """

    name: str
    doc: str
    moves_rules: bool
    required: tuple[str, ...]
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False)


def _moving(name: str, doc: str, *required: str, properties: Mapping[str, Any]) -> EventType:
    return EventType(name, doc, True, (*required, *RULE_MOVES), properties)


def _still(name: str, doc: str, *required: str, properties: Mapping[str, Any]) -> EventType:
    return EventType(name, doc, False, required, properties)


# Schema fragments several types share.
_IDS = {"$ref": "#/$defs/ruleIds"}
_METRICS = {"$ref": "#/$defs/optionalMetrics"}
_STEP_LLM = {
    "llm": {"$ref": "#/$defs/llmSummary"},
    "llm_error": {
        "description": "the last LLM error when every call of the step failed",
        "$ref": "#/$defs/error",
    },
}
_DROPPED = {
    "description": "rules in the LLM's answer that rulechef's parser skipped",
    "type": "integer",
    "minimum": 0,
}

#: Every event type, in the order a run first emits them.
CATALOGUE: tuple[EventType, ...] = (
    _still(
        "run_started",
        "A learn_rules() run or a pruning rank_rules() call began.",
        "kind",
        "started_at",
        "rules",
        properties={
            "kind": {"enum": ["learn", "rank_rules", "edit", "refine"]},
            "started_at": {"type": "string"},
            "rules": {
                "$ref": "#/$defs/ruleIds",
                "description": "the chef's rules when the run started",
            },
            "dataset": {"$ref": "#/$defs/run/properties/dataset"},
            "task": {"$ref": "#/$defs/run/properties/task"},
            "task_type": {"$ref": "#/$defs/run/properties/task_type"},
            "rulechef_version": {"$ref": "#/$defs/run/properties/rulechef_version"},
            "params": {"$ref": "#/$defs/run/properties/params"},
            "coordinator": {"$ref": "#/$defs/run/properties/coordinator"},
            "storage_path": {"$ref": "#/$defs/run/properties/storage_path"},
            "changed_since": {
                "description": "rule changes no hook saw, found against the newest kept trace "
                "of the dataset (written by a recorder)",
                "type": "object",
                "required": ["run", "added", "removed"],
                "properties": {
                    "run": {
                        "description": "the id of the newest kept trace of the dataset, the one "
                        "compared against",
                        "type": "string",
                    },
                    "added": _IDS,
                    "removed": _IDS,
                    "learning_run": {
                        "description": "the id of the newest kept learn or refine run up to "
                        "run, the run the rules descend from; null when none is kept",
                        "type": ["string", "null"],
                    },
                    "edits": {
                        "description": "the ids of the kept edit and rank_rules runs after "
                        "learning_run, oldest first (the last is run unless run is learning_run)",
                        "type": "array",
                        "items": {"type": "string"},
                    },
                },
            },
            "after": {
                "description": "a rank_rules run: the id of the newest kept learning run of the "
                "dataset, the run it pruned (written by a recorder)",
                "type": "string",
            },
        },
    ),
    _still(
        "llm_called",
        "rulechef made one LLM call: step, model, tokens, latency, status; never content.",
        "step",
        "status",
        "duration_s",
        "usage",
        properties={
            "step": {
                "enum": ["synthesis", "per_class", "patch", "guide", "critic", "audit", "other"]
            },
            "iteration": {"oneOf": [{"type": "null"}, {"type": "integer", "minimum": 0}]},
            "label": {
                "description": "the class a per-class call served (a class of the dataset)",
                "oneOf": [{"type": "null"}, {"type": "string"}],
            },
            "stage": {"oneOf": [{"type": "null"}, {"enum": ["mid_refinement", "final"]}]},
            "model": {"oneOf": [{"type": "null"}, {"type": "string"}]},
            "response_model": {"oneOf": [{"type": "null"}, {"type": "string"}]},
            "duration_s": {"type": "number", "minimum": 0},
            "finish_reason": {"oneOf": [{"type": "null"}, {"type": "string"}]},
            "response_chars": {
                "description": "the length of the answer, never the answer",
                "oneOf": [{"type": "null"}, {"type": "integer", "minimum": 0}],
            },
            "status": {"enum": ["ok", "error"]},
            "error": {"$ref": "#/$defs/error"},
            "usage": {"$ref": "#/$defs/llmUsage"},
            "cost": {
                "description": "USD of this call, added by a recorder with prices",
                "oneOf": [{"type": "null"}, {"type": "number", "minimum": 0}],
            },
        },
    ),
    _moving(
        "synthesized",
        "Bulk, per-class or incremental synthesis produced the working rules.",
        "mode",
        "count",
        properties={
            "mode": {"enum": ["bulk", "per_class", "incremental"]},
            "count": {"type": "integer", "minimum": 0},
            "data": {"type": "object"},
            "per_label": {"type": "object", "additionalProperties": {"type": "integer"}},
            **_STEP_LLM,
            "dropped": _DROPPED,
            "failed_labels": {
                "description": "classes whose per-class call failed or was unreadable",
                "type": "array",
                "items": {"type": "string"},
            },
        },
    ),
    _still(
        "iteration_evaluated",
        "A refinement iteration measured the working rules.",
        "iteration",
        "max_iterations",
        "metrics",
        properties={
            "iteration": {"type": "integer", "minimum": 1},
            "max_iterations": {"type": "integer"},
            "rule_count": {"type": "integer"},
            "metrics": _METRICS,
        },
    ),
    _still(
        "critiqued",
        "The coordinator's critic reviewed the rules.",
        "iteration",
        "returned",
        "rules_with_feedback",
        properties={
            "iteration": {"type": "integer"},
            "returned": {"type": "boolean"},
            "rules_with_feedback": {
                "$ref": "#/$defs/ruleIds",
                "description": "rules the critic commented on",
            },
            "task_guidance": {"type": "boolean"},
            **_STEP_LLM,
        },
    ),
    _still(
        "guided",
        "The coordinator gave refinement guidance and said whether to go on.",
        "iteration",
        "should_continue",
        properties={
            "iteration": {"type": "integer"},
            "should_continue": {"type": "boolean"},
            "guidance_chars": {"type": "integer"},
            **_STEP_LLM,
        },
    ),
    _moving(
        "patch_decided",
        "A refinement patch was accepted, rejected, or came back empty.",
        "iteration",
        "outcome",
        "accepted",
        properties={
            "iteration": {"type": "integer"},
            "outcome": {
                "enum": [
                    "accepted",
                    "rejected",
                    "empty",
                    "llm_error",
                    "unparsable",
                    "invalid_rules",
                ]
            },
            "accepted": {"type": "boolean"},
            "on_dev": {"type": "boolean"},
            "metrics_before": _METRICS,
            "metrics_after": _METRICS,
            "failures": {"type": ["object", "null"]},
            "proposed": {
                "type": "object",
                "properties": {
                    "added": _IDS,
                    "removed": _IDS,
                    "patch": _IDS,
                    "deleted": _IDS,
                    "collapsed": _IDS,
                    "deduped": _IDS,
                    "replaced": {"$ref": "#/$defs/replacements"},
                },
            },
            "replaced": {"$ref": "#/$defs/replacements"},
            **_STEP_LLM,
            "dropped": _DROPPED,
        },
    ),
    _moving(
        "audit_applied",
        "A mid-refinement or final audit merged/removed rules, or reverted.",
        "stage",
        "actions",
        "reverted",
        properties={
            "stage": {"enum": ["mid_refinement", "final"]},
            "iteration": {"type": ["integer", "null"]},
            "proposed": {"type": "integer", "minimum": 0},
            "actions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["action"],
                    "properties": {
                        "action": {"enum": ["merge", "remove"]},
                        "sources": _IDS,
                        "result": {"type": ["string", "null"]},
                        "name": {"type": ["string", "null"]},
                        "rules": _IDS,
                    },
                },
            },
            "skipped": {
                "type": "array",
                "items": {"type": "object", "required": ["action", "why"]},
            },
            "reverted": {"type": "boolean"},
            "audited": {"type": "boolean"},
            "metrics_before": _METRICS,
            "metrics_after": _METRICS,
            **_STEP_LLM,
        },
    ),
    _moving(
        "pruned",
        "Weak or harmful rules were dropped.",
        "reason",
        properties={
            "reason": {"enum": ["weak_rules", "harmful_rules", "unexplained"]},
            "marginal_f1": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    ),
    _moving(
        "refined",
        "The refinement loop ended: why, and which iteration's rules it kept.",
        "iterations",
        "max_iterations",
        "stop_reason",
        "kept_earlier",
        properties={
            "iterations": {"type": "integer", "minimum": 0},
            "max_iterations": {"type": "integer"},
            "stop_reason": {"type": "string"},
            "kept_seq": {"type": ["integer", "null"]},
            "kept_iteration": {"type": ["integer", "null"]},
            "kept_earlier": {"type": "boolean"},
            "kept_measured": {
                "type": ["object", "null"],
                "required": ["iteration", "metrics"],
                "properties": {"iteration": {"type": "integer"}, "metrics": _METRICS},
            },
            "holdout": {
                "type": ["object", "null"],
                "required": ["fraction", "used"],
                "properties": {
                    "fraction": {"type": "number"},
                    "used": {"type": ["boolean", "null"]},
                    "dev_examples": {"type": ["integer", "null"]},
                },
            },
            "metrics": _METRICS,
        },
    ),
    _moving(
        "rules_edited",
        "The rules were changed outside learning: delete_rule(), load_rules().",
        "method",
        properties={"method": {"type": "string"}},
    ),
    _still(
        "finalized",
        "The run ended, in any way. Always the last event.",
        "status",
        "rules",
        "duration_s",
        properties={
            "status": {"$ref": "#/$defs/status"},
            "error": {"$ref": "#/$defs/error"},
            "ended_at": {"type": "string"},
            "duration_s": {"type": "number"},
            "rules": {
                "$ref": "#/$defs/ruleIds",
                "description": "the chef's rules when the run ended",
            },
            "metrics": _METRICS,
            "llm": {"$ref": "#/$defs/llmSummary"},
            "task": {"$ref": "#/$defs/run/properties/task"},
            "task_type": {"$ref": "#/$defs/run/properties/task_type"},
            "stats": {"$ref": "#/$defs/run/properties/stats"},
            "examples": {
                "description": "examples plus corrections in the dataset when the run ended "
                "(what it learned from)",
                "type": ["integer", "null"],
                "minimum": 0,
            },
        },
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
