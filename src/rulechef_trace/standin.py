"""The 0.1.0 import path of the stand-in LLM; it lives in :mod:`rulechef_trace.demo.standin`.

``from rulechef_trace.standin import StandInLLM, load_examples,
packaged_data_path`` (as in docs/opentelemetry.md and docs/pytest-plugin.md)
keeps working.
"""

from __future__ import annotations

from rulechef_trace.demo.examples import load_examples, packaged_data_path
from rulechef_trace.demo.standin import PROMPT_KINDS, StandInLLM, detect_prompt_kind

__all__ = [
    "PROMPT_KINDS",
    "StandInLLM",
    "detect_prompt_kind",
    "load_examples",
    "packaged_data_path",
]
