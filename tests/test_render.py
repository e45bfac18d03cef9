"""print_trace tells the run's story step by step, with names and percentages."""

from __future__ import annotations

import io

from rulechef_trace import print_trace, record_trace, render_trace
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, audit_merge, make_chef


def test_print_trace_tells_the_story_with_names_and_percentages(tmp_path):
    llm = ScriptedLLM(
        patch=[BREAK, FIX_ALL],
        audit=[audit_merge(["pos more", "pos words"], "pos all", "good|great|nice|lovely")],
    )
    chef = make_chef(tmp_path, llm, "agentic")
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=3)
    out = io.StringIO()
    print_trace(tmp_path / "reviews.trace.json", file=out)
    text = out.getvalue()
    assert text.startswith("=" * 78)
    assert "RULECHEF TRACE  reviews  (learn, completed" in text
    assert "synthesized (per_class): 2 rules from 12 examples; +2 −0" in text
    assert "patch 1 REJECTED: F1 80.0% → " in text
    assert "proposed +1 −0 (broad); rules unchanged" in text
    assert "patch 2 ACCEPTED: F1 80.0% → 100.0%" in text
    assert "skipped merge of pos words: fewer than two known rules" in text
    assert "merged pos more, pos words → pos all" in text
    assert "refined: target reached at iteration 3/3, best F1 100.0%" in text
    assert "Final: 3 rules   F1 100.0%" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_render_of_a_failed_run_shows_the_error(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(min_examples=99)
    text = render_trace(recorder.last)
    assert "not_enough_data" in text and "Final: 0 rules" in text
