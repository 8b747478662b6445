"""System / on-call: API latency and errors, SLO burn, database, cache, hosts, integrations."""

from grafana.lib import (
    dashboard,
    label_variable,
    severity_colours,
    stat,
    steps,
    table,
    target,
    timeseries,
)

R = 'http_route=~"$route"'
REQS = "http_server_request_duration_seconds_count"
ERRORS = f'{REQS}{{{R},http_response_status_code=~"5.."}}'
# The availability objective the burn rate is measured against (99.5 % of requests succeed).
SLO_ERROR_BUDGET = 0.005
LATENCY = steps(("green", 0), ("orange", 1.5), ("red", 2))
FS = 'fstype!~"tmpfs|overlay|squashfs"'

dashboard = dashboard(
    uid="pulse-system",
    title="Pulse / System (on-call)",
    description="What the on-call engineer checks first: API latency and errors per route, "
    "SLO burn, database and cache, hosts, integrations and the alerts firing now.",
    audience="admin",
    time_from="now-6h",
    refresh="30s",
    tags=["system", "oncall"],
    variables=[label_variable("route", "Route", REQS, "http_route")],
    panels=[
        stat("Firing alerts", "Alerts firing now, by severity (Watchdog is always one).",
             "short",
             [target('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}")],
             overrides=severity_colours(), w=6),
        table("Active alerts", "Every alert firing now with its severity and team.", "short",
              [target('sum by (alertname, severity, team) (ALERTS{alertstate="firing"})')],
              overrides=severity_colours(), w=18, h=4),
        timeseries("API latency p95 by route",
                   "95th percentile request duration per route (recording rule); warning at "
                   "1.5 s, critical at 2 s.", "s",
                   [target(f"route:http_server_request_duration_seconds:p95_5m{{{R}}}",
                           "{{http_route}}")],
                   thresholds=LATENCY, threshold_line=True),
        timeseries("API error ratio by route",
                   "Share of requests answered with a 5xx status, per route.", "percentunit",
                   [target(f"sum by (http_route) (rate({ERRORS}[$__rate_interval])) / "
                           f"sum by (http_route) (rate({REQS}{{{R}}}[$__rate_interval]))",
                           "{{http_route}}")],
                   thresholds=steps(("green", 0), ("red", 0.05)), threshold_line=True),
        timeseries("Requests by route", "Requests per second, per route.", "reqps",
                   [target(f"sum by (http_route) (rate({REQS}{{{R}}}[$__rate_interval]))",
                           "{{http_route}}")], w=8),
        timeseries("Availability SLO burn rate",
                   "How fast the 99.5 % availability error budget burns: 1 means exactly on "
                   "budget; above 14.4 the month's budget goes in two days.", "none",
                   [target(f"(sum(rate({ERRORS}[$__rate_interval])) / "
                           f"sum(rate({REQS}{{{R}}}[$__rate_interval]))) / {SLO_ERROR_BUDGET}",
                           "burn rate")],
                   thresholds=steps(("green", 0), ("orange", 6), ("red", 14.4)),
                   threshold_line=True, w=8),
        timeseries("Database query p95 by operation",
                   "95th percentile database query duration, per operation.", "s",
                   [target("histogram_quantile(0.95, sum by (operation, le) "
                           "(rate(app_db_query_duration_seconds_bucket[$__rate_interval])))",
                           "{{operation}}")], w=8),
        timeseries("Cache hit ratio", "Cache hits per cache request.", "percentunit",
                   [target('sum(rate(app_cache_requests_total{result="hit"}'
                           "[$__rate_interval])) / sum(rate(app_cache_requests_total"
                           "[$__rate_interval]))", "hit ratio")], w=8, min_=0, max_=1),
        timeseries("CPU utilisation", "Share of CPU time not idle, per host.", "percentunit",
                   [target('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}'
                           "[$__rate_interval]))", "{{instance}}")], w=8, min_=0, max_=1),
        timeseries("Memory used", "Share of memory not available, per host.", "percentunit",
                   [target("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                           "{{instance}}")], w=8, min_=0, max_=1),
        timeseries("Disk used", "Share of each filesystem in use.", "percentunit",
                   [target(f"1 - node_filesystem_avail_bytes{{{FS}}} / "
                           f"node_filesystem_size_bytes{{{FS}}}", "{{mountpoint}}")],
                   thresholds=steps(("green", 0), ("orange", 0.8), ("red", 0.9)),
                   threshold_line=True, w=8, min_=0, max_=1),
        timeseries("Disk space forecast (24 h)",
                   "Free bytes each filesystem will have in 24 h at the trend of the last "
                   "6 h (the NodeFilesystemFillingUp forecast); below zero it fills up.",
                   "bytes",
                   [target(f"predict_linear(node_filesystem_avail_bytes{{{FS}}}[6h], 86400)",
                           "{{mountpoint}}")],
                   thresholds=steps(("red", 0), ("green", 0)), threshold_line=True, w=8),
        timeseries("Network traffic", "Bytes per second received and sent, per device.",
                   "Bps",
                   [target('sum by (device) (rate(node_network_receive_bytes_total'
                           '{device!="lo"}[$__rate_interval]))', "{{device}} in"),
                    target('sum by (device) (rate(node_network_transmit_bytes_total'
                           '{device!="lo"}[$__rate_interval]))', "{{device}} out", ref="B")],
                   w=8),
        timeseries("Load average", "One-minute load average, per host.", "short",
                   [target("node_load1", "{{instance}}")], w=8),
        table("Integration probes", "Each third-party integration: probe up (1) or down (0).",
              "short", [target("integration_probe_success", "{{integration}}")],
              thresholds=steps(("red", 0), ("green", 1)), w=8),
        timeseries("Integration probe latency", "Duration of the last probe, per integration.",
                   "s", [target("integration_probe_duration_seconds", "{{integration}}")],
                   w=8),
        timeseries("TLS certificate expiry", "Time left before each integration's TLS "
                   "certificate expires.", "s",
                   [target("integration_tls_cert_expiry_timestamp_seconds - time()",
                           "{{integration}}")],
                   thresholds=steps(("red", 0), ("orange", 7 * 86400), ("green", 21 * 86400)),
                   w=8),
    ],
)
