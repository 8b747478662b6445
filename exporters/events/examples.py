"""One example event per rule of the default mapping (docs/events.md shows the same ones).

`example_event(rule, **overrides)` returns a fresh, valid AnalyticsEvent feeding that rule; the
tests and bench/ingest.py build their traffic from these shapes (the demo simulator builds its
own events from its population model).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

BASE: dict[str, Any] = {
    "id": "7f1c9a52-3e0b-4c61-9d0e-2b8f5a4c7d10",
    "timestamp": "2026-11-25T10:15:00.000Z",
    "userId": "u-10293",
    "sessionId": "s-5521",
    "deviceInfo": {"platform": "ios", "appVersion": "4.12.0", "osVersion": "18.1",
                   "deviceModel": "iPhone15,2", "connectionType": "wifi"},
    "privacyFlags": {"canTrack": True, "canProfile": True, "canShare": False,
                     "consentDate": "2026-01-03T09:00:00Z", "consentVersion": "2.1"},
}

# rule name -> (metric it feeds, the event's own fields)
EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "session_start": ("fitness_sessions_total", {
        "eventType": "user_action", "category": "session", "action": "start",
        "properties": {}}),
    "session_end": ("fitness_session_duration_seconds", {
        "eventType": "user_action", "category": "session", "action": "end", "value": 540,
        "properties": {}}),
    "sign_up": ("fitness_users_signed_up_total", {
        "eventType": "user_action", "category": "account", "action": "sign_up",
        "properties": {"method": "apple"}}),
    "workout_start": ("fitness_workouts_started_total", {
        "eventType": "user_action", "category": "workout", "action": "start",
        "properties": {"workoutType": "strength"}}),
    "workout_complete": ("fitness_workouts_completed_total", {
        "eventType": "user_action", "category": "workout", "action": "complete", "value": 2700,
        "properties": {"workoutType": "strength"}}),
    "exercise_complete": ("fitness_exercise_completions_total", {
        "eventType": "user_action", "category": "workout", "action": "exercise_complete",
        "properties": {"exerciseType": "squat", "sets": 4, "reps": 8}}),
    "injury_report": ("fitness_injuries_reported_total", {
        "eventType": "user_action", "category": "workout", "action": "injury_report",
        "properties": {"exerciseType": "deadlift", "bodyPart": "lower_back"}}),
    "goal_achieved": ("fitness_goals_achieved_total", {
        "eventType": "user_action", "category": "goal", "action": "achieve",
        "properties": {"goalCategory": "weight_loss"}}),
    "nutrition_log": ("fitness_nutrition_logs_total", {
        "eventType": "user_action", "category": "nutrition", "action": "log",
        "properties": {"meal": "lunch", "calories": 640}}),
    "feature_use": ("fitness_feature_used_total", {
        "eventType": "user_action", "category": "feature", "action": "use",
        "properties": {"feature": "ai_coach"}}),
    "funnel_step": ("fitness_funnel_step_total", {
        "eventType": "user_action", "category": "funnel", "action": "step",
        "properties": {"funnel": "onboarding", "step": "goals"}}),
    "app_crash": ("fitness_app_crashes_total", {
        "eventType": "system_event", "category": "app", "action": "crash",
        "properties": {"exception": "NullPointer"}}),
    "client_api_request": ("fitness_client_request_duration_seconds", {
        "eventType": "system_event", "category": "api", "action": "request", "value": 0.42,
        "properties": {"endpoint": "/api/workouts/{id}", "status": 200}}),
    "subscription_start": ("business_subscriptions_started_total", {
        "eventType": "business_event", "category": "subscription", "action": "start",
        "value": 12.99, "properties": {"plan": "monthly", "currency": "USD"}}),
    "subscription_cancel": ("business_subscriptions_canceled_total", {
        "eventType": "business_event", "category": "subscription", "action": "cancel",
        "properties": {"plan": "monthly", "reason": "price"}}),
    "subscription_revenue": ("business_revenue_total", {
        "eventType": "business_event", "category": "subscription", "action": "renew",
        "value": 12.99, "properties": {"plan": "monthly", "currency": "USD"}}),
    "marketplace_revenue": ("business_revenue_total", {
        "eventType": "business_event", "category": "marketplace", "action": "purchase",
        "value": 29.0, "properties": {"programCategory": "strength", "currency": "EUR",
                                      "trainerCommission": 20.3}}),
    "marketplace_program_sold": ("business_marketplace_programs_sold_total", {
        "eventType": "business_event", "category": "marketplace", "action": "purchase",
        "value": 29.0, "properties": {"programCategory": "strength", "currency": "EUR",
                                      "trainerCommission": 20.3}}),
    "marketplace_trainer_commission": ("business_trainer_commission_total", {
        "eventType": "business_event", "category": "marketplace", "action": "purchase",
        "value": 29.0, "properties": {"programCategory": "strength", "currency": "EUR",
                                      "trainerCommission": 20.3}}),
    "business_cost": ("business_costs_total", {
        "eventType": "business_event", "category": "cost", "action": "incurred",
        "value": 41.5, "properties": {"category": "ai_processing", "currency": "USD",
                                      "source": "inference-gpu"}}),
    "ai_recommendation_outcome": ("ai_recommendations_total", {
        "eventType": "ai_interaction", "category": "recommendation", "action": "accepted",
        "properties": {"model": "workout", "modelVersion": "2.3.1",
                       "recommendationType": "workout_plan"}}),
    "ai_recommendation_feedback": ("ai_recommendation_feedback_score", {
        "eventType": "ai_interaction", "category": "recommendation", "action": "feedback",
        "value": 4, "properties": {"model": "nutrition", "modelVersion": "1.8.0"}}),
    "ai_safety_event": ("ai_safety_events_total", {
        "eventType": "ai_interaction", "category": "safety", "action": "flag",
        "properties": {"model": "recovery", "kind": "medical_contraindication"}}),
    "experiment_exposure": ("ai_experiment_exposures_total", {
        "eventType": "ai_interaction", "category": "experiment", "action": "exposure",
        "properties": {"experiment": "coach-tone-2026q4", "variant": "friendly"}}),
    "experiment_conversion": ("ai_experiment_conversions_total", {
        "eventType": "ai_interaction", "category": "experiment", "action": "conversion",
        "properties": {"experiment": "coach-tone-2026q4", "variant": "friendly",
                       "metric": "workout_completed"}}),
    "wearable_sync": ("integration_wearable_syncs_total", {
        "eventType": "system_event", "category": "wearable", "action": "sync",
        "properties": {"vendor": "garmin", "result": "success", "records": 212}}),
}


def example_event(rule: str, *, fresh_id: bool = True, **overrides: Any) -> dict[str, Any]:
    """A valid event feeding `rule`; a new UUID unless fresh_id is false; top-level overrides."""
    event = copy.deepcopy(BASE)
    event.update(copy.deepcopy(EXAMPLES[rule][1]))
    if fresh_id:
        event["id"] = str(uuid.uuid4())
    event.update(overrides)
    return event
