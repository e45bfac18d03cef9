"""TraceRecorder: a detachable subscriber that turns a run's events into a trace file."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from rulechef_trace import signals as sig
from rulechef_trace._record_facts import (
    add_cost,
    changed_since,
    check_prices,
    pruned_run,
    unseen_names,
)
from rulechef_trace._serialise import dumps_any
from rulechef_trace._serialise import serialise as _serialise
from rulechef_trace._text import describe_exception
from rulechef_trace.trace import (
    FORMAT,
    VERSION,
    Trace,
    build_trace,
    file_stem,
    history_dir,
    trace_path,
)

__all__ = ["TraceRecorder", "record_trace", "write_atomic", "write_once"]

logger = logging.getLogger("rulechef_trace")


class TraceRecorder:
    """Collect the events of every run of one chef (or of all chefs) into traces.

    When a run ends, in any way, its events are ordered by ``seq``, assembled
    into a v1 trace, appended to :attr:`traces` and, unless ``write=False``,
    written atomically to ``<storage>/<dataset>.trace.json`` (the latest
    learning run) and to ``<storage>/<dataset>.traces/`` (every run, kept).

    Args:
        chef: The ``RuleChef`` (or its ``LearningPipeline``) to record; None
            records every chef in the process.
        storage_path: Folder for the files; defaults to the chef's own
            ``storage_path``.
        write: False keeps traces in memory only.
        history: False writes only the latest-run file.
        stream: True also appends each event, as it happens, to
            ``<storage>/<dataset>.trace.jsonl`` (flushed per event), so a killed
            process leaves a readable partial trace.
        live: True writes the story to standard error as the run goes (on a
            terminal with a status line redrawn in place); a text stream writes
            it there instead; a :class:`rulechef_trace.live.LiveView` is used as is.
        prices: USD per million tokens by model name, ``{"gpt-4o-mini": (0.15,
            0.60)}`` (input, output, and optionally cached input, which is
            otherwise priced as input). Each ``llm_called`` event then has a
            ``cost`` and ``finalized.llm.cost`` sums them; a model without a
            price makes its calls' cost, and the run's, ``None``. No prices
            ship with the package: take them from your provider's price page.

    Each event is serialised the moment the recorder receives it, so a
    receiver that later changes the payload it got (or anything inside it)
    cannot change the record; the trace holds exactly what the file holds.

    Attributes:
        traces: Every trace recorded so far, oldest first.
        paths: Every file written so far (latest-run and history files).
        write_errors: How many writes failed (each logged once as a warning).
        coerced_values: How many values, over all runs, could not be written
            as they were (ints beyond 64 bits, non-string keys, nesting over
            200 levels, objects JSON has no type for) and were written as
            strings; each trace counts its own in ``run.stats.coerced_values``.
    """

    def __init__(
        self,
        chef: Any = None,
        *,
        storage_path: str | Path | None = None,
        write: bool = True,
        history: bool = True,
        stream: bool = False,
        live: bool | IO[str] = False,
        prices: Mapping[str, Any] | None = None,
    ):
        self.prices = check_prices(prices)
        if stream and not write:
            raise ValueError(
                "stream=True writes a .trace.jsonl file; it cannot go with write=False"
            )
        self.chef = getattr(chef, "_chef", chef)
        self.storage_path = Path(storage_path) if storage_path is not None else None
        self.write = write
        self.history = history
        self.stream = stream
        self.live = _live_view(live)
        self.traces: list[Trace] = []
        self.paths: list[Path] = []
        self.write_errors = 0
        self.coerced_values = 0
        self._lock = threading.Lock()
        self._open = False  # under _lock: events arriving after detach() are ignored
        self._runs: dict[str, _Run] = {}
        self._streams: dict[str, IO[bytes]] = {}
        self._costs: dict[str, list[float | None]] = {}
        # (folder, dataset) -> (run id, final rule ids) of the last trace this recorder kept,
        # so a run's start need not read it back from disk.
        self._kept: dict[tuple[Path, str], tuple[str, list[str]]] = {}
        self._subscription = sig.Subscription(self._receive, self.chef)

    @property
    def last(self) -> Trace | None:
        """The most recent trace, or None."""
        return self.traces[-1] if self.traces else None

    @property
    def attached(self) -> bool:
        """Whether the recorder currently receives events."""
        return self._subscription.connected

    def attach(self) -> TraceRecorder:
        """Connect to every signal (idempotent). Returns the recorder."""
        with self._lock:
            self._open = True
        self._subscription.connect()
        return self

    def detach(self) -> None:
        """Disconnect from every signal (idempotent).

        Safe from any thread, also while runs go on: a run that already
        delivered its ``finalized`` event is recorded; a run still in progress
        is dropped with one warning (its stream, if any, stays as written).
        """
        if not self._subscription.connected:
            return
        self._subscription.disconnect()
        with self._lock:
            self._open = False
            dropped = len(self._runs)
            streams = list(self._streams.values())
            self._streams.clear()
            self._runs.clear()
        if dropped:
            logger.warning(
                "rulechef_trace: recorder detached with %d run(s) in progress; "
                "they are not recorded",
                dropped,
            )
        for stream in streams:
            try:
                stream.close()
            except Exception as exc:
                self._write_failed("could not close the stream", exc)

    def __enter__(self) -> TraceRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _receive(self, signal_name: str, sender: Any, /, **payload: Any) -> None:
        if next(iter(payload), None) == "type" and payload["type"] == signal_name:
            event = payload  # as emitted: "type" first; this call's own dict, no copy needed
        else:
            event = {"type": signal_name, **payload}
        if self.prices is not None or signal_name == "run_started":
            self._add_facts(event, sender)
        # Serialised now, whatever a receiver after this one does to the payload; unless no
        # receiver comes after it (then nobody else holds the payload: serialised at the end).
        line: bytes | dict[str, Any] = event
        coerced = 0
        if self.stream or not sig.delivered_alone():
            line, coerced = _serialise(event)
        run_id = str(payload.get("run_id"))
        with self._lock:
            if not self._open:
                return  # delivered while detach() ran in another thread
            run = self._runs.get(run_id)
            if run is None:
                if signal_name != "run_started":
                    return  # a run already under way when the recorder attached
                run = self._runs[run_id] = _Run()
            run.coerced += coerced
            if signal_name == "finalized":
                del self._runs[run_id]
            if isinstance(line, bytes) and self.stream:
                if signal_name == "finalized":
                    line = orjson.dumps(_with_count(orjson.loads(line), run.coerced))
                self._stream_line(run_id, sender, event, line)
            run.lines.append(line)
        if self.live is not None:
            self._show_live(event)
        if signal_name == "finalized":
            self._finish(run_id, sender, run)

    def _add_facts(self, event: dict[str, Any], sender: Any) -> None:
        """What this recorder knows besides the payload: costs, changes since its last trace."""
        run_id = str(event.get("run_id"))
        if event["type"] == "run_started" and self.write and self.history:
            rules = event.get("rules")
            folder = self._folder(sender, event)
            dataset = str(event.get("dataset") or "default")
            changed = changed_since(
                folder,
                dataset,
                rules if isinstance(rules, list) else [],
                self._kept.get((folder, dataset)),
            )
            if changed is not None:
                event["changed_since"] = changed
                names = event.get("rule_names")  # the removed rules' names, from that trace
                event["rule_names"] = unseen_names(folder, dataset, changed, names)
            after = pruned_run(folder, dataset) if event.get("kind") == "rank_rules" else None
            if after is not None:
                event["after"] = after
        if self.prices is not None:
            add_cost(event, self.prices, self._costs.setdefault(run_id, []))
            if event["type"] == "finalized":
                self._costs.pop(run_id, None)

    def _finish(self, run_id: str, sender: Any, run: _Run) -> None:
        try:
            # Parsed here, all at once: cheaper than event by event amid the run.
            records = orjson.loads(b"[" + b",".join(run.serialised()) + b"]")
            if records and records[-1].get("type") == "finalized":
                _with_count(records[-1], run.coerced)
            trace = build_trace(records)
        except Exception as exc:  # never into the run: the events themselves were odd
            self._write_failed("could not assemble the trace", exc)
            return
        with self._lock:
            self.traces.append(trace)
            self.coerced_values += run.coerced
            stream = self._streams.pop(run_id, None)
        # The trace first: a stream whose close() fails must not cost the record.
        if self.write:
            self._write(trace, sender)
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:
                self._write_failed("could not close the stream", exc)

    def _folder(self, sender: Any, trace_run: dict[str, Any]) -> Path:
        if self.storage_path is not None:
            return self.storage_path
        return Path(getattr(sender, "storage_path", None) or trace_run.get("storage_path") or ".")

    def _write(self, trace: Trace, sender: Any) -> None:
        run = trace.run
        folder = self._folder(sender, run)
        dataset = str(run.get("dataset") or "default")
        data = dumps_any(trace)
        targets = []
        kept = None
        if self.history:
            stamp = "".join(c for c in str(run.get("started_at") or "") if c.isdigit())
            name = (
                f"{stamp[:8]}T{stamp[8:17]}Z_{run.get('kind')}_{str(run.get('id'))[:8]}.trace.json"
            )
            kept = history_dir(folder, dataset) / name
            targets.append(kept)
        if run.get("kind") == "learn":
            targets.append(trace_path(folder, dataset))
        if not targets:
            return
        try:
            written, failed = write_once(targets, data)
        except Exception as exc:  # OSError, or ValueError for a NUL in a path
            written, failed = [], [(t, exc) for t in targets]
        with self._lock:
            self.paths.extend(written)
            if kept is not None and kept in written:
                final = [r["id"] for r in trace["final"]["rules"]]
                self._kept[(folder, dataset)] = (str(run.get("id")), final)
        if failed:
            names = ", ".join(str(t) for t, _ in failed)
            self._write_failed(f"could not write {names}", failed[0][1])

    def _write_one(self, target: Path, data: bytes) -> Exception | None:
        try:
            write_atomic(target, data)
        except Exception as exc:  # OSError, or ValueError for a NUL in a path
            return exc
        with self._lock:
            self.paths.append(target)
        return None

    def _stream_line(self, run_id: str, sender: Any, event: dict[str, Any], line: bytes) -> None:
        """Append one event to the run's stream (called under the lock: detach waits)."""
        try:
            stream = self._streams.get(run_id)
            if stream is None and event["type"] == "run_started":
                stream = self._streams[run_id] = self._open_stream(sender, event)
            if stream is not None:
                stream.write(line + b"\n")
                stream.flush()
        except Exception as exc:  # any fault in writing is a write error, never the run's
            self._write_failed("could not stream an event", exc, locked=True)

    def _show_live(self, event: dict[str, Any]) -> None:
        try:
            self.live.event(event)
        except Exception as exc:  # the live view never stops the run or its record
            logger.warning("rulechef_trace: live view failed (%s)", _reason(exc))

    def _write_failed(self, what: str, exc: BaseException, *, locked: bool = False) -> None:
        if locked:
            self.write_errors += 1
        else:
            with self._lock:
                self.write_errors += 1
        logger.warning(
            "rulechef_trace: %s (%s); the trace stays in recorder.traces", what, _reason(exc)
        )

    def _open_stream(self, sender: Any, start: dict[str, Any]) -> IO[bytes]:
        folder = self._folder(sender, start)
        folder.mkdir(parents=True, exist_ok=True)
        dataset = str(start.get("dataset") or "default")
        suffix = "" if start.get("kind") == "learn" else f".{start.get('kind')}"
        path = folder / f"{file_stem(dataset)}{suffix}.trace.jsonl"
        # O_NOFOLLOW: a symlink planted at the stream's path is refused, never followed.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        stream = os.fdopen(os.open(path, flags, 0o666), "wb")
        stream.write(orjson.dumps({"format": FORMAT, "version": VERSION, "stream": True}) + b"\n")
        return stream


def _live_view(live: bool | IO[str]) -> Any:
    if live is False or live is None:
        return None
    from rulechef_trace.live import LiveView

    if isinstance(live, LiveView):
        return live
    return LiveView() if live is True else LiveView(live)


def _reason(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else describe_exception(exc, limit=200)


@dataclass
class _Run:
    """One run in progress: its events, and how many values were coerced to strings.

    An event is kept as JSON bytes, or as the recorder's own payload dict while
    no other receiver could change it (serialised when the run ends).
    """

    lines: list[bytes | dict[str, Any]] = field(default_factory=list)
    coerced: int = 0

    def serialised(self) -> list[bytes]:
        """Every event as JSON bytes, in the order received (coercions counted)."""
        out = []
        for line in self.lines:
            if isinstance(line, dict):
                line, coerced = _serialise(line)
                self.coerced += coerced
            out.append(line)
        return out


def _with_count(record: dict[str, Any], coerced: int) -> dict[str, Any]:
    """The finalized record, its ``stats`` given the run's count of coerced values (in place)."""
    stats = record.get("stats")
    record["stats"] = {**(stats if isinstance(stats, dict) else {}), "coerced_values": coerced}
    return record


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that a reader never sees a partial file.

    A uniquely named temporary file in the same folder is written, flushed,
    fsynced and renamed over the target; concurrent writers never share it.
    A mode the user gave the old file (e.g. 600) is kept.

    Raises:
        OSError: when the folder cannot be created or written.
    """
    name = os.fspath(target)
    tmp = _write_temp(name, data)
    try:
        os.replace(tmp, name)
    except BaseException:
        _discard(tmp)
        raise
    _fsync_folder(os.path.dirname(name))


def write_once(targets: list[Path], data: bytes) -> tuple[list[Path], list[tuple[Path, Exception]]]:
    """Write ``data`` under every name in ``targets``: one write, one fsync.

    The last target is replaced atomically (as :func:`write_atomic` does); the
    others are new names (history files) given to the same fsynced file by a
    hard link, so every name appears complete or not at all. Where a link
    cannot be made (another file system, no hard links, the name taken) that
    name gets its own atomic copy. Each folder touched is fsynced once.

    The names share one inode: an in-place edit of one shows in the others.
    The recorder never edits a trace in place and readers never write.

    Returns:
        The names written, and each name that failed with its exception.

    Raises:
        OSError: when the data could not be written at all (nothing is named).
    """
    *links, last = targets
    # Plain strings from here on: Path operations cost more than the syscalls they name.
    last_name = os.fspath(last)
    tmp = _write_temp(last_name, data)
    written: list[Path] = []
    folders: dict[str, None] = {}
    failed: list[tuple[Path, Exception]] = []
    renamed = False
    try:
        for target in links:
            name = os.fspath(target)
            try:
                _link_or_copy(tmp, name, data)
                written.append(target)
                folders[os.path.dirname(name)] = None
            except (OSError, ValueError) as exc:
                failed.append((target, exc))
        try:
            os.replace(tmp, last_name)
            renamed = True
            written.append(last)
            folders[os.path.dirname(last_name)] = None
        except (OSError, ValueError) as exc:
            failed.append((last, exc))
    finally:
        if not renamed:  # once renamed, the temporary name is gone
            _discard(tmp)
    for folder in folders:
        _fsync_folder(folder)
    return written, failed


def _link_or_copy(tmp: str, target: str, data: bytes) -> None:
    folder = os.path.dirname(target)
    try:
        try:
            # Linked at once: a missing folder says so, and is then made (no stat first).
            os.link(tmp, target, follow_symlinks=False)  # never follows a link planted at target
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            os.link(tmp, target, follow_symlinks=False)
    except OSError:
        write_atomic(Path(target), data)  # EXDEV, EPERM (no hard links), EEXIST: a copy instead


def _write_temp(target: str, data: bytes) -> str:
    """A fsynced temporary file beside ``target`` holding ``data``, in the old file's mode."""
    fd, tmp = _create_temp(target)
    try:
        try:
            try:  # keep a mode the user set (e.g. 600)
                mode = os.stat(target, follow_symlinks=False).st_mode
            except FileNotFoundError:
                pass
            else:
                os.chmod(tmp, stat.S_IMODE(mode))
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than it is given)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _create_temp(target: str) -> tuple[int, str]:
    """Create a fresh temporary file beside ``target``.

    A random name with O_EXCL: no two writers ever share one. Mode 0666 lets
    the umask decide the permissions, as for any ordinary file.
    """
    folder = os.path.dirname(target)
    # Not derived from the target's name: a long dataset name must still fit.
    tmp = os.path.join(folder, f".rct-{os.urandom(16).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(tmp, flags, 0o666), tmp
    except FileNotFoundError:  # the folder is new: made on demand, not stat'ed every time
        os.makedirs(folder or ".", exist_ok=True)
        return os.open(tmp, flags, 0o666), tmp


def _fsync_folder(folder: str) -> None:
    # On POSIX the rename itself is durable only once its folder is synced.
    with contextlib.suppress(OSError):
        fd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def record_trace(
    chef: Any,
    *,
    storage_path: str | Path | None = None,
    write: bool = True,
    history: bool = True,
    stream: bool = False,
    strict: bool | None = None,
    otel: bool = False,
    live: bool | IO[str] = False,
    prices: Mapping[str, Any] | None = None,
) -> Iterator[TraceRecorder]:
    """Record every run of ``chef`` inside the block; detach on exit, even on error.

    Args:
        chef: A ``RuleChef`` or its ``LearningPipeline``.
        storage_path: Folder for trace files; defaults to the chef's.
        write: False keeps traces in memory only (``recorder.traces``).
        history: False writes only ``<dataset>.trace.json``.
        stream: True also streams events to ``<dataset>.trace.jsonl``.
        strict: True re-raises receiver and hook errors inside the block
            (for tests); None leaves the ``RULECHEF_TRACE_STRICT`` default.
        otel: True also sends each run as OpenTelemetry spans to the globally
            configured tracer provider (needs the ``otel`` extra).
        live: True writes the story to standard error as the run goes.
        prices: USD per million tokens by model (see :class:`TraceRecorder`).

    Yields:
        The attached :class:`TraceRecorder`.
    """
    recorder = TraceRecorder(
        chef,
        storage_path=storage_path,
        write=write,
        history=history,
        stream=stream,
        live=live,
        prices=prices,
    )
    # Attached first, so that a missing extra leaves nothing connected.
    bridge = _attach_otel(recorder.chef) if otel else None
    recorder.attach()
    try:
        if strict is None:
            yield recorder
        else:
            with sig.strict_mode(strict):
                yield recorder
    finally:
        recorder.detach()
        if bridge is not None:
            bridge.detach()


def _attach_otel(chef: Any) -> Any:
    # Imported here: rulechef_trace itself never imports opentelemetry.
    from rulechef_trace.otel import attach

    return attach(chef)
