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
    variables=[label_variable("model", "Model", "ai_recommendations_total", "model")],
    panels=[
        timeseries("Online accuracy (1 h)",
                   "accepted / (accepted + modified + rejected) over the last hour, per model "
                   "(recording rule; absent below min_samples). The line is 75 %.",
                   "percentunit",
                   [target(f"model:ai_recommendation_accuracy:ratio_1h{{{M}}}", "{{model}}")],
                   thresholds=ACCURACY, threshold_line=True, min_=0, max_=1),
        timeseries("Evaluated accuracy", "Accuracy of each model version on its evaluation "
                   "set. The line is 75 %.", "percentunit",
                   [target(f"ai_model_accuracy_ratio{{{M}}}", "{{model}} {{model_version}}")],
                   thresholds=ACCURACY, threshold_line=True, min_=0, max_=1),
        timeseries("Recommendation outcomes", "Recommendations per minute by outcome.", "cpm",
                   [target(f"sum by (outcome) (rate(ai_recommendations_total{{{M}}}"
                           "[$__rate_interval])) * 60", "{{outcome}}")],
                   overrides=outcome_colours(), stack=True),
        timeseries("Feedback score (median)", "Median user feedback score, per model.", "none",
                   [target("histogram_quantile(0.5, sum by (model, le) "
                           f"(rate(ai_recommendation_feedback_score_bucket{{{M}}}"
                           "[$__rate_interval])))", "{{model}}")]),
        timeseries("Feature drift (PSI)", "Population stability index of each input "
                   "feature: above 0.1 moderate, above 0.25 significant drift.", "none",
                   [target(f"ai_model_drift_psi{{{M}}}", "{{model}} {{feature}}")],
                   thresholds=steps(("green", 0), ("orange", 0.1), ("red", 0.25)),
                   threshold_line=True),
        timeseries("Safety events", "Safety events per hour, by model and kind.", "short",
                   [target(f"sum by (model, kind) (rate(ai_safety_events_total{{{M}}}"
                           "[$__rate_interval])) * 3600", "{{model}} {{kind}}")]),
        timeseries("Inference latency p95", "95th percentile inference duration, per model.",
                   "s", [target("histogram_quantile(0.95, sum by (model, le) "
                                f"(rate(ai_inference_duration_seconds_bucket{{{M}}}"
                                "[$__rate_interval])))", "{{model}}")]),
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
