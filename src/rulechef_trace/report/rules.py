"""Each final rule's report card: :func:`rule_report` (a trace) and :func:`folder_report`.

Questions asked of a trace or a storage folder; they return plain frozen
dataclasses, which :mod:`rulechef_trace.report.rules_text`, the HTML report
and ``rulechef-trace rules --json`` format. The figures are the ones
rulechef keeps on each rule (``validated_precision``, ``validated_support``,
``times_applied``...), as the trace's ``final.rules`` carries them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rulechef_trace.report._plain import Plain
from rulechef_trace.report.kept_runs import history
from rulechef_trace.report.numbers import number, whole
from rulechef_trace.trace import Trace, TraceError, load_trace

__all__ = [
    "LOW_PRECISION",
    "LOW_SUPPORT",
    "RuleCard",
    "RuleReport",
    "extremes",
    "folder_report",
    "rule_report",
]

#: A rule is weak below this precision: it is wrong more often than right.
LOW_PRECISION = 0.5
#: A rule is weak below this support: on 1 to 3 matches even a precision of
#: 100% has a 95% Wilson lower bound under 50%, the bound rulechef's own
#: ranking (``ranking.wilson_lower_bound``) recommends over raw precision.
LOW_SUPPORT = 4

NO_LABEL = "(no label)"


@dataclass(frozen=True)
class RuleCard(Plain):
    """One final rule and what rulechef measured of it.

    Attributes:
        id: The rule's id.
        name: Its name (chosen by an LLM: renderers sanitise it).
        label: The class it outputs (a dataset class, ``(other)``, or
            ``(no label)`` when it takes its label from the match).
        format: ``regex``, ``code`` or ``spacy``.
        priority: rulechef's priority.
        precision: ``validated_precision``: solo precision on the data the
            run validated on (dev when a holdout was used); None when never
            validated.
        support: ``validated_support``: its matches there (tp + fp).
        applied: ``times_applied``; rulechef 0.2 counts it only when code
            calls ``Rule.update_stats``, which its own learning never does.
        successes: ``successes`` (same caveat).
        failures: ``failures`` (same caveat).
        flags: ``low precision``, ``low support``, ``idle`` (support 0:
            matched nothing when rulechef validated it), ``unvalidated``.
        runs: Kept runs in a row, up to the newest, that ended with this
            rule (a folder only; 1 for a single trace).
        since: Start time of the first of those runs (a folder only).
        replaced: How often the rule of this name was replaced by another
            (a new id) between kept runs (a folder only).
    """

    id: str
    name: str
    label: str
    format: str | None
    priority: int | None
    precision: float | None
    support: int | None
    applied: int | None
    successes: int | None
    failures: int | None
    flags: list[str]
    runs: int = 1
    since: str | None = None
    replaced: int = 0


@dataclass(frozen=True)
class RuleReport(Plain):
    """The report card of a run's final rules.

    Attributes:
        dataset: The dataset.
        run_id: The run whose final rules are shown.
        kind: ``learn`` or ``rank_rules``.
        started_at: When that run began.
        source: The trace file or folder read.
        rules: One card per final rule, by label, then strongest first.
        kept_runs: Kept runs read (1 for a single trace).
        churn: Names whose rule was replaced between kept runs, and how often.
        thresholds: ``low_precision`` and ``low_support`` used for the flags.
    """

    dataset: str
    run_id: str
    kind: str
    started_at: str | None
    source: str
    rules: list[RuleCard]
    kept_runs: int = 1
    churn: dict[str, int] | None = None
    thresholds: dict[str, float] | None = None

    @property
    def labels(self) -> list[str]:
        """The labels of the cards, in the order shown."""
        return list(dict.fromkeys(card.label for card in self.rules))


def _flags(precision: float | None, support: int | None) -> list[str]:
    if support is None and precision is None:
        return ["unvalidated"]
    flags = []
    if support == 0:
        return ["idle"]
    if precision is not None and precision < LOW_PRECISION:
        flags.append("low precision")
    if support is not None and support < LOW_SUPPORT:
        flags.append("low support")
    return flags


def _card(rule: Mapping[str, Any]) -> RuleCard:
    precision = number(rule.get("precision"))
    support = whole(rule.get("support"))
    label = rule.get("label")
    fmt = rule.get("format")
    return RuleCard(
        id=str(rule.get("id")),
        name=str(rule.get("name") or rule.get("id")),
        label=label if isinstance(label, str) else NO_LABEL,
        format=fmt if isinstance(fmt, str) else None,
        priority=whole(rule.get("priority")),
        precision=precision,
        support=support,
        applied=whole(rule.get("applied")),
        successes=whole(rule.get("successes")),
        failures=whole(rule.get("failures")),
        flags=_flags(precision, support),
    )


def _strength(card: RuleCard) -> tuple[float, int]:
    return (card.precision if card.precision is not None else -1.0, card.support or 0)


def _ordered(cards: list[RuleCard]) -> list[RuleCard]:
    labels = sorted({c.label for c in cards}, key=lambda lab: (lab.startswith("("), lab))
    out: list[RuleCard] = []
    for label in labels:
        out += sorted((c for c in cards if c.label == label), key=_strength, reverse=True)
    return out


def rule_report(trace: Trace | Mapping[str, Any], source: str = "") -> RuleReport:
    """The report card of one trace's final rules.

    Args:
        trace: A trace (or its dict).
        source: Where it was read from, for the heading.
    """
    trace = trace if isinstance(trace, Trace) else Trace(trace)
    final = trace.get("final") or {}
    rules = [r for r in final.get("rules") or [] if isinstance(r, Mapping)]
    run = trace.run
    return RuleReport(
        dataset=trace.dataset,
        run_id=trace.run_id,
        kind=trace.kind,
        started_at=run.get("started_at") if isinstance(run.get("started_at"), str) else None,
        source=source,
        rules=_ordered([_card(r) for r in rules]),
        thresholds={"low_precision": LOW_PRECISION, "low_support": LOW_SUPPORT},
    )


def load_rule_report(path: str | Path) -> list[RuleReport]:
    """The report card of a trace file, or of each dataset of a storage folder."""
    p = Path(path)
    if p.is_dir():
        return folder_report(p)
    return [rule_report(load_trace(p), str(p))]


def folder_report(storage_dir: str | Path, dataset: str | None = None) -> list[RuleReport]:
    """One report card per dataset of a folder: its newest kept run, with survival and churn.

    Raises:
        TraceError: when the folder has no readable kept run.
    """
    found = history(storage_dir, dataset)
    reports = []
    for name in found.datasets:
        rows = [row for row in found.rows if row.dataset == name]
        traces = [load_trace(row.path) for row in rows]
        reports.append(_with_history(rule_report(traces[-1], str(storage_dir)), traces))
    if not reports:
        raise TraceError("no kept runs here (rules reads <dataset>.traces/*.trace.json)")
    return reports


def _final_names(trace: Trace) -> dict[str, str]:
    """Name -> id of a trace's final rules (the last of a name wins, as in rulechef)."""
    rules = (trace.get("final") or {}).get("rules") or []
    return {str(r.get("name")): str(r.get("id")) for r in rules if isinstance(r, Mapping)}


def _with_history(report: RuleReport, traces: Sequence[Trace]) -> RuleReport:
    finals = [set(t.final_rules) for t in traces]
    churn: dict[str, int] = {}
    previous: dict[str, str] = {}
    for t in traces:
        names = _final_names(t)
        for name, rid in names.items():
            if name in previous and previous[name] != rid:
                churn[name] = churn.get(name, 0) + 1
        previous.update(names)
    cards = []
    for card in report.rules:
        runs = 0
        for ids in reversed(finals):
            if card.id not in ids:
                break
            runs += 1
        first = traces[len(traces) - runs] if runs else None
        since = first.run.get("started_at") if first is not None else None
        cards.append(
            replace(
                card,
                runs=runs,
                since=since if isinstance(since, str) else None,
                replaced=churn.get(card.name, 0),
            )
        )
    return replace(report, rules=cards, kept_runs=len(traces), churn=churn)


def extremes(report: RuleReport, count: int = 3) -> tuple[list[RuleCard], list[RuleCard]]:
    """The strongest and the weakest validated rules, at most ``count`` each, never the same."""
    validated = sorted(
        (c for c in report.rules if c.precision is not None), key=_strength, reverse=True
    )
    shown = min(count, len(validated) // 2)
    return validated[:shown], validated[len(validated) - shown :][::-1] if shown else []
