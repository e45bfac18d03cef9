"""Install and uninstall: the hooks exist exactly while somebody listens.

Connecting the first receiver to any rulechef_trace signal replaces the
methods of the hook table on their classes; when the last receiver goes (or
is garbage-collected), the exact original objects are put back, so an
unobserved rulechef is the shipped one, tested by identity.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal

from rulechef_trace import signals as sig
from rulechef_trace._capture.rulechef02 import SUPPORTED, rulechef_version, supported
from rulechef_trace._capture.state import warn_once
from rulechef_trace._capture.wrappers import ABSENT, Hook, generation, retire_all, signature_of

#: Connecting to any of these installs the hooks: the trace events and the step signals.
_WATCHED = (*sig.ALL_SIGNALS, *sig.STEP_SIGNALS)

_lock = threading.RLock()


# (class, name) -> the exact object found in the class __dict__ (or ABSENT)
#: What a hook is found on: a class, or a module for a module-level function.
Owner = type | types.ModuleType

_originals: dict[tuple[Owner, str], Any] = {}


# (class, name) -> the object we set there
_installed: dict[tuple[Owner, str], Any] = {}


def _hook_table() -> tuple[Hook, ...]:
    """The hooks for the installed rulechef (imported late: the table imports this module)."""
    from rulechef_trace._capture.rulechef02.hooks import HOOKS

    return HOOKS


def installed() -> bool:
    """Tell whether rulechef's methods are currently wrapped."""
    return bool(_originals)


# hook -> (class, the object found for it); every record_trace() installs anew, and
# importing, getattr_static and signatures cost more than the rest of an install.
_resolved: dict[Hook, tuple[Owner, Any]] = {}


def _resolve(hook: Hook) -> tuple[Owner, Any] | None:
    """Find the hooked class and method, or None when this rulechef lacks them."""
    known = _resolved.get(hook)
    if known is not None and known[0].__dict__.get(hook.name, ABSENT) is known[1]:
        return known
    found = _look_up(hook)
    if found is not None and found[0].__dict__.get(hook.name, ABSENT) is found[1]:
        _resolved[hook] = found
    return found


def _look_up(hook: Hook) -> tuple[Owner, Any] | None:
    module_name, _, class_name = hook.owner.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name) if class_name else module
        method = inspect.getattr_static(cls, hook.name)
    except (ImportError, AttributeError):
        return None
    func = method.__func__ if isinstance(method, staticmethod) else method
    if not callable(func):
        return None
    try:
        names = set(signature_of(func).parameters)
    except (TypeError, ValueError):
        return None
    if not set(hook.params) <= names:
        return None
    return cls, method


# Wrappers are recognised by identity (functools.wraps copies attributes, so a
# marker attribute would also tag other libraries' wrappers of ours).
_ours: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
    weakref.WeakKeyDictionary()
)


def _install() -> None:
    version = rulechef_version()
    if not supported(version):
        warn_once(
            ("version", str(version)),
            "rulechef_trace: rulechef %s is outside the tested range %s; hooks whose "
            "methods moved are skipped, and their events will be missing",
            version,
            SUPPORTED,
        )
    missing = []
    for hook in _hook_table():
        found = _resolve(hook)
        if found is None:
            missing.append(hook)
            continue
        cls, method = found
        key = (cls, hook.name)
        if key not in _originals:
            _install_one(cls, hook, method)
    if missing:
        _warn_missing(missing)


# (class, name) -> (the original it wraps, the object set, its wrapper's generation).
# Every record_trace() installs anew; a wrapper that an uninstall left armed (no foreign
# patch seen) is set again instead of being made again.
_made: dict[tuple[Owner, str], tuple[Any, Any, int]] = {}


def _install_one(cls: Owner, hook: Hook, method: Any) -> None:
    is_static = isinstance(method, staticmethod)
    func = method.__func__ if is_static else method
    original = cls.__dict__.get(hook.name, ABSENT)
    if func in _ours:
        # A wrapper of ours that another patch put back after we left: unwrap, never nest.
        func = _ours[func]
        original = staticmethod(func) if is_static else func
    key = (cls, hook.name)
    made = _made.get(key)
    if made is not None and made[0] is func and made[2] == generation():
        replacement = made[1]
    else:
        wrapper = hook.wrap(func)
        _ours[wrapper] = func
        replacement = staticmethod(wrapper) if is_static else wrapper
        _made[key] = (func, replacement, generation())
    _originals[key] = original
    _installed[key] = replacement
    setattr(cls, hook.name, replacement)


def _warn_missing(missing: list[Hook]) -> None:
    warn_once(
        tuple(f"{h.owner}.{h.name}" for h in missing),
        "rulechef_trace: rulechef %s lacks (or changed) %s; these events will be missing: %s. "
        "Everything else is traced.",
        rulechef_version(),
        ", ".join(f"{h.where}.{h.name}" for h in missing),
        "; ".join(h.feeds for h in missing),
    )


def _uninstall() -> None:
    foreign = False
    for (cls, name), original in _originals.items():
        if cls.__dict__.get(name) is not _installed[(cls, name)]:
            # Somebody patched over our wrapper; removing theirs would break them.
            foreign = True
            warn_once(
                ("foreign", _name_of(cls), name),
                "rulechef_trace: %s.%s was patched again while traced; leaving that patch "
                "in place (our wrapper inside it passes calls straight through)",
                _name_of(cls),
                name,
            )
            continue
        if original is ABSENT:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()
    _installed.clear()
    if foreign:
        # Every wrapper made so far turns inert, also the one that patch keeps alive. Without
        # one, the wrappers stay armed for the next install: outside a traced run they pass
        # calls straight through anyway, and each wraps the original, never another wrapper.
        retire_all()
        _made.clear()


def _name_of(owner: Any) -> str:
    return str(getattr(owner, "__qualname__", None) or owner.__name__)


def _live_receivers(signal: NamedSignal) -> int:
    """Count receivers that would still be called for some sender."""
    count = 0
    by_receiver = getattr(signal, "_by_receiver", None)
    for receiver_id, receiver in list(signal.receivers.items()):
        if isinstance(receiver, weakref.ref) and receiver() is None:
            continue
        # blinker keeps a receiver disconnected from its only sender in
        # ``receivers``; it will never be called, so it does not count.
        if by_receiver is not None and not by_receiver.get(receiver_id):
            continue
        count += 1
    return count


def _listening() -> bool:
    """A subscription of the package, or a live blinker receiver of any watched signal."""
    return bool(sig.subscriptions) or any(s.receivers and _live_receivers(s) for s in _WATCHED)


def wanted() -> bool:
    """Whether anybody listens; uninstalls lazily when receivers vanished silently."""
    if _listening():
        return True
    refresh()
    return False


def refresh() -> None:
    """Install or remove the hooks so they exist exactly while somebody listens.

    Called automatically whenever a receiver connects to or disconnects from a
    rulechef_trace signal, and when a weakly held receiver is collected.
    """
    with _lock:
        listening = _listening()
        if listening and not _originals:
            _install()
        elif not listening and _originals:
            _uninstall()


def _on_connected(signal: NamedSignal, **kwargs: Any) -> None:
    receiver = kwargs.get("receiver")
    if kwargs.get("weak", True) and receiver is not None:
        _watch(getattr(receiver, "__self__", receiver))
    if not _originals:  # a connect can only start listening; installed already: nothing to do
        refresh()


# id(receiver or its owner) -> its finalizer; ids, since receivers need not be hashable.
_watched: dict[int, Any] = {}


def _watch(target: Any) -> None:
    """Refresh when a weakly held receiver is collected: blinker tells nobody."""
    key = id(target)
    known = _watched.get(key)
    if known is not None and known.alive:
        return
    try:
        finalizer = weakref.finalize(target, _collected, key)
    except TypeError:
        return  # not weakly referenceable: blinker holds it strongly anyway
    finalizer.atexit = False
    _watched[key] = finalizer


def _collected(key: int) -> None:
    _watched.pop(key, None)
    refresh()


def _on_disconnected(signal: NamedSignal, **kwargs: Any) -> None:
    refresh()


sig.on_subscriptions_changed = refresh
for _signal in _WATCHED:
    _signal.receiver_connected.connect(_on_connected, weak=False)
    _signal.receiver_disconnected.connect(_on_disconnected, weak=False)
