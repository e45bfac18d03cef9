"""A trace as a fixed-width, step-by-step story (rulechef's report style).

The words come from :mod:`rulechef_trace.report.describe`, which the HTML
report shares; this module only lays them out in 78 columns. Every name and
label passes through :mod:`rulechef_trace._text`, so nothing an LLM chose can
drive the terminal.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from rulechef_trace._text import clean, shorten
from rulechef_trace.report.describe import ODD, Line, Name, describe, story
from rulechef_trace.report.llm import calls_line
from rulechef_trace.report.numbers import DASH, known, number, pct, seconds, whole
from rulechef_trace.report.rules import extremes, rule_report
from rulechef_trace.report.rules_text import card_brief
from rulechef_trace.report.task_metrics import breakdown_title, headline, task_type
from rulechef_trace.trace import Trace, load_trace

__all__ = [
    "WIDTH",
    "event_lines",
    "footer_lines",
    "header_lines",
    "pct",
    "print_trace",
    "render_line",
    "render_trace",
]

WIDTH = 78
_RULE = "=" * WIDTH


def render_line(line: Line) -> str:
    """One line of parts as terminal text: names sanitised and cut to their width."""
    return "".join(
        shorten(part.value, part.width) if isinstance(part, Name) else clean(part) for part in line
    )


def _row_lines(event: Mapping[str, Any], lines: tuple[Line, ...]) -> list[str]:
    t = number(event.get("t"))
    clock = f"{t:.1f}s" if t is not None else ""
    rules = event.get("rules_after")
    count = str(len(rules)) if isinstance(rules, list) else ""
    prefix = clean(f"{event.get('seq', '?'):>3} {clock:>6} {count:>5}  ")
    detail = " " * (len(prefix) + 2)
    out: list[str] = []
    for index, line in enumerate(lines):
        lead = prefix if index == 0 else detail
        out += textwrap.wrap(
            render_line(line), WIDTH, initial_indent=lead, subsequent_indent=detail
        ) or [lead]
    return out


def event_lines(trace: Trace, event: Mapping[str, Any]) -> list[str]:
    """The story's lines for one event (none when it says nothing), as the live view prints them."""
    step = describe(trace, event)
    return _row_lines(event, step.lines) if step.lines else []


def _finished(trace: Trace) -> bool:
    return trace.status != "incomplete"


def header_lines(trace: Trace) -> list[str]:
    """The banner: dataset, kind, status, duration, task, coordinator, start, run id."""
    run = trace.run
    coordinator = run.get("coordinator")
    coordinator = coordinator.get("class") if isinstance(coordinator, dict) else None
    state = (
        f"{clean(trace.status)}, {seconds(run.get('duration_s'))}"
        if _finished(trace)
        else "still running, or stopped before its end"
    )
    return [
        _RULE,
        f"RULECHEF TRACE  {shorten(known(run.get('dataset')), 40)}  "
        f"({clean(known(run.get('kind')))}, {state})",
        _RULE,
        f"  Task: {shorten(known(run.get('task')), 30)} ({clean(known(run.get('task_type')))})   "
        f"coordinator: {shorten(coordinator or DASH, 30)}",
        f"  Started {clean(known(run.get('started_at')))}   "
        f"rulechef {clean(known(run.get('rulechef_version')))}"
        f"   run {shorten(known(run.get('id')), 12, marker='')}",
        *([clean(line)] if (line := calls_line(trace)) else []),
        "",
        f"{'seq':>3} {'time':>6} {'rules':>5}  step",
        "-" * WIDTH,
    ]


def _metric_lines(metrics: Mapping[str, Any], kind: str) -> list[str]:
    lines = [f"    {breakdown_title(kind)}:"] if metrics.get("per_class") else []
    for cm in metrics.get("per_class") or []:
        if isinstance(cm, Mapping):
            lines.append(
                f"    {shorten(str(cm.get('label')), 24):<24} F1 {pct(cm.get('f1')):>6}  "
                f"P {pct(cm.get('precision')):>6}  R {pct(cm.get('recall')):>6}"
            )
    return lines


def footer_lines(trace: Trace) -> list[str]:
    """The final rules and metrics, or, for a run still going, the rules so far."""
    final = trace.get("final") or {}
    metrics = final.get("metrics") or {}
    rules = [r for r in final.get("rules") or [] if isinstance(r, Mapping)]
    if _finished(trace):
        lines = ["", f"  Final: {len(rules)} rules"]
    else:
        lines = [
            "",
            "  Not finished: no finalized event (still running, or stopped before its end).",
            f"  Rules so far: {len(rules)}",
        ]
    metrics = _kept(trace, metrics)
    kind = task_type(trace.run)
    if metrics:
        lines[-1] += f"   {headline(kind, metrics)}"
        lines += _metric_lines(metrics, kind)
    for rule in rules:
        lines.append(
            f"    - {shorten(str(rule.get('name')), 40):<40} {clean(known(rule.get('id')))}"
        )
    lines += _extreme_lines(trace)
    error = trace.run.get("error")
    if isinstance(error, Mapping):
        lines.append(f"  Error: {clean(error.get('type'))}: {clean(error.get('message'))}")
    lines.append(_RULE)
    return lines


def _kept(trace: Trace, metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    # rulechef's empty EvalResult (0 documents): the kept rules' iteration metrics instead.
    if metrics and not whole(metrics.get("docs")):
        for event in reversed(trace.events_of("refined")):
            measured = event.get("kept_measured")
            if isinstance(measured, Mapping) and isinstance(measured.get("metrics"), Mapping):
                found: Mapping[str, Any] = measured["metrics"]
                return found
    return metrics


def _extreme_lines(trace: Trace) -> list[str]:
    strongest, weakest = extremes(rule_report(trace))
    if not strongest:
        return []
    return [
        "  Strongest (validated precision, then support):",
        *(f"    + {card_brief(c)}" for c in strongest),
        "  Weakest:",
        *(f"    - {card_brief(c)}" for c in weakest),
        "  (rulechef-trace rules PATH: every rule's report card)",
    ]


def render_trace(trace: Trace | Mapping[str, Any]) -> str:
    """Return the step-by-step story of a trace as text (no colour)."""
    trace = trace if isinstance(trace, Trace) else Trace(trace)
    try:
        lines = header_lines(trace)
    except ODD:
        lines = [_RULE, "RULECHEF TRACE (header unreadable)", _RULE]
    for row in story(trace):
        lines += _row_lines(row.event, row.lines)
    try:
        lines += footer_lines(trace)
    except ODD:
        lines += ["", "  Final: unreadable", _RULE]
    return "\n".join(clean(line) for line in lines) + "\n"


def print_trace(
    trace_or_path: Trace | Mapping[str, Any] | str | Path, file: IO[str] | None = None
) -> None:
    """Print a trace's story: a trace object or the path of a trace file.

    Args:
        trace_or_path: A :class:`~rulechef_trace.Trace` (or its dict) or a path
            to a ``.trace.json`` / ``.trace.jsonl`` file.
        file: Where to print; standard output by default.

    Raises:
        TraceError: when the path cannot be read as a trace.
    """
    if isinstance(trace_or_path, (str, Path)):
        trace_or_path = load_trace(trace_or_path)
    (file or sys.stdout).write(render_trace(trace_or_path))
