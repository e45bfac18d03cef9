"""Rule-set edits outside learning: ``delete_rule`` and ``load_rules`` as runs of kind "edit".

Each edit is a short run of its own (``run_started``, ``rules_edited``,
``finalized``), so a history that holds it replays across the edit. An edit
made inside a traced run (rulechef calling its own methods) is part of that
run, not a run of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from rulechef_trace import signals as sig
from rulechef_trace._capture.install import wanted
from rulechef_trace._capture.rulechef02.facts import rule_ids
from rulechef_trace._capture.rulechef02.runs import plain_params, traced_run
from rulechef_trace._capture.state import RunState, emit_change, guard, remember, run_var
from rulechef_trace._capture.wrappers import generation, ordered_binder_of

#: Arguments of an edit that are data, not facts (a path, or the rules themselves).
_NOT_KEPT = frozenset({"source"})


def wrap_edit(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make the wrapper that records one call of ``RuleChef.<method>`` as an edit run."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        binder = ordered_binder_of(original)
        born = generation()

        @functools.wraps(original)
        def edit(self: Any, *args: Any, **kwargs: Any) -> Any:
            if born != generation() or run_var.get() is not None or not wanted():
                return original(self, *args, **kwargs)
            found = guard(None, "params", plain_params, binder, self, args, kwargs) or {}
            params = {"method": method, **{k: v for k, v in found.items() if k not in _NOT_KEPT}}
            with traced_run(self, "edit", params) as state:
                result = original(self, *args, **kwargs)
                if state is not None:
                    guard(state, "rules_edited", _after_edit, state, method)
                return result

        return edit

    return wrap


def _after_edit(state: RunState, method: str) -> None:
    rules = list(getattr(getattr(state.chef, "dataset", None), "rules", None) or [])
    remember(state, rules)
    emit_change(state, sig.rules_edited, rule_ids(rules), {"method": method})
