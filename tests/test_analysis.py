"""lineage, diff and history over real traces, and their text renderers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from rulechef_trace import Trace, TraceError, record_trace, validate
from rulechef_trace.report import (
    RuleLineage,
    UnknownRuleError,
    diff,
    history,
    lineage,
    render_diff,
    render_history,
    render_html,
    render_lineage,
    resolve_rule,
    summarize,
)
from tests.scripted import FIX_ALL, ScriptedLLM, make_chef
from tests.trace_factory import Traces, make_traces, merge_dag_trace


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    return make_traces(tmp_path_factory.mktemp("analysis"))


def by_name(items: list[RuleLineage], name: str) -> RuleLineage:
    (found,) = [item for item in items if item.name == name]
    return found


def texts(item: RuleLineage) -> list[str]:
    return [step.text for step in item.steps]


def assert_fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, long


# --- lineage ------------------------------------------------------------------


def test_lineage_of_every_final_rule_in_final_order(traces: Traces) -> None:
    found = lineage(traces.story)
    assert [item.rule_id for item in found] == traces.story.final_rules
    assert [item.name for item in found] == ["neg words", "pos all", "neg more"]
    assert all(item.final for item in found)


def test_merged_rule_follows_merge_and_replacement_back_to_synthesis(traces: Traces) -> None:
    merged = by_name(lineage(traces.story), "pos all")
    assert merged.origin == "merge" and merged.relation == "merged"
    assert merged.steps[0].action == "created"
    assert merged.steps[0].text.startswith("merged from pos words (")
    assert "by the mid-refinement audit of iteration 2" in merged.steps[0].text
    assert sorted(p.name for p in merged.parents) == ["pos more", "pos words"]

    words = by_name(list(merged.parents), "pos words")
    assert words.origin == "patch" and words.relation == "replaced" and not words.final
    assert texts(words)[0].startswith("added by the patch of iteration 1, replacing the earlier")
    assert texts(words)[-1].startswith(f"merged into pos all ({merged.rule_id})")
    (first,) = words.parents
    assert first.origin == "synthesized" and first.parents == ()
    assert texts(first) == [
        "synthesized (per-class synthesis)",
        f"replaced by pos words ({words.rule_id}) in the patch of iteration 1",
    ]
    assert set(merged.steps[0].related) == {p.rule_id for p in merged.parents}


def test_synthesized_rule_survives_audits_a_rejected_patch_and_refinement(traces: Traces) -> None:
    neg = by_name(lineage(traces.story), "neg words")
    assert neg.origin == "synthesized" and neg.parents == ()
    assert [(s.action, s.event) for s in neg.steps] == [
        ("created", "synthesized"),
        ("noted", "critiqued"),
        ("kept", "audit_applied"),
        ("kept", "patch_decided"),
        ("noted", "critiqued"),
        ("kept", "refined"),
        ("kept", "audit_applied"),
    ]
    assert texts(neg)[1:] == [
        "the critic commented on it (iteration 1)",
        "survived the mid-refinement audit of iteration 2",
        "kept: the rejected patch of iteration 2 would have removed it",
        "the critic commented on it (iteration 3)",
        "kept by refinement (stopped: max iterations)",
        "survived the final audit",
    ]
    seqs = [s.seq for s in neg.steps]
    assert seqs == sorted(seqs)


def test_rule_added_by_a_later_patch(traces: Traces) -> None:
    more = by_name(lineage(traces.story), "neg more")
    assert more.origin == "patch" and more.relation is None
    assert texts(more)[0] == "added by the patch of iteration 3"


def test_a_rule_only_ever_proposed(traces: Traces) -> None:
    (broad,) = lineage(traces.story, "broad")
    assert broad.origin == "proposed" and not broad.final and broad.parents == ()
    assert texts(broad) == ["proposed by the patch of iteration 2, which was rejected"]


def test_lineage_by_name_and_by_id(traces: Traces) -> None:
    trace = traces.story
    (merged,) = lineage(trace, "pos all")
    assert merged.final
    (same,) = lineage(trace, merged.rule_id)
    assert same == merged
    # "pos words" names two rules, neither final: the one added last is meant.
    (words,) = lineage(trace, "pos words")
    assert not words.final and words.relation == "replaced"
    assert resolve_rule(trace, "pos words") == [words.rule_id]


def test_unknown_rule_is_a_trace_error_and_a_key_error(traces: Traces) -> None:
    with pytest.raises(UnknownRuleError) as caught:
        lineage(traces.story, "no such rule")
    assert isinstance(caught.value, TraceError) and isinstance(caught.value, KeyError)
    assert str(caught.value) == "no rule with id or name 'no such rule' in this trace"
    assert caught.value.rule == "no such rule"
    with pytest.raises(KeyError):
        lineage(traces.story, "")


def test_refinement_restoring_earlier_rules(traces: Traces) -> None:
    trace = traces.restore
    (words,) = lineage(trace, "pos words")
    assert words.final
    assert [s.action for s in words.steps][:3] == ["created", "removed", "restored"]
    assert texts(words)[1] == "deleted by the patch of iteration 1"
    kept = trace.events_of("synthesized")[0]["seq"]
    assert texts(words)[2].startswith(
        f"restored: refinement kept its best rules, those of step #{kept}"
    )
    (strict,) = lineage(trace, "pos strict")
    assert not strict.final
    assert texts(strict)[-1].startswith(
        f"dropped: refinement went back to the rules of step #{kept}"
    )


def test_rank_rules_trace_lineage(traces: Traces) -> None:
    trace = traces.pruned
    (broad,) = lineage(trace, "broad")
    assert broad.origin == "carried" and not broad.final
    assert texts(broad)[0] == "present when the run started (learned by an earlier run)"
    assert texts(broad)[1].startswith("pruned as harmful by rank_rules (marginal F1 -")
    for item in lineage(trace):
        assert texts(item) == [
            "present when the run started (learned by an earlier run)",
            "survived pruning (harmful rules)",
        ]


def test_full_resynthesis_drops_the_rules_of_the_previous_run(tmp_path: Path) -> None:
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.learn_rules(max_refinement_iterations=1)
    first, second = recorder.traces
    old = first.final_rules[0]
    (item,) = lineage(second, old)
    assert texts(item) == [
        "present when the run started (learned by an earlier run)",
        "dropped: a full re-synthesis replaced every rule",
    ]


def test_lineage_is_plain_data(traces: Traces) -> None:
    data = orjson.loads(orjson.dumps([item.to_dict() for item in lineage(traces.story)]))
    assert [item["name"] for item in data] == ["neg words", "pos all", "neg more"]
    assert data[1]["parents"][0]["steps"][0]["action"] == "created"


def test_render_lineage(traces: Traces) -> None:
    text = render_lineage(traces.story, lineage(traces.story))
    assert text.startswith("=" * 78 + "\nRULECHEF LINEAGE  reviews  (learn, completed, 3 rules)\n")
    assert "  pos all (" in text and "└ merged from pos words (" in text
    assert "└ replaced pos words (" in text
    assert_fits(text)


# --- diff -----------------------------------------------------------------------


def test_diff_of_two_runs(traces: Traces) -> None:
    result = diff(traces.story, traces.simple)
    assert result.only_a == ["pos all"]
    assert result.only_b == ["pos more", "pos words"]
    # Same names, ids of their own in each run: the rules changed, they are not "in both".
    assert result.both == [] and result.changed == ["neg more", "neg words"]
    a, b = result.a, result.b
    assert (a.accepted, a.rejected, a.empty) == (2, 1, 0)
    assert (b.accepted, b.rejected, b.empty) == (1, 0, 0)
    assert (a.iterations, b.iterations) == (3, 2)
    assert a.status == b.status == "completed"
    f1 = result.metrics[0]
    assert f1.name == "F1" and f1.a == f1.b == 1.0 and f1.delta == 0.0
    assert [m.name for m in result.per_class] == ["neg", "pos"]


def test_diff_with_a_run_without_metrics(traces: Traces) -> None:
    result = diff(traces.simple, traces.pruned)
    assert result.b.metrics is None and result.b.iterations is None
    assert all(m.b is None and m.delta is None for m in result.metrics)
    assert result.only_a == [] and result.only_b == []
    text = render_diff(result)
    assert "F1                          100.0%             —           —" in text


def test_diff_of_a_run_with_itself_changes_nothing(traces: Traces) -> None:
    result = diff(traces.story, traces.story)
    assert result.only_a == result.only_b == []
    assert all(m.delta == 0.0 for m in result.metrics)


def test_render_diff(traces: Traces) -> None:
    text = render_diff(diff(traces.story, traces.simple), labels=("old.json", "new.json"))
    assert "RULECHEF DIFF  reviews (learn)  vs  reviews (learn)" in text
    assert "  A  old.json" in text and "  B  new.json" in text
    assert "  patches rejected                 1             0          -1" in text
    assert "  Rules only in A (1):\n    pos all\n" in text
    assert_fits(text)


def test_summarize_rank_rules_run(traces: Traces) -> None:
    s = summarize(traces.pruned)
    assert s.kind == "rank_rules" and s.iterations is None and s.metrics is None
    assert s.rules == len(traces.pruned.final_rules)


# --- history --------------------------------------------------------------------


def test_history_lists_kept_runs_oldest_first(traces: Traces) -> None:
    result = history(traces.storage)
    assert result.notes == []
    assert result.datasets == ["restore", "reviews"]
    reviews = [r for r in result.rows if r.dataset == "reviews"]
    assert [r.run_id for r in reviews] == [
        traces.story.run["id"],
        traces.simple.run["id"],
        traces.pruned.run["id"],
    ]
    assert [r.kind for r in reviews] == ["learn", "learn", "rank_rules"]
    assert [r.iterations for r in reviews] == [3, 2, None]
    assert reviews[0].f1 == 1.0 and reviews[2].f1 is None
    assert reviews[2].rules == len(traces.pruned.final_rules)
    assert all(r.status == "completed" and r.duration_s is not None for r in reviews)


def test_history_of_one_dataset(traces: Traces) -> None:
    result = history(traces.storage, "restore")
    assert [r.run_id for r in result.rows] == [traces.restore.run["id"]]
    assert history(traces.storage / "restore.traces").rows == result.rows


def test_history_skips_unreadable_files_with_a_note(tmp_path: Path, traces: Traces) -> None:
    folder = tmp_path / "reviews.traces"
    folder.mkdir()
    good = traces.file_of(traces.story)
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "a_empty.trace.json").write_text("")
    (folder / "b_cut.trace.json").write_bytes(good.read_bytes()[:50])
    (folder / "c_other.trace.json").write_text('{"hello": 1}')
    (folder / "d_dir.trace.json").mkdir()
    result = history(tmp_path)
    assert [r.run_id for r in result.rows] == [traces.story.run["id"]]
    assert [n.split(":")[0] for n in result.notes] == [
        "skipped a_empty.trace.json",
        "skipped b_cut.trace.json",
        "skipped c_other.trace.json",
        "skipped d_dir.trace.json",
    ]
    text = render_history(result)
    assert "  note: skipped a_empty.trace.json: empty file" in text
    assert_fits(text)


@pytest.mark.parametrize(
    ("make", "dataset", "problem"),
    [
        (lambda p: p / "missing", None, "no such directory"),
        (lambda p: p / "file.txt", None, "not a directory"),
        (lambda p: p, "nope", "no runs of dataset 'nope' (no runs recorded here)"),
    ],
)
def test_history_bad_folders(tmp_path: Path, make: Any, dataset: str | None, problem: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(TraceError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        history(make(tmp_path), dataset)


def test_history_of_an_empty_folder(tmp_path: Path) -> None:
    result = history(tmp_path)
    assert result.rows == [] and result.notes == []
    assert "No kept runs found" in render_history(result)


def test_render_history_shows_the_f1_trend(traces: Traces) -> None:
    text = render_history(history(traces.storage))
    lines = text.splitlines()
    start = lines.index("  reviews")
    rows = lines[start + 3 : start + 6]
    assert " learn " in rows[0] and rows[0].endswith("100.0%     —")
    assert rows[1].endswith("100.0%  +0.0")
    assert " rank_rules " in rows[2] and rows[2].endswith("—     —")
    assert_fits(text)


def test_history_rows_are_plain_data(traces: Traces) -> None:
    data = history(traces.storage).to_dict()
    assert orjson.loads(orjson.dumps(data))["rows"][0]["dataset"] == "restore"


def test_summaries_of_loaded_traces_match(traces: Traces) -> None:
    from rulechef_trace import load_trace

    loaded: Trace = load_trace(traces.file_of(traces.story))
    assert summarize(loaded) == summarize(traces.story)


# --- bounds: any merge graph in linear time and memory ---------------------------------


def told_in_full(items: list[RuleLineage]) -> list[str]:
    """Ids of every lineage node told in full (not a reference), walked without recursion."""
    found, stack = [], list(items)
    while stack:
        item = stack.pop()
        if not item.shown_above:
            found.append(item.rule_id)
        stack.extend(item.parents)
    return found


def test_lineage_of_a_40_level_merge_dag_takes_under_a_second() -> None:
    """Two rules merged into two new ones 40 times: every rule told once, in well under 1 s."""
    trace = merge_dag_trace(40)
    assert validate(trace) == []
    started = time.perf_counter()
    found = lineage(trace)
    text = render_lineage(trace, found)
    page = render_html(trace)
    assert time.perf_counter() - started < 1.0
    told = told_in_full(found)
    assert sorted(told) == sorted(trace["rules"]) and len(told) == len(set(told)) == 82
    (a40, b40) = found
    assert [p.rule_id for p in a40.parents] == ["a39", "b39"]
    assert all(p.shown_above and not p.steps for p in b40.parents)
    assert "(its story is told above)" in text and "told above" in page
    assert_fits(text)


def test_a_3000_deep_merge_chain_needs_no_recursion() -> None:
    """Ancestry 3,000 merges deep is walked, rendered and turned into dicts without recursion."""
    trace = merge_dag_trace(3000, width=1)
    assert validate(trace) == []
    (found,) = lineage(trace)
    data = found.to_dict()
    depth = 0
    while data["parents"]:
        data, depth = data["parents"][0], depth + 1
    assert depth == 3000 and data["rule_id"] == "a0"
    assert render_lineage(trace, [found]).count("└ merged from") == 3000
    assert render_html(trace).count('class="lineage d') == 3000 + 1


_BIG = """
import json, resource, sys, time
from tests.trace_factory import big_trace
from rulechef_trace.report import lineage, render_html
trace = big_trace(5000, 5000)
started = time.perf_counter()
found = lineage(trace)
page = render_html(trace)
took = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"events": len(trace.events), "rules": len(found), "seconds": took, "rss": rss}))
"""


def test_a_5000_rule_5000_event_trace_reads_in_seconds_and_bounded_memory() -> None:
    """lineage and html of 5,000 rules over 5,000 events: under 5 s, the process under 500 MB."""
    done = subprocess.run(
        [sys.executable, "-c", _BIG],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(done.stdout)
    assert measured["events"] >= 4995 and measured["rules"] == 5000
    assert measured["seconds"] < 5.0, measured
    assert measured["rss"] < 500 * 2**20, measured
