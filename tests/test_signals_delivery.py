"""How an event reaches the package's own subscribers and the user's blinker receivers."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from blinker import ANY

from rulechef_trace import signals as sig
from rulechef_trace._capture import install as capture
from tests.conftest import drop_receivers

PAYLOAD = {"type": "pruned", "run_id": "r", "seq": 3, "t": 0.1, "removed": ["a"]}


class Chef:
    """A sender; any object will do."""


def test_subscriptions_get_the_event_before_any_blinker_receiver() -> None:
    """A user receiver connected first still runs after the package's own subscriber."""
    chef, seen = Chef(), []

    def user(sender: Any, **event: Any) -> None:
        seen.append(("user", json.dumps(event)))
        event["removed"].append("changed by the user")

    sig.pruned.connect(user, sender=chef, weak=False)
    # Like the recorder, the subscriber keeps what it was sent as text at once.
    own = sig.Subscription(
        lambda name, sender, **event: seen.append((name, json.dumps(event))), chef
    )
    own.connect()
    try:
        payload = {**PAYLOAD, "removed": ["a"]}
        assert sig.send_safely(sig.pruned, chef, payload) == 0
    finally:
        own.disconnect()
        sig.pruned.disconnect(user)
    assert [who for who, _ in seen] == ["pruned", "user"]
    assert json.loads(seen[0][1])["removed"] == ["a"]  # taken before the user's change


def test_a_subscription_for_one_chef_ignores_other_chefs_and_one_for_all_sees_both() -> None:
    """``sender`` filters by identity; ``None`` follows every chef."""
    mine, other = Chef(), Chef()
    got: dict[str, list[Any]] = {"mine": [], "all": []}
    one = sig.Subscription(lambda name, sender, **event: got["mine"].append(sender), mine)
    every = sig.Subscription(lambda name, sender, **event: got["all"].append(sender))
    one.connect()
    every.connect()
    try:
        sig.send_safely(sig.pruned, mine, dict(PAYLOAD))
        sig.send_safely(sig.pruned, other, dict(PAYLOAD))
    finally:
        one.disconnect()
        every.disconnect()
    assert got["mine"] == [mine]
    assert got["all"] == [mine, other]
    assert every.sender is ANY


def test_a_failing_subscription_is_counted_logged_and_the_rest_still_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One subscriber raising never keeps the event from the others."""
    chef, later = Chef(), []

    def broken(name: str, sender: Any, **event: Any) -> None:
        raise RuntimeError("subscriber bug")

    first = sig.Subscription(broken, chef)
    second = sig.Subscription(lambda name, sender, **event: later.append(name), chef)
    sig.pruned.connect(lambda sender, **event: later.append("user"), sender=chef, weak=False)
    first.connect()
    second.connect()
    try:
        with caplog.at_level(logging.ERROR, logger="rulechef_trace"):
            assert sig.send_safely(sig.pruned, chef, dict(PAYLOAD)) == 1
    finally:
        first.disconnect()
        second.disconnect()
        drop_receivers(sig.pruned)
    assert later == ["pruned", "user"]
    assert "subscriber bug" in caplog.text


def test_strict_mode_reraises_a_subscription_error() -> None:
    """Under ``strict_mode`` the subscriber's own exception reaches the sender."""
    chef = Chef()

    def broken(name: str, sender: Any, **event: Any) -> None:
        raise ValueError("strict")

    own = sig.Subscription(broken, chef)
    own.connect()
    try:
        with sig.strict_mode(), pytest.raises(ValueError, match="strict"):
            sig.send_safely(sig.pruned, chef, dict(PAYLOAD))
    finally:
        own.disconnect()


def test_a_muted_signal_reaches_no_subscription() -> None:
    """blinker's ``muted()`` silences the package's subscribers too."""
    chef, seen = Chef(), []
    own = sig.Subscription(lambda name, sender, **event: seen.append(name), chef)
    own.connect()
    try:
        with sig.pruned.muted():
            sig.send_safely(sig.pruned, chef, dict(PAYLOAD))
    finally:
        own.disconnect()
    assert seen == []


def test_step_signals_are_never_delivered_to_subscriptions() -> None:
    """Subscriptions follow the recorded events only; step signals stay blinker's."""
    chef, seen = Chef(), []
    own = sig.Subscription(lambda name, sender, **event: seen.append(name), chef)
    own.connect()
    try:
        sig.send_safely(sig.step_started, chef, {"type": "step_started", "run_id": "r"})
    finally:
        own.disconnect()
    assert seen == []


def test_a_subscription_installs_the_hooks_and_its_disconnect_removes_them() -> None:
    """Connecting and disconnecting are idempotent and keep the hooks in step."""
    own = sig.Subscription(lambda name, sender, **event: None, Chef())
    assert not capture.installed()
    own.connect()
    own.connect()
    assert capture.installed() and sig.subscriptions == (own,)
    own.disconnect()
    own.disconnect()
    assert not capture.installed()
    assert not sig.subscriptions


def test_a_subscriber_is_told_it_is_alone_only_when_nobody_else_gets_the_event() -> None:
    """``delivered_alone()``: one subscription and no blinker receiver, inside its handler."""
    chef, told = Chef(), []
    own = sig.Subscription(lambda name, sender, **event: told.append(sig.delivered_alone()), chef)
    other = sig.Subscription(lambda name, sender, **event: None, chef)
    own.connect()
    try:
        sig.send_safely(sig.pruned, chef, dict(PAYLOAD))  # alone
        other.connect()
        sig.send_safely(sig.pruned, chef, dict(PAYLOAD))  # another subscription
        other.disconnect()
        sig.pruned.connect(lambda sender, **event: None, sender=chef, weak=False)
        sig.send_safely(sig.pruned, chef, dict(PAYLOAD))  # a blinker receiver
    finally:
        own.disconnect()
        other.disconnect()
        drop_receivers(sig.pruned)
    assert told == [True, False, False]
    assert sig.delivered_alone() is False  # outside any delivery


def test_a_receiver_connected_while_subscribers_run_gets_the_next_event_only() -> None:
    """Receivers are taken before the subscribers run, so a payload a lone recorder kept
    unserialised never reaches a receiver that joined meanwhile."""
    chef, late = Chef(), []

    def late_receiver(sender: Any, **event: Any) -> None:
        late.append(event["seq"])

    def connecting(name: str, sender: Any, **event: Any) -> None:
        sig.pruned.connect(late_receiver, sender=chef, weak=False)

    own = sig.Subscription(connecting, chef)
    own.connect()
    try:
        sig.send_safely(sig.pruned, chef, {**PAYLOAD, "seq": 1})
        sig.send_safely(sig.pruned, chef, {**PAYLOAD, "seq": 2})
    finally:
        own.disconnect()
        sig.pruned.disconnect(late_receiver)
    assert late == [2]
