"""How rules came to be: every event that created, changed or kept them, and their ancestors.

:func:`lineage` is a question asked of a loaded trace; it returns plain frozen
dataclasses (:class:`RuleLineage`), which :mod:`rulechef_trace.report.answers`
and the HTML page format. The walk is bounded: the trace is indexed once
(which events name which rule, and when each rule was present), ancestors are
followed iteratively, and a rule whose ancestors were already told in the same
answer is not told again (``shown_above``), so any merge graph, however deep
or however often two rules merge into two new ones, takes linear time and memory.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulechef_trace import events
from rulechef_trace.report._plain import Plain
from rulechef_trace.report.numbers import points
from rulechef_trace.trace import Trace, TraceError

__all__ = [
    "NOTES",
    "LineageStep",
    "Note",
    "RuleLineage",
    "UnknownRuleError",
    "lineage",
    "resolve_rule",
]


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


@dataclass(frozen=True)
class LineageStep(Plain):
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
class RuleLineage(Plain):
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
        shown_above: The rule's steps and ancestors were already told earlier
            in the same answer; ``steps`` and ``parents`` are empty here.
        created_by: For a ``carried`` rule of a trace read from a file with
            its history folder beside it: the kept run that created it
            (``run``, ``kind``, ``started_at``, ``seq``, ``text``); else None.
    """

    rule_id: str
    name: str
    final: bool
    origin: str
    steps: tuple[LineageStep, ...]
    relation: str | None = None
    parents: tuple[RuleLineage, ...] = ()
    shown_above: bool = False
    created_by: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the data as plain dicts and lists (JSON-ready), however deep the ancestry."""
        done: dict[int, dict[str, Any]] = {}
        stack: list[tuple[RuleLineage, bool]] = [(self, False)]
        while stack:  # iterative: a merge chain thousands deep must not hit the recursion limit
            node, ready = stack.pop()
            if not ready:
                stack.append((node, True))
                stack.extend((parent, False) for parent in node.parents)
                continue
            item = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
            item["steps"] = tuple(step.to_dict() for step in node.steps)
            item["parents"] = tuple(done[id(parent)] for parent in node.parents)
            done[id(node)] = item
        return done[id(self)]


def resolve_rule(trace: Trace, rule: str) -> list[str]:
    """Find the rule ids a user means by an id or a name.

    An exact id wins; else every final rule of that name; else the rule of
    that name added last; else the one a patch proposed last.

    Raises:
        UnknownRuleError: when no rule has that id or name.
    """
    return _resolve(_Index(trace), rule)


def _resolve(index: _Index, rule: str) -> list[str]:
    trace = index.trace
    if rule in index.known:
        return [rule]
    final = [rid for rid in index.final_order if trace.name_of(rid) == rule]
    if final:
        return final
    named = [rid for rid in index.creation_order() if trace.name_of(rid) == rule]
    if named:
        return [named[-1]]
    table = trace.get("rules")
    listed = [str(rid) for rid in table] if isinstance(table, dict) else []
    proposed = [rid for rid in listed if trace.name_of(rid) == rule]
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
        merges. An ancestor already told earlier in the answer appears again
        only as a reference (``shown_above``).

    Raises:
        UnknownRuleError: when ``rule`` is neither an id nor a name in the trace.
    """
    index = _Index(trace)
    ids = list(index.final_order) if rule is None else _resolve(index, rule)
    told: set[str] = set()
    return [index.tree(rid, told) for rid in ids]


# The index: one pass over the events

# Keys of an event (and of its ``proposed`` part) that hold rule ids.
_ID_KEYS = ("rules", "added", "removed", "patch", "deleted", "collapsed", "deduped")


def _ids(value: Any) -> list[str]:
    return [rid for rid in value if isinstance(rid, str)] if isinstance(value, list) else []


def _named_ids(event: Mapping[str, Any]) -> set[str]:
    """Every rule id an event names anywhere."""
    found: set[str] = set()
    proposed = event.get("proposed")
    for part in (event, proposed if isinstance(proposed, dict) else {}):
        for key in _ID_KEYS:
            found.update(_ids(part.get(key)))
    found.update(_ids(event.get("rules_with_feedback")))
    for pair in _pairs(event):
        found.update(v for v in (pair.get("old"), pair.get("new")) if isinstance(v, str))
    for action in event.get("actions") or ():
        if isinstance(action, dict):
            found.update(_ids(action.get("sources")) + _ids(action.get("rules")))
            if isinstance(action.get("result"), str):
                found.add(action["result"])
    return found


class _Index:
    """Which events name each rule, and when each rule was among the working rules."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.events = trace.events
        self.final_order = trace.final_rules
        self.final = set(self.final_order)
        self.by_seq = {e.get("seq"): e for e in self.events}
        self.mentions: dict[str, list[int]] = {}
        self.spans: dict[str, list[tuple[int, int]]] = {}
        self.wide = [i for i, e in enumerate(self.events) if _note_of(e).every_rule]
        self._sets: dict[tuple[int, str], frozenset[str]] = {}
        self._steps: dict[str, tuple[LineageStep, ...]] = {}
        self._origins: dict[str, tuple[str, str | None, list[str]]] = {}
        self._scan()
        table = trace.get("rules")
        self.known = (
            set(self.mentions) | self.final | (set(table) if isinstance(table, dict) else set())
        )

    def _scan(self) -> None:
        entered: dict[str, int] = {}  # rule id -> first event index it is present before
        for index, event in enumerate(self.events):
            for rid in _named_ids(event):
                self.mentions.setdefault(rid, []).append(index)
            if event.get("type") == "run_started":
                now = _ids(event.get("rules"))
                gone, new = set(entered) - set(now), now
            else:  # only the rules the event names: no pass over every present rule
                gone, new = set(_ids(event.get("removed"))), _ids(event.get("added"))
            for rid in gone & entered.keys():
                self.spans.setdefault(rid, []).append((entered.pop(rid), index + 1))
            for rid in new:
                entered.setdefault(rid, index + 1)
        for rid, start in entered.items():
            self.spans.setdefault(rid, []).append((start, len(self.events)))

    def present(self, rid: str, index: int) -> bool:
        """Whether a rule was among the working rules just before event ``index``."""
        return any(start <= index < end for start, end in self.spans.get(rid, ()))

    def has(self, index: int, key: str, rid: str) -> bool:
        """Whether the id list ``key`` of event ``index`` holds ``rid`` (sets built once)."""
        found = self._sets.get((index, key))
        if found is None:
            found = self._sets[(index, key)] = frozenset(_ids(self.events[index].get(key)))
        return rid in found

    def candidates(self, rid: str) -> list[int]:
        """The events that may say something about a rule, in order."""
        found = set(self.mentions.get(rid, ()))
        for start, end in self.spans.get(rid, ()):
            found.update(
                self.wide[bisect.bisect_left(self.wide, start) : bisect.bisect_left(self.wide, end)]
            )
        return sorted(found)

    def creation_order(self) -> list[str]:
        """Rule ids in the order they first joined the rules."""
        order: dict[str, None] = {}
        for event in self.events:
            for rid in _ids(event.get("rules")) + _ids(event.get("added")):
                order.setdefault(rid, None)
        return list(order)

    def steps(self, rid: str) -> tuple[LineageStep, ...]:
        """Every step of a rule's life (computed once per rule)."""
        found = self._steps.get(rid)
        if found is None:
            found = self._steps[rid] = tuple(
                s for i in self.candidates(rid) for s in self._step(rid, i)
            )
        return found

    def _step(self, rid: str, index: int) -> list[LineageStep]:
        event = self.events[index]
        seq, kind = int(event.get("seq") or 0), str(event.get("type"))
        if self.has(index, "added", rid):
            text, related = _added_text(self, rid, event)
            action = "restored" if kind == "refined" else "created"
            return [LineageStep(seq, kind, action, text, related)]
        if self.has(index, "removed", rid):
            text, related = _removed_text(self, rid, event)
            return [LineageStep(seq, kind, "removed", text, related)]
        if kind == "run_started" and self.has(index, "rules", rid):
            text = "present when the run started (learned by an earlier run)"
            return [LineageStep(seq, kind, "created", text)]
        if not self.present(rid, index):
            proposal = _proposal_text(rid, event)
            return [LineageStep(seq, kind, "noted", proposal)] if proposal else []
        note = _note_of(event).text
        found = note(self.trace, rid, event) if note else None
        return [LineageStep(seq, kind, found[0], found[1])] if found else []

    def origin(self, rid: str) -> tuple[str, str | None, list[str]]:
        """How a rule came to be, how it relates to its parents, and their ids."""
        found = self._origins.get(rid)
        if found is None:
            found = self._origins[rid] = self._find_origin(rid)
        return found

    def _find_origin(self, rid: str) -> tuple[str, str | None, list[str]]:
        for index in self.mentions.get(rid, ()):
            event = self.events[index]
            kind = event.get("type")
            if kind == "run_started" and self.has(index, "rules", rid):
                return "carried", None, []
            if not self.has(index, "added", rid):
                continue
            if kind == "audit_applied":
                return "merge", "merged", _sources(event, rid)
            if kind == "synthesized" and event.get("mode") != "incremental":
                return "synthesized", None, []
            if kind in ("synthesized", "patch_decided"):
                replaced = [p["old"] for p in _pairs(event) if p.get("new") == rid]
                return "patch", "replaced" if replaced else None, replaced
            return "unknown", None, []
        if any(_proposal_text(rid, self.events[i]) for i in self.mentions.get(rid, ())):
            return "proposed", None, []
        return "unknown", None, []

    def tree(self, root: str, told: set[str]) -> RuleLineage:
        """A rule's lineage with its ancestors, walked without recursion.

        Args:
            root: The rule id.
            told: Ids already told in this answer (updated): they come back
                only as ``shown_above`` references.
        """
        # Pre-order decides which occurrence of a rule is told in full (the first);
        # building in reverse pre-order gives every node its parents first.
        nodes: list[tuple[str, int, bool]] = []  # (rule id, index of its child, told in full)
        stack = [(root, -1)]
        while stack:
            rid, child = stack.pop()
            full = rid not in told
            told.add(rid)
            nodes.append((rid, child, full))
            if full:
                parents = self.origin(rid)[2]
                stack.extend((parent, len(nodes) - 1) for parent in reversed(parents))
        built: dict[int, list[RuleLineage]] = {}
        for position in range(len(nodes) - 1, -1, -1):
            rid, child, full = nodes[position]
            item = self._node(rid, full, tuple(reversed(built.pop(position, []))))
            built.setdefault(child, []).append(item)
        return built[-1][0]

    def _node(self, rid: str, full: bool, parents: tuple[RuleLineage, ...]) -> RuleLineage:
        origin, relation, _ = self.origin(rid)
        return RuleLineage(
            rule_id=rid,
            name=self.trace.name_of(rid),
            final=rid in self.final,
            origin=origin,
            steps=self.steps(rid) if full else (),
            relation=relation if parents else None,
            parents=parents,
            shown_above=not full,
        )


# Sentences


def _pairs(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [p for p in event.get("replaced") or () if isinstance(p, dict)]


def _merges(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        a for a in event.get("actions") or () if isinstance(a, dict) and a.get("action") == "merge"
    ]


def _sources(event: Mapping[str, Any], rid: str) -> list[str]:
    return [s for a in _merges(event) if a.get("result") == rid for s in _ids(a.get("sources"))]


def _say(value: Any) -> str:
    """A value for a sentence: "?" where the trace has none."""
    return "?" if value is None else str(value)


def _label(trace: Trace, rid: str) -> str:
    """``name (id)`` of a rule."""
    return f"{trace.name_of(rid)} ({rid})"


def _audit_name(event: Mapping[str, Any]) -> str:
    if event.get("stage") == "mid_refinement":
        return f"the mid-refinement audit of iteration {_say(event.get('iteration'))}"
    return "the final audit"


def _patch_name(event: Mapping[str, Any]) -> str:
    if event.get("type") == "synthesized":
        return "the incremental patch"
    return f"the patch of iteration {_say(event.get('iteration'))}"


def _step_name(index: _Index, seq: Any) -> str:
    event, seq = index.by_seq.get(seq), _say(seq)
    if event is None:
        return f"step #{seq}"
    if event.get("type") == "synthesized":
        return f"step #{seq} (synthesis)"
    if event.get("type") == "patch_decided":
        return f"step #{seq} (patch of iteration {_say(event.get('iteration'))})"
    return f"step #{seq} ({_say(event.get('type'))})"


def _added_text(index: _Index, rid: str, event: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    trace, kind = index.trace, event.get("type")
    if kind == "synthesized" and event.get("mode") != "incremental":
        mode = _say(event.get("mode")).replace("_", "-")
        return f"synthesized ({mode} synthesis)", ()
    if kind == "audit_applied":
        sources = _sources(event, rid)
        names = " and ".join(_label(trace, s) for s in sources) or "other rules"
        return f"merged from {names} by {_audit_name(event)}", tuple(sources)
    if kind == "refined":
        best = _step_name(index, event.get("kept_seq"))
        return f"restored: refinement kept its best rules, those of {best}", ()
    if kind in ("synthesized", "patch_decided"):
        olds = [p["old"] for p in _pairs(event) if p.get("new") == rid]
        text = f"added by {_patch_name(event)}"
        if olds:
            text += ", replacing the earlier " + ", ".join(_label(trace, o) for o in olds)
        return text, tuple(olds)
    if kind == "rules_edited":
        return f"added by {_say(event.get('method'))}()", ()
    return f"added by {_generic(kind)}", ()


def _removed_text(index: _Index, rid: str, event: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    kind = event.get("type")
    if kind == "audit_applied":
        return _removed_by_audit(index.trace, rid, event)
    if kind == "pruned":
        return _removed_by_pruning(rid, event), ()
    if kind == "refined":
        best = _step_name(index, event.get("kept_seq"))
        return f"dropped: refinement went back to the rules of {best}", ()
    if kind == "synthesized" and event.get("mode") != "incremental":
        return "dropped: a full re-synthesis replaced every rule", ()
    if kind == "rules_edited":
        return f"removed by {_say(event.get('method'))}()", ()
    if kind in ("synthesized", "patch_decided"):
        return _removed_by_patch(index.trace, rid, event)
    return f"removed by {_generic(kind)}", ()


def _generic(kind: Any) -> str:
    """A type with no sentence of its own: ``name (its catalogue doc)``, or the name alone."""
    try:
        doc = events.by_name(str(kind)).doc.strip().rstrip(".")
    except KeyError:
        return _say(kind)
    return f"{kind} ({doc[:1].lower()}{doc[1:]})" if doc else str(kind)


def _removed_by_audit(
    trace: Trace, rid: str, event: Mapping[str, Any]
) -> tuple[str, tuple[str, ...]]:
    for action in _merges(event):
        if rid in _ids(action.get("sources")):
            result = action.get("result")
            into = _label(trace, result) if isinstance(result, str) else "a merged rule"
            return f"merged into {into} by {_audit_name(event)}", (result,) if isinstance(
                result, str
            ) else ()
    return f"removed by {_audit_name(event)}", ()


def _removed_by_pruning(rid: str, event: Mapping[str, Any]) -> str:
    reason = event.get("reason")
    if reason == "harmful_rules":
        marginal = event.get("marginal_f1")
        delta = marginal.get(rid) if isinstance(marginal, dict) else None
        why = f" (marginal F1 {points(delta)})" if isinstance(delta, (int, float)) else ""
        return f"pruned as harmful by rank_rules{why}"
    if reason == "weak_rules":
        return "pruned as weak (applied often, never right)"
    return f"removed ({_say(reason).replace('_', ' ')})"


def _removed_by_patch(
    trace: Trace, rid: str, event: Mapping[str, Any]
) -> tuple[str, tuple[str, ...]]:
    where = _patch_name(event)
    news = [p["new"] for p in _pairs(event) if p.get("old") == rid]
    if news:
        return f"replaced by {_label(trace, news[0])} in {where}", (news[0],)
    if rid in _ids(event.get("deleted")):
        return f"deleted by {where}", ()
    if rid in _ids(event.get("deduped")):
        return f"dropped as a duplicate pattern in {where}", ()
    if rid in _ids(event.get("collapsed")):
        return f"dropped in {where}: a later rule of the same name won", ()
    return f"removed by {where}", ()


def _proposal_text(rid: str, event: Mapping[str, Any]) -> str | None:
    """What became of a rule a patch proposed but that never joined the rules."""
    if event.get("type") not in ("patch_decided", "synthesized"):
        return None
    where = _patch_name(event)
    if event.get("outcome") == "rejected":
        proposed = event.get("proposed")
        if isinstance(proposed, dict) and rid in _ids(proposed.get("added")):
            return f"proposed by {where}, which was rejected"
        return None
    if rid not in _ids(event.get("patch")) or rid in _ids(event.get("added")):
        return None
    if rid in _ids(event.get("deduped")):
        return f"proposed by {where}, dropped as a duplicate pattern"
    if rid in _ids(event.get("collapsed")):
        return f"proposed by {where}, dropped: a later rule of the same name won"
    return f"proposed by {where}, not kept"


# What each event type says about a rule it neither added nor removed

NoteText = Callable[[Trace, str, Mapping[str, Any]], tuple[str, str] | None]


@dataclass(frozen=True)
class Note:
    """How an event type notes a rule that was present and that it neither added nor removed.

    Attributes:
        text: ``(action, sentence)`` for the rule, or None; no function for
            event types that say nothing beyond their added/removed lists.
        every_rule: The event says something about every rule present (so the
            index visits it for each), not only about the rules it names.
    """

    text: NoteText | None = None
    every_rule: bool = False


def _note_audit(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    touched = any(
        rid in (_ids(a.get("sources")) or _ids(a.get("rules")))
        for a in event.get("actions") or ()
        if isinstance(a, dict)
    )
    if event.get("reverted") and touched:
        return "kept", f"kept: {_audit_name(event)} changed it, then reverted (F1 dropped)"
    return "kept", f"survived {_audit_name(event)}"


def _note_rejected(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    proposed = event.get("proposed")
    if event.get("outcome") != "rejected" or not isinstance(proposed, dict):
        return None
    if rid in _ids(proposed.get("removed")):
        iteration = _say(event.get("iteration"))
        return "kept", f"kept: the rejected patch of iteration {iteration} would have removed it"
    return None


def _note_critic(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    if rid in _ids(event.get("rules_with_feedback")):
        return "noted", f"the critic commented on it (iteration {_say(event.get('iteration'))})"
    return None


def _note_refined(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    reason = _say(event.get("stop_reason")).replace("_", " ")
    return "kept", f"kept by refinement (stopped: {reason})"


def _note_pruned(trace: Trace, rid: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
    reason = _say(event.get("reason")).replace("_", " ")
    return "kept", f"survived pruning ({reason})"


_SILENT = Note()

#: The event types that say something about rules they neither added nor removed; any
#: other type (a new one too) says nothing of those, and the rules it adds or removes
#: get steps from its type and catalogue doc (_generic; tests/test_event_catalogue.py).
NOTES: dict[str, Note] = {
    "critiqued": Note(_note_critic),
    "patch_decided": Note(_note_rejected),
    "audit_applied": Note(_note_audit, every_rule=True),
    "pruned": Note(_note_pruned, every_rule=True),
    "refined": Note(_note_refined, every_rule=True),
}


def _note_of(event: Mapping[str, Any]) -> Note:
    return NOTES.get(str(event.get("type")), _SILENT)
