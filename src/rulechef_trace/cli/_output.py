"""What every verb prints through: exit statuses, colour, fitted text, JSON, errors and notes."""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from collections.abc import Callable
from typing import IO, Any, TypeAlias

import orjson

from rulechef_trace._terminal import fit_for
from rulechef_trace._text import clean, is_unsafe
from rulechef_trace.trace import MAX_BYTES

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INVALID",
    "EXIT_OK",
    "PROG",
    "STATUSES",
    "Handler",
    "TerminalStream",
    "UsageError",
    "Verbs",
    "add_json",
    "add_max_bytes",
    "colourize",
    "error",
    "note",
    "out",
    "out_json",
    "verb",
    "wants_colour",
]

PROG = "rulechef-trace"

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_BAD_INPUT = 2

#: The exit-status line of most verbs' help.
STATUSES = "exit status: 0 done, 2 bad input or usage"

#: The sub-command table each ``add_<verb>`` adds to (a string: not subscriptable at run time).
Verbs: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]

_RESET = "\033[0m"
_BOLD = "\033[1m"
_GREEN = "\033[32m"
_RED = "\033[31m"
_WORD_COLOURS = {"ACCEPTED": _GREEN, "REJECTED": _RED, "REVERTED": _RED}
_WORDS_RE = re.compile(r"\b(ACCEPTED|REJECTED|REVERTED)\b")
_VERDICT_RE = re.compile(r"^(OK|INVALID)\b")


class UsageError(Exception):
    """A problem with what the user asked for; reported in one line, exit status 2."""


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


class TerminalStream(io.TextIOBase):
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


def out(text: str) -> None:
    """Print a rendered text to standard output, fitted to its width, coloured where wanted."""
    text = clean(text, newlines=True)  # backstop: no byte from a trace drives the terminal
    text = fit_for(text, sys.stdout)
    print(colourize(text) if wants_colour(sys.stdout) else text, end="")


def out_json(value: Any) -> None:
    """Print ``value`` as indented JSON; dataclasses become objects.

    orjson escapes C0 only; C1 and bidi controls become JSON escapes too
    (still valid JSON), so no byte from a trace drives the terminal.
    """
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    print("".join(f"\\u{ord(c):04x}" if is_unsafe(c, newlines=True) else c for c in text))


def error(message: str) -> None:
    """One line on standard error: ``rulechef-trace: error: <message>``."""
    print(f"{PROG}: error: {clean(message)}", file=sys.stderr)


def note(message: str) -> None:
    """One line on standard error about something skipped; the verb goes on."""
    print(f"{PROG}: note: {clean(message)}", file=sys.stderr)


def verb(
    verbs: Verbs, name: str, summary: str, handler: Handler, epilog: str
) -> argparse.ArgumentParser:
    """Add one sub-command ``name`` run by ``handler``."""
    sub: argparse.ArgumentParser = verbs.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


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


def add_max_bytes(sub: argparse.ArgumentParser) -> None:
    """The ``--max-bytes N`` option of every verb that reads traces."""
    sub.add_argument(
        "--max-bytes",
        type=_byte_count,
        metavar="N",
        help=f"read no trace file larger than N bytes (K/M/G suffixes; default {MAX_BYTES >> 20}M)",
    )


def add_json(sub: argparse.ArgumentParser, what: str) -> None:
    """The ``--json`` option of a reading verb."""
    sub.add_argument("--json", action="store_true", help=f"print {what} as JSON")
