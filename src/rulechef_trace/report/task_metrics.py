"""The metrics rulechef itself uses for each task type, as every report words them.

rulechef prints exact match and micro F1 at every refinement iteration, for
every task type. Micro F1 counts spans, entities, labels or the items of a
transformation's list outputs; a transformation whose outputs hold no list
has no item to count, and its F1 is an empty 0.0 that means nothing: there
only exact match is told. For NER the per-class rows are span F1 per entity
type, for classification per class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rulechef_trace.report.numbers import pct, whole

__all__ = ["breakdown_title", "exact", "has_f1", "headline", "task_type"]

TRANSFORMATION = "transformation"


def task_type(run: Mapping[str, Any]) -> str:
    """The run's task type (``classification``, ``ner``...), lower case; "" when unknown."""
    value = run.get("task_type")
    return value.lower() if isinstance(value, str) else ""


def has_f1(kind: str, metrics: Mapping[str, Any]) -> bool:
    """Whether rulechef's micro F1 counts anything for this task and these metrics.

    Always for classification, extraction and NER; for a transformation only
    when some output item was counted (a per-class row exists).
    """
    if kind != TRANSFORMATION:
        return True
    return bool(metrics.get("per_class"))


def exact(metrics: Mapping[str, Any]) -> str:
    """``exact 83.3% (5/6)``: rulechef's exact match with its documents, as it prints it."""
    docs = whole(metrics.get("docs"))
    share = metrics.get("exact_match")
    shown = f"exact {pct(share)}"
    if docs and isinstance(share, (int, float)) and not isinstance(share, bool):
        # The trace keeps 4 decimals: rounding gives back rulechef's whole count.
        shown += f" ({round(share * docs)}/{docs})"
    return shown


def headline(kind: str, metrics: Mapping[str, Any], *, with_exact: bool = True) -> str:
    """The metrics of one measurement in the task's own terms.

    A transformation: exact match (and F1 only where list items were counted);
    any other task: F1, P, R, then exact match.
    """
    prf = (
        f"F1 {pct(metrics.get('f1'))} P {pct(metrics.get('precision'))} "
        f"R {pct(metrics.get('recall'))}"
    )
    if kind == TRANSFORMATION:
        return exact(metrics) + (f", {prf}" if has_f1(kind, metrics) else "")
    return f"{prf}, {exact(metrics)}" if with_exact else prf


def breakdown_title(kind: str) -> str:
    """What the per-class rows are for this task type."""
    return {
        "ner": "span F1 per entity type",
        "classification": "per class",
        "extraction": "per span type",
    }.get(kind, "per output type")
