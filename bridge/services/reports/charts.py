"""Line charts of a report item's series as PNG (matplotlib, Agg backend: no display).

Time axes use matplotlib's concise date formatter, which picks ticks and labels for any
span from minutes to years (an hour reads 10:15, 10:30...; a year Feb, Mar, ...; the
offset above the axis names the day, month or year once). A forecast chart draws the
history, the forecast and its 80 % and 95 % interval bands.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MAX_LINES = 8
DPI = 80  # 560 x 208 px at 7 x 2.6 in: sharp at the PDF's 16 cm width, a third faster


def _axes(width: float, height: float, dpi: int):
    # A bare Figure, not pyplot: pyplot's global state is not safe across the bridge's
    # request threads and the scheduler thread. Fixed margins instead of tight_layout (which
    # renders the figure twice).
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.88, bottom=0.16)
    ax = fig.subplots()
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _times(ts: list[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def chart_png(item: dict, width: float = 7.0, height: float = 2.6, dpi: int = DPI) -> bytes:
    """One chart per report item: a line per series (the largest MAX_LINES), as PNG bytes."""
    fig, ax = _axes(width, height, dpi)
    times = _times(item["timestamps"])
    for s in item["series"][:MAX_LINES]:
        ys = [float("nan") if v is None else v for v in s["values"]]
        ax.plot(times, ys, marker="o" if len(times) <= 40 else None, markersize=3,
                linewidth=1.5, label=s["name"])
    ax.set_title(f"{item['metric']} ({item['unit']})", fontsize=9)
    if item["series"]:
        ax.legend(fontsize=6, loc="best")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def forecast_png(item: dict, forecast: dict, width: float = 7.0, height: float = 2.6,
                 dpi: int = DPI) -> bytes:
    """History of the forecast's series, the forecast line and its 80/95 % bands."""
    fig, ax = _axes(width, height, dpi)
    series = next((s for s in item["series"] if s["name"] == forecast["series"]), None)
    if series is not None:
        ax.plot(_times(item["timestamps"]),
                [float("nan") if v is None else v for v in series["values"]],
                linewidth=1.5, label="history")
    pts = forecast["points"]
    if pts:
        ft = [datetime.fromisoformat(p["time"].replace("Z", "+00:00")) for p in pts]
        ax.fill_between(ft, [p["low95"] for p in pts], [p["high95"] for p in pts],
                        alpha=0.18, color="tab:orange", linewidth=0, label="95 %")
        ax.fill_between(ft, [p["low80"] for p in pts], [p["high80"] for p in pts],
                        alpha=0.35, color="tab:orange", linewidth=0, label="80 %")
        ax.plot(ft, [p["value"] for p in pts], color="tab:orange", linewidth=1.5,
                linestyle="--", label=forecast["method"])
    ax.set_title(f"{forecast['metric']} forecast ({forecast['unit']})", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")
    return _png(fig)
