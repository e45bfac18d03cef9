"""rulechef-trace: make rulechef learning runs explain themselves.

Connect a receiver to any signal below (plain blinker ``connect``) or use
:func:`record_trace`; while nobody listens, rulechef runs exactly as shipped.
"""

from rulechef_trace import _capture  # noqa: F401  (wires the hooks to the signals)
from rulechef_trace.recorder import TraceRecorder, record_trace
from rulechef_trace.report.across_runs import lineage_across_runs
from rulechef_trace.report.text import print_trace, render_trace
from rulechef_trace.signals import (
    ALL_SIGNALS,
    audit_applied,
    critiqued,
    finalized,
    guided,
    iteration_evaluated,
    llm_called,
    namespace,
    patch_decided,
    pruned,
    refined,
    rules_edited,
    run_started,
    step_ended,
    step_started,
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
    "lineage_across_runs",
    "llm_called",
    "load_trace",
    "namespace",
    "patch_decided",
    "print_trace",
    "pruned",
    "record_trace",
    "refined",
    "render_trace",
    "replay",
    "rules_edited",
    "run_started",
    "step_ended",
    "step_started",
    "strict_mode",
    "synthesized",
    "validate",
]
