"""A scrape target serving every catalogue metric the rules read.

Counters grow at a fixed rate from the moment the server starts, so rates, ratios and
quantiles computed by the rules have known values in a live Prometheus. Names and label
values are the code's: every series is checked by tests/synthetic.py when the module loads.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

from tests.harness import LocalHTTPServer
from tests.synthetic import format_labels, series

# (name, labels, per-second rate)
COUNTERS: list[tuple[str, dict, float]] = [
    ("app_cache_requests_total", {"result": "hit"}, 8),
    ("app_cache_requests_total", {"result": "miss"}, 2),
    ("fitness_app_crashes_total", {"platform": "ios", "app_version": "5.2.0"}, 0.1),
    ("fitness_sessions_total", {"platform": "ios"}, 5),
    ("fitness_sessions_total", {"platform": "android"}, 4),
    ("fitness_workouts_started_total", {"platform": "ios", "workout_type": "strength"}, 2),
    ("fitness_workouts_completed_total", {"platform": "ios", "workout_type": "strength"}, 1.5),
    ("fitness_nutrition_logs_total", {"platform": "ios", "meal": "lunch"}, 1),
    ("fitness_feature_used_total", {"feature": "ai_coach", "platform": "ios"}, 1),
    ("fitness_funnel_step_total", {"funnel": "onboarding", "step": "profile"}, 1),
    ("fitness_users_signed_up_total", {"platform": "web"}, 0.5),
    ("fitness_goals_achieved_total", {"goal_category": "muscle_gain"}, 0.2),
    ("fitness_exercise_completions_total", {"exercise_type": "squat"}, 3),
    ("fitness_injuries_reported_total", {"exercise_type": "squat"}, 0.01),
    ("business_revenue_total", {"stream": "subscription", "currency": "USD"}, 10),
    ("business_subscriptions_started_total", {"plan": "monthly"}, 0.2),
    ("business_subscriptions_canceled_total", {"plan": "monthly"}, 0.05),
    ("business_marketplace_programs_sold_total", {"category": "yoga"}, 0.1),
    ("business_trainer_commission_total", {"currency": "USD"}, 2),
    # workout: accuracy 0.6, below the 0.75 the alert wants.
    ("ai_recommendations_total", {"model": "workout", "model_version": "v3",
                                  "outcome": "accepted"}, 12),
    ("ai_recommendations_total", {"model": "workout", "model_version": "v3",
                                  "outcome": "modified"}, 4),
    ("ai_recommendations_total", {"model": "workout", "model_version": "v3",
                                  "outcome": "rejected"}, 4),
    ("ai_recommendations_total", {"model": "workout", "model_version": "v3",
                                  "outcome": "ignored"}, 5),
    ("ai_safety_events_total", {"model": "workout", "kind": "unsafe_load"}, 0),
    ("ai_experiment_exposures_total", {"experiment": "tone", "variant": "control"}, 2),
    ("ai_experiment_conversions_total", {"experiment": "tone", "variant": "control",
                                         "metric": "workout_completed"}, 0.5),
    ("integration_probe_failures_total", {"integration": "stripe", "reason": "timeout"}, 0),
    ("integration_email_messages_total", {"status": "delivered"}, 9),
    ("integration_email_messages_total", {"status": "bounced"}, 1),
    ("integration_wearable_syncs_total", {"vendor": "garmin", "result": "success"}, 3),
    ("integration_wearable_syncs_total", {"vendor": "garmin", "result": "failure"}, 0.1),
    ("pulse_events_received_total", {}, 50),
    ("pulse_events_accepted_total", {}, 47),
    ("pulse_events_late_total", {"platform": "ios"}, 3),
    ("pulse_events_unmapped_total", {"eventType": "system_event", "category": "identity"}, 1),
    ("pulse_events_rejected_total", {"reason": "invalid"}, 0.5),
    ("pulse_events_rejected_total", {"reason": "no_consent"}, 2),
    ("pulse_bridge_rule_reloads_total", {"result": "success"}, 0.1),
    ("pulse_notifications_total", {"channel": "slack", "result": "success"}, 1),
    ("alertmanager_notifications_failed_total", {"integration": "webhook"}, 0),
    # Host: two cores 40 % busy (node_exporter names, as exporters.infrastructure writes them).
    ("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, 0.6),
    ("node_cpu_seconds_total", {"cpu": "0", "mode": "user"}, 0.4),
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "idle"}, 0.6),
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "user"}, 0.4),
    ("node_network_receive_errs_total", {"device": "eth0"}, 0),
    ("node_network_transmit_errs_total", {"device": "eth0"}, 0),
    ("node_network_receive_bytes_total", {"device": "eth0"}, 50000),
    ("node_network_transmit_bytes_total", {"device": "eth0"}, 20000),
]
# (name, labels, value)
GAUGES: list[tuple[str, dict, float]] = [
    ("ai_model_drift_psi", {"model": "nutrition", "feature": "calories"}, 0.05),
    ("integration_probe_success", {"integration": "stripe"}, 1),
    ("integration_probe_duration_seconds", {"integration": "stripe"}, 0.2),
    ("pulse_scrape_collector_success", {"collector": "cpu"}, 1),
    ("pulse_process_num_procs", {"groupname": "postgres"}, 1),
    ("node_memory_MemTotal_bytes", {}, 8e9),
    ("node_memory_MemAvailable_bytes", {}, 5e9),
    ("node_load1", {}, 0.8),
    ("node_filesystem_size_bytes", {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"},
     100e9),
    ("node_filesystem_avail_bytes", {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"},
     60e9),
    # The profile families (one process's, every group at least k: all published).
    ("pulse_profiles_k_anonymity", {}, 5),
    *[("pulse_profiles_active_users", {"window": w, "platform": "all"}, n)
      for w, n in (("1d", 20), ("30d", 80))],
    ("pulse_profiles_cohort_users", {"cohort": "2026-W48"}, 10),
    ("pulse_profiles_cohort_retained_users", {"cohort": "2026-W48", "week": "0"}, 10),
    ("pulse_profiles_segment_users", {"engagement": "low", "plan": "free",
                                      "goal_category": "none"}, 10),
    ("pulse_profiles_streak_users", {"streak": "1"}, 10),
    ("pulse_profiles_churn_risk_users", {"inactive_days": "7"}, 10),
    ("pulse_profiles_subscriptions_active", {"plan": "monthly"}, 10),
    ("pulse_profiles_funnel_entered_users", {"funnel": "onboarding"}, 10),
    ("pulse_profiles_funnel_users", {"funnel": "onboarding", "step": "sign_up"}, 8),
    *[("pulse_profiles_funnel_step_seconds_bucket",
       {"funnel": "onboarding", "step": "sign_up", "le": le}, n)
      for le, n in (("60.0", 4), ("300.0", 8), ("+Inf", 8))],
    ("pulse_profiles_funnel_step_seconds_gcount", {"funnel": "onboarding", "step": "sign_up"}, 8),
    *[(f"pulse_profiles_coach_{name}", {"coach_id": "coach-1"}, n) for name, n in (
        ("clients", 10), ("clients_active", 8), ("clients_started", 8),
        ("workouts_started", 20), ("workouts_completed", 15), ("goal_progress_sum", 5),
        ("clients_with_goal", 8), ("clients_with_ai", 8), ("ai_recommendations", 20),
        ("ai_accepted", 12))],
]
# (name, labels, per-second rate, {le: cumulative share}, mean)
HISTOGRAMS: list[tuple[str, dict, float, dict, float]] = [
    # /api/workouts: p95 1.75 s, so ApiLatencyP95High (warning) fires.
    ("http_server_request_duration_seconds",
     {"http_request_method": "GET", "http_route": "/api/workouts",
      "http_response_status_code": "200"}, 20, {"0.1": 0.5, "0.5": 0.8, "1.0": 0.9, "2.5": 1},
     0.5),
    ("http_server_request_duration_seconds",
     {"http_request_method": "POST", "http_route": "/api/purchases",
      "http_response_status_code": "200"}, 9, {"0.1": 1, "0.5": 1, "1.0": 1, "2.5": 1}, 0.05),
    ("http_server_request_duration_seconds",
     {"http_request_method": "POST", "http_route": "/api/purchases",
      "http_response_status_code": "503"}, 1, {"0.1": 1, "0.5": 1, "1.0": 1, "2.5": 1}, 0.05),
    ("app_db_query_duration_seconds", {"operation": "select"}, 30,
     {"0.01": 0.9, "0.1": 1}, 0.01),
    ("fitness_session_duration_seconds", {"platform": "ios"}, 5, {"60.0": 0.3, "600.0": 1},
     240),
    ("fitness_client_request_duration_seconds", {"platform": "ios", "endpoint": "/workouts"},
     5, {"0.5": 0.9, "1.0": 1}, 0.3),
    ("ai_recommendation_feedback_score", {"model": "workout"}, 2, {"2.0": 0.2, "5.0": 1}, 3.8),
    ("ai_inference_duration_seconds", {"model": "workout"}, 25, {"0.05": 0.9, "0.2": 1}, 0.04),
    ("pulse_ingest_batch_duration_seconds", {}, 2, {"0.005": 0.9, "0.05": 1}, 0.004),
]


# A label the code never emits fails here, naming it (the alerts would be proven on fiction).
for _name, _labels, *_rest in (*COUNTERS, *GAUGES, *HISTOGRAMS):
    series(_name, **_labels)
series("integration_tls_cert_expiry_timestamp_seconds", integration="stripe")


def exposition(elapsed: float, now: float) -> str:
    """The text exposition after `elapsed` seconds (counters start at 0)."""
    lines = []
    for name, labels, rate in COUNTERS:
        lines.append(f"{name}{format_labels(labels)} {rate * elapsed}")
    for name, labels, value in GAUGES:
        lines.append(f"{name}{format_labels(labels)} {value}")
    lines.append('integration_tls_cert_expiry_timestamp_seconds{integration="stripe"} '
                 f"{now + 30 * 86400}")
    for name, labels, rate, buckets, mean in HISTOGRAMS:
        count = rate * elapsed
        for le, share in buckets.items():
            lines.append(f"{name}_bucket{format_labels({**labels, 'le': le})} {share * count}")
        lines.append(f"{name}_bucket{format_labels({**labels, 'le': '+Inf'})} {count}")
        lines.append(f"{name}_count{format_labels(labels)} {count}")
        lines.append(f"{name}_sum{format_labels(labels)} {mean * count}")
    return "\n".join(lines) + "\n"


class FixtureTarget(LocalHTTPServer):
    """A local HTTP server answering /metrics with `exposition()`."""

    def __init__(self):
        self.started = time.monotonic()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = exposition(time.monotonic() - target.started, time.time()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
