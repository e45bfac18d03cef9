"""pytest plugin: the ``rule_trace`` fixture, caplog for rulechef learning runs.

Active once rulechef-trace is installed (``pytest11`` entry point). A test that
asks for ``rule_trace`` records every learning run it makes, in memory, and
asserts on the story::

    def test_patches_are_kept(rule_trace, chef):
        chef.learn_rules(max_refinement_iterations=3)
        assert rule_trace.story()[0] == "run_started"
        assert rule_trace.patches(accepted=True)
        assert "pos words" in [rule_trace.last.name_of(r) for r in rule_trace.last.final_rules]

Importing this module installs nothing: rulechef's methods are only wrapped
while a test holding the fixture runs. When such a test fails, the story of
every run it recorded is shown in a "Captured rule traces" report section.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from blinker import ANY

from rulechef_trace import signals as sig
from rulechef_trace.recorder import TraceRecorder
from rulechef_trace.report.text import render_trace
from rulechef_trace.trace import EVENT_TYPES, Trace

__all__ = ["RuleTrace", "rule_trace"]

_STASH_KEY = pytest.StashKey["RuleTrace"]()


class RuleTrace:
    """Records the learning runs of one test in memory; the ``rule_trace`` fixture.

    Until :meth:`watch` is called, the runs of every chef are recorded; after
    it, only the runs of the watched chefs. Runs are kept in the order they
    ended.
    """

    def __init__(self) -> None:
        self._everything: TraceRecorder | None = None
        self._watched: dict[int, TraceRecorder] = {}
        self._retired: list[TraceRecorder] = []
        self._ended: list[str] = []
        self._lock = threading.Lock()
        self._active = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> RuleTrace:
        """Start recording the runs of every chef (idempotent).

        Returns:
            The fixture itself.
        """
        if self._active:
            return self
        sig.finalized.connect(self._on_finalized, sender=ANY, weak=False)
        self._everything = TraceRecorder(write=False).attach()
        self._active = True
        return self

    def watch(self, chef: Any) -> RuleTrace:
        """Record only the runs of ``chef`` (and of other watched chefs) from now on.

        Runs recorded before the first call stay in :attr:`traces`.

        Args:
            chef: A ``RuleChef`` or its ``LearningPipeline``.

        Returns:
            The fixture itself, for chaining.
        """
        chef = getattr(chef, "_chef", chef)
        if self._everything is not None:
            self._everything.detach()
            self._retired.append(self._everything)
            self._everything = None
        if id(chef) not in self._watched:
            recorder = TraceRecorder(chef, write=False)
            if self._active:
                recorder.attach()
            self._watched[id(chef)] = recorder
        return self

    def stop(self) -> None:
        """Stop recording (idempotent); the traces recorded so far stay readable."""
        if not self._active:
            return
        for recorder in self._recorders():
            recorder.detach()
        sig.finalized.disconnect(self._on_finalized)
        self._active = False

    def _recorders(self) -> list[TraceRecorder]:
        live = [self._everything] if self._everything is not None else []
        return [*self._retired, *live, *self._watched.values()]

    def _on_finalized(self, sender: Any, /, **payload: Any) -> None:
        with self._lock:
            self._ended.append(str(payload.get("run_id")))

    # -- reading -----------------------------------------------------------

    @property
    def traces(self) -> list[Trace]:
        """Every recorded run, oldest ending first."""
        found = [t for recorder in self._recorders() for t in recorder.traces]
        with self._lock:
            order = {run_id: index for index, run_id in enumerate(self._ended)}
        return sorted(found, key=lambda t: order.get(str(t.run.get("id")), len(order)))

    @property
    def last(self) -> Trace:
        """The run that ended last.

        Raises:
            LookupError: when no run was recorded.
        """
        traces = self.traces
        if not traces:
            scope = f"{len(self._watched)} watched chef(s)" if self._watched else "any chef"
            raise LookupError(
                f"rule_trace recorded no learning run of {scope}; learn_rules() and "
                "rank_rules(prune=True) are recorded once they end"
            )
        return traces[-1]

    def events(self, type: str | Any | None = None) -> list[dict[str, Any]]:
        """Events of every recorded run, run after run, in sequence order.

        Args:
            type: An event type (``"patch_decided"``) or its signal
                (``rulechef_trace.patch_decided``); None for every event.

        Returns:
            The matching events (the trace's own dicts; do not modify them).

        Raises:
            ValueError: for an unknown event type, so that a typo cannot make
                ``assert not rule_trace.events(...)`` pass.
        """
        wanted = _event_type(type)
        return [e for t in self.traces for e in t.events if wanted is None or e["type"] == wanted]

    def story(self) -> list[str]:
        """The event types of every recorded run, in order, LLM calls left out.

        ``llm_called`` events come between the rule story's steps, one per
        call; :meth:`llm_calls` lists them.
        """
        return [str(e["type"]) for e in self.events() if e["type"] != "llm_called"]

    def llm_calls(self, step: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """The ``llm_called`` events of every recorded run.

        Args:
            step: Only calls of this step (``"patch"``, ``"per_class"``...).
            status: Only ``"ok"`` or only ``"error"`` calls.
        """
        return [
            e
            for e in self.events("llm_called")
            if (step is None or e["step"] == step) and (status is None or e["status"] == status)
        ]

    def patches(self, accepted: bool | None = None) -> list[dict[str, Any]]:
        """The ``patch_decided`` events of every recorded run.

        Args:
            accepted: True for accepted patches only, False for rejected and
                empty ones (``outcome`` tells them apart), None for all.
        """
        found = self.events("patch_decided")
        return [e for e in found if accepted is None or bool(e.get("accepted")) is accepted]

    def text(self) -> str:
        """The rendered story of every recorded run, as ``rulechef-trace show`` prints it."""
        return "".join(render_trace(t) for t in self.traces)

    def clear(self) -> None:
        """Forget the runs recorded so far; recording goes on."""
        for recorder in self._recorders():
            recorder.traces.clear()
        with self._lock:
            self._ended.clear()

    def __iter__(self) -> Iterator[Trace]:
        return iter(self.traces)

    def __len__(self) -> int:
        return len(self.traces)

    def __repr__(self) -> str:
        state = "recording" if self._active else "stopped"
        return f"<RuleTrace {state}, {len(self)} run(s)>"


def _event_type(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "name", value)
    if name not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; expected one of {', '.join(EVENT_TYPES)}")
    return str(name)


@pytest.fixture
def rule_trace(request: pytest.FixtureRequest) -> Generator[RuleTrace, None, None]:
    """Record every rulechef learning run of the test in memory (see :class:`RuleTrace`)."""
    recorder = RuleTrace().start()
    request.node.stash[_STASH_KEY] = recorder
    try:
        yield recorder
    finally:
        recorder.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """Add the recorded runs' stories to the report (shown when the test fails)."""
    yield
    recorder = item.stash.get(_STASH_KEY, None)
    if recorder is not None and len(recorder):
        item.add_report_section("call", "rule traces", recorder.text())
