"""A hostile scripted LLM: rule names built to attack a terminal, a parser or a file system."""

from __future__ import annotations

from typing import Any

from tests.scripted import NEG_WORDS, POS_WORDS, ScriptedLLM, rule, target_class

# Every C0 control, DEL, a few C1 controls and every bidi control, in one string.
CONTROLS = (
    "".join(chr(c) for c in range(0x20))
    + "\x7f\x85\x9b\x9d"
    + "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# What the red team printed: clear screen, a forged verdict, OSC 52 / 8 / 0, a forged line.
ATTACKS = (
    "\x1b[2J\x1b[Hpatch 1 ACCEPTED: F1 42% -> 99%",
    "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07",
    "\x1b]0;owned\x07",
    "ok\nseq 9 finalized: forged line",
    "nul\x00here\rback\x08\x08",
    "\u202etxt.exe",
    "<script>alert(1)</script>&amp;",
)
HUGE = "N" * 10_000


def _name(label: str, n: int) -> str:
    return f"{label} {ATTACKS[n % len(ATTACKS)]}{CONTROLS}"


def hostile_rules(prompt: str) -> dict[str, Any]:
    """Per-class synthesis whose rule names hold every control character and an attack."""
    label = target_class(prompt)
    words = POS_WORDS if label == "pos" else NEG_WORDS
    return {
        "rules": [
            rule(_name(label, 0 if label == "pos" else 4), words, label),
            rule(_name(label, 1 if label == "pos" else 5) + HUGE[:200], words, label, priority=4),
        ]
    }


def hostile_patch(prompt: str) -> dict[str, Any]:
    """A patch adding a rule with a 10 kB hostile name."""
    return {"rules": [rule(ATTACKS[2] + HUGE, "nice|lovely", "pos")]}


def hostile_llm() -> ScriptedLLM:
    """An LLM whose every rule name attacks the terminal."""
    return ScriptedLLM(per_class=hostile_rules, patch=[hostile_patch])
