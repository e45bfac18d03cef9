"""Coordinator answers: audit, refinement guidance, critic and trigger decision."""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from typing import Any

from ._parsing import PromptRule, int_after, parse_class_f1, parse_rules, primary_key
from ._rules import build_pattern, hits, pattern_terms, slug, term_word, unique_name

_MAX_AUDIT_MERGES = 2
_MIN_MERGE_PRECISION = 0.5
_GOOD_ENOUGH_F1 = 0.95


def audit_answer(prompt: str) -> dict[str, Any]:
    """Audit: remove pure-noise rules, merge same-label keyword rules."""
    rules = parse_rules(prompt, "RULES:", primary_key(prompt))
    removals = _audit_removals(rules)
    removed = {rule_id for action in removals for rule_id in action["rule_ids"]}
    merges = _audit_merges([r for r in rules if r.rule_id not in removed])
    analysis = f"{len(merges)} merge(s), {len(removals)} removal(s) among {len(rules)} rules"
    return {"analysis": analysis, "actions": merges + removals}


def _audit_removals(rules: Sequence[PromptRule]) -> list[dict[str, Any]]:
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


def _audit_merges(rules: Sequence[PromptRule]) -> list[dict[str, Any]]:
    """Merge pairs of keyword rules with the same label and priority.

    The least-used pairs are merged first (fewest combined matches), so a
    merge moves as few predictions as possible; each rule is merged at most
    once per audit.
    """
    groups: dict[tuple[str, int], list[PromptRule]] = collections.defaultdict(list)
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


def _merge_action(first: PromptRule, second: PromptRule, taken: set[str]) -> dict[str, Any]:
    """An audit ``merge`` action joining two keyword rules' alternations."""
    terms = list(dict.fromkeys((first.terms or []) + (second.terms or [])))
    name = unique_name(f"{slug(first.label or 'class')}_{term_word(terms[0])}", taken)
    return {
        "action": "merge",
        "rule_ids": [first.rule_id, second.rule_id],
        "merged_pattern": build_pattern(terms),
        "merged_name": name,
        "reason": f"'{first.name}' and '{second.name}' are keyword lists for the same label",
    }


def guidance_answer(prompt: str) -> dict[str, Any]:
    """Refinement guidance: focus on the weakest classes, stop when all are good."""
    scores = parse_class_f1(prompt)
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


def critic_answer(prompt: str) -> dict[str, Any]:
    """Critic: advice for every rule with false positives, naming the keywords to blame."""
    blocks = _critic_rule_blocks(prompt)
    feedback = {}
    for rule_id, pattern, false_positives, fp_inputs in blocks:
        if false_positives <= 0:
            continue
        blamed = [term_word(t) for t in (pattern_terms(pattern) or []) if hits(t, fp_inputs)]
        advice = f"Fires on {false_positives} input(s) of other classes."
        if blamed:
            advice += " Keywords " + ", ".join(f"'{w}'" for w in blamed)
            advice += " also occur there; drop them or add context."
        feedback[rule_id] = advice
    scores = parse_class_f1(prompt)
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


def trigger_answer(prompt: str) -> dict[str, Any]:
    """Trigger decision from the buffer counts in the prompt."""
    new = int_after(prompt, r"- New examples: (\d+)", 0)
    corrections = int_after(prompt, r"- New corrections \(high priority\): (\d+)", 0)
    return {
        "should_learn": corrections > 0 or new >= 5,
        "strategy": "corrections_first" if corrections else "balanced",
        "max_iterations": 2 if corrections else 3,
        "reasoning": f"{new} new examples, {corrections} corrections",
    }
