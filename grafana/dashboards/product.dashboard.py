"""Product and engagement: sessions, workouts, nutrition, features, funnels, crashes."""

from grafana.lib import (
    bars,
    dashboard,
    label_variable,
    platform_colours,
    row,
    steps,
    target,
    timeseries,
)

P = 'platform=~"$platform"'

dashboard = dashboard(
    uid="pulse-product",
    title="Pulse / Product and engagement",
    description="Sessions, workouts, nutrition logging, feature adoption, funnels and crash "
    "rates, iOS, Android and web side by side.",
    audience="product",
    time_from="now-24h",
    tags=["product"],
    variables=[label_variable("platform", "Platform", "platform:fitness_sessions:rate5m",
                              "platform")],
    panels=[
        row("Sessions"),
        timeseries("Sessions by platform", "Sessions started per minute, by platform.", "cpm",
                   [target(f"platform:fitness_sessions:rate5m{{{P}}} * 60", "{{platform}}")],
                   overrides=platform_colours()),
        timeseries("Median session duration by platform",
                   "Median (p50) session length over the last hour, by platform.", "s",
                   [target(f"platform:fitness_session_duration_seconds:p50_1h{{{P}}}",
                           "{{platform}}")],
                   overrides=platform_colours()),
        row("Workouts and nutrition"),
        timeseries("Workout completion by type",
                   "Workouts completed per workout started in the last hour, by workout type.",
                   "percentunit",
                   [target("sum by (workout_type) "
                           f"(platform_workout_type:fitness_workouts_completed:increase1h{{{P}}})"
                           " / sum by (workout_type) "
                           f"(platform_workout_type:fitness_workouts_started:increase1h{{{P}}})",
                           "{{workout_type}}")], min_=0, max_=1),
        timeseries("Workouts started by type", "Workouts started in the last hour, by type.",
                   "short",
                   [target("sum by (workout_type) "
                           f"(platform_workout_type:fitness_workouts_started:increase1h{{{P}}})",
                           "{{workout_type}}")], stack=True),
        timeseries("Nutrition logging", "Meals logged in the last hour, by platform.", "short",
                   [target(f"platform:fitness_nutrition_logs:increase1h{{{P}}}",
                           "{{platform}}")], overrides=platform_colours(), w=8),
        timeseries("Goals achieved by category", "Goals achieved in the last day, by "
                   "category.", "short",
                   [target("goal_category:fitness_goals_achieved:increase1d",
                           "{{goal_category}}")], w=8),
        timeseries("Injuries reported per 1000 completions",
                   "Injury reports per thousand exercise completions in the last day, by "
                   "exercise type.", "short",
                   [target("1000 * exercise_type:fitness_injuries_reported:increase1d / "
                           "exercise_type:fitness_exercise_completions:increase1d",
                           "{{exercise_type}}")], w=8),
        row("Feature adoption and funnels"),
        timeseries("Feature adoption", "Feature uses in the last day, by feature.", "short",
                   [target("sum by (feature) "
                           f"(feature_platform:fitness_feature_used:increase1d{{{P}}})",
                           "{{feature}}")]),
        bars("Funnel steps reached",
             "Share of each funnel's entries reaching each step over the range; the gap to "
             "100 % is the drop-off.", "percentunit",
             [target("sum by (funnel, step) (increase(fitness_funnel_step_total[$__range])) "
                     "/ on (funnel) group_left max by (funnel) (sum by (funnel, step) "
                     "(increase(fitness_funnel_step_total[$__range])))",
                     "{{funnel}} / {{step}}")],
             thresholds=steps(("red", 0), ("orange", 0.3), ("green", 0.6))),
        row("Users (per-user profiling, groups under k suppressed)"),
        timeseries("Daily active users by platform",
                   "Distinct users active today (UTC), by platform. A user active on iOS and "
                   "web counts once in each platform's line and once in 'all', so the "
                   "platforms can add up to more than 'all'.", "short",
                   [target('fitness_active_users{window="1d",platform=~"$platform|all"}',
                           "{{platform}}")], overrides=platform_colours()),
        timeseries("Stickiness (DAU / MAU)",
                   "Users active today over users active in the trailing 30 days.",
                   "percentunit", [target("fitness_stickiness_ratio", "DAU / MAU")],
                   min_=0, max_=1),
        bars("Cohort retention by week",
             "Share of each weekly cohort (users first active that ISO week) active in each "
             "week since (week 0 is the cohort's own week); the last 12 cohorts by 12 weeks, "
             "cohorts of fewer than k users not shown.", "percentunit",
             [target("fitness_cohort_retention_ratio", "{{cohort}} week {{week}}")]),
        bars("Funnel conversion (distinct users)",
             "Share of the users who entered each funnel in the last 30 days who reached each "
             "step.", "percentunit",
             [target("fitness_funnel_conversion_ratio", "{{funnel}} / {{step}}")],
             thresholds=steps(("red", 0), ("orange", 0.3), ("green", 0.6))),
        bars("Engagement segments",
             "Profiled users by engagement level (active days of the last 30).", "short",
             [target("sum by (engagement) (fitness_segment_users)", "{{engagement}}")], w=8),
        bars("Current streaks",
             "Users active in the last 30 days by current streak of consecutive active days.",
             "short", [target("fitness_streak_users", "{{streak}} days")], w=8),
        timeseries("Churn risk",
                   "Users active in the last 90 days but inactive for at least 7, 14 or 30 "
                   "days.", "short",
                   [target("fitness_churn_risk_users", "inactive {{inactive_days}} d")], w=8),
        row("Quality"),
        timeseries("Crashes per session by platform and app version",
                   "App crashes per session, by platform and app version.", "percentunit",
                   [target("platform_app_version:fitness_app_crashes_per_session:ratio_rate15m"
                           f"{{{P}}}", "{{platform}} {{app_version}}")],
                   overrides=platform_colours(),
                   thresholds=steps(("green", 0), ("red", 0.01)), threshold_line=True),
        timeseries("Client-observed API latency p95",
                   "95th percentile of API latency measured by the apps, by platform and "
                   "endpoint.", "s",
                   [target("platform_endpoint:fitness_client_request_duration_seconds:p95_5m"
                           f"{{{P}}}", "{{platform}} {{endpoint}}")],
                   overrides=platform_colours(),
                   thresholds=steps(("green", 0), ("orange", 1.5), ("red", 2)),
                   threshold_line=True),
        timeseries("Wearable sync success by vendor",
                   "Successful wearable syncs per sync attempt over 30 minutes, by vendor.",
                   "percentunit",
                   [target("1 - vendor:integration_wearable_sync_failures:ratio_rate30m",
                           "{{vendor}}")], w=24, min_=0, max_=1),
    ],
)
