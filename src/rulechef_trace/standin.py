"""A deterministic, offline stand-in for the LLM that rulechef talks to.

:class:`StandInLLM` mimics the part of the OpenAI client that rulechef 0.2.2
uses (``client.chat.completions.create(**kwargs)``). It never touches the
network, uses no randomness and no clock, and answers in milliseconds.

It recognises which rulechef prompt it was sent from fixed markers in
rulechef's prompt text (see :func:`detect_prompt_kind`) and derives every
answer from the data shown in that prompt, never from answers canned for one
data set:

* synthesis (bulk or per class): keyword rules ``(?i)\\b(?:w1|w2)\\b`` whose
  keywords occur in at least two positive texts and in none of the negative
  texts (counter-examples and the other labels' data evidence);
* patch: tighten rules that fired on other labels, add keyword rules for the
  failing inputs (``<label>_patch_*`` at the default priority for unmatched
  inputs, ``<label>_override_*`` one priority above the rule that claimed a
  misclassified input) and a lowest-priority ``<label>_fallback`` rule built
  from a word shared by many failing inputs;
* audit: remove rules with precision 0, merge pairs of keyword rules with the
  same label and priority;
* guidance, critic and trigger decision: computed from the metrics and
  counts in the prompt.

To give a learning run a story, every ``bad_patch_every``-th patch answer is
deliberately worse: alternately an over-broad rule above every other rule, and
the deletion of the top rule of the best-scoring class, so that rulechef gets
to reject patches.

The module also provides :func:`load_examples` for ``text``/``label`` JSONL
files and :func:`packaged_data_path` for the small intent data set shipped in
``rulechef_trace/data/intents.jsonl``.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger("rulechef_trace")

__all__ = [
    "PROMPT_KINDS",
    "StandInLLM",
    "detect_prompt_kind",
    "load_examples",
    "packaged_data_path",
]

# ---------------------------------------------------------------------------
# Prompt kinds and the markers rulechef 0.2.2 puts in its prompts
# ---------------------------------------------------------------------------

SYNTHESIS = "synthesis"
PER_CLASS = "per_class"
PATCH = "patch"
AUDIT = "audit"
GUIDANCE = "guidance"
CRITIC = "critic"
TRIGGER = "trigger"
OTHER = "other"

#: Every kind :func:`detect_prompt_kind` can return, i.e. every key of
#: :attr:`StandInLLM.calls`.
PROMPT_KINDS: tuple[str, ...] = (
    SYNTHESIS,
    PER_CLASS,
    PATCH,
    AUDIT,
    GUIDANCE,
    CRITIC,
    TRIGGER,
    OTHER,
)

# Checked in order; the first marker found decides the kind. The coordinator
# prompts come first: they never embed the learner's prompt texts.
_KIND_MARKERS: tuple[tuple[str, str], ...] = (
    (AUDIT, "You are a Rule Auditor"),  # AgenticCoordinator.audit_rules
    (GUIDANCE, "You are the Refinement Coordinator"),  # .guide_refinement
    (CRITIC, "You are an expert Rule Critic"),  # .critique_rules
    (TRIGGER, "Decide if we should trigger a retraining loop"),  # ._ask_llm
    (PATCH, "You are updating an existing rule-based extractor"),  # learner patch
    (PATCH, "Refine the ruleset for this task while fixing the failures"),  # unused builder
    (PER_CLASS, "FOCUS: Generate rules for class '"),  # synthesize_ruleset_per_class
    (SYNTHESIS, "YOUR TASK:"),  # synthesize_ruleset
)

# Words that carry no intent on their own; never used as rule keywords.
_STOPWORD_TEXT = """
    a about after again all also am an and any are around as at away back be
    because been before being but by can cannot could did didn does doesn
    doing don done down each even ever every for from get gets getting got
    had has have having he her here him his how i if in into is isn it its
    just let like me mine more most much my myself need needs no not now of
    off on once one only or other our out over own please really same she
    should since so some still such than thank thanks that the their them
    then there these they this those through to too under until up upon us
    very was wasn way we were weren what when where which while who whom why
    will with won would yes yet you your yours
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_TOKEN_RE = re.compile(r"[a-z]+")
_KEYWORD_PATTERN_RE = re.compile(r"^\(\?i\)\\b\(\?:(?P<body>.+)\)\\b$")
_MIN_TOKEN_LEN = 3
_STEM_SUFFIXES = ("ing", "ed", "es", "s")
_MIN_STEM_LEN = 4
_DEFAULT_PRIORITY = 5
_FALLBACK_PRIORITY = 1
# Patches may use keywords that also occur in a few texts of other classes.
_PATCH_MIN_PRECISION = 0.75
# Below this many examples per class, a keyword seen once is evidence enough
# for a patch.
_SMALL_CLASS_SIZE = 20
_MAX_TIGHTENED_RULES = 2
_MAX_PATCH_TERMS = 4
_MAX_AUDIT_MERGES = 2
_MIN_MERGE_PRECISION = 0.5
_GOOD_ENOUGH_F1 = 0.95

# ---------------------------------------------------------------------------
# OpenAI-compatible response objects
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    content: str
    role: str = "assistant"


@dataclass(frozen=True)
class _Choice:
    message: _Message
    index: int = 0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class _Completion:
    id: str
    model: str
    choices: list[_Choice]
    usage: _Usage
    object: str = "chat.completion"


class _Completions:
    """The ``client.chat.completions`` namespace."""

    def __init__(self, owner: StandInLLM) -> None:
        self._owner = owner

    def create(self, **kwargs: Any) -> _Completion:
        """Answer one chat completion request.

        Args:
            **kwargs: OpenAI-style arguments. Only ``messages`` (and ``model``,
                echoed back) are used; ``response_format``, token limits,
                ``temperature`` and anything else are accepted and ignored.

        Returns:
            An object shaped like an OpenAI ``ChatCompletion`` whose
            ``choices[0].message.content`` is a JSON string.
        """
        messages = kwargs.get("messages") or []
        return self._owner._complete(messages, str(kwargs.get("model") or ""))


class _Chat:
    """The ``client.chat`` namespace."""

    def __init__(self, owner: StandInLLM) -> None:
        self.completions = _Completions(owner)


# ---------------------------------------------------------------------------
# What the stand-in reads out of prompts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """One failure listed in a patch prompt."""

    text: str
    expected: str
    got: str | None
    got_rule: str | None


@dataclass
class _PromptRule:
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
        return _pattern_terms(self.pattern)

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
class _PatchContext:
    """Everything a patch answer is derived from."""

    key: str
    rules: list[_PromptRule]
    failures: list[_Failure]
    corpus: dict[str, list[str]]
    class_sizes: dict[str, int]
    class_f1: dict[str, float]
    max_rules: int


# ---------------------------------------------------------------------------
# Prompt kind detection
# ---------------------------------------------------------------------------


def detect_prompt_kind(prompt: str) -> str:
    """Tell which rulechef 0.2.2 prompt this is.

    Args:
        prompt: The full user prompt text.

    Returns:
        One of :data:`PROMPT_KINDS`; ``"other"`` when no marker matches.
    """
    for kind, marker in _KIND_MARKERS:
        if marker in prompt:
            return kind
    return OTHER


def _prompt_from_messages(messages: Sequence[dict[str, Any]]) -> str:
    """Join the text of all non-assistant messages."""
    parts = []
    for message in messages:
        if message.get("role") == "assistant":
            continue
        content = message.get("content", "")
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) if isinstance(part, dict) else str(part)
                for part in content
            )
        parts.append(str(content))
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Keywords and keyword patterns
# ---------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Lower-case content words of a text, in order, without duplicates."""
    seen: dict[str, None] = {}
    for token in _TOKEN_RE.findall(text.lower()):
        if len(token) >= _MIN_TOKEN_LEN and token not in _STOPWORDS:
            seen.setdefault(token, None)
    return list(seen)


def _stem(word: str) -> str:
    """Strip one common English suffix, keeping at least four letters."""
    for suffix in _STEM_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM_LEN:
            return word[: -len(suffix)]
    return word


def _fragment(word: str) -> str:
    """Regex fragment for a keyword: its stem plus any word ending."""
    stem = _stem(word)
    if len(stem) >= _MIN_STEM_LEN:
        return re.escape(stem) + r"\w*"
    return re.escape(word)


def _build_pattern(terms: Sequence[str]) -> str:
    """Case-insensitive whole-word alternation of keyword fragments."""
    return r"(?i)\b(?:" + "|".join(terms) + r")\b"


def _pattern_terms(pattern: str) -> list[str] | None:
    """Keyword fragments of a :func:`_build_pattern` pattern, else None."""
    match = _KEYWORD_PATTERN_RE.match(pattern.strip())
    if not match:
        return None
    terms = [t for t in match.group("body").split("|") if t]
    return terms or None


def _term_word(term: str) -> str:
    """Readable word of a fragment (``refund\\w*`` -> ``refund``)."""
    return re.sub(r"[^a-z0-9]", "", term.replace(r"\w*", "").lower()) or "kw"


@functools.lru_cache(maxsize=8192)
def _compiled(term: str) -> re.Pattern[str]:
    return re.compile(r"(?i)\b(?:" + term + r")\b")


def _matches(term: str, text: str) -> bool:
    return _compiled(term).search(text) is not None


def _hits(term: str, texts: Iterable[str]) -> int:
    """Number of texts a fragment matches."""
    return sum(1 for text in texts if _matches(term, text))


def _candidate_terms(texts: Iterable[str]) -> list[str]:
    """All keyword fragments of the given texts, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for token in _tokens(text):
            seen.setdefault(_fragment(token), None)
    return list(seen)


def _select_terms(
    targets: Sequence[str],
    negatives: Sequence[str],
    *,
    support: Sequence[str] = (),
    max_terms: int = 9,
    min_hits: int = 2,
    min_precision: float = 1.0,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Greedily pick discriminative keyword fragments.

    A fragment qualifies when it matches at least one of ``targets``, at
    least ``min_hits`` texts of ``targets`` and ``support`` together, and its
    estimated precision ``hits / (hits + negative hits)`` is at least
    ``min_precision`` (1.0: it must match no negative at all). Fragments are
    picked by how many still-uncovered targets they add; ties go to higher
    precision, then more hits, then alphabetical order.

    Args:
        targets: Texts the rules must cover.
        negatives: Texts of other classes.
        support: Extra texts of the same class that count as evidence.
        max_terms: Upper bound on the number of fragments.
        min_hits: Minimum number of target+support texts a fragment matches.
        min_precision: Minimum estimated precision of a fragment.
        exclude: Fragments not to propose (e.g. already used by a rule).

    Returns:
        Selected fragments, best first.
    """
    skip = set(exclude)
    stats: dict[str, tuple[frozenset[int], int, float]] = {}
    for term in _candidate_terms(targets):
        if term in skip:
            continue
        covered = frozenset(i for i, text in enumerate(targets) if _matches(term, text))
        total = len(covered) + _hits(term, support)
        if total < min_hits:
            continue
        precision = total / (total + _hits(term, negatives))
        if precision >= min_precision:
            stats[term] = (covered, total, precision)

    chosen: list[str] = []
    uncovered = set(range(len(targets)))
    while stats and len(chosen) < max_terms:
        term = min(
            stats,
            key=lambda t: (-len(stats[t][0] & uncovered), -stats[t][2], -stats[t][1], t),
        )
        if not stats[term][0] & uncovered:
            break
        chosen.append(term)
        uncovered -= stats.pop(term)[0]
    return chosen


def _shared_words(texts: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Keyword fragments of ``texts``, most widely shared first.

    Fragments are ranked by how many distinct ``labels`` (parallel to
    ``texts``) they occur with, then by how many texts contain them, then
    alphabetically.
    """
    spread: dict[str, set[str]] = collections.defaultdict(set)
    freq: collections.Counter[str] = collections.Counter()
    for text, label in zip(texts, labels, strict=True):
        for term in _candidate_terms([text]):
            spread[term].add(label)
            freq[term] += 1
    return sorted(freq, key=lambda t: (-len(spread[t]), -freq[t], t))


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


def _primary_key(prompt: str) -> str:
    """The output key rulechef asks rules to fill (``label`` by default)."""
    match = re.search(r'"output_key": "([^"]+)"', prompt)
    return match.group(1) if match else "label"


def _int_after(prompt: str, pattern: str, default: int) -> int:
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


def _parse_shown_examples(prompt: str, key: str) -> list[tuple[str, str, bool]]:
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


def _parse_evidence(prompt: str) -> dict[str, list[str]]:
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


def _parse_class_f1(prompt: str) -> dict[str, float]:
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


def _rule_from_entry(entry: Any, key: str) -> _PromptRule | None:
    """A :class:`_PromptRule` from a patch- or audit-prompt JSON entry."""
    if not isinstance(entry, dict) or not entry.get("name"):
        return None
    pattern = entry.get("content", entry.get("pattern", ""))
    return _PromptRule(
        name=str(entry["name"]),
        pattern=pattern if isinstance(pattern, str) else "",
        label=_label_of(entry.get("output_template"), key),
        priority=int(entry.get("priority") or _DEFAULT_PRIORITY),
        rule_id=entry.get("id"),
        metrics=entry.get("metrics") or {},
    )


def _parse_rules(prompt: str, marker: str, key: str) -> list[_PromptRule]:
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
    for label, texts in _parse_evidence(prompt).items():
        corpus[label].extend(texts)
    for failure in failures:
        if failure.text not in corpus[failure.expected]:
            corpus[failure.expected].append(failure.text)
    return dict(corpus)


def _patch_context(prompt: str) -> _PatchContext:
    """Parse everything a patch answer needs from a patch prompt."""
    key = _primary_key(prompt)
    failures = _parse_failures(prompt, key)
    return _PatchContext(
        key=key,
        rules=_parse_rules(prompt, "CURRENT RULES", key),
        failures=failures,
        corpus=_label_corpus(prompt, failures),
        class_sizes=_parse_class_sizes(prompt),
        class_f1=_parse_class_f1(prompt),
        max_rules=_int_after(prompt, r"Keep total new/updated rules <= (\d+)", 8),
    )


# ---------------------------------------------------------------------------
# Rule JSON
# ---------------------------------------------------------------------------


def _rule_json(
    name: str, label: str, terms: Sequence[str], priority: int, key: str, description: str
) -> dict[str, Any]:
    """One rule in rulechef's schema-aware classification format."""
    return {
        "name": name,
        "description": description,
        "format": "regex",
        "pattern": _build_pattern(terms),
        "output_template": {key: label},
        "output_key": key,
        "priority": max(1, min(10, priority)),
    }


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "class"


def _unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... if taken; records the result."""
    name, number = base, 2
    while name in taken:
        name, number = f"{base}_{number}", number + 1
    taken.add(name)
    return name


def _patch_answer(
    analysis: str, rules: Sequence[dict[str, Any]] = (), deleted: Sequence[str] = ()
) -> dict[str, Any]:
    return {"analysis": analysis, "rules": list(rules), "deleted_rules": list(deleted)}


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


# ---------------------------------------------------------------------------
# Synthesis answers
# ---------------------------------------------------------------------------


def _class_rules(
    label: str,
    positives: Sequence[str],
    negatives: Sequence[str],
    key: str,
    *,
    terms_per_rule: int,
    max_rules: int,
    taken: set[str],
) -> list[dict[str, Any]]:
    """Keyword rules for one class, its keywords split over up to ``max_rules`` rules."""
    min_hits = 2 if len(positives) >= 4 else 1
    terms = _select_terms(
        positives, negatives, max_terms=terms_per_rule * max_rules, min_hits=min_hits
    )
    rules = []
    for start in range(0, len(terms), terms_per_rule):
        group = terms[start : start + terms_per_rule]
        name = _unique_name(f"{_slug(label)}_{_term_word(group[0])}", taken)
        words = ", ".join(_term_word(t) for t in group)
        desc = f"'{label}' keywords: {words}"
        rules.append(_rule_json(name, label, group, _DEFAULT_PRIORITY, key, desc))
    return rules[:max_rules]


def _synthesis_answer(prompt: str, terms_per_rule: int, rules_per_class: int) -> dict[str, Any]:
    """Bulk synthesis: keyword rules for every label shown, each vs all others."""
    key = _primary_key(prompt)
    by_label: dict[str, list[str]] = collections.defaultdict(list)
    for text, label, _ in _parse_shown_examples(prompt, key):
        by_label[label].append(text)
    max_rules = _int_after(prompt, r"ruleset \(max (\d+) rules\)", 10)
    per_label = max(1, min(rules_per_class, max_rules // max(1, len(by_label))))
    rules: list[dict[str, Any]] = []
    taken: set[str] = set()
    for label in sorted(by_label):
        negatives = [t for other, texts in by_label.items() if other != label for t in texts]
        rules += _class_rules(
            label,
            by_label[label],
            negatives,
            key,
            terms_per_rule=terms_per_rule,
            max_rules=per_label,
            taken=taken,
        )
    return {"analysis": f"keyword rules for {len(by_label)} labels", "rules": rules[:max_rules]}


def _per_class_answer(prompt: str, terms_per_rule: int, rules_per_class: int) -> dict[str, Any]:
    """Per-class synthesis: positives vs counter-examples and other labels' evidence."""
    key = _primary_key(prompt)
    match = re.search(r"FOCUS: Generate rules for class '(.+?)' ONLY", prompt)
    if not match:
        return {"analysis": "no target class found", "rules": []}
    label = match.group(1)
    shown = _parse_shown_examples(prompt, key)
    positives = [text for text, lab, positive in shown if positive and lab == label]
    negatives = [text for text, lab, _ in shown if lab != label]
    for other, texts in _parse_evidence(prompt).items():
        if other != label:
            negatives += texts
    max_rules = min(rules_per_class, _int_after(prompt, r"Generate up to (\d+) rules", 5))
    rules = _class_rules(
        label,
        positives,
        negatives,
        key,
        terms_per_rule=terms_per_rule,
        max_rules=max_rules,
        taken=set(),
    )
    return {"analysis": f"{len(positives)} positives for {label}", "rules": rules}


# ---------------------------------------------------------------------------
# Patch answers
# ---------------------------------------------------------------------------


def _good_patch(ctx: _PatchContext) -> dict[str, Any]:
    """Tighten misfiring rules, add keyword rules and a fallback rule."""
    tightened, deleted = _tighten_rules(ctx)
    added = _recall_rules(ctx, budget=ctx.max_rules - len(tightened) - 1)
    fallback = _fallback_rule(ctx)
    analysis = (
        f"{len(ctx.failures)} failures: tightened {len(tightened)} rule(s), "
        f"deleted {len(deleted)}, added {len(added) + len(fallback)}"
    )
    return _patch_answer(analysis, tightened + added + fallback, deleted)


def _tighten_rules(ctx: _PatchContext) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop keywords that fired on other labels more often than on their own.

    Only the rules with the most wrong firings are touched, and a keyword is
    only dropped after at least two wrong firings. A rule left without
    keywords is deleted.

    Returns:
        (updated rules reusing their names, names of rules to delete).
    """
    wrong_by_rule: dict[str, list[str]] = collections.defaultdict(list)
    for failure in ctx.failures:
        if failure.got and failure.got != failure.expected and failure.got_rule:
            wrong_by_rule[failure.got_rule].append(failure.text)
    candidates = [r for r in ctx.rules if r.name in wrong_by_rule and r.terms and r.label]
    candidates.sort(key=lambda r: (-len(wrong_by_rule[r.name]), r.name))
    updated, deleted = [], []
    for rule in candidates[:_MAX_TIGHTENED_RULES]:
        wrong, own = wrong_by_rule[rule.name], ctx.corpus.get(rule.label or "", [])
        terms = rule.terms or []
        kept = [t for t in terms if not 2 <= _hits(t, wrong) > _hits(t, own)]
        if len(kept) == len(terms):
            continue
        if kept:
            desc = f"Tightened: removed keywords that fired on other labels ({rule.name})"
            updated.append(
                _rule_json(rule.name, rule.label or "", kept, rule.priority, ctx.key, desc)
            )
        else:
            deleted.append(rule.name)
    return updated, deleted


def _failure_groups(ctx: _PatchContext) -> dict[tuple[str, int], list[str]]:
    """Failure texts by (expected label, priority a fixing rule needs).

    Unmatched inputs need the default priority; inputs another label's rule
    claimed need one priority above that rule.
    """
    priority_of = {r.name: r.priority for r in ctx.rules}
    groups: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
    for failure in ctx.failures:
        if failure.got is None:
            priority = _DEFAULT_PRIORITY
        else:
            priority = priority_of.get(failure.got_rule or "", _DEFAULT_PRIORITY) + 1
        groups[(failure.expected, priority)].append(failure.text)
    return groups


def _patch_terms(
    ctx: _PatchContext, label: str, targets: Sequence[str], proposed: Iterable[str] = ()
) -> list[str]:
    """Keywords for failing ``label`` inputs that its rules do not use yet.

    ``proposed`` are keywords this patch already uses for ``label``.
    """
    known = {t for r in ctx.rules if r.label == label for t in (r.terms or [])}
    known.update(proposed)
    negatives = [t for other, texts in ctx.corpus.items() if other != label for t in texts]
    support = [t for t in ctx.corpus.get(label, []) if t not in targets]
    class_size = ctx.class_sizes.get(label, len(ctx.corpus.get(label, [])))
    return _select_terms(
        targets,
        negatives,
        support=support,
        max_terms=_MAX_PATCH_TERMS,
        min_hits=1 if class_size < _SMALL_CLASS_SIZE else 2,
        min_precision=_PATCH_MIN_PRECISION,
        exclude=known,
    )


def _recall_rules(ctx: _PatchContext, budget: int) -> list[dict[str, Any]]:
    """New keyword rules for the inputs the failures expected a label for.

    Unmatched inputs get a ``<label>_patch_*`` rule at the default priority;
    inputs another label's rule claimed get a ``<label>_override_*`` rule one
    priority above that rule. Override groups come first, then bigger
    groups; a keyword is proposed once per label.
    """
    groups = _failure_groups(ctx)
    taken = {r.name for r in ctx.rules}
    proposed: dict[str, list[str]] = collections.defaultdict(list)
    added: list[dict[str, Any]] = []
    # Overrides first: a keyword both groups want goes to the rule that wins.
    order = sorted(groups, key=lambda g: (g[1] == _DEFAULT_PRIORITY, -len(groups[g]), g))
    for label, priority in order:
        if len(added) >= budget:
            break
        terms = _patch_terms(ctx, label, groups[(label, priority)], proposed[label])
        if not terms:
            continue
        proposed[label] += terms
        kind = "patch" if priority == _DEFAULT_PRIORITY else "override"
        name = _unique_name(f"{_slug(label)}_{kind}_{_term_word(terms[0])}", taken)
        desc = f"Covers failing '{label}' inputs: " + ", ".join(map(_term_word, terms))
        added.append(_rule_json(name, label, terms, priority, ctx.key, desc))
    return added


def _fallback_rule(ctx: _PatchContext) -> list[dict[str, Any]]:
    """A lowest-priority catch-up rule for the label with most unmatched inputs.

    Its keyword is the word of that label's unmatched inputs that the most
    failing labels share, so it trades precision for recall on inputs no
    other rule matches. It can be a net loss; finding such rules is what
    rulechef's rule ranking is for.
    """
    missed: dict[str, list[str]] = collections.defaultdict(list)
    for failure in ctx.failures:
        if failure.got is None:
            missed[failure.expected].append(failure.text)
    if not missed:
        return []
    label = min(missed, key=lambda lab: (-len(missed[lab]), lab))
    own_terms = set(_candidate_terms(missed[label]))
    texts = [f.text for f in ctx.failures]
    shared = _shared_words(texts, [f.expected for f in ctx.failures])
    terms = [t for t in shared if t in own_terms and _hits(t, texts) >= 2][:1]
    if not terms:
        return []
    desc = f"Low-priority catch-up for unmatched '{label}' inputs"
    name = f"{_slug(label)}_fallback"
    return [_rule_json(name, label, terms, _FALLBACK_PRIORITY, ctx.key, desc)]


def _bad_patch(ctx: _PatchContext, bad_round: int) -> dict[str, Any]:
    """A deliberately worse patch.

    Odd rounds add an over-broad rule above every other rule; even rounds
    delete the top rule of the best-scoring class.
    """
    if bad_round % 2 == 1 or not ctx.rules:
        return _broad_rule_patch(ctx)
    return _delete_good_rule_patch(ctx)


def _broad_rule_patch(ctx: _PatchContext) -> dict[str, Any]:
    """A top-priority rule from the words shared by the most failing labels."""
    counts = collections.Counter(failure.expected for failure in ctx.failures)
    label = min(counts, key=lambda lab: (-counts[lab], lab))
    texts = [f.text for f in ctx.failures]
    terms = _shared_words(texts, [f.expected for f in ctx.failures])[:2]
    if not terms:
        return _patch_answer("nothing to generalise")
    priority = max((r.priority for r in ctx.rules), default=_DEFAULT_PRIORITY) + 2
    name = _unique_name(
        f"{_slug(label)}_general_{_term_word(terms[0])}", {r.name for r in ctx.rules}
    )
    desc = f"Generalised '{label}' rule from words frequent in failures"
    rule = _rule_json(name, label, terms, priority, ctx.key, desc)
    return _patch_answer(f"generalise {label} from frequent failure words", [rule])


def _delete_good_rule_patch(ctx: _PatchContext) -> dict[str, Any]:
    """Delete the highest-priority rule of the best-scoring class."""
    labelled = [r for r in ctx.rules if r.label]
    if not labelled:
        return _patch_answer("nothing to delete")
    best = max(labelled, key=lambda r: (ctx.class_f1.get(r.label or "", 0.0), r.priority, r.name))
    analysis = f"'{best.name}' looks redundant for the well-covered class {best.label}"
    return _patch_answer(analysis, deleted=[best.name])


# ---------------------------------------------------------------------------
# Coordinator answers
# ---------------------------------------------------------------------------


def _audit_answer(prompt: str) -> dict[str, Any]:
    """Audit: remove pure-noise rules, merge same-label keyword rules."""
    rules = _parse_rules(prompt, "RULES:", _primary_key(prompt))
    removals = _audit_removals(rules)
    removed = {rule_id for action in removals for rule_id in action["rule_ids"]}
    merges = _audit_merges([r for r in rules if r.rule_id not in removed])
    analysis = f"{len(merges)} merge(s), {len(removals)} removal(s) among {len(rules)} rules"
    return {"analysis": analysis, "actions": merges + removals}


def _audit_removals(rules: Sequence[_PromptRule]) -> list[dict[str, Any]]:
    """Remove rules whose every match is wrong, never a label's last rule."""
    per_label = collections.Counter(r.label for r in rules)
    actions = []
    for rule in rules:
        if (
            rule.rule_id
            and rule.matches > 0
            and rule.precision == 0.0
            and per_label[rule.label] > 1
        ):
            per_label[rule.label] -= 1
            reason = f"precision 0 over {rule.matches} matches"
            actions.append({"action": "remove", "rule_ids": [rule.rule_id], "reason": reason})
    return actions


def _audit_merges(rules: Sequence[_PromptRule]) -> list[dict[str, Any]]:
    """Merge pairs of keyword rules with the same label and priority.

    The least-used pairs are merged first (fewest combined matches), so a
    merge moves as few predictions as possible; each rule is merged at most
    once per audit.
    """
    groups: dict[tuple[str, int], list[_PromptRule]] = collections.defaultdict(list)
    for rule in rules:
        if rule.rule_id and rule.label and rule.terms and rule.precision >= _MIN_MERGE_PRECISION:
            groups[(rule.label, rule.priority)].append(rule)
    pairs = [
        (first, second)
        for group in groups.values()
        for i, first in enumerate(group)
        for second in group[i + 1 :]
    ]
    pairs.sort(key=lambda p: (p[0].matches + p[1].matches, p[0].name, p[1].name))
    taken = {r.name for r in rules}
    actions: list[dict[str, Any]] = []
    used: set[str | None] = set()
    for first, second in pairs:
        if len(actions) >= _MAX_AUDIT_MERGES:
            break
        if first.rule_id in used or second.rule_id in used:
            continue
        used.update((first.rule_id, second.rule_id))
        actions.append(_merge_action(first, second, taken - {first.name, second.name}))
    return actions


def _merge_action(first: _PromptRule, second: _PromptRule, taken: set[str]) -> dict[str, Any]:
    """An audit ``merge`` action joining two keyword rules' alternations."""
    terms = list(dict.fromkeys((first.terms or []) + (second.terms or [])))
    name = _unique_name(f"{_slug(first.label or 'class')}_{_term_word(terms[0])}", taken)
    return {
        "action": "merge",
        "rule_ids": [first.rule_id, second.rule_id],
        "merged_pattern": _build_pattern(terms),
        "merged_name": name,
        "reason": f"'{first.name}' and '{second.name}' are keyword lists for the same label",
    }


def _guidance_answer(prompt: str) -> dict[str, Any]:
    """Refinement guidance: focus on the weakest classes, stop when all are good."""
    scores = _parse_class_f1(prompt)
    weak = sorted(
        (label for label, f1 in scores.items() if f1 < _GOOD_ENOUGH_F1),
        key=lambda label: (scores[label], label),
    )
    focus = weak[:2]
    if focus:
        guidance = (
            f"Prioritise {', '.join(focus)}: add specific keywords for missed inputs "
            "and avoid words that also occur in other classes."
        )
    else:
        guidance = "All classes are strong; keep the rules as they are."
    return {"focus_classes": focus, "guidance": guidance, "should_continue": bool(weak)}


def _critic_answer(prompt: str) -> dict[str, Any]:
    """Critic: advice for every rule with false positives, naming the keywords to blame."""
    blocks = _critic_rule_blocks(prompt)
    feedback = {}
    for rule_id, pattern, false_positives, fp_inputs in blocks:
        if false_positives <= 0:
            continue
        blamed = [_term_word(t) for t in (_pattern_terms(pattern) or []) if _hits(t, fp_inputs)]
        advice = f"Fires on {false_positives} input(s) of other classes."
        if blamed:
            advice += " Keywords " + ", ".join(f"'{w}'" for w in blamed)
            advice += " also occur there; drop them or add context."
        feedback[rule_id] = advice
    scores = _parse_class_f1(prompt)
    guidance = "Keep keyword rules narrow; add class-specific words for missed inputs."
    if scores:
        weakest = min(scores, key=lambda label: (scores[label], label))
        guidance = f"Weakest class is {weakest}. {guidance}"
    analysis = f"{len(feedback)} of {len(blocks)} rules produce false positives"
    return {"analysis": analysis, "rule_feedback": feedback, "task_guidance": guidance}


def _critic_rule_blocks(prompt: str) -> list[tuple[str, str, int, list[str]]]:
    """(rule_id, pattern, false_positives, fp_inputs) per rule of a critic prompt."""
    blocks = []
    for chunk in re.split(r"\n\s*Rule: ", prompt)[1:]:
        head = re.match(r'"(.*?)" \(id=([^)]+)\)', chunk)
        if not head:
            continue
        pattern = re.search(r"^\s*Pattern: (.*)$", chunk, re.M)
        false_positives = re.search(r"FP=(\d+),", chunk)
        _, _, fp_part = chunk.partition("FP examples from this rule:")
        blocks.append(
            (
                head.group(2),
                pattern.group(1) if pattern else "",
                int(false_positives.group(1)) if false_positives else 0,
                re.findall(r'^\s*Input: "(.*)"$', fp_part, re.M),
            )
        )
    return blocks


def _trigger_answer(prompt: str) -> dict[str, Any]:
    """Trigger decision from the buffer counts in the prompt."""
    new = _int_after(prompt, r"- New examples: (\d+)", 0)
    corrections = _int_after(prompt, r"- New corrections \(high priority\): (\d+)", 0)
    return {
        "should_learn": corrections > 0 or new >= 5,
        "strategy": "corrections_first" if corrections else "balanced",
        "max_iterations": 2 if corrections else 3,
        "reasoning": f"{new} new examples, {corrections} corrections",
    }


# ---------------------------------------------------------------------------
# The stand-in client
# ---------------------------------------------------------------------------


class StandInLLM:
    """Deterministic offline replacement for an OpenAI chat client.

    Use it wherever rulechef expects a client (``RuleChef(client=...)``,
    ``AgenticCoordinator(llm_client=...)``; one instance may serve both).
    Answers depend only on the prompt text and, for patches, on how many
    patch prompts this instance has answered before.

    Attributes:
        chat: The ``chat.completions.create`` namespace.
        calls: Number of calls answered, by prompt kind (see
            :data:`PROMPT_KINDS`).
        bad_patch_every: Every n-th patch answer is deliberately worse
            (0 or less: never).
        terms_per_rule: Keywords per synthesized rule.
        rules_per_class: Most rules per class in a synthesis answer.
    """

    def __init__(
        self,
        *,
        bad_patch_every: int = 2,
        terms_per_rule: int = 3,
        rules_per_class: int = 3,
    ) -> None:
        """Create a stand-in.

        Args:
            bad_patch_every: Make every n-th patch answer a deliberately worse
                proposal, alternately an over-broad top-priority rule and the
                deletion of a good rule, so runs see rejected patches. 0 or
                less disables it.
            terms_per_rule: Keywords per synthesized rule.
            rules_per_class: Most rules per class in a synthesis answer.
        """
        self.chat = _Chat(self)
        self.calls: collections.Counter[str] = collections.Counter()
        self.bad_patch_every = bad_patch_every
        self.terms_per_rule = max(1, terms_per_rule)
        self.rules_per_class = max(1, rules_per_class)

    def respond(self, prompt: str) -> str:
        """Answer one prompt and count it under its kind.

        Args:
            prompt: The user prompt text.

        Returns:
            The answer, a JSON object as text (``"{}"`` for unknown prompts).
        """
        kind = detect_prompt_kind(prompt)
        self.calls[kind] += 1
        answer = self._answerer(kind)
        if answer is None:
            return "{}"
        try:
            return _dump(answer(prompt))
        except Exception:  # an unexpected prompt shape must not crash a run
            logger.exception("stand-in: could not answer a %s prompt", kind)
            return "{}"

    def _answerer(self, kind: str) -> Callable[[str], dict[str, Any]] | None:
        """The function that answers prompts of ``kind``, or None."""
        if kind == SYNTHESIS:
            return lambda p: _synthesis_answer(p, self.terms_per_rule, self.rules_per_class)
        if kind == PER_CLASS:
            return lambda p: _per_class_answer(p, self.terms_per_rule, self.rules_per_class)
        answerers: dict[str, Callable[[str], dict[str, Any]]] = {
            PATCH: self._patch_answer,
            AUDIT: _audit_answer,
            GUIDANCE: _guidance_answer,
            CRITIC: _critic_answer,
            TRIGGER: _trigger_answer,
        }
        return answerers.get(kind)

    def _patch_answer(self, prompt: str) -> dict[str, Any]:
        """A good or a deliberately bad patch, by this instance's patch count."""
        ctx = _patch_context(prompt)
        if not ctx.failures:
            return _patch_answer("no failures to fix")
        number = self.calls[PATCH]  # 1-based; this call is already counted
        if self.bad_patch_every > 0 and number % self.bad_patch_every == 0:
            answer = _bad_patch(ctx, bad_round=number // self.bad_patch_every)
        else:
            answer = _good_patch(ctx)
        answer["rules"] = answer["rules"][: ctx.max_rules]
        return answer

    def _complete(self, messages: Sequence[dict[str, Any]], model: str) -> _Completion:
        """Build an OpenAI-shaped completion for a list of chat messages."""
        prompt = _prompt_from_messages(messages)
        content = self.respond(prompt)
        return _Completion(
            id=f"standin-{sum(self.calls.values())}",
            model=model or "standin",
            choices=[_Choice(message=_Message(content=content))],
            usage=_Usage(prompt_tokens=len(prompt) // 4, completion_tokens=len(content) // 4),
        )


# ---------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------


def load_examples(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(text, label)`` pairs from a JSONL file.

    Each non-blank line must be a JSON object with non-empty string fields
    ``text`` and ``label``; other fields are ignored.

    Args:
        path: Path of the JSONL file.

    Returns:
        The examples in file order.

    Raises:
        ValueError: If a line is not valid JSON, not an object, or lacks a
            usable ``text``/``label``; the message names the file and line.
    """
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                examples.append(_parse_example_line(line, path, number))
    return examples


def _parse_example_line(line: str, path: Path, number: int) -> tuple[str, str]:
    """The (text, label) pair of one JSONL line, or a ValueError naming the line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path}, line {number}: expected a JSON object")
    values = []
    for name in ("text", "label"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}, line {number}: {name!r} must be a non-empty string")
        values.append(value)
    return values[0], values[1]


def packaged_data_path() -> Path:
    """Path of the small intent data set shipped with ``rulechef_trace``.

    Returns:
        Path to ``rulechef_trace/data/intents.jsonl``.
    """
    return Path(str(resources.files("rulechef_trace") / "data" / "intents.jsonl"))
