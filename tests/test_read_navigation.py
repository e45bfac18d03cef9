"""Moving between runs: show on folders and run-id prefixes, --json on every reading verb."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from rulechef_trace import Trace, record_trace
from rulechef_trace.cli import main
from tests.scripted import ScriptedLLM, make_chef


@dataclass
class Kept:
    storage: Path
    learn: Trace
    prune: Trace


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Kept:
    """One learning run, then a prune (the newest kept run is not a learning run)."""
    storage = tmp_path_factory.mktemp("nav")
    chef = make_chef(storage, ScriptedLLM(patch=[{"rules": []}]))
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.rank_rules(prune=True)
    learn, prune = recorder.traces
    return Kept(storage, learn, prune)


def shown_run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["show", *args, "--json"]) == 0
    return str(orjson.loads(capsys.readouterr().out)["run"]["id"])


def test_show_of_a_storage_folder_is_its_latest_learning_run(
    kept: Kept, capsys: pytest.CaptureFixture[str]
) -> None:
    """show STORAGE: the newest kept learning run, not the prune after it."""
    assert shown_run(capsys, str(kept.storage)) == kept.learn.run_id


def test_show_of_a_history_folder_is_its_newest_run(
    kept: Kept, capsys: pytest.CaptureFixture[str]
) -> None:
    """show <dataset>.traces: the newest kept run, whatever its kind."""
    assert shown_run(capsys, str(kept.storage / "reviews.traces")) == kept.prune.run_id


def test_show_run_prefix_picks_that_run(kept: Kept, capsys: pytest.CaptureFixture[str]) -> None:
    """--run with the first characters of an id shows that run."""
    assert shown_run(capsys, str(kept.storage), "--run", kept.prune.run_id[:6]) == kept.prune.run_id


def test_show_run_prefix_that_matches_nothing_is_bad_input(
    kept: Kept, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown prefix: one error line, exit status 2."""
    assert main(["show", str(kept.storage), "--run", "zzzz"]) == 2
    assert "no kept run with an id starting 'zzzz'" in capsys.readouterr().err


def test_show_run_on_a_file_is_bad_input(kept: Kept, capsys: pytest.CaptureFixture[str]) -> None:
    """--run needs a folder."""
    assert main(["show", str(kept.storage / "reviews.trace.json"), "--run", "ab"]) == 2
    assert "--run needs a storage or history folder" in capsys.readouterr().err


def test_history_json_lists_every_run_id(kept: Kept, capsys: pytest.CaptureFixture[str]) -> None:
    """history --json: one row per kept run with its full id and example count."""
    assert main(["history", str(kept.storage), "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)["rows"]
    assert [r["run_id"] for r in rows] == [kept.learn.run_id, kept.prune.run_id]
    assert rows[0]["examples"] == 12 and rows[1]["after"] == kept.learn.run_id


def test_history_text_shows_run_ids_at_twelve_characters(
    kept: Kept, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every history line leads to show --run: the run id at 12 characters."""
    assert main(["history", str(kept.storage)]) == 0
    out = capsys.readouterr().out
    assert kept.learn.run_id[:12] in out and kept.learn.run_id[:13] not in out


def test_diff_json(kept: Kept, capsys: pytest.CaptureFixture[str]) -> None:
    """diff --json: both summaries and the rule lists."""
    files = sorted(str(p) for p in (kept.storage / "reviews.traces").glob("*.trace.json"))
    assert main(["diff", *files, "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["a"]["run_id"] == kept.learn.run_id and data["b"]["kind"] == "rank_rules"
    assert data["changed"] == [] and data["a_path"] == files[0]


def test_validate_json_gives_one_verdict_per_file(
    kept: Kept, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate STORAGE --json: a verdict per trace file, all valid."""
    assert main(["validate", str(kept.storage), "--json"]) == 0
    verdicts = orjson.loads(capsys.readouterr().out)
    assert len(verdicts) == 3 and {v["verdict"] for v in verdicts} == {"valid"}


def test_validate_json_reports_an_invalid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid file is a verdict "invalid" with its problem; exit status 1."""
    bad = tmp_path / "x.trace.json"
    bad.write_text('{"format": "rulechef-trace", "version": 1}')
    assert main(["validate", str(bad), "--json"]) == 1
    (verdict,) = orjson.loads(capsys.readouterr().out)
    assert verdict["verdict"] == "invalid" and verdict["problem"]


def test_lineage_of_a_file_json(kept: Kept, capsys: pytest.CaptureFixture[str]) -> None:
    """lineage FILE --json: the lineage and the creating runs found beside the file."""
    assert main(["lineage", str(kept.storage / "reviews.trace.json"), "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert {item["rule_id"] for item in data["lineage"]} == set(kept.learn.final_rules)
    assert data["created_by"] == {}  # the learning run created them itself


def test_a_diff_of_a_rule_renamed_in_place_is_a_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two learning runs whose rules share names but not ids: listed as changed, not in both."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[{"rules": []}]))
    with record_trace(chef) as recorder:
        chef.learn_rules(max_refinement_iterations=1)
        chef.llm.script["patch"] = [{"rules": []}]
        chef.learn_rules(max_refinement_iterations=1)
    a, b = recorder.traces
    assert set(a.final_rules).isdisjoint(b.final_rules)
    files = sorted(str(p) for p in (tmp_path / "reviews.traces").glob("*.trace.json"))
    assert main(["diff", *files]) == 0
    out = capsys.readouterr().out
    assert "Rules changed (same name, new id) (2):" in out and "Rules in both (0):" in out
