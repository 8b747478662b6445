"""The house style of Pulse dashboards: datasource by variable, units, descriptions, colours.

Every dashboard module builds its panels with these helpers only, so the rules the lint
test enforces (title, description and unit on every panel, `$__rate_interval` in rates,
one colour per severity and per platform, real-null base thresholds) hold by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attr
from grafanalib.core import (
    Dashboard,
    DashboardLink,
    GridPos,
    Panel,
    RowPanel,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

from pulse.dashboards import DATASOURCE_UID

# What Grafana 11 (docker-compose pins 11.2) writes for a dashboard it saves.
SCHEMA_VERSION = 39
# Every panel and query reads the datasource through the `datasource` variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# One colour per severity and per platform, on every dashboard.
SEVERITY_COLOURS = {"critical": "red", "warning": "orange", "info": "blue", "none": "text"}
PLATFORM_COLOURS = {"ios": "blue", "android": "green", "web": "purple", "other": "text"}
OUTCOME_COLOURS = {"accepted": "green", "modified": "yellow", "rejected": "red",
                   "ignored": "text"}
GRID_WIDTH = 24


def steps(*pairs: tuple[str, float]) -> list[dict]:
    """Absolute threshold steps: a base colour (real null, never "null") then (colour, from)."""
    base, *rest = pairs
    return [{"color": base[0], "value": None}] + [{"color": c, "value": v} for c, v in rest]


OK = steps(("green", 0))


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Target:
    """A Prometheus query on the dashboard's datasource."""
    return Target(expr=expr, legendFormat=legend, refId=ref, instant=instant,
                  datasource=DATASOURCE, intervalFactor=1)


def _colour_overrides(colours: dict[str, str], label: str) -> list[dict]:
    """Overrides giving each value of a label (the legend starts with it) its house colour."""
    return [{"matcher": {"id": "byRegexp", "options": f"^{value}( .*)?$"},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}]}
            for value, colour in colours.items()]


def platform_colours() -> list[dict]:
    """Overrides for series whose legend starts with the platform."""
    return _colour_overrides(PLATFORM_COLOURS, "platform")


def severity_colours() -> list[dict]:
    """Overrides for series whose legend starts with the severity."""
    return _colour_overrides(SEVERITY_COLOURS, "severity")


def outcome_colours() -> list[dict]:
    """Overrides for AI recommendation outcomes."""
    return _colour_overrides(OUTCOME_COLOURS, "outcome")


def timeseries(title: str, description: str, unit: str, targets: Sequence[Target], *,
               w: int = 12, h: int = 8, overrides: Iterable[dict] = (),
               thresholds: list[dict] | None = None, threshold_line: bool = False,
               stack: bool = False, min_: int | None = None,
               max_: int | None = None) -> TimeSeries:
    """A time series panel (legend as a table with last and max)."""
    return TimeSeries(
        title=title, description=description, unit=unit, targets=list(targets),
        dataSource=DATASOURCE, gridPos=GridPos(h=h, w=w, x=0, y=0),
        thresholds=thresholds or OK,
        thresholdsStyleMode="line" if threshold_line else "off",
        overrides=list(overrides), fillOpacity=10 if stack else 0,
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none"},
        legendDisplayMode="table", legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi", tooltipSort="desc", valueMin=min_, valueMax=max_,
    )


def stat(title: str, description: str, unit: str, targets: Sequence[Target], *,
         w: int = 6, h: int = 4, thresholds: list[dict] | None = None,
         overrides: Iterable[dict] = (), text_mode: str = "auto") -> Stat:
    """A single-value panel reduced to the last value."""
    return Stat(
        title=title, description=description, format=unit, targets=list(targets),
        dataSource=DATASOURCE, gridPos=GridPos(h=h, w=w, x=0, y=0),
        thresholds=thresholds or OK, reduceCalc="lastNotNull", graphMode="none",
        overrides=list(overrides), textMode=text_mode, noValue="no data",
        color={"mode": "thresholds"},
    )


def headline(title: str, description: str, unit: str, template: str, *, w: int = 6,
             better: str = "up") -> Stat:
    """A headline number over the range with its change against the previous period.

    `template` has `{o}` after every selector's range: it is filled with nothing for the
    current range and with ` offset $__range` for the period before it. Query B, the
    relative change, is shown beside A in percent (a byFrameRefID override, which Grafana
    applies per query), green when it moves the `better` way.
    """
    current = template.format(o="")
    previous = template.format(o=" offset $__range")
    good, bad = ("green", "red") if better == "up" else ("red", "green")
    change = [{"matcher": {"id": "byFrameRefID", "options": "B"}, "properties": [
        {"id": "unit", "value": "percentunit"},
        {"id": "displayName", "value": "vs previous period"},
        {"id": "decimals", "value": 1},
        {"id": "thresholds", "value": {"mode": "absolute",
                                       "steps": steps((bad, 0), (good, 0))}},
    ]}]
    return stat(
        title, description + " Beside it: the change against the previous period of the "
        "same length.", unit,
        [target(current, title, "A", instant=True),
         target(f"({current}) / ({previous}) - 1", "vs previous period", "B", instant=True)],
        w=w, h=5, overrides=change, text_mode="value_and_name")


def table(title: str, description: str, unit: str, targets: Sequence[Target], *,
          w: int = 12, h: int = 8, overrides: Iterable[dict] = (),
          thresholds: list[dict] | None = None) -> Table:
    """A table of the latest value per series (instant queries merged on their labels)."""
    trans = [{"id": "merge", "options": {}},
             {"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    for t in targets:
        t.instant = True
        t.format = "table"
    panel = Table(title=title, description=description, unit=unit, targets=list(targets),
                  dataSource=DATASOURCE, gridPos=GridPos(h=h, w=w, x=0, y=0),
                  transformations=trans, overrides=list(overrides))
    panel.extraJson = {"fieldConfig": {"defaults": {"thresholds": {
        "mode": "absolute", "steps": thresholds or OK}}}}
    return panel


@attr.s
class BarGaugePanel(Panel):
    """A bar gauge in current Grafana's format (grafanalib 0.7 writes Grafana 6's)."""

    unit = attr.ib(default="short")

    def to_json_data(self):
        """The panel JSON."""
        return self.panel_json({
            "type": "bargauge",
            "fieldConfig": {"defaults": {"unit": self.unit, "min": 0}, "overrides": []},
            "options": {
                "displayMode": "gradient", "orientation": "horizontal",
                "showUnfilled": True, "valueMode": "color", "namePlacement": "auto",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        })


def bars(title: str, description: str, unit: str, targets: Sequence[Target], *,
         w: int = 12, h: int = 8, thresholds: list[dict] | None = None) -> BarGaugePanel:
    """A horizontal bar gauge of the latest value per series (top lists, funnels)."""
    for t in targets:
        t.instant = True
    return BarGaugePanel(title=title, description=description, unit=unit,
                         targets=list(targets), dataSource=DATASOURCE,
                         gridPos=GridPos(h=h, w=w, x=0, y=0), thresholds=thresholds or OK)


def row(title: str) -> RowPanel:
    """A row header across the full width."""
    return RowPanel(title=title, gridPos=GridPos(h=1, w=GRID_WIDTH, x=0, y=0))


def datasource_variable() -> Template:
    """The `datasource` variable: any Prometheus, default the provisioned pulse-prometheus."""
    return Template(name="datasource", label="Data source", type="datasource",
                    query="prometheus", default=DATASOURCE_UID, regex="")


def label_variable(name: str, label: str, metric: str, label_name: str, *,
                   all_: bool = True) -> Template:
    """A variable over the values of one label ("All" = the regex .*)."""
    t = Template(name=name, label=label, query=f"label_values({metric}, {label_name})",
                 dataSource=DATASOURCE, includeAll=all_, multi=all_,
                 allValue=".*" if all_ else None, refresh=2, regex="")
    if all_:
        t._current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        t._current = {}
    return t


def _layout(panels: Sequence) -> list:
    """Place panels left to right, wrapping at the grid width; rows start a new line."""
    x = y = line_h = 0
    placed = []
    for p in panels:
        pos = p.gridPos
        if isinstance(p, RowPanel) or x + pos.w > GRID_WIDTH:
            x, y, line_h = 0, y + line_h, 0
        p.gridPos = GridPos(h=pos.h, w=pos.w, x=x, y=y)
        x += pos.w
        line_h = max(line_h, pos.h)
        if isinstance(p, RowPanel):
            x, y, line_h = 0, y + pos.h, 0
        placed.append(p)
    return placed


def dashboard(uid: str, title: str, description: str, panels: Sequence, *,
              tags: Sequence[str] = (), variables: Sequence[Template] = (),
              time_from: str = "now-6h", refresh: str = "1m",
              audience: str = "admin") -> Dashboard:
    """A dashboard in the house style; `audience` is the data API's targetAudience."""
    return Dashboard(
        uid=uid, title=title, description=description,
        tags=["pulse", f"audience:{audience}", *tags],
        panels=_layout(panels), schemaVersion=SCHEMA_VERSION, editable=False,
        # Every Pulse dashboard in one drop-down, keeping the chosen time range.
        links=[DashboardLink(type="dashboards", tags=["pulse"], asDropdown=True,
                             title="Pulse dashboards", keepTime=True)],
        templating=Templating(list=[datasource_variable(), *variables]),
        time=Time(time_from, "now"), refresh=refresh, timezone="utc",
        graphTooltip=1,
    ).auto_panel_ids()
