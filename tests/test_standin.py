"""The offline stand-in LLM drives real rulechef learning runs with a story.

Everything here runs rulechef 0.2.2 unmodified against ``StandInLLM``; what
happened is read from rulechef's own ``TrainingDataLogger`` records, the
returned rules and rulechef's printed messages. No hooks, no monkeypatching.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rulechef import Rule, RuleFormat, Task, TaskType
from rulechef.coordinator import AgenticCoordinator
from rulechef.engine import RuleChef
from rulechef.training_logger import TrainingDataLogger

from rulechef_trace._capture.rulechef02.prompts import PROMPT_MARKERS
from rulechef_trace.demo.examples import load_examples, packaged_data_path
from rulechef_trace.demo.standin import PROMPT_KINDS, StandInLLM, detect_prompt_kind
from tests.scripted import as_client

# A second, unrelated data set: the stand-in must not be tuned to the packaged one.
OTHER_TOPICS = [
    ("Heavy rain is expected across the north tonight", "weather"),
    ("Tomorrow will be sunny with a light breeze", "weather"),
    ("A storm warning has been issued for the coast", "weather"),
    ("Temperatures will drop below freezing this weekend", "weather"),
    ("Expect fog in the valleys early in the morning", "weather"),
    ("Snow showers are likely on higher ground", "weather"),
    ("The forecast says humid and cloudy all week", "weather"),
    ("Strong winds could knock down trees on Friday", "weather"),
    ("A heatwave will push temperatures past 35 degrees", "weather"),
    ("Light drizzle clearing to sunny spells by noon", "weather"),
    ("The home team won the match in extra time", "sports"),
    ("She scored twice in the second half", "sports"),
    ("The coach was sacked after another defeat", "sports"),
    ("Tickets for the final sold out in minutes", "sports"),
    ("He broke the national record in the 400 metres", "sports"),
    ("The league table is tight after the weekend games", "sports"),
    ("Our striker injured his knee in training", "sports"),
    ("The referee showed two red cards in the match", "sports"),
    ("The tennis final was delayed by rain", "sports"),
    ("Fans celebrated the championship win in the streets", "sports"),
    ("Simmer the sauce for twenty minutes, stirring often", "cooking"),
    ("Whisk the eggs with sugar until pale", "cooking"),
    ("Preheat the oven and grease a baking tray", "cooking"),
    ("Chop the onions finely and fry them in butter", "cooking"),
    ("Season the soup with salt and a pinch of pepper", "cooking"),
    ("Knead the dough until it is smooth and elastic", "cooking"),
    ("Roast the vegetables with olive oil and garlic", "cooking"),
    ("Let the cake cool before adding the icing", "cooking"),
    ("Marinate the chicken overnight in yogurt and spices", "cooking"),
    ("Boil the pasta in salted water until al dente", "cooking"),
]


@dataclass
class Run:
    """One learn_rules (+ rank_rules) run and everything observed about it."""

    chef: Any  # rulechef 0.2 types dataset and learner as None (see tests.scripted.make_chef)
    llm: StandInLLM
    coordinator: AgenticCoordinator
    rules: list[Rule]
    eval_result: Any
    records: list[dict[str, Any]]
    output: str
    rules_before_ranking: list[Rule]
    report: Any = None

    def logged(self, call_type: str) -> list[dict[str, Any]]:
        """The TrainingDataLogger records of one call type, in order."""
        return [r for r in self.records if r["call_type"] == call_type]


def make_chef(
    examples: Sequence[tuple[str, str]], root: Path, name: str
) -> tuple[Any, StandInLLM, AgenticCoordinator]:
    """A RuleChef wired to one StandInLLM (learner and coordinator) and a log file."""
    llm = StandInLLM()
    coordinator = AgenticCoordinator(
        llm, prune_after_learn=True, enable_critic=True, audit_interval=2, verbose=True
    )
    task = Task(
        name=name,
        type=TaskType.CLASSIFICATION,
        input_schema={"text": "str"},
        output_schema={"label": "str"},
        description="Classify each message into one intent label",
    )
    chef = RuleChef(
        task=task,
        client=as_client(llm),
        coordinator=coordinator,
        storage_path=str(root),
        dataset_name="demo",
        training_logger=TrainingDataLogger(str(root / "calls.jsonl")),
    )
    with contextlib.redirect_stdout(io.StringIO()):
        for text, label in examples:
            chef.add_example({"text": text}, {"label": label})
    return chef, llm, coordinator


def learn(examples: Sequence[tuple[str, str]], root: Path, *, iterations: int, rank: bool) -> Run:
    """Run learn_rules (and optionally rank_rules with pruning), capturing stdout."""
    chef, llm, coordinator = make_chef(examples, root, "Support intents")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rules, eval_result = chef.learn_rules(max_refinement_iterations=iterations)
        before = list(chef.dataset.rules)
        report = chef.rank_rules(prune=True, verbose=False) if rank else None
    log_path = root / "calls.jsonl"
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    return Run(
        chef, llm, coordinator, rules, eval_result, records, printed.getvalue(), before, report
    )


@pytest.fixture(scope="module")
def packaged_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The packaged intents, 4 refinement iterations, then ranking with pruning."""
    examples = load_examples(packaged_data_path())
    return learn(examples, tmp_path_factory.mktemp("intents"), iterations=4, rank=True)


# ---------------------------------------------------------------------------
# The packaged data set
# ---------------------------------------------------------------------------


def test_packaged_data_is_a_small_balanced_intent_set() -> None:
    """The packaged intents are about 150 distinct texts of 4-5 labels, at least 20 each."""
    examples = load_examples(packaged_data_path())
    labels = [label for _, label in examples]
    assert 140 <= len(examples) <= 160
    assert 4 <= len(set(labels)) <= 5
    assert min(labels.count(label) for label in set(labels)) >= 20
    assert len({text for text, _ in examples}) == len(examples), "duplicate texts"


def test_load_examples_names_file_and_line_on_bad_input(tmp_path: Path) -> None:
    """Bad JSON, a missing label and a non-object line each fail naming the file and line."""
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok", "label": "a"}\n\n{"text": broken\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load_examples(bad_json)

    no_label = tmp_path / "nolabel.jsonl"
    no_label.write_text('{"text": "ok", "label": "a"}\n{"text": "no label"}\n')
    with pytest.raises(ValueError, match=r"nolabel\.jsonl, line 2: 'label'"):
        load_examples(no_label)

    not_object = tmp_path / "list.jsonl"
    not_object.write_text('["text", "label"]\n')
    with pytest.raises(ValueError, match=r"list\.jsonl, line 1: expected a JSON object"):
        load_examples(not_object)


# ---------------------------------------------------------------------------
# A full run on the packaged data tells a story
# ---------------------------------------------------------------------------


def test_every_prompt_rulechef_sent_was_recognised(packaged_run: Run) -> None:
    """Every prompt of a full run is recognised, and each kind of call happened."""
    calls = packaged_run.llm.calls
    assert set(calls) <= set(PROMPT_KINDS)
    assert calls["other"] == 0
    assert calls["per_class"] == len({label for _, label in load_examples(packaged_data_path())})
    assert calls["patch"] == 4
    assert calls["guidance"] >= 1
    assert calls["critic"] >= 1
    assert calls["audit"] >= 2  # at least one mid-refinement audit and the final one
    logged = {r["call_type"] for r in packaged_run.records}
    assert {"rule_synthesis_per_class", "rule_patch", "guide_refinement"} <= logged
    assert {"audit_rules", "critique_rules", "patch_decision"} <= logged


def test_run_ends_with_rules_and_a_useful_f1(packaged_run: Run) -> None:
    """A full run ends with regex rules, above 60 % F1 and better than its first evaluation."""
    assert packaged_run.rules
    assert all(r.format == RuleFormat.REGEX for r in packaged_run.rules)
    assert packaged_run.eval_result.micro_f1 > 0.6
    first_eval = re.search(r"\[1/4\] Exact match: .*micro F1: ([\d.]+)%", packaged_run.output)
    assert first_eval, packaged_run.output
    assert packaged_run.eval_result.micro_f1 > float(first_eval.group(1)) / 100, "no progress"


def test_run_has_accepted_and_rejected_patches(packaged_run: Run) -> None:
    """Some patches are accepted (one raising F1) and some rejected (all lowering it)."""
    decisions = packaged_run.logged("patch_decision")
    accepted = [d["metadata"] for d in decisions if d["metadata"]["accepted"]]
    rejected = [d["metadata"] for d in decisions if not d["metadata"]["accepted"]]
    assert accepted and rejected
    assert any(m["f1_delta"] > 0 for m in accepted), "no patch improved F1"
    assert all(m["f1_delta"] < 0 for m in rejected)


def test_patches_name_real_rules(packaged_run: Run) -> None:
    """Deletions and replacements in patch answers refer to rules the prompt listed."""
    for record in packaged_run.logged("rule_patch"):
        prompt = record["messages"][0]["content"]
        answer = json.loads(record["messages"][-1]["content"])
        for name in answer["deleted_rules"]:
            assert f'"name": "{name}"' in prompt


def test_an_audit_merge_is_applied_and_kept(packaged_run: Run) -> None:
    """An audit merge is applied, survives to the final rules and is never reverted."""
    merges = [
        action
        for record in packaged_run.logged("audit_rules")
        for action in json.loads(record["messages"][-1]["content"])["actions"]
        if action["action"] == "merge"
    ]
    assert merges
    merged_patterns = {action["merged_pattern"] for action in merges}
    kept = [r for r in packaged_run.rules_before_ranking if r.description.startswith("Merged:")]
    assert kept, "no merged rule survived to the final rule set"
    assert all(r.content in merged_patterns for r in kept)
    assert "reverting" not in packaged_run.output


def keywords(pattern: str) -> set[str]:
    """The alternatives of a ``(?i)\\b(?:a|b)\\b`` keyword pattern."""
    return set(pattern.removeprefix("(?i)\\b(?:").removesuffix(")\\b").split("|"))


def test_audit_merges_join_rules_of_one_label(packaged_run: Run) -> None:
    """Every merge joins rules of one label, and the merged pattern keeps all their keywords."""
    for record in packaged_run.logged("audit_rules"):
        rules = json.loads(
            record["messages"][0]["content"].split("RULES:\n", 1)[1].split("\n\nYour job", 1)[0]
        )
        by_id = {rule["id"]: rule for rule in rules}
        for action in json.loads(record["messages"][-1]["content"])["actions"]:
            if action["action"] != "merge":
                continue
            sources = [by_id[rule_id] for rule_id in action["rule_ids"]]
            assert len({json.dumps(s["output_template"]) for s in sources}) == 1
            merged = keywords(action["merged_pattern"])
            assert all(keywords(s["pattern"]) <= merged for s in sources)


def test_ranking_prunes_a_harmful_rule(packaged_run: Run) -> None:
    """rank_rules(prune=True) removes every rule with a negative marginal F1."""
    report = packaged_run.report
    harmful = {r.rule_id for r in report.rankings if (r.marginal_f1 or 0.0) < 0}
    assert harmful, "no rule with negative marginal F1"
    final_ids = {r.id for r in packaged_run.chef.dataset.rules}
    assert not harmful & final_ids
    assert len(packaged_run.chef.dataset.rules) < len(packaged_run.rules_before_ranking)
    assert "Pruned" in packaged_run.output


def test_runs_are_deterministic(packaged_run: Run, tmp_path: Path) -> None:
    """Two runs on the same data make the same decisions, rules, F1 and calls."""
    again = learn(load_examples(packaged_data_path()), tmp_path, iterations=4, rank=True)

    def summary(run: Run) -> tuple[Any, ...]:
        decisions = [d["metadata"]["accepted"] for d in run.logged("patch_decision")]
        rules = sorted((r.name, r.content, r.priority) for r in run.chef.dataset.rules)
        return decisions, rules, round(run.eval_result.micro_f1, 6), dict(run.llm.calls)

    assert summary(again) == summary(packaged_run)


# ---------------------------------------------------------------------------
# A different data set
# ---------------------------------------------------------------------------


def test_other_data_set_learns_sensible_rules(tmp_path: Path) -> None:
    """On an unrelated data set the rules cover its labels with its own words, above 50 % F1."""
    run = learn(OTHER_TOPICS, tmp_path, iterations=3, rank=False)
    assert run.rules
    assert run.eval_result.micro_f1 > 0.5
    assert run.llm.calls["other"] == 0
    labels = {(r.output_template or {}).get("label") for r in run.rules}
    assert labels == {"weather", "sports", "cooking"}
    packaged_words = {"card", "bike", "refund", "membership", "password"}
    patterns = " ".join(r.content for r in run.rules)
    assert not any(word in patterns for word in packaged_words)


# ---------------------------------------------------------------------------
# Single prompts
# ---------------------------------------------------------------------------


def test_trigger_decision_comes_from_the_buffer_counts(tmp_path: Path) -> None:
    """The trigger answer follows the buffer's counts of new examples."""
    chef, llm, coordinator = make_chef(OTHER_TOPICS[:6], tmp_path, "Topics")
    existing = [
        Rule(
            id="r1",
            name="weather_rain",
            description="",
            format=RuleFormat.REGEX,
            content=r"(?i)\b(?:rain)\b",
            output_template={"label": "weather"},
            output_key="label",
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        decision = coordinator.should_trigger_learning(chef.buffer, existing)
    assert llm.calls["trigger"] == 1
    assert decision.should_learn
    assert decision.strategy == "balanced"
    assert decision.metadata == {"source": "llm_agent"}


def test_client_interface_and_unknown_prompts() -> None:
    """Any OpenAI-style call is answered; an unknown prompt gets ``{}``, counted as other."""
    llm = StandInLLM()
    response = llm.chat.completions.create(
        model="any-model",
        messages=[{"role": "user", "content": "Write me a poem about rules."}],
        response_format={"type": "json_object"},
        max_completion_tokens=10,
        temperature=0.7,
    )
    assert json.loads(response.choices[0].message.content) == {}
    assert response.model == "any-model"
    assert llm.calls == {"other": 1}
    assert detect_prompt_kind("You are a Rule Auditor for a rule-based system") == "audit"
    assert detect_prompt_kind("FOCUS: Generate rules for class 'x' ONLY.") == "per_class"


def test_guidance_stops_only_when_every_class_is_good() -> None:
    """Guidance goes on while a class is below 95 % F1, focusing on it, and stops after."""
    llm = StandInLLM()
    table = "You are the Refinement Coordinator for a rule learning system.\n{lines}\n"
    weak = table.format(lines="  a: F1=97% P=97% R=97% (TP=1 FP=0 FN=0)\n  b: F1=60% P=1% R=1%")
    strong = table.format(lines="  a: F1=97% P=97% R=97%\n  b: F1=95% P=95% R=95%")
    weak_answer = json.loads(llm.respond(weak))
    assert weak_answer["should_continue"] is True
    assert weak_answer["focus_classes"] == ["b"]
    assert json.loads(llm.respond(strong))["should_continue"] is False
    assert llm.calls["guidance"] == 2


# ---------------------------------------------------------------------------
# The prompt markers
# ---------------------------------------------------------------------------


def test_every_prompt_marker_is_in_the_installed_rulechef() -> None:
    """Each marker is text of rulechef's own source, so a reworded template fails here."""
    import rulechef

    source = "".join(p.read_text() for p in Path(rulechef.__file__).parent.glob("*.py"))
    kinds = {kind for kind, _ in PROMPT_MARKERS}
    assert kinds == set(PROMPT_KINDS) - {"other"}
    missing = [marker for _, marker in PROMPT_MARKERS if marker not in source]
    assert missing == []


def test_the_stand_in_and_the_scripted_llm_read_the_same_markers() -> None:
    """Both clients name a marked prompt by the one table (guidance is "guide" in scripts)."""
    from tests.scripted import prompt_kind

    for kind, marker in PROMPT_MARKERS:
        prompt = f"some preamble\n{marker} and the rest"
        assert detect_prompt_kind(prompt) == kind
        assert prompt_kind(prompt) == ("guide" if kind == "guidance" else kind)
    assert detect_prompt_kind("no marker at all") == "other"
    assert prompt_kind("no marker at all") == "synthesis"
