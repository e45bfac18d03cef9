"""Other measures of a run: dataset evaluations counted, memory, and a cProfile view.

None of them is timed: each runs in a repetition of its own.
"""

from __future__ import annotations

import collections
import cProfile
import gc
import os
import pstats
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any


def profile_package(
    run: Callable[[], Any], package_root: Path, top: int = 15
) -> tuple[list[tuple[str, float, int]], float]:
    """The package's functions by own time in one run under cProfile.

    The profiler inflates every call, the package's many small ones most;
    read the numbers as shares, not as the package's cost. The profiler's
    clock is this thread's CPU time, so that time descheduled lands nowhere,
    and garbage collection is off during the run, so that a collection does
    not land on whichever function happened to allocate.

    Returns:
        (``module:function``, own seconds, calls) of the ``top`` costliest,
        and the own seconds of all the package's functions together.
    """
    profiler = cProfile.Profile(time.thread_time)
    gc.collect()
    gc.disable()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
        gc.enable()
    demo = package_root / "demo"

    def ours(file: str) -> bool:
        path = Path(file)
        return path.is_relative_to(package_root) and not path.is_relative_to(demo)

    rows = []
    for (file, _, name), (_, calls, own, _, callers) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if not ours(file):
            continue
        if callers:  # the stand-in calls the prompt markers too: its calls do not count
            own = sum(v[2] for c, v in callers.items() if not Path(c[0]).is_relative_to(demo))
        module = Path(file).relative_to(package_root).with_suffix("").as_posix()
        rows.append((f"{module.replace('/', '.')}:{name}", own, calls))
    rows.sort(key=lambda row: -row[1])
    return rows[:top], sum(own for _, own, _ in rows)


@contextmanager
def counting_evaluations(counts: collections.Counter[str]) -> Iterator[None]:
    """Count dataset evaluations where rulechef imported them (learner, engine, ranking)."""
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


class MemoryProbe:
    """Samples the live memory that rulechef_trace's own code allocated.

    tracemalloc (1 frame) charges every block to the innermost Python line
    that allocated it, so a snapshot filtered to the package's files sums the
    blocks its code allocated (events, payloads, run state, the built trace)
    that are still alive; objects rulechef made and the package merely
    references are not counted. The probe is a receiver on every signal and
    samples at each event; the largest sample is the package's peak, the one
    after the run (the trace still held, as ``recorder.traces`` holds it)
    what it retains. The demo folder (the stand-in LLM, the workload) is left
    out.
    """

    def __init__(self, folder: Path) -> None:
        self.filters = [
            tracemalloc.Filter(True, f"{folder}{os.sep}*"),
            tracemalloc.Filter(False, f"{folder / 'demo'}{os.sep}*"),
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
        gc.collect()
        self.samples.append(self.live())
        for signal in signals:
            signal.disconnect(self)
