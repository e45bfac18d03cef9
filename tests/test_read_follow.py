"""``show --follow``: a streamed run's steps printed while it goes, exit 0 at its end."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import record_trace
from rulechef_trace.cli import main
from rulechef_trace.follow import EXIT_INTERRUPTED, follow
from tests.scripted import FIX_POS, ScriptedLLM, make_chef


class SlowLLM(ScriptedLLM):
    """A scripted LLM that takes 0.5 s per call (1 s per patch), like a quick real endpoint.

    The slower patch keeps the run going for a second after synthesis, so a
    follower on a busy machine has time to show synthesis before the end.
    """

    def create(self, **kwargs: Any) -> Any:
        patch = "You are updating an existing rule-based extractor" in str(kwargs["messages"])
        time.sleep(1.0 if patch else 0.5)
        return super().create(**kwargs)


class SharedText(io.StringIO):
    """A StringIO one thread writes while another reads."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


def _follow_in_thread(path: Path, out: SharedText) -> tuple[threading.Thread, list[int]]:
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(follow(path, out, poll=0.05)), daemon=True
    )
    thread.start()
    return thread, status


def test_follow_started_before_a_streamed_run_prints_steps_while_it_goes(tmp_path: Path) -> None:
    out = SharedText()
    thread, status = _follow_in_thread(tmp_path, out)
    deadline = time.monotonic() + 10  # the follower is waiting before the run begins
    while time.monotonic() < deadline and "waiting for a run" not in out.text():
        time.sleep(0.01)
    chef = make_chef(tmp_path, SlowLLM(patch=[FIX_POS]))
    seen_mid_run: list[str] = []
    ended_early: list[bool] = []

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "synthesized" not in out.text():
            time.sleep(0.05)
        seen_mid_run.append(out.text())
        ended_early.append(bool(status))

    watcher = threading.Thread(target=watch, daemon=True)
    with record_trace(chef, stream=True):
        watcher.start()
        chef.learn_rules(max_refinement_iterations=2)
        watcher.join(5)
    ended = time.monotonic()
    thread.join(10)
    assert status == [0]
    assert time.monotonic() - ended < 5
    assert ended_early == [False], "the follower ended before the run did"
    assert "synthesized" in seen_mid_run[0]
    assert "finalized" not in seen_mid_run[0]
    text = out.text()
    assert "waiting for a run" in text
    assert "finalized: completed" in text
    assert "Final:" in text


def test_follow_of_a_finished_stream_prints_the_story_and_exits_0(tmp_path: Path) -> None:
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=1)
    out = io.StringIO()
    assert follow(tmp_path / "reviews.trace.jsonl", out, poll=0.01) == 0
    assert "RULECHEF TRACE" in out.getvalue()
    assert "finalized: completed" in out.getvalue()


def test_a_stream_that_stops_growing_is_still_running_never_final(tmp_path: Path) -> None:
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=1)
    full = (tmp_path / "reviews.trace.jsonl").read_text().splitlines()
    cut = tmp_path / "cut.trace.jsonl"
    cut.write_text("\n".join(full[:-1]) + "\n")  # no finalized: a run still going
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] > 3:
            raise KeyboardInterrupt

    out = io.StringIO()
    status = follow(cut, out, poll=0.5, quiet_after=2, clock=lambda: now[0], sleep=sleep)
    assert status == EXIT_INTERRUPTED
    text = out.getvalue()
    assert "still running, last event 2 s ago" in text
    assert "Final:" not in text
    assert "finalized" not in text


def test_follow_of_a_foreign_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "x.trace.jsonl"
    foreign.write_text('{"format": "something-else"}\n')
    assert main(["show", "--follow", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a rulechef-trace stream" in err


def test_the_cli_alone_prints_a_short_start_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """rulechef-trace alone: every verb named, where to start, exit 2."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "start with: rulechef-trace demo" in err and len(err.splitlines()) <= 4
    for verb in ("demo", "show", "lineage", "diff", "history", "validate", "html", "run", "rules"):
        assert verb in err.splitlines()[0]


@pytest.mark.parametrize("verb", ["demo", "show", "lineage", "diff", "history", "validate", "html"])
def test_each_verb_help_names_its_exit_statuses_and_an_example(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status: 0" in out and f"rulechef-trace {verb}" in out.split("example")[1]


def test_validate_accepts_a_storage_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=1)
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("OK ") == 3  # the latest run, its stream and its kept copy


def test_follow_refuses_an_event_validate_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run_started whose coordinator is a list (0.1.0: a traceback in the header): exit 2,
    one error line naming the stream and the field."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=1)
    stream = tmp_path / "reviews.trace.jsonl"
    lines = stream.read_bytes().splitlines()
    lines[1] = (
        lines[1]
        .replace(b'"coordinator":{', b'"coordinator":[{', 1)
        .replace(b'},"storage_path"', b'}],"storage_path"', 1)
    )
    stream.write_bytes(b"\n".join(lines) + b"\n")
    capsys.readouterr()  # rulechef's own prints
    assert main(["show", "--follow", str(stream)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"{stream}: event seq 1: coordinator: expected null or an object, got an array" in err
