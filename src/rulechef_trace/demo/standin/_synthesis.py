"""Synthesis answers: keyword rules per label, from the examples a prompt shows."""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from typing import Any

from ._parsing import int_after, parse_evidence, parse_shown_examples, primary_key
from ._rules import DEFAULT_PRIORITY, rule_json, select_terms, slug, term_word, unique_name


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
    terms = select_terms(
        positives, negatives, max_terms=terms_per_rule * max_rules, min_hits=min_hits
    )
    rules = []
    for start in range(0, len(terms), terms_per_rule):
        group = terms[start : start + terms_per_rule]
        name = unique_name(f"{slug(label)}_{term_word(group[0])}", taken)
        words = ", ".join(term_word(t) for t in group)
        desc = f"'{label}' keywords: {words}"
        rules.append(rule_json(name, label, group, DEFAULT_PRIORITY, key, desc))
    return rules[:max_rules]


def synthesis_answer(prompt: str, terms_per_rule: int, rules_per_class: int) -> dict[str, Any]:
    """Bulk synthesis: keyword rules for every label shown, each vs all others."""
    key = primary_key(prompt)
    by_label: dict[str, list[str]] = collections.defaultdict(list)
    for text, label, _ in parse_shown_examples(prompt, key):
        by_label[label].append(text)
    max_rules = int_after(prompt, r"ruleset \(max (\d+) rules\)", 10)
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


def per_class_answer(prompt: str, terms_per_rule: int, rules_per_class: int) -> dict[str, Any]:
    """Per-class synthesis: positives vs counter-examples and other labels' evidence."""
    key = primary_key(prompt)
    match = re.search(r"FOCUS: Generate rules for class '(.+?)' ONLY", prompt)
    if not match:
        return {"analysis": "no target class found", "rules": []}
    label = match.group(1)
    shown = parse_shown_examples(prompt, key)
    positives = [text for text, lab, positive in shown if positive and lab == label]
    negatives = [text for text, lab, _ in shown if lab != label]
    for other, texts in parse_evidence(prompt).items():
        if other != label:
            negatives += texts
    max_rules = min(rules_per_class, int_after(prompt, r"Generate up to (\d+) rules", 5))
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
