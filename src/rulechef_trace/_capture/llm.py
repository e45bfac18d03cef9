"""Capture of ``client.chat.completions.create`` calls: facts, never content.

A client is observed by setting an instance attribute ``create`` on its
completions resource; uninstall deletes it again, so an unobserved client is
exactly as shipped (its ``create`` is the class's function). Installs are
refcounted per client, so two runs sharing one client can overlap. Each call is
attributed to the step current in the calling context (a ``ContextVar``), so a
client shared by chefs in two threads reports each call to its own run.

Nothing read from a call is content: the model names, timings, finish reason,
the length of the answer, the error's class and a short message, and token
counts. Prompts, messages and answer text are never kept.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

logger = logging.getLogger("rulechef_trace")

STEPS = ("synthesis", "per_class", "patch", "guide", "critic", "audit", "other")
_MESSAGE_LIMIT = 200
_USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")


class LLMError(TypedDict):
    """A failed call's error: qualified class name and a short message."""

    type: str
    message: str


class LLMUsage(TypedDict):
    """Token counts as reported; ``None`` where the provider reported nothing."""

    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None


class LLMCall(TypedDict):
    """The facts of one ``chat.completions.create`` call (the ``llm_called`` payload)."""

    step: str
    iteration: int | None
    label: str | None
    stage: str | None
    model: str | None
    response_model: str | None
    duration_s: float
    finish_reason: str | None
    response_chars: int | None
    status: str
    error: LLMError | None
    usage: LLMUsage


@dataclass
class StepContext:
    """Where a call belongs: the run's sink and the step current when it was made."""

    sink: Callable[[LLMCall], None]
    step: str = "other"
    iteration: int | None = None
    label: str | None = None
    stage: str | None = None
    #: The calls made in this step so far, in order.
    calls: list[LLMCall] = field(default_factory=list)


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "rulechef_trace_llm_step", default=None
)


def enter_step(
    sink: Callable[[LLMCall], None],
    step: str = "other",
    *,
    iteration: int | None = None,
    label: str | None = None,
    stage: str | None = None,
) -> tuple[StepContext, contextvars.Token[StepContext | None]]:
    """Make ``step`` current in this context; undo with :func:`exit_step` and the token.

    Raises:
        ValueError: ``step`` is not one of :data:`STEPS`.
    """
    if step not in STEPS:
        raise ValueError(f"unknown LLM step {step!r}; expected one of {', '.join(STEPS)}")
    ctx = StepContext(sink, step, iteration, label, stage)
    return ctx, _current.set(ctx)


def exit_step(token: contextvars.Token[StepContext | None]) -> None:
    """Restore the step that was current before :func:`enter_step`."""
    _current.reset(token)


@contextlib.contextmanager
def step_context(
    sink: Callable[[LLMCall], None],
    step: str = "other",
    *,
    iteration: int | None = None,
    label: str | None = None,
    stage: str | None = None,
) -> Iterator[StepContext]:
    """Attribute the calls made inside the block to ``step`` of the run behind ``sink``."""
    ctx, token = enter_step(sink, step, iteration=iteration, label=label, stage=stage)
    try:
        yield ctx
    finally:
        exit_step(token)


def current_step() -> StepContext | None:
    """The step context of the calling thread or task, if any."""
    return _current.get()


# --- installing on clients -------------------------------------------------------------

_lock = threading.Lock()
# id(completions resource) -> (resource, refcount, its own "create" attribute or _NONE)
_installed: dict[int, tuple[Any, int, Any]] = {}
_NONE = object()
_warned: set[type] = set()


def _completions_of(client: Any) -> Any | None:
    chat = getattr(client, "chat", None)
    return getattr(chat, "completions", None) if chat is not None else None


def install(client: Any) -> bool:
    """Observe ``client``'s ``chat.completions.create``; ``False`` (one warning) if it cannot be.

    Args:
        client: an OpenAI-compatible client (``openai.OpenAI`` or a look-alike).

    Returns:
        Whether the client is now observed (each ``True`` needs one :func:`uninstall`).
    """
    try:
        resource = _completions_of(client)
        original = getattr(resource, "create", None) if resource is not None else None
    except Exception:  # a client whose attributes raise is left alone
        resource, original = None, None
    if resource is None or not callable(original):
        _warn_once(client, "it has no chat.completions.create")
        return False
    with _lock:
        entry = _installed.get(id(resource))
        if entry is not None and entry[0] is resource:
            _installed[id(resource)] = (resource, entry[1] + 1, entry[2])
            return True
        # A client may hold its own ``create`` (a test double, another library's
        # patch): it is kept and put back, never deleted.
        own = getattr(resource, "__dict__", {}).get("create", _NONE)
        try:
            resource.create = _wrap(original)
        except Exception:  # frozen, slotted or proxy objects
            _warn_once(client, "its completions resource does not accept an attribute")
            return False
        _installed[id(resource)] = (resource, 1, own)
    return True


def uninstall(client: Any) -> None:
    """Drop one :func:`install` of ``client``; the last one restores it exactly."""
    resource = _completions_of(client)
    with _lock:
        entry = _installed.get(id(resource))
        if entry is None or entry[0] is not resource:
            return
        if entry[1] > 1:
            _installed[id(resource)] = (resource, entry[1] - 1, entry[2])
            return
        del _installed[id(resource)]
        with contextlib.suppress(AttributeError):
            if entry[2] is _NONE:
                del resource.create
            else:
                resource.create = entry[2]


def is_installed(client: Any) -> bool:
    """Whether ``client`` is currently observed."""
    resource = _completions_of(client)
    entry = _installed.get(id(resource))
    return entry is not None and entry[0] is resource


def _warn_once(client: Any, why: str) -> None:
    kind = type(client)
    if kind in _warned:
        return
    _warned.add(kind)
    logger.warning(
        "rulechef-trace: LLM calls of a %s.%s are not traced: %s",
        kind.__module__,
        kind.__qualname__,
        why,
    )


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        ctx = _current.get()
        if ctx is None:  # a call outside any traced run: pass straight through
            return original(*args, **kwargs)
        started = time.perf_counter()
        try:
            response = original(*args, **kwargs)
        except BaseException as exc:
            _emit(ctx, call_facts(ctx, kwargs, None, exc, time.perf_counter() - started))
            raise
        _emit(ctx, call_facts(ctx, kwargs, response, None, time.perf_counter() - started))
        return response

    return create


def own_copy(call: LLMCall) -> LLMCall:
    """A copy sharing no dict with ``call``: receivers may change what they are sent."""
    copied: LLMCall = {**call, "usage": {**call["usage"]}}
    if call["error"] is not None:
        copied["error"] = {**call["error"]}
    return copied


def _emit(ctx: StepContext, call: LLMCall) -> None:
    try:
        ctx.calls.append(own_copy(call))
        ctx.sink(call)
    except Exception:  # a fault in the package never reaches the user's run
        logger.exception("rulechef-trace: recording an LLM call failed")


# --- the facts of a call ---------------------------------------------------------------


def call_facts(
    ctx: StepContext,
    kwargs: Mapping[str, Any],
    response: Any,
    error: BaseException | None,
    duration_s: float,
) -> LLMCall:
    """The content-free facts of one call, from its request kwargs and response or error."""
    model = kwargs.get("model")
    if error is None:
        response_model = getattr(response, "model", None)
        finish_reason, response_chars = _choice_facts(response)
        usage = getattr(response, "usage", None)
    else:
        response_model = finish_reason = response_chars = usage = None
    return {
        "step": ctx.step,
        "iteration": ctx.iteration,
        "label": ctx.label,
        "stage": ctx.stage,
        "model": model if isinstance(model, str) else None,
        "response_model": response_model if isinstance(response_model, str) else None,
        "duration_s": round(duration_s, 6),
        "finish_reason": finish_reason,
        "response_chars": response_chars,
        "status": "ok" if error is None else "error",
        "error": None if error is None else error_facts(error),
        "usage": usage_facts(usage),
    }


def error_facts(error: BaseException) -> LLMError:
    """The class name (module-qualified unless built in) and the message's first 200 characters."""
    kind = type(error)
    # The trace's one convention (run.error too): module-qualified unless built in.
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    try:
        message = " ".join(str(error).split())
    except Exception:  # an exception whose __str__ raises still has a class name
        message = ""
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 1] + "…"
    return {"type": name, "message": message}


def _choice_facts(response: Any) -> tuple[str | None, int | None]:
    choices = getattr(response, "choices", None)
    if not choices:
        return None, None
    first = choices[0]
    reason = getattr(first, "finish_reason", None)
    content = getattr(getattr(first, "message", None), "content", None)
    return (
        reason if isinstance(reason, str) else None,
        len(content) if isinstance(content, str) else None,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_facts(usage: Any) -> LLMUsage:
    """Token counts under OpenAI's names mapped to ours; ``None`` for what is missing."""
    if usage is None:
        return dict.fromkeys(_USAGE_KEYS)  # type: ignore[return-value]
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return {
        "input_tokens": _count(getattr(usage, "prompt_tokens", None)),
        "output_tokens": _count(getattr(usage, "completion_tokens", None)),
        "total_tokens": _count(getattr(usage, "total_tokens", None)),
        "cached_tokens": _count(getattr(prompt_details, "cached_tokens", None)),
        "reasoning_tokens": _count(getattr(completion_details, "reasoning_tokens", None)),
    }


# --- summaries and cost ----------------------------------------------------------------

Prices = Mapping[str, tuple[float, ...]]


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def step_summary(calls: list[LLMCall]) -> dict[str, Any]:
    """``{"calls", "errors", "input_tokens", "output_tokens", "duration_s"}`` of a step's calls."""
    return {
        "calls": len(calls),
        "errors": sum(1 for c in calls if c["status"] == "error"),
        "input_tokens": _sum([c["usage"]["input_tokens"] for c in calls]),
        "output_tokens": _sum([c["usage"]["output_tokens"] for c in calls]),
        "duration_s": round(sum(c["duration_s"] for c in calls), 6),
    }


def run_summary(
    calls: list[LLMCall], run_duration_s: float | None, prices: Prices | None = None
) -> dict[str, Any]:
    """A run's totals: the step summary plus cached tokens, LLM share of run time, cost."""
    summary = step_summary(calls)
    summary["cached_tokens"] = _sum([c["usage"]["cached_tokens"] for c in calls])
    summary["time_share"] = (
        round(summary["duration_s"] / run_duration_s, 4) if run_duration_s else None
    )
    summary["cost"] = run_cost(calls, prices)
    return summary


def call_cost(call: LLMCall, prices: Prices | None) -> float | None:
    """USD of one call, from USD per million (input, output[, cached input]) tokens.

    ``None`` when the model has no price or the provider reported no tokens; a
    failed call with no usage costs ``0.0`` only when its model is priced.
    """
    model = call["model"]
    if not prices or model is None or model not in prices:
        return None
    price = prices[model]
    usage = call["usage"]
    if call["status"] == "error" and usage["input_tokens"] is None:
        return 0.0
    if usage["input_tokens"] is None or usage["output_tokens"] is None:
        return None
    cached = usage["cached_tokens"] or 0
    cached_price = price[2] if len(price) > 2 else price[0]
    dollars = (
        (usage["input_tokens"] - cached) * price[0]
        + cached * cached_price
        + usage["output_tokens"] * price[1]
    ) / 1_000_000
    return round(dollars, 9)


def run_cost(calls: list[LLMCall], prices: Prices | None) -> float | None:
    """The sum of the calls' costs; ``None`` if any call's cost is unknown (never a guess)."""
    if not calls:
        return 0.0 if prices else None
    costs = [call_cost(c, prices) for c in calls]
    if any(c is None for c in costs):
        return None
    return round(sum(c for c in costs if c is not None), 9)


def validate_prices(prices: Mapping[str, Any] | None) -> dict[str, tuple[float, ...]] | None:
    """Check ``prices``: model -> (input, output[, cached input]) USD per million tokens.

    Raises:
        ValueError: with one line naming the first bad entry.
    """
    if prices is None:
        return None
    checked: dict[str, tuple[float, ...]] = {}
    for model, price in prices.items():
        numbers = tuple(price) if isinstance(price, (tuple, list)) else ()
        if (
            not isinstance(model, str)
            or len(numbers) not in (2, 3)
            or not all(isinstance(n, (int, float)) and n >= 0 for n in numbers)
        ):
            raise ValueError(
                f"prices[{model!r}] must be (input, output[, cached input]) USD per million "
                f"tokens, non-negative numbers; got {price!r}"
            )
        checked[model] = tuple(float(n) for n in numbers)
    return checked


@dataclass
class CallLog:
    """A run's calls in order, as a sink for :func:`step_context` (thread-safe append)."""

    calls: list[LLMCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, call: LLMCall) -> None:
        """Append one call."""
        with self._lock:
            self.calls.append(call)
