"""Reports and the metrics query against a real Prometheus holding backfilled demo history.

The numbers of the JSON report, the Excel cells (openpyxl) and the PDF text (pypdf)
agree with each other and with direct PromQL; the PDF renders (pdftoppm) with charts;
an emailed report and a scheduled report arrive at a local SMTP server with attachments.
Recording rules come from $PULSE_RULES_DIR (default rules/).
"""

from __future__ import annotations

import email
import io
import json
import math
import shutil
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from openpyxl import load_workbook
from pypdf import PdfReader

from bridge import create_app
from bridge.services.reports.text import fmt, fmt_change
from tests.bridge.conftest import auth, bridge_config
from tests.bridge.openapi_check import validate_response
from tests.bridge.reportdata import (
    ACTIVE_USERS,
    COACHES,
    SUBSCRIPTIONS_ACTIVE,
    backfill,
)
from tests.harness import free_port, wait_until

pytestmark = pytest.mark.integration
HOURS = 6
POPPLER = "apt-get install -y poppler-utils"


class SmtpSink:
    """A local SMTP server (aiosmtpd in a thread) keeping every message."""

    def __init__(self):
        self.messages: list[email.message.Message] = []
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    sink.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self, to: str) -> str:
        """The apprise mailto:// URL delivering to this server."""
        return (f"mailto://pulse@example.com?smtp=127.0.0.1&port={self.port}&to={to}"
                "&mode=insecure")

    def attachments(self, to: str) -> list[tuple[str, bytes]]:
        """(filename, bytes) of every attachment sent to an address."""
        out = []
        with self.lock:
            for msg in self.messages:
                if to not in (msg["To"] or ""):
                    continue
                for part in msg.walk():
                    if part.get_filename():
                        out.append((part.get_filename(), part.get_payload(decode=True)))
        return out

    def stop(self):
        self.controller.stop()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A Prometheus with HOURS of backfilled raw series and recording rules; (prom, end)."""
    end = (int(time.time()) // 3600) * 3600 - 3600
    prom = backfill(tmp_path_factory.mktemp("history"), end - HOURS * 3600, end + 600)
    yield prom, end
    prom.stop()


@pytest.fixture(scope="module")
def smtp():
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def bridge(history, smtp, tmp_path_factory):
    """The bridge app on the history's Prometheus with a `reports` email channel."""
    prom, _ = history
    cfg = bridge_config(tmp_path_factory.mktemp("bridge"), prometheus={"url": prom.url},
                        alertmanager={"url": "http://127.0.0.1:9"},
                        bridge={"channels": {"reports": [smtp.url("analyst@example.com")]}})
    return create_app(cfg).test_client()


def _range(end: float, hours: int) -> dict:
    return {"start": end - hours * 3600, "end": end}


def test_metrics_query_matches_direct_promql(history, bridge):
    prom, end = history
    resp = bridge.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "revenue,workout_completion_rate", "dimensions": "",
        "start": end - 4 * 3600, "end": end, "granularity": "hour"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["metadata"]["pointsPerSeries"] == 4
    promql = {q["metric"]: q["promql"] for q in body["metadata"]["queries"]}
    for entry in body["data"]:
        for point in entry["points"]:
            t = _ts(point["timestamp"])
            direct = float(prom.query(promql[entry["metric"]], time_=t)[0]["value"][1])
            assert point["value"] == pytest.approx(direct, rel=1e-8)
    # Independent of the catalogue: hourly revenue buckets add up to the raw increase.
    revenue = next(e for e in body["data"] if e["metric"] == "revenue")
    raw = prom.query("sum(increase(business_revenue_total[4h]))", time_=end)
    assert revenue["summary"]["aggregation"] == "sum"
    assert revenue["summary"]["value"] == pytest.approx(float(raw[0]["value"][1]), rel=0.03)
    assert any("integrations/127.0.0.1:9703 is down" in w for w in body["warnings"])


def test_small_groups_are_suppressed(history, bridge):
    _, end = history
    resp = bridge.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "active_users", "dimensions": "platform", "start": end - 3600,
        "end": end, "granularity": "minute", "orderBy": "platform:asc"})
    body = resp.get_json()
    by = {e["labels"]["platform"]: e for e in body["data"]}
    assert set(by) == {"ios", "android", "web"}  # platform="all" is not a platform
    assert all(p["value"] is None for p in by["web"]["points"])  # 3 users < k = 5
    assert all(p["value"] == 120 for p in by["ios"]["points"])
    assert body["metadata"]["suppressedPoints"] == 60
    assert any("k-anonymity" in w for w in body["warnings"])


def test_active_users_are_distinct_per_window(history, bridge):
    """The totals are platform="all" of each window (multi-platform users once), equal to
    direct PromQL; the platforms add up to more."""
    prom, end = history
    resp = bridge.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "active_users,weekly_active_users,monthly_active_users,stickiness,"
                   "churn_risk_users,active_subscriptions",
        "start": end - 2 * 3600, "end": end, "granularity": "hour"})
    assert resp.status_code == 200, resp.get_json()
    got = {e["metric"]: e["summary"]["value"] for e in resp.get_json()["data"]}
    for metric, window in (("active_users", "1d"), ("weekly_active_users", "7d"),
                           ("monthly_active_users", "30d")):
        direct = prom.query(f'fitness_active_users{{window="{window}",platform="all"}}',
                            time_=end)
        assert got[metric] == float(direct[0]["value"][1]) == ACTIVE_USERS[window]["all"]
        assert got[metric] < sum(v for p, v in ACTIVE_USERS[window].items() if p != "all")
    assert got["stickiness"] == pytest.approx(200 / 900)
    assert got["churn_risk_users"] == 150  # inactive 7+ days: the widest set, not 7+14+30
    assert got["active_subscriptions"] == sum(SUBSCRIPTIONS_ACTIVE.values())
    retention = bridge.get("/api/analytics/metrics", headers=auth("analyst"), query_string={
        "metrics": "cohort_retention", "dimensions": "cohort,week", "filters": "week:eq:1",
        "start": end - 3600, "end": end, "granularity": "hour"}).get_json()
    assert {e["labels"]["cohort"]: e["summary"]["value"] for e in retention["data"]} == \
        {"2026-W46": 0.5, "2026-W47": 0.3}


COACH_TOKENS = {"coach-1": "coach-one-token-0123456789abcdef",
                "coach-2": "coach-two-token-0123456789abcdef",
                "coach-3": "coach-three-token-0123456789abcdef"}


@pytest.fixture(scope="module")
def coaches_bridge(history, tmp_path_factory):
    """A bridge with a token per coach (coach-3 has fewer than k clients) and an analyst."""
    prom, _ = history
    tokens = [{"name": f"{c}-user", "role": "coach", "token": t, "coach_id": c}
              for c, t in COACH_TOKENS.items()]
    tokens.append({"name": "analyst-user", "role": "analyst",
                   "token": "analyst-token-0123456789abcdef"})
    cfg = bridge_config(tmp_path_factory.mktemp("coaches"), prometheus={"url": prom.url},
                        alertmanager={"url": "http://127.0.0.1:9"},
                        bridge={"tokens": tokens})
    return create_app(cfg).test_client()


COACH_METRICS = {"coach_clients_active": "clients_active",
                 "coach_workout_completion_rate": "workout_completion_ratio",
                 "coach_goal_progress": "goal_progress_ratio",
                 "coach_ai_acceptance_rate": "ai_acceptance_ratio"}


def test_a_coach_sees_only_its_own_clients(history, coaches_bridge):
    """From a real Prometheus holding two coaches' series: each coach token gets exactly
    its own values (even when asking to group by coach); a coach below k gets no data;
    other metrics are refused naming the metric."""
    _, end = history
    query = {"metrics": ",".join(COACH_METRICS), "start": end - 2 * 3600, "end": end,
             "granularity": "hour"}
    for coach, expected in COACHES.items():
        for extra in ({}, {"dimensions": "coach"}):
            resp = coaches_bridge.get("/api/analytics/metrics", query_string={**query, **extra},
                                      headers={"Authorization":
                                               f"Bearer {COACH_TOKENS[coach]}"})
            assert resp.status_code == 200, resp.get_json()
            body = resp.get_json()
            assert len(body["data"]) == len(COACH_METRICS), body["data"]
            for entry in body["data"]:
                assert entry["labels"] in ({}, {"coach": coach})
                want = expected[COACH_METRICS[entry["metric"]]]
                assert entry["summary"]["value"] == pytest.approx(want), entry["metric"]
                assert all(p["value"] == pytest.approx(want) for p in entry["points"])
            assert all(f'coach="{coach}"' in q["promql"] for q in body["metadata"]["queries"])
    # Filtering on another coach cannot widen the scope: a conflicting matcher is refused
    # (prom-label-proxy's error-on-replace), naming the filter.
    other = coaches_bridge.get("/api/analytics/metrics", query_string={
        **query, "filters": "coach:eq:coach-2"}, headers={
        "Authorization": f"Bearer {COACH_TOKENS['coach-1']}"})
    assert other.status_code == 403, other.get_json()
    assert other.get_json()["error"]["details"][0]["field"] == "filters"
    below_k = coaches_bridge.get("/api/analytics/metrics", query_string=query, headers={
        "Authorization": f"Bearer {COACH_TOKENS['coach-3']}"}).get_json()
    assert below_k["data"] == [] and len(below_k["warnings"]) >= len(COACH_METRICS)
    denied = coaches_bridge.get("/api/analytics/metrics", query_string={
        **query, "metrics": "workout_completion_rate"}, headers={
        "Authorization": f"Bearer {COACH_TOKENS['coach-1']}"})
    assert denied.status_code == 403
    assert "'workout_completion_rate' is not a coach metric" in \
        denied.get_json()["error"]["details"][0]["problem"]
    # An analyst sees every coach by coach, and the mean over coaches without grouping.
    analyst = {"Authorization": "Bearer analyst-token-0123456789abcdef"}
    by = coaches_bridge.get("/api/analytics/metrics", headers=analyst, query_string={
        **query, "metrics": "coach_workout_completion_rate", "dimensions": "coach"}).get_json()
    assert {e["labels"]["coach"]: e["summary"]["value"] for e in by["data"]} == {
        c: v["workout_completion_ratio"] for c, v in COACHES.items()}
    mean = coaches_bridge.get("/api/analytics/metrics", headers=analyst, query_string={
        **query, "metrics": "coach_workout_completion_rate"}).get_json()
    assert mean["data"][0]["summary"]["value"] == pytest.approx(0.625)


def _ts(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _report(bridge, end, fmt_name: str, rtype: str = "executive",
            granularity: str = "hour") -> bytes:
    resp = bridge.post("/api/analytics/reports/generate", headers=auth("analyst"), json={
        "reportType": rtype, "timeRange": _range(end, 3), "includeComparisons": True,
        "format": fmt_name, "deliveryMethod": "download", "granularity": granularity})
    assert resp.status_code == 200, resp.data[:500]
    return resp.data


@pytest.fixture(scope="module")
def executive(history, bridge):
    """The executive report over the last 3 h of the history (per minute), in all formats."""
    _, end = history
    return {f: _report(bridge, end, f, granularity="minute") for f in ("json", "excel", "pdf")}


def test_json_report_matches_direct_promql(history, executive):
    prom, end = history
    report = json.loads(executive["json"])
    assert report["report"]["timeRange"]["seconds"] == 3 * 3600
    items = {i["metric"]: i for s in report["sections"] for i in s["items"]}
    for name in ("signups", "revenue", "workout_completion_rate", "ai_accuracy",
                 "feature_usage", "active_users", "monthly_active_users", "stickiness",
                 "churn_rate", "active_subscriptions", "churn_risk_users"):
        item = items[name]
        assert item["series"], name
        for s in item["series"]:
            # Per minute over 3 h: every 20th point and the last one, straight from PromQL.
            pairs = list(zip(item["timestamps"], s["values"], strict=True))
            for t, v in pairs[::20] + pairs[-1:]:
                rows = prom.query(item["promql"], time_=t)
                direct = {tuple(sorted((k, r["metric"].get(k, "")) for k in s["labels"])):
                          float(r["value"][1]) for r in rows}
                want = direct[tuple(sorted(s["labels"].items()))]
                # Counts are rounded to integers (build.ROUNDING), exactly.
                assert v == (round(want) if item["unit"] == "count" else pytest.approx(want)), \
                    (name, v, want)
    # Independent of the catalogue: accuracy from the raw counters over the last hour.
    raw = prom.query('sum(increase(ai_recommendations_total{outcome="accepted"}[1h])) / '
                     'sum(increase(ai_recommendations_total{outcome!="ignored"}[1h]))',
                     time_=end)
    acc = items["ai_accuracy"]["series"][0]["values"][-1]
    assert acc == pytest.approx(float(raw[0]["value"][1]), rel=0.02)
    assert 0.75 < acc < 0.85
    q = report["dataQuality"]
    assert q["staleSources"] == [{"job": "integrations", "instance": "127.0.0.1:9703"}]
    assert any(a["metric"] == "arpu" for a in q["absent"]) is False
    assert 0.9 < q["completeness"] <= 1, q["notes"]
    headline = {(h["metric"], h["series"]): h for h in report["headlines"]}
    rev = headline[("revenue", "currency=USD")]
    assert rev["previous"] > 0 and rev["changeRatio"] is not None
    # Counts are integers: no fractional count anywhere (Prometheus's increases are).
    for item in items.values():
        if item["unit"] == "count":
            for s in item["series"]:
                for v in [*s["values"], s["value"], s.get("previous")]:
                    assert v is None or isinstance(v, int), (item["metric"], v)
    # Forecasts: a model or the baseline, with intervals and the backtest error.
    assert report["forecasts"]
    for f in report["forecasts"]:
        assert f["points"] and f["backtest"]["origins"] >= 1, f
        assert f["backtest"]["baseline"]["mase"] is not None and "baseline" in f["note"]
        for p in f["points"]:
            assert p["low95"] <= p["low80"] <= p["value"] <= p["high80"] <= p["high95"]
    # Without a benchmark file: no made-up figures.
    assert report["benchmarks"] == {"configured": False, "rows": [],
                                    "note": "no industry benchmark configured"}
    # Empty segments are left out: EUR has revenue, so both currencies are rows here.
    assert {s["name"] for s in items["revenue"]["series"]} == {"currency=USD", "currency=EUR"}
    # Distinct users: platform="all", never the sum of the platforms (213 for the day).
    assert headline[("active_users", "total")]["value"] == ACTIVE_USERS["1d"]["all"]
    assert headline[("monthly_active_users", "total")]["value"] == ACTIVE_USERS["30d"]["all"]
    assert headline[("active_subscriptions", "total")]["value"] == 120
    # churn_rate: the day's cancellations per active subscription, from the raw counter.
    raw = prom.query("sum(increase(business_subscriptions_canceled_total[1d])) / "
                     "sum(business_subscriptions_active)", time_=end)
    churn = items["churn_rate"]["series"][0]["values"][-1]
    assert churn == pytest.approx(float(raw[0]["value"][1]), rel=0.02)


def test_excel_cells_equal_the_json(executive):
    report = json.loads(executive["json"])
    wb = load_workbook(io.BytesIO(executive["excel"]))
    assert "Data quality" in wb.sheetnames and "Summary" in wb.sheetnames
    summary = wb["Summary"]
    rows = [r for r in summary.iter_rows(values_only=True) if r and r[0]]
    rows = rows[:next(i for i, r in enumerate(rows) if r[0] == "forecast")]
    found = {(r[0], r[1]): r for r in rows}
    for h in report["headlines"]:
        row = found[(h["metric"], h["series"])]
        assert row[3] == h["value"] and row[4] == h["previous"]
        assert h["value"] is None or isinstance(row[3], float | int)
    charts = 0
    for section in report["sections"]:
        ws = wb[section["title"][:31]]
        charts += len(ws._charts)
        cells = [r for r in ws.iter_rows(values_only=True)]
        for item in section["items"]:
            if not item["series"]:
                continue
            start = next(i for i, r in enumerate(cells) if r[0] == item["metric"])
            header = cells[start + 2]
            assert header[0] == "time"
            for col, s in enumerate(item["series"], start=1):
                assert header[col] == s["name"]
                column = [cells[start + 3 + i][col] for i in range(len(item["times"]))]
                assert column == s["values"]
    assert charts == sum(1 for s in report["sections"] for i in s["items"] if i["series"])
    quality = [r[0] for r in wb["Data quality"].iter_rows(values_only=True) if r and r[0]]
    assert any("Stale source" in str(v) for v in quality)


def test_pdf_text_carries_the_json_numbers_and_renders_charts(executive, tmp_path):
    report = json.loads(executive["json"])
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(executive["pdf"])).pages)
    assert "Executive report" in text and "Data quality" in text
    for h in report["headlines"]:
        assert fmt(h["value"], h["unit"]) in text, h
        if h["changeRatio"] is not None:
            assert fmt_change(h["changeRatio"]) in text, h
    assert "no industry benchmark configured" in text
    assert "Forecasts" in text and "MASE" in text
    assert "Stale source" in text
    if shutil.which("pdftoppm") is None:
        pytest.fail(f"`pdftoppm` is missing; install it with: {POPPLER} "
                    "(or run `make test`, which does)", pytrace=False)
    (tmp_path / "r.pdf").write_bytes(executive["pdf"])
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(tmp_path / "r.pdf"),
                    str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    import matplotlib.image as mpimg
    # Chart lines (matplotlib's blue first series) are the only clearly blue pixels.
    with_charts = 0
    for page in pages:
        rgb = mpimg.imread(page)[:, :, :3]
        with_charts += int((rgb[:, :, 2] - rgb[:, :, 0] > 0.25).sum() > 200)
    assert with_charts >= 2


def test_the_late_share_of_the_range_in_every_format(history, bridge, executive):
    """dataQuality.lateEvents: per platform, the range's late events against the events
    counted, equal to direct PromQL (counts rounded integers, the share the increases'
    ratio); a platform without counted events says so; Excel and PDF carry the same."""
    prom, end = history
    report = json.loads(executive["json"])
    validate_response(bridge.get("/api/openapi.json").get_json(), "Report", report)
    late = report["dataQuality"]["lateEvents"]
    assert late["lateAfter"] == "1h"

    def direct(name: str) -> dict[str, float]:
        rows = prom.query(f"sum by (platform) (increase({name}[3h]))", time_=end)
        return {r["metric"]["platform"]: float(r["value"][1]) for r in rows}

    lates, counted = direct("pulse_events_late_total"), direct(
        "pulse_event_lateness_seconds_count")
    rows = {r["platform"]: r for r in late["platforms"]}
    assert set(rows) == {"ios", "android", "web"}
    for platform, share in (("ios", 0.01), ("android", 0.03)):
        r = rows[platform]
        assert r["late"] == round(lates[platform]) and r["events"] == round(counted[platform])
        assert isinstance(r["late"], int) and isinstance(r["events"], int)
        assert r["share"] == pytest.approx(lates[platform] / counted[platform])
        assert r["share"] == pytest.approx(share)
        assert "note" not in r
    assert rows["web"] == {"platform": "web", "late": 0, "events": None, "share": None,
                           "note": "no events counted"}
    total = late["total"]
    assert total["events"] == round(counted["ios"] + counted["android"])
    assert total["share"] == pytest.approx((lates["ios"] + lates["android"]) /
                                           (counted["ios"] + counted["android"]))
    ios = rows["ios"]
    text = f"ios: {ios['late']:,} of {ios['events']:,} counted events ({ios['share']:.2%})"
    assert text in late["note"] and "web: no data (no events counted)" in late["note"]
    # Excel: the data-quality sheet's table holds the same numbers as numbers.
    wb = load_workbook(io.BytesIO(executive["excel"]))
    cells = list(wb["Data quality"].iter_rows(values_only=True))
    head = next(i for i, r in enumerate(cells) if str(r[0]).startswith("arrived late"))
    table = {r[0]: r[1:5] for r in cells[head + 1:head + 5]}
    for platform, r in rows.items():
        assert table[platform] == (r["late"], r["events"], r["share"], r.get("note"))
    assert table["total"] == (total["late"], total["events"], total["share"], None)
    # PDF: the table's text and the note.
    pdf = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(executive["pdf"])).pages)
    assert "Arrived late" in pdf
    for r in (ios, rows["android"], total):
        cells = (fmt(r["late"], "count"), fmt(r["events"], "count"), fmt(r["share"], "ratio"))
        assert "\n".join(cells) in pdf, r  # one table row, a cell a line
    assert "no data (no events counted)" in pdf


def test_business_and_technical_reports(history, bridge):
    prom, end = history
    business = json.loads(_report(bridge, end, "json", "business"))
    costs = business["costs"]
    rows = {r["category"]: r for r in costs["rows"]}
    # Booked costs straight from business_costs_total; support is not booked: an estimate.
    for category in ("infrastructure", "ai_processing"):
        direct = prom.query(f'sum(increase(business_costs_total{{category="{category}"}}'
                            f'[3h]))', time_=end)
        assert rows[category]["basis"] == "booked"
        assert rows[category]["amount"] == pytest.approx(float(direct[0]["value"][1]))
    assert rows["support"]["basis"] == "estimate" and "support_per_ticket" in \
        rows["support"]["method"]
    assert any("ESTIMATE" in n and "support" in n for n in costs["notes"])
    usd = next(c for c in costs["byCurrency"] if c["currency"] == "USD")
    booked = rows["infrastructure"]["amount"] + rows["ai_processing"]["amount"]
    assert usd["booked"] == pytest.approx(booked)
    # Per user over the distinct monthly active users (900), not a platform sum; per
    # active subscription over the 120 active subscriptions.
    assert costs["activeUsers"] == ACTIVE_USERS["30d"]["all"]
    assert usd["perUser"] == pytest.approx(usd["total"] / ACTIVE_USERS["30d"]["all"])
    assert usd["bookedPerActiveSubscription"] == pytest.approx(
        booked / sum(SUBSCRIPTIONS_ACTIVE.values()))
    items = {i["metric"]: i for s in business["sections"] for i in s["items"]}
    revenue_1d = prom.query("sum(increase(business_revenue_total[1d]))", time_=end)
    arpu = sum(s["values"][-1] for s in items["arpu"]["series"])
    assert arpu == pytest.approx(float(revenue_1d[0]["value"][1]) / 900, rel=0.02)
    ltv = business["ltv"]
    assert ltv["value"] == pytest.approx(ltv["arpu"] / ltv["churnRate"])
    assert "monthly active user" in ltv["formula"] and "active subscription" in ltv["formula"]
    technical = json.loads(_report(bridge, end, "json", "technical"))
    items = {i["metric"]: i for s in technical["sections"] for i in s["items"]}
    p95 = items["api_p95_latency"]["series"][0]["value"]
    assert 0.1 < p95 < 2
    assert technical["slo"]["objective"] == pytest.approx(0.995)
    assert technical["scaling"][0]["action"] == "none"
    capacity = technical["capacityPlanning"]
    assert capacity and all("threshold" in r and "note" in r for r in capacity)
    assert not math.isnan(items["api_error_ratio"]["series"][0]["value"])


def test_benchmarks_from_a_user_file(history, tmp_path):
    """A validated benchmark file's figures beside ours; an invalid one is named, not used."""
    prom, end = history
    good = tmp_path / "benchmarks.yml"
    good.write_text("benchmarks:\n"
                    "  - {metric: feature_adoption, labels: {feature: workout_player},\n"
                    "     value: 0.3, unit: ratio, source: Example survey 2025, date: 2025-06}\n"
                    "  - {metric: workout_completion_rate, value: 0.7, unit: ratio,\n"
                    "     source: Example survey 2025, date: 2025-06-01}\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("benchmarks:\n  - {metric: feature_adoption, value: 0.3}\n")
    for path, configured in ((good, True), (bad, False)):
        cfg = bridge_config(tmp_path / path.stem, prometheus={"url": prom.url},
                            alertmanager={"url": "http://127.0.0.1:9"},
                            bridge={"reports": {"benchmarks": {"file": str(path)}}})
        report = json.loads(_report(create_app(cfg).test_client(), end, "json"))
        b = report["benchmarks"]
        assert b["configured"] is configured, b
        if configured:
            rows = {r["metric"]: r for r in b["rows"]}
            ours = rows["feature_adoption"]["ours"]
            assert ours is not None and 0 < ours < 1
            assert rows["feature_adoption"]["source"] == "Example survey 2025"
            assert rows["workout_completion_rate"]["date"] == "2025-06-01"
        else:
            assert "is invalid" in b["note"] and "source" in b["note"] and b["rows"] == []


def test_emailed_report_arrives_with_its_attachment(history, bridge, smtp):
    _, end = history
    resp = bridge.post("/api/analytics/reports/generate", headers=auth("executive"), json={
        "reportType": "executive", "timeRange": _range(end, 3), "includeComparisons": True,
        "format": "pdf", "deliveryMethod": "email", "granularity": "hour"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["delivered"] and body["sent"] and not body["failed"]
    assert "mailto" not in json.dumps(body)  # the channel URL is a secret
    files = wait_until(lambda: smtp.attachments("analyst@example.com"), 60,
                       message="the emailed report")
    name, data = files[-1]
    assert name == body["filename"] and name.endswith(".pdf")
    assert data.startswith(b"%PDF")
    assert "Executive report" in PdfReader(io.BytesIO(data)).pages[0].extract_text()


def test_scheduled_report_is_sent_by_the_bridge(history, smtp, tmp_path):
    prom, _ = history
    cfg = bridge_config(tmp_path, prometheus={"url": prom.url},
                        alertmanager={"url": "http://127.0.0.1:9"},
                        bridge={"channels": {"executives": [smtp.url("exec@example.com")]},
                                "reports": {"check_interval": "1s", "schedules": [
                                    {"name": "exec-daily", "report_type": "executive",
                                     "cadence": "daily", "at": "00:00", "format": "excel",
                                     "channel": "executives"}]}})
    state = tmp_path / "data" / "reports" / "schedules.json"
    state.parent.mkdir(parents=True)
    # The last daily report went out two days ago: one is due now.
    state.write_text(json.dumps({"exec-daily": time.time() - 2 * 86400}))
    app = create_app(cfg)
    scheduler = app.extensions["pulse.report_scheduler"]
    try:
        files = wait_until(lambda: smtp.attachments("exec@example.com"), 90,
                           message="the scheduled report")
    finally:
        scheduler.stop()
    name, data = files[0]
    assert name.endswith(".xlsx")
    wb = load_workbook(io.BytesIO(data))
    assert "Data quality" in wb.sheetnames
    sent = json.loads(state.read_text())["exec-daily"]
    assert sent > time.time() - 86400  # today's due time is recorded: no repeat
