"""A recorded fixture of demo-style traffic for proving the dashboards against real Prometheus.

`write_openmetrics` writes a few hours of every series the dashboards read (the metric
catalogue plus the names the dashboards propose) as OpenMetrics text with timestamps;
`fixture_prometheus` backfills it with `promtool tsdb create-blocks-from openmetrics`,
starts the real Prometheus on those blocks with the repository's rule files, backfills
the recording rules with `promtool tsdb create-blocks-from rules` and restarts it on the
result, so recorded series exist over the whole range and live evaluation continues them.
"""

from __future__ import annotations

import atexit
import math
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests import synthetic
from tests.harness import PrometheusServer, require_binary
from tests.synthetic import mapping_values, recording_rules, rule_files

STEP = 60  # seconds between samples: the fixture's "scrape interval"
HOURS = 4
# Label values are the code's (tests/synthetic.py); only the weights are the fixture's.
PLATFORMS = dict(zip(mapping_values("fitness_sessions_total", "platform"), (1.0, 1.2, 0.5),
                     strict=True))
WORKOUT_TYPES = dict(zip(mapping_values("fitness_workouts_started_total", "workout_type"),
                         (0.8, 0.7, 0.6, 0.85), strict=False))
FEATURES = mapping_values("fitness_feature_used_total", "feature")[:5]
MEALS = mapping_values("fitness_nutrition_logs_total", "meal")
FUNNELS = synthetic.DEFAULT_FUNNELS
EXERCISES = mapping_values("fitness_exercise_completions_total", "exercise_type")[:4]
GOALS = mapping_values("fitness_goals_achieved_total", "goal_category")[:3]
STREAMS = dict(zip(mapping_values("business_revenue_total", "stream"), (0.3, 0.1),
                   strict=True))
ROUTES = ["/api/workouts", "/api/workouts/{id}", "/api/nutrition", "/api/recommendations",
          "/api/users/me"]
MODELS = {"workout-recommender": ("v3", 0.82), "nutrition-recommender": ("v2", 0.78),
          "recovery-recommender": ("v1", 0.71)}
INTEGRATIONS = ["stripe", "sendgrid", "apple_health", "google_fit", "openai"]
COACHES = ["coach-1", "coach-2", "coach-3"]
JOBS = synthetic.jobs()
STOPPED_MODEL, STOPPED_AGO = "recovery-recommender", 90 * 60
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
SCORE_BUCKETS = [1, 2, 3, 4, 5]


class Recorder:
    """Series by name, each a list of (labels, values at every timestamp)."""

    def __init__(self, timestamps: list[int], seed: int):
        self.ts = timestamps
        self.rng = random.Random(seed)
        self.families: dict[str, list[tuple[dict, list[float | None]]]] = {}

    def _add(self, name: str, job: str, labels: dict, values: list) -> None:
        full = synthetic.series(name, job, **labels)
        self.families.setdefault(name, []).append((full, values))

    def wave(self, i: int, period_h: float = 24.0) -> float:
        """A daily-looking swing between 0.6 and 1.4 (traffic by hour of day)."""
        return 1.0 + 0.4 * math.sin(2 * math.pi * self.ts[i] / (period_h * 3600))

    def counter(self, name: str, job: str, labels: dict, per_s: float) -> None:
        """A counter increasing about per_s per second with daily swing and noise."""
        total, values = self.rng.uniform(100, 1000) * per_s, []
        for i in range(len(self.ts)):
            total += max(0.0, per_s * STEP * self.wave(i) * self.rng.uniform(0.7, 1.3))
            values.append(round(total, 3))
        self._add(name, job, labels, values)

    def gauge(self, name: str, job: str, labels: dict, mean: float, spread: float = 0.05,
              trend: float = 0.0, stop_before: int = 0) -> None:
        """A gauge around mean (relative noise spread), drifting by trend per hour.

        stop_before: the source stopped reporting that many seconds before the end.
        """
        cut = self.ts[-1] - stop_before if stop_before else None
        values = [None if cut is not None and t > cut else
                  round(mean * (1 + self.rng.uniform(-spread, spread))
                        + trend * (t - self.ts[0]) / 3600, 6) for t in self.ts]
        self._add(name, job, labels, values)

    def histogram(self, name: str, job: str, labels: dict, per_s: float, typical: float,
                  buckets: list[float]) -> None:
        """A histogram whose observations are log-normal around typical."""
        counts = [0.0] * (len(buckets) + 1)
        total_sum = 0.0
        rows: list[list[float]] = [[] for _ in range(len(buckets) + 3)]
        for i in range(len(self.ts)):
            n = max(1, int(per_s * STEP * self.wave(i) * self.rng.uniform(0.7, 1.3)))
            for _ in range(min(n, 50)):
                weight = n / min(n, 50)
                v = typical * math.exp(self.rng.gauss(0, 0.5))
                total_sum += v * weight
                slot = next((k for k, b in enumerate(buckets) if v <= b), len(buckets))
                counts[slot] += weight
            cumulative = 0.0
            for k in range(len(buckets) + 1):
                cumulative += counts[k]
                rows[k].append(round(cumulative, 3))
            rows[-2].append(round(total_sum, 3))
            rows[-1].append(round(cumulative, 3))
        for k, b in enumerate([*buckets, "+Inf"]):
            self._add(f"{name}_bucket", job, {**labels, "le": str(b)}, rows[k])
        self._add(f"{name}_sum", job, labels, rows[-2])
        self._add(f"{name}_count", job, labels, rows[-1])

    def lines(self) -> Iterator[str]:
        """The OpenMetrics text, one family after another, `# EOF` last."""
        for name, series in sorted(self.families.items()):
            yield f"# TYPE {name} unknown\n"
            for labels, values in series:
                lab = synthetic.format_labels(labels)
                for t, v in zip(self.ts, values, strict=True):
                    if v is not None:
                        yield f"{name}{lab} {v} {t}\n"
        yield "# EOF\n"


def record(end: int, hours: float = HOURS, seed: int = 7) -> Recorder:
    """Demo-style traffic for every series the dashboards read, ending at `end`."""
    start = end - int(hours * 3600)
    r = Recorder(list(range(start - start % STEP + STEP, end + 1, STEP)), seed)
    ev = "events"
    for p, weight in PLATFORMS.items():
        r.counter("fitness_users_signed_up_total", ev, {"platform": p}, 0.05 * weight)
        r.counter("fitness_sessions_total", ev, {"platform": p}, 2.0 * weight)
        r.histogram("fitness_session_duration_seconds", ev, {"platform": p}, 0.5 * weight,
                    600, [60, 300, 600, 1200, 1800, 3600, 7200])
        for meal in MEALS:
            r.counter("fitness_nutrition_logs_total", ev, {"platform": p, "meal": meal},
                      0.1 * weight)
        for wt, completion in WORKOUT_TYPES.items():
            r.counter("fitness_workouts_started_total", ev,
                      {"platform": p, "workout_type": wt}, 0.3 * weight)
            r.counter("fitness_workouts_completed_total", ev,
                      {"platform": p, "workout_type": wt}, 0.3 * weight * completion)
        for f in FEATURES:
            r.counter("fitness_feature_used_total", ev, {"feature": f, "platform": p},
                      r.rng.uniform(0.1, 1.0) * weight)
        for version in ("4.2.0", "4.3.0"):
            r.counter("fitness_app_crashes_total", ev, {"platform": p, "app_version": version},
                      0.004 * weight)
        for endpoint in ("/api/workouts", "/api/recommendations"):
            r.histogram("fitness_client_request_duration_seconds", ev,
                        {"platform": p, "endpoint": endpoint}, 0.5 * weight, 0.3,
                        LATENCY_BUCKETS)
    for funnel, funnel_steps in FUNNELS.items():
        for k, step in enumerate(funnel_steps):
            r.counter("fitness_funnel_step_total", ev, {"funnel": funnel, "step": step},
                      0.2 * (0.7 ** k))
    for et in EXERCISES:
        r.counter("fitness_exercise_completions_total", ev, {"exercise_type": et}, 1.0)
        r.counter("fitness_injuries_reported_total", ev, {"exercise_type": et}, 0.002)
    for gc in GOALS:
        r.counter("fitness_goals_achieved_total", ev, {"goal_category": gc}, 0.02)
    for window, users in (("1d", 4200), ("7d", 9800), ("30d", 21000)):
        r.gauge("fitness_active_users", ev, {"window": window, "platform": "all"}, users, 0.02)
        for platform, share in (("ios", 0.45), ("android", 0.4), ("web", 0.3)):
            r.gauge("fitness_active_users", ev, {"window": window, "platform": platform},
                    users * share, 0.02)
    r.gauge("fitness_stickiness_ratio", ev, {}, 0.2, 0.02)
    for c, cohort in enumerate(("2026-W40", "2026-W41", "2026-W42", "2026-W43")):
        for week in range(12 - c * 2):
            r.gauge("fitness_cohort_retention_ratio", ev, {"cohort": cohort, "week": str(week)},
                    1.0 if week == 0 else 0.6 * 0.9 ** week, 0.0)
    for funnel, funnel_steps in FUNNELS.items():
        for k, step in enumerate(funnel_steps):
            r.gauge("fitness_funnel_conversion_ratio", ev, {"funnel": funnel, "step": step},
                    0.7 ** k, 0.0)
    for engagement, users in (("high", 3000), ("medium", 7000), ("low", 9000)):
        r.gauge("fitness_segment_users", ev, {"engagement": engagement, "plan": "free",
                                              "goal_category": "endurance"}, users, 0.01)
    for streak, users in (("0", 12000), ("1", 4000), ("2-3", 2500), ("4-7", 1200)):
        r.gauge("fitness_streak_users", ev, {"streak": streak}, users, 0.01)
    for days, users in (("7", 2100), ("14", 1300), ("30", 600)):
        r.gauge("fitness_churn_risk_users", ev, {"inactive_days": days}, users, 0.02)
    for coach, clients in zip(COACHES, (12, 8, 23), strict=True):
        r.gauge("fitness_coach_clients_active", ev, {"coach": coach}, clients, 0.0)
        r.gauge("fitness_coach_workout_completion_ratio", ev, {"coach": coach}, 0.74, 0.08)
        r.gauge("fitness_coach_goal_progress_ratio", ev, {"coach": coach}, 0.55, 0.1)
        r.gauge("fitness_coach_ai_acceptance_ratio", ev, {"coach": coach}, 0.68, 0.1)
    for vendor in ("apple_health", "google_fit", "garmin"):
        r.counter("integration_wearable_syncs_total", ev, {"vendor": vendor,
                                                           "result": "success"}, 0.5)
        r.counter("integration_wearable_syncs_total", ev, {"vendor": vendor,
                                                           "result": "failure"}, 0.02)
    for stream, per_s in STREAMS.items():
        r.counter("business_revenue_total", ev, {"stream": stream, "currency": "USD"}, per_s)
    for plan, per_s in (("monthly", 0.01), ("annual", 0.004)):
        r.counter("business_subscriptions_started_total", ev, {"plan": plan}, per_s)
        r.counter("business_subscriptions_canceled_total", ev, {"plan": plan}, per_s * 0.3)
        r.gauge("business_subscriptions_active", ev, {"plan": plan}, per_s * 300000, 0.01)
    for cat in ("strength", "yoga", "running", "nutrition", "mobility"):
        r.counter("business_marketplace_programs_sold_total", ev, {"category": cat},
                  r.rng.uniform(0.002, 0.01))
    r.counter("business_trainer_commission_total", ev, {"currency": "USD"}, 0.07)
    for cat, per_s in (("infrastructure", 0.05), ("ai_processing", 0.03), ("support", 0.02)):
        r.counter("business_costs_total", ev, {"category": cat, "currency": "USD"}, per_s)
    for exp, variants in (("coach-tone", ("control", "friendly")),
                          ("plan-length", ("control", "short"))):
        for variant in variants:
            r.counter("ai_experiment_exposures_total", ev,
                      {"experiment": exp, "variant": variant}, 0.2)
            r.counter("ai_experiment_conversions_total", ev,
                      {"experiment": exp, "variant": variant, "metric": "workout_completed"},
                      0.2 * r.rng.uniform(0.2, 0.4))
    ai = "ai"
    for model, (version, accuracy) in MODELS.items():
        for outcome, share in (("accepted", accuracy * 0.8), ("modified", 0.08),
                               ("rejected", (1 - accuracy) * 0.8), ("ignored", 0.1)):
            r.counter("ai_recommendations_total", ev,
                      {"model": model, "model_version": version, "outcome": outcome},
                      share * 2.0)
        r.histogram("ai_recommendation_feedback_score", ev, {"model": model}, 0.2, 3.8,
                    SCORE_BUCKETS)
        r.counter("ai_safety_events_total", ev, {"model": model, "kind": "unsafe_load"}, 0.001)
        # One evaluation job stopped 90 minutes ago: a partly broken pipeline to detect.
        r.gauge("ai_model_accuracy_ratio", ai, {"model": model, "model_version": version},
                accuracy, 0.01, stop_before=STOPPED_AGO if model == STOPPED_MODEL else 0)
        for feature in ("age", "session_length", "heart_rate"):
            r.gauge("ai_model_drift_psi", ai, {"model": model, "feature": feature},
                    r.rng.uniform(0.02, 0.3), 0.1)
        r.histogram("ai_inference_duration_seconds", ai, {"model": model}, 2.0, 0.12,
                    LATENCY_BUCKETS)
    demo = "demo"
    for k, route in enumerate(ROUTES):
        for status, share in (("200", 0.97), ("404", 0.02), ("500", 0.01)):
            r.histogram("http_server_request_duration_seconds", demo,
                        {"http_request_method": "GET", "http_route": route,
                         "http_response_status_code": status},
                        5.0 * share, 0.08 * (k + 1), LATENCY_BUCKETS)
    for op in ("select", "insert", "update"):
        r.histogram("app_db_query_duration_seconds", demo, {"operation": op}, 3.0, 0.01,
                    LATENCY_BUCKETS)
    for result, per_s in (("hit", 8.0), ("miss", 2.0)):
        r.counter("app_cache_requests_total", demo, {"result": result}, per_s)
    integ = "integrations"
    for name in INTEGRATIONS:
        r.gauge("integration_probe_success", integ, {"integration": name}, 1.0, 0.0)
        r.gauge("integration_probe_duration_seconds", integ, {"integration": name}, 0.2, 0.3)
        r.gauge("integration_tls_cert_expiry_timestamp_seconds", integ, {"integration": name},
                end + r.rng.uniform(10, 80) * 86400, 0.0)
    infra = "infrastructure"
    for cpu in ("0", "1"):
        for mode, per_s in (("idle", 0.55), ("user", 0.3), ("system", 0.1), ("iowait", 0.05)):
            r.counter("node_cpu_seconds_total", infra, {"cpu": cpu, "mode": mode}, per_s)
    r.gauge("node_memory_MemTotal_bytes", infra, {}, 8 * 2**30, 0.0)
    r.gauge("node_memory_MemAvailable_bytes", infra, {}, 3 * 2**30, 0.05)
    for mount, size, free, trend in (("/", 100 * 2**30, 40 * 2**30, -2**28),
                                     ("/var/lib/pulse", 50 * 2**30, 30 * 2**30, -2**27)):
        labels = {"mountpoint": mount, "fstype": "ext4", "device": "/dev/vda1"}
        r.gauge("node_filesystem_size_bytes", infra, labels, size, 0.0)
        r.gauge("node_filesystem_avail_bytes", infra, labels, free, 0.001, trend)
    for direction in ("receive", "transmit"):
        r.counter(f"node_network_{direction}_bytes_total", infra, {"device": "eth0"}, 2e5)
    r.gauge("node_load1", infra, {}, 0.8, 0.3)
    r.counter("pulse_events_received_total", ev, {}, 40.0)
    r.counter("pulse_events_accepted_total", ev, {}, 38.0)
    r.counter("pulse_events_late_total", ev, {"platform": "ios"}, 1.5)
    r.counter("pulse_events_unmapped_total", ev,
              {"eventType": "system_event", "category": "identity"}, 0.5)
    for reason in synthetic.REJECT_REASONS:
        r.counter("pulse_events_rejected_total", ev, {"reason": reason}, 0.2)
    r.gauge("pulse_events_dead_letters", ev, {}, 12.0, 0.0)
    r.histogram("pulse_ingest_batch_duration_seconds", ev, {}, 0.5, 0.002, LATENCY_BUCKETS)
    for job, collectors in synthetic.collectors().items():
        for c in collectors:
            r.gauge("pulse_scrape_collector_success", job, {"collector": c}, 1.0, 0.0)
    for result, per_s in (("success", 0.01), ("failure", 0.0005)):
        r.counter("pulse_bridge_rule_reloads_total", "bridge", {"result": result}, per_s)
    for channel in ("oncall-slack", "ai-email"):
        for result, per_s in (("success", 0.02), ("failure", 0.001)):
            r.counter("pulse_notifications_total", "bridge",
                      {"channel": channel, "result": result}, per_s)
    for job in JOBS:
        r._add("up", job, {}, [1.0] * len(r.ts))
    return r


def write_openmetrics(path: Path, end: int, hours: float = HOURS, seed: int = 7) -> int:
    """Write the fixture as OpenMetrics text; the number of series written."""
    rec = record(end, hours, seed)
    with open(path, "w") as fh:
        fh.writelines(rec.lines())
    return sum(len(s) for s in rec.families.values())


def _promtool(*args: str, cwd: Path) -> None:
    binary = require_binary("promtool")
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"promtool {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def fixture_prometheus(workdir: Path, end: int, hours: float = HOURS,
                       rules: list[Path] | None = None) -> PrometheusServer:
    """A started real Prometheus holding the fixture and the recording rules backfilled."""
    workdir = Path(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    om = workdir / "fixture.om.txt"
    write_openmetrics(om, end, hours)
    _promtool("tsdb", "create-blocks-from", "openmetrics", "--quiet", str(om), str(data),
              cwd=workdir)
    om.unlink()
    rules = rule_files() if rules is None else rules
    # Nothing is scraped; 1 s evaluation makes live rules and alerts (Watchdog) appear fast.
    prom = PrometheusServer(workdir, rule_files=rules, scrape_interval="15s",
                            evaluation_interval="1s")
    prom.start(timeout=90)
    # promtool evaluates each rule against the server, so a rule reading another recorded
    # series finds nothing on the first pass: repeat with the still-missing rules on the
    # blocks of the previous pass until nothing new appears.
    pending = needed_rules(recording_rules(rules))
    for attempt in range(6):
        present = set(prom.api("label/__name__/values", start=end - int(hours * 3600),
                               end=end))
        todo = {name: group for name, group in pending.items() if name not in present}
        if not todo or (attempt and len(todo) == len(pending)):
            break
        pending = todo
        pass_file = workdir / f"backfill-{attempt}.rules.yml"
        pass_file.write_text(yaml.safe_dump({"groups": _groups_of(todo)}))
        out = workdir / f"rule-blocks-{attempt}"
        _promtool("tsdb", "create-blocks-from", "rules", "--quiet", f"--url={prom.url}",
                  f"--start={end - int(hours * 3600)}", f"--end={end}",
                  f"--eval-interval={STEP}s", f"--output-dir={out}", str(pass_file),
                  cwd=workdir)
        prom.stop()
        for block in out.iterdir() if out.exists() else []:
            shutil.move(str(block), data / block.name)
        prom.start(timeout=90)
    return prom


_SHARED: dict[tuple, tuple[Path, int]] = {}


FRESH_FOR = 120


def shared_fixture_prometheus(workdir: Path, hours: float = HOURS
                              ) -> tuple[PrometheusServer, int]:
    """(started Prometheus, fixture end): built once per process, then started on a copy.

    Test modules each get their own server, but the TSDB (the slow part: promtool's
    backfills) is built only by the first of them.
    """
    workdir = Path(workdir)
    rules = rule_files()
    key = (hours, tuple(str(p) for p in rules))
    # A snapshot ending minutes ago is stale for instant queries at "now" (5 min lookback)
    # and lets absent()-style alerts fire: modules run later build a fresh one.
    if key in _SHARED and time.time() - _SHARED[key][1] > FRESH_FOR:
        del _SHARED[key]
    if key not in _SHARED:
        end = int(time.time()) // STEP * STEP
        prom = fixture_prometheus(workdir, end, hours, rules)
        prom.stop()
        snapshot = Path(tempfile.mkdtemp(prefix="pulse-fixture-tsdb-"))
        atexit.register(shutil.rmtree, snapshot, True)
        shutil.copytree(workdir / "data", snapshot / "data",
                        ignore=shutil.ignore_patterns("lock", "queries.active"))
        _SHARED[key] = (snapshot / "data", end)
        prom.start(timeout=90)
        return prom, end
    data, end = _SHARED[key]
    shutil.copytree(data, workdir / "data")
    prom = PrometheusServer(workdir, rule_files=rules, scrape_interval="15s",
                            evaluation_interval="1s")
    return prom.start(timeout=90), end


def needed_rules(records: dict[str, dict]) -> dict[str, dict]:
    """The recording rules the dashboards read, with every recorded series they depend on.

    Backfilling only these keeps the fixture quick: week-long capacity rules no panel
    reads cost most of promtool's time and prove nothing about the dashboards.
    """
    from pulse.dashboards import load_all, metric_names, queries

    todo = [n for name, doc in load_all().items() for q in queries(name, doc)
            for n in metric_names(q.expr) if n in records]
    needed: set[str] = set()
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo.extend(m for rule in records[name]["rules"] for m in metric_names(rule["expr"])
                    if m in records)
    return {name: entry for name, entry in records.items() if name in needed}


def _groups_of(todo: dict[str, dict]) -> list[dict]:
    groups: dict[str, dict] = {}
    for entry in todo.values():
        g = groups.setdefault(entry["name"], {"name": entry["name"], "rules": []})
        if entry["interval"]:
            g["interval"] = entry["interval"]
        g["rules"].extend(entry["rules"])
    return list(groups.values())
