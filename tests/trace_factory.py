"""Real traces for the analysis, CLI and schema tests, made offline with ScriptedLLM."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulechef_trace import Trace, record_trace
from tests.scripted import (
    BREAK,
    FIX_ALL,
    FIX_NEG,
    ScriptedLLM,
    audit_merge,
    make_chef,
    restoring_llm,
    rule,
)

# Patch 1 replaces "pos words" by name and adds "pos more"; the mid-refinement
# audit merges the two into "pos all"; patch 2 is worse and would delete
# "neg words" (rejected); patch 3 adds "neg more" (accepted).
REPLACE_AND_ADD = {
    "rules": [rule("pos words", "good|great|nice", "pos"), rule("pos more", "lovely", "pos")]
}
WORSE = {"rules": BREAK["rules"], "deleted_rules": ["neg words"]}


def merge_pos(prompt: str) -> dict[str, Any]:
    """Audit answer: merge "pos words" and "pos more" into "pos all"."""
    return audit_merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely")(prompt)


def critic_on_first_rule(prompt: str) -> dict[str, Any]:
    """Critic answer: feedback on the first rule the prompt shows."""
    ids = re.findall(r"\(id=([^)]+)\)", prompt)
    feedback = {ids[0]: "be stricter"} if ids else {}
    return {"analysis": "x", "rule_feedback": feedback, "task_guidance": "watch out"}


def story_run(folder: Path, storage: Path) -> Trace:
    """An agentic run: replacement, merge, critic, rejected and accepted patches."""
    llm = ScriptedLLM(
        patch=[REPLACE_AND_ADD, WORSE, FIX_NEG],
        audit=[merge_pos, {"actions": []}],
        critic=critic_on_first_rule,
    )
    chef = make_chef(folder, llm, "agentic")
    return _learn(chef, storage, max_refinement_iterations=3)


def simple_run(folder: Path, storage: Path) -> tuple[Trace, Any]:
    """A short run with rulechef's simple coordinator that reaches the target."""
    chef = make_chef(folder, ScriptedLLM(patch=[FIX_ALL]))
    return _learn(chef, storage, max_refinement_iterations=2), chef


def restore_run(folder: Path, storage: Path) -> Trace:
    """A run whose refinement hands back the synthesized rules (kept_earlier)."""
    llm = restoring_llm()
    chef = make_chef(folder, llm, name="restore")
    return _learn(chef, storage, max_refinement_iterations=2)


def prune_run(chef: Any, storage: Path) -> Trace:
    """rank_rules(prune=True) after adding a harmful rule to a learned chef."""
    harmful = rule("broad", "day|thing|food|trip|mess", "pos", priority=9)
    chef.load_rules(
        [*(r.to_dict() for r in chef.dataset.rules), {**harmful, "content": harmful["pattern"]}]
    )
    with record_trace(chef, storage_path=storage, strict=True) as recorder:
        chef.rank_rules(prune=True, verbose=False)
    (trace,) = recorder.traces
    return trace


def _learn(chef: Any, storage: Path, **kwargs: Any) -> Trace:
    with record_trace(chef, storage_path=storage, strict=True) as recorder:
        chef.learn_rules(**kwargs)
    (trace,) = recorder.traces
    return trace


@dataclass
class Traces:
    """The traces of one storage folder, and their history files."""

    storage: Path
    story: Trace
    simple: Trace
    pruned: Trace
    restore: Trace

    def file_of(self, trace: Trace) -> Path:
        """The kept (history) file of a trace."""
        run = trace.run
        folder = self.storage / f"{run['dataset']}.traces"
        (path,) = folder.glob(f"*_{run['kind']}_{run['id'][:8]}.trace.json")
        return path


def make_traces(root: Path) -> Traces:
    """Record the story, simple, prune and restore runs into ``root/store``.

    The first three belong to dataset ``reviews``; the restore run to
    ``restore``.
    """
    storage = root / "store"
    story = story_run(root / "a", storage)
    simple, chef = simple_run(root / "b", storage)
    pruned = prune_run(chef, storage)
    restore = restore_run(root / "c", storage)
    return Traces(storage, story, simple, pruned, restore)
