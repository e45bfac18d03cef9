"""The precomputed argument binder gives what ``Signature.bind`` + defaults give."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from rulechef_trace._capture.wrappers import bind_all as _arguments
from rulechef_trace._capture.wrappers import make_binder as _binder
from rulechef_trace._capture.wrappers import make_ordered_binder as _ordered


def plain(self: Any, rules: Any, dataset: Any = None, *, max_iterations: int = 3) -> None: ...


def starred(self: Any, *args: Any, **kwargs: Any) -> None: ...


CALLS = [
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1,), {"rules": 2}),
    ((1, 2), {"max_iterations": 9}),
    ((1,), {"rules": 2, "dataset": 3, "max_iterations": 4}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_binder_matches_signature_bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    signature = inspect.signature(plain)
    assert _binder(signature)(args, kwargs) == _arguments(signature, args, kwargs)


@pytest.mark.parametrize(("args", "kwargs"), [((1, 2, 3, 4), {}), ((1, 2), {"nope": 1})])
def test_binder_leaves_calls_it_cannot_map_to_bind(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        _binder(inspect.signature(plain))(args, kwargs)


def test_starred_signatures_take_the_full_bind() -> None:
    signature = inspect.signature(starred)
    assert _binder(signature)((1, 2), {"x": 3}) == {"self": 1, "args": (2,), "kwargs": {"x": 3}}


def positional(self: Any, rules: Any, dataset: Any = None, max_iterations: int = 3) -> None: ...


ORDERED_CALLS = [
    ((1, 2), {}),
    ((1, 2, 3, 4), {}),
    ((1,), {"max_iterations": 9, "rules": 2}),
    ((1, 2), {"max_iterations": 9}),
    ((1,), {"dataset": 3, "rules": 2}),
]


@pytest.mark.parametrize(("args", "kwargs"), ORDERED_CALLS)
def test_ordered_binder_gives_bind_all_in_the_signature_order(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Same names, values and order as bind + apply_defaults (run params keep their order)."""
    signature = inspect.signature(positional)
    got = _ordered(signature)(args, kwargs)
    want = _arguments(signature, args, kwargs)
    assert list(got.items()) == list(want.items())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2, 3, 4, 5), {}), ((1, 2), {"nope": 1}), ((1, 2), {"rules": 2}), ((1,), {})],
)
def test_ordered_binder_raises_what_bind_raises(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Too many, unknown, repeated or missing arguments take the full bind, which raises."""
    with pytest.raises(TypeError):
        _ordered(inspect.signature(positional))(args, kwargs)


def test_ordered_binder_of_keyword_only_signatures_is_the_full_bind() -> None:
    """A keyword-only parameter leaves the shortcut: the full bind, same result."""
    signature = inspect.signature(plain)
    got = _ordered(signature)((1, 2), {"max_iterations": 5})
    assert list(got.items()) == list(_arguments(signature, (1, 2), {"max_iterations": 5}).items())
