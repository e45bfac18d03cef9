"""The one sanitiser for text that reaches a terminal.

Names, labels, task and dataset names and exception messages in a trace come
from an LLM or a data set. Every text renderer (story, lineage, diff, history,
validate, CLI errors) passes them through :func:`clean` or :func:`shorten`, so
no character they chose can move the cursor, write the clipboard (OSC 52),
open a hyperlink (OSC 8), forge a line or reorder what follows (bidi
overrides). Unsafe characters are shown escaped (``\\x1b``, ``\\u202e``).
Escaping happens before truncation, and truncation never cuts an escape.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Bidi embeddings, overrides, isolates and marks; line and paragraph separators.
_FORMAT_UNSAFE: Final = frozenset(
    "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_ESCAPE: Final = re.compile(r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}")
# The same characters as is_unsafe(), as one class: a regex scan is what keeps
# a report of thousands of names fast.
_BIDI: Final = r"\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE: Final = re.compile(rf"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_BUT_NEWLINE: Final = re.compile(rf"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}]")


def is_unsafe(char: str, *, newlines: bool = False) -> bool:
    """Whether one character must not reach a terminal as is.

    Args:
        char: A single character.
        newlines: Let ``"\\n"`` through (for callers that print line ends).
    """
    code = ord(char)
    if char == "\n" and newlines:
        return False
    return code < 0x20 or 0x7F <= code <= 0x9F or char in _FORMAT_UNSAFE


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_str(value: object) -> str:
    """``str(value)`` that never raises (a broken ``__str__`` gives a placeholder)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception as exc:  # a hostile __str__ must not stop the caller
        return f"<unprintable {type(value).__name__}: str() raised {type(exc).__name__}>"


def clean(value: object, *, newlines: bool = False) -> str:
    """Text safe for a terminal: unsafe characters shown as escapes.

    Args:
        value: Any value; non-strings are converted with :func:`safe_str`.
        newlines: Keep ``"\\n"`` (multi-line output); otherwise it is escaped too.

    Returns:
        The text with every C0/C1 control, DEL, bidi control and line or
        paragraph separator replaced by ``\\xNN`` or ``\\uNNNN``.
    """
    text = safe_str(value)
    pattern = _UNSAFE_BUT_NEWLINE if newlines else _UNSAFE
    return pattern.sub(lambda found: _escape(found.group()), text)


def _units(text: str) -> list[str]:
    """Split cleaned text into units truncation may not split (escapes, characters)."""
    units: list[str] = []
    pos = 0
    for match in _ESCAPE.finditer(text):
        units.extend(text[pos : match.start()])
        units.append(match.group())
        pos = match.end()
    units.extend(text[pos:])
    return units


def _columns(unit: str) -> int:
    if len(unit) > 1:
        return len(unit)
    if unicodedata.combining(unit):
        return 0
    return 2 if unicodedata.east_asian_width(unit) in ("W", "F") else 1


def width(text: str) -> int:
    """Terminal columns a cleaned text takes (wide East Asian characters count two)."""
    return sum(_columns(u) for u in _units(text))


def shorten(value: object, limit: int, *, marker: str = "..") -> str:
    """Clean a value, then cut it to ``limit`` columns without splitting an escape.

    Args:
        value: Any value (cleaned with :func:`clean`, newlines escaped).
        limit: Maximum terminal columns of the result, marker included.
        marker: Appended when the text was cut.
    """
    text = clean(value)
    if width(text) <= limit:
        return text
    room = max(limit - len(marker), 0)
    kept: list[str] = []
    used = 0
    for unit in _units(text):
        cols = _columns(unit)
        if used + cols > room:
            break
        kept.append(unit)
        used += cols
    return "".join(kept) + marker


def describe_exception(exc: BaseException, limit: int = 500) -> str:
    """``"Type: message"`` for any exception, even one whose ``__str__`` raises.

    The text is not cleaned (it is stored in traces); renderers clean it.

    Args:
        exc: The exception.
        limit: Maximum length of the message part.
    """
    name = type(exc).__name__
    message = safe_str(exc)
    if len(message) > limit:
        message = message[:limit] + "..."
    return f"{name}: {message}" if message else name
