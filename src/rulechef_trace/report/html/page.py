"""A self-contained HTML report of a trace, or of every kept run of a storage folder.

One file, no network: the stylesheet (``report.css``, package data) inlined,
hand-written inline SVG (:mod:`rulechef_trace.report.html.charts`), no
JavaScript, and a Content-Security-Policy that forbids loading anything. The
step list says what the text story says (both render
:mod:`rulechef_trace.report.describe`). Every string from a trace is sanitised
and HTML-escaped.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rulechef_trace._text import clean, shorten
from rulechef_trace.recorder import write_atomic
from rulechef_trace.report.ancestry import RuleLineage, lineage
from rulechef_trace.report.describe import Line, Name, kept_metrics, story
from rulechef_trace.report.html.charts import (
    history_chart,
    iteration_chart,
    rule_count_chart,
    rule_counts,
)
from rulechef_trace.report.kept_runs import History, HistoryRow, history
from rulechef_trace.report.llm import cost_text, run_llm, tokens_text
from rulechef_trace.report.numbers import DASH, known, number, pct, seconds
from rulechef_trace.report.rules import (
    LOW_PRECISION,
    LOW_SUPPORT,
    RuleReport,
    folder_report,
    rule_report,
)
from rulechef_trace.report.task_metrics import exact, has_f1, task_type
from rulechef_trace.trace import Trace, TraceError, load_trace

__all__ = ["render_html", "write_html"]

logger = logging.getLogger("rulechef_trace")

Source = str | Path | Trace | Mapping[str, Any]

_EXPANDED_RULES = 8  # lineages start folded when a run ends with more rules than this
_DEEPEST = 6  # lineage indentation stops growing here
_NAME = 120  # characters of a name shown (a 10 kB name from an LLM is cut)
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _e(value: Any) -> str:
    """Sanitise and escape any value for HTML text and attribute values."""
    return html.escape(clean(value), quote=True)


def _name(value: Any) -> str:
    return html.escape(shorten(value, _NAME), quote=True)


def _line(line: Line) -> str:
    return "".join(_name(p.value) if isinstance(p, Name) else _e(p) for p in line)


def _or_dash(value: Any) -> str:
    return str(known(value))


@functools.lru_cache(maxsize=1)
def _css() -> str:
    return (
        resources.files("rulechef_trace.report.html")
        .joinpath("report.css")
        .read_text(encoding="utf-8")
    )


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def render_html(source: Source) -> str:
    """Return the HTML report of a trace, or the history page of a storage folder.

    Args:
        source: A trace file (``.trace.json`` or ``.trace.jsonl``), a
            :class:`~rulechef_trace.Trace` (or its dict), a storage folder
            (every dataset's kept runs) or one ``<dataset>.traces`` folder.

    Returns:
        One self-contained HTML document.

    Raises:
        TraceError: when the source cannot be read, or a folder holds no kept run.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _history_page(_load_history(path))
        return _trace_page(load_trace(path))
    return _trace_page(source if isinstance(source, Trace) else Trace(source))


def write_html(source: Source, output: str | Path | None = None) -> Path:
    """Write :func:`render_html` of ``source`` to a file, atomically.

    Args:
        source: As for :func:`render_html`.
        output: The file to write. By default next to the source: the trace
            file with an ``.html`` suffix (``reviews.trace.html``),
            ``history.html`` inside a storage folder, ``<dataset>.traces.html``
            next to a ``<dataset>.traces`` folder.

    Returns:
        The path written.

    Raises:
        TraceError: when the source cannot be read.
        ValueError: when ``source`` is a trace object and no ``output`` is given.
        OSError: when the file cannot be written.
    """
    target = Path(output) if output is not None else _default_output(source)
    write_atomic(target, render_html(source).encode("utf-8"))
    logger.debug("rulechef_trace: wrote HTML report %s", target)
    return target


def _default_output(source: Source) -> Path:
    if not isinstance(source, (str, Path)):
        raise ValueError("write_html needs an output path when the source is a trace object")
    path = Path(source)
    if path.is_dir():
        if path.name.endswith(".traces"):
            return path.with_name(path.name + ".html")
        return path / "history.html"
    return path.with_suffix(".html")


# ---------------------------------------------------------------------------
# Page frame
# ---------------------------------------------------------------------------


def _page(title: str, body: Iterable[str]) -> str:
    from rulechef_trace import __version__  # the package is fully imported by now

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="rulechef-trace">',
            f"<title>{_e(title)}</title>",
            f"<style>{_css()}</style>",
            "</head>",
            "<body><main>",
            *body,
            f"<footer>Generated by rulechef-trace {_e(__version__)}. "
            "Ids, counts and metrics only: no input text, patterns or prompts.</footer>",
            "</main></body>",
            "</html>",
            "",
        ]
    )


def _badge(text: Any, kind: Any = None) -> str:
    return f'<span class="badge {_e(kind if kind is not None else text)}">{_e(text)}</span>'


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _table(css: str, head: str, rows: Iterable[str]) -> str:
    return (
        f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )


# ---------------------------------------------------------------------------
# Single trace
# ---------------------------------------------------------------------------


def _trace_page(trace: Trace) -> str:
    run = trace.run
    dataset, kind = shorten(_or_dash(run.get("dataset")), 60), _or_dash(run.get("kind"))
    title = f"rulechef trace · {dataset} · {kind}"
    body = [
        *_run_header(trace),
        "<h2>F1 and precision per iteration</h2>",
        iteration_chart(trace),
        "<h2>Rules after every step</h2>",
        rule_count_chart(trace),
        "<h2>Steps</h2>",
        _step_table(trace),
        "<h2>Final rules and their lineage</h2>" if _finished(trace) else "<h2>Rules so far</h2>",
        _lineage_section(trace),
        *_rule_card_section(rule_report(trace)),
        *_per_class_section(trace),
    ]
    return _page(title, body)


def _rule_card_section(report: RuleReport) -> list[str]:
    """The report card of the final rules: quality, flags, survival (the CLI's ``rules``)."""
    if not report.rules:
        return []
    folder = report.churn is not None
    # Columns of class "opt" give way on a phone; rule, precision, support and flags stay.
    head = (
        '<th class="opt">label</th><th>rule</th><th class="opt">format</th>'
        '<th class="num opt">priority</th><th class="num">precision</th>'
        '<th class="num">support</th>'
        + ('<th class="num opt">runs</th><th class="num opt">replaced</th>' if folder else "")
        + "<th>flags</th>"
    )
    rows = []
    for c in report.rules:
        cells = [("opt", _or_dash(c.priority)), ("", pct(c.precision)), ("", _or_dash(c.support))]
        cells += [("opt", str(c.runs)), ("opt", str(c.replaced))] if folder else []
        rows.append(
            f'<tr><td class="opt">{_name(c.label)}</td><td>{_name(c.name)}</td>'
            f'<td class="opt">{_e(_or_dash(c.format))}</td>'
            + "".join(f'<td class="num {css}">{_e(v)}</td>' for css, v in cells)
            + f"<td>{''.join(_badge(f, 'weak') for f in c.flags)}</td></tr>"
        )
    note = (
        f'<p class="muted">weak: precision under {LOW_PRECISION:.0%} or support under '
        f"{LOW_SUPPORT}; idle: support 0 (matched nothing when rulechef validated it)</p>"
    )
    return ["<h2>Rule report card</h2>" + _table("narrow cards-of-rules", head, rows) + note]


def _finished(trace: Trace) -> bool:
    return trace.status != "incomplete"


def _run_header(trace: Trace) -> list[str]:
    run = trace.run
    coordinator = run.get("coordinator")
    coordinator = coordinator.get("class") if isinstance(coordinator, dict) else None
    meta = [
        f"task {_or_dash(run.get('task'))} ({_or_dash(run.get('task_type'))})",
        f"rulechef {_or_dash(run.get('rulechef_version'))}",
        f"coordinator {_or_dash(coordinator)}",
        f"started {_or_dash(run.get('started_at'))}",
        f"run {str(_or_dash(run.get('id')))[:12]}",
    ]
    lines = [
        f"<h1>RULECHEF TRACE <small>{_name(_or_dash(run.get('dataset')))}</small></h1>",
        f'<p class="meta">{_badge(_or_dash(run.get("kind")), "kind")} {_badge(trace.status)} '
        + "".join(f"<span>{_e(m)}</span>" for m in meta)
        + "</p>",
    ]
    if not _finished(trace):
        lines.append(
            '<p class="notice"><b>Still running, or stopped before its end</b>: the trace has '
            "no finalized event yet. The numbers below are those so far.</p>"
        )
    lines.append(_cards(trace))
    error = run.get("error")
    if isinstance(error, dict):
        lines.append(
            f'<p class="error"><b>{_e(error.get("type"))}</b>: {_e(error.get("message"))}</p>'
        )
    return lines


def _latest_f1(trace: Trace) -> Any:
    for event in reversed(trace.events_of("iteration_evaluated")):
        metrics = event.get("metrics")
        if isinstance(metrics, Mapping) and number(metrics.get("f1")) is not None:
            return metrics.get("f1")
    return None


def _llm_cards(trace: Trace) -> list[str]:
    summary = run_llm(trace)
    if not summary or not summary.get("calls"):
        return []
    errors = summary.get("errors") or 0
    cards = [
        _card(f"{summary['calls']}" + (f" ({errors} failed)" if errors else ""), "LLM calls"),
        _card(seconds(summary.get("duration_s")), "LLM time"),
        _card(tokens_text(summary).replace(" tokens", ""), "tokens in → out"),
    ]
    cost = cost_text(summary.get("cost"))
    if cost:
        cards.append(_card(cost, "LLM cost"))
    return cards


def _cards(trace: Trace) -> str:
    metrics = _kept_final(trace)
    start = trace.events[0].get("rules") if trace.events else None
    start = start if isinstance(start, list) else []
    outcomes = [e.get("outcome") for e in trace.events_of("patch_decided")]
    finished = _finished(trace)
    kind = task_type(trace.run)
    if has_f1(kind, metrics):
        quality = [
            _card(
                pct(metrics.get("f1") if finished else _latest_f1(trace)),
                "final F1" if finished else "F1 so far",
            ),
            _card(pct(metrics.get("precision")), "precision"),
            _card(pct(metrics.get("recall")), "recall"),
            _card(pct(metrics.get("exact_match")), "exact match"),
        ]
    else:  # a transformation with no list output: rulechef's F1 counts nothing
        quality = [_card(exact(metrics).removeprefix("exact "), "exact match")]
    cards = [
        *quality,
        _card(
            f"{len(start)} → {len(trace.final_rules)}",
            "rules start → final" if finished else "rules start → now",
        ),
        _card(str(len(trace.events_of("iteration_evaluated"))), "iterations"),
        _card(
            f"{outcomes.count('accepted')} / {outcomes.count('rejected')} / "
            f"{len(outcomes) - outcomes.count('accepted') - outcomes.count('rejected')}",
            "patches acc. / rej. / no change",
        ),
        _card(seconds(trace.run.get("duration_s")) if finished else "running", "duration"),
        *_llm_cards(trace),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _kept_final(trace: Trace) -> Mapping[str, Any]:
    metrics = trace.final_metrics or {}
    if metrics and not metrics.get("docs"):
        refined = trace.events_of("refined")
        if refined:
            return kept_metrics(refined[-1])
    return metrics


def _step_table(trace: Trace) -> str:
    counts = {id(event): count for event, count in rule_counts(trace)}
    head = (
        '<th class="num">seq</th><th class="num">time</th><th class="num">rules</th>'
        '<th class="type">step</th><th>what happened</th>'
    )
    rows = []
    for row in story(trace):
        event = row.event
        t = number(event.get("t"))
        text = "".join(
            f"<div>{_line(line)}</div>" if n == 0 else f'<div class="detail">{_line(line)}</div>'
            for n, line in enumerate(row.lines)
        )
        rows.append(
            f'<tr class="{_e(row.outcome)}"><td class="num">{_e(event.get("seq"))}</td>'
            f'<td class="num">{"" if t is None else f"{t:.2f}s"}</td>'
            f'<td class="num">{counts.get(id(event), "")}</td>'
            f'<td class="type">{_e(event.get("type"))}</td><td>{text}</td></tr>'
        )
    return _table("steps", head, rows)


# -- lineage and per-class metrics ----------------------------------------------


def _lineage_section(trace: Trace) -> str:
    if not trace.final_rules:
        return '<p class="muted">The run ended without rules.</p>'
    try:
        lineages = lineage(trace)
    except TraceError as exc:
        return f'<p class="muted">Lineage unavailable: {_e(exc.problem)}</p>'
    expand = len(lineages) <= _EXPANDED_RULES
    return "".join(_rule_block(item, expand) for item in lineages)


def _rule_block(item: RuleLineage, expand: bool) -> str:
    opened = " open" if expand else ""
    return (
        f'<details class="rule"{opened}><summary>{_name(item.name)} <code>{_e(item.rule_id)}'
        f'</code><span class="origin">{_e(item.origin)}</span></summary>'
        f"{_lineage_body(item)}</details>"
    )


def _steps_list(item: RuleLineage) -> str:
    if item.shown_above:
        return ' <span class="muted">(its story is told above)</span>'
    steps = "".join(f"<li><code>#{_e(s.seq)}</code> {_e(s.text)}</li>" for s in item.steps)
    return f"<ul>{steps}</ul>" if steps else '<p class="muted">No event mentions it.</p>'


def _lineage_body(root: RuleLineage) -> str:
    # Flat and iterative: one block per rule, indented by depth, however deep the ancestry.
    blocks = [f'<div class="lineage d0">{_steps_list(root)}</div>']
    stack = [(p, 1, root.relation) for p in reversed(root.parents)]
    while stack:
        item, depth, relation = stack.pop()
        via = "replaced" if relation == "replaced" else "merged from"
        blocks.append(
            f'<div class="lineage d{min(depth, _DEEPEST)}"><span class="via">{via}</span> '
            f"{_name(item.name)} <code>{_e(item.rule_id)}</code>"
            f'<span class="origin">{_e(item.origin)}</span>{_steps_list(item)}</div>'
        )
        stack.extend((p, depth + 1, item.relation) for p in reversed(item.parents))
    return "".join(blocks)


def _per_class_section(trace: Trace) -> list[str]:
    classes = (trace.final_metrics or {}).get("per_class")
    classes = [cm for cm in classes if isinstance(cm, Mapping)] if isinstance(classes, list) else []
    if not classes:
        return []
    head = (
        '<th>label</th><th class="num">F1</th><th class="num">precision</th>'
        '<th class="num">recall</th><th class="num">TP</th><th class="num">FP</th>'
        '<th class="num">FN</th>'
    )
    rows = []
    for cm in classes:
        cells = [pct(cm.get(k)) for k in ("f1", "precision", "recall")]
        cells += [_or_dash(cm.get(k)) for k in ("tp", "fp", "fn")]
        rows.append(
            f"<tr><td>{_name(cm.get('label'))}</td>"
            + "".join(f'<td class="num">{_e(c)}</td>' for c in cells)
            + "</tr>"
        )
    return ["<h2>Final metrics per class</h2>" + _table("narrow", head, rows)]


# ---------------------------------------------------------------------------
# History (a storage folder)
# ---------------------------------------------------------------------------


def _load_history(folder: Path) -> History:
    if folder.name.endswith(".traces"):
        found = history(folder.parent, folder.name.removesuffix(".traces"))
    else:
        found = history(folder)
    if not found.rows:
        raise TraceError("no kept runs here (no <dataset>.traces/*.trace.json)", folder)
    return found


def _history_page(found: History) -> str:
    body = [
        f"<h1>RULECHEF HISTORY <small>{_e(found.storage_dir)}</small></h1>",
        f'<p class="meta"><span>{len(found.rows)} kept runs of {len(found.datasets)} '
        f"dataset(s)</span></p>",
    ]
    for dataset in found.datasets:
        rows = [r for r in found.rows if r.dataset == dataset]
        body += [f"<h2>{_name(dataset)}</h2>", history_chart(rows), _history_table(rows)]
        body += _rule_card_section(folder_report(found.storage_dir, dataset)[0])
    if found.notes:
        body.append(
            "<h3>Skipped files</h3><ul>"
            + "".join(f"<li>{_e(n)}</li>" for n in found.notes)
            + "</ul>"
        )
    return _page(f"rulechef history · {found.storage_dir}", body)


def _when(started_at: str | None) -> str:
    """``2026-01-02T03:04:05.678Z`` as ``2026-01-02 03:04:05``."""
    return (started_at or DASH).replace("T", " ")[:19]


def _history_table(rows: Sequence[HistoryRow]) -> str:
    # F1 comes right after the date, so a phone shows it without scrolling.
    head = (
        '<th class="num">#</th><th class="num">started (UTC)</th><th class="num">F1</th>'
        '<th class="num">rules</th><th>kind</th><th>status</th><th class="num">duration</th>'
        '<th class="num">iterations</th><th>run</th>'
    )
    out = []
    for index, r in enumerate(rows, start=1):
        iterations = DASH if r.iterations is None else str(r.iterations)
        out.append(
            f'<tr title="{_e(Path(r.path).name)}"><td class="num">{index}</td>'
            f'<td class="num">{_e(_when(r.started_at))}</td><td class="num">{_e(pct(r.f1))}</td>'
            f'<td class="num">{r.rules}</td><td>{_e(r.kind)}</td><td>{_badge(r.status)}</td>'
            f'<td class="num">{_e(seconds(r.duration_s))}</td><td class="num">{_e(iterations)}</td>'
            f"<td><code>{_e(r.run_id[:12])}</code></td></tr>"
        )
    return _table("history", head, out)
