"""GET /runbooks: docs/runbooks.md as simple HTML, one anchor per `## AlertName` section.

Alert annotations link to http://<bridge>/runbooks#<alertname lower-case>.
"""

from __future__ import annotations

import html
import re

from flask import Blueprint, Response

from bridge.auth import require
from pulse.paths import ROOT

bp = Blueprint("runbooks", __name__)
RUNBOOKS = ROOT / "docs" / "runbooks.md"
_INLINE = re.compile(r"`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*")


def anchor(title: str) -> str:
    """The anchor of a section: its title lower-cased, non-alphanumerics dropped."""
    return re.sub(r"[^a-z0-9_-]", "", title.strip().lower().replace(" ", "-"))


def _inline(text: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        elif m.group(2) is not None:
            href = m.group(3)
            safe = href if re.match(r"^(https?://|#|/)", href) else "#"
            out.append(f'<a href="{html.escape(safe)}">{html.escape(m.group(2))}</a>')
        else:
            out.append(f"<strong>{html.escape(m.group(4))}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def to_html(markdown: str, title: str = "Pulse runbooks") -> str:
    """A small Markdown subset (headings, paragraphs, lists, code blocks, inline code, links)."""
    body: list[str] = []
    para: list[str] = []
    in_list = in_code = False

    def flush():
        nonlocal in_list
        if para:
            body.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if in_list:
            body.append("</ul>")
            in_list = False

    for line in markdown.splitlines():
        if line.startswith("```"):
            flush()
            body.append("</code></pre>" if in_code else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            body.append(html.escape(line))
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        item = re.match(r"^\s*(?:[-*]|\d+\.)\s+(.*)$", line)
        if heading:
            flush()
            level, text = len(heading.group(1)), heading.group(2).strip()
            body.append(f'<h{level} id="{anchor(text)}">{_inline(text)}</h{level}>')
        elif item:
            if para:
                body.append(f"<p>{_inline(' '.join(para))}</p>")
                para.clear()
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(item.group(1))}</li>")
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
    flush()
    if in_code:
        body.append("</code></pre>")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


@bp.after_request
def ask_for_credentials(response):
    """A browser following an alert's runbook link gets a login prompt: the token as
    password (Basic auth), as pulse.access.credentials reads it."""
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="Pulse runbooks"'
    return response


@bp.get("/runbooks")
@require("runbooks:read")
def runbooks():
    """docs/runbooks.md as HTML; each `## AlertName` is anchored #alertname."""
    try:
        text = RUNBOOKS.read_text()
    except FileNotFoundError:
        text = "# Runbooks\n\nNo runbooks are installed."
    return Response(to_html(text), mimetype="text/html")
