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
import re
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
    last_select: Any = None
    failures: dict[str, Any] | None = None
    pending_patch: dict[str, Any] | None = None
    pending_audit: Any = None
    phase_evals: list[Any] = field(default_factory=list)
    snapshots: list[tuple[frozenset[str], int, int]] = field(default_factory=list)
    hook_errors: int = 0
    receiver_errors: int = 0
    result: Any = None


_current: ContextVar[RunState | None] = ContextVar("rulechef_trace_run", default=None)


def current_run() -> RunState | None:
    """Return the state of the run in progress in this context, if it is traced."""
    return _current.get()


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rule_ids(rules: Iterable[Any]) -> list[str]:
    return [r.id for r in rules]


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
# Metrics and summaries (plain data, ids and numbers only)
# ---------------------------------------------------------------------------


def metrics_of(result: Any, *, per_class: bool = True) -> dict[str, Any] | None:
    """Turn a rulechef ``EvalResult`` into the trace's metrics dict."""
    if result is None:
        return None
    out: dict[str, Any] = {
        "f1": result.micro_f1,
        "precision": result.micro_precision,
        "recall": result.micro_recall,
        "exact_match": result.exact_match,
        "docs": result.total_docs,
        "failures": len(result.failures or ()),
    }
    if per_class:
        out["per_class"] = [_class_metrics(cm) for cm in result.per_class or ()]
    return out


def _class_metrics(cm: Any) -> dict[str, Any]:
    return {
        "label": cm.label,
        "precision": cm.precision,
        "recall": cm.recall,
        "f1": cm.f1,
        "tp": cm.tp,
        "fp": cm.fp,
        "fn": cm.fn,
    }


def _failure_summary(failures: Any, class_metrics: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {"count": len(failures or ())}
    if class_metrics:
        summary["per_class"] = {
            cm.label: {"fp": cm.fp, "fn": cm.fn} for cm in class_metrics if cm.fp or cm.fn
        }
    return summary


def _labels_of(rules: Iterable[Any]) -> dict[str, int]:
    """Count rules per output label (rulechef's output_template label/type)."""
    counts: dict[str, int] = {}
    for r in rules:
        template = r.output_template if isinstance(r.output_template, dict) else {}
        label = template.get("label") or template.get("type")
        if isinstance(label, str) and not label.startswith("$"):
            counts[label] = counts.get(label, 0) + 1
    return counts


# ---------------------------------------------------------------------------
# Explaining rulechef's merges (ids only; checked against the real result)
# ---------------------------------------------------------------------------


def explain_name_merge(
    existing: list[Any], patches: list[Any], deleted_names: Iterable[str] | None
) -> dict[str, Any]:
    """Describe rulechef's by-name merge of a patch into a rule set.

    rulechef keys rules by name: a patch rule replaces the existing rule of the
    same name, deleted names are dropped, and of several rules sharing a name
    only the last survives ("collapsed").

    Returns:
        ``merged`` (ids after the by-name merge), ``replaced`` ({old, new}
        pairs), ``deleted`` and ``collapsed`` (ids).
    """
    by_name: dict[str, str] = {}
    collapsed: list[str] = []
    for r in existing:
        if r.name in by_name:
            collapsed.append(by_name[r.name])
        by_name[r.name] = r.id
    original = dict(by_name)
    dropped = {n: by_name.pop(n) for n in sorted(deleted_names or ()) if n in by_name}
    patched: dict[str, str] = {}
    for p in patches:
        if p.name in patched:
            collapsed.append(patched[p.name])
        patched[p.name] = p.id
        by_name[p.name] = p.id
    return {
        "merged": list(by_name.values()),
        "replaced": [
            {"old": original[name], "new": rid} for name, rid in patched.items() if name in original
        ],
        "deleted": [rid for name, rid in dropped.items() if name not in patched],
        "collapsed": collapsed,
    }


def explain_audit(
    actions: Iterable[Any], before: list[Any], after_ids: list[str]
) -> dict[str, Any]:
    """Replay rulechef's audit rules on ids to say what was applied, skipped or reverted.

    rulechef applies a merge only when at least two of its ids are known and
    its merged pattern compiles; a merge makes one new rule appended at the
    end. Any applied action changes the rule set, so an unchanged set after
    applied actions means the F1 safety net reverted them.
    """
    current = {r.id: r for r in before}
    before_ids = set(current)
    new_ids = iter([rid for rid in after_ids if rid not in before_ids])
    applied: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for a in actions:
        ids = list(a.rule_ids or [])
        if a.action == "merge":
            sources = [current[rid] for rid in ids if rid in current]
            why = _merge_skip_reason(ids, sources, a.merged_pattern)
            if why:
                skipped.append(_skipped("merge", ids, before_ids, why))
                continue
            base = max(sources, key=lambda r: r.priority)
            result = next(new_ids, None)
            for rid in ids:
                current.pop(rid, None)
            applied.append(
                {
                    "action": "merge",
                    "sources": [r.id for r in sources],
                    "result": result,
                    "name": a.merged_name or base.name,
                }
            )
        elif a.action == "remove":
            known = [rid for rid in ids if rid in current]
            if not known:
                skipped.append(_skipped("remove", ids, before_ids, "unknown rule ids"))
                continue
            for rid in known:
                current.pop(rid)
            applied.append({"action": "remove", "rules": known})
        else:
            skipped.append(_skipped("other", ids, before_ids, "unknown action"))
    reverted = bool(applied) and set(after_ids) == before_ids
    return {"actions": applied, "skipped": skipped, "reverted": reverted}


def _skipped(action: str, ids: list[str], known: set[str], why: str) -> dict[str, Any]:
    # Ids come from an LLM: only real rule ids may enter the trace.
    return {
        "action": action,
        "rules": [rid for rid in ids if rid in known],
        "unknown_ids": sum(1 for rid in ids if rid not in known),
        "why": why,
    }


def _merge_skip_reason(ids: list[str], sources: list[Any], pattern: str | None) -> str | None:
    if len(ids) < 2 or len(sources) < 2:
        return "fewer than two known rules"
    if pattern:
        try:
            re.compile(pattern)
        except re.error:
            return "merged pattern does not compile"
    return None


# ---------------------------------------------------------------------------
# Run lifecycle
# ---------------------------------------------------------------------------


def _start_run(chef: Any, kind: str, params: dict[str, Any]) -> RunState:
    dataset = getattr(chef, "dataset", None)
    rules = list(getattr(dataset, "rules", None) or [])
    state = RunState(chef=chef, kind=kind)
    state.working = _rule_ids(rules)
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
    dataset = getattr(state.chef, "dataset", None)
    rules = list(getattr(dataset, "rules", None) or [])
    _remember(state, rules)
    final_ids = _rule_ids(rules)
    fields: dict[str, Any] = {}
    if set(final_ids) != set(state.working):
        # A path no hook saw changed the rules; keep the replay invariant and say so.
        logger.warning(
            "rulechef_trace: run %s ended with rule changes no hook explained", state.run_id
        )
        fields["unexplained"] = True
        _emit_change(state, sig.pruned, final_ids, {"reason": "unexplained"})
    if error is not None:
        state.status = "failed"
    metrics = None
    if state.kind == "learn" and isinstance(result, tuple) and len(result) == 2:
        metrics = metrics_of(result[1])
    duration = time.perf_counter() - state.started
    fields.update(
        {
            "status": state.status,
            "error": _describe_error(error),
            "ended_at": _utc_now(),
            "duration_s": round(duration, 6),
            "rules": final_ids,
            "rule_names": {rid: state.names.get(rid, "?") for rid in final_ids},
            "metrics": metrics,
            "stats": {
                "hook_errors": state.hook_errors,
                "receiver_errors": state.receiver_errors,
            },
        }
    )
    _emit(state, sig.finalized, fields)


def _describe_error(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"type": type(error).__qualname__, "message": str(error)[:500]}


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
    patched = _guard(state, "coordinator", _patch_coordinator, getattr(chef, "coordinator", None))
    outcome: dict[str, Any] = {}
    try:
        yield state
    except BaseException as exc:
        outcome["error"] = exc
        raise
    finally:
        if patched:
            _guard(state, "coordinator", _unpatch_coordinator, chef.coordinator)
        _current.reset(token)
        _guard(state, "finalized", _finish_run, state, state.result, outcome.get("error"))


# ---------------------------------------------------------------------------
# Wrappers: LearningPipeline
# ---------------------------------------------------------------------------


def _wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _wanted():
            return original(self, *args, **kwargs)
        chef = self._chef
        params = _guard(None, "params", _bound_params, signature, self, args, kwargs) or {}
        with _run(chef, "learn", {**params, **_chef_params(chef)}) as state:
            result = original(self, *args, **kwargs)
            if state is not None:
                state.result = result
                if result is None:
                    state.status = "no_rules" if state.synth_called else "not_enough_data"
            return result

    return run


def _bound_params(
    signature: inspect.Signature, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    bound = signature.bind(owner, *args, **kwargs)
    bound.apply_defaults()
    return {
        k: v
        for k, v in list(bound.arguments.items())[1:]
        if v is None or isinstance(v, (str, int, float, bool))
    }


def _wrap_synthesize(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _synthesize(self: Any, incremental_only: bool, *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, incremental_only, *args, **kwargs)
        state.synth_called = True
        state.phase = "synthesis"
        incremental = bool(incremental_only and self._chef.dataset.rules)
        rules = original(self, incremental_only, *args, **kwargs)
        if not incremental:
            _guard(state, "synthesized", _after_full_synthesis, state, self._chef, rules)
        state.phase = "refinement"
        return rules

    return _synthesize


def _data_counts(chef: Any) -> dict[str, int]:
    dataset = chef.dataset
    return {
        "examples": len(dataset.examples),
        "corrections": len(dataset.corrections),
        "feedback": len(dataset.structured_feedback),
    }


def _after_full_synthesis(state: RunState, chef: Any, rules: list[Any] | None) -> None:
    fields = {
        "mode": state.synth_mode or "bulk",
        "count": len(rules or ()),
        "data": _data_counts(chef),
        "per_label": _labels_of(rules or ()),
    }
    if not rules:
        # rulechef keeps the old rules when synthesis produced none.
        _emit_change(state, sig.synthesized, list(state.working), fields)
        return
    _remember(state, rules)
    _emit_change(state, sig.synthesized, _rule_ids(rules), fields)


def _wrap_merge_rules(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _merge_rules(
        self: Any, existing: list[Any], patches: list[Any], deleted_names: Any = None
    ) -> Any:
        state = _current.get()
        if state is None:
            return original(self, existing, patches, deleted_names)
        result = original(self, existing, patches, deleted_names)
        _guard(
            state,
            "synthesized",
            _after_incremental_merge,
            state,
            self._chef,
            existing,
            patches,
            deleted_names,
            result,
        )
        return result

    return _merge_rules


def _after_incremental_merge(
    state: RunState,
    chef: Any,
    existing: list[Any],
    patches: list[Any],
    deleted_names: Any,
    result: list[Any],
) -> None:
    _remember(state, list(existing) + list(patches))
    merge = explain_name_merge(existing, patches, deleted_names)
    result_ids = _rule_ids(result)
    merged = merge["merged"] if set(result_ids) <= set(merge["merged"]) else result_ids
    _emit_change(
        state,
        sig.synthesized,
        merged,
        {
            "mode": "incremental",
            "count": len(patches),
            "data": _data_counts(chef),
            "per_label": _labels_of(patches),
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


def _wrap_audit_rules(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _audit_rules(self: Any, rules: list[Any], eval_result: Any, *args: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, rules, eval_result, *args)
        before = list(self._chef.dataset.rules)
        state.phase = "final_audit"
        state.pending_audit = None
        state.phase_evals = []
        result = original(self, rules, eval_result, *args)
        state.phase = "done"
        _guard(
            state,
            "audit_applied",
            _after_audit,
            state,
            "final",
            before,
            eval_result,
            result[0] if isinstance(result, tuple) else self._chef.dataset.rules,
        )
        return result

    return _audit_rules


def _after_audit(
    state: RunState, stage: str, before: list[Any], pre_eval: Any, after: list[Any]
) -> None:
    audit = state.pending_audit
    state.pending_audit = None
    _remember(state, after)
    after_ids = _rule_ids(after)
    actions = list(getattr(audit, "actions", None) or [])
    explained = explain_audit(actions, before, after_ids)
    post = state.phase_evals[0] if state.phase_evals else None
    fields: dict[str, Any] = {
        "stage": stage,
        "iteration": state.iteration if stage == "mid_refinement" else None,
        "proposed": len(actions),
        **explained,
        "metrics_before": _f1p(pre_eval),
        "metrics_after": _f1p(post) if explained["actions"] else None,
    }
    _emit_change(state, sig.audit_applied, after_ids, fields)


def _f1p(result: Any) -> dict[str, Any] | None:
    return metrics_of(result, per_class=False) if result is not None else None


# ---------------------------------------------------------------------------
# Wrappers: RuleLearner
# ---------------------------------------------------------------------------


def _wrap_mark_mode(mode: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def synthesize(self: Any, *args: Any, **kwargs: Any) -> Any:
            state = _current.get()
            if state is not None:
                # The last one entered wins: per-class falls back to bulk without classes.
                state.synth_mode = mode
            return original(self, *args, **kwargs)

        return synthesize

    return wrap


def _wrap_evaluate_and_refine(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def evaluate_and_refine(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        user_callback = bound.arguments.get("iteration_callback")
        bound.arguments["iteration_callback"] = _iteration_callback(state, user_callback)
        state.phase = "refinement"
        state.max_iterations = bound.arguments.get("max_iterations") or 0
        state.iteration = 0
        state.stop_hint = None
        result = original(*bound.args, **bound.kwargs)
        _guard(state, "refined", _after_refine, state, result)
        return result

    return evaluate_and_refine


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
    state.last_select = select_eval
    # rulechef stops right after this callback when exact match reaches 0.90;
    # the guidance hook clears this hint when the loop went on instead.
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
    best_ids = _rule_ids(best_rules)
    last_ids = list(state.working)
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
            "kept_earlier": set(best_ids) != set(last_ids),
            "metrics": metrics_of(best_eval) if best_eval is not None else None,
        },
    )


def _snapshot_of(state: RunState, ids: frozenset[str]) -> tuple[int | None, int | None]:
    for snapshot, seq, iteration in reversed(state.snapshots):
        if snapshot == ids:
            return seq, iteration
    return None, None


def _wrap_patch_ruleset(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def synthesize_patch_ruleset(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, *args, **kwargs)
        _guard(state, "patch", _before_patch, state, signature, self, args, kwargs)
        result = original(self, *args, **kwargs)
        _guard(state, "patch_decided", _after_patch, state, result)
        return result

    return synthesize_patch_ruleset


def _before_patch(
    state: RunState,
    signature: inspect.Signature,
    owner: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    bound = signature.bind(owner, *args, **kwargs)
    state.stop_hint = None
    state.failures = _failure_summary(
        bound.arguments.get("failures"), bound.arguments.get("class_metrics")
    )


def _after_patch(state: RunState, result: Any) -> None:
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
            "metrics_before": _f1p(state.last_select),
            "metrics_after": None,
            "failures": state.failures,
            "added": [],
            "removed": [],
            "rules_after": list(state.working),
        },
    )


def _wrap_merge_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _merge_patch(existing: list[Any], patches: list[Any], deleted_names: Any = None) -> Any:
        state = _current.get()
        if state is None:
            return original(existing, patches, deleted_names)
        result = original(existing, patches, deleted_names)
        _guard(state, "patch", _after_merge_patch, state, existing, patches, deleted_names, result)
        return result

    return _merge_patch


def _after_merge_patch(
    state: RunState, existing: list[Any], patches: list[Any], deleted_names: Any, result: list[Any]
) -> None:
    _remember(state, list(existing) + list(patches))
    merge = explain_name_merge(existing, patches, deleted_names)
    result_ids = _rule_ids(result)
    deduped = [rid for rid in merge["merged"] if rid not in set(result_ids)]
    state.pending_patch = {
        "candidate": result_ids,
        "patch": _rule_ids(patches),
        "replaced": merge["replaced"],
        "deleted": merge["deleted"],
        "collapsed": merge["collapsed"],
        "deduped": deduped,
    }


def _wrap_log_patch_decision(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def _log_patch_decision(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        result = original(self, *args, **kwargs)
        if state is not None:
            _guard(state, "patch_decided", _on_patch_decision, state, signature, self, args, kwargs)
        return result

    return _log_patch_decision


def _on_patch_decision(
    state: RunState,
    signature: inspect.Signature,
    owner: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    a = signature.bind(owner, *args, **kwargs).arguments
    pending = state.pending_patch or {"candidate": list(state.working), "patch": []}
    state.pending_patch = None
    accepted = bool(a["accepted"])
    candidate = pending.pop("candidate")
    proposed_added = [rid for rid in candidate if rid not in set(state.working)]
    proposed_removed = [rid for rid in state.working if rid not in set(candidate)]
    fields: dict[str, Any] = {
        "iteration": a["iteration"],
        "outcome": "accepted" if accepted else "rejected",
        "accepted": accepted,
        "on_dev": bool(a.get("on_dev")),
        "metrics_before": _f1p(a["prev_eval"]),
        "metrics_after": _f1p(a["candidate_eval"]),
        "failures": state.failures,
        # Names come from an LLM: keep only those of rules the run has seen.
        "deleted_names": sorted(set(a.get("deleted_names") or ()) & set(state.names.values())),
    }
    if accepted:
        _emit_change(state, sig.patch_decided, candidate, {**fields, **pending})
        return
    fields["proposed"] = {"added": proposed_added, "removed": proposed_removed, **pending}
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


def _wrap_mid_audit(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def _run_mid_refinement_audit(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, *args, **kwargs)
        a = signature.bind(self, *args, **kwargs).arguments
        before = list(a["rules"])
        state.pending_audit = None
        state.phase_evals = []
        state.phase = "mid_audit"
        result = original(self, *args, **kwargs)
        state.phase = "refinement"
        _guard(
            state,
            "audit_applied",
            _after_audit,
            state,
            "mid_refinement",
            before,
            a["eval_result"],
            result,
        )
        return result

    return _run_mid_refinement_audit


def _wrap_capture_eval(
    phases: frozenset[str],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def evaluate(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            state = _current.get()
            if state is not None and state.phase in phases:
                state.phase_evals.append(result)
            return result

        return evaluate

    return wrap


# ---------------------------------------------------------------------------
# Wrappers: RuleChef.rank_rules (a short run of its own)
# ---------------------------------------------------------------------------


def _wrap_rank_rules(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def rank_rules(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _wanted():
            return original(self, *args, **kwargs)
        params = _guard(None, "params", _bound_params, signature, self, args, kwargs) or {}
        if not params.get("prune"):
            return original(self, *args, **kwargs)
        with _run(self, "rank_rules", params) as state:
            report = original(self, *args, **kwargs)
            if state is not None:
                _guard(state, "pruned", _after_rank, state, self, report)
            return report

    return rank_rules


def _after_rank(state: RunState, chef: Any, report: Any) -> None:
    after = list(chef.dataset.rules or [])
    after_ids = set(_rule_ids(after))
    removed = [rid for rid in state.working if rid not in after_ids]
    marginal = {
        r.rule_id: r.marginal_f1 for r in getattr(report, "rankings", ()) if r.rule_id in removed
    }
    ranking = {
        "f1": getattr(report, "ensemble_f1", None),
        "precision": getattr(report, "ensemble_precision", None),
        "recall": getattr(report, "ensemble_recall", None),
    }
    _emit_change(
        state,
        sig.pruned,
        _rule_ids(after),
        {"reason": "harmful_rules", "marginal_f1": marginal, "ensemble": ranking},
    )


# ---------------------------------------------------------------------------
# Coordinator (patched on the chef's own instance, for the duration of a run)
# ---------------------------------------------------------------------------


def _coordinator_guide(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guide_refinement(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        state = _current.get()
        if state is not None:
            _guard(state, "guided", _on_guidance, state, args, kwargs, result)
        return result

    return guide_refinement


def _on_guidance(
    state: RunState, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
) -> None:
    guidance, should_continue = result
    eval_result = args[0] if args else kwargs.get("eval_result")
    has_failures = bool(getattr(eval_result, "failures", None))
    if not should_continue:
        state.stop_hint = "coordinator_stop"
    elif not has_failures:
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


def _coordinator_critique(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def critique_rules(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        state = _current.get()
        if state is not None:
            _guard(state, "critiqued", _on_critique, state, result)
        return result

    return critique_rules


def _on_critique(state: RunState, critique: Any) -> None:
    critique = critique if isinstance(critique, dict) else {}
    rule_feedback = critique.get("rule_feedback")
    rule_feedback = rule_feedback if isinstance(rule_feedback, dict) else {}
    _emit(
        state,
        sig.critiqued,
        {
            "iteration": state.iteration + 1,
            "returned": bool(critique),
            # Keys come from an LLM: only known rule ids may enter the trace.
            "rules_with_feedback": sorted(k for k in rule_feedback if k in state.names),
            "feedback_count": len(rule_feedback),
            "task_guidance": bool(critique.get("task_guidance")),
        },
    )


def _coordinator_audit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def audit_rules(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        state = _current.get()
        if state is not None:
            state.pending_audit = result
        return result

    return audit_rules


COORDINATOR_HOOKS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "guide_refinement": _coordinator_guide,
    "critique_rules": _coordinator_critique,
    "audit_rules": _coordinator_audit,
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
        saved: dict[str, Any] = {}
        own = getattr(coordinator, "__dict__", None)
        if own is None:
            logger.warning(
                "rulechef_trace: coordinator %s has no instance dict; guided, critiqued "
                "and proposed audit actions will be missing",
                type(coordinator).__qualname__,
            )
            return False
        for name, wrap in COORDINATOR_HOOKS.items():
            method = getattr(coordinator, name, None)
            if callable(method):
                saved[name] = own.get(name, _ABSENT)
                own[name] = wrap(method)
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


HOOKS: tuple[Hook, ...] = (
    Hook("rulechef.pipeline:LearningPipeline", "run", _wrap_run, (), "every learning-run event"),
    Hook(
        "rulechef.pipeline:LearningPipeline",
        "_synthesize",
        _wrap_synthesize,
        ("incremental_only",),
        "synthesized",
    ),
    Hook(
        "rulechef.pipeline:LearningPipeline",
        "_merge_rules",
        _wrap_merge_rules,
        ("existing", "patches", "deleted_names"),
        "synthesized (incremental), pruned",
    ),
    Hook(
        "rulechef.pipeline:LearningPipeline",
        "_audit_rules",
        _wrap_audit_rules,
        ("rules", "eval_result"),
        "audit_applied (final)",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "synthesize_ruleset",
        _wrap_mark_mode("bulk"),
        (),
        "synthesized mode",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "synthesize_ruleset_per_class",
        _wrap_mark_mode("per_class"),
        (),
        "synthesized mode",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "evaluate_and_refine",
        _wrap_evaluate_and_refine,
        ("iteration_callback", "max_iterations"),
        "iteration_evaluated, refined",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "synthesize_patch_ruleset",
        _wrap_patch_ruleset,
        ("failures", "class_metrics"),
        "patch_decided (empty patches, failure summaries)",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "_merge_patch",
        _wrap_merge_patch,
        ("existing", "patches", "deleted_names"),
        "patch_decided rule changes",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "_log_patch_decision",
        _wrap_log_patch_decision,
        ("iteration", "prev_eval", "candidate_eval", "accepted", "on_dev", "deleted_names"),
        "patch_decided",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "_run_mid_refinement_audit",
        _wrap_mid_audit,
        ("rules", "eval_result"),
        "audit_applied (mid_refinement)",
    ),
    Hook(
        "rulechef.learner:RuleLearner",
        "_evaluate_rules",
        _wrap_capture_eval(frozenset({"mid_audit"})),
        (),
        "mid-refinement audit metrics",
    ),
    Hook(
        "rulechef.engine:RuleChef",
        "evaluate",
        _wrap_capture_eval(frozenset({"final_audit"})),
        (),
        "final audit metrics",
    ),
    Hook(
        "rulechef.engine:RuleChef",
        "rank_rules",
        _wrap_rank_rules,
        ("prune",),
        "rank_rules(prune=True) traces",
    ),
)

_lock = threading.RLock()
# (class, name) -> the exact object found in the class __dict__ (or _ABSENT)
_originals: dict[tuple[type, str], Any] = {}
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
        names = set(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None
    if not set(hook.params) <= names:
        return None
    return cls, method


def _install() -> None:
    missing = []
    for hook in HOOKS:
        found = _resolve(hook)
        if found is None:
            missing.append(hook)
            continue
        cls, method = found
        key = (cls, hook.name)
        if key in _originals:
            continue
        _originals[key] = cls.__dict__.get(hook.name, _ABSENT)
        if isinstance(method, staticmethod):
            setattr(cls, hook.name, staticmethod(hook.wrap(method.__func__)))
        else:
            setattr(cls, hook.name, hook.wrap(method))
    if missing:
        _warn_missing(missing)


def _warn_missing(missing: list[Hook]) -> None:
    key = tuple(f"{h.owner}.{h.name}" for h in missing)
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(
        "rulechef_trace: rulechef %s lacks (or changed) %s; these events will be missing: %s. "
        "Everything else is traced.",
        _rulechef_version(),
        ", ".join(h.owner.split(":")[1] + "." + h.name for h in missing),
        "; ".join(h.feeds for h in missing),
    )


def _uninstall() -> None:
    for (cls, name), original in _originals.items():
        if original is _ABSENT:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()


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
        # blinker forgets a collected weak receiver without telling anybody.
        target = getattr(receiver, "__self__", receiver)
        with contextlib.suppress(TypeError):
            weakref.finalize(target, refresh)
    refresh()


def _on_disconnected(signal: NamedSignal, **kwargs: Any) -> None:
    refresh()


for _signal in sig.ALL_SIGNALS:
    _signal.receiver_connected.connect(_on_connected, weak=False)
    _signal.receiver_disconnected.connect(_on_disconnected, weak=False)
