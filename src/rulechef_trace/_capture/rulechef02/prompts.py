"""The prompts rulechef 0.2.x sends its LLM, told apart by fixed text in each.

One table of markers, read by the offline stand-in LLM (to know what it is
asked) and by the tests' scripted LLM. rulechef builds each prompt from a
template that starts with, or contains, one sentence no other template has;
those sentences are the markers. A new rulechef version that rewords a
template needs a change here only.

Standard library only: the benchmark loads this file without the package.
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "CRITIC",
    "GUIDANCE",
    "OTHER",
    "PATCH",
    "PER_CLASS",
    "PER_CLASS_MARKER",
    "PROMPT_KINDS",
    "PROMPT_MARKERS",
    "SYNTHESIS",
    "TRIGGER",
    "prompt_kind",
]

SYNTHESIS = "synthesis"
PER_CLASS = "per_class"
PATCH = "patch"
AUDIT = "audit"
GUIDANCE = "guidance"
CRITIC = "critic"
TRIGGER = "trigger"
OTHER = "other"

#: Every kind :func:`prompt_kind` can return.
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

#: What a per-class synthesis prompt says right before the class it asks for.
PER_CLASS_MARKER = "FOCUS: Generate rules for class '"

#: (kind, marker) pairs, checked in order; the first marker found decides.
#: The coordinator's prompts come first: they never embed the learner's
#: prompt texts, while a learner prompt can quote the coordinator's advice.
PROMPT_MARKERS: tuple[tuple[str, str], ...] = (
    (AUDIT, "You are a Rule Auditor"),  # AgenticCoordinator.audit_rules
    (GUIDANCE, "You are the Refinement Coordinator"),  # .guide_refinement
    (CRITIC, "You are an expert Rule Critic"),  # .critique_rules
    (TRIGGER, "Decide if we should trigger a retraining loop"),  # ._ask_llm
    (PATCH, "You are updating an existing rule-based extractor"),  # learner patch
    (PATCH, "Refine the ruleset for this task while fixing the failures"),  # unused builder
    (PER_CLASS, PER_CLASS_MARKER),  # synthesize_ruleset_per_class
    (SYNTHESIS, "YOUR TASK:"),  # synthesize_ruleset
)


def prompt_kind(prompt: str, default: str = OTHER) -> str:
    """Tell which rulechef prompt this is.

    Args:
        prompt: The full user prompt text.
        default: The kind of a prompt no marker matches.

    Returns:
        One of :data:`PROMPT_KINDS`, or ``default`` when no marker matches.
    """
    for kind, marker in PROMPT_MARKERS:
        if marker in prompt:
            return kind
    return default
