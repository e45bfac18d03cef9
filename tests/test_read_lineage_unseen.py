"""Rule changes no hook saw, across kept runs; a loaded trace's lineage names its creating runs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from rulechef.core import Rule, RuleFormat

from rulechef_trace import Trace, lineage_across_runs, load_trace, record_trace
from rulechef_trace.cli import main
from rulechef_trace.report import render_lineage
from rulechef_trace.report.across_runs import short_id
from tests.scripted import ScriptedLLM, make_chef

ADDED = "feedc0de"


@dataclass
class Unseen:
    storage: Path
    first: Trace
    second: Trace
    removed: str
    carried: str


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> Unseen:
    """learn; with nobody listening, assign dataset.rules (one rule out, one in); learn again."""
    storage = tmp_path_factory.mktemp("unseen")
    chef = make_chef(storage, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    removed, carried = (r.id for r in chef.dataset.rules)
    extra = Rule(
        id=ADDED,
        name="pos extra",
        description="pos keywords",
        format=RuleFormat.REGEX,
        content=r"(?i)\b(nice)\b",
        output_template={"label": "pos"},
        output_key="label",
    )
    chef.dataset.rules = [r for r in chef.dataset.rules if r.id != removed] + [extra]
    with record_trace(chef) as later:
        chef.learn_rules(max_refinement_iterations=1, incremental_only=True)
    return Unseen(storage, recorder.traces[-1], later.traces[-1], removed, carried)


def test_the_second_run_found_both_unseen_changes(unseen: Unseen) -> None:
    """The scenario itself: changed_since holds the assigned rule and the dropped one."""
    changed = unseen.second.events[0]["changed_since"]
    assert changed["added"] == [ADDED] and changed["removed"] == [unseen.removed]
    assert changed["run"] == changed["learning_run"] == unseen.first.run_id


def test_a_rule_assigned_while_nobody_listened_was_created_by_an_added_unseen_step(
    unseen: Unseen,
) -> None:
    """lineage_across_runs: the assigned rule's creation is the second run's start."""
    (rule,) = lineage_across_runs(unseen.storage, ADDED).rules
    assert rule.created is not None
    assert rule.created.action == "added_unseen" and rule.created.seq is None
    assert rule.created.run_id == short_id(unseen.second.run_id)
    assert f"after run {short_id(unseen.first.run_id)}" in rule.created.text
    assert rule.name == "pos extra" and rule.current


def test_a_rule_dropped_while_nobody_listened_ends_with_a_removed_unseen_step(
    unseen: Unseen,
) -> None:
    """lineage_across_runs: created by the first run, removed unseen at the second's start."""
    (rule,) = lineage_across_runs(unseen.storage, unseen.removed).rules
    assert [(s.run_id, s.action) for s in rule.steps] == [
        (short_id(unseen.first.run_id), "created"),
        (short_id(unseen.second.run_id), "removed_unseen"),
    ]
    assert not rule.current


def test_lineage_verb_tells_unseen_changes_at_the_runs_start(
    unseen: Unseen, capsys: pytest.CaptureFixture[str]
) -> None:
    """lineage STORAGE RULE (text): the step is "at its start", naming the run compared with."""
    assert main(["lineage", str(unseen.storage), ADDED]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"run {short_id(unseen.second.run_id)} (learn) at its start: added_unseen" in text
    assert main(["lineage", str(unseen.storage), unseen.removed]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"run {short_id(unseen.second.run_id)} (learn) at its start: removed_unseen" in text


def test_lineage_verb_json_holds_the_unseen_steps(
    unseen: Unseen, capsys: pytest.CaptureFixture[str]
) -> None:
    """lineage STORAGE RULE --json: the same steps as data."""
    assert main(["lineage", str(unseen.storage), ADDED, "--json"]) == 0
    (rule,) = orjson.loads(capsys.readouterr().out)["rules"]
    assert rule["created"]["action"] == "added_unseen" and rule["created"]["seq"] is None
    assert main(["lineage", str(unseen.storage), unseen.removed, "--json"]) == 0
    (rule,) = orjson.loads(capsys.readouterr().out)["rules"]
    assert [s["action"] for s in rule["steps"]] == ["created", "removed_unseen"]
    assert rule["current"] is False


def test_trace_lineage_of_a_loaded_file_names_the_run_that_created_a_carried_rule(
    unseen: Unseen,
) -> None:
    """Trace.lineage on the latest-run file (history beside it): created_by is the first run."""
    trace = load_trace(unseen.storage / "reviews.trace.json")
    assert trace.run_id == unseen.second.run_id
    (item,) = trace.lineage(unseen.carried)
    assert item.origin == "carried"
    assert item.created_by is not None
    assert item.created_by["run"] == short_id(unseen.first.run_id)
    assert item.created_by["kind"] == "learn"
    assert item.to_dict()["created_by"] == item.created_by
    shown = " ".join(render_lineage(trace, [item]).split())
    assert f"created by run {short_id(unseen.first.run_id)} (learn" in shown


def test_trace_lineage_without_a_history_beside_names_no_creating_run(
    unseen: Unseen, tmp_path: Path
) -> None:
    """The same trace in memory, or copied away from its history: no created_by."""
    (in_memory,) = unseen.second.lineage(unseen.carried)
    assert in_memory.origin == "carried" and in_memory.created_by is None
    alone = tmp_path / "reviews.trace.json"
    shutil.copy(unseen.storage / "reviews.trace.json", alone)
    (copied,) = load_trace(alone).lineage(unseen.carried)
    assert copied.created_by is None


def test_lineage_of_a_file_json_gives_each_carried_rule_its_creating_run(
    unseen: Unseen, capsys: pytest.CaptureFixture[str]
) -> None:
    """lineage FILE --json: created_by on the rule and in the top-level map alike."""
    assert main(["lineage", str(unseen.storage / "reviews.trace.json"), "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    by_id = {item["rule_id"]: item for item in data["lineage"]}
    assert by_id[unseen.carried]["created_by"]["run"] == short_id(unseen.first.run_id)
    assert data["created_by"][unseen.carried] == by_id[unseen.carried]["created_by"]
    assert by_id[ADDED]["created_by"] is None  # no kept run created it
