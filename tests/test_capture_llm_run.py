"""LLM calls inside traced runs: one event per call, totals that add up, failures told as such."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import Trace, record_trace, render_trace
from tests.scripted import (
    FIX_POS,
    NO_CONTENT,
    ScriptedLLM,
    last_trace,
    make_chef,
    prompt_kind,
    rule,
)

# What the scripted client calls a prompt -> the step the trace must name.
STEP_OF_KIND = {
    "per_class": "per_class",
    "synthesis": "synthesis",
    "patch": "patch",
    "audit": "audit",
    "guide": "guide",
    "critic": "critic",
}


class CountingLLM(ScriptedLLM):
    """A scripted client that also keeps, per call, what it answered (kind, tokens, error)."""

    def __init__(self, **script: Any):
        super().__init__(**script)
        self.seen: list[tuple[str, str, int | None]] = []

    def create(self, **kwargs: Any) -> Any:
        kind = prompt_kind(kwargs["messages"][-1]["content"])
        try:
            response = super().create(**kwargs)
        except Exception as exc:
            self.seen.append((kind, type(exc).__qualname__, None))
            raise
        self.seen.append((kind, "ok", response.usage.prompt_tokens))
        return response


def learn(tmp_path: Path, llm: ScriptedLLM, coordinator: str = "agentic", **kwargs: Any) -> Trace:
    chef = make_chef(tmp_path, llm, coordinator)
    with record_trace(chef, strict=True) as recorder:
        chef.learn_rules(max_refinement_iterations=kwargs.pop("iterations", 3), **kwargs)
    return last_trace(recorder)


def calls(trace: Trace) -> list[dict[str, Any]]:
    return trace.events_of("llm_called")


def test_every_call_the_client_saw_is_one_event_in_order(tmp_path: Path) -> None:
    """Step, status and input tokens of each llm_called event match the client's own log."""
    llm = CountingLLM(patch=[FIX_POS, {"rules": []}])
    trace = learn(tmp_path, llm)
    got = [
        (
            e["step"],
            "ok" if e["status"] == "ok" else e["error"]["type"].rsplit(".", 1)[-1],
            e["usage"]["input_tokens"],
        )
        for e in calls(trace)
    ]
    expected = [(STEP_OF_KIND[kind], status, tokens) for kind, status, tokens in llm.seen]
    assert got == expected
    assert {step for step, _, _ in got} >= {"per_class", "patch", "guide", "audit"}
    per_class = [e for e in calls(trace) if e["step"] == "per_class"]
    assert sorted(e["label"] for e in per_class) == ["neg", "pos"]
    assert all(e["model"] == "gpt-4o-mini" for e in calls(trace))


def test_step_and_run_totals_are_the_sums_of_their_calls(tmp_path: Path) -> None:
    """Each step event's llm summary sums the calls made for it; finalized sums them all."""
    trace = learn(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]))
    events = trace.events
    for index, event in enumerate(events):
        if "llm" not in event or event["type"] == "finalized":
            continue
        # The calls of a step are the llm_called events since the previous step event.
        start = max(
            (i for i in range(index) if "llm" in events[i] and events[i]["type"] != "llm_called"),
            default=0,
        )
        own = [e for e in events[start + 1 : index] if e["type"] == "llm_called"]
        assert event["llm"]["calls"] == len(own), event["type"]
        assert event["llm"]["input_tokens"] == (
            sum(e["usage"]["input_tokens"] for e in own) if own else None
        )
    total = trace.events_of("finalized")[0]["llm"]
    everything = calls(trace)
    assert total["calls"] == len(everything) > 0
    assert total["input_tokens"] == sum(e["usage"]["input_tokens"] for e in everything)
    assert total["output_tokens"] == sum(e["usage"]["output_tokens"] for e in everything)
    assert trace.run["llm"] == total


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (RuntimeError("429 Too Many Requests"), "llm_error"),
        (TimeoutError("read timed out"), "llm_error"),
        ("this is not JSON at all", "unparsable"),
        (NO_CONTENT, "unparsable"),
        ("", "unparsable"),
        ({"rules": [{**rule("sql one", "x", "pos"), "format": "sql"}] * 2}, "invalid_rules"),
        ({"rules": []}, "empty"),
    ],
)
def test_a_patch_that_brought_nothing_says_why(tmp_path: Path, answer: Any, outcome: str) -> None:
    """A failed, unreadable or all-skipped patch answer is never told as 'empty'."""
    trace = learn(tmp_path, ScriptedLLM(patch=[answer]), coordinator="simple", iterations=1)
    (patch,) = trace.events_of("patch_decided")
    assert patch["outcome"] == outcome
    assert patch["llm"]["calls"] == 1
    if outcome == "llm_error":
        assert patch["llm_error"]["type"] == type(answer).__qualname__
        assert patch["llm"]["errors"] == 1
    else:
        assert patch["llm_error"] is None
    assert patch["dropped"] == (2 if outcome == "invalid_rules" else 0)


def test_a_run_whose_synthesis_calls_all_failed_ends_as_llm_error(tmp_path: Path) -> None:
    """Every synthesis call raising means status llm_error with the last error, not no_rules."""
    trace = learn(tmp_path, ScriptedLLM(per_class=[ConnectionError("401 Unauthorized")]))
    assert trace.run["status"] == "llm_error"
    assert trace.run["error"]["type"] == "ConnectionError"
    assert "401" in trace.run["error"]["message"]
    (synth,) = trace.events_of("synthesized")
    assert synth["failed_labels"] == ["neg", "pos"]
    assert synth["llm"] == {**synth["llm"], "calls": 2, "errors": 2}


def test_one_failed_per_class_call_names_its_class(tmp_path: Path) -> None:
    """A class whose per-class call failed is in failed_labels; the run still completes."""

    def per_class(prompt: str) -> Any:
        if "class 'neg'" in prompt:
            raise RuntimeError("500 Internal Server Error")
        return {"rules": [rule("pos words", "good|great", "pos")]}

    trace = learn(tmp_path, ScriptedLLM(per_class=per_class), iterations=1)
    (synth,) = trace.events_of("synthesized")
    assert synth["failed_labels"] == ["neg"]
    assert synth["llm_error"] is None  # one call worked
    assert trace.run["status"] == "completed"


def test_failed_coordinator_calls_are_told_on_their_events(tmp_path: Path) -> None:
    """Guidance, critique and audit calls that raised are marked llm_error on their events."""
    boom = RuntimeError("503 Service Unavailable")
    trace = learn(tmp_path, ScriptedLLM(guide=[boom], critic=[boom], audit=[boom]))
    for kind in ("guided", "critiqued", "audit_applied"):
        events = [e for e in trace.events_of(kind) if e["llm"]["calls"]]
        assert events, kind
        assert all(e["llm_error"]["type"] == "RuntimeError" for e in events), kind


def test_the_client_is_as_shipped_after_a_traced_run(tmp_path: Path) -> None:
    """The scripted client's own create (an instance attribute) is put back, not deleted."""
    llm = ScriptedLLM()
    own = llm.chat.completions.create
    learn(tmp_path, llm, iterations=1)
    assert llm.chat.completions.create == own
    assert llm.chat.completions.__dict__["create"] == own


def test_a_shared_client_attributes_calls_to_each_chefs_run(tmp_path: Path) -> None:
    """Two chefs sharing one client in two threads each get exactly their own calls."""
    llm = ScriptedLLM(patch=[FIX_POS, {"rules": []}])
    chefs = [make_chef(tmp_path / name, llm, name=name) for name in ("one", "two")]
    traces: dict[str, Trace] = {}
    barrier = threading.Barrier(2)

    def run(chef: Any) -> None:
        with record_trace(chef) as recorder:
            barrier.wait(5)
            chef.learn_rules(max_refinement_iterations=2)
        traces[chef.dataset.name] = last_trace(recorder)

    threads = [threading.Thread(target=run, args=(chef,)) for chef in chefs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    counts = [len(calls(traces[name])) for name in ("one", "two")]
    assert sum(counts) == sum(llm.calls.values())
    assert counts[0] == counts[1] > 0


def test_an_unwrappable_client_is_left_alone_and_the_rest_is_traced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose completions refuse attributes: one warning, the rule story still there."""
    llm = ScriptedLLM()

    class Frozen:
        """A completions resource that takes no attribute (as a proxy object may)."""

        def create(self, **kwargs: Any) -> Any:
            return llm.create(**kwargs)

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(f"{name} is read-only")

    llm.chat.completions = Frozen()
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        trace = learn(tmp_path, llm, iterations=1)
    assert not calls(trace)
    assert trace.events_of("synthesized")
    assert trace.run["status"] == "completed"
    assert sum("LLM calls of a" in r.getMessage() for r in caplog.records) <= 1


def test_a_run_with_the_real_openai_client_records_its_retries_and_errors(tmp_path: Path) -> None:
    """openai.OpenAI on a loopback server: usage from the wire, a 429 retried, a 500 that stays."""
    import json

    import openai

    from tests.openai_server import Reply, base_url, openai_server

    def rules_of(label: str, words: str) -> str:
        return json.dumps({"rules": [rule(f"{label} words", words, label)]})

    script = [
        Reply(status=429),  # per-class "neg": retried by the SDK, then answered
        Reply(content=rules_of("neg", "bad|awful")),
        Reply(content=rules_of("pos", "good|great")),
        Reply(status=500),  # the patch of iteration 1, and every retry of it
    ]
    with openai_server(script) as server:
        client = openai.OpenAI(base_url=base_url(server), api_key="test", max_retries=1)
        chef = make_chef(tmp_path, ScriptedLLM(), "simple")
        chef.llm = chef.learner.llm = client
        chef.learner.llm_calls.client = client
        with record_trace(chef) as recorder:
            chef.learn_rules(max_refinement_iterations=1)
        requests = server.requests
    trace = last_trace(recorder)
    steps = [(e["step"], e["status"]) for e in calls(trace)]
    assert steps == [("per_class", "ok"), ("per_class", "ok"), ("patch", "error")]
    assert requests == 5  # 429 + retry, one call, 500 + retry
    first = calls(trace)[0]
    assert first["usage"] == {
        "input_tokens": 120,
        "output_tokens": 30,
        "total_tokens": 150,
        "cached_tokens": None,
        "reasoning_tokens": None,
    }
    assert first["response_model"] == "gpt-4o-mini-2024-07-18"
    assert first["finish_reason"] == "stop"
    (patch,) = trace.events_of("patch_decided")
    assert patch["outcome"] == "llm_error"
    assert patch["llm_error"]["type"] == "openai.InternalServerError"
    assert "create" not in vars(client.chat.completions)


def test_cost_is_tokens_times_prices_per_call_and_for_the_run(tmp_path: Path) -> None:
    """record_trace(prices=...): each call's cost from its tokens, the run's their sum."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS, {"rules": []}]), "agentic")
    with record_trace(chef, prices={"gpt-4o-mini": (0.15, 0.60)}) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
    trace = last_trace(recorder)
    for call in calls(trace):
        usage = call["usage"]
        expected = (usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.60) / 1e6
        assert call["cost"] == pytest.approx(expected, abs=1e-9)
    assert trace.run["llm"]["cost"] == pytest.approx(sum(c["cost"] for c in calls(trace)), abs=1e-8)
    assert "$" in render_trace(trace).split("seq")[0]


def test_a_model_without_a_price_has_no_cost_never_a_guess(tmp_path: Path) -> None:
    """Prices for another model: every cost is None, the run's too."""
    chef = make_chef(tmp_path, ScriptedLLM(), "simple")
    with record_trace(chef, prices={"gpt-4.1": (2.0, 8.0)}) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert {c["cost"] for c in calls(last_trace(recorder))} == {None}
    assert last_trace(recorder).run["llm"]["cost"] is None


def test_bad_prices_are_one_line_before_anything_runs(tmp_path: Path) -> None:
    """A price that is not (input, output) numbers: ValueError naming the model."""
    chef = make_chef(tmp_path, ScriptedLLM(), "simple")
    with pytest.raises(ValueError, match=r"prices\['gpt-4o-mini'\]"):
        record_trace(chef, prices={"gpt-4o-mini": "cheap"}).__enter__()
