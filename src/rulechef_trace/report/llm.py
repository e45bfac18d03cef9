"""What the readers say about LLM calls: a step's calls in a few words, a run's totals.

The capture puts an ``llm`` summary on each step event and on the run
(docs/signals.md, ``llm_called``); these functions word it the same way for
the story, the HTML report and ``history``/``diff``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from rulechef_trace.report.numbers import seconds, whole
from rulechef_trace.trace import Trace

__all__ = ["calls_line", "cost_text", "failure_text", "run_llm", "step_llm", "tokens_text"]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def tokens_text(summary: Mapping[str, Any]) -> str:
    """``1,240 → 310 tokens``, or ``tokens not reported`` when the provider gave none."""
    tokens_in, tokens_out = whole(summary.get("input_tokens")), whole(summary.get("output_tokens"))
    if tokens_in is None and tokens_out is None:
        return "tokens not reported"
    shown = [f"{n:,}" if n is not None else "?" for n in (tokens_in, tokens_out)]
    return f"{shown[0]} → {shown[1]} tokens"


def cost_text(cost: Any) -> str | None:
    """``$0.0123`` for a known cost, else ``None`` (a cost is never guessed)."""
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
    return None


def step_llm(event: Mapping[str, Any]) -> str:
    """A step's LLM facts, e.g. ``LLM: 1 call, 2.1s, 1,240 → 310 tokens``; empty if none."""
    summary = _mapping(event.get("llm"))
    calls = whole(summary.get("calls")) or 0
    if not calls:
        return ""
    failed = whole(summary.get("errors")) or 0
    plural = "call" if calls == 1 else "calls"
    errors = f" ({failed} failed)" if failed else ""
    took = seconds(summary.get("duration_s"))
    tokens = tokens_text(summary)
    # A provider (or a stand-in) that reports no tokens: say so once, in the header.
    shown = "" if tokens == "tokens not reported" else f", {tokens}"
    return f"LLM: {calls} {plural}{errors}, {took}{shown}"


def failure_text(error: Any) -> str:
    """``openai.RateLimitError: rate limited`` of an ``{type, message}`` error."""
    error = _mapping(error)
    message = str(error.get("message") or "")
    return f"{error.get('type') or 'an error'}" + (f": {message}" if message else "")


def run_llm(trace: Trace) -> Mapping[str, Any] | None:
    """The run's LLM totals: ``run.llm``, or summed from its ``llm_called`` events."""
    summary = trace.run.get("llm")
    if isinstance(summary, Mapping):
        return summary
    calls = [e for e in trace.events if e.get("type") == "llm_called"]
    if not calls:
        return None
    usage = [_mapping(e.get("usage")) for e in calls]

    def total(key: str) -> int | None:
        known = [u[key] for u in usage if isinstance(u.get(key), int)]
        return sum(known) if known else None

    return {
        "calls": len(calls),
        "errors": sum(1 for e in calls if e.get("status") == "error"),
        "input_tokens": total("input_tokens"),
        "output_tokens": total("output_tokens"),
        "duration_s": sum(e.get("duration_s") or 0 for e in calls),
        "cost": None,
    }


def calls_line(trace: Trace) -> str | None:
    """The header's LLM line: calls, failures by error type, time, tokens, cost."""
    summary = run_llm(trace)
    if not summary or not whole(summary.get("calls")):
        return None
    calls = whole(summary.get("calls")) or 0
    kinds = Counter(
        str(_mapping(e.get("error")).get("type") or "error")
        for e in trace.events
        if e.get("type") == "llm_called" and e.get("status") == "error"
    )
    failed = ""
    if kinds:
        listed = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common(3))
        failed = f" ({sum(kinds.values())} failed: {listed})"
    share = summary.get("time_share")
    of_run = f" ({share:.0%} of the run)" if isinstance(share, float) else ""
    cost = cost_text(summary.get("cost"))
    return (
        f"  LLM: {calls} calls{failed}, {seconds(summary.get('duration_s'))}{of_run}, "
        f"{tokens_text(summary)}" + (f", {cost}" if cost else "")
    )
