"""The offline demo: one real rulechef learning run, traced, in a few seconds.

:func:`run_demo` (in ``_run``) learns and prunes rules on the intents data
shipped in ``demo/data/intents.jsonl`` (read by :mod:`.examples`), with the
deterministic stand-in LLM of :mod:`.standin` unless ``OPENAI_API_KEY`` is
set. ``import rulechef_trace`` imports none of this; the command line does.
"""

from __future__ import annotations

from ._run import (
    DEFAULT_DIR,
    DEFAULT_MODEL,
    DemoData,
    DemoDataError,
    LLMChoice,
    choose_llm,
    demo_data,
    run_demo,
)

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_MODEL",
    "DemoData",
    "DemoDataError",
    "LLMChoice",
    "choose_llm",
    "demo_data",
    "run_demo",
]
