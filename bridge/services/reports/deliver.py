"""Rendering a report to a file and emailing it through an apprise mailto:// channel."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bridge.services.errors import Upstream, invalid
from bridge.services.notifier import apprise, target_id
from bridge.services.reports.build import clean
from bridge.services.reports.text import fmt, fmt_change

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    "json": ("application/json", "json"),
    "excel": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "pdf": ("application/pdf", "pdf"),
}
EMAIL_SCHEMES = ("mailto://", "mailtos://")


def render(report: dict, fmt_name: str) -> bytes:
    """The report file in a format: json, excel or pdf."""
    if fmt_name == "json":
        return json.dumps(clean(report), indent=1).encode()
    if fmt_name == "excel":
        from bridge.services.reports.excel import to_excel
        return to_excel(clean(report))
    from bridge.services.reports.pdf import to_pdf
    return to_pdf(clean(report))


def filename(report: dict, fmt_name: str) -> str:
    """pulse-<type>-<end date>.<ext>."""
    end = report["report"]["timeRange"]["end"][:10]
    return f"pulse-{report['report']['type']}-report-{end}.{MEDIA_TYPES[fmt_name][1]}"


def email_urls(channel: str, channels: Mapping[str, Sequence[str]]) -> list[str]:
    """The mailto URLs of a configured channel (Invalid naming `channel` otherwise)."""
    if channel not in channels:
        raise invalid(f"unknown channel {channel[:64]!r}", "channel",
                          "not a configured channel (bridge.channels)")
    urls = [u for u in channels[channel] if isinstance(u, str) and u.startswith(EMAIL_SCHEMES)]
    if not urls:
        raise invalid(f"channel {channel!r} has no email address", "channel",
                          "email delivery needs a mailto:// URL in the channel")
    return urls


def summary_text(report: dict) -> str:
    """The email body: the headline numbers with their change, and data completeness."""
    meta = report["report"]
    lines = [f"{meta['title']}: {meta['timeRange']['start']} to {meta['timeRange']['end']}", ""]
    for h in report["headlines"]:
        lines.append(f"- {h['metric']} [{h['series']}]: {fmt(h['value'], h['unit'])} "
                     f"(change {fmt_change(h['changeRatio'])})")
    q = report["dataQuality"]
    lines += ["", "Data completeness: " + (f"{q['completeness']:.1%}" if q["completeness"]
                                           is not None else "n/a"),
              "The full report is attached."]
    return "\n".join(lines)


def send_email(report: dict, data: bytes, fmt_name: str, channel: str,
               channels: Mapping[str, Sequence[str]], workdir: Path,
               timeout: float = 30.0) -> dict:
    """Email the report file as an attachment to every mailto URL of the channel."""
    urls = email_urls(channel, channels)
    workdir.mkdir(parents=True, exist_ok=True)
    name = filename(report, fmt_name)
    sent, failed = [], []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        for url in urls:
            tid = target_id(channel, url)
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
            if not plugin:
                log.error("channel %s: an apprise URL (%s) cannot be parsed", channel, tid)
                failed.append(tid)
                continue
            for attr in ("socket_connect_timeout", "socket_read_timeout"):
                if hasattr(plugin, attr):
                    setattr(plugin, attr, timeout)
            attachment = apprise.AppriseAttachment()
            attachment.add(str(path))
            try:
                ok = plugin.notify(body=summary_text(report), title=
                                   f"Pulse {report['report']['title']} "
                                   f"({report['report']['timeRange']['end'][:10]})",
                                   attach=attachment)
            except Exception as exc:  # a plugin bug must not hide the other addresses
                log.error("channel %s (%s): apprise raised %s", channel, tid, type(exc).__name__)
                ok = False
            (sent if ok else failed).append(tid)
    result = {"channel": channel, "filename": name, "bytes": len(data), "sent": sent,
              "failed": failed, "sentAt": datetime.now(UTC).isoformat(timespec="seconds")}
    if not sent:
        raise Upstream(f"the report could not be emailed to channel {channel!r}",
                       [{"field": "channel", "problem": f"{len(failed)} address(es) failed"}])
    return result
