"""The report as an Excel workbook: a summary, one sheet per section, a data-quality sheet.

Cells hold real numbers (never formatted strings); each time series gets a line chart
next to its table.
"""

from __future__ import annotations

import io
import re

from openpyxl import Workbook
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

BOLD = Font(bold=True)
NUMBER_FORMATS = {"ratio": "0.00%", "currency": "#,##0.00", "count": "#,##0",
                  "seconds": "0.000"}


def sheet_title(text: str, taken: set[str]) -> str:
    """An Excel-safe, unique sheet name (31 characters, no []:*?/\\)."""
    base = re.sub(r"[\[\]:*?/\\]", " ", text)[:31] or "Sheet"
    name, n = base, 2
    while name.lower() in taken:
        name = f"{base[:28]} {n}"
        n += 1
    taken.add(name.lower())
    return name


def _row(ws, values, bold: bool = False):
    ws.append(list(values))
    if bold:
        for cell in ws[ws.max_row]:
            cell.font = BOLD


def _summary(ws, report: dict) -> None:
    meta = report["report"]
    _row(ws, [meta["title"]], bold=True)
    _row(ws, ["Range", meta["timeRange"]["start"], meta["timeRange"]["end"]])
    _row(ws, ["Granularity", meta["granularity"]])
    _row(ws, ["Generated", meta["generatedAt"]])
    _row(ws, [])
    _row(ws, ["metric", "series", "unit", "value", "previous", "change", "change ratio",
              "aggregation", "change note"], bold=True)
    for h in report["headlines"]:
        _row(ws, [h["metric"], h["series"], h["unit"], h["value"], h["previous"], h["change"],
                  h["changeRatio"], h["aggregation"], h.get("changeNote")])
        fmt = NUMBER_FORMATS.get(h["unit"])
        if fmt:
            for col in ("D", "E", "F"):
                ws[f"{col}{ws.max_row}"].number_format = fmt
        ws[f"G{ws.max_row}"].number_format = "+0.0%;-0.0%"
    if report.get("forecasts"):
        _row(ws, [])
        _row(ws, ["forecast", "series", "time", "value", "low 80 %", "high 80 %", "low 95 %",
                  "high 95 %", "method", "beats baseline", "backtest MASE",
                  "baseline MASE", "note"], bold=True)
        for f in report["forecasts"]:
            bt = f.get("backtest") or {}
            scores = ([bt["model"]["mase"], bt["baseline"]["mase"]] if bt.get("origins")
                      else [None, None])
            for p in f["points"] or [{"time": None, "value": None, "low80": None,
                                      "high80": None, "low95": None, "high95": None}]:
                _row(ws, [f["metric"], f["series"], p["time"], p["value"], p["low80"],
                          p["high80"], p["low95"], p["high95"], f["method"],
                          f.get("beatsBaseline"), *scores, f["note"]])
    _row(ws, [])
    _row(ws, [report["metadata"]["rounding"]])
    ws.column_dimensions["A"].width = 26
    ws.column_dimensions["B"].width = 28


def _item(ws, item: dict, col_chart: str) -> None:
    """The item's table (time x series) with a line chart beside it."""
    _row(ws, [item["metric"], item["title"]], bold=True)
    _row(ws, ["unit", item["unit"], "aggregation", item["aggregation"], "promql",
              item["promql"]])
    header_row = ws.max_row + 1
    names = [s["name"] for s in item["series"]]
    _row(ws, ["time", *names], bold=True)
    fmt = NUMBER_FORMATS.get(item["unit"])
    for i, t in enumerate(item["times"]):
        _row(ws, [t, *[s["values"][i] for s in item["series"]]])
        if fmt:
            for cell in ws[ws.max_row][1:]:
                cell.number_format = fmt
    last = ws.max_row
    _row(ws, ["summary", *[s["value"] for s in item["series"]]], bold=True)
    if "previous" in (item["series"][0] if item["series"] else {}):
        _row(ws, ["previous", *[s.get("previous") for s in item["series"]]])
        _row(ws, ["change ratio", *[s.get("changeRatio") for s in item["series"]]])
    if item["series"] and last > header_row:
        chart = LineChart()
        chart.title = f"{item['metric']} ({item['unit']})"
        chart.height, chart.width = 7, 16
        data = Reference(ws, min_col=2, max_col=1 + len(names), min_row=header_row,
                         max_row=last)
        chart.add_data(data, titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=header_row + 1, max_row=last))
        ws.add_chart(chart, f"{col_chart}{header_row}")
    _row(ws, [])
    # Leave room for the chart (about 15 rows high) before the next table.
    for _ in range(max(0, 15 - (ws.max_row - header_row))):
        _row(ws, [])


def _quality(ws, report: dict) -> None:
    q = report["dataQuality"]
    _row(ws, ["Data quality"], bold=True)
    _row(ws, ["completeness", q["completeness"]])
    ws[f"B{ws.max_row}"].number_format = "0.00%"
    _row(ws, ["expected points", q["expectedPoints"]])
    _row(ws, ["present points", q["presentPoints"]])
    _row(ws, ["suppressed points (k-anonymity)", q["suppressedPoints"]])
    _row(ws, ["k", q["kAnonymity"]])
    _row(ws, [])
    _row(ws, ["gaps: metric", "series", "missing points", "of", "first", "last"], bold=True)
    for g in q["gaps"]:
        _row(ws, [g["metric"], g["series"], g["missingPoints"], g["of"], g["first"], g["last"]])
    _row(ws, [])
    _row(ws, ["absent metric", "series read"], bold=True)
    for a in q["absent"]:
        _row(ws, [a["metric"], ", ".join(a["series"])])
    _row(ws, [])
    _row(ws, ["stale source: job", "instance"], bold=True)
    for s in q["staleSources"]:
        _row(ws, [s["job"], s["instance"]])
    _row(ws, [])
    _late(ws, q["lateEvents"])
    _row(ws, [])
    _row(ws, ["notes"], bold=True)
    for note in q["notes"]:
        _row(ws, [note])
    ws.column_dimensions["A"].width = 34


def _late(ws, late: dict) -> None:
    """The events counted in the range that arrived late, per platform and in total."""
    _row(ws, [f"arrived late: platform (late_after {late['lateAfter']})", "late events",
              "counted events", "late share", "note"], bold=True)
    rows = [(r["platform"], r) for r in late["platforms"]]
    if late["total"] is not None:
        rows.append(("total", late["total"]))
    for name, r in rows:
        _row(ws, [name, r["late"], r["events"], r["share"], r.get("note")])
        ws[f"D{ws.max_row}"].number_format = "0.00%"
    if not rows:
        _row(ws, ["no data", None, None, None, late["note"]])


def _extras(ws, report: dict, section_id: str) -> None:
    """Tables that belong to a section besides its metrics (costs, benchmarks, ...)."""
    if section_id == "costs" and report.get("costs"):
        c = report["costs"]
        _row(ws, ["category", "currency", "amount", "basis", "previous", "change ratio",
                  "estimate method"], bold=True)
        for r in c["rows"]:
            _row(ws, [r["category"], r["currency"], r["amount"], r["basis"], r["previous"],
                      r["changeRatio"], r.get("method")])
        _row(ws, [])
        _row(ws, ["currency", "booked", "estimated", "total", "per user",
                  "per active subscription"], bold=True)
        for cur in c["byCurrency"]:
            _row(ws, [cur["currency"], cur["booked"], cur["estimated"], cur["total"],
                      cur["perUser"], cur["perActiveSubscription"]])
        _row(ws, [])
    if section_id == "feature_usage" and report.get("benchmarks"):
        b = report["benchmarks"]
        if not b["configured"]:
            _row(ws, ["industry benchmarks", b["note"]], bold=True)
        else:
            _row(ws, ["benchmark metric", "labels", "ours", "industry", "difference",
                      "position", "source", "date"], bold=True)
            for r in b["rows"]:
                _row(ws, [r["metric"], ", ".join(f"{k}={v}" for k, v in
                                                 sorted(r["labels"].items())),
                          r["ours"], r["industry"], r["difference"], r["position"],
                          r["source"], r["date"]])
        _row(ws, [])
    if section_id == "capacity" and report.get("capacityPlanning"):
        _row(ws, ["capacity metric", "series", "threshold", "days", "earliest days (95 %)",
                  "latest days (95 %)", "note"], bold=True)
        for r in report["capacityPlanning"]:
            _row(ws, [r["metric"], r["series"], r["threshold"], r["days"],
                      r.get("earliestDays"), r.get("latestDays"), r["note"]])
        _row(ws, [])
    if section_id in ("retention", "subscriptions") and report.get("churnModel"):
        m = report["churnModel"]
        if m["status"] != "ok":
            _row(ws, ["churn model", m["note"]], bold=True)
        else:
            h = m["heldOut"]
            _row(ws, ["churn model", m["method"], "held-out AUC", h["auc"], "Brier score",
                      h["brierScore"], "held-out users", m["heldOutUsers"]], bold=True)
            _row(ws, ["plan", "engagement", "users", "mean churn probability",
                      "expected churners"], bold=True)
            for seg in m["segments"]:
                _row(ws, [seg["plan"], seg["engagement"], seg["users"],
                          seg["meanChurnProbability"], seg["expectedChurners"]])
        _row(ws, [])
    if section_id == "incidents":
        _row(ws, ["alertname", "severity", "alert series"], bold=True)
        for r in report.get("incidents") or []:
            _row(ws, [r["alertname"], r["severity"], r["alertSeries"]])
        _row(ws, [])
    if section_id == "unit_economics" and report.get("ltv"):
        _row(ws, ["LTV", report["ltv"]["value"], report["ltv"]["formula"]], bold=True)
        _row(ws, [])
    for note in next((s["notes"] for s in report["sections"] if s["id"] == section_id), []):
        _row(ws, [note])


def to_excel(report: dict) -> bytes:
    """The workbook as .xlsx bytes."""
    wb = Workbook()
    taken: set[str] = set()
    summary = wb.active
    summary.title = sheet_title("Summary", taken)
    _summary(summary, report)
    for section in report["sections"]:
        ws = wb.create_sheet(sheet_title(section["title"], taken))
        _row(ws, [section["title"]], bold=True)
        _extras(ws, report, section["id"])
        _row(ws, [])
        width = 2 + max((len(i["series"]) for i in section["items"]), default=0)
        col_chart = get_column_letter(min(width + 1, 26))
        for item in section["items"]:
            _item(ws, item, col_chart)
        ws.column_dimensions["A"].width = 22
    _quality(wb.create_sheet(sheet_title("Data quality", taken)), report)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
