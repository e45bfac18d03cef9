"""The HTML report: structure (parsed), the text a person reads, escaping, self-containment."""

from __future__ import annotations

import contextlib
import fnmatch
import html
import io
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rulechef.coordinator import AgenticCoordinator

import rulechef_trace
from rulechef_trace import Trace, TraceError, build_trace, load_trace, record_trace, render_trace
from rulechef_trace.report import render_html, write_html
from rulechef_trace.report.numbers import pct
from tests.scripted import (
    BREAK,
    FIX_ALL,
    FIX_NEG,
    FIX_POS,
    ScriptedLLM,
    StopAfterCoordinator,
    audit_merge,
    last_trace,
    make_chef,
    rule,
    target_class,
)

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
PLACEHOLDERS = re.compile(r"\b(None|null|nan|NaN|undefined|inf)\b")
DRAWINGS = ("wide", "narrow")


class Page(HTMLParser):
    """Every start tag with its attributes and its chart drawing, and the page's text."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str], str]] = []
        self.text: list[str] = []
        self.doctype = ""
        self._drawing = ""
        self._style = False
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._drawing = found.get("class", "")
        self._style = tag == "style"
        self.tags.append((tag, found, self._drawing))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._drawing = ""
        self._style = False

    def handle_data(self, data: str) -> None:
        if not self._style:
            self.text.append(data)

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def find(
        self, tag: str, css: str | None = None, drawing: str | None = None
    ) -> list[dict[str, str]]:
        """Attributes of every ``tag`` whose class list holds ``css`` (in one chart drawing)."""
        return [
            a
            for t, a, d in self.tags
            if t == tag
            and (css is None or css in a.get("class", "").split())
            and (drawing is None or d == drawing)
        ]

    @property
    def words(self) -> str:
        """All text, as one string."""
        return " ".join(self.text)


def quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call rulechef without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def rich_run(folder: Path) -> tuple[Trace, Path]:
    """A demo-like run: accepted, rejected and empty patches, two audit merges, five iterations."""
    llm = ScriptedLLM(
        patch=[FIX_POS, BREAK, {"rules": []}, FIX_NEG],
        audit=[
            audit_merge(["pos words", "pos more"], "pos all", "good|great|nice|lovely"),
            {"actions": []},
            audit_merge(["neg words", "neg more"], "neg all", "bad|awful|terrible|horrible"),
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


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Trace]]:
    """The demo's storage folder and its two traces (learn, then rank_rules)."""
    from rulechef_trace.demo import run_demo

    folder = tmp_path_factory.mktemp("demo")
    return folder, run_demo(folder, out=io.StringIO())


@pytest.fixture(scope="module")
def demo_traces(demo_dir: tuple[Path, list[Trace]]) -> list[Trace]:
    return demo_dir[1]


def points(attrs: dict[str, str]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in attrs["points"].split())]


# --- structure ----------------------------------------------------------------


@pytest.mark.parametrize("drawing", DRAWINGS)
def test_iteration_chart_has_a_point_per_iteration_then_the_final_f1(rich, rich_page, drawing):
    """Both drawings plot every iteration, then one more point: the run's final F1."""
    trace, _ = rich
    _, page = rich_page
    assert len(trace.events_of("iteration_evaluated")) == 5
    (f1,) = page.find("polyline", "f1", drawing)
    (precision,) = page.find("polyline", "precision", drawing)
    assert len(points(f1)) == len(points(precision)) == 5 + 1
    (final,) = page.find("circle", "final", drawing)
    assert points(f1)[-1] == (float(final["cx"]), float(final["cy"]))


@pytest.mark.parametrize("drawing", DRAWINGS)
def test_patches_and_audits_are_marked(rich, rich_page, drawing):
    """Accepted, rejected and empty patches and audits that acted each get their mark."""
    trace, _ = rich
    _, page = rich_page
    outcomes = [e["outcome"] for e in trace.events_of("patch_decided")]
    assert outcomes == ["accepted", "rejected", "empty", "accepted"]
    assert len(page.find("circle", "accepted", drawing)) == 2
    assert len(page.find("path", "rejected", drawing)) == 1
    assert len(page.find("circle", "empty", drawing)) == 1
    # Two mid-refinement audits; only the one that proposed something is marked.
    assert len(page.find("path", "audit", drawing)) == 1


def test_rule_counts_steps_and_lineage(rich, rich_page):
    """A bar per event, a row per story step, a lineage block per final rule."""
    trace, _ = rich
    _, page = rich_page
    assert page.doctype.lower() == "doctype html"
    assert len(page.find("svg")) == 2 * len(DRAWINGS)
    for drawing in DRAWINGS:
        assert len(page.find("rect", "bar", drawing)) == len(trace.events)
    step_rows = [a for t, a, _ in page.tags if t == "tr" and "class" in a]
    story_rows = [line for line in render_trace(trace).splitlines() if re.match(r"^ *\d+ ", line)]
    assert len(step_rows) == len(story_rows)
    assert [a["class"] for a in step_rows if a["class"]] == [
        "accepted",
        "rejected",
        "empty",
        "accepted",
    ]
    assert len(page.find("details", "rule")) == len(trace.final_rules) == 2
    text = page.words
    assert "pos all" in text and "merged from" in text and "neg more" in text
    assert "audit (mid-refinement): 1 applied" in text
    assert "RULECHEF TRACE" in text and "completed" in text


def test_page_is_self_contained(rich_page):
    """No script, no link, no source: the CSP forbids loading anything."""
    document, page = rich_page
    assert "http://" not in document and "https://" not in document
    assert not [t for t, _, _ in page.tags if t in {"script", "link", "img", "iframe", "object"}]
    assert not [a for _, a, _ in page.tags if "src" in a or "href" in a]
    (csp,) = [a for t, a, _ in page.tags if t == "meta" and a.get("http-equiv")]
    assert csp["content"].startswith("default-src 'none'")


def test_stylesheet_is_package_data_inlined_in_the_page(rich_page):
    """report.css ships in the wheel (a package-data glob covers it) and is inlined."""
    document, _ = rich_page
    css = Path(rulechef_trace.__file__).parent / "report" / "html" / "report.css"
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    (listed,) = re.findall(r"^rulechef_trace = \[(.*)\]$", pyproject.read_text(), re.M)
    globs = re.findall(r'"([^"]+)"', listed)
    relative = css.relative_to(Path(rulechef_trace.__file__).parent).as_posix()
    assert any(fnmatch.fnmatch(relative, g) for g in globs), globs
    assert css.read_text(encoding="utf-8").strip() in document


def test_rule_names_from_the_llm_are_escaped(tmp_path):
    """A rule name holding markup shows as text, never as tags."""

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
    assert not [t for t, _, _ in page.tags if t in {"script", "img"}]
    assert any(EVIL in chunk for chunk in page.text)


# --- the text a person reads ------------------------------------------------------


def test_demo_report_text_has_no_placeholder_words(demo_traces: list[Trace]) -> None:
    """No None, null, nan, undefined or inf anywhere in the visible text of a real run."""
    assert len(demo_traces) == 2
    for trace in demo_traces:
        assert PLACEHOLDERS.findall(Page(render_html(trace)).words) == []


def test_audit_merges_name_the_rule_they_made(demo_traces: list[Trace]) -> None:
    """Each audit merge reads "merged a, b → <the merged rule's name>"."""
    learn = demo_traces[0]
    merges = [
        a
        for e in learn.events_of("audit_applied")
        for a in e.get("actions") or []
        if a.get("action") == "merge" and a.get("result")
    ]
    assert merges, "the demo run merges rules in an audit"
    text = Page(render_html(learn)).words
    for action in merges:
        assert f"→ {learn.name_of(action['result'])} ({action['result']})" in text


def test_every_audit_step_shows_its_f1_before_and_after(demo_traces: list[Trace]) -> None:
    """The step of each audit that acted names its F1 move, the final audit's included."""
    learn = demo_traces[0]
    text = Page(render_html(learn)).words
    for event in learn.events_of("audit_applied"):
        before, after = event["metrics_before"]["f1"], event["metrics_after"]["f1"]
        assert f"F1 {pct(before)} → {pct(after)}" in text
    (final_audit,) = [e for e in learn.events_of("audit_applied") if e["stage"] == "final"]
    assert learn.final_metrics is not None
    assert pct(final_audit["metrics_after"]["f1"]) == pct(learn.final_metrics["f1"])


def test_card_chart_and_steps_end_at_the_final_f1(demo_traces: list[Trace]) -> None:
    """The final-F1 card, the chart's last point and the last step show the same F1."""
    learn = demo_traces[0]
    assert learn.final_metrics is not None
    final = pct(learn.final_metrics["f1"])
    page = Page(render_html(learn))
    text = page.words
    assert f"{final} final F1" in text
    for drawing in DRAWINGS:
        (f1,) = page.find("polyline", "f1", drawing)
        (mark,) = page.find("circle", "final", drawing)
        assert points(f1)[-1] == (float(mark["cx"]), float(mark["cy"]))
    assert f"final: F1 {final}" in text
    assert f"finalized: completed, {len(learn.final_rules)} rules, F1 {final}" in text


def test_a_run_still_going_is_not_shown_as_finished(rich: tuple[Trace, Path]) -> None:
    """A stream read mid-run says it is still running; nothing calls its numbers final."""
    trace, _ = rich
    events = [{**e, "run_id": trace.run["id"]} for e in trace.events[:-3]]
    events[0].update({k: trace.run[k] for k in ("kind", "dataset", "task", "started_at")})
    events[0]["rule_names"] = {rid: entry["name"] for rid, entry in trace["rules"].items()}
    partial = build_trace(events)
    assert partial.status == "incomplete"
    page = Page(render_html(partial))
    text = page.words
    assert page.find("p", "notice") and "Still running, or stopped before its end" in text
    assert "F1 so far" in text and "rules start → now" in text
    assert "final" not in text.lower().replace("finalized", "")
    assert PLACEHOLDERS.findall(text) == []


def test_a_critic_that_did_not_run_has_no_step(tmp_path: Path) -> None:
    """With the critic off, rulechef still asks it; neither story nor page show a critic line."""
    llm = ScriptedLLM(patch=[BREAK, FIX_ALL])
    coordinator = AgenticCoordinator(llm, enable_critic=False, critic_interval=1, verbose=False)
    chef = make_chef(tmp_path, llm, coordinator)
    with record_trace(chef, write=False) as recorder:
        quiet(chef.learn_rules, max_refinement_iterations=2)
    trace = last_trace(recorder)
    assert [e["returned"] for e in trace.events_of("critiqued")] == [False, False]
    assert "critic" not in render_trace(trace)
    assert "critic" not in Page(render_html(trace)).words


def test_guidance_without_advice_is_folded_into_the_iteration(tmp_path: Path) -> None:
    """A "go on" with no advice is no line of its own, and never "0 chars of advice"."""
    chef = make_chef(tmp_path, ScriptedLLM(patch=[{"rules": []}, FIX_ALL]))
    with record_trace(chef, write=False) as recorder:
        quiet(chef.learn_rules, max_refinement_iterations=3)
    trace = last_trace(recorder)
    guided = trace.events_of("guided")
    assert guided and all(e["guidance_chars"] == 0 for e in guided)
    for text in (render_trace(trace), Page(render_html(trace)).words):
        assert "chars of advice" not in text and "coordinator guidance" not in text
        assert text.count("failures; go on") == len(guided)


# --- edge cases ----------------------------------------------------------------


def test_run_without_iterations_says_so(tmp_path):
    """A run that evaluated nothing has no F1 line, and says why."""
    chef = make_chef(tmp_path, ScriptedLLM())
    with record_trace(chef) as recorder:
        quiet(chef.learn_rules, run_evaluation=False)
    page = Page(render_html(recorder.traces[0]))
    assert page.find("polyline", "f1") == []
    assert "No refinement iteration was evaluated" in page.words


def test_failed_run_shows_its_error(tmp_path):
    """The error of a failed run is shown once, escaped."""

    class Boom(StopAfterCoordinator):
        def guide_refinement(
            self, eval_result: Any, iteration: int, max_iterations: int
        ) -> tuple[str, bool]:
            raise LookupError("coordinator <lost> its notes")

    chef = make_chef(tmp_path, ScriptedLLM(), Boom())
    with record_trace(chef) as recorder, pytest.raises(LookupError):
        quiet(chef.learn_rules, max_refinement_iterations=2)
    document = render_html(recorder.traces[0])
    page = Page(document)
    assert len(page.find("p", "error")) == 1
    assert "coordinator <lost> its notes" in page.words
    assert "<lost>" not in document
    assert page.find("span", "failed")


def test_write_html_defaults_next_to_the_trace(rich, tmp_path):
    """Without an output path the report goes next to its trace file."""
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
    """A corrupt file and a folder without runs are TraceErrors."""
    bad = tmp_path / "bad.trace.json"
    bad.write_text("{not json")
    with pytest.raises(TraceError, match="not valid JSON"):
        render_html(bad)
    with pytest.raises(TraceError, match="no kept runs"):
        render_html(tmp_path)


def test_the_old_module_path_still_renders(rich):
    """``rulechef_trace.html`` (0.1.0) is the same renderer."""
    from rulechef_trace.html import render_html as old_render_html

    assert old_render_html is render_html


# --- history --------------------------------------------------------------------


def test_history_page_charts_f1_per_kept_run(tmp_path):
    """One F1 point per kept learn run; the table puts F1 right after the date."""
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
    kinds = [load_trace(p).run["kind"] for p in runs]
    assert kinds == ["learn", "learn", "learn", "edit", "rank_rules"]
    page = Page(render_html(tmp_path))
    learned = [load_trace(p) for p in runs if load_trace(p).run["kind"] == "learn"]
    for drawing in DRAWINGS:
        (f1,) = page.find("polyline", "f1", drawing)
        assert len(points(f1)) == len(learned) == 3
    text = page.words
    assert "RULECHEF HISTORY" in text and "rank_rules" in text
    assert "# started (UTC) F1 rules" in " ".join(text.split())
    assert PLACEHOLDERS.findall(text) == []
    assert write_html(tmp_path) == tmp_path / "history.html"
    assert write_html(tmp_path / "reviews.traces") == tmp_path / "reviews.traces.html"
    assert "https://" not in (tmp_path / "history.html").read_text()


# --- a real browser at a phone's and a laptop's width ---------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)"
)

# A page of the test's own that frames each report at an exact width and reads the
# laid-out page through the DOM; the reports themselves stay script-free.
_MEASURE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>html, body {{ margin: 0 }} iframe {{ border: 0; display: block; height: 900px }}</style>
</head><body>{frames}<pre id="out">no measure</pre><script>
function measure(frame) {{
  var w = frame.contentWindow, d = w.document, out = {{}};
  out.width = w.innerWidth;
  out.clientWidth = d.documentElement.clientWidth;
  out.scrollWidth = d.documentElement.scrollWidth;
  out.text = d.body.innerText;
  out.boxes = Array.from(d.querySelectorAll(".scroll, .chart"), function (b) {{
    return b.getBoundingClientRect().right; }});
  out.f1Headers = Array.from(d.querySelectorAll("table.history th"))
    .filter(function (th) {{ return th.textContent === "F1"; }})
    .map(function (th) {{ return th.getBoundingClientRect().right; }});
  out.fonts = [];
  d.querySelectorAll("svg").forEach(function (svg) {{
    if (!svg.getClientRects().length) return;
    var scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    svg.querySelectorAll("text").forEach(function (t) {{
      out.fonts.push(parseFloat(w.getComputedStyle(t).fontSize) * scale); }});
  }});
  return out;
}}
window.addEventListener("load", function () {{
  var found = {{}};
  document.querySelectorAll("iframe").forEach(function (f) {{ found[f.id] = measure(f); }});
  document.getElementById("out").textContent = JSON.stringify(found);
}});
</script></body></html>"""
WIDTHS = (390, 1280)


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium offline with a fresh profile; return its standard output."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def measure(pages: list[Path], profile: Path) -> dict[str, dict[str, Any]]:
    """Lay each page out at each of WIDTHS in one Chromium run; what the DOM says, by page@width."""
    frames = "".join(
        f'<iframe id="{p.name}@{w}" src="{p.name}" style="width: {w}px"></iframe>'
        for p in pages
        for w in WIDTHS
    )
    frame = pages[0].with_name("measure.html")
    frame.write_text(_MEASURE.format(frames=frames))
    dom = chromium(
        profile,
        "--allow-file-access-from-files",
        f"--window-size={max(WIDTHS) + 200},1100",
        "--virtual-time-budget=5000",
        "--dump-dom",
        frame.resolve().as_uri(),
    )
    (found,) = re.findall(r'<pre id="out">(.*?)</pre>', dom, re.S)
    measured: dict[str, dict[str, Any]] = json.loads(html.unescape(found))
    return measured


@pytest.fixture(scope="module")
def laid_out(
    demo_dir: tuple[Path, list[Trace]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """The demo's report and history page as Chromium lays them out at 390 and 1280 px."""
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    folder, traces = demo_dir
    out = tmp_path_factory.mktemp("browser")
    pages = [write_html(traces[0], out / "report.html"), write_html(folder, out / "history.html")]
    return measure(pages, out / "profile")


def assert_fits(measured: dict[str, Any], width: int) -> None:
    """Nothing scrolls the page sideways, every table and chart box is on screen, text >= 10 px."""
    assert measured["width"] == width
    room = measured["clientWidth"]
    assert measured["scrollWidth"] <= room, measured["scrollWidth"]
    assert measured["boxes"] and max(measured["boxes"]) <= room + 0.5, measured["boxes"]
    assert measured["fonts"] and min(measured["fonts"]) >= 10, min(measured["fonts"])
    assert PLACEHOLDERS.findall(measured["text"]) == []


@needs_chromium
@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_a_phone_and_a_laptop_and_reads_its_f1(demo_traces, laid_out, width):
    """At 390 and 1280 px the laid-out report fits, its chart text is legible, its F1 shows."""
    learn = demo_traces[0]
    measured = laid_out[f"report.html@{width}"]
    assert_fits(measured, width)
    text = measured["text"]
    final = pct(learn.final_metrics["f1"])
    assert re.search(rf"{re.escape(final)}\s+final F1", text)
    assert f"finalized: completed, {len(learn.final_rules)} rules, F1 {final}" in text
    # The step-type column is the one a phone drops; the text of each step stays.
    assert ("iteration_evaluated" in text) == (width > 720)


@needs_chromium
@pytest.mark.parametrize("width", WIDTHS)
def test_history_page_shows_every_f1_on_screen(demo_traces, laid_out, width):
    """The history table's F1 column is inside the screen, even on a phone."""
    measured = laid_out[f"history.html@{width}"]
    assert_fits(measured, width)
    assert measured["f1Headers"] and max(measured["f1Headers"]) <= measured["clientWidth"]
    assert pct(demo_traces[0].final_metrics["f1"]) in measured["text"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@needs_chromium
def test_report_screenshot_is_drawn(rich, tmp_path):
    """A 1280 px screenshot of the report is a real, non-blank picture."""
    _, path = rich
    page = write_html(path, tmp_path / "report.html")
    png = tmp_path / "report.png"
    chromium(
        tmp_path / "profile",
        f"--screenshot={png}",
        "--window-size=1280,1600",
        page.resolve().as_uri(),
    )
    assert png_size(png) == (1280, 1600)
    assert png.stat().st_size > 30_000, "the screenshot is (nearly) blank"
