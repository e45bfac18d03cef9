"""The read layer's reports: the story, lineage, diff, history and the HTML page.

Questions (:func:`lineage`, :func:`lineage_across_runs`, :func:`diff`,
:func:`summarize`, :func:`history`)
return plain frozen dataclasses; the ``render_*`` functions format them.
Every event type is described once (:mod:`rulechef_trace.report.describe`),
for the text story and the HTML alike.
"""

from rulechef_trace.report.across_runs import (
    AcrossLineage,
    RuleAcross,
    RunStep,
    lineage_across_runs,
    render_lineage_across,
)
from rulechef_trace.report.ancestry import (
    LineageStep,
    RuleLineage,
    UnknownRuleError,
    lineage,
    resolve_rule,
)
from rulechef_trace.report.answers import render_diff, render_history, render_lineage
from rulechef_trace.report.compare import MetricDelta, RunSummary, TraceDiff, diff, summarize
from rulechef_trace.report.html import render_html, write_html
from rulechef_trace.report.kept_runs import History, HistoryRow, history
from rulechef_trace.report.text import print_trace, render_trace

__all__ = [
    "AcrossLineage",
    "History",
    "HistoryRow",
    "LineageStep",
    "MetricDelta",
    "RuleAcross",
    "RuleLineage",
    "RunStep",
    "RunSummary",
    "TraceDiff",
    "UnknownRuleError",
    "diff",
    "history",
    "lineage",
    "lineage_across_runs",
    "print_trace",
    "render_diff",
    "render_history",
    "render_html",
    "render_lineage",
    "render_lineage_across",
    "render_trace",
    "resolve_rule",
    "summarize",
    "write_html",
]
