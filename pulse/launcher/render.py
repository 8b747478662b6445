"""Generated configuration: prometheus.yml and alertmanager.yml for a Pulse stack.

One function decides the topology (which jobs scrape which address); the native
stack and docker-compose both render from it, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pulse.config import Config, prometheus_urls, split_listen, url_host_port
from pulse.paths import ALERTMANAGER_DIR, RULES_DIR, bridge_rules_dir

# The bridge address the committed alertmanager/alertmanager.yml points at;
# rendering rewrites it to the configured (or compose) bridge address.
DEFAULT_BRIDGE_BASE = "http://127.0.0.1:8080"

# Compose service name of every scrape job (and of Prometheus/Alertmanager).
COMPOSE_HOSTS = {
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
    "events": "events",
    "infrastructure": "infrastructure",
    "integrations": "integrations",
    "ai": "ai",
    "bridge": "bridge",
    "demo": "demo-app",
}


@dataclass(frozen=True)
class Target:
    """One scrape job: its name, the host and port it listens on, and its config key."""

    job: str
    host: str
    port: int
    config_key: str
    metrics_path: str = "/metrics"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def targets(cfg: Config, demo: bool = False) -> list[Target]:
    """Every scrape job of the stack, in start order."""
    out = []
    for url in prometheus_urls(cfg):
        # Every replica of an HA pair is a target of the one `prometheus` job.
        host, port = url_host_port(url)
        out.append(Target("prometheus", host, port, "prometheus.url"))
    host, port = url_host_port(cfg.alertmanager.url)
    out.append(Target("alertmanager", host, port, "alertmanager.url"))
    for name, section in cfg.exporters.items():
        if section.enabled:
            host, port = split_listen(section.listen)
            out.append(Target(name, host, port, f"exporters.{name}.listen"))
    if cfg.bridge.enabled:
        host, port = split_listen(cfg.bridge.listen)
        out.append(Target("bridge", host, port, "bridge.listen"))
    if demo:
        host, port = split_listen(cfg.demo.listen)
        out.append(Target("demo", host, port, "demo.listen"))
    return out


def demo_rules_dir(data_dir: str | Path) -> Path:
    """Where `pulse up --demo` writes the demo-time copies of rules/ (pulse.launcher.demotime)."""
    return Path(data_dir) / "demo" / "rules"


def long_term_tiers(cfg: Config) -> list:
    """The configured long-term tiers (empty unless long_term.enabled)."""
    lt = cfg.long_term
    return list(lt.tiers) if lt.enabled else []


def tier_remote_write(tier, replicated: bool) -> dict:
    """One tier's remote_write: only the names it keeps, without the replica label.

    Dropping `replica` makes the HA pair's two copies one series, which the tier's
    -dedup.minScrapeInterval then merges (notes: without it VictoriaMetrics keeps both).
    """
    relabel = [{"source_labels": ["__name__"], "regex": "|".join(f"(?:{k})" for k in tier.keep),
                "action": "keep"}]
    if replicated:
        relabel.append({"action": "labeldrop", "regex": "replica"})
    return {"name": tier.name, "url": tier.url.rstrip("/") + "/api/v1/write",
            "write_relabel_configs": relabel,
            # Nothing reads metadata from the tiers; it is a second stream for nothing.
            "metadata_config": {"send": False}}


def prometheus_config(cfg: Config, demo: bool = False, compose: bool = False,
                      replica: int | None = None) -> dict:
    """prometheus.yml for this configuration (compose=True: container addresses).

    replica: which member of an HA pair (prometheus.replicas > 1) the file is for; it
    gets the external label replica="<n>", dropped again from alerts and tier writes.
    """
    def addr(t: Target) -> str:
        return f"{COMPOSE_HOSTS[t.job]}:{t.port}" if compose else t.address

    if compose:
        rule_files = ["/etc/pulse/rules/*.rules.yml", "/data/rules/*.yml"]
    else:
        # The demo runs on demo time: rules come from their compressed copies.
        rules = demo_rules_dir(cfg.data_dir) if demo else RULES_DIR
        rule_files = [str(rules / "*.rules.yml"),
                      str(bridge_rules_dir(cfg.data_dir) / "*.yml")]
    am = next(t for t in targets(cfg, demo) if t.job == "alertmanager")
    doc: dict = {
        "global": {
            "scrape_interval": cfg.prometheus.scrape_interval,
            "evaluation_interval": cfg.prometheus.evaluation_interval,
            "external_labels": {"stack": "pulse"},
        },
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [addr(am)]}]}]},
        "scrape_configs": [],
    }
    jobs: dict[str, dict] = {}
    for t in targets(cfg, demo):
        if t.job in jobs:
            jobs[t.job]["static_configs"][0]["targets"].append(addr(t))
            continue
        jobs[t.job] = {"job_name": t.job, "metrics_path": t.metrics_path,
                       "static_configs": [{"targets": [addr(t)]}]}
        doc["scrape_configs"].append(jobs[t.job])
    replicated = replica is not None and cfg.prometheus.replicas > 1
    if replicated:
        doc["global"]["external_labels"]["replica"] = str(replica)
        # Alertmanager deduplicates identical alerts: the pair's differ only by replica.
        doc["alerting"]["alert_relabel_configs"] = [{"action": "labeldrop",
                                                     "regex": "replica"}]
    writes = [tier_remote_write(t, replicated) for t in long_term_tiers(cfg)]
    if writes:
        doc["remote_write"] = writes
    if cfg.prometheus.remote_write:
        doc.setdefault("remote_write", [])
        for rw in cfg.prometheus.remote_write:
            entry: dict = {"url": rw.url}
            if rw.get("bearer_token"):
                entry["authorization"] = {"credentials": rw.bearer_token}
            doc["remote_write"].append(entry)
    return doc


def _rewrite_urls(node, old: str, new: str):
    if isinstance(node, dict):
        return {k: _rewrite_urls(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_urls(v, old, new) for v in node]
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    return node


def alertmanager_config(cfg: Config, compose: bool = False, demo: bool = False) -> dict:
    """alertmanager.yml: the committed routing tree, pointed at the configured bridge."""
    doc = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text())
    if demo:
        from pulse.launcher.demotime import compress_routing

        doc = compress_routing(doc)
    if compose:
        base = f"http://{COMPOSE_HOSTS['bridge']}:{split_listen(cfg.bridge.listen)[1]}"
    else:
        host, port = split_listen(cfg.bridge.listen)
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base = f"http://{host}:{port}"
    doc = _rewrite_urls(doc, DEFAULT_BRIDGE_BASE, base)
    token = cfg.bridge.get("webhook_token")
    if token and not compose:
        # The bridge refuses webhooks without its token (bridge.webhook_token).
        for receiver in doc.get("receivers") or []:
            for hook in receiver.get("webhook_configs") or []:
                if hook.get("url", "").startswith(base):
                    hook.setdefault("http_config", {})["authorization"] = {
                        "type": "Bearer", "credentials": token}
    templates = doc.get("templates") or []
    if templates:
        root = "/etc/alertmanager/templates" if compose else str(ALERTMANAGER_DIR / "templates")
        doc["templates"] = [str(Path(root) / Path(t).name) for t in templates]
    return doc


def dump(doc: dict) -> str:
    """YAML text with a header saying it is generated."""
    header = "# Generated by `pulse` from pulse.yml; edit the source, not this file.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
