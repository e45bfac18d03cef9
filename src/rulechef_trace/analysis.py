"""Where lineage, diff and history lived in 0.1.0; they are in :mod:`rulechef_trace.report` now."""

from rulechef_trace.report import (
    History,
    HistoryRow,
    LineageStep,
    MetricDelta,
    RuleLineage,
    RunSummary,
    TraceDiff,
    UnknownRuleError,
    diff,
    history,
    lineage,
    render_diff,
    render_history,
    render_lineage,
    resolve_rule,
    summarize,
)

__all__ = [
    "History",
    "HistoryRow",
    "LineageStep",
    "MetricDelta",
    "RuleLineage",
    "RunSummary",
    "TraceDiff",
    "UnknownRuleError",
    "diff",
    "history",
    "lineage",
    "render_diff",
    "render_history",
    "render_lineage",
    "resolve_rule",
    "summarize",
]
