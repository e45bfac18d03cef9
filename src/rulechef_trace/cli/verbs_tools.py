"""The tool verbs: ``demo``, ``html`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from rulechef_trace._terminal import is_terminal
from rulechef_trace.cli._output import (
    EXIT_BAD_INPUT,
    EXIT_INVALID,
    EXIT_OK,
    STATUSES,
    TerminalStream,
    UsageError,
    Verbs,
    add_json,
    add_max_bytes,
    error,
    out_json,
    verb,
    wants_colour,
)
from rulechef_trace.cli._output import out as out_text
from rulechef_trace.demo import DEFAULT_DIR, DemoDataError, run_demo
from rulechef_trace.trace import TraceError

__all__ = ["add_demo", "add_html", "add_rules", "add_run"]

logger = logging.getLogger("rulechef_trace")


def _cmd_demo(args: argparse.Namespace) -> int:
    out: IO[str] = sys.stdout
    if is_terminal(sys.stdout):
        out = cast(IO[str], TerminalStream(sys.stdout, colour=wants_colour(sys.stdout)))
    try:
        traces = run_demo(
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
        error(f"demo run failed: {type(exc).__name__}: {exc}")
        return EXIT_INVALID
    out.flush()
    failed = [t for t in traces if t.status == "llm_error"]
    if failed:  # rulechef went on without its LLM; the demo did not do what it says
        found = failed[0].run.get("error") or {}
        error(
            f"demo run failed: every LLM call failed: {found.get('type')}: {found.get('message')}"
        )
        return EXIT_INVALID
    return EXIT_OK


def _demo_live() -> object:
    # The demo prints the whole story at the end: live, only the status line, on a terminal.
    if not sys.stderr.isatty():
        return False
    from rulechef_trace.live import LiveView

    return LiveView(sys.stderr, steps=False)


def add_demo(verbs: Verbs) -> None:
    """The ``demo`` verb."""
    sub = verb(
        verbs,
        "demo",
        "learn rules on a small data set, offline, and show the trace",
        _cmd_demo,
        "example: rulechef-trace demo --dir /tmp/rct-demo\n"
        "exit status: 0 done, 1 the demo run failed, 2 bad input or usage\n"
        "NO_COLOR=1 turns colour off; on a terminal a status line shows progress",
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


def add_html(verbs: Verbs) -> None:
    """The ``html`` verb."""
    sub = verb(
        verbs,
        "html",
        "write a self-contained HTML report of a trace or a history",
        _cmd_html,
        f"example: rulechef-trace html intents.trace.json -o report.html\n{STATUSES}",
    )
    sub.add_argument("source", metavar="PATH", help="a trace file, or a storage folder")
    sub.add_argument("-o", "--output", metavar="FILE", help="the HTML file to write")
    add_max_bytes(sub)


def _cmd_run(args: argparse.Namespace) -> int:
    from rulechef_trace._run_command import run_command

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        error("no command given: rulechef-trace run -- COMMAND [ARGS...]")
        return EXIT_BAD_INPUT
    try:
        return run_command(command, storage_path=args.storage, stream=args.stream, live=args.live)
    except (FileNotFoundError, PermissionError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT


def add_run(verbs: Verbs) -> None:
    """The ``run`` verb."""
    sub = verb(
        verbs,
        "run",
        "run a Python program with every chef traced, no change to its code",
        _cmd_run,
        "example: rulechef-trace run --stream -- python learn.py\n"
        "exit status: the command's own; 2 no command, or no such program",
    )
    sub.add_argument("--storage", help="folder for the traces (default: each chef's own)")
    sub.add_argument("--stream", action="store_true", help="also stream each run's events")
    sub.add_argument("--live", action="store_true", help="the story on standard error as it goes")
    sub.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")


def _cmd_rules(args: argparse.Namespace) -> int:
    from rulechef_trace.report.rules import load_rule_report
    from rulechef_trace.report.rules_text import render_rule_reports

    reports = load_rule_report(args.path)
    if args.json:
        out_json([r.to_dict() for r in reports])
    else:
        out_text(render_rule_reports(reports))
    return EXIT_OK


def add_rules(verbs: Verbs) -> None:
    """``rules PATH``: each final rule's report card."""
    sub = verb(
        verbs,
        "rules",
        "each final rule's report card: quality, weak, idle",
        _cmd_rules,
        f"example: rulechef-trace rules rulechef_data/\n{STATUSES}",
    )
    sub.add_argument("path", metavar="PATH", help="a trace file, or a storage folder")
    add_json(sub, "the report cards")
    add_max_bytes(sub)
