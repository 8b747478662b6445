"""The report as a PDF (reportlab): title page, headline numbers with period-over-period
change, a chart per series, tables, forecasts and data-quality notes."""

from __future__ import annotations

import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from bridge.services.reports.charts import chart, forecast_chart
from bridge.services.reports.text import fmt, fmt_change

STYLES = getSampleStyleSheet()
TABLE_STYLE = TableStyle([
    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
    ("FONTSIZE", (0, 0), (-1, -1), 8),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5")),
    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
])
MAX_TABLE_ROWS = 40


def _p(text: str, style: str = "BodyText") -> Paragraph:
    safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Paragraph(safe, STYLES[style])


def _table(rows: list[list], widths: list[float] | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(TABLE_STYLE)
    return table


def _title_page(report: dict) -> list:
    meta = report["report"]
    q = report["dataQuality"]
    out = [Spacer(1, 5 * cm), _p(f"Pulse — {meta['title']}", "Title"),
           _p(f"{meta['timeRange']['start']} to {meta['timeRange']['end']}", "Heading2"),
           _p(f"Granularity: {meta['granularity']}. Generated {meta['generatedAt']}."),
           Spacer(1, 1 * cm)]
    if meta.get("previousRange"):
        out.append(_p(f"Compared with the previous period {meta['previousRange']['start']} to "
                      f"{meta['previousRange']['end']}."))
    completeness = q["completeness"]
    out.append(_p("Data completeness: " + (f"{completeness:.1%}" if completeness is not None
                                           else "n/a") + "."))
    out.append(_p("Figures are computed by Prometheus from Pulse's recording rules; groups of "
                  f"fewer than {q['kAnonymity']} users are suppressed."))
    out.append(_p(report["metadata"]["rounding"]))
    out.append(PageBreak())
    return out


def _headlines(report: dict) -> list:
    if not report["headlines"]:
        return []
    rows = [["Metric", "Series", "Value", "Previous", "Change"]]
    for h in report["headlines"]:
        rows.append([h["metric"], h["series"], fmt(h["value"], h["unit"]),
                     fmt(h["previous"], h["unit"]),
                     fmt_change(h["changeRatio"]) if h["changeRatio"] is not None
                     else _p(h.get("changeNote") or "n/a")])
    return [_p("Headline numbers", "Heading1"), _table(rows), Spacer(1, 0.5 * cm)]


def _item(item: dict) -> list:
    out = [_p(f"{item['metric']}: {item['title']}", "Heading3")]
    out.append(chart(item))
    if item["series"]:
        has_prev = "previous" in item["series"][0]
        header = ["Series", f"Value ({item['aggregation']})"]
        header += ["Previous", "Change"] if has_prev else []
        rows = [header]
        for s in item["series"][:MAX_TABLE_ROWS]:
            row = [s["name"], fmt(s["value"], item["unit"])]
            if has_prev:
                row += [fmt(s.get("previous"), item["unit"]), fmt_change(s.get("changeRatio"))]
            rows.append(row)
        out.append(_table(rows))
    else:
        out.append(_p("No data in the range."))
    out.append(Spacer(1, 0.4 * cm))
    return out


def _extras(report: dict, sid: str) -> list:
    out = []
    if sid == "costs" and report.get("costs"):
        c = report["costs"]
        rows = [["Category", "Currency", "Amount", "Basis", "Previous", "Change"]]
        for r in c["rows"]:
            rows.append([r["category"], r["currency"], fmt(r["amount"], "currency"),
                         r["basis"], fmt(r["previous"], "currency"),
                         fmt_change(r["changeRatio"])])
        out.append(_table(rows))
        rows = [["Currency", "Booked", "Estimated", "Per user", "Per active subscription"]]
        for cur in c["byCurrency"]:
            rows.append([cur["currency"], fmt(cur["booked"], "currency"),
                         fmt(cur["estimated"], "currency"), fmt(cur["perUser"], "currency"),
                         fmt(cur["perActiveSubscription"], "currency")])
        out += [Spacer(1, 0.2 * cm), _table(rows)]
    if sid == "feature_usage" and report.get("benchmarks"):
        b = report["benchmarks"]
        out.append(_p("Industry benchmarks", "Heading3"))
        if not b["configured"]:
            out.append(_p(b["note"] + "."))
        else:
            rows = [["Metric", "Labels", "Ours", "Industry", "Position", "Source", "Date"]]
            for r in b["rows"]:
                unit = r.get("unit") or ""
                rows.append([r["metric"], label_text(r["labels"]), fmt(r["ours"], unit),
                             fmt(r["industry"], unit), r["position"] or "n/a",
                             _p(r["source"]), r["date"]])
            out.append(_table(rows, [2.6 * cm, 2.6 * cm, 1.6 * cm, 1.6 * cm, 1.4 * cm,
                                     4 * cm, 1.6 * cm]))
    if sid == "incidents":
        rows = [["Alert", "Severity"]] + [[r["alertname"], r["severity"]]
                                          for r in report.get("incidents") or []]
        out.append(_table(rows))
    if sid == "capacity" and report.get("capacityPlanning"):
        rows = [["Metric", "Series", "Threshold", "Days", "95 % interval"]]
        for r in report["capacityPlanning"]:
            early, late = r.get("earliestDays"), r.get("latestDays")
            rows.append([r["metric"], r["series"] or "-", fmt(r["threshold"], "ratio"),
                         "n/a" if r["days"] is None else f"{r['days']:.1f}",
                         "n/a" if early is None else
                         f"{early:.1f} to {'beyond' if late is None else f'{late:.1f}'}"])
        out.append(_table(rows))
    if sid in ("retention", "subscriptions") and report.get("churnModel"):
        out += _churn(report["churnModel"])
    if sid == "unit_economics" and report.get("ltv"):
        ltv = report["ltv"]
        out.append(_p(f"Lifetime value: {fmt(ltv['value'], 'currency')} ({ltv['formula']})."))
    return out


def _churn(m: dict) -> list:
    out = [_p("Churn prediction", "Heading3")]
    if m["status"] != "ok":
        return out + [_p(f"No churn model: {m['note']}.")]
    h = m["heldOut"]
    out.append(_p(f"{m['method']}; churn = {m['label']}. Held-out users "
                  f"{m['heldOutUsers']}: AUC {h['auc']:.3f}, Brier score "
                  f"{h['brierScore']:.3f} (base rate {h['baseRate']:.1%})."))
    rows = [["Plan", "Engagement", "Users", "Mean churn probability", "Expected churners"]]
    for s in m["segments"]:
        rows.append([s["plan"], s["engagement"], fmt(s["users"], "count"),
                     fmt(s["meanChurnProbability"], "ratio"),
                     fmt(s["expectedChurners"], "count")])
    out.append(_table(rows))
    return out


def _late(late: dict) -> list:
    """The late-arrival table (its figures are in the notes too); nothing without data."""
    rows = [(r["platform"], r) for r in late["platforms"]]
    if late["total"] is None:
        return []
    rows.append(("total", late["total"]))
    table = [["Platform", "Late events", "Counted events", "Late share"]]
    for name, r in rows:
        table.append([name, fmt(r["late"], "count"), fmt(r["events"], "count"),
                      fmt(r["share"], "ratio") if r["share"] is not None
                      else f"no data ({r['note']})"])
    return [_p(f"Arrived late (more than late_after={late['lateAfter']} after they happened)",
               "Heading3"), _table(table)]


def label_text(labels: dict) -> str:
    """Labels as k=v text."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _forecasts(report: dict) -> list:
    if not report.get("forecasts"):
        return []
    items = {i["metric"]: i for s in report["sections"] for i in s["items"]}
    out = [_p("Forecasts", "Heading1")]
    rows = [["Metric", "Series", "Method", "Last point", "80 %", "95 %", "MASE (base)"]]
    for f in report["forecasts"]:
        last = f["points"][-1] if f["points"] else None
        bt = f.get("backtest") or {}
        mase = ("n/a" if not bt.get("origins") else
                f"{fmt(bt['model']['mase'])} ({fmt(bt['baseline']['mase'])})")
        rows.append([f["metric"], f["series"], _p(f["method"] or "none"),
                     fmt(last and last["value"], f["unit"]),
                     "n/a" if not last else f"{fmt(last['low80'], f['unit'])} to "
                                            f"{fmt(last['high80'], f['unit'])}",
                     "n/a" if not last else f"{fmt(last['low95'], f['unit'])} to "
                                            f"{fmt(last['high95'], f['unit'])}", mase])
    out.append(_table(rows, [2.6 * cm, 1.6 * cm, 3.6 * cm, 1.8 * cm, 2.6 * cm, 2.6 * cm,
                             1.8 * cm]))
    for f in report["forecasts"]:
        out.append(_p(f"{f['metric']}: {f['note']}."))
        if f["points"] and f["metric"] in items:
            out.append(forecast_chart(items[f["metric"]], f))
    return out


def to_pdf(report: dict) -> bytes:
    """The report as PDF bytes."""
    story = _title_page(report)
    story += _headlines(report)
    for section in report["sections"]:
        story.append(_p(section["title"], "Heading1"))
        story += _extras(report, section["id"])
        for note in section["notes"]:
            story.append(_p(note))
        for item in section["items"]:
            story += _item(item)
    story += _forecasts(report)
    story.append(_p("Data quality", "Heading1"))
    for note in report["dataQuality"]["notes"]:
        story.append(_p(note))
    story += _late(report["dataQuality"]["lateEvents"])
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=report["report"]["title"],
                            author="Pulse", leftMargin=2 * cm, rightMargin=2 * cm,
                            topMargin=2 * cm, bottomMargin=2 * cm)
    doc.build(story)
    return buf.getvalue()
