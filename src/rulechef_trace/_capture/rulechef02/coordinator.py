"""The chef's coordinator, patched on its own instance for the duration of a run.

The coordinator is an object the user may have made or subclassed, so it is
never patched on its class: the wrappers are set as instance attributes and
removed again (refcounted, for runs sharing one coordinator).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rulechef_trace._capture.rulechef02.audit import keep_audit
from rulechef_trace._capture.rulechef02.llm_steps import audit_step, critic_step, guide_step
from rulechef_trace._capture.rulechef02.refine import on_critique, on_guidance
from rulechef_trace._capture.state import warn_once
from rulechef_trace._capture.wrappers import ABSENT, around

COORDINATOR_HOOKS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "guide_refinement": around("guided", after=on_guidance, step=guide_step),
    "critique_rules": around("critiqued", after=on_critique, step=critic_step),
    "audit_rules": around("audit_applied", after=keep_audit, step=audit_step),
}


_coordinator_lock = threading.Lock()


# id(coordinator) -> (active runs, {name: instance attribute it had before or ABSENT})
_coordinator_patches: dict[int, tuple[int, dict[str, Any]]] = {}


def patch_coordinator(coordinator: Any) -> bool:
    if coordinator is None:
        return False
    with _coordinator_lock:
        key = id(coordinator)
        if key in _coordinator_patches:
            count, previous = _coordinator_patches[key]
            _coordinator_patches[key] = (count + 1, previous)
            return True
        own = getattr(coordinator, "__dict__", None)
        if own is None:
            warn_once(
                ("coordinator", type(coordinator).__qualname__),
                "rulechef_trace: coordinator %s has no instance dict; guided, critiqued "
                "and proposed audit actions will be missing",
                type(coordinator).__qualname__,
            )
            return False
        # Every wrapper is built before any is set, so a failure leaves nothing behind.
        wrappers = {
            name: wrap(method)
            for name, wrap in COORDINATOR_HOOKS.items()
            if callable(method := getattr(coordinator, name, None))
        }
        saved = {name: own.get(name, ABSENT) for name in wrappers}
        own.update(wrappers)
        _coordinator_patches[key] = (1, saved)
        return True


def unpatch_coordinator(coordinator: Any) -> None:
    with _coordinator_lock:
        key = id(coordinator)
        if key not in _coordinator_patches:
            return
        count, saved = _coordinator_patches[key]
        if count > 1:
            _coordinator_patches[key] = (count - 1, saved)
            return
        del _coordinator_patches[key]
        for name, previous in saved.items():
            if previous is ABSENT:
                coordinator.__dict__.pop(name, None)
            else:
                coordinator.__dict__[name] = previous
