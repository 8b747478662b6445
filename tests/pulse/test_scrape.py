"""prometheus.scrape: schema and check errors with their paths, rendered jobs, no secret in
prometheus.yml, and every link on the external URLs once they are set."""

import os
import re
import stat
import subprocess

import pytest
import yaml

from bridge.services.rule_compiler import compile_rule, validate_request
from pulse.config import ConfigError, validate
from pulse.launcher import cli
from pulse.launcher.render import dump, prometheus_config
from pulse.launcher.scrape import PULSE_JOBS, problems
from pulse.launcher.supervisor import plan, render_configs, status
from pulse.links import SOURCE_BRIDGE, SOURCE_GRAFANA, links
from pulse.paths import ALERTMANAGER_DIR, ROOT
from pulse.service import config_secrets
from tests import harness

ENV = {"PULSE_ADMIN_TOKEN": "a" * 32, "PULSE_PRIVACY_SALT": "s" * 32,
       "API_METRICS_TOKEN": "api-metrics-secret-123", "HOSTS_PASSWORD": "hosts-secret-456"}
EXTERNAL = {"prometheus": {"external_url": "https://prometheus.fit.example"},
            "alertmanager": {"external_url": "https://alertmanager.fit.example"},
            "bridge": {"external_url": "https://pulse.fit.example"},
            "grafana": {"url": "https://grafana.fit.example"}}
URL = re.compile(r"https?://[^\s'\"]+")
API_RULE = {"name": "CheckoutSlow", "description": "Checkout is slow.",
            "metric": "http_server_request_duration_seconds",
            "condition": {"operator": ">", "aggregation": "p95", "window": "5m", "for": "2m"},
            "thresholds": [{"severity": "warning", "value": 2}],
            "notificationChannels": ["demo"]}


def _bases(cfg) -> tuple[str, str | None]:
    bases = links(cfg)
    return bases.bridge, bases.grafana


def scrape_cfg(tmp_path, entries, **extra):
    """A validated config with these scrape entries."""
    doc = {"data_dir": str(tmp_path / "data"), "prometheus": {"scrape": entries}}
    for key, value in extra.items():
        doc.setdefault(key, {}).update(value)
    return validate(doc, "pulse.yml", ENV)


def schema_problems(entries, env=ENV):
    with pytest.raises(ConfigError) as info:
        validate({"prometheus": {"scrape": entries}}, "pulse.yml", env)
    return dict(info.value.problems)


def test_schema_names_each_bad_key_with_its_path():
    found = schema_problems([
        {"job": "api", "targets": ["10.0.0.5:8000", "10.0.0.6"],
         "tls": {"ca_file": "/x", "server_nme": "api.internal"}, "scheme": "ftp"},
        {"job": "hosts", "file_sd": ["/etc/pulse/targets/hosts/*.txt"],
         "bearer_token": "${UNSET_TOKEN}"},
    ], env={k: v for k, v in ENV.items()})
    assert found["prometheus.scrape[0].targets[1]"] == \
        "'10.0.0.6' does not match the expected form 'host:port'"
    assert found["prometheus.scrape[0].tls.server_nme"].startswith("unknown key (allowed: ca_file")
    assert "prometheus.scrape[0].scheme" in found
    assert "form 'a path ending in .json, .yml or .yaml'" in \
        found["prometheus.scrape[1].file_sd[0]"]
    assert found["prometheus.scrape[1].bearer_token"] == \
        "environment variable UNSET_TOKEN is not set"


def test_duplicate_jobs_and_labels_that_pulse_owns_are_refused():
    found = schema_problems([{"job": "a", "targets": ["h:1"]},
                             {"job": "a", "targets": ["h:2"], "labels": {"instance": "x"}}])
    assert "duplicate job 'a'" in found["prometheus.scrape"]
    assert "prometheus.scrape[1].labels" in found


def test_checks_name_the_colliding_job_the_missing_directory_and_the_files(tmp_path):
    cfg = scrape_cfg(tmp_path, [
        {"job": "bridge", "targets": ["127.0.0.1:9100"]},
        {"job": "hosts", "file_sd": [str(tmp_path / "nowhere" / "*.json")]},
        {"job": "both", "targets": ["h:1"], "file_sd": [str(tmp_path / "*.json")]},
        {"job": "tls", "targets": ["h:99999"],
         "tls": {"ca_file": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "c.pem")}},
        {"job": "glob", "file_sd": [str(tmp_path / "*" / "x.json")]},
    ])
    found = dict(problems(cfg))
    assert found["prometheus.scrape[0].job"].startswith(
        "job 'bridge' collides with Pulse's own scrape job 'bridge'")
    assert "does not exist" in found["prometheus.scrape[1].file_sd[0]"]
    assert found["prometheus.scrape[2]"] == "give either targets or file_sd (exactly one of them)"
    assert found["prometheus.scrape[3].targets[0]"] == "port 99999 is out of range 1-65535"
    assert found["prometheus.scrape[3].tls.ca_file"] == f"cannot read {tmp_path / 'ca.pem'}"
    assert "go together" in found["prometheus.scrape[3].tls"]
    assert "only in the file name" in found["prometheus.scrape[4].file_sd[0]"]
    assert set(PULSE_JOBS) >= {c.name for c in plan(cfg, demo=True) if c.port} - \
        {"payments", "demo-sink"}


def test_check_config_prints_one_line_per_problem(tmp_path, capsys, monkeypatch):
    path = tmp_path / "pulse.yml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "d"), "prometheus": {"scrape": [
        {"job": "events", "targets": ["h:1"]},
        {"job": "hosts", "file_sd": [str(tmp_path / "missing" / "*.json")]}]}}))
    assert cli.main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "prometheus.scrape[0].job: job 'events' collides" in err
    assert "prometheus.scrape[1].file_sd[0]: directory" in err


def test_rendered_jobs_keep_credentials_in_0600_files(tmp_path):
    promtool = harness.require_binary("promtool")
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "targets").mkdir()
    cfg = scrape_cfg(tmp_path, [
        {"job": "fitness-api", "targets": ["10.0.0.5:8000", "10.0.0.6:8000"],
         "labels": {"env": "prod"}, "scheme": "https", "interval": "30s",
         "bearer_token": "${API_METRICS_TOKEN}",
         "tls": {"ca_file": str(tmp_path / "ca.pem"), "server_name": "api.internal"}},
        {"job": "hosts", "file_sd": [str(tmp_path / "targets" / "*.json")],
         "labels": {"env": "prod"},
         "basic_auth": {"username": "prom", "password": "${HOSTS_PASSWORD}"}},
    ])
    paths = render_configs(cfg, demo=False)
    text = paths["prometheus"].read_text()
    for secret in (ENV["API_METRICS_TOKEN"], ENV["HOSTS_PASSWORD"]):
        assert secret not in text
        assert secret in config_secrets(cfg)  # redacted from every log
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    api, hosts = jobs["fitness-api"], jobs["hosts"]
    assert api["static_configs"] == [{"targets": ["10.0.0.5:8000", "10.0.0.6:8000"],
                                      "labels": {"env": "prod"}}]
    assert (api["scheme"], api["scrape_interval"], api["metrics_path"]) == \
        ("https", "30s", "/metrics")
    assert api["tls_config"] == {"ca_file": str(tmp_path / "ca.pem"),
                                 "server_name": "api.internal"}
    token_file = api["authorization"]["credentials_file"]
    password_file = hosts["basic_auth"]["password_file"]
    assert open(token_file).read() == ENV["API_METRICS_TOKEN"]
    assert open(password_file).read() == ENV["HOSTS_PASSWORD"]
    for f in (token_file, password_file):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert hosts["file_sd_configs"] == [{"files": [str(tmp_path / "targets" / "*.json")]}]
    assert hosts["relabel_configs"] == [{"target_label": "env", "replacement": "prod"}]
    result = subprocess.run([promtool, "check", "config", str(paths["prometheus"])],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_status_and_logs_do_not_carry_scrape_secrets(tmp_path):
    from pulse.log import redact, register_secrets

    cfg = scrape_cfg(tmp_path, [{"job": "api", "targets": ["h:1"],
                                 "bearer_token": "${API_METRICS_TOKEN}"}])
    register_secrets(config_secrets(cfg))
    assert ENV["API_METRICS_TOKEN"] not in redact(f"token {ENV['API_METRICS_TOKEN']}")
    rows = [" ".join(r) for r in status(cfg)]
    assert not any(ENV["API_METRICS_TOKEN"] in r for r in rows)


def test_external_urls_reach_the_command_lines_and_retention(tmp_path):
    cfg = scrape_cfg(tmp_path, [], prometheus={"retention_size": "20GB",
                                               **EXTERNAL["prometheus"]},
                     alertmanager=EXTERNAL["alertmanager"])
    comps = {c.name: c for c in plan(cfg)}
    prom, am = comps["prometheus"].argv, comps["alertmanager"].argv
    assert "--web.external-url=https://prometheus.fit.example" in prom
    assert "--storage.tsdb.retention.time=90d" in prom
    assert "--storage.tsdb.retention.size=20GB" in prom
    assert "--web.external-url=https://alertmanager.fit.example" in am


def _links(text: str) -> list[str]:
    return [u for u in URL.findall(text) if "127.0.0.1" in u or "localhost" in u]


def test_no_loopback_link_anywhere_once_external_urls_are_set(tmp_path):
    cfg = scrape_cfg(tmp_path, [], **EXTERNAL)
    paths = render_configs(cfg, demo=False)
    rule_files = sorted((tmp_path / "data" / "prometheus" / "rules").glob("*.rules.yml"))
    assert len(rule_files) >= 8
    annotations = 0
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                for key, value in (rule.get("annotations") or {}).items():
                    annotations += 1
                    assert not _links(value), (path.name, rule.get("alert"), key, value)
                if "alert" in rule:
                    ann = rule["annotations"]
                    assert ann["runbook_url"].startswith("https://pulse.fit.example/runbooks#")
                    assert ann["dashboard_url"].startswith("https://grafana.fit.example/d/")
    assert annotations > 100
    for template in (ALERTMANAGER_DIR / "templates").glob("*.tmpl"):
        assert not _links(template.read_text()), template
    # Alertmanager's links: its external URL; the webhooks to the bridge stay local.
    am = yaml.safe_load(paths["alertmanager"].read_text())
    hooks = [h["url"] for r in am["receivers"] for h in r.get("webhook_configs") or []]
    assert hooks and all(h.startswith(f"http://{cfg.bridge.listen}/hooks/") for h in hooks)
    assert not _links(dump({k: v for k, v in am.items() if k != "receivers"}))
    comps = {c.name: c for c in plan(cfg)}
    assert "--web.external-url=https://alertmanager.fit.example" in comps["alertmanager"].argv
    assert "--web.external-url=https://prometheus.fit.example" in comps["prometheus"].argv
    # The bridge's compiled rules use the same bases.
    req = validate_request(API_RULE, {"demo"})
    ann = compile_rule("r0123456789ab", req, *_bases(cfg))["rules"][0]["annotations"]
    assert ann["runbook_url"] == "https://pulse.fit.example/api/analytics/alerts/rules/" \
        "r0123456789ab"
    assert ann["dashboard_url"] == "https://grafana.fit.example/d/pulse-system"


def test_without_grafana_no_dashboard_link_is_rendered(tmp_path):
    cfg = scrape_cfg(tmp_path, [], bridge=EXTERNAL["bridge"])
    render_configs(cfg, demo=True)
    texts = [p.read_text() for p in (tmp_path / "data" / "demo" / "rules").glob("*.rules.yml")]
    assert texts and not any("dashboard_url" in t for t in texts)
    assert not any(SOURCE_GRAFANA in t or SOURCE_BRIDGE in t for t in texts)
    assert all("runbook_url: https://pulse.fit.example/runbooks#" in t
               for t in texts if "alert:" in t)
    assert prometheus_config(cfg)["rule_files"][0].endswith("/prometheus/rules/*.rules.yml")
    req = validate_request(API_RULE, {"demo"})
    ann = compile_rule("r0123456789ab", req, *_bases(cfg))["rules"][0]["annotations"]
    assert "dashboard_url" not in ann


def test_platform_target_down_excludes_exactly_pulses_own_jobs():
    doc = yaml.safe_load((ROOT / "rules" / "data-quality.rules.yml").read_text())
    (rule,) = [r for g in doc["groups"] for r in g["rules"]
               if r.get("alert") == "PlatformTargetDown"]
    excluded = re.search(r'job!~"([^"]+)"', rule["expr"]).group(1).split("|")
    assert sorted(excluded) == sorted(PULSE_JOBS)
