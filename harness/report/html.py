"""The self-contained HTML report: one file, images embedded as data URIs, styles inline, no
network needed to open it (a report is read on laptops, mailed, archived with a paper).

A few lines of script mark any image that failed to decode and record on ``<body>`` how many
images and tables rendered (``data-images-ok``, ``data-tables``); the browser test reads them.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report.tables import to_html

if TYPE_CHECKING:
    from harness.report.sections import Section

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
th, td { border-top: 1px solid #ddd; border-bottom: 1px solid #ddd; padding: .3rem .7rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
thead tr { border-bottom: 2px solid #444; }
.mark { color: #b00; font-weight: bold; }
.note { font-size: .85rem; color: #555; margin-top: -.5rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
.broken { outline: 3px solid #c00; }
nav a { margin-right: .8rem; font-size: .9rem; }
footer { margin-top: 3rem; color: #777; font-size: .8rem; }
"""

CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  imgs.forEach(function (i) { if (!(i.complete && i.naturalWidth > 0)) i.classList.add("broken"); });
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-ok", String(ok.length));
  document.body.setAttribute("data-tables", String(document.querySelectorAll("table tbody tr").length));
});
"""


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(name: str, intro: list[str], sections: list["Section"], stamp: str) -> str:
    anchors = [f"s{i}" for i in range(len(sections))]
    nav = " ".join(f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections))
    body = [f"<h1>{html.escape(name)}</h1>", f"<nav>{nav}</nav>"]
    body += [f"<p>{html.escape(p)}</p>" for p in intro]
    for anchor, s in zip(anchors, sections):
        body.append(f'<h2 id="{anchor}">{html.escape(s.title)}</h2>')
        body += [f"<p>{html.escape(p)}</p>" for p in s.text]
        body += [to_html(t) for t in s.tables]
        for path, caption in s.figures:
            body.append(f'<figure><img src="{_image(path)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    body.append(f"<footer>{html.escape(stamp)}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(name)} — report</title>\n<style>{STYLE}</style>\n<script>{CHECK}</script>\n"
            "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
