"""The addresses people follow from a page: filled into the shipped rules when Pulse renders.

rules/*.rules.yml stay the single source and keep their promtool tests: every
runbook link there starts with SOURCE_BRIDGE and every dashboard link with
SOURCE_GRAFANA (the defaults of a local stack). Rendering swaps in
`bridge.external_url` and `grafana.url`, the way monitoring mixins fill a
runbook URL pattern at build time; with no `grafana.url` the dashboard links
are dropped, since none would lead anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pulse.config import Config, split_listen

SOURCE_BRIDGE = "http://127.0.0.1:8080"
SOURCE_GRAFANA = "http://127.0.0.1:3000"
_DASHBOARD_LINE = re.compile(r"^[ \t]*dashboard_url:[ \t]*" + re.escape(SOURCE_GRAFANA)
                             + r"\S*[ \t]*\n", re.M)


@dataclass(frozen=True)
class Links:
    """The external bases of the stack: bridge (runbooks, rules API), Grafana, Prometheus, AM."""

    bridge: str
    grafana: str | None
    prometheus: str
    alertmanager: str


def local_url(listen: str) -> str:
    """http://host:port for a listen address (all interfaces: the loopback)."""
    host, port = split_listen(listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{port}"


def links(cfg: Config) -> Links:
    """The configured external URLs, each defaulting to where the local stack serves it."""
    def base(url: str | None) -> str | None:
        return url.rstrip("/") if url else None

    return Links(
        bridge=base(cfg.bridge.get("external_url")) or local_url(cfg.bridge.listen),
        grafana=base(cfg.get("grafana", {}).get("url")),
        prometheus=base(cfg.prometheus.get("external_url")) or base(cfg.prometheus.url),
        alertmanager=base(cfg.alertmanager.get("external_url")) or base(cfg.alertmanager.url),
    )


def fill(text: str, bases: Links) -> str:
    """A rule file's text with its links on the configured bases (dashboard lines dropped
    when there is no Grafana)."""
    if bases.grafana is None:
        text = _DASHBOARD_LINE.sub("", text)
    else:
        text = text.replace(SOURCE_GRAFANA + "/", bases.grafana + "/")
    return text.replace(SOURCE_BRIDGE + "/", bases.bridge + "/")
