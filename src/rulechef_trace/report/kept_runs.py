"""Every kept run of a storage folder: :func:`history`.

A question asked of a folder; it returns plain frozen dataclasses, which
:mod:`rulechef_trace.report.answers` and the HTML history page format. A file
that cannot be read as a trace is skipped with a note, never raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rulechef_trace.report._plain import Plain
from rulechef_trace.report.compare import summarize
from rulechef_trace.report.numbers import whole
from rulechef_trace.trace import TraceError, load_trace

__all__ = ["History", "HistoryRow", "history"]

logger = logging.getLogger("rulechef_trace")


@dataclass(frozen=True)
class HistoryRow(Plain):
    """One kept run of a dataset.

    Attributes:
        dataset: The dataset the run belongs to.
        started_at: ISO 8601 UTC start time.
        kind: ``learn`` or ``rank_rules``.
        status: The run's status.
        duration_s: Seconds the run took.
        iterations: Refinement iterations (None for ``rank_rules``).
        rules: Number of final rules.
        f1: Final micro F1, or None where the run computed none.
        path: The trace file.
        run_id: The run's id.
        examples: Examples plus corrections when the run ended (None when
            the trace does not say).
        split: The examples the final metrics are on (``train``, ``dev``,
            ``all``; None when the trace does not say).
        data_changed: The examples differ from the dataset's previous run
            that counted them.
        after: For a ``rank_rules`` run: the learning run it pruned.
        llm: The run's LLM totals (calls, errors, tokens, seconds, cost), or None.
    """

    dataset: str
    started_at: str | None
    kind: str
    status: str
    duration_s: float | None
    iterations: int | None
    rules: int
    f1: float | None
    path: str
    run_id: str
    examples: int | None = None
    split: str | None = None
    data_changed: bool = False
    after: str | None = None
    llm: dict[str, Any] | None = None


@dataclass(frozen=True)
class History(Plain):
    """Every kept run found in a storage folder, oldest first per dataset.

    Attributes:
        storage_dir: The folder searched.
        rows: One row per readable trace file.
        notes: One line per file that was skipped, and why.
    """

    storage_dir: str
    rows: list[HistoryRow]
    notes: list[str]

    @property
    def datasets(self) -> list[str]:
        """The datasets that have rows, sorted."""
        return sorted({row.dataset for row in self.rows})


def history(storage_dir: str | Path, dataset: str | None = None) -> History:
    """List the kept runs of a storage folder (``<dataset>.traces/*.trace.json``).

    Unreadable or invalid files are skipped, each with a note; this never
    raises for a bad trace file.

    Args:
        storage_dir: The folder rulechef and the recorder write to, or one
            ``<dataset>.traces`` folder in it.
        dataset: Only this dataset; None for every dataset found.

    Returns:
        Rows sorted by dataset, then oldest first.

    Raises:
        TraceError: when ``storage_dir`` is not a folder, or ``dataset`` has no
            ``<dataset>.traces`` folder in it.
    """
    folder = Path(storage_dir)
    if not folder.exists():
        raise TraceError("no such directory", folder)
    if not folder.is_dir():
        raise TraceError("not a directory (history reads a storage folder)", folder)
    rows: list[HistoryRow] = []
    notes: list[str] = []
    for runs in _history_dirs(folder, dataset):
        name = runs.name.removesuffix(".traces")
        for path in sorted(runs.glob("*.trace.json")):
            row = _history_row(path, name, notes)
            if row is not None:
                rows.append(row)
    rows.sort(key=lambda r: (r.dataset, r.started_at or "", r.path))
    return History(str(folder), _mark_data_changes(rows), notes)


def _mark_data_changes(rows: list[HistoryRow]) -> list[HistoryRow]:
    """Mark each row whose example count differs from its dataset's previous counted run."""
    marked = []
    last: dict[str, int] = {}
    for row in rows:
        before = last.get(row.dataset)
        if row.examples is not None:
            last[row.dataset] = row.examples
            if before is not None and before != row.examples:
                row = replace(row, data_changed=True)
        marked.append(row)
    return marked


def _history_dirs(folder: Path, dataset: str | None) -> list[Path]:
    if dataset is None and folder.name.endswith(".traces"):
        return [folder]  # one dataset's own history folder
    if dataset is None:
        return sorted(p for p in folder.glob("*.traces") if p.is_dir())
    runs = folder / f"{dataset}.traces"
    if not runs.is_dir():
        known = ", ".join(p.name.removesuffix(".traces") for p in _history_dirs(folder, None))
        hint = f" (datasets here: {known})" if known else " (no runs recorded here)"
        raise TraceError(f"no runs of dataset {dataset!r}{hint}", folder)
    return [runs]


def _history_row(path: Path, dataset: str, notes: list[str]) -> HistoryRow | None:
    try:  # load_trace opens regular files only: a FIFO or a device never blocks it
        trace = load_trace(path)
    except TraceError as exc:
        notes.append(f"skipped {path.name}: {exc.problem}")
        logger.warning("rulechef_trace: history skips %s: %s", path, exc.problem)
        return None
    s = summarize(trace)
    ended = trace.events_of("finalized")
    examples = whole(ended[-1].get("examples")) if ended else None
    split = (trace.final_metrics or {}).get("split")
    after = trace.run.get("after")
    return HistoryRow(
        dataset=dataset,
        started_at=s.started_at,
        kind=s.kind,
        status=s.status,
        duration_s=s.duration_s,
        iterations=s.iterations,
        rules=s.rules,
        f1=(s.metrics or {}).get("f1"),
        path=str(path),
        run_id=s.run_id,
        examples=examples,
        split=split if isinstance(split, str) else None,
        after=after if isinstance(after, str) else None,
        llm=s.llm,
    )
