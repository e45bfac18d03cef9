"""The reading verbs: ``show``, ``lineage``, ``diff``, ``history`` and ``validate``.

Each takes ``--json`` (the same answer as JSON) and ``--max-bytes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
import sys
from pathlib import Path
from typing import Any

from rulechef_trace.cli._output import (
    EXIT_BAD_INPUT,
    EXIT_INVALID,
    EXIT_OK,
    STATUSES,
    Verbs,
    add_json,
    add_max_bytes,
    error,
    note,
    out,
    out_json,
    verb,
)
from rulechef_trace.report import (
    UnknownRuleError,
    diff,
    history,
    render_diff,
    render_history,
    render_lineage,
    render_trace,
)
from rulechef_trace.report.across_runs import (
    find_trace,
    has_history,
    lineage_across_runs,
    lineage_beside,
    render_lineage_across,
)
from rulechef_trace.trace import TraceError, TraceReadError, load_trace

__all__ = ["add_diff", "add_history", "add_lineage", "add_show", "add_validate"]


# -- show ------------------------------------------------------------------------


def _cmd_show(args: argparse.Namespace) -> int:
    if args.follow:
        from rulechef_trace.follow import follow

        return follow(args.path, sys.stdout)
    trace = load_trace(find_trace(args.path, args.run))
    if args.json:
        out_json(trace)
    else:
        out(render_trace(trace))
    return EXIT_OK


def add_show(verbs: Verbs) -> None:
    """The ``show`` verb."""
    sub = verb(
        verbs,
        "show",
        "print a trace step by step",
        _cmd_show,
        "examples: rulechef-trace show rulechef_data/intents.trace.json\n"
        "          rulechef-trace show rulechef_data/            (its latest learning run)\n"
        "          rulechef-trace show rulechef_data/intents.traces --run 3f2a\n"
        "          rulechef-trace show --follow rulechef_data/\n"
        "exit status: 0 done (with --follow: the run ended), 2 bad input or usage,"
        " 130 Ctrl-C\nNO_COLOR=1 turns colour off",
    )
    sub.add_argument(
        "path",
        help="a .trace.json or .trace.jsonl file, a storage folder (its latest learning run)"
        " or a <dataset>.traces history folder (its newest run)",
    )
    sub.add_argument(
        "--run", metavar="PREFIX", help="the kept run whose id starts with PREFIX (in PATH)"
    )
    add_json(sub, "the normalised trace")
    sub.add_argument(
        "--follow",
        action="store_true",
        help="print each step of a streamed run as it arrives; exit 0 when the run ends"
        " (PATH a .trace.jsonl or a folder: its newest stream, waiting for one)",
    )
    add_max_bytes(sub)


# -- lineage ---------------------------------------------------------------------


def _cmd_lineage(args: argparse.Namespace) -> int:
    if has_history(args.path):
        found = lineage_across_runs(args.path, args.rule, dataset=args.dataset)
        if args.json:
            out_json(found.to_dict())
        else:
            out(render_lineage_across(found))
        return EXIT_OK
    trace = load_trace(args.path)
    try:
        tree, earlier = lineage_beside(trace, args.rule, args.path)
    except UnknownRuleError as exc:
        raise UnknownRuleError(exc.rule, args.path) from None
    if args.json:
        out_json({"lineage": [item.to_dict() for item in tree], "created_by": earlier})
    else:
        out(render_lineage(trace, tree, created_by=earlier))
    return EXIT_OK


def add_lineage(verbs: Verbs) -> None:
    """The ``lineage`` verb."""
    sub = verb(
        verbs,
        "lineage",
        "tell how a rule (or every final rule) came to be",
        _cmd_lineage,
        "examples: rulechef-trace lineage intents.trace.json\n"
        "          rulechef-trace lineage rulechef_data/ refund_rule   (across every kept run)\n"
        f"{STATUSES} (also an unknown rule)",
    )
    sub.add_argument(
        "path", help="a trace file, or a storage or history folder (every kept run of a dataset)"
    )
    sub.add_argument("rule", nargs="?", help="a rule id or name (default: every final rule)")
    sub.add_argument("--dataset", metavar="NAME", help="with a storage folder: this dataset")
    add_json(sub, "the lineage")
    add_max_bytes(sub)


# -- diff ------------------------------------------------------------------------


def _cmd_diff(args: argparse.Namespace) -> int:
    found = diff(load_trace(args.a), load_trace(args.b))
    if args.json:
        out_json({"a_path": args.a, "b_path": args.b, **found.to_dict()})
    else:
        out(render_diff(found, labels=(args.a, args.b)))
    return EXIT_OK


def add_diff(verbs: Verbs) -> None:
    """The ``diff`` verb."""
    sub = verb(
        verbs,
        "diff",
        "compare two runs: rules, metrics, patches",
        _cmd_diff,
        f"example: rulechef-trace diff old.trace.json new.trace.json\n{STATUSES}",
    )
    sub.add_argument("a", help="the first trace file")
    sub.add_argument("b", help="the second trace file")
    add_json(sub, "the comparison")
    add_max_bytes(sub)


# -- history ---------------------------------------------------------------------


def _cmd_history(args: argparse.Namespace) -> int:
    found = history(args.storage_dir, args.dataset)
    unread = _unreadable_folders(Path(args.storage_dir), args.dataset)
    if unread:
        found = dataclasses.replace(found, notes=[*found.notes, *unread])
    if args.json:
        out_json(found.to_dict())
    else:
        out(render_history(found))
    return EXIT_OK


def _unreadable_folders(folder: Path, dataset: str | None) -> list[str]:
    """Notes for the folders ``history`` would list but cannot read (they hide runs)."""
    notes = []
    if dataset is not None:
        candidates = [folder / f"{dataset}.traces"]
    elif folder.name.endswith(".traces"):
        candidates = [folder]
    else:
        problem = _listing_problem(folder)
        if problem:
            return [f"cannot read {folder}: {problem}; no run there is listed"]
        candidates = sorted(p for p in folder.glob("*.traces") if p.is_dir())
    for runs in candidates:
        problem = _listing_problem(runs)
        if problem:
            notes.append(f"cannot read {runs.name}: {problem}; its runs are not listed")
    return notes


def _listing_problem(folder: Path) -> str | None:
    try:
        with os.scandir(folder):
            return None
    except FileNotFoundError:
        return None  # reported by the reader itself
    except OSError as exc:
        return str(exc.strerror or exc)


def add_history(verbs: Verbs) -> None:
    """The ``history`` verb."""
    sub = verb(
        verbs,
        "history",
        "list the kept runs of a storage folder, oldest first",
        _cmd_history,
        f"example: rulechef-trace history rulechef_data/\n{STATUSES}",
    )
    sub.add_argument("storage_dir", metavar="STORAGE_DIR", help="the chef's storage folder")
    sub.add_argument("--dataset", metavar="NAME", help="only this dataset")
    add_json(sub, "the runs")
    add_max_bytes(sub)


# -- validate --------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    verdicts: list[dict[str, Any]] | None = [] if args.json else None
    for path in args.paths:
        if Path(path).is_dir():
            status = max(status, _validate_folder(Path(path), verdicts))
        else:
            status = max(status, _validate_one(path, verdicts))
    if verdicts is not None:
        out_json(verdicts)
    return status


def add_validate(verbs: Verbs) -> None:
    """The ``validate`` verb."""
    sub = verb(
        verbs,
        "validate",
        "check trace files against format v1 and the replay rule",
        _cmd_validate,
        "example: rulechef-trace validate rulechef_data/intents.trace.json\n"
        "exit status: 0 valid, 1 invalid, 2 unreadable input or usage",
    )
    sub.add_argument(
        "paths", metavar="PATH", nargs="+", help="trace files, or storage folders (every trace)"
    )
    add_json(sub, "one verdict per file")
    add_max_bytes(sub)


def _validate_folder(folder: Path, verdicts: list[dict[str, Any]] | None) -> int:
    # A storage folder: its latest-run files, streams and every kept run.
    files, skipped = _folder_traces(folder)
    for line in skipped:
        note(line)
    if not files:
        if not skipped:
            error(f"{folder}: is a directory, not a trace file, and holds no trace files")
        return EXIT_BAD_INPUT
    status = max(_validate_one(str(p), verdicts) for p in files)
    return max(status, EXIT_BAD_INPUT if skipped else EXIT_OK)


_FOLDER_PATTERNS = ("*.trace.json", "*.trace.jsonl")


def _folder_traces(folder: Path) -> tuple[list[Path], list[str]]:
    """The trace files of a storage folder and its ``*.traces`` folders, and what was skipped.

    Only regular files are kept: a FIFO or a device named like a trace is
    skipped with a note, and so is a folder that cannot be listed.
    """
    files: list[Path] = []
    skipped: list[str] = []
    for place, patterns in [(folder, _FOLDER_PATTERNS)] + [
        (sub, ("*.trace.json",)) for sub in sorted(folder.glob("*.traces")) if sub.is_dir()
    ]:
        problem = _listing_problem(place)
        if problem:
            skipped.append(f"skipped {place}: cannot read the folder: {problem}")
            continue
        for path in sorted({p for pattern in patterns for p in place.glob(pattern)}):
            kind = _kind(path)
            if kind == "file":
                files.append(path)
            elif kind != "directory":
                skipped.append(f"skipped {path}: {kind}, not a trace file")
    return sorted(files), skipped


def _kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"


def _validate_one(path: str, verdicts: list[dict[str, Any]] | None) -> int:
    """Check one file; print its verdict line (or add it to ``verdicts``). Returns its status."""
    try:
        trace = load_trace(path)
    except TraceReadError as exc:  # missing, a folder, a FIFO, too large: not checked at all
        error(str(exc))
        if verdicts is not None:
            verdicts.append({"path": path, "verdict": "unreadable", "problem": exc.problem})
        return EXIT_BAD_INPUT
    except TraceError as exc:
        if verdicts is not None:
            verdicts.append({"path": path, "verdict": "invalid", "problem": exc.problem})
        else:
            out(f"INVALID  {path}: {exc.problem}\n")
        return EXIT_INVALID
    run = trace.run
    facts = {
        "kind": run.get("kind"),
        "status": trace.status,
        "events": len(trace.events),
        "rules": len(trace.final_rules),
    }
    if verdicts is not None:
        verdicts.append({"path": path, "verdict": "valid", "run": trace.run_id, **facts})
        return EXIT_OK
    out(
        f"OK       {path}  ({facts['kind']}, {trace.status}, {facts['events']} events, "
        f"{facts['rules']} rules)\n"
    )
    return EXIT_OK
