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
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
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
    status = subprocess.call([program, *command[1:]], env=env)
    return 128 - status if status < 0 else status


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
