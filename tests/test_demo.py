"""The offline demo: a real learning run on the packaged data, and on other data."""

from __future__ import annotations

import fnmatch
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rulechef_trace import Trace, load_trace, replay, validate
from rulechef_trace.demo import DEFAULT_DIR, DemoDataError, choose_llm, demo_data, run_demo
from rulechef_trace.trace import EVENT_TYPES

TOPICS = {
    "sport": [
        "the striker scored a late goal",
        "our team won the football match",
        "the keeper saved a penalty kick",
        "the tennis final went to five sets",
        "the coach picked a new team captain",
        "she ran the marathon in record time",
        "the referee showed a red card",
        "fans cheered the winning goal",
        "the cyclist won the mountain stage",
        "basketball playoffs start tonight",
        "the match ended in a draw",
        "the team trained hard before the match",
    ],
    "food": [
        "bake the bread for forty minutes",
        "add salt and pepper to the soup",
        "the recipe needs fresh basil",
        "simmer the sauce until it thickens",
        "chop the onions and garlic finely",
        "this cake recipe uses butter",
        "roast the vegetables in the oven",
        "the soup tastes better with garlic",
        "knead the dough for ten minutes",
        "serve the pasta with grated cheese",
        "preheat the oven before baking",
        "whisk the eggs with sugar",
    ],
    "weather": [
        "heavy rain expected this afternoon",
        "a cold front brings snow tonight",
        "sunny skies all weekend",
        "strong winds and rain along the coast",
        "the forecast says thunderstorms later",
        "temperatures drop below freezing tonight",
        "fog will clear by noon",
        "expect light snow in the hills",
        "a heat wave hits the south",
        "showers and wind tomorrow morning",
        "the forecast promises sunny weather",
        "humid and hot with storms later",
    ],
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Trace], str]:
    """The demo on the packaged data: its folder, traces and printed output."""
    folder = tmp_path_factory.mktemp("demo") / "out"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("OPENAI_API_KEY", raising=False)
        traces = run_demo(folder, out=out)
    return folder, traces, out.getvalue()


@pytest.fixture
def topics(tmp_path: Path) -> Path:
    path = tmp_path / "topics.jsonl"
    rows = [{"text": t, "label": label} for label, texts in TOPICS.items() for t in texts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield


def test_the_written_learning_trace_validates_and_replays(
    demo: tuple[Path, list[Trace], str],
) -> None:
    """The demo's latest-run file validates, replays to its final rules, scores over 70 % F1."""
    folder, traces, _ = demo
    written = load_trace(folder / "intents.trace.json")
    assert validate(written) == []
    assert sorted(replay(written)) == sorted(written.final_rules)
    assert written.run["id"] == traces[0].run["id"]
    assert written.status == "completed" and written.run["kind"] == "learn"
    assert (written.final_metrics or {})["f1"] > 0.7


def test_the_demo_shows_every_event_kind(demo: tuple[Path, list[Trace], str]) -> None:
    """The two runs emit every event type: accepted and rejected patches, a merge, a prune."""
    _, traces, _ = demo
    learn, rank = traces
    assert [t.run["kind"] for t in traces] == ["learn", "rank_rules"]
    seen = {e["type"] for t in traces for e in t.events}
    assert seen == set(EVENT_TYPES) - {"rules_edited"}  # the demo edits no rule by hand
    assert {e["type"] for e in learn.events} == set(EVENT_TYPES) - {"pruned", "rules_edited"}
    outcomes = {e["outcome"] for e in learn.events_of("patch_decided")}
    assert {"accepted", "rejected"} <= outcomes
    merges = [
        a
        for e in learn.events_of("audit_applied")
        if not e["reverted"]
        for a in e["actions"]
        if a["action"] == "merge" and a["result"]
    ]
    assert merges
    (pruned,) = rank.events_of("pruned")
    assert pruned["reason"] == "harmful_rules" and pruned["removed"]


def test_every_demo_trace_file_validates(demo: tuple[Path, list[Trace], str]) -> None:
    """Both history files of the demo validate."""
    folder, _, _ = demo
    kept = sorted((folder / "intents.traces").glob("*.trace.json"))
    assert len(kept) == 2
    for path in kept:
        assert validate(load_trace(path)) == []


def test_the_demo_says_what_it_did(demo: tuple[Path, list[Trace], str]) -> None:
    """The output names data, LLM, both runs and the files, and hides rulechef's prints."""
    folder, _, text = demo
    assert text.startswith("rulechef-trace demo: 150 examples of 5 labels from intents.jsonl\n")
    assert "LLM: offline stand-in (StandInLLM); set OPENAI_API_KEY to use a real model" in text
    assert "RULECHEF TRACE  intents  (learn, completed," in text
    assert "RULECHEF TRACE  intents  (rank_rules, completed," in text
    assert f"  {folder / 'intents.trace.json'}\n" in text
    assert f"  rulechef-trace lineage {folder / 'intents.trace.json'}\n" in text
    assert "✓" not in text and "Learning rules from" not in text  # rulechef's own prints


def test_the_stand_in_on_another_data_set(tmp_path: Path, topics: Path) -> None:
    """On data it was not written for, the stand-in learns rules per label, over 80 % F1."""
    traces = run_demo(tmp_path / "topics-run", data=topics, out=io.StringIO())
    learn, rank = traces
    assert learn.run["dataset"] == "topics" and learn.status == "completed"
    assert validate(learn) == [] and validate(rank) == []
    assert (learn.final_metrics or {})["f1"] >= 0.8
    assert learn.events_of("patch_decided")
    labels = {cm["label"] for cm in (learn.final_metrics or {})["per_class"]}
    assert labels == set(TOPICS)
    names = [learn.name_of(rid) for rid in learn.final_rules]
    assert {name.split("_")[0] for name in names} == set(TOPICS)


def test_the_stand_in_run_is_deterministic(tmp_path: Path, topics: Path) -> None:
    """Two demo runs on the same data tell the same story and end with the same rules."""

    def story(folder: Path) -> list[tuple[str, object]]:
        (learn, _) = run_demo(folder, data=topics, out=io.StringIO())
        return [(e["type"], e.get("outcome")) for e in learn.events] + [
            ("rule", learn.name_of(r)) for r in learn.final_rules
        ]

    assert story(tmp_path / "one") == story(tmp_path / "two")


def test_a_rerun_in_the_same_folder_adds_no_example_twice(tmp_path: Path, topics: Path) -> None:
    """A second demo in the same folder starts from the pruned rules and adds no example again."""
    run_demo(tmp_path, data=topics, out=io.StringIO())
    (ranked,) = sorted((tmp_path / "topics.traces").glob("*_rank_rules_*.trace.json"))
    second, _ = run_demo(tmp_path, data=topics, out=io.StringIO())
    assert second.events[0]["rules"] == load_trace(ranked).final_rules
    assert second.events_of("synthesized")[0]["data"]["examples"] == 36


def test_default_output_is_standard_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, topics: Path
) -> None:
    """Without ``out`` the demo prints to the standard output of the moment."""
    run_demo(tmp_path, data=topics)
    assert "36 examples of 3 labels from topics.jsonl" in capsys.readouterr().out


def test_a_real_endpoint_is_chosen_with_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OPENAI_API_KEY set the demo talks to the given OpenAI-compatible endpoint."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    choice = choose_llm("my-model", "http://127.0.0.1:9/v1")
    assert not choice.offline and choice.model == "my-model"
    assert choice.description == (
        "real OpenAI-compatible endpoint (http://127.0.0.1:9/v1), model my-model"
    )
    assert str(choice.client.base_url).startswith("http://127.0.0.1:9/v1")


def test_without_a_key_the_stand_in_is_used_and_base_url_ignored() -> None:
    """Without a key the stand-in answers, and the output says the base URL was ignored."""
    choice = choose_llm(None, "http://127.0.0.1:9/v1")
    assert choice.offline and type(choice.client).__name__ == "StandInLLM"
    assert "ignored without a key" in choice.description


def test_demo_data_defaults_and_errors(tmp_path: Path) -> None:
    """The packaged data has five labels; another file is named by its stem; a folder is refused."""
    packaged = demo_data()
    assert packaged.name == "intents" and len(packaged.labels) == 5
    assert packaged.description.startswith("Classify a bike-share customer support message")
    (tmp_path / "my data.v2.jsonl").write_text(
        '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'
    )
    assert demo_data(tmp_path / "my data.v2.jsonl").name == "my_data"
    with pytest.raises(DemoDataError, match="is a directory"):
        demo_data(tmp_path)
    assert DEFAULT_DIR == "rulechef-trace-demo"


def test_importing_the_package_imports_neither_demo_nor_stand_in() -> None:
    """``import rulechef_trace`` loads no module of the demo or the stand-in."""
    code = (
        "import sys, rulechef_trace\n"
        "print([m for m in sys.modules if m.startswith(('rulechef_trace.demo', "
        "'rulechef_trace.standin', 'rulechef_trace.cli'))])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_the_0_1_import_path_of_the_stand_in_still_works() -> None:
    """``rulechef_trace.standin`` hands out the very objects of their new homes."""
    from rulechef_trace import standin
    from rulechef_trace.demo import examples
    from rulechef_trace.demo import standin as new_home

    assert standin.StandInLLM is new_home.StandInLLM
    assert standin.detect_prompt_kind is new_home.detect_prompt_kind
    assert standin.load_examples is examples.load_examples
    assert standin.packaged_data_path() == examples.packaged_data_path()


def test_every_data_file_of_the_package_is_declared_package_data() -> None:
    """A non-editable install ships every non-Python file under src/rulechef_trace.

    setuptools copies only files matching ``[tool.setuptools.package-data]``;
    the tests run against the working tree, so a missing glob would go unseen.
    """
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["rulechef_trace"]
    package = root / "src" / "rulechef_trace"
    files = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert "demo/data/intents.jsonl" in files
    undeclared = [f for f in files if not any(fnmatch.fnmatchcase(f, g) for g in globs)]
    assert undeclared == []
