"""Years of history and no single Prometheus, against the real servers (docs/scaling.md).

One `pulse up` runs the HA pair (two Prometheus replicas) and two VictoriaMetrics tiers;
the tests share it in order: remote write reaches each tier with only its series, a year
of the demo's history answers the 30-day-with-previous and 365-day reports through the
bridge, a SIGKILLed replica changes nothing for alerts, pages or queries, and a backup
restored into an empty data dir gives the same rules and the same answers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time

import pytest
import requests

from demo import history
from pulse.config import parse_duration
from pulse.promapi import PrometheusClient, ReadRouter, Tier
from tests import harness
from tests.longterm.stack import HaStack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
DEFAULT_KEEP = (".+:.+", "fitness_.+_(users|ratio)", "fitness_coach_.+",
                "business_subscriptions_active")


def vm(url: str, expr: str) -> list[dict]:
    """An instant query on a tier, caches off."""
    body = requests.get(f"{url}/api/v1/query", params={"query": expr, "nocache": "1"},
                        timeout=30).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def names(url: str) -> list[str]:
    """The metric names a tier holds."""
    return requests.get(f"{url}/api/v1/label/__name__/values", timeout=30).json()["data"]


def probe_pages(sink: harness.WebhookSink) -> list:
    """The notifications of the HA probe alert that reached the channel."""
    return [b for b in sink.json_bodies() if "HaPairProbe" in str(b)]


@pytest.fixture(scope="module")
def sink():
    """The page channel (apprise json:// posts here)."""
    s = harness.WebhookSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sink):
    """The running HA stack (pulse up); stopped at the end of the module."""
    harness.require_binary("victoria-metrics")
    harness.require_binary("vmbackup")
    harness.require_binary("vmrestore")
    s = HaStack(tmp_path_factory.mktemp("ha"), f"json://127.0.0.1:{sink.port}/notify")
    s.write_probe_rule()
    s.start()
    yield s
    s.stop()


def test_pulse_up_runs_the_pair_and_the_tiers(stack):
    pids = stack.pids()
    assert {"victoria-usage", "victoria-business", "prometheus", "prometheus-1"} <= set(pids)
    for i, url in enumerate(stack.prom_urls):
        cfg = PrometheusClient(url).runtimeinfo()
        assert cfg["reloadConfigSuccess"] is True
        labels = requests.get(f"{url}/api/v1/status/config", timeout=10).json()["data"]["yaml"]
        assert f"replica: \"{i}\"" in labels


def test_remote_write_reaches_each_tier_with_only_its_series(stack):
    # Recording rules over the stack's own metrics reach the usage tier within seconds.
    harness.wait_until(lambda: [n for n in names(stack.usage_url) if ":" in n], timeout=90,
                       message="recording rules in the usage tier")
    usage = names(stack.usage_url)
    assert all(any(re.fullmatch(k, n) for k in DEFAULT_KEEP) for n in usage), usage
    assert "up" not in usage and not any(n.endswith("_total") for n in usage)
    # The business tier holds only business series (here: none until history is loaded).
    assert all(re.fullmatch(".*business_.*", n) for n in names(stack.business_url))
    # The pair's copies are one series per tier: the replica label is dropped on write ...
    assert vm(stack.usage_url, 'count({replica!=""})') == []
    name = sorted(n for n in usage if ":" in n)[0]
    one = vm(stack.usage_url, f"count({name})")
    both = [PrometheusClient(u).query(f"count({name})") for u in stack.prom_urls]
    assert float(one[0]["value"][1]) == float(both[0][0]["value"][1])
    # ... and -dedup.minScrapeInterval keeps one sample per interval (1 s here), not two.
    samples = vm(stack.usage_url, f"max(count_over_time({name}[60s]))")
    assert float(samples[0]["value"][1]) <= 61


def test_a_year_of_history_answers_the_30_day_and_365_day_reports(stack):
    end = time.time()
    history.load(stack.usage_url, end=end, days=365, keep=DEFAULT_KEEP)
    history.load(stack.business_url, end=end, days=365, keep=(".*business_.*",))
    assert all(re.fullmatch(".*business_.*", n) for n in names(stack.business_url))
    report = stack.post("/api/analytics/reports/generate",
                        {"reportType": "executive", "timeRange": "30d",
                         "includeComparisons": True, "format": "json"})
    assert report["metadata"]["source"].startswith("long_term:"), report["metadata"]
    heads = {h["metric"]: h for h in report["headlines"]}
    for metric in ("revenue", "signups", "sessions", "active_users"):
        assert heads[metric]["value"] is not None, heads[metric]
        assert heads[metric]["previous"] is not None, heads[metric]
    # The history grows: this month's revenue is above the previous month's.
    assert heads["revenue"]["value"] > heads["revenue"]["previous"] > 0
    trend = stack.get("/api/analytics/metrics", metrics="revenue", timeRange="365d",
                      granularity="day")
    assert trend["metadata"]["source"] == "long_term:usage"
    points = [p["value"] for s in trend["data"] for p in s["points"]]
    assert len(trend["data"][0]["points"]) >= 364
    assert sum(v is not None for v in points) >= 0.99 * len(points)
    # Within Prometheus's retention the same API reads Prometheus.
    recent = stack.get("/api/analytics/metrics", metrics="revenue", timeRange="1h",
                       granularity="minute")
    assert recent["metadata"]["source"] == "prometheus"
    # The dashboards API follows the range too.
    dash = stack.get("/api/analytics/dashboards/business", **{"from": "now-90d"})
    assert "long_term:" in dash["metadata"]["source"]


def test_a_killed_replica_changes_nothing_for_alerts_pages_and_queries(stack, sink):
    am = stack.am

    def probe_alerts():
        return [a for a in requests.get(f"{am}/api/v2/alerts", timeout=10).json()
                if a["labels"]["alertname"] == "HaPairProbe"]

    harness.wait_until(lambda: probe_pages(sink), timeout=120, message="the probe's page")
    alerts = probe_alerts()
    assert len(alerts) == 1 and "replica" not in alerts[0]["labels"], alerts
    old = stack.pids()["prometheus"]
    # A crash of the supervisor's child, as the kernel's OOM killer would do it.
    os.kill(old, signal.SIGKILL)
    # Queries still answer (the other replica) while the killed one is down.
    answer = stack.get("/api/analytics/metrics", metrics="api_requests", timeRange="5m",
                       granularity="minute")
    assert answer["metadata"]["source"] == "prometheus"
    # The supervisor restarts it without hands; it loads the same rules.
    harness.wait_until(lambda: PrometheusClient(stack.prom_urls[0]).ready(), timeout=120,
                       message="replica 0 ready again")
    harness.wait_until(lambda: [r for g in PrometheusClient(stack.prom_urls[0]).rules()
                                for r in g["rules"] if r["name"] == "HaPairProbe"
                                and r["state"] == "firing"], timeout=60,
                       message="the probe firing on the restarted replica")
    # Both replicas send the alert again: still one alert, and no second page.
    # The prometheus job scrapes prometheus.url (the restarted replica 0): both replicas see
    # it up again before the pages are counted.
    replica_up = 'up{job="prometheus"} == 1'
    harness.wait_until(lambda: all(len(PrometheusClient(url).query(replica_up)) == 1
                                   for url in stack.prom_urls),
                       timeout=60, message="both replicas scraped the restarted one up")
    assert len(probe_alerts()) == 1
    sink_pages = len(probe_pages(sink))
    assert sink_pages == 1, probe_pages(sink)


def test_backup_wipe_restore_gives_the_same_rules_and_answers(stack, tmp_path):
    end = time.time() - 3 * 86400
    start = end - 300 * 86400
    params = {"metrics": "revenue", "start": f"{start:.0f}", "end": f"{end:.0f}",
              "granularity": "day"}
    before = stack.get("/api/analytics/metrics", **params)
    rules_before = sorted(g["name"] for g in PrometheusClient(stack.prom_urls[1]).rules())
    backup = tmp_path / "backup"
    done = stack.pulse("backup", str(backup))
    assert done.returncode == 0, done.stderr
    assert "victoria-usage: vmbackup" in done.stdout and "prometheus: snapshot" in done.stdout
    assert (backup / "manifest.json").exists()
    stack.stop()
    shutil.rmtree(stack.data)
    stack.data.mkdir()
    restored = stack.pulse("restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    stack.start()
    harness.wait_until(lambda: PrometheusClient(stack.prom_urls[0]).ready(), timeout=60)
    rules_after = sorted(g["name"] for g in PrometheusClient(stack.prom_urls[0]).rules())
    assert rules_after == rules_before
    after = stack.get("/api/analytics/metrics", **params)
    assert after["metadata"]["source"] == before["metadata"]["source"] == "long_term:usage"
    # The same points; values equal up to float rounding (a sum's order over the series
    # is not defined, and the restored index may list them in another order).
    assert [(d["labels"], [p["timestamp"] for p in d["points"]]) for d in after["data"]] == \
        [(d["labels"], [p["timestamp"] for p in d["points"]]) for d in before["data"]]
    old = [p["value"] for d in before["data"] for p in d["points"]]
    new = [p["value"] for d in after["data"] for p in d["points"]]
    assert [v is None for v in new] == [v is None for v in old]
    assert [v for v in new if v is not None] == pytest.approx(
        [v for v in old if v is not None], rel=1e-9)
    assert sum(v is not None for v in new) >= 290


def test_a_damaged_backup_is_refused_before_anything_is_written(stack, tmp_path):
    backup = tmp_path / "b"
    assert stack.pulse("backup", str(backup)).returncode == 0
    victim = next(p for p in sorted((backup / "state").rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"x")
    (tmp_path / "other").mkdir()
    other = HaStack(tmp_path / "other", "json://127.0.0.1:1/notify")
    res = other.pulse("restore", str(backup))
    assert res.returncode == 1 and "checksum differs" in res.stderr
    written = [p.name for p in other.data.iterdir()] if other.data.exists() else []
    assert set(written) <= {"secrets"}


def test_business_series_survive_the_usage_tiers_retention(tmp_path):
    # The usage tier's retention (1 d here) rejects and deletes older raw data; the
    # business tier (7 y) keeps the year. A read of the year goes to the business tier.
    usage = harness.VictoriaServer(tmp_path / "usage", retention="1d").start()
    business = harness.VictoriaServer(tmp_path / "business", retention="7y").start()
    try:
        end = time.time()
        history.load(usage.url, end=end, days=365, keep=DEFAULT_KEEP)
        history.load(business.url, end=end, days=365, keep=(".*business_.*",))
        expr = "sum(count_over_time(stream_currency:business_revenue:increase1h[400d]))"
        in_usage = float(usage.query(expr)[0]["value"][1])
        in_business = float(business.query(expr)[0]["value"][1])
        assert in_business == 3 * 365 * 24
        assert in_usage <= 3 * 2 * 24
        router = ReadRouter(None, parse_duration("15d"), [
            Tier("usage", usage.url, parse_duration("1d"), DEFAULT_KEEP),
            Tier("business", business.url, parse_duration("7y"), (".*business_.*",))])
        with ReadRouter.recording() as seen:
            rows = router.query_range("sum(stream_currency:business_revenue:increase1h)",
                                      end - 365 * 86400, end, 86400)
        assert seen == ["long_term:business"]
        assert sum(1 for _, v in rows[0]["values"]) >= 364
    finally:
        usage.stop()
        business.stop()
