"""Hardening round 2 (issue 12): hostile names, lost records, confined writes."""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from rulechef_trace import TraceRecorder, load_trace, record_trace, render_trace, validate
from rulechef_trace._serialise import dumps_any
from rulechef_trace._terminal import fit
from rulechef_trace._text import is_unsafe
from rulechef_trace.cli import main
from rulechef_trace.trace import TraceReadError, read_limit, trace_path
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


# --- bounded readers: regular files only, a size limit -----------------------------------


def _in_thread(call: Any, timeout: float = 10.0) -> Any:
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it blocks."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), "the reader blocked"
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "store" / "reviews.traces" / "20260101T000000000Z_learn_fifo0000.trace.json"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return path


def test_a_fifo_named_like_a_trace_is_refused_not_waited_on(fifo: Path) -> None:
    """load_trace() of a FIFO returns at once with a TraceReadError (0.1.0 hung)."""
    with pytest.raises(TraceReadError, match="not a regular file \\(a FIFO\\)"):
        _in_thread(lambda: load_trace(fifo))


def test_a_device_is_refused_not_read_until_memory_runs_out() -> None:
    """/dev/zero is a device: refused before a byte is read."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    with pytest.raises(TraceReadError, match="a device"):
        _in_thread(lambda: load_trace("/dev/zero"))


def test_every_reading_verb_refuses_a_fifo_in_one_line(
    fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show, show --json, lineage, diff, validate and html: exit 2, one error line naming it."""
    for argv in (
        ["show", str(fifo)],
        ["show", "--json", str(fifo)],
        ["show", "--follow", str(fifo)],
        ["lineage", str(fifo)],
        ["diff", str(fifo), str(fifo)],
        ["validate", str(fifo)],
        ["html", str(fifo), "-o", str(fifo.parent.parent / "x.html")],
    ):
        status = _in_thread(lambda argv=argv: main(argv))
        out, err = capsys.readouterr()
        assert (status, out) == (2, ""), argv
        assert err.count("\n") == 1 and f"{fifo}: not a regular file" in err, argv


def test_follow_catches_up_a_long_stream_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream longer than one read is followed to its end (here 4 kB reads of ~27 kB)."""
    from rulechef_trace import follow as follow_module

    chef = make_chef(tmp_path, hostile_llm())
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=1)
    stream = tmp_path / "reviews.trace.jsonl"
    assert stream.stat().st_size > 5 * 4096
    monkeypatch.setattr(follow_module, "_CHUNK", 4096)
    out = io.StringIO()
    slept: list[float] = []
    assert follow_module.follow(stream, out, sleep=slept.append) == 0
    assert "finalized: completed" in out.getvalue() and slept == []
    assert _controls(out.getvalue()) == []


def test_folder_readers_skip_a_fifo_with_a_note_and_read_the_rest(
    fifo: Path, hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """history DIR and validate DIR list every other run; the FIFO gets one note."""
    store = fifo.parent.parent
    kept = next(hostile.parent.glob("reviews.traces/*.trace.json"))
    (fifo.parent / kept.name).write_bytes(kept.read_bytes())
    assert _in_thread(lambda: main(["history", str(store)])) == 0
    out, err = capsys.readouterr()
    assert "RULECHEF HISTORY  (1 run, 1 dataset)" in out
    assert f"skipped {fifo.name}: not a regular file (a FIFO)" in " ".join(out.split())
    assert _in_thread(lambda: main(["html", str(store), "-o", str(store / "h.html")])) == 0
    capsys.readouterr()
    assert _in_thread(lambda: main(["validate", str(store)])) == 2  # one file could not be read
    out, err = capsys.readouterr()
    assert out.startswith(f"OK       {fifo.parent / kept.name}") and out.count("\n") == 1
    assert err == f"rulechef-trace: note: skipped {fifo}: a FIFO, not a trace file\n"


def test_one_bad_history_file_does_not_break_the_folder(
    tmp_path: Path, hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kept run whose run.started_at is a number (0.1.0: history crashed for the whole
    folder) is skipped with a note naming it; the other runs are listed."""
    runs = tmp_path / "reviews.traces"
    runs.mkdir()
    good = next(hostile.parent.glob("reviews.traces/*.trace.json"))
    (runs / good.name).write_bytes(good.read_bytes())
    bad = orjson.loads(good.read_bytes())
    bad["run"]["started_at"] = 20261121
    (runs / "20261121T000000000Z_learn_badbad00.trace.json").write_bytes(orjson.dumps(bad))
    assert main(["history", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "RULECHEF HISTORY  (1 run, 1 dataset)" in out and err == ""
    name = "20261121T000000000Z_learn_badbad00.trace.json"
    note = f"skipped {name}: run.started_at: expected a string"
    assert note in " ".join(out.split())


def test_files_over_the_size_limit_are_refused_and_the_flag_raises_it(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-bytes lowers or raises the limit; over it: exit 2, one line naming the limit."""
    size = hostile.stat().st_size
    assert main(["show", "--max-bytes", str(size - 1), str(hostile)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"{hostile}: larger than the read limit of {size - 1:,} bytes" in err
    assert main(["validate", "--max-bytes", "1K", str(hostile)]) == 2
    assert main(["show", "--max-bytes", str(size), str(hostile)]) == 0
    capsys.readouterr()
    assert main(["show", "--max-bytes", "lots", str(hostile)]) == 2
    assert "not a byte count: 'lots'" in capsys.readouterr().err


def test_the_size_limit_reaches_readers_that_load_for_you(hostile: Path) -> None:
    """read_limit() applies to history(), which calls load_trace() itself."""
    from rulechef_trace.analysis import history

    with pytest.raises(TraceReadError, match="read limit"):
        load_trace(hostile, max_bytes=100)
    with read_limit(100):
        found = history(hostile.parent)
    assert found.rows == [] and all("read limit of 100 bytes" in n for n in found.notes)
    assert len(history(hostile.parent).rows) == 1


def test_an_unreadable_history_folder_is_reported_not_counted_as_empty(
    hostile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .traces folder that cannot be listed gets a note; 0.1.0 said "0 runs" silently."""
    runs = hostile.parent / "reviews.traces"
    listing = os.scandir

    def denied(path: Any = ".") -> Any:
        if Path(path) == runs:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", denied)  # as root, chmod 000 would not stop a read
    assert main(["history", str(hostile.parent)]) == 0
    out, _ = capsys.readouterr()
    note = "note: cannot read reviews.traces: Permission denied; its runs are not listed"
    assert note in " ".join(out.split())
    assert main(["validate", str(hostile.parent)]) == 2
    out, err = capsys.readouterr()
    assert f"note: skipped {runs}: cannot read the folder: Permission denied" in err
    assert out.startswith(f"OK       {hostile}")


# --- width -----------------------------------------------------------------------------


class _Terminal(io.StringIO):
    """A captured standard output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _shown(argv: list[str], monkeypatch: pytest.MonkeyPatch, columns: str | None) -> str:
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("NO_COLOR", "1")
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert main(argv) == 0
    return out.getvalue()


def test_text_output_fits_a_narrow_terminal(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a 50-column terminal no line of show, lineage or history passes 50 columns
    (except a single word longer than that); rulers shrink to the width."""
    verbs = (["show", str(hostile)], ["lineage", str(hostile)], ["history", str(hostile.parent)])
    for argv in verbs:
        text = _shown(argv, monkeypatch, "50")
        for line in text.splitlines():
            assert len(line) <= 50 or " " not in line.strip(), (argv, line)
        assert "=" * 50 in text and "=" * 51 not in text


def test_width_is_at_least_40_and_80_off_a_terminal(
    hostile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """COLUMNS=10 still gives 40 columns; piped output is the renderer's own 80-column text."""
    narrow = _shown(["show", str(hostile)], monkeypatch, "10")
    assert "=" * 40 in narrow and "=" * 41 not in narrow
    monkeypatch.undo()
    monkeypatch.setenv("COLUMNS", "10")
    assert main(["show", str(hostile)]) == 0
    assert capsys.readouterr().out == render_trace(load_trace(hostile))


def test_fit_rewraps_only_lines_that_are_too_wide() -> None:
    """Lines that fit are untouched; a long line goes on four columns deeper."""
    text = "short\n  " + "word " * 20 + "\n" + "=" * 60 + "\n"
    out = fit(text, 40)
    lines = out.splitlines()
    assert lines[0] == "short" and lines[1].startswith("  word")
    assert lines[2].startswith("      word")
    assert lines[-1] == "=" * 40 and all(len(line) <= 40 for line in lines)
    assert fit("fits\n", 40) == "fits\n"


# --- closed pipes --------------------------------------------------------------------


def test_a_closed_pipe_ends_the_output_quietly(tmp_path: Path, hostile: Path) -> None:
    """`rulechef-trace show x | head -1`: exit 0, nothing on standard error."""
    data = orjson.loads(hostile.read_bytes())
    story = data["events"][1:-1]
    extra = [copy.deepcopy(story[i % len(story)]) for i in range(400)]  # ~1 MB of output
    for event in extra:
        for key in ("added", "removed"):
            event[key] = []
        event["rules_after"] = data["events"][-2].get("rules_after", [])
    data["events"][-1:-1] = extra
    for seq, event in enumerate(data["events"], start=1):
        event["seq"] = seq
    big = tmp_path / "big.trace.json"
    big.write_bytes(orjson.dumps(data))
    for argv in (["show", str(big)], ["show", "--json", str(big)]):
        child = subprocess.Popen(
            [sys.executable, "-m", "rulechef_trace", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None and child.stderr is not None
        child.stdout.readline()
        child.stdout.close()  # what head does after one line
        status = child.wait(timeout=60)
        assert (status, child.stderr.read()) == (0, b""), argv


def test_the_demo_stream_fits_and_colours_whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo prints as it goes: each complete line is fitted to the terminal and
    coloured; a partial line waits for its end or a flush."""
    from rulechef_trace.cli._output import TerminalStream as _TerminalStream

    monkeypatch.setenv("COLUMNS", "40")
    target = _Terminal()
    stream = _TerminalStream(target, colour=True)
    stream.write("  5   0.1s  18  patch 1 ACCEPTED: F1 74.7% → 82.9%, P 89.7% ")
    assert target.getvalue() == ""
    stream.write("→ 89.2%\npartial")
    lines = target.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b[32mACCEPTED\x1b[0m" in lines[0]
    assert lines[1].startswith(" " * 18 + "74.7%")  # under the step's text, as the story wraps
    assert all(len(line.replace("\x1b[32m", "").replace("\x1b[0m", "")) <= 40 for line in lines)
    stream.flush()
    assert target.getvalue().endswith("\npartial")
