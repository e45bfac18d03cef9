"""``record_trace(chef, live=True)``: the story on stderr while the run goes, nothing on stdout."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import record_trace
from rulechef_trace.live import LiveView
from tests.scripted import FIX_POS, ScriptedLLM, make_chef


class TTYText(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_true_writes_each_step_to_stderr_while_the_run_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen_during: list[str] = []

    class Peeking(ScriptedLLM):
        def create(self, **kwargs: Any) -> Any:
            seen_during.append(capsys.readouterr().err)
            return super().create(**kwargs)

    chef = make_chef(tmp_path, Peeking(patch=[FIX_POS]))
    with record_trace(chef, live=True):
        chef.learn_rules(max_refinement_iterations=2)
    rest = capsys.readouterr()
    during = "".join(seen_during)
    assert "synthesized" in during  # printed before the refinement's LLM calls
    assert "finalized: completed" in rest.err
    assert "\r" not in during + rest.err  # not a terminal: plain lines only
    assert "finalized:" not in rest.out and "synthesized (" not in rest.out  # nothing on stdout


def test_on_a_terminal_the_status_line_is_redrawn_in_place(tmp_path: Path) -> None:
    stream = TTYText()
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS]))
    with record_trace(chef, live=stream):
        chef.learn_rules(max_refinement_iterations=2)
    text = stream.getvalue()
    assert "\r\033[K" in text
    assert "iteration 1/2" in text and "F1 " in text and " rules" in text
    assert text.endswith("\n")  # the status line is gone once the run ended


def test_no_color_turns_the_colour_off_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS]))
    coloured, plain = TTYText(), TTYText()
    with record_trace(chef, live=coloured, write=False):
        chef.learn_rules(max_refinement_iterations=1)
    monkeypatch.setenv("NO_COLOR", "1")
    with record_trace(chef, live=plain, write=False):
        chef.learn_rules(max_refinement_iterations=1)
    assert "\033[2m" in coloured.getvalue()
    assert "\033[2m" not in plain.getvalue() and "\033[3" not in plain.getvalue()


def test_the_status_line_shows_llm_calls_tokens_and_cost_when_events_carry_them() -> None:
    stream = TTYText()
    now = [100.0]
    view = LiveView(stream, colour=False, clock=lambda: now[0])
    view.event({"type": "run_started", "run_id": "r", "seq": 1, "t": 0.0, "dataset": "d"})
    for seq in (2, 3):
        view.event(
            {
                "type": "llm_called",
                "run_id": "r",
                "seq": seq,
                "status": "ok",
                "usage": {"input_tokens": 1000, "output_tokens": 200},
                "cost": 0.001,
            }
        )
    now[0] = 107.0
    view.tick()
    status = stream.getvalue().rsplit("\r\033[K", 1)[-1]
    assert status == "d  F1 —  2 LLM calls  2,400 tokens  $0.0020  7s"


def test_a_broken_stderr_never_stops_the_run(tmp_path: Path) -> None:
    stream = io.StringIO()
    stream.close()
    chef = make_chef(tmp_path, ScriptedLLM())
    started = time.monotonic()
    with record_trace(chef, live=stream) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert recorder.last is not None and recorder.last.status == "completed"
    assert time.monotonic() - started < 30


def test_every_signal_payload_names_its_signal(tmp_path: Path) -> None:
    from rulechef_trace import ALL_SIGNALS

    got: list[tuple[str, str]] = []

    def on_any(sender: Any, **event: Any) -> None:
        got.append((event["type"], event["seq"]))

    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS]))
    for signal in ALL_SIGNALS:
        signal.connect(on_any, sender=chef)
    try:
        chef.learn_rules(max_refinement_iterations=1)
    finally:
        for signal in ALL_SIGNALS:
            signal.disconnect(on_any)
    names = {s.name for s in ALL_SIGNALS}
    assert got and all(kind in names for kind, _ in got)
    assert got[0][0] == "run_started" and got[-1][0] == "finalized"


def test_a_trace_has_a_short_repr_and_reader_properties(tmp_path: Path) -> None:
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS]))
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
    trace = recorder.last
    assert trace is not None and isinstance(trace, dict)
    rules = len(trace.final_rules)
    assert repr(trace) == f"<Trace learn reviews completed, {rules} rules>"
    assert (trace.kind, trace.dataset, trace.status) == ("learn", "reviews", "completed")
    assert trace.run_id == trace["run"]["id"]
    assert isinstance(trace.duration_s, float) and trace.duration_s >= 0
    assert trace.patches == trace.events_of("patch_decided") and trace.patches


def test_the_status_line_never_wraps_on_a_narrow_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status longer than the terminal is cut to one row, or the redraw could not clear it."""
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("NO_COLOR", "1")
    stream = TTYText()
    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_POS]), name="a-very-long-dataset-name" * 3)
    with record_trace(chef, live=stream):
        chef.learn_rules(max_refinement_iterations=2)
    statuses = [part.split("\n")[-1] for part in stream.getvalue().split("\r\033[K")]
    assert any(s.startswith("a-very-long") for s in statuses)
    assert all(len(s) <= 39 for s in statuses)
