"""A year (or more) of the demo platform's history, as the long-term tiers would hold it.

`python -m demo.history --url http://127.0.0.1:8428 --days 365` writes hourly samples of
the series the reports read beyond Prometheus's retention (recording rules and the
aggregate gauges, docs/scaling.md) into a VictoriaMetrics tier through its import API
(`POST /api/v1/import`, JSON lines). The shape is the simulator's: its daily rhythm
(demo.simulate.activity), its platform shares and plan prices, plus a weekly cycle and a
year of growth, so a 30-day report has a previous period to compare with and a 365-day
trend has a slope. Deterministic for a given end time and seed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from collections.abc import Iterator

import requests

from demo.simulate import PLAN_PRICES, PLATFORMS, activity

HOUR = 3600
# Per hour at the start of the history, at the day's mean activity; grows by GROWTH a year.
SIGNUPS = 6.0
SESSIONS = 120.0
GROWTH = 0.4
MAU = 5000.0
SUBSCRIPTIONS = {"monthly": 900.0, "annual": 400.0}
CANCEL_SHARE = 0.002  # of active subscriptions, per day
REVENUE_STREAMS = (("subscription", "USD", 1.0), ("subscription", "EUR", 0.45),
                   ("marketplace", "USD", 0.3))
FEATURES = ("workout_player", "nutrition_tracker", "ai_coach", "progress_charts")
MODELS = ("workout", "nutrition", "recovery")
OUTCOME_SHARE = (("accepted", 0.76), ("modified", 0.07), ("rejected", 0.06), ("ignored", 0.11))


def hours(end: float, days: int) -> list[int]:
    """The whole hours (unix seconds) of the history: days before end, up to end."""
    last = int(end) // HOUR * HOUR
    return [last - (days * 24 - 1 - i) * HOUR for i in range(days * 24)]


def _shape(ts: list[int], rng: random.Random) -> list[float]:
    """Traffic per hour relative to the start: daily rhythm x weekly cycle x growth x noise."""
    first, span = ts[0], max(ts[-1] - ts[0], 1)
    out = []
    for t in ts:
        day = t / 86400
        weekly = 1.0 + 0.12 * math.cos(2 * math.pi * ((day + 3) % 7) / 7)
        growth = 1.0 + GROWTH * (t - first) / span
        out.append(activity(day % 1.0) / 0.55 * weekly * growth * rng.uniform(0.93, 1.07))
    return out


def _trailing(values: list[float], n: int) -> list[float]:
    """The sum of each point's last n values (an hourly series' increase over n hours)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= n:
            acc -= values[i - n]
        out.append(acc * (n / min(i + 1, n)))
    return out


def series(end: float, days: int = 365, seed: int = 22) -> Iterator[tuple[dict, list[float]]]:
    """(labels with __name__, one value per hour of hours(end, days)) for every series."""
    rng = random.Random(seed)
    ts = hours(end, days)
    shape = _shape(ts, rng)

    def scaled(base: float, share: float = 1.0) -> list[float]:
        return [round(base * share * s * rng.uniform(0.95, 1.05), 3) for s in shape]

    for platform, share in PLATFORMS:
        signups = scaled(SIGNUPS, share)
        sessions = scaled(SESSIONS, share)
        yield ({"__name__": "platform:fitness_users_signed_up:increase1d", "platform": platform},
               [round(v, 3) for v in _trailing(signups, 24)])
        yield ({"__name__": "platform:fitness_sessions:increase1d", "platform": platform},
               [round(v, 3) for v in _trailing(sessions, 24)])
        started = scaled(SESSIONS * 0.4, share)
        yield ({"__name__": "platform_workout_type:fitness_workouts_started:increase1h",
                "platform": platform, "workout_type": "strength"}, started)
        yield ({"__name__": "platform_workout_type:fitness_workouts_completed:increase1h",
                "platform": platform, "workout_type": "strength"},
               [round(v * rng.uniform(0.78, 0.84), 3) for v in started])
        for feature in FEATURES:
            yield ({"__name__": "feature_platform:fitness_feature_used:increase1d",
                    "feature": feature, "platform": platform},
                   [round(v, 3) for v in _trailing(scaled(SESSIONS * 0.5, share), 24)])
    growth = [1.0 + GROWTH * i / max(len(ts) - 1, 1) for i in range(len(ts))]
    for platform, share in (*PLATFORMS, ("all", 1.0)):
        for window, part in (("1d", 0.3), ("7d", 0.6), ("30d", 1.0)):
            yield ({"__name__": "fitness_active_users", "platform": platform, "window": window},
                   [round(MAU * part * share * g * rng.uniform(0.98, 1.02)) for g in growth])
    yield ({"__name__": "fitness_stickiness_ratio"},
           [round(0.3 * rng.uniform(0.95, 1.05), 4) for _ in ts])
    yield ({"__name__": "fitness_churn_risk_users", "inactive_days": "14"},
           [round(MAU * 0.05 * g) for g in growth])
    for plan, active in SUBSCRIPTIONS.items():
        level = [round(active * g) for g in growth]
        yield ({"__name__": "business_subscriptions_active", "plan": plan}, level)
        canceled = [round(a * CANCEL_SHARE / 24 * rng.uniform(0.5, 1.5), 3) for a in level]
        yield ({"__name__": "plan:business_subscriptions_canceled:increase1h", "plan": plan},
               canceled)
        yield ({"__name__": "plan:business_subscriptions_canceled:increase1d", "plan": plan},
               [round(v, 3) for v in _trailing(canceled, 24)])
        yield ({"__name__": "plan:business_subscriptions_started:increase1h", "plan": plan},
               scaled(SIGNUPS * 0.08 * (1 if plan == "monthly" else 0.4)))
    daily_by_currency: dict[str, list[float]] = {}
    for stream, currency, part in REVENUE_STREAMS:
        hourly = scaled(PLAN_PRICES["monthly"] * 10 * part)
        yield ({"__name__": "stream_currency:business_revenue:increase1h", "stream": stream,
                "currency": currency}, hourly)
        daily = _trailing(hourly, 24)
        acc = daily_by_currency.setdefault(currency, [0.0] * len(ts))
        for i, v in enumerate(daily):
            acc[i] += v
    for currency, daily in daily_by_currency.items():
        yield ({"__name__": "currency:business_revenue:increase1d", "currency": currency},
               [round(v, 3) for v in daily])
    for model in MODELS:
        recs = scaled(SESSIONS * 0.2)
        for outcome, share in OUTCOME_SHARE:
            yield ({"__name__": "model_outcome:ai_recommendations:increase1h", "model": model,
                    "outcome": outcome}, [round(v * share, 3) for v in recs])
        yield ({"__name__": "model_kind:ai_safety_events:increase1d", "model": model,
                "kind": "safety_rail"},
               [round(v * 0.02, 3) for v in _trailing(recs, 24)])


def import_lines(end: float, days: int = 365, seed: int = 22,
                 extra_labels: dict | None = None,
                 keep: tuple[str, ...] | None = None) -> Iterator[str]:
    """The history as VictoriaMetrics /api/v1/import JSON lines (ms timestamps).

    keep: the tier's keep regexes (anchored): only the series remote write would send it.
    """
    stamps = [t * 1000 for t in hours(end, days)]
    for labels, values in series(end, days, seed):
        if keep is not None and not any(re.fullmatch(k, labels["__name__"]) for k in keep):
            continue
        metric = {**labels, **(extra_labels or {})}
        yield json.dumps({"metric": metric, "values": values, "timestamps": stamps})


def load(url: str, end: float | None = None, days: int = 365, seed: int = 22,
         keep: tuple[str, ...] | None = None, session: requests.Session | None = None) -> int:
    """Import the history into the VictoriaMetrics at url; the number of samples written."""
    end = time.time() if end is None else end
    lines = list(import_lines(end, days, seed, {"stack": "pulse"}, keep))
    body = ("\n".join(lines) + "\n").encode()
    http = session or requests
    resp = http.post(f"{url.rstrip('/')}/api/v1/import", data=body, timeout=120)
    resp.raise_for_status()
    # Make what was just written searchable now, not after the next background flush.
    http.get(f"{url.rstrip('/')}/internal/force_flush", timeout=60).raise_for_status()
    return len(lines) * days * 24


def main(argv: list[str] | None = None) -> None:
    """Entry point: load the demo's history into one or more tiers."""
    parser = argparse.ArgumentParser(prog="python -m demo.history", description=__doc__)
    parser.add_argument("--url", action="append", default=[],
                        help="a VictoriaMetrics base URL: every series (repeatable)")
    parser.add_argument("--config", help="pulse.yml: load each long_term tier what it keeps")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args(argv)
    end = time.time()
    targets: list[tuple[str, tuple[str, ...] | None]] = [(u, None) for u in args.url]
    if args.config:
        from pulse.service import load_or_exit

        cfg = load_or_exit(args.config)
        targets += [(t.url, tuple(t.keep)) for t in cfg.long_term.tiers if cfg.long_term.enabled]
    if not targets:
        parser.error("give --url or --config (with long_term tiers)")
    for url, keep in targets:
        n = load(url, end, args.days, args.seed, keep)
        print(f"{url}: {n} samples ({args.days} days, hourly)")


if __name__ == "__main__":
    main()
