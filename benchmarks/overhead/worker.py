"""The worker side: one long-lived process per configuration, one request per line.

A worker (``python -m benchmarks.overhead --worker X TMP``) reads one JSON
request per line on stdin, runs one repetition and answers with one JSON
line on its original stdout; everything the workload prints goes to stderr.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .accounting import (
    PACKAGE,
    Accounting,
    EventProbe,
    Ledger,
    calibrate,
    discover_hooks,
    noop,
)
from .probes import MemoryProbe, counting_evaluations, profile_package
from .scenarios import (
    CONFIGS,
    Example,
    build_chef,
    changed_attributes,
    class_snapshot,
    fingerprint,
    import_rulechef,
    load_labelled,
    load_standin,
    package_dir,
    trace_files,
    trace_modules_loaded,
)


@dataclass
class Worker:
    """One configuration's process: answers the requests of the parent."""

    config: str
    tmp_root: Path
    standin: ModuleType = field(init=False)
    modules: tuple[ModuleType, ...] = field(init=False)
    baseline: dict[str, Any] = field(init=False)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    trace: Any = None  # the rulechef_trace package (all but A and A2)
    accounting: Accounting | None = None  # P, after "install"

    def __post_init__(self) -> None:
        self.standin = load_standin()
        self.modules = import_rulechef()
        self.baseline = class_snapshot(self.modules)
        if CONFIGS[self.config].imports_package:
            import rulechef_trace

            self.trace = rulechef_trace

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request by its ``op``."""
        ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ready": lambda r: self.checks(),
            "discover": self.discover,
            "install": self.install,
            "run": self.timed_run,
            "count": self.counted_run,
            "memory": self.memory_run,
            "paired": self.paired,
            "account": self.account_run,
            "profile": self.profile_run,
        }
        return ops[request["op"]](request)

    def checks(self) -> dict[str, Any]:
        """Structural facts: loaded rulechef_trace modules, installed wrappers, patched classes."""
        facts: dict[str, Any] = {
            "config": self.config,
            "pid": os.getpid(),
            "trace_modules": len(trace_modules_loaded()),
            "changed": changed_attributes(self.baseline, class_snapshot(self.modules)),
        }
        if self.trace is not None:
            from rulechef.pipeline import LearningPipeline

            facts["installed"] = _installed()
            original = self.baseline["rulechef.pipeline:LearningPipeline.run"]
            facts["run_is_original"] = LearningPipeline.__dict__["run"] is original
        return facts

    def discover(self, request: dict[str, Any]) -> dict[str, Any]:
        """The hooked rulechef methods (D, once, before its first run)."""
        return {"hooks": discover_hooks(self.trace.ALL_SIGNALS, self.modules)}

    def install(self, request: dict[str, Any]) -> dict[str, Any]:
        """Put the accounting shims in place (P, before the package installs anything)."""
        from rulechef.coordinator import AgenticCoordinator

        accounting = Accounting(package_dir())
        accounting.install_host(request["hooks"], [AgenticCoordinator])
        completions = type(self.standin.StandInLLM().chat.completions)
        accounting.install_host([], [completions])
        accounting.install_parts(set(request["hooks"]))
        self.accounting = accounting
        self.baseline = class_snapshot(self.modules)
        return {"calibration": calibrate(accounting), "parts": accounting.part_keys}

    def load(self, path: str) -> list[Example]:
        """The examples of a data file the parent wrote (cached)."""
        if path not in self.examples:
            self.examples[path] = load_labelled(Path(path), "text", "label")
        return self.examples[path]

    def fresh_chef(self, request: dict[str, Any]) -> tuple[Any, list[Any], Path]:
        """A new chef in a new storage folder, the examples of ``request["data"]`` added."""
        root = Path(tempfile.mkdtemp(prefix=f"{self.config}-", dir=self.tmp_root))
        chef, llms = build_chef(self.standin, self.load(request["data"]), root)
        return chef, llms, root

    # -- the timed workload -------------------------------------------------------------

    def learn(self, chef: Any, root: Path, iterations: int, mode: str) -> Any:
        """The timed ``learn_rules()``: ``plain``, under ``record`` or with ``noop`` receivers."""
        if mode == "record":
            with self.trace.record_trace(chef, storage_path=root):
                return chef.learn_rules(max_refinement_iterations=iterations)
        if mode == "noop":
            signals = self.trace.ALL_SIGNALS
            for signal in signals:
                signal.connect(noop, weak=False)
            try:
                return chef.learn_rules(max_refinement_iterations=iterations)
            finally:
                for signal in signals:
                    signal.disconnect(noop)
        return chef.learn_rules(max_refinement_iterations=iterations)

    def one_run(
        self,
        request: dict[str, Any],
        around: Callable[[], Any] | None = None,
        mode: str | None = None,
    ) -> dict[str, Any]:
        """Build a chef, run and time ``learn_rules()``, check and clean up."""
        chef, llms, root = self.fresh_chef(request)
        gc.collect()
        context = around() if around is not None else contextlib.nullcontext()
        with context:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):
                mode = mode or CONFIGS[self.config].mode
                result = self.learn(chef, root, request["iterations"], mode)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        out = {"wall": wall, "cpu": cpu, "fingerprint": fingerprint(result, llms)}
        out["checks"] = self.checks()
        out["coordinator_patched"] = sorted(
            name
            for name in ("guide_refinement", "critique_rules", "audit_rules")
            if name in vars(chef.coordinator)
        )
        out["trace_bytes"] = sum(p.stat().st_size for p in trace_files(root))
        shutil.rmtree(root, ignore_errors=True)
        return out

    def timed_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One timed repetition."""
        return self.one_run(request)

    def paired(self, request: dict[str, Any]) -> dict[str, Any]:
        """Alternate plain and recorded runs in this one process (C only).

        Both halves of a pair share the process, so the ratio isolates what
        ``record_trace`` costs from differences between processes. The order
        alternates from pair to pair against drift.
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
        """One repetition counting dataset evaluations."""
        counts: collections.Counter[str] = collections.Counter()
        out = self.one_run(request, around=lambda: counting_evaluations(counts))
        out["evaluations"] = {**dict(sorted(counts.items())), "total": sum(counts.values())}
        return out

    def memory_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One repetition under tracemalloc.

        ``mode`` ``peak``: the process's traced peak during ``learn_rules()``
        above what was traced when it started. ``mode`` ``attribute`` (C):
        live memory allocated by the package's own code, sampled at every
        event and after the run (:class:`MemoryProbe`).
        """
        import tracemalloc

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
                tracemalloc.stop()

        out = self.one_run(request, around=traced)
        out["peak_bytes"] = box["peak"]
        if probe is not None:
            out["package_peak_bytes"] = max(probe.samples)
            out["package_retained_bytes"] = probe.samples[-1]
        return out

    def profile_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One recorded run under cProfile: the package's functions by own time (C)."""
        chef, _, root = self.fresh_chef(request)

        def run() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                self.learn(chef, root, request["iterations"], "record")

        rows, total = profile_package(run, package_dir())
        shutil.rmtree(root, ignore_errors=True)
        return {"functions": rows, "total_s": total}

    # -- the direct accounting (P) ------------------------------------------------------

    def account_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One recorded run with the package's own time accounted (see ``accounting``).

        With ``verify``, a probe receiver also counts events emitted while no
        package frame was on top (must be none; that run is not one of the
        figures, the probe itself costs a little).
        """
        accounting = self.accounting
        if accounting is None:
            raise RuntimeError("send 'install' first")
        chef, llms, root = self.fresh_chef(request)
        coordinator_llm = llms[1].chat.completions
        accounting.watched = [chef, chef.coordinator, llms[0].chat.completions, coordinator_llm]
        otel = bool(request.get("otel"))
        if otel and not _sdk_ready():
            shutil.rmtree(root, ignore_errors=True)
            return {"unavailable": "the OTel bridge needs opentelemetry-sdk (the test extra)"}
        probe = EventProbe(accounting) if request.get("verify") else None
        if probe is not None:
            probe.connect(self.trace.ALL_SIGNALS)
        gc.collect()
        accounting.ledger = ledger = Ledger()
        gc.callbacks.append(ledger.on_gc)
        try:
            result, recorder, wrapped = self._accounted_learn(
                chef, root, request["iterations"], otel
            )
        finally:
            gc.callbacks.remove(ledger.on_gc)
            accounting.ledger = None
            if probe is not None:
                probe.disconnect(self.trace.ALL_SIGNALS)
        files = trace_files(root)
        last = recorder.last
        out = {
            **ledger.summary(),
            "parts": accounting.part_labels,
            "hooks_wrapped": wrapped,
            "hooks_known": len(accounting.hooked),
            "events": len(last.events) if last is not None else 0,
            "rules": len(last.final_rules) if last is not None else 0,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "largest_file": max((p.stat().st_size for p in files), default=0),
            "fingerprint": fingerprint(result, llms),
        }
        if probe is not None:
            out["events_outside"] = probe.outside
            out["events_inside"] = probe.inside
        shutil.rmtree(root, ignore_errors=True)
        return out

    def _accounted_learn(
        self, chef: Any, root: Path, iterations: int, otel: bool = False
    ) -> tuple[Any, Any, int]:
        accounting = self.accounting
        assert accounting is not None
        sink = io.StringIO()
        with accounting.frame(PACKAGE, "record_trace enter"):
            context = self.trace.record_trace(chef, storage_path=root, otel=otel)
            recorder = context.__enter__()
        try:
            with accounting.package_wrappers() as wrapped, contextlib.redirect_stdout(sink):
                result = chef.learn_rules(max_refinement_iterations=iterations)
        except BaseException:
            with accounting.frame(PACKAGE, "record_trace exit"):
                context.__exit__(*sys.exc_info())
            raise
        with accounting.frame(PACKAGE, "record_trace exit"):
            context.__exit__(None, None, None)
        return result, recorder, wrapped


_SDK: list[bool] = []


def _sdk_ready() -> bool:
    """A global SDK tracer provider exporting to memory, set once; False without the SDK.

    The bridge's spans are then really built, attributed and exported (in
    process, no network), so its accounted time is what an application with an
    exporter pays, less the exporter's own I/O.
    """
    if not _SDK:
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
        except ImportError:
            _SDK.append(False)
        else:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
            trace.set_tracer_provider(provider)
            _SDK.append(True)
    return _SDK[0]


def _installed() -> bool:
    try:
        from rulechef_trace._capture import installed
    except ImportError:
        # 0.1.0's layout, for comparing against the release; absent from this tree
        from rulechef_trace.instrument import installed  # type: ignore[import-not-found, no-redef]
    return bool(installed())


def worker_main(config: str, tmp_root: str) -> int:
    """Serve requests on stdin, one JSON line each, answers on the original stdout.

    stdout is moved to stderr first, so that nothing but answers reaches the pipe.
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
