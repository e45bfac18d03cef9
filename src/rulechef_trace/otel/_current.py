"""Which package span is current, in which thread, and how it stops being current.

OpenTelemetry's current context lives in a ``ContextVar``: it can be changed
only from the thread (the ``contextvars`` context) it belongs to, and restored
only in reverse order. The bridge makes a step span current in the run's
thread when the step starts and restores the context when the step ends,
both in that thread; rulechef_trace ends a step however the step ends, so no
step span can stay current past its step.

Two cases need more than that, and both are handled here:

* Several bridges follow one run. Only one span can be current, so the first
  bridge to see a step attaches its span (a *frame*), the others join the
  frame, and the last one to leave it restores the context.
* A bridge is detached from another thread while a step runs. The run's
  context cannot be restored from there, so the frame is marked released and
  a sweeper, connected to every signal until no released frame is left,
  restores it from the run's own thread at its next signal.

A frame is restored only while its context is the current one: restoring it
under a context somebody attached later would leave theirs broken.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from rulechef_trace import signals as sig

logger = logging.getLogger("rulechef_trace")


@dataclass
class Frame:
    """One context made current for one step of one run."""

    run_id: str
    key: Hashable  #: which step_started made it (shared by bridges seeing the same one)
    context: Context
    token: Token[Context]
    thread: int
    holders: set[int] = field(default_factory=set)
    released: bool = False


_lock = threading.Lock()
_sweeper_lock = threading.Lock()
# run id -> its frames, outermost first
_frames: dict[str, list[Frame]] = {}
_sweeping = False


def enter(run_id: str, key: Hashable, span: Span, holder: int) -> Frame | None:
    """Make ``span`` current in this thread for the step ``key``, or join the frame made for it.

    Args:
        run_id: The run the step belongs to.
        key: What identifies the step_started event (all bridges see the same one).
        span: The step's span (used when this bridge is the first).
        holder: Who holds the frame (a bridge's id).

    Returns:
        The frame, or None when the step's frame belongs to another thread.
    """
    thread = threading.get_ident()
    with _lock:
        stack = _frames.setdefault(run_id, [])
        top = stack[-1] if stack else None
        if top is not None and top.key == key and not top.released:
            if top.thread != thread:
                return None
            top.holders.add(holder)
            return top
        ctx = otel_trace.set_span_in_context(span, otel_context.get_current())
        frame = Frame(run_id, key, ctx, otel_context.attach(ctx), thread, {holder})
        stack.append(frame)
        return frame


def leave(frame: Frame, holder: int) -> None:
    """Stop holding ``frame`` (idempotent); the last holder restores the context.

    From the frame's own thread the context is restored at once; from another
    thread (or while somebody else's context is current) it is restored at
    that thread's next signal.
    """
    with _lock:
        frame.holders.discard(holder)
        if frame.holders or frame.released:
            return
        frame.released = True
    sweep(frame.run_id)


def sweep(run_id: str | None = None) -> None:
    """Restore the released frames this thread can restore, innermost first.

    Args:
        run_id: Only this run's frames; None for every run.
    """
    thread = threading.get_ident()
    with _lock:
        for rid in [run_id] if run_id is not None else list(_frames):
            stack = _frames.get(rid)
            while stack and _restorable(stack[-1], thread):
                otel_context.detach(stack.pop().token)
            if stack is not None and not stack:
                del _frames[rid]
    _refresh_sweeper()


def _restorable(frame: Frame, thread: int) -> bool:
    return frame.released and frame.thread == thread and otel_context.get_current() is frame.context


def frames() -> dict[str, int]:
    """How many frames each run holds now (for tests and diagnostics)."""
    with _lock:
        return {rid: len(stack) for rid, stack in _frames.items()}


# --- the sweeper ---------------------------------------------------------------------


def _on_any_signal(sender: Any, **payload: Any) -> None:
    """In whatever thread a signal comes, restore the released frames that thread holds."""
    sweep(None)


_SWEPT = (*sig.ALL_SIGNALS, *sig.STEP_SIGNALS)


def _refresh_sweeper() -> None:
    """Connect the sweeper while a released frame waits for its thread, else disconnect it."""
    global _sweeping
    with _sweeper_lock:  # decided and done as one step, so two threads cannot cross
        with _lock:
            wanted = any(f.released for stack in _frames.values() for f in stack)
        if wanted == _sweeping:
            return
        _sweeping = wanted
        for signal in _SWEPT:
            if wanted:
                signal.connect(_on_any_signal, weak=False)
            else:
                signal.disconnect(_on_any_signal)
    if wanted:
        logger.debug("rulechef_trace: a step span waits for its own thread to be restored")
