"""Every reader treats every event type of the catalogue; a forgotten recipe step fails here.

The recipe for a new event type (docs/architecture.md) names four files: the
catalogue, the capture that emits it, its describer, a test. What else reads
event types follows from the catalogue: the schema's per-type branch is
generated (and checked here to be up to date), the OpenTelemetry bridge and
the lineage treat a type without an entry of their own generically. The tests
below drive each reader with every catalogue type and with a fake type added
to the catalogue alone, and check what it does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from types import SimpleNamespace
from typing import Any

import pytest

from rulechef_trace import ALL_SIGNALS, build_trace, events
from rulechef_trace._schema_check import compile_schema
from rulechef_trace._schema_gen import REGENERATE, branch, generated, schema_text, write
from rulechef_trace.events import CATALOGUE, EVENT_TYPES, RULE_MOVES, EventType, by_name
from rulechef_trace.report.ancestry import NOTES, lineage
from rulechef_trace.report.describe import DESCRIBERS
from rulechef_trace.trace import EVENT_TYPES as TRACE_EVENT_TYPES

#: A type declared in the catalogue and nowhere else, as step 1 of the recipe leaves it.
FAKE = EventType("rules_teleported", "Rules moved by magic.", True, RULE_MOVES)


def _shipped_text() -> str:
    return (resources.files("rulechef_trace") / "data" / "trace-v1.schema.json").read_text()


def _shipped() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_shipped_text())
    return loaded


def schema_gaps(catalogue: Iterable[EventType], shipped: dict[str, Any]) -> list[str]:
    """Name every event type whose branch in ``shipped`` is not the generated one."""
    catalogue = tuple(catalogue)
    event = shipped["$defs"]["event"]
    branches = {b["if"]["properties"]["type"]["const"]: b for b in event["allOf"]}
    fix = f"run `{REGENERATE}`"
    gaps = [
        f"schema lacks {e.name}: {fix}"
        if e.name not in branches
        else f"schema's branch of {e.name} is out of date: {fix}"
        for e in catalogue
        if branches.get(e.name) != branch(e)
    ]
    stale = sorted(branches.keys() - {e.name for e in catalogue})
    gaps += [f"schema keeps {name}, which the catalogue lacks: {fix}" for name in stale]
    if event["properties"]["type"]["examples"] != [e.name for e in catalogue]:
        gaps.append(f"schema's examples of type are not the catalogue's types in order: {fix}")
    return gaps


def reader_gaps(catalogue: Iterable[EventType], shipped: dict[str, Any]) -> list[str]:
    """Name what the recipe's files lack for each type: its describer, its schema branch."""
    catalogue = tuple(catalogue)
    gaps = [
        f"story and html (report/describe.py DESCRIBERS) lack a describer for {e.name}"
        for e in catalogue
        if e.name not in DESCRIBERS
    ]
    return gaps + schema_gaps(catalogue, shipped)


@pytest.fixture
def fake_declared(monkeypatch: pytest.MonkeyPatch) -> EventType:
    """FAKE added to the catalogue (the readers look types up there), for this test only."""
    monkeypatch.setattr(events, "CATALOGUE", (*CATALOGUE, FAKE))
    monkeypatch.setitem(events._BY_NAME, FAKE.name, FAKE)
    return FAKE


# --- what each reader lacks ---------------------------------------------------------


def test_every_event_type_has_its_describer_and_its_generated_schema_branch() -> None:
    """No describer is missing and the shipped schema's per-type part is the generated one."""
    gaps = reader_gaps(CATALOGUE, _shipped())
    assert gaps == [], "\n".join(gaps)


def test_the_shipped_schema_file_is_the_generated_one() -> None:
    """The file is exactly what the regenerate command writes (so it has no hand edit there)."""
    shipped = _shipped_text()
    assert shipped == schema_text(generated(json.loads(shipped))), (
        f"src/rulechef_trace/data/trace-v1.schema.json is not the generated one: run `{REGENERATE}`"
    )


def test_a_type_declared_only_in_the_catalogue_is_named_for_the_describer_and_the_schema(
    fake_declared: EventType,
) -> None:
    """Step 1 of the recipe alone: the describer and the schema fail by name, with the fix."""
    gaps = reader_gaps(events.CATALOGUE, _shipped())
    assert gaps == [
        "story and html (report/describe.py DESCRIBERS) lack a describer for rules_teleported",
        f"schema lacks rules_teleported: run `{REGENERATE}`",
        f"schema's examples of type are not the catalogue's types in order: run `{REGENERATE}`",
    ]


def test_regenerating_the_schema_gives_a_new_type_its_branch_which_the_checker_enforces(
    fake_declared: EventType, tmp_path: Any
) -> None:
    """write(), the regenerate command, adds the fake type's branch; its events need its keys."""
    copy = tmp_path / "trace-v1.schema.json"
    copy.write_text(_shipped_text(), encoding="utf-8")
    assert write(copy) is True
    assert write(copy) is False  # a second run changes nothing
    regenerated = json.loads(copy.read_text(encoding="utf-8"))
    assert schema_gaps(events.CATALOGUE, regenerated) == []
    check = compile_schema(regenerated, "#/$defs/event")
    header = {"type": FAKE.name, "seq": 2, "t": 0.5}
    complete = {**header, "added": ["r2"], "removed": [], "rules_after": ["r2"]}
    assert check(complete) is None
    failure = check({**header, "added": ["r2"], "removed": []})
    assert failure is not None and "rules_after" in failure.message
    assert check({**complete, "added": [7]}) is not None  # the rule moves' types come with it


def test_a_branch_out_of_date_is_named_with_the_regenerate_command() -> None:
    """A hand change to one type's branch (a required key dropped) is named for that type."""
    shipped = _shipped()
    patched = next(
        b["then"] for b in shipped["$defs"]["event"]["allOf"] if "pruned" in json.dumps(b["if"])
    )
    patched["required"].remove("reason")
    assert schema_gaps(CATALOGUE, shipped) == [
        f"schema's branch of pruned is out of date: run `{REGENERATE}`"
    ]


def test_no_reader_keeps_an_entry_the_catalogue_lacks() -> None:
    """A renamed or removed event type leaves no stale entry in a reader's table."""
    otel = pytest.importorskip("rulechef_trace.otel")
    declared = set(EVENT_TYPES)
    assert set(DESCRIBERS) - declared == set()
    assert set(NOTES) - declared == set()
    assert (set(otel._HANDLERS) | set(otel._LIFECYCLE)) - declared == set()


# --- the OpenTelemetry bridge, driven -----------------------------------------------


def _payload(event: EventType, seq: int) -> dict[str, Any]:
    """A payload of ``event``: the header and, for a rule-moving type, one rule swapped."""
    payload: dict[str, Any] = {"run_id": "run-1", "seq": seq, "t": seq / 10}
    if event.moves_rules:
        payload.update(added=["r2"], removed=["r1"], rules_after=["r2"])
    return payload


def _bridge_marks(middle: Iterable[tuple[EventType, dict[str, Any]]]) -> dict[str, Any]:
    """Drive a bridge with run_started, ``middle`` and finalized; the spans and events it made."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    from rulechef_trace import otel

    exporter = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    bridge = otel.OTelBridge(tracer_provider=provider)
    sender = SimpleNamespace()
    start = {"run_id": "run-1", "seq": 1, "t": 0.0, "kind": "learn", "rules": ["r1"]}
    bridge._receive("run_started", sender, **start)
    seq = 1
    for event, payload in middle:
        seq += 1
        bridge._receive(event.name, sender, **{**payload, "seq": seq})
    end = {"run_id": "run-1", "seq": seq + 1, "t": 9.0, "status": "completed", "rules": ["r2"]}
    bridge._receive("finalized", sender, **end)
    marks: dict[str, Any] = {}
    for span in exporter.get_finished_spans():
        marks[span.name] = dict(span.attributes or {})
        for item in span.events:
            marks[f"{span.name} / {item.name}"] = dict(item.attributes or {})
    return marks


MIDDLE = [e for e in CATALOGUE if e.name not in ("run_started", "finalized")]


@pytest.mark.usefixtures("fake_declared")
@pytest.mark.parametrize("event", [*MIDDLE, FAKE], ids=lambda e: e.name)
def test_every_event_type_leaves_a_span_or_a_span_event(event: EventType) -> None:
    """Each type, the fake one too, adds a span or a span event to a run's spans."""
    bare = _bridge_marks([])
    marks = _bridge_marks([(event, _payload(event, 2))])
    assert set(marks) - set(bare), f"the OTel bridge makes nothing of {event.name}"


def test_run_started_and_finalized_open_and_close_the_run_span() -> None:
    """The lifecycle types are the run span itself: its id at the start, its status at the end."""
    marks = _bridge_marks([])
    assert set(marks) == {"rulechef.learn"}
    assert marks["rulechef.learn"]["rulechef.run.id"] == "run-1"
    assert marks["rulechef.learn"]["rulechef.run.status"] == "completed"


def test_a_type_without_a_handler_is_a_span_event_of_its_numbers_flags_and_rule_moves(
    fake_declared: EventType,
) -> None:
    """The fake type's event on the run span: scalars and rule changes, and no text at all."""
    payload = {
        **_payload(FAKE, 2),
        "distance_m": 42.5,
        "hops": 3,
        "safe": True,
        "spell": "SECRET user text",
        "notes": {"text": "SECRET nested"},
        "rule_names": {"r2": "SECRET rule name"},
    }
    marks = _bridge_marks([(FAKE, payload)])
    assert marks["rulechef.learn / rulechef.rules_teleported"] == {
        "rulechef.seq": 2,
        "rulechef.t": 0.2,
        "rulechef.distance_m": 42.5,
        "rulechef.hops": 3,
        "rulechef.safe": True,
        "rulechef.rules.added": ("r2",),
        "rulechef.rules.removed": ("r1",),
        "rulechef.rules.added_count": 1,
        "rulechef.rules.removed_count": 1,
        "rulechef.rules.count": 1,
    }
    assert "SECRET" not in json.dumps(marks, default=str)


def test_a_type_the_catalogue_lacks_gets_numbers_and_flags_only() -> None:
    """A newer core's type, unknown here: no rule moves are assumed, its scalars still go out."""
    unknown = EventType("from_the_future", "Unknown here.", False, ())
    payload = {**_payload(unknown, 2), "added": ["r2"], "n": 1}
    marks = _bridge_marks([(unknown, payload)])
    assert marks["rulechef.learn / rulechef.from_the_future"] == {
        "rulechef.seq": 2,
        "rulechef.t": 0.2,
        "rulechef.n": 1,
    }


# --- the lineage, driven ------------------------------------------------------------


def _swap_trace(event: EventType) -> Any:
    """A run whose one middle event, of type ``event``, replaces rule r1 by rule r2."""
    start = {
        "type": "run_started",
        "run_id": "run-1",
        "seq": 1,
        "t": 0.0,
        "kind": "learn",
        "started_at": "2026-01-01T00:00:00+00:00",
        "rules": ["r1"],
        "rule_names": {"r1": "one"},
    }
    middle = {"type": event.name, **_payload(event, 2), "rule_names": {"r2": "two"}}
    end = {"type": "finalized", "seq": 3, "t": 1.0, "status": "completed"}
    return build_trace([start, middle, {**end, "rules": ["r2"], "duration_s": 1.0}])


MOVING = [e for e in CATALOGUE if e.moves_rules]


@pytest.mark.usefixtures("fake_declared")
@pytest.mark.parametrize("event", [*MOVING, FAKE], ids=lambda e: e.name)
def test_every_rule_moving_type_is_a_step_in_the_lineage_of_the_rules_it_moves(
    event: EventType,
) -> None:
    """The rule a type adds has a created step of it, the rule it removes a removed step."""
    trace = _swap_trace(event)
    (added,) = lineage(trace, "r2")
    (removed,) = lineage(trace, "r1")
    assert [(s.event, s.action) for s in added.steps if s.seq == 2] in (
        [(event.name, "created")],
        [(event.name, "restored")],
    )
    assert [(s.event, s.action) for s in removed.steps if s.seq == 2] == [(event.name, "removed")]


def test_a_type_without_a_note_tells_the_rules_it_moves_from_its_catalogue_doc(
    fake_declared: EventType,
) -> None:
    """The fake type's steps say its name and its doc; rules it leaves alone get no step."""
    trace = _swap_trace(FAKE)
    (added,) = lineage(trace, "r2")
    (removed,) = lineage(trace, "r1")
    assert [s.text for s in added.steps] == ["added by rules_teleported (rules moved by magic)"]
    assert [s.text for s in removed.steps][-1] == (
        "removed by rules_teleported (rules moved by magic)"
    )
    assert by_name(FAKE.name) is FAKE


def test_a_type_the_catalogue_lacks_is_told_by_its_name() -> None:
    """A newer core's rule-moving type, unknown here, still gets a step, named by its type."""
    trace = _swap_trace(EventType("from_the_future", "", True, RULE_MOVES))
    (added,) = lineage(trace, "r2")
    assert [s.text for s in added.steps] == ["added by from_the_future"]


# --- the catalogue itself -----------------------------------------------------------


def test_signals_and_trace_types_follow_the_catalogue_in_order() -> None:
    """ALL_SIGNALS and trace.EVENT_TYPES are the catalogue's names, docs and order."""
    assert [s.name for s in ALL_SIGNALS] == list(EVENT_TYPES) == list(TRACE_EVENT_TYPES)
    assert [s.__doc__ for s in ALL_SIGNALS] == [e.doc for e in CATALOGUE]


def test_rule_moving_events_require_the_rule_moves() -> None:
    """A rule-moving type's required keys include added, removed and rules_after."""
    for event in CATALOGUE:
        assert set(RULE_MOVES) <= set(event.required) or not event.moves_rules


def test_by_name_rejects_an_undeclared_type() -> None:
    """by_name finds a declared type and raises KeyError for any other name."""
    assert by_name("pruned").moves_rules
    with pytest.raises(KeyError):
        by_name("no_such_event")
