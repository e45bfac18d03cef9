"""The wrapper factory: bookkeeping around an untouched call of a rulechef method.

Every wrapper calls the original exactly once with the caller's arguments; its
exceptions propagate unchanged. A wrapper remembers the *generation* it was
made in: :func:`retire_all` (called on an uninstall that finds another
library's patch laid over a hook) bumps the generation, so a wrapper that
such a patch keeps alive passes calls straight through. Otherwise the
wrappers stay armed, and the next install sets the same objects again.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rulechef_trace._capture.state import RunState, fault, run_var

#: Marks "the class had no attribute of that name" where ``None`` would be a value.
ABSENT: Any = object()

_generation = 0


def generation() -> int:
    """The current wrapper generation; a wrapper made in an older one is inert."""
    return _generation


def retire_all() -> None:
    """Make every wrapper made so far pass calls straight through."""
    global _generation
    _generation += 1


@dataclass(frozen=True)
class Hook:
    """One rulechef method replaced while somebody listens."""

    owner: str  #: "module:Class" in rulechef, or "module" for a module-level function
    name: str
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
    params: tuple[str, ...]  #: parameters the wrapper relies on
    feeds: str  #: what the reader of a trace misses without it

    @property
    def where(self) -> str:
        """The class name, or the module for a module-level function."""
        return self.owner.rpartition(":")[2]


Before = Callable[[RunState, dict[str, Any]], Any]
After = Callable[[RunState, dict[str, Any], Any, Any], None]
#: Says which step a hooked call is (see ``rulechef02/llm_steps.py``), or ``None``.
StepOf = Callable[[RunState, dict[str, Any]], Any]
#: Opens the step a ``StepOf`` named; returns what the closer needs.
StepOpener = Callable[[RunState, Any], Any]
StepCloser = Callable[[RunState, Any], None]


def around(
    what: str,
    *,
    before: Before | None = None,
    after: After | None = None,
    bind: bool = True,
    step: tuple[StepOf, StepOpener, StepCloser] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a wrapper that runs bookkeeping around an untouched call of the original.

    The bookkeeping sees the call's arguments by name (``self`` included) and,
    after the call, its result; it runs only inside a traced run and only
    under :func:`guard`. The original is called exactly once with exactly
    the caller's arguments, and its exceptions propagate unchanged. With
    ``bind=False`` the bookkeeping gets no arguments (for hot, argument-blind hooks).
    With ``step=(step_of, open, close)`` the call runs inside the step that
    ``step_of`` names (its LLM calls are attributed to it); the step is closed
    however the call ends, before ``after`` runs.
    """

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        binder = binder_of(original)
        born = _generation

        @functools.wraps(original)
        def hooked(*args: Any, **kwargs: Any) -> Any:
            state = run_var.get()
            if state is None or born != _generation:
                return original(*args, **kwargs)
            # guard() inlined: these run around every hooked call.
            arguments: dict[str, Any] = {}
            if bind:
                try:
                    arguments = binder(args, kwargs) or {}
                except Exception:
                    fault(state, what)
            context = None
            if before is not None:
                try:
                    context = before(state, arguments)
                except Exception:
                    fault(state, what)
            if step is None:
                result = original(*args, **kwargs)
            else:
                result = _in_step(state, what, step, arguments, original, args, kwargs)
            if after is not None:
                try:
                    after(state, arguments, result, context)
                except Exception:
                    fault(state, what)
            return result

        return hooked

    return wrap


def _in_step(
    state: RunState,
    what: str,
    step: tuple[StepOf, StepOpener, StepCloser],
    arguments: dict[str, Any],
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call the original inside the step ``step`` names; close it however the call ends."""
    step_of, opener, closer = step
    opened = None
    try:
        spec = step_of(state, arguments)
        if spec is not None:
            opened = opener(state, spec)
    except Exception:
        fault(state, what)
    try:
        return original(*args, **kwargs)
    finally:
        if opened is not None:
            try:
                closer(state, opened)
            except Exception:
                fault(state, what)


def bind_all(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


# Every record_trace() installs the hooks anew; rulechef's functions do not change
# between installs, so their signatures are worked out once.
_signatures: weakref.WeakKeyDictionary[Callable[..., Any], inspect.Signature] = (
    weakref.WeakKeyDictionary()
)


def signature_of(func: Callable[..., Any]) -> inspect.Signature:
    """Return ``inspect.signature(func)``, computed once per function object."""
    try:
        return _signatures[func]
    except (KeyError, TypeError):
        signature = inspect.signature(func)
    with contextlib.suppress(TypeError):  # not weakly referable: not cached
        _signatures[func] = signature
    return signature


_PLAIN_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

Binder = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]

# function -> its ordered binder (what ``bind_all`` gives, in the same order).
_ordered_binders: weakref.WeakKeyDictionary[Callable[..., Any], Binder] = (
    weakref.WeakKeyDictionary()
)


def ordered_binder_of(func: Callable[..., Any]) -> Binder:
    """``make_ordered_binder(signature_of(func))``, worked out once per function."""
    try:
        return _ordered_binders[func]
    except (KeyError, TypeError):
        binder = make_ordered_binder(signature_of(func))
    with contextlib.suppress(TypeError):  # not weakly referable: not cached
        _ordered_binders[func] = binder
    return binder


def make_ordered_binder(signature: inspect.Signature) -> Binder:
    """Precompute :func:`bind_all` for ``signature``: the same names, values and order.

    The run wrappers bind a whole call once per run (its parameters enter
    ``run_started`` in the signature's order); ``Signature.bind`` with
    ``apply_defaults`` costs some 30 microseconds. Signatures with other than
    positional-or-keyword parameters, and calls the shortcut cannot bind
    (too many arguments, unknown or repeated names, a required one missing),
    take the full ``bind``, which also raises what it raises.
    """
    params = list(signature.parameters.values())
    if not all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return functools.partial(bind_all, signature)
    names = tuple(p.name for p in params)
    defaults = tuple(p.default for p in params)
    known = frozenset(names)
    empty = inspect.Parameter.empty

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        given = len(args)
        if (
            given > len(names)
            or not known.issuperset(kwargs)
            or not kwargs.keys().isdisjoint(names[:given])  # a name given twice
        ):
            return bind_all(signature, args, kwargs)
        arguments = dict(zip(names, args, strict=False))
        for name, default in zip(names[given:], defaults[given:], strict=True):
            if name in kwargs:
                arguments[name] = kwargs[name]
            elif default is not empty:
                arguments[name] = default
            else:
                return bind_all(signature, args, kwargs)  # a required argument is missing
        return arguments

    return bind


# function -> its binder; bound methods (a coordinator's, wrapped per run) by their
# function, whose signature without ``self`` they share.
_binders: weakref.WeakKeyDictionary[Callable[..., Any], Any] = weakref.WeakKeyDictionary()
_bound_binders: weakref.WeakKeyDictionary[Callable[..., Any], Any] = weakref.WeakKeyDictionary()


def binder_of(
    func: Callable[..., Any],
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """``make_binder(signature_of(func))``, worked out once per function."""
    bound = inspect.ismethod(func)
    key = func.__func__ if bound else func  # type: ignore[attr-defined]
    table = _bound_binders if bound else _binders
    try:
        return table[key]  # type: ignore[no-any-return]
    except (KeyError, TypeError):
        binder = make_binder(signature_of(func))
    with contextlib.suppress(TypeError):  # not weakly referable: not cached
        table[key] = binder
    return binder


def make_binder(
    signature: inspect.Signature,
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """Precompute how a call's arguments map to names (what ``bind`` + defaults give).

    ``Signature.bind`` costs tens of microseconds a call; hooked methods are
    called dozens of times a run, so the names, positions and defaults are
    worked out once per wrapper. Signatures with ``*args``/``**kwargs`` or
    positional-only parameters, and calls with more positional arguments than
    names, take the full ``bind``.
    """
    params = list(signature.parameters.values())
    if not all(p.kind in _PLAIN_KINDS for p in params):
        return functools.partial(bind_all, signature)
    positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    names = frozenset(p.name for p in params)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(positional) or not names.issuperset(kwargs):
            return bind_all(signature, args, kwargs)
        arguments = dict(defaults)
        arguments.update(zip(positional, args, strict=False))
        arguments.update(kwargs)
        return arguments

    return bind
