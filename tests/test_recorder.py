"""TraceRecorder: files, history, counts, privacy and concurrent runs."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import rulechef.engine
import rulechef.learner
import rulechef.ranking
from rulechef import evaluation

from rulechef_trace import TraceRecorder, load_trace, record_trace, replay, validate
from rulechef_trace.trace import history_dir, trace_path
from tests.conftest import drop_receivers, story
from tests.scripted import BREAK, DATA, FIX_ALL, FIX_POS, ScriptedLLM, audit_merge, make_chef

RICH: dict[str, Any] = {"patch": [BREAK, FIX_POS, FIX_ALL]}


def rich_llm() -> ScriptedLLM:
    return ScriptedLLM(
        **RICH, audit=[audit_merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely")]
    )


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every dataset evaluation rulechef makes, whoever calls it."""
    counts: Counter[str] = Counter()
    for module in (rulechef.learner, rulechef.engine, rulechef.ranking):
        for name in ("evaluate_dataset", "evaluate_rules_individually"):
            original = getattr(evaluation, name)

            def counted(*args: Any, _name: str = name, _f: Any = original, **kw: Any) -> Any:
                counts[_name] += 1
                return _f(*args, **kw)

            monkeypatch.setattr(module, name, counted)
    return counts


def test_traced_run_makes_the_same_llm_calls_and_evaluations(tmp_path, evaluations):
    plain_llm = rich_llm()
    plain = make_chef(tmp_path / "plain", plain_llm, "agentic")
    plain.learn_rules(max_refinement_iterations=4)
    plain.rank_rules(prune=True, verbose=False)
    plain_evals = Counter(evaluations)
    evaluations.clear()

    traced_llm = rich_llm()
    traced = make_chef(tmp_path / "traced", traced_llm, "agentic")
    with record_trace(traced) as recorder:
        traced.learn_rules(max_refinement_iterations=4)
        traced.rank_rules(prune=True, verbose=False)
    assert traced_llm.calls == plain_llm.calls
    assert evaluations == plain_evals
    assert sum(plain_evals.values()) > 10
    assert len(recorder.traces) == 2
    assert [r.name for r in traced.dataset.rules] == [r.name for r in plain.dataset.rules]


def test_trace_is_written_atomically_to_latest_and_history(tmp_path):
    chef = make_chef(tmp_path, rich_llm(), "agentic")
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
        chef.learn_rules(max_refinement_iterations=2)
    latest = trace_path(tmp_path, "reviews")
    kept = sorted(history_dir(tmp_path, "reviews").glob("*.trace.json"))
    assert len(kept) == 2
    assert load_trace(latest) == recorder.traces[-1]
    assert {load_trace(p).run["id"] for p in kept} == {t.run["id"] for t in recorder.traces}
    assert not list(tmp_path.rglob("*.tmp"))
    assert set(recorder.paths) == {latest, *kept}


def test_write_false_keeps_traces_in_memory_only(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert len(recorder.traces) == 1 and recorder.paths == []
    assert not list(tmp_path.rglob("*.trace.json"))


def test_storage_path_option_and_no_history(tmp_path):
    chef = make_chef(tmp_path / "chef", ScriptedLLM())
    with record_trace(chef, storage_path=tmp_path / "traces", history=False):
        chef.learn_rules(max_refinement_iterations=1)
    assert [p.name for p in (tmp_path / "traces").iterdir()] == ["reviews.trace.json"]


def test_record_trace_accepts_the_pipeline_and_detaches_on_error(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    with pytest.raises(KeyError), record_trace(chef._pipeline) as recorder:
        assert recorder.chef is chef and recorder.attached
        chef.learn_rules(max_refinement_iterations=1)
        raise KeyError("user code failed")
    assert not recorder.attached
    assert len(recorder.traces) == 1


def test_trace_file_holds_no_input_text_and_no_pattern(tmp_path):
    chef = make_chef(tmp_path, rich_llm(), "agentic")
    with record_trace(chef):
        chef.learn_rules(max_refinement_iterations=4)
    raw = trace_path(tmp_path, "reviews").read_text()
    for text, _ in DATA:
        assert text not in raw
    for r in chef.dataset.rules:
        assert r.content not in raw and json.dumps(r.content)[1:-1] not in raw
    for word in ("good", "great", "nice", "lovely", "terrible", "keep going"):
        assert word not in raw


def test_a_global_recorder_sees_every_chef_and_separates_their_runs(tmp_path):
    chefs = [make_chef(tmp_path / str(i), ScriptedLLM(**RICH), name=f"d{i}") for i in range(2)]
    with TraceRecorder(write=False) as recorder:
        for chef in chefs:
            chef.learn_rules(max_refinement_iterations=2)
    assert [t.run["dataset"] for t in recorder.traces] == ["d0", "d1"]


def test_two_chefs_learning_in_two_threads_get_their_own_traces(tmp_path):
    chefs = [make_chef(tmp_path / str(i), rich_llm(), "agentic", name=f"d{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def learn(chef: Any) -> None:
        try:
            barrier.wait()
            chef.learn_rules(max_refinement_iterations=4)
        except BaseException as exc:
            errors.append(exc)

    recorders = [TraceRecorder(chef, write=True) for chef in chefs]
    for r in recorders:
        r.attach()
    threads = [threading.Thread(target=learn, args=(c,)) for c in chefs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in recorders:
        r.detach()
    assert errors == []
    for chef, recorder in zip(chefs, recorders, strict=True):
        (trace,) = recorder.traces
        assert trace.run["dataset"] == chef.dataset.name
        assert [e["seq"] for e in trace.events] == list(range(1, len(trace.events) + 1))
        assert sorted(replay(trace)) == sorted(r.id for r in chef.dataset.rules)
        assert validate(trace) == []
        assert story(trace)[-1] == "finalized"


def test_nested_recorders_on_one_chef_each_get_the_run_once(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(**RICH))
    with record_trace(chef, write=False) as outer:
        with record_trace(chef, write=False) as inner:
            chef.learn_rules(max_refinement_iterations=2)
        chef.learn_rules(max_refinement_iterations=2)
    assert len(inner.traces) == 1 and len(outer.traces) == 2
    assert inner.traces[0] == outer.traces[0]


def test_trace_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    chef = make_chef(tmp_path, ScriptedLLM())
    old = os.umask(0o022)
    try:
        with record_trace(chef):
            chef.learn_rules(max_refinement_iterations=1)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "reviews.trace.json").stat().st_mode)
    assert mode == 0o644


# --- receivers cannot change the record ---------------------------------------------


def _vandalise(sender: Any, **event: Any) -> None:
    """A receiver that mutates everything it was given, in place."""
    for value in event.values():
        if isinstance(value, list):
            value.clear()
        elif isinstance(value, dict):
            for key in list(value):
                value[key] = "vandalised"


@pytest.mark.parametrize("connected", ["before the recorder", "after the recorder"])
def test_a_receiver_that_mutates_its_payload_cannot_change_the_record(tmp_path, connected):
    """Lists emptied and dicts overwritten by another receiver, whenever it was connected
    (blinker's order is arbitrary): the trace keeps what was sent."""
    from rulechef_trace import ALL_SIGNALS

    chef = make_chef(tmp_path, rich_llm(), "agentic")
    recorder = TraceRecorder(chef)
    if connected == "after the recorder":
        recorder.attach()
    for signal in ALL_SIGNALS:
        signal.connect(_vandalise, sender=chef, weak=False)
    try:
        with recorder:
            chef.learn_rules(max_refinement_iterations=2)
    finally:
        for signal in ALL_SIGNALS:
            signal.disconnect(_vandalise)
    trace = recorder.last
    assert trace is not None and validate(trace) == []
    assert "vandalised" not in json.dumps(trace)
    assert trace.events_of("synthesized")[0]["rules_after"]
    assert trace.final_metrics is not None and isinstance(trace.final_metrics["f1"], float)
    assert load_trace(trace_path(tmp_path, "reviews")) == trace


_CLOCK_KEYS = frozenset({"id", "run_id", "t", "started_at", "ended_at", "duration_s", "time_share"})


def _comparable(trace: Any, root: Path) -> str:
    """A trace as JSON without what two identical runs differ in: clocks, ids, the folder."""

    def without_clocks(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_clocks(v) for k, v in value.items() if k not in _CLOCK_KEYS}
        if isinstance(value, list):
            return [without_clocks(v) for v in value]
        return value

    text = json.dumps(without_clocks(trace)).replace(str(root), "<storage>")
    numbers: dict[str, str] = {}  # rule ids are random: numbered in order of appearance
    return re.sub(r"\b[0-9a-f]{8}\b", lambda m: numbers.setdefault(m[0], f"r{len(numbers)}"), text)


def test_a_recorder_alone_records_what_one_beside_other_receivers_records(tmp_path):
    """Alone, the recorder keeps its payloads and serialises them at the end; beside another
    receiver it serialises each at once. The two traces and files are the same."""
    from rulechef_trace import ALL_SIGNALS

    traces = []
    for case in ("alone", "with company"):
        chef = make_chef(tmp_path / case, rich_llm(), "agentic")
        others = ALL_SIGNALS if case == "with company" else ()
        for signal in others:
            signal.connect(lambda sender, **event: None, sender=object(), weak=False)
        try:
            with record_trace(chef) as recorder:
                chef.learn_rules(max_refinement_iterations=2)
        finally:
            drop_receivers(*others)
        assert recorder.last == load_trace(trace_path(tmp_path / case, "reviews"))
        traces.append(_comparable(recorder.last, tmp_path / case))
    assert traces[0] == traces[1]
    assert traces[0].count('"seq"') > 10


# --- values that had to be coerced are counted ----------------------------------------


def test_a_64_bit_overflowing_seed_is_written_as_a_string_and_counted(tmp_path):
    """learn_rules(split_seed=2**64) leaves a trace file (0.1.0 lost it) that counts 1 coercion."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, stream=True) as recorder:
        chef.learn_rules(max_refinement_iterations=1, split_seed=2**64)
    written = load_trace(trace_path(tmp_path, "reviews"))
    assert written.run["params"]["split_seed"] == str(2**64)
    assert written.run["stats"]["coerced_values"] == 1 == recorder.coerced_values
    assert written == recorder.last == load_trace(tmp_path / "reviews.trace.jsonl")


def test_every_kind_of_coercion_is_counted_once() -> None:
    """A big int, a non-string key, a value nested past 200 levels, an unknown object: 4."""
    from rulechef_trace._serialise import serialise as _serialise

    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    line, count = _serialise({"big": -(2**70), 3: "int key", "deep": deep, "odd": object()})
    assert count == 4
    data = json.loads(line)
    assert data["big"] == str(-(2**70)) and data["3"] == "int key"
    assert _serialise({"plain": [1, 2.5, None, "x"]}) == (b'{"plain":[1,2.5,null,"x"]}', 0)


def test_a_clean_run_counts_no_coercion(tmp_path):
    """An ordinary run: coerced_values 0 in the trace, on the recorder."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert recorder.last is not None and recorder.last.run["stats"]["coerced_values"] == 0
    assert recorder.coerced_values == 0


# --- detach from another thread --------------------------------------------------------


def _detach_from_another_thread(recorder: TraceRecorder) -> None:
    worker = threading.Thread(target=recorder.detach)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()


def test_detach_from_another_thread_mid_run_drops_the_run_with_one_warning(tmp_path, caplog):
    """No exception, no traceback; the run in progress is dropped and its stream closed."""
    from rulechef_trace import patch_decided

    chef = make_chef(tmp_path, rich_llm())
    recorder = TraceRecorder(chef, stream=True).attach()
    streams: list[Any] = []

    def detach_once(sender: Any, **event: Any) -> None:
        patch_decided.disconnect(detach_once)
        streams.extend(recorder._streams.values())
        _detach_from_another_thread(recorder)

    patch_decided.connect(detach_once, sender=chef, weak=False)
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        chef.learn_rules(max_refinement_iterations=3)
    assert recorder.traces == [] and not recorder.attached
    assert [r.getMessage() for r in caplog.records] == [
        "rulechef_trace: recorder detached with 1 run(s) in progress; they are not recorded"
    ]
    assert all(r.exc_info is None for r in caplog.records)
    assert len(streams) == 1 and streams[0].closed


def test_detach_from_another_thread_while_a_run_is_written_keeps_the_record(
    tmp_path, caplog, monkeypatch
):
    """A run that delivered its finalized event is recorded and written, detach or not."""
    chef = make_chef(tmp_path, ScriptedLLM())
    recorder = TraceRecorder(chef).attach()
    write = recorder._write

    def detach_then_write(trace: Any, sender: Any) -> None:
        _detach_from_another_thread(recorder)
        write(trace, sender)

    monkeypatch.setattr(recorder, "_write", detach_then_write)
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        chef.learn_rules(max_refinement_iterations=1)
    assert len(recorder.traces) == 1 and caplog.records == []
    assert load_trace(trace_path(tmp_path, "reviews")) == recorder.last


def test_an_event_delivered_after_detach_is_ignored(tmp_path):
    """blinker may still call a receiver it listed before detach(): nothing is started."""
    recorder = TraceRecorder(None, storage_path=tmp_path, stream=True).attach()
    recorder.detach()
    recorder._receive("run_started", None, run_id="r1", seq=1, t=0.0, kind="learn")
    assert recorder._runs == {} and recorder._streams == {}
    assert list(tmp_path.iterdir()) == []


# --- SystemExit and KeyboardInterrupt during a run ------------------------------------


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("raised_by", ["receiver", "llm", "finalized receiver"])
def test_exit_and_interrupt_during_a_run_are_recorded_and_reraised(tmp_path, exc_type, raised_by):
    """A receiver's or the LLM's SystemExit/KeyboardInterrupt is not swallowed: it propagates
    (the same object), and the run's trace is kept and written: status failed, or completed
    when it came from a receiver of the final event (the recorder had that event already)."""
    from rulechef_trace import finalized, patch_decided

    exc = exc_type(3) if exc_type is SystemExit else exc_type()
    llm = ScriptedLLM(patch=[exc]) if raised_by == "llm" else rich_llm()
    chef = make_chef(tmp_path, llm)
    signal = finalized if raised_by == "finalized receiver" else patch_decided

    def stop(sender: Any, **event: Any) -> None:
        raise exc

    with pytest.raises(exc_type) as caught, record_trace(chef) as recorder:
        if raised_by != "llm":
            signal.connect(stop, sender=chef, weak=False)
        try:
            chef.learn_rules(max_refinement_iterations=2)
        finally:
            signal.disconnect(stop)
    assert caught.value is exc
    trace = load_trace(trace_path(tmp_path, "reviews"))
    assert trace == recorder.last and validate(trace) == []
    if raised_by == "finalized receiver":
        assert trace.status == "completed"
    else:
        assert trace.status == "failed" and trace.run["error"]["type"] == exc_type.__name__


# --- one write for the history file and the latest-run file -------------------------------


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each fsync as "file" or "folder"."""
    import os
    import stat

    kinds: list[str] = []
    real = os.fsync

    def counted(fd: int) -> None:
        kinds.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr("rulechef_trace.recorder.os.fsync", counted)
    return kinds


def test_a_learn_run_is_written_once_and_fsynced_once(tmp_path, monkeypatch):
    """History and latest-run file: one inode (a hard link), one file fsync, one per folder."""
    chef = make_chef(tmp_path, ScriptedLLM())
    kinds = _fsyncs(monkeypatch)
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    latest = trace_path(tmp_path, "reviews")
    (kept,) = history_dir(tmp_path, "reviews").glob("*.trace.json")
    assert sorted(kinds) == ["file", "folder", "folder"]
    assert latest.stat().st_ino == kept.stat().st_ino and latest.stat().st_nlink == 2
    assert recorder.paths == [kept, latest] and recorder.write_errors == 0


def test_folders_that_do_not_exist_yet_are_made_and_linked_not_copied(tmp_path):
    """A new storage folder and a new history folder: made on demand, still one inode."""
    import rulechef_trace.recorder as recorder_module

    store = tmp_path / "new" / "store"
    kept, latest = store / "d.traces" / "x.trace.json", store / "d.trace.json"
    written, failed = recorder_module.write_once([kept, latest], b"{}")
    assert failed == [] and written == [kept, latest]
    assert kept.stat().st_ino == latest.stat().st_ino and latest.read_bytes() == b"{}"
    recorder_module.write_atomic(tmp_path / "other" / "deep" / "y.json", b"[]")
    assert (tmp_path / "other" / "deep" / "y.json").read_bytes() == b"[]"
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_next_run_replaces_the_latest_file_and_leaves_the_kept_one(tmp_path):
    """Replacing <dataset>.trace.json by rename unlinks only that name: history stays intact."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.learn_rules(max_refinement_iterations=1)
    first, second = recorder.traces
    kept = {load_trace(p).run["id"] for p in history_dir(tmp_path, "reviews").glob("*.json")}
    assert kept == {first.run["id"], second.run["id"]}
    assert load_trace(trace_path(tmp_path, "reviews")) == second
    assert not list(tmp_path.rglob("*.tmp"))


def test_without_hard_links_each_name_gets_its_own_copy(tmp_path, monkeypatch):
    """EXDEV or EPERM from os.link (another file system, FAT): an atomic copy, no error."""
    import errno
    import os

    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("rulechef_trace.recorder.os.link", no_links)
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    latest = trace_path(tmp_path, "reviews")
    (kept,) = history_dir(tmp_path, "reviews").glob("*.trace.json")
    assert os.stat(latest).st_ino != os.stat(kept).st_ino
    assert load_trace(kept) == load_trace(latest) == recorder.last
    assert recorder.write_errors == 0


def test_a_symlink_planted_at_the_history_name_is_not_followed(tmp_path, monkeypatch):
    """link() never follows its target; the copy that replaces the symlink leaves the victim."""
    import rulechef_trace.recorder as recorder_module

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "store" / "d.traces" / "x.trace.json"
    target.parent.mkdir(parents=True)
    target.symlink_to(victim)
    _, failed = recorder_module.write_once([target, tmp_path / "store" / "d.json"], b"{}")
    assert failed == [] and victim.read_text() == "keep me"
    assert not target.is_symlink() and target.read_bytes() == b"{}"
