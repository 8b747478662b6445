"""Line charts of a report item's series as PNG (matplotlib, Agg backend: no display)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MAX_LINES = 8


def chart_png(item: dict, width: float = 7.0, height: float = 2.6, dpi: int = 100) -> bytes:
    """One chart per report item: a line per series (the largest MAX_LINES), as PNG bytes."""
    times = [datetime.fromtimestamp(t, UTC) for t in item["timestamps"]]
    # A bare Figure, not pyplot: pyplot's global state is not safe across the bridge's
    # request threads and the scheduler thread.
    fig = Figure(figsize=(width, height), dpi=dpi)
    ax = fig.subplots()
    for s in item["series"][:MAX_LINES]:
        ys = [float("nan") if v is None else v for v in s["values"]]
        ax.plot(times, ys, marker="o" if len(times) <= 40 else None, markersize=3,
                linewidth=1.5, label=s["name"])
    ax.set_title(f"{item['metric']} ({item['unit']})", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    span = (item["timestamps"][-1] - item["timestamps"][0]) if item["timestamps"] else 0
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d" if span > 2 * 86400
                                                      else "%H:%M"))
    if item["series"]:
        ax.legend(fontsize=6, loc="best")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
