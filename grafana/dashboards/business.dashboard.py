"""Business and marketplace: programs sold, trainer earnings, conversion, costs per user."""

from grafana.lib import bars, dashboard, headline, row, target, timeseries

COSTS = 'sum(increase(business_costs_total{{currency="USD"}}[$__range]{o}))'
ACTIVE_30D = 'sum(max_over_time(fitness_active_users{{window="30d",platform="all"}}[$__range]{o}))'

dashboard = dashboard(
    uid="pulse-business",
    title="Pulse / Business and marketplace",
    description="Marketplace sales and trainer earnings, conversion, and what it costs to "
    "serve a user.",
    audience="executive",
    time_from="now-30d",
    refresh="5m",
    tags=["business"],
    panels=[
        row("Marketplace"),
        headline("Programs sold", "Marketplace programs sold over the range.", "short",
                 "sum(increase(business_marketplace_programs_sold_total[$__range]{o}))"),
        headline("Trainer earnings", "Commission earned by trainers over the range.",
                 "currencyUSD",
                 'sum(increase(business_trainer_commission_total{{currency="USD"}}'
                 "[$__range]{o}))"),
        headline("Marketplace revenue", "Marketplace revenue over the range.", "currencyUSD",
                 'sum(increase(business_revenue_total{{stream="marketplace",currency="USD"}}'
                 "[$__range]{o}))"),
        headline("Paywall conversion",
                 "Subscriptions started per new user over the range.", "percentunit",
                 "sum(increase(business_subscriptions_started_total[$__range]{o})) / "
                 "sum(increase(fitness_users_signed_up_total[$__range]{o}))"),
        bars("Top categories", "The ten categories selling most programs over the range.",
             "short",
             [target("topk(10, sum by (category) "
                     "(increase(business_marketplace_programs_sold_total[$__range])))",
                     "{{category}}")]),
        timeseries("Programs sold by category", "Programs sold in the last day, by category.",
                   "short",
                   [target("category:business_marketplace_programs_sold:increase1d",
                           "{{category}}")], stack=True),
        timeseries("Subscriptions by plan", "Subscriptions started and canceled in the last "
                   "day, by plan.", "short",
                   [target("plan:business_subscriptions_started:increase1d",
                           "{{plan}} started"),
                    target("plan:business_subscriptions_canceled:increase1d",
                           "{{plan}} canceled", ref="B")], w=12),
        timeseries("Trainer earnings", "Commission earned by trainers in the last day.",
                   "currencyUSD",
                   [target('currency:business_trainer_commission:increase1d{currency="USD"}',
                           "commission")], w=12),
        row("Costs"),
        headline("Costs", "Infrastructure, AI processing and support costs over the range.",
                 "currencyUSD", COSTS, better="down"),
        headline("Cost per user", "Costs over the range per monthly active user.",
                 "currencyUSD", f"{COSTS} / {ACTIVE_30D}", better="down"),
        timeseries("Costs by category", "Costs per day in USD, by category.", "currencyUSD",
                   [target('sum by (category) (rate(business_costs_total{currency="USD"}'
                           "[$__rate_interval])) * 86400", "{{category}}")], stack=True),
        timeseries("Cost per user trend",
                   "Cost per monthly active user, at the current daily cost rate times 30.",
                   "currencyUSD",
                   [target('sum(rate(business_costs_total{currency="USD"}[$__rate_interval]))'
                           ' * 86400 * 30 / sum(fitness_active_users{window="30d",platform="all"})',
                           "cost per user (30 d)")]),
    ],
)
