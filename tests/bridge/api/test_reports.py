"""POST /api/analytics/reports/generate: validation, rendering of each format (with a fake
Prometheus), forecasts, the scheduler's due times and state."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from pypdf import PdfReader

from bridge.services.reports.build import _item, forecast
from bridge.services.reports.scheduler import ReportScheduler, last_due, period
from bridge.services.reports.text import fmt, fmt_change
from tests.bridge.analytics_fake import NOW
from tests.bridge.conftest import auth
from tests.bridge.openapi_check import validate_response

URL = "/api/analytics/reports/generate"


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("body, field", [
    ([], "body"),
    ({"reportType": "weekly", "timeRange": "7d"}, "reportType"),
    ({"reportType": "executive"}, "timeRange"),
    ({"reportType": "executive", "timeRange": "soon"}, "timeRange"),
    ({"reportType": "executive", "timeRange": {"start": "x"}}, "start"),
    ({"reportType": "executive", "timeRange": {"end": NOW}}, "timeRange.start"),
    ({"reportType": "executive", "timeRange": "7d", "format": "docx"}, "format"),
    ({"reportType": "executive", "timeRange": "7d", "deliveryMethod": "fax"},
     "deliveryMethod"),
    ({"reportType": "executive", "timeRange": "7d", "includeComparisons": "yes"},
     "includeComparisons"),
    ({"reportType": "executive", "timeRange": "30d", "granularity": "minute"}, "granularity"),
    ({"reportType": "executive", "timeRange": "7d", "extra": 1}, "extra"),
    ({"reportType": "executive", "timeRange": "7d", "granularity": ["day"]}, "granularity"),
    ({"reportType": "executive", "timeRange": "7d", "channel": "reports"}, "channel"),
    ({"reportType": "custom", "timeRange": "7d"}, "customQueries"),
    ({"reportType": "custom", "timeRange": "7d", "customQueries": [{"metric": "nope"}]},
     "customQueries[0].metric"),
    ({"reportType": "custom", "timeRange": "7d",
      "customQueries": [{"metric": "revenue", "groupBy": ["platform"]}]},
     "customQueries[0].groupBy"),
    ({"reportType": "custom", "timeRange": "7d",
      "customQueries": [{"metric": "revenue", "filters": ["platform:eq:ios"]}]},
     "customQueries[0].filters"),
    ({"reportType": "custom", "timeRange": "7d",
      "customQueries": [{"metric": "active_users", "filters": ["platform:eq:all"]}]},
     "customQueries[0].filters"),
    ({"reportType": "custom", "timeRange": "7d",
      "customQueries": [{"metric": "revenue", "aggregation": "median"}]},
     "customQueries[0].aggregation"),
    ({"reportType": "executive", "timeRange": "7d", "deliveryMethod": "email"}, "channel"),
    ({"reportType": "executive", "timeRange": "7d", "deliveryMethod": "email",
      "channel": "nope"}, "channel"),
])
def test_bad_requests_are_400_naming_the_field(client, fake, body, field):
    resp = client.post(URL, headers=auth("analyst"), json=body)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["details"][0]["field"] == field
    assert not fake.queries


def test_permission(client, fake):
    body = {"reportType": "executive", "timeRange": "7d"}
    assert client.post(URL, json=body).status_code == 401
    for role in ("coach", "engineer", "auditor"):
        assert client.post(URL, headers=auth(role), json=body).status_code == 403
    assert client.post(URL, headers=auth("executive"), json=body).status_code == 200


def test_json_report_fits_the_openapi_schema(client, fake):
    resp = client.post(URL, headers=auth("analyst"), json={
        "reportType": "executive", "timeRange": "7d", "format": "json"})
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].endswith('.json"')
    report = json.loads(resp.data)
    validate_response(client.get("/api/openapi.json").get_json(), "Report", report)
    assert report["report"]["granularity"] == "day"
    assert [s["id"] for s in report["sections"]] == [
        "acquisition", "retention", "revenue", "feature_usage", "ai_effectiveness"]
    assert report["dataQuality"]["completeness"] == 1.0
    # k-anonymity: the fake's web group (3 users) is not in any figure.
    assert report["dataQuality"]["suppressedPoints"] == 0  # active_users is not by platform


def test_custom_report_in_excel(client, fake):
    resp = client.post(URL, headers=auth("analyst"), json={
        "reportType": "custom", "timeRange": {"start": NOW - 3 * 86400, "end": NOW},
        "format": "excel", "includeComparisons": False,
        "customQueries": [{"metric": "sessions", "dimensions": ["platform"],
                           "filters": [{"field": "platform", "operator": "neq",
                                        "value": "web"}]}]})
    assert resp.status_code == 200, resp.data[:300]
    assert any('platform!="web"' in q for q in fake.queries)
    wb = load_workbook(io.BytesIO(resp.data))
    ws = wb["Custom queries"]
    rows = list(ws.iter_rows(values_only=True))
    header = next(i for i, r in enumerate(rows) if r[0] == "time")
    assert rows[header][1:4] == ("platform=ios", "platform=android", "platform=web")
    assert rows[header + 1][1:4] == (10.0, 7.0, 3.0)
    assert all(isinstance(v, int | float) for v in rows[header + 1][1:4])  # numbers, not text
    assert len(ws._charts) == 1
    assert "Data quality" in wb.sheetnames


def test_pdf_report_has_headlines_and_notes(client, fake):
    resp = client.post(URL, headers=auth("analyst"), json={
        "reportType": "technical", "timeRange": "2d", "format": "pdf"})
    assert resp.status_code == 200
    assert resp.mimetype == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(resp.data)).pages)
    for needle in ("Technical report", "Headline numbers", "Availability against the SLO",
                   "Capacity and scaling", "Data quality", "Forecasts"):
        assert needle in text


def test_no_late_event_data_is_said_plainly_in_every_format(client, fake):
    """Without the intake's late and counted series the late share is "no data", not 0 %."""
    texts = {}
    for fmt_name in ("json", "excel", "pdf"):
        resp = client.post(URL, headers=auth("analyst"), json={
            "reportType": "executive", "timeRange": "7d", "format": fmt_name})
        assert resp.status_code == 200
        texts[fmt_name] = resp.data
    late = json.loads(texts["json"])["dataQuality"]["lateEvents"]
    assert late["platforms"] == [] and late["total"] is None
    assert late["note"].startswith("Arrived late: no data (pulse_events_late_total and "
                                   "pulse_event_lateness_seconds_count have no samples")
    assert late["note"] in json.loads(texts["json"])["dataQuality"]["notes"]
    rows = list(load_workbook(io.BytesIO(texts["excel"]))["Data quality"].iter_rows(
        values_only=True))
    head = next(i for i, r in enumerate(rows) if str(r[0]).startswith("arrived late"))
    assert rows[head + 1][:5] == ("no data", None, None, None, late["note"])
    pdf = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(texts["pdf"])).pages)
    assert "Arrived late: no data" in pdf


def test_formats():
    assert fmt(0.123456, "ratio") == "12.35%"
    assert fmt(1234.5, "currency") == "1,234.50"
    assert fmt(12.0, "count") == "12" and fmt(12.5, "count") == "12.50"
    assert fmt(None, "ratio") == "n/a" and fmt_change(-0.051) == "-5.1%"


def test_report_forecast_has_intervals_backtest_and_times():
    day = 86400
    item = {"metric": "signups", "unit": "count", "timestamps": [i * day for i in range(28)],
            "series": [{"name": "total", "values": [float(10 + i % 7) for i in range(28)]}]}
    f = forecast(item, 27 * day, day)
    assert f["points"][0]["time"] == "1970-01-29T00:00:00Z" and len(f["points"]) == 7
    assert f["backtest"]["origins"] >= 2 and f["baseline"] == "seasonal naive"
    assert all(p["low95"] <= p["value"] <= p["high95"] and p["low95"] >= 0
               for p in f["points"])
    assert "baseline" in f["note"]


def test_counts_are_integers_and_empty_segments_left_out():
    from bridge.services.analytics import MetricResult, catalogue
    defs = catalogue()
    res = MetricResult(defs["revenue"], "q", [0, 3600], [({"currency": "USD"}, [1.5, 2.5]),
                                                         ({"currency": "EUR"}, [0.0, None])])
    item = _item(res, 3600, None)
    assert [s["name"] for s in item["series"]] == ["currency=USD"]
    assert item["leftOut"] == ["currency=EUR"]
    day = 86400  # a step of the metric's window: the range's figure is the sum
    res = MetricResult(defs["signups"], "q", [0, day], [({}, [121.88, 3.4])])
    prev = MetricResult(defs["signups"], "q", [0, day], [({}, [0.2, 0.1])])
    s = _item(res, day, prev)["series"][0]
    assert s["values"] == [122, 3] and s["value"] == 125 and isinstance(s["value"], int)
    assert s["previous"] == 0 and "previous period is 0" in s["changeNote"]


@pytest.mark.parametrize("cadence, at, now, due, start", [
    ("daily", "06:00", "2026-11-25T07:00:00", "2026-11-25T06:00:00", "2026-11-24T06:00:00"),
    ("daily", "06:00", "2026-11-25T05:59:00", "2026-11-24T06:00:00", "2026-11-23T06:00:00"),
    ("weekly", "06:00", "2026-11-25T07:00:00", "2026-11-23T06:00:00", "2026-11-16T06:00:00"),
    ("weekly", "06:00", "2026-11-23T05:00:00", "2026-11-16T06:00:00", "2026-11-09T06:00:00"),
    ("monthly", "06:00", "2026-11-25T07:00:00", "2026-11-01T06:00:00", "2026-10-01T06:00:00"),
    ("monthly", "06:00", "2026-12-01T05:00:00", "2026-11-01T06:00:00", "2026-10-01T06:00:00"),
])
def test_due_times_and_periods(cadence, at, now, due, start):
    d = last_due(cadence, at, ts(now))
    assert d == ts(due)
    assert period(cadence, d) == (ts(start), ts(due))


def test_scheduler_sends_each_due_report_once(tmp_path):
    clock = [ts("2026-11-25T07:00:00")]
    sent, fail = [], [False]

    def send(sched, start, end):
        if fail[0]:
            raise RuntimeError("smtp down")
        sent.append((sched["name"], start, end))

    sched = ReportScheduler([{"name": "exec", "cadence": "daily", "at": "06:00"}],
                            tmp_path / "state.json", 1, send, lambda: clock[0])
    assert sched.run_due() == []  # first start: remembers today's due time, sends nothing
    clock[0] = ts("2026-11-26T05:00:00")
    assert sched.run_due() == []
    clock[0] = ts("2026-11-26T06:00:01")
    fail[0] = True
    assert sched.run_due() == []  # a failed send is retried at the next check
    fail[0] = False
    assert sched.run_due() == ["exec"]
    assert sent == [("exec", ts("2026-11-25T06:00:00"), ts("2026-11-26T06:00:00"))]
    # A restart reads the state: nothing is sent twice.
    again = ReportScheduler(sched.schedules, tmp_path / "state.json", 1, send, lambda: clock[0])
    assert again.run_due() == [] and len(sent) == 1


def test_schedules_are_validated():
    from pulse.config import ConfigError, validate
    with pytest.raises(ConfigError) as info:
        validate({"data_dir": "/tmp/x", "privacy": {"salt": "s" * 32},
                  "bridge": {"reports": {"schedules": [
                      {"name": "x", "report_type": "executive", "cadence": "hourly",
                       "channel": "c"}]}}}, "test", {})
    assert "cadence" in str(info.value)


BODY_KEYS = ["reportType", "timeRange", "includeComparisons", "format", "deliveryMethod",
             "customQueries", "granularity", "channel", "x"]
VALUES = st.one_of(
    st.sampled_from(["executive", "custom", "7d", "1h", "json", "excel", "email", "download",
                     "day", "minute", "reports", True, False, None, 0, -1.5]),
    st.lists(st.one_of(st.text(max_size=8), st.dictionaries(
        st.sampled_from(["metric", "dimensions", "filters", "groupBy", "aggregation", "y"]),
        st.one_of(st.sampled_from(["sessions", "revenue", "platform", "sum"]),
                  st.lists(st.sampled_from(["platform", "currency", "platform:eq:ios", 1]),
                           max_size=2), st.none()), max_size=4)), max_size=2),
    st.dictionaries(st.sampled_from(["start", "end", "z"]),
                    st.one_of(st.floats(), st.text(max_size=12), st.integers()), max_size=2),
    st.text(max_size=12))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(BODY_KEYS), VALUES, max_size=6))
def test_never_a_500(client, fake, body):
    body = {**body, "format": "json"} if body.get("format") not in (None, "json") else body
    resp = client.post(URL, headers=auth("analyst"), json=body)
    assert resp.status_code in (200, 400), resp.data[:300]


def test_concurrent_reports(app, fake):
    """Reports are built per request (no shared figure state): threads do not mix them."""
    from concurrent.futures import ThreadPoolExecutor

    def one(rtype):
        with app.test_client() as c:
            resp = c.post(URL, headers=auth("analyst"), json={
                "reportType": rtype, "timeRange": "2d", "format": "pdf"})
            return rtype, resp.status_code, resp.data
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, ["executive", "business", "technical"]))
    for rtype, status, data in results:
        assert status == 200
        text = PdfReader(io.BytesIO(data)).pages[0].extract_text()
        assert f"{rtype.capitalize()} report" in text


@pytest.mark.parametrize("span, pattern", [
    (3600, r"^(\w{3} \d{2} )?\d{2}:\d{2}$"), (2 * 86400, r"^(\w{3} \d{2} )?\d{2}:\d{2}$"),
    (30 * 86400, r"^\w{3} \d{2}$"), (365 * 86400, r"^\w{3} \d{4}$")])
def test_time_axes_are_readable_from_an_hour_to_a_year(span, pattern):
    import re

    from bridge.services.reports.charts import time_ticks
    end = 1_790_000_000.0
    ticks = time_ticks(end - span, end)
    assert 3 <= len(ticks) <= 7, ticks
    assert all(end - span <= t <= end for t, _ in ticks)
    assert all(re.match(pattern, label) for _, label in ticks), ticks
    # The date is named on the first tick of a sub-day axis.
    if span <= 2 * 86400:
        assert re.match(r"^\w{3} \d{2} ", ticks[0][1])
