"""Every path of a learning run that changes the working rule set is an event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rulechef import RuleChef
from rulechef.coordinator import AgenticCoordinator, AuditAction, AuditResult
from rulechef.core import Dataset, Example
from rulechef.splitting import split_dataset
from rulechef.training_logger import TrainingDataLogger

from rulechef_trace import load_trace, record_trace, replay
from tests.conftest import story
from tests.scripted import (
    BREAK,
    FIX_ALL,
    FIX_NEG,
    FIX_POS,
    ScriptedLLM,
    StopAfterCoordinator,
    as_client,
    audit_merge,
    ids_by_name,
    last_trace,
    make_chef,
    restoring_llm,
    rule,
    target_class,
    task,
)

COORDINATORS = ["simple", "agentic", "custom"]


def coordinator_for(kind: str) -> Any:
    return StopAfterCoordinator() if kind == "custom" else kind


def names(trace: Any, ids: list[str]) -> list[str]:
    return sorted(trace.name_of(i) for i in ids)


# --- synthesis --------------------------------------------------------------


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_per_class_synthesis_adds_one_rule_per_class(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=1)
    synth = trace.events_of("synthesized")[0]
    assert story(trace)[:2] == ["run_started", "synthesized"]
    assert synth["mode"] == "per_class"
    assert synth["removed"] == []
    assert names(trace, synth["added"]) == ["neg words", "pos words"]
    assert synth["per_label"] == {"neg": 1, "pos": 1}
    assert synth["data"]["examples"] == 12


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_bulk_synthesis_is_reported_as_bulk(tmp_path, learn, coordinator):
    chef = make_chef(
        tmp_path, ScriptedLLM(), coordinator_for(coordinator), synthesis_strategy="bulk"
    )
    trace, _ = learn(chef, max_refinement_iterations=1)
    synth = trace.events_of("synthesized")[0]
    assert synth["mode"] == "bulk"
    assert names(trace, synth["added"]) == ["neg words", "pos words"]


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_full_resynthesis_replaces_the_previous_rules(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(), coordinator_for(coordinator))
    first, _ = learn(chef, max_refinement_iterations=1)
    second, _ = learn(chef, max_refinement_iterations=1)
    start, synth = second.events[0], second.events_of("synthesized")[0]
    assert sorted(start["rules"]) == sorted(first.final_rules)
    assert sorted(synth["removed"]) == sorted(first.final_rules)
    assert len(synth["added"]) == 2


# --- patches ----------------------------------------------------------------


def patch_records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    return [e["metadata"] for e in entries if e["call_type"] == "patch_decision"]


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_patch_decisions_match_rulechefs_training_logger(tmp_path, learn, coordinator):
    log = tmp_path / "calls.jsonl"
    llm = ScriptedLLM(patch=[BREAK, FIX_ALL])
    chef = make_chef(
        tmp_path, llm, coordinator_for(coordinator), training_logger=TrainingDataLogger(str(log))
    )
    trace, _ = learn(chef, max_refinement_iterations=3)
    decided = trace.events_of("patch_decided")
    records = patch_records(log)
    assert [e["accepted"] for e in decided] == [r["accepted"] for r in records] == [False, True]
    for event, record in zip(decided, records, strict=True):
        assert event["iteration"] == record["iteration"]
        assert round(event["metrics_before"]["f1"], 4) == record["prev_micro_f1"]
        assert round(event["metrics_after"]["f1"], 4) == record["candidate_micro_f1"]
        assert round(event["metrics_before"]["precision"], 4) == record["prev_micro_precision"]
        assert round(event["metrics_after"]["precision"], 4) == record["candidate_micro_precision"]


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_rejected_patch_changes_no_rules(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=1)
    (patch,) = trace.events_of("patch_decided")
    before = trace.events_of("synthesized")[0]["rules_after"]
    assert patch["outcome"] == "rejected" and patch["accepted"] is False
    assert patch["added"] == [] and patch["removed"] == []
    assert sorted(patch["rules_after"]) == sorted(before)
    assert names(trace, patch["proposed"]["added"]) == ["broad"]
    assert patch["metrics_after"]["f1"] < patch["metrics_before"]["f1"]
    assert patch["failures"]["count"] == 4
    assert patch["failures"]["per_class"] == {"neg": {"fp": 0, "fn": 2}, "pos": {"fp": 0, "fn": 2}}


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_accepted_patch_adds_its_rules(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=3)
    (patch,) = trace.events_of("patch_decided")
    assert patch["outcome"] == "accepted"
    assert names(trace, patch["added"]) == ["neg more", "pos more"]
    assert patch["removed"] == []
    assert patch["metrics_after"]["f1"] == 1.0


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_empty_patch_is_an_event_that_changes_nothing(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[{"rules": []}]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=2)
    patches = trace.events_of("patch_decided")
    assert [p["outcome"] for p in patches] == ["empty", "empty"]
    assert all(p["added"] == [] and p["removed"] == [] for p in patches)
    assert patches[0]["metrics_after"] is None


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_patch_replacing_a_rule_by_name_records_old_and_new_ids(tmp_path, learn, coordinator):
    replace = {"rules": [rule("pos words", "good|great|nice|lovely", "pos")]}
    chef = make_chef(tmp_path, ScriptedLLM(patch=[replace]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=1)
    (patch,) = trace.events_of("patch_decided")
    (pair,) = patch["replaced"]
    assert patch["accepted"] is True
    assert patch["removed"] == [pair["old"]] and patch["added"] == [pair["new"]]
    assert trace.name_of(pair["old"]) == trace.name_of(pair["new"]) == "pos words"


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_patch_deleting_a_rule_by_name(tmp_path, learn, coordinator):
    delete = {
        "rules": [rule("neg all", "bad|awful|terrible|horrible", "neg")],
        "deleted_rules": ["neg words"],
    }
    chef = make_chef(tmp_path, ScriptedLLM(patch=[delete]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=1)
    (patch,) = trace.events_of("patch_decided")
    assert patch["accepted"] is True
    assert names(trace, patch["deleted"]) == ["neg words"]
    assert names(trace, patch["removed"]) == ["neg words"]
    assert names(trace, patch["added"]) == ["neg all"]
    assert patch["deleted_names"] == ["neg words"]


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_patch_rules_sharing_a_name_collapse_to_the_last(tmp_path, learn, coordinator):
    twins = {"rules": [rule("pos more", "nice", "pos"), rule("pos more", "nice|lovely", "pos")]}
    chef = make_chef(tmp_path, ScriptedLLM(patch=[twins]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=1)
    (patch,) = trace.events_of("patch_decided")
    assert len(patch["collapsed"]) == 1 and len(patch["added"]) == 1
    assert patch["collapsed"][0] not in patch["rules_after"]
    assert trace.name_of(patch["collapsed"][0]) == "pos more"


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_patch_duplicating_a_pattern_is_deduplicated(tmp_path, learn, coordinator):
    copy = {"rules": [rule("pos copy", "good|great", "pos", priority=9), *FIX_POS["rules"]]}
    chef = make_chef(tmp_path, ScriptedLLM(patch=[copy]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=1)
    (patch,) = trace.events_of("patch_decided")
    assert patch["accepted"] is True
    assert names(trace, patch["deduped"]) == ["pos words"]
    assert names(trace, patch["removed"]) == ["pos words"]
    assert names(trace, patch["added"]) == ["pos copy", "pos more"]


# --- how refinement stops ---------------------------------------------------


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_refinement_stops_when_the_target_is_reached(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=3)
    (refined,) = trace.events_of("refined")
    assert refined["stop_reason"] == "target_reached"
    assert refined["iterations"] == 2
    assert refined["kept_earlier"] is False
    assert [e["iteration"] for e in trace.events_of("iteration_evaluated")] == [1, 2]


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_refinement_stops_at_max_iterations(tmp_path, learn, coordinator):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]), coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=2)
    (refined,) = trace.events_of("refined")
    assert refined["stop_reason"] == "max_iterations"
    assert refined["iterations"] == refined["max_iterations"] == 2


@pytest.mark.parametrize("coordinator", ["agentic", "custom"])
def test_refinement_stops_when_the_coordinator_says_so(tmp_path, learn, coordinator):
    llm = ScriptedLLM(patch=[BREAK], guide={"guidance": "enough", "should_continue": False})
    chosen = StopAfterCoordinator(stop_after=1) if coordinator == "custom" else "agentic"
    chef = make_chef(tmp_path, llm, chosen)
    trace, _ = learn(chef, max_refinement_iterations=3)
    (refined,) = trace.events_of("refined")
    (guided,) = trace.events_of("guided")
    assert guided["should_continue"] is False
    assert refined["stop_reason"] == "coordinator_stop"
    assert refined["iterations"] == 1
    assert trace.events_of("patch_decided") == []


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_refinement_stops_when_training_has_no_failures(tmp_path, learn, coordinator):
    # Rules that know exactly the train portion of a holdout split: train has
    # no failure left while dev exact match stays far below 90%.
    data = [(f"p{i}", "pos") for i in range(10)] + [(f"n{i}", "neg") for i in range(10)]
    train_words = train_texts_by_label(data, holdout=0.3, seed=42)
    llm = ScriptedLLM(
        per_class=lambda p: {
            "rules": [rule(f"{c} seen", "|".join(train_words[c]), c) for c in [target_class(p)]]
        }
    )
    chef = make_chef(tmp_path, llm, coordinator_for(coordinator), data=data)
    trace, _ = learn(chef, max_refinement_iterations=3, holdout_fraction=0.3, split_seed=42)
    (refined,) = trace.events_of("refined")
    assert refined["stop_reason"] == "no_failures"
    assert refined["iterations"] == 1
    assert trace.events_of("iteration_evaluated")[0]["metrics"]["exact_match"] < 0.9
    assert trace.events_of("patch_decided") == []


def train_texts_by_label(
    data: list[tuple[str, str]], holdout: float, seed: int
) -> dict[str, list[str]]:
    dataset = Dataset(name="probe", task=task())
    dataset.examples = [
        Example(id=str(i), input={"text": t}, expected_output={"label": label}, source="human")
        for i, (t, label) in enumerate(data)
    ]
    train, dev = split_dataset(dataset, holdout, seed=seed)
    assert dev is not None
    words: dict[str, list[str]] = {}
    for ex in train.examples:
        words.setdefault(ex.expected_output["label"], []).append(ex.input["text"])
    return words


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_refinement_that_keeps_an_earlier_iterations_rules(tmp_path, learn, coordinator):
    llm = restoring_llm()
    chef = make_chef(tmp_path, llm, coordinator_for(coordinator))
    trace, _ = learn(chef, max_refinement_iterations=2)
    first = trace.events_of("patch_decided")[0]
    (refined,) = trace.events_of("refined")
    synth = trace.events_of("synthesized")[0]
    assert first["accepted"] is True
    assert first["metrics_after"]["f1"] < first["metrics_before"]["f1"]
    assert first["metrics_after"]["precision"] > first["metrics_before"]["precision"]
    assert refined["kept_earlier"] is True
    assert refined["kept_iteration"] == 0 and refined["kept_seq"] == synth["seq"]
    assert sorted(refined["rules_after"]) == sorted(synth["rules_after"])
    assert names(trace, refined["removed"]) == ["pos strict"]


# --- audits -----------------------------------------------------------------


def merge_pos(prompt: str) -> dict[str, Any]:
    return audit_merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely")(prompt)


@pytest.mark.parametrize("coordinator", ["agentic", "custom"])
def test_mid_refinement_audit_merges_rules(tmp_path, learn, coordinator):
    def custom_audit(rules: list[Any]) -> AuditResult:
        by_name = {r.name: r.id for r in rules}
        if "pos more" not in by_name:
            return AuditResult()
        return AuditResult(
            actions=[
                AuditAction(
                    "merge",
                    [by_name["pos words"], by_name["pos more"]],
                    "overlap",
                    r"(?i)\b(good|great|nice|lovely)\b",
                    "pos all",
                )
            ]
        )

    llm = ScriptedLLM(patch=[FIX_POS, FIX_NEG], audit=[merge_pos, {"actions": []}])
    chosen = StopAfterCoordinator(audit=custom_audit) if coordinator == "custom" else "agentic"
    chef = make_chef(tmp_path, llm, chosen)
    trace, _ = learn(chef, max_refinement_iterations=3)
    mid = next(a for a in trace.events_of("audit_applied") if a["stage"] == "mid_refinement")
    (merge,) = mid["actions"]
    assert mid["iteration"] == 2 and mid["reverted"] is False
    assert names(trace, merge["sources"]) == ["pos more", "pos words"]
    assert trace.name_of(merge["result"]) == "pos all"
    assert "name" not in merge
    assert sorted(mid["removed"]) == sorted(merge["sources"])
    assert mid["added"] == [merge["result"]]
    assert story(trace).index("audit_applied") < story(trace).index("refined")


def test_mid_refinement_audit_that_drops_f1_is_reverted(tmp_path, learn):
    bad_merge = audit_merge(["pos words", "neg words"], "everything", "good|great|bad|awful")
    llm = ScriptedLLM(patch=[FIX_POS, BREAK], audit=[bad_merge, {"actions": []}])
    chef = make_chef(tmp_path, llm, "agentic")
    trace, _ = learn(chef, max_refinement_iterations=2)
    mid = next(a for a in trace.events_of("audit_applied") if a["stage"] == "mid_refinement")
    assert mid["reverted"] is True
    assert mid["added"] == [] and mid["removed"] == []
    assert mid["actions"][0]["result"] is None
    assert mid["metrics_after"]["f1"] < mid["metrics_before"]["f1"] - 0.01


@pytest.mark.parametrize("coordinator", ["agentic", "custom"])
def test_final_audit_applies_merges_and_removals_and_reports_skipped_ones(
    tmp_path, learn, coordinator
):
    def actions(ids: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {
                "action": "merge",
                "rule_ids": [ids["pos words"], ids["pos more"]],
                "merged_pattern": r"(?i)\b(good|great|nice|lovely)\b",
                "merged_name": "pos all",
                "reason": "overlap",
            },
            {
                "action": "merge",
                "rule_ids": [ids["neg words"], "nosuchid"],
                "merged_pattern": "x",
                "reason": "unknown id",
            },
            {
                "action": "merge",
                "rule_ids": [ids["neg words"], ids["neg more"]],
                "merged_pattern": "(unclosed",
                "reason": "bad pattern",
            },
            {"action": "remove", "rule_ids": ["ghost"], "reason": "gone"},
        ]

    def custom_audit(rules: list[Any]) -> AuditResult:
        acts = actions({r.name: r.id for r in rules})
        return AuditResult(
            actions=[
                AuditAction(
                    a["action"],
                    a["rule_ids"],
                    a["reason"],
                    a.get("merged_pattern"),
                    a.get("merged_name"),
                )
                for a in acts
            ]
        )

    llm = ScriptedLLM(patch=[FIX_ALL], audit=lambda p: {"actions": actions(ids_by_name(p))})
    chosen = StopAfterCoordinator(audit=custom_audit) if coordinator == "custom" else "agentic"
    chef = make_chef(tmp_path, llm, chosen)
    trace, _ = learn(chef, max_refinement_iterations=2)
    final = trace.events_of("audit_applied")[-1]
    assert final["stage"] == "final" and final["reverted"] is False
    assert final["proposed"] == 4
    (merge,) = final["actions"]
    assert names(trace, merge["sources"]) == ["pos more", "pos words"]
    assert trace.name_of(merge["result"]) == "pos all"
    assert [s["why"] for s in final["skipped"]] == [
        "fewer than two known rules",
        "merged pattern does not compile",
        "unknown rule ids",
    ]
    assert final["metrics_after"]["f1"] == 1.0
    assert story(trace)[-2:] == ["audit_applied", "finalized"]


def test_final_audit_removal_is_reverted_when_f1_drops(tmp_path, learn):
    def remove_neg(prompt: str) -> dict[str, Any]:
        ids = ids_by_name(prompt)
        return {"actions": [{"action": "remove", "rule_ids": [ids["neg words"]], "reason": "x"}]}

    llm = ScriptedLLM(patch=[BREAK], audit=remove_neg)
    chef = make_chef(tmp_path, llm, "agentic")
    trace, _ = learn(chef, max_refinement_iterations=1)
    final = trace.events_of("audit_applied")[-1]
    assert final["reverted"] is True
    assert final["actions"] == [{"action": "remove", "rules": final["actions"][0]["rules"]}]
    assert names(trace, final["actions"][0]["rules"]) == ["neg words"]
    assert final["added"] == [] and final["removed"] == []
    assert final["metrics_after"]["f1"] < final["metrics_before"]["f1"]


def test_simple_coordinator_audit_proposes_nothing(tmp_path, learn):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    trace, _ = learn(chef, max_refinement_iterations=2)
    (audit,) = trace.events_of("audit_applied")
    assert audit["proposed"] == 0 and audit["actions"] == [] and audit["reverted"] is False


def test_critic_feedback_is_reported_by_rule_id(tmp_path, learn):
    def critique(rules: list[Any]) -> dict[str, Any]:
        return {
            "analysis": "x",
            "rule_feedback": {rules[0].id: "be stricter"},
            "task_guidance": "watch out",
        }

    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]), StopAfterCoordinator(critique=critique))
    trace, _ = learn(chef, max_refinement_iterations=1)
    (critic,) = trace.events_of("critiqued")
    assert critic["returned"] is True and critic["task_guidance"] is True
    assert critic["rules_with_feedback"] == [trace.events_of("synthesized")[0]["added"][0]]


# --- incremental runs and pruning -------------------------------------------


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_incremental_patch_and_weak_rule_prune(tmp_path, learn, coordinator):
    llm = ScriptedLLM(patch=[FIX_POS, BREAK])
    chef = make_chef(tmp_path, llm, coordinator_for(coordinator))
    learn(chef, max_refinement_iterations=1, run_evaluation=False)
    weak = next(r for r in chef.dataset.rules if r.name == "neg words")
    weak.times_applied, weak.successes, weak.failures = 3, 0, 3
    chef.buffer.add_human_example({"text": "lovely stay"}, {"label": "pos"})
    trace, _ = learn(chef, incremental_only=True, max_refinement_iterations=1)
    synth, prune = trace.events_of("synthesized")[0], trace.events_of("pruned")[0]
    assert synth["mode"] == "incremental"
    assert names(trace, synth["added"]) == ["pos more"]
    assert prune["reason"] == "weak_rules"
    assert prune["removed"] == [weak.id]
    order = story(trace)
    assert order.index("synthesized") < order.index("pruned") < order.index("iteration_evaluated")


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_incremental_patch_replacing_and_deleting_by_name(tmp_path, learn, coordinator):
    patch = {"rules": [rule("pos words", "good|great|nice", "pos")], "deleted_rules": ["neg words"]}
    chef = make_chef(tmp_path, ScriptedLLM(patch=[patch, BREAK]), coordinator_for(coordinator))
    learn(chef, max_refinement_iterations=1, run_evaluation=False)
    trace, _ = learn(chef, incremental_only=True, max_refinement_iterations=1)
    synth = trace.events_of("synthesized")[0]
    assert synth["mode"] == "incremental"
    assert names(trace, synth["deleted"]) == ["neg words"]
    assert [trace.name_of(p["old"]) for p in synth["replaced"]] == ["pos words"]


def test_rank_rules_prune_is_its_own_short_trace(tmp_path, learn):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    learned, _ = learn(chef, max_refinement_iterations=2)
    harmful = rule("broad", "day|thing|food|trip|mess", "pos", priority=9)
    chef.load_rules(
        [*(r.to_dict() for r in chef.dataset.rules), {**harmful, "content": harmful["pattern"]}]
    )
    with record_trace(chef, strict=True) as recorder:
        chef.rank_rules(prune=True, verbose=False)
        chef.rank_rules(prune=False, verbose=False)
    (trace,) = recorder.traces
    assert trace.run["kind"] == "rank_rules"
    assert story(trace) == ["run_started", "pruned", "finalized"]
    (pruned,) = trace.events_of("pruned")
    assert pruned["reason"] == "harmful_rules"
    assert names(trace, pruned["removed"]) == ["broad"]
    assert pruned["marginal_f1"][pruned["removed"][0]] < 0
    assert sorted(replay(trace)) == sorted(r.id for r in chef.dataset.rules)
    # The latest learning run's file is still the learning run.
    latest = load_trace(tmp_path / "reviews.trace.json")
    assert latest.run["id"] == learned.run["id"]


# --- runs that end early ----------------------------------------------------


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_run_without_enough_data_ends_early(tmp_path, learn, coordinator):
    trace, result = learn(
        make_chef(tmp_path, ScriptedLLM(), coordinator_for(coordinator)), min_examples=100
    )
    assert result is None
    assert trace.status == "not_enough_data"
    assert story(trace) == ["run_started", "finalized"]
    assert trace.final_metrics is None


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_run_that_synthesizes_no_rules(tmp_path, learn, coordinator):
    trace, result = learn(
        make_chef(tmp_path, ScriptedLLM(per_class={"rules": []}), coordinator_for(coordinator))
    )
    assert result is None
    assert trace.status == "no_rules"
    assert story(trace) == ["run_started", "synthesized", "finalized"]
    assert trace.events_of("synthesized")[0]["count"] == 0


def test_run_that_raises_is_recorded_as_failed(tmp_path):
    class Boom(StopAfterCoordinator):
        def guide_refinement(
            self, eval_result: Any, iteration: int, max_iterations: int
        ) -> tuple[str, bool]:
            raise LookupError("coordinator lost its notes")

    chef = make_chef(tmp_path, ScriptedLLM(), Boom())
    with record_trace(chef) as recorder, pytest.raises(LookupError, match="lost its notes"):
        chef.learn_rules(max_refinement_iterations=2)
    (trace,) = recorder.traces
    assert trace.status == "failed"
    assert trace.run["error"] == {"type": "LookupError", "message": "coordinator lost its notes"}
    assert story(trace)[-1] == "finalized"
    assert load_trace(tmp_path / "reviews.trace.json").status == "failed"


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_synthesis_only_run_has_no_refinement_events(tmp_path, learn, coordinator):
    trace, result = learn(
        make_chef(tmp_path, ScriptedLLM(), coordinator_for(coordinator)), run_evaluation=False
    )
    assert story(trace) == ["run_started", "synthesized", "audit_applied", "finalized"]
    assert result[1] is None and trace.final_metrics is None


# --- odd inputs rulechef tolerates ------------------------------------------


def test_audit_removal_naming_a_rule_twice_is_one_removal(tmp_path, learn):
    def remove_twice(prompt: str) -> dict[str, Any]:
        ids = ids_by_name(prompt)
        twice = [ids["neg more"], ids["neg more"]]
        return {"actions": [{"action": "remove", "rule_ids": twice, "reason": "x"}]}

    llm = ScriptedLLM(patch=[FIX_ALL], audit=remove_twice)
    trace, _ = learn(make_chef(tmp_path, llm, "agentic"), max_refinement_iterations=1)
    final = trace.events_of("audit_applied")[-1]
    assert [a["action"] for a in final["actions"]] == ["remove"]
    assert names(trace, final["actions"][0]["rules"]) == ["neg more"]
    assert trace.run["stats"]["hook_errors"] == 0


def test_a_chef_holding_a_rule_twice_still_replays(tmp_path, learn):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, BREAK]))
    learn(chef, max_refinement_iterations=1, run_evaluation=False)
    chef.dataset.rules.append(chef.dataset.rules[0])
    trace, _ = learn(chef, incremental_only=True, max_refinement_iterations=1)
    start = trace.events[0]["rules"]
    assert len(start) == len(set(start)) == 2


def test_a_run_failing_after_synthesis_ends_by_restoring_the_old_rules(tmp_path):
    class Boom(StopAfterCoordinator):
        def guide_refinement(
            self, eval_result: Any, iteration: int, max_iterations: int
        ) -> tuple[str, bool]:
            raise LookupError("late failure")

    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    chef.learn_rules(max_refinement_iterations=2)
    old = sorted(r.id for r in chef.dataset.rules)
    chef.coordinator = Boom()
    with record_trace(chef) as recorder, pytest.raises(LookupError):
        chef.learn_rules(max_refinement_iterations=2)
    (trace,) = recorder.traces
    end = trace.events[-1]
    assert story(trace) == ["run_started", "synthesized", "iteration_evaluated", "finalized"]
    assert end["discarded"] is True and "unexplained" not in end
    assert sorted(end["added"]) == old and sorted(end["removed"]) == sorted(
        trace.events_of("synthesized")[0]["added"]
    )
    assert sorted(replay(trace)) == old == sorted(r.id for r in chef.dataset.rules)


def test_a_coordinator_swapped_during_the_run_is_left_unpatched(tmp_path):
    first = StopAfterCoordinator()
    second = StopAfterCoordinator()

    class Swapping(StopAfterCoordinator):
        def guide_refinement(
            self, eval_result: Any, iteration: int, max_iterations: int
        ) -> tuple[str, bool]:
            chef.coordinator = second
            return "", True

    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]), first)
    swapping = Swapping()
    chef.coordinator = swapping
    with record_trace(chef, write=False):
        chef.learn_rules(max_refinement_iterations=2)
    for coordinator in (first, second, swapping):
        assert not {"guide_refinement", "audit_rules", "critique_rules"} & set(vars(coordinator))


def test_rank_rules_without_marginals_or_rules_records_no_pruning(tmp_path, learn):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    learn(chef, max_refinement_iterations=2)
    with record_trace(chef, write=False) as recorder:
        chef.rank_rules(prune=True, compute_marginal=False, verbose=False)
        chef.dataset.rules = []
        chef.rank_rules(prune=True, verbose=False)
    (empty,) = recorder.traces
    (pruned,) = empty.events_of("pruned")
    assert pruned["removed"] == [] and pruned["ensemble"] is None


def test_rule_labels_an_llm_invents_are_not_recorded(tmp_path, learn):
    invented = {"rules": [rule("odd", "nice", "great stuff")]}
    chef = make_chef(
        tmp_path, ScriptedLLM(patch=[BREAK], synthesis=invented), synthesis_strategy="bulk"
    )
    trace, _ = learn(chef, max_refinement_iterations=1)
    assert trace.events_of("synthesized")[0]["per_label"] == {"(other)": 1}


def test_a_task_discovered_during_the_run_has_its_stored_rules_as_baseline(tmp_path, learn):
    stored = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    stored.learn_rules(max_refinement_iterations=2)
    kept = sorted(r.id for r in stored.dataset.rules)
    chef: Any = RuleChef(
        client=as_client(ScriptedLLM(patch=[BREAK])),
        dataset_name="reviews",
        storage_path=str(tmp_path),
    )

    def discover() -> None:
        # What rulechef's _integrate_observer does once the observer found the task.
        chef._initialize_with_task(task())

    chef._observations._merge_pending_into_observer = discover
    trace, _ = learn(chef, incremental_only=True, max_refinement_iterations=1)
    synth = trace.events_of("synthesized")[0]
    assert sorted(synth["loaded"]) == kept
    assert trace.run["task"] == "sentiment"


def test_a_discovered_task_whose_run_fails_reports_loaded_not_discarded(tmp_path):
    stored = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    stored.learn_rules(max_refinement_iterations=2)
    chef: Any = RuleChef(
        client=as_client(ScriptedLLM()), dataset_name="reviews", storage_path=str(tmp_path)
    )

    def discover_then_fail() -> None:
        chef._initialize_with_task(task())
        raise ConnectionError("observer lost")

    chef._observations._merge_pending_into_observer = discover_then_fail
    with record_trace(chef, write=False) as recorder, pytest.raises(ConnectionError):
        chef.learn_rules()
    end = last_trace(recorder).events[-1]
    assert sorted(end["loaded"]) == sorted(r.id for r in stored.dataset.rules)
    assert "discarded" not in end
    assert sorted(replay(last_trace(recorder))) == sorted(r.id for r in chef.dataset.rules)


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_a_run_whose_storage_fails_after_refinement_is_recorded_as_failed(
    tmp_path, coordinator, monkeypatch
):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]), coordinator_for(coordinator))
    save = chef._store.save

    def full_disk(dataset: Any) -> None:
        if dataset.rules:  # the save after refinement, not the buffer commit
            raise OSError(28, "No space left on device")
        save(dataset)

    monkeypatch.setattr(chef._store, "save", full_disk)
    with record_trace(chef, write=False) as recorder, pytest.raises(OSError):
        chef.learn_rules(max_refinement_iterations=3)
    (trace,) = recorder.traces
    assert trace.status == "failed"
    assert trace.run["error"] == {
        "type": "OSError",
        "message": "[Errno 28] No space left on device",
    }
    assert story(trace)[-2:] == ["refined", "finalized"]
    assert "discarded" not in trace.events[-1]
    assert sorted(replay(trace)) == sorted(r.id for r in chef.dataset.rules)


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_a_run_without_a_task_fails_before_any_rule_change(tmp_path, coordinator):
    chosen = {
        "simple": None,
        "agentic": AgenticCoordinator(ScriptedLLM(), prune_after_learn=True, verbose=False),
        "custom": StopAfterCoordinator(),
    }[coordinator]
    chef = RuleChef(client=as_client(ScriptedLLM()), storage_path=str(tmp_path), coordinator=chosen)
    with record_trace(chef, write=False) as recorder, pytest.raises(RuntimeError, match="Task"):
        chef.learn_rules()
    (trace,) = recorder.traces
    assert story(trace) == ["run_started", "finalized"]
    assert trace.status == "failed" and trace.final_rules == []
