"""The report's charts: hand-written inline SVG, each drawn twice (wide and narrow).

The wide drawing keeps its natural 1020 px (it scrolls sideways on a smaller
screen rather than shrinking its labels); the narrow one is drawn for a phone.
The stylesheet shows one of the two, so chart text stays at 10 px or more on
any screen. Every string from a trace is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rulechef_trace._text import clean
from rulechef_trace.report.kept_runs import HistoryRow
from rulechef_trace.report.numbers import number, pct
from rulechef_trace.trace import Trace

__all__ = ["history_chart", "iteration_chart", "rule_count_chart", "rule_counts"]


def _e(value: Any) -> str:
    return html.escape(clean(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}"


@dataclass(frozen=True)
class Size:
    """One drawing of a chart: its name (the CSS class), box and how many x labels fit."""

    name: str
    width: int
    height: int
    left: int
    ticks: int
    counts: int  # bar charts label each bar up to this many bars


WIDE = Size("wide", 1020, 280, 48, 20, 40)
NARROW = Size("narrow", 360, 250, 40, 6, 18)


def _legend(*items: tuple[str, str]) -> str:
    """A legend: (swatch style, label) pairs; each pair wraps as one piece."""
    return (
        '<p class="legend">'
        + "".join(f'<span><i style="{style}"></i>{label}</span>' for style, label in items)
        + "</p>"
    )


_LINE = "height:3px;width:18px;border-radius:0"
_FINAL_LEGEND = ("border:3px solid var(--f1)", "final F1 (the run's own final evaluation)")
_SERIES = (
    (f"background:var(--f1);{_LINE}", "F1"),
    (f"background:var(--precision);{_LINE}", "precision (dashed)"),
    ("background:var(--accepted)", "patch accepted"),
    ("background:var(--rejected)", "patch rejected (×)"),
    ("border:2px solid var(--empty)", "empty patch"),
    (
        "background:var(--audit);border-radius:1px;transform:rotate(45deg) scale(.85)",
        "mid-refinement audit (hollow: reverted)",
    ),
)
_COUNT_LEGEND = _legend(
    ("background:var(--synth)", "synthesis"),
    ("background:var(--accepted)", "patch"),
    ("background:var(--audit)", "audit"),
    ("background:var(--prune)", "pruning"),
    ("background:var(--refine)", "refinement end"),
    ("background:#475569", "start / end"),
    ("background:#cbd5e1", "no rule change"),
)


@dataclass(frozen=True)
class Frame:
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


def _frame(size: Size, height: int, x_min: float, x_max: float, y_min: float = 0.0) -> Frame:
    return Frame(size.width, height, size.left, 16, 18, 40, x_min, x_max, y_min)


def _y_floor(values: Iterable[float]) -> float:
    """The lowest gridline a chart of these metrics needs (0, 25%, 50%, 60%, ...)."""
    low = min(values, default=0.0) - 0.05
    if low >= 0.5:
        return int(low * 10) / 10
    return max(0.0, int(max(low, 0.0) * 4) / 4)


def _svg(size: Size, frame: Frame, label: str, parts: Iterable[str]) -> str:
    return (
        f'<svg class="{size.name}" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" aria-label="{_e(label)}">'
        + "".join(parts)
        + "</svg>"
    )


def _both(draw: Callable[[Size], str]) -> str:
    return f'<div class="chart">{draw(WIDE)}{draw(NARROW)}</div>'


def _metric_grid(frame: Frame) -> list[str]:
    parts = []
    for tick in frame.y_ticks():
        y = _num(frame.y(tick))
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y}" y2="{y}"/>'
            f'<text x="{frame.left - 6}" y="{y}" text-anchor="end" dy="4">{tick:.0%}</text>'
        )
    return parts


def _x_ticks(frame: Frame, ticks: Sequence[tuple[float, str]], title: str) -> list[str]:
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


def _every(count: int, size: Size) -> int:
    return max(1, -(-count // size.ticks))


def _polyline(frame: Frame, css: str, points: Sequence[tuple[float, float]]) -> str:
    coords = " ".join(f"{_num(frame.x(x))},{_num(frame.y(y))}" for x, y in points)
    return f'<polyline class="{css}" points="{coords}"/>'


def _dot(frame: Frame, css: str, x: float, y: float, radius: float, tip: str) -> str:
    return (
        f'<circle class="{css}" cx="{_num(frame.x(x))}" cy="{_num(frame.y(y))}" r="{radius}">'
        f"<title>{_e(tip)}</title></circle>"
    )


# -- F1 and precision per iteration ---------------------------------------------------


def _iteration_points(trace: Trace) -> list[tuple[int, Mapping[str, Any]]]:
    points = []
    for event in trace.events_of("iteration_evaluated"):
        iteration, metrics = event.get("iteration"), event.get("metrics")
        metrics = metrics if isinstance(metrics, Mapping) else {}
        if isinstance(iteration, int) and number(metrics.get("f1")) is not None:
            points.append((iteration, metrics))
    return points


def _final_metrics(trace: Trace) -> Mapping[str, Any] | None:
    """The run's own final evaluation, when it finished with one."""
    metrics = trace.final_metrics
    if trace.status == "incomplete" or not metrics or number(metrics.get("f1")) is None:
        return None
    return metrics


def _metric(event: Mapping[str, Any], key: str) -> float | None:
    metrics = event.get(key)
    return number(metrics.get("f1")) if isinstance(metrics, Mapping) else None


def _chart_values(trace: Trace) -> list[float]:
    """Every metric the iteration chart plots, to fit its vertical range."""
    values: list[float] = []
    for _, m in _iteration_points(trace):
        values += [v for v in (number(m.get("f1")), number(m.get("precision"))) if v is not None]
    for event in trace.events_of("patch_decided", "audit_applied"):
        moves = (_metric(event, "metrics_before"), _metric(event, "metrics_after"))
        values += [v for v in moves if v is not None]
    final = _final_metrics(trace) or {}
    values += [
        v for v in (number(final.get("f1")), number(final.get("precision"))) if v is not None
    ]
    return values


def iteration_chart(trace: Trace) -> str:
    """F1 and precision per iteration, patches and audits marked, ending at the final F1."""
    if not _iteration_points(trace):
        return '<p class="muted">No refinement iteration was evaluated in this run.</p>'
    series = (*_SERIES[:2], _FINAL_LEGEND, *_SERIES[2:]) if _final_metrics(trace) else _SERIES
    return _both(lambda size: _draw_iterations(trace, size)) + _legend(*series)


def _draw_iterations(trace: Trace, size: Size) -> str:
    points = _iteration_points(trace)
    patched = [
        e["iteration"] + 0.5
        for e in trace.events_of("patch_decided")
        if isinstance(e.get("iteration"), int)
    ]
    last = max([float(i) for i, _ in points] + patched)
    final = _final_metrics(trace)
    end = last + 1 if final else last
    frame = _frame(size, size.height, 0.6, end + 0.4, _y_floor(_chart_values(trace)))
    step = _every(len(points), size)
    ticks = [(float(i), str(i)) for n, (i, _) in enumerate(points) if n % step == 0]
    parts = _metric_grid(frame)
    parts += _x_ticks(frame, ticks + ([(end, "final")] if final else []), "refinement iteration")
    parts += _patch_marks(frame, trace)
    parts += _audit_marks(frame, trace)
    f1 = [(float(i), float(m["f1"])) for i, m in points]
    precision = [(float(i), p) for i, m in points if (p := number(m.get("precision"))) is not None]
    if final:
        f1.append((end, float(final["f1"])))
        if precision and number(final.get("precision")) is not None:
            precision.append((end, float(final["precision"])))
    if precision:
        parts.append(_polyline(frame, "precision", precision))
    parts.append(_polyline(frame, "f1", f1))
    for i, m in points:
        tip = (
            f"iteration {i}: F1 {pct(m.get('f1'))}, precision {pct(m.get('precision'))}, "
            f"recall {pct(m.get('recall'))}"
        )
        if number(m.get("precision")) is not None:
            parts.append(_dot(frame, "dot-precision", i, float(m["precision"]), 3, tip))
        parts.append(_dot(frame, "dot-f1", i, float(m["f1"]), 4, tip))
    if final:
        parts += _final_mark(frame, trace, final, end)
    return _svg(size, frame, "F1 and precision per refinement iteration, then the final F1", parts)


def _final_mark(frame: Frame, trace: Trace, final: Mapping[str, Any], x: float) -> list[str]:
    f1 = float(final["f1"])
    tip = f"final: F1 {pct(f1)}, precision {pct(final.get('precision'))}"
    audits = [e for e in trace.events_of("audit_applied") if e.get("stage") == "final"]
    if (
        audits
        and _metric(audits[-1], "metrics_before") is not None
        and not audits[-1].get("reverted")
    ):
        before, after = _metric(audits[-1], "metrics_before"), _metric(audits[-1], "metrics_after")
        tip += f" (the final audit moved F1 {pct(before)} → {pct(after)})"
    precision = number(final.get("precision"))
    marks = [] if precision is None else [_dot(frame, "dot-precision", x, precision, 3, tip)]
    return [
        *marks,
        _dot(frame, "final", x, f1, 6, tip),
        f'<text class="value" x="{_num(frame.x(x) - 10)}" y="{_num(frame.y(f1) - 10)}" '
        f'text-anchor="end">{_e(pct(f1))}</text>',
    ]


def _patch_marks(frame: Frame, trace: Trace) -> list[str]:
    parts = []
    for event in trace.events_of("patch_decided"):
        iteration = event.get("iteration")
        before, after = _metric(event, "metrics_before"), _metric(event, "metrics_after")
        if not isinstance(iteration, int):
            continue
        outcome = str(event.get("outcome"))
        x = iteration + 0.5
        tip = _patch_tip(event, before, after)
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


def _patch_tip(event: Mapping[str, Any], before: float | None, after: float | None) -> str:
    head = f"patch {event.get('iteration')} {clean(event.get('outcome'))}"
    if event.get("outcome") == "empty":
        return f"{head}: the LLM proposed nothing"
    return f"{head}: F1 {pct(before)} → {pct(after)}"


def _link(frame: Frame, css: str, start: tuple[float, float], end: tuple[float, float]) -> str:
    return (
        f'<line class="link {_e(css)}" x1="{_num(frame.x(start[0]))}" '
        f'y1="{_num(frame.y(start[1]))}" x2="{_num(frame.x(end[0]))}" '
        f'y2="{_num(frame.y(end[1]))}"/>'
    )


def _cross(frame: Frame, x: float, y: float, tip: str, size: float = 5) -> str:
    cx, cy = frame.x(x), frame.y(y)
    d = (
        f"M{_num(cx - size)},{_num(cy - size)}L{_num(cx + size)},{_num(cy + size)}"
        f"M{_num(cx - size)},{_num(cy + size)}L{_num(cx + size)},{_num(cy - size)}"
    )
    return f'<path class="rejected" d="{d}"><title>{_e(tip)}</title></path>'


def _audit_marks(frame: Frame, trace: Trace) -> list[str]:
    parts = []
    for event in trace.events_of("audit_applied"):
        iteration = event.get("iteration")
        if event.get("stage") != "mid_refinement" or not isinstance(iteration, int):
            continue
        if not event.get("actions") and not event.get("skipped"):
            continue  # the audit proposed nothing
        before, after = _metric(event, "metrics_before"), _metric(event, "metrics_after")
        value = after if after is not None and not event.get("reverted") else before
        if value is None:
            continue
        cx, cy, r = frame.x(iteration + 0.22), frame.y(value), 7.5
        d = (
            f"M{_num(cx)},{_num(cy - r)}L{_num(cx + r)},{_num(cy)}"
            f"L{_num(cx)},{_num(cy + r)}L{_num(cx - r)},{_num(cy)}Z"
        )
        css = "audit reverted" if event.get("reverted") else "audit"
        tip = f"mid-refinement audit of iteration {iteration}: F1 {pct(before)} → {pct(after)}" + (
            ", reverted" if event.get("reverted") else ""
        )
        parts.append(f'<path class="{css}" d="{d}"><title>{_e(tip)}</title></path>')
    return parts


# -- rules after every step -------------------------------------------------------------


def rule_counts(trace: Trace) -> list[tuple[dict[str, Any], int]]:
    """Every event with the number of rules after it."""
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


def rule_count_chart(trace: Trace) -> str:
    """One bar per event: the rule count after it, coloured by the kind of change."""
    if not trace.events:
        return '<p class="muted">No events.</p>'
    counts = rule_counts(trace)
    return _both(lambda size: _draw_counts(counts, size)) + _COUNT_LEGEND


def _draw_counts(counts: list[tuple[dict[str, Any], int]], size: Size) -> str:
    most = max(max(c for _, c in counts), 1)
    frame = _frame(size, 190, 0.0, float(len(counts)))
    slot = frame.x(1) - frame.x(0)
    base = frame.height - frame.bottom
    parts = _count_grid(frame, most)
    for index, (event, count) in enumerate(counts):
        height = count / most * (base - frame.top)
        x = frame.x(index) + slot * 0.15
        tip = f"#{event.get('seq')} {clean(event.get('type'))}: {count} rules"
        parts.append(
            f'<rect class="bar {_e(_bar_kind(event))}" x="{_num(x)}" y="{_num(base - height)}" '
            f'width="{_num(slot * 0.7)}" height="{_num(height)}"><title>{_e(tip)}</title></rect>'
        )
        if len(counts) <= size.counts:
            parts.append(
                f'<text class="count" x="{_num(x + slot * 0.35)}" '
                f'y="{_num(base - height - 3)}" text-anchor="middle">{count}</text>'
            )
    step = _every(len(counts), size)
    ticks = [(i + 0.5, str(e.get("seq"))) for i, (e, _) in enumerate(counts) if i % step == 0]
    parts += _x_ticks(frame, ticks, "step (seq)")
    return _svg(size, frame, "Rule count after every step", parts)


def _bar_kind(event: Mapping[str, Any]) -> str:
    """The bar's colour class: its event type when the rules changed there, else none."""
    kind = str(event.get("type"))
    if kind in ("run_started", "finalized") or event.get("added") or event.get("removed"):
        return kind
    return "unchanged"


def _count_grid(frame: Frame, most: int) -> list[str]:
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


# -- final F1 per kept run ----------------------------------------------------------------


def history_chart(rows: Sequence[HistoryRow]) -> str:
    """The final F1 of every kept run of one dataset, oldest first."""
    if not any(r.f1 is not None for r in rows):
        return '<p class="muted">No kept run of this dataset computed an F1.</p>'
    return _both(lambda size: _draw_history(rows, size))


def _draw_history(rows: Sequence[HistoryRow], size: Size) -> str:
    points = [(i + 1, r, float(r.f1)) for i, r in enumerate(rows) if r.f1 is not None]
    floor = _y_floor(f1 for _, _, f1 in points)
    frame = _frame(size, 240, 0.5, len(rows) + 0.5, floor)
    parts = _metric_grid(frame)
    step = _every(len(rows), size)
    parts += _x_ticks(frame, [(i + 1, str(i + 1)) for i in range(0, len(rows), step)], "run")
    parts.append(_polyline(frame, "f1", [(float(i), f1) for i, _, f1 in points]))
    for i, r, f1 in points:
        tip = f"run {i} ({r.kind}, {r.status}, started {r.started_at or '—'}): F1 {pct(f1)}"
        parts.append(_dot(frame, "dot-f1", i, f1, 4, tip))
    return _svg(size, frame, "Final F1 per kept run", parts)
