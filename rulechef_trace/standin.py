"""A deterministic, offline stand-in for the LLM that rulechef talks to.

:class:`StandInLLM` mimics the small part of the OpenAI client that rulechef
0.2.2 uses (``client.chat.completions.create(**kwargs)``). It never touches
the network, uses no randomness and no clock, and is cheap enough to run a
whole ``RuleChef.learn_rules()`` in well under a second.

The stand-in recognises which rulechef prompt it was sent (bulk synthesis,
per-class synthesis, patch, audit, refinement guidance, critic, trigger
decision) from fixed markers in rulechef's prompt text, and derives its
answer from the data shown in that prompt: keyword rules are built from
tokens that occur in the positive texts and in none of the negative texts,
patches are built from the listed failures, audits merge rules of the same
label that the prompt lists. Nothing is canned for one data set.

To give a learning run a story, every ``bad_patch_every``-th patch is a
deliberately worse proposal (an over-broad, high-priority rule, or the
deletion of a good rule), so that rulechef gets to reject a patch.

The module also provides :func:`load_examples` for ``text``/``label`` JSONL
files and :func:`packaged_data_path` for the small data set shipped with the
package.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import re
from collections.abc import Iterable, Sequence
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
# prompts come first because they never embed the learner's prompt texts.
_KIND_MARKERS: tuple[tuple[str, str], ...] = (
    (AUDIT, "You are a Rule Auditor"),
    (GUIDANCE, "You are the Refinement Coordinator"),
    (CRITIC, "You are an expert Rule Critic"),
    (TRIGGER, "Decide if we should trigger a retraining loop"),
    (PATCH, "You are updating an existing rule-based extractor"),
    (PATCH, "Refine the ruleset for this task while fixing the failures"),
    (PER_CLASS, "FOCUS: Generate rules for class '"),
    (SYNTHESIS, "YOUR TASK:"),
)

# Words that carry no intent on their own; never used as rule keywords.
_STOPWORDS = frozenset(
    """
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
    """.split()
)

_TOKEN_RE = re.compile(r"[a-z]+")
_SIMPLE_PATTERN_RE = re.compile(r"^\(\?i\)\\b\(\?:(?P<body>.+)\)\\b$")
_MIN_TOKEN_LEN = 3
_STEM_SUFFIXES = ("ing", "ed", "es", "s")
_MIN_STEM_LEN = 4

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
        return self._owner._complete(kwargs.get("messages") or [], str(kwargs.get("model", "")))


class _Chat:
    """The ``client.chat`` namespace."""

    def __init__(self, owner: StandInLLM) -> None:
        self.completions = _Completions(owner)


# ---------------------------------------------------------------------------
# Small data types used while building answers
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
    feedback: list[str] = field(default_factory=list)

    @property
    def terms(self) -> list[str] | None:
        """Keyword fragments of the pattern, or None if it is not a keyword rule."""
        return parse_pattern_terms(self.pattern)


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
# Keyword helpers
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


def build_pattern(terms: Sequence[str]) -> str:
    """Case-insensitive whole-word alternation of keyword fragments."""
    return r"(?i)\b(?:" + "|".join(terms) + r")\b"


def parse_pattern_terms(pattern: str) -> list[str] | None:
    """Keyword fragments of a pattern made by :func:`build_pattern`.

    Args:
        pattern: A regex pattern.

    Returns:
        The alternation's fragments, or None for any other pattern shape.
    """
    match = _SIMPLE_PATTERN_RE.match(pattern.strip())
    if not match:
        return None
    terms = [t for t in match.group("body").split("|") if t]
    return terms or None


@functools.lru_cache(maxsize=8192)
def _compiled(term: str) -> re.Pattern[str]:
    return re.compile(r"(?i)\b(?:" + term + r")\b")


def _matches(term: str, text: str) -> bool:
    return _compiled(term).search(text) is not None


def _hits(term: str, texts: Iterable[str]) -> int:
    return sum(1 for text in texts if _matches(term, text))


def _candidate_terms(texts: Iterable[str]) -> list[str]:
    """All keyword fragments of the given texts, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for token in _tokens(text):
            seen.setdefault(_fragment(token), None)
    return list(seen)


def select_terms(
    targets: Sequence[str],
    negatives: Sequence[str],
    *,
    support: Sequence[str] = (),
    max_terms: int = 9,
    min_hits: int = 2,
) -> list[str]:
    """Greedily pick discriminative keyword fragments.

    A fragment qualifies when it matches none of ``negatives``, at least one
    of ``targets``, and at least ``min_hits`` texts of ``targets`` and
    ``support`` together. Fragments are picked by how many still-uncovered
    targets they add, ties broken by total hits and then alphabetically.

    Args:
        targets: Texts the rules must cover.
        negatives: Texts the rules must not match.
        support: Extra texts of the same class that count as evidence.
        max_terms: Upper bound on the number of fragments.
        min_hits: Minimum number of target+support texts a fragment matches.

    Returns:
        Selected fragments, best first.
    """
    stats: dict[str, tuple[frozenset[int], int]] = {}
    for term in _candidate_terms(targets):
        if any(_matches(term, text) for text in negatives):
            continue
        covered = frozenset(i for i, text in enumerate(targets) if _matches(term, text))
        total = len(covered) + _hits(term, support)
        if covered and total >= min_hits:
            stats[term] = (covered, total)

    chosen: list[str] = []
    uncovered = set(range(len(targets)))
    while stats and len(chosen) < max_terms:
        term = min(stats, key=lambda t: (-len(stats[t][0] & uncovered), -stats[t][1], t))
        if not stats[term][0] & uncovered:
            break
        chosen.append(term)
        uncovered -= stats.pop(term)[0]
    return chosen


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "class"


def _term_word(term: str) -> str:
    """Readable word of a fragment (``refund\\w*`` -> ``refund``)."""
    return re.sub(r"[^a-z0-9]", "", term.replace(r"\w*", "").lower()) or "kw"


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
    match = re.search(pattern, prompt)
    return int(match.group(1)) if match else default


def _text_of(input_data: Any) -> str:
    """The text of an input dict (its ``text`` field, else its longest string)."""
    if isinstance(input_data, str):
        return input_data
    if not isinstance(input_data, dict):
        return ""
    if isinstance(input_data.get("text"), str):
        return input_data["text"]
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
    for line, following in zip(lines, lines[1:]):
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
            continue  # the block may be cut off mid-line
        evidence[match.group(1)] = [t for t in texts if isinstance(t, str)]
    return evidence


def _parse_class_f1(prompt: str) -> dict[str, float]:
    """Per-class F1 from the ``label: ... F1=NN%`` lines of a prompt."""
    scores = {}
    for match in re.finditer(r"^ {2}(\S.*?): (?:P=\d+% R=\d+% )?F1=(\d+)%", prompt, re.M):
        scores[match.group(1)] = int(match.group(2)) / 100.0
    return scores


def _rule_from_entry(entry: dict[str, Any], key: str) -> _PromptRule | None:
    """A :class:`_PromptRule` from a patch- or audit-prompt JSON entry."""
    if not isinstance(entry, dict) or not entry.get("name"):
        return None
    pattern = entry.get("content", entry.get("pattern", ""))
    feedback = entry.get("user_feedback") or []
    return _PromptRule(
        name=str(entry["name"]),
        pattern=pattern if isinstance(pattern, str) else "",
        label=_label_of(entry.get("output_template"), key),
        priority=int(entry.get("priority", 5) or 5),
        rule_id=entry.get("id"),
        metrics=entry.get("metrics") or {},
        feedback=[str(f) for f in feedback] if isinstance(feedback, list) else [],
    )


def _parse_rules(prompt: str, marker: str, key: str) -> list[_PromptRule]:
    entries = _json_after(prompt, marker)
    if not isinstance(entries, list):
        return []
    rules = [_rule_from_entry(entry, key) for entry in entries]
    return [rule for rule in rules if rule is not None]


def _parse_failures(prompt: str, key: str) -> list[_Failure]:
    """The failures listed in a patch prompt."""
    entries = _json_after(prompt, "FAILURES TO FIX") or []
    failures = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        text = _text_of(entry.get("input"))
        expected = _label_of(entry.get("expected"), key)
        got = entry.get("got") if isinstance(entry.get("got"), dict) else {}
        if text and expected:
            failures.append(
                _Failure(text, expected, _label_of(got, key), got.get("rule_name") or None)
            )
    return failures


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
        "pattern": build_pattern(terms),
        "output_template": {key: label},
        "output_key": key,
        "priority": max(1, min(10, priority)),
    }


def _unique_name(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _class_rules(
    label: str,
    terms: Sequence[str],
    key: str,
    *,
    terms_per_rule: int,
    max_rules: int,
    taken: set[str],
) -> list[dict[str, Any]]:
    """Split a class's keywords over up to ``max_rules`` rules."""
    rules = []
    for group in _chunks(terms, terms_per_rule)[:max_rules]:
        name = _unique_name(f"{_slug(label)}_{_term_word(group[0])}", taken)
        words = ", ".join(_term_word(t) for t in group)
        rules.append(_rule_json(name, label, group, 5, key, f"'{label}' keywords: {words}"))
    return rules


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


# ---------------------------------------------------------------------------
# The stand-in client
# ---------------------------------------------------------------------------


class StandInLLM:
    """Deterministic offline replacement for an OpenAI chat client.

    Use it wherever rulechef expects a client (``RuleChef(client=...)``,
    ``AgenticCoordinator(llm_client=...)``). Answers depend only on the
    prompt text and on how many patch prompts this instance has answered.

    Attributes:
        chat: The ``chat.completions.create`` namespace.
        calls: Number of calls answered, by prompt kind.
        bad_patch_every: Every n-th patch answer is deliberately worse
            (0 disables this).
        terms_per_rule: Keywords per synthesized rule.
        max_rules_per_class: Upper bound on rules per class in a synthesis.
    """

    def __init__(
        self,
        *,
        bad_patch_every: int = 2,
        terms_per_rule: int = 3,
        max_rules_per_class: int = 3,
    ) -> None:
        """Create a stand-in.

        Args:
            bad_patch_every: Make every n-th patch a deliberately worse
                proposal (over-broad rule or deletion of a good rule) so that
                runs see rejected patches. 0 or less disables it.
            terms_per_rule: Keywords per synthesized rule.
            max_rules_per_class: Rules per class in a synthesis answer.
        """
        self.chat = _Chat(self)
        self.calls: collections.Counter[str] = collections.Counter()
        self.bad_patch_every = bad_patch_every
        self.terms_per_rule = max(1, terms_per_rule)
        self.max_rules_per_class = max(1, max_rules_per_class)

    # -- entry points -------------------------------------------------------

    def _complete(self, messages: Sequence[dict[str, Any]], model: str) -> _Completion:
        prompt = _prompt_from_messages(messages)
        content = self.respond(prompt)
        number = sum(self.calls.values())
        return _Completion(
            id=f"standin-{number}",
            model=model or "standin",
            choices=[_Choice(message=_Message(content=content))],
            usage=_Usage(prompt_tokens=len(prompt) // 4, completion_tokens=len(content) // 4),
        )

    def respond(self, prompt: str) -> str:
        """Answer one prompt and count it.

        Args:
            prompt: The user prompt text.

        Returns:
            The JSON answer text.
        """
        kind = detect_prompt_kind(prompt)
        self.calls[kind] += 1
        handler = {
            SYNTHESIS: self._synthesis,
            PER_CLASS: self._per_class,
            PATCH: self._patch,
            AUDIT: self._audit,
            GUIDANCE: self._guidance,
            CRITIC: self._critic,
            TRIGGER: self._trigger,
        }.get(kind, self._other)
        try:
            return handler(prompt)
        except Exception:  # an unexpected prompt shape must not crash a run
            logger.exception("stand-in: failed to answer a %s prompt", kind)
            return self._other(prompt)

    # -- synthesis ------------------------------------------------------------

    def _synthesis(self, prompt: str) -> str:
        """Bulk synthesis: keyword rules for every label shown."""
        key = _primary_key(prompt)
        examples = _parse_shown_examples(prompt, key)
        by_label: dict[str, list[str]] = collections.defaultdict(list)
        for text, label, _ in examples:
            by_label[label].append(text)
        max_rules = _int_after(prompt, r"ruleset \(max (\d+) rules\)", 10)
        per_label = max(1, min(self.max_rules_per_class, max_rules // max(1, len(by_label))))
        rules: list[dict[str, Any]] = []
        taken: set[str] = set()
        for label in sorted(by_label):
            negatives = [t for other, texts in by_label.items() if other != label for t in texts]
            rules += self._rules_for(label, by_label[label], negatives, key, per_label, taken)
        return _dump({"analysis": f"{len(by_label)} labels", "rules": rules[:max_rules]})

    def _per_class(self, prompt: str) -> str:
        """Per-class synthesis: positives vs counter-examples and evidence."""
        key = _primary_key(prompt)
        match = re.search(r"FOCUS: Generate rules for class '(.+?)' ONLY", prompt)
        if not match:
            return self._other(prompt)
        label = match.group(1)
        shown = _parse_shown_examples(prompt, key)
        positives = [t for t, lab, pos in shown if pos and lab == label]
        negatives = [t for t, lab, _ in shown if lab != label]
        for other, texts in _parse_evidence(prompt).items():
            if other != label:
                negatives += texts
        max_rules = _int_after(prompt, r"Generate up to (\d+) rules", self.max_rules_per_class)
        per_label = min(self.max_rules_per_class, max_rules)
        rules = self._rules_for(label, positives, negatives, key, per_label, set())
        return _dump({"analysis": f"{len(positives)} positives for {label}", "rules": rules})

    def _rules_for(
        self,
        label: str,
        positives: Sequence[str],
        negatives: Sequence[str],
        key: str,
        max_rules: int,
        taken: set[str],
    ) -> list[dict[str, Any]]:
        min_hits = 2 if len(positives) >= 4 else 1
        terms = select_terms(
            positives,
            negatives,
            max_terms=self.terms_per_rule * max_rules,
            min_hits=min_hits,
        )
        return _class_rules(
            label,
            terms,
            key,
            terms_per_rule=self.terms_per_rule,
            max_rules=max_rules,
            taken=taken,
        )

    # -- patch ----------------------------------------------------------------

    def _patch(self, prompt: str) -> str:
        """Patch: fix listed failures; every n-th patch is deliberately worse."""
        key = _primary_key(prompt)
        rules = _parse_rules(prompt, "CURRENT RULES", key)
        failures = _parse_failures(prompt, key)
        if not failures:
            return _dump({"analysis": "no failures", "rules": [], "deleted_rules": []})
        max_rules = _int_after(prompt, r"Keep total new/updated rules <= (\d+)", 8)
        corpus = self._label_corpus(prompt, failures)
        index = self.calls[PATCH]  # 1-based, already counted
        if self.bad_patch_every > 0 and index % self.bad_patch_every == 0:
            bad_round = index // self.bad_patch_every
            payload = self._bad_patch(prompt, rules, failures, key, bad_round)
        else:
            payload = self._good_patch(rules, failures, corpus, key, max_rules)
        payload["rules"] = payload["rules"][:max_rules]
        return _dump(payload)

    @staticmethod
    def _label_corpus(prompt: str, failures: Sequence[_Failure]) -> dict[str, list[str]]:
        """Known texts per label: data evidence plus failure inputs."""
        corpus: dict[str, list[str]] = collections.defaultdict(list)
        for label, texts in _parse_evidence(prompt).items():
            corpus[label].extend(texts)
        for failure in failures:
            if failure.text not in corpus[failure.expected]:
                corpus[failure.expected].append(failure.text)
        return corpus

    def _good_patch(
        self,
        rules: Sequence[_PromptRule],
        failures: Sequence[_Failure],
        corpus: dict[str, list[str]],
        key: str,
        max_rules: int,
    ) -> dict[str, Any]:
        tightened, deleted = self._tighten(rules, failures, corpus, key)
        added = self._recall_rules(rules, failures, corpus, key, max_rules - len(tightened))
        analysis = (
            f"{len(failures)} failures: tightened {len(tightened)} rule(s), "
            f"deleted {len(deleted)}, added {len(added)}"
        )
        return {"analysis": analysis, "rules": tightened + added, "deleted_rules": deleted}

    @staticmethod
    def _tighten(
        rules: Sequence[_PromptRule],
        failures: Sequence[_Failure],
        corpus: dict[str, list[str]],
        key: str,
        max_rules: int = 2,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Drop keywords that fire on other labels more often than on their own.

        Only the ``max_rules`` rules with the most wrong firings are touched,
        and a keyword is only dropped after at least two wrong firings.
        """
        wrong_by_rule: dict[str, list[str]] = collections.defaultdict(list)
        for failure in failures:
            if failure.got and failure.got != failure.expected and failure.got_rule:
                wrong_by_rule[failure.got_rule].append(failure.text)
        candidates = [r for r in rules if r.name in wrong_by_rule and r.terms and r.label]
        candidates.sort(key=lambda r: (-len(wrong_by_rule[r.name]), r.name))
        updated, deleted = [], []
        for rule in candidates[:max_rules]:
            wrong, own = wrong_by_rule[rule.name], corpus.get(rule.label or "", [])
            terms = rule.terms or []
            kept = [t for t in terms if not 2 <= _hits(t, wrong) > _hits(t, own)]
            if len(kept) == len(terms):
                continue
            if kept:
                desc = f"Tightened: removed keywords that fired on other labels ({rule.name})"
                updated.append(_rule_json(rule.name, rule.label, kept, rule.priority, key, desc))
            else:
                deleted.append(rule.name)
        return updated, deleted

    @staticmethod
    def _recall_rules(
        rules: Sequence[_PromptRule],
        failures: Sequence[_Failure],
        corpus: dict[str, list[str]],
        key: str,
        budget: int,
    ) -> list[dict[str, Any]]:
        """New keyword rules for the labels the failures expected."""
        by_label: dict[str, list[str]] = collections.defaultdict(list)
        for failure in failures:
            by_label[failure.expected].append(failure.text)
        taken = {r.name for r in rules}
        added = []
        for label in sorted(by_label, key=lambda lab: (-len(by_label[lab]), lab)):
            if len(added) >= budget:
                break
            targets = by_label[label]
            negatives = [t for other, texts in corpus.items() if other != label for t in texts]
            support = [t for t in corpus.get(label, []) if t not in targets]
            terms = select_terms(targets, negatives, support=support, max_terms=4, min_hits=2)
            if terms:
                name = _unique_name(f"{_slug(label)}_patch_{_term_word(terms[0])}", taken)
                desc = f"Covers missed '{label}' inputs: " + ", ".join(map(_term_word, terms))
                added.append(_rule_json(name, label, terms, 5, key, desc))
        return added

    def _bad_patch(
        self,
        prompt: str,
        rules: Sequence[_PromptRule],
        failures: Sequence[_Failure],
        key: str,
        bad_round: int,
    ) -> dict[str, Any]:
        """A deliberately worse patch, alternating between two flavours.

        Odd rounds add an over-broad, top-priority rule built from the words
        most frequent across all failure inputs; even rounds delete the
        strongest-looking rule of the best-scoring class.
        """
        if bad_round % 2 == 1 or not rules:
            return self._broad_rule_patch(rules, failures, key)
        return self._delete_good_rule_patch(prompt, rules)

    @staticmethod
    def _broad_rule_patch(
        rules: Sequence[_PromptRule], failures: Sequence[_Failure], key: str
    ) -> dict[str, Any]:
        counts = collections.Counter(failure.expected for failure in failures)
        label = min(counts, key=lambda lab: (-counts[lab], lab))
        texts = [f.text for f in failures]
        df = collections.Counter(_fragment(tok) for text in texts for tok in _tokens(text))
        terms = sorted(df, key=lambda t: (-df[t], t))[:2]
        if not terms:
            return {"analysis": "nothing to generalise", "rules": [], "deleted_rules": []}
        top = max((r.priority for r in rules), default=5)
        name = _unique_name(f"{_slug(label)}_general_{_term_word(terms[0])}", {r.name for r in rules})
        desc = f"Generalised '{label}' rule from frequent failure words"
        rule = _rule_json(name, label, terms, top + 2, key, desc)
        return {"analysis": f"generalise {label}", "rules": [rule], "deleted_rules": []}

    @staticmethod
    def _delete_good_rule_patch(prompt: str, rules: Sequence[_PromptRule]) -> dict[str, Any]:
        scores = _parse_class_f1(prompt)
        labelled = [r for r in rules if r.label]
        if not labelled:
            return {"analysis": "nothing to delete", "rules": [], "deleted_rules": []}
        best = max(labelled, key=lambda r: (scores.get(r.label or "", 0.0), r.priority, r.name))
        analysis = f"'{best.name}' looks redundant for the well-covered class {best.label}"
        return {"analysis": analysis, "rules": [], "deleted_rules": [best.name]}

    # -- coordinator prompts ------------------------------------------------

    def _audit(self, prompt: str) -> str:
        """Audit: remove pure-noise rules, merge same-label keyword rules."""
        key = _primary_key(prompt) if '"output_key"' in prompt else "label"
        rules = _parse_rules(prompt, "RULES:", key)
        removals = self._audit_removals(rules)
        removed = {rid for action in removals for rid in action["rule_ids"]}
        merges = self._audit_merges([r for r in rules if r.rule_id not in removed])
        actions = merges + removals
        analysis = f"{len(merges)} merge(s), {len(removals)} removal(s) among {len(rules)} rules"
        return _dump({"analysis": analysis, "actions": actions})

    @staticmethod
    def _audit_removals(rules: Sequence[_PromptRule]) -> list[dict[str, Any]]:
        per_label = collections.Counter(r.label for r in rules)
        actions = []
        for rule in rules:
            matches = int(rule.metrics.get("matches", 0) or 0)
            precision = float(rule.metrics.get("precision", 1.0) or 0.0)
            if rule.rule_id and matches > 0 and precision == 0.0 and per_label[rule.label] > 1:
                per_label[rule.label] -= 1
                reason = f"precision 0 over {matches} matches"
                actions.append({"action": "remove", "rule_ids": [rule.rule_id], "reason": reason})
        return actions

    @staticmethod
    def _audit_merges(rules: Sequence[_PromptRule], max_merges: int = 2) -> list[dict[str, Any]]:
        """Merge pairs of keyword rules with the same label and priority.

        The least-used pairs are merged first (fewest combined matches), so
        a merge moves as few predictions as possible; each rule is merged at
        most once per audit.
        """
        groups: dict[tuple[str, int], list[_PromptRule]] = collections.defaultdict(list)
        for rule in rules:
            if rule.rule_id and rule.label and rule.terms and _precision(rule) >= 0.5:
                groups[(rule.label, rule.priority)].append(rule)
        pairs = [
            (first, second)
            for group in groups.values()
            for i, first in enumerate(group)
            for second in group[i + 1 :]
        ]
        pairs.sort(key=lambda p: (_matches_of(p[0]) + _matches_of(p[1]), p[0].name, p[1].name))
        actions, used = [], set()
        for first, second in pairs:
            if len(actions) >= max_merges:
                break
            if first.rule_id in used or second.rule_id in used:
                continue
            used.update((first.rule_id, second.rule_id))
            actions.append(_merge_action(first, second))
        return actions

    def _guidance(self, prompt: str) -> str:
        """Refinement guidance from the per-class F1 table."""
        scores = _parse_class_f1(prompt)
        weak = sorted((lab for lab, f1 in scores.items() if f1 < 0.95), key=scores.get)
        focus = weak[:2]
        if focus:
            guidance = (
                f"Prioritise {', '.join(focus)}: add specific keywords for missed inputs "
                "and avoid words that also occur in other classes."
            )
        else:
            guidance = "All classes are strong; keep rules as they are."
        return _dump(
            {"focus_classes": focus, "guidance": guidance, "should_continue": bool(weak)}
        )

    def _critic(self, prompt: str) -> str:
        """Critic: per-rule advice for rules with false positives."""
        blocks = _critic_rule_blocks(prompt)
        feedback = {}
        for rule_id, pattern, fp, fp_inputs in blocks:
            if fp <= 0:
                continue
            terms = parse_pattern_terms(pattern) or []
            blamed = [_term_word(t) for t in terms if _hits(t, fp_inputs)]
            advice = f"Fires on {fp} input(s) of other classes."
            if blamed:
                advice += " Keywords " + ", ".join(f"'{w}'" for w in blamed)
                advice += " also occur there; drop them or add context."
            feedback[rule_id] = advice
        scores = _parse_class_f1(prompt)
        weakest = min(scores, key=lambda lab: (scores[lab], lab)) if scores else None
        guidance = "Keep keyword rules narrow; add class-specific words for missed inputs."
        if weakest:
            guidance = f"Weakest class is {weakest}. " + guidance
        analysis = f"{len(feedback)} of {len(blocks)} rules produce false positives"
        return _dump({"analysis": analysis, "rule_feedback": feedback, "task_guidance": guidance})

    @staticmethod
    def _trigger(prompt: str) -> str:
        """Trigger decision from the buffer counts in the prompt."""
        new = _int_after(prompt, r"- New examples: (\d+)", 0)
        corrections = _int_after(prompt, r"- New corrections \(high priority\): (\d+)", 0)
        learn = corrections > 0 or new >= 5
        strategy = "corrections_first" if corrections else "balanced"
        reasoning = f"{new} new examples, {corrections} corrections"
        return _dump(
            {
                "should_learn": learn,
                "strategy": strategy,
                "max_iterations": 2 if corrections else 3,
                "reasoning": reasoning,
            }
        )

    @staticmethod
    def _other(prompt: str) -> str:
        """Anything unrecognised gets a harmless empty answer."""
        return "{}"


def _precision(rule: _PromptRule) -> float:
    """Precision from an audit entry's metrics (1.0 when unknown)."""
    value = rule.metrics.get("precision")
    return float(value) if value is not None else 1.0


def _matches_of(rule: _PromptRule) -> int:
    """Match count from an audit entry's metrics (0 when unknown)."""
    return int(rule.metrics.get("matches", 0) or 0)


def _merge_action(first: _PromptRule, second: _PromptRule) -> dict[str, Any]:
    """An audit ``merge`` action joining two keyword rules' alternations."""
    terms = list(dict.fromkeys((first.terms or []) + (second.terms or [])))
    label = first.label or "class"
    return {
        "action": "merge",
        "rule_ids": [first.rule_id, second.rule_id],
        "merged_pattern": build_pattern(terms),
        "merged_name": f"{_slug(label)}_{_term_word(terms[0])}",
        "reason": f"'{first.name}' and '{second.name}' are keyword lists for the same label",
    }


def _critic_rule_blocks(prompt: str) -> list[tuple[str, str, int, list[str]]]:
    """(rule_id, pattern, false_positives, fp_inputs) per rule in a critic prompt."""
    blocks = []
    for chunk in re.split(r"\n\s*Rule: ", prompt)[1:]:
        head = re.match(r'"(.*?)" \(id=([^)]+)\)', chunk)
        if not head:
            continue
        pattern = re.search(r"^\s*Pattern: (.*)$", chunk, re.M)
        fp = re.search(r"FP=(\d+),", chunk)
        fp_section = chunk.split("FP examples from this rule:", 1)
        inputs = re.findall(r'^\s*Input: "(.*)"$', fp_section[1], re.M) if len(fp_section) > 1 else []
        blocks.append(
            (head.group(2), pattern.group(1) if pattern else "", int(fp.group(1)) if fp else 0, inputs)
        )
    return blocks


# ---------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------


def load_examples(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(text, label)`` pairs from a JSONL file.

    Each non-blank line must be a JSON object with non-empty string fields
    ``text`` and ``label``.

    Args:
        path: Path of the JSONL file.

    Returns:
        The examples in file order.

    Raises:
        ValueError: If a line is not valid JSON or lacks ``text``/``label``;
            the message names the file and the line number.
    """
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                examples.append(_parse_example_line(line, path, number))
    return examples


def _parse_example_line(line: str, path: Path, number: int) -> tuple[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path}:{number}: expected a JSON object")
    values = []
    for name in ("text", "label"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}:{number}: field {name!r} must be a non-empty string")
        values.append(value)
    return values[0], values[1]


def packaged_data_path() -> Path:
    """Path of the small intent data set shipped with ``rulechef_trace``.

    Returns:
        Path to ``rulechef_trace/data/intents.jsonl``.
    """
    return Path(str(resources.files("rulechef_trace") / "data" / "intents.jsonl"))
