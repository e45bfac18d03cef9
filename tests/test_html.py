"""The HTML report: structure (parsed), escaping, self-containment, and one real browser."""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from rulechef_trace import Trace, TraceError, load_trace, record_trace
from rulechef_trace.html import render_html, write_html
from tests.scripted import (
    BREAK,
    FIX_ALL,
    FIX_NEG,
    FIX_POS,
    ScriptedLLM,
    StopAfterCoordinator,
    audit_merge,
    make_chef,
    rule,
    target_class,
)

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


class Page(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.doctype = ""
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def find(self, tag: str, css: str | None = None) -> list[dict[str, str]]:
        """Attributes of every ``tag`` whose class list holds ``css``."""
        return [
            a
            for t, a in self.tags
            if t == tag and (css is None or css in a.get("class", "").split())
        ]


def quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call rulechef without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def merge(names: list[str], merged: str, words: str) -> Any:
    return audit_merge(names, merged, words)


def rich_run(folder: Path) -> tuple[Trace, Path]:
    """A demo-like run: accepted, rejected and empty patches, two audit merges, five iterations."""
    llm = ScriptedLLM(
        patch=[FIX_POS, BREAK, {"rules": []}, FIX_NEG],
        audit=[
            merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely"),
            {"actions": []},
            merge(["neg words", "neg more"], "neg all", "bad|awful|terrible|horrible"),
        ],
    )
    chef = make_chef(folder, llm, "agentic")
    with record_trace(chef, strict=True) as recorder:
        quiet(chef.learn_rules, max_refinement_iterations=6)
    return recorder.traces[0], folder / "reviews.trace.json"


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, Path]:
    return rich_run(tmp_path_factory.mktemp("rich"))


@pytest.fixture(scope="module")
def rich_page(rich: tuple[Trace, Path]) -> tuple[str, Page]:
    document = render_html(rich[1])
    return document, Page(document)


# --- structure ----------------------------------------------------------------


def polyline_points(attrs: dict[str, str]) -> list[str]:
    return attrs["points"].split()


def test_iteration_chart_has_a_point_per_iteration(rich, rich_page):
    trace, _ = rich
    _, page = rich_page
    iterations = trace.events_of("iteration_evaluated")
    assert len(iterations) == 5
    (f1,) = page.find("polyline", "f1")
    (precision,) = page.find("polyline", "precision")
    assert len(polyline_points(f1)) == len(polyline_points(precision)) == len(iterations)


def test_patches_and_audits_are_marked(rich, rich_page):
    trace, _ = rich
    _, page = rich_page
    outcomes = [e["outcome"] for e in trace.events_of("patch_decided")]
    assert outcomes == ["accepted", "rejected", "empty", "accepted"]
    assert len(page.find("circle", "accepted")) == 2
    assert len(page.find("path", "rejected")) == 1
    assert len(page.find("circle", "empty")) == 1
    # Two mid-refinement audits; only the one that proposed something is marked.
    assert len(page.find("path", "audit")) == 1


def test_rule_counts_steps_and_lineage(rich, rich_page):
    trace, _ = rich
    _, page = rich_page
    assert page.doctype.lower() == "doctype html"
    assert len(page.find("svg")) == 2
    assert len(page.find("rect", "bar")) == len(trace.events)
    step_rows = [a for t, a in page.tags if t == "tr" and "class" in a]
    assert len(step_rows) == len(trace.events)
    assert [a["class"] for a in step_rows if a["class"]] == [
        "accepted",
        "rejected",
        "empty",
        "accepted",
    ]
    rules = page.find("details", "rule")
    assert len(rules) == len(trace.final_rules) == 2
    text = "".join(page.text)
    assert "pos all" in text and "merged from" in text and "neg more" in text
    assert "mid-refinement audit: 1 applied" in text
    assert "RULECHEF TRACE" in text and "completed" in text


def test_page_is_self_contained(rich_page):
    document, page = rich_page
    assert "http://" not in document and "https://" not in document
    assert not [t for t, _ in page.tags if t in {"script", "link", "img", "iframe", "object"}]
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    (csp,) = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert csp["content"].startswith("default-src 'none'")


def test_rule_names_from_the_llm_are_escaped(tmp_path):
    def synthesize(prompt: str) -> dict[str, Any]:
        label = target_class(prompt)
        if label == "pos":
            return {"rules": [rule(EVIL, "good|great", "pos")]}
        return {"rules": [rule("neg words", "bad|awful", "neg")]}

    llm = ScriptedLLM(per_class=synthesize, patch=[FIX_ALL])
    chef = make_chef(tmp_path, llm)
    with record_trace(chef) as recorder:
        quiet(chef.learn_rules, max_refinement_iterations=2)
    document = render_html(recorder.traces[0])
    page = Page(document)
    assert EVIL not in document
    assert not [t for t, _ in page.tags if t in {"script", "img"}]
    assert any(EVIL in chunk for chunk in page.text)


# --- edge cases ----------------------------------------------------------------


def test_run_without_iterations_says_so(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        quiet(chef.learn_rules, run_evaluation=False)
    page = Page(render_html(recorder.traces[0]))
    assert page.find("polyline", "f1") == []
    assert "No refinement iteration was evaluated" in "".join(page.text)


def test_failed_run_shows_its_error(tmp_path):
    class Boom(StopAfterCoordinator):
        def guide_refinement(self, eval_result: Any, iteration: int, max_iterations: int) -> tuple:
            raise LookupError("coordinator <lost> its notes")

    chef = make_chef(tmp_path, ScriptedLLM(), Boom())
    with record_trace(chef) as recorder, pytest.raises(LookupError):
        quiet(chef.learn_rules, max_refinement_iterations=2)
    document = render_html(recorder.traces[0])
    page = Page(document)
    assert len(page.find("p", "error")) == 1
    assert "coordinator <lost> its notes" in "".join(page.text)
    assert "<lost>" not in document
    assert page.find("span", "failed")


def test_write_html_defaults_next_to_the_trace(rich, tmp_path):
    trace, path = rich
    written = write_html(path)
    assert written == path.with_name("reviews.trace.html") and written.read_text().startswith(
        "<!DOCTYPE html>"
    )
    chosen = write_html(trace, tmp_path / "out" / "report.html")
    assert chosen.is_file()
    with pytest.raises(ValueError, match="needs an output path"):
        write_html(trace)


def test_unreadable_sources_raise_trace_errors(tmp_path):
    bad = tmp_path / "bad.trace.json"
    bad.write_text("{not json")
    with pytest.raises(TraceError, match="not valid JSON"):
        render_html(bad)
    with pytest.raises(TraceError, match="no kept runs"):
        render_html(tmp_path)


# --- history --------------------------------------------------------------------


def test_history_page_charts_f1_per_kept_run(tmp_path):
    chef = make_chef(tmp_path, ScriptedLLM(patch=[BREAK, FIX_POS, FIX_NEG]))
    with record_trace(chef):
        for iterations in (1, 2, 3):
            quiet(chef.learn_rules, max_refinement_iterations=iterations)
        chef.load_rules(
            [
                *(r.to_dict() for r in chef.dataset.rules),
                {**rule("broad", "day|thing|food", "pos", 9), "content": "day"},
            ]
        )
        quiet(chef.rank_rules, prune=True, verbose=False)
    runs = sorted((tmp_path / "reviews.traces").glob("*.trace.json"))
    assert len(runs) == 4
    page = Page(render_html(tmp_path))
    (f1,) = page.find("polyline", "f1")
    learned = [load_trace(p) for p in runs if load_trace(p).run["kind"] == "learn"]
    assert len(polyline_points(f1)) == len(learned) == 3
    text = "".join(page.text)
    assert "RULECHEF HISTORY" in text and "rank_rules" in text
    assert write_html(tmp_path) == tmp_path / "history.html"
    assert write_html(tmp_path / "reviews.traces") == tmp_path / "reviews.traces.html"
    assert "https://" not in (tmp_path / "history.html").read_text()


# --- a real browser --------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def screenshot(page: Path, png: Path, profile: Path, size: str = "1200,1600") -> None:
    """Render a local page in headless Chromium, no network, into a PNG."""
    chromium = shutil.which("chromium")
    assert chromium is not None
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={size}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium)",
)
def test_report_renders_in_headless_chromium(rich, tmp_path):
    _, path = rich
    page = write_html(path, tmp_path / "report.html")
    png = tmp_path / "report.png"
    screenshot(page, png, tmp_path / "profile")
    assert png.is_file()
    assert png_size(png) == (1200, 1600)
    assert png.stat().st_size > 30_000, "the screenshot is (nearly) blank"


@pytest.fixture(scope="module")
def demo_traces(tmp_path_factory: pytest.TempPathFactory) -> list[Trace]:
    from rulechef_trace.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo"), out=io.StringIO())


def test_demo_report_text_has_no_placeholder_words(demo_traces: list[Trace]) -> None:
    for trace in demo_traces:
        text = " ".join(Page(render_html(trace)).text)
        for word in ("None", "nan", "undefined", "NaN"):
            assert f" {word} " not in f" {text} ".replace("→", " ").replace(",", " "), word


def test_audit_merges_name_the_rule_they_made(demo_traces: list[Trace]) -> None:
    learn = demo_traces[0]
    merges = [
        a
        for e in learn.events_of("audit_applied")
        for a in e.get("actions") or []
        if a.get("action") == "merge" and a.get("result")
    ]
    assert merges, "the demo run merges rules in an audit"
    text = " ".join(Page(render_html(learn)).text)
    for action in merges:
        assert f"→ {learn.name_of(action['result'])}" in text
