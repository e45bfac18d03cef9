"""Trace format v1: loading, clear errors, validation, replay and streams."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from rulechef_trace import (
    ReplayError,
    Trace,
    TraceError,
    load_trace,
    record_trace,
    replay,
    validate,
)
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, make_chef


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    chef = make_chef(folder, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=3)
    return folder / "reviews.trace.json"


def write(tmp_path: Path, data: bytes, name: str = "t.trace.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_loaded_trace_is_the_v1_json(trace_file):
    trace = load_trace(trace_file)
    raw = orjson.loads(trace_file.read_bytes())
    assert isinstance(trace, Trace) and trace == raw
    assert trace["format"] == "rulechef-trace" and trace["version"] == 1
    assert set(trace.run) >= {
        "id",
        "dataset",
        "task",
        "task_type",
        "started_at",
        "ended_at",
        "duration_s",
        "status",
        "error",
        "rulechef_version",
        "params",
        "coordinator",
    }
    assert trace.run["params"]["max_refinement_iterations"] == 3
    assert trace.run["rulechef_version"].startswith("0.2.")
    assert [e["seq"] for e in trace.events] == list(range(1, len(trace.events) + 1))
    assert trace.events[-1]["type"] == "finalized"
    assert all(isinstance(e["t"], float) for e in trace.events)
    assert trace.final_metrics is not None
    assert trace.final_metrics["f1"] == 1.0


def test_every_rule_id_in_the_trace_has_a_name(trace_file):
    trace = load_trace(trace_file)
    mentioned = set()
    for e in trace.events:
        for key in ("added", "removed", "rules_after", "rules"):
            if isinstance(e.get(key), list):
                mentioned.update(e[key])
        mentioned.update((e.get("proposed") or {}).get("added", []))
    assert mentioned and mentioned <= set(trace["rules"])
    assert all(trace.name_of(rid) != rid for rid in mentioned)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b'{"format": "rulechef-trace", "version": 1, "run": {', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "not a rulechef-trace file"),
        (b'{"format": "something-else"}', "not a rulechef-trace file"),
        (b'{"format": "rulechef-trace", "version": 7}', "version 7 is newer"),
        (b'{"format": "rulechef-trace", "version": "1"}', "not an integer"),
        (b'{"format": "rulechef-trace", "version": 1}', "'run' is required"),
    ],
)
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path, content, problem):
    path = write(tmp_path, content)
    with pytest.raises(TraceError, match=problem) as info:
        load_trace(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory_give_clear_errors(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.trace.json")
    with pytest.raises(TraceError, match="is a directory"):
        load_trace(tmp_path)


def test_validate_reports_broken_sequence_numbers(trace_file):
    trace = load_trace(trace_file)
    broken = copy.deepcopy(trace)
    broken["events"][2]["seq"] = broken["events"][1]["seq"]
    assert "not strictly increasing" in validate(broken)[0]
    broken = copy.deepcopy(trace)
    del broken["events"][-1]
    assert validate(broken) == ["events: holds no finalized event (a finished run ends with one)"]
    broken = copy.deepcopy(trace)
    broken["events"].append({**broken["events"][1], "seq": len(broken["events"]) + 1})
    assert validate(broken) == ["the last event is not finalized"]


def test_replay_rebuilds_the_final_rules_and_catches_tampering(trace_file):
    trace = load_trace(trace_file)
    assert sorted(replay(trace)) == sorted(trace.final_rules)
    tampered = copy.deepcopy(trace)
    accepted = next(e for e in tampered["events"] if e.get("accepted"))
    accepted["added"] = accepted["added"][:-1]
    with pytest.raises(ReplayError, match=f"seq {accepted['seq']}"):
        replay(tampered)
    tampered = copy.deepcopy(trace)
    tampered["final"]["rules"].append({"id": "feedbeef", "name": "ghost"})
    with pytest.raises(ReplayError, match="final rules"):
        replay(tampered)
    assert "final rules" in validate(tampered)[0]


def test_streamed_run_is_readable_while_and_after_it_runs(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    seen_mid_run: list[str] = []

    def peek(sender, **event):
        if event.get("outcome") == "rejected":
            partial = load_trace(tmp_path / "reviews.trace.jsonl")
            seen_mid_run.append(partial.status)

    from rulechef_trace import patch_decided

    with record_trace(chef, stream=True) as recorder, patch_decided.connected_to(peek):
        chef.learn_rules(max_refinement_iterations=3)
    assert seen_mid_run == ["incomplete"]
    streamed = load_trace(tmp_path / "reviews.trace.jsonl")
    assert streamed == recorder.last == load_trace(tmp_path / "reviews.trace.json")


def test_stream_cut_mid_line_loads_as_incomplete(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    with record_trace(chef, stream=True, history=False):
        chef.learn_rules(max_refinement_iterations=3)
    lines = (tmp_path / "reviews.trace.jsonl").read_bytes().splitlines(keepends=True)
    cut = write(tmp_path, b"".join(lines[:5]) + lines[5][:20], "cut.trace.jsonl")
    partial = load_trace(cut)
    assert partial.status == "incomplete"
    assert [e["seq"] for e in partial.events] == [1, 2, 3, 4]
    assert sorted(partial.final_rules) == sorted(replay(partial))
    assert partial.final_metrics is None


def test_validate_requires_the_fields_the_schema_requires(trace_file):
    trace = load_trace(trace_file)
    broken = copy.deepcopy(trace)
    patch = next(e for e in broken["events"] if e["type"] == "patch_decided")
    del patch["outcome"]
    index = patch["seq"] - 1
    assert validate(broken) == [f"events[{index}]: 'outcome' is required (patch_decided event)"]
    broken = copy.deepcopy(trace)
    del broken["events"][1]["t"]
    assert validate(broken)[0].startswith("events[1]: 't' is required")
    broken = copy.deepcopy(trace)
    del broken["run"]["rulechef_version"]
    assert validate(broken) == ["run: 'rulechef_version' is required"]


def test_trace_lineage_names_where_each_final_rule_came_from(trace_file):
    trace = load_trace(trace_file)
    lineages = trace.lineage()
    assert sorted(x.rule_id for x in lineages) == sorted(trace.final_rules)
    (more,) = trace.lineage("pos more")
    assert more.origin == "patch"
    with pytest.raises(TraceError, match="no-such-rule"):
        trace.lineage("no-such-rule")
