"""The JSON Schema of format v1 accepts real traces and rejects broken ones."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import Trace, record_trace
from tests.scripted import ScriptedLLM, make_chef
from tests.trace_factory import Traces, make_traces

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    text = (resources.files("rulechef_trace") / "data" / "trace-v1.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    return make_traces(tmp_path_factory.mktemp("schema"))


def errors(schema: dict[str, Any], data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(json.loads(json.dumps(data)))]


def test_real_traces_validate(schema: dict[str, Any], traces: Traces) -> None:
    for trace in (traces.story, traces.simple, traces.pruned, traces.restore):
        assert errors(schema, trace) == []
        assert errors(schema, json.loads(traces.file_of(trace).read_bytes())) == []


def test_early_ends_and_failures_validate(schema: dict[str, Any], tmp_path: Path) -> None:
    chef = make_chef(tmp_path, ScriptedLLM(per_class={"rules": []}))
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(min_examples=100)
        chef.learn_rules()
    statuses = [t.status for t in recorder.traces]
    assert statuses == ["not_enough_data", "no_rules"]
    for trace in recorder.traces:
        assert errors(schema, trace) == []


def test_an_incomplete_trace_needs_no_finalized_event(
    schema: dict[str, Any], traces: Traces
) -> None:
    data = copy.deepcopy(dict(traces.story))
    data["events"] = data["events"][:-1]
    data["run"]["status"] = "incomplete"
    assert errors(schema, data) == []


def test_keys_and_event_types_of_later_releases_are_allowed(
    schema: dict[str, Any], traces: Traces
) -> None:
    data = copy.deepcopy(dict(traces.story))
    data["events"].insert(3, {**data["events"][3], "type": "future_event", "extra": [1]})
    data["run"]["new_key"] = {"x": 1}
    data["new_top_level"] = True
    assert errors(schema, data) == []


def broken(trace: Trace, change: str) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(dict(trace))
    events = data["events"]
    if change == "no format":
        del data["format"]
    elif change == "version 2":
        data["version"] = 2
    elif change == "bad status":
        data["run"]["status"] = "finished"
    elif change == "event without seq":
        del events[3]["seq"]
    elif change == "event without t":
        del events[3]["t"]
    elif change == "event type not a string":
        events[3]["type"] = 7
    elif change == "patch without outcome":
        del next(e for e in events if e["type"] == "patch_decided")["outcome"]
    elif change == "first event not run_started":
        events.insert(0, events.pop(1))
    elif change == "no finalized event":
        data["events"] = events[:-1]
    elif change == "bad patch outcome":
        next(e for e in events if e["type"] == "patch_decided")["outcome"] = "maybe"
    elif change == "rule ids not strings":
        events[1]["added"] = [1, 2]
    elif change == "final rule without id":
        data["final"]["rules"][0] = {"name": "x"}
    elif change == "no run":
        del data["run"]
    return data


CHANGES = [
    "no format",
    "version 2",
    "bad status",
    "event without seq",
    "event without t",
    "event type not a string",
    "patch without outcome",
    "first event not run_started",
    "no finalized event",
    "bad patch outcome",
    "rule ids not strings",
    "final rule without id",
    "no run",
]


@pytest.mark.parametrize("change", CHANGES)
def test_broken_traces_are_rejected(schema: dict[str, Any], traces: Traces, change: str) -> None:
    assert errors(schema, broken(traces.story, change)), change
