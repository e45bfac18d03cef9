"""Real traces for the analysis, CLI and schema tests, made offline with ScriptedLLM."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rulechef_trace import Trace, build_trace, record_trace
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


# --- synthetic traces (no rulechef run): shapes a real run rarely reaches ----------


class _Events:
    """Numbered events of one synthetic run, ready for ``build_trace``."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, type: str, **fields: Any) -> None:
        seq = len(self.items) + 1
        self.items.append(
            {"type": type, "run_id": "synthetic", "seq": seq, "t": seq / 100, **fields}
        )

    def start(self, dataset: str) -> None:
        self.add(
            "run_started",
            kind="learn",
            dataset=dataset,
            task=dataset,
            task_type="classification",
            started_at="2026-01-01T00:00:00.000Z",
            rulechef_version="0.2.2",
            params={},
            coordinator=None,
            storage_path=None,
            rules=[],
        )

    def finish(self, rules: list[str], metrics: dict[str, Any] | None = None) -> Trace:
        self.add(
            "finalized",
            status="completed",
            error=None,
            ended_at="2026-01-01T00:01:00.000Z",
            duration_s=60.0,
            rules=list(rules),
            metrics=metrics,
        )
        return build_trace(self.items)


def _named(ids: list[str]) -> dict[str, str]:
    return {rid: f"rule {rid}" for rid in ids}


def merge_dag_trace(levels: int, width: int = 2) -> Trace:
    """A valid trace whose audits merge ``width`` rules into ``width`` new ones, ``levels`` times.

    Every rule of level i is merged from all rules of level i - 1: with the
    default width of 2 the number of paths back to synthesis doubles at each
    level; a width of 1 is a plain merge chain ``levels`` deep.
    """
    letters = "abcdefgh"[:width]
    run = _Events()
    run.start("dag")
    first = [f"{x}0" for x in letters]
    run.add(
        "synthesized",
        mode="per_class",
        count=width,
        data={"examples": width},
        added=first,
        removed=[],
        rules_after=first,
        rule_names=_named(first),
    )
    for i in range(1, levels + 1):
        old, new = [f"{x}{i - 1}" for x in letters], [f"{x}{i}" for x in letters]
        run.add(
            "audit_applied",
            stage="mid_refinement",
            iteration=i,
            actions=[{"action": "merge", "sources": old, "result": rid} for rid in new],
            skipped=[],
            reverted=False,
            added=new,
            removed=old,
            rules_after=new,
            rule_names=_named(new),
        )
    return run.finish([f"{x}{levels}" for x in letters])


def big_trace(rules: int, events: int) -> Trace:
    """A valid trace of ``rules`` synthesized rules and about ``events`` events.

    After synthesis, iterations alternate with accepted patches that each
    replace one rule by a new one; every patch carries the whole rule list in
    ``rules_after``, as real patches do.
    """
    run = _Events()
    run.start("big")
    current = [f"r{i:05d}" for i in range(rules)]
    run.add(
        "synthesized",
        mode="bulk",
        count=rules,
        data={"examples": rules},
        added=list(current),
        removed=[],
        rules_after=list(current),
        rule_names=_named(current),
    )
    iterations = max((events - 5) // 2, 1)
    metrics = {"f1": 0.5, "precision": 0.6, "recall": 0.4, "failures": 9}
    for i in range(1, iterations + 1):
        run.add("iteration_evaluated", iteration=i, max_iterations=iterations, metrics=metrics)
        old, new = current[i % rules], f"p{i:05d}"
        current[i % rules] = new
        run.add(
            "patch_decided",
            iteration=i,
            outcome="accepted",
            accepted=True,
            metrics_before=metrics,
            metrics_after=metrics,
            replaced=[{"old": old, "new": new}],
            added=[new],
            removed=[old],
            rules_after=list(current),
            rule_names={new: f"rule {old}"},
        )
    unchanged = {"added": [], "removed": [], "rules_after": list(current)}
    run.add(
        "refined",
        iterations=iterations,
        max_iterations=iterations,
        stop_reason="max_iterations",
        kept_earlier=False,
        metrics=metrics,
        **unchanged,
    )
    run.add("audit_applied", stage="final", actions=[], skipped=[], reverted=False, **unchanged)
    return run.finish(current, metrics)
