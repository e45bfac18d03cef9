"""Each task type told in rulechef's own metrics; holdout skips, synthetic failures, no-audit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from rulechef import RuleChef, Task, TaskType
from rulechef.splitting import split_dataset

from rulechef_trace import record_trace, render_trace
from rulechef_trace.report.describe import describe
from rulechef_trace.report.text import render_line
from tests.scripted import FIX_POS, ScriptedLLM, as_client, last_trace, make_chef

CODE = (
    "def extract(input_data):\n"
    "    t = input_data['text']\n"
    "    return {'company': t.split(' from ')[1].split(' for ')[0],"
    " 'amount': t.rsplit('$', 1)[1]}\n"
)
INVOICES = [("Acme", "120"), ("Globex", "75"), ("Initech", "9"), ("Umbrella", "300"),
            ("Hooli", "42"), ("Stark", "1")]  # fmt: skip


def _code_rule() -> dict[str, Any]:
    return {
        "name": "invoice parts",
        "description": "split the sentence",
        "format": "code",
        "pattern": CODE,
        "output_template": {},
        "output_key": "",
        "priority": 5,
    }


def _transformation_chef(tmp_path: Path) -> RuleChef:
    llm = ScriptedLLM(synthesis={"rules": [_code_rule()]}, per_class={"rules": [_code_rule()]})
    task = Task(
        name="invoices",
        description="company and amount of an invoice line",
        input_schema={"text": "str"},
        output_schema={"company": "str", "amount": "str"},
        type=TaskType.TRANSFORMATION,
    )
    chef = RuleChef(
        task=task, client=as_client(llm), dataset_name="inv", storage_path=str(tmp_path)
    )
    for company, amount in INVOICES:
        chef.buffer.add_human_example(
            {"text": f"Invoice from {company} for ${amount}"},
            {"company": company, "amount": amount},
        )
    return chef


def test_a_transformation_story_tells_the_exact_match_rulechef_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per iteration and at the end: rulechef's "Exact match: 100.0% (6/6)", no empty F1."""
    chef = _transformation_chef(tmp_path)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
    printed = capsys.readouterr().out
    said = re.search(r"Exact match: (\S+%) \((\d+/\d+)\)", printed)
    assert said is not None
    story = render_trace(last_trace(recorder))
    shown = f"exact {said.group(1)} ({said.group(2)})"
    assert f"iteration 1/2: {shown}" in story
    assert f"finalized: completed, 2 rules, {shown}" in story
    assert f"Final: 2 rules   {shown}" in story
    assert "F1" not in story


def test_a_classification_story_tells_f1_and_exact_match_per_iteration(tmp_path: Path) -> None:
    """Classification keeps F1/P/R and gains rulechef's exact match with its documents."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]))
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
    event = last_trace(recorder).events_of("iteration_evaluated")[0]
    first = event["metrics"]
    count = round(first["exact_match"] * first["docs"])
    head = render_line(describe(last_trace(recorder), event).lines[0])
    assert head.startswith("iteration 1/2: F1 ")
    assert f"exact {first['exact_match']:.1%} ({count}/{first['docs']})" in head


def test_a_skipped_holdout_is_in_the_trace_and_the_story(tmp_path: Path) -> None:
    """12 examples cannot make a dev set of 5: rulechef skips it, and the trace says so."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1, holdout_fraction=0.2)
    refined = last_trace(recorder).events_of("refined")[-1]
    assert refined["holdout"] == {"fraction": 0.2, "used": False, "dev_examples": 0}
    assert "holdout of 20% SKIPPED" in render_trace(last_trace(recorder))


def test_a_used_holdout_says_its_dev_size(tmp_path: Path) -> None:
    """With enough examples the dev set exists; its size is rulechef's own split."""
    data = [(f"good thing {i}", "pos") for i in range(15)]
    data += [(f"bad thing {i}", "neg") for i in range(15)]
    chef = make_chef(tmp_path, ScriptedLLM(), data=data)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1, holdout_fraction=0.3)
    holdout = last_trace(recorder).events_of("refined")[-1]["holdout"]
    _, dev = split_dataset(chef.dataset, 0.3, seed=42)
    assert dev is not None
    assert holdout == {"fraction": 0.3, "used": True, "dev_examples": len(dev.examples)}


def test_no_holdout_asked_records_none(tmp_path: Path) -> None:
    """A run without holdout_fraction has holdout null and no holdout line."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert last_trace(recorder).events_of("refined")[-1]["holdout"] is None
    assert "holdout" not in render_trace(last_trace(recorder))


def test_simple_coordinator_audit_is_marked_not_audited_and_not_told(tmp_path: Path) -> None:
    """SimpleCoordinator never audits nor calls: audited false, no "audit (final)" line."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    audits = last_trace(recorder).events_of("audit_applied")
    assert audits and all(a["audited"] is False for a in audits)
    assert "audit (" not in render_trace(last_trace(recorder))


def test_an_agentic_audit_is_audited_and_told(tmp_path: Path) -> None:
    """An LLM audit that proposes nothing is still an audit: its line stays."""
    chef = make_chef(tmp_path, ScriptedLLM(), "agentic")
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    final = [a for a in last_trace(recorder).events_of("audit_applied") if a["stage"] == "final"]
    assert final and final[0]["audited"] is True
    assert "audit (final): no actions proposed" in render_trace(last_trace(recorder))


def test_feedback_driven_failures_are_counted_as_synthetic(tmp_path: Path) -> None:
    """An incremental run forced by feedback: its 3 "failures" are rulechef's synthetic ones."""
    covered = [("good day", "pos"), ("great stuff", "pos"), ("bad day", "neg"),
               ("awful service", "neg")]  # fmt: skip
    chef = make_chef(tmp_path, ScriptedLLM(), data=covered)
    chef.learn_rules(max_refinement_iterations=1)
    chef.add_feedback("prefer precise keywords", level="task")
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1, incremental_only=True)
    synthesized = last_trace(recorder).events_of("synthesized")[0]
    assert synthesized["failures"]["count"] == 3
    assert synthesized["failures"]["synthetic"] == 3
    assert "3 synthetic" in render_trace(last_trace(recorder))
