"""Rules and runs across a dataset's kept history: :func:`lineage_across_runs`, :func:`find_trace`.

Every kept run of a dataset is ``<storage>/<dataset>.traces/*.trace.json``;
read oldest first, they tell which run (and which step of it) created a rule
and which later runs replaced, merged, edited or pruned it. Run ids are shown
at :data:`RUN_ID_LENGTH` characters everywhere.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rulechef_trace._text import clean, shorten
from rulechef_trace.report._plain import Plain
from rulechef_trace.report.ancestry import RuleLineage, UnknownRuleError, _Index, lineage
from rulechef_trace.report.kept_runs import _history_dirs
from rulechef_trace.trace import Trace, TraceError, file_stem, load_trace

__all__ = [
    "RUN_ID_LENGTH",
    "AcrossLineage",
    "RuleAcross",
    "RunStep",
    "find_trace",
    "has_history",
    "history_beside",
    "kept_traces",
    "lineage_across_runs",
    "lineage_beside",
    "render_lineage_across",
    "short_id",
]

logger = logging.getLogger("rulechef_trace")

#: How many characters of a run id every reader shows.
RUN_ID_LENGTH = 12


def short_id(run_id: Any) -> str:
    """A run id as every reader shows it: its first :data:`RUN_ID_LENGTH` characters."""
    return str(run_id)[:RUN_ID_LENGTH]


def has_history(folder: str | Path) -> bool:
    """Whether ``folder`` is a history folder or a storage folder holding one."""
    place = Path(folder)
    if not place.is_dir():
        return False
    return place.name.endswith(".traces") or any(p.is_dir() for p in place.glob("*.traces"))


def kept_traces(folder: str | Path, dataset: str | None = None) -> list[tuple[Path, Trace]]:
    """Every readable kept run under a storage or history folder, oldest first per dataset.

    An unreadable file is skipped (logged), never raised.

    Raises:
        TraceError: when ``folder`` is not a folder, or ``dataset`` has no runs in it.
    """
    place = Path(folder)
    if not place.is_dir():
        raise TraceError("not a directory", place)
    found: list[tuple[Path, Trace]] = []
    for runs in _history_dirs(place, dataset):
        for path in sorted(runs.glob("*.trace.json")):
            try:
                found.append((path, load_trace(path)))
            except TraceError as exc:
                logger.warning("rulechef_trace: skipping %s: %s", path, exc.problem)
    found.sort(key=lambda item: (item[1].dataset, str(item[1].run.get("started_at")), item[0]))
    return found


def find_trace(path: str | Path, run: str | None = None) -> Path:
    """The trace file ``show`` means by a file, a storage folder or a history folder.

    Args:
        path: A trace file; a storage folder (its latest learning run); or a
            ``<dataset>.traces`` folder (its newest run).
        run: A run-id prefix: the kept run in ``path`` whose id starts with it.

    Raises:
        TraceError: no such run, a prefix several runs share, or a storage
            folder holding several datasets and no ``--run``.
    """
    place = Path(path)
    if not place.is_dir():
        if run is not None:
            raise TraceError("--run needs a storage or history folder, not a file", place)
        return place
    kept = kept_traces(place)
    if run is not None:
        return _by_prefix(place, kept, run)
    if not kept:  # no history: the one latest-run file, else load_trace says what is wrong
        latest = sorted(p for p in place.glob("*.trace.json") if p.is_file())
        return latest[0] if len(latest) == 1 else place
    datasets = sorted({trace.dataset for _, trace in kept})
    if len(datasets) > 1:
        listed = ", ".join(f"{file_stem(d)}.traces" for d in datasets)
        raise TraceError(f"holds several datasets; name one folder: {listed}", place)
    if place.name.endswith(".traces"):
        return kept[-1][0]
    learning = [p for p, trace in kept if trace.kind == "learn"]
    return (learning or [kept[-1][0]])[-1]


def _by_prefix(place: Path, kept: list[tuple[Path, Trace]], prefix: str) -> Path:
    matches = [(p, t) for p, t in kept if t.run_id.startswith(prefix)]
    if not matches:
        raise TraceError(f"no kept run with an id starting {prefix!r}", place)
    if len(matches) > 1:
        ids = ", ".join(short_id(t.run_id) for _, t in matches)
        raise TraceError(f"run id prefix {prefix!r} is shared by {ids}", place)
    return matches[0][0]


@dataclass(frozen=True)
class RunStep(Plain):
    """What one run did to a rule.

    Attributes:
        run_id: The run's id (:data:`RUN_ID_LENGTH` characters).
        kind: The run's kind (``learn``, ``rank_rules``, ``edit``, ``refine``).
        started_at: The run's start time.
        action: ``created``, ``restored``, ``replaced``, ``merged``,
            ``edited``, ``pruned``, ``removed`` or ``removed_unseen`` (gone
            before the run started, no hook saw how), ``added_unseen``.
        seq: The event's sequence number in that run (None for unseen changes).
        text: What happened, in one sentence.
        related: Other rule ids the step names (ancestors, successors).
    """

    run_id: str
    kind: str
    started_at: str | None
    action: str
    seq: int | None
    text: str
    related: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleAcross(Plain):
    """A rule through a dataset's kept runs.

    Attributes:
        rule_id: The rule's id.
        name: Its name (its id when no trace knows it).
        created: The step that created it, or None when it predates the kept runs.
        steps: Every run's step that created, restored or removed it, oldest first.
        current: Whether the newest kept run ended with it.
    """

    rule_id: str
    name: str
    created: RunStep | None
    steps: tuple[RunStep, ...]
    current: bool


@dataclass(frozen=True)
class AcrossLineage(Plain):
    """The answer of :func:`lineage_across_runs`.

    Attributes:
        folder: The folder read.
        dataset: The dataset followed.
        runs: The kept run ids read, oldest first.
        rules: One entry per rule asked about.
    """

    folder: str
    dataset: str
    runs: list[str]
    rules: list[RuleAcross] = field(default_factory=list)


def lineage_across_runs(
    folder: str | Path, rule: str | None = None, *, dataset: str | None = None
) -> AcrossLineage:
    """Follow rules through every kept run of a dataset, oldest first (``lineage STORAGE_DIR``).

    For each rule: the run (its 12-character id) and step that created it,
    and every later run that restored, replaced, merged, edited (an ``edit``
    run) or pruned it; a change no hook saw is a step ``added_unseen`` or
    ``removed_unseen`` of the run that found it at its start
    (``run_started.changed_since``). One trace's own story of a rule is
    :meth:`rulechef_trace.Trace.lineage`.

    Args:
        folder: A storage folder, or one ``<dataset>.traces`` folder.
        rule: A rule id, an id prefix of 8 or more characters, or a name; None
            for every rule the newest kept run ended with.
        dataset: The dataset (needed when the storage folder holds several).

    Returns:
        The folder, the dataset, the kept run ids read and one
        :class:`RuleAcross` per rule; :func:`render_lineage_across` prints it.

    Raises:
        TraceError: no kept runs, or several datasets and none named.
        UnknownRuleError: no kept run knows ``rule``.
    """
    kept = kept_traces(folder, dataset)
    names = sorted({trace.dataset for _, trace in kept})
    if not kept:
        raise TraceError("holds no kept runs (<dataset>.traces/*.trace.json)", folder)
    if len(names) > 1:
        raise TraceError(f"holds several datasets ({', '.join(names)}); give --dataset", folder)
    traces = [trace for _, trace in kept]
    indexes = [_Index(trace) for trace in traces]
    ids = _wanted(traces, indexes, rule)
    newest = set(traces[-1].final_rules)
    rules = [_follow(rid, traces, indexes, rid in newest) for rid in ids]
    return AcrossLineage(str(folder), names[0], [short_id(t.run_id) for t in traces], rules)


def _wanted(traces: list[Trace], indexes: list[_Index], rule: str | None) -> list[str]:
    if rule is None:
        return list(traces[-1].final_rules)
    if any(rule in index.known for index in indexes):
        return [rule]
    if len(rule) >= 8:
        prefixed = sorted({r for index in indexes for r in index.known if r.startswith(rule)})
        if len(prefixed) == 1:
            return prefixed
    for trace in reversed(traces):  # a name: the newest run's rules of that name first
        named = [rid for rid in trace.final_rules if trace.name_of(rid) == rule]
        if named:
            return named
    for trace, index in zip(reversed(traces), reversed(indexes), strict=True):
        named = [rid for rid in index.creation_order() if trace.name_of(rid) == rule]
        if named:
            return [named[-1]]
    raise UnknownRuleError(rule)


def _follow(rid: str, traces: list[Trace], indexes: list[_Index], current: bool) -> RuleAcross:
    steps: list[RunStep] = []
    name = rid
    for trace, index in zip(traces, indexes, strict=True):
        if rid in index.known and trace.name_of(rid) != rid:
            name = trace.name_of(rid)
        steps += _unseen(trace, rid)
        for step in index.steps(rid) if rid in index.known else ():
            if step.event == "run_started" or step.action not in ("created", "restored", "removed"):
                continue
            action = _action_of(trace, step.action, step.event)
            steps.append(
                RunStep(
                    short_id(trace.run_id),
                    trace.kind,
                    _started(trace),
                    action,
                    step.seq,
                    step.text,
                    step.related,
                )
            )
    created = next((s for s in steps if s.action in ("created", "added_unseen")), None)
    return RuleAcross(rid, name, created, tuple(steps), current)


def _unseen(trace: Trace, rid: str) -> list[RunStep]:
    events = trace.events
    changed = events[0].get("changed_since") if events else None
    if not isinstance(changed, dict):
        return []
    after = f" after run {short_id(changed['run'])}" if changed.get("run") else ""
    found = []
    for key, action in (("added", "added_unseen"), ("removed", "removed_unseen")):
        if rid in (changed.get(key) or ()):
            text = f"{key} while no hook listened{after} (found at this run's start)"
            found.append(
                RunStep(short_id(trace.run_id), trace.kind, _started(trace), action, None, text)
            )
    return found


def _action_of(trace: Trace, action: str, event: str) -> str:
    if action != "removed":
        return action
    if trace.kind == "edit":
        return "edited"
    if trace.kind == "rank_rules" or event == "rules_pruned":
        return "pruned"
    if event == "audit_applied":
        return "merged"
    if event in ("patch_decided", "synthesized"):
        return "replaced"
    return "removed"


def _started(trace: Trace) -> str | None:
    started = trace.run.get("started_at")
    return started if isinstance(started, str) else None


def history_beside(
    path: str | Path, trace: Trace, tree: list[RuleLineage]
) -> dict[str, dict[str, Any]]:
    """For ``lineage FILE``: the kept run that created each rule carried into ``trace``.

    The history folder is the one beside the file (``<dataset>.traces``) or
    the file's own folder when it is a kept run. Rules with no creating run
    found are left out.
    """
    place = Path(path).parent
    runs = place if place.name.endswith(".traces") else place / f"{file_stem(trace.dataset)}.traces"
    carried = _carried(tree)
    if not carried or not runs.is_dir():
        return {}
    earlier = [
        t
        for _, t in kept_traces(runs)
        if t.run_id != trace.run_id
        and str(t.run.get("started_at")) < str(trace.run.get("started_at"))
    ]
    found: dict[str, dict[str, Any]] = {}
    for t in earlier:
        index = _Index(t)
        for rid in carried - found.keys():
            step = (
                next(
                    (
                        s
                        for s in index.steps(rid)
                        if s.action == "created" and s.event != "run_started"
                    ),
                    None,
                )
                if rid in index.known
                else None
            )
            if step is not None:
                found[rid] = {
                    "run": short_id(t.run_id),
                    "kind": t.kind,
                    "started_at": _started(t),
                    "seq": step.seq,
                    "text": step.text,
                }
    return found


def lineage_beside(
    trace: Trace, rule: str | None = None, path: str | Path | None = None
) -> tuple[list[RuleLineage], dict[str, dict[str, Any]]]:
    """``lineage FILE``: a trace's lineage, each carried rule naming the kept run that created it.

    Args:
        trace: The trace.
        rule: A rule id or name; None for every final rule.
        path: The file ``trace`` was read from; None when it was not read
            from a file (then no rule names a creating run).

    Returns:
        The lineage (:func:`~rulechef_trace.report.ancestry.lineage`), with
        ``created_by`` set on each carried rule whose creating run
        :func:`history_beside` found, and that mapping itself.

    Raises:
        UnknownRuleError: when the trace knows no such rule.
    """
    tree = lineage(trace, rule)
    found = history_beside(path, trace, tree) if path is not None else {}
    return (_with_creators(tree, found) if found else tree), found


def _with_creators(tree: list[RuleLineage], found: dict[str, dict[str, Any]]) -> list[RuleLineage]:
    """The same lineage with ``created_by`` filled in (rebuilt bottom-up: the nodes are frozen)."""
    done: dict[int, RuleLineage] = {}
    for root in tree:
        stack: list[tuple[RuleLineage, bool]] = [(root, False)]
        while stack:  # iterative: ancestry may be thousands of merges deep
            node, ready = stack.pop()
            if id(node) in done:
                continue
            if not ready:
                stack.append((node, True))
                stack.extend((parent, False) for parent in node.parents)
                continue
            done[id(node)] = replace(
                node,
                parents=tuple(done[id(parent)] for parent in node.parents),
                created_by=None if node.shown_above else found.get(node.rule_id),
            )
    return [done[id(root)] for root in tree]


def _carried(tree: list[RuleLineage]) -> set[str]:
    found: set[str] = set()
    stack = list(tree)
    while stack:
        node = stack.pop()
        if node.origin == "carried":
            found.add(node.rule_id)
        stack.extend(node.parents)
    return found


# -- text --------------------------------------------------------------------------

_WIDTH = 78


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_lineage_across(result: AcrossLineage) -> str:
    """Render :func:`lineage_across_runs`'s answer: per rule, the run and step of each change."""
    lines = [
        "=" * _WIDTH,
        f"RULECHEF LINEAGE ACROSS RUNS  {shorten(result.dataset, 40)}  "
        f"({_count(len(result.runs), 'kept run')}, {_count(len(result.rules), 'rule')})",
        "=" * _WIDTH,
        f"  Folder: {clean(result.folder)}",
    ]
    for item in result.rules:
        state = "in the newest run" if item.current else "not in the newest run"
        lines += ["", f"  {shorten(item.name, 30)} ({clean(item.rule_id)}) — {state}"]
        if item.created is None:
            lines.append("    created before the kept runs (no kept run created it)")
        for step in item.steps:
            where = f"#{step.seq}" if step.seq is not None else "at its start"
            lines.append(
                f"    run {clean(step.run_id)} ({clean(step.kind)}) {where}: {clean(step.action)}"
            )
            lines += textwrap.wrap(
                clean(step.text), _WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    lines += ["", "=" * _WIDTH]
    return "\n".join(lines) + "\n"
