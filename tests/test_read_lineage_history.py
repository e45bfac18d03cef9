"""Lineage across a dataset's kept runs, the run a prune works on, and history's facts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from rulechef_trace import Trace, load_trace, record_trace
from rulechef_trace.cli import main
from rulechef_trace.report import history, render_history
from rulechef_trace.report.across_runs import history_beside, lineage_across_runs, short_id
from rulechef_trace.report.ancestry import lineage
from tests.scripted import DATA, ScriptedLLM, make_chef


@dataclass
class Runs:
    storage: Path
    first: Trace
    second: Trace
    prune: Trace
    edit: Trace
    third: Trace


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """learn, learn on one more example, prune, delete a rule (recorded), learn again."""
    storage = tmp_path_factory.mktemp("kept")
    chef = make_chef(storage, ScriptedLLM(patch=[{"rules": []}]))
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.add_example({"text": "nice view"}, {"label": "pos"})
        chef.learn_rules(max_refinement_iterations=1, incremental_only=True)
        chef.rank_rules(prune=True)
        chef.delete_rule(chef.dataset.rules[0].id)
    chef.llm.script["patch"] = [{"rules": []}]
    first, second, prune, edit = recorder.traces
    with record_trace(chef) as later:
        chef.learn_rules(max_refinement_iterations=1, incremental_only=True)
    return Runs(storage, first, second, prune, edit, later.traces[-1])


def test_lineage_across_runs_names_the_run_and_step_that_created_a_carried_rule(
    runs: Runs,
) -> None:
    """A rule the first run synthesized and later runs carried: created by the first run's step."""
    kept = runs.third.final_rules[0]
    found = lineage_across_runs(runs.storage, kept)
    (rule,) = found.rules
    assert rule.created is not None
    assert rule.created.run_id == short_id(runs.first.run_id) and len(rule.created.run_id) == 12
    step = next(e for e in runs.first.events if e["seq"] == rule.created.seq)
    assert step["type"] == "synthesized" and kept in step["added"]
    assert rule.current
    assert found.runs == [
        short_id(t.run_id) for t in (runs.first, runs.second, runs.prune, runs.edit, runs.third)
    ]


def test_lineage_across_runs_names_the_edit_run_that_removed_a_rule(runs: Runs) -> None:
    """The rule delete_rule removed: its last step is the edit run's, action "edited"."""
    (change,) = runs.edit.events_of("rules_edited")
    (gone,) = change["removed"]
    (rule,) = lineage_across_runs(runs.storage, gone).rules
    assert rule.steps[-1].action == "edited"
    assert rule.steps[-1].run_id == short_id(runs.edit.run_id)
    assert not rule.current


def test_lineage_across_runs_finds_a_rule_by_name(runs: Runs) -> None:
    """A rule name means the newest run's rules of that name."""
    rid = runs.third.final_rules[0]
    name = runs.third.name_of(rid)
    assert [r.rule_id for r in lineage_across_runs(runs.storage, name).rules] == [rid]


def test_lineage_of_a_file_names_the_kept_run_that_created_its_carried_rules(runs: Runs) -> None:
    """lineage FILE with the history beside it: each carried rule gets the run that created it."""
    path = runs.storage / "reviews.trace.json"
    trace = load_trace(path)
    assert trace.run_id == runs.third.run_id
    found = history_beside(path, trace, lineage(trace))
    assert found and {v["run"] for v in found.values()} == {short_id(runs.first.run_id)}


def test_the_rank_rules_trace_names_the_learning_run_it_pruned(runs: Runs) -> None:
    """run.after of a prune is the newest kept learning run's id."""
    assert runs.prune.run["after"] == runs.second.run_id
    assert "after" not in runs.first.run


def test_history_counts_examples_and_marks_where_the_data_changed(runs: Runs) -> None:
    """The second learning run had one more example: marked, and its ΔF1 left out with a note."""
    rows = history(runs.storage).rows
    assert [r.examples for r in rows[:2]] == [12, 13]
    assert [r.data_changed for r in rows[:2]] == [False, True]
    assert rows[0].split == "all"
    text = render_history(history(runs.storage))
    assert short_id(runs.second.run_id) in text and runs.second.run_id not in text
    assert "the examples changed: ΔF1 is not worked out" in text


def test_history_compares_f1_only_on_the_same_split(tmp_path: Path) -> None:
    """A run on a dev holdout after one on all examples: no ΔF1, and history says why."""
    data = [(f"{text} {n}", label) for n in range(3) for text, label in DATA]
    chef = make_chef(tmp_path, ScriptedLLM(patch=[{"rules": []}]), data=data)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.llm.script["patch"] = [{"rules": []}]
        chef.learn_rules(max_refinement_iterations=1, holdout_fraction=0.4)
    on_dev = recorder.traces[-1]
    assert {e["metrics"]["split"] for e in on_dev.events_of("iteration_evaluated")} == {"dev"}
    assert on_dev.events_of("refined")[0]["metrics"]["split"] == "dev"
    rows = history(tmp_path).rows
    assert [r.split for r in rows] == ["all", "dev"]
    assert "ΔF1 is shown only between runs measured on the same split" in render_history(
        history(tmp_path)
    )


def test_lineage_verb_on_a_storage_folder_prints_json(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    """lineage STORAGE RULE --json: the cross-run answer as JSON."""
    rid = runs.third.final_rules[0]
    assert main(["lineage", str(runs.storage), rid, "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["rules"][0]["created"]["run_id"] == short_id(runs.first.run_id)
