"""long_term and prometheus.replicas: schema, rendered configs, supervisor plan, read routing."""

from __future__ import annotations

import re

import pytest
import yaml

from bridge.services.analytics import catalogue
from pulse.config import ConfigError, load_config, parse_duration
from pulse.launcher.render import prometheus_config
from pulse.launcher.supervisor import plan
from pulse.promapi import PrometheusReplicas, PromUnavailable, ReadRouter, Tier, metric_names
from tests import harness

TIERS = [{"name": "usage", "url": "http://127.0.0.1:8428", "retention": "2y"},
         {"name": "business", "url": "http://127.0.0.1:8429", "retention": "7y",
          "keep": [".*business_.*"]}]


def _cfg(tmp_path, **overrides):
    path = tmp_path / "pulse.yml"
    harness.write_pulse_config(path, tmp_path / "data", **overrides)
    return load_config(path, env=harness.pulse_env(tmp_path / "data"))


def test_defaults_keep_the_single_prometheus_alone(tmp_path):
    cfg = _cfg(tmp_path)
    assert cfg.prometheus.replicas == 1 and cfg.long_term.enabled is False
    doc = prometheus_config(cfg, replica=0)
    assert "remote_write" not in doc and "replica" not in doc["global"]["external_labels"]
    assert not [c for c in plan(cfg) if c.name.startswith("victoria")]


def test_ha_pair_and_tiers_render_as_the_issue_says(tmp_path):
    cfg = _cfg(tmp_path, prometheus={"replicas": 2},
               long_term={"enabled": True, "tiers": TIERS})
    docs = [prometheus_config(cfg, replica=i) for i in (0, 1)]
    for i, doc in enumerate(docs):
        assert doc["global"]["external_labels"] == {"stack": "pulse", "replica": str(i)}
        assert doc["alerting"]["alert_relabel_configs"] == [
            {"action": "labeldrop", "regex": "replica"}]
        usage, business = doc["remote_write"]
        assert usage["url"] == "http://127.0.0.1:8428/api/v1/write"
        assert business["write_relabel_configs"] == [
            {"source_labels": ["__name__"], "regex": "(?:.*business_.*)", "action": "keep"},
            {"action": "labeldrop", "regex": "replica"}]
    comps = {c.name: c for c in plan(cfg)}
    assert list(comps)[:2] == ["victoria-usage", "victoria-business"]
    vm = comps["victoria-usage"].argv
    assert "-httpListenAddr=127.0.0.1:8428" in vm and "-retentionPeriod=2y" in vm
    assert "-dedup.minScrapeInterval=1s" in vm and comps["victoria-usage"].storage
    p0, p1 = comps["prometheus"], comps["prometheus-1"]
    assert p1.port == p0.port + 1
    assert "--web.enable-admin-api" in p0.argv and "--storage.remote.flush-deadline=5s" in p0.argv
    assert f"--storage.tsdb.path={tmp_path / 'data' / 'prometheus-1' / 'tsdb'}" in p1.argv


def test_default_usage_keep_holds_every_catalogue_series():
    keep = Tier("usage", "http://x", 1, tuple(_default_keep()))
    for metric in catalogue().values():
        names = metric_names(metric.promql)
        assert keep.holds(names), (metric.name, names)


def _default_keep() -> list[str]:
    from pulse.paths import SCHEMA_DIR

    schema = yaml.safe_load((SCHEMA_DIR / "long_term.schema.json").read_text())
    return schema["properties"]["tiers"]["items"]["properties"]["keep"]["default"]


@pytest.mark.parametrize("tier, problem", [
    ({"name": "u", "url": "http://10.0.0.5:8428", "retention": "2y"}, "loopback"),
    ({"name": "u", "url": "http://127.0.0.1:8428", "retention": "24"}, "expected form"),
    ({"name": "u", "url": "http://127.0.0.1:8428"}, "required"),
])
def test_bad_tiers_are_refused_naming_the_field(tmp_path, tier, problem):
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, long_term={"enabled": True, "tiers": [tier]})
    assert "long_term.tiers[0]" in str(err.value) and problem in str(err.value)


def test_enabled_without_tiers_and_duplicate_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs at least one tier"):
        _cfg(tmp_path, long_term={"enabled": True})
    with pytest.raises(ConfigError, match="duplicate name"):
        _cfg(tmp_path, long_term={"enabled": True, "tiers": [TIERS[0], TIERS[0]]})


def test_an_existing_remote_tier_is_not_started(tmp_path):
    remote = {"name": "far", "url": "https://vm.example:8428", "retention": "7y",
              "manage": False}
    cfg = _cfg(tmp_path, long_term={"enabled": True, "tiers": [remote]})
    assert not [c for c in plan(cfg) if c.name.startswith("victoria")]
    assert prometheus_config(cfg)["remote_write"][0]["url"] == \
        "https://vm.example:8428/api/v1/write"


@pytest.mark.parametrize("expr, names", [
    ('sum by (stream) (stream_currency:business_revenue:increase1h{currency="USD"})',
     {"stream_currency:business_revenue:increase1h"}),
    ("sum_over_time((sum(a:b:c))[86400s:3600s]) / scalar(sum(d{x=\"y\"}))", {"a:b:c", "d"}),
    ("rate(x_total[5m]) * on (job) group_left (version) y_info", {"x_total", "y_info"}),
    ('{__name__="only_by_name"}', {"only_by_name"}),
    ("vector(1)", set()),
])
def test_metric_names(expr, names):
    assert metric_names(expr) == names


class FakeProm:
    """Records calls; answers with its name."""

    def __init__(self, name, down=False):
        self.name, self.down, self.calls = name, down, []
        self.url = f"http://{name}"

    def query_range(self, expr, start, end, step):
        self.calls.append(expr)
        if self.down:
            raise PromUnavailable("Prometheus", self.name, "ConnectionError")
        return [{"metric": {}, "values": [[end, self.name]]}]


def test_reads_follow_the_range():
    now = 1_800_000_000.0
    prom = FakeProm("prom")
    tiers = [Tier("usage", "http://127.0.0.1:1", parse_duration("1d"), (".+:.+",)),
             Tier("business", "http://127.0.0.1:2", parse_duration("7y"), (".*business_.*",))]
    router = ReadRouter(prom, parse_duration("15d"), tiers, clock=lambda: now)
    revenue = "sum(stream_currency:business_revenue:increase1h)"
    assert router.tier_for(revenue, now - 86400) is None
    # The usage tier keeps it but not that far back: the business tier does.
    assert router.tier_for(revenue, now - 365 * 86400).name == "business"
    assert router.tier_for("sum(platform:fitness_sessions:increase1d)",
                           now - 365 * 86400).name == "usage"
    # Nothing keeps a raw counter: it stays on Prometheus (which answers what it has).
    assert router.tier_for("rate(fitness_sessions_total[5m])", now - 365 * 86400) is None
    with ReadRouter.recording() as seen:
        router.query_range(revenue, now - 3600, now, 60)
    assert seen == ["prometheus"] and prom.calls == [revenue]


def test_replicas_answer_while_one_is_down(monkeypatch):
    pair = PrometheusReplicas(["http://127.0.0.1:1", "http://127.0.0.1:2"])
    first, second = FakeProm("a", down=True), FakeProm("b")
    pair.clients = [first, second]
    assert pair.query_range("x", 0, 1, 1)[0]["values"][0][1] == "b"
    # The one that answered is asked first next time: the dead one costs one timeout.
    pair.query_range("x", 0, 1, 1)
    assert len(first.calls) == 1 and len(second.calls) == 2
    second.down = True
    with pytest.raises(PromUnavailable, match="no replica answers"):
        pair.query_range("x", 0, 1, 1)


def test_catalogue_promql_has_no_name_the_extractor_misreads():
    # Every extracted name looks like a metric name (no function or keyword slipped in).
    for metric in catalogue().values():
        for name in metric_names(metric.promql):
            assert re.fullmatch(r"[a-z_:][a-z0-9_:]*", name) and name not in ("by", "sum")
