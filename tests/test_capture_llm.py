"""The LLM call capture: clients as shipped when unobserved, honest facts per call."""

from __future__ import annotations

import logging
import threading
from typing import Any

import openai
import pytest

from rulechef_trace._capture import llm
from tests.openai_server import Reply, base_url, openai_server


def _client(server: Any, retries: int = 1) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=base_url(server), max_retries=retries, timeout=5)


def _ask(client: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "secret prompt"}]
    )


def test_uninstall_restores_the_client_exactly_as_shipped() -> None:
    """After the last uninstall, create is the class's own function again."""
    client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
    resource = client.chat.completions
    shipped = resource.create
    assert llm.install(client)
    assert "create" in vars(resource)
    llm.uninstall(client)
    assert "create" not in vars(resource)
    assert resource.create == shipped
    assert type(resource).create is openai.resources.chat.Completions.create


def test_installs_are_refcounted_across_overlapping_runs() -> None:
    """Two runs sharing a client: the first to end leaves the other's capture in place."""
    client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
    assert llm.install(client) and llm.install(client)
    llm.uninstall(client)
    assert llm.is_installed(client)
    llm.uninstall(client)
    assert not llm.is_installed(client)
    assert "create" not in vars(client.chat.completions)


def test_answer_with_usage_is_recorded_without_content() -> None:
    """Model, response model, tokens, finish reason and length; no prompt or answer text."""
    with openai_server([Reply(content='{"rules": ["x"]}')]) as server:
        client = _client(server)
        log = llm.CallLog()
        llm.install(client)
        try:
            with llm.step_context(log, "patch", iteration=2):
                _ask(client)
        finally:
            llm.uninstall(client)
    (call,) = log.calls
    assert call["step"] == "patch" and call["iteration"] == 2
    assert call["status"] == "ok" and call["error"] is None
    assert call["model"] == "gpt-4o-mini"
    assert call["response_model"] == "gpt-4o-mini-2024-07-18"
    assert call["finish_reason"] == "stop"
    assert call["response_chars"] == len('{"rules": ["x"]}')
    assert call["usage"] == {
        "input_tokens": 120,
        "output_tokens": 30,
        "total_tokens": 150,
        "cached_tokens": None,
        "reasoning_tokens": None,
    }
    assert "secret" not in repr(call) and "rules" not in repr(call)


def test_missing_usage_is_null_never_zero() -> None:
    """A provider that reports no usage gives null counts."""
    with openai_server([Reply(usage=None)]) as server:
        client = _client(server)
        log = llm.CallLog()
        llm.install(client)
        try:
            with llm.step_context(log, "synthesis"):
                _ask(client)
        finally:
            llm.uninstall(client)
    assert set(log.calls[0]["usage"].values()) == {None}
    assert llm.step_summary(log.calls)["input_tokens"] is None


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, "openai.RateLimitError"), (500, "openai.InternalServerError")],
)
def test_sdk_errors_after_its_own_retries_are_one_failed_call(status: int, error_type: str) -> None:
    """The SDK retries (max_retries=1: two requests); the trace sees one call that raised."""
    with openai_server([Reply(status=status)]) as server:
        client = _client(server, retries=1)
        log = llm.CallLog()
        llm.install(client)
        try:
            with llm.step_context(log, "guide", iteration=1), pytest.raises(openai.APIStatusError):
                _ask(client)
        finally:
            llm.uninstall(client)
        assert server.requests == 2
    (call,) = log.calls
    assert call["status"] == "error"
    assert call["error"] is not None and call["error"]["type"] == error_type
    assert len(call["error"]["message"]) <= 200
    assert set(call["usage"].values()) == {None}


def test_calls_outside_a_traced_run_pass_through_unrecorded() -> None:
    """An installed client called with no step context records nothing."""
    with openai_server([Reply()]) as server:
        client = _client(server)
        llm.install(client)
        try:
            assert _ask(client).choices[0].message.content == '{"rules": []}'
        finally:
            llm.uninstall(client)


def test_shared_client_attributes_each_call_to_its_own_run() -> None:
    """Two threads, one client: each run's log holds only its own calls."""
    with openai_server([Reply()]) as server:
        client = _client(server)
        logs = [llm.CallLog(), llm.CallLog()]
        llm.install(client)
        llm.install(client)

        def run(index: int) -> None:
            with llm.step_context(logs[index], "patch", iteration=index):
                for _ in range(3):
                    _ask(client)
            llm.uninstall(client)

        threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert [len(log.calls) for log in logs] == [3, 3]
    assert all(c["iteration"] == i for i, log in enumerate(logs) for c in log.calls)
    assert not llm.is_installed(client)


def test_unwrappable_client_is_left_alone_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client without a settable completions resource: not traced, warned once."""

    class Frozen:
        __slots__ = ()

        def create(self, **kwargs: Any) -> None:
            return None

    class Client:
        class chat:
            completions = Frozen()

    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        assert not llm.install(Client())
        assert not llm.install(Client())
    assert len([r for r in caplog.records if "not traced" in r.message]) == 1


def test_cost_is_tokens_times_prices_and_null_without_a_price() -> None:
    """USD per million tokens; cached input at its own price; an unpriced model gives null."""
    ctx = llm.StepContext(lambda call: None, "patch")

    class Usage:
        prompt_tokens, completion_tokens, total_tokens = 1000, 200, 1200

        class prompt_tokens_details:
            cached_tokens = 400

    class Response:
        model, usage = "m", Usage()
        choices: tuple[Any, ...] = ()

    call = llm.call_facts(ctx, {"model": "gpt-4o-mini"}, Response(), None, 0.5)
    prices = llm.validate_prices({"gpt-4o-mini": (0.15, 0.60, 0.075)})
    expected = (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1_000_000
    assert llm.call_cost(call, prices) == pytest.approx(expected)
    assert llm.run_cost([call, call], prices) == pytest.approx(2 * expected)
    assert llm.run_cost([call], {"other": (1.0, 1.0)}) is None
    summary = llm.run_summary([call], run_duration_s=2.0, prices=prices)
    assert summary["cached_tokens"] == 400 and summary["time_share"] == 0.25


def test_bad_prices_are_one_clear_error() -> None:
    """A price that is not two or three non-negative numbers names the model."""
    with pytest.raises(ValueError, match="gpt-x"):
        llm.validate_prices({"gpt-x": (0.1,)})
