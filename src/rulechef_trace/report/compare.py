"""Runs summed up and compared: :func:`summarize` and :func:`diff`.

Questions asked of loaded traces; they return plain frozen dataclasses, which
:mod:`rulechef_trace.report.answers` formats as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rulechef_trace.report._plain import Plain
from rulechef_trace.report.llm import run_llm
from rulechef_trace.report.numbers import known, number, whole
from rulechef_trace.trace import Trace

__all__ = ["METRICS", "MetricDelta", "RunSummary", "TraceDiff", "diff", "summarize"]

#: The micro metrics every summary and diff shows: (key, label).
METRICS = (
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("exact_match", "exact match"),
)


@dataclass(frozen=True)
class RunSummary(Plain):
    """The headline numbers of one run.

    Attributes:
        run_id: The run's id.
        dataset: The rulechef dataset name.
        kind: ``learn`` or ``rank_rules``.
        status: The run's status.
        started_at: ISO 8601 UTC start time.
        duration_s: Seconds the run took (None when incomplete).
        iterations: Refinement iterations run (None for a ``rank_rules`` run).
        rules: Number of final rules.
        accepted: Accepted patches.
        rejected: Rejected patches.
        empty: Patches that came back empty.
        metrics: Final micro metrics (f1, precision, recall, exact_match) or None.
        per_class_f1: Final F1 per label.
        split: The examples the final metrics are on (``train``, ``dev``,
            ``all``; None when the trace does not say).
        examples: Examples plus corrections at the run's end, when recorded.
        llm: The run's LLM totals (calls, errors, tokens, seconds, cost), or
            None for a trace without LLM facts.
    """

    run_id: str
    dataset: str
    kind: str
    status: str
    started_at: str | None
    duration_s: float | None
    iterations: int | None
    rules: int
    accepted: int
    rejected: int
    empty: int
    metrics: dict[str, float] | None
    per_class_f1: dict[str, float] = field(default_factory=dict)
    split: str | None = None
    examples: int | None = None
    llm: dict[str, Any] | None = None


def summarize(trace: Trace) -> RunSummary:
    """Sum a trace up: status, duration, iterations, patches, rules and metrics."""
    run = trace.run
    outcomes = [e.get("outcome") for e in trace.events_of("patch_decided")]
    return RunSummary(
        run_id=str(known(run.get("id"))),
        dataset=str(known(run.get("dataset"))),
        kind=str(known(run.get("kind"))),
        status=trace.status,
        started_at=run["started_at"] if isinstance(run.get("started_at"), str) else None,
        duration_s=number(run.get("duration_s")),
        iterations=_iterations(trace),
        rules=len(trace.final_rules),
        accepted=outcomes.count("accepted"),
        rejected=outcomes.count("rejected"),
        empty=outcomes.count("empty"),
        metrics=_micro(trace.final_metrics),
        per_class_f1=_per_class(trace.final_metrics),
        split=_split(trace.final_metrics),
        examples=_examples(trace),
        llm=_llm(trace),
    )


def _llm(trace: Trace) -> dict[str, Any] | None:
    summary = run_llm(trace)
    return dict(summary) if summary is not None else None


def _split(metrics: Mapping[str, Any] | None) -> str | None:
    split = (metrics or {}).get("split")
    return split if isinstance(split, str) else None


def _examples(trace: Trace) -> int | None:
    ended = trace.events_of("finalized")
    return whole(ended[-1].get("examples")) if ended else None


def _iterations(trace: Trace) -> int | None:
    if trace.run.get("kind") != "learn":
        return None
    refined = trace.events_of("refined")
    done = whole(refined[-1].get("iterations")) if refined else None
    if done is not None:
        return done
    return len(trace.events_of("iteration_evaluated"))


def _micro(metrics: Mapping[str, Any] | None) -> dict[str, float] | None:
    if not metrics:
        return None
    found = {key: number(metrics.get(key)) for key, _ in METRICS}
    return {key: value for key, value in found.items() if value is not None}


def _per_class(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    found: dict[str, float] = {}
    classes = (metrics or {}).get("per_class")
    for cm in classes if isinstance(classes, list) else ():
        f1 = number(cm.get("f1")) if isinstance(cm, dict) else None
        if f1 is not None:
            found[str(cm.get("label"))] = f1
    return found


@dataclass(frozen=True)
class MetricDelta(Plain):
    """One metric in two runs: values (None when unknown) and B minus A."""

    name: str
    a: float | None
    b: float | None
    delta: float | None


@dataclass(frozen=True)
class TraceDiff(Plain):
    """Two runs side by side.

    Attributes:
        a: Summary of the first run.
        b: Summary of the second run.
        only_a: Names of rules (matched by id) only run A ended with (sorted).
        only_b: Names of rules only run B ended with (sorted).
        both: Names of rules both runs ended with, same id (sorted).
        metrics: Final micro metrics of both runs and their deltas.
        per_class: Final per-label F1 of both runs and their deltas.
        changed: Names both runs' rules have, under a different id in each:
            the rule kept its name but its content changed (sorted).
        notes: Why some deltas are not worked out (runs on different splits or data).
    """

    a: RunSummary
    b: RunSummary
    only_a: list[str]
    only_b: list[str]
    both: list[str]
    metrics: list[MetricDelta]
    per_class: list[MetricDelta]
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def diff(a: Trace, b: Trace) -> TraceDiff:
    """Compare two runs: rules by id, final metrics, iterations, patches, status.

    A rule in both runs under one name but a different id is ``changed``.
    Metric deltas are worked out only between runs measured on the same split
    and the same number of examples; ``notes`` says when they are not.

    Args:
        a: The first (usually older) trace.
        b: The second trace; deltas are B minus A.

    Returns:
        The comparison as plain data.
    """
    ids_a, ids_b = set(a.final_rules), set(b.final_rules)
    gone = {a.name_of(rid) for rid in ids_a - ids_b}
    new = {b.name_of(rid) for rid in ids_b - ids_a}
    changed = gone & new
    sa, sb = summarize(a), summarize(b)
    notes = _unlike(sa, sb)
    metrics = [
        _delta(label, (sa.metrics or {}).get(key), (sb.metrics or {}).get(key), not notes)
        for key, label in METRICS
    ]
    labels = sorted(set(sa.per_class_f1) | set(sb.per_class_f1))
    per_class = [
        _delta(lab, sa.per_class_f1.get(lab), sb.per_class_f1.get(lab), not notes) for lab in labels
    ]
    return TraceDiff(
        a=sa,
        b=sb,
        only_a=sorted(gone - changed),
        only_b=sorted(new - changed),
        both=sorted({a.name_of(rid) for rid in ids_a & ids_b}),
        metrics=metrics,
        per_class=per_class,
        changed=sorted(changed),
        notes=notes,
    )


def _unlike(a: RunSummary, b: RunSummary) -> list[str]:
    """Why the two runs' metrics cannot be compared (empty when they can)."""
    if not a.metrics or not b.metrics:
        return []
    if a.split != b.split:
        return [
            f"metrics are on different splits (A {a.split or 'unknown'}, "
            f"B {b.split or 'unknown'}): no change worked out"
        ]
    if a.examples is not None and b.examples is not None and a.examples != b.examples:
        return [
            f"the data changed ({a.examples} examples in A, {b.examples} in B):"
            " no metric change worked out"
        ]
    return []


def _delta(name: str, a: float | None, b: float | None, like: bool = True) -> MetricDelta:
    delta = b - a if a is not None and b is not None and like else None
    return MetricDelta(name, a, b, delta)
