"""The traces of one real `rulechef-trace demo` run, made once per test session."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from rulechef_trace.cli import main


@dataclass(frozen=True)
class DemoTraces:
    """The files the demo wrote, and their parsed contents.

    Attributes:
        folder: The demo's storage folder.
        latest: ``intents.trace.json`` (the learn run).
        history: The kept runs, ``intents.traces/*.trace.json`` (learn, then rank_rules).
    """

    folder: Path
    latest: Path
    history: tuple[Path, ...]

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every file's JSON by name: ``latest``, ``history/learn``, ``history/rank_rules``."""
        found = {"latest": orjson.loads(self.latest.read_bytes())}
        for path in self.history:
            doc = orjson.loads(path.read_bytes())
            found[f"history/{doc['run']['kind']}"] = doc
        return found


_made: dict[str, DemoTraces] = {}


def demo_traces(factory: pytest.TempPathFactory) -> DemoTraces:
    """Run the demo once (offline stand-in LLM) and return its traces."""
    if "demo" not in _made:
        folder = factory.mktemp("demo") / "store"
        key = os.environ.pop("OPENAI_API_KEY", None)  # the offline stand-in, always
        try:
            quiet = contextlib.redirect_stdout(io.StringIO())
            with quiet, contextlib.redirect_stderr(io.StringIO()):
                status = main(["demo", "--dir", str(folder)])
        finally:
            if key is not None:
                os.environ["OPENAI_API_KEY"] = key
        assert status == 0, "the demo run failed"
        history = tuple(sorted((folder / "intents.traces").glob("*.trace.json")))
        _made["demo"] = DemoTraces(folder, folder / "intents.trace.json", history)
    return _made["demo"]
