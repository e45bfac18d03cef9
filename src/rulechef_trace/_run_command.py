"""``rulechef-trace run -- COMMAND``: trace a program that never imports rulechef_trace.

The command runs as a child process whose Python imports
``rulechef_trace/_autorun/sitecustomize.py`` at start-up (the folder is put
first on ``PYTHONPATH``); that module calls :func:`start_from_environment`,
which attaches one :class:`~rulechef_trace.recorder.TraceRecorder` for every
chef of the program, detached when the program exits. What it records and
where is passed in ``RULECHEF_TRACE_RUN_*`` variables. The command's exit
status is passed through.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger("rulechef_trace")

_FOLDER = Path(__file__).resolve().parent / "_autorun"
_OPTIONS = "RULECHEF_TRACE_RUN_OPTIONS"


def run_command(
    command: Sequence[str],
    *,
    storage_path: str | None = None,
    stream: bool = False,
    live: bool = False,
) -> int:
    """Run ``command`` with every chef traced; return its exit status.

    A child killed by a signal gives 128 + the signal's number, as a shell does.
    While it runs, Ctrl-C is the child's to handle (the wrapper ignores it) and
    a SIGTERM sent to the wrapper is passed on to it.

    Raises:
        FileNotFoundError: the command's program does not exist.
    """
    if not command:
        raise ValueError("no command given: rulechef-trace run -- COMMAND [ARGS...]")
    program = shutil.which(command[0]) or command[0]
    if not Path(program).exists():
        raise FileNotFoundError(f"no such program: {command[0]}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_FOLDER), env.get("PYTHONPATH")) if p)
    env["RULECHEF_TRACE_RUN"] = "1"
    env[_OPTIONS] = json.dumps({"storage_path": storage_path, "stream": stream, "live": live})
    with subprocess.Popen([program, *command[1:]], env=env) as child, _signals_to(child):
        status = child.wait()
    return 128 - status if status < 0 else status


@contextlib.contextmanager
def _signals_to(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """While ``child`` runs, let it decide how to stop: the program's exit status is the answer.

    Ctrl-C reaches the whole foreground process group, the child included, so
    the wrapper ignores SIGINT (passing it on would deliver it twice, and a
    second Ctrl-C makes a server such as uvicorn quit without its graceful
    shutdown). A SIGTERM sent to the wrapper alone is passed on to the child.
    Signal handlers can only be set in the main thread; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, _: child.send_signal(signum)),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python; the default is the closest we can restore.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def start_from_environment() -> None:
    """Attach a recorder for every chef, as ``rulechef-trace run`` asked (child side)."""
    from rulechef_trace.recorder import TraceRecorder

    options = json.loads(os.environ.get(_OPTIONS) or "{}")
    recorder = TraceRecorder(
        None,
        storage_path=options.get("storage_path"),
        stream=bool(options.get("stream")),
        live=bool(options.get("live")),
    ).attach()
    atexit.register(recorder.detach)
    logger.debug("rulechef-trace run: recording every chef of %s", sys.argv[0] or "python")
