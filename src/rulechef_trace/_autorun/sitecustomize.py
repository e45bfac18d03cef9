"""Started by ``rulechef-trace run``: attach a recorder to every chef of this program.

``rulechef-trace run -- COMMAND`` puts this folder first on ``PYTHONPATH``, so
Python imports this module at start-up, before the program's own code. It
attaches the recorder the environment describes, then hands over to the
``sitecustomize`` the program would have had without us (if any). It never
stops the program: a failure is one line on standard error.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _start() -> None:
    try:
        from rulechef_trace._run_command import start_from_environment

        start_from_environment()
    except Exception as exc:  # the traced program runs anyway
        sys.stderr.write(f"rulechef-trace run: tracing is off: {type(exc).__name__}: {exc}\n")


def _chain() -> None:
    # Hand over to the sitecustomize that this one shadows, if there is one: found
    # on the rest of sys.path and run as a module of its own (this one stays
    # "sitecustomize" in sys.modules, as the import system expects).
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if os.environ.get("RULECHEF_TRACE_RUN") == "1":
    _start()
_chain()
