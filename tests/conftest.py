"""Shared fixtures: every test starts and ends with nobody listening."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rulechef_trace import ALL_SIGNALS, Trace, record_trace, replay, validate
from rulechef_trace import signals as sig
from rulechef_trace._capture import install as capture


def drop_receivers(*signals: Any) -> None:
    """Drop every blinker receiver of ``signals`` (a lambda cannot be disconnected by name)."""
    for s in signals:
        s.receivers.clear()
        s._by_receiver.clear()
        s._by_sender.clear()
    capture.refresh()


@pytest.fixture(autouse=True)
def nobody_listens() -> Iterator[None]:
    """Fail a test that leaves a receiver or a hook behind, then clean up."""
    assert not capture.installed(), "a previous test left the hooks installed"
    yield
    leftovers = [s.name for s in ALL_SIGNALS if capture._live_receivers(s)]
    leftovers += [f"subscription {s.handler!r}" for s in sig.subscriptions]
    for subscription in sig.subscriptions:
        subscription.disconnect()
    drop_receivers(*ALL_SIGNALS)
    assert not leftovers, f"receivers left connected to {leftovers}"


@pytest.fixture
def learn(tmp_path: Any) -> Callable[..., tuple[Trace, Any]]:
    """Run learn_rules under record_trace (strict) and check the trace's invariants."""

    def run(chef: Any, **kwargs: Any) -> tuple[Trace, Any]:
        with record_trace(chef, strict=True) as recorder:
            result = chef.learn_rules(**kwargs)
        assert len(recorder.traces) == 1
        trace = recorder.traces[0]
        assert validate(trace) == []
        assert sorted(replay(trace)) == sorted(r.id for r in chef.dataset.rules)
        assert sorted(trace.final_rules) == sorted(r.id for r in chef.dataset.rules)
        return trace, result

    return run


def story(trace: Trace) -> list[str]:
    """The event types of a trace in order, LLM calls left out (their own tests count them)."""
    return [e["type"] for e in trace.events if e["type"] != "llm_called"]
