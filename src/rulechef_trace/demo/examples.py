"""The demo's data: ``text``/``label`` JSONL files and the intents shipped in the package."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

__all__ = ["load_examples", "packaged_data_path"]


def load_examples(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(text, label)`` pairs from a JSONL file.

    Each non-blank line must be a JSON object with non-empty string fields
    ``text`` and ``label``; other fields are ignored.

    Args:
        path: Path of the JSONL file.

    Returns:
        The examples in file order.

    Raises:
        ValueError: If a line is not valid JSON, not an object, or lacks a
            usable ``text``/``label``; the message names the file and line.
    """
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                examples.append(_parse_example_line(line, path, number))
    return examples


def _parse_example_line(line: str, path: Path, number: int) -> tuple[str, str]:
    """The (text, label) pair of one JSONL line, or a ValueError naming the line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path}, line {number}: expected a JSON object")
    values = []
    for name in ("text", "label"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}, line {number}: {name!r} must be a non-empty string")
        values.append(value)
    return values[0], values[1]


def packaged_data_path() -> Path:
    """Path of the small intent data set shipped with ``rulechef_trace``.

    Returns:
        Path to ``rulechef_trace/demo/data/intents.jsonl``.
    """
    return Path(str(resources.files("rulechef_trace.demo") / "data" / "intents.jsonl"))
