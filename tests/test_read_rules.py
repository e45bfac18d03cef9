"""The rule report card: rulechef's per-rule figures, weak and idle flags, survival and churn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rulechef_trace import load_trace, record_trace, render_trace
from rulechef_trace.cli import main
from rulechef_trace.report.rules import (
    LOW_SUPPORT,
    RuleReport,
    extremes,
    folder_report,
    rule_report,
)
from tests.scripted import FIX_POS, ScriptedLLM, make_chef, rule


def _learned(tmp_path: Path) -> tuple[object, RuleReport]:
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]), "agentic")
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=2)
    return chef, rule_report(load_trace(tmp_path / "reviews.trace.json"))


def test_the_report_card_numbers_are_the_chefs_own(tmp_path: Path) -> None:
    """Every card's precision, support, format, label and priority equal chef.dataset.rules."""
    chef, report = _learned(tmp_path)
    by_id = {c.id: c for c in report.rules}
    rules = chef.dataset.rules  # type: ignore[attr-defined]
    assert sorted(by_id) == sorted(r.id for r in rules)
    for r in rules:
        card = by_id[r.id]
        assert (card.precision, card.support) == (r.validated_precision, r.validated_support)
        assert (card.format, card.label, card.priority) == (
            r.format.value,
            r.output_template["label"],
            r.priority,
        )


def test_cards_are_grouped_by_label_strongest_first(tmp_path: Path) -> None:
    """Within a label, higher precision (then support) comes first."""
    _, report = _learned(tmp_path)
    for label in report.labels:
        cards = [c for c in report.rules if c.label == label]
        keys = [(c.precision or 0, c.support or 0) for c in cards]
        assert keys == sorted(keys, reverse=True)
    assert report.labels == sorted(report.labels)


def _trace_with(rules: list[dict[str, object]]) -> dict[str, object]:
    return {
        "run": {"dataset": "d", "id": "r1", "kind": "learn"},
        "events": [],
        "final": {"rules": rules},
    }


def test_flags_follow_the_stated_thresholds() -> None:
    """Low precision under 50 %, low support under 4, idle at support 0, unvalidated at none."""
    report = rule_report(
        _trace_with(
            [
                {"id": "a", "name": "a", "precision": 0.4, "support": 10},
                {"id": "b", "name": "b", "precision": 1.0, "support": LOW_SUPPORT - 1},
                {"id": "c", "name": "c", "precision": 0.0, "support": 0},
                {"id": "d", "name": "d"},
                {"id": "e", "name": "e", "precision": 0.5, "support": LOW_SUPPORT},
            ]
        )
    )
    flags = {c.id: c.flags for c in report.rules}
    assert flags == {
        "a": ["low precision"],
        "b": ["low support"],
        "c": ["idle"],
        "d": ["unvalidated"],
        "e": [],
    }


def test_extremes_never_overlap() -> None:
    """The strongest and weakest lists are disjoint, even for few rules."""
    rules = [{"id": str(i), "name": str(i), "precision": i / 10, "support": 5} for i in range(5)]
    strongest, weakest = extremes(rule_report(_trace_with(rules)))
    assert [c.id for c in strongest] == ["4", "3"]
    assert [c.id for c in weakest] == ["0", "1"]


def test_a_folder_tells_survival_and_churn(tmp_path: Path) -> None:
    """An incremental run replaces "pos words" by name; "neg words" survives both runs."""
    wider = {"rules": [rule("pos words", "good|great|nice|lovely", "pos")]}
    llm = ScriptedLLM()
    chef = make_chef(tmp_path, llm)
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
    first = {r.name: r.id for r in chef.dataset.rules}
    llm.script["patch"] = lambda prompt: wider
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1, incremental_only=True)
    second = {r.name: r.id for r in chef.dataset.rules}
    assert second["neg words"] == first["neg words"] and second["pos words"] != first["pos words"]
    (report,) = folder_report(tmp_path)
    by_name = {c.name: c for c in report.rules}
    assert report.kept_runs == 2
    assert (by_name["neg words"].runs, by_name["neg words"].replaced) == (2, 0)
    assert (by_name["pos words"].runs, by_name["pos words"].replaced) == (1, 1)
    assert report.churn == {"pos words": 1}


def test_cli_rules_prints_the_card_and_json_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rules PATH` shows every final rule; `--json` carries the same cards."""
    chef, report = _learned(tmp_path)
    path = str(tmp_path / "reviews.trace.json")
    assert main(["rules", path]) == 0
    text = capsys.readouterr().out
    assert "RULE REPORT CARD" in text
    for card in report.rules:
        assert card.name in text
    assert main(["rules", "--json", str(tmp_path)]) == 0
    (cards,) = json.loads(capsys.readouterr().out)
    assert {c["id"] for c in cards["rules"]} == {r.id for r in chef.dataset.rules}  # type: ignore[attr-defined]


def test_the_report_card_never_holds_a_pattern(tmp_path: Path) -> None:
    """No rule's pattern text reaches the cards or the story."""
    chef, report = _learned(tmp_path)
    shown = json.dumps(report.to_dict()) + render_trace(load_trace(tmp_path / "reviews.trace.json"))
    for r in chef.dataset.rules:  # type: ignore[attr-defined]
        assert r.content not in shown


def test_print_trace_shows_strongest_and_weakest(tmp_path: Path) -> None:
    """The story's footer lists the top and bottom rules by validated precision."""
    _, report = _learned(tmp_path)
    story = render_trace(load_trace(tmp_path / "reviews.trace.json"))
    strongest, weakest = extremes(report)
    assert strongest and weakest
    assert "Strongest" in story and f"+ {strongest[0].name} (P" in story
    assert f"- {weakest[0].name} (P" in story
