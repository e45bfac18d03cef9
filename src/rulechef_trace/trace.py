"""The trace format (v1): building, loading, validating and replaying traces.

A trace is plain JSON data. :class:`Trace` is a ``dict`` holding exactly that
data, with a few read-only helpers; docs/trace-format.md describes every key.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson

from rulechef_trace._schema_check import Check, Failure, compile_schema
from rulechef_trace._text import shorten
from rulechef_trace.events import EVENT_TYPES

__all__ = [
    "EVENT_TYPES",
    "FORMAT",
    "MAX_BYTES",
    "VERSION",
    "ReplayError",
    "Trace",
    "TraceError",
    "TraceReadError",
    "build_trace",
    "current_max_bytes",
    "event_problem",
    "history_dir",
    "load_trace",
    "read_limit",
    "replay",
    "trace_path",
    "validate",
]

FORMAT = "rulechef-trace"
VERSION = 1

#: The largest trace file the readers open unless told otherwise (64 MiB).
MAX_BYTES = 64 * 2**20
_max_bytes: ContextVar[int] = ContextVar("rulechef_trace_max_bytes", default=MAX_BYTES)

STATUSES = ("completed", "not_enough_data", "no_rules", "failed", "incomplete")

# Keys that belong to the run header rather than to the run_started event.
_RUN_KEYS = (
    "kind",
    "dataset",
    "task",
    "task_type",
    "started_at",
    "rulechef_version",
    "params",
    "coordinator",
    "storage_path",
)


class TraceError(ValueError):
    """A file or object is not a readable rulechef-trace trace.

    Attributes:
        path: The file concerned, when there is one.
        problem: What is wrong, in one line.
    """

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class TraceReadError(TraceError):
    """A file could not be read at all: missing, not a regular file, too large, no permission."""


class ReplayError(TraceError):
    """Applying the events' rule changes does not give the trace's final rules."""


class Trace(dict[str, Any]):
    """One recorded run: the v1 JSON data itself, plus read-only helpers.

    Attributes:
        source: The file :func:`load_trace` read it from; None for a trace
            built in memory (a recorder's, :func:`build_trace`'s).
    """

    source: Path | None = None

    @property
    def run(self) -> dict[str, Any]:
        """The run header (id, dataset, status, timings, ...)."""
        run = self.get("run")
        return run if isinstance(run, dict) else {}

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events in sequence order."""
        events = self.get("events")
        return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []

    @property
    def status(self) -> str:
        """``completed``, ``not_enough_data``, ``no_rules``, ``failed`` or ``incomplete``."""
        return str(self.run.get("status"))

    @property
    def kind(self) -> str:
        """What kind of run this is: ``learn``, ``rank_rules``, ``edit`` or ``refine``."""
        return str(self.run.get("kind"))

    @property
    def dataset(self) -> str:
        """The dataset the run learned on."""
        return str(self.run.get("dataset"))

    @property
    def run_id(self) -> str:
        """The run's id (a UUID string)."""
        return str(self.run.get("id"))

    @property
    def duration_s(self) -> float | None:
        """How long the run took, in seconds; None while unknown."""
        duration = self.run.get("duration_s")
        return float(duration) if isinstance(duration, (int, float)) else None

    @property
    def patches(self) -> list[dict[str, Any]]:
        """The refinement patches (``patch_decided`` events), in order."""
        return self.events_of("patch_decided")

    def __repr__(self) -> str:
        # Short on purpose: a failing assert must not print the whole document.
        rules = self._final().get("rules")
        count = len(rules) if isinstance(rules, list) else 0
        return f"<Trace {self.kind} {self.dataset} {self.status}, {count} rules>"

    @property
    def final_rules(self) -> list[str]:
        """Ids of the rules the chef had when the run ended."""
        return [r["id"] for r in self._final().get("rules") or [] if isinstance(r, dict)]

    @property
    def final_metrics(self) -> dict[str, Any] | None:
        """The run's own final evaluation, or None where rulechef computed none."""
        metrics = self._final().get("metrics")
        return metrics if isinstance(metrics, dict) else None

    def _final(self) -> dict[str, Any]:
        final = self.get("final")
        return final if isinstance(final, dict) else {}

    def events_of(self, *types: str) -> list[dict[str, Any]]:
        """Return the events of the given types, in sequence order."""
        return [e for e in self.events if e.get("type") in types]

    def lineage(self, rule: str | None = None) -> list[Any]:
        """Return how a rule (id or name; every final rule when None) came to be.

        See :func:`rulechef_trace.report.lineage`. When the trace was read from
        a file whose history folder (``<dataset>.traces``) is beside it, or
        from a kept run in that folder, each rule carried in from an earlier
        run names the kept run that created it (``created_by``), as
        ``rulechef-trace lineage FILE`` does.

        Raises:
            UnknownRuleError: when the trace knows no such rule.
        """
        from rulechef_trace.report.across_runs import lineage_beside  # the reports build on this

        tree, _ = lineage_beside(self, rule, self.source)
        return list(tree)

    def name_of(self, rule_id: str) -> str:
        """Return a rule's name, or its id when the trace does not know it."""
        table = self.get("rules")
        entry = table.get(rule_id) if isinstance(table, dict) and isinstance(rule_id, str) else None
        return str(entry.get("name")) if isinstance(entry, dict) else str(rule_id)


def file_stem(dataset: str) -> str:
    """The file-name stem of a dataset, confined to one folder.

    Separators, NUL and other controls are percent-encoded and ``.``/``..``
    spelled out, so no dataset name (``../../x``, ``/etc/x``) can leave the
    storage folder. Ordinary names are unchanged.
    """
    stem = "".join(f"%{ord(c):02X}" if c in "/\\%" or ord(c) < 0x20 else c for c in dataset)
    return stem.replace(".", "%2E") if stem in (".", "..") else stem


def trace_path(storage_path: str | Path, dataset: str) -> Path:
    """Where the latest learning run of ``dataset`` is written."""
    return Path(storage_path) / f"{file_stem(dataset)}.trace.json"


def history_dir(storage_path: str | Path, dataset: str) -> Path:
    """The folder keeping every run of ``dataset``, one file each."""
    return Path(storage_path) / f"{file_stem(dataset)}.traces"


def build_trace(events: Iterable[Mapping[str, Any]]) -> Trace:
    """Assemble a v1 trace from one run's events (as sent, in any order).

    A run without its ``finalized`` event (a stream cut short) gets status
    ``incomplete`` and final rules replayed from its events.

    Raises:
        TraceError: when there is no ``run_started`` event.
    """
    raw = sorted(events, key=_seq_of)  # only read: the records below are new dicts
    ordered = [_event_record(e) for e in raw]
    names: dict[str, dict[str, Any]] = {}
    for event in raw:
        table = event.get("rule_names")
        for rid, name in table.items() if isinstance(table, dict) else ():
            names.setdefault(rid, {"name": name})
        facts = event.get("rule_facts")
        for rid, known in facts.items() if isinstance(facts, dict) else ():
            if isinstance(known, dict):  # later events know more (counters at the end)
                names.setdefault(rid, {"name": None}).update(known)
    if not ordered or ordered[0]["type"] != "run_started":
        raise TraceError("no run_started event")
    start = {"run_id": raw[0].get("run_id"), **ordered[0]}
    end = ordered[-1] if ordered[-1]["type"] == "finalized" else None
    if end is not None and not _is_id_list(end.get("rules")):
        raise TraceError("finalized event without a list of rule ids")
    trace = Trace(
        format=FORMAT,
        version=VERSION,
        run=_run_header(start, end),
        events=ordered,
        rules=names,
        final={},
    )
    final_ids = end["rules"] if end else _replayed(trace)
    trace["final"] = {
        "rules": [_final_rule(trace, rid) for rid in final_ids],
        "metrics": end.get("metrics") if end else None,
    }
    return trace


def _final_rule(trace: Trace, rid: str) -> dict[str, Any]:
    facts = trace["rules"].get(rid) or {}
    return {"id": rid, **facts, "name": trace.name_of(rid)}


def _seq_of(event: Mapping[str, Any]) -> int:
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise TraceError(f"event {str(event.get('type'))[:40]!r} without an integer seq")
    return seq


def _event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    # The run id is in the header and every name in the rule table.
    record = {k: v for k, v in event.items() if k not in ("run_id", "rule_names", "rule_facts")}
    if not isinstance(record.get("type"), str):
        raise TraceError("event without a string type")
    return record


def _run_header(start: dict[str, Any], end: dict[str, Any] | None) -> dict[str, Any]:
    run: dict[str, Any] = {"id": start.get("run_id")}
    run.update({k: start.get(k) for k in _RUN_KEYS})
    if "after" in start:  # the learning run a prune worked on (known to a recorder)
        run["after"] = start["after"]
    if end is None:
        run.update(status="incomplete", error=None, ended_at=None, duration_s=None, stats=None)
    else:
        # A task discovered during the run is known only at its end.
        for key in ("task", "task_type"):
            run[key] = run[key] if run[key] is not None else end.get(key)
        run.update(
            status=end.get("status"),
            error=end.get("error"),
            ended_at=end.get("ended_at"),
            duration_s=end.get("duration_s"),
            stats=end.get("stats"),
        )
        if "llm" in end:  # traces of 0.1.0 have no LLM facts
            run["llm"] = end["llm"]
    return run


def _replayed(trace: Trace) -> list[str]:
    rules: list[str] = []
    for event in trace.events:
        rules = _apply(rules, event)
    return rules


def _apply(rules: list[str], event: Mapping[str, Any]) -> list[str]:
    if event.get("type") == "run_started":
        return list(event.get("rules") or [])
    removed, added = event.get("removed") or (), event.get("added") or ()
    if not removed and not added:
        return rules  # most events move no rule: no copy (5,000 rules x 5,000 events)
    gone = set(removed)
    kept = [rid for rid in rules if rid not in gone] if gone else rules
    present = set(kept)
    return kept + [rid for rid in added if rid not in present]


def replay(trace: Mapping[str, Any]) -> list[str]:
    """Rebuild the final rule ids from the events' ``added``/``removed``.

    Starting from ``run_started.rules`` and applying each event's ``added`` and
    ``removed`` in seq order must give exactly ``final.rules``; every event's
    ``rules_after`` must match the rules at that point.

    Returns:
        The replayed final rule ids.

    Raises:
        ReplayError: naming the first event where the rules disagree.
    """
    rules: list[str] = []
    for event in trace.get("events") or []:
        rules = _apply(rules, event)
        after = event.get("rules_after")
        if after is not None and after != rules and set(after) != set(rules):
            raise ReplayError(
                f"event seq {event.get('seq')} ({event.get('type')}): replayed rules differ "
                f"from its rules_after: {_difference(rules, after)}"
            )
    final = [r.get("id") for r in (trace.get("final") or {}).get("rules", [])]
    if set(final) != set(rules):
        raise ReplayError(f"replayed rules differ from final rules: {_difference(rules, final)}")
    return rules


def _difference(replayed: Iterable[Any], recorded: Iterable[Any]) -> str:
    """Say which ids only one side has (a trace may hold thousands of ids)."""
    ours, theirs = {str(i) for i in replayed}, {str(i) for i in recorded}

    def listed(ids: set[str]) -> str:
        shown = sorted(ids)[:5]
        return ", ".join(shown) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")

    parts = []
    if ours - theirs:
        parts.append(f"only replayed [{listed(ours - theirs)}]")
    if theirs - ours:
        parts.append(f"only recorded [{listed(theirs - ours)}]")
    return "; ".join(parts)


def load_trace(path: str | Path, *, max_bytes: int | None = None) -> Trace:
    """Read a trace written by :class:`~rulechef_trace.TraceRecorder`.

    Reads both the ``.trace.json`` file of a finished run and the ``.jsonl``
    stream of a run in progress or killed (status ``incomplete``). Only a
    regular file is opened (a FIFO or a device is refused, never waited on),
    and only up to a size limit.

    Args:
        path: The file.
        max_bytes: The largest file read; None for the limit of the current
            :func:`read_limit` block (:data:`MAX_BYTES` outside any).

    Raises:
        TraceReadError: when the file cannot be read at all: missing, a
            directory, not a regular file, over the size limit, no permission.
        TraceError: naming the file and what is wrong with it: empty,
            truncated or not JSON, not a trace, a newer format version, or a
            structure that breaks the format (the first problem
            :func:`validate` finds).
    """
    p = Path(path)
    data = _read_bytes(p, _max_bytes.get() if max_bytes is None else max_bytes)
    trace = _parse_stream(data, p) if p.suffix == ".jsonl" else _parse_document(data, p)
    problems = validate(trace)
    if problems:
        raise TraceError(problems[0], p)
    trace.source = p
    return trace


def current_max_bytes() -> int:
    """The size limit of trace reads in this context (see :func:`read_limit`)."""
    return _max_bytes.get()


@contextmanager
def read_limit(max_bytes: int | None) -> Iterator[None]:
    """Set the size limit of every trace read in this context, inside the block.

    Readers that call :func:`load_trace` for you (``history``, the HTML
    report) follow it. None keeps the current limit.
    """
    if max_bytes is None:
        yield
        return
    if max_bytes < 1:
        raise ValueError("max_bytes must be a positive number of bytes")
    token = _max_bytes.set(max_bytes)
    try:
        yield
    finally:
        _max_bytes.reset(token)


def _read_bytes(p: Path, limit: int) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise TraceReadError("no such file", p) from None
    except IsADirectoryError:
        raise TraceReadError("is a directory, not a trace file", p) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise TraceReadError(f"cannot read: {_reason(exc)}", p) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise TraceReadError("is a directory, not a trace file", p)
        if not stat.S_ISREG(mode):
            raise TraceReadError(f"not a regular file ({_file_kind(mode)}); not read", p)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)  # +1: a file that grew past the limit is caught too
    except OSError as exc:
        raise TraceReadError(f"cannot read: {_reason(exc)}", p) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TraceReadError(
            f"larger than the read limit of {limit:,} bytes (raise it with max_bytes, "
            "or --max-bytes on the command line)",
            p,
        )
    if not data.strip():
        raise TraceError("empty file", p)
    return data


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _parse_document(data: bytes, p: Path) -> Trace:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TraceError(f"not valid JSON (truncated or corrupt): {exc}", p) from None
    _check_header(obj, p)
    return Trace(obj)


def _check_header(obj: Any, p: Path | None) -> None:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise TraceError('not a rulechef-trace file (no "format": "rulechef-trace")', p)
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TraceError("format version is missing or not an integer", p)
    if version > VERSION:
        raise TraceError(
            f"trace format version {version} is newer than this rulechef-trace reads "
            f"({VERSION}); upgrade rulechef-trace",
            p,
        )
    if version < 1:
        raise TraceError(f"unknown trace format version {version}", p)


def _parse_stream(data: bytes, p: Path) -> Trace:
    lines = [line for line in data.splitlines() if line.strip()]
    try:
        header = orjson.loads(lines[0])
    except orjson.JSONDecodeError as exc:
        raise TraceError(f"first line is not valid JSON: {exc}", p) from None
    _check_header(header, p)
    events = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number == len(lines):
                break  # the process died while writing its last line
            raise TraceError(f"line {number} is not valid JSON", p) from None
        if not isinstance(event, dict):
            raise TraceError(f"line {number} is not a JSON object", p)
        events.append(event)
    try:
        return build_trace(events)
    except TraceError as exc:
        raise TraceError(exc.problem, p) from None


def validate(trace: Any) -> list[str]:
    """Check a trace against format v1: the shipped JSON Schema, seq numbers and replay.

    Everything the schema (``data/trace-v1.schema.json``) rejects is rejected,
    by a checker compiled from that file. Beyond what JSON Schema can say, seq
    numbers must run 1, 2, 3, ... without a gap, a finished run must end with
    its ``finalized`` event, and the rule changes must replay.

    Returns:
        The problems found, one line each (the first one found, naming the path
        to the value, e.g. ``events[3].replaced[0]: 'old' is required``); empty
        when the trace is valid.
    """
    try:
        _check_header(trace, None)
    except TraceError as exc:
        return [exc.problem]
    failure = _schema_check()(trace)
    if failure is not None:
        return [_describe(failure, trace)]
    problems = _sequence_problems(trace["events"], trace["run"]["status"])
    if problems:
        return problems
    try:
        replay(trace)
    except ReplayError as exc:
        return [exc.problem]
    return []


@functools.lru_cache(maxsize=2)
def _schema_check(pointer: str = "#") -> Check:
    """The shipped JSON Schema (or one of its parts), compiled once."""
    schema = orjson.loads(
        files("rulechef_trace").joinpath("data/trace-v1.schema.json").read_bytes()
    )
    return compile_schema(schema, pointer)


def event_problem(event: Any) -> str | None:
    """Check one event on its own against the schema's event definition.

    For readers of a growing stream, which cannot validate the whole trace at
    every line. Returns the problem in one line, or None.
    """
    failure = _schema_check("#/$defs/event")(event)
    if failure is None:
        return None
    where = failure.where()
    return f"{where}: {failure.message}" if where else failure.message


def _describe(failure: Failure, trace: Mapping[str, Any]) -> str:
    """One line: the path, what is wrong and, inside an event, the event's type."""
    steps = failure.steps()
    where = failure.where()
    text = f"{where}: {failure.message}" if where else failure.message
    if len(steps) >= 2 and steps[0] == "events" and isinstance(steps[1], int):
        event = trace["events"][steps[1]]
        kind = event.get("type") if isinstance(event, dict) else None
        if isinstance(kind, str):
            text += f" ({shorten(kind, 40)} event)"
    return text


def _sequence_problems(events: list[dict[str, Any]], status: str) -> list[str]:
    """What JSON Schema cannot say: seq 1, 2, 3, ... and finalized last."""
    for index, event in enumerate(events):
        if event["seq"] != index + 1:
            # A gap means a lost event: the recorder numbers every event of a run 1, 2, 3, ...
            return [
                f"events[{index}]: seq {event['seq']} where {index + 1} was expected "
                "(seq numbers are not strictly increasing from 1 without gaps)"
            ]
    if status != "incomplete" and events[-1]["type"] != "finalized":
        return ["the last event is not finalized"]
    return []


def _is_id_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
