"""Keywords, keyword patterns and the rule JSON the stand-in answers with."""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

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
DEFAULT_PRIORITY = 5
FALLBACK_PRIORITY = 1

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


def build_pattern(terms: Sequence[str]) -> str:
    """Case-insensitive whole-word alternation of keyword fragments."""
    return r"(?i)\b(?:" + "|".join(terms) + r")\b"


def pattern_terms(pattern: str) -> list[str] | None:
    """Keyword fragments of a :func:`build_pattern` pattern, else None."""
    match = _KEYWORD_PATTERN_RE.match(pattern.strip())
    if not match:
        return None
    terms = [t for t in match.group("body").split("|") if t]
    return terms or None


def term_word(term: str) -> str:
    """Readable word of a fragment (``refund\\w*`` -> ``refund``)."""
    return re.sub(r"[^a-z0-9]", "", term.replace(r"\w*", "").lower()) or "kw"


@functools.lru_cache(maxsize=8192)
def _compiled(term: str) -> re.Pattern[str]:
    return re.compile(r"(?i)\b(?:" + term + r")\b")


def _matches(term: str, text: str) -> bool:
    return _compiled(term).search(text) is not None


def hits(term: str, texts: Iterable[str]) -> int:
    """Number of texts a fragment matches."""
    return sum(1 for text in texts if _matches(term, text))


def candidate_terms(texts: Iterable[str]) -> list[str]:
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
    for term in candidate_terms(targets):
        if term in skip:
            continue
        covered = frozenset(i for i, text in enumerate(targets) if _matches(term, text))
        total = len(covered) + hits(term, support)
        if total < min_hits:
            continue
        precision = total / (total + hits(term, negatives))
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


def shared_words(texts: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Keyword fragments of ``texts``, most widely shared first.

    Fragments are ranked by how many distinct ``labels`` (parallel to
    ``texts``) they occur with, then by how many texts contain them, then
    alphabetically.
    """
    spread: dict[str, set[str]] = collections.defaultdict(set)
    freq: collections.Counter[str] = collections.Counter()
    for text, label in zip(texts, labels, strict=True):
        for term in candidate_terms([text]):
            spread[term].add(label)
            freq[term] += 1
    return sorted(freq, key=lambda t: (-len(spread[t]), -freq[t], t))


# ---------------------------------------------------------------------------
# Rule JSON
# ---------------------------------------------------------------------------


def rule_json(
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


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "class"


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... if taken; records the result."""
    name, number = base, 2
    while name in taken:
        name, number = f"{base}_{number}", number + 1
    taken.add(name)
    return name
