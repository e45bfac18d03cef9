"""Events and traces as JSON bytes: whatever a receiver sent, nothing raises, coercions counted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from rulechef_trace._text import safe_str

__all__ = ["dumps_any", "serialise"]


def dumps_any(value: Any) -> bytes:
    """Serialise a trace or event; ints beyond 64 bits and too-deep values become strings."""
    return serialise(value)[0]


def serialise(value: Any) -> tuple[bytes, int]:
    """JSON bytes of ``value``, and how many values had to be coerced to strings."""
    try:
        return orjson.dumps(value), 0
    except TypeError:  # orjson.JSONEncodeError: a big int, nesting over 255, an odd type or key
        count = [0]
        return orjson.dumps(_jsonable(value, 0, count)), count[0]


def _jsonable(value: Any, depth: int, count: list[int]) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (float, str)):
        return value
    if depth > 200:
        count[0] += 1
        return safe_str(value)
    if isinstance(value, Mapping):
        return {_key(k, count): _jsonable(v, depth + 1, count) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1, count) for v in value]
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return value
    try:  # a type orjson knows (datetime, UUID, dataclass, ...) keeps its own form
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        count[0] += 1
        return safe_str(value)


def _key(key: Any, count: list[int]) -> str:
    if isinstance(key, str):
        return key
    count[0] += 1
    return safe_str(key)
