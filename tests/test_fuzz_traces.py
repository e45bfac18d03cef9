"""Bad trace input, fuzzed: only TraceError comes out, never a crash or a hang."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rulechef_trace import Trace, TraceError, load_trace, record_trace, render_trace, validate
from tests.scripted import BREAK, FIX_ALL, ScriptedLLM, audit_merge, make_chef

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("real")
    llm = ScriptedLLM(
        patch=[BREAK, FIX_ALL], audit=[audit_merge(["pos words", "pos more"], "all", "good")]
    )
    chef = make_chef(folder, llm, "agentic")
    with record_trace(chef, stream=True):
        chef.learn_rules(max_refinement_iterations=3)
    return {
        "json": (folder / "reviews.trace.json").read_bytes(),
        "jsonl": (folder / "reviews.trace.jsonl").read_bytes(),
    }


def load_or_error(path: Path) -> Trace | None:
    """Load a file; a TraceError is the only acceptable failure."""
    try:
        trace = load_trace(path)
    except TraceError as exc:
        assert str(path) in str(exc)
        return None
    render_trace(trace)  # a loadable trace always renders
    return trace


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_give_a_trace_error(tmp_path, data):
    for suffix in (".trace.json", ".trace.jsonl"):
        path = tmp_path / f"random{suffix}"
        path.write_bytes(data)
        assert load_or_error(path) is None


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**6), which=st.sampled_from(["json", "jsonl"]))
def test_truncated_traces_give_a_trace_error_or_an_incomplete_trace(tmp_path, real, cut, which):
    data = real[which][: cut % len(real[which])]
    path = tmp_path / f"cut.trace.{which}"
    path.write_bytes(data)
    trace = load_or_error(path)
    if trace is not None:
        assert which == "jsonl" and trace.status == "incomplete"


def mutate(obj: Any, path: list[Any], value: Any) -> Any:
    """Replace the value at a path of keys/indexes (best effort) by ``value``."""
    target = obj
    for step in path[:-1]:
        if isinstance(target, dict) and target:
            target = target[list(target)[step % len(target)]]
        elif isinstance(target, list) and target:
            target = target[step % len(target)]
        else:
            return obj
    if isinstance(target, dict) and target:
        target[list(target)[path[-1] % len(target)]] = value
    elif isinstance(target, list) and target:
        target[path[-1] % len(target)] = value
    return obj


@FUZZ
@given(path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=5), value=JSON)
def test_wrong_types_anywhere_give_a_trace_error_or_a_valid_trace(tmp_path, real, path, value):
    broken = mutate(orjson.loads(real["json"]), path, value)
    file = tmp_path / "mutated.trace.json"
    file.write_bytes(orjson.dumps(broken))
    trace = load_or_error(file)
    if trace is not None:
        assert validate(trace) == []


@FUZZ
@given(value=JSON)
def test_validate_never_raises(value):
    problems = validate(value)
    assert isinstance(problems, list) and problems


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,
        b'{"format": "rulechef-trace", "version": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"format": "rulechef-trace", "version": 1e999}',
        b'{"format": "rulechef-trace", "version": 123456789012345678901234567890}',
        b'{"format": "rulechef-trace", "version": 1, "run": {"status": "completed"}, '
        b'"events": [{"type": "run_started", "seq": 1e308}], "final": {"rules": []}}',
        '{"format": "rulechef-trace", "version": 1, "run": "\udcff"}'.encode(
            "utf-8", "surrogatepass"
        ),
        b"\x00\x01\x02",
    ],
)
def test_hostile_documents_give_a_trace_error(tmp_path, content):
    path = tmp_path / "hostile.trace.json"
    path.write_bytes(content)
    with pytest.raises(TraceError):
        load_trace(path)


def test_duplicate_missing_and_unknown_events(tmp_path, real):
    base = orjson.loads(real["json"])
    duplicate = copy.deepcopy(base)
    duplicate["events"].insert(2, copy.deepcopy(duplicate["events"][2]))
    missing_start = copy.deepcopy(base)
    del missing_start["events"][0]
    unknown = copy.deepcopy(base)
    unknown["events"][3]["type"] = "from_the_future"
    for name, doc in [("dup", duplicate), ("nostart", missing_start)]:
        path = tmp_path / f"{name}.trace.json"
        path.write_bytes(orjson.dumps(doc))
        with pytest.raises(TraceError):
            load_trace(path)
    path = tmp_path / "unknown.trace.json"
    path.write_bytes(orjson.dumps(unknown))
    assert "from_the_future (unknown event type)" in render_trace(load_trace(path))


def test_stream_with_broken_middle_line_is_an_error(tmp_path, real):
    lines = real["jsonl"].splitlines()
    lines[3] = b'{"type": "synth'
    path = tmp_path / "broken.trace.jsonl"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(TraceError, match="line 4 is not valid JSON"):
        load_trace(path)
    out = io.StringIO()
    assert out.getvalue() == ""


CLI_FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@CLI_FUZZ
@given(
    data=st.one_of(st.binary(max_size=200), st.builds(lambda n: b"[" * n, st.integers(1, 50_000))),
    verb=st.sampled_from(["show", "show --json", "lineage", "diff", "validate", "html"]),
)
def test_every_cli_verb_turns_bad_bytes_into_one_line_and_status_2(tmp_path, capsys, data, verb):
    from rulechef_trace.cli import main

    path = tmp_path / "fuzz.trace.json"
    path.write_bytes(data)
    words = verb.split()
    argv = [*words, str(path)] + ([str(path)] if words[0] == "diff" else [])
    if words[0] == "html":
        argv += ["-o", str(tmp_path / "out.html")]
    status = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if words[0] == "validate":
        assert status in (1, 2) and str(path) in out + err
        return
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("rulechef-trace: error: ")
    assert str(path) in err


@CLI_FUZZ
@given(data=st.binary(max_size=200))
def test_history_skips_bad_files_with_a_note_and_demo_rejects_bad_data(tmp_path, capsys, data):
    from rulechef_trace.cli import main

    history = tmp_path / "store" / "d.traces"
    history.mkdir(parents=True, exist_ok=True)
    (history / "20261121T000000000Z_learn_bad.trace.json").write_bytes(data)
    status = main(["history", str(tmp_path / "store")])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert status in (0, 2)
    if status == 0:
        assert "note:" in out + err
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(data + b"\n{")
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--data", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("rulechef-trace: error: ")
