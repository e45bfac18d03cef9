"""A scripted OpenAI-compatible client and small builders for driving rulechef offline."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from rulechef import RuleChef, Task, TaskType
from rulechef.coordinator import AgenticCoordinator, AuditResult, CoordinatorProtocol

from rulechef_trace._capture.rulechef02 import prompts

if TYPE_CHECKING:
    from openai import OpenAI

    from rulechef_trace import Trace, TraceRecorder

# Script keys are the prompt kinds, except that guidance answers go under "guide".
_SCRIPT_KEYS = {prompts.GUIDANCE: "guide"}

Responder = Callable[[str], Any]

#: An answer whose message has no content at all (``content`` is ``None``).
NO_CONTENT: Any = object()


def prompt_kind(prompt: str) -> str:
    """Name the rulechef call a prompt belongs to ("synthesis" when none matches)."""
    kind = prompts.prompt_kind(prompt, default=prompts.SYNTHESIS)
    return _SCRIPT_KEYS.get(kind, kind)


def target_class(prompt: str) -> str:
    """The class a per-class synthesis prompt asks for."""
    return prompt.split(prompts.PER_CLASS_MARKER)[1].split("'")[0]


def audited_rules(prompt: str) -> list[dict[str, Any]]:
    """The rules (id, name, pattern, metrics) an audit prompt shows."""
    block = prompt.split("RULES:\n", 1)[1].split("\n\nYour job", 1)[0]
    return list(json.loads(block))


def ids_by_name(prompt: str) -> dict[str, str]:
    """Map rule name to id from an audit prompt."""
    return {r["name"]: r["id"] for r in audited_rules(prompt)}


def rule(name: str, words: str, label: str, priority: int = 5) -> dict[str, Any]:
    """A classification regex rule as an LLM would return it."""
    return {
        "name": name,
        "description": f"{label} keywords",
        "format": "regex",
        "pattern": rf"(?i)\b({words})\b",
        "output_template": {"label": label},
        "output_key": "label",
        "priority": priority,
    }


class ScriptedLLM:
    """OpenAI-compatible client answering each prompt kind from a script.

    Each kind maps to a list of answers used in order (the last one repeats) or
    to a callable ``(prompt) -> answer``. An answer is a dict (sent as JSON), a
    string (sent as is), :data:`NO_CONTENT`, or an exception instance (raised).
    Every answer reports token usage: a quarter of the prompt's and the
    answer's characters.
    """

    def __init__(self, *, usage: bool = True, **script: Any):
        self.script = script
        self.usage = usage
        self.calls: Counter[str] = Counter()
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **kwargs: Any) -> Any:
        prompt = kwargs["messages"][-1]["content"]
        kind = prompt_kind(prompt)
        with self._lock:
            n = self.calls[kind]
            self.calls[kind] += 1
            self.prompts.append(prompt)
        answer = self._answer(kind, prompt, n)
        if isinstance(answer, BaseException):
            raise answer
        text = (
            None
            if answer is NO_CONTENT
            else answer
            if isinstance(answer, str)
            else json.dumps(answer)
        )
        # Token counts as a provider reports them: a deterministic function of the sizes.
        usage = SimpleNamespace(
            prompt_tokens=len(prompt) // 4,
            completion_tokens=len(text or "") // 4,
            total_tokens=len(prompt) // 4 + len(text or "") // 4,
        )
        choice = SimpleNamespace(message=SimpleNamespace(content=text), finish_reason="stop")
        return SimpleNamespace(
            choices=[choice], model=kwargs.get("model"), usage=usage if self.usage else None
        )

    def _answer(self, kind: str, prompt: str, n: int) -> Any:
        entry = self.script.get(kind, DEFAULTS.get(kind))
        if isinstance(entry, list):
            entry = entry[min(n, len(entry) - 1)] if entry else {}
        if callable(entry):
            return entry(prompt)
        return entry if entry is not None else {}


# --- the sentiment task every scenario uses --------------------------------

POS = ["good day", "great stuff", "nice one", "lovely weather", "good food", "great trip"]
NEG = ["bad day", "awful service", "terrible thing", "horrible food", "bad trip", "awful mess"]
DATA = [(t, "pos") for t in POS] + [(t, "neg") for t in NEG]

POS_WORDS = "good|great"
NEG_WORDS = "bad|awful"


def per_class_rules(prompt: str) -> dict[str, Any]:
    """Per-class synthesis: a first keyword rule per class."""
    label = target_class(prompt)
    words = POS_WORDS if label == "pos" else NEG_WORDS
    return {"rules": [rule(f"{label} words", words, label)]}


def bulk_rules(prompt: str) -> dict[str, Any]:
    """Bulk synthesis: a first keyword rule for both classes."""
    return {"rules": [rule("pos words", POS_WORDS, "pos"), rule("neg words", NEG_WORDS, "neg")]}


DEFAULTS: dict[str, Any] = {
    "per_class": per_class_rules,
    "synthesis": bulk_rules,
    "patch": {"rules": []},
    "audit": {"analysis": "fine", "actions": []},
    "guide": {"guidance": "keep going", "should_continue": True},
    "critic": {"analysis": "ok", "rule_feedback": {}, "task_guidance": ""},
    "trigger": {"should_learn": False},
}

# Patches that fix, break or reshape the first rules.
FIX_POS = {"rules": [rule("pos more", "nice|lovely", "pos")]}
FIX_NEG = {"rules": [rule("neg more", "terrible|horrible", "neg")]}
FIX_ALL = {
    "rules": [rule("pos more", "nice|lovely", "pos"), rule("neg more", "terrible|horrible", "neg")]
}
BREAK = {"rules": [rule("broad", "day|thing|one|stuff|food|trip|mess", "pos", priority=9)]}


def restoring_llm() -> ScriptedLLM:
    """An LLM whose accepted patch lowers F1, so refinement hands back the synthesized rules.

    "day" makes "pos words" fire on "bad day" (a false positive). The patch
    swaps it for a precise but narrow rule: precision rises, F1 falls, the
    patch is accepted, and rulechef returns the earlier, better rules.
    """
    return ScriptedLLM(
        per_class=lambda p: {
            "rules": [
                rule("pos words", "good|great|day", "pos", 6)
                if "'pos'" in p.split("FOCUS")[1][:40]
                else rule("neg words", "awful", "neg", 5)
            ]
        },
        patch=[
            {"rules": [rule("pos strict", "great", "pos", 6)], "deleted_rules": ["pos words"]},
            {"rules": []},
        ],
    )


def task() -> Task:
    """The sentiment classification task."""
    return Task(
        name="sentiment",
        description="Classify short reviews as pos or neg",
        input_schema={"text": "str"},
        output_schema={"label": "str"},
        type=TaskType.CLASSIFICATION,
    )


class StopAfterCoordinator(CoordinatorProtocol):
    """A user's own coordinator: stops after N iterations, audits by a callable."""

    def __init__(
        self,
        stop_after: int = 99,
        audit: Callable[[list[Any]], AuditResult] | None = None,
        critique: Callable[[list[Any]], dict[str, Any] | None] | None = None,
    ):
        self.stop_after = stop_after
        self.audit = audit
        self.critique = critique
        self.prune_after_learn = audit is not None
        self.audit_interval = 2
        self.critic_interval = 1 if critique else 0

    def should_trigger_learning(self, buffer: Any, current_rules: Any) -> Any:
        from rulechef.coordinator import CoordinationDecision

        return CoordinationDecision(should_learn=False, strategy="balanced", reasoning="manual")

    def analyze_buffer(self, buffer: Any) -> dict[str, Any]:
        return {}

    def on_learning_complete(self, old_rules: Any, new_rules: Any, metrics: Any) -> None:
        return None

    def guide_refinement(
        self, eval_result: Any, iteration: int, max_iterations: int
    ) -> tuple[str, bool]:
        return "custom advice", iteration + 1 < self.stop_after

    def audit_rules(self, rules: list[Any], rule_metrics: list[Any]) -> AuditResult:
        return self.audit(rules) if self.audit else AuditResult()

    def critique_rules(self, rules: Any, rule_metrics: Any, eval_result: Any, dataset: Any) -> Any:
        return self.critique(rules) if self.critique else None


def last_trace(recorder: TraceRecorder) -> Trace:
    """The recorder's most recent trace; the test fails when it holds none."""
    trace = recorder.last
    assert trace is not None, "the recorder holds no trace"
    return trace


def as_client(llm: object) -> OpenAI:
    """A stand-in client where rulechef's annotation asks for an ``OpenAI``.

    rulechef only calls ``chat.completions.create`` on its client, which the
    scripted and stand-in clients provide; the cast says so to the type checker.
    """
    return cast("OpenAI", llm)


def make_chef(
    tmp_path: Any,
    llm: ScriptedLLM,
    coordinator: str | CoordinatorProtocol = "simple",
    *,
    data: list[tuple[str, str]] | None = None,
    name: str = "reviews",
    **chef_kwargs: Any,
) -> Any:
    """A chef on the sentiment task with its examples added (not learned yet).

    Typed ``Any`` as the package types a chef: rulechef 0.2 assigns ``dataset``
    and ``learner`` None before a task sets them, so mypy infers both as None.
    """
    chosen: CoordinatorProtocol | None = None
    if coordinator == "agentic":
        chosen = AgenticCoordinator(
            as_client(llm),
            prune_after_learn=True,
            enable_critic=True,
            audit_interval=2,
            critic_interval=2,
            verbose=False,
        )
    elif not isinstance(coordinator, str):
        chosen = coordinator
    chef = RuleChef(
        task=task(),
        client=as_client(llm),
        dataset_name=name,
        storage_path=str(tmp_path),
        coordinator=chosen,
        **chef_kwargs,
    )
    for text, label in data if data is not None else DATA:
        chef.buffer.add_human_example({"text": text}, {"label": label})
    return chef


def audit_merge(names: list[str], merged_name: str, words: str) -> Callable[[str], dict[str, Any]]:
    """An audit answer merging the named rules into one keyword rule."""

    def answer(prompt: str) -> dict[str, Any]:
        ids = ids_by_name(prompt)
        return {
            "analysis": "merge",
            "actions": [
                {
                    "action": "merge",
                    "rule_ids": [ids[n] for n in names if n in ids],
                    "merged_pattern": rf"(?i)\b({words})\b",
                    "merged_name": merged_name,
                    "reason": "overlap",
                }
            ],
        }

    return answer


def words_of(pattern: str) -> set[str]:
    """Keywords of a rule pattern written by :func:`rule`."""
    match = re.search(r"\((.*)\)", pattern)
    return set(match.group(1).split("|")) if match else set()
