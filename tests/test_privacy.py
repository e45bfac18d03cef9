"""No input text, expected output, correction, feedback string or rule pattern leaks."""

from __future__ import annotations

import re
import tempfile
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rulechef_trace import ALL_SIGNALS, record_trace
from tests.scripted import ScriptedLLM, last_trace, make_chef, target_class

# Texts carry a marker so that a leak of the whole text is unmistakable.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=6, max_size=40
).map(lambda s: "§" + s)
LABELS = ["alpha", "beta", "gamma"]


def words_rule(name: str, texts: list[str], label: str) -> dict[str, Any]:
    pattern = "|".join(re.escape(t) for t in texts[:3]) or "zzz"
    return {
        "name": name,
        "format": "regex",
        "pattern": pattern,
        "output_template": {"label": label},
        "output_key": "label",
        "priority": 5,
    }


def leaky_llm(data: list[tuple[str, str]], feedback: str) -> ScriptedLLM:
    """An LLM that quotes the user's data back in every answer it gives."""
    by_label: dict[str, list[str]] = {}
    for text, label in data:
        by_label.setdefault(label, []).append(text)

    def per_class(prompt: str) -> dict[str, Any]:
        label = target_class(prompt)
        texts = by_label.get(label, [])
        # The second rule's label quotes an input text and fires on it.
        quoting = words_rule(f"{label} quote", texts, texts[0] if texts else label)
        return {"rules": [words_rule(f"{label} rule", texts, label), quoting]}

    def patch(prompt: str) -> dict[str, Any]:
        texts = [t for t, _ in data][-2:]
        return {"rules": [words_rule("patch rule", texts, data[-1][1])], "analysis": texts[0]}

    quote = data[0][0]
    return ScriptedLLM(
        per_class=per_class,
        patch=patch,
        guide={"guidance": f"look at {quote}", "should_continue": True},
        critic={"analysis": quote, "rule_feedback": {quote: feedback}, "task_guidance": quote},
        audit={
            "analysis": quote,
            "actions": [{"action": "remove", "rule_ids": [quote], "reason": quote}],
        },
    )


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=st.lists(
        st.tuples(TEXT, st.sampled_from(LABELS)), min_size=4, max_size=10, unique_by=lambda x: x[0]
    ),
    corrections=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=2),
    feedback=TEXT,
)
def test_no_user_text_reaches_a_trace_file_or_a_signal_payload(data, corrections, feedback):
    with tempfile.TemporaryDirectory() as folder:
        chef = make_chef(folder, leaky_llm(data, feedback), "agentic", data=data)
        for wrong, right in corrections:
            chef.buffer.add_human_correction(
                {"text": right}, {"label": "alpha"}, {"label": wrong}, feedback=feedback
            )
        chef.add_feedback(feedback)
        payloads: list[bytes] = []

        def capture(sender: Any, **event: Any) -> None:
            payloads.append(orjson.dumps(event))

        for signal in ALL_SIGNALS:
            signal.connect(capture, weak=False)
        try:
            with record_trace(chef) as recorder:
                chef.learn_rules(max_refinement_iterations=2)
                chef.rank_rules(prune=True, verbose=False)
        finally:
            for signal in ALL_SIGNALS:
                signal.disconnect(capture)
        written = b"".join(p.read_bytes() for p in recorder.paths)
        assert recorder.paths and payloads
        secrets = [t for t, _ in data] + [t for pair in corrections for t in pair] + [feedback]
        secrets += [r.content for r in chef.dataset.rules]
        for blob in (written, *payloads):
            text = blob.decode()
            for secret in secrets:
                assert secret not in text
                assert orjson.dumps(secret).decode()[1:-1] not in text


def test_names_an_llm_proposes_for_merges_that_never_happen_stay_out(tmp_path):
    from tests.scripted import BREAK, FIX_POS, audit_merge

    quote = "awful service"  # an input text of the data set
    bad_merge = audit_merge(["pos words", "neg words"], quote, "good|great|bad|awful")
    chef = make_chef(
        tmp_path, ScriptedLLM(patch=[FIX_POS, BREAK], audit=[bad_merge, {}]), "agentic"
    )
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=2)
    (mid, *_) = last_trace(recorder).events_of("audit_applied")
    assert mid["reverted"] is True
    assert quote not in b"".join(p.read_bytes() for p in recorder.paths).decode()
