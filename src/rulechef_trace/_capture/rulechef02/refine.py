"""Refinement: iterations, guidance, critique and patch decisions."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from rulechef_trace import signals as sig
from rulechef_trace._capture.rulechef02.facts import (
    explain_name_merge,
    failure_summary,
    fold_failures,
    fold_metrics,
    metrics_of,
    rule_ids,
    short_metrics,
)
from rulechef_trace._capture.rulechef02.llm_steps import (
    dropped,
    empty_patch_outcome,
    llm_fields,
    step_calls,
)
from rulechef_trace._capture.rulechef02.synthesis import known_classes
from rulechef_trace._capture.state import (
    RunState,
    emit,
    emit_change,
    guard,
    names_for,
    remember,
)
from rulechef_trace._capture.wrappers import Binder, signature_of

logger = logging.getLogger("rulechef_trace")


def refine_in_run(
    state: RunState,
    binder: Binder,
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call ``evaluate_and_refine`` inside ``state``'s run, its iterations reported."""
    arguments = binder(args, kwargs)
    # rulechef's own per-iteration hook, chained to the caller's callback.
    callback = arguments.get("iteration_callback")
    arguments["iteration_callback"] = _iteration_callback(state, callback)
    bound = inspect.BoundArguments(signature_of(original), arguments)
    state.phase = "refinement"
    state.max_iterations = arguments.get("max_iterations") or 0
    state.iteration = 0
    state.stop_hint = None
    state.holdout, state.split_pending, state.metric_split = None, True, "all"
    try:
        result = original(*bound.args, **bound.kwargs)
    finally:
        state.split_pending = False
    guard(state, "refined", _after_refine, state, result, state.holdout)
    return result


def after_split(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    """rulechef's own train/dev split of the refinement: whether a holdout was made.

    rulechef skips the holdout, and refines on the training data only, when
    the dev set would be too small; it says so only in a print. Its split
    is collected here, never made again.
    """
    if not state.split_pending:
        return  # the pipeline's later split for re-stamping rule stats
    state.split_pending = False
    fraction = args.get("holdout_fraction") or 0.0
    if not isinstance(fraction, (int, float)) or fraction <= 0:
        return
    dev = result[1] if isinstance(result, tuple) and len(result) == 2 else None
    state.holdout = {
        "fraction": fraction,
        "used": dev is not None,
        "dev_examples": len(dev.examples) if dev is not None else 0,
    }
    state.metric_split = "dev" if dev is not None else "all"


def _iteration_callback(
    state: RunState, user_callback: Callable[..., Any] | None
) -> Callable[..., Any]:
    def on_iteration(iteration: int, rules: list[Any], select_eval: Any) -> None:
        guard(state, "iteration_evaluated", _on_iteration, state, iteration, rules, select_eval)
        if user_callback is not None:
            user_callback(iteration, rules, select_eval)

    return on_iteration


def _on_iteration(state: RunState, iteration: int, rules: list[Any], select_eval: Any) -> None:
    state.iteration = iteration
    state.last_select = short_metrics(select_eval, state.metric_split)
    # rulechef stops right after this callback when exact match reaches 0.90;
    # the guidance and patch hooks clear this hint when the loop went on.
    state.stop_hint = "target_reached" if select_eval.exact_match >= 0.90 else None
    metrics = fold_metrics(
        metrics_of(select_eval, split=state.metric_split), known_classes(state, state.chef)
    )
    state.measured[frozenset(rule_ids(rules))] = (iteration, metrics)
    emit(
        state,
        sig.iteration_evaluated,
        {
            "iteration": iteration,
            "max_iterations": state.max_iterations,
            "rule_count": len(rules),
            "metrics": metrics,
        },
    )


def _after_refine(state: RunState, result: Any, holdout: dict[str, Any] | None) -> None:
    best_rules, best_eval = result
    remember(state, best_rules)
    best_ids = rule_ids(best_rules)
    kept_seq, kept_iteration = _snapshot_of(state, frozenset(best_ids))
    if state.stop_hint:
        reason = state.stop_hint
    elif state.iteration >= state.max_iterations:
        reason = "max_iterations"
    else:
        reason = "stopped"
    emit_change(
        state,
        sig.refined,
        best_ids,
        {
            "iterations": state.iteration,
            "max_iterations": state.max_iterations,
            "stop_reason": reason,
            "kept_seq": kept_seq,
            "kept_iteration": kept_iteration,
            "kept_earlier": set(best_ids) != set(state.working),
            "holdout": holdout,
            "metrics": fold_metrics(
                metrics_of(best_eval, split=state.metric_split), known_classes(state, state.chef)
            ),
            "kept_measured": _kept_measured(state, best_ids, best_eval),
        },
    )


def _kept_measured(state: RunState, ids: list[str], best_eval: Any) -> dict[str, Any] | None:
    """The kept rules' metrics as an iteration measured them, when rulechef returned none.

    rulechef keeps the rules of the best micro F1 and starts from 0: when no
    iteration beats F1 0 (a transformation without list outputs, say) it
    returns an empty ``EvalResult`` (0 documents) although the iterations
    measured the kept rules, exact match included.
    """
    if getattr(best_eval, "total_docs", 0):
        return None
    found = state.measured.get(frozenset(ids))
    return None if found is None else {"iteration": found[0], "metrics": found[1]}


def _snapshot_of(state: RunState, ids: frozenset[str]) -> tuple[int | None, int | None]:
    for snapshot, seq, iteration in reversed(state.snapshots):
        if snapshot == ids:
            return seq, iteration
    return None, None


def on_guidance(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    guidance, should_continue = result
    if not should_continue:
        state.stop_hint = "coordinator_stop"
    elif not getattr(args.get("eval_result"), "failures", None):
        state.stop_hint = "no_failures"
    else:
        state.stop_hint = None
    emit(
        state,
        sig.guided,
        {
            "iteration": state.iteration,
            "should_continue": bool(should_continue),
            "guidance_chars": len(guidance or ""),
            **llm_fields(state, "guide"),
        },
    )


def on_critique(state: RunState, args: dict[str, Any], critique: Any, context: None) -> None:
    returned = bool(critique)
    critique = critique if isinstance(critique, dict) else {}
    rule_feedback = critique.get("rule_feedback")
    rule_feedback = rule_feedback if isinstance(rule_feedback, dict) else {}
    emit(
        state,
        sig.critiqued,
        {
            "iteration": state.iteration + 1,
            "returned": returned,
            # Keys come from an LLM: only known rule ids may enter the trace.
            "rules_with_feedback": sorted(k for k in rule_feedback if k in state.names),
            "feedback_count": len(rule_feedback),
            "task_guidance": bool(critique.get("task_guidance")),
            **llm_fields(state, "critic"),
        },
    )


def before_patch(state: RunState, args: dict[str, Any]) -> None:
    state.llm_by_step.pop("patch", None)
    state.stop_hint = None
    summary = failure_summary(args.get("failures"), args.get("class_metrics"))
    state.failures = fold_failures(summary, known_classes(state, state.chef))


def after_patch(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    patch, deleted_names = result
    if state.phase != "refinement" or patch or deleted_names:
        return
    emit(
        state,
        sig.patch_decided,
        {
            "iteration": state.iteration,
            "outcome": empty_patch_outcome(state, step_calls(state, "patch")),
            "dropped": dropped(state),
            **llm_fields(state, "patch"),
            "accepted": False,
            "metrics_before": state.last_select,
            "metrics_after": None,
            "failures": state.failures,
            "deleted_names": [],
            "added": [],
            "removed": [],
            "rules_after": list(state.working),
            "rule_names": {},
        },
    )


def after_merge_patch(
    state: RunState, args: dict[str, Any], result: list[Any], context: None
) -> None:
    existing, patches = args["existing"], args["patches"]
    remember(state, [*existing, *patches])
    result_ids = rule_ids(result)
    # The candidate first: the decision's rule changes survive a failed explanation.
    state.pending_patch = {"candidate": result_ids, "patch": rule_ids(patches)}
    merge = explain_name_merge(existing, patches, args["deleted_names"])
    state.pending_patch.update(
        replaced=merge["replaced"],
        deleted=merge["deleted"],
        collapsed=merge["collapsed"],
        deduped=[rid for rid in merge["merged"] if rid not in set(result_ids)],
    )


def on_patch_decision(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    pending = state.pending_patch or {"candidate": list(state.working), "patch": []}
    state.pending_patch = None
    accepted = bool(args["accepted"])
    candidate = pending.pop("candidate")
    fields: dict[str, Any] = {
        "iteration": args["iteration"],
        "outcome": "accepted" if accepted else "rejected",
        "dropped": dropped(state),
        **llm_fields(state, "patch"),
        "accepted": accepted,
        "on_dev": bool(args.get("on_dev")),
        "metrics_before": short_metrics(args["prev_eval"], "dev" if args.get("on_dev") else "all"),
        "metrics_after": short_metrics(
            args["candidate_eval"], "dev" if args.get("on_dev") else "all"
        ),
        "failures": state.failures,
        # Names come from an LLM: keep only those of rules the run has seen.
        "deleted_names": sorted(set(args.get("deleted_names") or ()) & set(state.names.values())),
    }
    if accepted:
        emit_change(state, sig.patch_decided, candidate, {**fields, **pending})
        return
    fields["proposed"] = {
        "added": [rid for rid in candidate if rid not in set(state.working)],
        "removed": [rid for rid in state.working if rid not in set(candidate)],
        **pending,
    }
    emit(
        state,
        sig.patch_decided,
        {
            **fields,
            "added": [],
            "removed": [],
            "rules_after": list(state.working),
            "rule_names": names_for(state, [], fields),
        },
    )
