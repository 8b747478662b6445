"""How numbers are written in reports (the PDF, chart titles and email bodies share it)."""

from __future__ import annotations


def fmt(value: float | None, unit: str = "") -> str:
    """A figure as text: ratios in %, seconds with 3 decimals, money with 2, counts grouped."""
    if value is None:
        return "n/a"
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "seconds":
        return f"{value:.3f} s"
    if unit == "currency":
        return f"{value:,.2f}"
    if unit == "count":
        return f"{value:,.0f}" if abs(value - round(value)) < 1e-9 else f"{value:,.2f}"
    return f"{value:,.4g}"


def fmt_change(ratio: float | None) -> str:
    """A relative change as a signed percentage."""
    if ratio is None:
        return "n/a"
    return f"{ratio * 100:+.1f}%"
