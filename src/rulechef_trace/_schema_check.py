"""A checker for the subset of JSON Schema (draft 2020-12) the trace schema uses.

``validate()`` must reject exactly what the shipped schema rejects, without a
``jsonschema`` dependency at run time. The schema file itself drives this
checker: it is compiled once into closures, and a keyword the checker does not
know makes compiling fail, so the schema cannot silently outgrow it.

Known keywords: ``type``, ``const``, ``enum``, ``minimum``, ``required``,
``properties``, ``additionalProperties``, ``minItems``, ``prefixItems``,
``items``, ``contains``, ``allOf``, ``anyOf``, ``oneOf``, ``if``/``then``/
``else`` and local ``$ref``; annotations (``description``, ``examples``, ...)
are ignored. The first failure is reported, with the path to the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Failure", "compile_schema", "json_type"]

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "title", "description", "examples", "default"}
)
_KEYWORDS = frozenset(
    {
        "type",
        "const",
        "enum",
        "minimum",
        "required",
        "properties",
        "additionalProperties",
        "minItems",
        "prefixItems",
        "items",
        "contains",
        "allOf",
        "anyOf",
        "oneOf",
        "if",
        "then",
        "else",
        "$ref",
    }
)
_ARTICLE = {"object": "an object", "array": "an array", "integer": "an integer"}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


@dataclass
class Failure:
    """Why a value does not match, and where.

    Attributes:
        message: What is wrong, e.g. ``'old' is required``.
        path: Keys and indexes from the value checked down to the culprit,
            innermost first while the failure travels up (see :meth:`where`).
        expected: For a type mismatch, the JSON types that were allowed.
    """

    message: str
    path: list[str | int] = field(default_factory=list)
    expected: tuple[str, ...] = ()

    def at(self, step: str | int) -> Failure:
        """Prefix the path with one step (a key or an index); returns self."""
        self.path.append(step)
        return self

    def steps(self) -> list[str | int]:
        """The path from the outermost value down."""
        return self.path[::-1]

    def where(self) -> str:
        """The path as text: ``events[3].replaced[0]``; empty for the value itself."""
        return format_path(self.steps())


def format_path(steps: list[str | int]) -> str:
    """``["events", 3, "replaced"]`` as ``events[3].replaced``; odd keys JSON-quoted."""
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            shown = step if len(step) <= 40 else step[:40] + ".."
            out += "[" + repr(shown) + "]"
    return out


Check = Callable[[Any], "Failure | None"]


def json_type(value: Any) -> str:
    """The JSON type name of a Python value (``object``, ``integer``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is(kind: str, value: Any) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        # JSON has no NaN or infinity; a Python caller's non-finite float is not a number here.
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value)
        )
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    raise ValueError(f"unknown JSON type {kind!r} in the schema")


def _a(kind: str) -> str:
    return _ARTICLE.get(kind, "a " + kind if kind != "null" else "null")


def expected_text(kinds: tuple[str, ...]) -> str:
    """``('null', 'object')`` as ``null or an object``."""
    names = [_a(k) for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _type_failure(kinds: tuple[str, ...], value: Any) -> Failure:
    got = _a(json_type(value))
    if "integer" in kinds and isinstance(value, float) and value.is_integer():
        # JSON Schema would take 2.0 for an integer; the readers count and index with them.
        got = f"{value!r} (an integer is written without a fraction)"
    return Failure(f"expected {expected_text(kinds)}, got {got}", [], kinds)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: true is not 1, 1.0 is 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict, str)) or isinstance(b, (list, dict, str)):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + ".."


class _Compiler:
    """Compile schema nodes into checks; ``$ref`` targets once each."""

    def __init__(self, root: Mapping[str, Any]):
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, pointer: str) -> Check:
        if not pointer.startswith("#"):
            raise ValueError(f"only local $ref is supported, not {pointer!r}")
        if pointer not in self.refs:
            self.refs[pointer] = _unresolved  # a recursive reference finds itself
            target: Any = self.root
            for part in filter(None, pointer[1:].split("/")):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            self.refs[pointer] = self.node(target)
        refs = self.refs
        return lambda value: refs[pointer](value)

    def node(self, schema: Any) -> Check:
        if schema is True:
            return _accept
        if schema is False:
            return lambda value: Failure("no value is allowed here")
        unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
        if unknown:
            raise ValueError(f"schema keywords this checker does not know: {sorted(unknown)}")
        checks = [c for c in self._checks(schema) if c is not None]
        if not checks:
            return _accept
        if len(checks) == 1:
            return checks[0]

        def all_checks(value: Any) -> Failure | None:
            for check in checks:
                failure = check(value)
                if failure is not None:
                    return failure
            return None

        return all_checks

    def _checks(self, s: Mapping[str, Any]) -> list[Check | None]:
        return [
            self.ref(s["$ref"]) if "$ref" in s else None,
            _type(s["type"]) if "type" in s else None,
            _const(s["const"]) if "const" in s else None,
            _enum(s["enum"]) if "enum" in s else None,
            _minimum(s["minimum"]) if "minimum" in s else None,
            _required(s["required"]) if "required" in s else None,
            self._properties(s),
            _min_items(s["minItems"]) if "minItems" in s else None,
            self._items(s),
            self._contains(s),
            self._all_of(s["allOf"]) if "allOf" in s else None,
            self._one_of(s["oneOf"], exactly_one=True) if "oneOf" in s else None,
            self._one_of(s["anyOf"], exactly_one=False) if "anyOf" in s else None,
            self._if_then_else(s),
        ]

    def _properties(self, s: Mapping[str, Any]) -> Check | None:
        props = {k: self.node(v) for k, v in (s.get("properties") or {}).items()}
        extra_schema = s.get("additionalProperties", True)
        extra = None if extra_schema is True else self.node(extra_schema)
        if not props and extra is None:
            return None

        def properties(value: Any) -> Failure | None:
            if not isinstance(value, dict):
                return None
            for key, check in props.items():
                if key in value:
                    failure = check(value[key])
                    if failure is not None:
                        return failure.at(key)
            if extra is not None:
                for key, item in value.items():
                    if key not in props:
                        failure = extra(item)
                        if failure is not None:
                            return failure.at(key)
            return None

        return properties

    def _items(self, s: Mapping[str, Any]) -> Check | None:
        prefix = [self.node(p) for p in s.get("prefixItems", ())]
        rest_schema = s.get("items", True)
        if not prefix and rest_schema is True:
            return None
        rest = _strings if _is_plain_string(rest_schema) else self.node(rest_schema)

        def items(value: Any) -> Failure | None:
            if not isinstance(value, list):
                return None
            for index, (check, item) in enumerate(zip(prefix, value, strict=False)):
                failure = check(item)
                if failure is not None:
                    return failure.at(index)
            if rest is _strings:
                return _strings(value, len(prefix))
            for index in range(len(prefix), len(value)):
                failure = rest(value[index])
                if failure is not None:
                    return failure.at(index)
            return None

        return items

    def _contains(self, s: Mapping[str, Any]) -> Check | None:
        if "contains" not in s:
            return None
        check = self.node(s["contains"])
        what = s["contains"].get("description", "a matching item")

        def contains(value: Any) -> Failure | None:
            if isinstance(value, list) and not any(check(item) is None for item in value):
                return Failure(f"holds no {what}")
            return None

        return contains

    def _all_of(self, subs: list[Any]) -> Check:
        checks = [self.node(sub) for sub in subs]

        def all_of(value: Any) -> Failure | None:
            for check in checks:
                failure = check(value)
                if failure is not None:
                    return failure
            return None

        return all_of

    def _one_of(self, subs: list[Any], *, exactly_one: bool) -> Check:
        checks = [self.node(sub) for sub in subs]

        def one_of(value: Any) -> Failure | None:
            failures = [check(value) for check in checks]
            passed = failures.count(None)
            if passed == 1 or (passed and not exactly_one):
                return None
            if passed > 1:
                return Failure("matches more than one of the allowed shapes")
            return _best(failures, value)

        return one_of

    def _if_then_else(self, s: Mapping[str, Any]) -> Check | None:
        if "if" not in s:
            return None
        condition = self.node(s["if"])
        then = self.node(s.get("then", True))
        otherwise = self.node(s.get("else", True))
        return lambda value: then(value) if condition(value) is None else otherwise(value)


def _best(failures: list[Failure | None], value: Any) -> Failure:
    """The failure to report when no branch of oneOf/anyOf matched."""
    found = [f for f in failures if f is not None]
    deeper = [f for f in found if f.path or not f.expected]
    if deeper:
        return deeper[0]  # a branch of the right type, wrong inside: its reason is the useful one
    kinds = tuple(k for f in found for k in f.expected)
    return _type_failure(kinds, value)


def _accept(value: Any) -> None:
    return None


def _unresolved(value: Any) -> Failure | None:
    raise RuntimeError("a $ref was used before it was compiled")


def _is_plain_string(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS} == {"type": "string"}


def _strings(value: list[Any], start: int = 0) -> Failure | None:
    """Items ``start`` on must be strings (rule id lists are long: one C-level pass first)."""
    if start == 0 and set(map(type, value)) <= {str}:
        return None
    for index in range(start, len(value)):
        if not isinstance(value[index], str):
            return _type_failure(("string",), value[index]).at(index)
    return None


def _type(kinds: str | list[str]) -> Check:
    allowed = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    for kind in allowed:
        _is(kind, None)  # an unknown type name fails at compile time

    def type_(value: Any) -> Failure | None:
        if any(_is(kind, value) for kind in allowed):
            return None
        return _type_failure(allowed, value)

    return type_


def _const(expected: Any) -> Check:
    def const(value: Any) -> Failure | None:
        return None if _json_equal(value, expected) else Failure(f"expected {_show(expected)}")

    return const


def _enum(options: list[Any]) -> Check:
    listed = ", ".join(str(o) for o in options)

    def enum(value: Any) -> Failure | None:
        if any(_json_equal(value, o) for o in options):
            return None
        return Failure(f"{_show(value)} is not one of {listed}")

    return enum


def _minimum(bound: float) -> Check:
    def minimum(value: Any) -> Failure | None:
        if _is("number", value) and value < bound:
            return Failure(f"{_show(value)} is less than the minimum {bound}")
        return None

    return minimum


def _required(keys: list[str]) -> Check:
    def required(value: Any) -> Failure | None:
        if isinstance(value, dict):
            for key in keys:
                if key not in value:
                    return Failure(f"{key!r} is required")
        return None

    return required


def _min_items(count: int) -> Check:
    def min_items(value: Any) -> Failure | None:
        if isinstance(value, list) and len(value) < count:
            return Failure(f"expected at least {count} item{'s' if count != 1 else ''}")
        return None

    return min_items


def compile_schema(schema: Mapping[str, Any], pointer: str = "#") -> Check:
    """Compile a JSON Schema document into a check: ``check(value)`` gives None or a Failure.

    Args:
        schema: The whole document (``$ref`` targets are looked up in it).
        pointer: The part to check against, e.g. ``#/$defs/event``; the
            whole document by default.

    Raises:
        ValueError: when the schema uses a keyword or a reference this checker
            does not support.
    """
    compiler = _Compiler(schema)
    return compiler.node(schema) if pointer == "#" else compiler.ref(pointer)
