"""rulechef-trace: make rulechef learning runs explain themselves.

Connect a receiver to any signal below (plain blinker ``connect``) or use
:func:`record_trace`; while nobody listens, rulechef runs exactly as shipped.
"""

from rulechef_trace import instrument as _instrument  # noqa: F401  (wires the hooks)
from rulechef_trace.recorder import TraceRecorder, record_trace
from rulechef_trace.report.text import print_trace, render_trace
from rulechef_trace.signals import (
    ALL_SIGNALS,
    audit_applied,
    critiqued,
    finalized,
    guided,
    iteration_evaluated,
    namespace,
    patch_decided,
    pruned,
    refined,
    run_started,
    strict_mode,
    synthesized,
)
from rulechef_trace.trace import (
    ReplayError,
    Trace,
    TraceError,
    build_trace,
    load_trace,
    replay,
    validate,
)

__version__ = "0.1.0"

__all__ = [
    "ALL_SIGNALS",
    "ReplayError",
    "Trace",
    "TraceError",
    "TraceRecorder",
    "__version__",
    "audit_applied",
    "build_trace",
    "critiqued",
    "finalized",
    "guided",
    "iteration_evaluated",
    "load_trace",
    "namespace",
    "patch_decided",
    "print_trace",
    "pruned",
    "record_trace",
    "refined",
    "render_trace",
    "replay",
    "run_started",
    "strict_mode",
    "synthesized",
    "validate",
]
