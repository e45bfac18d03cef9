"""The width of text output: the terminal's, 80 off a terminal, never below 40 columns."""

from __future__ import annotations

import re
import shutil
import textwrap
from typing import IO

__all__ = ["DEFAULT_WIDTH", "MIN_WIDTH", "fit", "fit_for", "is_terminal", "terminal_width"]

DEFAULT_WIDTH = 80
MIN_WIDTH = 40


def terminal_width(stream: IO[str] | None = None) -> int:
    """Columns available on ``stream``: 80 unless it is a terminal.

    On a terminal, ``COLUMNS`` when set, else the terminal's own width
    (:func:`shutil.get_terminal_size`); never less than :data:`MIN_WIDTH`.
    Off a terminal (a pipe, a file) always 80, so saved output does not
    depend on the window it was made in.
    """
    if not is_terminal(stream):
        return DEFAULT_WIDTH
    return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is an open terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def fit_for(text: str, stream: IO[str] | None) -> str:
    """:func:`fit` ``text`` to a terminal's width; text for a pipe or a file is left as is."""
    return fit(text, terminal_width(stream)) if is_terminal(stream) else text


def fit(text: str, width: int) -> str:
    """Re-wrap the lines of ``text`` that are wider than ``width`` columns.

    A wrapped line goes on indented four columns deeper than it starts; a
    ruler (a line of ``=`` or ``-``) is cut to the width. Lines that fit are
    left as they are, so at 78 columns and more nothing changes.
    """
    if all(len(line) <= width for line in text.splitlines()):
        return text
    end = "\n" if text.endswith("\n") else ""
    return "\n".join(_fit_line(line, width) for line in text.splitlines()) + end


_GAP = re.compile(r"(?<=\S)  +(?=\S)")


def _hanging(line: str, indent: str) -> int:
    """Where a wrapped line goes on: under the text after the columns at its start.

    A story step ``  6   0.1s  18  patch 1 ...`` goes on two columns in from
    ``patch`` (as the story's own wrapping does); a line without such columns
    four columns deeper than it starts.
    """
    gaps = [m.end() for m in _GAP.finditer(line, len(indent), len(indent) + 24)]
    return gaps[-1] + 2 if gaps else len(indent) + 4


def _fit_line(line: str, width: int) -> str:
    if len(line) <= width:
        return line
    body = line.lstrip(" ")
    indent = line[: len(line) - len(body)]
    if body and set(body) <= {"=", "-"}:
        return (indent + body)[:width]
    deeper = " " * min(_hanging(line, indent), width // 2)
    wrapped = textwrap.wrap(
        body,
        width,
        initial_indent=indent,
        subsequent_indent=deeper,
        break_long_words=False,  # a path or an id stays whole, even if it overflows
        break_on_hyphens=False,
    )
    return "\n".join(wrapped) if wrapped else line[:width]
