"""Line charts of report items as reportlab vector drawings (the PDF's charts).

Vector drawings, not rasterised images: a 30-day executive report's ~30 charts cost a few
milliseconds each instead of ~60 ms (matplotlib: text rasterising, PNG encoding, then
reportlab decoding and re-compressing the PNG), and they stay sharp at any zoom.

Time axes: `time_ticks` picks a step from TICK_STEPS so that an hour gets 10-minute ticks
and a year monthly ones, and writes each label with the precision its step needs
(10:20; Mar 04; Mar 2026), naming the date on the first tick and where the day changes.
A forecast chart draws the history, the forecast and its 80 % and 95 % interval bands.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from reportlab.graphics.shapes import Drawing, Line, Polygon, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.units import cm

MAX_LINES = 8
# matplotlib's default cycle: the first series is the clearly blue one.
PALETTE = [colors.HexColor(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                        "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")]
FORECAST = colors.HexColor("#ff7f0e")
WIDTH, HEIGHT = 16 * cm, 16 * cm * 2.6 / 7
LEFT, RIGHT, BOTTOM, TOP = 46.0, 8.0, 22.0, 16.0
MIN, HOUR, DAY = 60, 3600, 86400
TICK_STEPS = (MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 3 * HOUR, 6 * HOUR,
              12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY,
              365 * DAY)
MAX_TICKS = 7


def time_ticks(start: float, end: float) -> list[tuple[float, str]]:
    """(time, label) ticks for a time axis from start to end, at most MAX_TICKS."""
    span = max(end - start, 1.0)
    step = next((s for s in TICK_STEPS if span / s <= MAX_TICKS), TICK_STEPS[-1])
    if step >= 30 * DAY:
        ticks = _month_ticks(start, end, max(1, round(step / (30 * DAY))))
    else:
        first = math.ceil(start / step) * step
        ticks = [first + i * step for i in range(int((end - first) // step) + 1)]
    out, last_day = [], None
    for t in ticks:
        d = datetime.fromtimestamp(t, UTC)
        if step >= 30 * DAY:
            label = d.strftime("%b %Y")
        elif step >= DAY:
            label = d.strftime("%b %d")
        else:
            label = d.strftime("%H:%M")
            if d.date() != last_day:  # the date once, then again where the day changes
                label = d.strftime("%b %d %H:%M")
            last_day = d.date()
        out.append((t, label))
    return out


def _month_ticks(start: float, end: float, months: int) -> list[float]:
    d = datetime.fromtimestamp(start, UTC)
    y, m = d.year, d.month
    out = []
    while True:
        m += 1
        if m > 12:
            y, m = y + 1, 1
        t = datetime(y, m, 1, tzinfo=UTC).timestamp()
        if t > end:
            return out
        if (m - 1) % months == 0:
            out.append(t)


def _nice(lo: float, hi: float) -> tuple[float, float, float]:
    """A rounded value range and tick step (1, 2 or 5 x 10^n) holding lo..hi."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) or 1) * 0.1, hi + (abs(hi) or 1) * 0.1
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def _value_label(v: float, unit: str) -> str:
    if unit == "ratio":
        return f"{v * 100:.0f}%" if abs(v) >= 0.1 or v == 0 else f"{v * 100:.1f}%"
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


class _Frame:
    """Maps (time, value) to drawing coordinates and draws axes, grid and labels."""

    def __init__(self, title: str, t0: float, t1: float, lo: float, hi: float, unit: str):
        self.d = Drawing(WIDTH, HEIGHT)
        self.t0, self.t1 = t0, max(t1, t0 + 1)
        self.lo, self.hi, step = _nice(lo, hi)
        self.w, self.h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
        d = self.d
        d.add(String(WIDTH / 2, HEIGHT - 11, title, fontSize=8, textAnchor="middle",
                     fontName="Helvetica-Bold"))
        d.add(Rect(LEFT, BOTTOM, self.w, self.h, strokeColor=colors.grey, strokeWidth=0.4,
                   fillColor=None))
        v = self.lo
        while v <= self.hi + step / 2:
            y = self.y(v)
            d.add(Line(LEFT, y, LEFT + self.w, y, strokeColor=colors.lightgrey,
                       strokeWidth=0.3))
            d.add(String(LEFT - 3, y - 2.5, _value_label(v, unit), fontSize=6,
                         textAnchor="end"))
            v += step
        for t, label in time_ticks(self.t0, self.t1):
            x = self.x(t)
            d.add(Line(x, BOTTOM, x, BOTTOM - 3, strokeColor=colors.grey, strokeWidth=0.4))
            d.add(String(x, BOTTOM - 11, label, fontSize=6, textAnchor="middle"))

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / (self.t1 - self.t0) * self.w

    def y(self, v: float) -> float:
        return BOTTOM + (v - self.lo) / (self.hi - self.lo) * self.h

    def line(self, ts, vs, color, width=1.2, dash=None) -> None:
        """A polyline per run of known values (gaps stay gaps); dots when few points."""
        run: list[float] = []
        runs = []
        for t, v in zip(ts, vs, strict=True):
            if v is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run += [self.x(t), self.y(v)]
        if run:
            runs.append(run)
        for pts in runs:
            if len(pts) >= 4:
                self.d.add(PolyLine(pts, strokeColor=color, strokeWidth=width,
                                    strokeDashArray=dash))
            if len(ts) <= 40 or len(pts) == 2:
                for i in range(0, len(pts), 2):
                    self.d.add(Rect(pts[i] - 1.2, pts[i + 1] - 1.2, 2.4, 2.4,
                                    fillColor=color, strokeColor=None))

    def band(self, ts, low, high, color, alpha) -> None:
        """A filled band between two curves."""
        pts = [c for t, v in zip(ts, low, strict=True) for c in (self.x(t), self.y(v))]
        pts += [c for t, v in zip(reversed(ts), reversed(high), strict=True)
                for c in (self.x(t), self.y(v))]
        self.d.add(Polygon(pts, fillColor=colors.Color(color.red, color.green, color.blue,
                                                       alpha), strokeColor=None))

    def legend(self, entries: list[tuple[str, object]]) -> None:
        """Names and colours across the top left, inside the frame."""
        x = LEFT + 4
        for name, color in entries:
            self.d.add(Rect(x, BOTTOM + self.h - 8, 6, 4, fillColor=color, strokeColor=None))
            self.d.add(String(x + 8, BOTTOM + self.h - 8, name, fontSize=5.5))
            x += 12 + 3.2 * len(name)


def _bounds(values) -> tuple[float, float]:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return (min(known), max(known)) if known else (0.0, 1.0)


def chart(item: dict) -> Drawing:
    """One chart per report item: a line per series (the largest MAX_LINES)."""
    ts = item["timestamps"]
    shown = item["series"][:MAX_LINES]
    lo, hi = _bounds([v for s in shown for v in s["values"]])
    f = _Frame(f"{item['metric']} ({item['unit']})", ts[0] if ts else 0, ts[-1] if ts else 1,
               lo, hi, item["unit"])
    for s, color in zip(shown, PALETTE, strict=False):
        f.line(ts, s["values"], color)
    if len(shown) > 1 or (shown and shown[0]["labels"]):
        f.legend([(s["name"], c) for s, c in zip(shown, PALETTE, strict=False)])
    if not shown:
        f.d.add(String(WIDTH / 2, HEIGHT / 2, "no data", fontSize=8, textAnchor="middle"))
    return f.d


def forecast_chart(item: dict, forecast: dict) -> Drawing:
    """History of the forecast's series, the forecast line and its 80/95 % bands."""
    series = next((s for s in item["series"] if s["name"] == forecast["series"]), None)
    hist_t = item["timestamps"] if series else []
    hist_v = series["values"] if series else []
    pts = forecast["points"]
    ft = [datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp() for p in pts]
    lo, hi = _bounds(list(hist_v) + [p["low95"] for p in pts] + [p["high95"] for p in pts])
    times = list(hist_t) + ft
    f = _Frame(f"{forecast['metric']} forecast ({forecast['unit']})", times[0] if times else 0,
               times[-1] if times else 1, lo, hi, forecast["unit"])
    if pts:
        f.band(ft, [p["low95"] for p in pts], [p["high95"] for p in pts], FORECAST, 0.18)
        f.band(ft, [p["low80"] for p in pts], [p["high80"] for p in pts], FORECAST, 0.35)
        f.line(ft, [p["value"] for p in pts], FORECAST, dash=[3, 2])
    f.line(hist_t, hist_v, PALETTE[0])
    f.legend([("history", PALETTE[0]), (f"{forecast['method']} (80 %, 95 %)", FORECAST)])
    return f.d
