"""Nobody listening means rulechef exactly as shipped; listening is plain blinker."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import rulechef.splitting
from rulechef.engine import RuleChef
from rulechef.learner import RuleLearner
from rulechef.pipeline import LearningPipeline

import rulechef_trace
from rulechef_trace import patch_decided, record_trace, run_started, synthesized
from rulechef_trace._capture import install as capture
from rulechef_trace._capture.rulechef02 import refine as capture_refine
from rulechef_trace._capture.rulechef02.hooks import HOOKS
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, last_trace, make_chef

ORIGINALS: dict[tuple[Any, str], Any] = {
    (cls, name): cls.__dict__[name]
    for cls, name in [
        (LearningPipeline, "run"),
        (LearningPipeline, "_synthesize"),
        (LearningPipeline, "_merge_rules"),
        (LearningPipeline, "_audit_rules"),
        (RuleLearner, "synthesize_ruleset"),
        (RuleLearner, "synthesize_ruleset_per_class"),
        (RuleLearner, "evaluate_and_refine"),
        (RuleLearner, "synthesize_patch_ruleset"),
        (RuleLearner, "_merge_patch"),
        (RuleLearner, "_dedup_rules"),
        (RuleLearner, "_log_patch_decision"),
        (RuleLearner, "_build_per_class_prompt"),
        (RuleLearner, "_parse_rules_from_response"),
        (RuleLearner, "_get_classes"),
        (RuleLearner, "_run_mid_refinement_audit"),
        (RuleLearner, "_evaluate_rules"),
        (RuleChef, "evaluate"),
        (RuleChef, "rank_rules"),
        (RuleChef, "delete_rule"),
        (RuleChef, "load_rules"),
        (rulechef.splitting, "split_dataset"),
    ]
}


def assert_rulechef_as_shipped(chef: Any = None) -> None:
    for (cls, name), original in ORIGINALS.items():
        assert cls.__dict__[name] is original, f"{cls.__name__}.{name} is not the original"
        func = original.__func__ if isinstance(original, staticmethod) else original
        # Structural too: ORIGINALS is read after rulechef_trace was imported.
        assert func.__module__.startswith("rulechef.") and not hasattr(func, "__wrapped__")
    assert not capture.installed()
    if chef is not None:
        for name in ("guide_refinement", "audit_rules", "critique_rules"):
            assert name not in vars(chef.coordinator), f"coordinator.{name} left patched"


def test_every_hooked_method_is_in_the_identity_check():
    hooked = {(h.where, h.name) for h in HOOKS}
    checked = {(cls.__name__, name) for cls, name in ORIGINALS}  # a module's is its dotted name
    assert hooked <= checked


def test_importing_the_package_leaves_rulechef_untouched():
    assert rulechef_trace.__version__
    assert_rulechef_as_shipped()


def test_an_untraced_run_runs_the_original_functions(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]), "agentic")
    chef.learn_rules(max_refinement_iterations=2)
    assert_rulechef_as_shipped(chef)
    assert not list(tmp_path.glob("*.trace.json"))


def test_hooks_exist_only_while_somebody_listens(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]), "agentic")
    with record_trace(chef):
        assert capture.installed()
        assert LearningPipeline.__dict__["run"] is not ORIGINALS[(LearningPipeline, "run")]
        chef.learn_rules(max_refinement_iterations=2)
    assert_rulechef_as_shipped(chef)


def test_staticmethods_are_restored_as_the_same_staticmethod_objects(tmp_path):
    with record_trace(make_chef(tmp_path, ScriptedLLM())):
        assert isinstance(RuleLearner.__dict__["_merge_patch"], staticmethod)
        assert RuleLearner.__dict__["_merge_patch"] is not ORIGINALS[(RuleLearner, "_merge_patch")]
    assert RuleLearner.__dict__["_merge_patch"] is ORIGINALS[(RuleLearner, "_merge_patch")]


def test_repeated_attach_detach_never_nests_wrappers(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    for _ in range(50):
        with record_trace(chef, write=False), record_trace(chef, write=False):
            run = LearningPipeline.__dict__["run"]
            assert run.__wrapped__ is ORIGINALS[(LearningPipeline, "run")]
    assert_rulechef_as_shipped(chef)


def test_plain_blinker_connect_receives_the_events_of_one_chef(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    other = make_chef(tmp_path / "other", ScriptedLLM(patch=[BREAK, FIX_ALL]))
    seen: list[tuple[Any, dict[str, Any]]] = []

    def on_patch(sender: Any, **event: Any) -> None:
        seen.append((sender, event))

    with patch_decided.connected_to(on_patch, sender=chef):
        chef.learn_rules(max_refinement_iterations=3)
        other.learn_rules(max_refinement_iterations=3)
    assert [e["outcome"] for _, e in seen] == ["rejected", "accepted"]
    assert all(sender is chef for sender, _ in seen)
    assert seen[0][1]["seq"] < seen[1][1]["seq"]
    assert_rulechef_as_shipped(chef)


def test_a_weakly_connected_receiver_keeps_hooks_only_while_alive(tmp_path):
    def on_start(sender: Any, **event: Any) -> None:
        pass

    run_started.connect(on_start)
    assert capture.installed()
    del on_start
    import gc

    gc.collect()
    assert_rulechef_as_shipped()


def test_a_receiver_disconnected_from_its_only_sender_uninstalls(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    received: list[int] = []

    def on_synth(sender: Any, **event: Any) -> None:
        received.append(event["seq"])

    synthesized.connect(on_synth, sender=chef, weak=False)
    assert capture.installed()
    synthesized.disconnect(on_synth, sender=chef)
    chef.learn_rules(max_refinement_iterations=1)
    assert received == []
    assert_rulechef_as_shipped(chef)
    synthesized.disconnect(on_synth)


def test_a_raising_receiver_never_breaks_the_run(tmp_path, caplog):
    untraced = make_chef(tmp_path / "a", ScriptedLLM(patch=[BREAK, FIX_ALL]))
    expected = untraced.learn_rules(max_refinement_iterations=3)
    chef = make_chef(tmp_path / "b", ScriptedLLM(patch=[BREAK, FIX_ALL]))
    after: list[str] = []

    def explode(sender: Any, **event: Any) -> None:
        raise RuntimeError("receiver bug")

    def note(sender: Any, **event: Any) -> None:
        after.append(event["outcome"])

    patch_decided.connect(explode, weak=False)
    patch_decided.connect(note, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="rulechef_trace"), record_trace(chef) as rec:
            result = chef.learn_rules(max_refinement_iterations=3)
    finally:
        patch_decided.disconnect(explode)
        patch_decided.disconnect(note)
    assert [r.name for r in result[0]] == [r.name for r in expected[0]]
    assert result[1].micro_f1 == expected[1].micro_f1
    assert after == ["rejected", "accepted"]
    assert last_trace(rec).run["stats"]["receiver_errors"] == 2
    assert sum("receiver bug" in r.exc_text for r in caplog.records if r.exc_text) == 2


def test_strict_mode_reraises_receiver_errors(tmp_path, monkeypatch):
    chef = make_chef(tmp_path, ScriptedLLM())

    def explode(sender: Any, **event: Any) -> None:
        raise RuntimeError("receiver bug")

    with (
        record_trace(chef, strict=True),
        synthesized.connected_to(explode),
        pytest.raises(RuntimeError, match="receiver bug"),
    ):
        chef.learn_rules(max_refinement_iterations=1)
    monkeypatch.setenv("RULECHEF_TRACE_STRICT", "1")
    with (
        record_trace(chef),
        synthesized.connected_to(explode),
        pytest.raises(RuntimeError, match="receiver bug"),
    ):
        chef.learn_rules(max_refinement_iterations=1)


def test_a_failing_hook_is_logged_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    def broken(*args: Any) -> None:
        raise ZeroDivisionError("hook bug")

    monkeypatch.setattr(capture_refine, "explain_name_merge", broken)
    untraced = make_chef(tmp_path / "a", ScriptedLLM(patch=[BREAK, FIX_ALL]))
    expected = untraced.learn_rules(max_refinement_iterations=3)
    chef = make_chef(tmp_path / "b", ScriptedLLM(patch=[BREAK, FIX_ALL]))
    with caplog.at_level(logging.ERROR, logger="rulechef_trace"), record_trace(chef) as rec:
        result = chef.learn_rules(max_refinement_iterations=3)
    assert [r.name for r in result[0]] == [r.name for r in expected[0]]
    assert last_trace(rec).run["stats"]["hook_errors"] == 2
    assert any("hook patch_decided failed" in r.getMessage() for r in caplog.records)
    with record_trace(chef, strict=True), pytest.raises(ZeroDivisionError):
        make_chef(tmp_path / "c", ScriptedLLM(patch=[BREAK])).learn_rules(
            max_refinement_iterations=1
        )


def test_a_clean_detach_leaves_the_wrappers_for_the_next_attach(tmp_path):
    """Installing again sets the very wrapper objects of the last install (none made anew)."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, write=False):
        first = {key: key[0].__dict__[key[1]] for key in ORIGINALS}
    assert_rulechef_as_shipped(chef)
    with record_trace(chef, write=False) as recorder:
        again = {key: key[0].__dict__[key[1]] for key in ORIGINALS}
        chef.learn_rules(max_refinement_iterations=2)
    assert again == first and all(again[k] is first[k] for k in first)
    assert recorder.last is not None and recorder.last.status == "completed"
    assert_rulechef_as_shipped(chef)
