"""Direct accounting of the time spent in rulechef_trace's own code during a run.

The method, in one worker process that is not part of the wall-clock rounds:

1. *Find the hooks.* In another worker, a no-op receiver is connected to
   every signal, which makes the package install its wrappers; the class
   attributes of rulechef that changed are the hooked methods
   (:func:`discover_hooks`). Nothing private of the package is read.
2. *Mark rulechef's side.* Before the package ever installs anything in the
   accounting worker, each hooked method, every method of the coordinator's
   class (the package wraps those on the instance, per run) and the
   stand-in's ``create`` are replaced by a thin *host* shim. The package's
   wrappers then wrap these shims, so every call from package code back into
   rulechef enters a host frame.
3. *Mark the package's side.* Inside ``record_trace``, every wrapper the
   package installed is itself wrapped by a *package* shim; so are the
   package's functions found on instances (the coordinator's per-run
   wrappers) or passed as arguments into rulechef (the iteration callback),
   and ``record_trace``'s enter and exit.
4. *Charge time to the frame on top.* A :class:`Ledger` keeps the stack of
   frames; ``time.perf_counter`` is read at every push and pop and the time
   since the last read is charged to the frame that was on top. The
   package's own time is the sum charged to package frames: everything the
   package runs (its bookkeeping, its receivers, building and writing
   the trace, and rulechef functions it calls itself) and nothing rulechef
   runs for its own purposes.
5. *Name the parts.* A few functions are wrapped as *parts* that inherit the
   owner of their caller (``os.fsync``, ``orjson.dumps``,
   ``inspect.Signature.bind``, ``RuleLearner._get_classes``, …): called from
   a package frame, their time is package time under their own name.

A check run proves the accounting complete: a probe receiver asserts that
every event is emitted while a package frame is on top. The shims cost a
fraction of a microsecond per crossing, part of which lands in the package's
figure; :func:`calibrate` measures that leak and the report states it.
"""

from __future__ import annotations

import collections
import functools
import importlib
import os
import re
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

PACKAGE = "package"
HOST = "host"
BENCH = "bench"  # the benchmark's own bookkeeping: charged to nobody

# Functions whose time is reported under their own name, owned by the caller.
PARTS: tuple[tuple[str, str], ...] = (
    ("os", "fsync"),
    ("os", "replace"),
    ("os", "rename"),
    ("os", "link"),
    ("orjson", "dumps"),
    ("rulechef_trace.recorder", "build_trace"),
    ("rulechef_trace.recorder", "write_atomic"),
    ("inspect", "signature"),
    ("inspect", "getattr_static"),
    ("inspect:Signature", "bind"),
    ("inspect:BoundArguments", "apply_defaults"),
    ("importlib", "import_module"),
    ("rulechef.learner:RuleLearner", "_get_classes"),
)

#: A developer's drill-down: more parts, as ``module:func`` or ``module:Class.method``.
PARTS_VARIABLE = "RULECHEF_BENCH_PARTS"


def extra_parts() -> list[tuple[str, str]]:
    """The parts named in :data:`PARTS_VARIABLE` (comma-separated), as (owner, name)."""
    parts = []
    for item in os.environ.get(PARTS_VARIABLE, "").split(","):
        module, _, attribute = item.strip().partition(":")
        if not attribute:
            continue
        cls, _, name = attribute.rpartition(".")
        parts.append((f"{module}:{cls}" if cls else module, name))
    return parts


_wall = time.perf_counter
_cpu = time.thread_time  # this thread's CPU: no waits for the disk, no time descheduled


class Ledger:
    """A stack of frames with the exclusive wall and CPU time charged to each (owner, label).

    Both clocks are read at every crossing; what the ledger does between two
    reads is charged to nobody. Garbage collections are charged to nobody
    either (their cost follows the whole heap, not the code that happened to
    allocate): :meth:`on_gc` moves their time to :attr:`gc_wall`/:attr:`gc_cpu`,
    by the owner of the frame they interrupted.
    """

    def __init__(self) -> None:
        self.owners: list[str | None] = [None]
        self.labels: list[str] = [""]
        # Seconds are floats, which typeshed's Counter (int counts) does not allow.
        self.wall: collections.defaultdict[tuple[str | None, str], float] = collections.defaultdict(
            float
        )
        self.cpu: collections.defaultdict[tuple[str | None, str], float] = collections.defaultdict(
            float
        )
        self.calls: collections.Counter[tuple[str | None, str]] = collections.Counter()
        self.gc_wall: collections.defaultdict[str | None, float] = collections.defaultdict(float)
        self.gc_cpu: collections.defaultdict[str | None, float] = collections.defaultdict(float)
        self.crossings = 0
        self.busy = False
        self._gc_start = (0.0, 0.0)
        self.last_cpu = _cpu()
        self.last_wall = _wall()

    def _charge(self) -> None:
        wall = _wall()
        cpu = _cpu()
        key = (self.owners[-1], self.labels[-1])
        self.wall[key] += wall - self.last_wall
        self.cpu[key] += cpu - self.last_cpu

    def _restart(self) -> None:
        self.last_cpu = _cpu()
        self.last_wall = _wall()

    def push(self, owner: str | None, label: str) -> None:
        """Enter a frame; the time since the last read goes to the frame below."""
        self.busy = True
        self._charge()
        self.owners.append(owner)
        self.labels.append(label)
        self.calls[(owner, label)] += 1
        self.crossings += 1
        self._restart()
        self.busy = False

    def swap(self, owner: str | None, label: str) -> None:
        """Replace the top frame (one crossing, no time lost in between)."""
        self.busy = True
        self._charge()
        self.owners[-1] = owner
        self.labels[-1] = label
        self.calls[(owner, label)] += 1
        self._restart()
        self.busy = False

    def pop(self) -> None:
        """Leave the top frame; the time since the last read goes to it."""
        self.busy = True
        self._charge()
        self.owners.pop()
        self.labels.pop()
        self._restart()
        self.busy = False

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: take each collection's time out of the frame on top."""
        if self.busy:
            return  # inside the ledger's own bookkeeping: charged to nobody anyway
        if phase == "start":
            self._gc_start = (_wall(), _cpu())
            return
        wall, cpu = _wall() - self._gc_start[0], _cpu() - self._gc_start[1]
        self.gc_wall[self.owners[-1]] += wall
        self.gc_cpu[self.owners[-1]] += cpu
        self.last_wall += wall
        self.last_cpu += cpu

    @property
    def top(self) -> str | None:
        """The owner of the frame on top (None outside every frame)."""
        return self.owners[-1]

    def summary(self) -> dict[str, Any]:
        """Package wall and CPU seconds and calls by label; host seconds; collections."""

        def ours(counter: dict[tuple[str | None, str], float]) -> dict[str, float]:
            return {lab: s for (o, lab), s in counter.items() if o == PACKAGE}

        wall, cpu = ours(self.wall), ours(self.cpu)
        calls = {lab: n for (o, lab), n in self.calls.items() if o == PACKAGE}
        return {
            "own_s": sum(wall.values()),
            "own_cpu_s": sum(cpu.values()),
            "by_label": dict(sorted(wall.items(), key=lambda kv: -kv[1])),
            "cpu_by_label": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "calls": dict(sorted(calls.items())),
            "host_s": sum(s for (o, _), s in self.wall.items() if o == HOST),
            "gc_package_s": self.gc_wall[PACKAGE],
            "gc_package_cpu_s": self.gc_cpu[PACKAGE],
            "crossings": self.crossings,
        }


@dataclass
class Accounting:
    """The shims of one accounting worker and the ledger of the run in progress."""

    package_root: Path
    ledger: Ledger | None = None
    watched: list[Any] = field(default_factory=list)
    host_keys: list[str] = field(default_factory=list)
    part_keys: list[str] = field(default_factory=list)
    part_labels: list[str] = field(default_factory=list)
    hooked: list[tuple[type, str, Any]] = field(default_factory=list)
    _shims: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    _code: dict[CodeType, bool] = field(default_factory=dict)

    # -- what is package code ----------------------------------------------------------

    def is_package_function(self, value: Any) -> bool:
        """Whether ``value`` is a function of the package (the demo and stand-in excluded)."""
        func = getattr(value, "__func__", value)
        if isinstance(func, functools.partial):
            func = func.func
        code = getattr(func, "__code__", None)
        if not isinstance(code, CodeType):
            return False
        known = self._code.get(code)
        if known is None:
            path = Path(code.co_filename)
            demo = self.package_root / "demo"
            known = path.is_relative_to(self.package_root) and not path.is_relative_to(demo)
            self._code[code] = known
        return known and value not in self._shims

    # -- installing the shims ----------------------------------------------------------

    def install_host(self, hook_keys: Iterable[str], classes: Iterable[type]) -> None:
        """Host shims on the hooked methods and on every method of ``classes``."""
        for key in hook_keys:
            owner, name = _split_key(key)
            cls = _resolve(owner)
            self._replace(cls, name, HOST, f"{cls.__name__}.{name}")
            self.hooked.append((cls, name, cls.__dict__[name]))
            self.host_keys.append(key)
        for cls in classes:
            for name, value in list(vars(cls).items()):
                if (
                    callable(value)
                    and not name.startswith("__")
                    and (cls, name) not in {(c, n) for c, n, _ in self.hooked}
                ):
                    self._replace(cls, name, HOST, f"{cls.__name__}.{name}")
                    self.host_keys.append(f"{cls.__module__}:{cls.__qualname__}.{name}")

    def install_parts(self, hooked: set[str]) -> None:
        """Part shims on :data:`PARTS` and :func:`extra_parts` (a hooked method is never a part)."""
        for owner, name in (*PARTS, *extra_parts()):
            key = f"{owner}.{name}"
            if key in hooked:
                continue
            try:
                target = _resolve(owner)
            except (ImportError, AttributeError):
                continue
            if not callable(getattr(target, name, None)):
                continue
            label = f"{owner.split(':')[-1]}.{name}"
            if isinstance(target, type):
                self._replace(target, name, None, label)
            else:
                self._replace_function(target, name, label)
            self.part_keys.append(key)
            self.part_labels.append(label)

    def _replace_function(self, module: ModuleType, name: str, label: str) -> None:
        """Shim a module's function, and every package module's global bound to it.

        Package modules import functions by name (``from ... import emit``), so
        patching the defining module alone would miss their calls.
        """
        original = getattr(module, name)
        shim = self._shim(original, None, label)
        setattr(module, name, shim)
        for loaded in list(sys.modules.values()):
            namespace = getattr(loaded, "__dict__", None)
            if not getattr(loaded, "__name__", "").startswith("rulechef_trace") or not namespace:
                continue
            for key, value in list(namespace.items()):
                if value is original:
                    setattr(loaded, key, shim)

    def _replace(self, cls: type, name: str, owner: str | None, label: str) -> None:
        raw = cls.__dict__[name]
        if isinstance(raw, (staticmethod, classmethod)):
            setattr(cls, name, type(raw)(self._shim(raw.__func__, owner, label)))
        elif callable(raw):
            setattr(cls, name, self._shim(raw, owner, label))

    def _shim(self, original: Callable[..., Any], owner: str | None, label: str) -> Any:
        """A wrapper entering a frame of ``owner`` (None: a part, owned by its caller)."""
        if owner == HOST:
            shim = self._host_shim(original, label)
        elif owner == PACKAGE:
            shim = self._package_shim(original, label)
        else:
            shim = self._part_shim(original, label)
        self._shims.add(shim)
        return shim

    def _host_shim(self, original: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(original)
        def host(*args: Any, **kwargs: Any) -> Any:
            ledger = self.ledger
            if ledger is None:
                return original(*args, **kwargs)
            ledger.push(BENCH, "adopt")
            args, kwargs = self._callbacks(args, kwargs)
            adopted = self._adopt()
            ledger.swap(HOST, label)
            try:
                return original(*args, **kwargs)
            finally:
                ledger.swap(BENCH, "restore")
                _restore(adopted)
                ledger.pop()

        return host

    def _package_shim(self, original: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(original)
        def package(*args: Any, **kwargs: Any) -> Any:
            ledger = self.ledger
            if ledger is None:
                return original(*args, **kwargs)
            ledger.push(PACKAGE, label)
            try:
                return original(*args, **kwargs)
            finally:
                ledger.pop()

        return package

    def _part_shim(self, original: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(original)
        def part(*args: Any, **kwargs: Any) -> Any:
            ledger = self.ledger
            if ledger is None or ledger.top in (None, BENCH):
                return original(*args, **kwargs)
            ledger.push(ledger.top, label)
            try:
                return original(*args, **kwargs)
            finally:
                ledger.pop()

        return part

    # -- package code reached by other ways than the class attributes ----------------------

    def _callbacks(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Package functions passed into rulechef, wrapped as package frames."""
        if any(map(self.is_package_function, args)):
            args = tuple(self._as_package(a, "callback") for a in args)
        if any(map(self.is_package_function, kwargs.values())):
            kwargs = {k: self._as_package(v, "callback") for k, v in kwargs.items()}
        return args, kwargs

    def _as_package(self, value: Any, kind: str) -> Any:
        if not self.is_package_function(value):
            return value
        return self._shim(value, PACKAGE, f"{kind} {getattr(value, '__qualname__', '?')}")

    def _adopt(self) -> list[tuple[dict[str, Any], str, Any, Any]]:
        """Package functions set on watched instances, replaced by package shims."""
        adopted = []
        for obj in self.watched:
            own = getattr(obj, "__dict__", None) or {}
            for name, value in list(own.items()):
                if self.is_package_function(value):
                    label = f"{type(obj).__name__}.{name} (instance)"
                    shim = self._shim(value, PACKAGE, label)
                    own[name] = shim
                    adopted.append((own, name, value, shim))
        return adopted

    # -- one accounted run ---------------------------------------------------------------

    @contextmanager
    def package_wrappers(self) -> Iterator[int]:
        """While the package's hooks are installed, wrap each in a package shim.

        Yields:
            How many hooked methods carried a package wrapper.
        """
        wrapped = []
        for cls, name, host in self.hooked:
            current = cls.__dict__.get(name)
            if current is host or current is None:
                continue  # the package did not hook this one now
            inner = getattr(current, "__func__", current)
            shim = self._shim(inner, PACKAGE, f"{cls.__name__}.{name}")
            replacement = type(current)(shim) if isinstance(current, staticmethod) else shim
            setattr(cls, name, replacement)
            wrapped.append((cls, name, current))
        try:
            yield len(wrapped)
        finally:
            for cls, name, current in wrapped:
                setattr(cls, name, current)

    @contextmanager
    def frame(self, owner: str, label: str) -> Iterator[None]:
        """An explicit frame (``record_trace`` enter and exit)."""
        assert self.ledger is not None
        self.ledger.push(owner, label)
        try:
            yield
        finally:
            self.ledger.pop()


def _restore(adopted: list[tuple[dict[str, Any], str, Any, Any]]) -> None:
    for own, name, value, shim in adopted:
        if own.get(name) is shim:
            own[name] = value


def _split_key(key: str) -> tuple[str, str]:
    """``"module:Class.attr"`` into ``("module:Class", "attr")``."""
    owner, _, name = key.rpartition(".")
    return owner, name


def _resolve(owner: str) -> Any:
    """A module (``"os"``) or a class in it (``"inspect:Signature"``)."""
    module_name, _, class_name = owner.partition(":")
    module: ModuleType = importlib.import_module(module_name)
    return getattr(module, class_name) if class_name else module


def discover_hooks(signals: Sequence[Any], modules: Sequence[ModuleType]) -> list[str]:
    """The rulechef class attributes the package replaces while somebody listens.

    Connects a no-op receiver to every signal, compares the classes of
    ``modules`` before and after, and disconnects again.

    Raises:
        RuntimeError: When nothing changed, or something stayed changed.
    """
    from .scenarios import changed_attributes, class_snapshot

    before = class_snapshot(modules)
    for signal in signals:
        signal.connect(noop, weak=False)
    during = class_snapshot(modules)
    for signal in signals:
        signal.disconnect(noop)
    hooked = changed_attributes(before, during)
    left = changed_attributes(before, class_snapshot(modules))
    if not hooked or left:
        raise RuntimeError(f"hook discovery: {len(hooked)} hooked, still changed: {left}")
    return hooked


def noop(sender: Any, **payload: Any) -> None:
    """A receiver that does nothing (configuration D, hook discovery)."""


class EventProbe:
    """A receiver on every signal that tells whether each event came from a package frame."""

    def __init__(self, accounting: Accounting) -> None:
        self.accounting = accounting
        self.inside = 0
        self.outside = 0

    def __call__(self, sender: Any, **payload: Any) -> None:
        """Receiver: count the event as inside or outside a package frame."""
        ledger = self.accounting.ledger
        if ledger is not None and ledger.top == PACKAGE:
            self.inside += 1
        else:
            self.outside += 1

    def connect(self, signals: Sequence[Any]) -> None:
        """Connect to every signal (weak=False)."""
        for signal in signals:
            signal.connect(self, weak=False)

    def disconnect(self, signals: Sequence[Any]) -> None:
        """Disconnect from every signal."""
        for signal in signals:
            signal.disconnect(self)


def calibrate(accounting: Accounting, rounds: int = 20000) -> dict[str, float]:
    """What the shims add to the package's figure, per crossing, in microseconds.

    A package shim around a function that calls a host shim around a no-op
    is charged only the shims' own call overhead; so is a part shim called
    from a package frame.
    """

    def inner() -> None:
        return None

    host = accounting._host_shim(inner, "calibration host")
    package = accounting._package_shim(lambda: host(), "calibration")
    part = accounting._part_shim(inner, "calibration part")
    outer = accounting._package_shim(lambda: [part() for _ in range(10)], "calibration parts")
    saved, watched = accounting.ledger, accounting.watched
    accounting.ledger, accounting.watched = Ledger(), []
    try:
        for _ in range(rounds):
            package()
        for _ in range(rounds // 10):
            outer()
        ledger = accounting.ledger
        hook, parts = (PACKAGE, "calibration"), (PACKAGE, "calibration parts")
    finally:
        accounting.ledger, accounting.watched = saved, watched
    cold = _calibrate_cold(accounting, package, accounting._package_shim(part, "cold parts"))
    return {
        "per_hook_us": ledger.wall[hook] / rounds * 1e6,
        "per_part_us": ledger.wall[parts] / rounds * 1e6,
        "per_hook_cpu_us": ledger.cpu[hook] / rounds * 1e6,
        "per_part_cpu_us": ledger.cpu[parts] / rounds * 1e6,
        **cold,
    }


def _calibrate_cold(
    accounting: Accounting, hooked: Callable[[], Any], parted: Callable[[], Any], rounds: int = 60
) -> dict[str, float]:
    """The same crossings, each made right after a burst of unrelated interpreter work.

    In a run every crossing follows rulechef's own work, and on a shared
    virtual machine the first instructions after such work run several times
    slower than in a tight loop; so a crossing there costs the shims more
    than :func:`calibrate`'s loop shows. This is the bound for that case.
    """
    words = [f"w{i} x{i % 7} y{i % 13}" for i in range(4000)]
    patterns = [re.compile(rf"\bx{k}\b") for k in range(7)]
    cpu = {"hook": 0.0, "part": 0.0}
    saved, watched = accounting.ledger, accounting.watched
    accounting.watched = []
    try:
        for _ in range(rounds):
            for key, crossing in (("hook", hooked), ("part", parted)):
                _busy(words, patterns)
                accounting.ledger = ledger = Ledger()
                crossing()
                cpu[key] += sum(v for (o, _), v in ledger.cpu.items() if o == PACKAGE)
    finally:
        accounting.ledger, accounting.watched = saved, watched
    # A cold part crossing is measured inside its own cold package frame: take that off.
    per_hook = cpu["hook"] / rounds * 1e6
    return {
        "per_hook_cold_cpu_us": per_hook,
        "per_part_cold_cpu_us": max(0.0, cpu["part"] / rounds * 1e6 - per_hook / 2),
    }


def _busy(words: list[str], patterns: list[re.Pattern[str]]) -> int:
    """Unrelated work, like rulechef's matching between two hooked calls (a few ms)."""
    return sum(1 for w in words for p in patterns if p.search(w))
