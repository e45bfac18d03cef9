"""Every reader knows every event type of the catalogue; forgetting one fails here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

import pytest

from rulechef_trace import ALL_SIGNALS, otel
from rulechef_trace.events import CATALOGUE, EVENT_TYPES, RULE_MOVES, EventType, by_name
from rulechef_trace.report.ancestry import NOTES
from rulechef_trace.report.describe import DESCRIBERS
from rulechef_trace.trace import EVENT_TYPES as TRACE_EVENT_TYPES


def _schema() -> dict[str, Any]:
    text = (resources.files("rulechef_trace") / "data" / "trace-v1.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _schema_required() -> dict[str, list[str]]:
    event = _schema()["$defs"]["event"]
    return {
        branch["if"]["properties"]["type"]["const"]: branch["then"].get("required", [])
        for branch in event["allOf"]
    }


def reader_gaps(catalogue: Iterable[EventType]) -> list[str]:
    """Name every (reader, event type) pair the readers lack, and schema mismatches."""
    readers = {
        "story and html (describe.DESCRIBERS)": set(DESCRIBERS),
        "otel (otel._HANDLERS)": set(otel._HANDLERS) | set(otel._LIFECYCLE),
        "lineage (ancestry.NOTES)": set(NOTES),
    }
    required = _schema_required()
    gaps = []
    for event in catalogue:
        gaps += [
            f"{reader} lacks {event.name}"
            for reader, known in readers.items()
            if event.name not in known
        ]
        if event.name not in required:
            gaps.append(f"schema lacks {event.name}")
        elif sorted(required[event.name]) != sorted(event.required):
            gaps.append(f"schema requires {sorted(required[event.name])} for {event.name}")
    return gaps


def test_every_reader_has_an_entry_for_every_event_type() -> None:
    """The describers, the OTel handlers, the lineage notes and the schema cover the catalogue."""
    assert reader_gaps(CATALOGUE) == []


def test_no_reader_keeps_an_entry_the_catalogue_lacks() -> None:
    """A renamed or removed event type leaves no stale entry in a reader's table."""
    declared = set(EVENT_TYPES)
    assert set(DESCRIBERS) - declared == set()
    assert set(NOTES) - declared == set()
    assert (set(otel._HANDLERS) | set(otel._LIFECYCLE)) - declared == set()


def test_a_forgotten_event_type_is_named_for_each_reader() -> None:
    """An event type added to the catalogue alone is reported for every reader."""
    fake = EventType("rules_teleported", "Rules moved by magic.", True, RULE_MOVES)
    gaps = reader_gaps((*CATALOGUE, fake))
    assert [g for g in gaps if "rules_teleported" in g] == [
        "story and html (describe.DESCRIBERS) lacks rules_teleported",
        "otel (otel._HANDLERS) lacks rules_teleported",
        "lineage (ancestry.NOTES) lacks rules_teleported",
        "schema lacks rules_teleported",
    ]


def test_signals_and_trace_types_follow_the_catalogue_in_order() -> None:
    assert [s.name for s in ALL_SIGNALS] == list(EVENT_TYPES) == list(TRACE_EVENT_TYPES)
    assert [s.__doc__ for s in ALL_SIGNALS] == [e.doc for e in CATALOGUE]


def test_schema_lists_the_catalogue_as_its_examples() -> None:
    examples = _schema()["$defs"]["event"]["properties"]["type"]["examples"]
    assert examples == list(EVENT_TYPES)


def test_rule_moving_events_require_the_rule_moves() -> None:
    for event in CATALOGUE:
        assert set(RULE_MOVES) <= set(event.required) or not event.moves_rules


def test_by_name_rejects_an_undeclared_type() -> None:
    assert by_name("pruned").moves_rules
    with pytest.raises(KeyError):
        by_name("no_such_event")
