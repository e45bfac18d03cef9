"""The state of a traced run and the one way events leave it.

A :class:`RunState` lives in a ``ContextVar`` for the duration of one run, so
runs in two threads (or two asyncio tasks) never see each other's state.
:func:`emit` numbers an event and sends it; :func:`emit_change` also works
out what it did to the working rule set. :func:`guard` is the fence around
every piece of the package's own bookkeeping: it logs and counts a fault and
never lets it reach the user's run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from blinker import NamedSignal

from rulechef_trace import signals as sig

logger = logging.getLogger("rulechef_trace")


# ---------------------------------------------------------------------------
# Per-run state
# ---------------------------------------------------------------------------


@dataclass
class RunState:
    """What the hooks know about one run in progress (one per thread/context)."""

    chef: Any
    kind: str
    run_id: str = field(default_factory=lambda: new_run_id())
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: utc_now())
    working: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    status: str = "completed"
    phase: str = "setup"
    synth_called: bool = False
    synth_mode: str | None = None
    iteration: int = 0
    max_iterations: int = 0
    stop_hint: str | None = None
    #: Metrics, never rulechef ``EvalResult`` objects: those hold every failing
    #: document, and keeping them would make a run's memory grow with its data.
    last_select: dict[str, Any] | None = None
    #: The examples the refinement measures on: ``dev`` with an active holdout, else ``all``.
    metric_split: str = "all"
    failures: dict[str, Any] | None = None
    pending_patch: dict[str, Any] | None = None
    pending_audit: Any = None
    phase_evals: list[dict[str, Any] | None] = field(default_factory=list)
    snapshots: list[tuple[frozenset[str], int, int]] = field(default_factory=list)
    #: Rule ids -> (iteration, metrics) of the refinement iteration that last measured them.
    measured: dict[frozenset[str], tuple[int, dict[str, Any] | None]] = field(default_factory=dict)
    hook_errors: int = 0
    receiver_errors: int = 0
    result: Any = None
    baseline_pending: bool = False
    loaded: list[str] = field(default_factory=list)
    #: The dev holdout of the refinement, as rulechef's own split made it (refined.holdout).
    holdout: dict[str, Any] | None = None
    #: True from refinement's start until rulechef's split of it was seen.
    split_pending: bool = False
    #: The rules a run ends with when they are not the chef's (a direct refinement).
    final_rules: list[Any] | None = None
    #: The rule objects seen in this run by id (their facts are read when they move).
    rules_seen: dict[str, Any] = field(default_factory=dict)
    #: (rule, with counters) -> the rule's plain facts; set by the capture of the rulechef line.
    describe_rule: Callable[[Any, bool], dict[str, Any]] | None = None
    #: The dataset's classes as rulechef listed them (``_get_classes``), once known.
    classes: frozenset[str] | None = None
    #: Every LLM call of the run, in order (``llm_called`` payloads).
    llm_calls: list[Any] = field(default_factory=list)
    #: The calls of the last finished step of each kind ("patch", "guide"...).
    llm_by_step: dict[str, list[Any]] = field(default_factory=dict)
    #: What rulechef's parser made of the last answer: rules in it, rules kept.
    answer: tuple[int, int] | None = None
    #: Classes whose per-class answer reached rulechef's rule parser.
    answered: set[str] = field(default_factory=set)
    #: Where this run's step contexts send their calls (set when the capture starts).
    llm_sink: Any = None
    #: Clients observed for this run, each to be released once at its end.
    llm_clients: list[Any] = field(default_factory=list)
    #: The step contexts open in this run, innermost last (their undo tokens).
    open_steps: list[Any] = field(default_factory=list)


#: The run in progress in this context (``None`` outside traced runs).
run_var: ContextVar[RunState | None] = ContextVar("rulechef_trace_run", default=None)


def current_run() -> RunState | None:
    """Return the state of the run in progress in this context, if it is traced."""
    return run_var.get()


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the millisecond: ``2026-12-02T21:52:46.991Z``."""
    return utc_stamp(time.time_ns())


def utc_stamp(nanoseconds: int) -> str:
    """A time (nanoseconds since the epoch, not negative) as :func:`utc_now` writes it."""
    # time.strftime, not datetime.isoformat: a third of the cost, the same text.
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def new_run_id() -> str:
    """A random UUID (version 4) as 32 hex digits, what ``uuid.uuid4().hex`` gives."""
    # Built from the bytes directly: uuid.UUID's checks cost more than the random bytes.
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


def unique(ids: Iterable[str]) -> list[str]:
    # rulechef can hold a rule twice; the trace treats rule sets as sets.
    return list(dict.fromkeys(ids))


def remember(state: RunState, rules: Iterable[Any]) -> None:
    """Keep the names (and the objects, for their facts) of rules the run has seen."""
    for r in rules:
        state.names.setdefault(r.id, r.name)
        state.rules_seen.setdefault(r.id, r)


# ---------------------------------------------------------------------------
# Emitting
# ---------------------------------------------------------------------------


def emit(state: RunState, signal: NamedSignal, fields: Mapping[str, Any]) -> None:
    """Number the event and send it to the receivers of this chef."""
    state.seq += 1
    if not (sig.subscriptions or signal.receivers):
        return
    payload = {
        "type": signal.name,  # a receiver of ALL_SIGNALS can tell which signal fired
        "run_id": state.run_id,
        "seq": state.seq,
        "t": round(time.perf_counter() - state.started, 6),
        **fields,
    }
    state.receiver_errors += sig.send_safely(signal, state.chef, payload)


def emit_change(
    state: RunState, signal: NamedSignal, after: list[str], fields: dict[str, Any]
) -> None:
    """Emit an event that moves the working rule set to ``after``."""
    after = unique(after)
    before = set(state.working)
    after_set = set(after)
    added = [rid for rid in after if rid not in before]
    removed = [rid for rid in state.working if rid not in after_set]
    state.working = list(after)
    fields = {
        **fields,
        "added": added,
        "removed": removed,
        "rules_after": list(after),
        "rule_names": names_for(state, added, fields),
    }
    if state.describe_rule is not None and added:
        born = {
            rid: state.describe_rule(state.rules_seen[rid], False)
            for rid in added
            if rid in state.rules_seen
        }
        fields["rule_facts"] = {**born, **fields.get("rule_facts", {})}
    emit(state, signal, fields)
    state.snapshots.append((frozenset(after), state.seq, state.iteration))


#: Payload keys that hold no rule id worth a name (metrics, counts, the whole rule set).
_NO_IDS = frozenset(
    {
        "rules_after",
        "metrics",
        "metrics_before",
        "metrics_after",
        "failures",
        "data",
        "per_label",
        "llm",
        "llm_error",
        "rule_facts",
        "stats",
        "error",
        "ensemble",
    }
)


def names_for(state: RunState, added: list[str], fields: dict[str, Any]) -> dict[str, str]:
    """Names of every known rule id an event mentions (added, proposed, merged...)."""
    names = state.names
    found = {rid: names[rid] for rid in added if rid in names}
    stack: list[Any] = [v for k, v in fields.items() if k not in _NO_IDS]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if value in names:
                found.setdefault(value, names[value])
        elif isinstance(value, dict):
            stack.extend(value.values())
            stack.extend(k for k in value if isinstance(k, str) and k in names)
        elif isinstance(value, list):
            stack.extend(value)
    return found


def guard(state: RunState | None, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run the package's own bookkeeping; log and count its errors, never raise."""
    try:
        return fn(*args)
    except Exception:
        fault(state, what)
        return None


def fault(state: RunState | None, what: str) -> None:
    """What :func:`guard` does with an error; call it only inside an ``except`` block.

    The wrappers' hot path inlines ``guard`` (one call less per piece of
    bookkeeping) and hands the error here.

    Raises:
        Exception: The error being handled, in strict mode only.
    """
    if state is not None:
        state.hook_errors += 1
    if sig.is_strict():
        raise  # the exception the caller is handling
    logger.exception("rulechef_trace: hook %s failed; the run goes on untouched", what)


# ---------------------------------------------------------------------------
def describe_error(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return {"type": name, "message": str(error)[:500]}


_warned: set[tuple[str, ...]] = set()


def warn_once(key: tuple[str, ...], message: str, *args: Any) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message, *args)
