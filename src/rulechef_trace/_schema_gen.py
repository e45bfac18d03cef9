"""The trace schema's per-type part, generated from the event catalogue.

``data/trace-v1.schema.json`` stays a plain static JSON Schema that any tool
can read. Two parts of it are generated from :data:`rulechef_trace.events.CATALOGUE`:
the ``allOf`` of ``$defs/event`` (one branch per event type: its doc, its
required keys, its properties, and the rule moves of a rule-moving type) and
the ``examples`` list of event types. Everything else is written by hand.

``python -m rulechef_trace._schema_gen`` (:data:`REGENERATE`) rewrites the file
in place; ``tests/test_event_catalogue.py`` fails, naming that command, while
the shipped file differs from what it would write.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rulechef_trace import events
from rulechef_trace.events import EventType

__all__ = ["REGENERATE", "SCHEMA", "branch", "generated", "main", "schema_text", "write"]

logger = logging.getLogger("rulechef_trace")

#: The shipped schema file.
SCHEMA = Path(__file__).resolve().parent / "data" / "trace-v1.schema.json"

#: The one command that rewrites the generated parts of :data:`SCHEMA`.
REGENERATE = "python -m rulechef_trace._schema_gen"

#: What a rule-moving type's branch says of its rule moves.
_MOVES: dict[str, Any] = {
    "added": {
        "$ref": "#/$defs/ruleIds",
        "description": "rule ids this event added to the working rules",
    },
    "removed": {"$ref": "#/$defs/ruleIds", "description": "rule ids this event removed"},
    "rules_after": {"$ref": "#/$defs/ruleIds", "description": "the working rules after this event"},
    "rule_names": {"$ref": "#/$defs/ruleNames"},
}


def branch(event: EventType) -> dict[str, Any]:
    """The schema's ``allOf`` branch for one event type: if its ``type``, then its payload."""
    then: dict[str, Any] = {"description": event.doc}
    if event.required:
        then["required"] = list(event.required)
    # A type's own properties come last, so it may say more about a rule move.
    properties = {**(_MOVES if event.moves_rules else {}), **event.properties}
    if properties:
        then["properties"] = copy.deepcopy(properties)
    when = {"properties": {"type": {"const": event.name}}, "required": ["type"]}
    return {"if": when, "then": then}


def generated(
    schema: Mapping[str, Any], catalogue: Iterable[EventType] | None = None
) -> dict[str, Any]:
    """``schema`` with its per-type branches and its list of types made from the catalogue.

    Args:
        schema: The schema as loaded; its hand-written parts are kept as they are.
        catalogue: The event types; None for :data:`rulechef_trace.events.CATALOGUE`.
    """
    types = tuple(events.CATALOGUE if catalogue is None else catalogue)
    out = copy.deepcopy(dict(schema))
    event = out["$defs"]["event"]
    event["properties"]["type"]["examples"] = [e.name for e in types]
    event["allOf"] = [branch(e) for e in types]
    return out


def schema_text(schema: Mapping[str, Any]) -> str:
    """The schema as the shipped file holds it (two-space indent, ASCII, final newline)."""
    return json.dumps(schema, indent=2) + "\n"


def write(path: Path = SCHEMA, catalogue: Iterable[EventType] | None = None) -> bool:
    """Rewrite the generated parts of the schema file at ``path``.

    Returns:
        Whether the file changed.
    """
    current = path.read_text(encoding="utf-8")
    text = schema_text(generated(json.loads(current), catalogue))
    if text == current:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def main() -> int:
    """Regenerate the shipped schema (the :data:`REGENERATE` command); says what it did."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    changed = write()
    logger.info("%s %s", "rewrote" if changed else "up to date:", SCHEMA)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
