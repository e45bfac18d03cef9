"""The hook table for rulechef 0.2.x: which rulechef method feeds which event."""

from __future__ import annotations

from rulechef_trace._capture.rulechef02.audit import (
    after_final_audit,
    after_mid_audit,
    before_audit,
    capture_eval,
)
from rulechef_trace._capture.rulechef02.edits import wrap_edit
from rulechef_trace._capture.rulechef02.llm_steps import (
    CLASSES_AFTER,
    PARSE_AFTER,
    PER_CLASS_LABEL_AFTER,
    patch_step,
    per_class_step,
    synthesis_step,
)
from rulechef_trace._capture.rulechef02.refine import (
    after_merge_patch,
    after_patch,
    after_split,
    before_patch,
    on_patch_decision,
)
from rulechef_trace._capture.rulechef02.runs import (
    wrap_evaluate_and_refine,
    wrap_rank_rules,
    wrap_run,
)
from rulechef_trace._capture.rulechef02.synthesis import (
    after_incremental_merge,
    after_synthesis,
    before_synthesis,
    mark_mode,
)
from rulechef_trace._capture.wrappers import Hook, around

_PIPELINE = "rulechef.pipeline:LearningPipeline"
_LEARNER = "rulechef.learner:RuleLearner"
_CHEF = "rulechef.engine:RuleChef"


#: Which rulechef method feeds which signal.
HOOKS: tuple[Hook, ...] = (
    Hook(_PIPELINE, "run", wrap_run, (), "every learning-run event"),
    Hook(
        _PIPELINE,
        "_synthesize",
        around("synthesized", before=before_synthesis, after=after_synthesis, step=synthesis_step),
        ("incremental_only",),
        "synthesized, and which LLM calls were synthesis",
    ),
    Hook(
        _PIPELINE,
        "_merge_rules",
        around("synthesized", after=after_incremental_merge),
        ("existing", "patches", "deleted_names"),
        "synthesized (incremental), pruned (weak_rules)",
    ),
    Hook(
        _PIPELINE,
        "_audit_rules",
        around("audit_applied", before=before_audit("final_audit"), after=after_final_audit),
        ("rules", "eval_result"),
        "audit_applied (final)",
    ),
    Hook(
        _LEARNER,
        "synthesize_ruleset",
        around("synthesized", before=mark_mode("bulk")),
        (),
        "synthesized mode",
    ),
    Hook(
        _LEARNER,
        "synthesize_ruleset_per_class",
        around("synthesized", before=mark_mode("per_class"), step=per_class_step),
        (),
        "synthesized mode, per-class LLM calls",
    ),
    Hook(
        _LEARNER,
        "_build_per_class_prompt",
        around("llm_called", after=PER_CLASS_LABEL_AFTER),
        ("target_class",),
        "the class each per-class LLM call served",
    ),
    Hook(
        _LEARNER,
        "_parse_rules_from_response",
        around("patch_decided", after=PARSE_AFTER),
        ("result", "max_rules"),
        "rules the parser skipped (dropped, invalid_rules)",
    ),
    Hook(
        _LEARNER,
        "_get_classes",
        around("synthesized", after=CLASSES_AFTER, bind=False),
        (),
        "the dataset's classes, collected (labels outside them are folded)",
    ),
    Hook(
        _LEARNER,
        "evaluate_and_refine",
        wrap_evaluate_and_refine,
        ("iteration_callback", "max_iterations"),
        "iteration_evaluated, refined",
    ),
    Hook(
        "rulechef.splitting",
        "split_dataset",
        around("refined", after=after_split),
        ("holdout_fraction",),
        "refined.holdout, the split metrics are on",
    ),
    Hook(
        _LEARNER,
        "synthesize_patch_ruleset",
        around("patch_decided", before=before_patch, after=after_patch, step=patch_step),
        ("failures", "class_metrics"),
        "patch_decided (empty patches, failure summaries, patch LLM calls)",
    ),
    Hook(
        _LEARNER,
        "_merge_patch",
        around("patch_decided", after=after_merge_patch),
        ("existing", "patches", "deleted_names"),
        "patch_decided rule changes",
    ),
    Hook(
        _LEARNER,
        "_log_patch_decision",
        around("patch_decided", after=on_patch_decision),
        ("iteration", "prev_eval", "candidate_eval", "accepted", "on_dev", "deleted_names"),
        "patch_decided",
    ),
    Hook(
        _LEARNER,
        "_run_mid_refinement_audit",
        around("audit_applied", before=before_audit("mid_audit"), after=after_mid_audit),
        ("rules", "eval_result"),
        "audit_applied (mid_refinement)",
    ),
    Hook(
        _LEARNER,
        "_evaluate_rules",
        around("audit_applied", after=capture_eval("mid_audit"), bind=False),
        (),
        "mid-refinement audit metrics",
    ),
    Hook(
        _CHEF,
        "evaluate",
        around("audit_applied", after=capture_eval("final_audit"), bind=False),
        (),
        "final audit metrics",
    ),
    Hook(_CHEF, "rank_rules", wrap_rank_rules, ("prune",), "rank_rules(prune=True) traces"),
    Hook(_CHEF, "delete_rule", wrap_edit("delete_rule"), ("rule_id",), "edit runs (delete_rule)"),
    Hook(_CHEF, "load_rules", wrap_edit("load_rules"), ("source",), "edit runs (load_rules)"),
)


def hook_table() -> str:
    """The hook table as Markdown (docs/architecture.md holds it; a test keeps them equal)."""
    rows = ["| rulechef method | what a trace misses without it |", "|---|---|"]
    for hook in HOOKS:
        rows.append(f"| `{hook.where}.{hook.name}` | {hook.feeds} |")
    rows.append("| `coordinator.guide_refinement` (on the instance, per run) | guided |")
    rows.append("| `coordinator.critique_rules` (on the instance, per run) | critiqued |")
    rows.append("| `coordinator.audit_rules` (on the instance, per run) | proposed audit actions |")
    rows.append("| `client.chat.completions.create` (on each client, per run) | llm_called |")
    return "\n".join(rows)
