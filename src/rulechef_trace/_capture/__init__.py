"""Capture: rulechef -> events.

``install`` puts the hooks in place exactly while somebody listens, ``state``
holds the run in progress and emits its events, ``wrappers`` makes the
wrappers, ``llm`` observes the LLM client's calls, and ``rulechef02/`` is
everything that knows rulechef 0.2.x. Importing this package wires the
install machinery to the signals.
"""

from rulechef_trace._capture.install import installed, refresh
from rulechef_trace._capture.state import RunState, current_run

__all__ = ["RunState", "current_run", "installed", "refresh"]
