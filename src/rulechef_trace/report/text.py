"""Render a trace as a fixed-width, step-by-step story (rulechef's report style)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from rulechef_trace._text import clean, shorten
from rulechef_trace.trace import Trace, load_trace

__all__ = ["pct", "print_trace", "render_trace"]

WIDTH = 78
_NAME = 28


def pct(value: Any) -> str:
    """Format a 0-1 metric as a percentage, or an em dash when unknown."""
    return f"{value:.1%}" if isinstance(value, (int, float)) else "—"


def _short(name: str, width: int = _NAME) -> str:
    # Escape first, then cut: a cut can never leave half an escape sequence.
    return shorten(name, width)


def _names(trace: Trace, ids: list[str] | None, limit: int = 4) -> str:
    ids = list(ids or [])
    shown = [_short(trace.name_of(rid), 24) for rid in ids[:limit]]
    more = f" +{len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(shown) + more


def _change(e: Mapping[str, Any]) -> str:
    return f"+{len(e.get('added') or [])} −{len(e.get('removed') or [])}"


def _metrics_move(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    before, after = before or {}, after or {}
    return (
        f"F1 {pct(before.get('f1'))} → {pct(after.get('f1'))}, "
        f"P {pct(before.get('precision'))} → {pct(after.get('precision'))}"
    )


def _synthesized(t: Trace, e: Mapping[str, Any]) -> list[str]:
    data = e.get("data") or {}
    corrections = data.get("corrections") or 0
    extra = f" + {corrections} corrections" if corrections else ""
    lines = [
        f"synthesized ({e.get('mode')}): {e.get('count', 0)} rules from "
        f"{data.get('examples', 0)} examples{extra}; {_change(e)}"
    ]
    lines += _merge_notes(t, e)
    return lines


def _merge_notes(t: Trace, e: Mapping[str, Any]) -> list[str]:
    notes = []
    for pair in e.get("replaced") or []:
        notes.append(
            f"  replaced {_short(t.name_of(pair['old']))} ({pair['old']}) by {pair['new']}"
        )
    if e.get("deleted"):
        notes.append(f"  deleted {_names(t, e['deleted'])}")
    if e.get("collapsed"):
        notes.append(f"  collapsed (duplicate names) {_names(t, e['collapsed'])}")
    if e.get("deduped"):
        notes.append(f"  deduplicated {_names(t, e['deduped'])}")
    return notes


def _iteration(t: Trace, e: Mapping[str, Any]) -> list[str]:
    m = e.get("metrics") or {}
    return [
        f"iteration {e.get('iteration')}/{e.get('max_iterations')}: F1 {pct(m.get('f1'))} "
        f"P {pct(m.get('precision'))} R {pct(m.get('recall'))}, {m.get('failures', 0)} failures"
    ]


def _critiqued(t: Trace, e: Mapping[str, Any]) -> list[str]:
    if not e.get("returned"):
        return ["critic: returned no critique"]
    guidance = ", task guidance" if e.get("task_guidance") else ""
    return [f"critic: feedback on {len(e.get('rules_with_feedback') or [])} rules{guidance}"]


def _guided(t: Trace, e: Mapping[str, Any]) -> list[str]:
    verdict = "go on" if e.get("should_continue") else "STOP"
    return [f"coordinator guidance: {verdict} ({e.get('guidance_chars', 0)} chars of advice)"]


def _patch(t: Trace, e: Mapping[str, Any]) -> list[str]:
    outcome = str(e.get("outcome"))
    failures = (e.get("failures") or {}).get("count")
    head = f"patch {e.get('iteration')} {outcome.upper()}"
    if outcome == "empty":
        return [f"{head}: the LLM proposed nothing ({failures} failures to fix)"]
    where = " on dev" if e.get("on_dev") else ""
    lines = [f"{head}{where}: {_metrics_move(e.get('metrics_before'), e.get('metrics_after'))}"]
    if outcome == "accepted":
        lines.append(
            f"  {_change(e)}: added {_names(t, e.get('added'))}"
            if e.get("added")
            else f"  {_change(e)}"
        )
        lines += _merge_notes(t, e)
    else:
        proposed = e.get("proposed") or {}
        lines.append(
            f"  proposed {_change(proposed)} ({_names(t, proposed.get('added'))}); rules unchanged"
        )
    return lines


def _audit(t: Trace, e: Mapping[str, Any]) -> list[str]:
    stage = "mid-refinement" if e.get("stage") == "mid_refinement" else "final"
    head = f"audit ({stage})"
    actions, skipped = e.get("actions") or [], e.get("skipped") or []
    if not actions and not skipped:
        return [f"{head}: no actions proposed"]
    lines = [f"{head}: {len(actions)} applied, {len(skipped)} skipped  {_change(e)}"]
    for a in actions:
        if a.get("action") == "merge":
            result = a.get("result")
            into = f"{_short(t.name_of(result))} ({result})" if result else "a rule (discarded)"
            lines.append(f"  merged {_names(t, a.get('sources'))} → {into}")
        else:
            lines.append(f"  removed {_names(t, a.get('rules'))}")
    for s in skipped:
        lines.append(f"  skipped {s.get('action')} of {_names(t, s.get('rules'))}: {s.get('why')}")
    if e.get("reverted"):
        move = _metrics_move(e.get("metrics_before"), e.get("metrics_after"))
        lines.append(f"  REVERTED by the F1 safety net ({move})")
    return lines


def _pruned(t: Trace, e: Mapping[str, Any]) -> list[str]:
    reason = str(e.get("reason")).replace("_", " ")
    removed = e.get("removed") or []
    lines = [f"pruned {len(removed)} ({reason}): {_names(t, removed) or 'none'}"]
    for rid, delta in (e.get("marginal_f1") or {}).items():
        lines.append(f"  {_short(t.name_of(rid))}: marginal F1 {delta:+.3f}")
    return lines


def _refined(t: Trace, e: Mapping[str, Any]) -> list[str]:
    m = e.get("metrics") or {}
    reason = str(e.get("stop_reason")).replace("_", " ")
    kept = e.get("kept_iteration")
    source = "synthesis" if kept == 0 else f"iteration {kept}"
    lines = [
        f"refined: {reason} at iteration {e.get('iterations')}/{e.get('max_iterations')}, "
        f"best F1 {pct(m.get('f1'))}"
    ]
    if e.get("kept_earlier"):
        lines.append(
            f"  kept the earlier rules of step #{e.get('kept_seq')} ({source})  {_change(e)}"
        )
    return lines


def _finalized(t: Trace, e: Mapping[str, Any]) -> list[str]:
    error = e.get("error")
    suffix = f": {error.get('type')}: {error.get('message')}" if error else ""
    return [f"finalized: {e.get('status')}, {len(e.get('rules') or [])} rules{suffix}"]


def _run_started(t: Trace, e: Mapping[str, Any]) -> list[str]:
    return [f"run started with {len(e.get('rules') or [])} rules"]


_RENDERERS: dict[str, Callable[[Trace, Mapping[str, Any]], list[str]]] = {
    "run_started": _run_started,
    "synthesized": _synthesized,
    "iteration_evaluated": _iteration,
    "critiqued": _critiqued,
    "guided": _guided,
    "patch_decided": _patch,
    "audit_applied": _audit,
    "pruned": _pruned,
    "refined": _refined,
    "finalized": _finalized,
}


# A trace may come from another version or another writer: odd fields never stop the story.
_ODD = (AttributeError, KeyError, TypeError, ValueError, IndexError)


def _event_lines(trace: Trace, event: Mapping[str, Any]) -> list[str]:
    render = _RENDERERS.get(str(event.get("type")))
    try:
        lines = render(trace, event) if render else [f"{event.get('type')} (unknown event type)"]
    except _ODD:
        lines = [f"{event.get('type')} (details unreadable)"]
    lines = [clean(line) for line in lines]  # names come from the LLM: no control reaches a tty
    t = event.get("t")
    clock = f"{t:.1f}s" if isinstance(t, (int, float)) else ""
    rules = event.get("rules_after")
    count = str(len(rules)) if isinstance(rules, list) else ""
    prefix = f"{event.get('seq', '?'):>3} {clock:>6} {count:>3}  "
    out = []
    for number, line in enumerate(lines):
        lead = prefix if number == 0 else " " * len(prefix)
        out += textwrap.wrap(
            line, WIDTH, initial_indent=lead, subsequent_indent=" " * (len(prefix) + 2)
        ) or [lead]
    return out


def _header(trace: Trace) -> list[str]:
    run = trace.run
    coordinator = (run.get("coordinator") or {}).get("class", "—")
    duration = run.get("duration_s")
    took = f"{duration:.2f}s" if isinstance(duration, (int, float)) else "—"
    return [
        "=" * WIDTH,
        f"RULECHEF TRACE  {run.get('dataset')}  ({run.get('kind')}, {run.get('status')}, {took})",
        "=" * WIDTH,
        f"  Task: {run.get('task')} ({run.get('task_type')})   coordinator: {coordinator}",
        f"  Started {run.get('started_at')}   rulechef {run.get('rulechef_version')}"
        f"   run {str(run.get('id'))[:8]}",
        "",
        f"{'seq':>3} {'time':>6} {'rules':>3}  step",
        "  " + "-" * (WIDTH - 2),
    ]


def _footer(trace: Trace) -> list[str]:
    final = trace.get("final") or {}
    metrics = final.get("metrics") or {}
    rules = final.get("rules") or []
    lines = ["", f"  Final: {len(rules)} rules"]
    if metrics:
        lines[-1] += (
            f"   F1 {pct(metrics.get('f1'))}  P {pct(metrics.get('precision'))}  "
            f"R {pct(metrics.get('recall'))}  exact {pct(metrics.get('exact_match'))}"
        )
        for cm in metrics.get("per_class") or []:
            lines.append(
                f"    {_short(str(cm.get('label')), 24):<24} F1 {pct(cm.get('f1')):>6}  "
                f"P {pct(cm.get('precision')):>6}  R {pct(cm.get('recall')):>6}"
            )
    for rule in rules:
        lines.append(f"    - {_short(str(rule.get('name')), 40):<40} {rule.get('id')}")
    error = trace.run.get("error")
    if error:
        lines.append(f"  Error: {error.get('type')}: {error.get('message')}")
    lines.append("=" * WIDTH)
    return lines


def render_trace(trace: Trace | Mapping[str, Any]) -> str:
    """Return the step-by-step story of a trace as text (no colour)."""
    trace = trace if isinstance(trace, Trace) else Trace(trace)
    try:
        lines = _header(trace)
    except _ODD:
        lines = ["=" * WIDTH, "RULECHEF TRACE (header unreadable)", "=" * WIDTH]
    for event in trace.events:
        lines += _event_lines(trace, event)
    try:
        lines += _footer(trace)
    except _ODD:
        lines += ["", "  Final: unreadable", "=" * WIDTH]
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
