"""The workload: data, the stand-in LLM loaded from its files, the chef, the configurations.

Every configuration runs the same offline ``learn_rules()``: rulechef 0.2.x
driven by the deterministic stand-in LLM, so a run is CPU-bound and
repeatable. Configuration A must never import ``rulechef_trace``, so the
stand-in is loaded from its files (:func:`load_standin`) in every worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

Example = tuple[str, str]

DATASET_NAME = "bench"
TASK_DESCRIPTION = "Classify each message into one intent label"

# The module name the stand-in imports its prompt markers by.
PROMPTS_MODULE = "rulechef_trace._capture.rulechef02.prompts"


@dataclass(frozen=True)
class Config:
    """One configuration: what its worker does around ``learn_rules()``."""

    mode: str  #: plain, record or noop
    description: str
    imports_package: bool
    timed: bool = True  #: part of the rotating wall-clock rounds


CONFIGS: dict[str, Config] = {
    "A": Config("plain", "plain rulechef (rulechef_trace not imported)", False),
    "A2": Config("plain", "plain rulechef again (A/A control)", False),
    "B": Config("plain", "rulechef_trace imported, nobody listening", True),
    "C": Config("record", "record_trace(chef) writing the trace files", True),
    "D": Config("noop", "no-op receiver on every signal", True),
    "P": Config("record", "record_trace under direct accounting (not timed)", True, False),
}
TIMED: tuple[str, ...] = tuple(name for name, config in CONFIGS.items() if config.timed)

# Neutral openings and closings that occur under every label, so that they
# never become rule keywords; they make distinct texts when data is scaled.
PREFIXES: tuple[str, ...] = (
    "",
    "Hi, ",
    "Hello, ",
    "Quick question: ",
    "Sorry to bother you, ",
    "Good morning. ",
    "Urgent: ",
)
SUFFIXES: tuple[str, ...] = ("", " Thanks.", " Please help.", " Cheers!", " Any ideas?")

# Syllables of the made-up words of the many-class data set.
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "bu", "da", "fe")
_FILLERS = (
    "I need help with the {a} and the {b} today",
    "Can you tell me why my {a} shows {b}",
    "There is a problem: {b} keeps happening to my {a}",
    "How do I fix {a} when it says {b}",
    "My {a} stopped working after the {b}",
    "Please check the {b} on my {a}",
)


def package_dir() -> Path:
    """The folder of the ``rulechef_trace`` package, found without importing it.

    Raises:
        RuntimeError: When ``rulechef_trace`` is not installed.
    """
    spec = importlib.util.find_spec("rulechef_trace")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("rulechef_trace is not importable; install the package first")
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_data_file() -> Path:
    """The demo's intents data set, located without importing the package."""
    return package_dir() / "demo" / "data" / "intents.jsonl"


def load_labelled(path: Path, text_field: str, label_field: str) -> list[Example]:
    """Read ``(text, label)`` pairs from a JSONL file.

    Lines without both fields as non-empty strings are skipped.

    Raises:
        ValueError: When no line has both fields.
    """
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            text, label = record.get(text_field), record.get(label_field)
            if isinstance(text, str) and isinstance(label, str) and text and label:
                examples.append((text, label))
    if not examples:
        raise ValueError(f"{path}: no line has string fields {text_field!r} and {label_field!r}")
    return examples


def scale_examples(examples: Sequence[Example], size: int) -> list[Example]:
    """Make exactly ``size`` examples from ``examples``, deterministically.

    Round 0 is the data itself; round k wraps every text in the k-th
    prefix/suffix combination. Labels never change.
    """
    out: list[Example] = []
    round_ = 0
    while len(out) < size:
        prefix = PREFIXES[round_ % len(PREFIXES)]
        suffix = SUFFIXES[(round_ // len(PREFIXES)) % len(SUFFIXES)]
        for text, label in examples[: size - len(out)]:
            out.append((f"{prefix}{text}{suffix}", label))
        round_ += 1
    return out


def many_classes(classes: int, per_class: int) -> list[Example]:
    """A synthetic data set of ``classes`` labels, each with its own made-up words.

    Each label owns four words built from syllables; every text names two of
    them in a neutral sentence. Every fifth text also names a word of the
    next label, so that some rules misfire and the learner has failures to
    patch. Deterministic, without randomness.
    """
    examples: list[Example] = []
    for label_no in range(classes):
        words = [_word(label_no, k) for k in range(4)]
        stray = _word((label_no + 1) % classes, 0)
        for n in range(per_class):
            a, b = words[n % 4], words[(n + 1 + n // 4) % 4]
            if n % 5 == 4:
                b = stray
            text = _FILLERS[n % len(_FILLERS)].format(a=a, b=b)
            examples.append((text, f"intent_{label_no:02d}"))
    return examples


def _word(label_no: int, k: int) -> str:
    """The k-th word of a label: three syllables, the base-12 digits of its number."""
    n = len(_SYLLABLES)
    index = label_no * 4 + k
    return "".join(_SYLLABLES[(index // n**place) % n] for place in (0, 1, 2))


def write_jsonl(examples: Sequence[Example], path: Path) -> None:
    """Write ``(text, label)`` pairs as ``{"text", "label"}`` JSONL lines."""
    with path.open("w", encoding="utf-8") as handle:
        for text, label in examples:
            handle.write(json.dumps({"text": text, "label": label}) + "\n")


def load_standin() -> ModuleType:
    """Load the stand-in LLM package from its files, without importing ``rulechef_trace``.

    The stand-in's modules import each other relatively and the package only
    for its prompt markers, a standard-library module. That module is loaded
    from its file and offered under its dotted name while the stand-in loads,
    then the name is removed again: afterwards ``sys.modules`` holds no
    ``rulechef_trace`` module, and configuration A stays free of the package.

    Returns:
        The stand-in package, registered as ``_bench_standin``.
    """
    root = package_dir()
    prompts = _module_from_file("_bench_prompts", root / "_capture" / "rulechef02" / "prompts.py")
    folder = root / "demo" / "standin"
    spec = importlib.util.spec_from_file_location(
        "_bench_standin", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.modules[PROMPTS_MODULE] = prompts
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[PROMPTS_MODULE]
    return module


def _module_from_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_rulechef() -> tuple[ModuleType, ...]:
    """Import the rulechef modules the workload and the checks use."""
    import rulechef.coordinator
    import rulechef.engine
    import rulechef.evaluation
    import rulechef.learner
    import rulechef.pipeline
    import rulechef.ranking

    return (
        rulechef.pipeline,
        rulechef.learner,
        rulechef.engine,
        rulechef.coordinator,
        rulechef.ranking,
        rulechef.evaluation,
    )


def class_snapshot(modules: Sequence[ModuleType]) -> dict[str, Any]:
    """Every attribute of every class defined in ``modules``: ``{"module:Class.attr": object}``."""
    snapshot: dict[str, Any] = {}
    for module in modules:
        for cls_name, cls in vars(module).items():
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                for attr, value in vars(cls).items():
                    snapshot[f"{module.__name__}:{cls_name}.{attr}"] = value
    return snapshot


def changed_attributes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names whose object is not the very same one in both snapshots."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k, before) is not after.get(k, after))


def trace_modules_loaded() -> list[str]:
    """Names of loaded ``rulechef_trace`` modules (none in configuration A)."""
    return sorted(
        m for m in sys.modules if m == "rulechef_trace" or m.startswith("rulechef_trace.")
    )


def build_chef(
    standin: ModuleType, examples: Sequence[Example], root: Path
) -> tuple[Any, list[Any]]:
    """A fresh RuleChef with two stand-ins (learner, coordinator), examples added.

    Args:
        standin: The loaded stand-in package.
        examples: Labelled examples to add.
        root: A fresh, empty storage folder.

    Returns:
        The chef and its two stand-in clients.
    """
    from rulechef import Task, TaskType
    from rulechef.coordinator import AgenticCoordinator
    from rulechef.engine import RuleChef

    llm, coordinator_llm = standin.StandInLLM(), standin.StandInLLM()
    coordinator = AgenticCoordinator(
        coordinator_llm, prune_after_learn=True, enable_critic=True, audit_interval=2
    )
    task = Task(
        name="Bench intents",
        type=TaskType.CLASSIFICATION,
        input_schema={"text": "str"},
        output_schema={"label": "str"},
        description=TASK_DESCRIPTION,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        chef = RuleChef(
            task=task,
            client=llm,
            coordinator=coordinator,
            storage_path=str(root),
            dataset_name=DATASET_NAME,
        )
        for text, label in examples:
            chef.add_example({"text": text}, {"label": label})
    return chef, [llm, coordinator_llm]


def llm_calls(llms: Sequence[Any]) -> dict[str, int]:
    """Calls answered by the stand-ins, by prompt kind, plus ``total``."""
    calls: Counter[str] = Counter()
    for llm in llms:
        calls.update(llm.calls)
    return {**dict(sorted(calls.items())), "total": sum(calls.values())}


def fingerprint(result: Any, llms: Sequence[Any]) -> dict[str, Any]:
    """What a run produced, to check that every configuration did the same work."""
    rules, evaluation = result if isinstance(result, tuple) else ([], None)
    f1 = round(evaluation.micro_f1, 6) if evaluation is not None else None
    return {"rules": len(rules), "f1": f1, "llm_calls": llm_calls(llms)}


def trace_files(root: Path) -> list[Path]:
    """The trace files a run left in its storage folder (history, latest, streams)."""
    return sorted(p for p in root.rglob("*.trace.json*") if p.is_file())
