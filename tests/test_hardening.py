"""Hardening round 2 (issue 12): hostile names, lost records, confined writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from rulechef_trace import TraceRecorder, load_trace, record_trace, render_trace, validate
from rulechef_trace._text import is_unsafe
from rulechef_trace.cli import main
from rulechef_trace.recorder import dumps_any
from rulechef_trace.trace import trace_path
from tests.hostile import hostile_llm
from tests.scripted import ScriptedLLM, make_chef


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trace file of a run whose every rule name attacks the terminal."""
    folder = tmp_path_factory.mktemp("hostile")
    chef = make_chef(folder, hostile_llm())
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
    return trace_path(folder, "reviews")


def _controls(text: str) -> list[str]:
    return [c for c in text if is_unsafe(c, newlines=True)]


def test_story_of_hostile_names_prints_no_control_character(hostile: Path) -> None:
    """render_trace() shows escapes (\\x1b), never the byte; a newline cannot forge a line."""
    out = render_trace(orjson.loads(hostile.read_bytes()))
    assert _controls(out) == []
    assert "\\x1b" in out
    assert not any(line.lstrip().startswith("seq 9 finalized") for line in out.splitlines())


def test_every_text_verb_on_hostile_names_prints_no_control_character(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show, show --json, lineage, diff, history and validate print no control byte."""
    rule_id = load_trace(hostile).final_rules[0]
    folder = str(hostile.parent)
    for argv in (
        ["show", str(hostile)],
        ["show", "--json", str(hostile)],
        ["lineage", str(hostile), rule_id],
        ["diff", str(hostile), str(hostile)],
        ["history", folder, "--dataset", "reviews"],
        ["validate", str(hostile)],
    ):
        assert main(argv) == 0, argv
        captured = capsys.readouterr()
        assert _controls(captured.out + captured.err) == [], argv


def test_show_works_under_a_narrow_output_encoding(hostile: Path) -> None:
    """cp1252 or ascii output (Windows, redirected) replaces what it cannot encode."""
    for encoding in ("cp1252", "ascii"):
        env = {**os.environ, "PYTHONIOENCODING": encoding}
        done = subprocess.run(
            [sys.executable, "-m", "rulechef_trace", "show", str(hostile)],
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert b"Traceback" not in done.stderr


def _events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return list(trace["events"])


def test_validate_rejects_a_gap_in_seq_numbers(hostile: Path) -> None:
    """A missing seq number is a lost event: validate() reports it."""
    trace = orjson.loads(hostile.read_bytes())
    del trace["events"][2]
    problems = validate(trace)
    assert problems and "expected" in problems[0]


def test_stream_refuses_a_planted_symlink(tmp_path: Path) -> None:
    """stream=True never writes through a symlink at <dataset>.trace.jsonl."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "reviews.trace.jsonl").symlink_to(victim)
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, stream=True) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert victim.read_text() == "keep me"
    assert recorder.write_errors >= 1
    assert recorder.last is not None and trace_path(tmp_path, "reviews").exists()


@pytest.mark.parametrize("dataset", ["../../escaped", "/tmp/abs-escape", "a/b", ".."])
def test_dataset_names_stay_in_the_storage_folder(tmp_path: Path, dataset: str) -> None:
    """Separators, .. and absolute paths in a dataset name cannot leave storage_path."""
    storage = tmp_path / "store"
    target = trace_path(storage, dataset)
    assert target.resolve().parent == storage.resolve()


def test_nul_in_a_file_name_is_a_write_error_not_a_crash(tmp_path: Path) -> None:
    """A NUL in a path (ValueError, not OSError) is reported as a write failure."""
    recorder = TraceRecorder(None, storage_path=tmp_path)
    assert isinstance(recorder._write_one(tmp_path / "a\x00b.trace.json", b"{}"), ValueError)


def test_the_trace_keeps_a_mode_the_user_set(tmp_path: Path) -> None:
    """A latest-run file set to 600 is still 600 after the next run."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
    target = trace_path(tmp_path, "reviews")
    target.chmod(0o600)
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=1)
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_long_dataset_name_keeps_its_latest_run_file(tmp_path: Path) -> None:
    """A 230-character dataset name (0.1.0's temp name overflowed) is written."""
    chef = make_chef(tmp_path, ScriptedLLM(), name="d" * 230)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert recorder.write_errors == 0
    assert trace_path(tmp_path, "d" * 230).exists()


def test_big_ints_and_deep_values_are_serialised_as_strings() -> None:
    """An int beyond 64 bits or nesting over 255 cannot make a record unwritable."""
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    data = orjson.loads(dumps_any({"seed": 2**64, "deep": deep, "ok": 3}))
    assert data["seed"] == str(2**64) and data["ok"] == 3


def test_a_failing_stream_close_still_writes_the_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream whose close() raises costs one write error, not the trace."""
    chef = make_chef(tmp_path, ScriptedLLM())
    recorder = TraceRecorder(chef, stream=True)
    original = recorder._open_stream

    def failing(*args: Any) -> Any:
        stream = original(*args)

        def close() -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(stream, "close", close)
        return stream

    monkeypatch.setattr(recorder, "_open_stream", failing)
    with recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert trace_path(tmp_path, "reviews").exists()
    assert recorder.write_errors == 1
