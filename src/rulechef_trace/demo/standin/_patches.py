"""Patch answers: tighten misfiring rules, add keyword rules, and now and then a bad patch."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any

from ._parsing import PatchContext
from ._rules import (
    DEFAULT_PRIORITY,
    FALLBACK_PRIORITY,
    candidate_terms,
    hits,
    rule_json,
    select_terms,
    shared_words,
    slug,
    term_word,
    unique_name,
)

# Patches may use keywords that also occur in a few texts of other classes.
_PATCH_MIN_PRECISION = 0.75
# Below this many examples per class, a keyword seen once is evidence enough
# for a patch.
_SMALL_CLASS_SIZE = 20
_MAX_TIGHTENED_RULES = 2
_MAX_PATCH_TERMS = 4


def patch_answer(
    analysis: str, rules: Sequence[dict[str, Any]] = (), deleted: Sequence[str] = ()
) -> dict[str, Any]:
    """A patch answer in the shape rulechef's patch prompt asks for."""
    return {"analysis": analysis, "rules": list(rules), "deleted_rules": list(deleted)}


def good_patch(ctx: PatchContext) -> dict[str, Any]:
    """Tighten misfiring rules, add keyword rules and a fallback rule."""
    tightened, deleted = _tighten_rules(ctx)
    added = _recall_rules(ctx, budget=ctx.max_rules - len(tightened) - 1)
    fallback = _fallback_rule(ctx)
    analysis = (
        f"{len(ctx.failures)} failures: tightened {len(tightened)} rule(s), "
        f"deleted {len(deleted)}, added {len(added) + len(fallback)}"
    )
    return patch_answer(analysis, tightened + added + fallback, deleted)


def _tighten_rules(ctx: PatchContext) -> tuple[list[dict[str, Any]], list[str]]:
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
        kept = [t for t in terms if not 2 <= hits(t, wrong) > hits(t, own)]
        if len(kept) == len(terms):
            continue
        if kept:
            desc = f"Tightened: removed keywords that fired on other labels ({rule.name})"
            updated.append(
                rule_json(rule.name, rule.label or "", kept, rule.priority, ctx.key, desc)
            )
        else:
            deleted.append(rule.name)
    return updated, deleted


def _failure_groups(ctx: PatchContext) -> dict[tuple[str, int], list[str]]:
    """Failure texts by (expected label, priority a fixing rule needs).

    Unmatched inputs need the default priority; inputs another label's rule
    claimed need one priority above that rule.
    """
    priority_of = {r.name: r.priority for r in ctx.rules}
    groups: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
    for failure in ctx.failures:
        if failure.got is None:
            priority = DEFAULT_PRIORITY
        else:
            priority = priority_of.get(failure.got_rule or "", DEFAULT_PRIORITY) + 1
        groups[(failure.expected, priority)].append(failure.text)
    return groups


def _patch_terms(
    ctx: PatchContext, label: str, targets: Sequence[str], proposed: Iterable[str] = ()
) -> list[str]:
    """Keywords for failing ``label`` inputs that its rules do not use yet.

    ``proposed`` are keywords this patch already uses for ``label``.
    """
    known = {t for r in ctx.rules if r.label == label for t in (r.terms or [])}
    known.update(proposed)
    negatives = [t for other, texts in ctx.corpus.items() if other != label for t in texts]
    support = [t for t in ctx.corpus.get(label, []) if t not in targets]
    class_size = ctx.class_sizes.get(label, len(ctx.corpus.get(label, [])))
    return select_terms(
        targets,
        negatives,
        support=support,
        max_terms=_MAX_PATCH_TERMS,
        min_hits=1 if class_size < _SMALL_CLASS_SIZE else 2,
        min_precision=_PATCH_MIN_PRECISION,
        exclude=known,
    )


def _recall_rules(ctx: PatchContext, budget: int) -> list[dict[str, Any]]:
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
    order = sorted(groups, key=lambda g: (g[1] == DEFAULT_PRIORITY, -len(groups[g]), g))
    for label, priority in order:
        if len(added) >= budget:
            break
        terms = _patch_terms(ctx, label, groups[(label, priority)], proposed[label])
        if not terms:
            continue
        proposed[label] += terms
        kind = "patch" if priority == DEFAULT_PRIORITY else "override"
        name = unique_name(f"{slug(label)}_{kind}_{term_word(terms[0])}", taken)
        desc = f"Covers failing '{label}' inputs: " + ", ".join(map(term_word, terms))
        added.append(rule_json(name, label, terms, priority, ctx.key, desc))
    return added


def _fallback_rule(ctx: PatchContext) -> list[dict[str, Any]]:
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
    own_terms = set(candidate_terms(missed[label]))
    texts = [f.text for f in ctx.failures]
    shared = shared_words(texts, [f.expected for f in ctx.failures])
    terms = [t for t in shared if t in own_terms and hits(t, texts) >= 2][:1]
    if not terms:
        return []
    desc = f"Low-priority catch-up for unmatched '{label}' inputs"
    name = f"{slug(label)}_fallback"
    return [rule_json(name, label, terms, FALLBACK_PRIORITY, ctx.key, desc)]


def bad_patch(ctx: PatchContext, bad_round: int) -> dict[str, Any]:
    """A deliberately worse patch.

    Odd rounds add an over-broad rule above every other rule; even rounds
    delete the top rule of the best-scoring class.
    """
    if bad_round % 2 == 1 or not ctx.rules:
        return _broad_rule_patch(ctx)
    return _delete_good_rule_patch(ctx)


def _broad_rule_patch(ctx: PatchContext) -> dict[str, Any]:
    """A top-priority rule from the words shared by the most failing labels."""
    counts = collections.Counter(failure.expected for failure in ctx.failures)
    label = min(counts, key=lambda lab: (-counts[lab], lab))
    texts = [f.text for f in ctx.failures]
    terms = shared_words(texts, [f.expected for f in ctx.failures])[:2]
    if not terms:
        return patch_answer("nothing to generalise")
    priority = max((r.priority for r in ctx.rules), default=DEFAULT_PRIORITY) + 2
    name = unique_name(f"{slug(label)}_general_{term_word(terms[0])}", {r.name for r in ctx.rules})
    desc = f"Generalised '{label}' rule from words frequent in failures"
    rule = rule_json(name, label, terms, priority, ctx.key, desc)
    return patch_answer(f"generalise {label} from frequent failure words", [rule])


def _delete_good_rule_patch(ctx: PatchContext) -> dict[str, Any]:
    """Delete the highest-priority rule of the best-scoring class."""
    labelled = [r for r in ctx.rules if r.label]
    if not labelled:
        return patch_answer("nothing to delete")
    best = max(labelled, key=lambda r: (ctx.class_f1.get(r.label or "", 0.0), r.priority, r.name))
    analysis = f"'{best.name}' looks redundant for the well-covered class {best.label}"
    return patch_answer(analysis, deleted=[best.name])
