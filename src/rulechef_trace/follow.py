"""Follow a streamed run (``show --follow``): print each step as it arrives.

PATH is a ``.trace.jsonl`` stream or a storage folder; in a folder the newest
stream is followed, waiting for one to appear. Polling is bounded (a short
sleep between reads), so Ctrl-C and the run's end are noticed at once.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from rulechef_trace._terminal import fit_for
from rulechef_trace._text import clean, shorten
from rulechef_trace.live import story_lines
from rulechef_trace.render import _footer, _header
from rulechef_trace.trace import (
    FORMAT,
    Trace,
    TraceError,
    build_trace,
    current_max_bytes,
    event_problem,
)

__all__ = ["EXIT_INTERRUPTED", "follow"]

EXIT_INTERRUPTED = 130
_STREAM_GLOB = "*.trace.jsonl"
_CHUNK = 1 << 20  # bytes read per poll: a long stream is caught up chunk by chunk


class _Tail:
    """Read the complete lines appended to one file since the last read."""

    def __init__(self, path: Path, max_line: int | None = None):
        self.path = path
        self.max_line = current_max_bytes() if max_line is None else max_line
        self._offset = 0
        self._partial = b""
        self._inode: int | None = None

    def read(self) -> tuple[list[bytes], bool]:
        """Return the new complete lines (at most one chunk), and whether the file restarted.

        Raises:
            TraceError: when the path is not a regular file (a FIFO would block
                the reader), or one line is longer than the read limit.
        """
        handle = _open_regular(self.path)
        if handle is None:
            return [], False
        with handle:
            info = os.fstat(handle.fileno())
            return self._read_from(handle, info)

    def _read_from(self, handle: IO[bytes], info: os.stat_result) -> tuple[list[bytes], bool]:
        restarted = False
        if (self._inode is not None and info.st_ino != self._inode) or info.st_size < self._offset:
            self._offset, self._partial, restarted = 0, b"", True  # a new run truncated it
        self._inode = info.st_ino
        if info.st_size == self._offset:
            return [], restarted
        handle.seek(self._offset)
        data = handle.read(_CHUNK)
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if len(self._partial) > self.max_line:
            raise TraceError(f"a line longer than {self.max_line:,} bytes", self.path)
        return [c for c in chunks if c.strip()], restarted

    @property
    def behind(self) -> bool:
        """Whether the file holds bytes not read yet (read again without sleeping)."""
        try:
            return self.path.stat().st_size > self._offset
        except OSError:
            return False


def _open_regular(path: Path) -> IO[bytes] | None:
    """Open a file to read, or None while it does not exist.

    Raises:
        TraceError: when it is not a regular file (a FIFO would block the reader).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TraceError("not a regular file; only a .trace.jsonl stream is followed", path)
    return os.fdopen(fd, "rb")


def _newest_stream(folder: Path, newer_than: float | None) -> Path | None:
    streams = []
    for p in folder.glob(_STREAM_GLOB):
        try:
            info = p.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):  # a FIFO named *.trace.jsonl is never opened
            streams.append((info.st_mtime, p))
    if not streams:
        return None
    mtime, path = max(streams)
    if newer_than is not None and mtime < newer_than and _has_ended(path):
        return None  # the newest stream there is an old, finished run: wait for a new one
    return path


def _has_ended(path: Path) -> bool:
    try:
        handle = _open_regular(path)
        if handle is None:
            return False
        with handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _CHUNK))  # the last line is in the last chunk
            lines = handle.read().splitlines()
    except (OSError, TraceError):
        return False
    return bool(lines) and b'"type":"finalized"' in lines[-1]


class _Follower:
    def __init__(
        self,
        out: IO[str],
        *,
        poll: float,
        quiet_after: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ):
        self.out = out
        self.poll = poll
        self.quiet_after = quiet_after
        self.clock = clock
        self.sleep = sleep
        self.events: list[dict[str, Any]] = []
        self.last_event = clock()
        self.told_quiet = False

    def say(self, *lines: str) -> None:
        self.out.write(fit_for("".join(clean(line) + "\n" for line in lines), self.out))
        self.out.flush()

    def wait_for_stream(self, folder: Path) -> Path:
        started = time.time()
        told = False
        while True:
            path = _newest_stream(folder, started)
            if path is not None:
                return path
            if not told:
                self.say(f"waiting for a run to stream into {folder} ...")
                told = True
            self.sleep(self.poll)

    def follow_file(self, path: Path) -> int:
        tail = _Tail(path)
        told = False
        while True:
            if not path.exists() and not told:
                self.say(f"waiting for {path} to appear ...")
                told = True
            lines, restarted = tail.read()
            if restarted:
                self.events = []
                self.say("", "(the stream was restarted by a new run)")
            for line in lines:
                if self._line(path, line):
                    return 0
            self._check_quiet()
            if not tail.behind:
                self.sleep(self.poll)

    def _line(self, path: Path, raw: bytes) -> bool:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TraceError("a line of the stream is not valid JSON", path) from None
        if not isinstance(obj, dict):
            raise TraceError("a line of the stream is not a JSON object", path)
        if "type" not in obj:
            if obj.get("format") != FORMAT:
                raise TraceError("not a rulechef-trace stream", path)
            return False  # the stream's header line
        problem = event_problem(obj)
        if problem is not None:  # what validate() would refuse is not shown either
            raise TraceError(f"event seq {shorten(obj.get('seq'), 20)}: {problem}", path)
        self.events.append(obj)
        self.last_event = self.clock()
        self.told_quiet = False
        trace = self._trace()
        if obj.get("type") == "run_started" and trace is not None:
            self.say(*_header(trace))
        self.say(*story_lines(self.events, obj))
        if obj.get("type") == "finalized":
            if trace is not None:
                self.say(*_footer(trace))
            return True
        return False

    def _trace(self) -> Trace | None:
        try:
            return build_trace(self.events)
        except TraceError:
            return None

    def _check_quiet(self) -> None:
        idle = self.clock() - self.last_event
        if self.events and not self.told_quiet and idle >= self.quiet_after:
            self.say(f"      still running, last event {idle:.0f} s ago")
            self.told_quiet = True


def follow(
    path: str | Path,
    out: IO[str],
    *,
    poll: float = 0.1,
    quiet_after: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print a streamed run's story as it grows; return the exit status.

    Args:
        path: A ``.trace.jsonl`` stream (it may not exist yet) or a storage
            folder, where the newest stream is followed.
        out: Where the story goes (the CLI passes standard output).
        poll: Seconds between reads.
        quiet_after: Seconds without an event before "still running, last
            event N s ago" is shown (once per quiet spell).
        clock: Monotonic clock, for tests.
        sleep: Sleep function, for tests.

    Returns:
        0 once the run's ``finalized`` event arrived; 130 on Ctrl-C.

    Raises:
        TraceError: when the stream is not a rulechef-trace stream.
    """
    follower = _Follower(out, poll=poll, quiet_after=quiet_after, clock=clock, sleep=sleep)
    target = Path(path)
    try:
        if target.is_dir():
            target = follower.wait_for_stream(target)
            follower.say(f"following {target}")
        return follower.follow_file(target)
    except KeyboardInterrupt:
        follower.say("", "stopped following (the run, if any, goes on)")
        return EXIT_INTERRUPTED
