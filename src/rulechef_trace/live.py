"""The live view: a run's story on standard error as it happens.

A receiver-side writer. Each finished step is printed in the story's format;
on a terminal a one-line status (iteration i/N, F1 so far, rules, LLM calls,
tokens and cost when the events carry them, elapsed time) is redrawn in place
below the steps. Not on a terminal, plain lines only. ``NO_COLOR`` turns the
colour off. Nothing is ever written to standard output.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from rulechef_trace._terminal import terminal_width
from rulechef_trace._text import clean, shorten
from rulechef_trace.render import _event_lines, pct
from rulechef_trace.trace import Trace, TraceError, build_trace

__all__ = ["LiveView", "Progress", "story_lines", "wants_colour"]

_RESET = "\033[0m"
_DIM = "\033[2m"
_GREEN = "\033[32m"
_RED = "\033[31m"
_WORDS = {"ACCEPTED": _GREEN, "REJECTED": _RED, "REVERTED": _RED, "STOP": _RED}
_WORDS_RE = re.compile(r"\b(ACCEPTED|REJECTED|REVERTED|STOP)\b")
_CLEAR = "\r\033[K"


def wants_colour(stream: IO[str]) -> bool:
    """Colour only for a terminal, and only while ``NO_COLOR`` is unset or empty."""
    if os.environ.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False


def story_lines(events: list[dict[str, Any]], event: Mapping[str, Any]) -> list[str]:
    """The story's lines for one event, given the run's events so far (it included)."""
    try:
        trace = build_trace(events)
    except TraceError:
        trace = Trace(events=events, rules={})
    return [clean(line) for line in _event_lines(trace, event)]


@dataclass
class Progress:
    """What the status line shows: the run's state so far, from its events."""

    dataset: str = ""
    iteration: int | None = None
    max_iterations: int | None = None
    f1: float | None = None
    rules: int | None = None
    llm_calls: int = 0
    llm_errors: int = 0
    tokens: int = 0
    cost: float | None = None
    started: float | None = None
    t: float = 0.0

    def update(self, event: Mapping[str, Any]) -> None:
        """Fold one event into the progress."""
        kind = event.get("type")
        if kind == "run_started":
            self.dataset = str(event.get("dataset") or "")
            self.max_iterations = _int(event.get("max_iterations")) or self.max_iterations
        if isinstance(event.get("t"), (int, float)):
            self.t = float(event["t"])
        if isinstance(event.get("rules_after"), list):
            self.rules = len(event["rules_after"])
        elif kind == "run_started" and isinstance(event.get("rules"), list):
            self.rules = len(event["rules"])
        if kind == "iteration_evaluated":
            self.iteration = _int(event.get("iteration"))
            self.max_iterations = _int(event.get("max_iterations")) or self.max_iterations
        self._update_f1(event)
        self._update_llm(event)

    def _update_f1(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        source: Any = None
        if kind in ("iteration_evaluated", "refined", "finalized"):
            source = event.get("metrics")
        elif (kind == "patch_decided" and event.get("outcome") == "accepted") or (
            kind == "audit_applied" and not event.get("reverted")
        ):
            source = event.get("metrics_after")
        f1 = source.get("f1") if isinstance(source, Mapping) else None
        if isinstance(f1, (int, float)):
            self.f1 = float(f1)

    def _update_llm(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "llm_called":
            self.llm_calls += 1
            self.llm_errors += event.get("status") == "error"
            usage = event.get("usage") or {}
            self.tokens += sum(_int(usage.get(k)) or 0 for k in ("input_tokens", "output_tokens"))
            if isinstance(event.get("cost"), (int, float)):
                self.cost = (self.cost or 0.0) + float(event["cost"])
        elif event.get("type") == "finalized" and isinstance(event.get("llm"), Mapping):
            cost = event["llm"].get("cost")
            if isinstance(cost, (int, float)):
                self.cost = float(cost)

    def status(self, elapsed: float) -> str:
        """The one-line status, e.g. ``iteration 2/3  F1 83.3%  4 rules  5 LLM calls``."""
        parts = [clean(self.dataset) or "run"]
        if self.iteration is not None:
            parts.append(f"iteration {self.iteration}/{self.max_iterations or '?'}")
        parts.append(f"F1 {pct(self.f1)}")
        if self.rules is not None:
            parts.append(f"{self.rules} rules")
        if self.llm_calls:
            calls = f"{self.llm_calls} LLM calls"
            if self.llm_errors:
                calls += f" ({self.llm_errors} failed)"
            parts.append(calls)
            if self.tokens:
                parts.append(f"{self.tokens:,} tokens")
        if self.cost is not None:
            parts.append(f"${self.cost:.4f}")
        parts.append(f"{elapsed:.0f}s")
        return "  ".join(parts)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LiveView:
    """Write a run's story to a text stream (standard error) while the run goes.

    Call it as a blinker receiver ``view(signal_name, sender, **payload)``, or
    feed it events with :meth:`event`. Safe to call from several threads.

    Args:
        stream: Where to write; standard error by default.
        tty: Force (True) or forbid (False) the redrawn status line; None
            decides from ``stream.isatty()``.
        colour: Force colour on or off; None follows :func:`wants_colour`.
        steps: False shows only the status line (for a caller that prints the
            whole story itself afterwards, as the demo does).
        clock: Monotonic clock, for tests.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        tty: bool | None = None,
        colour: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        steps: bool = True,
    ):
        self.steps = steps
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.colour = (wants_colour(self.stream) if colour is None else colour) and self.tty
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[list[dict[str, Any]], Progress, float]] = {}
        self._status_shown = False

    def __call__(self, signal_name: str, sender: Any, /, **payload: Any) -> None:
        self.event({"type": signal_name, **payload})

    def event(self, event: Mapping[str, Any]) -> None:
        """Show one event: its story lines (if it is a step) and the new status."""
        run_id = str(event.get("run_id"))
        with self._lock:
            entry = self._runs.get(run_id)
            if entry is None:
                if event.get("type") != "run_started":
                    return
                entry = self._runs[run_id] = ([], Progress(), self._clock())
            events, progress, started = entry
            events.append(dict(event))
            progress.update(event)
            shown = self.steps and event.get("type") != "llm_called"
            lines = story_lines(events, event) if shown else []
            if event.get("type") == "finalized":
                del self._runs[run_id]
            self._write(lines, progress, self._clock() - started, event.get("type") != "finalized")

    def tick(self) -> None:
        """Redraw the status line (the elapsed time moves); nothing off a terminal."""
        with self._lock:
            if self.tty and self._runs:
                _, progress, started = next(reversed(self._runs.values()))
                self._write([], progress, self._clock() - started, True)

    def _write(self, lines: list[str], progress: Progress, elapsed: float, more: bool) -> None:
        out = []
        if self.tty and self._status_shown:
            out.append(_CLEAR)
        out += [self._paint(line) + "\n" for line in lines]
        self._status_shown = False
        if self.tty and more:
            # One row, or the next redraw cannot clear what wrapped onto a second one.
            status = shorten(progress.status(elapsed), terminal_width(self.stream) - 1)
            out.append(f"{_DIM}{status}{_RESET}" if self.colour else status)
            self._status_shown = True
        try:
            self.stream.write("".join(out))
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stderr never stops the run

    def _paint(self, line: str) -> str:
        if not self.colour:
            return line
        return _WORDS_RE.sub(lambda m: f"{_WORDS[m.group(1)]}{m.group(1)}{_RESET}", line)
