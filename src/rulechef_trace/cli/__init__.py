"""The ``rulechef-trace`` command line (also ``python -m rulechef_trace``).

Verbs: ``demo``, ``show``, ``lineage``, ``diff``, ``history``, ``validate``,
``html`` and ``run``. Exit status 0 on success; 1 when ``validate`` found an
invalid trace or a demo run failed; 2 for bad input (a missing, empty,
truncated or foreign file, a newer format version, an unknown rule) or bad
usage. Errors are one line on standard error,
``rulechef-trace: error: <file>: <problem>``.

A verb is one ``add_<verb>(verbs)`` function (in :mod:`.verbs_read` or
:mod:`.verbs_tools`) listed in :data:`VERB_ADDERS`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from rulechef_trace import __version__
from rulechef_trace.cli._output import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    PROG,
    Handler,
    UsageError,
    Verbs,
    colourize,
    error,
    wants_colour,
)

# tests and 0.1 callers import it from here
from rulechef_trace.cli._output import TerminalStream as _TerminalStream  # noqa: F401
from rulechef_trace.cli.verbs_read import add_diff, add_history, add_lineage, add_show, add_validate
from rulechef_trace.cli.verbs_tools import add_demo, add_html, add_rules, add_run
from rulechef_trace.demo import DemoDataError
from rulechef_trace.trace import TraceError, read_limit

__all__ = ["VERB_ADDERS", "build_parser", "colourize", "main", "wants_colour"]

#: The verbs in the order ``--help`` lists them.
VERB_ADDERS: list[Callable[[Verbs], None]] = [
    add_demo,
    add_show,
    add_lineage,
    add_diff,
    add_history,
    add_validate,
    add_html,
    add_run,
    add_rules,
]


def _short_usage() -> str:
    """The start shown for ``rulechef-trace`` alone: every verb, then where to begin."""
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return (
        f"usage: rulechef-trace VERB [options]   (verbs: {', '.join(verbs.choices)})\n"
        "start with: rulechef-trace demo\n"
        "more: rulechef-trace --help, rulechef-trace VERB --help\n"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rulechef-trace``, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read, compare and validate rulechef learning-run traces.",
        epilog="Start with: rulechef-trace demo",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for add in VERB_ADDERS:
        add(verbs)
    return parser


def _run(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    try:
        with read_limit(getattr(args, "max_bytes", None)):
            return handler(args)
    except (TraceError, DemoDataError, UsageError) as exc:
        error(str(exc))
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
        sys.stderr.write(_short_usage())
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
