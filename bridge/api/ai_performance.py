"""GET /api/analytics/ai-performance: per-model accuracy, feedback, safety, drift, advice."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from flask import Blueprint, current_app, request

from bridge.auth import require
from bridge.errors import bad_request
from bridge.services import PROMETHEUS, now, service
from bridge.services.times import parse_time
from pulse.config import parse_duration

bp = Blueprint("ai_performance", __name__, url_prefix="/api/analytics")

MODEL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OUTCOMES = ("accepted", "modified", "rejected", "ignored")
# Shared definitions (docs/architecture.md): accuracy below 75 %, a relative drop above 10 %
# against the baseline (7 d), and PSI above 0.2 (the literature's "significant shift").
ACCURACY_THRESHOLD = 0.75
DEGRADATION_THRESHOLD = 0.10
PSI_THRESHOLD = 0.2
DEFAULT_MIN_SAMPLES = 50
MAX_RANGE = 90 * 86400
SEGMENTATIONS = ("model_version",)
TREND_POINTS = 12


# -- request ---------------------------------------------------------------
def parse_request(args, now: float) -> dict:
    """AIPerformanceRequest from query parameters (timeRange=1h, or start/end)."""
    allowed = {"timeRange", "start", "end", "modelTypes", "segmentation", "includeComparisons",
               "minSamples", "baselineWindow"}
    for key in args:
        if key not in allowed:
            raise bad_request(f"{key}: unknown parameter", key,
                              f"unknown parameter (allowed: {', '.join(sorted(allowed))})")
    if "start" in args or "end" in args:
        if "timeRange" in args:
            raise bad_request("timeRange conflicts with start/end", "timeRange",
                              "give either timeRange (a duration) or start and end")
        if "start" not in args:
            raise bad_request("start is required with end", "start", "required with end")
        start = parse_time(args["start"], "start")
        end = parse_time(args["end"], "end") if "end" in args else now
    else:
        try:
            seconds = parse_duration(args.get("timeRange", "24h"))
        except ValueError:
            raise bad_request("timeRange is invalid", "timeRange",
                              "must be a duration like 1h, 7d or 30m") from None
        end, start = now, now - seconds
    if end <= start:
        raise bad_request("end must be after start", "end", "must be after start")
    if end - start < 1 or end - start > MAX_RANGE:
        raise bad_request("the time range is out of bounds", "timeRange",
                          "must span between 1s and 90d")
    if end > now + 60:
        raise bad_request("end is in the future", "end", "must not be in the future")
    models = []
    for raw in args.getlist("modelTypes"):
        for m in raw.split(","):
            if not MODEL.match(m):
                raise bad_request("modelTypes is invalid", "modelTypes",
                                  f"{m!r} is not a model name (^[a-z][a-z0-9_]{{0,63}}$)")
            models.append(m)
    segmentation = []
    for raw in args.getlist("segmentation"):
        for s in raw.split(","):
            if s not in SEGMENTATIONS:
                raise bad_request("segmentation is invalid", "segmentation",
                                  f"unknown segmentation {s!r} (known: {', '.join(SEGMENTATIONS)})")
            segmentation.append(s)
    comparisons = args.get("includeComparisons", "true").lower()
    if comparisons not in ("true", "false"):
        raise bad_request("includeComparisons is invalid", "includeComparisons",
                          "must be true or false")
    raw_min = args.get("minSamples", str(DEFAULT_MIN_SAMPLES))
    if not raw_min.isdigit() or int(raw_min) < 1:
        raise bad_request("minSamples is invalid", "minSamples", "must be a positive integer")
    try:
        baseline = parse_duration(args.get("baselineWindow", "7d"))
    except ValueError:
        raise bad_request("baselineWindow is invalid", "baselineWindow",
                          "must be a duration like 7d") from None
    if baseline < 1:
        raise bad_request("baselineWindow is invalid", "baselineWindow", "must be at least 1s")
    return {"start": start, "end": end, "models": models, "segmentation": segmentation,
            "includeComparisons": comparisons == "true", "minSamples": int(raw_min),
            "baselineWindow": baseline}


# -- pure computation --------------------------------------------------------
def accuracy(outcomes: dict[str, float], min_samples: int) -> tuple[float | None, int]:
    """accepted / (accepted + modified + rejected), or None below min_samples; and the count."""
    responded = sum(outcomes.get(o, 0.0) for o in ("accepted", "modified", "rejected"))
    n = int(round(responded))
    if n < min_samples or responded <= 0:
        return None, n
    return outcomes.get("accepted", 0.0) / responded, n


def rates(outcomes: dict[str, float]) -> dict[str, float | None]:
    """Each outcome's share of every recommendation shown (ignored included)."""
    total = sum(outcomes.get(o, 0.0) for o in OUTCOMES)
    names = {"accepted": "acceptance", "modified": "modification", "rejected": "rejection",
             "ignored": "ignored"}
    return {names[o]: (outcomes.get(o, 0.0) / total if total > 0 else None) for o in OUTCOMES}


def direction(current: float | None, previous: float | None, tolerance: float = 0.02) -> str:
    """improving / declining / stable (within tolerance) / unknown."""
    if current is None or previous is None:
        return "unknown"
    if current > previous + tolerance:
        return "improving"
    if current < previous - tolerance:
        return "declining"
    return "stable"


def recommend(model: str, online: float | None, evaluated: float | None,
              baseline: float | None, drift: dict[str, float]) -> list[dict]:
    """{model, action: 'retrain', reason, code, value, threshold} for each reason that applies."""
    out = []
    if online is not None and online < ACCURACY_THRESHOLD:
        out.append({"model": model, "action": "retrain", "code": "accuracy_low",
                    "reason": f"online accuracy {online:.1%} is below {ACCURACY_THRESHOLD:.0%}",
                    "value": online, "threshold": ACCURACY_THRESHOLD})
    if evaluated is not None and evaluated < ACCURACY_THRESHOLD:
        out.append({"model": model, "action": "retrain", "code": "evaluated_accuracy_low",
                    "reason": f"evaluated accuracy {evaluated:.1%} is below "
                              f"{ACCURACY_THRESHOLD:.0%}",
                    "value": evaluated, "threshold": ACCURACY_THRESHOLD})
    if online is not None and baseline:
        drop = (baseline - online) / baseline
        if drop > DEGRADATION_THRESHOLD:
            out.append({"model": model, "action": "retrain", "code": "accuracy_degraded",
                        "reason": f"accuracy {online:.1%} is {drop:.1%} below its baseline "
                                  f"{baseline:.1%} (more than {DEGRADATION_THRESHOLD:.0%})",
                        "value": drop, "threshold": DEGRADATION_THRESHOLD})
    for feature, value in sorted(drift.items()):
        if value > PSI_THRESHOLD:
            out.append({"model": model, "action": "retrain", "code": "drift",
                        "reason": f"drift PSI {value:.3f} on {feature} is above {PSI_THRESHOLD}",
                        "value": value, "threshold": PSI_THRESHOLD, "feature": feature})
    return out


# -- Prometheus --------------------------------------------------------------
def _by(rows: list[dict], *labels: str) -> dict:
    out = {}
    for r in rows:
        value = float(r["value"][1])
        if math.isfinite(value):
            out[tuple(r["metric"].get(label, "") for label in labels)] = value
    return out


def _outcomes(prom, window: int, at: float, by: str = "model") -> dict:
    rows = prom.query(f"sum by ({by}, outcome) (increase(ai_recommendations_total[{window}s]))",
                      time=at)
    out: dict[tuple, dict[str, float]] = {}
    for key, value in _by(rows, *by.split(", "), "outcome").items():
        out.setdefault(key[:-1], {})[key[-1]] = value
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


def build_response(prom, req: dict, scrape_interval: float) -> dict:
    """Query Prometheus and assemble the AIPerformanceResponse."""
    start, end, min_n = req["start"], req["end"], req["minSamples"]
    window = max(int(round(end - start)), 1)
    current = {k[0]: v for k, v in _outcomes(prom, window, end).items()}
    previous = ({k[0]: v for k, v in _outcomes(prom, window, start).items()}
                if req["includeComparisons"] else {})
    baseline_w = max(int(req["baselineWindow"]), 1)
    baseline = {k[0]: v for k, v in _outcomes(prom, baseline_w, end).items()}
    evaluated_rows = _by(prom.query("ai_model_accuracy_ratio", time=end), "model",
                         "model_version")
    eval_time = _by(prom.query("ai_model_evaluation_timestamp_seconds", time=end), "model",
                    "model_version")
    fb_sum = _by(prom.query(f"sum by (model) (increase("
                            f"ai_recommendation_feedback_score_sum[{window}s]))", time=end),
                 "model")
    fb_count = _by(prom.query(f"sum by (model) (increase("
                              f"ai_recommendation_feedback_score_count[{window}s]))", time=end),
                   "model")
    safety = _by(prom.query(f"sum by (model, kind) (increase(ai_safety_events_total[{window}s]))",
                            time=end), "model", "kind")
    drift = _by(prom.query("ai_model_drift_psi", time=end), "model", "feature")
    segments = (_outcomes(prom, window, end, by="model, model_version")
                if "model_version" in req["segmentation"] else {})

    names = (set(current) | {m for m, _ in evaluated_rows} | {m for (m,) in fb_count}
             | {m for m, _ in safety} | {m for m, _ in drift})
    names = {n for n in names if MODEL.match(n)}  # series without a usable model label
    if req["models"]:
        names &= set(req["models"])
    models, recommendations, trends = [], [], []
    for model in sorted(names):
        outcomes = current.get(model, {})
        online, n = accuracy(outcomes, min_n)
        versions = {v: t for (m, v), t in eval_time.items() if m == model}
        latest = max(versions, key=versions.get) if versions else None
        if latest is None:
            latest = next((v for (m, v) in evaluated_rows if m == model), None)
        evaluated = evaluated_rows.get((model, latest)) if latest else None
        base_acc, base_n = accuracy(baseline.get(model, {}), min_n)
        drop = (base_acc - online) / base_acc if online is not None and base_acc else None
        prev_acc, prev_n = accuracy(previous.get(model, {}), min_n)
        kinds = {k: int(round(v)) for (m, k), v in safety.items() if m == model}
        model_drift = {f: v for (m, f), v in drift.items() if m == model}
        count = fb_count.get((model,), 0.0)
        entry = {
            "model": model,
            "outcomes": {o: int(round(outcomes.get(o, 0.0))) for o in OUTCOMES},
            "accuracy": {"online": _round(online), "evaluated": evaluated,
                         "evaluatedVersion": latest, "samples": n, "minSamples": min_n,
                         "sufficientSamples": online is not None},
            "rates": {k: _round(v) for k, v in rates(outcomes).items()},
            "satisfaction": {"average": _round(fb_sum.get((model,), 0.0) / count)
                             if count > 0 else None, "responses": int(round(count))},
            "safety": {"total": sum(kinds.values()), "byKind": kinds},
            "drift": {"psi": {f: _round(v) for f, v in sorted(model_drift.items())},
                      "maxPsi": _round(max(model_drift.values())) if model_drift else None,
                      "threshold": PSI_THRESHOLD},
            "degradation": {"baselineWindowSeconds": baseline_w,
                            "baselineAccuracy": _round(base_acc), "baselineSamples": base_n,
                            "relativeDrop": _round(drop),
                            "degraded": drop is not None and drop > DEGRADATION_THRESHOLD},
        }
        if req["includeComparisons"]:
            entry["comparison"] = {
                "previousAccuracy": _round(prev_acc), "previousSamples": prev_n,
                "change": _round(online - prev_acc) if None not in (online, prev_acc) else None,
                "direction": direction(online, prev_acc)}
        if segments:
            entry["segments"] = [
                {"modelVersion": v, "accuracy": _round(accuracy(o, min_n)[0]),
                 "samples": accuracy(o, min_n)[1]}
                for (m, v), o in sorted(segments.items()) if m == model]
        models.append(entry)
        recommendations += recommend(model, online, evaluated, base_acc, model_drift)
    if names:
        trends = _trends(prom, sorted(names), start, end, scrape_interval, min_n)
    totals: dict[str, float] = {}
    for model in names:
        for o, v in current.get(model, {}).items():
            totals[o] = totals.get(o, 0.0) + v
    overall, overall_n = accuracy(totals, min_n)
    return {
        "timeRange": {"start": _iso(start), "end": _iso(end), "seconds": window},
        "models": models,
        "aggregates": {
            "models": len(models), "recommendationsShown": int(round(sum(totals.values()))),
            "accuracy": _round(overall), "samples": overall_n,
            "rates": {k: _round(v) for k, v in rates(totals).items()},
            "safetyEvents": sum(m["safety"]["total"] for m in models),
            "modelsNeedingRetraining": len({r["model"] for r in recommendations}),
        },
        "trends": trends,
        "recommendations": recommendations,
    }


def _trends(prom, names: list[str], start: float, end: float, scrape_interval: float,
            min_n: int) -> list[dict]:
    """Accuracy per model over the range at TREND_POINTS steps (each step's own window)."""
    step = max((end - start) / TREND_POINTS, scrape_interval, 1.0)
    if start + step > end:
        return []  # the range is shorter than one scrape: no trend to draw
    # A window shorter than a few scrapes has too few samples for increase().
    win = int(max(step, 4 * scrape_interval))
    accepted = prom.query_range(
        f'sum by (model) (increase(ai_recommendations_total{{outcome="accepted"}}[{win}s]))',
        start + step, end, step)
    responded = prom.query_range(
        f"sum by (model) (increase(ai_recommendations_total"
        f'{{outcome=~"accepted|modified|rejected"}}[{win}s]))', start + step, end, step)
    acc = {r["metric"].get("model"): dict(r["values"]) for r in accepted}
    out = []
    for r in responded:
        model = r["metric"].get("model")
        if model not in names:
            continue
        points = []
        for t, n in r["values"]:
            a = acc.get(model, {}).get(t)
            n = float(n)
            points.append({"time": _iso(float(t)),
                           "accuracy": _round(float(a) / n) if a is not None and n > 0
                           else None, "samples": int(round(n))})
        known = [p["accuracy"] for p in points if p["accuracy"] is not None]
        out.append({"model": model, "metric": "accuracy", "stepSeconds": step,
                    "points": points,
                    "direction": direction(known[-1], known[0]) if len(known) >= 2
                    else "unknown"})
    return sorted(out, key=lambda t: t["model"])


@bp.get("/ai-performance")
@require("ai:read")
def ai_performance():
    """AIPerformanceResponse for the time range (timeRange=1h, or start and end)."""
    req = parse_request(request.args, now(current_app))
    cfg = current_app.config["PULSE"]
    scrape = parse_duration(cfg.prometheus.scrape_interval)
    return build_response(service(current_app, PROMETHEUS), req, scrape)
