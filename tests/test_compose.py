"""docker-compose.yml: valid against the compose spec, and the same topology as `pulse up`."""

import subprocess
import sys
from pathlib import Path

import yaml

from pulse.config import load_config
from pulse.launcher.render import (
    COMPOSE_HOSTS,
    alertmanager_config,
    dump,
    prometheus_config,
    targets,
)
from pulse.paths import ROOT

ENV = {"PULSE_ADMIN_TOKEN": "a" * 32, "PULSE_PRIVACY_SALT": "s" * 32}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_compose_spec():
    exe = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec",
                             str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_native_component_is_a_compose_service_on_the_same_port():
    native = load_config(ROOT / "pulse.yml", env=ENV)
    for t in targets(native, demo=True):
        service = COMPOSE["services"][COMPOSE_HOSTS[t.job]]
        published = [str(p).split(":") for p in service.get("ports", [])]
        assert [str(t.port), str(t.port)] in published, (t.job, service.get("ports"))
    assert "grafana" in COMPOSE["services"]
    assert "simulator" in COMPOSE["services"]


def test_compose_pulse_config_uses_the_native_ports():
    native = load_config(ROOT / "pulse.yml", env=ENV)
    compose = load_config(ROOT / "deploy/compose/pulse.yml", env=ENV)
    assert [(t.job, t.port) for t in targets(native, demo=True)] == \
        [(t.job, t.port) for t in targets(compose, demo=True)]


def test_committed_compose_configs_are_up_to_date():
    compose = load_config(ROOT / "deploy/compose/pulse.yml", env=ENV)
    prom = ROOT / "deploy/compose/prometheus.yml"
    am = ROOT / "deploy/compose/alertmanager.yml"
    hint = ("regenerate with: pulse render --config deploy/compose/pulse.yml "
            "--compose deploy/compose")
    assert prom.read_text() == dump(prometheus_config(compose, demo=True, compose=True)), hint
    assert am.read_text() == dump(alertmanager_config(compose, compose=True)), hint


def test_compose_scrapes_the_same_jobs_as_native():
    native = load_config(ROOT / "pulse.yml", env=ENV)
    compose = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    native_jobs = {t.job: t.port for t in targets(native, demo=True)}
    for job in compose["scrape_configs"]:
        host, port = job["static_configs"][0]["targets"][0].split(":")
        assert host == COMPOSE_HOSTS[job["job_name"]]
        assert int(port) == native_jobs[job["job_name"]]
    assert {j["job_name"] for j in compose["scrape_configs"]} == set(native_jobs)


def test_grafana_is_provisioned_with_datasource_and_dashboards():
    grafana = COMPOSE["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/generated"
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    assert ds["datasources"][0]["uid"] == "pulse-prometheus"
    prov = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/pulse.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_ha_option_runs_the_launchers_cluster_and_prometheus_sends_to_every_peer():
    from pulse.launcher.render import alertmanager_peers, compose_host
    from pulse.launcher.supervisor import peer_argv

    ha = load_config(ROOT / "deploy/compose/ha/pulse.yml", env=ENV)
    override = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())
    peers = alertmanager_peers(ha)
    hosts = [compose_host("alertmanager", p.index) for p in peers]
    assert len(peers) == 3
    for peer, host in zip(peers, hosts, strict=True):
        assert override["services"][host]["command"] == peer_argv(
            ha, peer, "/etc/alertmanager/alertmanager.yml", "/alertmanager",
            listen_host="0.0.0.0", peer_hosts=hosts)[1:]  # the image's entrypoint
    prom = ROOT / "deploy/compose/ha/prometheus.yml"
    assert prom.read_text() == dump(prometheus_config(ha, demo=True, compose=True)), \
        "regenerate with: pulse render --config deploy/compose/ha/pulse.yml --compose " \
        "deploy/compose/ha (then delete its alertmanager.yml: the stack's one is used)"
    doc = yaml.safe_load(prom.read_text())
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093", "alertmanager-2:9095", "alertmanager-3:9097"]


def test_events_ha_profile_runs_the_rendered_jetstream_topology():
    from pulse.config import listen_list
    from pulse.launcher.render import compose_host, compose_nats_configs, nats_nodes
    from pulse.launcher.supervisor import nats_argv

    here = ROOT / "deploy/compose/events-ha"
    ha = load_config(here / "pulse.yml", env=ENV)
    section = ha.exporters.events
    assert section.log.kind == "jetstream" and not ha.nats.manage
    services = {name: s for name, s in COMPOSE["services"].items()
                if "events-ha" in s.get("profiles", [])}
    hint = ("regenerate with: pulse render --config deploy/compose/events-ha/pulse.yml "
            "--compose deploy/compose/events-ha (then delete its alertmanager.yml)")
    # 3 NATS nodes, each on its rendered config; the configs are what pulse renders.
    nodes = nats_nodes(section.log.servers)
    assert len(nodes) == 3
    for name, text in compose_nats_configs(ha).items():
        assert (here / name).read_text() == text, hint
    for node in nodes:
        service = services[compose_host("nats", node.index)]
        conf = f"/etc/nats/{node.name}.conf"
        assert service["command"] == nats_argv(conf)[1:]  # the image's entrypoint
        assert f"./deploy/compose/events-ha/{node.name}.conf:{conf}:ro" in service["volumes"]
        assert node.host == compose_host("nats", node.index)
    # 2 intakes and 2 aggregators, each on its listen address of the rendered config.
    expected = {}
    for module, key, addresses in (
            ("exporters.events", "events-ha", listen_list(section.listen)),
            ("exporters.events.aggregator", "events-aggregator", section.aggregators.listen)):
        assert len(addresses) == 2
        for i, address in enumerate(addresses):
            expected[compose_host(key, i)] = (module, address)
    for name, (module, address) in expected.items():
        service = services[name]
        assert service["command"] == ["python", "-m", module, "--listen", address]
        port = address.rsplit(":", 1)[1]
        assert service["ports"] == [f"{port}:{port}"]
        assert service["environment"]["PULSE_CONFIG"] == "/etc/pulse/events-ha.yml"
        assert "./deploy/compose/events-ha/pulse.yml:/etc/pulse/events-ha.yml:ro" in \
            service["volumes"]
    assert set(services) == set(expected) | {compose_host("nats", n.index) for n in nodes}
    # Prometheus's config for the profile scrapes exactly those intakes and aggregators.
    prom = here / "prometheus.yml"
    assert prom.read_text() == dump(prometheus_config(ha, demo=True, compose=True)), hint
    doc = yaml.safe_load(prom.read_text())
    events = next(j for j in doc["scrape_configs"] if j["job_name"] == "events")
    assert events["static_configs"][0]["targets"] == [
        f"{name}:{address.rsplit(':', 1)[1]}" for name, (_, address) in expected.items()
        if name.startswith("events-ha")] + [
        f"{name}:{address.rsplit(':', 1)[1]}" for name, (_, address) in expected.items()
        if name.startswith("events-aggregator")]
    volume = COMPOSE["services"]["prometheus"]["volumes"][0]
    assert volume.startswith("${PULSE_PROMETHEUS_CONFIG:-./deploy/compose/prometheus.yml}:")
