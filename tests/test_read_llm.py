"""The readers tell LLM calls: a step's calls on its line, failures as failures, run totals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import Trace, record_trace, render_trace
from rulechef_trace.report import render_html
from tests.scripted import FIX_POS, NO_CONTENT, ScriptedLLM, last_trace, make_chef, rule


def learn(tmp_path: Path, llm: ScriptedLLM, coordinator: str = "agentic", n: int = 2) -> Trace:
    chef = make_chef(tmp_path, llm, coordinator)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=n)
    return last_trace(recorder)


def test_the_header_sums_the_runs_calls_and_names_failures_by_type(tmp_path: Path) -> None:
    """One header line: calls, failed ones by error type, time, tokens."""
    trace = learn(tmp_path, ScriptedLLM(patch=[RuntimeError("429 Too Many Requests"), FIX_POS]))
    text = render_trace(trace)
    total = trace.run["llm"]
    (line,) = [s for s in text.splitlines() if s.startswith("  LLM: ")]
    assert line.startswith(f"  LLM: {total['calls']} calls (1 failed: 1 RuntimeError), ")
    assert f"{total['input_tokens']:,} → {total['output_tokens']:,} tokens" in line


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (RuntimeError("429 Too Many Requests"), "patch 1 LLM_ERROR: the LLM call FAILED"),
        ("not json", "patch 1 UNPARSABLE: the LLM's answer was not JSON rulechef could read"),
        (NO_CONTENT, "patch 1 UNPARSABLE"),
        (
            {"rules": [{**rule("x", "x", "pos"), "format": "sql"}]},
            "patch 1 INVALID_RULES: rulechef's parser skipped all 1 rules of the answer",
        ),
        ({"rules": []}, "patch 1 EMPTY: the LLM proposed nothing"),
    ],
)
def test_a_patch_that_changed_nothing_says_why_in_the_story(
    tmp_path: Path, answer: Any, said: str
) -> None:
    """The story never says 'the LLM proposed nothing' for a failed or unreadable answer."""
    text = render_trace(learn(tmp_path, ScriptedLLM(patch=[answer]), "simple", n=1))
    assert said in " ".join(text.split())
    if said.endswith("FAILED"):
        assert "RuntimeError: 429 Too Many Requests" in " ".join(text.split())


def test_failed_coordinator_calls_say_what_rulechef_then_did(tmp_path: Path) -> None:
    """Guidance, critique and audit calls that raised are told with what followed."""
    boom = RuntimeError("503 Service Unavailable")
    trace = learn(tmp_path, ScriptedLLM(guide=[boom], critic=[boom], audit=[boom]))
    text = " ".join(render_trace(trace).split())
    assert "coordinator guidance: the LLM call FAILED (RuntimeError: 503" in text
    assert "went on without advice" in text
    assert "critic: the LLM call FAILED" in text
    assert "audit (final): the LLM call FAILED" in text and "no action applied" in text


def test_a_run_whose_synthesis_failed_says_so_and_ends_as_llm_error(tmp_path: Path) -> None:
    """Every synthesis call failing: the failure on the synthesis line, status llm_error."""
    trace = learn(tmp_path, ScriptedLLM(per_class=[ConnectionError("401 Unauthorized")]))
    text = " ".join(render_trace(trace).split())
    assert "every synthesis call FAILED: ConnectionError: 401 Unauthorized" in text
    assert "per-class calls FAILED for neg, pos" in text
    assert "finalized: llm_error, 0 rules: ConnectionError: 401 Unauthorized" in text


def test_each_step_line_carries_its_llm_calls(tmp_path: Path) -> None:
    """A step that called the LLM shows its calls and tokens under its line."""
    trace = learn(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]))
    (synth,) = trace.events_of("synthesized")
    summary = synth["llm"]
    expected = (
        f"LLM: {summary['calls']} calls, {summary['duration_s']:.2f}s, "
        f"{summary['input_tokens']:,} → {summary['output_tokens']:,} tokens"
    )
    assert expected in render_trace(trace)


def test_the_html_report_shows_the_runs_llm_totals(tmp_path: Path) -> None:
    """The HTML cards give calls, LLM time and tokens; nothing reads None."""
    trace = learn(tmp_path, ScriptedLLM(patch=[RuntimeError("boom"), FIX_POS]))
    html = render_html(trace)
    total = trace.run["llm"]
    assert f"<b>{total['calls']} (1 failed)</b><span>LLM calls</span>" in html
    assert "tokens in → out" in html
    assert "patch 1 LLM_ERROR: the LLM call FAILED (RuntimeError: boom)" in html
    assert "LLM call FAILED:" not in html  # told on the patch's row, not as a row of its own
    assert "None" not in html.replace("NoneType", "")


def test_history_and_diff_give_each_runs_llm_calls_tokens_and_cost(tmp_path: Path) -> None:
    """history lists calls/failures/tokens/cost per run; diff compares them."""
    from rulechef_trace.report import diff, history, render_diff, render_history

    chef = make_chef(tmp_path, ScriptedLLM(patch=[RuntimeError("boom"), FIX_POS]), "simple")
    with record_trace(chef, prices={"gpt-4o-mini": (0.15, 0.60)}) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
        chef.learn_rules(max_refinement_iterations=1)
    first, second = recorder.traces
    text = render_history(history(tmp_path))
    for trace in (first, second):
        llm = trace.run["llm"]
        row = next(line for line in text.splitlines() if trace.run_id[:12] in line and "→" in line)
        assert f" {llm['calls']:>5} {llm['errors']:>6}  " in row
        assert f"{llm['input_tokens']:,} → {llm['output_tokens']:,} tokens" in row
        assert f"${llm['cost']:.4f}" in row
    table = render_diff(diff(first, second))
    calls = next(line for line in table.splitlines() if line.strip().startswith("LLM calls "))
    assert calls.split()[2:4] == [str(first.run["llm"]["calls"]), str(second.run["llm"]["calls"])]
    assert "LLM cost" in table and "tokens in" in table
