"""The sanitiser: no control character an LLM or a data set chose reaches a terminal."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from rulechef_trace._text import (
    _units,
    clean,
    describe_exception,
    is_unsafe,
    safe_str,
    shorten,
    width,
)

PROPS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

# Every character class the red team used: C0, DEL, C1, bidi, separators, plus text.
HOSTILE = st.text(
    alphabet=st.sampled_from(
        [chr(c) for c in range(0x00, 0x20)]
        + ["\x7f"]
        + [chr(c) for c in range(0x80, 0xA0)]
        + list(
            "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        )
        + list("ab\\x1b[]2;é漢\u0301<>&\"'")
    ),
    max_size=40,
)
ANY_TEXT = HOSTILE | st.text(max_size=40)


def _controls(text: str, *, newlines: bool = False) -> list[str]:
    return [c for c in text if is_unsafe(c, newlines=newlines)]


@PROPS
@given(ANY_TEXT)
def test_no_control_character_survives_clean(text: str) -> None:
    """clean() leaves no C0/C1/DEL/bidi character, newline included."""
    assert _controls(clean(text)) == []
    assert "\n" not in clean(text)


@PROPS
@given(ANY_TEXT)
def test_only_newline_survives_when_the_caller_prints_lines(text: str) -> None:
    """With newlines=True the single control left is "\\n", and every one is kept."""
    out = clean(text, newlines=True)
    assert _controls(out, newlines=True) == []
    assert out.count("\n") == text.count("\n")


@PROPS
@given(ANY_TEXT, st.integers(min_value=0, max_value=30))
def test_shorten_fits_and_never_cuts_an_escape(text: str, limit: int) -> None:
    """shorten() is clean, fits its limit (when the limit holds the marker) and ends whole."""
    out = shorten(text, limit)
    assert _controls(out) == []
    if limit >= 2:
        assert width(out) <= limit
    full = clean(text)
    body = out if out == full else out[:-2]
    units = _units(full)
    assert body in {"".join(units[:k]) for k in range(len(units) + 1)}


def test_escapes_are_readable() -> None:
    """Escapes name the code point, so a reader sees what the LLM tried."""
    assert clean("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert clean("\u202eevil") == "\\u202eevil"
    assert clean("x\ny") == "x\\x0ay"
    assert clean("x\ny", newlines=True) == "x\ny"
    assert clean("\x9b31m") == "\\x9b31m"


def test_truncation_keeps_a_terminated_osc_escaped_whole() -> None:
    """Cutting an OSC 8 hyperlink name cannot leave a live or half escape."""
    name = "\x1b]8;;http://x\x07click\x1b]8;;\x07"
    for limit in range(0, 40):
        out = shorten(name, limit)
        assert "\x1b" not in out and "\x07" not in out
        assert not re.search(r"\\x[0-9a-f]?\.\.$", out)


def test_shorten_counts_wide_characters_as_two_columns() -> None:
    """A name in CJK is cut by columns, not code points."""
    out = shorten("漢" * 10, 8)
    assert width(out) <= 8 and out.endswith("..")


class _Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_exception_whose_str_raises_is_described() -> None:
    """describe_exception() never raises, and names the type."""
    text = describe_exception(_Hostile())
    assert text.startswith("_Hostile: <unprintable _Hostile")


def test_exception_message_is_bounded() -> None:
    """A 1 MB message is cut, so a trace or a log line stays small."""
    assert len(describe_exception(ValueError("x" * 1_000_000), limit=100)) < 130


def test_safe_str_of_object_with_broken_str() -> None:
    """safe_str() turns a broken __str__ into a placeholder."""

    class Broken:
        def __str__(self) -> str:
            raise ValueError

    assert safe_str(Broken()).startswith("<unprintable Broken")
    assert clean(Broken()).startswith("<unprintable Broken")


@PROPS
@given(ANY_TEXT | st.text(alphabet=st.characters(max_codepoint=0x2100), max_size=40), st.booleans())
def test_clean_escapes_exactly_the_characters_is_unsafe_names(text: str, newlines: bool) -> None:
    """The fast scan in clean() and the per-character rule is_unsafe() agree on every character."""
    expected = "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        if is_unsafe(c, newlines=newlines)
        else c
        for c in text
    )
    assert clean(text, newlines=newlines) == expected


def test_every_unsafe_code_point_is_escaped() -> None:
    """Each of the 0x0000-0x2100 code points is escaped by clean() iff is_unsafe() says so."""
    for code in range(0x2100):
        char = chr(code)
        assert (clean(char) != char) == is_unsafe(char), hex(code)
        assert (clean(char, newlines=True) != char) == is_unsafe(char, newlines=True), hex(code)
