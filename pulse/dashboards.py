"""Read the generated dashboards as data: panels, their queries, variables expanded.

Shared by `pulse dashboards check`, the bridge's dashboard data API and the tests, so
all three evaluate exactly the expressions Grafana will send. It reads
grafana/generated/*.json as plain JSON; grafanalib (which writes them) is a
build-time tool and is not imported here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import requests

from pulse.paths import GRAFANA_DIR
from pulse.promapi import PromError, PrometheusClient, PromUnavailable

GENERATED = GRAFANA_DIR / "generated"
# The uid of the Prometheus datasource every generated dashboard queries.
DATASOURCE_UID = "pulse-prometheus"
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
BUILTIN = {"__rate_interval", "__range", "__interval", "__range_s", "__interval_ms"}


@dataclass(frozen=True)
class Query:
    """One query of one panel of one dashboard."""

    dashboard: str
    panel_id: int
    panel_title: str
    ref: str
    expr: str
    legend: str
    instant: bool


@cache
def load_all(directory: Path = GENERATED) -> dict[str, dict]:
    """Dashboard name -> its generated JSON (read once per process)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))}


def panels(doc: Mapping) -> Iterator[dict]:
    """Every panel that shows data (rows are walked into, not returned)."""
    for panel in doc.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def queries(name: str, doc: Mapping) -> Iterator[Query]:
    """Every query of every panel of a dashboard."""
    for panel in panels(doc):
        for t in panel.get("targets", []):
            yield Query(name, panel["id"], panel["title"], t["refId"], t["expr"],
                        t.get("legendFormat", ""), bool(t.get("instant")))


def variables(doc: Mapping) -> list[str]:
    """Names of the dashboard's template variables other than the datasource."""
    return [v["name"] for v in doc.get("templating", {}).get("list", [])
            if v.get("type") != "datasource"]


def seconds(value: float) -> str:
    """A PromQL duration of whole seconds (at least 1 s)."""
    return f"{max(1, math.ceil(value))}s"


def expand(expr: str, *, range_s: float, step_s: float, scrape_s: float = 15.0,
           values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana's variables as Grafana would; unset template variables match all.

    `$__rate_interval` follows Grafana's rule: max(interval + scrape interval,
    4 x scrape interval). Template values are used verbatim (callers escape them).
    """
    values = values or {}
    builtins = {
        "__rate_interval": seconds(max(step_s + scrape_s, 4 * scrape_s)),
        "__range": seconds(range_s),
        "__range_s": str(max(1, math.ceil(range_s))),
        "__interval": seconds(step_s),
        "__interval_ms": str(int(step_s * 1000)),
    }

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        return values.get(name, ".*")

    return VARIABLE.sub(replace, expr)


def metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names an expression reads (a lexical approximation)."""
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                      stripped)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    words -= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*\(", stripped))
    keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                "bool", "and", "or", "unless", "s", "m", "h", "d", "inf", "nan"}
    return {w for w in words if w not in keywords and not w.startswith("__")}


# What the server has seen, oldest first: its oldest stored sample (backfilled blocks
# included), else the start of its process (both need it to scrape itself as job prometheus).
AGE_QUERIES = ("min(prometheus_tsdb_lowest_timestamp_seconds)",
               'min(process_start_time_seconds{job="prometheus"})')
MIN_RANGE, MAX_RANGE = 60.0, 3600.0


def server_age(url: str, now: float, session: requests.Session | None = None) -> float | None:
    """Seconds of data the Prometheus at url has seen (None when it cannot tell)."""
    prom = PrometheusClient(url, timeout=30.0, session=session)
    for expr in AGE_QUERIES:
        try:
            result = prom.query(expr)
        except PromError:
            continue
        if result:
            value = float(result[0]["value"][1])
            if math.isfinite(value) and value > 0:
                return max(0.0, now - value)
    return None


def default_range(age: float | None) -> float:
    """The range to check over: half of what the server has seen, from 1 min to 1 h.

    Half, so that previous-period queries (`offset $__range`) have a previous period; a
    server whose age is unknown gets the full hour.
    """
    if age is None:
        return MAX_RANGE
    return min(MAX_RANGE, max(MIN_RANGE, age / 2))


@dataclass(frozen=True)
class Outcome:
    """The result of checking one query: series returned, or the error."""

    query: Query
    expr: str
    series: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the query parsed and returned at least one series."""
        return self.error is None and self.series > 0


def check(url: str, start: float, end: float, *, step: float = 60.0, scrape_s: float = 15.0,
          docs: Mapping[str, dict] | None = None, workers: int = 8) -> list[Outcome]:
    """Evaluate every query of every dashboard over [start, end]; one Outcome per query."""
    from concurrent.futures import ThreadPoolExecutor

    docs = load_all() if docs is None else docs
    todo = [q for name, doc in sorted(docs.items()) for q in queries(name, doc)]
    prom = PrometheusClient(url, timeout=30.0)

    def run(q: Query) -> Outcome:
        expr = expand(q.expr, range_s=end - start, step_s=step, scrape_s=scrape_s)
        try:
            return Outcome(q, expr, len(prom.query_range(expr, start, end, step)))
        except PromUnavailable as exc:
            return Outcome(q, expr, 0, f"Prometheus unreachable: {exc.why}")
        except PromError as exc:
            return Outcome(q, expr, 0, f"{exc.error_type}: {exc.detail}")

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, todo))
