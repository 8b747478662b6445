"""Coach scoping against a real Prometheus through the live bridge: the Prometheus-compatible
read endpoint and the metrics API. Prometheus scrapes two coaches' series and metrics
without a coach label; no query a coach can write returns anything but coach-1's data."""

import math
import time
from pathlib import Path

import pytest
import requests
import yaml

from pulse import dashboards as gq
from tests.bridge.conftest import TOKENS
from tests.bridge.stack import Stack
from tests.harness import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]

OWN = {"fitness_coach_clients_active": 12.0, "fitness_coach_goal_progress_ratio": 0.25}
OTHER = {"fitness_coach_clients_active": 30000.0, "fitness_coach_goal_progress_ratio": 0.875}
SERIES = {
    **{f'{name}{{coach="coach-1"}}': v for name, v in OWN.items()},
    **{f'{name}{{coach="coach-2"}}': v for name, v in OTHER.items()},
    # No coach label: a coach must not see these at all.
    'pulse_secret_total{secret="yes"}': 777.0,
    'fitness_active_users{window="1d",platform="all"}': 4242.0,
}
LEAKED = {30000.0, 0.875, 777.0, 4242.0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prometheus scraping the series above, and the bridge served over real HTTP."""
    s = Stack(tmp_path_factory.mktemp("prometheus-read"), "http://127.0.0.1:9")
    s.source.values.update(SERIES)
    wait_until(lambda: len(s.prometheus.query('{__name__=~"fitness_.*|pulse_.*"}'))
               == len(SERIES), timeout=60)
    # A few scrapes, so subqueries and ranges over the last seconds have points.
    time.sleep(3)
    s.url = s.serve()
    yield s
    s.stop()


def _get(stack, path, role="coach", method="GET", **params):
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    url = f"{stack.url}/prometheus/api/v1/{path}"
    if method == "POST":
        return requests.post(url, data=params, headers=headers, timeout=30)
    return requests.get(url, params=params, headers=headers, timeout=30)


def _rows(body) -> list[tuple[dict, list[float]]]:
    """(labels, values) of every series of a query answer (vector, matrix or scalar)."""
    data = body["data"]
    if data["resultType"] == "scalar":
        return [({}, [float(data["result"][1])])]
    out = []
    for r in data["result"]:
        points = r.get("values") or [r["value"]]
        out.append((r["metric"], [float(v) for _, v in points]))
    return out


# (expression, the values coach-1 may get: None for no series at all).
SCOPED = [
    ("fitness_coach_clients_active", {12.0}),
    ("fitness_coach_clients_active or pulse_secret_total", {12.0}),
    ("pulse_secret_total", None),
    ("fitness_active_users", None),
    ('{secret="yes"}', None),
    ("fitness_coach_clients_active unless on() pulse_secret_total", {12.0}),
    ("fitness_coach_clients_active unless fitness_coach_goal_progress_ratio", None),
    ("fitness_coach_clients_active + on(coach) fitness_coach_goal_progress_ratio", {12.25}),
    ("fitness_coach_clients_active + ignoring(coach, secret) group_left "
     "pulse_secret_total", None),
    ("sum(fitness_coach_clients_active) + on() group_left sum(pulse_secret_total)", None),
    ("max_over_time(fitness_coach_clients_active[2s:1s])", {12.0}),
    ("max_over_time(sum(fitness_coach_clients_active or pulse_secret_total)[2s:])", {12.0}),
    ('{__name__=~".+"}', set(OWN.values())),
    ('count({__name__=~".+"})', {2.0}),
    ('count by (__name__) ({__name__=~".+"})', {1.0}),
    ('topk(5, {__name__=~"fitness_.*|pulse_.*"})', set(OWN.values())),
    ("absent(pulse_secret_total)", {1.0}),
    ("absent(fitness_coach_clients_active)", None),
    ("round(abs(sum(rate(fitness_coach_clients_active[2s])) * 0 "
     "+ sum(fitness_coach_clients_active)))", {12.0}),
    ('fitness_coach_clients_active{a="\\"} or pulse_secret_total{b=\\""}', None),
    ('fitness_coach_clients_active{a="\\\\"} or pulse_secret_total{b="\\\\"}', None),
    ("sum by (coach) (fitness_coach_clients_active)", {12.0}),
    ("sum(fitness_coach_clients_active or on() vector(0))", {12.0}),
    ("fitness_coach_clients_active @ end()", {12.0}),
    ("scalar(sum(fitness_coach_clients_active))", {12.0}),
]
# Label rewrites: the coach label says what the query wrote, the data is still coach-1's.
RELABELLED = [
    ('label_replace(fitness_coach_clients_active, "coach", "coach-2", "", "")', {12.0}),
    ('count_values("coach", fitness_coach_clients_active)', {1.0}),
    ('label_replace(pulse_secret_total, "coach", "coach-1", "", "")', None),
]
CONFLICTS = [
    'fitness_coach_clients_active{coach="coach-2"}',
    'fitness_coach_clients_active{coach=~".*"}',
    'fitness_coach_clients_active{coach=~"coach-.*"}',
    'fitness_coach_clients_active{coach=~"coach-1|coach-2"}',
    'fitness_coach_clients_active{coach!="coach-1"}',
    'fitness_coach_clients_active{coach=""}',
    'fitness_coach_clients_active or fitness_coach_clients_active{coach="coach-2"}',
    '{__name__=~".+", coach=~".+"}',
    'sum(rate(fitness_coach_clients_active{coach!~"coach-1"}[1m]))',
]


def _check(rows, allowed, coach_label=True):
    if allowed is None:
        assert rows == [], rows
        return
    assert rows, "expected coach-1's data"
    for labels, values in rows:
        if coach_label:
            assert labels.get("coach", "coach-1") == "coach-1", labels
        assert "secret" not in labels and "window" not in labels, labels
        for v in values:
            assert v not in LEAKED and any(math.isclose(v, a) for a in allowed), (labels, v)


@pytest.mark.parametrize(("expr", "allowed"), SCOPED + RELABELLED)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_coach_query_returns_only_their_data(stack, expr, allowed, method):
    resp = _get(stack, "query", method=method, query=expr)
    assert resp.status_code == 200, resp.text
    _check(_rows(resp.json()), allowed, coach_label=(expr, allowed) not in RELABELLED)


@pytest.mark.parametrize(("expr", "allowed"), SCOPED[:12])
def test_a_coach_range_query_returns_only_their_data(stack, expr, allowed):
    end = time.time()
    resp = _get(stack, "query_range", method="POST", query=expr, start=f"{end - 3:.3f}",
                end=f"{end:.3f}", step="1")
    assert resp.status_code == 200, resp.text
    _check(_rows(resp.json()), allowed)


@pytest.mark.parametrize("expr", CONFLICTS)
def test_a_conflicting_coach_matcher_is_a_403_in_prometheus_shape(stack, expr):
    for path, params in (("query", {"query": expr}),
                         ("query_range", {"query": expr, "start": "1", "end": "2",
                                          "step": "1"})):
        resp = _get(stack, path, **params)
        assert resp.status_code == 403, resp.text
        body = resp.json()
        assert (body["status"], body["errorType"]) == ("error", "forbidden")
        assert "conflicts with the enforced coach=\"coach-1\"" in body["error"]


def test_series_and_labels_show_only_the_coach(stack):
    series = _get(stack, "series", **{"match[]": '{__name__=~".+"}'}).json()["data"]
    assert sorted(s["__name__"] for s in series) == sorted(OWN)
    assert {s["coach"] for s in series} == {"coach-1"}
    two = _get(stack, "series", method="POST",
               **{"match[]": ["pulse_secret_total", "fitness_coach_clients_active"]})
    assert [s["__name__"] for s in two.json()["data"]] == ["fitness_coach_clients_active"]
    labels = _get(stack, "labels").json()["data"]
    assert "coach" in labels and not {"secret", "window", "platform"} & set(labels)
    assert _get(stack, "label/__name__/values").json()["data"] == sorted(OWN)
    assert _get(stack, "label/coach/values").json()["data"] == ["coach-1"]
    assert _get(stack, "label/secret/values").json()["data"] == []
    assert _get(stack, "label/coach/values",
                **{"match[]": "pulse_secret_total"}).json()["data"] == []
    denied = _get(stack, "series", **{"match[]": '{coach=~".+"}'})
    assert denied.status_code == 403 and denied.json()["errorType"] == "forbidden"
    missing = _get(stack, "series")
    assert missing.status_code == 400 and "match[]" in missing.json()["error"]
    bad = _get(stack, "series", **{"match[]": "sum(x)"})
    assert bad.status_code == 400 and "match[]" in bad.json()["error"]
    assert _get(stack, "label/not-a-label/values").status_code == 400


def test_other_roles_read_unchanged(stack):
    for role in ("analyst", "admin", "engineer", "auditor"):
        body = _get(stack, "query", role=role,
                    query='fitness_coach_clients_active{coach=~".*"}').json()
        assert {r["metric"]["coach"] for r in body["data"]["result"]} == \
            {"coach-1", "coach-2"}, role
    values = _get(stack, "label/coach/values", role="analyst").json()["data"]
    assert values == ["coach-1", "coach-2"]
    assert _get(stack, "query", role="analyst", query="pulse_secret_total").json()[
        "data"]["result"][0]["value"][1] == "777"


def test_errors_keep_prometheus_shape(stack):
    bad = _get(stack, "query", role="analyst", query="sum(")
    assert bad.status_code == 400
    assert (bad.json()["status"], bad.json()["errorType"]) == ("error", "bad_data")
    assert "parse error" in bad.json()["error"]
    execution = _get(stack, "query", role="analyst",
                     query="fitness_coach_clients_active + on() fitness_coach_clients_active")
    assert execution.status_code == 422 and execution.json()["errorType"] == "execution"
    mine = _get(stack, "query", query="sum(")
    assert mine.status_code == 400 and mine.json()["errorType"] == "bad_data"
    assert "query" in mine.json()["error"]
    assert _get(stack, "query").status_code == 400  # no query
    assert _get(stack, "query", role=None, query="up").status_code == 401
    denied = _get(stack, "query", role="executive", query="up")
    assert denied.status_code == 403 and "prometheus:read" in denied.json()["error"]
    assert _get(stack, "query", query="up", time="yesterday").status_code == 400


def test_the_metrics_api_scopes_a_coach_the_same_way(stack):
    url = f"{stack.url}/api/analytics/metrics"
    headers = {"Authorization": f"Bearer {TOKENS['coach']}"}
    ok = requests.get(url, headers=headers, timeout=30, params={
        "metrics": "coach_clients_active,coach_goal_progress", "timeRange": "2m",
        "granularity": "minute"})
    assert ok.status_code == 200, ok.text
    values = {p["value"] for e in ok.json()["data"] for p in e["points"]} - {None}
    assert values and values <= set(OWN.values()), values
    assert all('coach="coach-1"' in q["promql"] for q in ok.json()["metadata"]["queries"])
    for flt in ("coach:eq:coach-2", "coach:in:coach-1|coach-2", "coach:neq:coach-1",
                "coach:not_in:coach-2"):
        denied = requests.get(url, headers=headers, timeout=30, params={
            "metrics": "coach_clients_active", "filters": flt})
        assert denied.status_code == 403, (flt, denied.text)
        detail = denied.json()["error"]["details"][0]
        assert detail["field"] == "filters" and "coach" in detail["problem"]
    same = requests.get(url, headers=headers, timeout=30, params={
        "metrics": "coach_clients_active", "filters": "coach:eq:coach-1",
        "timeRange": "2m", "granularity": "minute"})
    assert same.status_code == 200


def test_the_grafana_coach_datasource_reads_the_coach_dashboard(stack):
    """The provisioned example, as Grafana would send it: POST forms to <url>/api/v1/...
    with the coach token in the configured header; every panel shows coach-1 only."""
    doc = yaml.safe_load((ROOT / "grafana/provisioning/datasources/coach.yml.example")
                         .read_text())
    [ds] = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["url"].endswith("/prometheus")
    assert ds["uid"] == gq.DATASOURCE_UID and ds["jsonData"]["httpMethod"] == "POST"
    name = ds["jsonData"]["httpHeaderName1"]
    value = ds["secureJsonData"]["httpHeaderValue1"].replace("$COACH_TOKEN", TOKENS["coach"])
    coach = gq.load_all()["coach"]
    assert not any("coach" in v for v in gq.variables(coach))
    end = time.time()
    for q in gq.queries("coach", coach):
        expr = gq.expand(q.expr, range_s=3, step_s=1, scrape_s=1)
        resp = requests.post(f"{stack.url}/prometheus/api/v1/query_range",
                             data={"query": expr, "start": f"{end - 3:.3f}",
                                   "end": f"{end:.3f}", "step": "1"},
                             headers={name: value}, timeout=30)
        assert resp.status_code == 200, (q.panel_title, resp.text)
        rows = _rows(resp.json())
        metric = next(iter(gq.metric_names(q.expr)))
        _check(rows, {OWN[metric]} if metric in OWN else None)
