"""The ``rulechef-trace`` command line (also ``python -m rulechef_trace``).

Verbs: ``demo``, ``show``, ``lineage``, ``diff``, ``history``, ``validate`` and
``html``. Exit status 0 on success; 1 when ``validate`` found an invalid trace
or a demo run failed; 2 for bad input (a missing, empty, truncated or foreign
file, a newer format version, an unknown rule) or bad usage. Errors are one
line on standard error, ``rulechef-trace: error: <file>: <problem>``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, cast

import orjson

from rulechef_trace import __version__
from rulechef_trace._terminal import fit_for, is_terminal
from rulechef_trace._text import clean, is_unsafe
from rulechef_trace.demo import DEFAULT_DIR, DemoDataError, run_demo
from rulechef_trace.report import (
    UnknownRuleError,
    diff,
    history,
    lineage,
    render_diff,
    render_history,
    render_lineage,
    render_trace,
)
from rulechef_trace.trace import MAX_BYTES, TraceError, TraceReadError, load_trace, read_limit

__all__ = ["build_parser", "colourize", "main", "wants_colour"]

logger = logging.getLogger("rulechef_trace")

PROG = "rulechef-trace"

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_BAD_INPUT = 2

_RESET = "\033[0m"
_BOLD = "\033[1m"
_GREEN = "\033[32m"
_RED = "\033[31m"
_WORD_COLOURS = {"ACCEPTED": _GREEN, "REJECTED": _RED, "REVERTED": _RED}
_WORDS_RE = re.compile(r"\b(ACCEPTED|REJECTED|REVERTED)\b")
_VERDICT_RE = re.compile(r"^(OK|INVALID)\b")


class UsageError(Exception):
    """A problem with what the user asked for; reported in one line, exit status 2."""


# ---------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------


def wants_colour(stream: IO[str]) -> bool:
    """Colour only for a terminal, and only while ``NO_COLOR`` is unset or empty."""
    if os.environ.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def colourize(text: str) -> str:
    """Add ANSI colour: headings bold, ACCEPTED/OK green, REJECTED/REVERTED/INVALID red."""
    return "".join(_colour_line(line) for line in text.splitlines(keepends=True))


def _colour_line(line: str) -> str:
    body = line.rstrip("\n")
    end = line[len(body) :]
    if body.startswith("RULECHEF "):
        return f"{_BOLD}{body}{_RESET}{end}"
    body = _WORDS_RE.sub(lambda m: f"{_WORD_COLOURS[m.group(1)]}{m.group(1)}{_RESET}", body)
    verdict = _VERDICT_RE.match(body)
    if verdict:
        colour = _GREEN if verdict.group(1) == "OK" else _RED
        body = f"{colour}{verdict.group(1)}{_RESET}{body[verdict.end() :]}"
    return body + end


class _TerminalStream(io.TextIOBase):
    """A text stream for a terminal: each complete line fitted to its width and coloured.

    Used for the demo, which prints as it goes; a partial line waits for its
    end (or a flush).
    """

    def __init__(self, target: IO[str], *, colour: bool):
        super().__init__()
        self._target = target
        self._colour = colour
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._emit("".join(line + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""
        self._target.flush()

    def _emit(self, text: str) -> None:
        text = fit_for(text, self._target)
        self._target.write(colourize(text) if self._colour else text)


def _out(text: str) -> None:
    """Print a rendered text to standard output, fitted to its width, coloured where wanted."""
    text = clean(text, newlines=True)  # backstop: no byte from a trace drives the terminal
    text = fit_for(text, sys.stdout)
    print(colourize(text) if wants_colour(sys.stdout) else text, end="")


def _error(message: str) -> None:
    print(f"{PROG}: error: {clean(message)}", file=sys.stderr)


def _note(message: str) -> None:
    """One line on standard error about something skipped; the verb goes on."""
    print(f"{PROG}: note: {clean(message)}", file=sys.stderr)


# ---------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    out: IO[str] = sys.stdout
    if is_terminal(sys.stdout):
        out = cast(IO[str], _TerminalStream(sys.stdout, colour=wants_colour(sys.stdout)))
    try:
        run_demo(
            args.dir,
            data=args.data,
            model=args.model,
            base_url=args.base_url,
            out=out,
            live=_demo_live(),
        )
    except (DemoDataError, BrokenPipeError):
        raise
    except Exception as exc:  # the run failed; run_demo printed its trace
        out.flush()
        logger.debug("demo run failed", exc_info=True)
        _error(f"demo run failed: {type(exc).__name__}: {exc}")
        return EXIT_INVALID
    out.flush()
    return EXIT_OK


def _demo_live() -> object:
    # The demo prints the whole story at the end: live, only the status line, on a terminal.
    if not sys.stderr.isatty():
        return False
    from rulechef_trace.live import LiveView

    return LiveView(sys.stderr, steps=False)


def _cmd_show(args: argparse.Namespace) -> int:
    if args.follow:
        from rulechef_trace.follow import follow

        return follow(args.path, sys.stdout)
    trace = load_trace(args.path)
    if args.json:
        text = orjson.dumps(trace, option=orjson.OPT_INDENT_2).decode()
        # orjson escapes C0 only; C1 and bidi controls become JSON escapes too (still valid JSON).
        print("".join(f"\\u{ord(c):04x}" if is_unsafe(c, newlines=True) else c for c in text))
    else:
        _out(render_trace(trace))
    return EXIT_OK


def _cmd_lineage(args: argparse.Namespace) -> int:
    trace = load_trace(args.path)
    try:
        found = lineage(trace, args.rule)
    except UnknownRuleError as exc:
        raise UnknownRuleError(exc.rule, args.path) from None
    _out(render_lineage(trace, found))
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    a, b = load_trace(args.a), load_trace(args.b)
    _out(render_diff(diff(a, b), labels=(args.a, args.b)))
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    found = history(args.storage_dir, args.dataset)
    unread = _unreadable_folders(Path(args.storage_dir), args.dataset)
    if unread:
        found = dataclasses.replace(found, notes=[*found.notes, *unread])
    _out(render_history(found))
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


def _cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.paths:
        if Path(path).is_dir():
            status = max(status, _validate_folder(Path(path)))
        else:
            status = max(status, _validate_one(path))
    return status


def _validate_folder(folder: Path) -> int:
    # A storage folder: its latest-run files, streams and every kept run.
    files, skipped = _folder_traces(folder)
    for note in skipped:
        _note(note)
    if not files:
        if not skipped:
            _error(f"{folder}: is a directory, not a trace file, and holds no trace files")
        return EXIT_BAD_INPUT
    status = max(_validate_one(str(p)) for p in files)
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


def _validate_one(path: str) -> int:
    """Check one file; print its verdict line. Returns its exit status."""
    try:
        trace = load_trace(path)
    except TraceReadError as exc:  # missing, a folder, a FIFO, too large: not checked at all
        _error(str(exc))
        return EXIT_BAD_INPUT
    except TraceError as exc:
        _out(f"INVALID  {path}: {exc.problem}\n")
        return EXIT_INVALID
    run = trace.run
    _out(
        f"OK       {path}  ({run.get('kind')}, {trace.status}, {len(trace.events)} events, "
        f"{len(trace.final_rules)} rules)\n"
    )
    return EXIT_OK


def _html_writer() -> Callable[[Path, str | None], Path]:
    """``rulechef_trace.report.html.write_html``, imported only when the verb runs."""
    try:
        from rulechef_trace.report.html import write_html
    except ImportError:
        raise UsageError(
            "the HTML report is not available in this installation"
            " (rulechef_trace.report.html is missing)"
        ) from None
    return write_html


def _cmd_html(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if not source.exists():
        raise TraceError("no such file or directory", source)
    write_html = _html_writer()
    try:
        written = write_html(source, args.output)
    except OSError as exc:
        raise UsageError(
            f"{exc.filename or args.output or source}: cannot write: {exc.strerror or exc}"
        ) from None
    print(f"wrote {written}")
    return EXIT_OK


# ---------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rulechef-trace``, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read, compare and validate rulechef learning-run traces.",
        epilog="Start with: rulechef-trace demo",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_demo(verbs)
    _add_show(verbs)
    _add_lineage(verbs)
    _add_diff(verbs)
    _add_history(verbs)
    _add_validate(verbs)
    _add_html(verbs)
    _add_run(verbs)
    return parser


_STATUSES = "exit status: 0 done, 2 bad input or usage"
_EPILOGS = {
    "demo": "example: rulechef-trace demo --dir /tmp/rct-demo\n"
    "exit status: 0 done, 1 the demo run failed, 2 bad input or usage\n"
    "NO_COLOR=1 turns colour off; on a terminal a status line shows progress",
    "show": "examples: rulechef-trace show rulechef_data/intents.trace.json\n"
    "          rulechef-trace show --follow rulechef_data/\n"
    "exit status: 0 done (with --follow: the run ended), 2 bad input or usage,"
    " 130 Ctrl-C\nNO_COLOR=1 turns colour off",
    "lineage": f"example: rulechef-trace lineage intents.trace.json\n{_STATUSES}"
    " (also an unknown rule)",
    "diff": f"example: rulechef-trace diff old.trace.json new.trace.json\n{_STATUSES}",
    "history": f"example: rulechef-trace history rulechef_data/\n{_STATUSES}",
    "validate": "example: rulechef-trace validate rulechef_data/intents.trace.json\n"
    "exit status: 0 valid, 1 invalid, 2 unreadable input or usage",
    "html": f"example: rulechef-trace html intents.trace.json -o report.html\n{_STATUSES}",
    "run": "example: rulechef-trace run --stream -- python learn.py\n"
    "exit status: the command's own; 2 no command, or no such program",
}
_SHORT_USAGE = (
    "usage: rulechef-trace VERB [options]   (verbs: demo, show, lineage, diff, history,"
    " validate, html, run)\nstart with: rulechef-trace demo\n"
    "more: rulechef-trace --help, rulechef-trace VERB --help\n"
)


def _verb(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    sub = verbs.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=_EPILOGS.get(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def _add_run(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(
        verbs,
        "run",
        "run a Python program with every chef traced, no change to its code",
        _cmd_run,
    )
    sub.add_argument("--storage", help="folder for the traces (default: each chef's own)")
    sub.add_argument("--stream", action="store_true", help="also stream each run's events")
    sub.add_argument("--live", action="store_true", help="the story on standard error as it goes")
    sub.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")


def _cmd_run(args: argparse.Namespace) -> int:
    from rulechef_trace._run_command import run_command

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        _error("no command given: rulechef-trace run -- COMMAND [ARGS...]")
        return EXIT_BAD_INPUT
    try:
        return run_command(command, storage_path=args.storage, stream=args.stream, live=args.live)
    except (FileNotFoundError, PermissionError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT


def _byte_count(text: str) -> int:
    """``--max-bytes`` value: bytes, or with a K, M or G suffix (powers of 1024)."""
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    try:
        value = int(digits) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} (e.g. 200M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return value


def _add_max_bytes(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--max-bytes",
        type=_byte_count,
        metavar="N",
        help=f"read no trace file larger than N bytes (K/M/G suffixes; default {MAX_BYTES >> 20}M)",
    )


def _add_demo(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(
        verbs, "demo", "learn rules on a small data set, offline, and show the trace", _cmd_demo
    )
    sub.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        help=f"folder for the dataset and traces (default: {DEFAULT_DIR})",
    )
    sub.add_argument(
        "--data",
        metavar="FILE.jsonl",
        help="JSONL with text and label fields (default: the packaged intents)",
    )
    sub.add_argument("--model", help="model name for a real endpoint (needs OPENAI_API_KEY)")
    sub.add_argument(
        "--base-url", metavar="URL", help="OpenAI-compatible endpoint (needs OPENAI_API_KEY)"
    )


def _add_show(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(verbs, "show", "print a trace step by step", _cmd_show)
    sub.add_argument(
        "path", help="a .trace.json or .trace.jsonl file (with --follow: also a storage folder)"
    )
    sub.add_argument("--json", action="store_true", help="print the normalised trace as JSON")
    sub.add_argument(
        "--follow",
        action="store_true",
        help="print each step of a streamed run as it arrives; exit 0 when the run ends"
        " (PATH a .trace.jsonl or a folder: its newest stream, waiting for one)",
    )
    _add_max_bytes(sub)


def _add_lineage(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(verbs, "lineage", "tell how a rule (or every final rule) came to be", _cmd_lineage)
    sub.add_argument("path", help="a trace file")
    sub.add_argument("rule", nargs="?", help="a rule id or name (default: every final rule)")
    _add_max_bytes(sub)


def _add_diff(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(verbs, "diff", "compare two runs: rules, metrics, patches", _cmd_diff)
    sub.add_argument("a", help="the first trace file")
    sub.add_argument("b", help="the second trace file")
    _add_max_bytes(sub)


def _add_history(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(
        verbs, "history", "list the kept runs of a storage folder, oldest first", _cmd_history
    )
    sub.add_argument("storage_dir", metavar="STORAGE_DIR", help="the chef's storage folder")
    sub.add_argument("--dataset", metavar="NAME", help="only this dataset")
    _add_max_bytes(sub)


def _add_validate(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(
        verbs, "validate", "check trace files against format v1 and the replay rule", _cmd_validate
    )
    sub.add_argument(
        "paths", metavar="PATH", nargs="+", help="trace files, or storage folders (every trace)"
    )
    _add_max_bytes(sub)


def _add_html(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _verb(
        verbs, "html", "write a self-contained HTML report of a trace or a history", _cmd_html
    )
    sub.add_argument("source", metavar="PATH", help="a trace file, or a storage folder")
    sub.add_argument("-o", "--output", metavar="FILE", help="the HTML file to write")
    _add_max_bytes(sub)


def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with read_limit(getattr(args, "max_bytes", None)):
            return handler(args)
    except (TraceError, DemoDataError, UsageError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT


def _replace_unencodable() -> None:
    """Let any output encoding work (cp1252, ascii): unencodable characters become ``?``."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            # A closed or detached stream is left as it is.
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rulechef-trace`` with ``argv`` (default: the process arguments).

    Returns:
        The exit status: 0 fine, 1 invalid trace or failed demo, 2 bad input.
    """
    _replace_unencodable()
    if not (sys.argv[1:] if argv is None else list(argv)):
        sys.stderr.write(_SHORT_USAGE)
        return EXIT_BAD_INPUT
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return _run(args)
    except BrokenPipeError:  # e.g. `rulechef-trace show x | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK  # the reader had enough, like `head`: not an error
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
