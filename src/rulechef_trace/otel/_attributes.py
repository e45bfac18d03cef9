"""Span attributes from event payloads: ids, counts, flags, metrics and summaries, never text.

Besides rulechef's own ``rulechef.*`` attributes, each span says what it is in
the vocabularies tracing tools read: ``openinference.span.kind`` (Phoenix,
MLflow, Langfuse), ``gen_ai.*`` (the OpenTelemetry GenAI conventions) and
``input.value`` / ``output.value``, short summaries made of counts and metrics
("12 examples, 2 classes" -> "3 rules, F1 100.0 %") that those tools show in
their Input and Output columns. Rule names, patterns, examples, prompts and
LLM answers never appear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Attributes = dict[str, Any]

#: OpenInference's span kind, so Phoenix and MLflow show rulechef steps as chain steps.
CHAIN = {"openinference.span.kind": "CHAIN"}
_METRICS = ("f1", "precision", "recall", "exact_match", "docs", "failures")
_LLM_SUMMARY = ("calls", "errors", "input_tokens", "output_tokens", "duration_s")
_LLM_TOTALS = (*_LLM_SUMMARY, "cached_tokens", "time_share", "cost")


def clean(attributes: Attributes) -> Attributes:
    """Drop None values and turn lists into tuples, as OpenTelemetry wants them."""
    out: Attributes = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _ids(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, Sequence) else []


def _count(value: Any) -> int:
    return len(value) if isinstance(value, (list, tuple, dict)) else 0


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def percent(value: Any) -> str:
    """``0.85`` -> ``"85.0 %"``; ``"?"`` for a missing value."""
    number = _number(value)
    return "?" if number is None else f"{number * 100:.1f} %"


def _f1(metrics: Any) -> Any:
    return metrics.get("f1") if isinstance(metrics, Mapping) else None


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


def _io(inputs: str | None, outputs: str | None) -> Attributes:
    return {"input.value": inputs, "output.value": outputs}


def llm_summary(payload: Mapping[str, Any], keys: Sequence[str] = _LLM_SUMMARY) -> Attributes:
    """A step's (or the run's) ``llm`` summary as ``rulechef.llm.*``, and its LLM error type."""
    llm = payload.get("llm")
    out: Attributes = {}
    if isinstance(llm, Mapping):
        out = {f"rulechef.llm.{k}": llm[k] for k in keys if _number(llm.get(k)) is not None}
    error = payload.get("llm_error")
    if isinstance(error, Mapping):
        out["error.type"] = str(error.get("type") or "_OTHER")
    return out


# --- the run --------------------------------------------------------------------------


def run_start(payload: Mapping[str, Any], name: str) -> Attributes:
    """The run span's attributes known when it starts (a GenAI workflow invocation)."""
    params = payload.get("params") or {}
    coordinator = payload.get("coordinator") or {}
    attributes: Attributes = {
        **CHAIN,
        "gen_ai.operation.name": "invoke_workflow",
        # semantic-conventions <= 1.41 name a workflow so; the GenAI repository's 0.1.0 so.
        "gen_ai.workflow.name": name,
        "gen_ai.agent.name": name,
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
    return clean(attributes)


def run_end(payload: Mapping[str, Any], inputs: str | None) -> Attributes:
    """The run span's attributes from ``finalized``."""
    stats = payload.get("stats") or {}
    rules = _ids(payload.get("rules"))
    return clean(
        {
            "rulechef.run.status": payload.get("status"),
            "rulechef.rules.final": rules,
            "rulechef.rules.count": len(rules),
            "rulechef.duration_s": payload.get("duration_s"),
            "rulechef.hook_errors": stats.get("hook_errors"),
            "rulechef.receiver_errors": stats.get("receiver_errors"),
            **_metrics("rulechef", payload.get("metrics")),
            **llm_summary({"llm": payload.get("llm")}, _LLM_TOTALS),
            **_io(inputs, run_output(payload)),
        }
    )


def run_input(examples: Any, classes: int | None, initial_rules: int) -> str | None:
    """``"150 examples, 5 classes"`` (and the rules a run began with), as far as known."""
    parts = []
    if _number(examples) is not None:
        parts.append(f"{examples} examples")
    if classes:
        parts.append(f"{classes} classes")
    if initial_rules:
        parts.append(f"{initial_rules} rules to start")
    return ", ".join(parts) or None


def run_output(payload: Mapping[str, Any]) -> str:
    """``"16 rules, F1 85.0 %"``; a run that did not complete says how it ended."""
    status = str(payload.get("status") or "?")
    parts = [f"{len(_ids(payload.get('rules')))} rules"]
    f1 = _f1(payload.get("metrics"))
    if f1 is not None:
        parts.append(f"F1 {percent(f1)}")
    text = ", ".join(parts)
    if status == "completed":
        return text
    error = payload.get("error")
    kind = error.get("type") if isinstance(error, Mapping) else None
    return f"{status} ({kind}): {text}" if kind else f"{status}: {text}"


def class_count(payload: Mapping[str, Any]) -> int | None:
    """How many classes a payload's per-class metrics or per-label counts name."""
    metrics = payload.get("metrics")
    per_class = metrics.get("per_class") if isinstance(metrics, Mapping) else None
    if isinstance(per_class, list) and per_class:
        return len(per_class)
    per_label = payload.get("per_label")
    return len(per_label) if isinstance(per_label, Mapping) and per_label else None


# --- steps ----------------------------------------------------------------------------

#: The span each live step gets (a per-class call belongs to the synthesis span).
STEP_SPANS = {
    "synthesis": "rulechef.synthesize",
    "patch": "rulechef.patch",
    "audit": "rulechef.audit",
    "guide": "rulechef.guide",
    "critic": "rulechef.critique",
}


def step_start(payload: Mapping[str, Any]) -> Attributes:
    """A live step span's attributes known at its start."""
    return clean(
        {
            **CHAIN,
            "rulechef.step": payload.get("step"),
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.audit.stage": payload.get("stage"),
        }
    )


def synthesized(payload: Mapping[str, Any]) -> Attributes:
    data = payload.get("data") or {}
    failed = _ids(payload.get("failed_labels"))
    out = f"{_count(payload.get('rules_after'))} rules ({payload.get('mode')})"
    if failed:
        out += f", {len(failed)} classes failed"
    return clean(
        {
            "rulechef.synthesis.mode": payload.get("mode"),
            "rulechef.synthesis.count": payload.get("count"),
            "rulechef.synthesis.dropped": payload.get("dropped"),
            "rulechef.synthesis.failed_classes": len(failed),
            "rulechef.data.examples": data.get("examples"),
            "rulechef.data.corrections": data.get("corrections"),
            "rulechef.data.feedback": data.get("feedback"),
            **_changes(payload),
            **_merge_counts(payload),
            **llm_summary(payload),
            **_io(f"{data.get('examples', '?')} examples", out),
        }
    )


def patch(payload: Mapping[str, Any]) -> Attributes:
    proposed = payload.get("proposed") or {}
    failures = payload.get("failures") or {}
    before, after = _f1(payload.get("metrics_before")), _f1(payload.get("metrics_after"))
    inputs = f"iteration {payload.get('iteration')}: {failures.get('count', '?')} failures"
    if before is not None:
        inputs += f", F1 {percent(before)}"
    outcome = str(payload.get("outcome"))
    outputs = outcome
    if after is not None:
        outputs += f": F1 {percent(before)} -> {percent(after)}"
    outputs += f", {_count(payload.get('rules_after'))} rules"
    return clean(
        {
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.patch.outcome": outcome,
            "rulechef.patch.accepted": payload.get("accepted"),
            "rulechef.patch.on_dev": payload.get("on_dev"),
            "rulechef.patch.failures": failures.get("count"),
            "rulechef.patch.dropped": payload.get("dropped"),
            "rulechef.patch.proposed_added": _ids(proposed.get("added")) or None,
            "rulechef.patch.proposed_removed": _ids(proposed.get("removed")) or None,
            **_metrics("rulechef.before", payload.get("metrics_before")),
            **_metrics("rulechef.after", payload.get("metrics_after")),
            **_changes(payload),
            **_merge_counts(payload),
            **llm_summary(payload),
            **_io(inputs, outputs),
        }
    )


def evaluation(payload: Mapping[str, Any]) -> Attributes:
    """The ``gen_ai.evaluation.result`` event of a patch decision: F1 scored, outcome as label."""
    before, after = _f1(payload.get("metrics_before")), _f1(payload.get("metrics_after"))
    explanation = None
    if after is not None:
        explanation = f"candidate F1 {percent(after)} against {percent(before)} before"
    return clean(
        {
            "gen_ai.evaluation.name": "f1",
            "gen_ai.evaluation.score.value": _number(after),
            "gen_ai.evaluation.score.label": payload.get("outcome"),
            "gen_ai.evaluation.explanation": explanation,
        }
    )


def audit(payload: Mapping[str, Any]) -> Attributes:
    actions = payload.get("actions") or []
    kinds = [a.get("action") for a in actions if isinstance(a, Mapping)]
    after = _count(payload.get("rules_after"))
    before = after - _count(payload.get("added")) + _count(payload.get("removed"))
    outputs = f"merged {kinds.count('merge')}, removed {kinds.count('remove')}: {after} rules"
    if payload.get("reverted"):
        outputs = f"reverted: {after} rules"
    return clean(
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
            **llm_summary(payload),
            **_io(f"{payload.get('stage')} audit of {before} rules", outputs),
        }
    )


def guided(payload: Mapping[str, Any]) -> Attributes:
    go_on = payload.get("should_continue")
    outputs = "go on" if go_on else "stop"
    if isinstance(payload.get("guidance_chars"), int):
        outputs += f" ({payload['guidance_chars']} chars of advice)"
    return clean(
        {
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.guided.should_continue": go_on,
            "rulechef.guided.guidance_chars": payload.get("guidance_chars"),
            **llm_summary(payload),
            **_io(f"iteration {payload.get('iteration')}", outputs),
        }
    )


def critiqued(payload: Mapping[str, Any]) -> Attributes:
    rules = _ids(payload.get("rules_with_feedback"))
    outputs = f"feedback on {len(rules)} rules" if payload.get("returned") else "no critique"
    return clean(
        {
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.critique.returned": payload.get("returned"),
            "rulechef.critique.rules_with_feedback": rules,
            "rulechef.critique.task_guidance": payload.get("task_guidance"),
            **llm_summary(payload),
            **_io(f"iteration {payload.get('iteration')}", outputs),
        }
    )


def edited(payload: Mapping[str, Any]) -> Attributes:
    """A rules_edited event: which method, and what it did to the rule set."""
    after = _count(payload.get("rules_after"))
    return clean(
        {
            "rulechef.edit.method": payload.get("method"),
            **_changes(payload),
            **_io(f"{payload.get('method')}()", f"{after} rules"),
        }
    )


def pruned(payload: Mapping[str, Any]) -> Attributes:
    after = _count(payload.get("rules_after"))
    removed = _count(payload.get("removed"))
    return clean(
        {
            "rulechef.prune.reason": payload.get("reason"),
            **_metrics("rulechef.ensemble", payload.get("ensemble")),
            **_changes(payload),
            **llm_summary(payload),
            **_io(
                f"{after + removed} rules",
                f"{removed} removed ({payload.get('reason')}): {after} rules",
            ),
        }
    )


def iteration(payload: Mapping[str, Any]) -> Attributes:
    return clean(
        {
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.max_iterations": payload.get("max_iterations"),
            "rulechef.rules.count": payload.get("rule_count"),
            **_metrics("rulechef", payload.get("metrics")),
        }
    )


def refined(payload: Mapping[str, Any]) -> Attributes:
    outputs = (
        f"{payload.get('stop_reason')} after {payload.get('iterations')} iterations: "
        f"{_count(payload.get('rules_after'))} rules, F1 {percent(_f1(payload.get('metrics')))}"
    )
    return clean(
        {
            "rulechef.refine.stop_reason": payload.get("stop_reason"),
            "rulechef.refine.iterations": payload.get("iterations"),
            "rulechef.max_iterations": payload.get("max_iterations"),
            "rulechef.refine.kept_earlier": payload.get("kept_earlier"),
            "rulechef.refine.kept_iteration": payload.get("kept_iteration"),
            **_metrics("rulechef", payload.get("metrics")),
            **_changes(payload),
            "output.value": outputs,
        }
    )


def other(payload: Mapping[str, Any], moves_rules: bool = False) -> Attributes:
    """An event type without attributes of its own: its numbers and flags, never text.

    Args:
        payload: The event's payload.
        moves_rules: Whether the type moves rules (the catalogue says so);
            then its rule changes too, as ids and counts, as every
            rule-moving span carries them.
    """
    scalars = {
        f"rulechef.{k}": v
        for k, v in payload.items()
        if k not in ("run_id", "rule_names") and isinstance(v, (bool, int, float))
    }
    return {**scalars, **clean(_changes(payload))} if moves_rules else scalars
