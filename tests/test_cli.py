"""Every verb of rulechef-trace, through main(argv) and as the installed console script."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import load_trace
from rulechef_trace.cli import colourize, main
from tests.trace_factory import Traces, make_traces

ERROR = "rulechef-trace: error: "

# (file name, how to make it from a real trace's bytes, the problem reported)
BAD_INPUTS: list[tuple[str, Callable[[Path, bytes], object] | None, str]] = [
    ("missing.trace.json", None, "no such file"),
    ("folder.trace.json", lambda p, good: p.mkdir(), "is a directory, not a trace file"),
    ("empty.trace.json", lambda p, good: p.write_bytes(b""), "empty file"),
    (
        "cut.trace.json",
        lambda p, good: p.write_bytes(good[:120]),
        "not valid JSON (truncated or corrupt)",
    ),
    (
        "other.trace.json",
        lambda p, good: p.write_text('{"name": "not a trace"}'),
        'not a rulechef-trace file (no "format": "rulechef-trace")',
    ),
    (
        "newer.trace.json",
        lambda p, good: p.write_text(json.dumps({**json.loads(good), "version": 2})),
        "trace format version 2 is newer than this rulechef-trace reads (1)",
    ),
]
BAD_IDS = [name.split(".")[0] for name, _, _ in BAD_INPUTS]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Traces:
    return make_traces(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, traces: Traces) -> dict[str, tuple[Path, str]]:
    """Bad input files by id: (path, the problem the error line must name)."""
    folder = tmp_path_factory.mktemp("bad")
    good = traces.file_of(traces.story).read_bytes()
    made = {}
    for name, make, problem in BAD_INPUTS:
        path = folder / name
        if make is not None:
            make(path, good)
        made[name.split(".")[0]] = (path, problem)
    return made


@pytest.fixture(scope="module")
def script() -> Path:
    """The installed console script."""
    beside = Path(sys.executable).parent / "rulechef-trace"
    found = beside if beside.exists() else shutil.which("rulechef-trace")
    if not found:
        pytest.fail("the rulechef-trace console script is not installed: pip install -e .")
    return Path(found)


def run_script(script: Path, *args: str | Path, cwd: Path | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "NO_COLOR")}
    return subprocess.run(
        [str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, path: Path | str, problem: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"{ERROR}{path}: {problem}"), err
    assert "Traceback" not in err


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    return path


# --- show -------------------------------------------------------------------------


def test_show(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    code, out, err = run_main(capsys, "show", traces.file_of(traces.story))
    assert (code, err) == (0, "")
    assert "RULECHEF TRACE  reviews  (learn, completed," in out
    assert "patch 2 REJECTED" in out and "\x1b[" not in out


def test_show_of_a_stream_mid_run_says_it_is_still_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A .trace.jsonl without its finalized line is shown as running, never as final."""
    from rulechef_trace import record_trace
    from tests.scripted import FIX_ALL, ScriptedLLM, make_chef

    chef = make_chef(tmp_path, ScriptedLLM(patch=[FIX_ALL]))
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=2)
    stream = tmp_path / "reviews.trace.jsonl"
    lines = stream.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "running.trace.jsonl"
    cut.write_bytes(b"".join(lines[:-2]))
    code, out, err = run_main(capsys, "show", cut)
    assert (code, err) == (0, "")
    assert "RULECHEF TRACE  reviews  (learn, still running, or stopped before its end)" in out
    assert "Not finished: no finalized event" in out and "Rules so far: " in out
    assert "Final" not in out
    code, out, _ = run_main(capsys, "show", stream)
    assert code == 0 and "Final: " in out and "still running" not in out


def test_show_json_prints_the_normalised_trace(
    capsys: pytest.CaptureFixture[str], traces: Traces
) -> None:
    path = traces.file_of(traces.simple)
    code, out, _ = run_main(capsys, "show", path, "--json")
    assert code == 0
    assert json.loads(out) == json.loads(path.read_bytes())
    assert out.startswith('{\n  "format": "rulechef-trace",\n  "version": 1,')


# --- lineage ----------------------------------------------------------------------


def test_lineage_of_all_final_rules(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    code, out, _ = run_main(capsys, "lineage", traces.file_of(traces.story))
    assert code == 0
    assert "RULECHEF LINEAGE  reviews  (learn, completed, 3 rules)" in out
    assert "  pos all (" in out and "└ merged from pos more (" in out


def test_lineage_of_one_rule_by_name(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    code, out, _ = run_main(capsys, "lineage", traces.file_of(traces.story), "neg more")
    assert code == 0
    assert "(learn, completed, 1 rule)" in out
    patch = next(e for e in traces.story.events_of("patch_decided") if e["iteration"] == 3)
    assert f"#{patch['seq']}  added by the patch of iteration 3" in out


def test_lineage_of_an_unknown_rule(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    path = traces.file_of(traces.story)
    code, out, err = run_main(capsys, "lineage", path, "ghost")
    assert (code, out) == (2, "")
    assert_one_error_line(err, path, "no rule with id or name 'ghost' in this trace")


# --- diff and history -------------------------------------------------------------


def test_diff(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    a, b = traces.file_of(traces.story), traces.file_of(traces.simple)
    code, out, _ = run_main(capsys, "diff", a, b)
    assert code == 0
    assert f"  A  {a}" in out
    assert "  Rules only in B (2):\n    pos more, pos words\n" in out


def test_history(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    code, out, _ = run_main(capsys, "history", traces.storage)
    assert code == 0
    assert "(4 runs, 2 datasets)" in out
    assert out.count(" learn ") == 3 and out.count(" rank_rules ") == 1


def test_history_of_one_dataset(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    code, out, _ = run_main(capsys, "history", traces.storage, "--dataset", "restore")
    assert code == 0
    assert "(1 run, 1 dataset)" in out and "  reviews" not in out


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("missing",), "no such directory"),
        (("file",), "not a directory (history reads a storage folder)"),
        (("store", "--dataset", "nope"), "no runs of dataset 'nope' (datasets here: restore, "),
    ],
)
def test_history_bad_input(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    traces: Traces,
    args: tuple[str, ...],
    problem: str,
) -> None:
    (tmp_path / "file").write_text("x")
    where = {"missing": tmp_path / "missing", "file": tmp_path / "file", "store": traces.storage}
    code, out, err = run_main(capsys, "history", where[args[0]], *args[1:])
    assert (code, out) == (2, "")
    assert_one_error_line(err, where[args[0]], problem)


# --- validate ---------------------------------------------------------------------


def test_validate_valid_files(capsys: pytest.CaptureFixture[str], traces: Traces) -> None:
    paths = [traces.file_of(t) for t in (traces.story, traces.pruned)]
    code, out, err = run_main(capsys, "validate", *paths)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    events = len(traces.story.events)
    assert lines[0] == f"OK       {paths[0]}  (learn, completed, {events} events, 3 rules)"
    assert lines[1].startswith(f"OK       {paths[1]}  (rank_rules, completed, 3 events, ")


def test_validate_reports_a_broken_replay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, traces: Traces
) -> None:
    data = json.loads(traces.file_of(traces.story).read_bytes())
    data["final"]["rules"] = data["final"]["rules"][1:]
    broken = tmp_path / "broken.trace.json"
    broken.write_text(json.dumps(data))
    good = traces.file_of(traces.simple)
    code, out, _ = run_main(capsys, "validate", good, broken)
    assert code == 1
    first, second = out.splitlines()
    assert first.startswith("OK ")
    dropped = json.loads(traces.file_of(traces.story).read_bytes())["final"]["rules"][0]["id"]
    assert second == (
        f"INVALID  {broken}: replayed rules differ from final rules: only replayed [{dropped}]"
    )


@pytest.mark.parametrize("which", BAD_IDS)
def test_validate_bad_input(
    capsys: pytest.CaptureFixture[str], bad: dict[str, tuple[Path, str]], which: str
) -> None:
    path, problem = bad[which]
    code, out, err = run_main(capsys, "validate", path)
    if which in ("missing", "folder"):  # cannot be checked at all
        assert (code, out) == (2, "")
        assert_one_error_line(err, path, problem)
    else:  # checked, and not a valid v1 trace
        assert (code, err) == (1, "")
        assert out == f"INVALID  {path}: {problem}" + out[len(f"INVALID  {path}: {problem}") :]
        assert out.count("\n") == 1


# --- bad input for every verb that reads a trace ------------------------------------


@pytest.mark.parametrize("which", BAD_IDS)
@pytest.mark.parametrize("verb", ["show", "lineage", "diff"])
def test_bad_input_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
    bad: dict[str, tuple[Path, str]],
    traces: Traces,
    verb: str,
    which: str,
) -> None:
    path, problem = bad[which]
    args = [path] if verb != "diff" else [traces.file_of(traces.story), path]
    code, out, err = run_main(capsys, verb, *args)
    assert (code, out) == (2, "")
    assert_one_error_line(err, path, problem)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["show"]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: rulechef-trace" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "Start with: rulechef-trace demo" in capsys.readouterr().out


# --- html ---------------------------------------------------------------------------


@pytest.fixture
def fake_html(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str | None]]:
    calls: list[tuple[Path, str | None]] = []

    def write_html(source: Path, output: str | None) -> Path:
        calls.append((source, output))
        target = Path(output) if output else source.with_suffix(".html")
        target.write_text("<html></html>")
        return target

    module = types.ModuleType("rulechef_trace.report.html")
    module.write_html = write_html  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rulechef_trace.report.html", module)
    return calls


def test_html_delegates_to_write_html(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    traces: Traces,
    fake_html: list[tuple[Path, str | None]],
) -> None:
    path = traces.file_of(traces.story)
    out_file = tmp_path / "report.html"
    code, out, _ = run_main(capsys, "html", path, "-o", out_file)
    assert code == 0 and out == f"wrote {out_file}\n"
    assert fake_html == [(path, str(out_file))]
    code, _, _ = run_main(capsys, "html", traces.storage)
    assert code == 0 and fake_html[-1] == (traces.storage, None)


def test_html_of_a_missing_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fake_html: list[Any]
) -> None:
    code, _, err = run_main(capsys, "html", tmp_path / "nope.trace.json")
    assert code == 2 and fake_html == []
    assert_one_error_line(err, tmp_path / "nope.trace.json", "no such file or directory")


def test_html_without_the_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, traces: Traces
) -> None:
    monkeypatch.setitem(sys.modules, "rulechef_trace.report.html", None)
    code, _, err = run_main(capsys, "html", traces.file_of(traces.story))
    assert code == 2
    assert (
        err == f"{ERROR}the HTML report is not available in this installation "
        "(rulechef_trace.report.html is missing)\n"
    )


# --- demo through main ----------------------------------------------------------------


def test_demo_on_other_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    kinds = {"animal": ["cat", "dog", "horse", "goat"], "vehicle": ["car", "bus", "van", "tram"]}
    rows = [
        (f"the {w} is {s}", c)
        for c, words in kinds.items()
        for w in words
        for s in ("here", "outside", "late")
    ]
    data = write_jsonl(tmp_path / "things.jsonl", rows)
    code, out, err = run_main(capsys, "demo", "--dir", tmp_path / "out", "--data", data)
    assert code == 0, err
    assert "24 examples of 2 labels from things.jsonl" in out
    assert "LLM: offline stand-in" in out
    assert load_trace(tmp_path / "out" / "things.trace.json").status == "completed"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("", "no examples (empty file)"),
        (
            '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n',
            "needs at least two labels, found 1",
        ),
        ('{"text": "a", "label": "x"}\n{"text": "b"\n', "line 2: not valid JSON"),
        ('{"text": "a"}\n', "line 1: "),
    ],
)
def test_demo_bad_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, problem: str
) -> None:
    data = tmp_path / "data.jsonl"
    if content is not None:
        data.write_text(content)
    code, out, err = run_main(capsys, "demo", "--dir", tmp_path / "out", "--data", data)
    assert code == 2 and out == ""
    assert_one_error_line(err, data, problem)


def test_demo_into_a_file_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    code, out, err = run_main(capsys, "demo", "--dir", target)
    assert (code, out) == (2, "")
    assert_one_error_line(err, target, "is a file; --dir needs a folder")


def test_a_failing_demo_run_prints_its_trace_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rulechef.engine import RuleChef

    def rank_rules(
        self: Any, verbose: bool = True, compute_marginal: bool = True, prune: bool = False
    ) -> Any:
        raise RuntimeError("ranking exploded")

    monkeypatch.setattr(RuleChef, "rank_rules", rank_rules)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rows = [
        (f"{w} {s}", c)
        for c, words in {"a": ["apple", "apricot"], "b": ["banana", "berry"]}.items()
        for w in words
        for s in ("one", "two", "three")
    ]
    data = write_jsonl(tmp_path / "fruit.jsonl", rows)
    code, out, err = run_main(capsys, "demo", "--dir", tmp_path / "out", "--data", data)
    assert code == 1
    assert err == f"{ERROR}demo run failed: RuntimeError: ranking exploded\n"
    assert "RULECHEF TRACE  fruit  (learn, completed," in out
    assert "RULECHEF TRACE  fruit  (rank_rules, failed," in out
    assert "Error: RuntimeError: ranking exploded" in out


# --- colour ---------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, traces: Traces
) -> None:
    path = traces.file_of(traces.story)
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["show", str(path)]) == 0
    text = terminal.getvalue()
    assert "\x1b[1mRULECHEF TRACE" in text
    assert "\x1b[32mACCEPTED\x1b[0m" in text and "\x1b[31mREJECTED\x1b[0m" in text

    monkeypatch.setenv("NO_COLOR", "1")
    plain = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", plain)
    assert main(["show", str(path)]) == 0
    assert "\x1b[" not in plain.getvalue()


def test_demo_output_is_coloured_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rows = [
        (f"{w} {s}", c)
        for c, words in {"a": ["apple", "apricot"], "b": ["banana", "berry"]}.items()
        for w in words
        for s in ("one", "two", "three")
    ]
    data = write_jsonl(tmp_path / "fruit.jsonl", rows)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["demo", "--dir", str(tmp_path / "out"), "--data", str(data)]) == 0
    assert "\x1b[1mRULECHEF TRACE  fruit  (learn, completed," in terminal.getvalue()


def test_colourize_verdicts() -> None:
    assert colourize("OK       a.json\nINVALID  b.json: x\n") == (
        "\x1b[32mOK\x1b[0m       a.json\n\x1b[31mINVALID\x1b[0m  b.json: x\n"
    )
    assert colourize("no verdict OK here\n") == "no verdict OK here\n"


# --- the installed console script -------------------------------------------------------


def test_script_show_lineage_diff_history_validate(script: Path, traces: Traces) -> None:
    story, simple = traces.file_of(traces.story), traces.file_of(traces.simple)
    for args, expected in [
        (("show", story), "RULECHEF TRACE  reviews"),
        (("show", story, "--json"), '"format": "rulechef-trace"'),
        (("lineage", story, "pos all"), "merged from pos words ("),
        (("diff", story, simple), "RULECHEF DIFF"),
        (("history", traces.storage), "RULECHEF HISTORY"),
        (("validate", story, simple), f"OK       {simple}"),
    ]:
        done = run_script(script, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert expected in done.stdout and done.stderr == ""
        assert "\x1b[" not in done.stdout


@pytest.mark.parametrize("which", BAD_IDS)
def test_script_bad_input(script: Path, bad: dict[str, tuple[Path, str]], which: str) -> None:
    path, problem = bad[which]
    done = run_script(script, "show", path)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_error_line(done.stderr, path, problem)


def test_script_unknown_rule_and_invalid_file(
    script: Path, bad: dict[str, tuple[Path, str]], traces: Traces
) -> None:
    story = traces.file_of(traces.story)
    done = run_script(script, "lineage", story, "ghost")
    assert done.returncode == 2
    assert_one_error_line(done.stderr, story, "no rule with id or name 'ghost' in this trace")
    done = run_script(script, "validate", story, bad["cut"][0])
    assert done.returncode == 1 and done.stdout.splitlines()[1].startswith("INVALID  ")


def test_script_demo(script: Path, tmp_path: Path) -> None:
    done = run_script(script, "demo", "--dir", "demo-out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "LLM: offline stand-in" in done.stdout
    assert "RULECHEF TRACE  intents  (learn, completed," in done.stdout
    assert "RULECHEF TRACE  intents  (rank_rules, completed," in done.stdout
    assert f"  {Path('demo-out') / 'intents.trace.json'}" in done.stdout
    assert load_trace(tmp_path / "demo-out" / "intents.trace.json").status == "completed"


def test_script_html(script: Path, tmp_path: Path, traces: Traces) -> None:
    import importlib.util

    if importlib.util.find_spec("rulechef_trace.report.html") is None:
        pytest.skip("rulechef_trace.report.html is not part of this checkout yet")
    out_file = tmp_path / "report.html"
    done = run_script(script, "html", traces.file_of(traces.story), "-o", out_file)
    assert done.returncode == 0, done.stderr
    assert out_file.exists() and done.stdout == f"wrote {out_file}\n"


def test_python_dash_m(traces: Traces) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rulechef_trace", "validate", str(traces.file_of(traces.story))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("OK ")
    version = subprocess.run(
        [sys.executable, "-m", "rulechef_trace", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.stdout.strip().startswith("rulechef-trace ")
