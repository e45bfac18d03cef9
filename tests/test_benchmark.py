"""The overhead benchmark: a smoke run of its workers, and its verdict logic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.overhead.report import growing_parts, size_verdicts, summarise_size
from benchmarks.overhead.runner import WorkerProcess, workers
from benchmarks.overhead.scenarios import many_classes, write_jsonl


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Workers A, D and P, and a request for a tiny learning run."""
    root = tmp_path_factory.mktemp("bench")
    data = root / "tiny.jsonl"
    write_jsonl(many_classes(3, 8), data)
    with workers(root, ("A", "D", "P")) as started:
        yield started, {"data": str(data), "iterations": 1}


def test_configuration_a_never_imports_the_package(
    pool: tuple[dict[str, WorkerProcess], dict[str, Any]],
) -> None:
    """Worker A runs the stand-in from its files with no rulechef_trace module loaded."""
    started, request = pool
    run = started["A"].request(op="run", **request)
    assert run["checks"]["trace_modules"] == 0
    assert run["fingerprint"]["llm_calls"]["total"] > 0


def test_direct_accounting_sees_every_event_and_changes_no_work(
    pool: tuple[dict[str, WorkerProcess], dict[str, Any]],
) -> None:
    """Every event comes from an accounted package frame; the run learns what A learns."""
    started, request = pool
    hooks = started["D"].request(op="discover")["hooks"]
    assert "rulechef.pipeline:LearningPipeline.run" in hooks
    installed = started["P"].request(op="install", hooks=hooks)
    assert installed["calibration"]["per_hook_us"] > 0
    checked = started["P"].request(op="account", verify=True, **request)
    assert checked["events_outside"] == 0 and checked["events_inside"] == checked["events"] > 0
    assert checked["hooks_wrapped"] == checked["hooks_known"] == len(hooks)
    assert checked["own_cpu_s"] > 0 and 0 < checked["own_s"] < checked["host_s"]
    assert checked["calls"]["LearningPipeline.run"] == 1
    assert checked["files"] == 2 and checked["bytes"] > 0
    plain = started["A"].request(op="run", **request)
    assert checked["fingerprint"] == plain["fingerprint"]
    after = started["P"].request(op="ready")
    assert after["changed"] == [] and after["installed"] is False


def own(hooks: dict[str, float], parts: dict[str, float]) -> dict[str, Any]:
    """The ``own`` figures of a size with the given frame and part times (ms)."""
    return {"own": {"hooks": hooks, "parts": parts}}


def test_a_part_that_grows_with_the_data_is_named() -> None:
    """Growth beyond twice the smallest size plus 0.05 ms is flagged; noise is not."""
    small = own({"LearningPipeline.run": 0.50}, {"RuleLearner._get_classes": 0.02})
    large = own({"LearningPipeline.run": 0.54}, {"RuleLearner._get_classes": 0.20})
    assert growing_parts(small, large) == [("RuleLearner._get_classes", 0.02, 0.20)]
    assert growing_parts(small, small) == []


def test_the_own_time_verdict_ignores_the_wall_clock(tmp_path: Path) -> None:
    """Slow wall clocks (the runs', the package's) fail nothing; own CPU over 2 ms does."""

    def run(config: str, wall: float) -> dict[str, Any]:
        checks = {"config": config, "trace_modules": 0, "changed": [], "installed": False}
        checks["run_is_original"] = True
        fp = {"rules": 3, "f1": 0.9, "llm_calls": {"total": 4}}
        return {
            "wall": wall,
            "cpu": wall,
            "fingerprint": fp,
            "checks": checks,
            "coordinator_patched": [],
            "evaluations": {"total": 5},
        }

    def accounted(own_ms: float) -> dict[str, Any]:
        fp = {"rules": 3, "f1": 0.9, "llm_calls": {"total": 4}}
        return {
            "own_s": 3 * own_ms / 1000,  # the wall clock counts waits: never judged
            "own_cpu_s": own_ms / 1000,
            "by_label": {"LearningPipeline.run": 3 * own_ms / 1000},
            "cpu_by_label": {"LearningPipeline.run": own_ms / 1000},
            "calls": {"LearningPipeline.run": 1},
            "parts": [],
            "host_s": 0.3,
            "gc_package_s": 0.0,
            "crossings": 10,
            "events": 10,
            "rules": 3,
            "files": 2,
            "bytes": 2000,
            "largest_file": 1000,
            "hooks_wrapped": 14,
            "hooks_known": 14,
            "events_outside": 0,
            "events_inside": 10,
            "fingerprint": fp,
        }

    def size(own_ms: float) -> dict[str, Any]:
        configs = {"A": 1.0, "A2": 1.0, "B": 1.0, "C": 1.5, "D": 1.5}
        memory = {"peak_bytes": 1, "package_peak_bytes": 1, "package_retained_bytes": 1}
        return {
            "size": 200,
            "reps": 1,
            "warmup": {c: run(c, w) for c, w in configs.items()},
            "rounds": {c: [run(c, w)] for c, w in configs.items()},
            "counted": {c: run(c, w) for c, w in configs.items()},
            "memory": {"B": memory, "C": memory, "C_attribute": memory},
            "verify": accounted(own_ms),
            "accounted": [accounted(own_ms)],
        }

    calibration = {"per_hook_cpu_us": 0.5, "per_part_cpu_us": 0.5}
    fast = {r["target"]: r["passed"] for r in size_verdicts(summarise_size(size(1.5), calibration))}
    slow = {r["target"]: r["passed"] for r in size_verdicts(summarise_size(size(2.5), calibration))}
    assert all(fast.values())
    assert slow["package's own time per run"] is False
    assert [t for t, ok in slow.items() if not ok] == ["package's own time per run"]
