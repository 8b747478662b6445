"""Generated configuration: prometheus.yml and alertmanager.yml for a Pulse stack.

One function decides the topology (which jobs scrape which address); the native
stack and docker-compose both render from it, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pulse.config import Config, listen_list, split_listen, url_host_port
from pulse.launcher.scrape import scrape_configs
from pulse.links import SOURCE_BRIDGE, local_url
from pulse.paths import ALERTMANAGER_DIR, bridge_rules_dir

# The bridge address the committed alertmanager/alertmanager.yml points at;
# rendering rewrites it to the configured (or compose) bridge address.
DEFAULT_BRIDGE_BASE = SOURCE_BRIDGE

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


def compose_host(job: str, index: int = 0) -> str:
    """The compose service of a job's index-th process (alertmanager-2, -3 for peers; a name
    that is no job, e.g. events-aggregator, is its own service)."""
    base = COMPOSE_HOSTS.get(job, job)
    return base if index == 0 else f"{base}-{index + 1}"


@dataclass(frozen=True)
class Target:
    """One scrape job: its name, the host and port it listens on, and its config key."""

    job: str
    host: str
    port: int
    config_key: str
    metrics_path: str = "/metrics"
    service: str | None = None  # its compose service, when not compose_host(job, index)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Peer:
    """One Alertmanager of the cluster: web port (url's + 2i) and gossip port (the next)."""

    index: int
    host: str
    port: int

    @property
    def gossip_port(self) -> int:
        return self.port + 1

    @property
    def name(self) -> str:
        return "alertmanager" if self.index == 0 else f"alertmanager-{self.index + 1}"


def alertmanager_peers(cfg: Config) -> list[Peer]:
    """The Alertmanager peers `pulse up` runs (alertmanager.replicas), each two ports above."""
    host, port = url_host_port(cfg.alertmanager.url)
    return [Peer(i, host, port + 2 * i) for i in range(cfg.alertmanager.get("replicas", 1))]


def targets(cfg: Config, demo: bool = False) -> list[Target]:
    """Every scrape job of the stack, in start order."""
    out = []
    host, port = url_host_port(cfg.prometheus.url)
    out.append(Target("prometheus", host, port, "prometheus.url"))
    for i, peer in enumerate(alertmanager_peers(cfg)):
        out.append(Target("alertmanager", peer.host, peer.port,
                          "alertmanager.url" if i == 0
                          else f"alertmanager.replicas (peer {i + 1})"))
    for name, section in cfg.exporters.items():
        if not section.enabled:
            continue
        addresses = listen_list(section.listen)
        jetstream = name == "events" and section.log.kind == "jetstream"
        for i, address in enumerate(addresses):
            host, port = split_listen(address)
            key = f"exporters.{name}.listen" + (f"[{i}]" if len(addresses) > 1 else "")
            # docker-compose's events-ha profile: intakes events-ha, events-ha-2, ...
            service = compose_host("events-ha", i) if jetstream else None
            out.append(Target(name, host, port, key, service=service))
        if jetstream:
            # The counts are the aggregators': same job, Prometheus sums across them.
            for i, address in enumerate(section.aggregators.listen):
                host, port = split_listen(address)
                out.append(Target("events", host, port,
                                  f"exporters.events.aggregators.listen[{i}]",
                                  service=compose_host("events-aggregator", i)))
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


def rendered_rules_dir(data_dir: str | Path, demo: bool = False) -> Path:
    """Where Prometheus loads the shipped rules from: rules/ with this stack's links filled in."""
    return demo_rules_dir(data_dir) if demo else Path(data_dir) / "prometheus" / "rules"


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
    """prometheus.yml for this configuration (compose=True: container addresses; replica:
    which of prometheus.replicas this file is for, when there are several)."""
    def addr(t: Target, i: int = 0) -> str:
        if not compose:
            return t.address
        return f"{t.service or compose_host(t.job, i)}:{t.port}"

    if compose:
        rule_files = ["/etc/pulse/rules/*.rules.yml", "/data/rules/*.yml"]
    else:
        # Rendered copies of rules/ (links filled in; on demo time with --demo).
        rules = rendered_rules_dir(cfg.data_dir, demo)
        rule_files = [str(rules / "*.rules.yml"),
                      str(bridge_rules_dir(cfg.data_dir) / "*.yml")]
    ams = [t for t in targets(cfg, demo) if t.job == "alertmanager"]
    jobs: dict[str, list[Target]] = {}
    for t in targets(cfg, demo):
        jobs.setdefault(t.job, []).append(t)
    doc: dict = {
        "global": {
            "scrape_interval": cfg.prometheus.scrape_interval,
            "evaluation_interval": cfg.prometheus.evaluation_interval,
            "external_labels": {"stack": "pulse"},
        },
        "rule_files": rule_files,
        # Every Alertmanager peer gets every alert; the peers deduplicate among themselves.
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [addr(t, i) for i, t in enumerate(ams)]}]}]},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": ts[0].metrics_path,
                "static_configs": [{"targets": [addr(t, i) for i, t in enumerate(ts)]}],
            }
            for job, ts in jobs.items()
        ] + scrape_configs(cfg),
    }
    replicated = replica is not None and cfg.prometheus.get("replicas", 1) > 1
    if replicated:
        # An HA pair: each replica says which it is, and Alertmanager must see the pair's
        # alerts as one, so the label is dropped from alerts (and from the tiers' writes).
        doc["global"]["external_labels"]["replica"] = str(replica)
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
        base = local_url(cfg.bridge.listen)
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


@dataclass(frozen=True)
class NatsNode:
    """One nats-server of `exporters.events.log.servers`: its ports and store."""

    index: int
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"n{self.index + 1}"

    @property
    def cluster_port(self) -> int:
        return self.port + 2000

    @property
    def monitor_port(self) -> int:
        return self.port + 4000

    @property
    def ready_url(self) -> str:
        # 200 only once JetStream has a meta leader (a quorum of a cluster is up).
        return f"http://{self.host}:{self.monitor_port}/healthz"


def nats_nodes(servers) -> list[NatsNode]:
    """The nodes of log.servers (route port = client + 2000, monitor = client + 4000)."""
    out = []
    for i, url in enumerate(servers):
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        out.append(NatsNode(i, host, int(port)))
    return out


def compose_nats_configs(cfg: Config) -> dict[str, str]:
    """n<i>.conf of every NATS node for docker-compose (a container each, listening on all
    interfaces, its store on its own volume at /data/nats/n<i>); none with the local log."""
    log = cfg.exporters.events.log
    if log.kind != "jetstream":
        return {}
    nodes = nats_nodes(log.servers)
    return {f"{n.name}.conf": nats_config(nodes, n.index, f"/data/nats/{n.name}",
                                          listen_host="0.0.0.0") for n in nodes}


def nats_config(nodes: list[NatsNode], index: int, store_dir: str | Path,
                listen_host: str | None = None) -> str:
    """nats-server.conf of one node: JetStream on, a cluster route to every node when several
    (listen_host: where it listens, when not its address's host, e.g. 0.0.0.0 in a container)."""
    node = nodes[index]
    at = listen_host or node.host
    lines = [f"server_name: {node.name}", f"listen: {at}:{node.port}",
             f"http: {at}:{node.monitor_port}",
             "jetstream {", f'  store_dir: "{store_dir}"', "  max_memory_store: 64MB",
             "  max_file_store: 4GB", "}"]
    if len(nodes) > 1:
        routes = "\n".join(f"    nats-route://{n.host}:{n.cluster_port}" for n in nodes)
        lines += ["cluster {", "  name: pulse", f"  listen: {at}:{node.cluster_port}",
                  "  routes: [", routes, "  ]", "}"]
    return "# Generated by `pulse` from pulse.yml; edit the source, not this file.\n" + \
        "\n".join(lines) + "\n"
