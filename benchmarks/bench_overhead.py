"""Measure what rulechef-trace costs a real, offline rulechef learning run.

Four configurations run the same ``learn_rules()`` workload (rulechef 0.2.x
driven by the deterministic :class:`StandInLLM`, so the run is CPU-bound and
reproducible), each in its own long-lived worker subprocess:

* **A** plain rulechef; ``rulechef_trace`` is never imported in that process;
* **B** ``import rulechef_trace``, nobody listening (no wrapper may be installed);
* **C** ``with record_trace(chef, storage_path=...)``, writing the trace files;
* **D** a no-op receiver connected (``weak=False``) to every signal.

The parent asks A, B, C, D for one repetition each, in that order, round after
round, so slow phases of a shared machine hit every configuration alike. Each
repetition builds a fresh chef in a fresh storage folder; only
``learn_rules()`` (with rulechef's prints sent to a ``StringIO``, identically
everywhere) is timed. Counting dataset evaluations, tracemalloc and the trace
I/O micro-benchmark run in separate, un-timed repetitions.

Usage (from the repository root)::

    python benchmarks/bench_overhead.py            # full run
    python benchmarks/bench_overhead.py --quick    # smoke run, < 30 s
    python benchmarks/bench_overhead.py --json > overhead.json
    python benchmarks/bench_overhead.py --from-json overhead.json
    python benchmarks/bench_overhead.py --control --paired 10  # noise checks
    python benchmarks/bench_overhead.py \\
        --data ../shared/data/banking77_sample.jsonl --label-field gold_label

Noise checks: ``--control`` adds a second plain worker (A2) to every round, so
A2/A shows how far two identical processes differ on this machine;
``--paired N`` alternates N plain and recorded runs inside worker C, which
isolates the recorder's cost from differences between processes.
docs/performance.md explains the method and a measured run.

The exit status is 0 when every target passes, 1 when one fails. With fewer
than 5 rounds (``--quick``) the run-time ratios are shown but not judged.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import IO, Any

CONFIGS: tuple[str, ...] = ("A", "B", "C", "D")
CONTROL = "A2"  # --control: a second plain worker, to show the A/A noise floor
PLAIN: tuple[str, ...] = ("A", CONTROL)
MODES: dict[str, str] = {"A": "plain", CONTROL: "plain", "B": "plain", "C": "record", "D": "noop"}
CONFIG_NAMES: dict[str, str] = {
    "A": "plain rulechef (rulechef_trace not imported)",
    "B": "rulechef_trace imported, nobody listening",
    "C": "record_trace(chef) writing the trace file",
    "D": "no-op receiver on every signal",
    CONTROL: "plain rulechef again (control, A/A)",
}
DEFAULT_SIZES: tuple[int, ...] = (200, 2000)
DEFAULT_REPS: tuple[int, ...] = (20, 10)
QUICK_SIZES: tuple[int, ...] = (200,)
QUICK_REPS: tuple[int, ...] = (2,)
DEFAULT_ITERATIONS = 3
DATASET_NAME = "bench"
TASK_DESCRIPTION = "Classify each message into one intent label"
SYNTHETIC_EVENTS = 100
IO_REPS = 200
QUICK_IO_REPS = 50

# The limits the package promises (docs/performance.md).
LIMIT_IMPORT = 1.01
LIMIT_LISTENING_SMALL = 1.05
LIMIT_LISTENING_LARGE = 1.02
LARGE_SIZE = 1000  # sizes from here on get the 1.02 limit
LIMIT_WRITE_MS = 2.0
LIMIT_BYTES_PER_EVENT = 1024
LIMIT_MEMORY_GROWTH = 1.5  # largest / smallest recorder memory over the sizes
MEMORY_FLOOR = 64 * 1024  # smallest value a memory growth ratio divides by
MIN_ROUNDS_FOR_VERDICT = 5  # fewer rounds (--quick): timing ratios are shown, not judged

# Deterministic variants of a labelled text: neutral openings and closings that
# appear under every label, so they never become rule keywords.
PREFIXES: tuple[str, ...] = (
    "",
    "Hi, ",
    "Hello, ",
    "Quick question: ",
    "Sorry to bother you, ",
    "Good morning. ",
    "Urgent: ",
)
SUFFIXES: tuple[str, ...] = ("", " Thanks.", " Please help.", " Cheers!", " Any ideas?")

Example = tuple[str, str]


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def packaged_data_file() -> Path:
    """Locate ``rulechef_trace/data/intents.jsonl`` without importing the package.

    Returns:
        The path of the packaged intents data set.
    """
    return package_dir() / "data" / "intents.jsonl"


def package_dir() -> Path:
    """The folder of the ``rulechef_trace`` package, found without importing it.

    Returns:
        The package folder.

    Raises:
        RuntimeError: When ``rulechef_trace`` is not installed.
    """
    spec = importlib.util.find_spec("rulechef_trace")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rulechef_trace is not importable; run from the repository root")
    return Path(next(iter(spec.submodule_search_locations)))


def load_labelled(path: Path, text_field: str, label_field: str) -> list[Example]:
    """Read ``(text, label)`` pairs from a JSONL file.

    Args:
        path: The JSONL file.
        text_field: Field holding the text.
        label_field: Field holding the label.

    Returns:
        The examples in file order; lines without both fields are skipped.

    Raises:
        ValueError: When no line has both fields.
    """
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            text, label = record.get(text_field), record.get(label_field)
            if isinstance(text, str) and isinstance(label, str) and text and label:
                examples.append((text, label))
    if not examples:
        raise ValueError(f"{path}: no line has string fields {text_field!r} and {label_field!r}")
    return examples


def scale_examples(examples: Sequence[Example], size: int) -> list[Example]:
    """Make exactly ``size`` examples from ``examples``, deterministically.

    Round 0 is the data itself; round k wraps every text in the k-th
    prefix/suffix combination. Labels never change.

    Args:
        examples: The base examples.
        size: How many examples to return.

    Returns:
        ``size`` examples with distinct texts (while combinations last).
    """
    out: list[Example] = []
    round_ = 0
    while len(out) < size:
        prefix = PREFIXES[round_ % len(PREFIXES)]
        suffix = SUFFIXES[(round_ // len(PREFIXES)) % len(SUFFIXES)]
        for text, label in examples[: size - len(out)]:
            out.append((f"{prefix}{text}{suffix}", label))
        round_ += 1
    return out


def write_jsonl(examples: Sequence[Example], path: Path) -> None:
    """Write ``(text, label)`` pairs as ``{"text", "label"}`` JSONL lines."""
    with path.open("w", encoding="utf-8") as handle:
        for text, label in examples:
            handle.write(json.dumps({"text": text, "label": label}) + "\n")


# ---------------------------------------------------------------------------
# Worker side: shared by every configuration
# ---------------------------------------------------------------------------


def load_standin() -> ModuleType:
    """Load ``rulechef_trace/standin.py`` as a standalone module.

    Importing ``rulechef_trace.standin`` would import the package (and its
    instrumentation) too; configuration A must never do that. standin.py
    depends on the standard library only, so every worker loads it this way.

    Returns:
        The module, registered as ``_bench_standin``.
    """
    spec = importlib.util.spec_from_file_location("_bench_standin", package_dir() / "standin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def import_rulechef() -> tuple[ModuleType, ...]:
    """Import the rulechef modules the workload and the checks use.

    Returns:
        rulechef.pipeline, .learner, .engine, .coordinator, .ranking, .evaluation.
    """
    import rulechef.coordinator
    import rulechef.engine
    import rulechef.evaluation
    import rulechef.learner
    import rulechef.pipeline
    import rulechef.ranking

    return (
        rulechef.pipeline,
        rulechef.learner,
        rulechef.engine,
        rulechef.coordinator,
        rulechef.ranking,
        rulechef.evaluation,
    )


def class_snapshot(modules: Sequence[ModuleType]) -> dict[str, Any]:
    """Every attribute of every class defined in ``modules``, by identity.

    Args:
        modules: rulechef modules.

    Returns:
        ``{"module:Class.attr": object}``.
    """
    snapshot: dict[str, Any] = {}
    for module in modules:
        for cls_name, cls in vars(module).items():
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                for attr, value in vars(cls).items():
                    snapshot[f"{module.__name__}:{cls_name}.{attr}"] = value
    return snapshot


def changed_attributes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names whose object is not the very same one in both snapshots."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k, before) is not after.get(k, after))


def trace_modules_loaded() -> list[str]:
    """Names of loaded ``rulechef_trace`` modules (empty in configuration A)."""
    return sorted(
        m for m in sys.modules if m == "rulechef_trace" or m.startswith("rulechef_trace.")
    )


def build_chef(standin: ModuleType, examples: Sequence[Example], root: Path) -> tuple[Any, list]:
    """A fresh RuleChef with a StandInLLM and an AgenticCoordinator, examples buffered.

    Args:
        standin: The loaded standin module.
        examples: Labelled examples to add.
        root: A fresh, empty storage folder.

    Returns:
        The chef and its two stand-in clients (learner, coordinator).
    """
    from rulechef import Task, TaskType
    from rulechef.coordinator import AgenticCoordinator
    from rulechef.engine import RuleChef

    llm, coordinator_llm = standin.StandInLLM(), standin.StandInLLM()
    coordinator = AgenticCoordinator(
        coordinator_llm, prune_after_learn=True, enable_critic=True, audit_interval=2
    )
    task = Task(
        name="Bench intents",
        type=TaskType.CLASSIFICATION,
        input_schema={"text": "str"},
        output_schema={"label": "str"},
        description=TASK_DESCRIPTION,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        chef = RuleChef(
            task=task,
            client=llm,
            coordinator=coordinator,
            storage_path=str(root),
            dataset_name=DATASET_NAME,
        )
        for text, label in examples:
            chef.add_example({"text": text}, {"label": label})
    return chef, [llm, coordinator_llm]


def llm_calls(llms: Sequence[Any]) -> dict[str, int]:
    """Calls answered by the stand-ins, by prompt kind, plus ``total``."""
    calls: collections.Counter[str] = collections.Counter()
    for llm in llms:
        calls.update(llm.calls)
    return {**dict(sorted(calls.items())), "total": sum(calls.values())}


def fingerprint(result: Any, llms: Sequence[Any]) -> dict[str, Any]:
    """What a run produced, to check every configuration did the same work."""
    rules, evaluation = result if isinstance(result, tuple) else ([], None)
    f1 = round(evaluation.micro_f1, 6) if evaluation is not None else None
    return {"rules": len(rules), "f1": f1, "llm_calls": llm_calls(llms)}


@contextlib.contextmanager
def counting_evaluations(counts: collections.Counter[str]) -> Iterator[None]:
    """Count dataset evaluations by wrapping them where rulechef imported them.

    ``evaluate_dataset`` and ``evaluate_rules_individually`` are replaced in
    rulechef.learner, rulechef.engine and rulechef.ranking for the block.

    Args:
        counts: Incremented per call, by function name.
    """
    import rulechef.engine
    import rulechef.learner
    import rulechef.ranking

    saved: list[tuple[ModuleType, str, Any]] = []
    for module in (rulechef.learner, rulechef.engine, rulechef.ranking):
        for name in ("evaluate_dataset", "evaluate_rules_individually"):
            if hasattr(module, name):
                original = getattr(module, name)
                saved.append((module, name, original))
                setattr(module, name, _counted(original, name, counts))
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _counted(
    original: Callable[..., Any], name: str, counts: collections.Counter[str]
) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return original(*args, **kwargs)

    return counted


def synthesize_trace(trace: dict[str, Any], events: int) -> dict[str, Any]:
    """A copy of ``trace`` with exactly ``events`` events, renumbered 1..n.

    The first (run_started) and last (finalized) events stay; the events in
    between are repeated in order (or cut) to fill the rest.

    Args:
        trace: A recorded trace.
        events: How many events the copy has (at least 2).

    Returns:
        A trace of the same type as ``trace``.
    """
    real = list(trace["events"])
    middle = real[1:-1] or real
    body = [dict(middle[i % len(middle)]) for i in range(events - 2)]
    new_events = [dict(real[0]), *body, dict(real[-1])]
    for seq, event in enumerate(new_events, start=1):
        event["seq"] = seq
    copy = type(trace)(trace)
    copy["events"] = new_events
    return copy


def median_ms(samples: Sequence[float]) -> float:
    """Median of seconds, in milliseconds."""
    return statistics.median(samples) * 1000.0


@dataclass
class Worker:
    """One configuration's long-lived process: answers one request per stdin line.

    Attributes:
        config: ``A``, ``B``, ``C`` or ``D``.
        tmp_root: Folder for the per-repetition storage folders.
    """

    config: str
    tmp_root: Path
    standin: ModuleType = field(init=False)
    modules: tuple[ModuleType, ...] = field(init=False)
    baseline: dict[str, Any] = field(init=False)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    last_trace: Any = None
    trace: Any = None  # the rulechef_trace package (B, C, D)
    noop_connected: bool = False

    def __post_init__(self) -> None:
        self.standin = load_standin()
        self.modules = import_rulechef()
        self.baseline = class_snapshot(self.modules)
        if self.config not in PLAIN:
            import rulechef_trace

            self.trace = rulechef_trace

    # -- requests --------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (``op``: ready, run, count, memory, trace_io)."""
        op = request["op"]
        if op == "ready":
            return self.checks()
        if op == "run":
            return self.timed_run(request)
        if op == "count":
            return self.counted_run(request)
        if op == "memory":
            return self.memory_run(request)
        if op == "trace_io":
            return self.trace_io(request)
        if op == "paired":
            return self.paired(request)
        raise ValueError(f"unknown op {op!r}")

    def checks(self) -> dict[str, Any]:
        """Structural facts: loaded rulechef_trace modules, wrappers, patched classes."""
        facts: dict[str, Any] = {
            "config": self.config,
            "pid": os.getpid(),
            "trace_modules": len(trace_modules_loaded()),
            "changed": changed_attributes(self.baseline, class_snapshot(self.modules)),
        }
        if self.trace is not None:
            from rulechef.pipeline import LearningPipeline

            original_run = self.baseline["rulechef.pipeline:LearningPipeline.run"]
            facts["installed"] = self.trace.instrument.installed()
            facts["run_is_original"] = LearningPipeline.__dict__["run"] is original_run
        return facts

    def load(self, path: str) -> list[Example]:
        """The examples of a data file written by the parent (cached)."""
        if path not in self.examples:
            self.examples[path] = load_labelled(Path(path), "text", "label")
        return self.examples[path]

    # -- the workload -------------------------------------------------------------

    def learn(self, chef: Any, root: Path, iterations: int, mode: str) -> Any:
        """The timed learn_rules() call: ``plain``, under ``record`` or with ``noop`` receivers."""
        if mode == "record":
            with self.trace.record_trace(chef, storage_path=root) as recorder:
                result = chef.learn_rules(max_refinement_iterations=iterations)
            self.last_trace = recorder.last
            return result
        if mode == "noop":
            with self.noop_receivers():
                return chef.learn_rules(max_refinement_iterations=iterations)
        return chef.learn_rules(max_refinement_iterations=iterations)

    @contextlib.contextmanager
    def noop_receivers(self) -> Iterator[None]:
        """Connect a no-op receiver (weak=False) to every signal for the block."""
        signals = self.trace.ALL_SIGNALS
        for signal in signals:
            signal.connect(_noop, weak=False)
        try:
            yield
        finally:
            for signal in signals:
                signal.disconnect(_noop)

    def one_run(
        self,
        request: dict[str, Any],
        around: Callable[[], Any] | None = None,
        mode: str | None = None,
    ) -> dict:
        """Build a fresh chef, run and time learn_rules(), check and clean up.

        Args:
            request: Holds ``data`` (path) and ``iterations``.
            around: Context manager factory entered around the timed section
                (un-timed repetitions only).
            mode: ``plain``, ``record`` or ``noop``; default: this configuration's.

        Returns:
            ``wall`` and ``cpu`` seconds, the fingerprint and the checks.
        """
        examples = self.load(request["data"])
        root = Path(tempfile.mkdtemp(prefix=f"{self.config}-", dir=self.tmp_root))
        chef, llms = build_chef(self.standin, examples, root)
        gc.collect()
        context = around() if around is not None else contextlib.nullcontext()
        sink = io.StringIO()
        with context:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(sink):
                result = self.learn(chef, root, request["iterations"], mode or MODES[self.config])
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        out = {"wall": wall, "cpu": cpu, "fingerprint": fingerprint(result, llms)}
        out["checks"] = self.checks()
        out["coordinator_patched"] = sorted(
            name
            for name in ("guide_refinement", "critique_rules", "audit_rules")
            if name in vars(chef.coordinator)
        )
        out["trace_file_bytes"] = _file_size(root / f"{DATASET_NAME}.trace.json")
        shutil.rmtree(root, ignore_errors=True)
        return out

    def timed_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One timed repetition."""
        out = self.one_run(request)
        if self.last_trace is not None:
            out["events"] = len(self.last_trace["events"])
        return out

    def paired(self, request: dict[str, Any]) -> dict[str, Any]:
        """Alternate plain and recorded runs in this one process (C only).

        Both halves of a pair share the process, so its memory layout, caches
        and luck are the same: the ratio isolates what record_trace costs.
        The order alternates (plain first, then recorded first) against drift.
        """
        plain: list[float] = []
        recorded: list[float] = []
        for number in range(request["pairs"]):
            order = ("plain", "record") if number % 2 == 0 else ("record", "plain")
            for mode in order:
                wall = self.one_run(request, mode=mode)["wall"]
                (plain if mode == "plain" else recorded).append(wall)
        return {"plain": plain, "recorded": recorded}

    def counted_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One un-timed repetition counting dataset evaluations."""
        counts: collections.Counter[str] = collections.Counter()
        out = self.one_run(request, around=lambda: counting_evaluations(counts))
        out["evaluations"] = {**dict(sorted(counts.items())), "total": sum(counts.values())}
        return out

    def memory_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One un-timed repetition under tracemalloc.

        ``mode`` ``peak``: the process's traced peak during learn_rules(),
        above what was traced when it started. ``mode`` ``attribute`` (C
        only): live memory allocated by rulechef_trace's own code, sampled at
        every event and after the run (see :class:`MemoryProbe`).
        """
        probe = MemoryProbe(package_dir()) if request["mode"] == "attribute" else None
        box: dict[str, int] = {}

        @contextlib.contextmanager
        def traced() -> Iterator[None]:
            tracemalloc.start(1)
            if probe is not None:
                probe.connect(self.trace.ALL_SIGNALS)
            start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            try:
                yield
            finally:
                box["peak"] = tracemalloc.get_traced_memory()[1] - start
                if probe is not None:
                    probe.disconnect(self.trace.ALL_SIGNALS)
                    gc.collect()
                    box["retained"] = probe.live()
                tracemalloc.stop()

        out = self.one_run(request, around=traced)
        out["peak_bytes"] = box["peak"]
        if probe is not None:
            out["recorder_peak_bytes"] = max(probe.samples)
            out["recorder_retained_bytes"] = box["retained"]
            out["samples"] = len(probe.samples)
        return out

    def trace_io(self, request: dict[str, Any]) -> dict[str, Any]:
        """Time orjson.dumps and write_atomic on the last recorded trace (C only)."""
        if self.last_trace is None:
            raise RuntimeError("no recorded trace; run a C repetition first")
        real = self.last_trace
        synthetic = synthesize_trace(real, SYNTHETIC_EVENTS)
        folder = Path(tempfile.mkdtemp(prefix="io-", dir=self.tmp_root))
        try:
            return {
                "real": self.measure_io(real, folder, request["reps"]),
                "synthetic": self.measure_io(synthetic, folder, request["reps"]),
            }
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def measure_io(self, trace: Any, folder: Path, reps: int) -> dict[str, Any]:
        """Median dumps and atomic-write times of one trace, and its size."""
        import orjson

        write_atomic = self.trace.recorder.write_atomic
        target = folder / f"{DATASET_NAME}.trace.json"
        dumps, writes = [], []
        data = b""
        for _ in range(reps):
            start = time.perf_counter()
            data = orjson.dumps(trace)
            dumps.append(time.perf_counter() - start)
        for _ in range(reps):
            start = time.perf_counter()
            write_atomic(target, data)
            writes.append(time.perf_counter() - start)
        events = len(trace["events"])
        parts = {key: len(orjson.dumps(value)) for key, value in trace.items()}
        return {
            "events": events,
            "bytes": len(data),
            "bytes_per_event": len(data) / events,
            "event_bytes_per_event": parts.get("events", 0) / events,
            "parts": parts,
            "dumps_ms": median_ms(dumps),
            "write_ms": median_ms(writes),
            "total_ms": median_ms(dumps) + median_ms(writes),
            "write_p90_ms": statistics.quantiles(writes, n=10)[-1] * 1000.0,
        }


def _noop(sender: Any, **payload: Any) -> None:
    """The no-op receiver of configuration D."""


def _file_size(path: Path) -> int | None:
    return path.stat().st_size if path.exists() else None


class MemoryProbe:
    """Samples the live memory that ``rulechef_trace``'s own code allocated.

    tracemalloc (1 frame) charges every block to the innermost Python line
    that allocated it, so a snapshot filtered to files under the package
    folder sums exactly the blocks allocated by rulechef_trace code (events,
    payloads, run state, the built trace) that are still alive; objects
    rulechef made and rulechef_trace merely references are not counted. The
    probe is a receiver on every signal and samples at each event; the
    maximum is the recorder's peak, the sample after the run (the worker still
    holding the trace, as ``recorder.traces`` would) what it retains.
    standin.py lives in the package folder too but is the workload (the LLM),
    so it is excluded.
    """

    def __init__(self, folder: Path) -> None:
        self.filters = [
            tracemalloc.Filter(True, f"{folder}{os.sep}*"),
            tracemalloc.Filter(False, str(folder / "standin.py")),
        ]
        self.samples: list[int] = []

    def live(self) -> int:
        """Bytes currently allocated by rulechef_trace code."""
        snapshot = tracemalloc.take_snapshot().filter_traces(self.filters)
        return sum(stat.size for stat in snapshot.statistics("filename"))

    def __call__(self, sender: Any, **payload: Any) -> None:
        """Receiver: take one sample."""
        self.samples.append(self.live())

    def connect(self, signals: Sequence[Any]) -> None:
        """Connect to every signal (weak=False)."""
        for signal in signals:
            signal.connect(self, weak=False)

    def disconnect(self, signals: Sequence[Any]) -> None:
        """Disconnect from every signal, after one last sample."""
        self.samples.append(self.live())
        for signal in signals:
            signal.disconnect(self)


def worker_main(config: str, tmp_root: str) -> int:
    """Serve requests on stdin, one JSON line each, answers on the original stdout.

    stdout is moved to stderr first, so nothing but answers reaches the pipe.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    worker = Worker(config, Path(tmp_root))
    for line in sys.stdin:
        try:
            reply = {"ok": True, **worker.handle(json.loads(line))}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(reply) + "\n")
    return 0


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, config: str, tmp_root: Path) -> None:
        self.config = config
        self.log_path = tmp_root / f"worker-{config}.log"
        self.log = self.log_path.open("w")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", config, str(tmp_root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            env=env,
        )

    def request(self, **request: Any) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises:
            RuntimeError: When the worker failed or died.
        """
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.config} died:\n{self.log_tail()}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"worker {self.config}: {reply['error']}\n{self.log_tail()}")
        return reply

    def log_tail(self) -> str:
        """The last lines the worker wrote to stderr."""
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def close(self) -> None:
        """End the worker (close its stdin and wait)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


@contextlib.contextmanager
def workers(tmp_root: Path, configs: Sequence[str]) -> Iterator[dict[str, WorkerProcess]]:
    """Start one worker per configuration; end them all on exit."""
    started: dict[str, WorkerProcess] = {}
    try:
        for config in configs:
            started[config] = WorkerProcess(config, tmp_root)
        yield started
    finally:
        for process in started.values():
            process.close()


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, load, Python and package versions."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("rulechef", "blinker", "orjson", "rulechef-trace"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "loadavg_start": list(os.getloadavg()),
    }


@dataclass
class Options:
    """The benchmark's settings, from the command line."""

    sizes: tuple[int, ...]
    reps: tuple[int, ...]
    iterations: int
    data: Path
    text_field: str
    label_field: str
    io_reps: int
    control: bool = False
    paired: int = 0

    @property
    def configs(self) -> tuple[str, ...]:
        """The configurations to run, in round order."""
        return (*CONFIGS, CONTROL) if self.control else CONFIGS


def run_benchmark(options: Options) -> dict[str, Any]:
    """Run every size and return the full result (machine, sizes, targets)."""
    base = load_labelled(options.data, options.text_field, options.label_field)
    result: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "sizes": list(options.sizes),
            "reps": list(options.reps),
            "iterations": options.iterations,
            "data": str(options.data),
            "base_examples": len(base),
            "io_reps": options.io_reps,
            "configs": list(options.configs),
            "paired": options.paired,
        },
        "sizes": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        workers(Path(tmp), options.configs) as pool,
    ):
        tmp_root = Path(tmp)
        result["workers"] = {c: pool[c].request(op="ready") for c in pool}
        for size, reps in zip(options.sizes, options.reps, strict=True):
            data_file = tmp_root / f"data-{size}.jsonl"
            write_jsonl(scale_examples(base, size), data_file)
            request = {"data": str(data_file), "iterations": options.iterations}
            summary = measure_size(pool, size, reps, request, options.io_reps)
            if options.paired:
                progress(f"size {size}: {options.paired} in-process pairs in worker C")
                pairs = pool["C"].request(op="paired", pairs=options.paired, **request)
                summary["inprocess"] = paired_stats(pairs["plain"], pairs["recorded"])
            result["sizes"].append(summary)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["targets"] = evaluate_targets(result)
    return result


def measure_size(
    pool: dict[str, WorkerProcess], size: int, reps: int, request: dict[str, Any], io_reps: int
) -> dict[str, Any]:
    """Warm up, run the interleaved rounds, then the un-timed measurements."""
    progress(f"size {size}: warm-up")
    configs = list(pool)
    warmup = {c: pool[c].request(op="run", **request) for c in configs}
    rounds: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for number in range(1, reps + 1):
        # The order rotates every round, so that no configuration always runs
        # right after another one.
        shift = (number - 1) % len(configs)
        for config in configs[shift:] + configs[:shift]:
            rounds[config].append(pool[config].request(op="run", **request))
        walls = "  ".join(f"{c} {rounds[c][-1]['wall']:.3f}s" for c in configs)
        progress(f"size {size}: round {number}/{reps}  {walls}")
    progress(f"size {size}: counting evaluations, tracemalloc, trace I/O (un-timed)")
    counted = {c: pool[c].request(op="count", **request) for c in configs}
    trace_io = pool["C"].request(op="trace_io", reps=io_reps)  # on the counted run's trace
    memory = {
        "B": pool["B"].request(op="memory", mode="peak", **request),
        "C": pool["C"].request(op="memory", mode="peak", **request),
        "C_attribute": pool["C"].request(op="memory", mode="attribute", **request),
    }
    return summarise(size, reps, warmup, rounds, counted, memory, trace_io)


def paired_stats(plain: list[float], recorded: list[float]) -> dict[str, Any]:
    """Recorded/plain ratios of the in-process pairs."""
    pairs = [r / p for p, r in zip(plain, recorded, strict=True)]
    return {
        "pairs": len(pairs),
        "plain_median_s": statistics.median(plain),
        "recorded_median_s": statistics.median(recorded),
        "ratio_of_medians": statistics.median(recorded) / statistics.median(plain),
        "pair_min": min(pairs),
        "pair_max": max(pairs),
        "pair_median": statistics.median(pairs),
    }


def ratio_stats(rounds: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    """Medians per configuration and X/A ratios (of medians; min-max of pairs)."""
    medians = {c: statistics.median(r[key] for r in rounds[c]) for c in rounds}
    ratios = {}
    for config in (c for c in rounds if c != "A"):
        pairs = [x[key] / a[key] for a, x in zip(rounds["A"], rounds[config], strict=True)]
        ratios[config] = {
            "ratio_of_medians": medians[config] / medians["A"],
            "pair_min": min(pairs),
            "pair_max": max(pairs),
            "pair_median": statistics.median(pairs),
        }
    return {"median_s": medians, "ratios": ratios}


def summarise(
    size: int,
    reps: int,
    warmup: dict[str, dict[str, Any]],
    rounds: dict[str, list[dict[str, Any]]],
    counted: dict[str, dict[str, Any]],
    memory: dict[str, dict[str, Any]],
    trace_io: dict[str, Any],
) -> dict[str, Any]:
    """Everything measured at one size, as plain data."""
    every_run = [r for c in rounds for r in [warmup[c], *rounds[c], counted[c]]]
    fingerprints = {json.dumps(r["fingerprint"], sort_keys=True) for r in every_run}
    return {
        "size": size,
        "reps": reps,
        "wall": ratio_stats(rounds, "wall"),
        "cpu": ratio_stats(rounds, "cpu"),
        "walls": {c: [r["wall"] for r in rounds[c]] for c in rounds},
        "events": sorted({r["events"] for r in rounds["C"]}),
        "trace_file_bytes": rounds["C"][-1]["trace_file_bytes"],
        "trace_io": trace_io,
        "memory": {
            "peak_B": memory["B"]["peak_bytes"],
            "peak_C": memory["C"]["peak_bytes"],
            "peak_delta": memory["C"]["peak_bytes"] - memory["B"]["peak_bytes"],
            "recorder_peak": memory["C_attribute"]["recorder_peak_bytes"],
            "recorder_retained": memory["C_attribute"]["recorder_retained_bytes"],
            "samples": memory["C_attribute"]["samples"],
        },
        "counts": {
            c: {"llm_calls": counted[c]["fingerprint"]["llm_calls"], **counted[c]["evaluations"]}
            for c in rounds
        },
        "same_work": len(fingerprints) == 1,
        "fingerprint": json.loads(next(iter(fingerprints))) if len(fingerprints) == 1 else None,
        "structure": structure_checks(every_run, rounds),
    }


def structure_checks(
    every_run: list[dict[str, Any]], rounds: dict[str, list[dict[str, Any]]]
) -> dict[str, bool]:
    """Structural facts over all runs: imports, installed wrappers, patched classes."""
    after = [r["checks"] for r in every_run]
    b_runs = [r["checks"] for r in rounds["B"]]
    return {
        "A_never_imported": all(
            r["checks"]["trace_modules"] == 0 for r in every_run if r["checks"]["config"] in PLAIN
        ),
        "B_no_wrapper": all(
            not c["installed"] and c["run_is_original"] and not c["changed"] for c in b_runs
        ),
        "all_restored_after_run": all(not c["changed"] and not c.get("installed") for c in after),
        "coordinators_restored": all(not r["coordinator_patched"] for r in every_run),
    }


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


def listening_limit(size: int) -> float:
    """The C/A and D/A limit at a workload size."""
    return LIMIT_LISTENING_LARGE if size >= LARGE_SIZE else LIMIT_LISTENING_SMALL


def target(name: str, size: int | None, value: str, limit: str, passed: bool | None) -> dict:
    """One row of the target list."""
    return {"target": name, "size": size, "value": value, "limit": limit, "passed": passed}


def timing_target(name: str, size: int, value: float, limit: float, judged: bool) -> dict:
    """A run-time ratio row; not judged (n/a) with too few rounds."""
    if not judged:
        return target(name, size, f"{value:.4f}", f"<= {limit} (needs 5+ rounds)", None)
    return target(name, size, f"{value:.4f}", f"<= {limit}", value <= limit)


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/FAIL of every target in docs/performance.md."""
    rows: list[dict[str, Any]] = []
    for s in result["sizes"]:
        rows.extend(size_targets(s))
    rows.extend(memory_targets(result["sizes"]))
    return rows


def size_targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-size targets."""
    size, ratios = s["size"], s["wall"]["ratios"]
    judged = s["reps"] >= MIN_ROUNDS_FOR_VERDICT
    b = ratios["B"]["ratio_of_medians"]
    rows = [
        timing_target("B/A median", size, b, LIMIT_IMPORT, judged),
        target(
            "B: no wrapper installed",
            size,
            "none" if s["structure"]["B_no_wrapper"] else "FOUND",
            "none",
            s["structure"]["B_no_wrapper"],
        ),
    ]
    limit = listening_limit(size)
    for config in ("C", "D"):
        value = ratios[config]["ratio_of_medians"]
        rows.append(timing_target(f"{config}/A median", size, value, limit, judged))
    synthetic = s["trace_io"]["synthetic"]
    rows.append(
        target(
            f"trace write ({synthetic['events']} events)",
            size,
            f"{synthetic['total_ms']:.3f} ms",
            f"<= {LIMIT_WRITE_MS} ms",
            synthetic["total_ms"] <= LIMIT_WRITE_MS,
        )
    )
    per_event = s["trace_io"]["real"]["bytes_per_event"]
    rows.append(
        target(
            "bytes/event (whole trace file)",
            size,
            f"{per_event:.0f} B",
            f"<= {LIMIT_BYTES_PER_EVENT} B",
            per_event <= LIMIT_BYTES_PER_EVENT,
        )
    )
    a, c = s["counts"]["A"], s["counts"]["C"]
    rows.append(
        target(
            "LLM calls & evaluations A == C",
            size,
            f"{a['llm_calls']['total']}/{a['total']} vs {c['llm_calls']['total']}/{c['total']}",
            "equal",
            a == c,
        )
    )
    return rows


def memory_targets(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recorder memory independent of the data set size (needs two sizes).

    Two measures: the live memory rulechef_trace's own code allocated (peak
    over the event samples), and the process's tracemalloc peak of C minus
    that of B, which also sees rulechef objects the hooks keep alive longer.
    Each passes when its largest value is at most 1.5 times its smallest
    (the smallest taken as at least 64 KiB, so that tiny values do not turn
    noise into a failure).
    """
    measures = (
        ("recorder live memory vs size", "recorder_peak"),
        ("process peak C-B vs size", "peak_delta"),
    )
    return [_growth_target(name, [s["memory"][key] for s in sizes]) for name, key in measures]


def _growth_target(name: str, values: list[int]) -> dict[str, Any]:
    shown = " / ".join(f"{v / 1024:.1f}" for v in values) + " KiB"
    if len(values) < 2:
        return target(name, None, shown, "needs 2 sizes", None)
    floor = max(min(values), MEMORY_FLOOR)
    growth = max(values) / floor
    return target(
        name,
        None,
        f"{shown} (x{growth:.2f})",
        f"max/max(min,64K) <= {LIMIT_MEMORY_GROWTH}",
        growth <= LIMIT_MEMORY_GROWTH,
    )


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    """The fixed-width report: machine, per-size table, targets."""
    lines = format_machine(result)
    for s in result["sizes"]:
        lines += ["", *format_size(s)]
    lines += ["", *format_targets(result["targets"])]
    return "\n".join(lines)


def format_machine(result: dict[str, Any]) -> list[str]:
    """Header lines: machine, versions, settings."""
    m, st = result["machine"], result["settings"]
    v = m["versions"]
    return [
        "rulechef-trace overhead benchmark",
        f"machine : {m['nproc']} cores, {m['cpu']}, Python {m['python']}",
        f"versions: rulechef {v['rulechef']}, blinker {v['blinker']}, orjson {v['orjson']}, "
        f"rulechef-trace {v['rulechef-trace']}",
        f"load    : {_load(m['loadavg_start'])} at start, {_load(m.get('loadavg_end'))} at end",
        f"workload: learn_rules(max_refinement_iterations={st['iterations']}), StandInLLM, "
        f"AgenticCoordinator; data {Path(st['data']).name} ({st['base_examples']} rows), "
        f"scaled",
    ]


def _load(values: list[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in values) if values else "?"


def format_size(s: dict[str, Any]) -> list[str]:
    """The table of one workload size."""
    wall, cpu = s["wall"], s["cpu"]
    order = " ".join(wall["median_s"])
    head = f"== {s['size']} examples, {s['reps']} interleaved rounds ({order}) =="
    lines = [head, f"{'config':<48} {'median':>9} {'X/A':>7} {'pairs min-max':>15} {'cpu X/A':>8}"]
    for config in wall["median_s"]:
        label = f"{config}  {CONFIG_NAMES[config]}"
        median = f"{wall['median_s'][config]:.3f} s"
        if config == "A":
            lines.append(f"{label:<48} {median:>9} {'1':>7} {'':>15} {'1':>8}")
            continue
        r, rc = wall["ratios"][config], cpu["ratios"][config]
        pairs = f"{r['pair_min']:.3f}-{r['pair_max']:.3f}"
        lines.append(
            f"{label:<48} {median:>9} {r['ratio_of_medians']:>7.4f} {pairs:>15} "
            f"{rc['ratio_of_medians']:>8.4f}"
        )
    inprocess = s.get("inprocess")
    if inprocess:
        lines.append(
            f"in-process check: recorded/plain {inprocess['ratio_of_medians']:.4f} "
            f"(pairs {inprocess['pair_min']:.3f}-{inprocess['pair_max']:.3f}; "
            f"{inprocess['pairs']} alternating pairs in worker C, "
            f"{inprocess['plain_median_s']:.3f} s vs {inprocess['recorded_median_s']:.3f} s)"
        )
    return lines + format_details(s)


def format_details(s: dict[str, Any]) -> list[str]:
    """Trace, I/O, memory and count lines of one size."""
    real, synth = s["trace_io"]["real"], s["trace_io"]["synthetic"]
    mem, counts = s["memory"], s["counts"]
    fp = s["fingerprint"] or {}
    parts = real.get("parts", {})
    return [
        f"events in trace        : {', '.join(map(str, s['events']))}",
        f"trace size             : {real['bytes']} B = {real['bytes_per_event']:.0f} B/event "
        f"(file as written {s['trace_file_bytes']} B)",
        f"  of which             : events {parts.get('events')} B "
        f"({real['event_bytes_per_event']:.0f} B/event), run {parts.get('run')}, "
        f"rules {parts.get('rules')}, final {parts.get('final')}",
        f"  {synth['events']}-event trace    : {synth['bytes']} B = "
        f"{synth['bytes_per_event']:.0f} B/event",
        f"serialise + write      : real trace ({real['events']} events) "
        f"{real['dumps_ms']:.3f} + {real['write_ms']:.3f} = {real['total_ms']:.3f} ms",
        f"                         {synth['events']}-event trace "
        f"{synth['dumps_ms']:.3f} + {synth['write_ms']:.3f} = {synth['total_ms']:.3f} ms "
        f"({synth['bytes']} B)",
        f"recorder memory        : peak {mem['recorder_peak'] / 1024:.1f} KiB live "
        f"({mem['samples']} samples), {mem['recorder_retained'] / 1024:.1f} KiB retained "
        f"after the run",
        f"process peak (tracemalloc): B {mem['peak_B'] / 1024:.0f} KiB, "
        f"C {mem['peak_C'] / 1024:.0f} KiB, C-B {mem['peak_delta'] / 1024:+.1f} KiB",
        "LLM calls / evaluations: "
        + ", ".join(f"{c} {n['llm_calls']['total']}/{n['total']}" for c, n in counts.items()),
        f"same work everywhere   : {'yes' if s['same_work'] else 'NO'} "
        f"({fp.get('rules')} rules, micro F1 {fp.get('f1')})",
        "structure              : "
        + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in s["structure"].items()),
    ]


def format_targets(rows: list[dict[str, Any]]) -> list[str]:
    """The PASS/FAIL list."""
    lines = ["== targets ==", f"{'':6} {'size':>6}  {'target':<32} {'value':<30} limit"]
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[row["passed"]]
        size = str(row["size"]) if row["size"] is not None else "all"
        lines.append(
            f"{verdict:<6} {size:>6}  {row['target']:<32} {row['value']:<30} {row['limit']}"
        )
    return lines


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``200,2000`` into ``(200, 2000)``."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Overhead of rulechef-trace on an offline learn_rules() run."
    )
    parser.add_argument("--sizes", type=int_list, help="workload sizes (default 200,2000)")
    parser.add_argument(
        "--reps", type=int_list, help="rounds per size, one number or one per size (default 20,10)"
    )
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--data", type=Path, help="JSONL data (default: packaged intents)")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--label-field", default="label")
    parser.add_argument("--io-reps", type=int, help=f"trace I/O repetitions (default {IO_REPS})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 200 only")
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="noise check: also N alternating plain/recorded pairs inside worker C",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help=f"also run a second plain worker ({CONTROL}) each round: the A/A noise floor",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="print the table of a saved --json result"
    )
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "TMP"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    """Resolve defaults (and --quick) into :class:`Options`."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    reps = args.reps or (QUICK_REPS if args.quick else DEFAULT_REPS)
    if len(reps) == 1:
        reps = reps * len(sizes)
    if len(reps) != len(sizes):
        raise SystemExit("--reps needs one number, or one per size")
    io_reps = args.io_reps or (QUICK_IO_REPS if args.quick else IO_REPS)
    return Options(
        sizes=tuple(sizes),
        reps=tuple(reps),
        iterations=args.iterations,
        data=args.data or packaged_data_file(),
        text_field=args.text_field,
        label_field=args.label_field,
        io_reps=io_reps,
        control=args.control,
        paired=args.paired,
    )


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    """Run the benchmark; 0 when every target passes, 1 otherwise."""
    args = parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)
    out = out or sys.stdout
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        result = run_benchmark(options_from(args))
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write(format_report(result) + "\n")
    return 1 if any(row["passed"] is False for row in result["targets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
