"""Each rule's facts in the trace: format, label, priority and rulechef's own counters."""

from __future__ import annotations

from pathlib import Path

from rulechef_trace import load_trace, record_trace
from tests.scripted import FIX_POS, ScriptedLLM, last_trace, make_chef, rule


def test_final_rules_carry_their_facts_as_rulechef_has_them(tmp_path: Path) -> None:
    """format, label, priority, precision, support and counters match the chef's rules."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]), "agentic")
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=2)
    trace = load_trace(tmp_path / "reviews.trace.json")
    by_id = {r["id"]: r for r in trace["final"]["rules"]}
    assert sorted(by_id) == sorted(r.id for r in chef.dataset.rules)
    for r in chef.dataset.rules:
        facts = by_id[r.id]
        assert facts["name"] == r.name
        assert facts["format"] == r.format.value
        assert facts["label"] == r.output_template["label"]
        assert facts["priority"] == r.priority
        assert facts["precision"] == r.validated_precision
        assert facts["support"] == r.validated_support
        assert (facts["applied"], facts["successes"], facts["failures"]) == (
            r.times_applied,
            r.successes,
            r.failures,
        )
        assert "content" not in facts and "pattern" not in facts
    assert trace["rules"][r.id]["format"] == "regex"


def test_a_label_the_dataset_does_not_have_is_other_in_the_rule_facts(tmp_path: Path) -> None:
    """An LLM-written label that quotes an input text never reaches the rule table."""
    quoting = rule("quoting", "good", "good day to you, Alice")
    llm = ScriptedLLM(per_class=[{"rules": [rule("pos words", "great", "pos"), quoting]}])
    chef = make_chef(tmp_path, llm)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    trace = last_trace(recorder)
    labels = {facts.get("label") for facts in trace["rules"].values()}
    assert "(other)" in labels and "pos" in labels
    assert "Alice" not in str(trace)


def test_a_sampling_strategy_passed_to_learn_rules_is_the_one_recorded(tmp_path: Path) -> None:
    """learn_rules(sampling_strategy=...) overrides the chef's default in run.params."""
    chef = make_chef(tmp_path, ScriptedLLM(), sampling_strategy="balanced")
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1, sampling_strategy="diversity")
    assert last_trace(recorder).run["params"]["sampling_strategy"] == "diversity"
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert last_trace(recorder).run["params"]["sampling_strategy"] == "balanced"
