"""Executive: acquisition, conversion, retention and churn, revenue, ARPU, LTV, feature usage."""

from grafana.lib import (
    bars,
    dashboard,
    headline,
    platform_colours,
    row,
    target,
    timeseries,
)

REVENUE = 'sum(increase(business_revenue_total{{currency="USD"}}[$__range]{o}))'
ACTIVE_30D = 'sum(max_over_time(fitness_active_users{{window="30d",platform="all"}}[$__range]{o}))'
SIGNUPS = "sum(increase(fitness_users_signed_up_total[$__range]{o}))"
STARTED = "sum(increase(business_subscriptions_started_total[$__range]{o}))"
CANCELED = "sum(increase(business_subscriptions_canceled_total[$__range]{o}))"
SUBSCRIBERS = "sum(max_over_time(business_subscriptions_active[$__range]{o}))"

dashboard = dashboard(
    uid="pulse-executive",
    title="Pulse / Executive",
    description="Acquisition, retention, revenue and feature usage over the chosen range, "
    "each headline with its change against the previous period.",
    audience="executive",
    time_from="now-30d",
    refresh="5m",
    tags=["executive"],
    panels=[
        row("Acquisition and conversion"),
        headline("New users", "Sign-ups over the range, all platforms.", "short", SIGNUPS),
        headline("Subscriptions started", "New paid subscriptions over the range.", "short",
                 STARTED),
        headline("Subscription conversion",
                 "Subscriptions started per new user over the range.", "percentunit",
                 f"{STARTED} / {SIGNUPS}"),
        headline("Monthly active users",
                 "Distinct users active in the trailing 30 days (highest over the range); a "
                 "user active on several platforms counts once.",
                 "short", ACTIVE_30D),
        row("Retention and churn"),
        headline("Stickiness (DAU / MAU)",
                 "Daily active users divided by 30-day active users, averaged over the range.",
                 "percentunit",
                 'avg(avg_over_time(fitness_active_users{{window="1d",platform="all"}}'
                 '[$__range]{o}))'
                 ' / avg(avg_over_time(fitness_active_users{{window="30d",platform="all"}}'
                 '[$__range]{o}))'),
        headline("Subscription churn",
                 "Subscriptions canceled over the range per active subscription.",
                 "percentunit", f"{CANCELED} / {SUBSCRIBERS}", better="down"),
        headline("Subscriptions canceled", "Cancellations over the range.", "short", CANCELED,
                 better="down"),
        headline("Active subscriptions", "Paid subscriptions active (highest over the range).",
                 "short", SUBSCRIBERS),
        row("Revenue"),
        headline("Revenue", "Revenue in USD over the range, every stream.", "currencyUSD",
                 REVENUE),
        headline("ARPU", "Revenue over the range per monthly active user.", "currencyUSD",
                 f"{REVENUE} / {ACTIVE_30D}"),
        headline("LTV (ARPU / churn)",
                 "Expected lifetime value: ARPU over the range divided by churn over it.",
                 "currencyUSD", f"({REVENUE} / {ACTIVE_30D}) / ({CANCELED} / {SUBSCRIBERS})"),
        headline("Trainer commission",
                 "Commission earned on marketplace programs over the range.", "currencyUSD",
                 'sum(increase(business_trainer_commission_total{{currency="USD"}}'
                 "[$__range]{o}))"),
        timeseries("Revenue by stream", "Revenue in USD in the last hour, by stream.",
                   "currencyUSD",
                   [target('stream_currency:business_revenue:increase1h{currency="USD"}',
                           "{{stream}}")], stack=True),
        timeseries("New users by platform", "Sign-ups in the last day, by platform.", "short",
                   [target("platform:fitness_users_signed_up:increase1d", "{{platform}}")],
                   overrides=platform_colours()),
        row("Feature usage"),
        bars("Feature usage over the range", "Times each feature was used over the range.",
             "short", [target("sort_desc(sum by (feature) "
                              "(increase(fitness_feature_used_total[$__range])))",
                              "{{feature}}")], w=12),
        timeseries("Feature usage trend", "Feature uses in the last day, by feature.",
                   "short",
                   [target("sum by (feature) (feature_platform:fitness_feature_used:increase1d)",
                           "{{feature}}")]),
    ],
)
