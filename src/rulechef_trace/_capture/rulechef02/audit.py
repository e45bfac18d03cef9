"""Audits (mid-refinement and final) with rulechef's F1 safety net, told as ``audit_applied``."""

from __future__ import annotations

from typing import Any

from rulechef_trace import signals as sig
from rulechef_trace._capture.rulechef02.facts import explain_audit, rule_ids, short_metrics
from rulechef_trace._capture.rulechef02.llm_steps import llm_fields, step_calls
from rulechef_trace._capture.state import RunState, emit_change, remember
from rulechef_trace._capture.wrappers import After, Before


def before_audit(phase: str) -> Before:
    def before(state: RunState, args: dict[str, Any]) -> list[Any]:
        state.phase = phase
        state.pending_audit = None
        state.phase_evals = []
        state.llm_by_step.pop("audit", None)  # an audit that makes no call has none
        # The final audit works on chef.dataset.rules, the mid one on its argument.
        owner = args["self"]
        return list(owner._chef.dataset.rules if phase == "final_audit" else args["rules"])

    return before


def after_mid_audit(state: RunState, args: dict[str, Any], result: Any, before: Any) -> None:
    state.phase = "refinement"
    _emit_audit(state, "mid_refinement", before, args["eval_result"], result)


def after_final_audit(state: RunState, args: dict[str, Any], result: Any, before: Any) -> None:
    state.phase = "done"
    after = result[0] if isinstance(result, tuple) else args["self"]._chef.dataset.rules
    _emit_audit(state, "final", before, args["eval_result"], after)


def _emit_audit(
    state: RunState, stage: str, before: list[Any], pre_eval: Any, after: list[Any]
) -> None:
    actions = list(getattr(state.pending_audit, "actions", None) or [])
    state.pending_audit = None
    remember(state, after)
    after_ids = rule_ids(after)
    explained = explain_audit(actions, before, after_ids)
    post = state.phase_evals[0] if state.phase_evals else None
    state.phase_evals = []
    fields: dict[str, Any] = {
        "stage": stage,
        # A coordinator that proposes nothing without asking the LLM did not
        # audit (SimpleCoordinator never does): readers tell no audit then.
        "audited": bool(actions) or bool(step_calls(state, "audit")),
        "iteration": state.iteration if stage == "mid_refinement" else None,
        "proposed": len(actions),
        **explained,
        "metrics_before": short_metrics(pre_eval, _audit_split(state, stage)),
        "metrics_after": post if explained["actions"] else None,
        **llm_fields(state, "audit"),
    }
    emit_change(state, sig.audit_applied, after_ids, fields)


def _audit_split(state: RunState, stage: str) -> str:
    # A mid-refinement audit measures on the training part when a dev set is held out.
    return "train" if stage == "mid_refinement" and state.metric_split == "dev" else "all"


def keep_audit(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
    state.pending_audit = result


def capture_eval(phase: str) -> After:
    def after(state: RunState, args: dict[str, Any], result: Any, context: None) -> None:
        if state.phase == phase and not state.phase_evals:
            # Only the safety net's evaluation (the first) is reported.
            split = _audit_split(state, "mid_refinement" if phase == "mid_audit" else phase)
            state.phase_evals.append(short_metrics(result, split))

    return after
