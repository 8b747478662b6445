"""Coach: aggregate progress of one coach's clients (groups under k are never exported).

No coach variable: a coach reads this dashboard through a datasource on the bridge's
/prometheus endpoint with their own token, which puts coach="<their id>" on every selector
(docs/bridge.md, "Coach scoping"); a matcher on coach here would be refused there. On the
plain Prometheus datasource the panels show every coach together.
"""

from grafana.lib import dashboard, stat, steps, target, timeseries

NOTE = (" Aggregate over the coach's clients; groups of fewer than k clients (privacy.k, "
        "default 5) are suppressed by the exporter and show as no data.")
RATIO = steps(("red", 0), ("orange", 0.5), ("green", 0.75))

dashboard = dashboard(
    uid="pulse-coach",
    title="Pulse / Coach",
    description="Client progress aggregated per coach: workout completion, goal progress and "
    "how well AI recommendations work for them. Aggregates only, never a person.",
    audience="coach",
    time_from="now-7d",
    refresh="5m",
    tags=["coach"],
    panels=[
        stat("Active clients", "Clients active in the last 7 days." + NOTE, "short",
             [target("sum(fitness_coach_clients_active)", "active clients")]),
        stat("Workout completion", "Share of started workouts the clients completed." + NOTE,
             "percentunit",
             [target("avg(fitness_coach_workout_completion_ratio)", "completion")],
             thresholds=RATIO),
        stat("Goal progress", "Average progress towards the clients' current goals." + NOTE,
             "percentunit",
             [target("avg(fitness_coach_goal_progress_ratio)", "goal progress")],
             thresholds=RATIO),
        stat("AI recommendations accepted",
             "Share of AI recommendations the clients accepted." + NOTE, "percentunit",
             [target("avg(fitness_coach_ai_acceptance_ratio)", "accepted")],
             thresholds=RATIO),
        timeseries("Workout completion and goal progress",
                   "Completion ratio and goal progress over time." + NOTE, "percentunit",
                   [target("avg(fitness_coach_workout_completion_ratio)",
                           "workout completion"),
                    target("avg(fitness_coach_goal_progress_ratio)", "goal progress",
                           ref="B")], min_=0, max_=1),
        timeseries("AI recommendation effectiveness",
                   "Share of AI recommendations accepted by the clients, over time." + NOTE,
                   "percentunit",
                   [target("avg(fitness_coach_ai_acceptance_ratio)", "accepted")],
                   thresholds=steps(("red", 0), ("green", 0.75)), threshold_line=True,
                   min_=0, max_=1),
        timeseries("Active clients", "Clients active in the last 7 days, over time." + NOTE,
                   "short",
                   [target("sum(fitness_coach_clients_active)", "active clients")],
                   w=24),
    ],
)
