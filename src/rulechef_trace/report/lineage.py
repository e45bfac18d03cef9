"""Questions asked of loaded traces: rule lineage, run diffs and run history.

Every function here is pure: it takes :class:`~rulechef_trace.Trace` objects
(or a storage folder, for :func:`history`) and returns plain data, frozen
dataclasses with a ``to_dict()``. The ``render_*`` functions turn that data
into fixed-width text in the style of :func:`~rulechef_trace.render_trace`.
"""

from __future__ import annotations

import dataclasses
import logging
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulechef_trace.report.text import pct
from rulechef_trace.trace import Trace, TraceError, load_trace

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

logger = logging.getLogger("rulechef_trace")

WIDTH = 78
_NAME = 30
_METRICS = (
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("exact_match", "exact match"),
)


class UnknownRuleError(TraceError, KeyError):
    """A rule id or name that the trace does not know.

    Both a :class:`~rulechef_trace.TraceError` (a bad input) and a
    ``KeyError`` (a failed lookup).

    Attributes:
        rule: The id or name asked for.
    """

    def __init__(self, rule: str, path: str | Path | None = None):
        self.rule = rule
        super().__init__(f"no rule with id or name {rule!r} in this trace", path)

    def __str__(self) -> str:
        return Exception.__str__(self)


class _Data:
    """Mixin: ``to_dict()`` for the frozen dataclasses of this module."""

    def to_dict(self) -> dict[str, Any]:
        """Return the data as plain dicts and lists (JSON-ready)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]


# ---------------------------------------------------------------------------
# Lineage
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageStep(_Data):
    """One event in a rule's life.

    Attributes:
        seq: The event's sequence number in the trace.
        event: The event type (``synthesized``, ``patch_decided``, ...).
        action: ``created``, ``restored``, ``removed``, ``kept`` or ``noted``.
        text: What happened to the rule, in one sentence.
        related: Ids of other rules the step names (ancestors, successors).
    """

    seq: int
    event: str
    action: str
    text: str
    related: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleLineage(_Data):
    """A rule, every event that touched it, and the rules it came from.

    Attributes:
        rule_id: The rule's id.
        name: The rule's name (its id when the trace does not know it).
        final: Whether the rule is among the run's final rules.
        origin: How it came into being: ``synthesized``, ``patch``, ``merge``,
            ``carried`` (present when the run started), ``proposed`` (only
            ever proposed by a patch, never among the rules) or ``unknown``.
        steps: Its events, in sequence order.
        relation: How it relates to ``parents``: ``replaced`` (it replaced
            them by name) or ``merged`` (an audit merged them into it).
        parents: Lineages of the rules it replaced or was merged from.
    """

    rule_id: str
    name: str
    final: bool
    origin: str
    steps: tuple[LineageStep, ...]
    relation: str | None = None
    parents: tuple[RuleLineage, ...] = ()


def resolve_rule(trace: Trace, rule: str) -> list[str]:
    """Find the rule ids a user means by an id or a name.

    An exact id wins; else every final rule of that name; else the rule of
    that name added last; else the one a patch proposed last.

    Raises:
        UnknownRuleError: when no rule has that id or name.
    """
    known = _known_ids(trace)
    if rule in known:
        return [rule]
    final = [rid for rid in trace.final_rules if trace.name_of(rid) == rule]
    if final:
        return final
    named = [rid for rid in _creation_order(trace) if trace.name_of(rid) == rule]
    if named:
        return [named[-1]]
    proposed = [rid for rid in _mention_order(trace) if trace.name_of(rid) == rule]
    if proposed:
        return [proposed[-1]]
    raise UnknownRuleError(rule)


def lineage(trace: Trace, rule: str | None = None) -> list[RuleLineage]:
    """Tell how rules came to be: every event that created, changed or kept them.

    Args:
        trace: A loaded trace.
        rule: A rule id or name; None for every final rule.

    Returns:
        One lineage per rule (several when a name is shared by several final
        rules), each with its ancestors followed through replacements and
        merges.

    Raises:
        UnknownRuleError: when ``rule`` is neither an id nor a name in the trace.
    """
    ids = list(trace.final_rules) if rule is None else resolve_rule(trace, rule)
    index = _LineageIndex(trace)
    return [index.lineage(rid, frozenset()) for rid in ids]


def _known_ids(trace: Trace) -> set[str]:
    ids = set((trace.get("rules") or {}).keys()) | set(trace.final_rules)
    for event in trace.events:
        for key in ("rules", "added", "removed", "rules_after"):
            ids.update(event.get(key) or ())
    return ids


def _mention_order(trace: Trace) -> list[str]:
    """Every rule id the trace names, in order of first mention (the rule table's order)."""
    table = trace.get("rules")
    return [str(rid) for rid in table] if isinstance(table, dict) else []


def _creation_order(trace: Trace) -> list[str]:
    order: list[str] = []
    for event in trace.events:
        for rid in list(event.get("rules") or ()) + list(event.get("added") or ()):
            if rid not in order:
                order.append(rid)
    return order


class _LineageIndex:
    """Walks a trace once per rule, turning events into lineage steps."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.final = set(trace.final_rules)
        self.present = self._presence(trace.events)

    @staticmethod
    def _presence(events: list[dict[str, Any]]) -> list[frozenset[str]]:
        """The rule ids present just before each event."""
        current: list[str] = []
        before: list[frozenset[str]] = []
        for event in events:
            before.append(frozenset(current))
            if event.get("type") == "run_started":
                current = list(event.get("rules") or [])
                continue
            removed = set(event.get("removed") or ())
            current = [rid for rid in current if rid not in removed]
            current += [rid for rid in event.get("added") or () if rid not in current]
        return before

    def lineage(self, rid: str, seen: frozenset[str]) -> RuleLineage:
        steps = [s for i, e in enumerate(self.trace.events) for s in self._steps(rid, i, e)]
        origin, relation, parent_ids = self._origin(rid)
        seen = seen | {rid}
        parents = tuple(self.lineage(p, seen) for p in parent_ids if p not in seen)
        return RuleLineage(
            rule_id=rid,
            name=self.trace.name_of(rid),
            final=rid in self.final,
            origin=origin,
            steps=tuple(steps),
            relation=relation if parents else None,
            parents=parents,
        )

    def _origin(self, rid: str) -> tuple[str, str | None, list[str]]:
        for event in self.trace.events:
            kind = event.get("type")
            if kind == "run_started" and rid in (event.get("rules") or ()):
                return "carried", None, []
            if rid not in (event.get("added") or ()):
                continue
            replaced = [p["old"] for p in _pairs(event) if p.get("new") == rid]
            if kind == "audit_applied":
                sources = [
                    s
                    for a in _merges(event)
                    if a.get("result") == rid
                    for s in a.get("sources") or ()
                ]
                return "merge", "merged", sources
            if kind == "synthesized" and event.get("mode") != "incremental":
                return "synthesized", None, []
            if kind in ("synthesized", "patch_decided"):
                return "patch", "replaced" if replaced else None, replaced
            return "unknown", None, []
        if any(_proposal_text(rid, event) for event in self.trace.events):
            return "proposed", None, []
        return "unknown", None, []

    def _steps(self, rid: str, index: int, event: Mapping[str, Any]) -> list[LineageStep]:
        seq = int(event.get("seq") or 0)
        kind = str(event.get("type"))
        was_present = rid in self.present[index]
        if rid in (event.get("added") or ()):
            text, related = _added_text(self.trace, rid, event)
            action = "restored" if kind == "refined" else "created"
            return [LineageStep(seq, kind, action, text, related)]
        if rid in (event.get("removed") or ()):
            text, related = _removed_text(self.trace, rid, event)
            return [LineageStep(seq, kind, "removed", text, related)]
        if kind == "run_started" and rid in (event.get("rules") or ()):
            return [
                LineageStep(
                    seq, kind, "created", "present when the run started (learned by an earlier run)"
                )
            ]
        if not was_present:
            proposal = _proposal_text(rid, event)
            return [LineageStep(seq, kind, "noted", proposal)] if proposal else []
        note = _NOTES.get(kind)
        found = note(self.trace, rid, event) if note else None
        if found is None:
            return []
        action, text = found
        return [LineageStep(seq, kind, action, text)]


def _pairs(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [p for p in event.get("replaced") or () if isinstance(p, dict)]


def _merges(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [a for a in event.get("actions") or () if a.get("action") == "merge"]


def _label(trace: Trace, rid: str) -> str:
    """``name (id)`` of a rule."""
    return f"{trace.name_of(rid)} ({rid})"


def _audit_name(event: Mapping[str, Any]) -> str:
    if event.get("stage") == "mid_refinement":
        return f"the mid-refinement audit of iteration {event.get('iteration')}"
    return "the final audit"


def _patch_name(event: Mapping[str, Any]) -> str:
    if event.get("type") == "synthesized":
        return "the incremental patch"
    return f"the patch of iteration {event.get('iteration')}"


def _step_name(trace: Trace, seq: Any) -> str:
    for event in trace.events:
        if event.get("seq") == seq:
            if event.get("type") == "synthesized":
                return f"step #{seq} (synthesis)"
            if event.get("type") == "patch_decided":
                return f"step #{seq} (patch of iteration {event.get('iteration')})"
            return f"step #{seq} ({event.get('type')})"
    return f"step #{seq}"


def _added_text(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    kind = event.get("type")
    if kind == "synthesized" and event.get("mode") != "incremental":
        mode = str(event.get("mode")).replace("_", "-")
        return f"synthesized ({mode} synthesis)", ()
    if kind == "audit_applied":
        sources = [
            s for a in _merges(event) if a.get("result") == rid for s in a.get("sources") or ()
        ]
        names = " and ".join(_label(trace, s) for s in sources) or "other rules"
        return f"merged from {names} by {_audit_name(event)}", tuple(sources)
    if kind == "refined":
        best = _step_name(trace, event.get("kept_seq"))
        return f"restored: refinement kept its best rules, those of {best}", ()
    if kind in ("synthesized", "patch_decided"):
        olds = [p["old"] for p in _pairs(event) if p.get("new") == rid]
        text = f"added by {_patch_name(event)}"
        if olds:
            text += ", replacing the earlier " + ", ".join(_label(trace, o) for o in olds)
        return text, tuple(olds)
    return f"added ({kind})", ()


def _removed_text(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    kind = event.get("type")
    if kind == "audit_applied":
        return _removed_by_audit(trace, rid, event)
    if kind == "pruned":
        return _removed_by_pruning(rid, event), ()
    if kind == "refined":
        return (
            f"dropped: refinement went back to the rules of "
            f"{_step_name(trace, event.get('kept_seq'))}",
            (),
        )
    if kind == "synthesized" and event.get("mode") != "incremental":
        return "dropped: a full re-synthesis replaced every rule", ()
    return _removed_by_patch(trace, rid, event)


def _removed_by_audit(
    trace: Trace, rid: str, event: Mapping[str, Any]
) -> tuple[str, tuple[str, ...]]:
    for action in _merges(event):
        if rid in (action.get("sources") or ()):
            result = action.get("result")
            into = _label(trace, result) if result else "a merged rule"
            return f"merged into {into} by {_audit_name(event)}", (result,) if result else ()
    return f"removed by {_audit_name(event)}", ()


def _removed_by_pruning(rid: str, event: Mapping[str, Any]) -> str:
    reason = event.get("reason")
    if reason == "harmful_rules":
        delta = (event.get("marginal_f1") or {}).get(rid)
        why = f" (marginal F1 {delta:+.3f})" if isinstance(delta, (int, float)) else ""
        return f"pruned as harmful by rank_rules{why}"
    if reason == "weak_rules":
        return "pruned as weak (applied often, never right)"
    return f"removed ({str(reason).replace('_', ' ')})"


def _removed_by_patch(
    trace: Trace, rid: str, event: Mapping[str, Any]
) -> tuple[str, tuple[str, ...]]:
    where = _patch_name(event)
    news = [p["new"] for p in _pairs(event) if p.get("old") == rid]
    if news:
        return f"replaced by {_label(trace, news[0])} in {where}", (news[0],)
    if rid in (event.get("deleted") or ()):
        return f"deleted by {where}", ()
    if rid in (event.get("deduped") or ()):
        return f"dropped as a duplicate pattern in {where}", ()
    if rid in (event.get("collapsed") or ()):
        return f"dropped in {where}: a later rule of the same name won", ()
    return f"removed by {where}", ()


def _proposal_text(rid: str, event: Mapping[str, Any]) -> str | None:
    """What became of a rule a patch proposed but that never joined the rules."""
    if event.get("type") not in ("patch_decided", "synthesized"):
        return None
    where = _patch_name(event)
    if event.get("outcome") == "rejected":
        proposed = event.get("proposed") or {}
        if rid in (proposed.get("added") or ()):
            return f"proposed by {where}, which was rejected"
        return None
    if rid not in (event.get("patch") or ()) or rid in (event.get("added") or ()):
        return None
    if rid in (event.get("deduped") or ()):
        return f"proposed by {where}, dropped as a duplicate pattern"
    if rid in (event.get("collapsed") or ()):
        return f"proposed by {where}, dropped: a later rule of the same name won"
    return f"proposed by {where}, not kept"


def _note_audit(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    touched = any(
        rid in (a.get("sources") or a.get("rules") or ()) for a in event.get("actions") or ()
    )
    if event.get("reverted") and touched:
        return "kept", f"kept: {_audit_name(event)} changed it, then reverted (F1 dropped)"
    return "kept", f"survived {_audit_name(event)}"


def _note_rejected(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    if event.get("outcome") != "rejected":
        return None
    if rid in ((event.get("proposed") or {}).get("removed") or ()):
        return (
            "kept",
            f"kept: the rejected patch of iteration {event.get('iteration')} would have removed it",
        )
    return None


def _note_critic(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    if rid in (event.get("rules_with_feedback") or ()):
        return "noted", f"the critic commented on it (iteration {event.get('iteration')})"
    return None


def _note_refined(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    reason = str(event.get("stop_reason")).replace("_", " ")
    return "kept", f"kept by refinement (stopped: {reason})"


def _note_pruned(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    reason = str(event.get("reason")).replace("_", " ")
    return "kept", f"survived pruning ({reason})"


_NOTES: dict[str, Callable[[Trace, str, Mapping[str, Any]], tuple[str, str] | None]] = {
    "audit_applied": _note_audit,
    "patch_decided": _note_rejected,
    "critiqued": _note_critic,
    "refined": _note_refined,
    "pruned": _note_pruned,
}

# Event types that say nothing about a rule beyond their added/removed lists
# (every event type is either here or in _NOTES; a test checks it).
_NOT_NOTED = ("run_started", "synthesized", "iteration_evaluated", "guided", "finalized")


# ---------------------------------------------------------------------------
# Run summaries and diff
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary(_Data):
    """The headline numbers of one run.

    Attributes:
        run_id: The run's id.
        dataset: The rulechef dataset name.
        kind: ``learn`` or ``rank_rules``.
        status: The run's status.
        started_at: ISO 8601 UTC start time.
        duration_s: Seconds the run took (None when incomplete).
        iterations: Refinement iterations run (None for a ``rank_rules`` run).
        rules: Number of final rules.
        accepted: Accepted patches.
        rejected: Rejected patches.
        empty: Patches that came back empty.
        metrics: Final micro metrics (f1, precision, recall, exact_match) or None.
        per_class_f1: Final F1 per label.
    """

    run_id: str
    dataset: str
    kind: str
    status: str
    started_at: str | None
    duration_s: float | None
    iterations: int | None
    rules: int
    accepted: int
    rejected: int
    empty: int
    metrics: dict[str, float] | None
    per_class_f1: dict[str, float] = field(default_factory=dict)


def summarize(trace: Trace) -> RunSummary:
    """Sum a trace up: status, duration, iterations, patches, rules and metrics."""
    run = trace.run
    outcomes = [e.get("outcome") for e in trace.events_of("patch_decided")]
    duration = run.get("duration_s")
    return RunSummary(
        run_id=str(run.get("id")),
        dataset=str(run.get("dataset")),
        kind=str(run.get("kind")),
        status=trace.status,
        started_at=run.get("started_at"),
        duration_s=float(duration) if isinstance(duration, (int, float)) else None,
        iterations=_iterations(trace),
        rules=len(trace.final_rules),
        accepted=outcomes.count("accepted"),
        rejected=outcomes.count("rejected"),
        empty=outcomes.count("empty"),
        metrics=_micro(trace.final_metrics),
        per_class_f1=_per_class(trace.final_metrics),
    )


def _iterations(trace: Trace) -> int | None:
    if trace.run.get("kind") != "learn":
        return None
    refined = trace.events_of("refined")
    if refined and isinstance(refined[-1].get("iterations"), int):
        return int(refined[-1]["iterations"])
    return len(trace.events_of("iteration_evaluated"))


def _micro(metrics: Mapping[str, Any] | None) -> dict[str, float] | None:
    if not metrics:
        return None
    return {k: float(metrics[k]) for k, _ in _METRICS if isinstance(metrics.get(k), (int, float))}


def _per_class(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    found: dict[str, float] = {}
    for cm in (metrics or {}).get("per_class") or ():
        if isinstance(cm, dict) and isinstance(cm.get("f1"), (int, float)):
            found[str(cm.get("label"))] = float(cm["f1"])
    return found


@dataclass(frozen=True)
class MetricDelta(_Data):
    """One metric in two runs: values (None when unknown) and B minus A."""

    name: str
    a: float | None
    b: float | None
    delta: float | None


@dataclass(frozen=True)
class TraceDiff(_Data):
    """Two runs side by side.

    Attributes:
        a: Summary of the first run.
        b: Summary of the second run.
        only_a: Names of rules only run A ended with (sorted).
        only_b: Names of rules only run B ended with (sorted).
        both: Names of rules both runs ended with (sorted).
        metrics: Final micro metrics of both runs and their deltas.
        per_class: Final per-label F1 of both runs and their deltas.
    """

    a: RunSummary
    b: RunSummary
    only_a: list[str]
    only_b: list[str]
    both: list[str]
    metrics: list[MetricDelta]
    per_class: list[MetricDelta]


def diff(a: Trace, b: Trace) -> TraceDiff:
    """Compare two runs: rules by name, final metrics, iterations, patches, status.

    Args:
        a: The first (usually older) trace.
        b: The second trace; deltas are B minus A.

    Returns:
        The comparison as plain data.
    """
    names_a = {a.name_of(rid) for rid in a.final_rules}
    names_b = {b.name_of(rid) for rid in b.final_rules}
    sa, sb = summarize(a), summarize(b)
    metrics = [
        _delta(label, (sa.metrics or {}).get(key), (sb.metrics or {}).get(key))
        for key, label in _METRICS
    ]
    labels = sorted(set(sa.per_class_f1) | set(sb.per_class_f1))
    per_class = [_delta(lab, sa.per_class_f1.get(lab), sb.per_class_f1.get(lab)) for lab in labels]
    return TraceDiff(
        a=sa,
        b=sb,
        only_a=sorted(names_a - names_b),
        only_b=sorted(names_b - names_a),
        both=sorted(names_a & names_b),
        metrics=metrics,
        per_class=per_class,
    )


def _delta(name: str, a: float | None, b: float | None) -> MetricDelta:
    delta = b - a if a is not None and b is not None else None
    return MetricDelta(name, a, b, delta)


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow(_Data):
    """One kept run of a dataset.

    Attributes:
        dataset: The dataset the run belongs to.
        started_at: ISO 8601 UTC start time.
        kind: ``learn`` or ``rank_rules``.
        status: The run's status.
        duration_s: Seconds the run took.
        iterations: Refinement iterations (None for ``rank_rules``).
        rules: Number of final rules.
        f1: Final micro F1, or None where the run computed none.
        path: The trace file.
        run_id: The run's id.
    """

    dataset: str
    started_at: str | None
    kind: str
    status: str
    duration_s: float | None
    iterations: int | None
    rules: int
    f1: float | None
    path: str
    run_id: str


@dataclass(frozen=True)
class History(_Data):
    """Every kept run found in a storage folder, oldest first per dataset.

    Attributes:
        storage_dir: The folder searched.
        rows: One row per readable trace file.
        notes: One line per file that was skipped, and why.
    """

    storage_dir: str
    rows: list[HistoryRow]
    notes: list[str]

    @property
    def datasets(self) -> list[str]:
        """The datasets that have rows, sorted."""
        return sorted({row.dataset for row in self.rows})


def history(storage_dir: str | Path, dataset: str | None = None) -> History:
    """List the kept runs of a storage folder (``<dataset>.traces/*.trace.json``).

    Unreadable or invalid files are skipped, each with a note; this never
    raises for a bad trace file.

    Args:
        storage_dir: The folder rulechef and the recorder write to, or one
            ``<dataset>.traces`` folder in it.
        dataset: Only this dataset; None for every dataset found.

    Returns:
        Rows sorted by dataset, then oldest first.

    Raises:
        TraceError: when ``storage_dir`` is not a folder, or ``dataset`` has no
            ``<dataset>.traces`` folder in it.
    """
    folder = Path(storage_dir)
    if not folder.exists():
        raise TraceError("no such directory", folder)
    if not folder.is_dir():
        raise TraceError("not a directory (history reads a storage folder)", folder)
    rows: list[HistoryRow] = []
    notes: list[str] = []
    for runs in _history_dirs(folder, dataset):
        name = runs.name.removesuffix(".traces")
        for path in sorted(runs.glob("*.trace.json")):
            row = _history_row(path, name, notes)
            if row is not None:
                rows.append(row)
    rows.sort(key=lambda r: (r.dataset, r.started_at or "", r.path))
    return History(str(folder), rows, notes)


def _history_dirs(folder: Path, dataset: str | None) -> list[Path]:
    if dataset is None and folder.name.endswith(".traces"):
        return [folder]  # one dataset's own history folder
    if dataset is None:
        return sorted(p for p in folder.glob("*.traces") if p.is_dir())
    runs = folder / f"{dataset}.traces"
    if not runs.is_dir():
        known = ", ".join(p.name.removesuffix(".traces") for p in _history_dirs(folder, None))
        hint = f" (datasets here: {known})" if known else " (no runs recorded here)"
        raise TraceError(f"no runs of dataset {dataset!r}{hint}", folder)
    return [runs]


def _history_row(path: Path, dataset: str, notes: list[str]) -> HistoryRow | None:
    try:
        trace = load_trace(path)
    except TraceError as exc:
        notes.append(f"skipped {path.name}: {exc.problem}")
        logger.warning("rulechef_trace: history skips %s: %s", path, exc.problem)
        return None
    s = summarize(trace)
    return HistoryRow(
        dataset=dataset,
        started_at=s.started_at,
        kind=s.kind,
        status=s.status,
        duration_s=s.duration_s,
        iterations=s.iterations,
        rules=s.rules,
        f1=(s.metrics or {}).get("f1"),
        path=str(path),
        run_id=s.run_id,
    )


# ---------------------------------------------------------------------------
# Text renderers
# ---------------------------------------------------------------------------


def _short(name: str, width: int = _NAME) -> str:
    return name if len(name) <= width else name[: width - 2] + ".."


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
        return "—"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def render_lineage(trace: Trace, lineages: Sequence[RuleLineage]) -> str:
    """Render lineages as text: each rule's events, then its ancestors', indented.

    Args:
        trace: The trace the lineages come from (for the header).
        lineages: What :func:`lineage` returned.
    """
    run = trace.run
    count = len(lineages)
    title = (
        f"RULECHEF LINEAGE  {run.get('dataset')}  ({run.get('kind')}, {trace.status}, "
        f"{count} rule{'s' if count != 1 else ''})"
    )
    lines = _banner(title, f"  Run {str(run.get('id'))[:12]}   started {run.get('started_at')}")
    for item in lineages:
        lines.append("")
        lines += _lineage_lines(item, depth=0)
    lines += ["", "=" * WIDTH]
    return "\n".join(lines) + "\n"


def _lineage_lines(item: RuleLineage, depth: int, via: str | None = None) -> list[str]:
    pad = "  " * (depth + 1)
    status = "final rule" if item.final else "not in the final rules"
    head = f"{via} " if via else ""
    lines = _wrap(f"{head}{_short(item.name)} ({item.rule_id}) — {status}", pad, pad + "  ")
    for step in item.steps:
        lines += _wrap(step.text, f"{pad}  #{step.seq:<4}", pad + " " * 7)
    if not item.steps:
        lines.append(f"{pad}  (no event of this trace mentions it)")
    for parent in item.parents:
        relation = "replaced" if item.relation == "replaced" else "merged from"
        lines += _lineage_lines(parent, min(depth + 1, 6), via=f"└ {relation}")
    return lines


def render_diff(result: TraceDiff, labels: tuple[str, str] = ("A", "B")) -> str:
    """Render a :class:`TraceDiff` as two columns and the rule name lists.

    Args:
        result: What :func:`diff` returned.
        labels: How to name the two runs (e.g. their file paths).
    """
    a, b = result.a, result.b
    lines = _banner(f"RULECHEF DIFF  {a.dataset} ({a.kind})  vs  {b.dataset} ({b.kind})")
    for tag, label, s in (("A", labels[0], a), ("B", labels[1], b)):
        lines += [f"  {tag}  {label}", f"     run {s.run_id[:12]}, started {s.started_at}"]
    lines += ["", f"  {'':<20}{'A':>14}{'B':>14}{'change':>12}"]
    lines += _diff_rows(result)
    lines += _names_block("Rules only in A", result.only_a)
    lines += _names_block("Rules only in B", result.only_b)
    lines += _names_block("Rules in both", result.both)
    lines += ["", "=" * WIDTH]
    return "\n".join(lines) + "\n"


def _diff_rows(result: TraceDiff) -> list[str]:
    a, b = result.a, result.b
    rows = [
        _row("status", a.status, b.status, "same" if a.status == b.status else "changed"),
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
    ]
    rows += [_metric_row(m.name, m) for m in result.metrics]
    if result.per_class:
        rows.append("  F1 per label")
        rows += [_metric_row("  " + _short(m.name, 18), m) for m in result.per_class]
    return rows


def _row(name: str, a: str, b: str, change: str) -> str:
    return f"  {name:<20}{a:>14}{b:>14}{change:>12}".rstrip()


def _count_row(name: str, a: int | None, b: int | None) -> str:
    shown = ["—" if v is None else str(v) for v in (a, b)]
    return _row(name, shown[0], shown[1], _signed(_minus(b, a), "{:+d}"))


def _metric_row(name: str, m: MetricDelta) -> str:
    change = _signed(m.delta * 100 if m.delta is not None else None, "{:+.1f} pp")
    return _row(name, pct(m.a), pct(m.b), change)


def _minus(b: float | None, a: float | None) -> Any:
    return b - a if a is not None and b is not None else None


def _signed(value: Any, template: str) -> str:
    return "—" if value is None else template.format(value)


def _names_block(title: str, names: list[str]) -> list[str]:
    lines = ["", f"  {title} ({len(names)}):"]
    if names:
        lines += _wrap(", ".join(names), "    ", "    ")
    return lines


_HISTORY_HEAD = (
    f"  {'started (UTC)':<19} {'kind':<10} {'status':<15} {'time':>5} {'iter':>4} "
    f"{'rules':>5} {'F1':>6} {'ΔF1':>6}"
)


def render_history(result: History) -> str:
    """Render a :class:`History`: one table per dataset, oldest run first, F1 trend."""
    runs = len(result.rows)
    datasets = result.datasets
    title = (
        f"RULECHEF HISTORY  ({runs} run{'s' if runs != 1 else ''}, "
        f"{len(datasets)} dataset{'s' if len(datasets) != 1 else ''})"
    )
    lines = _banner(title, f"  Storage: {result.storage_dir}")
    if not result.rows:
        lines += ["", "  No kept runs found (<dataset>.traces/*.trace.json)."]
    for name in datasets:
        lines += ["", f"  {name}", _HISTORY_HEAD, "  " + "-" * (WIDTH - 4)]
        lines += _history_lines([row for row in result.rows if row.dataset == name])
    if result.notes:
        lines.append("")
        for note in result.notes:
            lines += _wrap(note, "  note: ", "        ")
    lines += ["", "=" * WIDTH]
    return "\n".join(lines) + "\n"


def _history_lines(rows: Iterable[HistoryRow]) -> list[str]:
    lines = []
    previous: float | None = None
    for row in rows:
        change = "—"
        if row.f1 is not None:
            if previous is not None:
                change = f"{(row.f1 - previous) * 100:+.1f}"
            previous = row.f1
        date = (row.started_at or "—").replace("T", " ")[:19]
        iterations = "—" if row.iterations is None else str(row.iterations)
        lines.append(
            f"  {date:<19} {_short(row.kind, 10):<10} {_short(row.status, 15):<15} "
            f"{_seconds(row.duration_s):>5} {iterations:>4} {row.rules:>5} "
            f"{pct(row.f1):>6} {change:>6}"
        )
    return lines
