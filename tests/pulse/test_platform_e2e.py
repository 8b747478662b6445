"""Pulse monitoring a platform service of its own: real Prometheus, Alertmanager and bridge.

The service is tests/pulse/shop_app.py (neither Pulse nor the demo), instrumented with
exporters/instrument.py and added through `prometheus.scrape`. Everything Pulse renders
(prometheus.yml, the rules with their links, alertmanager.yml, the command lines with the
external URLs) comes from `pulse.launcher.supervisor`; only the clock is shortened: the
rules are rewritten on demo time and Alertmanager's group timers shortened, as
`pulse up --demo` does, so the latency alert fires within a minute.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from pulse.config import load_config
from pulse.fileio import write_atomic
from pulse.launcher.demotime import write_rules
from pulse.launcher.render import alertmanager_config, dump, rendered_rules_dir
from pulse.launcher.supervisor import plan, render_configs
from pulse.links import fill, links
from pulse.paths import ROOT
from tests import harness
from tests.harness import free_port, wait_until

pytestmark = pytest.mark.integration

EXTERNAL = {
    "prometheus": "https://prometheus.fit.example",
    "alertmanager": "https://alertmanager.fit.example",
    "bridge": "https://pulse.fit.example",
    "grafana": "https://grafana.fit.example",
}
# Demo-time factor for the shipped rules: `for: 5m` -> 10 s, [5m] -> 20 s (the floor).
SCALE = 30


class Shop:
    """One shop_app process on a free port."""

    def __init__(self, workdir: Path, name: str):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.process = harness.Process(
            [sys.executable, "-m", "tests.pulse.shop_app", "--port", str(self.port)],
            workdir / f"{name}.log", cwd=ROOT)
        self.process.wait_http(f"{self.url}/-/ready")

    def set_delay(self, seconds: float) -> None:
        """How long each order request takes from now on."""
        requests.put(f"{self.url}/admin/delay", data=str(seconds), timeout=10)


class Traffic:
    """A few clients requesting orders until stopped."""

    def __init__(self, url: str, clients: int = 3):
        self.url = url
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                requests.get(f"{self.url}/api/orders/{i}-{n}", timeout=30)
            except requests.RequestException:
                time.sleep(0.2)
            time.sleep(0.1)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(35)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """The shop, its traffic, and Pulse's Prometheus, Alertmanager and bridge rendered
    from a pulse.yml with prometheus.scrape and every external URL set."""
    harness.require_binary("prometheus")
    harness.require_binary("prometheus-alertmanager")
    work = tmp_path_factory.mktemp("platform")
    shop = Shop(work, "shop")
    sink = harness.WebhookSink().start()
    targets_dir = work / "targets"
    targets_dir.mkdir()
    config_path = work / "pulse.yml"
    harness.write_pulse_config(
        config_path, work / "data",
        prometheus={"external_url": EXTERNAL["prometheus"], "scrape_interval": "1s",
                    "evaluation_interval": "1s",
                    "scrape": [
                        {"job": "shop-api", "targets": [shop.address],
                         "labels": {"env": "test", "team_owner": "shop"}},
                        {"job": "shop-workers", "file_sd": [str(targets_dir / "*.json")],
                         "labels": {"env": "test"}},
                    ]},
        alertmanager={"external_url": EXTERNAL["alertmanager"]},
        bridge={"external_url": EXTERNAL["bridge"],
                "channels": {"pager": [f"json://127.0.0.1:{sink.port}/notify"]},
                "receivers": {"default": ["pager"]}},
        grafana={"url": EXTERNAL["grafana"]})
    env = harness.pulse_env(work / "data")
    cfg = load_config(config_path, env=env)
    paths = render_configs(cfg, demo=False)
    bases = links(cfg)
    write_rules(rendered_rules_dir(cfg.data_dir), SCALE, min_for=2,
                fill=lambda text: fill(text, bases))
    write_atomic(paths["alertmanager"], dump(alertmanager_config(cfg, demo=True)), mode=0o600)
    comps = {c.name: c for c in plan(cfg)}
    procs = []
    for name in ("alertmanager", "prometheus"):
        comp = comps[name]
        proc = harness.Process(comp.argv, comp.log_path)
        proc.wait_http(comp.ready_url, timeout=60)
        procs.append(proc)
    bridge = harness.start_service("bridge", config_path, env, cfg.bridge.listen,
                                   work / "bridge.log", timeout=60)
    traffic = Traffic(shop.url)
    yield {"cfg": cfg, "shop": shop, "sink": sink, "targets_dir": targets_dir,
           "prom": cfg.prometheus.url, "work": work, "paths": paths}
    traffic.stop()
    bridge.stop()
    for proc in reversed(procs):
        proc.stop()
    shop.process.stop()
    sink.stop()


def _targets(prom: str) -> list[dict]:
    resp = requests.get(f"{prom}/api/v1/targets", params={"state": "active"}, timeout=10)
    return resp.json()["data"]["activeTargets"]


def _query(prom: str, expr: str) -> list[dict]:
    resp = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    return resp.json()["data"]["result"]


def test_the_platform_service_is_up_with_its_job_and_labels(platform):
    shop = platform["shop"]
    result = wait_until(lambda: _query(platform["prom"], 'up{job="shop-api"} == 1'), 60,
                        message="up{job=shop-api} == 1")
    labels = result[0]["metric"]
    assert labels == {"__name__": "up", "job": "shop-api", "instance": shop.address,
                      "env": "test", "team_owner": "shop"}
    # Its requests reach the application recording rules, which select no job.
    wait_until(lambda: _query(platform["prom"],
                              'route:http_server_requests:rate5m{http_route="/api/orders/{id}"}'),
               60, message="the route's request rate")


def test_the_rendered_prometheus_config_holds_no_secret_and_the_external_url(platform):
    text = platform["paths"]["prometheus"].read_text()
    assert "shop-api" in text and "shop-workers" in text
    assert "credentials" not in text and "password" not in text
    flags = requests.get(f"{platform['prom']}/api/v1/status/flags", timeout=10).json()["data"]
    assert flags["web.external-url"] == EXTERNAL["prometheus"]
    assert flags["storage.tsdb.retention.time"] == "1d"


def test_a_target_written_to_a_file_sd_file_appears_without_a_restart(platform):
    shop = platform["shop"]
    second = Shop(platform["work"], "shop-worker")
    try:
        write_atomic(platform["targets_dir"] / "workers.json",
                     json.dumps([{"targets": [second.address], "labels": {"pool": "blue"}}]))
        result = wait_until(lambda: _query(platform["prom"], 'up{job="shop-workers"} == 1'),
                            60, message="the file_sd target up")
        assert result[0]["metric"]["instance"] == second.address
        assert result[0]["metric"]["pool"] == "blue"
        assert result[0]["metric"]["env"] == "test"
        # Scaling out: a second instance joins the job; the health API counts the event.
        write_atomic(platform["targets_dir"] / "workers.json",
                     json.dumps([{"targets": [second.address, shop.address],
                                  "labels": {"pool": "blue"}}]))
        wait_until(lambda: len(_query(platform["prom"], 'up{job="shop-workers"} == 1')) == 2,
                   60, message="both file_sd targets up")
        health = f"http://{platform['cfg'].bridge.listen}/api/analytics/health"

        def scaled():
            body = requests.get(health, timeout=30).json()
            events = body["metrics"]["infrastructure"]["scalingEvents"]
            return body if events is not None and events >= 1 else None

        body = wait_until(scaled, 60, message="a scaling event in the health API")
        assert "targets per job" in body["metricSources"]["infrastructure.scalingEvents"]
    finally:
        second.process.stop()


def test_a_slow_service_pages_with_links_on_the_external_urls(platform):
    shop, sink = platform["shop"], platform["sink"]
    wait_until(lambda: _query(platform["prom"], 'up{job="shop-api"} == 1'), 60,
               message="the shop scraped")
    shop.set_delay(2.2)

    def page():
        for body in sink.json_bodies("/notify"):
            if "ApiLatencyP95High" in body.get("title", "") and \
                    body["title"].startswith("[FIRING"):
                return body
        return None

    msg = wait_until(page, 180, message="the ApiLatencyP95High page at the channel")
    text = msg["message"]
    assert "http_route=/api/orders/{id}" in text
    assert f"Runbook: {EXTERNAL['bridge']}/runbooks#apilatencyp95high" in text
    assert f"Dashboard: {EXTERNAL['grafana']}/d/pulse-system" in text
    assert f"Source: {EXTERNAL['prometheus']}/graph?g0.expr=" in text
    assert "127.0.0.1" not in text
    # Alertmanager's own link is on its external URL, and so is every generatorURL.
    assert f"Alertmanager: {EXTERNAL['alertmanager']}/#/alerts" in text
    am = platform["cfg"].alertmanager.url
    alerts = requests.get(f"{am}/api/v2/alerts", params={"filter": "alertname=ApiLatencyP95High"},
                          timeout=10).json()
    assert alerts and all(a["generatorURL"].startswith(EXTERNAL["prometheus"] + "/")
                          for a in alerts)


def test_the_system_dashboard_shows_the_platform_service(platform):
    from pulse.dashboards import check, load_all, metric_names, queries

    doc = load_all()["system"]
    http = [q for q in queries("system", doc)
            if any(n.startswith("route:http_server") for n in metric_names(q.expr))]
    assert len(http) >= 3

    def outcomes():
        end = time.time()
        out = [o for o in check(platform["prom"], end - 60, end, step=5, scrape_s=1,
                                docs={"system": doc}) if o.query in http]
        return out if all(o.ok for o in out) else None

    wait_until(outcomes, 90, message="the system dashboard's HTTP panels on the shop's data")
