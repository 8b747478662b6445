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
    variables=[label_variable("platform", "Platform", "fitness_sessions_total", "platform")],
    panels=[
        row("Sessions"),
        timeseries("Sessions by platform", "Sessions started per minute, by platform.", "cpm",
                   [target(f"sum by (platform) (rate(fitness_sessions_total{{{P}}}"
                           "[$__rate_interval])) * 60", "{{platform}}")],
                   overrides=platform_colours()),
        timeseries("Median session duration by platform",
                   "Median (p50) session length, by platform.", "s",
                   [target("histogram_quantile(0.5, sum by (platform, le) "
                           f"(rate(fitness_session_duration_seconds_bucket{{{P}}}"
                           "[$__rate_interval])))", "{{platform}}")],
                   overrides=platform_colours()),
        row("Workouts and nutrition"),
        timeseries("Workout completion by type",
                   "Workouts completed per workout started, by workout type.", "percentunit",
                   [target("sum by (workout_type) (rate(fitness_workouts_completed_total"
                           f"{{{P}}}[$__rate_interval])) / sum by (workout_type) "
                           f"(rate(fitness_workouts_started_total{{{P}}}[$__rate_interval]))",
                           "{{workout_type}}")], min_=0, max_=1),
        timeseries("Workouts started by type", "Workouts started per hour, by type.", "short",
                   [target("sum by (workout_type) (rate(fitness_workouts_started_total"
                           f"{{{P}}}[$__rate_interval])) * 3600", "{{workout_type}}")],
                   stack=True),
        timeseries("Nutrition logging", "Meals logged per hour.", "short",
                   [target("sum(rate(fitness_nutrition_logs_total[$__rate_interval])) * 3600",
                           "meals logged")], w=8),
        timeseries("Goals achieved by category", "Goals achieved per hour, by category.",
                   "short",
                   [target("sum by (goal_category) (rate(fitness_goals_achieved_total"
                           "[$__rate_interval])) * 3600", "{{goal_category}}")], w=8),
        timeseries("Injuries reported per 1000 completions",
                   "Injury reports per thousand exercise completions, by exercise type.",
                   "short",
                   [target("1000 * sum by (exercise_type) (rate(fitness_injuries_reported_total"
                           "[$__rate_interval])) / sum by (exercise_type) "
                           "(rate(fitness_exercise_completions_total[$__rate_interval]))",
                           "{{exercise_type}}")], w=8),
        row("Feature adoption and funnels"),
        timeseries("Feature adoption", "Feature uses per minute, by feature.", "cpm",
                   [target(f"sum by (feature) (rate(fitness_feature_used_total{{{P}}}"
                           "[$__rate_interval])) * 60", "{{feature}}")]),
        bars("Funnel steps reached",
             "Share of each funnel's entries reaching each step over the range; the gap to "
             "100 % is the drop-off.", "percentunit",
             [target("sum by (funnel, step) (increase(fitness_funnel_step_total[$__range])) "
                     "/ on (funnel) group_left max by (funnel) (sum by (funnel, step) "
                     "(increase(fitness_funnel_step_total[$__range])))",
                     "{{funnel}} / {{step}}")],
             thresholds=steps(("red", 0), ("orange", 0.3), ("green", 0.6))),
        row("Quality"),
        timeseries("Crashes per session by platform and app version",
                   "App crashes per session, by platform and app version.", "percentunit",
                   [target("sum by (platform, app_version) (rate(fitness_app_crashes_total"
                           f"{{{P}}}[$__rate_interval])) / on (platform) group_left "
                           f"sum by (platform) (rate(fitness_sessions_total{{{P}}}"
                           "[$__rate_interval]))", "{{platform}} {{app_version}}")],
                   overrides=platform_colours(),
                   thresholds=steps(("green", 0), ("red", 0.01)), threshold_line=True),
        timeseries("Client-observed API latency p95 by platform",
                   "95th percentile of API latency measured by the apps, by platform.", "s",
                   [target("histogram_quantile(0.95, sum by (platform, le) "
                           f"(rate(fitness_client_request_duration_seconds_bucket{{{P}}}"
                           "[$__rate_interval])))", "{{platform}}")],
                   overrides=platform_colours(),
                   thresholds=steps(("green", 0), ("orange", 1.5), ("red", 2)),
                   threshold_line=True),
        timeseries("Wearable sync success by vendor",
                   "Successful wearable syncs per sync attempt, by vendor.", "percentunit",
                   [target('sum by (vendor) (rate(integration_wearable_syncs_total'
                           '{result="success"}[$__rate_interval])) / sum by (vendor) '
                           "(rate(integration_wearable_syncs_total[$__rate_interval]))",
                           "{{vendor}}")], w=24, min_=0, max_=1),
    ],
)
