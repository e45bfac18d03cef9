"""rulechef's LLM calls: which clients it uses, which step each call serves, what came of it.

rulechef 0.2.x catches almost every LLM error, prints it and goes on, so the
events alone would tell a failed call as "the LLM proposed nothing". Here the
calls are observed on every client a chef uses (``_capture/llm.py`` does the
observing), each hooked step method runs inside a step context that the calls
are attributed to, and two of rulechef's parser methods say how many rules an
answer held and how many the parser kept. From those facts the step events
say what really happened: ``llm_error``, ``unparsable``, ``invalid_rules``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from rulechef_trace import signals as sig
from rulechef_trace._capture import llm
from rulechef_trace._capture.state import RunState, emit

__all__ = [
    "CLASSES_AFTER",
    "PARSE_AFTER",
    "PER_CLASS_LABEL_AFTER",
    "StepSpec",
    "audit_step",
    "critic_step",
    "guide_step",
    "patch_step",
    "per_class_step",
    "synthesis_step",
]


class StepSpec(NamedTuple):
    """The step a hooked call serves (the fields of an ``llm_called`` event it causes)."""

    step: str
    iteration: int | None = None
    label: str | None = None
    stage: str | None = None


# --- clients ----------------------------------------------------------------------------


def clients_of(chef: Any) -> list[Any]:
    """Every client object a chef may call: its own, its learner's, its coordinator's."""
    learner = getattr(chef, "learner", None)
    coordinator = getattr(chef, "coordinator", None)
    found = [
        getattr(chef, "llm", None),
        getattr(learner, "llm", None),
        getattr(getattr(learner, "llm_calls", None), "client", None),
        getattr(coordinator, "llm", None),
        getattr(getattr(coordinator, "llm_calls", None), "client", None),
    ]
    unique: dict[int, Any] = {}
    for client in found:
        if client is not None:
            unique.setdefault(id(client), client)
    return list(unique.values())


def start_llm_capture(state: RunState) -> None:
    """Observe the chef's clients and open the run-wide step ("other")."""
    state.llm_sink = functools.partial(record_call, state)
    for client in clients_of(state.chef):
        if llm.install(client):
            state.llm_clients.append(client)
    state.open_steps.append(open_step(state, StepSpec("other")))


def stop_llm_capture(state: RunState) -> None:
    """Close every step still open (innermost first) and release the clients."""
    while state.open_steps:
        _ctx, token = state.open_steps.pop()
        llm.exit_step(token)
    for client in state.llm_clients:
        llm.uninstall(client)
    state.llm_clients.clear()


def record_call(state: RunState, call: llm.LLMCall) -> None:
    """The sink of a run's step contexts: keep the call and send ``llm_called``."""
    state.llm_calls.append(llm.own_copy(call))
    emit(state, sig.llm_called, call)  # emit builds the payload anew: no copy here


# --- steps ------------------------------------------------------------------------------


def open_step(state: RunState, spec: StepSpec) -> tuple[llm.StepContext, Any]:
    """Make ``spec`` the current step of this context and tell the step signals."""
    sink = state.llm_sink or functools.partial(record_call, state)
    ctx, token = llm.enter_step(
        sink, spec.step, iteration=spec.iteration, label=spec.label, stage=spec.stage
    )
    if spec.step != "other":
        state.answer = None
        if spec.step == "per_class":
            state.answered.clear()
        _send_step(state, sig.step_started, ctx)
    return ctx, token


def close_step(state: RunState, opened: tuple[llm.StepContext, Any]) -> None:
    """End a step: its calls are kept for its event and count for the enclosing step too."""
    ctx, token = opened
    llm.exit_step(token)
    state.llm_by_step[ctx.step] = ctx.calls
    outer = llm.current_step()
    if outer is not None and outer.sink is ctx.sink:
        outer.calls.extend(ctx.calls)
    _send_step(state, sig.step_ended, ctx)


def _send_step(state: RunState, signal: Any, ctx: llm.StepContext) -> None:
    if not signal.receivers:
        return
    payload = {
        "type": signal.name,
        "run_id": state.run_id,
        "seq": state.seq,  # the last event before it; steps are not numbered events
        "step": ctx.step,
        "iteration": ctx.iteration,
        "label": ctx.label,
        "stage": ctx.stage,
    }
    state.receiver_errors += sig.send_safely(signal, state.chef, payload)


def _step(spec_of: Any) -> tuple[Any, Any, Any]:
    return spec_of, open_step, close_step


def _synthesis(state: RunState, args: dict[str, Any]) -> StepSpec:
    return StepSpec("synthesis")


def _per_class(state: RunState, args: dict[str, Any]) -> StepSpec:
    return StepSpec("per_class")


def _patch(state: RunState, args: dict[str, Any]) -> StepSpec | None:
    # Incremental learning asks for a patch during synthesis: that call is synthesis.
    return StepSpec("patch", state.iteration) if state.phase == "refinement" else None


def _guide(state: RunState, args: dict[str, Any]) -> StepSpec:
    return StepSpec("guide", state.iteration)


def _critic(state: RunState, args: dict[str, Any]) -> StepSpec:
    return StepSpec("critic", state.iteration + 1)


def _audit(state: RunState, args: dict[str, Any]) -> StepSpec:
    if state.phase == "mid_audit":
        return StepSpec("audit", state.iteration, stage="mid_refinement")
    return StepSpec("audit", None, stage="final")


synthesis_step = _step(_synthesis)
per_class_step = _step(_per_class)
patch_step = _step(_patch)
guide_step = _step(_guide)
critic_step = _step(_critic)
audit_step = _step(_audit)


# --- what the parser made of an answer ---------------------------------------------------


def _after_parse(state: RunState, args: dict[str, Any], rules: Any, context: None) -> None:
    result = args.get("result")
    listed = result.get("rules") if isinstance(result, dict) else None
    limit = args.get("max_rules")
    offered = len(listed) if isinstance(listed, list) else 0
    if isinstance(limit, int) and limit >= 0:
        offered = min(offered, limit)
    kept = len(rules) if isinstance(rules, list) else 0
    before = state.answer or (0, 0)
    state.answer = (before[0] + offered, before[1] + kept)
    ctx = llm.current_step()
    if ctx is not None and ctx.step == "per_class" and ctx.label is not None:
        state.answered.add(ctx.label)


def _after_per_class_prompt(state: RunState, args: dict[str, Any], result: Any, _: None) -> None:
    # The prompt is built right before each class's call: that call serves this class.
    ctx = llm.current_step()
    target = args.get("target_class")
    if ctx is not None and ctx.step == "per_class" and isinstance(target, str):
        ctx.label = target


def _after_get_classes(state: RunState, args: dict[str, Any], result: Any, _: None) -> None:
    if isinstance(result, (list, tuple, set, frozenset)):
        state.classes = frozenset(c for c in result if isinstance(c, str))


PARSE_AFTER = _after_parse
PER_CLASS_LABEL_AFTER = _after_per_class_prompt
CLASSES_AFTER = _after_get_classes


# --- outcomes and summaries --------------------------------------------------------------


def calls_of(state: RunState, step: str) -> list[dict[str, Any]]:
    """The calls of the last finished step of kind ``step``."""
    return state.llm_by_step.get(step, [])


def summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A step's ``llm`` field: calls, errors, tokens, seconds."""
    return llm.step_summary(calls)  # type: ignore[arg-type]


def failure(calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last error when a step made calls and none succeeded, else ``None``."""
    if not calls or any(c["status"] == "ok" for c in calls):
        return None
    error: dict[str, Any] | None = calls[-1]["error"]
    return error


def dropped(state: RunState) -> int:
    """Rules in the step's answers that rulechef's parser skipped."""
    if state.answer is None:
        return 0
    return max(0, state.answer[0] - state.answer[1])


def empty_patch_outcome(state: RunState, calls: list[dict[str, Any]]) -> str:
    """Why a patch brought no change: the call failed, the answer was unreadable, ..."""
    if failure(calls) is not None:
        return "llm_error"
    if calls and state.answer is None:
        return "unparsable"  # an answer came, but never reached the rule parser
    if state.answer is not None and state.answer[0] > 0 and state.answer[1] == 0:
        return "invalid_rules"
    return "empty"


def failed_labels(state: RunState, classes: frozenset[str] | None) -> list[str]:
    """Classes whose per-class call failed or whose answer never reached the parser."""
    asked = {c["label"] for c in calls_of(state, "per_class") if c["label"] is not None}
    failed = asked - state.answered
    return sorted(label if classes is None or label in classes else "(other)" for label in failed)


def step_calls(state: RunState, step: str) -> list[dict[str, Any]]:
    """The calls of ``step``: the open one's so far, else the last finished one's."""
    ctx = llm.current_step()
    if ctx is not None and ctx.step == step and ctx.sink is state.llm_sink:
        return [dict(c) for c in ctx.calls]
    return calls_of(state, step)


def llm_fields(state: RunState, step: str) -> dict[str, Any]:
    """A step event's ``llm`` summary and ``llm_error`` (the last error if every call failed)."""
    calls = step_calls(state, step)
    return {"llm": summary(calls), "llm_error": failure(calls)}
