"""Demo-style history for report tests and bench/reports.py, backfilled into a real Prometheus.

Raw series (names and label values checked against the code by tests/synthetic.py) are
written as OpenMetrics and turned into blocks with `promtool tsdb create-blocks-from
openmetrics`; Prometheus starts on them; the recording rules (PULSE_RULES_DIR, default
rules/) are backfilled over the same history with `promtool tsdb create-blocks-from rules`;
Prometheus restarts with both.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import yaml

from tests import synthetic
from tests.harness import PrometheusServer, require_binary
from tests.synthetic import format_labels as _labels
from tests.synthetic import rule_files

JOB = synthetic.instance("events")
INFRA = synthetic.instance("infrastructure")
# (metric, labels, per-minute increase at the start; counters grow 30 % over the history)
COUNTERS = [
    ("fitness_users_signed_up_total", {"platform": "ios"}, 3.0),
    ("fitness_users_signed_up_total", {"platform": "android"}, 2.0),
    ("fitness_users_signed_up_total", {"platform": "web"}, 1.0),
    ("fitness_sessions_total", {"platform": "ios"}, 40.0),
    ("fitness_sessions_total", {"platform": "android"}, 30.0),
    ("fitness_sessions_total", {"platform": "web"}, 10.0),
    ("fitness_workouts_started_total", {"platform": "ios", "workout_type": "strength"}, 5.0),
    ("fitness_workouts_started_total", {"platform": "ios", "workout_type": "cardio"}, 4.0),
    ("fitness_workouts_completed_total", {"platform": "ios", "workout_type": "strength"}, 4.0),
    ("fitness_workouts_completed_total", {"platform": "ios", "workout_type": "cardio"}, 3.0),
    ("fitness_feature_used_total", {"feature": "workout_player", "platform": "ios"}, 30.0),
    ("fitness_feature_used_total", {"feature": "nutrition_tracker", "platform": "ios"}, 12.0),
    ("fitness_feature_used_total", {"feature": "ai_coach", "platform": "ios"}, 25.0),
    ("fitness_goals_achieved_total", {"goal_category": "weight_loss"}, 1.0),
    ("business_revenue_total", {"stream": "subscription", "currency": "USD"}, 49.9),
    ("business_revenue_total", {"stream": "marketplace", "currency": "USD"}, 19.5),
    ("business_revenue_total", {"stream": "subscription", "currency": "EUR"}, 29.9),
    ("business_subscriptions_started_total", {"plan": "monthly"}, 1.0),
    ("business_subscriptions_started_total", {"plan": "annual"}, 0.5),
    ("business_subscriptions_canceled_total", {"plan": "monthly"}, 0.4),
    ("business_marketplace_programs_sold_total", {"category": "strength"}, 0.5),
    ("business_trainer_commission_total", {"currency": "USD"}, 3.5),
    # Booked costs: infrastructure and AI are booked; support is not (the report estimates it).
    ("business_costs_total", {"category": "infrastructure", "currency": "USD"}, 2.0),
    ("business_costs_total", {"category": "ai_processing", "currency": "USD"}, 0.5),
    ("ai_recommendations_total", {"model": "workout_generation", "model_version": "v1",
                                  "outcome": "accepted"}, 8.0),
    ("ai_recommendations_total", {"model": "workout_generation", "model_version": "v1",
                                  "outcome": "modified"}, 1.0),
    ("ai_recommendations_total", {"model": "workout_generation", "model_version": "v1",
                                  "outcome": "rejected"}, 1.0),
    ("ai_recommendations_total", {"model": "workout_generation", "model_version": "v1",
                                  "outcome": "ignored"}, 2.0),
    # The intake's own: events counted per platform (one lateness observation each) and the
    # late ones among them, 1 % on ios and 3 % on android; web counted nothing.
    ("pulse_event_lateness_seconds_count", {"platform": "ios"}, 40.0),
    ("pulse_event_lateness_seconds_count", {"platform": "android"}, 30.0),
    ("pulse_events_late_total", {"platform": "ios"}, 0.4),
    ("pulse_events_late_total", {"platform": "android"}, 0.9),
    ("pulse_events_late_total", {"platform": "web"}, 0.0),
    ("http_server_request_duration_seconds_count",
     {"http_request_method": "GET", "http_route": "/api/workouts",
      "http_response_status_code": "200"}, 600.0),
    ("http_server_request_duration_seconds_count",
     {"http_request_method": "GET", "http_route": "/api/workouts",
      "http_response_status_code": "500"}, 3.0),
]
# Share of requests at or under each bucket bound (the same for both status codes).
BUCKETS = [("0.1", 0.5), ("0.5", 0.9), ("1", 0.97), ("2", 0.995), ("+Inf", 1.0)]
# The events intake's profile gauges (docs/profiles.md), k-anonymous as it exports them.
# Distinct active users: some use two platforms, so the platforms add up to more than
# platform="all" (1d: 120 + 90 + 3 = 213 > 200).
ACTIVE_USERS = {"1d": {"ios": 120.0, "android": 90.0, "web": 3.0, "all": 200.0},
                "7d": {"ios": 300.0, "android": 220.0, "web": 9.0, "all": 480.0},
                "30d": {"ios": 560.0, "android": 400.0, "web": 20.0, "all": 900.0}}
# Per-coach aggregates of two coaches; a third with fewer than k clients is not exported.
COACHES = {"coach-1": {"clients_active": 12.0, "workout_completion_ratio": 0.75,
                       "goal_progress_ratio": 0.4, "ai_acceptance_ratio": 0.8},
           "coach-2": {"clients_active": 30.0, "workout_completion_ratio": 0.5,
                       "goal_progress_ratio": 0.6, "ai_acceptance_ratio": 0.6}}
SUBSCRIPTIONS_ACTIVE = {"monthly": 80.0, "annual": 40.0}
GAUGES = [
    *[("fitness_active_users", {"window": w, "platform": p}, v, JOB)
      for w, by in ACTIVE_USERS.items() for p, v in by.items()],
    ("fitness_stickiness_ratio", {}, 200.0 / 900.0, JOB),
    ("fitness_cohort_retention_ratio", {"cohort": "2026-W46", "week": "0"}, 1.0, JOB),
    ("fitness_cohort_retention_ratio", {"cohort": "2026-W46", "week": "1"}, 0.5, JOB),
    ("fitness_cohort_retention_ratio", {"cohort": "2026-W47", "week": "0"}, 1.0, JOB),
    ("fitness_cohort_retention_ratio", {"cohort": "2026-W47", "week": "1"}, 0.3, JOB),
    ("fitness_churn_risk_users", {"inactive_days": "7"}, 150.0, JOB),
    ("fitness_churn_risk_users", {"inactive_days": "14"}, 90.0, JOB),
    ("fitness_churn_risk_users", {"inactive_days": "30"}, 40.0, JOB),
    *[("business_subscriptions_active", {"plan": plan}, v, JOB)
      for plan, v in SUBSCRIPTIONS_ACTIVE.items()],
    *[(f"fitness_coach_{name}", {"coach": coach}, v, JOB)
      for coach, by in COACHES.items() for name, v in by.items()],
    ("up", {}, 1.0, JOB),
    ("up", {}, 1.0, INFRA),
    ("node_memory_MemTotal_bytes", {}, 8e9, INFRA),
]


# A label the code never emits fails here, naming it (the reports would be proven on fiction).
for _name, _lbl, *_ in COUNTERS:
    synthetic.series(_name, "events", **_lbl)
for _name, _lbl, _, _base in GAUGES:
    synthetic.series(_name, _base["job"], **_lbl)


def openmetrics(start: float, end: float, step: int) -> str:
    """The raw history from start to end (one sample per step) as OpenMetrics text."""
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    span = max(end - start, 1)
    lines: list[str] = []
    per_min = step / 60

    def counter(name: str, labels: dict, rate: float, base: dict = JOB) -> None:
        total = 0.0
        lbl = _labels({**base, **labels})
        for i, t in enumerate(times):
            # 30 % growth over the history, a daily wave, never decreasing.
            growth = 1 + 0.3 * (t - start) / span
            wave = 1 + 0.2 * math.sin(2 * math.pi * t / 86400)
            if i:
                total += rate * per_min * growth * wave
            lines.append(f"{name}{lbl} {total:.6f} {t:.0f}")

    families: dict[str, list] = {}
    for name, labels, rate in COUNTERS:
        families.setdefault(name, []).append((labels, rate))
    for name, items in families.items():
        for labels, rate in items:
            counter(name, labels, rate)
        if name == "http_server_request_duration_seconds_count":
            for labels, rate in items:
                counter("http_server_request_duration_seconds_sum", labels, rate * 0.18)
    for labels, rate in families["http_server_request_duration_seconds_count"]:
        for le, share in BUCKETS:
            counter("http_server_request_duration_seconds_bucket", {**labels, "le": le},
                    rate * share)
    for cpu in ("0", "1"):
        counter("node_cpu_seconds_total", {"cpu": cpu, "mode": "idle"}, 42.0, INFRA)
    for name, labels, value, base in GAUGES:
        lbl = _labels({**base, **labels})
        lines += [f"{name}{lbl} {value} {t:.0f}" for t in times]
    # An integrations target that went down an hour before the end: a stale source.
    lbl = _labels(synthetic.instance("integrations"))
    lines += [f"up{lbl} {1 if t < end - 3600 else 0} {t:.0f}" for t in times]
    _sort_families(lines)
    return "\n".join(lines) + "\n# EOF\n"


def _sort_families(lines: list[str]) -> None:
    """Keep each metric family's samples together (OpenMetrics forbids interleaving)."""
    lines.sort(key=lambda line: (line.split("{", 1)[0], line.split(" ", 1)[0]))


def catalogue_rules(metrics=None) -> set[str]:
    """The recording rules the catalogue's metrics (all, or the named ones) read."""
    from bridge.services.analytics import catalogue
    defs = catalogue()
    return {s for name in (metrics or defs) for s in defs[name].series_names() if ":" in s}


def backfill(workdir: Path, start: float, end: float, step: int = 60,
             rule_interval: int = 60, only: set[str] | None = None) -> PrometheusServer:
    """A started Prometheus holding the raw history and its recording rules, start..end.

    `only` limits the backfilled recording rules (default: those the catalogue reads);
    promtool evaluates each rule once per 2 h block, so fewer rules is a faster setup.
    """
    promtool = require_binary("promtool")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "history.om"
    source.write_text(openmetrics(start, end, step))
    # The default retention (15 d) would delete a month's history on the first start.
    prom = PrometheusServer(workdir / "prometheus",
                            extra_args=["--storage.tsdb.retention.time=400d"])
    data = prom.workdir / "data"
    _run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
         workdir)
    rules = recording_rules(workdir / "rules", only if only is not None else catalogue_rules())
    prom.start(timeout=90)
    out = workdir / "rule-blocks"
    try:
        _run([promtool, "tsdb", "create-blocks-from", "rules", f"--url={prom.url}",
              f"--start={int(start)}", f"--end={int(end)}", f"--output-dir={out}",
              f"--eval-interval={rule_interval}s", "--quiet", *map(str, rules)], workdir)
    finally:
        prom.stop()
    for block in out.iterdir():
        if block.is_dir():
            shutil.move(str(block), data / block.name)
    prom.start(timeout=90)
    return prom


def recording_rules(outdir: Path, only: set[str]) -> list[Path]:
    """Copies of the rule files with only the wanted recording rules and no group `interval`.

    A group's own interval (5m for the 7-day rules) would override --eval-interval and
    make a month of backfill evaluate 7-day windows every 5 minutes.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    out = []
    for path in rule_files():
        groups = []
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules = [r for r in group["rules"] if r.get("record") in only]
            if rules:
                groups.append({"name": group["name"], "rules": rules})
        if groups:
            out.append(outdir / path.name)
            out[-1].write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return out


def _run(argv: list[str], cwd: Path) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
