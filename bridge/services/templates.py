"""Every page's text from alertmanager/templates/*.tmpl, rendered by `amtool template render`.

The templates are the one source of the message layout (title, body, links);
there is no Python copy. amtool reads the webhook payload as template data
as-is. Before rendering, the data (never the text) is adjusted: the public
Alertmanager URL replaces the sending peer's `externalURL` (so every peer's
notification renders the same silence link), `truncatedAlerts` reaches the
template as `commonAnnotations.pulse_truncated`, and dashboard links are left
out unless Grafana's URL is configured (a relative dashboard_url is put on it).

If amtool is missing or fails, a one-line title and the alerts' summaries go
out instead (logged and counted): a template error must never lose a page.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pulse.paths import ALERTMANAGER_DIR

log = logging.getLogger(__name__)

TEMPLATES = ALERTMANAGER_DIR / "templates"
# One amtool run renders every part; this separator never occurs in alert text
# (ASCII record separator; Alertmanager labels and annotations are printable).
SEP = "\x1e"
PARTS = ("pulse.title", "pulse.summary", "pulse.text", "pulse.links")


@dataclass(frozen=True)
class Rendered:
    """One notification's text: title, one-line summary, body and its links (name, url)."""

    title: str
    summary: str
    text: str
    links: list[tuple[str, str]] = field(default_factory=list)
    fallback: bool = False


def template_data(payload: Mapping, alertmanager_url: str | None,
                  grafana_url: str | None) -> dict:
    """The payload as the templates should see it (see the module docstring)."""
    data = copy.deepcopy(dict(payload))
    data["externalURL"] = (alertmanager_url or "").rstrip("/")
    common = dict(data.get("commonAnnotations") or {})
    truncated = data.get("truncatedAlerts") or 0
    if isinstance(truncated, int) and truncated > 0:
        common["pulse_truncated"] = str(truncated)
    common.pop("dashboard_url", None)
    data["commonAnnotations"] = common
    for alert in data.get("alerts") or []:
        ann = alert.get("annotations") or {}
        dash = ann.pop("dashboard_url", None)
        if dash and grafana_url:
            ann["dashboard_url"] = grafana_url.rstrip("/") + dash if dash.startswith("/") else dash
        alert["annotations"] = ann
    return data


def _links(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        name, _, url = line.partition("\t")
        if name and url.strip():
            out.append((name.strip(), url.strip()))
    return out


class Renderer:
    """Renders payloads through amtool with the committed templates."""

    def __init__(self, alertmanager_url: str | None = None, grafana_url: str | None = None,
                 templates: Path = TEMPLATES, timeout: float = 5.0, amtool: str | None = None):
        self.alertmanager_url = alertmanager_url
        self.grafana_url = grafana_url
        self.glob = str(Path(templates) / "*.tmpl")
        self.timeout = timeout
        self.amtool = amtool or shutil.which("amtool")
        self.failures = 0

    def render(self, payload: Mapping) -> Rendered:
        """The notification's text; the fallback when amtool cannot render it."""
        data = template_data(payload, self.alertmanager_url, self.grafana_url)
        try:
            parts = self._amtool(data)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self.failures += 1
            log.error("templates: amtool could not render the notification (%s); sending "
                      "the plain fallback text", str(exc)[:300])
            return fallback(data)
        title, summary, text, links = parts
        return Rendered(title.strip(), summary.strip(), text.strip(), _links(links))

    def _amtool(self, data: dict) -> list[str]:
        if not self.amtool:
            raise OSError("amtool is not installed (Debian: prometheus-alertmanager)")
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pulse-page-") as fh:
            json.dump(data, fh)
            fh.flush()
            text = SEP.join('{{ template "' + name + '" . }}' for name in PARTS)
            result = subprocess.run(
                [self.amtool, "template", "render", f"--template.glob={self.glob}",
                 f"--template.data={fh.name}", f"--template.text={text}"],
                capture_output=True, text=True, timeout=self.timeout)
        if result.returncode != 0:
            raise ValueError(result.stderr.strip() or f"exit code {result.returncode}")
        parts = result.stdout.split(SEP)
        if len(parts) != len(PARTS):
            raise ValueError(f"expected {len(PARTS)} parts, got {len(parts)}")
        return parts

    def check(self) -> str | None:
        """None when the templates render a sample notification; else the problem."""
        sample = {
            "version": "4", "status": "firing", "receiver": "check", "groupKey": "{}:{}",
            "truncatedAlerts": 1, "groupLabels": {"alertname": "Check"},
            "commonLabels": {"alertname": "Check", "severity": "critical"},
            "commonAnnotations": {}, "externalURL": "",
            "alerts": [{"status": "firing", "labels": {"alertname": "Check", "job": "x"},
                        "annotations": {"summary": "check"}, "startsAt": "2026-01-01T00:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "0"}],
        }
        try:
            self._amtool(template_data(sample, self.alertmanager_url, self.grafana_url))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return str(exc)[:500]
        return None


def truncate(text: str, limit: int) -> str:
    """text cut to at most limit characters, ending with a note of how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit
    while keep > 0:
        note = f"… (truncated, {len(text) - keep} more chars)"
        if keep + len(note) <= limit:
            return text[:keep] + note
        keep = limit - len(note)
    return text[:limit]


def fallback(data: Mapping) -> Rendered:
    """What goes out when the templates cannot be rendered: status, name, summaries."""
    alerts = data.get("alerts") or []
    name = (data.get("commonLabels") or {}).get("alertname") or "alerts"
    title = f"[{str(data.get('status', 'firing')).upper()}:{len(alerts)}] {name}"
    lines = [(a.get("annotations") or {}).get("summary") or
             (a.get("labels") or {}).get("alertname", "alert") for a in alerts]
    return Rendered(title, title, "\n".join(lines), [], fallback=True)
