"""The precomputed argument binder gives what ``Signature.bind`` + defaults give."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from rulechef_trace._capture.wrappers import bind_all as _arguments
from rulechef_trace._capture.wrappers import make_binder as _binder


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
