"""The parent side: start the workers, drive the rounds, collect every measure as plain data.

The parent asks the timed workers (A, B, C, D and the A/A control A2) for
one repetition each, round after round, the order rotating by one place
every round, so that a slow phase of a shared machine hits every
configuration alike. Every worker first runs one warm-up repetition per
size. Counting evaluations, memory and the direct accounting (worker P) run
afterwards, in repetitions that are not timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .scenarios import TIMED, load_labelled, many_classes, scale_examples, write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, config: str, tmp_root: Path) -> None:
        self.config = config
        self.log_path = tmp_root / f"worker-{config}.log"
        self.log = self.log_path.open("w")
        path = os.environ.get("PYTHONPATH")
        env = {
            **os.environ,
            "PYTHONHASHSEED": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), path) if p),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.overhead", "--worker", config, str(tmp_root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            env=env,
            cwd=REPO_ROOT,
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
        return dict(reply)

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
    versions: dict[str, str | None] = {}
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
    account_reps: int
    iterations: int
    data: Path
    text_field: str
    label_field: str
    classes: tuple[int, ...]
    per_class: int
    paired: int = 0


def run_benchmark(options: Options) -> dict[str, Any]:
    """Run every size and the classes scenario; return everything measured."""
    base = load_labelled(options.data, options.text_field, options.label_field)
    result: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "sizes": list(options.sizes),
            "reps": list(options.reps),
            "account_reps": options.account_reps,
            "iterations": options.iterations,
            "data": str(options.data),
            "base_examples": len(base),
            "base_labels": len({label for _, label in base}),
            "configs": list(TIMED),
            "classes": list(options.classes),
            "per_class": options.per_class,
            "paired": options.paired,
        },
        "sizes": [],
        "classes": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        workers(Path(tmp), (*TIMED, "P")) as pool,
    ):
        tmp_root = Path(tmp)
        result["workers"] = {c: pool[c].request(op="ready") for c in pool}
        hooks = pool["D"].request(op="discover")["hooks"]
        result["hooks"] = hooks
        result["accounting"] = pool["P"].request(op="install", hooks=hooks)
        for size, reps in zip(options.sizes, options.reps, strict=True):
            data_file = tmp_root / f"data-{size}.jsonl"
            write_jsonl(scale_examples(base, size), data_file)
            request = {"data": str(data_file), "iterations": options.iterations}
            summary = measure_size(pool, size, reps, options.account_reps, request)
            if options.paired:
                progress(f"size {size}: {options.paired} in-process pairs in worker C")
                summary["paired"] = pool["C"].request(op="paired", pairs=options.paired, **request)
            result["sizes"].append(summary)
        for classes in options.classes:
            result["classes"].append(
                measure_classes(pool["P"], tmp_root, classes, options.per_class, options)
            )
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def measure_size(
    pool: dict[str, WorkerProcess], size: int, reps: int, account_reps: int, request: dict[str, Any]
) -> dict[str, Any]:
    """Warm up, run the rotating rounds, then the un-timed measurements of one size."""
    progress(f"size {size}: warm-up")
    warmup = {c: pool[c].request(op="run", **request) for c in TIMED}
    rounds: dict[str, list[dict[str, Any]]] = {c: [] for c in TIMED}
    for number in range(1, reps + 1):
        shift = (number - 1) % len(TIMED)
        for config in TIMED[shift:] + TIMED[:shift]:
            rounds[config].append(pool[config].request(op="run", **request))
        walls = "  ".join(f"{c} {rounds[c][-1]['wall']:.3f}s" for c in TIMED)
        progress(f"size {size}: round {number}/{reps}  {walls}")
    progress(f"size {size}: counts, memory, direct accounting (not timed)")
    counted = {c: pool[c].request(op="count", **request) for c in TIMED}
    memory = {
        "B": pool["B"].request(op="memory", mode="peak", **request),
        "C": pool["C"].request(op="memory", mode="peak", **request),
        "C_attribute": pool["C"].request(op="memory", mode="attribute", **request),
    }
    profile = pool["C"].request(op="profile", **request)
    verify = pool["P"].request(op="account", verify=True, **request)
    accounted = [pool["P"].request(op="account", **request) for _ in range(account_reps)]
    # The OTel bridge on top (record_trace(otel=True), an SDK exporting to memory).
    bridge = [
        pool["P"].request(op="account", otel=True, **request)
        for _ in range(max(1, min(3, account_reps)))
    ]
    return {
        "bridge": bridge,
        "size": size,
        "reps": reps,
        "warmup": warmup,
        "rounds": rounds,
        "counted": counted,
        "memory": memory,
        "verify": verify,
        "accounted": accounted,
        "profile": profile,
    }


def measure_classes(
    worker: WorkerProcess, tmp_root: Path, classes: int, per_class: int, options: Options
) -> dict[str, Any]:
    """Accounted runs on a synthetic data set of ``classes`` labels (trace size vs classes)."""
    progress(f"{classes} classes x {per_class} examples: direct accounting")
    data_file = tmp_root / f"classes-{classes}.jsonl"
    write_jsonl(many_classes(classes, per_class), data_file)
    request = {"data": str(data_file), "iterations": options.iterations}
    reps = max(1, min(3, options.account_reps))
    runs = [worker.request(op="account", **request) for _ in range(reps)]
    return {"classes": classes, "examples": classes * per_class, "accounted": runs}
