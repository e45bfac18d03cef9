"""Rule-set edits outside learning are runs of kind "edit" that replay."""

from __future__ import annotations

from pathlib import Path

from rulechef_trace import load_trace, record_trace, render_trace, replay, validate
from tests.scripted import ScriptedLLM, last_trace, make_chef, rule


def history(storage: Path) -> list[Path]:
    return sorted((storage / "reviews.traces").glob("*.trace.json"))


def test_delete_rule_inside_a_recorder_is_an_edit_run_that_replays(tmp_path: Path) -> None:
    """learn, then delete_rule: the history holds an edit trace from the learned rules."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        learned = [r.id for r in chef.dataset.rules]
        assert chef.delete_rule(learned[0])
    edit = last_trace(recorder)
    assert edit.kind == "edit"
    assert [e["type"] for e in edit.events] == ["run_started", "rules_edited", "finalized"]
    (change,) = edit.events_of("rules_edited")
    assert change["method"] == "delete_rule"
    assert change["removed"] == [learned[0]] and change["added"] == []
    assert edit.run["params"] == {"method": "delete_rule", "rule_id": learned[0]}
    assert validate(edit) == []
    assert replay(edit) == learned[1:]
    files = history(tmp_path)
    assert [load_trace(f).kind for f in files] == ["learn", "edit"]
    # The latest-run file stays the learning run's.
    assert load_trace(tmp_path / "reviews.trace.json").kind == "learn"


def test_load_rules_is_an_edit_run_without_the_rules_themselves(tmp_path: Path) -> None:
    """load_rules(list) records the ids it brought in, never the source it read."""
    chef = make_chef(tmp_path, ScriptedLLM())
    source = [
        {**r, "id": rid, "content": r["pattern"]}
        for rid, r in (
            ("a1b2c3d4", rule("pos words", "good|great", "pos")),
            ("e5f6a7b8", rule("neg words", "bad|awful", "neg")),
        )
    ]
    with record_trace(chef) as recorder:
        chef.load_rules(source)
    edit = last_trace(recorder)
    (change,) = edit.events_of("rules_edited")
    assert change["method"] == "load_rules"
    assert sorted(change["added"]) == ["a1b2c3d4", "e5f6a7b8"]
    assert sorted(r.id for r in chef.dataset.rules) == ["a1b2c3d4", "e5f6a7b8"]
    assert "source" not in edit.run["params"]
    assert "good|great" not in str(edit)
    assert sorted(edit["rules"][rid]["name"] for rid in change["added"]) == [
        "neg words",
        "pos words",
    ]


def test_an_edit_with_nobody_listening_leaves_rulechef_untouched(tmp_path: Path) -> None:
    """Without a recorder, delete_rule is rulechef's own function and writes no trace."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
    before = history(tmp_path)
    chef.delete_rule(chef.dataset.rules[0].id)
    assert history(tmp_path) == before


def test_a_direct_evaluate_and_refine_is_a_refine_run_with_its_patches(tmp_path: Path) -> None:
    """chef.learner.evaluate_and_refine(...) inside a recorder: a valid, replaying refine run."""
    from tests.scripted import FIX_POS

    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]))
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
    chef.llm.script["patch"] = [FIX_POS, {"rules": []}]
    start = list(chef.dataset.rules)
    with record_trace(chef) as recorder:
        best, _ = chef.learner.evaluate_and_refine(start, chef.dataset, max_iterations=2)
    refine = last_trace(recorder)
    assert refine.kind == "refine"
    assert validate(refine) == []
    assert refine.events[0]["type"] == "run_started"
    assert refine.events[0]["rules"] == [r.id for r in start]
    assert refine.events_of("patch_decided")
    assert refine.events_of("refined")
    assert sorted(replay(refine)) == sorted(r.id for r in best)
    assert refine.run["params"]["max_iterations"] == 2


def test_learn_edit_unseen_delete_learn_names_the_learning_run_and_the_unseen_change(
    tmp_path: Path,
) -> None:
    """The issue's Done-when: learn, delete_rule (recorded), delete unobserved, learn.

    The history holds an edit trace that replays; the second learning run's
    changed_since is measured against that edit (so its deletion is not told
    again) and names the first learning run, the edit and the unseen deletion.
    """
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
        first = [r.id for r in chef.dataset.rules]
        chef.delete_rule(first[0])  # recorded: an edit run
    learned, edit_run = (load_trace(f) for f in history(tmp_path))
    assert (learned.kind, edit_run.kind) == ("learn", "edit")
    assert validate(edit_run) == [] and replay(edit_run) == first[1:]
    chef.delete_rule(first[1])  # nobody listening: no trace of it
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    second = last_trace(recorder)
    assert second.events[0]["changed_since"] == {
        "run": edit_run.run_id,
        "added": [],
        "removed": [first[1]],
        "learning_run": learned.run_id,
        "edits": [edit_run.run_id],
    }
    assert validate(second) == [] and replay(second) == second.final_rules
    # The removed rule keeps its name in the new trace's table (read from the kept trace).
    assert second.name_of(first[1]) == learned.name_of(first[1]) != first[1]
    assert [load_trace(f).kind for f in history(tmp_path)] == ["learn", "edit", "learn"]
    story = " ".join(render_trace(second).split())  # one line: the story wraps at 78 columns
    assert f"changed while no hook listened: +0 −1 against run {edit_run.run_id[:12]}" in story
    assert f"learning run {learned.run_id[:12]}, then recorded run {edit_run.run_id[:12]}" in story
    assert f"removed {learned.name_of(first[1])}" in story


def test_a_recorder_that_wrote_the_last_trace_names_the_learning_run_too(tmp_path: Path) -> None:
    """Inside one recorder (its own note of the last trace), an assignment is found likewise."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        first = [r.id for r in chef.dataset.rules]
        chef.delete_rule(first[0])
        chef.dataset.rules = []  # no hook sees an assignment
        chef.learn_rules(max_refinement_iterations=1)
    learned, edit_run, second = recorder.traces
    assert second.events[0]["changed_since"] == {
        "run": edit_run.run_id,
        "added": [],
        "removed": first[1:],
        "learning_run": learned.run_id,
        "edits": [edit_run.run_id],
    }


def test_rules_no_kept_run_learned_have_no_learning_run(tmp_path: Path) -> None:
    """load_rules (recorded), an unseen deletion, learn: learning_run is null, the edit named."""
    chef = make_chef(tmp_path, ScriptedLLM())
    source = [{**rule("pos words", "good|great", "pos"), "id": "a1b2c3d4", "content": "good"}]
    source.append({**rule("neg words", "bad", "neg"), "id": "e5f6a7b8", "content": "bad"})
    with record_trace(chef):
        chef.load_rules(source)
    chef.delete_rule("a1b2c3d4")
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    (loaded,) = [load_trace(f) for f in history(tmp_path) if load_trace(f).kind == "edit"]
    changed = last_trace(recorder).events[0]["changed_since"]
    assert changed["learning_run"] is None
    assert changed["edits"] == [loaded.run_id] and changed["removed"] == ["a1b2c3d4"]
    assert validate(recorder.last) == []


def test_no_change_since_the_last_trace_adds_nothing(tmp_path: Path) -> None:
    """Two runs in a row with nothing in between: no changed_since."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.learn_rules(max_refinement_iterations=1)
    assert all("changed_since" not in t.events[0] for t in recorder.traces)
