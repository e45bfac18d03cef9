"""Synthesis: bulk, per-class and incremental, told as ``synthesized`` (and weak-rule pruning)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rulechef_trace import signals as sig
from rulechef_trace._capture.rulechef02.facts import explain_name_merge, labels_of, rule_ids
from rulechef_trace._capture.rulechef02.llm_steps import dropped, failed_labels, llm_fields
from rulechef_trace._capture.state import RunState, emit_change, remember
from rulechef_trace._capture.wrappers import Before


def mark_mode(mode: str) -> Before:
    def before(state: RunState, args: dict[str, Any]) -> None:
        # The last one entered wins: per-class falls back to bulk without classes.
        state.synth_mode = mode

    return before


def before_synthesis(state: RunState, args: dict[str, Any]) -> bool:
    state.synth_called = True
    state.phase = "synthesis"
    chef = args["self"]._chef
    if state.baseline_pending:
        # The task was discovered during this run: its dataset (and the rules
        # stored with it) appeared after run_started.
        state.baseline_pending = False
        remember(state, chef.dataset.rules)
        state.loaded = [r.id for r in chef.dataset.rules if r.id not in set(state.working)]
    return bool(args["incremental_only"] and chef.dataset.rules)


def after_synthesis(
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
        "per_label": _per_label(state, chef, rules or ()),
        **({"loaded": state.loaded} if state.loaded else {}),
        **_llm_facts(state, chef),
    }
    # rulechef keeps the chef's rules when synthesis produced none.
    after = rule_ids(rules) if rules else rule_ids(chef.dataset.rules)
    remember(state, rules or ())
    emit_change(state, sig.synthesized, after, fields)


def _llm_facts(state: RunState, chef: Any) -> dict[str, Any]:
    return {
        **llm_fields(state, "synthesis"),
        "dropped": dropped(state),
        "failed_labels": failed_labels(state, known_classes(state, chef)),
    }


def known_classes(state: RunState, chef: Any) -> frozenset[str]:
    """The dataset's classes: as rulechef listed them in this run, else asked once.

    rulechef lists them itself for per-class and "auto" synthesis (the hook on
    ``_get_classes`` keeps its answer); only a bulk or incremental run makes
    the capture ask, once per run, since the answer walks every example.
    """
    if state.classes is not None:
        return state.classes
    get_classes = getattr(getattr(chef, "learner", None), "_get_classes", None)
    dataset = getattr(chef, "dataset", None)
    if not callable(get_classes) or dataset is None:
        return frozenset()  # not known yet (a task still to be discovered): nothing passes
    state.classes = frozenset(c for c in get_classes(dataset) if isinstance(c, str))
    return state.classes


def _per_label(state: RunState, chef: Any, rules: Iterable[Any]) -> dict[str, int]:
    """Rules per output label; a label the dataset does not have counts as "(other)".

    Labels in rules are written by the LLM; only the dataset's own classes
    (rulechef's ``_get_classes``, read from the labels alone) enter a trace.
    """
    known = known_classes(state, chef)
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


def after_incremental_merge(
    state: RunState, args: dict[str, Any], result: list[Any], context: None
) -> None:
    existing, patches = args["existing"], args["patches"]
    remember(state, [*existing, *patches])
    merge = explain_name_merge(existing, patches, args["deleted_names"])
    result_ids = rule_ids(result)
    merged = merge["merged"] if set(result_ids) <= set(merge["merged"]) else result_ids
    emit_change(
        state,
        sig.synthesized,
        merged,
        {
            "mode": "incremental",
            "count": len(patches),
            "data": _data_counts(args["self"]._chef),
            "per_label": _per_label(state, args["self"]._chef, patches),
            **({"loaded": state.loaded} if state.loaded else {}),
            **_llm_facts(state, args["self"]._chef),
            "failures": state.failures,
            "replaced": merge["replaced"],
            "deleted": merge["deleted"],
            "collapsed": merge["collapsed"],
        },
    )
    if set(result_ids) != set(merged):
        emit_change(
            state,
            sig.pruned,
            result_ids,
            {
                "reason": "weak_rules",
                "criteria": "times_applied >= 3, successes == 0, failures >= 3",
            },
        )
