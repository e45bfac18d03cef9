"""What the stand-in reads out of rulechef's prompts: shown examples, rules, failures, metrics."""

from __future__ import annotations

import collections
import itertools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._rules import DEFAULT_PRIORITY, pattern_terms

logger = logging.getLogger("rulechef_trace")


@dataclass(frozen=True)
class _Failure:
    """One failure listed in a patch prompt."""

    text: str
    expected: str
    got: str | None
    got_rule: str | None


@dataclass
class PromptRule:
    """A rule as listed in a patch or audit prompt."""

    name: str
    pattern: str
    label: str | None
    priority: int
    rule_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def terms(self) -> list[str] | None:
        """Keyword fragments of the pattern, or None if it is not a keyword rule."""
        return pattern_terms(self.pattern)

    @property
    def precision(self) -> float:
        """Precision from the audit metrics (1.0 when unknown)."""
        value = self.metrics.get("precision")
        return float(value) if value is not None else 1.0

    @property
    def matches(self) -> int:
        """Match count from the audit metrics (0 when unknown)."""
        return int(self.metrics.get("matches") or 0)


@dataclass(frozen=True)
class PatchContext:
    """Everything a patch answer is derived from."""

    key: str
    rules: list[PromptRule]
    failures: list[_Failure]
    corpus: dict[str, list[str]]
    class_sizes: dict[str, int]
    class_f1: dict[str, float]
    max_rules: int


# ---------------------------------------------------------------------------
# Prompt parsing
# ---------------------------------------------------------------------------


def _json_after(prompt: str, marker: str, opener: str = "[") -> Any:
    """Decode the first JSON value starting with ``opener`` after ``marker``."""
    start = prompt.find(marker)
    if start < 0:
        return None
    start = prompt.find(opener, start + len(marker))
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(prompt, start)
    except json.JSONDecodeError:
        logger.debug("stand-in: undecodable JSON after %r", marker)
        return None
    return value


def primary_key(prompt: str) -> str:
    """The output key rulechef asks rules to fill (``label`` by default)."""
    match = re.search(r'"output_key": "([^"]+)"', prompt)
    return match.group(1) if match else "label"


def int_after(prompt: str, pattern: str, default: int) -> int:
    """The integer captured by ``pattern`` in the prompt, else ``default``."""
    match = re.search(pattern, prompt)
    return int(match.group(1)) if match else default


def _text_of(input_data: Any) -> str:
    """The text of an input dict (its ``text`` field, else its longest string)."""
    if isinstance(input_data, str):
        return input_data
    if not isinstance(input_data, dict):
        return ""
    text = input_data.get("text")
    if isinstance(text, str):
        return text
    strings = [v for v in input_data.values() if isinstance(v, str)]
    return max(strings, key=len) if strings else ""


def _label_of(output: Any, key: str) -> str | None:
    """The label in an output dict, or None."""
    if not isinstance(output, dict):
        return None
    value = output.get(key, output.get("label"))
    return value if isinstance(value, str) and value else None


def parse_shown_examples(prompt: str, key: str) -> list[tuple[str, str, bool]]:
    """``Input:``/``Output:``/``Label:`` pairs of a synthesis prompt.

    Returns:
        (text, label, is_positive) triples; ``Output:`` lines are positives,
        ``Label:`` lines (per-class counter-examples) are not.
    """
    found = []
    lines = prompt.splitlines()
    for line, following in itertools.pairwise(lines):
        if not line.startswith("Input: "):
            continue
        for prefix, positive in (("Output: ", True), ("Label: ", False)):
            if following.startswith(prefix):
                triple = _decode_example(line[7:], following[len(prefix) :], key, positive)
                if triple:
                    found.append(triple)
    return found


def _decode_example(
    input_json: str, output_json: str, key: str, positive: bool
) -> tuple[str, str, bool] | None:
    """One (text, label, is_positive) triple from JSON-encoded input/output."""
    try:
        text = _text_of(json.loads(input_json))
        label = _label_of(json.loads(output_json), key)
    except json.JSONDecodeError:
        return None
    return (text, label, positive) if text and label else None


def parse_evidence(prompt: str) -> dict[str, list[str]]:
    """Texts per label from rulechef's ``DATA EVIDENCE FROM TRAINING`` block."""
    evidence: dict[str, list[str]] = {}
    block_start = prompt.find("DATA EVIDENCE FROM TRAINING:")
    if block_start < 0:
        return evidence
    line_re = re.compile(r"^- (.+?) \(\d+ examples\): (.*)$")
    for line in prompt[block_start:].splitlines()[1:]:
        if not line.strip():
            break
        match = line_re.match(line)
        if not match:
            continue
        try:
            texts = json.loads("[" + match.group(2) + "]")
        except json.JSONDecodeError:
            continue  # rulechef cuts the block off at 3000 characters
        evidence[match.group(1)] = [t for t in texts if isinstance(t, str)]
    return evidence


def parse_class_f1(prompt: str) -> dict[str, float]:
    """Per-class F1 from the ``  label: ... F1=NN%`` lines of a prompt."""
    scores = {}
    for match in re.finditer(r"^ {2}(\S.*?): (?:P=\d+% R=\d+% )?F1=(\d+)%", prompt, re.M):
        scores[match.group(1)] = int(match.group(2)) / 100.0
    return scores


def _parse_class_sizes(prompt: str) -> dict[str, int]:
    """Examples per class (TP + FN) from a prompt's per-class metric lines."""
    sizes = {}
    for match in re.finditer(r"^ {2}(\S.*?): .*\(TP=(\d+) FP=\d+ FN=(\d+)\)", prompt, re.M):
        sizes[match.group(1)] = int(match.group(2)) + int(match.group(3))
    return sizes


def _rule_from_entry(entry: Any, key: str) -> PromptRule | None:
    """A :class:`PromptRule` from a patch- or audit-prompt JSON entry."""
    if not isinstance(entry, dict) or not entry.get("name"):
        return None
    pattern = entry.get("content", entry.get("pattern", ""))
    return PromptRule(
        name=str(entry["name"]),
        pattern=pattern if isinstance(pattern, str) else "",
        label=_label_of(entry.get("output_template"), key),
        priority=int(entry.get("priority") or DEFAULT_PRIORITY),
        rule_id=entry.get("id"),
        metrics=entry.get("metrics") or {},
    )


def parse_rules(prompt: str, marker: str, key: str) -> list[PromptRule]:
    """The rules of the JSON list that follows ``marker``."""
    entries = _json_after(prompt, marker)
    if not isinstance(entries, list):
        return []
    rules = [_rule_from_entry(entry, key) for entry in entries]
    return [rule for rule in rules if rule is not None]


def _parse_failures(prompt: str, key: str) -> list[_Failure]:
    """The failures listed in a patch prompt."""
    entries = _json_after(prompt, "FAILURES TO FIX")
    failures = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        text = _text_of(entry.get("input"))
        expected = _label_of(entry.get("expected"), key)
        got = entry.get("got")
        got = got if isinstance(got, dict) else {}
        if text and expected:
            rule_name = got.get("rule_name") or None
            failures.append(_Failure(text, expected, _label_of(got, key), rule_name))
    return failures


def _label_corpus(prompt: str, failures: Sequence[_Failure]) -> dict[str, list[str]]:
    """Known texts per label: the data evidence plus the failure inputs."""
    corpus: dict[str, list[str]] = collections.defaultdict(list)
    for label, texts in parse_evidence(prompt).items():
        corpus[label].extend(texts)
    for failure in failures:
        if failure.text not in corpus[failure.expected]:
            corpus[failure.expected].append(failure.text)
    return dict(corpus)


def patch_context(prompt: str) -> PatchContext:
    """Parse everything a patch answer needs from a patch prompt."""
    key = primary_key(prompt)
    failures = _parse_failures(prompt, key)
    return PatchContext(
        key=key,
        rules=parse_rules(prompt, "CURRENT RULES", key),
        failures=failures,
        corpus=_label_corpus(prompt, failures),
        class_sizes=_parse_class_sizes(prompt),
        class_f1=parse_class_f1(prompt),
        max_rules=int_after(prompt, r"Keep total new/updated rules <= (\d+)", 8),
    )
