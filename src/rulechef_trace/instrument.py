"""Instrumentation of rulechef 0.2.x from outside: which method feeds which signal.

rulechef's own code is never edited. While at least one receiver is connected to
a rulechef_trace signal, the methods in :data:`HOOKS` are replaced on their
classes by thin wrappers; when the last receiver goes, the original function
objects are put back, so an unobserved rulechef is exactly the shipped one.

Every wrapper calls the original exactly once with the original arguments
(the one exception: ``evaluate_and_refine`` also receives an
``iteration_callback``, rulechef's own per-iteration hook, chained to the
caller's). An exception of rulechef propagates unchanged; an exception of the
package's own bookkeeping is logged and the run goes on (re-raised in strict
mode). Facts are collected from arguments and return values, never recomputed:
a traced run makes the same LLM calls and dataset evaluations as an untraced one.

The hook table (rulechef method -> signals)::

    LearningPipeline.run               run_started, finalized
    LearningPipeline._synthesize       synthesized (bulk / per_class)
    LearningPipeline._merge_rules      synthesized (incremental), pruned (weak_rules)
    LearningPipeline._audit_rules      audit_applied (final)
    RuleLearner.synthesize_ruleset     (marks bulk synthesis)
    RuleLearner.synthesize_ruleset_per_class  (marks per-class synthesis)
    RuleLearner.evaluate_and_refine    iteration_evaluated, refined
    RuleLearner.synthesize_patch_ruleset  patch_decided (empty patch)
    RuleLearner._merge_patch           (candidate rule set of a patch)
    RuleLearner._log_patch_decision    patch_decided (accepted / rejected)
    RuleLearner._run_mid_refinement_audit  audit_applied (mid_refinement)
    RuleLearner._evaluate_rules        (metrics of a mid-refinement audit)
    RuleChef.evaluate                  (metrics of the final audit's safety net)
    RuleChef.rank_rules                run_started, pruned (harmful), finalized
    chef.coordinator.guide_refinement  guided            (on the instance, per run)
    chef.coordinator.critique_rules    critiqued         (on the instance, per run)
    chef.coordinator.audit_rules       (proposed audit actions)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from blinker import NamedSignal

from rulechef_trace import signals as sig
from rulechef_trace.facts import (
    explain_audit,
    explain_name_merge,
    failure_summary,
    labels_of,
    metrics_of,
    ratio,
    rule_ids,
    short_metrics,
)

logger = logging.getLogger("rulechef_trace")

__all__ = [
    "HOOKS",
    "Hook",
    "current_run",
    "installed",
    "refresh",
]

# ---------------------------------------------------------------------------
# Per-run state
# ---------------------------------------------------------------------------


@dataclass
class RunState:
    """What the hooks know about one run in progress (one per thread/context)."""

    chef: Any
    kind: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: _utc_now())
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
    failures: dict[str, Any] | None = None
    pending_patch: dict[str, Any] | None = None
    pending_audit: Any = None
    phase_evals: list[dict[str, Any] | None] = field(default_factory=list)
    snapshots: list[tuple[frozenset[str], int, int]] = field(default_factory=list)
    hook_errors: int = 0
    receiver_errors: int = 0
    result: Any = None
    baseline_pending: bool = False
    loaded: list[str] = field(default_factory=list)


_current: ContextVar[RunState | None] = ContextVar("rulechef_trace_run", default=None)


def current_run() -> RunState | None:
    """Return the state of the run in progress in this context, if it is traced."""
    return _current.get()


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unique(ids: Iterable[str]) -> list[str]:
    # rulechef can hold a rule twice; the trace treats rule sets as sets.
    return list(dict.fromkeys(ids))


def _remember(state: RunState, rules: Iterable[Any]) -> None:
    for r in rules:
        state.names.setdefault(r.id, r.name)


# ---------------------------------------------------------------------------
# Emitting
# ---------------------------------------------------------------------------


def _emit(state: RunState, signal: NamedSignal, fields: dict[str, Any]) -> None:
    """Number the event and send it to the receivers of this chef."""
    state.seq += 1
    if not signal.receivers:
        return
    payload = {
        "type": signal.name,  # a receiver of ALL_SIGNALS can tell which signal fired
        "run_id": state.run_id,
        "seq": state.seq,
        "t": round(time.perf_counter() - state.started, 6),
        **fields,
    }
    state.receiver_errors += sig.send_safely(signal, state.chef, payload)


def _emit_change(
    state: RunState, signal: NamedSignal, after: list[str], fields: dict[str, Any]
) -> None:
    """Emit an event that moves the working rule set to ``after``."""
    after = _unique(after)
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
        "rule_names": _names_for(state, added, fields),
    }
    _emit(state, signal, fields)
    state.snapshots.append((frozenset(after), state.seq, state.iteration))


def _names_for(state: RunState, added: list[str], fields: dict[str, Any]) -> dict[str, str]:
    """Names of every known rule id an event mentions (added, proposed, merged...)."""
    found = {rid: state.names[rid] for rid in added if rid in state.names}
    stack: list[Any] = list(fields.values())
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if value in state.names:
                found.setdefault(value, state.names[value])
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def _guard(state: RunState | None, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run the package's own bookkeeping; log and count its errors, never raise."""
    try:
        return fn(*args)
    except Exception:
        if state is not None:
            state.hook_errors += 1
        if sig.is_strict():
            raise
        logger.exception("rulechef_trace: hook %s failed; the run goes on untouched", what)
        return None


# ---------------------------------------------------------------------------
# Run lifecycle
# ---------------------------------------------------------------------------


def _start_run(chef: Any, kind: str, params: dict[str, Any]) -> RunState:
    dataset = getattr(chef, "dataset", None)
    rules = list(getattr(dataset, "rules", None) or [])
    state = RunState(chef=chef, kind=kind)
    state.working = _unique(rule_ids(rules))
    state.baseline_pending = dataset is None
    _remember(state, rules)
    task = getattr(chef, "task", None)
    task_type = getattr(getattr(task, "type", None), "value", None)
    _emit(
        state,
        sig.run_started,
        {
            "kind": kind,
            "dataset": getattr(dataset, "name", None) or getattr(chef, "_dataset_name", None),
            "task": getattr(task, "name", None),
            "task_type": task_type,
            "started_at": state.started_at,
            "rulechef_version": _rulechef_version(),
            "params": params,
            "coordinator": _describe_coordinator(getattr(chef, "coordinator", None)),
            "storage_path": str(getattr(chef, "storage_path", "") or "") or None,
            "rules": list(state.working),
            "rule_names": {rid: state.names[rid] for rid in state.working},
        },
    )
    return state


def _finish_run(state: RunState, result: Any, error: BaseException | None) -> None:
    chef = state.chef
    rules = list(getattr(getattr(chef, "dataset", None), "rules", None) or [])
    _remember(state, rules)
    if error is not None:
        state.status = "failed"
    final_ids = _unique(rule_ids(rules))
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
    if state.kind == "learn" and isinstance(result, tuple) and len(result) == 2:
        metrics = metrics_of(result[1])
    task = getattr(chef, "task", None)
    fields.update(
        {
            "status": state.status,
            "error": _describe_error(error),
            "ended_at": _utc_now(),
            "duration_s": round(time.perf_counter() - state.started, 6),
            "task": getattr(task, "name", None),
            "task_type": getattr(getattr(task, "type", None), "value", None),
            "rules": final_ids,
            "metrics": metrics,
            "stats": {
                "hook_errors": state.hook_errors,
                "receiver_errors": state.receiver_errors,
            },
        }
    )
    # Always the last event, and like every other one it may move the rules.
    _emit_change(state, sig.finalized, final_ids, fields)


def _describe_error(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return {"type": name, "message": str(error)[:500]}


def _describe_coordinator(coordinator: Any) -> dict[str, Any] | None:
    if coordinator is None:
        return None
    out: dict[str, Any] = {"class": type(coordinator).__qualname__}
    for attr in ("prune_after_learn", "enable_critic", "audit_interval", "critic_interval"):
        value = getattr(coordinator, attr, None)
        if isinstance(value, (bool, int)):
            out[attr] = value
    return out


@functools.lru_cache(maxsize=1)
def _rulechef_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rulechef")
    except PackageNotFoundError:
        return None


def _chef_params(chef: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for attr in ("model", "synthesis_strategy", "sampling_strategy", "temperature"):
        value = getattr(chef, attr, None)
        if value is None or isinstance(value, (str, int, float, bool)):
            params[attr] = value
    return params


@contextmanager
def _run(chef: Any, kind: str, params: dict[str, Any]) -> Iterator[RunState | None]:
    """Trace one run: run_started on entry, finalized on exit (any exit)."""
    state = _guard(None, "run_started", _start_run, chef, kind, params)
    if state is None:
        yield None
        return
    token = _current.set(state)
    coordinator = getattr(chef, "coordinator", None)
    patched = _guard(state, "coordinator", _patch_coordinator, coordinator)
    outcome: dict[str, Any] = {}
    try:
        yield state
    except BaseException as exc:
        outcome["error"] = exc
        raise
    finally:
        if patched:
            _guard(state, "coordinator", _unpatch_coordinator, coordinator)
        _current.reset(token)
        _guard(state, "finalized", _finish_run, state, state.result, outcome.get("error"))


# ---------------------------------------------------------------------------
# Wrappers
# ---------------------------------------------------------------------------

Before = Callable[[RunState, dict[str, Any]], Any]
After = Callable[[RunState, dict[str, Any], Any, Any], None]


def _around(
    what: str, *, before: Before | None = None, after: After | None = None, bind: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a wrapper that runs bookkeeping around an untouched call of the original.

    The bookkeeping sees the call's arguments by name (``self`` included) and,
    after the call, its result; it runs only inside a traced run and only
    under :func:`_guard`. The original is called exactly once with exactly
    the caller's arguments, and its exceptions propagate unchanged. With
    ``bind=False`` the bookkeeping gets no arguments (for hot, argument-blind hooks).
    """

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        binder = _binder(_signature(original))
        born = _generation

        @functools.wraps(original)
        def hooked(*args: Any, **kwargs: Any) -> Any:
            state = _current.get()
            if state is None or born != _generation:
                return original(*args, **kwargs)
            arguments = (_guard(state, what, binder, args, kwargs) or {}) if bind else {}
            context = _guard(state, what, before, state, arguments) if before else None
            result = original(*args, **kwargs)
            if after is not None:
                _guard(state, what, after, state, arguments, result, context)
            return result

        return hooked

    return wrap


def _arguments(
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


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    """Return ``inspect.signature(func)``, computed once per function object."""
    try:
        return _signatures[func]
    except (KeyError, TypeError):
        signature = inspect.signature(func)
    with contextlib.suppress(TypeError):  # not weakly referable: not cached
        _signatures[func] = signature
    return signature


_PLAIN_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _binder(
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
        return functools.partial(_arguments, signature)
    positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    names = frozenset(p.name for p in params)

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(positional) or not names.issuperset(kwargs):
            return _arguments(signature, args, kwargs)
        arguments = dict(defaults)
        arguments.update(zip(positional, args, strict=False))
        arguments.update(kwargs)
        return arguments

    return bind


def _wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = _signature(original)
    born = _generation

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if born != _generation or not _wanted():
            return original(self, *args, **kwargs)
        chef = self._chef
        params = _guard(None, "params", _plain_params, signature, self, args, kwargs) or {}
        with _run(chef, "learn", {**params, **_chef_params(chef)}) as state:
            result = original(self, *args, **kwargs)
            if state is not None:
                state.result = result
                if result is None:
                    state.status = "no_rules" if state.synth_called else "not_enough_data"
            return result

    return run


def _wrap_rank_rules(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = _signature(original)
    born = _generation

    @functools.wraps(original)
    def rank_rules(self: Any, *args: Any, **kwargs: Any) -> Any:
        if born != _generation or not _wanted():
            return original(self, *args, **kwargs)
        params = _guard(None, "params", _plain_params, signature, self, args, kwargs) or {}
        # rulechef prunes only with both flags; anything else changes no rule.
        if not (params.get("prune") and params.get("compute_marginal")):
            return original(self, *args, **kwargs)
        with _run(self, "rank_rules", params) as state:
            report = original(self, *args, **kwargs)
            if state is not None:
                _guard(state, "pruned", _after_rank, state, self, report)
            return report

    return rank_rules


def _wrap_evaluate_and_refine(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = _signature(original)
    born = _generation

    @functools.wraps(original)
    def evaluate_and_refine(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None or born != _generation:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        # rulechef's own per-iteration hook, chained to the caller's callback.
        callback = bound.arguments.get("iteration_callback")
        bound.arguments["iteration_callback"] = _iteration_callback(state, callback)
        state.phase = "refinement"
        state.max_iterations = bound.arguments.get("max_iterations") or 0
        state.iteration = 0
        state.stop_hint = None
        result = original(*bound.args, **bound.kwargs)
        _guard(state, "refined", _after_refine, state, result)
        return result

    return evaluate_and_refine


def _plain_params(
    signature: inspect.Signature, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    arguments = _arguments(signature, (owner, *args), kwargs)
    return {
        k: v
        for k, v in list(arguments.items())[1:]
        if v is None or isinstance(v, (str, int, float, bool))
    }


# ---------------------------------------------------------------------------
# Bookkeeping: synthesis
# ---------------------------------------------------------------------------


def _mark_mode(mode: str) -> Before:
    def before(state: RunState, args: dict[str, Any]) -> None:
        # The last one entered wins: per-class falls back to bulk without classes.
        state.synth_mode = mode

    return before


def _before_synthesis(state: RunState, args: dict[str, Any]) -> bool:
    state.synth_called = True
    state.phase = "synthesis"
    chef = args["self"]._chef
    if state.baseline_pending:
        # The task was discovered during this run: its dataset (and the rules
        # stored with it) appeared after run_started.
        state.baseline_pending = False
        _remember(state, chef.dataset.rules)
        state.loaded = [r.id for r in chef.dataset.rules if r.id not in set(state.working)]
    return bool(args["incremental_only"] and chef.dataset.rules)


def _after_synthesis(
    state: RunState, args: dict[str, Any], rules: list[Any] | None, incremental: bool
) -> None:
    state.phase = "refinement"
    if incremental:
        return  # _merge_rules told this part of the story
    chef = args["self"]._chef
    fields = {
        "mode": state.synth_mode or "bulk",
        "count": len(rules or ()),
        "data": _data_counts(chef),
        "per_label": _per_label(chef, rules or ()),
        **({"loaded": state.loaded} if state.loaded else {}),
    }
    # rulechef keeps the chef's rules when synthesis produced none.
    after = rule_ids(rules) if rules else rule_ids(chef.dataset.rules)
    _remember(state, rules or ())
    _emit_change(state, sig.synthesized, after, fields)


def _per_label(chef: Any, rules: Iterable[Any]) -> dict[str, int]:
    """Rules per output label; a label the dataset does not have counts as "(other)".

    Labels in rules are written by the LLM; only the dataset's own classes
    (rulechef's ``_get_classes``, read from the labels alone) enter a trace.
    """
    get_classes = getattr(getattr(chef, "learner", None), "_get_classes", None)
    known = set(get_classes(chef.dataset)) if callable(get_classes) else set()
    counts: dict[str, int] = {}
    for label, n in labels_of(rules).items():
        key = label if label in known else "(other)"
        counts[key] = counts.get(key, 0) + n
    return counts


def _data_counts(chef: Any) -> dict[str, int]:
    dataset = chef.dataset
    return {
        "examples": len(dataset.examples),
        "corrections": len(dataset.corrections),
        "feedback": len(dataset.structured_feedback),
    }


def _after_incremental_merge(
    state: RunState, args: dict[str, Any], result: list[Any], context: None
) -> None:
    existing, patches = args["existing"], args["patches"]
    _remember(state, [*existing, *patches])
    merge = explain_name_merge(existing, patches, args["deleted_names"])
    result_ids = rule_ids(result)
    merged = merge["merged"] if set(result_ids) <= set(merge["merged"]) else result_ids
    _emit_change(
        state,
        sig.synthesized,
        merged,
        {
            "mode": "incremental",
            "count": len(patches),
            "data": _data_counts(args["self"]._chef),
            "per_label": _per_label(args["self"]._chef, patches),
            **({"loaded": state.loaded} if state.loaded else {}),
            "failures": state.failures,
            "replaced": merge["replaced"],
            "deleted": merge["deleted"],
            "collapsed": merge["collapsed"],
        },
    )
    if set(result_ids) != set(merged):
        _emit_change(
            state,
            sig.pruned,
            result_ids,
            {
                "reason": "weak_rules",
                "criteria": "times_applied >= 3, successes == 0, failures >= 3",
            },
        )


# ---------------------------------------------------------------------------
# Bookkeeping: refinement iterations
# ---------------------------------------------------------------------------


def _iteration_callback(
    state: RunState, user_callback: Callable[..., Any] | None
) -> Callable[..., Any]:
    def on_iteration(iteration: int, rules: list[Any], select_eval: Any) -> None:
        _guard(state, "iteration_evaluated", _on_iteration, state, iteration, rules, select_eval)
        if user_callback is not None:
            user_callback(iteration, rules, select_eval)

    return on_iteration


def _on_iteration(state: RunState, iteration: int, rules: list[Any], select_eval: Any) -> None:
    state.iteration = iteration
    state.last_select = short_metrics(select_eval)
    # rulechef stops right after this callback when exact match reaches 0.90;
    # the guidance and patch hooks clear this hint when the loop went on.
    state.stop_hint = "target_reached" if select_eval.exact_match >= 0.90 else None
    _emit(
        state,
        sig.iteration_evaluated,
        {
            "iteration": iteration,
            "max_iterations": state.max_iterations,
            "rule_count": len(rules),
            "metrics": metrics_of(select_eval),
        },
    )


def _after_refine(state: RunState, result: Any) -> None:
    best_rules, best_eval = result
    _remember(state, best_rules)
    best_ids = rule_ids(best_rules)
    kept_seq, kept_iteration = _snapshot_of(state, frozenset(best_ids))
    if state.stop_hint:
        reason = state.stop_hint
    elif state.iteration >= state.max_iterations:
        reason = "max_iterations"
    else:
        reason = "stopped"
    _emit_change(
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
            "metrics": metrics_of(best_eval),
        },
    )


def _snapshot_of(state: RunState, ids: frozenset[str]) -> tuple[int | None, int | None]:
    for snapshot, seq, iteration in reversed(state.snapshots):
        if snapshot == ids:
            return seq, iteration
    return None, None


def _on_guidance(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    guidance, should_continue = result
    if not should_continue:
        state.stop_hint = "coordinator_stop"
    elif not getattr(args.get("eval_result"), "failures", None):
        state.stop_hint = "no_failures"
    else:
        state.stop_hint = None
    _emit(
        state,
        sig.guided,
        {
            "iteration": state.iteration,
            "should_continue": bool(should_continue),
            "guidance_chars": len(guidance or ""),
        },
    )


def _on_critique(state: RunState, args: dict[str, Any], critique: Any, context: None) -> None:
    returned = bool(critique)
    critique = critique if isinstance(critique, dict) else {}
    rule_feedback = critique.get("rule_feedback")
    rule_feedback = rule_feedback if isinstance(rule_feedback, dict) else {}
    _emit(
        state,
        sig.critiqued,
        {
            "iteration": state.iteration + 1,
            "returned": returned,
            # Keys come from an LLM: only known rule ids may enter the trace.
            "rules_with_feedback": sorted(k for k in rule_feedback if k in state.names),
            "feedback_count": len(rule_feedback),
            "task_guidance": bool(critique.get("task_guidance")),
        },
    )


# ---------------------------------------------------------------------------
# Bookkeeping: patches
# ---------------------------------------------------------------------------


def _before_patch(state: RunState, args: dict[str, Any]) -> None:
    state.stop_hint = None
    state.failures = failure_summary(args.get("failures"), args.get("class_metrics"))


def _after_patch(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    patch, deleted_names = result
    if state.phase != "refinement" or patch or deleted_names:
        return
    _emit(
        state,
        sig.patch_decided,
        {
            "iteration": state.iteration,
            "outcome": "empty",
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


def _after_merge_patch(
    state: RunState, args: dict[str, Any], result: list[Any], context: None
) -> None:
    existing, patches = args["existing"], args["patches"]
    _remember(state, [*existing, *patches])
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


def _on_patch_decision(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    pending = state.pending_patch or {"candidate": list(state.working), "patch": []}
    state.pending_patch = None
    accepted = bool(args["accepted"])
    candidate = pending.pop("candidate")
    fields: dict[str, Any] = {
        "iteration": args["iteration"],
        "outcome": "accepted" if accepted else "rejected",
        "accepted": accepted,
        "on_dev": bool(args.get("on_dev")),
        "metrics_before": short_metrics(args["prev_eval"]),
        "metrics_after": short_metrics(args["candidate_eval"]),
        "failures": state.failures,
        # Names come from an LLM: keep only those of rules the run has seen.
        "deleted_names": sorted(set(args.get("deleted_names") or ()) & set(state.names.values())),
    }
    if accepted:
        _emit_change(state, sig.patch_decided, candidate, {**fields, **pending})
        return
    fields["proposed"] = {
        "added": [rid for rid in candidate if rid not in set(state.working)],
        "removed": [rid for rid in state.working if rid not in set(candidate)],
        **pending,
    }
    _emit(
        state,
        sig.patch_decided,
        {
            **fields,
            "added": [],
            "removed": [],
            "rules_after": list(state.working),
            "rule_names": _names_for(state, [], fields),
        },
    )


# ---------------------------------------------------------------------------
# Bookkeeping: audits and pruning
# ---------------------------------------------------------------------------


def _before_audit(phase: str) -> Before:
    def before(state: RunState, args: dict[str, Any]) -> list[Any]:
        state.phase = phase
        state.pending_audit = None
        state.phase_evals = []
        # The final audit works on chef.dataset.rules, the mid one on its argument.
        owner = args["self"]
        return list(owner._chef.dataset.rules if phase == "final_audit" else args["rules"])

    return before


def _after_mid_audit(state: RunState, args: dict[str, Any], result: Any, before: Any) -> None:
    state.phase = "refinement"
    _emit_audit(state, "mid_refinement", before, args["eval_result"], result)


def _after_final_audit(state: RunState, args: dict[str, Any], result: Any, before: Any) -> None:
    state.phase = "done"
    after = result[0] if isinstance(result, tuple) else args["self"]._chef.dataset.rules
    _emit_audit(state, "final", before, args["eval_result"], after)


def _emit_audit(
    state: RunState, stage: str, before: list[Any], pre_eval: Any, after: list[Any]
) -> None:
    actions = list(getattr(state.pending_audit, "actions", None) or [])
    state.pending_audit = None
    _remember(state, after)
    after_ids = rule_ids(after)
    explained = explain_audit(actions, before, after_ids)
    post = state.phase_evals[0] if state.phase_evals else None
    state.phase_evals = []
    fields: dict[str, Any] = {
        "stage": stage,
        "iteration": state.iteration if stage == "mid_refinement" else None,
        "proposed": len(actions),
        **explained,
        "metrics_before": short_metrics(pre_eval),
        "metrics_after": post if explained["actions"] else None,
    }
    _emit_change(state, sig.audit_applied, after_ids, fields)


def _keep_audit(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    state.pending_audit = result


def _capture_eval(phase: str) -> After:
    def after(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
        if state.phase == phase and not state.phase_evals:
            # Only the safety net's evaluation (the first) is reported.
            state.phase_evals.append(short_metrics(result))

    return after


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
    _emit_change(
        state,
        sig.pruned,
        after,
        {
            "reason": "harmful_rules",
            "marginal_f1": marginal,
            "ensemble": ensemble if ranked else None,
        },
    )


# ---------------------------------------------------------------------------
# Coordinator (patched on the chef's own instance, for the duration of a run)
# ---------------------------------------------------------------------------

COORDINATOR_HOOKS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "guide_refinement": _around("guided", after=_on_guidance),
    "critique_rules": _around("critiqued", after=_on_critique),
    "audit_rules": _around("audit_applied", after=_keep_audit),
}

_coordinator_lock = threading.Lock()
# id(coordinator) -> (active runs, {name: instance attribute it had before or _ABSENT})
_coordinator_patches: dict[int, tuple[int, dict[str, Any]]] = {}
_ABSENT = object()


def _patch_coordinator(coordinator: Any) -> bool:
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
            _warn_once(
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
        saved = {name: own.get(name, _ABSENT) for name in wrappers}
        own.update(wrappers)
        _coordinator_patches[key] = (1, saved)
        return True


def _unpatch_coordinator(coordinator: Any) -> None:
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
            if previous is _ABSENT:
                coordinator.__dict__.pop(name, None)
            else:
                coordinator.__dict__[name] = previous


# ---------------------------------------------------------------------------
# The hook table and its installation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """One rulechef method replaced while somebody listens."""

    owner: str  #: "module:Class" in rulechef
    name: str
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
    params: tuple[str, ...]  #: parameters the wrapper relies on
    feeds: str  #: what the reader of a trace misses without it


_PIPELINE = "rulechef.pipeline:LearningPipeline"
_LEARNER = "rulechef.learner:RuleLearner"
_CHEF = "rulechef.engine:RuleChef"

#: Which rulechef method feeds which signal.
HOOKS: tuple[Hook, ...] = (
    Hook(_PIPELINE, "run", _wrap_run, (), "every learning-run event"),
    Hook(
        _PIPELINE,
        "_synthesize",
        _around("synthesized", before=_before_synthesis, after=_after_synthesis),
        ("incremental_only",),
        "synthesized",
    ),
    Hook(
        _PIPELINE,
        "_merge_rules",
        _around("synthesized", after=_after_incremental_merge),
        ("existing", "patches", "deleted_names"),
        "synthesized (incremental), pruned (weak_rules)",
    ),
    Hook(
        _PIPELINE,
        "_audit_rules",
        _around("audit_applied", before=_before_audit("final_audit"), after=_after_final_audit),
        ("rules", "eval_result"),
        "audit_applied (final)",
    ),
    Hook(
        _LEARNER,
        "synthesize_ruleset",
        _around("synthesized", before=_mark_mode("bulk")),
        (),
        "synthesized mode",
    ),
    Hook(
        _LEARNER,
        "synthesize_ruleset_per_class",
        _around("synthesized", before=_mark_mode("per_class")),
        (),
        "synthesized mode",
    ),
    Hook(
        _LEARNER,
        "evaluate_and_refine",
        _wrap_evaluate_and_refine,
        ("iteration_callback", "max_iterations"),
        "iteration_evaluated, refined",
    ),
    Hook(
        _LEARNER,
        "synthesize_patch_ruleset",
        _around("patch_decided", before=_before_patch, after=_after_patch),
        ("failures", "class_metrics"),
        "patch_decided (empty patches, failure summaries)",
    ),
    Hook(
        _LEARNER,
        "_merge_patch",
        _around("patch_decided", after=_after_merge_patch),
        ("existing", "patches", "deleted_names"),
        "patch_decided rule changes",
    ),
    Hook(
        _LEARNER,
        "_log_patch_decision",
        _around("patch_decided", after=_on_patch_decision),
        ("iteration", "prev_eval", "candidate_eval", "accepted", "on_dev", "deleted_names"),
        "patch_decided",
    ),
    Hook(
        _LEARNER,
        "_run_mid_refinement_audit",
        _around("audit_applied", before=_before_audit("mid_audit"), after=_after_mid_audit),
        ("rules", "eval_result"),
        "audit_applied (mid_refinement)",
    ),
    Hook(
        _LEARNER,
        "_evaluate_rules",
        _around("audit_applied", after=_capture_eval("mid_audit"), bind=False),
        (),
        "mid-refinement audit metrics",
    ),
    Hook(
        _CHEF,
        "evaluate",
        _around("audit_applied", after=_capture_eval("final_audit"), bind=False),
        (),
        "final audit metrics",
    ),
    Hook(_CHEF, "rank_rules", _wrap_rank_rules, ("prune",), "rank_rules(prune=True) traces"),
)

_lock = threading.RLock()
# Bumped on every uninstall; a wrapper made in an older generation passes calls through.
_generation = 0
# (class, name) -> the exact object found in the class __dict__ (or _ABSENT)
_originals: dict[tuple[type, str], Any] = {}
# (class, name) -> the object we set there
_installed: dict[tuple[type, str], Any] = {}
_warned: set[tuple[str, ...]] = set()


def installed() -> bool:
    """Tell whether rulechef's methods are currently wrapped."""
    return bool(_originals)


def _resolve(hook: Hook) -> tuple[type, Any] | None:
    """Find the hooked class and method, or None when this rulechef lacks them."""
    import importlib

    module_name, class_name = hook.owner.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        method = inspect.getattr_static(cls, hook.name)
    except (ImportError, AttributeError):
        return None
    func = method.__func__ if isinstance(method, staticmethod) else method
    if not callable(func):
        return None
    try:
        names = set(_signature(func).parameters)
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
    missing = []
    for hook in HOOKS:
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


def _install_one(cls: type, hook: Hook, method: Any) -> None:
    is_static = isinstance(method, staticmethod)
    func = method.__func__ if is_static else method
    original = cls.__dict__.get(hook.name, _ABSENT)
    if func in _ours:
        # A wrapper of ours that another patch put back after we left: unwrap, never nest.
        func = _ours[func]
        original = staticmethod(func) if is_static else func
    wrapper = hook.wrap(func)
    _ours[wrapper] = func
    replacement = staticmethod(wrapper) if is_static else wrapper
    _originals[(cls, hook.name)] = original
    _installed[(cls, hook.name)] = replacement
    setattr(cls, hook.name, replacement)


def _warn_once(key: tuple[str, ...], message: str, *args: Any) -> None:
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message, *args)


def _warn_missing(missing: list[Hook]) -> None:
    _warn_once(
        tuple(f"{h.owner}.{h.name}" for h in missing),
        "rulechef_trace: rulechef %s lacks (or changed) %s; these events will be missing: %s. "
        "Everything else is traced.",
        _rulechef_version(),
        ", ".join(h.owner.split(":")[1] + "." + h.name for h in missing),
        "; ".join(h.feeds for h in missing),
    )


def _uninstall() -> None:
    global _generation
    # Every wrapper made so far turns inert, also one another patch keeps alive.
    _generation += 1
    for (cls, name), original in _originals.items():
        if cls.__dict__.get(name) is not _installed[(cls, name)]:
            # Somebody patched over our wrapper; removing theirs would break them.
            _warn_once(
                ("foreign", cls.__qualname__, name),
                "rulechef_trace: %s.%s was patched again while traced; leaving that patch "
                "in place (our wrapper inside it passes calls straight through)",
                cls.__qualname__,
                name,
            )
            continue
        if original is _ABSENT:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()
    _installed.clear()


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


def _wanted() -> bool:
    """Whether anybody listens; uninstalls lazily when receivers vanished silently."""
    if any(_live_receivers(s) for s in sig.ALL_SIGNALS):
        return True
    refresh()
    return False


def refresh() -> None:
    """Install or remove the hooks so they exist exactly while somebody listens.

    Called automatically whenever a receiver connects to or disconnects from a
    rulechef_trace signal, and when a weakly held receiver is collected.
    """
    with _lock:
        listening = any(_live_receivers(s) for s in sig.ALL_SIGNALS)
        if listening and not _originals:
            _install()
        elif not listening and _originals:
            _uninstall()


def _on_connected(signal: NamedSignal, **kwargs: Any) -> None:
    receiver = kwargs.get("receiver")
    if kwargs.get("weak", True) and receiver is not None:
        _watch(getattr(receiver, "__self__", receiver))
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


for _signal in sig.ALL_SIGNALS:
    _signal.receiver_connected.connect(_on_connected, weak=False)
    _signal.receiver_disconnected.connect(_on_disconnected, weak=False)
