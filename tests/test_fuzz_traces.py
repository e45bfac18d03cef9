"""Bad trace input, fuzzed: only TraceError comes out, never a crash or a hang."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rulechef_trace import Trace, TraceError, load_trace, record_trace, render_trace, validate
from tests.demo_traces import DemoTraces, demo_traces
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


# --- every reading verb on mutated traces that validate() accepts ---------------------

# Keys the readers (story, lineage, diff, history, HTML, live, follow) look up somewhere.
READER_KEYS = sorted(
    {
        *("type", "seq", "t", "kind", "dataset", "task", "task_type", "started_at", "ended_at"),
        *("duration_s", "status", "error", "message", "rulechef_version", "params"),
        *("coordinator", "class", "storage_path", "stats", "hook_errors", "receiver_errors"),
        *("rules", "added", "removed", "rules_after", "rule_names", "mode", "count", "data"),
        *("examples", "corrections", "feedback", "per_label", "iteration", "max_iterations"),
        *("rule_count", "metrics", "f1", "precision", "recall", "exact_match", "docs"),
        *("failures", "per_class", "label", "tp", "fp", "fn", "returned", "task_guidance"),
        *("rules_with_feedback", "should_continue", "guidance_chars", "outcome", "accepted"),
        *("on_dev", "metrics_before", "metrics_after", "proposed", "patch", "replaced", "old"),
        *("new", "deleted", "collapsed", "deduped", "deleted_names", "stage", "actions"),
        *("action", "sources", "result", "name", "skipped", "why", "reverted", "reason"),
        *("marginal_f1", "iterations", "stop_reason", "kept_seq", "kept_iteration"),
        *("kept_earlier", "discarded", "llm", "usage", "cost", "input_tokens", "output_tokens"),
        "id",
    }
)
# One value of each JSON type (a type change), then values readers trip on.
BY_TYPE: dict[str, Any] = {
    "string": "x",
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "null": None,
    "array": ["x"],
    "object": {"x": 1},
}
ODD_VALUES = st.sampled_from(
    [
        *BY_TYPE.values(),
        *("", "\x1b[2J\u202e", "N" * 300, 0, -1, 2**63 - 1, -0.0, 1e300, False),
        *([], [1], [None], [{}], [["x"]], {}, {"x": None}, {"f1": "x"}),
    ]
)
READING_VERBS = [
    "show",
    "show --json",
    "show --follow",
    "lineage",
    "diff",
    "history",
    "html",
    "html DIR",
    "validate",
    "validate DIR",
]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    names = {str: "string", float: "number", type(None): "null", list: "array", dict: "object"}
    return names[type(value)]


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _objects(docs: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """One (document, path) per kind of object in the traces (per event type; items alike)."""
    found: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}

    def walk(name: str, value: Any, path: tuple[Any, ...], kind: tuple[Any, ...]) -> None:
        if isinstance(value, dict):
            found.setdefault(kind, (name, path))
            for key, item in value.items():
                walk(name, item, (*path, key), (*kind, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                tag = item.get("type") if kind == ("events",) and isinstance(item, dict) else "*"
                walk(name, item, (*path, index), (*kind, tag))

    for name, doc in docs.items():
        walk(name, doc, (), ())
    return list(found.values())


# The verbs that read the most (HTML: lineage, every describer, charts) and the rest.
_BROAD = "html"
_RICH = ["show", "show --follow", "diff", "history", "lineage"]
_THIN = ["show --json", "validate", "validate DIR", "html DIR"]


class _Mutations:
    """The demo's traces, and every single-field type change of them that validate() accepts."""

    def __init__(self, found: DemoTraces):
        docs = found.documents()
        self.docs = {"learn": docs["history/learn"], "rank": docs["history/rank_rules"]}
        self.spots = _objects(self.docs)
        self.accepted: list[tuple[str, tuple[Any, ...], str, str]] = []
        for name, path in self.spots:
            target = _at(self.docs[name], path)
            for key in [k for k in target if k in READER_KEYS]:
                original = target[key]
                for kind, value in BY_TYPE.items():
                    target[key] = value  # in place, put back below: no copy per candidate
                    if kind != _json_type(original) and validate(self.docs[name]) == []:
                        self.accepted.append((name, path, key, kind))
                target[key] = original

    def __repr__(self) -> str:  # hypothesis prints its arguments
        return "<the demo's traces>"

    def doc(self, name: str, path: tuple[Any, ...], key: str, value: Any) -> dict[str, Any]:
        """A copy of one demo trace with one key of one object set to ``value``."""
        doc: dict[str, Any] = copy.deepcopy(self.docs[name])
        _at(doc, path)[key] = copy.deepcopy(value)
        return doc

    def share(self, verb: str) -> list[tuple[str, tuple[Any, ...], str, str]]:
        """This verb's deterministic share of the accepted type changes.

        Every field goes to the HTML report (it reads the most), to one of the
        other story readers and to one of the thin verbs, in turn; each time
        the next of the field's type changes. A bounded run that still puts
        every field through three verbs and every verb through many fields.
        """
        by_field: dict[tuple[Any, ...], list[tuple[str, tuple[Any, ...], str, str]]] = {}
        for change in self.accepted:
            by_field.setdefault(change[:3], []).append(change)
        share = []
        for turn, changes in enumerate(by_field.values()):
            verbs = [_BROAD, _RICH[turn % len(_RICH)], _THIN[turn % len(_THIN)]]
            if verb in verbs:
                share.append(changes[(turn + verbs.index(verb)) % len(changes)])
        return share


@pytest.fixture(scope="module")
def mutations(tmp_path_factory: pytest.TempPathFactory) -> _Mutations:
    return _Mutations(demo_traces(tmp_path_factory))


def _run_verb(verb: str, doc: dict[str, Any], folder: Path, original: Path) -> tuple[int, str]:
    """Run one verb on the mutated trace, in-process; return its status and all output."""
    from rulechef_trace.cli import main

    path = folder / "m.trace.json"
    path.write_bytes(orjson.dumps(doc))
    store = folder / "store"
    kept = store / "d.traces" / "20260101T000000000Z_learn_aaaaaaaa.trace.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(orjson.dumps(doc))
    stream = folder / "m.trace.jsonl"
    head = orjson.dumps({"format": "rulechef-trace", "version": 1, "stream": True})
    rows = [orjson.dumps({**e, "run_id": doc["run"]["id"]}) for e in doc["events"]]
    stream.write_bytes(b"\n".join([head, *rows]) + b"\n")
    argv = {
        "show": ["show", str(path)],
        "show --json": ["show", "--json", str(path)],
        "show --follow": ["show", "--follow", str(stream)],
        "lineage": ["lineage", str(path)],
        "diff": ["diff", str(original), str(path)],
        "history": ["history", str(store)],
        "html": ["html", str(path), "-o", str(folder / "o.html")],
        "html DIR": ["html", str(store), "-o", str(folder / "h.html")],
        "validate": ["validate", str(path)],
        "validate DIR": ["validate", str(store)],
    }[verb]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue() + err.getvalue()


def test_the_type_change_sweep_reaches_every_event_type(mutations: _Mutations) -> None:
    """The accepted changes cover keys of each event type and of the run header."""
    touched = {
        _at(mutations.docs[name], path[:2]).get("type") if path[:1] == ("events",) else path[:1]
        for name, path, _, _ in mutations.accepted
    }
    assert {"run_started", "patch_decided", "audit_applied", "pruned", "finalized"} <= touched
    assert ("run",) in touched and len(mutations.accepted) > 100


@pytest.mark.parametrize("verb", READING_VERBS)
def test_every_reading_verb_reads_every_type_change_validate_accepts(
    verb: str, mutations: _Mutations, tmp_path: Path
) -> None:
    """Targeted: each field of each kind of object set to another JSON type that validate()
    accepts; every verb that reads traces exits 0 on it, with no traceback."""
    original = tmp_path / "original.trace.json"
    original.write_bytes(orjson.dumps(mutations.docs["learn"]))
    failures = []
    for name, path, key, kind in mutations.share(verb):
        status, output = _run_verb(
            verb, mutations.doc(name, path, key, BY_TYPE[kind]), tmp_path, original
        )
        if status != 0 or "Traceback" in output:
            failures.append(f"{name} {path} {key}={kind}: status {status}: {output[-200:]}")
    assert failures == []


VERB_FUZZ = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)


@st.composite
def accepted_mutation(draw: st.DrawFn, mutations: _Mutations) -> dict[str, Any]:
    """A demo trace with a key of an object (its own or any a reader looks up) set to an odd
    value, that validate() accepts."""
    name, path = draw(st.sampled_from(mutations.spots))
    own = sorted(_at(mutations.docs[name], path))
    key = draw(st.sampled_from(READER_KEYS) | (st.sampled_from(own) if own else st.nothing()))
    doc = mutations.doc(name, path, key, draw(ODD_VALUES | JSON))
    assume(validate(doc) == [])
    return doc


@pytest.mark.parametrize("verb", READING_VERBS)
def test_every_reading_verb_reads_odd_values_validate_accepts(
    verb: str, mutations: _Mutations, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Random: any reader key (present or not) of any object set to an odd or random JSON
    value that validate() accepts; every verb exits 0, no traceback (bounded examples)."""
    folder = tmp_path_factory.mktemp("verb")
    original = folder / "original.trace.json"
    original.write_bytes(orjson.dumps(mutations.docs["learn"]))

    @VERB_FUZZ
    @given(doc=accepted_mutation(mutations))
    def check(doc: dict[str, Any]) -> None:
        status, output = _run_verb(verb, doc, folder, original)
        assert "Traceback" not in output
        assert status == 0, output[-300:]

    check()
