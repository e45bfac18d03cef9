"""TraceRecorder: files, history, counts, privacy and concurrent runs."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
import rulechef.engine
import rulechef.learner
import rulechef.ranking
from rulechef import evaluation

from rulechef_trace import TraceRecorder, load_trace, record_trace, replay, validate
from rulechef_trace.trace import history_dir, trace_path
from tests.conftest import story
from tests.scripted import BREAK, DATA, FIX_ALL, FIX_POS, ScriptedLLM, audit_merge, make_chef

RICH = {"patch": [BREAK, FIX_POS, FIX_ALL]}


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
