"""The answers of lineage, diff and history as fixed-width text, in the story's style.

Only formatting: the questions are :mod:`rulechef_trace.report.ancestry`,
:mod:`~rulechef_trace.report.compare` and :mod:`~rulechef_trace.report.kept_runs`.
Every name, label, dataset and file name passes through
:mod:`rulechef_trace._text` before it reaches the text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rulechef_trace._text import clean, shorten
from rulechef_trace.report.ancestry import RuleLineage
from rulechef_trace.report.compare import MetricDelta, TraceDiff
from rulechef_trace.report.kept_runs import History, HistoryRow
from rulechef_trace.report.llm import cost_text, tokens_text
from rulechef_trace.report.numbers import DASH, known, number, pct, whole
from rulechef_trace.trace import Trace

__all__ = ["render_diff", "render_history", "render_lineage"]

WIDTH = 78
_NAME = 30
_DEEPEST = 6  # indentation stops growing here; deeper ancestors are still listed


def _banner(title: str, *lines: str) -> list[str]:
    return ["=" * WIDTH, title, "=" * WIDTH, *lines]


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [first.rstrip()]


def _seconds(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


# -- lineage ---------------------------------------------------------------------


def render_lineage(
    trace: Trace,
    lineages: Sequence[RuleLineage],
    created_by: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Render lineages as text: each rule's events, then its ancestors', indented.

    Args:
        trace: The trace the lineages come from (for the header).
        lineages: What :func:`~rulechef_trace.report.ancestry.lineage` returned.
        created_by: For rules carried in: the kept run that created each
            (:func:`~rulechef_trace.report.across_runs.history_beside`); a
            rule's own ``created_by`` is shown when this has none for it.
    """
    run = trace.run
    title = (
        f"RULECHEF LINEAGE  {shorten(known(run.get('dataset')), 40)}  "
        f"({clean(known(run.get('kind')))}, "
        f"{clean(trace.status)}, {_plural(len(lineages), 'rule')})"
    )
    lines = _banner(
        title,
        f"  Run {shorten(known(run.get('id')), 12, marker='')}   "
        f"started {clean(known(run.get('started_at')))}",
    )
    for item in lineages:
        lines.append("")
        lines += _lineage_lines(item, created_by or {})
    lines += ["", "=" * WIDTH]
    return "\n".join(lines) + "\n"


def _lineage_lines(root: RuleLineage, created_by: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    stack: list[tuple[RuleLineage, int, str | None]] = [(root, 0, None)]
    while stack:  # iterative: ancestry may be thousands of merges deep
        item, depth, via = stack.pop()
        lines += _rule_lines(item, depth, via)
        maker = None if item.shown_above else created_by.get(item.rule_id) or item.created_by
        if maker is not None:
            pad = "  " * (depth + 2)
            lines += _wrap(
                f"created by run {clean(maker.get('run'))} ({clean(maker.get('kind'))}, "
                f"started {clean(known(maker.get('started_at')))}), step #{maker.get('seq')}: "
                f"{clean(maker.get('text'))}",
                pad,
                pad + "  ",
            )
        relation = "replaced" if item.relation == "replaced" else "merged from"
        deeper = min(depth + 1, _DEEPEST)
        stack.extend((parent, deeper, f"└ {relation}") for parent in reversed(item.parents))
    return lines


def _rule_lines(item: RuleLineage, depth: int, via: str | None) -> list[str]:
    pad = "  " * (depth + 1)
    status = "final rule" if item.final else "not in the final rules"
    head = f"{via} " if via else ""
    name = f"{shorten(item.name, _NAME)} ({clean(item.rule_id)})"
    lines = _wrap(f"{head}{name} — {status}", pad, pad + "  ")
    if item.shown_above:
        return [*lines, f"{pad}  (its story is told above)"]
    for step in item.steps:
        lines += _wrap(clean(step.text), f"{pad}  #{step.seq:<4}", pad + " " * 7)
    if not item.steps:
        lines.append(f"{pad}  (no event of this trace mentions it)")
    return lines


# -- diff ------------------------------------------------------------------------


def render_diff(result: TraceDiff, labels: tuple[str, str] = ("A", "B")) -> str:
    """Render a :class:`~rulechef_trace.report.compare.TraceDiff` as two columns and name lists.

    Args:
        result: What :func:`~rulechef_trace.report.compare.diff` returned.
        labels: How to name the two runs (e.g. their file paths).
    """
    a, b = result.a, result.b
    lines = _banner(
        f"RULECHEF DIFF  {shorten(a.dataset, 24)} ({clean(a.kind)})  vs  "
        f"{shorten(b.dataset, 24)} ({clean(b.kind)})"
    )
    for tag, label, s in (("A", labels[0], a), ("B", labels[1], b)):
        lines += [
            f"  {tag}  {clean(label)}",
            f"     run {shorten(s.run_id, _RUN, marker='')}, started {clean(known(s.started_at))}"
            f", metrics on {clean(s.split or DASH)}",
        ]
    lines += ["", f"  {'':<20}{'A':>14}{'B':>14}{'change':>12}"]
    lines += _diff_rows(result)
    lines += _names_block("Rules only in A", result.only_a)
    lines += _names_block("Rules only in B", result.only_b)
    lines += _names_block("Rules in both", result.both)
    lines += _names_block("Rules changed (same name, new id)", result.changed)
    return _closed(lines, result.notes)


def _diff_rows(result: TraceDiff) -> list[str]:
    a, b = result.a, result.b
    rows = [
        _row(
            "status",
            shorten(a.status, 20),
            shorten(b.status, 20),
            "same" if a.status == b.status else "changed",
        ),
        _row(
            "duration",
            _seconds(a.duration_s),
            _seconds(b.duration_s),
            _signed(_minus(b.duration_s, a.duration_s), "{:+.2f}s"),
        ),
        _count_row("iterations", a.iterations, b.iterations),
        _count_row("final rules", a.rules, b.rules),
        _count_row("patches accepted", a.accepted, b.accepted),
        _count_row("patches rejected", a.rejected, b.rejected),
        _count_row("patches empty", a.empty, b.empty),
        *_llm_rows(a.llm, b.llm),
    ]
    rows += [_metric_row(m.name, m) for m in result.metrics]
    if result.per_class:
        rows.append("  F1 per label")
        rows += [_metric_row("  " + shorten(m.name, 18), m) for m in result.per_class]
    return rows


def _llm_rows(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[str]:
    """LLM calls, tokens, time and cost of both runs (none for traces without them)."""
    if a is None and b is None:
        return []
    a, b = a or {}, b or {}
    rows = [
        _count_row("LLM calls", whole(a.get("calls")), whole(b.get("calls"))),
        _count_row("LLM calls failed", whole(a.get("errors")), whole(b.get("errors"))),
        _count_row("tokens in", whole(a.get("input_tokens")), whole(b.get("input_tokens"))),
        _count_row("tokens out", whole(a.get("output_tokens")), whole(b.get("output_tokens"))),
        _row(
            "LLM time",
            _seconds(number(a.get("duration_s"))),
            _seconds(number(b.get("duration_s"))),
            _signed(_minus(number(b.get("duration_s")), number(a.get("duration_s"))), "{:+.2f}s"),
        ),
    ]
    costs = [cost_text(a.get("cost")), cost_text(b.get("cost"))]
    if any(costs):
        rows.append(_row("LLM cost", costs[0] or DASH, costs[1] or DASH, ""))
    return rows


def _row(name: str, a: str, b: str, change: str) -> str:
    return f"  {name:<20}{a:>14}{b:>14}{change:>12}".rstrip()


def _count_row(name: str, a: int | None, b: int | None) -> str:
    shown = [DASH if v is None else str(v) for v in (a, b)]
    return _row(name, shown[0], shown[1], _signed(_minus(b, a), "{:+d}"))


def _metric_row(name: str, m: MetricDelta) -> str:
    change = _signed(m.delta * 100 if m.delta is not None else None, "{:+.1f} pp")
    return _row(name, pct(m.a), pct(m.b), change)


def _minus(b: float | None, a: float | None) -> Any:
    return b - a if a is not None and b is not None else None


def _signed(value: Any, template: str) -> str:
    return DASH if value is None else template.format(value)


def _names_block(title: str, names: list[str]) -> list[str]:
    lines = ["", f"  {title} ({len(names)}):"]
    if names:
        lines += _wrap(", ".join(shorten(n, 60) for n in names), "    ", "    ")
    return lines


# -- history ---------------------------------------------------------------------

_HISTORY_HEAD = (
    f"  {'started (UTC)':<16} {'run':<12} {'kind':<11} {'examples':>8}  {'split':<5} "
    f"{'rules':>5} {'F1':>6} {'ΔF1':>5}"
)
_RUN = 12  # run ids are shown at this length everywhere


def render_history(result: History) -> str:
    """Render a :class:`~rulechef_trace.report.kept_runs.History`: a table per dataset, F1 trend."""
    datasets = result.datasets
    title = (
        f"RULECHEF HISTORY  ({_plural(len(result.rows), 'run')}, "
        f"{_plural(len(datasets), 'dataset')})"
    )
    lines = _banner(title, f"  Storage: {clean(result.storage_dir)}")
    if not result.rows:
        lines += ["", "  No kept runs found (<dataset>.traces/*.trace.json)."]
    for name in datasets:
        lines += ["", f"  {shorten(name, 60)}", _HISTORY_HEAD, "  " + "-" * (WIDTH - 4)]
        rows = [row for row in result.rows if row.dataset == name]
        table, why = _history_lines(rows)
        lines += table + _history_llm(rows)
        for line in why:
            lines += _wrap(line, "  note: ", "        ")
    return _closed(lines, result.notes)


def _closed(lines: list[str], notes: Sequence[str]) -> str:
    """The answer's lines, its notes (sanitised, wrapped), and the closing rule."""
    if notes:
        lines.append("")
        for note in notes:
            lines += _wrap(clean(note), "  note: ", "        ")
    lines += ["", "=" * WIDTH]
    return "\n".join(lines) + "\n"


def _history_lines(rows: Iterable[HistoryRow]) -> tuple[list[str], list[str]]:
    """The table lines of one dataset's runs, and notes on F1 changes not worked out."""
    lines, notes = [], set()
    previous: HistoryRow | None = None
    for row in rows:
        change = DASH
        if row.f1 is not None:
            unlike = _unlike(previous, row)
            if previous is not None and previous.f1 is not None and unlike is None:
                change = f"{(row.f1 - previous.f1) * 100:+.1f}"
            elif previous is not None and unlike is not None:
                notes.add(unlike)
            previous = row
        date = shorten((row.started_at or DASH).replace("T", " "), 16, marker="")
        kind = row.kind if row.status == "completed" else f"{row.kind}:{row.status}"
        examples = DASH if row.examples is None else str(row.examples)
        examples += "*" if row.data_changed else " "
        lines.append(
            f"  {date:<16} {shorten(row.run_id, _RUN, marker=''):<12} {shorten(kind, 11):<11} "
            f"{examples:>9} {shorten(row.split or DASH, 5):<5} {row.rules:>5} "
            f"{pct(row.f1):>6} {change:>5}"
        )
    return lines, sorted(notes)


def _history_llm(rows: Sequence[HistoryRow]) -> list[str]:
    """One line per run that called the LLM: calls, failures, time, tokens, cost."""
    called = [row for row in rows if row.llm and whole(row.llm.get("calls"))]
    if not called:
        return []
    lines = [
        "",
        f"  {'LLM per run':<16} {'run':<12} {'calls':>5} {'failed':>6}  time, tokens, cost",
    ]
    for row in called:
        llm = row.llm or {}
        parts = [_seconds(number(llm.get("duration_s"))), tokens_text(llm)]
        cost = cost_text(llm.get("cost"))
        lines.append(
            f"  {'':<16} {shorten(row.run_id, _RUN, marker=''):<12} "
            f"{whole(llm.get('calls')) or 0:>5} {whole(llm.get('errors')) or 0:>6}  "
            + ", ".join(parts + ([cost] if cost else []))
        )
    return lines


def _unlike(previous: HistoryRow | None, row: HistoryRow) -> str | None:
    """Why ``row``'s F1 cannot be compared with ``previous``'s, or None when it can."""
    if previous is None:
        return None
    if previous.split != row.split:
        return "ΔF1 is shown only between runs measured on the same split (train, dev, all)"
    if row.data_changed or previous.examples != row.examples:
        return "* the examples changed: ΔF1 is not worked out across a change of data"
    return None
