"""Reliability promises (docs/reliability.md): each test proves one of them."""

from __future__ import annotations

import errno
import gc
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
from pathlib import Path
from typing import Any

import orjson
import pytest
from rulechef.coordinator import CoordinationDecision
from rulechef.engine import RuleChef
from rulechef.learner import RuleLearner

from rulechef_trace import (
    ALL_SIGNALS,
    TraceRecorder,
    load_trace,
    patch_decided,
    record_trace,
    replay,
    run_started,
    validate,
)
from rulechef_trace._capture import install as capture
from rulechef_trace._capture import state as capture_state
from rulechef_trace.recorder import write_atomic
from tests.conftest import story
from tests.scripted import (
    BREAK,
    FIX_ALL,
    FIX_POS,
    ScriptedLLM,
    StopAfterCoordinator,
    audit_merge,
    last_trace,
    make_chef,
)
from tests.test_zero_overhead_and_hooks import assert_rulechef_as_shipped

REPO = Path(__file__).resolve().parent.parent


def rich_llm() -> ScriptedLLM:
    merge = audit_merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely")
    return ScriptedLLM(patch=[BREAK, FIX_POS, FIX_ALL], audit=[merge])


def assert_complete(trace: Any, chef: Any) -> None:
    assert validate(trace) == []
    assert [e["seq"] for e in trace.events] == list(range(1, len(trace.events) + 1))
    assert sorted(replay(trace)) == sorted(r.id for r in chef.dataset.rules)
    assert story(trace)[0] == "run_started" and story(trace)[-1] == "finalized"


# --- 1. host safety ---------------------------------------------------------


class Raising(StopAfterCoordinator):
    """A coordinator that fails inside rulechef's refinement loop."""

    raised: BaseException | None = None

    def guide_refinement(
        self, eval_result: Any, iteration: int, max_iterations: int
    ) -> tuple[str, bool]:
        self.raised = ValueError("the coordinator's own bug")
        raise self.raised


def raise_site(exc: BaseException) -> tuple[str, int, str]:
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return last.filename, last.lineno or 0, last.name


def test_rulechef_exception_propagates_unchanged_and_the_trace_says_failed(tmp_path):
    plain_coordinator = Raising()
    with pytest.raises(ValueError) as plain:
        make_chef(tmp_path / "a", ScriptedLLM(), plain_coordinator).learn_rules()
    coordinator = Raising()
    chef = make_chef(tmp_path / "b", ScriptedLLM(), coordinator)
    with record_trace(chef) as recorder, pytest.raises(ValueError) as traced:
        chef.learn_rules()
    assert traced.value is coordinator.raised
    assert type(traced.value) is type(plain.value) and str(traced.value) == str(plain.value)
    assert raise_site(traced.value) == raise_site(plain.value)
    written = load_trace(tmp_path / "b" / "reviews.trace.json")
    assert written == recorder.last
    assert written.status == "failed"
    assert written.run["error"] == {"type": "ValueError", "message": "the coordinator's own bug"}
    assert_complete(written, chef)


def test_keyboard_interrupt_in_a_run_is_recorded_and_reraised(tmp_path):
    llm = ScriptedLLM(patch=[KeyboardInterrupt()])
    chef = make_chef(tmp_path, llm)
    with record_trace(chef) as recorder, pytest.raises(KeyboardInterrupt):
        chef.learn_rules(max_refinement_iterations=2)
    assert last_trace(recorder).status == "failed"
    assert last_trace(recorder).run["error"]["type"] == "KeyboardInterrupt"


# --- 2. crash safety --------------------------------------------------------

KILLED_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from tests.scripted import BREAK, FIX_POS, ScriptedLLM, make_chef
    from rulechef_trace import record_trace

    def hang(prompt):
        print("waiting", flush=True)
        sys.stdin.readline()  # blocks until the parent kills us
        return BREAK

    chef = make_chef({folder!r}, ScriptedLLM(patch=[FIX_POS, hang]))
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=3)
    """
)


def test_a_killed_process_leaves_a_readable_incomplete_stream(tmp_path):
    script = KILLED_CHILD.format(repo=str(REPO), folder=str(tmp_path))
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    # A watchdog: if the child never reaches the patch call, kill it and fail.
    watchdog = threading.Timer(60, child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        reached = any(line.strip() == "waiting" for line in _lines_until(child.stdout, "waiting"))
        assert reached, f"child never reached the patch call: {errors.read_text()}"
        child.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    partial = load_trace(tmp_path / "reviews.trace.jsonl")
    assert partial.status == "incomplete"
    assert story(partial) == [
        "run_started",
        "synthesized",
        "iteration_evaluated",
        "guided",
        "patch_decided",
        "iteration_evaluated",
        "guided",
    ]
    assert sorted(partial.final_rules) == sorted(replay(partial))
    assert len(partial.final_rules) == 3
    assert not (tmp_path / "reviews.trace.json").exists()


# --- 3. atomic, collision-free writes ----------------------------------------


def _lines_until(stream: Any, marker: str) -> Any:
    for line in stream:
        yield line
        if line.strip() == marker:
            return


WRITER_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, make_chef
    from rulechef_trace import record_trace

    chef = make_chef({folder!r}, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    print("ready", flush=True)
    sys.stdin.readline()  # both children start writing together
    with record_trace(chef) as recorder:
        for _ in range(3):
            chef.learn_rules(max_refinement_iterations=3)
    print(" ".join(t.run["id"] for t in recorder.traces))
    """
)


def test_two_processes_writing_the_same_dataset_lose_no_trace(tmp_path):
    script = WRITER_CHILD.format(repo=str(REPO), folder=str(tmp_path))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
    run_ids = set()
    for child in children:
        assert child.stdout is not None
        out = child.stdout.read()
        child.wait(timeout=120)
        assert child.returncode == 0
        run_ids.update(out.strip().splitlines()[-1].split())
    kept = list((tmp_path / "reviews.traces").glob("*.trace.json"))
    assert len(run_ids) == 6
    assert {load_trace(p).run["id"] for p in kept} == run_ids
    assert load_trace(tmp_path / "reviews.trace.json").run["id"] in run_ids
    assert not list(tmp_path.rglob("*.tmp"))


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    target = tmp_path / "x.trace.json"
    bodies = [orjson.dumps({"writer": i, "pad": "x" * 200_000}) for i in range(4)]
    write_atomic(target, bodies[0])
    stop = threading.Event()
    torn: list[int] = []

    def read() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in bodies:
                torn.append(len(data))

    def write(body: bytes) -> None:
        for _ in range(25):
            write_atomic(target, body)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert torn == []
    assert [p.name for p in tmp_path.iterdir()] == ["x.trace.json"]


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("os.fsync", OSError(errno.ENOSPC, "No space left on device")),
        ("_create_temp", PermissionError(errno.EACCES, "Permission denied")),
    ],
)
def test_unwritable_storage_warns_once_and_keeps_the_trace(
    tmp_path, monkeypatch, caplog, where, error
):
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(f"rulechef_trace.recorder.{where}", fail)
    expected = make_chef(tmp_path / "a", rich_llm(), "agentic").learn_rules()
    chef = make_chef(tmp_path / "b", rich_llm(), "agentic")
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"), record_trace(chef) as recorder:
        result = chef.learn_rules()
    monkeypatch.undo()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and error.strerror in warnings[0].getMessage()
    assert recorder.write_errors == 1 and recorder.paths == []
    assert_complete(recorder.last, chef)
    assert [r.name for r in result[0]] == [r.name for r in expected[0]]
    assert result[1].micro_f1 == expected[1].micro_f1
    assert not list((tmp_path / "b").rglob("*.trace.json"))


# --- 4. instrumentation lifecycle -------------------------------------------


def test_a_thousand_attach_detach_cycles_leave_rulechef_as_shipped(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    for _ in range(1000):
        recorder = TraceRecorder(chef, write=False).attach()
        recorder.attach()  # idempotent
        recorder.detach()
        recorder.detach()
    assert_rulechef_as_shipped(chef)
    assert all(not s.receivers for s in ALL_SIGNALS)


def test_recorders_on_two_chefs_and_two_on_one_chef_get_each_event_once(tmp_path):
    a = make_chef(tmp_path / "a", rich_llm(), "agentic", name="a")
    b = make_chef(tmp_path / "b", rich_llm(), "agentic", name="b")
    events: dict[str, list[tuple[str, int]]] = {"a1": [], "a2": [], "b": []}

    def collect(key: str) -> Any:
        def on(sender: Any, **event: Any) -> None:
            events[key].append((event["run_id"], event["seq"]))

        return on

    receivers = {key: collect(key) for key in events}
    for sig in ALL_SIGNALS:
        sig.connect(receivers["a1"], sender=a)
        sig.connect(receivers["a2"], sender=a)
        sig.connect(receivers["b"], sender=b)
    with record_trace(a, write=False) as ra, record_trace(b, write=False) as rb:
        with record_trace(a, write=False) as ra_inner:
            a.learn_rules()
        b.learn_rules()
    for key in events:
        assert len(events[key]) == len(set(events[key])), f"{key} got an event twice"
    assert events["a1"] == events["a2"]
    assert {run for run, _ in events["a1"]} == {last_trace(ra).run["id"]}
    assert {run for run, _ in events["b"]} == {last_trace(rb).run["id"]}
    assert ra.last == ra_inner.last and len(ra.traces) == 1 and len(rb.traces) == 1
    for sig in ALL_SIGNALS:
        for r in receivers.values():
            sig.disconnect(r)
    del receivers
    gc.collect()
    assert_rulechef_as_shipped(a)


def test_hooks_go_when_the_only_receiver_is_garbage_collected_mid_session(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())

    class Listener:
        def __init__(self) -> None:
            self.seen = 0

        def on_start(self, sender: Any, **event: Any) -> None:
            self.seen += 1

    listener = Listener()
    run_started.connect(listener.on_start)  # weak: a bound method
    chef.learn_rules(max_refinement_iterations=1)
    assert listener.seen == 1 and capture.installed()
    del listener
    gc.collect()
    assert_rulechef_as_shipped(chef)
    chef.learn_rules(max_refinement_iterations=1)
    assert_rulechef_as_shipped(chef)


def test_detaching_mid_run_stops_delivery_and_restores_rulechef(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    recorder = TraceRecorder(chef, write=False).attach()
    seen: list[str] = []

    def detach_on_patch(sender: Any, **event: Any) -> None:
        seen.append(event["outcome"])
        recorder.detach()
        patch_decided.disconnect(detach_on_patch)

    patch_decided.connect(detach_on_patch, sender=chef, weak=False)
    chef.learn_rules(max_refinement_iterations=3)
    assert seen == ["rejected"]
    assert recorder.traces == []
    assert_rulechef_as_shipped(chef)


# --- 5. concurrency ---------------------------------------------------------


def test_eight_chefs_in_eight_threads_each_get_a_complete_trace(tmp_path):
    chefs = [make_chef(tmp_path / str(i), rich_llm(), "agentic", name=f"d{i}") for i in range(8)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def learn(chef: RuleChef) -> None:
        try:
            barrier.wait()
            chef.learn_rules(max_refinement_iterations=4)
            chef.rank_rules(prune=True, verbose=False)
        except BaseException as exc:
            errors.append(exc)

    with TraceRecorder(write=False) as recorder:
        threads = [threading.Thread(target=learn, args=(c,)) for c in chefs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(recorder.traces) == 16
    for chef in chefs:
        learn_trace, rank_trace = (
            t for t in recorder.traces if t.run["dataset"] == chef.dataset.name
        )
        assert learn_trace.run["kind"] == "learn" and rank_trace.run["kind"] == "rank_rules"
        assert_complete(rank_trace, chef)
        assert validate(learn_trace) == []
        assert [e["seq"] for e in learn_trace.events] == list(range(1, len(learn_trace.events) + 1))
        assert sorted(rank_trace.events[0]["rules"]) == sorted(learn_trace.final_rules)


class TriggerOnce(StopAfterCoordinator):
    """Asks rulechef's background loop to learn once, then tells the test."""

    def __init__(self) -> None:
        super().__init__()
        self.learned = threading.Event()
        self.thread_name = ""

    def should_trigger_learning(self, buffer: Any, current_rules: Any) -> Any:
        ready = not self.learned.is_set() and not current_rules
        return CoordinationDecision(
            should_learn=ready, strategy="balanced", reasoning="ready", max_iterations=3
        )

    def on_learning_complete(self, old_rules: Any, new_rules: Any, metrics: Any) -> None:
        self.thread_name = threading.current_thread().name
        self.learned.set()


def test_a_run_started_by_rulechefs_background_auto_learn_thread_is_traced(tmp_path):
    coordinator = TriggerOnce()
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]), coordinator)
    observed = ScriptedLLM()
    with record_trace(chef, write=False) as recorder:
        chef.start_observing(
            observed,
            auto_learn=True,
            check_interval=3600,
            extract_input=lambda kwargs: {"text": "x"},
            extract_output=lambda response: {"label": "pos"},
        )
        try:
            assert coordinator.learned.wait(timeout=60)
        finally:
            chef.stop_observing()
    assert coordinator.thread_name != threading.current_thread().name
    (trace,) = recorder.traces
    assert_complete(trace, chef)
    assert [p["outcome"] for p in trace.events_of("patch_decided")] == ["rejected", "accepted"]


# --- 6. version drift -------------------------------------------------------


def test_missing_or_changed_rulechef_methods_warn_once_and_the_rest_is_traced(
    tmp_path, monkeypatch, caplog
):
    def changed(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(RuleLearner, "_log_patch_decision", changed)  # new signature
    monkeypatch.delattr(RuleChef, "rank_rules")  # gone
    monkeypatch.setattr(capture_state, "_warned", set())
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        with record_trace(chef, write=False) as first:
            chef.learn_rules(max_refinement_iterations=3)
        with record_trace(chef, write=False) as second:
            chef.learn_rules(max_refinement_iterations=3)
    warnings = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
    assert len(warnings) == 1
    assert "RuleLearner._log_patch_decision" in warnings[0]
    assert "RuleChef.rank_rules" in warnings[0]
    assert "patch_decided" in warnings[0] and "rank_rules(prune=True) traces" in warnings[0]
    for recorder in (first, second):
        trace = last_trace(recorder)
        assert validate(trace) == []
        assert "synthesized" in story(trace) and "refined" in story(trace)
        assert [p["outcome"] for p in trace.events_of("patch_decided")] == []
    assert RuleLearner.__dict__["_log_patch_decision"] is changed


def test_a_recorder_attached_mid_run_ignores_that_run_quietly(tmp_path, caplog):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    late = TraceRecorder(chef, write=False)

    def attach_late(sender: Any, **event: Any) -> None:
        late.attach()

    with (
        caplog.at_level(logging.WARNING, logger="rulechef_trace"),
        record_trace(chef, write=False, strict=True) as early,
        patch_decided.connected_to(attach_late, sender=chef),
    ):
        chef.learn_rules(max_refinement_iterations=3)
        chef.learn_rules(max_refinement_iterations=3)
    late.detach()
    assert len(early.traces) == 2 and len(late.traces) == 1
    assert late.traces[0] == early.traces[1]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_muted_signal_delivers_nothing(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]))
    with record_trace(chef, write=False) as recorder, patch_decided.muted():
        chef.learn_rules(max_refinement_iterations=1)
    assert last_trace(recorder).events_of("patch_decided") == []
    assert last_trace(recorder).events[-1]["seq"] == len(last_trace(recorder).events) + 1


def test_a_patch_laid_over_a_hook_survives_uninstall_and_is_never_nested(tmp_path, caplog):
    from rulechef.learner import RuleLearner

    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    recorder = TraceRecorder(chef, write=False).attach()
    ours = RuleLearner.__dict__["_log_patch_decision"]
    calls: list[int] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return ours(self, *args, **kwargs)

    # another library patches over us (assigning a method is the point here)
    RuleLearner._log_patch_decision = spy  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="rulechef_trace"):
        recorder.detach()
    assert RuleLearner.__dict__["_log_patch_decision"] is spy
    assert any("patched again" in r.getMessage() for r in caplog.records)
    # that library undoes its patch: a stale wrapper
    RuleLearner._log_patch_decision = ours  # type: ignore[method-assign]
    with record_trace(chef, write=False) as again:
        chef.learn_rules(max_refinement_iterations=3)
    assert [p["outcome"] for p in last_trace(again).events_of("patch_decided")] == [
        "rejected",
        "accepted",
    ]
    assert RuleLearner.__dict__["_log_patch_decision"] is ours.__wrapped__
    assert not hasattr(RuleLearner.__dict__["_log_patch_decision"], "__wrapped__")


def test_a_coordinator_method_that_cannot_be_wrapped_leaves_no_wrapper(tmp_path):
    import operator

    coordinator = StopAfterCoordinator()
    # a callable with no signature to inspect, where a method is expected: the point here
    coordinator.critique_rules = operator.itemgetter(0)  # type: ignore[method-assign, assignment]
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK]), coordinator)
    with record_trace(chef, write=False) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
    assert last_trace(recorder).run["stats"]["hook_errors"] == 1
    assert "guide_refinement" not in vars(coordinator) and "audit_rules" not in vars(coordinator)


def test_chefs_sharing_one_coordinator_in_threads_each_get_complete_traces(tmp_path):
    coordinator = StopAfterCoordinator()
    chefs = [
        make_chef(tmp_path / str(i), ScriptedLLM(patch=[BREAK, FIX_ALL]), coordinator, name=f"s{i}")
        for i in range(4)
    ]
    barrier = threading.Barrier(4)

    def learn(chef: RuleChef) -> None:
        barrier.wait()
        chef.learn_rules(max_refinement_iterations=3)

    with TraceRecorder(write=False) as recorder:
        threads = [threading.Thread(target=learn, args=(c,)) for c in chefs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(recorder.traces) == 4
    for chef in chefs:
        (trace,) = (t for t in recorder.traces if t.run["dataset"] == chef.dataset.name)
        assert_complete(trace, chef)
        assert len(trace.events_of("guided")) == 2
    assert not {"guide_refinement", "audit_rules", "critique_rules"} & set(vars(coordinator))


def test_a_foreign_wrapper_made_with_functools_wraps_never_doubles_events(tmp_path):
    import functools

    from rulechef.learner import RuleLearner

    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_ALL]))
    first = TraceRecorder(chef, write=False).attach()
    ours = RuleLearner.__dict__["synthesize_patch_ruleset"]

    @functools.wraps(ours)  # copies our wrapper's attributes, as such libraries do
    def foreign(self: Any, *args: Any, **kwargs: Any) -> Any:
        return ours(self, *args, **kwargs)

    # a foreign library patches over our wrapper: the point of the test
    RuleLearner.synthesize_patch_ruleset = foreign  # type: ignore[method-assign]
    try:
        first.detach()
        assert RuleLearner.__dict__["synthesize_patch_ruleset"] is foreign
        with record_trace(chef, write=False) as again:
            chef.learn_rules(max_refinement_iterations=3)
        outcomes = [p["outcome"] for p in last_trace(again).events_of("patch_decided")]
        assert outcomes == ["rejected", "accepted"]
        assert RuleLearner.__dict__["synthesize_patch_ruleset"] is foreign
    finally:
        # put back our wrapper as the foreign library found it
        RuleLearner.synthesize_patch_ruleset = ours.__wrapped__  # type: ignore[method-assign]


def test_an_unhashable_weak_receiver_takes_the_hooks_with_it_when_collected():
    from dataclasses import dataclass

    @dataclass
    class Listener:  # eq=True makes instances unhashable
        seen: int = 0

        def on_start(self, sender: Any, **event: Any) -> None:
            self.seen += 1

    listener = Listener()
    run_started.connect(listener.on_start)
    assert capture.installed()
    del listener
    gc.collect()
    assert not capture.installed()
