"""GET /api/analytics/health: SystemHealthResponse from what Prometheus and Alertmanager say.

status: critical when Prometheus is unreachable or a critical incident is active;
degraded when a scrape target is down, Alertmanager is not ready or the last
configuration reload failed; healthy otherwise. `metrics` is the seed's
SystemMetrics computed by one PromQL query; a figure Prometheus has no data for
is null (never invented). `metricSources` says where the derived figures (active
users, concurrent sessions, scaling events) come from.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from flask import Blueprint, current_app

from bridge.services import ALERTMANAGER, PROMETHEUS, RULES, incidents, service
from pulse.promapi import PromError

bp = Blueprint("health", __name__, url_prefix="/api/analytics")

_HTTP = "http_server_request_duration_seconds"
# SystemMetrics field -> PromQL giving one unlabelled sample (or nothing: null).
METRIC_QUERIES: dict[str, dict[str, str | None]] = {
    "application": {
        "apiRequestCount": f"sum(increase({_HTTP}_count[1h]))",
        "averageResponseTime": f"sum(rate({_HTTP}_sum[5m])) / sum(rate({_HTTP}_count[5m]))",
        "p95ResponseTime": f"histogram_quantile(0.95, sum by (le) (rate({_HTTP}_bucket[5m])))",
        "errorRate": f'sum(rate({_HTTP}_count{{http_response_status_code=~"5.."}}[5m])) '
                     f"/ sum(rate({_HTTP}_count[5m]))",
        "activeUsers": 'sum(fitness_active_users{window="1d", platform="all"})',
        # Little's law: sessions in progress = start rate x mean session length.
        "concurrentSessions": "sum(rate(fitness_sessions_total[15m])) * "
                              "(sum(rate(fitness_session_duration_seconds_sum[1h])) "
                              "/ sum(rate(fitness_session_duration_seconds_count[1h])))",
        "databaseQueryCount": "sum(increase(app_db_query_duration_seconds_count[1h]))",
        "cacheHitRate": 'sum(rate(app_cache_requests_total{result="hit"}[5m])) '
                        "/ sum(rate(app_cache_requests_total[5m]))",
    },
    "infrastructure": {
        "cpuUtilization": '1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m]))',
        "memoryUtilization": "1 - sum(node_memory_MemAvailable_bytes) "
                             "/ sum(node_memory_MemTotal_bytes)",
        "diskUtilization": "1 - sum(node_filesystem_avail_bytes) "
                           "/ sum(node_filesystem_size_bytes)",
        "networkIngress": "sum(rate(node_network_receive_bytes_total[5m]))",
        "networkEgress": "sum(rate(node_network_transmit_bytes_total[5m]))",
        "storageUsed": "sum(node_filesystem_size_bytes) - sum(node_filesystem_avail_bytes)",
        # Instances added or removed: changes in each job's number of targets (healthy or
        # not: a target that fails is an outage, not scaling).
        "scalingEvents": "sum(changes((count by (job) (up))[1h:]))",
    },
    "integrations": {
        "probesTotal": "count(integration_probe_success)",
        "probesFailing": "count(integration_probe_success == 0) "
                         "or (count(integration_probe_success) * 0)",
        "availability": "avg(integration_probe_success)",
        "averageProbeDuration": "avg(integration_probe_duration_seconds)",
    },
    "errors": {
        "httpErrorRate": f'sum(rate({_HTTP}_count{{http_response_status_code=~"5.."}}[5m])) '
                         f"/ sum(rate({_HTTP}_count[5m]))",
        "appCrashes": "sum(increase(fitness_app_crashes_total[1h]))",
        "ingestRejectionRate": "sum(rate(pulse_events_rejected_total[5m])) "
                               "/ sum(rate(pulse_events_received_total[5m]))",
        "notificationFailures": 'sum(increase(pulse_notifications_total{result="failure"}[1h]))',
    },
}


# Where the figures that are not plain HTTP or host metrics come from (metricSources).
SOURCES = {
    "application.activeUsers":
        'fitness_active_users{window="1d",platform="all"}: distinct users active in the '
        "trailing day, counted by the events intake's profiles (catalogue: active_users)",
    "application.concurrentSessions":
        "estimated from the events intake: rate(fitness_sessions_total[15m]) times the mean "
        "of fitness_session_duration_seconds over 1h (Little's law)",
    "infrastructure.scalingEvents":
        "Prometheus's own up series: changes over the last hour in the number of scrape "
        "targets per job (instances added or removed by discovery or configuration)",
}


def _incidents(app) -> list[dict]:
    """Open incidents: critical alerts still firing, as the delivery path recorded them."""
    return incidents.active(app)


def _combined_query() -> str:
    parts = []
    for section, fields in METRIC_QUERIES.items():
        for name, expr in fields.items():
            if expr:
                parts.append(f'label_replace(({expr}), "__field", "{section}.{name}", "", "")')
    return " or ".join(parts)


def system_metrics(prom) -> dict:
    """SystemMetrics now (timeframe hour); null where Prometheus has no data (or no answer)."""
    values: dict[str, float] = {}
    try:
        for sample in (prom.query(_combined_query()) if prom is not None else []):
            value = float(sample["value"][1])
            if math.isfinite(value):
                values[sample["metric"].get("__field", "")] = value
    except PromError:
        pass
    out: dict = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                 "timeframe": "hour"}
    for section, fields in METRIC_QUERIES.items():
        out[section] = {name: values.get(f"{section}.{name}") for name in fields}
    return out


def _component(name: str, kind: str, status: str, message: str, **extra) -> dict:
    return {"name": name, "type": kind, "status": status, "message": message, **extra}


def components(prom, am) -> tuple[list[dict], bool]:
    """Per-component health and whether Prometheus answered."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out = []
    try:
        info = prom.runtimeinfo()
        targets = prom.targets()
    except PromError as exc:
        out.append(_component("prometheus", "prometheus", "critical", exc.message,
                              lastChecked=now))
        ready = am.ready()
        out.append(_component("alertmanager", "alertmanager",
                              "healthy" if ready else "degraded",
                              "ready" if ready else "not ready", lastChecked=now))
        return out, False
    reload_ok = bool(info.get("reloadConfigSuccess"))
    out.append(_component("prometheus", "prometheus", "healthy", "answering",
                          lastChecked=now, lastConfigTime=info.get("lastConfigTime", "")))
    out.append(_component("rule-reload", "config",
                          "healthy" if reload_ok else "degraded",
                          "last configuration reload succeeded" if reload_ok
                          else "last configuration reload failed; previous rules still run",
                          lastChecked=now))
    ready = am.ready()
    out.append(_component("alertmanager", "alertmanager", "healthy" if ready else "degraded",
                          "ready" if ready else "not ready", lastChecked=now))
    by_job: dict[str, list[dict]] = {}
    for t in targets:
        by_job.setdefault(t.get("labels", {}).get("job", "unknown"), []).append(t)
    for job in sorted(by_job):
        down = [t for t in by_job[job] if t.get("health") != "up"]
        message = "all targets up" if not down else "; ".join(
            f"{t.get('scrapeUrl', '?')}: {t.get('lastError') or t.get('health')}" for t in down)
        out.append(_component(f"scrape:{job}", "scrape_target",
                              "healthy" if not down else "degraded", message[:500],
                              lastChecked=now, targets=len(by_job[job]), targetsDown=len(down)))
    return out, True


@bp.get("/health")
def health():
    """SystemHealthResponse: overall status, per-component detail, metrics, incidents."""
    prom = service(current_app, PROMETHEUS)
    am = service(current_app, ALERTMANAGER)
    comps, prom_ok = components(prom, am)
    incidents = _incidents(current_app)
    if not prom_ok or any(i.get("severity") == "critical" for i in incidents):
        status = "critical"
    elif any(c["status"] != "healthy" for c in comps):
        status = "degraded"
    else:
        status = "healthy"
    metrics = system_metrics(prom if prom_ok else None)
    replicas = service(current_app, RULES).replica_status()
    if status == "healthy" and any("error" in r for r in replicas):
        status = "degraded"
    return {"status": status, "components": comps, "metrics": metrics, "incidents": incidents,
            "ruleReplicas": replicas, "metricSources": SOURCES}
