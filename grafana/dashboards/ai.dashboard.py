"""AI: accuracy against the 75 % line, outcomes, feedback, drift, safety, experiments."""

from grafana.lib import (
    bars,
    dashboard,
    label_variable,
    outcome_colours,
    steps,
    target,
    timeseries,
)

M = 'model=~"$model"'
ACCURACY = steps(("red", 0), ("green", 0.75))

dashboard = dashboard(
    uid="pulse-ai",
    title="Pulse / AI",
    description="Recommendation accuracy per model (online and evaluated) against the 75 % "
    "line, outcomes, feedback, drift, safety events and experiments.",
    audience="admin",
    time_from="now-24h",
    tags=["ai"],
    variables=[label_variable("model", "Model", "model:ai_recommendations:increase1h",
                              "model")],
    panels=[
        timeseries("Online accuracy (1 h and 7 d)",
                   "accepted / (accepted + modified + rejected) over the last hour and the "
                   "last 7 days, per model. The line is 75 %.", "percentunit",
                   [target(f"model:ai_recommendation_accuracy:ratio_1h{{{M}}}",
                           "{{model}} 1h"),
                    target(f"model:ai_recommendation_accuracy:ratio_7d{{{M}}}",
                           "{{model}} 7d", ref="B")],
                   thresholds=ACCURACY, threshold_line=True, min_=0, max_=1),
        timeseries("Evaluated accuracy", "Accuracy of each model version on its evaluation "
                   "set. The line is 75 %.", "percentunit",
                   [target(f"ai_model_accuracy_ratio{{{M}}}", "{{model}} {{model_version}}")],
                   thresholds=ACCURACY, threshold_line=True, min_=0, max_=1),
        timeseries("Recommendation outcomes", "Recommendations per minute by outcome.", "cpm",
                   [target("sum by (outcome) "
                           f"(model_outcome:ai_recommendations:rate5m{{{M}}}) * 60",
                           "{{outcome}}")],
                   overrides=outcome_colours(), stack=True),
        timeseries("Accuracy degradation vs 7 d",
                   "Relative drop of the 1 h accuracy against the 7 d average, per model; "
                   "above 10 % the AI team is alerted.", "percentunit",
                   [target("model:ai_recommendation_accuracy:degradation_ratio_1h_7d"
                           f"{{{M}}}", "{{model}}")],
                   thresholds=steps(("green", 0), ("red", 0.1)), threshold_line=True),
        timeseries("Acceptance",
                   "Share of shown recommendations accepted in the last hour, per model.",
                   "percentunit",
                   [target(f"model:ai_recommendation_acceptance:ratio_1h{{{M}}}",
                           "{{model}}")], min_=0, max_=1),
        timeseries("Feedback score (1 h mean)", "Mean user feedback score (1 to 5) over the "
                   "last hour, per model.", "none",
                   [target(f"model:ai_recommendation_feedback_score:avg1h{{{M}}}",
                           "{{model}}")]),
        timeseries("Feature drift (PSI)", "Population stability index of each input "
                   "feature: above 0.1 moderate, above 0.25 significant drift.", "none",
                   [target(f"ai_model_drift_psi{{{M}}}", "{{model}} {{feature}}")],
                   thresholds=steps(("green", 0), ("orange", 0.1), ("red", 0.25)),
                   threshold_line=True),
        timeseries("Safety events", "Safety events in the last 5 minutes, by model and kind.",
                   "short", [target(f"model_kind:ai_safety_events:increase5m{{{M}}}",
                                    "{{model}} {{kind}}")]),
        timeseries("Inference latency p95", "95th percentile inference duration, per model.",
                   "s", [target(f"model:ai_inference_duration_seconds:p95_5m{{{M}}}",
                                "{{model}}")]),
        bars("Experiment conversion by variant",
             "Conversions per exposure over the range, per experiment, variant and metric.",
             "percentunit",
             [target("sum by (experiment, variant, metric) "
                     "(increase(ai_experiment_conversions_total[$__range])) "
                     "/ on (experiment, variant) group_left sum by (experiment, variant) "
                     "(increase(ai_experiment_exposures_total[$__range]))",
                     "{{experiment}} {{variant}} {{metric}}")]),
    ],
)
