"""The rule_trace fixture, tested from the inside with pytest's own pytester."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import patch_decided
from rulechef_trace._capture import install as capture
from rulechef_trace.pytest_plugin import RuleTrace
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, make_chef

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

# Inner runs restore sys.modules afterwards; keep them from re-importing hypothesis each time.
FAST = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

HEADER = """
from rulechef_trace._capture import install as capture
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, make_chef
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose test files can import this repository's scripted client."""
    pytester.syspathinsert(ROOT)
    return pytester


def run_inner(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(HEADER + body)
    return pytester.runpytest(*FAST, *args)


def test_plugin_is_registered_through_the_entry_point(inner: pytest.Pytester) -> None:
    config = inner.parseconfig()
    plugin = config.pluginmanager.get_plugin("rulechef_trace")
    assert plugin is not None and plugin.__name__ == "rulechef_trace.pytest_plugin"


def test_fixture_records_a_run_and_offers_helpers(inner: pytest.Pytester) -> None:
    result = run_inner(
        inner,
        """
def test_learn(rule_trace, tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    assert capture.installed()
    chef.learn_rules(max_refinement_iterations=3)
    assert len(rule_trace.traces) == 1
    assert sorted(rule_trace.last.final_rules) == sorted(r.id for r in chef.dataset.rules)
    assert rule_trace.story()[:2] == ["run_started", "synthesized"]
    assert rule_trace.story()[-1] == "finalized"
    assert [p["outcome"] for p in rule_trace.patches()] == ["rejected", "accepted"]
    assert [p["iteration"] for p in rule_trace.patches(accepted=True)] == [2]
    assert [p["iteration"] for p in rule_trace.patches(accepted=False)] == [1]
    assert len(rule_trace.events("iteration_evaluated")) == 3
    assert rule_trace.last.final_metrics["f1"] == 1.0

def test_hooks_are_gone_after_the_previous_test():
    assert not capture.installed()
""",
    )
    result.assert_outcomes(passed=2)


def test_fixture_records_every_chef_until_one_is_watched(inner: pytest.Pytester) -> None:
    result = run_inner(
        inner,
        """
def test_every_chef_then_one(rule_trace, tmp_path):
    first = make_chef(tmp_path / "a", ScriptedLLM(), name="first")
    second = make_chef(tmp_path / "b", ScriptedLLM(), name="second")
    first.learn_rules(max_refinement_iterations=1)
    second.learn_rules(max_refinement_iterations=1)
    assert [t.run["dataset"] for t in rule_trace.traces] == ["first", "second"]
    rule_trace.watch(second)
    first.learn_rules(max_refinement_iterations=1)
    second.learn_rules(max_refinement_iterations=1)
    assert [t.run["dataset"] for t in rule_trace.traces] == ["first", "second", "second"]
    assert rule_trace.story().count("run_started") == 3
""",
    )
    result.assert_outcomes(passed=1)


def test_clear_forgets_runs_and_recording_goes_on(inner: pytest.Pytester) -> None:
    result = run_inner(
        inner,
        """
import pytest

def test_clear(rule_trace, tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    with pytest.raises(LookupError, match="recorded no learning run"):
        rule_trace.last
    chef.learn_rules(max_refinement_iterations=1)
    first = rule_trace.last.run["id"]
    rule_trace.clear()
    assert rule_trace.traces == [] and rule_trace.events() == []
    chef.learn_rules(max_refinement_iterations=1)
    assert len(rule_trace.traces) == 1 and rule_trace.last.run["id"] != first
""",
    )
    result.assert_outcomes(passed=1)


def test_a_failing_test_shows_the_recorded_story(inner: pytest.Pytester) -> None:
    result = run_inner(
        inner,
        """
def test_fails(rule_trace, tmp_path):
    make_chef(tmp_path, ScriptedLLM(patch=[BREAK])).learn_rules(max_refinement_iterations=1)
    assert rule_trace.patches(accepted=True), "no patch was accepted"

def test_after_failure_nothing_is_left():
    assert not capture.installed()
""",
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*Captured rule traces call*",
            "*RULECHEF TRACE  reviews  (learn, completed*",
            "*patch 1 REJECTED*",
        ]
    )


def test_runs_outside_rule_trace_are_not_recorded(inner: pytest.Pytester) -> None:
    result = run_inner(
        inner,
        """
def test_no_fixture(tmp_path):
    assert not capture.installed()
    make_chef(tmp_path, ScriptedLLM()).learn_rules(max_refinement_iterations=1)
    assert not capture.installed()
""",
    )
    result.assert_outcomes(passed=1)


# --- the fixture used directly in this test session ------------------------


def test_rule_trace_fixture_in_this_session(rule_trace: RuleTrace, tmp_path: Any) -> None:
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    chef.learn_rules(max_refinement_iterations=2)
    assert rule_trace.events(patch_decided) == rule_trace.events("patch_decided")
    assert [e["accepted"] for e in rule_trace.patches()] == [True]
    assert list(rule_trace) == rule_trace.traces and len(rule_trace) == 1
    assert "1 run(s)" in repr(rule_trace)


def test_unknown_event_type_is_an_error(rule_trace: RuleTrace) -> None:
    with pytest.raises(ValueError, match="unknown event type 'patch_decide'"):
        rule_trace.events("patch_decide")


def test_watch_accepts_the_learning_pipeline(rule_trace: RuleTrace, tmp_path: Any) -> None:
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]))
    rule_trace.watch(chef._pipeline)
    chef.learn_rules(max_refinement_iterations=1)
    assert rule_trace.story()[0] == "run_started"
    assert rule_trace.patches(accepted=False)[0]["outcome"] == "rejected"


def test_stop_detaches_and_keeps_the_traces(tmp_path: Any) -> None:
    recorder = RuleTrace().start()
    make_chef(tmp_path, ScriptedLLM()).learn_rules(max_refinement_iterations=1)
    recorder.stop()
    recorder.stop()
    assert not capture.installed()
    assert len(recorder.traces) == 1


def test_importing_the_plugin_installs_no_hook() -> None:
    code = (
        "import rulechef_trace.pytest_plugin\n"
        "from rulechef_trace._capture import install as capture\n"
        "assert not capture.installed()\n"
        "assert not capture._live_receivers(capture.sig.finalized)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
