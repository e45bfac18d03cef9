"""A self-contained HTML report of a trace, or of every kept run of a storage folder.

One file, no network: inline CSS, hand-written inline SVG, no JavaScript, and a
Content-Security-Policy that forbids loading anything. Every string that comes
from a trace (rule names come from an LLM) is HTML-escaped.

A single trace gives the run header, F1 and precision per refinement
iteration with accepted / rejected / empty patches and mid-refinement audits
marked, the rule count after every step, the step list and each final rule's
lineage. A storage folder gives, per dataset, the final F1 of every kept run.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulechef_trace import __version__
from rulechef_trace.recorder import write_atomic
from rulechef_trace.report.lineage import History, HistoryRow, RuleLineage, history, lineage
from rulechef_trace.report.text import pct
from rulechef_trace.trace import Trace, TraceError, load_trace

__all__ = ["render_html", "write_html"]

logger = logging.getLogger("rulechef_trace")

Source = str | Path | Trace | Mapping[str, Any]

_WIDTH = 1020  # chart width in px: the page's content width
_EXPANDED_RULES = 8  # lineages start folded when a run ends with more rules than this
_CSP = "default-src 'none'; style-src 'unsafe-inline'"

_CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --panel:#f9fafb;
  --f1:#2563eb; --precision:#0d9488; --accepted:#16a34a; --rejected:#dc2626;
  --empty:#9ca3af; --audit:#7c3aed; --synth:#2563eb; --prune:#ea580c; --refine:#64748b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #fff; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; letter-spacing: .02em; }
h1 small { font-weight: 400; color: var(--muted); font-size: 14px; margin-left: 8px; }
h2 { font-size: 16px; margin: 28px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 2px 0 14px; }
.meta span { margin-right: 16px; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: var(--panel); border: 1px solid var(--line); }
.badge.completed, .badge.accepted { color: #166534; background: #dcfce7; border-color: #bbf7d0; }
.badge.failed, .badge.rejected, .badge.incomplete { color: #991b1b; background: #fee2e2;
  border-color: #fecaca; }
.badge.not_enough_data, .badge.no_rules, .badge.empty { color: #92400e; background: #fef3c7;
  border-color: #fde68a; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { flex: 1 1 auto; background: var(--panel); border: 1px solid var(--line);
  border-radius: 8px; padding: 8px 12px; min-width: 96px; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 12px; }
.error { background: #fee2e2; border: 1px solid #fecaca; border-radius: 8px; padding: 8px 12px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
svg .f1 { fill: none; stroke: var(--f1); stroke-width: 2.5; }
svg .precision { fill: none; stroke: var(--precision); stroke-width: 2; stroke-dasharray: 6 4; }
svg .dot-f1 { fill: var(--f1); }
svg .dot-precision { fill: #fff; stroke: var(--precision); stroke-width: 2; }
svg .accepted { fill: var(--accepted); stroke: #fff; stroke-width: 1.5; }
svg .rejected { stroke: var(--rejected); stroke-width: 3; stroke-linecap: round; }
svg .empty { fill: #fff; stroke: var(--empty); stroke-width: 2; }
svg .audit { fill: var(--audit); stroke: #fff; stroke-width: 1.5; }
svg .audit.reverted { fill: #fff; stroke: var(--audit); stroke-width: 2; }
svg .link { stroke-width: 1.2; stroke-dasharray: 3 3; fill: none; }
svg .link.accepted { stroke: var(--accepted); fill: none; }
svg .link.rejected { stroke: var(--rejected); stroke-width: 1.2; }
svg .bar { fill: #cbd5e1; }
svg .bar.synthesized { fill: var(--synth); } svg .bar.patch_decided { fill: var(--accepted); }
svg .bar.audit_applied { fill: var(--audit); } svg .bar.pruned { fill: var(--prune); }
svg .bar.refined { fill: var(--refine); }
svg .bar.run_started, svg .bar.finalized { fill: #475569; }
svg .count { fill: var(--ink); font-size: 10px; }
.legend { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.legend i { display: inline-block; width: 12px; height: 12px; margin: 0 4px -2px 12px;
  border-radius: 50%; }
.legend i.line { height: 3px; width: 18px; border-radius: 0; margin-bottom: 3px; }
table { border-collapse: collapse; width: 100%; }
table.narrow { width: auto; min-width: 50%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.type { white-space: nowrap; }
tr.accepted td.type { color: #166534; } tr.rejected td.type { color: #991b1b; }
tr.empty td.type { color: #92400e; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; color: #374151; }
details.rule { border: 1px solid var(--line); border-radius: 8px; margin: 8px 0;
  padding: 6px 12px; background: var(--panel); }
details.rule summary { cursor: pointer; font-weight: 600; }
.lineage { margin: 4px 0 4px 8px; padding-left: 12px; border-left: 2px solid var(--line); }
.lineage ul { margin: 2px 0; padding-left: 4px; list-style: none; }
.lineage li { color: #374151; }
.origin { font-weight: 400; color: var(--muted); margin-left: 6px; }
.via { color: var(--audit); font-weight: 600; }
.muted { color: var(--muted); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""

_SERIES_LEGEND = (
    '<p class="legend"><i class="line" style="background:var(--f1)"></i>F1'
    '<i class="line" style="background:var(--precision)"></i>precision (dashed)'
    '<i style="background:var(--accepted)"></i>patch accepted'
    '<i style="background:var(--rejected)"></i>patch rejected (×)'
    '<i style="border:2px solid var(--empty)"></i>empty patch'
    '<i style="background:var(--audit);border-radius:1px;transform:rotate(45deg) scale(.85)">'
    "</i>mid-refinement audit (hollow: reverted)</p>"
)


def _e(value: Any) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}"


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
            f"<style>{_CSS}</style>",
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


def _seconds(value: Any) -> str:
    seconds = _f(value)
    return "—" if seconds is None else f"{seconds:.2f}s"


# ---------------------------------------------------------------------------
# Single trace
# ---------------------------------------------------------------------------


def _trace_page(trace: Trace) -> str:
    run = trace.run
    title = f"rulechef trace · {run.get('dataset')} · {run.get('kind')}"
    body = [
        *_run_header(trace),
        "<h2>F1 and precision per iteration</h2>",
        _iteration_chart(trace),
        "<h2>Rules after every step</h2>",
        _rule_count_chart(trace),
        "<h2>Steps</h2>",
        _step_table(trace),
        "<h2>Final rules and their lineage</h2>",
        _lineage_section(trace),
        *_per_class_section(trace),
    ]
    return _page(title, body)


def _run_header(trace: Trace) -> list[str]:
    run = trace.run
    coordinator = (run.get("coordinator") or {}).get("class") or "—"
    meta = [
        f"task {run.get('task')} ({run.get('task_type')})",
        f"rulechef {run.get('rulechef_version')}",
        f"coordinator {coordinator}",
        f"started {run.get('started_at')}",
        f"run {str(run.get('id'))[:12]}",
    ]
    lines = [
        f"<h1>RULECHEF TRACE <small>{_e(run.get('dataset'))}</small></h1>",
        f'<p class="meta">{_badge(run.get("kind"), "kind")} {_badge(trace.status)} '
        + "".join(f"<span>{_e(m)}</span>" for m in meta)
        + "</p>",
        _cards(trace),
    ]
    error = run.get("error")
    if isinstance(error, dict):
        lines.append(
            f'<p class="error"><b>{_e(error.get("type"))}</b>: {_e(error.get("message"))}</p>'
        )
    return lines


def _cards(trace: Trace) -> str:
    metrics = trace.final_metrics or {}
    start = trace.events[0].get("rules") if trace.events else None
    outcomes = [e.get("outcome") for e in trace.events_of("patch_decided")]
    cards = [
        _card(pct(metrics.get("f1")), "final F1"),
        _card(pct(metrics.get("precision")), "precision"),
        _card(pct(metrics.get("recall")), "recall"),
        _card(pct(metrics.get("exact_match")), "exact match"),
        _card(f"{len(start or [])} → {len(trace.final_rules)}", "rules start → final"),
        _card(str(len(trace.events_of("iteration_evaluated"))), "iterations"),
        _card(
            f"{outcomes.count('accepted')} / {outcomes.count('rejected')} / "
            f"{outcomes.count('empty')}",
            "patches acc. / rej. / empty",
        ),
        _card(_seconds(trace.run.get("duration_s")), "duration"),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


# -- the iteration chart ------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """Plot area of a chart and its x domain; y is a metric from ``y_min`` to 1."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x_min: float
    x_max: float
    y_min: float = 0.0

    def x(self, value: float) -> float:
        """Horizontal position of ``value``."""
        span = (self.x_max - self.x_min) or 1.0
        return self.left + (value - self.x_min) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        """Vertical position of a metric (clamped to ``y_min``..1)."""
        value = min(max(value, self.y_min), 1.0)
        share = (value - self.y_min) / ((1.0 - self.y_min) or 1.0)
        return self.top + (1.0 - share) * (self.height - self.top - self.bottom)

    def y_ticks(self) -> list[float]:
        """Gridline values: tenths above 50%, quarters below."""
        step = 0.1 if self.y_min >= 0.5 else 0.25
        count = round((1.0 - self.y_min) / step)
        return [round(self.y_min + i * step, 2) for i in range(count + 1)]


def _y_floor(values: Iterable[float]) -> float:
    """The lowest gridline a chart of these metrics needs (0, 25%, 50%, 60%, ...)."""
    low = min(values, default=0.0) - 0.05
    if low >= 0.5:
        return int(low * 10) / 10
    return max(0.0, int(max(low, 0.0) * 4) / 4)


def _svg(frame: _Frame, label: str, parts: Iterable[str]) -> str:
    return (
        f'<svg viewBox="0 0 {frame.width} {frame.height}" width="{frame.width}" '
        f'height="{frame.height}" role="img" aria-label="{_e(label)}">' + "".join(parts) + "</svg>"
    )


def _metric_grid(frame: _Frame) -> list[str]:
    parts = []
    for tick in frame.y_ticks():
        y = _num(frame.y(tick))
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y}" y2="{y}"/>'
            f'<text x="{frame.left - 6}" y="{y}" text-anchor="end" dy="4">{tick:.0%}</text>'
        )
    return parts


def _x_ticks(frame: _Frame, ticks: Sequence[tuple[float, str]], title: str) -> list[str]:
    base = frame.height - frame.bottom
    parts = [
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{base}" y2="{base}"/>'
    ]
    for value, text in ticks:
        x = _num(frame.x(value))
        parts.append(f'<text x="{x}" y="{base + 16}" text-anchor="middle">{_e(text)}</text>')
    parts.append(
        f'<text x="{_num((frame.left + frame.width - frame.right) / 2)}" y="{frame.height - 4}" '
        f'text-anchor="middle">{_e(title)}</text>'
    )
    return parts


def _polyline(frame: _Frame, css: str, points: Sequence[tuple[float, float]]) -> str:
    coords = " ".join(f"{_num(frame.x(x))},{_num(frame.y(y))}" for x, y in points)
    return f'<polyline class="{css}" points="{coords}"/>'


def _dot(frame: _Frame, css: str, x: float, y: float, radius: float, tip: str) -> str:
    return (
        f'<circle class="{css}" cx="{_num(frame.x(x))}" cy="{_num(frame.y(y))}" r="{radius}">'
        f"<title>{_e(tip)}</title></circle>"
    )


def _iteration_points(trace: Trace) -> list[tuple[int, dict[str, Any]]]:
    points = []
    for event in trace.events_of("iteration_evaluated"):
        iteration, metrics = event.get("iteration"), event.get("metrics") or {}
        if isinstance(iteration, int) and _f(metrics.get("f1")) is not None:
            points.append((iteration, metrics))
    return points


def _chart_values(trace: Trace) -> list[float]:
    """Every metric the iteration chart plots, to fit its vertical range."""
    values: list[float] = []
    for _, m in _iteration_points(trace):
        values += [v for v in (_f(m.get("f1")), _f(m.get("precision"))) if v is not None]
    for event in trace.events_of("patch_decided", "audit_applied"):
        for key in ("metrics_before", "metrics_after"):
            value = _f((event.get(key) or {}).get("f1"))
            if value is not None:
                values.append(value)
    return values


def _iteration_chart(trace: Trace) -> str:
    points = _iteration_points(trace)
    if not points:
        return '<p class="muted">No refinement iteration was evaluated in this run.</p>'
    patched = [
        e["iteration"] + 0.5
        for e in trace.events_of("patch_decided")
        if isinstance(e.get("iteration"), int)
    ]
    right = max([float(i) for i, _ in points] + patched) + 0.4
    frame = _Frame(_WIDTH, 280, 48, 16, 14, 40, 0.6, right, _y_floor(_chart_values(trace)))
    parts = _metric_grid(frame)
    parts += _x_ticks(frame, [(i, str(i)) for i, _ in points], "refinement iteration")
    parts += _patch_marks(frame, trace)
    parts += _audit_marks(frame, trace)
    f1 = [(float(i), float(m["f1"])) for i, m in points]
    precision = [(float(i), p) for i, m in points if (p := _f(m.get("precision"))) is not None]
    if precision:
        parts.append(_polyline(frame, "precision", precision))
    parts.append(_polyline(frame, "f1", f1))
    for i, m in points:
        tip = (
            f"iteration {i}: F1 {pct(m.get('f1'))}, precision {pct(m.get('precision'))}, "
            f"recall {pct(m.get('recall'))}, {m.get('failures', 0)} failures"
        )
        if _f(m.get("precision")) is not None:
            parts.append(_dot(frame, "dot-precision", i, float(m["precision"]), 3, tip))
        parts.append(_dot(frame, "dot-f1", i, float(m["f1"]), 4, tip))
    return _svg(frame, "F1 and precision per refinement iteration", parts) + _SERIES_LEGEND


def _patch_marks(frame: _Frame, trace: Trace) -> list[str]:
    parts = []
    for event in trace.events_of("patch_decided"):
        iteration = event.get("iteration")
        before = _f((event.get("metrics_before") or {}).get("f1"))
        after = _f((event.get("metrics_after") or {}).get("f1"))
        if not isinstance(iteration, int):
            continue
        outcome = str(event.get("outcome"))
        x = iteration + 0.5
        tip = _patch_tip(event)
        if outcome == "empty" or after is None:
            parts.append(_dot(frame, "empty", x, before or 0.0, 5, tip))
            continue
        if before is not None:
            parts.append(_link(frame, outcome, (iteration, before), (x, after)))
        if outcome == "accepted":
            parts.append(_dot(frame, "accepted", x, after, 6, tip))
        else:
            parts.append(_cross(frame, x, after, tip))
    return parts


def _patch_tip(event: Mapping[str, Any]) -> str:
    before = (event.get("metrics_before") or {}).get("f1")
    after = (event.get("metrics_after") or {}).get("f1")
    head = f"patch {event.get('iteration')} {event.get('outcome')}"
    if event.get("outcome") == "empty":
        return f"{head}: the LLM proposed nothing"
    return f"{head}: F1 {pct(before)} → {pct(after)}"


def _link(frame: _Frame, css: str, start: tuple[float, float], end: tuple[float, float]) -> str:
    return (
        f'<line class="link {_e(css)}" x1="{_num(frame.x(start[0]))}" '
        f'y1="{_num(frame.y(start[1]))}" x2="{_num(frame.x(end[0]))}" '
        f'y2="{_num(frame.y(end[1]))}"/>'
    )


def _cross(frame: _Frame, x: float, y: float, tip: str, size: float = 5) -> str:
    cx, cy = frame.x(x), frame.y(y)
    d = (
        f"M{_num(cx - size)},{_num(cy - size)}L{_num(cx + size)},{_num(cy + size)}"
        f"M{_num(cx - size)},{_num(cy + size)}L{_num(cx + size)},{_num(cy - size)}"
    )
    return f'<path class="rejected" d="{d}"><title>{_e(tip)}</title></path>'


def _audit_marks(frame: _Frame, trace: Trace) -> list[str]:
    parts = []
    for event in trace.events_of("audit_applied"):
        iteration = event.get("iteration")
        if event.get("stage") != "mid_refinement" or not isinstance(iteration, int):
            continue
        if not event.get("actions") and not event.get("skipped"):
            continue  # the audit proposed nothing
        before = _f((event.get("metrics_before") or {}).get("f1"))
        after = _f((event.get("metrics_after") or {}).get("f1"))
        value = after if after is not None and not event.get("reverted") else before
        if value is None:
            continue
        cx, cy, r = frame.x(iteration + 0.22), frame.y(value), 7.5
        d = (
            f"M{_num(cx)},{_num(cy - r)}L{_num(cx + r)},{_num(cy)}"
            f"L{_num(cx)},{_num(cy + r)}L{_num(cx - r)},{_num(cy)}Z"
        )
        css = "audit reverted" if event.get("reverted") else "audit"
        tip = (
            f"mid-refinement audit of iteration {iteration}: "
            f"{len(event.get('actions') or [])} applied, "
            f"{len(event.get('skipped') or [])} skipped"
            + (", reverted" if event.get("reverted") else "")
        )
        parts.append(f'<path class="{css}" d="{d}"><title>{_e(tip)}</title></path>')
    return parts


# -- the rule count chart -----------------------------------------------------


def _rule_counts(trace: Trace) -> list[tuple[dict[str, Any], int]]:
    counts: list[tuple[dict[str, Any], int]] = []
    current = 0
    for event in trace.events:
        rules = event.get("rules_after")
        if event.get("type") in ("run_started", "finalized"):
            rules = event.get("rules", rules)
        if isinstance(rules, list):
            current = len(rules)
        counts.append((event, current))
    return counts


def _rule_count_chart(trace: Trace) -> str:
    counts = _rule_counts(trace)
    if not counts:
        return '<p class="muted">No events.</p>'
    most = max(max(c for _, c in counts), 1)
    frame = _Frame(_WIDTH, 190, 48, 16, 18, 40, 0.0, float(len(counts)))
    slot = frame.x(1) - frame.x(0)
    base = frame.height - frame.bottom
    parts = _count_grid(frame, most)
    for index, (event, count) in enumerate(counts):
        height = count / most * (base - frame.top)
        x = frame.x(index) + slot * 0.15
        tip = f"#{event.get('seq')} {event.get('type')}: {count} rules"
        parts.append(
            f'<rect class="bar {_e(_bar_kind(event))}" x="{_num(x)}" y="{_num(base - height)}" '
            f'width="{_num(slot * 0.7)}" height="{_num(height)}"><title>{_e(tip)}</title></rect>'
        )
        if len(counts) <= 40:
            parts.append(
                f'<text class="count" x="{_num(x + slot * 0.35)}" '
                f'y="{_num(base - height - 3)}" text-anchor="middle">{count}</text>'
            )
    step = max(1, len(counts) // 20)
    ticks = [(i + 0.5, str(e.get("seq"))) for i, (e, _) in enumerate(counts) if i % step == 0]
    parts += _x_ticks(frame, ticks, "step (seq)")
    legend = (
        '<p class="legend"><i style="background:var(--synth)"></i>synthesis'
        '<i style="background:var(--accepted)"></i>patch'
        '<i style="background:var(--audit)"></i>audit'
        '<i style="background:var(--prune)"></i>pruning'
        '<i style="background:var(--refine)"></i>refinement end'
        '<i style="background:#475569"></i>start / end'
        '<i style="background:#cbd5e1"></i>no rule change</p>'
    )
    return _svg(frame, "Rule count after every step", parts) + legend


def _bar_kind(event: Mapping[str, Any]) -> str:
    """The bar's colour class: its event type when the rules changed there, else none."""
    kind = str(event.get("type"))
    if kind in ("run_started", "finalized") or event.get("added") or event.get("removed"):
        return kind
    return "unchanged"


def _count_grid(frame: _Frame, most: int) -> list[str]:
    base = frame.height - frame.bottom
    parts = []
    for tick in range(most + 1) if most <= 4 else sorted({0, most // 2, most}):
        y = _num(base - tick / most * (base - frame.top))
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y}" y2="{y}"/>'
            f'<text x="{frame.left - 6}" y="{y}" text-anchor="end" dy="4">{tick}</text>'
        )
    return parts


# -- the step table -------------------------------------------------------------


def _names(trace: Trace, ids: Any, limit: int = 4) -> str:
    ids = [str(i) for i in ids or []]
    shown = ", ".join(trace.name_of(i) for i in ids[:limit])
    return shown + (f" +{len(ids) - limit} more" if len(ids) > limit else "")


def _move(event: Mapping[str, Any]) -> str:
    before = event.get("metrics_before") or {}
    after = event.get("metrics_after") or {}
    return (
        f"F1 {pct(before.get('f1'))} → {pct(after.get('f1'))}, "
        f"P {pct(before.get('precision'))} → {pct(after.get('precision'))}"
    )


def _d_run_started(t: Trace, e: Mapping[str, Any]) -> str:
    return f"run started with {len(e.get('rules') or [])} rules"


def _d_synthesized(t: Trace, e: Mapping[str, Any]) -> str:
    data = e.get("data") or {}
    text = (
        f"{e.get('mode')} synthesis: {e.get('count', 0)} rules from "
        f"{data.get('examples', 0)} examples"
    )
    return text + (f"; added {_names(t, e.get('added'))}" if e.get("added") else "")


def _d_iteration(t: Trace, e: Mapping[str, Any]) -> str:
    m = e.get("metrics") or {}
    return (
        f"iteration {e.get('iteration')}/{e.get('max_iterations')}: F1 {pct(m.get('f1'))}, "
        f"P {pct(m.get('precision'))}, R {pct(m.get('recall'))}, "
        f"exact {pct(m.get('exact_match'))}, {m.get('failures', 0)} failures"
    )


def _d_critiqued(t: Trace, e: Mapping[str, Any]) -> str:
    if not e.get("returned"):
        return "critic returned no critique"
    feedback = e.get("rules_with_feedback") or []
    named = f" ({_names(t, feedback)})" if feedback else ""
    return f"critic: feedback on {len(feedback)} rules{named}"


def _d_guided(t: Trace, e: Mapping[str, Any]) -> str:
    verdict = "go on" if e.get("should_continue") else "stop"
    return f"coordinator guidance: {verdict} ({e.get('guidance_chars', 0)} chars of advice)"


def _d_patch(t: Trace, e: Mapping[str, Any]) -> str:
    outcome = str(e.get("outcome"))
    failures = (e.get("failures") or {}).get("count")
    if outcome == "empty":
        return f"patch {e.get('iteration')} empty: the LLM proposed nothing ({failures} failures)"
    text = f"patch {e.get('iteration')} {outcome}: {_move(e)}"
    if outcome == "accepted":
        added, removed = e.get("added") or [], e.get("removed") or []
        text += f"; added {_names(t, added)}" if added else ""
        text += f"; removed {_names(t, removed)}" if removed else ""
        return text
    proposed = (e.get("proposed") or {}).get("added")
    return text + (f"; proposed {_names(t, proposed)}" if proposed else "") + "; rules unchanged"


def _d_audit(t: Trace, e: Mapping[str, Any]) -> str:
    stage = "mid-refinement" if e.get("stage") == "mid_refinement" else "final"
    actions, skipped = e.get("actions") or [], e.get("skipped") or []
    if not actions and not skipped:
        return f"{stage} audit: no actions proposed"
    parts = [f"{stage} audit: {len(actions)} applied, {len(skipped)} skipped"]
    for a in actions:
        if a.get("action") == "merge":
            result = a.get("result")
            into = t.name_of(str(result)) if result else "nothing (merge skipped)"
            parts.append(f"merged {_names(t, a.get('sources'))} → {into}")
        else:
            parts.append(f"removed {_names(t, a.get('rules'))}")
    if e.get("reverted"):
        parts.append(f"reverted by the F1 safety net ({_move(e)})")
    return "; ".join(parts)


def _d_pruned(t: Trace, e: Mapping[str, Any]) -> str:
    reason = str(e.get("reason")).replace("_", " ")
    return f"pruned {len(e.get('removed') or [])} ({reason}): {_names(t, e.get('removed')) or '—'}"


def _d_refined(t: Trace, e: Mapping[str, Any]) -> str:
    m = e.get("metrics") or {}
    reason = str(e.get("stop_reason")).replace("_", " ")
    text = (
        f"refinement ended ({reason}) after {e.get('iterations')}/{e.get('max_iterations')} "
        f"iterations; best F1 {pct(m.get('f1'))}"
    )
    if e.get("kept_earlier"):
        text += f"; kept the earlier rules of step #{e.get('kept_seq')}"
    return text


def _d_finalized(t: Trace, e: Mapping[str, Any]) -> str:
    error = e.get("error")
    suffix = f": {error.get('type')}: {error.get('message')}" if isinstance(error, dict) else ""
    return f"finalized: {e.get('status')}, {len(e.get('rules') or [])} rules{suffix}"


_DESCRIBE: dict[str, Callable[[Trace, Mapping[str, Any]], str]] = {
    "run_started": _d_run_started,
    "synthesized": _d_synthesized,
    "iteration_evaluated": _d_iteration,
    "critiqued": _d_critiqued,
    "guided": _d_guided,
    "patch_decided": _d_patch,
    "audit_applied": _d_audit,
    "pruned": _d_pruned,
    "refined": _d_refined,
    "finalized": _d_finalized,
}


def _step_table(trace: Trace) -> str:
    rows = [
        '<table><thead><tr><th class="num">seq</th><th class="num">time</th>'
        '<th class="num">rules</th><th>step</th><th>what happened</th></tr></thead><tbody>'
    ]
    for event, count in _rule_counts(trace):
        kind = str(event.get("type"))
        describe = _DESCRIBE.get(kind)
        text = describe(trace, event) if describe else f"{kind} (unknown event type)"
        t = _f(event.get("t"))
        css = str(event.get("outcome") or "")
        rows.append(
            f'<tr class="{_e(css)}"><td class="num">{_e(event.get("seq"))}</td>'
            f'<td class="num">{"" if t is None else f"{t:.2f}s"}</td>'
            f'<td class="num">{count}</td><td class="type">{_e(kind)}</td>'
            f"<td>{_e(text)}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


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
        f'<details class="rule"{opened}><summary>{_e(item.name)} <code>{_e(item.rule_id)}</code>'
        f'<span class="origin">{_e(item.origin)}</span></summary>'
        f"{_lineage_body(item, depth=0)}</details>"
    )


def _lineage_body(item: RuleLineage, depth: int) -> str:
    steps = "".join(f"<li><code>#{_e(s.seq)}</code> {_e(s.text)}</li>" for s in item.steps)
    body = f"<ul>{steps}</ul>" if steps else '<p class="muted">No event mentions it.</p>'
    relation = "replaced" if item.relation == "replaced" else "merged from"
    for parent in item.parents:
        inner = "" if depth >= 6 else _lineage_body(parent, depth + 1)
        body += (
            f'<div class="lineage"><span class="via">{_e(relation)}</span> '
            f"{_e(parent.name)} <code>{_e(parent.rule_id)}</code>"
            f'<span class="origin">{_e(parent.origin)}</span>{inner}</div>'
        )
    return f'<div class="lineage">{body}</div>' if depth == 0 else body


def _per_class_section(trace: Trace) -> list[str]:
    classes = (trace.final_metrics or {}).get("per_class") or []
    if not classes:
        return []
    rows = [
        '<h2>Final metrics per class</h2><table class="narrow"><thead><tr><th>label</th>'
        '<th class="num">F1</th><th class="num">precision</th><th class="num">recall</th>'
        '<th class="num">TP</th><th class="num">FP</th><th class="num">FN</th>'
        "</tr></thead><tbody>"
    ]
    for cm in classes:
        if not isinstance(cm, Mapping):
            continue
        cells = [
            pct(cm.get("f1")),
            pct(cm.get("precision")),
            pct(cm.get("recall")),
            cm.get("tp", "—"),
            cm.get("fp", "—"),
            cm.get("fn", "—"),
        ]
        rows.append(
            f"<tr><td>{_e(cm.get('label'))}</td>"
            + "".join(f'<td class="num">{_e(c)}</td>' for c in cells)
            + "</tr>"
        )
    rows.append("</tbody></table>")
    return ["".join(rows)]


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
        body += [f"<h2>{_e(dataset)}</h2>", _history_chart(rows), _history_table(rows)]
    if found.notes:
        body.append(
            "<h3>Skipped files</h3><ul>"
            + "".join(f"<li>{_e(n)}</li>" for n in found.notes)
            + "</ul>"
        )
    return _page(f"rulechef history · {found.storage_dir}", body)


def _history_chart(rows: Sequence[HistoryRow]) -> str:
    points = [(i + 1, r) for i, r in enumerate(rows) if r.f1 is not None]
    if not points:
        return '<p class="muted">No kept run of this dataset computed an F1.</p>'
    frame = _Frame(
        _WIDTH,
        240,
        48,
        16,
        14,
        40,
        0.5,
        len(rows) + 0.5,
        _y_floor(float(r.f1 or 0) for _, r in points),
    )
    parts = _metric_grid(frame)
    step = max(1, len(rows) // 20)
    parts += _x_ticks(frame, [(i + 1, str(i + 1)) for i in range(0, len(rows), step)], "run")
    parts.append(_polyline(frame, "f1", [(float(i), float(r.f1 or 0)) for i, r in points]))
    for i, r in points:
        tip = f"run {i} ({r.kind}, {r.status}, started {r.started_at}): F1 {pct(r.f1)}"
        parts.append(_dot(frame, "dot-f1", i, float(r.f1 or 0), 4, tip))
    return _svg(frame, "Final F1 per kept run", parts)


def _when(started_at: str | None) -> str:
    """``2026-01-02T03:04:05.678Z`` as ``2026-01-02 03:04:05``."""
    return (started_at or "—").replace("T", " ")[:19]


def _history_table(rows: Sequence[HistoryRow]) -> str:
    out = [
        '<table><thead><tr><th class="num">#</th><th class="num">started (UTC)</th><th>kind</th>'
        '<th>status</th><th class="num">duration</th><th class="num">iterations</th>'
        '<th class="num">rules</th><th class="num">F1</th><th>run</th>'
        "</tr></thead><tbody>"
    ]
    for index, r in enumerate(rows, start=1):
        iterations = "—" if r.iterations is None else str(r.iterations)
        out.append(
            f'<tr title="{_e(Path(r.path).name)}"><td class="num">{index}</td>'
            f'<td class="num">{_e(_when(r.started_at))}</td><td>{_e(r.kind)}</td>'
            f'<td>{_badge(r.status)}</td><td class="num">{_e(_seconds(r.duration_s))}</td>'
            f'<td class="num">{_e(iterations)}</td><td class="num">{r.rules}</td>'
            f'<td class="num">{_e(pct(r.f1))}</td><td><code>{_e(r.run_id[:8])}</code></td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)
