"""Plain-data facts read off rulechef's objects: metrics, merges, audits.

Pure functions, no state: they turn what a hook sees (an ``EvalResult``, a
patch, an ``AuditResult``) into the ids, counts and metrics of a payload.
Nothing here reads a rule's pattern or an example's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "explain_audit",
    "explain_name_merge",
    "failure_summary",
    "labels_of",
    "metrics_of",
    "ratio",
    "rule_ids",
    "short_metrics",
]


def rule_ids(rules: Iterable[Any]) -> list[str]:
    """Ids of rules, in order."""
    return [r.id for r in rules]


#: Decimals kept of a ratio; rulechef's own TrainingDataLogger keeps 4 as well.
METRIC_DIGITS = 4


def ratio(value: Any) -> Any:
    """A metric ratio rounded to :data:`METRIC_DIGITS` decimals; other values as they are."""
    # Full floats cost a trace about a third of its bytes and say nothing more.
    return round(value, METRIC_DIGITS) if isinstance(value, float) else value


def metrics_of(
    result: Any, *, per_class: bool = True, split: str | None = None
) -> dict[str, Any] | None:
    """Turn a rulechef ``EvalResult`` into the trace's metrics dict (ratios to 4 decimals).

    ``split`` names the examples measured: ``dev`` (a holdout), ``train`` (the
    rest of a split data set) or ``all``.
    """
    if result is None:
        return None
    out: dict[str, Any] = {
        "f1": ratio(result.micro_f1),
        "precision": ratio(result.micro_precision),
        "recall": ratio(result.micro_recall),
        "exact_match": ratio(result.exact_match),
        "docs": result.total_docs,
        "failures": len(result.failures or ()),
    }
    if per_class:
        out["per_class"] = [_class_metrics(cm) for cm in result.per_class or ()]
    if split is not None:
        out["split"] = split
    return out


def short_metrics(result: Any, split: str | None = None) -> dict[str, Any] | None:
    """Metrics without the per-class breakdown (for before/after pairs)."""
    return metrics_of(result, per_class=False, split=split)


def _class_metrics(cm: Any) -> dict[str, Any]:
    return {
        "label": cm.label,
        "precision": ratio(cm.precision),
        "recall": ratio(cm.recall),
        "f1": ratio(cm.f1),
        "tp": cm.tp,
        "fp": cm.fp,
        "fn": cm.fn,
    }


def failure_summary(failures: Any, class_metrics: Any) -> dict[str, Any]:
    """Count the failures a patch is asked to fix, per class where rulechef has it.

    ``synthetic`` counts rulechef's own ``feedback_driven`` entries: with
    feedback but no failure, an incremental run hands the patch a few training
    examples as "failures" whose output is already right.
    """
    items = list(failures or ())
    summary: dict[str, Any] = {
        "count": len(items),
        "synthetic": sum(1 for f in items if isinstance(f, dict) and f.get("feedback_driven")),
    }
    if class_metrics:
        summary["per_class"] = {
            cm.label: {"fp": cm.fp, "fn": cm.fn} for cm in class_metrics if cm.fp or cm.fn
        }
    return summary


def labels_of(rules: Iterable[Any]) -> dict[str, int]:
    """Count rules per output label (rulechef's output_template label/type)."""
    counts: dict[str, int] = {}
    for r in rules:
        template = r.output_template if isinstance(r.output_template, dict) else {}
        label = template.get("label") or template.get("type")
        if isinstance(label, str) and not label.startswith("$"):
            counts[label] = counts.get(label, 0) + 1
    return counts


def explain_name_merge(
    existing: list[Any], patches: list[Any], deleted_names: Iterable[str] | None
) -> dict[str, Any]:
    """Describe rulechef's by-name merge of a patch into a rule set.

    rulechef keys rules by name: a patch rule replaces the existing rule of the
    same name, deleted names are dropped, and of several rules sharing a name
    only the last survives ("collapsed").

    Returns:
        ``merged`` (ids after the by-name merge), ``replaced`` ({old, new}
        pairs), ``deleted`` and ``collapsed`` (ids).
    """
    by_name: dict[str, str] = {}
    collapsed: list[str] = []
    for r in existing:
        if r.name in by_name:
            collapsed.append(by_name[r.name])
        by_name[r.name] = r.id
    original = dict(by_name)
    dropped = {n: by_name.pop(n) for n in sorted(deleted_names or ()) if n in by_name}
    patched: dict[str, str] = {}
    for p in patches:
        if p.name in patched:
            collapsed.append(patched[p.name])
        patched[p.name] = p.id
        by_name[p.name] = p.id
    return {
        "merged": list(by_name.values()),
        "replaced": [
            {"old": original[name], "new": rid} for name, rid in patched.items() if name in original
        ],
        "deleted": [rid for name, rid in dropped.items() if name not in patched],
        "collapsed": collapsed,
    }


def explain_audit(
    actions: Iterable[Any], before: list[Any], after_ids: list[str]
) -> dict[str, Any]:
    """Replay rulechef's audit rules on ids to say what was applied, skipped or reverted.

    rulechef applies a merge only when at least two of its ids are known and
    its merged pattern compiles; a merge makes one new rule appended at the
    end. Any applied action changes the rule set, so an unchanged set after
    applied actions means the F1 safety net reverted them.

    Returns:
        ``actions`` (applied), ``skipped`` (with why) and ``reverted``.
    """
    current = {r.id: r for r in before}
    before_ids = set(current)
    new_ids = iter([rid for rid in after_ids if rid not in before_ids])
    applied: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for a in actions:
        ids = list(a.rule_ids or [])
        if a.action == "merge":
            sources = [current[rid] for rid in ids if rid in current]
            why = _merge_skip_reason(ids, sources, a.merged_pattern)
            if why:
                skipped.append(_skipped("merge", ids, before_ids, why))
                continue
            for rid in ids:
                current.pop(rid, None)
            # The merged rule's name is in the event's rule_names; a reverted merge
            # made no rule, and the name an LLM proposed for it stays out.
            applied.append(
                {
                    "action": "merge",
                    "sources": list(dict.fromkeys(r.id for r in sources)),
                    "result": next(new_ids, None),
                }
            )
        elif a.action == "remove":
            known = list(dict.fromkeys(rid for rid in ids if rid in current))
            if not known:
                skipped.append(_skipped("remove", ids, before_ids, "unknown rule ids"))
                continue
            for rid in known:
                current.pop(rid)
            applied.append({"action": "remove", "rules": known})
        else:
            skipped.append(_skipped("other", ids, before_ids, "unknown action"))
    reverted = bool(applied) and set(after_ids) == before_ids
    return {"actions": applied, "skipped": skipped, "reverted": reverted}


def _skipped(action: str, ids: list[str], known: set[str], why: str) -> dict[str, Any]:
    # Ids come from an LLM: only real rule ids may enter the trace.
    return {
        "action": action,
        "rules": [rid for rid in ids if rid in known],
        "unknown_ids": sum(1 for rid in ids if rid not in known),
        "why": why,
    }


def _merge_skip_reason(ids: list[str], sources: list[Any], pattern: str | None) -> str | None:
    if len(ids) < 2 or len(sources) < 2:
        return "fewer than two known rules"
    if pattern:
        try:
            re.compile(pattern)
        except re.error:
            return "merged pattern does not compile"
    return None


#: The label under which classes the dataset does not have are counted.
OTHER = "(other)"


def rule_facts(rule: Any, classes: frozenset[str], counters: bool) -> dict[str, Any]:
    """A rule's plain facts: format, label (a dataset class or "(other)"), priority.

    With ``counters``, also what rulechef measured of it by the end of the run:
    ``precision`` and ``support`` (``validated_precision``/``_support``, null
    when never validated), ``applied``, ``successes``, ``failures``. Never the
    pattern or the code.
    """
    template = rule.output_template if isinstance(rule.output_template, dict) else {}
    label = template.get("label") or template.get("type")
    if isinstance(label, str) and label.startswith("$"):
        label = None  # a variable taken from the match, not a fixed class
    facts: dict[str, Any] = {
        "format": getattr(rule.format, "value", None),
        "label": None if label is None else label if label in classes else OTHER,
        "priority": rule.priority if isinstance(rule.priority, int) else None,
    }
    if counters:
        precision = getattr(rule, "validated_precision", None)
        support = getattr(rule, "validated_support", None)
        facts.update(
            precision=ratio(precision) if isinstance(precision, float) else None,
            support=support if isinstance(support, int) else None,
            applied=rule.times_applied,
            successes=rule.successes,
            failures=rule.failures,
        )
    return facts


def fold_metrics(metrics: dict[str, Any] | None, classes: frozenset[str]) -> dict[str, Any] | None:
    """Fold per-class rows of labels outside ``classes`` into one ``(other)`` row.

    A rule's label is written by the LLM and can quote an input text; when such
    a rule fires, rulechef reports a class of that name. Only the dataset's own
    classes enter a trace; the rest are summed into ``(other)`` (tp/fp/fn, and
    precision/recall/F1 worked out from the sums).
    """
    if not metrics or not metrics.get("per_class"):
        return metrics
    rows = metrics["per_class"]
    if all(row["label"] in classes for row in rows):
        return metrics
    kept = [row for row in rows if row["label"] in classes]
    other = [row for row in rows if row["label"] not in classes]
    counts = {k: sum(row[k] or 0 for row in other) for k in ("tp", "fp", "fn")}
    return {**metrics, "per_class": [*kept, {"label": OTHER, **_ratios(counts), **counts}]}


def _ratios(counts: dict[str, int]) -> dict[str, float]:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": ratio(precision), "recall": ratio(recall), "f1": ratio(f1)}


def fold_failures(summary: dict[str, Any], classes: frozenset[str]) -> dict[str, Any]:
    """Fold a failure summary's per-class keys outside ``classes`` into ``(other)``."""
    per_class = summary.get("per_class")
    if not per_class or all(label in classes for label in per_class):
        return summary
    folded: dict[str, dict[str, int]] = {}
    for label, counts in per_class.items():
        key = label if label in classes else OTHER
        into = folded.setdefault(key, {"fp": 0, "fn": 0})
        into["fp"] += counts.get("fp") or 0
        into["fn"] += counts.get("fn") or 0
    return {**summary, "per_class": folded}
