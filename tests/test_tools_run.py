"""rulechef-trace run -- COMMAND: a program that never imports rulechef_trace leaves traces."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from rulechef_trace import load_trace, validate

# A program of a user's: rulechef with its own (fake) OpenAI-compatible client.
PROGRAM = textwrap.dedent(
    """
    import json, sys
    from types import SimpleNamespace
    from rulechef import RuleChef, Task, TaskType

    def create(**kwargs):
        prompt = kwargs["messages"][-1]["content"]
        rules = []
        if "FOCUS: Generate rules for class '" in prompt:
            label = prompt.split("FOCUS: Generate rules for class '")[1].split("'")[0]
            words = "good|great" if label == "pos" else "bad|awful"
            rules = [{"name": label + " words", "format": "regex",
                      "pattern": "(?i)\\\\b(" + words + ")\\\\b",
                      "output_template": {"label": label}, "output_key": "label"}]
        content = json.dumps({"rules": rules})
        choice = SimpleNamespace(message=SimpleNamespace(content=content), finish_reason="stop")
        return SimpleNamespace(choices=[choice], model="fake", usage=None)

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    task = Task(name="sentiment", description="pos or neg", input_schema={"text": "str"},
                output_schema={"label": "str"}, type=TaskType.CLASSIFICATION)
    chef = RuleChef(task=task, client=client, dataset_name="reviews", storage_path=sys.argv[1])
    for text, label in [("good day", "pos"), ("great stuff", "pos"),
                        ("bad day", "neg"), ("awful mess", "neg")]:
        chef.buffer.add_human_example({"text": text}, {"label": label})
    chef.learn_rules(max_refinement_iterations=1)
    sys.exit(int(sys.argv[2]))
    """
)


def run(
    tmp_path: Path, *args: str, status: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "learn.py"
    script.write_text(PROGRAM, encoding="utf-8")
    command = [sys.executable, "-m", "rulechef_trace", "run", *args, "--"]
    command += [sys.executable, str(script), str(tmp_path / "store"), str(status)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_a_program_run_under_rulechef_trace_run_leaves_its_trace(tmp_path: Path) -> None:
    """The script imports rulechef only; its learning run is in the storage folder."""
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sitecustomize" not in done.stderr
    trace = load_trace(tmp_path / "store" / "reviews.trace.json")
    assert validate(trace) == []
    assert trace.kind == "learn" and trace.status == "completed"
    assert len(trace.final_rules) == 2
    assert "import rulechef_trace" not in PROGRAM


def test_the_programs_exit_status_is_passed_through(tmp_path: Path) -> None:
    """A program ending with status 3 makes rulechef-trace run end with 3, trace kept."""
    done = run(tmp_path, status=3)
    assert done.returncode == 3
    assert (tmp_path / "store" / "reviews.trace.json").is_file()


def test_stream_and_storage_options_reach_the_program(tmp_path: Path) -> None:
    """--storage and --stream: the trace and its stream land where asked."""
    elsewhere = tmp_path / "traces"
    done = run(tmp_path, "--storage", str(elsewhere), "--stream")
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "reviews.trace.json").is_file()
    assert (elsewhere / "reviews.trace.jsonl").is_file()
    assert not (tmp_path / "store" / "reviews.trace.json").exists()


def test_a_missing_program_is_one_line_and_status_2(tmp_path: Path) -> None:
    """rulechef-trace run -- no-such-program: a clear error, nothing traced."""
    command = [sys.executable, "-m", "rulechef_trace", "run", "--", "no-such-program-xyz"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rulechef-trace: error: no such program: no-such-program-xyz"
    ]


def test_the_programs_own_sitecustomize_still_runs(tmp_path: Path) -> None:
    """A sitecustomize the program had on PYTHONPATH is handed over to, after the recorder."""
    import os

    own = tmp_path / "own"
    own.mkdir()
    marker = tmp_path / "ran.txt"
    (own / "sitecustomize.py").write_text(
        f"open({str(marker)!r}, 'w').write('yes')\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(own)}
    done = run(tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "yes"
    assert (tmp_path / "store" / "reviews.trace.json").is_file()


def test_a_sigterm_to_the_wrapper_is_passed_on_to_the_program(tmp_path: Path) -> None:
    """kill rulechef-trace run: the program gets the SIGTERM, and its exit status comes back."""
    import signal

    program = tmp_path / "waits.py"
    program.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n",
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "rulechef_trace", "run", "--", sys.executable, str(program)]
    wrapper = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert wrapper.stdout is not None and wrapper.stdout.readline() == "ready\n"
        wrapper.send_signal(signal.SIGTERM)  # to the wrapper alone, not its process group
        assert wrapper.wait(timeout=20) == 7
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
