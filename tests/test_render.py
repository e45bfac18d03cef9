"""print_trace tells the run's story step by step, with names and percentages."""

from __future__ import annotations

import io
import re

import pytest

from rulechef_trace import Trace, build_trace, print_trace, record_trace, render_trace
from rulechef_trace.report import diff, lineage, render_diff, render_html, render_lineage
from rulechef_trace.report.numbers import pct
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, audit_merge, last_trace, make_chef
from tests.trace_factory import Traces, make_traces, merge_dag_trace


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    return make_traces(tmp_path_factory.mktemp("story"))


def test_print_trace_tells_the_story_with_names_and_percentages(tmp_path):
    """Synthesis, patches, an audit merge and the end, in words a person reads."""
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
    """A run that ended early says how, and still has a Final line."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(min_examples=99)
    text = render_trace(last_trace(recorder))
    assert "not_enough_data" in text and "Final: 0 rules" in text


def test_header_row_lines_up_with_the_rows(traces: Traces) -> None:
    """Each column title ends where its column's values end; "step" starts with the text."""
    lines = render_trace(traces.story).splitlines()
    head = next(line for line in lines if line.startswith("seq "))
    rows = [line for line in lines if re.match(r"^ *\d+ +[\d.]+s +\d+  ", line)]
    assert rows
    for row in rows:
        for title in ("seq", "time", "rules"):
            end = head.index(title) + len(title)
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (title, row)
        assert row[head.index("step") - 1] == " " and row[head.index("step")] != " "


def test_every_audit_and_the_end_show_their_f1(traces: Traces) -> None:
    """Every audit that acted shows F1 before → after; the last step shows the final F1."""
    trace = traces.story
    text = render_trace(trace)
    for event in trace.events_of("audit_applied"):
        if event["actions"] and not event["reverted"]:
            move = f"F1 {pct(event['metrics_before']['f1'])} → {pct(event['metrics_after']['f1'])}"
            assert move in text
    assert trace.final_metrics is not None
    final = pct(trace.final_metrics["f1"])
    assert f"finalized: completed, {len(trace.final_rules)} rules, F1 {final}" in text
    assert f"Final: {len(trace.final_rules)} rules   F1 {final}" in text


def test_marginal_f1_is_in_percentage_points(traces: Traces) -> None:
    """Pruning shows each rule's marginal F1 in points, like every other metric in %."""
    trace = traces.pruned
    (pruned,) = trace.events_of("pruned")
    text = render_trace(trace)
    for rid, delta in pruned["marginal_f1"].items():
        assert f"{trace.name_of(rid)}: marginal F1 {delta * 100:+.1f} pp" in text
    assert not re.search(r"marginal F1 [+-]0\.\d{3}\b", text)


def _mid_run(trace: Trace, keep: int) -> Trace:
    events = [{**e, "run_id": trace.run["id"]} for e in trace.events[:keep]]
    events[0].update({k: trace.run[k] for k in ("kind", "dataset", "task", "started_at")})
    events[0]["rule_names"] = {rid: entry["name"] for rid, entry in trace["rules"].items()}
    return build_trace(events)


def test_a_stream_read_mid_run_never_says_final(traces: Traces) -> None:
    """Without its finalized event a run is "still running", with rules "so far"."""
    partial = _mid_run(traces.story, 6)
    assert partial.status == "incomplete"
    text = render_trace(partial)
    assert "(learn, still running, or stopped before its end)" in text
    assert "Not finished: no finalized event" in text
    assert f"Rules so far: {len(partial.final_rules)}" in text
    assert "Final" not in text and "finalized:" not in text


def test_missing_run_fields_show_a_dash_never_none() -> None:
    """A trace whose run lacks id, dataset, task and times reads "—", never "None"."""
    trace = merge_dag_trace(2)
    for key in ("id", "dataset", "kind", "task", "task_type", "started_at", "rulechef_version"):
        trace["run"][key] = None
    texts = [
        render_trace(trace),
        render_lineage(trace, lineage(trace)),
        render_diff(diff(trace, trace)),
        render_html(trace),
    ]
    for text in texts:
        assert not re.search(r"\b(None|nan|null|undefined)\b", text)
    assert "RULECHEF TRACE  —  (—, completed, 60.00s)" in texts[0]
