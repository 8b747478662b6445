"""The real intake process against real Prometheus: mapped series, and kill -9 during retries."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import pytest
import requests

from exporters.events.examples import EXAMPLES, example_event
from exporters.events.mapping import load_mapping
from pulse.config import load_config
from tests import harness

pytestmark = pytest.mark.integration
MODULE = "exporters.events"
COUNTERS = '{__name__=~"(fitness|business|ai|integration)_.+_total",instance="%s"}'


def expected_counters(events, cfg) -> dict:
    """What the mapping says these events add to each counter series."""
    mapping = load_mapping(None, cfg.privacy.pii_patterns.values())
    out = defaultdict(float)
    for event in events:
        for name, labels, amount in mapping.observe(event):
            d = mapping.metrics[name]
            if d.type != "histogram":
                out[(name, tuple(zip(d.labels, labels, strict=True)))] += amount
    return dict(out)


def prometheus_counters(prom, listen) -> dict:
    out = {}
    for item in prom.query(COUNTERS % listen):
        metric = dict(item["metric"])
        name = metric.pop("__name__")
        for key in ("instance", "job"):
            metric.pop(key)
        out[(name, tuple(sorted(metric.items())))] = float(item["value"][1])
    return out


def nonzero(counters: dict) -> dict:
    """The series that counted something (known label values are also exported as 0)."""
    return {k: v for k, v in counters.items() if v != 0}


def normalise(counters: dict) -> dict:
    """Sorted label pairs, values approximate (sums of prices add up in another order)."""
    return {(n, tuple(sorted(lbl))): pytest.approx(v, rel=1e-9)
            for (n, lbl), v in counters.items()}


def test_posted_events_are_queryable_in_prometheus(pulse_config, service, prometheus):
    path, raw, env = pulse_config
    cfg = load_config(path, env)
    listen = raw["exporters"]["events"]["listen"]
    service(MODULE, path, env, listen)
    events = [example_event(rule) for rule in sorted(EXAMPLES) for _ in range(2)]
    resp = requests.post(f"http://{listen}/api/analytics/events", timeout=30,
                         json={"events": events, "clientTimestamp": "2026-11-25T10:00:00Z"})
    assert resp.status_code == 200 and resp.json()["accepted"] == len(events)
    prometheus.configure(targets={"events": [listen]})
    prometheus.wait_for_value(f'pulse_events_accepted_total{{instance="{listen}"}}',
                              lambda v: v == len(events), timeout=60)
    scraped = prometheus_counters(prometheus, listen)
    # Known label values are exported as 0 before their first event; the rest is exact.
    assert nonzero(scraped) == normalise(
        expected_counters(events, cfg))
    assert scraped[("business_subscriptions_canceled_total", (("plan", "lifetime"),))] == 0
    assert prometheus.query_value(
        f'ai_recommendations_total{{instance="{listen}",model="workout",'
        f'model_version="2.3.1",outcome="accepted"}}') == 2
    assert prometheus.query_value(
        f'fitness_session_duration_seconds_count{{instance="{listen}",platform="ios"}}') == 2
    assert prometheus.query_value(
        f'ai_recommendation_feedback_score_sum{{instance="{listen}",model="nutrition"}}') == 8
    assert prometheus.query_value(
        f'pulse_scrape_collector_success{{instance="{listen}",collector="events"}}') == 1
    assert prometheus.query_value(f'up{{job="events",instance="{listen}"}}') == 1


class RetryingClient(threading.Thread):
    """Posts batches with stable batchIds, retrying each until it is acknowledged."""

    def __init__(self, url: str, batches: list[list[dict]]):
        super().__init__(daemon=True)
        self.url, self.batches = url, batches
        self.acknowledged = 0
        self.retries = 0
        self.accepted = 0
        self.failure: str | None = None

    def run(self):
        session = requests.Session()
        for i, events in enumerate(self.batches):
            doc = {"events": events, "batchId": f"crash-{i}",
                   "clientTimestamp": "2026-11-25T10:00:00Z"}
            deadline = time.monotonic() + 90
            while True:
                try:
                    resp = session.post(self.url, json=doc, timeout=10)
                    if resp.status_code == 200:
                        self.accepted += resp.json()["accepted"]
                        break
                    if resp.status_code < 500:
                        self.failure = f"batch {i}: {resp.status_code} {resp.text}"
                        return
                except requests.RequestException:
                    session = requests.Session()
                if time.monotonic() > deadline:
                    self.failure = f"batch {i} never acknowledged"
                    return
                self.retries += 1
                time.sleep(0.05)
            self.acknowledged = i + 1
            time.sleep(0.01)


def test_kill_9_during_retried_posts_loses_nothing_and_counts_nothing_twice(
        tmp_path, prometheus):
    data_dir = tmp_path / "data"
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, data_dir,
                                     exporters={"events": {"checkpoint_bytes": 65536}})
    env = harness.pulse_env(data_dir)
    cfg = load_config(path, env)
    listen = raw["exporters"]["events"]["listen"]
    rules = sorted(EXAMPLES)
    events = [example_event(rules[i % len(rules)]) for i in range(4000)]
    for i in range(0, len(events), 97):  # some events are sent twice under new batch ids
        events[i]["id"] = str(uuid.uuid4())
    batches = [events[i:i + 40] for i in range(0, len(events), 40)]
    batches.append(batches[3])  # a whole batch re-sent under a new batchId: nothing new
    logs = tmp_path / "logs"

    def start():
        return harness.start_service(MODULE, path, env, listen,
                                     logs / f"intake-{time.monotonic_ns()}.log", timeout=60)

    proc = start()
    client = RetryingClient(f"http://{listen}/api/analytics/events", batches)
    client.start()
    kills = 0
    try:
        for fraction in (0.2, 0.45, 0.7):
            harness.wait_until(lambda f=fraction: client.acknowledged >= f * len(batches)
                               or not client.is_alive(), timeout=90, interval=0.01,
                               message="client progress")
            proc.kill()  # SIGKILL to the process (group): no chance to flush anything
            kills += 1
            proc = start()
        client.join(120)
        assert not client.is_alive()
        assert client.failure is None, client.failure
        assert client.retries >= kills
        proc.kill()
        kills += 1
        proc = start()
        prometheus.configure(targets={"events": [listen]})
        n = len(events)
        prometheus.wait_for_value(f'pulse_events_accepted_total{{instance="{listen}"}}',
                                  lambda v: v == n, timeout=60)
        assert nonzero(prometheus_counters(prometheus, listen)) == normalise(
            expected_counters(events, cfg))
        assert prometheus.query_value(
            f'pulse_events_received_total{{instance="{listen}"}}') == n + 40
        assert prometheus.query_value(
            f'pulse_events_duplicates_total{{instance="{listen}"}}') == 40
        assert client.accepted == n + 40
    finally:
        proc.stop()
