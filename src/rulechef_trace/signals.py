"""Blinker signals emitted while rulechef learns, and their error-isolating send.

Every signal is sent with the ``RuleChef`` instance as sender, so a receiver can
subscribe to one chef the blinker way::

    from rulechef_trace import patch_decided

    @patch_decided.connect_via(chef)
    def on_patch(sender, **event):
        log.info("patch %s: %s", event["iteration"], event["outcome"])

Each payload carries ``run_id``, ``seq`` (1, 2, 3, ... within the run) and
``t`` (seconds since the run started) plus the signal's own fields: rule ids,
rule names, counts, flags and metrics. Never input text, expected outputs,
rule patterns, prompts or LLM responses. docs/signals.md lists every field.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from blinker import ANY, NamedSignal, Namespace

from rulechef_trace.events import CATALOGUE
from rulechef_trace.events import STEP_SIGNALS as _STEP_DECLARED

__all__ = [
    "ALL_SIGNALS",
    "STEP_SIGNALS",
    "Subscription",
    "audit_applied",
    "critiqued",
    "finalized",
    "guided",
    "is_strict",
    "iteration_evaluated",
    "llm_called",
    "namespace",
    "patch_decided",
    "pruned",
    "refined",
    "rules_edited",
    "run_started",
    "send_safely",
    "step_ended",
    "step_started",
    "strict_mode",
    "synthesized",
]

logger = logging.getLogger("rulechef_trace")

namespace = Namespace()

#: Every signal of the package, in the order a run emits them first (events.CATALOGUE).
ALL_SIGNALS: tuple[NamedSignal, ...] = tuple(namespace.signal(e.name, doc=e.doc) for e in CATALOGUE)

#: The live-only step signals (events.STEP_SIGNALS): sent, never recorded.
STEP_SIGNALS: tuple[NamedSignal, ...] = tuple(
    namespace.signal(name, doc=doc) for name, doc in _STEP_DECLARED
)

# The public names; ``namespace.signal`` returns the signal made above.
run_started = namespace.signal("run_started")
llm_called = namespace.signal("llm_called")
step_started = namespace.signal("step_started")
step_ended = namespace.signal("step_ended")
synthesized = namespace.signal("synthesized")
iteration_evaluated = namespace.signal("iteration_evaluated")
critiqued = namespace.signal("critiqued")
guided = namespace.signal("guided")
patch_decided = namespace.signal("patch_decided")
audit_applied = namespace.signal("audit_applied")
pruned = namespace.signal("pruned")
refined = namespace.signal("refined")
rules_edited = namespace.signal("rules_edited")
finalized = namespace.signal("finalized")

_STRICT_ENV = "RULECHEF_TRACE_STRICT"
_strict: ContextVar[bool | None] = ContextVar("rulechef_trace_strict", default=None)


def is_strict() -> bool:
    """Tell whether errors in receivers and hooks are re-raised instead of logged.

    Returns:
        The value set by the innermost :func:`strict_mode` block of this context,
        else whether the ``RULECHEF_TRACE_STRICT`` environment variable is set to
        a true value (``1``, ``true``, ``yes``).
    """
    value = _strict.get()
    if value is not None:
        return value
    return os.environ.get(_STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@contextmanager
def strict_mode(enabled: bool = True) -> Iterator[None]:
    """Re-raise receiver and hook errors inside the block (for tests).

    Args:
        enabled: True to re-raise, False to force the default log-and-go-on
            behaviour even when the environment variable is set.
    """
    token = _strict.set(enabled)
    try:
        yield
    finally:
        _strict.reset(token)


def send_safely(signal: NamedSignal, sender: Any, payload: dict[str, Any]) -> int:
    """Call every receiver of ``signal`` for ``sender``; one failing never stops the rest.

    blinker's own ``send`` lets a receiver's exception escape into the sender
    and skips the receivers after it. Here the sender is the user's learning
    run, so each exception is logged and counted instead. The package's own
    subscribers (recorders, the OTel bridge) are called first, so no user
    receiver can change a payload in place before they copy it.

    Args:
        signal: The signal to send.
        sender: The ``RuleChef`` the event belongs to.
        payload: Keyword arguments for the receivers.

    Returns:
        How many receivers raised.

    Raises:
        Exception: The receiver's own exception, in strict mode only.
    """
    if signal.is_muted:
        return 0
    errors = 0
    # Taken before the subscribers run: a receiver connected while they run gets the next
    # event, never this one (a recorder alone with it has kept this payload unserialised).
    receivers = list(signal.receivers_for(sender)) if signal.receivers else []
    own = subscriptions
    if own and signal in _EVENT_SIGNALS:
        name = signal.name
        _delivery.alone = not receivers and len(own) == 1
        try:
            for subscription in own:
                if subscription.sender is ANY or subscription.sender is sender:
                    try:
                        subscription.handler(name, sender, **payload)
                    except Exception:
                        errors += 1
                        _receiver_failed(subscription.handler, name)
        finally:
            _delivery.alone = False
    for receiver in receivers:
        try:
            result = receiver(sender, **payload)
            if result is not None and inspect.iscoroutine(result):
                result.close()
                raise TypeError("async receivers are not supported; connect a plain function")
        except Exception:
            errors += 1
            _receiver_failed(receiver, signal.name)
    return errors


_delivery = threading.local()


def delivered_alone() -> bool:
    """Whether the event this thread is delivering reaches no receiver but the one running.

    True only inside a subscription's handler called by :func:`send_safely`
    when that subscription is the only one and the signal has no blinker
    receiver for the sender (as taken before the handler ran): nobody else
    can then see, or change, the payload it was given.
    """
    return bool(getattr(_delivery, "alone", False))


def _receiver_failed(receiver: Any, name: str) -> None:
    """Log a receiver's error (call inside its ``except``); re-raise it in strict mode."""
    if is_strict():
        raise  # the exception being handled
    logger.exception(
        "rulechef_trace: receiver %r of signal %r raised; the run goes on", receiver, name
    )


#: The chefs some Subscription follows by name (so a call made on one of their
#: parts, a learner called directly, can be told as that chef's run).
_followed: weakref.WeakSet[Any] = weakref.WeakSet()


def followed() -> list[Any]:
    """The senders (chefs) followed by a subscription made for them, alive ones only."""
    return list(_followed)


#: The package's own subscribers, connected, oldest first. Not blinker receivers: an
#: event reaches them with one loop instead of blinker's per-sender lookup, and
#: connecting one is a tuple swap instead of a dozen connects (each announced).
subscriptions: tuple[Subscription, ...] = ()
_subscriptions_lock = threading.Lock()
_EVENT_SIGNALS = frozenset(ALL_SIGNALS)

#: Called after a :class:`Subscription` connects or disconnects; the capture sets it
#: (to install its hooks exactly while somebody listens).
on_subscriptions_changed: Callable[[], None] | None = None


class Subscription:
    """One handler subscribed to every event signal of the package.

    The handler is called as ``handler(signal_name, sender, **payload)``, before
    any blinker receiver of the signal. Connecting and disconnecting are
    idempotent; a connected subscription is held strongly.

    Args:
        handler: What every event is delivered to.
        sender: The ``RuleChef`` to follow; None follows every chef.
    """

    def __init__(self, handler: Callable[..., None], sender: Any = None):
        self.handler = handler
        self.sender = ANY if sender is None else sender
        self.connected = False

    def connect(self) -> None:
        """Start receiving every event (of ``sender``)."""
        global subscriptions
        with _subscriptions_lock:
            if self.connected:
                return
            if self.sender is not ANY:
                with contextlib.suppress(TypeError):  # not weakly referable: not findable
                    _followed.add(self.sender)
            subscriptions = (*subscriptions, self)
            self.connected = True
        _changed()

    def disconnect(self) -> None:
        """Stop receiving events."""
        global subscriptions
        with _subscriptions_lock:
            if not self.connected:
                return
            subscriptions = tuple(s for s in subscriptions if s is not self)
            self.connected = False
        _changed()


def _changed() -> None:
    callback = on_subscriptions_changed
    if callback is not None:
        callback()
