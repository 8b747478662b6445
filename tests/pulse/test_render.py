"""Generated configs are accepted by promtool and amtool, and compose matches the native stack."""

import subprocess

import yaml

from pulse.config import load_config, validate
from pulse.launcher.render import alertmanager_config, dump, prometheus_config, targets
from pulse.paths import ROOT
from tests import harness

ENV = {"PULSE_ADMIN_TOKEN": "a" * 32, "PULSE_PRIVACY_SALT": "s" * 32}


def test_native_prometheus_config_passes_promtool(tmp_path):
    promtool = harness.require_binary("promtool")
    cfg = validate({"data_dir": str(tmp_path)}, "x", ENV)
    path = tmp_path / "prometheus.yml"
    path.write_text(dump(prometheus_config(cfg, demo=True)))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(path.read_text())
    jobs = [s["job_name"] for s in doc["scrape_configs"]]
    assert jobs == ["prometheus", "alertmanager", "events", "infrastructure", "integrations",
                    "ai", "bridge", "demo"]
    assert doc["rule_files"][1] == f"{tmp_path}/rules/*.yml"
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        ["127.0.0.1:9093"]


def test_disabled_exporter_is_not_scraped():
    cfg = validate({"exporters": {"ai": {"enabled": False}}}, "x", ENV)
    assert "ai" not in [t.job for t in targets(cfg)]


def test_alertmanager_config_points_at_configured_bridge(tmp_path):
    amtool = harness.require_binary("amtool")
    cfg = validate({"bridge": {"listen": "127.0.0.1:18080"}}, "x", ENV)
    doc = alertmanager_config(cfg)
    urls = [w["url"] for r in doc["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://127.0.0.1:18080/") for u in urls)
    path = tmp_path / "alertmanager.yml"
    path.write_text(dump(doc))
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_remote_write_is_rendered():
    cfg = validate({"prometheus": {"remote_write": [{"url": "https://rw.invalid/api/v1/write",
                                                     "bearer_token": "${RW}"}]}},
                   "x", {**ENV, "RW": "secret-token"})
    doc = prometheus_config(cfg)
    assert doc["remote_write"] == [{"url": "https://rw.invalid/api/v1/write",
                                    "authorization": {"credentials": "secret-token"}}]


def test_shipped_config_renders():
    cfg = load_config(ROOT / "pulse.yml", env=ENV)
    assert [t.port for t in targets(cfg, demo=True)] == [9090, 9093, 9701, 9702, 9703, 9704,
                                                          8080, 8090]


def test_prometheus_replicas_are_planned_on_consecutive_ports_and_labelled(tmp_path):
    from pulse.launcher.supervisor import plan

    promtool = harness.require_binary("promtool")
    cfg = validate({"data_dir": str(tmp_path), "prometheus": {"replicas": 2}}, "x", ENV)
    proms = [c for c in plan(cfg) if c.name.startswith("prometheus")]
    assert [(c.name, c.port) for c in proms] == [("prometheus", 9090), ("prometheus-1", 9091)]
    assert len({a for c in proms for a in c.argv if a.startswith("--storage.tsdb.path")}) == 2
    for i in range(2):
        doc = prometheus_config(cfg, replica=i)
        assert doc["global"]["external_labels"]["replica"] == str(i)
        # Alertmanager sees the pair's identical alerts as one.
        assert doc["alerting"]["alert_relabel_configs"] == [
            {"action": "labeldrop", "regex": "replica"}]
        path = tmp_path / f"p{i}.yml"
        path.write_text(dump(doc))
        result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "replica" not in prometheus_config(
        validate({"data_dir": str(tmp_path)}, "x", ENV), replica=0)["global"]["external_labels"]


def test_alertmanager_replicas_are_a_gossip_cluster_on_the_design_ports(tmp_path):
    from pulse.launcher.supervisor import plan

    cfg = validate({"data_dir": str(tmp_path), "alertmanager": {"replicas": 3}}, "x", ENV)
    doc = prometheus_config(cfg)
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093", "127.0.0.1:9095", "127.0.0.1:9097"]
    ams = [c for c in plan(cfg) if c.name.startswith("alertmanager")]
    assert [c.name for c in ams] == ["alertmanager", "alertmanager-2", "alertmanager-3"]
    second = ams[1].argv
    assert "--cluster.listen-address=127.0.0.1:9096" in second
    assert {a for a in second if a.startswith("--cluster.peer=")} == {
        "--cluster.peer=127.0.0.1:9094", "--cluster.peer=127.0.0.1:9098"}
    assert f"--storage.path={tmp_path}/alertmanager/data-2" in second
    assert "--web.external-url=http://127.0.0.1:9095" in second
    # One Alertmanager (the default) keeps clustering off.
    single = [c for c in plan(validate({"data_dir": str(tmp_path)}, "x", ENV))
              if c.name.startswith("alertmanager")]
    assert len(single) == 1 and "--cluster.listen-address=" in single[0].argv
