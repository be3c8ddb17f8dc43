"""The report page's frame: its style sheet, its few lines of vanilla JavaScript, and a Content
Security Policy that lets only those run.

The policy (``default-src 'none'``; scripts and styles allowed by their SHA-256; images from
``data:`` only) is a second wall behind the escaping: a caption that slipped through as markup
could still not run a script, load a resource or reach the network (and the browser would log a
violation, which the browser test treats as a failure).

Example:
    >>> html = page("t", "<p>hi</p>")
    >>> html.startswith("<!DOCTYPE html>"), "Content-Security-Policy" in html, html.count("<script")
    (True, True, 1)
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

STYLE = """
:root { --pass: #2e7d32; --fail: #b0b6bd; --mixed: #c9a227; --err: #c62828; --ink: #1f2328; --muted: #57606a; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0 auto;
       padding: 0 20px 60px; max-width: 1280px; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 18px; margin-top: 30px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 16px; margin: 22px 0 6px; } h4 { font-size: 14px; margin: 16px 0 6px; color: var(--muted); }
table.facts, table.counts, table.matrix { border-collapse: collapse; margin: 6px 0; }
table.facts th, table.facts td, table.counts th, table.counts td, table.matrix th, table.matrix td {
  border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
td.number, table.counts td { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: 8px; margin: 4px 0; }
.preview { background: #fff8c5; border: 1px solid #d4a72c; padding: 8px 12px; margin: 10px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; }
figure.chart { margin: 0; } figure.chart figcaption { color: var(--muted); font-size: 12px; max-width: 520px; }
svg text { font-size: 10px; fill: var(--muted); } svg .axis-label { font-size: 11px; fill: var(--ink); }
svg .axis { stroke: #8c959f; } svg .bar.pass { fill: var(--pass); } svg .bar.fail { fill: var(--fail); }
svg .bar.mixed { fill: var(--mixed); } svg a:hover .bar { opacity: .75; }
svg .threshold { stroke: var(--err); stroke-width: 2; stroke-dasharray: 5 3; }
svg .threshold-label { fill: var(--err); font-size: 11px; }
svg .point.pass { fill: var(--pass); fill-opacity: .6; } svg .point.fail { fill: #6e7781; fill-opacity: .45; }
.controls { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #d0d7de;
            display: flex; gap: 16px; flex-wrap: wrap; align-items: center; z-index: 1; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure.row { width: 200px; margin: 0; border: 1px solid #d0d7de; border-left: 5px solid var(--pass); padding: 6px;
             overflow-wrap: anywhere; }
figure.row.dropped { border-left-color: var(--fail); } figure.row.unscored { border-left-color: var(--err); }
figure.row img { display: block; max-width: 100%; height: auto; margin: 0 auto 4px; background: #eee; }
.no-image { height: 64px; display: flex; align-items: center; justify-content: center; text-align: center;
            background: #f6f8fa; color: var(--muted); font-size: 12px; padding: 4px; }
.caption { margin: 2px 0; max-height: 9em; overflow: auto; unicode-bidi: isolate; }
.caption.missing { color: var(--muted); font-style: italic; }
table.scores { font-size: 12px; border-collapse: collapse; } table.scores th { font-weight: normal; color: var(--muted);
  text-align: left; padding-right: 6px; } table.scores td { font-variant-numeric: tabular-nums; }
.verdict { font-size: 12px; margin: 2px 0; font-weight: 600; } .dropped .verdict { color: var(--muted); }
.unscored .verdict { color: var(--err); } .image-name { font-size: 11px; color: var(--muted); margin: 0; unicode-bidi: isolate; }
.empty-note { color: var(--muted); font-style: italic; }
body.hide-kept figure.row.kept, body.hide-dropped figure.row.dropped, body.hide-unscored figure.row.unscored { display: none; }
[hidden] { display: none !important; }
"""

SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  var select = document.getElementById("gallery-column");
  function showColumn() {
    if (!select) { return; }
    document.querySelectorAll(".gallery-column").forEach(function (part) {
      part.hidden = part.getAttribute("data-column") !== select.value;
    });
  }
  if (select) { select.addEventListener("change", showColumn); showColumn(); }
  document.querySelectorAll("input[data-hide]").forEach(function (box) {
    box.addEventListener("change", function () {
      body.classList.toggle("hide-" + box.getAttribute("data-hide"), !box.checked);
    });
  });
  var search = document.getElementById("caption-filter");
  if (search) {
    search.addEventListener("input", function () {
      var wanted = search.value.toLowerCase();
      document.querySelectorAll("figure.row").forEach(function (row) {
        var caption = row.querySelector(".caption");
        var text = caption ? caption.textContent.toLowerCase() : "";
        row.hidden = wanted !== "" && text.indexOf(wanted) < 0;
      });
    });
  }
  document.documentElement.setAttribute("data-ready", "1");
})();
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


#: The page's Content Security Policy (see the module docstring).
CONTENT_SECURITY_POLICY = (f"default-src 'none'; img-src data:; style-src '{_sha256(STYLE)}'; "
                           f"script-src '{_sha256(SCRIPT)}'; base-uri 'none'; form-action 'none'")


def page(title: str, body: str) -> str:
    """The whole HTML document: ``title`` (escaped here) and ``body`` (markup already escaped)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
