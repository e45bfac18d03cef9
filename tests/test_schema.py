"""The JSON Schema of format v1 accepts real traces and rejects broken ones."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rulechef_trace import Trace, record_trace, validate
from tests.demo_traces import demo_traces
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


# --- validate() == the schema ---------------------------------------------------------

# One value of each JSON type: a "type change" puts one of the other types in a field.
BY_TYPE: dict[str, Any] = {
    "string": "x",
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "null": None,
    "array": ["x"],
    "object": {"x": 1},
}
# What validate() checks beyond JSON Schema (docs/trace-format.md): seq numbers, finalized
# last, replay. A problem of another kind on a schema-valid trace is a disagreement.
# JSON Schema counts 2.0 as an integer; validate() wants integers written as integers.
BEYOND_SCHEMA = re.compile(
    r"seq .* was expected|the last event is not finalized|replayed rules differ"
    r"|written without a fraction|format version is missing or not an integer"
)


class Demo:
    """The demo's documents, the type-change space and a compiled jsonschema validator."""

    def __init__(self, docs: dict[str, dict[str, Any]], schema: dict[str, Any]):
        self.docs = docs
        self.space = type_changes(docs)
        self.validator = jsonschema.Draft202012Validator(schema)

    def __repr__(self) -> str:  # hypothesis prints its arguments: keep 60 kB out of it
        return "<the demo's traces>"

    def assert_agree(self, doc: dict[str, Any]) -> None:
        """jsonschema and validate() agree: rejected by one means rejected by the other.

        validate() rejects more only for its documented checks beyond JSON Schema.
        """
        schema_error = next(self.validator.iter_errors(doc), None)
        problems = validate(doc)
        if schema_error is not None:
            assert problems, f"validate() accepts what the schema rejects: {schema_error.message}"
        elif problems:
            assert BEYOND_SCHEMA.search(problems[0]), f"validate() alone rejects: {problems[0]}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, schema: dict[str, Any]) -> Demo:
    return Demo(demo_traces(tmp_path_factory).documents(), schema)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", type(None): "null", list: "array", dict: "object"}[
        type(value)
    ]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, (dict, list)):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            found += _paths(item, (*prefix, key))
    return found


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def type_changes(docs: dict[str, dict[str, Any]]) -> list[tuple[str, tuple[Any, ...], str]]:
    """Every single-field type change of every demo file: (file, path, new type)."""
    return [
        (name, path, kind)
        for name, doc in docs.items()
        for path in _paths(doc)
        for kind in BY_TYPE
        if kind != _json_type(_at(doc, path))
    ]


def changed(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(doc)
    _at(out, path[:-1])[path[-1]] = copy.deepcopy(value)
    return out


AGREEMENT = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_every_single_field_type_change_of_the_demo_traces_is_in_the_sample_space(
    demo: Demo,
) -> None:
    """The sampled space holds every field of the learn, rank and history files, history's
    run.started_at included (the red team's number-in-one-history-file case)."""
    assert ("history/learn", ("run", "started_at"), "integer") in demo.space
    assert ("history/rank_rules", ("events", 0, "kind"), "null") in demo.space
    assert len(demo.space) > 10_000


@AGREEMENT
@given(data=st.data())
def test_validate_and_jsonschema_agree_on_single_field_type_changes(
    demo: Demo, data: st.DataObject
) -> None:
    """A sampled type change of any field of a real demo trace: both accept or both reject."""
    name, path, kind = data.draw(st.sampled_from(demo.space))
    demo.assert_agree(changed(demo.docs[name], path, BY_TYPE[kind]))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@AGREEMENT
@given(data=st.data(), value=JSON_VALUES)
def test_validate_and_jsonschema_agree_on_any_value_anywhere(
    demo: Demo, data: st.DataObject, value: Any
) -> None:
    """Any JSON value put in place of any field (or a removed field): the two agree."""
    name = data.draw(st.sampled_from(sorted(demo.docs)))
    path = data.draw(st.sampled_from(_paths(demo.docs[name])))
    doc = changed(demo.docs[name], path, value)
    if data.draw(st.booleans()) and isinstance(_at(doc, path[:-1]), dict):
        del _at(doc, path[:-1])[path[-1]]
    demo.assert_agree(doc)


def _first(doc: dict[str, Any], test: Any) -> int:
    return next(i for i, e in enumerate(doc["events"]) if test(e))


def red_team_case(doc: dict[str, Any], case: str) -> tuple[dict[str, Any], str]:
    """The changes that passed 0.1.0's validate() and crashed a reader, with the message now."""
    doc = copy.deepcopy(doc)
    events = doc["events"]
    if case == "coordinator a string":
        doc["run"]["coordinator"] = "AgenticCoordinator"
        return doc, "run.coordinator: expected null or an object, got a string"
    if case == "replaced item without old":
        i = _first(doc, lambda e: e.get("replaced"))
        del events[i]["replaced"][0]["old"]
        return doc, f"events[{i}].replaced[0]: 'old' is required (patch_decided event)"
    if case == "actions a list of strings":
        i = _first(doc, lambda e: e.get("actions"))
        events[i]["actions"] = ["merge"]
        kind = "audit_applied event"
        return doc, f"events[{i}].actions[0]: expected an object, got a string ({kind})"
    if case == "started_at a number":
        doc["run"]["started_at"] = 20261121
        return doc, "run.started_at: expected a string, got an integer"
    if case == "first event null":
        events[0] = None
        return doc, "events[0]: expected an object, got null"
    assert case == "events a string"
    doc["events"] = "run_started"
    return doc, "events: expected an array, got a string"


RED_TEAM = [
    "coordinator a string",
    "replaced item without old",
    "actions a list of strings",
    "started_at a number",
    "first event null",
    "events a string",
]


def test_integers_written_with_a_fraction_are_refused_beyond_the_schema(
    schema: dict[str, Any], demo: Demo
) -> None:
    """JSON Schema counts 2.0 as an integer; validate() does not (readers index with them)."""
    doc = copy.deepcopy(demo.docs["history/learn"])
    i = _first(doc, lambda e: e["type"] == "iteration_evaluated")
    doc["events"][i]["iteration"] = 1.0
    assert errors(schema, doc) == []
    assert validate(doc) == [
        f"events[{i}].iteration: expected an integer, got 1.0 (an integer is written without a "
        "fraction) (iteration_evaluated event)"
    ]


@pytest.mark.parametrize("case", RED_TEAM)
def test_validate_rejects_what_the_schema_rejects_naming_the_path(
    schema: dict[str, Any], demo: Demo, case: str
) -> None:
    """Each red-team change: the schema rejects it, and validate() says where, in one line."""
    doc, message = red_team_case(demo.docs["history/learn"], case)
    assert errors(schema, doc)
    assert validate(doc) == [message]


def test_the_checker_refuses_a_schema_keyword_it_does_not_know() -> None:
    """The schema cannot outgrow the checker silently: an unknown keyword fails to compile."""
    from rulechef_trace._schema_check import compile_schema

    with pytest.raises(ValueError, match="patternProperties"):
        compile_schema({"type": "object", "patternProperties": {"^x": {"type": "string"}}})
    check = compile_schema({"type": "object", "properties": {"a": {"minimum": 2}}})
    failure = check({"a": 1})
    assert failure is not None and failure.where() == "a"
    assert check({"a": True}) is None  # minimum applies to numbers only, as in JSON Schema
