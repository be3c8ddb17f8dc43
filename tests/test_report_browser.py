"""report.html in a real browser: headless Chromium (Debian's ``chromium``; .ci/run installs it), driven
over the DevTools protocol on ``--remote-debugging-pipe`` (the standard library only: no websocket,
no driver package), the page served from its folder over a loopback HTTP server.

Checked through the DOM: every gallery image decoded (``naturalWidth > 0``), one histogram SVG per
score column with its threshold line and the summary's counts, the counts table, the agreement
table and scatter of two scorers, the filters working, no console message or exception, and the
planted hostile captions shown as text with nothing of them run. A screenshot is taken (kept in
``$HF_VLM_FILTER_SCREENSHOTS`` when set). Skipped, saying why, where Chromium is not installed
(``HF_VLM_FILTER_CHROMIUM`` names another binary), unless ``HF_VLM_FILTER_REQUIRE_CHROMIUM`` is set
(.ci/run sets it: there a missing browser fails).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hf_vlm_filter.cli import main
from hf_vlm_filter.reports import REPORT_FILE, GallerySample, read_report_sample, render_report

from .test_report_cli import HOSTILE_CAPTIONS, hostile_source  # noqa: F401 - hostile_source is a fixture
from .test_report_html import HOSTILE, THRESHOLDS, hostile_table, make_run

CHROMIUM = os.environ.get("HF_VLM_FILTER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--disable-default-apps", "--mute-audio", "--remote-debugging-pipe")

#: Set by .ci/run: there a missing browser fails the tests instead of skipping them.
REQUIRED = bool(os.environ.get("HF_VLM_FILTER_REQUIRE_CHROMIUM"))

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")


class Chromium:
    """Headless Chromium with a fresh profile, spoken to over the DevTools pipe (fd 3 in, fd 4 out;
    NUL-terminated JSON messages)."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="hf-vlm-filter-chromium-")
        child_in, self._to_child = os.pipe()
        self._from_child, child_out = os.pipe()

        def wire() -> None:  # in the child: its ends of the pipes become fds 3 and 4
            first, second = os.dup(child_in), os.dup(child_out)
            os.dup2(first, 3)
            os.dup2(second, 4)

        self.process = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        close_fds=False, preexec_fn=wire, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(index)
        deadline = time.monotonic() + self.timeout
        while True:
            event = self._read(deadline)
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            if select.select([self._from_child], [], [], left)[0]:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the DevTools pipe")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    """One page of the browser, with what its console said."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                          "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.browser.wait_for("Page.loadEventFired", self.session)

    def value(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        height = self.value("document.documentElement.scrollHeight")
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 12000),
                                                             "scale": 1}})
        return base64.b64decode(shot["data"])

    def console(self) -> list[dict[str, Any]]:
        """Console calls, exceptions and log entries of this page (CSP violations, failed loads...)."""
        kinds = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")
        return [event for event in self.browser.events if event.get("sessionId") == self.session
                and event.get("method") in kinds]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on a loopback port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if CHROMIUM is None:
        pytest.fail("HF_VLM_FILTER_REQUIRE_CHROMIUM is set and chromium is not installed")
    chromium = Chromium(CHROMIUM)
    try:
        chromium.call("Browser.getVersion")
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def two_scorer_run(hostile_source, tiny_checkpoints, tmp_path_factory) -> Path:  # noqa: F811 - the fixture
    out = tmp_path_factory.mktemp("browser") / "out"
    assert main(["filter", str(hostile_source), "--scorer", "compact", "--scorer", "clip",
                 "--model-for", f"compact={tiny_checkpoints.path('compact_vlm')}",
                 "--model-for", f"clip={tiny_checkpoints.path('clip')}", "--threshold", "3",
                 "--threshold-for", "clip_score=0", "--out", str(out)]) == 0
    return out


PAGE_FACTS = """(() => {
  const rows = [...document.querySelectorAll("figure.row")];
  const images = [...document.querySelectorAll("figure.row img")];
  const charts = [...document.querySelectorAll("svg.histogram")].map(svg => ({
    column: svg.getAttribute("data-column"),
    counts: [...svg.querySelectorAll("rect.bar")].map(bar => Number(bar.getAttribute("data-count"))),
    thresholds: [...svg.querySelectorAll("line.threshold")].map(line => Number(line.getAttribute("data-threshold"))),
    width: svg.getBoundingClientRect().width}));
  const counts = {};
  document.querySelectorAll("td[data-count]").forEach(td => { counts[td.getAttribute("data-count")] = td.textContent; });
  const onAttributes = [...document.querySelectorAll("*")].flatMap(el => [...el.attributes])
    .filter(attr => attr.name.startsWith("on")).length;
  return {ready: document.documentElement.getAttribute("data-ready"), rows: rows.length, images: images.length,
          loaded: images.filter(img => img.complete && img.naturalWidth > 0).length,
          notData: images.filter(img => !img.src.startsWith("data:image/jpeg;base64,")).length,
          charts, counts, scripts: document.scripts.length, onAttributes, pwned: window.__pwned === undefined ? null : window.__pwned,
          captions: [...document.querySelectorAll("p.caption")].map(p => p.textContent),
          spearman: document.querySelectorAll("td[data-spearman]").length,
          points: document.querySelectorAll("svg.scatter circle.point").length};
})()"""


def check_page(tab: Tab, url: str, out: Path, name: str) -> dict[str, Any]:
    """Open ``url``, screenshot it, and check what every page must satisfy; returns its facts."""
    tab.open(url)
    facts = tab.value(PAGE_FACTS)
    shot = tab.screenshot()
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 20_000
    keep = os.environ.get("HF_VLM_FILTER_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"{name}.png").write_bytes(shot)
    (out / f"{name}.png").write_bytes(shot)
    assert facts["ready"] == "1"  # the page's script ran to its end
    assert facts["images"] > 0 and facts["loaded"] == facts["images"] and facts["notData"] == 0
    assert facts["scripts"] == 1 and facts["onAttributes"] == 0 and facts["pwned"] is None
    assert tab.console() == [], tab.console()
    return facts


def test_the_report_of_a_real_run_in_chromium(browser, two_scorer_run):
    run, sample, _ = read_report_sample(two_scorer_run)
    summary = run.summary
    tab = Tab(browser)
    with serve(two_scorer_run) as base:
        facts = check_page(tab, f"{base}/{REPORT_FILE}", two_scorer_run, "two-scorers")
    assert [chart["column"] for chart in facts["charts"]] == ["judge_score", "clip_score"]
    for chart in facts["charts"]:
        histogram = summary.histograms[chart["column"]]
        assert chart["counts"] == [count for _, _, count in histogram.bins()] and sum(chart["counts"]) == histogram.count
        assert chart["thresholds"] == [run.rule.thresholds[chart["column"]]] and chart["width"] > 100
    assert facts["counts"]["rows"] == str(summary.rows) == "14"
    assert facts["counts"]["scored"] == str(summary.scored) and facts["counts"]["kept"] == str(summary.kept)
    assert facts["counts"]["errors"] == str(summary.rows - summary.scored)
    assert facts["spearman"] == 4 and facts["points"] == summary.scored
    for caption in HOSTILE_CAPTIONS.values():
        assert caption in facts["captions"]  # shown, as text, exactly
    # the filters: the column selector shows one column's gallery; the boxes and the search hide rows
    visible = "[...document.querySelectorAll('.gallery-column')].filter(p => !p.hidden).map(p => p.dataset.column)"
    assert tab.value(visible) == ["judge_score"]
    tab.value("(() => { const s = document.getElementById('gallery-column'); s.value = 'clip_score';"
              " s.dispatchEvent(new Event('change')); })()")
    assert tab.value(visible) == ["clip_score"]
    shown = "[...document.querySelectorAll('figure.row')].filter(f => f.offsetParent !== null).length"
    before = tab.value(shown)
    tab.value("(() => { const box = document.querySelector('input[data-hide=kept]'); box.checked = false;"
              " box.dispatchEvent(new Event('change')); })()")
    assert tab.value("[...document.querySelectorAll('figure.row.kept')].every(f => getComputedStyle(f).display === 'none')")
    assert 0 < tab.value(shown) < before
    tab.value("(() => { const box = document.querySelector('input[data-hide=kept]'); box.checked = true;"
              " box.dispatchEvent(new Event('change'));"
              " const q = document.getElementById('caption-filter'); q.value = 'tabby';"
              " q.dispatchEvent(new Event('input')); })()")
    texts = tab.value("[...document.querySelectorAll('figure.row')].filter(f => f.offsetParent !== null)"
                      ".map(f => f.querySelector('.caption').textContent)")
    assert texts and all("tabby" in text.lower() for text in texts)
    assert tab.console() == []


def test_planted_hostile_text_never_runs(browser, tmp_path):
    table, verdicts = hostile_table()
    sample = GallerySample(make_run(table, verdicts).summary.specs, thresholds=THRESHOLDS, per_section=40, seed=1)
    sample.observe(table, verdicts)
    (tmp_path / REPORT_FILE).write_text(render_report(make_run(table, verdicts), sample), encoding="utf-8")
    tab = Tab(browser)
    with serve(tmp_path) as base:
        facts = check_page(tab, f"{base}/{REPORT_FILE}", tmp_path, "hostile")
    for caption in HOSTILE:
        assert caption in facts["captions"]
    heading = tab.value("document.querySelector('h1').textContent")
    assert heading == "hf_vlm_filter report: pairs<b>.json"
    reasons = tab.value("[...document.querySelectorAll('.no-image, .verdict')].map(e => e.textContent).join(' ')")
    assert "<script>window.__pwned=3</script>" in reasons
    assert tab.value("document.querySelectorAll('b, svg[onload], textarea, iframe, object, embed').length") == 0
    assert tab.value("getComputedStyle(document.querySelector('p.caption')).unicodeBidi") == "isolate"
