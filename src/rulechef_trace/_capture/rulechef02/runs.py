"""A run's start and end: ``learn_rules()`` and ``rank_rules(prune=True)`` as traced runs."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rulechef_trace import signals as sig
from rulechef_trace._capture import llm
from rulechef_trace._capture.install import wanted
from rulechef_trace._capture.rulechef02 import rulechef_version
from rulechef_trace._capture.rulechef02.coordinator import patch_coordinator, unpatch_coordinator
from rulechef_trace._capture.rulechef02.facts import (
    fold_metrics,
    metrics_of,
    ratio,
    rule_facts,
    rule_ids,
)
from rulechef_trace._capture.rulechef02.llm_steps import (
    calls_of,
    failure,
    start_llm_capture,
    stop_llm_capture,
)
from rulechef_trace._capture.rulechef02.refine import refine_in_run
from rulechef_trace._capture.rulechef02.synthesis import known_classes
from rulechef_trace._capture.state import (
    RunState,
    describe_error,
    emit,
    emit_change,
    guard,
    remember,
    run_var,
    unique,
    utc_now,
)
from rulechef_trace._capture.wrappers import Binder, generation, ordered_binder_of

logger = logging.getLogger("rulechef_trace")


def _start_run(
    chef: Any, kind: str, params: dict[str, Any], given: list[Any] | None = None
) -> RunState:
    dataset = getattr(chef, "dataset", None)
    rules = list(given if given is not None else getattr(dataset, "rules", None) or [])
    state = RunState(chef=chef, kind=kind)
    state.describe_rule = lambda rule, counters: rule_facts(
        rule, known_classes(state, chef), counters
    )
    state.working = unique(rule_ids(rules))
    state.baseline_pending = dataset is None
    remember(state, rules)
    task = getattr(chef, "task", None)
    task_type = getattr(getattr(task, "type", None), "value", None)
    emit(
        state,
        sig.run_started,
        {
            "kind": kind,
            "dataset": getattr(dataset, "name", None) or getattr(chef, "_dataset_name", None),
            "task": getattr(task, "name", None),
            "task_type": task_type,
            "started_at": state.started_at,
            "rulechef_version": rulechef_version(),
            "params": params,
            "coordinator": _describe_coordinator(getattr(chef, "coordinator", None)),
            "storage_path": str(getattr(chef, "storage_path", "") or "") or None,
            "rules": list(state.working),
            "rule_names": {rid: state.names[rid] for rid in state.working},
        },
    )
    return state


def _example_count(dataset: Any) -> int | None:
    """Examples plus corrections of the dataset at the run's end (buffered ones are in by then)."""
    if dataset is None:
        return None
    return len(getattr(dataset, "examples", None) or ()) + len(
        getattr(dataset, "corrections", None) or ()
    )


def _finish_run(state: RunState, result: Any, error: BaseException | None) -> None:
    chef = state.chef
    if state.final_rules is not None:  # a direct refinement ends with the rules it returns
        rules = state.final_rules
    else:
        rules = list(getattr(getattr(chef, "dataset", None), "rules", None) or [])
    remember(state, rules)
    if error is not None:
        state.status = "failed"
    llm_error = _llm_failure(state)
    if llm_error is not None and error is None:
        state.status = "llm_error"
    final_ids = unique(rule_ids(rules))
    fields: dict[str, Any] = {}
    if set(final_ids) != set(state.working):
        if state.baseline_pending:
            # The task was discovered and its stored rules loaded, then the run ended early.
            fields["loaded"] = [rid for rid in final_ids if rid not in set(state.working)]
        elif error is not None:
            # rulechef stores the working rules only at the end; a failed run keeps the old ones.
            fields["discarded"] = True
        else:
            logger.warning(
                "rulechef_trace: run %s ended with rule changes no hook explained", state.run_id
            )
            fields["unexplained"] = True
    metrics = None
    if state.kind in ("learn", "refine") and isinstance(result, tuple) and len(result) == 2:
        metrics = fold_metrics(
            metrics_of(result[1], split=state.metric_split), known_classes(state, chef)
        )
    task = getattr(chef, "task", None)
    duration_s = round(time.perf_counter() - state.started, 6)
    fields.update(
        {
            "status": state.status,
            "error": describe_error(error) if llm_error is None or error else llm_error,
            "ended_at": utc_now(),
            "duration_s": duration_s,
            "task": getattr(task, "name", None),
            "task_type": getattr(getattr(task, "type", None), "value", None),
            "rules": final_ids,
            "metrics": metrics,
            "examples": _example_count(getattr(chef, "dataset", None)),
            "llm": llm.run_summary(state.llm_calls, duration_s),
            "rule_facts": _final_facts(state, rules),
            "stats": {
                "hook_errors": state.hook_errors,
                "receiver_errors": state.receiver_errors,
            },
        }
    )
    # Always the last event, and like every other one it may move the rules.
    emit_change(state, sig.finalized, final_ids, fields)


def _final_facts(state: RunState, rules: list[Any]) -> dict[str, Any]:
    """Every final rule's facts with rulechef's counters as they stand at the end."""
    if state.describe_rule is None:
        return {}
    return {r.id: state.describe_rule(r, True) for r in rules}


def _llm_failure(state: RunState) -> dict[str, Any] | None:
    """The last LLM error when a run learned nothing because its synthesis calls failed."""
    if state.status != "no_rules":
        return None
    return failure(calls_of(state, "synthesis"))


def _describe_coordinator(coordinator: Any) -> dict[str, Any] | None:
    if coordinator is None:
        return None
    out: dict[str, Any] = {"class": type(coordinator).__qualname__}
    for attr in ("prune_after_learn", "enable_critic", "audit_interval", "critic_interval"):
        value = getattr(coordinator, attr, None)
        if isinstance(value, (bool, int)):
            out[attr] = value
    return out


def _effective(call: dict[str, Any], chef: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments over the chef's settings; a ``None`` argument means the chef's."""
    return {**call, **{k: v for k, v in chef.items() if call.get(k) is None}}


def _chef_params(chef: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for attr in ("model", "synthesis_strategy", "sampling_strategy", "temperature"):
        value = getattr(chef, attr, None)
        if value is None or isinstance(value, (str, int, float, bool)):
            params[attr] = value
    return params


@contextmanager
def traced_run(
    chef: Any, kind: str, params: dict[str, Any], rules: list[Any] | None = None
) -> Iterator[RunState | None]:
    """Trace one run: run_started on entry, finalized on exit (any exit).

    ``rules`` are the run's starting rules when they are not the chef's (a
    direct refinement starts from the rules it is given).
    """
    state = guard(None, "run_started", _start_run, chef, kind, params, rules)
    if state is None:
        yield None
        return
    token = run_var.set(state)
    coordinator = getattr(chef, "coordinator", None)
    patched = guard(state, "coordinator", patch_coordinator, coordinator)
    guard(state, "llm", start_llm_capture, state)
    outcome: dict[str, Any] = {}
    try:
        yield state
    except BaseException as exc:
        outcome["error"] = exc
        raise
    finally:
        guard(state, "llm", stop_llm_capture, state)
        if patched:
            guard(state, "coordinator", unpatch_coordinator, coordinator)
        run_var.reset(token)
        guard(state, "finalized", _finish_run, state, state.result, outcome.get("error"))


def wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
    binder = ordered_binder_of(original)
    born = generation()

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if born != generation() or not wanted():
            return original(self, *args, **kwargs)
        chef = self._chef
        params = guard(None, "params", plain_params, binder, self, args, kwargs) or {}
        with traced_run(chef, "learn", _effective(params, _chef_params(chef))) as state:
            result = original(self, *args, **kwargs)
            if state is not None:
                state.result = result
                if result is None:
                    state.status = "no_rules" if state.synth_called else "not_enough_data"
            return result

    return run


def wrap_evaluate_and_refine(original: Callable[..., Any]) -> Callable[..., Any]:
    """Refinement inside a learning run, or, called directly, a run of kind "refine"."""
    binder = ordered_binder_of(original)
    born = generation()

    @functools.wraps(original)
    def evaluate_and_refine(self: Any, *args: Any, **kwargs: Any) -> Any:
        if born != generation():
            return original(self, *args, **kwargs)
        state = run_var.get()
        if state is not None:
            return refine_in_run(state, binder, original, (self, *args), kwargs)
        chef = _chef_of(self) if wanted() else None
        if chef is None:
            return original(self, *args, **kwargs)
        found = guard(None, "params", binder, (self, *args), kwargs) or {}
        params = guard(None, "params", plain_params, binder, self, args, kwargs) or {}
        with traced_run(chef, "refine", params, found.get("rules")) as state:
            if state is None:
                return original(self, *args, **kwargs)
            result = refine_in_run(state, binder, original, (self, *args), kwargs)
            state.result = result
            if isinstance(result, tuple) and result:
                state.final_rules = list(result[0] or [])
            return result

    return evaluate_and_refine


def _chef_of(learner: Any) -> Any:
    """The followed chef whose learner this is (a direct call names no chef)."""
    for chef in sig.followed():
        if getattr(chef, "learner", None) is learner:
            return chef
    return None


def wrap_rank_rules(original: Callable[..., Any]) -> Callable[..., Any]:
    binder = ordered_binder_of(original)
    born = generation()

    @functools.wraps(original)
    def rank_rules(self: Any, *args: Any, **kwargs: Any) -> Any:
        if born != generation() or not wanted():
            return original(self, *args, **kwargs)
        params = guard(None, "params", plain_params, binder, self, args, kwargs) or {}
        # rulechef prunes only with both flags; anything else changes no rule.
        if not (params.get("prune") and params.get("compute_marginal")):
            return original(self, *args, **kwargs)
        with traced_run(self, "rank_rules", params) as state:
            report = original(self, *args, **kwargs)
            if state is not None:
                guard(state, "pruned", _after_rank, state, self, report)
            return report

    return rank_rules


def plain_params(
    binder: Binder, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    arguments = binder((owner, *args), kwargs)
    return {
        k: v
        for k, v in list(arguments.items())[1:]
        if v is None or isinstance(v, (str, int, float, bool))
    }


def _after_rank(state: RunState, chef: Any, report: Any) -> None:
    after = rule_ids(chef.dataset.rules or [])
    removed = set(state.working) - set(after)
    marginal = {
        r.rule_id: ratio(r.marginal_f1)
        for r in getattr(report, "rankings", ())
        if r.rule_id in removed
    }
    # rulechef ranks nothing, and reports zeros, when the chef has no rule.
    ranked = bool(getattr(report, "rankings", None))
    ensemble = {
        "f1": ratio(getattr(report, "ensemble_f1", None)),
        "precision": ratio(getattr(report, "ensemble_precision", None)),
        "recall": ratio(getattr(report, "ensemble_recall", None)),
    }
    emit_change(
        state,
        sig.pruned,
        after,
        {
            "reason": "harmful_rules",
            "marginal_f1": marginal,
            "ensemble": ensemble if ranked else None,
        },
    )
