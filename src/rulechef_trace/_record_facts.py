"""Facts only a recorder knows, added to the events it records: costs, unseen rule changes.

A signal's receivers see the payload as the capture sent it; a recorder adds,
to its own copy, what depends on its settings or its files: the cost of each
LLM call from the prices it was given, and, at a run's start, what changed in
the rules since the latest trace it keeps for that dataset and (for a prune)
which learning run it prunes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from rulechef_trace._capture import llm
from rulechef_trace.trace import history_dir

logger = logging.getLogger("rulechef_trace")

__all__ = ["add_cost", "changed_since", "check_prices", "pruned_run", "unseen_names"]

Prices = dict[str, tuple[float, ...]]


def check_prices(prices: Mapping[str, Any] | None) -> Prices | None:
    """``prices`` checked: model -> (input, output[, cached input]) USD per million tokens.

    Raises:
        ValueError: one line naming the first bad entry.
    """
    return llm.validate_prices(prices)


def add_cost(event: dict[str, Any], prices: Prices, costs: list[float | None]) -> None:
    """Give an ``llm_called`` event its ``cost``, and ``finalized.llm`` the run's sum.

    ``costs`` collects the run's call costs; a call of a model without a price
    has cost ``None``, and then so has the run (never a guess).
    """
    if event.get("type") == "llm_called":
        cost = llm.call_cost(event, prices)  # type: ignore[arg-type]
        event["cost"] = cost
        costs.append(cost)
    elif event.get("type") == "finalized" and isinstance(event.get("llm"), dict):
        known = [c for c in costs if c is not None]
        total = round(sum(known), 9) if len(known) == len(costs) else None
        event["llm"] = {**event["llm"], "cost": total}


def _kept(folder: Path, dataset: str) -> Iterator[dict[str, Any]]:
    """The readable kept traces of ``dataset``, newest first (a bad file is skipped)."""
    runs = history_dir(folder, dataset)
    try:
        # scandir, not Path.glob: one call, and a missing folder (the usual case) fails fast.
        with os.scandir(runs) as entries:
            kept = sorted(e.name for e in entries if e.name.endswith(".trace.json"))
    except OSError:
        return
    for name in reversed(kept):
        path = runs / name
        try:
            if not path.is_file():
                continue
            trace = orjson.loads(path.read_bytes())
            if isinstance(trace["run"]["id"], str) and isinstance(trace["final"]["rules"], list):
                yield trace
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.debug("rulechef_trace: kept trace %s unreadable: %s", path, exc)


def changed_since(
    folder: Path, dataset: str, rules: list[str], known: tuple[str, list[str]] | None = None
) -> dict[str, Any] | None:
    """What changed in the rules since the newest kept trace of ``dataset``, if anything.

    The comparison is against the newest kept trace of any kind, so a change a
    recorded ``edit`` run already holds is not reported again; the answer also
    names the learning run the rules descend from and the recorded runs since.

    Args:
        folder: The storage folder.
        dataset: The dataset's name.
        rules: The rule ids the new run starts with.
        known: (run id, final rule ids) of that trace when the caller wrote it
            itself; the history folder is then read only when something changed.

    Returns:
        ``{"run": that trace's run id, "added": [...], "removed": [...],
        "learning_run": id or None, "edits": [ids]}``, or ``None`` when
        nothing changed or no readable trace is kept.
    """
    if known is not None:
        changed = _difference(known[0], known[1], rules)
    else:
        changed = None
        for trace in _kept(folder, dataset):
            try:
                final = [r["id"] for r in trace["final"]["rules"]]
            except (KeyError, TypeError):
                continue
            changed = _difference(trace["run"]["id"], final, rules)
            break
    if changed is not None:
        changed["learning_run"], changed["edits"] = _descent(folder, dataset, changed["run"])
    return changed


def _difference(run_id: str, final: list[str], rules: list[str]) -> dict[str, Any] | None:
    before, after = set(final), set(rules)
    if before == after:
        return None
    return {
        "run": run_id,
        "added": [rid for rid in rules if rid not in before],
        "removed": [rid for rid in final if rid not in after],
    }


#: Kinds of run that learn rules; the others (edit, rank_rules) change learned ones.
_LEARNING = ("learn", "refine")


def _descent(folder: Path, dataset: str, run_id: str) -> tuple[str | None, list[str]]:
    """The newest kept learning run up to ``run_id``, and the kept runs after it, oldest first.

    Read only when something changed unseen (rare), so reading a few kept
    traces here costs the common run start nothing.
    """
    later: list[str] = []
    reached = False
    for trace in _kept(folder, dataset):
        rid = str(trace["run"]["id"])
        reached = reached or rid == run_id
        if not reached:
            continue  # written after that trace, by another recorder or process
        if trace["run"].get("kind") in _LEARNING:
            return rid, later[::-1]
        later.append(rid)
    return None, later[::-1]


def unseen_names(
    folder: Path, dataset: str, changed: Mapping[str, Any], names: Any
) -> dict[str, Any]:
    """``run_started.rule_names`` with the names of the rules ``changed`` says were removed.

    A removed rule is no longer among the chef's rules, so the payload does not
    name it; the kept trace it was compared against does. Without its name the
    new trace's rule table would hold a bare id (read only when something changed).
    """
    table = dict(names) if isinstance(names, Mapping) else {}
    missing = [rid for rid in changed.get("removed") or () if rid not in table]
    for trace in _kept(folder, dataset) if missing else ():
        if trace["run"]["id"] != changed.get("run"):
            continue
        kept = trace.get("rules")
        for rid in missing:
            entry = kept.get(rid) if isinstance(kept, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                table[rid] = entry["name"]
        break
    return table


def pruned_run(folder: Path, dataset: str) -> str | None:
    """The id of the newest kept learning run of ``dataset``: the run a ``rank_rules`` prunes."""
    for trace in _kept(folder, dataset):
        if trace["run"].get("kind") == "learn":
            return str(trace["run"]["id"])
    return None
