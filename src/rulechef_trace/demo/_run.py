"""The offline demo: one real rulechef learning run, traced, in a few seconds.

:func:`run_demo` builds a :class:`rulechef.RuleChef` on a small classification
task (the intents data shipped in the package, or any ``text``/``label`` JSONL
file), learns rules with an :class:`~rulechef.coordinator.AgenticCoordinator`,
prunes them with ``rank_rules(prune=True)``, and records both runs with
:func:`~rulechef_trace.record_trace`. Without ``OPENAI_API_KEY`` the LLM is
the deterministic :class:`~rulechef_trace.demo.standin.StandInLLM`; with it, a real
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rulechef_trace.demo.examples import load_examples, packaged_data_path
from rulechef_trace.demo.standin import StandInLLM
from rulechef_trace.recorder import record_trace
from rulechef_trace.render import print_trace
from rulechef_trace.trace import Trace

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

logger = logging.getLogger("rulechef_trace")

#: Where ``rulechef-trace demo`` writes when no ``--dir`` is given.
DEFAULT_DIR = "rulechef-trace-demo"
#: The model asked for on a real endpoint when no ``--model`` is given.
DEFAULT_MODEL = "gpt-4o-mini"
#: Refinement iterations of the demo's learning run.
MAX_ITERATIONS = 3

_PACKAGED_NAME = "intents"
_PACKAGED_DESCRIPTION = "Classify a bike-share customer support message by its intent: {labels}."
_GENERIC_DESCRIPTION = "Classify each text as one of: {labels}."


class DemoDataError(ValueError):
    """The demo's data file cannot be used.

    Attributes:
        path: The data file.
        problem: What is wrong, in one line.
    """

    def __init__(self, problem: str, path: str | Path):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class DemoData:
    """The labelled examples of a demo run and how to describe their task."""

    name: str  #: dataset name (file names of the traces start with it)
    description: str  #: the task description rulechef shows the LLM
    examples: list[tuple[str, str]]  #: (text, label) pairs
    source: Path  #: the JSONL file they came from

    @property
    def labels(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted({label for _, label in self.examples})


@dataclass(frozen=True)
class LLMChoice:
    """The client the demo talks to, and a one-line description of it."""

    client: Any
    model: str
    description: str
    offline: bool


def demo_data(path: str | Path | None = None) -> DemoData:
    """Load the demo's examples: the packaged intents data, or a JSONL file.

    Args:
        path: A JSONL file with ``text`` and ``label`` fields per line; None
            for the intents data shipped with the package.

    Returns:
        The examples, a dataset name and a task description.

    Raises:
        DemoDataError: when the file is missing, unreadable, malformed, or
            has fewer than two labels.
    """
    source = Path(path) if path is not None else packaged_data_path()
    examples = _read_examples(source)
    labels = sorted({label for _, label in examples})
    if len(labels) < 2:
        raise DemoDataError(f"needs at least two labels, found {len(labels)}", source)
    if path is None:
        name, template = _PACKAGED_NAME, _PACKAGED_DESCRIPTION
    else:
        name, template = _dataset_name(source), _GENERIC_DESCRIPTION
    return DemoData(name, template.format(labels=", ".join(labels)), examples, source)


def _read_examples(source: Path) -> list[tuple[str, str]]:
    if not source.exists():
        raise DemoDataError("no such file", source)
    if source.is_dir():
        raise DemoDataError("is a directory, not a JSONL file", source)
    try:
        examples = load_examples(source)
    except OSError as exc:
        raise DemoDataError(f"cannot read: {exc.strerror or exc}", source) from None
    except UnicodeDecodeError:
        raise DemoDataError("not UTF-8 text", source) from None
    except ValueError as exc:
        # load_examples names the file itself; keep only the problem.
        problem = str(exc).removeprefix(str(source)).lstrip(":, ")
        raise DemoDataError(problem or "malformed", source) from None
    if not examples:
        raise DemoDataError("no examples (empty file)", source)
    return examples


def _dataset_name(source: Path) -> str:
    stem = source.name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "demo"


def choose_llm(model: str | None = None, base_url: str | None = None) -> LLMChoice:
    """Pick the LLM client: a real endpoint with ``OPENAI_API_KEY``, else the stand-in.

    Args:
        model: Model name for a real endpoint (default ``gpt-4o-mini``).
        base_url: Base URL of an OpenAI-compatible endpoint; None for OpenAI's.

    Returns:
        The client, the model name and a description for the output.
    """
    if os.environ.get("OPENAI_API_KEY"):
        from openai import OpenAI

        chosen = model or DEFAULT_MODEL
        where = base_url or "the OpenAI API"
        description = f"real OpenAI-compatible endpoint ({where}), model {chosen}"
        return LLMChoice(OpenAI(base_url=base_url), chosen, description, offline=False)
    description = "offline stand-in (StandInLLM); set OPENAI_API_KEY to use a real model"
    if base_url:
        description += f" (--base-url {base_url} ignored without a key)"
    return LLMChoice(StandInLLM(), model or "standin", description, offline=True)


def _build_chef(directory: Path, data: DemoData, llm: LLMChoice) -> Any:
    """A RuleChef with an agentic coordinator and the examples it does not have yet."""
    from rulechef import RuleChef, Task, TaskType
    from rulechef.coordinator import AgenticCoordinator

    task = Task(
        name=data.name,
        description=data.description,
        input_schema={"text": "str"},
        output_schema={"label": "str"},
        type=TaskType.CLASSIFICATION,
    )
    coordinator = AgenticCoordinator(
        llm.client,
        model=llm.model,
        prune_after_learn=True,
        enable_critic=True,
        audit_interval=2,
        critic_interval=2,
        verbose=False,
    )
    chef = RuleChef(
        task=task,
        client=llm.client,
        dataset_name=data.name,
        storage_path=str(directory),
        coordinator=coordinator,
        model=llm.model,
    )
    _add_new_examples(chef, data.examples)
    return chef


def _add_new_examples(chef: Any, examples: list[tuple[str, str]]) -> int:
    """Buffer the examples the chef's stored dataset lacks (a rerun adds none twice)."""
    known = {
        (str(ex.input.get("text")), str(ex.expected_output.get("label")))
        for ex in chef.dataset.examples
    }
    added = 0
    for text, label in examples:
        if (text, label) not in known:
            known.add((text, label))
            chef.buffer.add_human_example({"text": text}, {"label": label})
            added += 1
    return added


def _learn_and_prune(
    chef: Any, directory: Path, live: Any = False
) -> tuple[list[Trace], list[Path], Exception | None]:
    """learn_rules() then rank_rules(prune=True), recorded, with rulechef's prints muted.

    Returns:
        The traces, the files the recorder wrote, and the exception a run
        raised (its trace, status ``failed``, is among the traces).
    """
    chatter = io.StringIO()
    error: Exception | None = None
    with record_trace(chef, storage_path=directory, live=live) as recorder:
        try:
            with contextlib.redirect_stdout(chatter):
                chef.learn_rules(max_refinement_iterations=MAX_ITERATIONS)
                chef.rank_rules(prune=True, verbose=False)
        except Exception as exc:  # a real endpoint can fail in many ways
            error = exc
    logger.debug("rulechef printed %d characters during the demo", len(chatter.getvalue()))
    return list(recorder.traces), list(recorder.paths), error


def run_demo(
    directory: str | Path = DEFAULT_DIR,
    data: str | Path | None = None,
    model: str | None = None,
    base_url: str | None = None,
    out: IO[str] | None = None,
    live: Any = False,
) -> list[Trace]:
    """Learn rules on a small data set under ``record_trace`` and print the traces.

    Args:
        directory: Folder for rulechef's dataset file and the traces.
        data: A ``text``/``label`` JSONL file; None for the packaged intents.
        model: Model name for a real endpoint.
        base_url: OpenAI-compatible endpoint (used with ``OPENAI_API_KEY``).
        out: Where to print; standard output (at call time) by default.
        live: Passed to ``record_trace``: progress on standard error while the
            runs go (the CLI shows a status line on a terminal).

    Returns:
        The traces of the run: the learning run, then the pruning run.

    Raises:
        DemoDataError: when ``data`` cannot be used or ``directory`` is a file.
        Exception: whatever a run raised (after its trace was printed).
    """
    out = out if out is not None else sys.stdout
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise DemoDataError("is a file; --dir needs a folder", folder)
    examples = demo_data(data)
    llm = choose_llm(model, base_url)
    _print_intro(out, examples, llm, folder)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        chef = _build_chef(folder, examples, llm)
    traces, paths, error = _learn_and_prune(chef, folder, live)
    elapsed = time.perf_counter() - started
    for trace in traces:
        print_trace(trace, file=out)
        _say(out)
    _print_outro(out, traces, paths, folder, elapsed)
    if error is not None:
        raise error
    return traces


def _say(out: IO[str], line: str = "") -> None:
    out.write(line + "\n")


def _print_intro(out: IO[str], data: DemoData, llm: LLMChoice, folder: Path) -> None:
    _say(
        out,
        f"rulechef-trace demo: {len(data.examples)} examples of {len(data.labels)} "
        f"labels from {data.source.name}",
    )
    _say(out, f"LLM: {llm.description}")
    _say(out, f"Traces go to {folder}{os.sep}")
    _say(out)


def _print_outro(
    out: IO[str], traces: list[Trace], paths: list[Path], folder: Path, elapsed: float
) -> None:
    _say(out, f"Recorded {len(traces)} runs in {elapsed:.2f}s; wrote:")
    for path in paths:
        _say(out, f"  {path}")
    learned = next((t for t in traces if t.run.get("kind") == "learn"), None)
    if learned is not None:
        latest = next((p for p in paths if p.parent == folder), None)
        _say(out)
        _say(out, "Next:")
        if latest is not None:
            _say(out, f"  rulechef-trace lineage {latest}")
        _say(out, f"  rulechef-trace history {folder}")
