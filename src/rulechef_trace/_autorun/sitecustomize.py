"""Started by ``rulechef-trace run``: attach a recorder to every chef of this program.

``rulechef-trace run -- COMMAND`` puts this folder first on ``PYTHONPATH``, so
Python imports this module at start-up, before the program's own code. It
attaches the recorder the environment describes, then hands over to the
``sitecustomize`` the program would have had without us (if any). It never
stops the program: a failure is one line on standard error.
"""

import contextlib
import importlib
import os
import sys


def _start() -> None:
    try:
        from rulechef_trace._run_command import start_from_environment

        start_from_environment()
    except Exception as exc:  # the traced program runs anyway
        sys.stderr.write(f"rulechef-trace run: tracing is off: {type(exc).__name__}: {exc}\n")


def _chain() -> None:
    # Hand over to the sitecustomize that this one shadows.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.modules.pop("sitecustomize", None)
    with contextlib.suppress(ImportError):  # there was none
        importlib.import_module("sitecustomize")


if os.environ.get("RULECHEF_TRACE_RUN") == "1":
    _start()
_chain()
