"""One describer per event type: what each event says, as plain lines of parts.

The text story (:mod:`rulechef_trace.report.text`) and the HTML step table
(:mod:`rulechef_trace.report.html`) both render these lines, so the two cannot
drift. A line is a tuple of parts: plain text, or a :class:`Name` (a rule name
or label that an LLM or a data set chose), which each renderer sanitises and,
on a terminal, cuts to its width. :data:`DESCRIBERS` has one entry per event
type of :data:`rulechef_trace.events.CATALOGUE`; a test checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rulechef_trace.report.across_runs import short_id
from rulechef_trace.report.llm import failure_text, step_llm
from rulechef_trace.report.numbers import number, pct, points, whole
from rulechef_trace.report.task_metrics import TRANSFORMATION, headline, task_type
from rulechef_trace.trace import Trace

__all__ = ["DESCRIBERS", "Line", "Name", "Part", "Row", "Step", "describe", "story"]

NAME = 28  # terminal columns of a rule name shown on its own
LISTED = 24  # terminal columns of each name in a list of names


@dataclass(frozen=True)
class Name:
    """A name or label chosen by an LLM or a data set: renderers sanitise it.

    Attributes:
        value: The name as the trace has it.
        width: At most this many terminal columns in the text story.
    """

    value: str
    width: int = NAME


Part = str | Name
Line = tuple[Part, ...]


@dataclass(frozen=True)
class Step:
    """What one event says.

    Attributes:
        lines: The head line, then detail lines; none when the event says
            nothing worth a line (a critic that did not run).
        outcome: ``accepted``, ``rejected`` or ``empty`` for a patch (renderers
            may colour it), else empty.
        fold: When set, the event carries no more than this: it is appended
            to the iteration line before it instead of taking a line.
    """

    lines: tuple[Line, ...] = ()
    outcome: str = ""
    fold: Line | None = None


@dataclass(frozen=True)
class Row:
    """One row of the story: an event and the lines shown for it (folds included)."""

    event: Mapping[str, Any]
    lines: tuple[Line, ...]
    outcome: str = ""


def _ids(value: Any) -> list[str]:
    return [str(rid) for rid in value] if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _text(value: Any, unknown: str = "?") -> str:
    return unknown if value is None else str(value)


def _count(value: Any) -> str:
    found = whole(value)
    return "?" if found is None else str(found)


def names(trace: Trace, ids: Any, limit: int = 4) -> Line:
    """The names of rules, the first ``limit`` of them, then how many more."""
    found = _ids(ids)
    parts: list[Part] = []
    for rid in found[:limit]:
        parts += (
            [", ", Name(trace.name_of(rid), LISTED)]
            if parts
            else [Name(trace.name_of(rid), LISTED)]
        )
    if len(found) > limit:
        parts.append(f" +{len(found) - limit} more")
    return tuple(parts)


def change(event: Mapping[str, Any]) -> str:
    """``+added −removed`` of a rule-moving event."""
    return f"+{len(_ids(event.get('added')))} −{len(_ids(event.get('removed')))}"


def metrics_move(before: Any, after: Any, kind: str = "") -> str:
    """``F1 a → b, P c → d`` between two metric dicts (rulechef decides patches on these).

    For a transformation, exact match ``a → b`` comes first: it is the
    figure rulechef prints for that task.
    """
    before, after = _mapping(before), _mapping(after)
    move = (
        f"F1 {pct(before.get('f1'))} → {pct(after.get('f1'))}, "
        f"P {pct(before.get('precision'))} → {pct(after.get('precision'))}"
    )
    if kind == TRANSFORMATION:
        exact = f"exact {pct(before.get('exact_match'))} → {pct(after.get('exact_match'))}"
        return f"{exact}; {move}"
    return move


def _kind(t: Trace) -> str:
    return task_type(t.run)


def kept_metrics(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """A refined event's metrics, or, when rulechef returned its empty result, the kept rules'."""
    m = _mapping(event.get("metrics"))
    measured = _mapping(event.get("kept_measured"))
    if not whole(m.get("docs")) and measured.get("metrics"):
        return _mapping(measured.get("metrics"))
    return m


def _merge_notes(t: Trace, e: Mapping[str, Any]) -> list[Line]:
    notes: list[Line] = []
    for pair in _mappings(e.get("replaced")):
        old, new = _text(pair.get("old")), _text(pair.get("new"))
        notes.append(("replaced ", Name(t.name_of(old)), f" ({old}) by {new}"))
    for key, verb in (
        ("deleted", "deleted "),
        ("collapsed", "collapsed (duplicate names) "),
        ("deduped", "deduplicated "),
    ):
        if _ids(e.get(key)):
            notes.append((verb, *names(t, e.get(key))))
    return notes


def _with_llm(lines: list[Line], e: Mapping[str, Any]) -> tuple[Line, ...]:
    """The lines of a step, with its LLM facts and skipped rules as a last line."""
    facts = step_llm(e)
    dropped = whole(e.get("dropped")) or 0
    skipped = f"rulechef's parser skipped {dropped} rules of the answer" if dropped else ""
    tail = "; ".join(part for part in (facts, skipped) if part)
    return (*lines, (tail,)) if tail else tuple(lines)


def _llm_called(t: Trace, e: Mapping[str, Any]) -> Step:
    # A call's facts are told on its step's line; only a failed call that no
    # step event tells (task discovery, say) gets a line of its own.
    if e.get("status") != "error" or e.get("step") not in ("other", None):
        return Step()
    return Step(((f"LLM call FAILED: {failure_text(e.get('error'))}",),))


def _rules_edited(t: Trace, e: Mapping[str, Any]) -> Step:
    lines: list[Line] = [(f"rules edited by {_text(e.get('method'))}(): {change(e)}",)]
    for key, verb in (("added", "added "), ("removed", "removed ")):
        if _ids(e.get(key)):
            lines.append((verb, *names(t, e.get(key))))
    return Step(tuple(lines))


def _run_started(t: Trace, e: Mapping[str, Any]) -> Step:
    lines: list[Line] = [(f"run started with {len(_ids(e.get('rules')))} rules",)]
    changed = _mapping(e.get("changed_since"))
    if changed:
        lines.append(
            (
                f"changed while no hook listened: {change(changed)} "
                f"against run {short_id(changed.get('run'))}",
            )
        )
        for key, verb in (("added", "added "), ("removed", "removed ")):
            if _ids(changed.get(key)):
                lines.append((verb, *names(t, changed.get(key))))
        lines += _descent(changed)
    return Step(tuple(lines))


def _descent(changed: Mapping[str, Any]) -> list[Line]:
    """Which learning run the rules descend from, and the recorded runs since (old traces: none)."""
    if "learning_run" not in changed:
        return []
    learned = changed.get("learning_run")
    edits = [short_id(rid) for rid in _ids(changed.get("edits"))]
    since = (
        f", then recorded run{'s' if len(edits) > 1 else ''} {', '.join(edits)}" if edits else ""
    )
    if learned is None:
        return [(f"no kept learning run before that{since}",)]
    return [(f"the rules come from learning run {short_id(learned)}{since}",)]


def _synthesized(t: Trace, e: Mapping[str, Any]) -> Step:
    data = _mapping(e.get("data"))
    corrections = whole(data.get("corrections")) or 0
    extra = f" + {corrections} corrections" if corrections else ""
    head = (
        f"synthesized ({_text(e.get('mode'))}): {_count(e.get('count'))} rules from "
        f"{_count(data.get('examples'))} examples{extra}; {change(e)}"
    )
    lines: list[Line] = [(head,), *_merge_notes(t, e)]
    fix = _mapping(e.get("failures"))
    if whole(fix.get("count")):
        synthetic = whole(fix.get("synthetic")) or 0
        told = f"patched against {_count(fix.get('count'))} failures"
        if synthetic:
            told += (
                f" ({synthetic} synthetic: rulechef found none and sent training examples"
                " with the feedback)"
            )
        lines.append((told,))
    if e.get("llm_error"):
        lines.append((f"every synthesis call FAILED: {failure_text(e.get('llm_error'))}",))
    failed = [str(label) for label in e.get("failed_labels") or () if label is not None]
    if failed:
        listed: list[Part] = []
        for label in failed:
            listed += [", ", Name(label, LISTED)] if listed else [Name(label, LISTED)]
        lines.append(("per-class calls FAILED for ", *listed))
    return Step(_with_llm(lines, e))


def _iteration(t: Trace, e: Mapping[str, Any]) -> Step:
    m = _mapping(e.get("metrics"))
    failures = whole(m.get("failures"))
    head = (
        f"iteration {_count(e.get('iteration'))}/{_count(e.get('max_iterations'))}: "
        f"{headline(_kind(t), m)}"
    )
    return Step(((head + (f", {failures} failures" if failures is not None else ""),),))


def _critic_enabled(t: Trace) -> bool:
    return _mapping(t.run.get("coordinator")).get("enable_critic") is True


def _critiqued(t: Trace, e: Mapping[str, Any]) -> Step:
    if e.get("llm_error"):
        failed = f"critic: the LLM call FAILED ({failure_text(e.get('llm_error'))}); no critique"
        return Step(((failed,),))
    if not e.get("returned"):
        # rulechef asks every coordinator; one whose critic is off answers None.
        return Step((("critic: returned no critique",),)) if _critic_enabled(t) else Step()
    guidance = ", task guidance" if e.get("task_guidance") else ""
    rules = len(_ids(e.get("rules_with_feedback")))
    return Step(_with_llm([(f"critic: feedback on {rules} rules{guidance}",)], e))


def _guided(t: Trace, e: Mapping[str, Any]) -> Step:
    go_on = bool(e.get("should_continue"))
    verdict = "go on" if go_on else "STOP"
    chars = whole(e.get("guidance_chars")) or 0
    if e.get("llm_error"):
        why = failure_text(e.get("llm_error"))
        return Step(
            ((f"coordinator guidance: the LLM call FAILED ({why}); went on without advice",),)
        )
    if chars:
        head = f"coordinator guidance: {verdict} ({chars} chars of advice)"
        return Step(_with_llm([(head,)], e))
    return Step(
        ((f"coordinator guidance: {verdict} (no advice)",),), fold=("go on",) if go_on else None
    )


def _patch(t: Trace, e: Mapping[str, Any]) -> Step:
    outcome = _text(e.get("outcome"))
    css = outcome if outcome in ("accepted", "rejected", "empty") else ""
    head = f"patch {_count(e.get('iteration'))} {outcome.upper()}"
    if outcome in _NOTHING:
        failures = whole(_mapping(e.get("failures")).get("count"))
        to_fix = f" ({failures} failures to fix)" if failures is not None else ""
        said = _NOTHING[outcome].format(
            error=failure_text(e.get("llm_error")), dropped=whole(e.get("dropped")) or "the"
        )
        return Step(_with_llm([(f"{head}: {said}{to_fix}",)], {**e, "dropped": 0}), "empty")
    where = " on dev" if e.get("on_dev") else ""
    move = metrics_move(e.get("metrics_before"), e.get("metrics_after"), _kind(t))
    lines: list[Line] = [(f"{head}{where}: {move}",)]
    if outcome == "accepted":
        added = names(t, e.get("added"))
        lines.append((f"{change(e)}: added ", *added) if added else (change(e),))
        lines += _merge_notes(t, e)
    else:
        proposed = _mapping(e.get("proposed"))
        listed = names(t, proposed.get("added"))
        named: Line = (" (", *listed, ")") if listed else ()
        lines.append(("proposed ", change(proposed), *named, "; rules unchanged"))
    return Step(_with_llm(lines, e), css)


#: What a patch that changed nothing says, by its outcome.
_NOTHING = {
    "empty": "the LLM proposed nothing",
    "llm_error": "the LLM call FAILED ({error}); rules unchanged",
    "unparsable": "the LLM's answer was not JSON rulechef could read; rules unchanged",
    "invalid_rules": "rulechef's parser skipped all {dropped} rules of the answer; rules unchanged",
}


def _audit_action(t: Trace, action: Mapping[str, Any]) -> Line:
    if action.get("action") == "merge":
        result = action.get("result")
        into: Line = (
            (Name(t.name_of(str(result))), f" ({result})") if result else ("a rule (discarded)",)
        )
        return ("merged ", *names(t, action.get("sources")), " → ", *into)
    return ("removed ", *names(t, action.get("rules")))


def _audit(t: Trace, e: Mapping[str, Any]) -> Step:
    head = f"audit ({'mid-refinement' if e.get('stage') == 'mid_refinement' else 'final'})"
    actions, skipped = _mappings(e.get("actions")), _mappings(e.get("skipped"))
    if e.get("audited") is False or (
        "audited" not in e and not actions and not skipped and not _audit_calls(e)
    ):
        # The coordinator did not audit (SimpleCoordinator never does): nothing to tell.
        return Step()
    if e.get("llm_error") and not actions:
        why = failure_text(e.get("llm_error"))
        return Step(((f"{head}: the LLM call FAILED ({why}); no action applied",),))
    if not actions and not skipped:
        return Step(_with_llm([(f"{head}: no actions proposed",)], e))
    lines: list[Line] = [(f"{head}: {len(actions)} applied, {len(skipped)} skipped  {change(e)}",)]
    measured = all(
        number(_mapping(e.get(key)).get("f1")) is not None
        for key in ("metrics_before", "metrics_after")
    )
    move = metrics_move(e.get("metrics_before"), e.get("metrics_after"), _kind(t))
    if measured and not e.get("reverted"):
        lines.append((move,))
    lines += [_audit_action(t, a) for a in actions]
    for s in skipped:
        why = _text(s.get("why"), "no reason given")
        lines.append(
            ("skipped ", _text(s.get("action")), " of ", *names(t, s.get("rules")), f": {why}")
        )
    if e.get("reverted"):
        lines.append((f"REVERTED by the F1 safety net ({move})",))
    return Step(_with_llm(lines, e))


def _audit_calls(e: Mapping[str, Any]) -> int:
    # Traces written before ``audited`` existed: an audit with no call proposed nothing.
    return whole(_mapping(e.get("llm")).get("calls")) or 0


def _pruned(t: Trace, e: Mapping[str, Any]) -> Step:
    reason = _text(e.get("reason")).replace("_", " ")
    removed = _ids(e.get("removed"))
    listed = names(t, removed) or ("none",)
    lines: list[Line] = [(f"pruned {len(removed)} ({reason}): ", *listed)]
    for rid, delta in _mapping(e.get("marginal_f1")).items():
        lines.append((Name(t.name_of(str(rid))), f": marginal F1 {points(delta)}"))
    return Step(tuple(lines))


def _refined(t: Trace, e: Mapping[str, Any]) -> Step:
    kind = _kind(t)
    m = kept_metrics(e)
    reason = _text(e.get("stop_reason")).replace("_", " ")
    best = headline(kind, m) if kind == TRANSFORMATION else f"best F1 {pct(m.get('f1'))}"
    head = (
        f"refined: {reason} at iteration {_count(e.get('iterations'))}/"
        f"{_count(e.get('max_iterations'))}, {best}"
    )
    notes: list[Line] = [(note,)] if (note := _holdout_note(e)) else []
    if not e.get("kept_earlier"):
        return Step(((head,), *notes))
    kept = e.get("kept_iteration")
    source = "synthesis" if kept == 0 else f"iteration {_count(kept)}"
    kept_line = (
        f"kept the earlier rules of step #{_count(e.get('kept_seq'))} ({source})  {change(e)}"
    )
    return Step(((head,), (kept_line,), *notes))


def _holdout_note(e: Mapping[str, Any]) -> str:
    holdout = _mapping(e.get("holdout"))
    fraction = number(holdout.get("fraction"))
    if fraction is None:
        return ""
    if holdout.get("used") is False:
        return (
            f"holdout of {fraction:.0%} SKIPPED by rulechef (dev set too small):"
            " refined and measured on the training data"
        )
    if holdout.get("used"):
        return f"measured on a dev holdout of {_count(holdout.get('dev_examples'))} examples"
    return ""


def _finalized(t: Trace, e: Mapping[str, Any]) -> Step:
    error = _mapping(e.get("error"))
    suffix = f": {_text(error.get('type'))}: {_text(error.get('message'), '')}" if error else ""
    m = _final_metrics(t, e)
    kind = _kind(t)
    score = ""
    if m.get("f1") is not None or m.get("exact_match") is not None:
        score = f", {headline(kind, m)}" if kind == TRANSFORMATION else f", F1 {pct(m.get('f1'))}"
    rules = len(_ids(e.get("rules")))
    return Step(((f"finalized: {_text(e.get('status'))}, {rules} rules{score}{suffix}",),))


def _final_metrics(t: Trace, e: Mapping[str, Any]) -> Mapping[str, Any]:
    m = _mapping(e.get("metrics"))
    if m and not whole(m.get("docs")):
        refined = t.events_of("refined")
        if refined:
            return kept_metrics(refined[-1])
    return m


Describer = Callable[[Trace, Mapping[str, Any]], Step]

#: One describer per event type of the catalogue (tests/test_event_catalogue.py checks it).
DESCRIBERS: dict[str, Describer] = {
    "run_started": _run_started,
    "llm_called": _llm_called,
    "synthesized": _synthesized,
    "iteration_evaluated": _iteration,
    "critiqued": _critiqued,
    "guided": _guided,
    "patch_decided": _patch,
    "audit_applied": _audit,
    "pruned": _pruned,
    "refined": _refined,
    "rules_edited": _rules_edited,
    "finalized": _finalized,
}

# A trace may come from another version or another writer: odd fields never stop the story.
ODD = (AttributeError, KeyError, TypeError, ValueError, IndexError)


def describe(trace: Trace, event: Mapping[str, Any]) -> Step:
    """What one event says, by the describer of its type (never raises on odd fields)."""
    kind = _text(event.get("type"))
    describer = DESCRIBERS.get(kind)
    if describer is None:
        return Step(((kind, " (unknown event type)"),))
    try:
        return describer(trace, event)
    except ODD:
        return Step(((kind, " (details unreadable)"),))


def story(trace: Trace) -> list[Row]:
    """The rows of a trace's story: events that say nothing are left out, folds applied."""
    rows: list[Row] = []
    for event in trace.events:
        step = describe(trace, event)
        if not step.lines:
            continue
        last = rows[-1] if rows else None
        if step.fold is not None and last and last.event.get("type") == "iteration_evaluated":
            head = (*last.lines[0], "; ", *step.fold)
            rows[-1] = Row(last.event, (head, *last.lines[1:]), last.outcome)
            continue
        rows.append(Row(event, step.lines, step.outcome))
    return rows
