"""The rule report card as fixed-width text (``rulechef-trace rules``)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from rulechef_trace._text import clean, shorten
from rulechef_trace.report.numbers import DASH, pct
from rulechef_trace.report.rules import LOW_PRECISION, LOW_SUPPORT, RuleCard, RuleReport

__all__ = ["card_brief", "render_rule_reports"]

_RULE = "=" * 78


def _value(value: int | None) -> str:
    return DASH if value is None else str(value)


def _row(card: RuleCard, folder: bool) -> str:
    line = (
        f"    {shorten(card.name, 30):<30} {clean(card.format or DASH):<6}"
        f"{_value(card.priority):>5} {pct(card.precision):>7} {_value(card.support):>6}"
    )
    if folder:
        line += f" {card.runs:>5} {card.replaced:>5}"
    if card.flags:
        line += "  " + ", ".join(card.flags).upper()
    return line


def _report_lines(report: RuleReport) -> list[str]:
    folder = report.kept_runs > 1 or report.churn is not None
    head = (
        f"RULE REPORT CARD  {shorten(report.dataset, 30)}  "
        f"({clean(report.kind)} run {shorten(report.run_id, 8, marker='')}, "
        f"{len(report.rules)} final rules)"
    )
    lines = [_RULE, head, _RULE]
    if folder:
        lines.append(f"  Kept runs read: {report.kept_runs}, newest shown")
    columns = f"    {'rule':<30} {'format':<6}{'prio':>5} {'prec':>7} {'supp':>6}"
    if folder:
        columns += f" {'runs':>5} {'repl':>5}"
    lines += ["", columns, "  " + "-" * 76]
    # (the summary follows the table after one blank line)
    for label in report.labels:
        cards = [c for c in report.rules if c.label == label]
        lines.append(f"  {shorten(label, 40)} ({len(cards)})")
        lines += [_row(c, folder) for c in cards]
    lines.append("")
    for note in _summary(report, folder):
        lines += textwrap.wrap(note, 78, initial_indent="  ", subsequent_indent="    ")
    lines.append(_RULE)
    return lines


def _summary(report: RuleReport, folder: bool) -> list[str]:
    weak = sum(1 for c in report.rules if {"low precision", "low support"} & set(c.flags))
    idle = sum(1 for c in report.rules if "idle" in c.flags)
    lines = [
        f"{weak} weak (precision under {LOW_PRECISION:.0%} or support under {LOW_SUPPORT}),"
        f" {idle} idle (support 0: matched nothing when rulechef validated it)",
        "prec/supp: rulechef's validated_precision/_support, measured at the end of refinement.",
    ]
    applied = [c for c in report.rules if c.applied]
    if applied:
        lines.append(f"{len(applied)} rules have times_applied counts (from Rule.update_stats).")
    if folder:
        churned = report.churn or {}
        lines.append(
            f"runs: kept runs in a row ending with the rule; repl: times its name got a new"
            f" rule ({sum(churned.values())} replacements over {len(churned)} names)."
        )
    return lines


def render_rule_reports(reports: Sequence[RuleReport]) -> str:
    """The report cards as text, one after another."""
    lines: list[str] = []
    for report in reports:
        lines += _report_lines(report)
    return "\n".join(lines) + "\n"


def card_brief(card: RuleCard) -> str:
    """``name (P 87.5%, support 8)`` for a one-line mention."""
    return f"{shorten(card.name, 28)} (P {pct(card.precision)}, support {_value(card.support)})"
