"""GET/POST /api/analytics/metrics: catalogue, validation (400 naming the field, never a
500), PromQL compilation, pagination and ordering, coach scoping, k-anonymity."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import http_status
from bridge.services.analytics import (
    MAX_POINTS,
    Matcher,
    catalogue,
    compile_promql,
    parse_query,
)
from pulse.profiles.aggregates import PUBLISHED
from tests.bridge.analytics_fake import NOW, FakeProm
from tests.bridge.conftest import auth
from tests.bridge.openapi_check import validate_response
from tests.harness import require_binary
from tests.synthetic import rule_files

# Raw series the catalogue may read besides recording rules (docs/architecture.md); the
# published profile series (docs/profiles.md) are recording rules too (profile_families).
RAW = {"node_cpu_seconds_total", "node_memory_MemTotal_bytes"}


def profile_families(tmp_path) -> dict[str, tuple[str, ...]]:
    """name -> label names of every published profile series (rules/profiles.rules.yml
    records them from the exporters' additive families)."""
    return dict(PUBLISHED)


def test_catalogue_compiles_with_promtool(tmp_path):
    """Every metric, grouped by all its dimensions and filtered, is valid PromQL."""
    promtool = require_binary("promtool")
    rules = []
    for name, d in catalogue().items():
        matchers = [Matcher(x, "in", ("a", "b.c")) for x in d.dimensions[:1]]
        for dims in ([], list(d.dimensions)):
            for step in (60, 86400 * 7):
                rules.append({"record": f"test:{name}:{len(rules)}",
                              "expr": compile_promql(d, dims, matchers, step)})
    path = tmp_path / "catalogue.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "catalogue", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_catalogue_reads_recording_rules(tmp_path):
    """Each series a metric reads is a recording rule of rules/, a listed raw metric or a
    gauge the profiles exporter exports."""
    recorded = set()
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded |= {r["record"] for r in group["rules"] if "record" in r}
    profiles = profile_families(tmp_path)
    for name, d in catalogue().items():
        for series in d.series_names():
            assert series in recorded or series in RAW or series in profiles, \
                f"{name} reads unknown {series}"
    read = {s for d in catalogue().values() for s in d.series_names()}
    assert {"fitness_active_users", "fitness_stickiness_ratio", "fitness_cohort_retention_ratio",
            "fitness_churn_risk_users", "business_subscriptions_active",
            "fitness_coach_clients_active", "fitness_coach_workout_completion_ratio",
            "fitness_coach_goal_progress_ratio", "fitness_coach_ai_acceptance_ratio"} <= read


def test_coach_metrics_read_only_coach_labelled_series(tmp_path):
    """A coach metric reads only series with a coach label (else a coach gets nothing);
    every metric over such series is a coach metric, and dimensions are real labels."""
    profiles = profile_families(tmp_path)
    coach_series = {n for n, labels in profiles.items() if "coach" in labels}
    assert len(coach_series) == 4
    coach_metrics = {n for n, d in catalogue().items() if d.coach}
    assert coach_metrics == {n for n, d in catalogue().items()
                             if set(d.series_names()) & coach_series}
    for name in coach_metrics:
        d = catalogue()[name]
        assert set(d.series_names()) <= coach_series, name
        assert "coach" in d.dimensions, name
    for name, d in catalogue().items():
        if set(d.series_names()) <= set(profiles):  # a metric over profile gauges only
            for series in d.series_names():
                assert set(d.dimensions) <= set(profiles[series]), (name, series)


def test_active_users_never_double_count():
    """Every read of fitness_active_users names its window; the total is platform="all",
    a breakdown or filter on platform excludes it."""
    for name, d in catalogue().items():
        if "fitness_active_users" in d.series_names():
            for sel in re.findall(r"fitness_active_users\{([^}]*)\}", d.promql):
                assert re.search(r'window="(1d|7d|30d)"', sel), (name, sel)
    for name, window in (("active_users", "1d"), ("weekly_active_users", "7d"),
                         ("monthly_active_users", "30d")):
        d = catalogue()[name]
        assert compile_promql(d, [], [], 3600) == \
            f'sum(fitness_active_users{{window="{window}", platform="all"}})'
        assert compile_promql(d, ["platform"], [], 3600) == \
            f'sum by (platform) (fitness_active_users{{window="{window}", platform!="all"}})'
        assert compile_promql(d, [], [Matcher("platform", "eq", ("ios",))], 3600) == \
            f'sum(fitness_active_users{{window="{window}", platform!="all", platform="ios"}})'
    arpu = compile_promql(catalogue()["arpu"], ["currency"], [], 3600)
    assert arpu.endswith('/ scalar(sum(fitness_active_users{window="30d", platform="all"}))')


def test_compile_groups_and_filters():
    d = catalogue()["revenue"]
    expr = compile_promql(d, ["currency"], [Matcher("stream", "in", ("a.b", "c"))], 3600)
    assert expr == ('sum by (currency) (stream_currency:business_revenue:increase1h'
                    '{stream=~"a\\\\.b|c"})')
    # A daily step over an hourly window: each point is the day's total.
    assert compile_promql(d, [], [], 86400).startswith("sum_over_time((sum(stream_currency")
    assert compile_promql(d, [], [], 86400).endswith(")[86400s:3600s])")
    p95 = compile_promql(catalogue()["api_p95_latency"], [], [], 60)
    assert "sum by (le) (" in p95
    acc = compile_promql(catalogue()["ai_accuracy"], ["model"],
                         [Matcher("model", "eq", ("m1",))], 60)
    assert '{outcome="accepted", model="m1"}' in acc


@pytest.mark.parametrize("params, field", [
    ({}, "metrics"),
    ({"metrics": "nope"}, "metrics"),
    ({"metrics": "revenue", "dimensions": "platform"}, "dimensions"),
    ({"metrics": "revenue,signups", "dimensions": "currency"}, "dimensions"),
    ({"metrics": "revenue", "filters": "platform:eq:ios"}, "filters"),
    ({"metrics": "revenue", "filters": "currency:like:USD"}, "filters"),
    ({"metrics": "revenue", "filters": "currency:eq:US\"D"}, "filters"),
    ({"metrics": "revenue", "filters": "currency"}, "filters"),
    ({"metrics": "revenue", "timeRange": "forever"}, "timeRange"),
    ({"metrics": "revenue", "start": "yesterday"}, "start"),
    ({"metrics": "revenue", "start": "2026-01-01T00:00:00"}, "start"),
    ({"metrics": "revenue", "start": str(NOW), "end": str(NOW - 10)}, "timeRange"),
    ({"metrics": "revenue", "timeRange": "500d"}, "timeRange"),
    ({"metrics": "revenue", "timeRange": "30d", "granularity": "minute"}, "granularity"),
    ({"metrics": "revenue", "granularity": "fortnight"}, "granularity"),
    ({"metrics": "revenue", "limit": "0"}, "limit"),
    ({"metrics": "revenue", "limit": "x"}, "limit"),
    ({"metrics": "revenue", "orderBy": "platform"}, "orderBy"),
    ({"metrics": "revenue", "orderBy": "value:sideways"}, "orderBy"),
    ({"metrics": "revenue", "bogus": "1"}, "bogus"),
])
def test_bad_queries_are_400_naming_the_field(client, fake, params, field):
    resp = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string=params)
    assert resp.status_code == 400, resp.get_json()
    err = resp.get_json()["error"]
    assert err["details"][0]["field"] == field
    assert not fake.queries  # nothing ran


@pytest.mark.parametrize("body", [{"metrics": ["revenue"], "granularity": ["day"]},
                                  {"metrics": ["revenue"], "granularity": {"a": 1}},
                                  {"metrics": ["revenue"], "orderBy": [{"field": ["v"]}]}])
def test_non_string_values_are_400(client, fake, body):
    resp = client.post("/api/analytics/metrics", headers=auth("analyst"), json=body)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"][0]["field"] == \
        ("orderBy" if "orderBy" in body else "granularity")


def test_points_cap():
    day = 86400
    ok = parse_query({"metrics": ["revenue"], "start": NOW - MAX_POINTS * 60, "end": NOW,
                      "granularity": "minute"}, NOW)
    assert ok.points == MAX_POINTS
    with pytest.raises(Exception) as info:
        parse_query({"metrics": ["revenue"], "start": NOW - 8 * day, "end": NOW,
                     "granularity": "minute"}, NOW)
    assert http_status(info.value) == 400 and "11000" in info.value.details[0]["problem"]


def test_query_by_dimension_with_ordering_and_pagination(client, fake, app):
    resp = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "sessions", "dimensions": "platform", "timeRange": "3d",
        "granularity": "day", "orderBy": "value:asc", "limit": "2"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert [e["labels"]["platform"] for e in body["data"]] == ["web", "android"]
    assert body["data"][0]["summary"] == {"aggregation": "sum", "value": 9.0}
    assert len(body["data"][0]["points"]) == 3
    assert body["pagination"] == {"total": 3, "limit": 2, "offset": 0, "hasMore": True,
                                  "nextOffset": 2}
    assert body["metadata"]["queries"][0]["promql"] == \
        "sum by (platform) (platform:fitness_sessions:increase1d)"
    validate_response(client.get("/api/openapi.json").get_json(), "MetricsQueryResponse", body)
    page2 = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "sessions", "dimensions": "platform", "timeRange": "3d",
        "granularity": "day", "orderBy": "value:asc", "limit": "2", "offset": "2"})
    assert [e["labels"]["platform"] for e in page2.get_json()["data"]] == ["ios"]


def test_post_body_is_the_same_query(client, fake):
    body = {"metrics": ["sessions"], "dimensions": ["platform"],
            "filters": [{"field": "platform", "operator": "in", "values": ["ios", "web"]}],
            "timeRange": {"start": NOW - 7200, "end": NOW}, "granularity": "hour",
            "orderBy": [{"field": "platform", "direction": "asc"}]}
    resp = client.post("/api/analytics/metrics", headers=auth("analyst"), json=body)
    assert resp.status_code == 200, resp.get_json()
    assert 'platform=~"ios|web"' in resp.get_json()["metadata"]["queries"][0]["promql"]
    assert client.post("/api/analytics/metrics", headers=auth("analyst"),
                       data="[1").status_code == 400


def test_small_groups_suppressed(client, fake):
    resp = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "active_users", "dimensions": "platform", "timeRange": "2h"})
    body = resp.get_json()
    web = next(e for e in body["data"] if e["labels"]["platform"] == "web")
    assert all(p["value"] is None for p in web["points"]) and web["summary"]["value"] is None
    assert body["metadata"]["suppressedPoints"] == 2
    assert any("k-anonymity" in w for w in body["warnings"])


def test_coach_sees_only_own_clients(client, fake):
    resp = client.get("/api/analytics/metrics", headers=auth("coach"), query_string={
        "metrics": "coach_workout_completion_rate,coach_clients_active", "timeRange": "1h",
        "granularity": "minute"})
    assert resp.status_code == 200, resp.get_json()
    ran = [q for q in fake.queries if "fitness_coach_" in q]
    assert len(ran) == 2 and all('{coach="coach-1"}' in q for q in ran), ran
    # Scrape targets carry no coach label: a coach is not told which ones are down.
    assert "up == 0" not in fake.queries and resp.get_json()["metadata"]["staleSources"] == []
    # Metrics whose series carry no coach label are not coach metrics: 403 naming them.
    for metric in ("revenue", "workout_completion_rate", "ai_accuracy", "active_users"):
        denied = client.get("/api/analytics/metrics", headers=auth("coach"),
                            query_string={"metrics": metric})
        assert denied.status_code == 403, metric
        detail = denied.get_json()["error"]["details"][0]
        assert detail["field"] == "metrics" and f"{metric!r} is not a coach metric" in \
            detail["problem"]


def test_platform_all_is_the_distinct_total(client, fake):
    """platform=all cannot be asked for (it is the unfiltered total); a multi-platform sum
    warns that a user on several platforms counts once per platform."""
    bad = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "active_users", "filters": "platform:in:ios|all"})
    assert bad.status_code == 400
    assert "distinct total" in bad.get_json()["error"]["details"][0]["problem"]
    assert not fake.queries
    resp = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "monthly_active_users", "filters": "platform:in:ios|android"})
    body = resp.get_json()
    assert body["metadata"]["queries"][0]["promql"] == (
        'sum(fitness_active_users{window="30d", platform!="all", platform=~"ios|android"})')
    assert any("counts once per platform" in w for w in body["warnings"])
    one = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "active_users", "filters": "platform:in:ios"}).get_json()
    assert not any("once per platform" in w for w in one["warnings"])
    # Sessions have no distinct total: platform filters are plain.
    ok = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "sessions", "filters": "platform:in:ios|android"})
    assert not any("once per platform" in w for w in ok.get_json()["warnings"])


def test_permissions_and_absent_data(client, app):
    assert client.get("/api/analytics/metrics?metrics=revenue").status_code == 401
    app.extensions["pulse.prometheus"] = FakeProm(values={})

    class Empty(FakeProm):
        def query_range(self, expr, start, end, step):
            return []
    app.extensions["pulse.prometheus"] = Empty()
    body = client.get("/api/analytics/metrics?metrics=revenue",
                      headers=auth("analyst")).get_json()
    assert body["data"] == []
    assert body["warnings"] == ["revenue: no data in the range (absent series: "
                                "stream_currency:business_revenue:increase1h)"]


def test_prometheus_down_is_503(client):
    resp = client.get("/api/analytics/metrics?metrics=revenue", headers=auth("analyst"))
    assert resp.status_code == 503


def test_catalogue_endpoint(client):
    body = client.get("/api/analytics/metrics/catalogue", headers=auth("analyst")).get_json()
    names = {m["name"]: m for m in body["metrics"]}
    assert {"active_users", "workout_completion_rate", "revenue", "churn_rate", "arpu",
            "api_p95_latency", "ai_accuracy"} <= set(names)
    assert names["revenue"]["seriesRead"] == ["stream_currency:business_revenue:increase1h"]
    assert names["active_users"]["distinctTotal"] == {"platform": "all"}
    assert names["revenue"]["distinctTotal"] == {} and not names["revenue"]["coach"]
    assert names["coach_clients_active"]["coach"]
    validate_response(client.get("/api/openapi.json").get_json(), "CatalogueMetric",
                      names["active_users"])


KEYS = ["metrics", "dimensions", "filters", "timeRange", "start", "end", "granularity",
        "limit", "offset", "orderBy", "x"]
TEXT = st.one_of(st.sampled_from(["revenue", "sessions,active_users", "platform", "currency",
                                  "platform:eq:ios", "platform:in:a|b", "7d", "1h", "day",
                                  "minute", "value:desc", "-1", "0", "99999999", "2026-11-25T"
                                  "10:00:00Z", "", ":", "::", "nope"]),
                 st.text(max_size=30))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(KEYS), st.lists(TEXT, min_size=1, max_size=3),
                              max_size=6))
def test_never_a_500_on_get(client, fake, params):
    resp = client.get("/api/analytics/metrics", headers=auth("analyst"), query_string=params)
    assert resp.status_code in (200, 400), resp.get_json()


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                              st.text(max_size=10)),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                        max_size=3),
                    max_leaves=8)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(KEYS), JSON | TEXT, max_size=6))
def test_never_a_500_on_post(client, fake, body):
    resp = client.post("/api/analytics/metrics", headers=auth("analyst"), json=body)
    assert resp.status_code in (200, 400), resp.get_json()


def test_every_analytics_route_is_documented(app):
    from bridge.openapi import document
    paths = document()["paths"]
    routes = [r for r in app.url_map.iter_rules()
              if r.endpoint.split(".")[0] in ("metrics_query", "reports")]
    assert len(routes) == 4
    for rule in routes:
        assert rule.rule in paths, rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[rule.rule], (rule.rule, method)
