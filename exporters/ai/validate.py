"""Validation of what models and evaluation jobs send to the AI exporter (pure functions)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Semantic-version-like: v1, 1.2, 2.0.1, 2.0.1-rc.1 (bounded, label-safe).
VERSION = re.compile(r"^v?[0-9]{1,6}(\.[0-9]{1,6}){0,2}(-[a-z0-9]{1,16}(\.[a-z0-9]{1,16})?)?$")
TASKS = ("workout_generation", "nutrition", "recovery", "coaching", "safety", "other")
# Evaluation metrics exported as ai_model_<name>_ratio; all are ratios in [0, 1].
EVAL_METRICS = ("accuracy", "precision", "recall", "f1", "auc")
MAX_BINS = 100
MAX_VALUES = 100_000
FUTURE_SKEW_SECONDS = 300


class InvalidInput(Exception):
    """Bad input: the field and the problem (answered as a 400/422 JSON error)."""

    def __init__(self, field: str, problem: str, status: int = 400):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status


def require_object(body: Any) -> dict:
    """The request body as a JSON object."""
    if not isinstance(body, dict):
        raise InvalidInput("body", "expected a JSON object")
    return body


def check_keys(body: dict, allowed: set[str], prefix: str = "") -> None:
    """Reject unknown keys (a typo must not be silently ignored)."""
    for key in body:
        if key not in allowed:
            raise InvalidInput(f"{prefix}{key}",
                               f"unknown field (allowed: {', '.join(sorted(allowed))})")


def name(body: dict, field: str) -> str:
    """A label-safe name: lower-case letters, digits and underscores, 1-64 characters."""
    value = body.get(field)
    if value is None:
        raise InvalidInput(field, "required")
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidInput(field, "must match ^[a-z][a-z0-9_]{0,63}$")
    return value


def model_version(body: dict, field: str = "modelVersion") -> str:
    """A model version like 1.4.2, v3 or 2.0.0-rc.1."""
    value = body.get(field)
    if value is None:
        raise InvalidInput(field, "required")
    if not isinstance(value, str) or not VERSION.match(value):
        raise InvalidInput(field, "unknown model version format "
                           "(expected e.g. 1.4.2, v3, 2.0.0-rc.1)")
    return value


def number(value: Any, field: str) -> float:
    """A finite JSON number (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(field, "must be a finite number")
    return float(value)


def _numbers(raw: list, field: str) -> list[float]:
    """Finite numbers; the fast path checks the whole list before naming a bad element."""
    if all(type(v) in (int, float) and math.isfinite(v) for v in raw):
        return [float(v) for v in raw]
    return [number(v, f"{field}[{i}]") for i, v in enumerate(raw)]


def count(value: Any, field: str) -> int:
    """A non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidInput(field, "must be an integer")
    if value < 0:
        raise InvalidInput(field, "must not be negative")
    return int(value)


def timestamp(value: Any, field: str, now: float) -> float:
    """An ISO 8601 time with offset (or Z), not in the future; as Unix seconds."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 date-time string") from None
    if parsed.tzinfo is None:
        raise InvalidInput(field, "must carry a time zone (e.g. 2026-11-25T10:00:00Z)")
    ts = parsed.timestamp()
    if ts > now + FUTURE_SKEW_SECONDS:
        raise InvalidInput(field, "is in the future")
    return ts


def iso(ts: float) -> str:
    """Unix seconds as an ISO 8601 UTC string."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def evaluation(body: Any, now: float) -> dict:
    """An EvaluationReport, normalised for storage."""
    body = require_object(body)
    check_keys(body, {"model", "modelVersion", "task", "metrics", "sampleSize", "evaluatedAt"})
    out = {"model": name(body, "model"), "modelVersion": model_version(body)}
    task = body.get("task")
    if task not in TASKS:
        raise InvalidInput("task", f"must be one of {', '.join(TASKS)}")
    out["task"] = task
    metrics = body.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise InvalidInput("metrics", "must be a non-empty object of metric -> ratio")
    checked = {}
    for key, value in metrics.items():
        field = f"metrics.{key}"
        if key not in EVAL_METRICS:
            raise InvalidInput(field, f"unknown metric (known: {', '.join(EVAL_METRICS)})")
        v = number(value, field)
        if not 0 <= v <= 1:
            raise InvalidInput(field, "must be a ratio between 0 and 1")
        checked[key] = v
    out["metrics"] = checked
    size = count(body.get("sampleSize"), "sampleSize") if "sampleSize" in body else None
    if size is None or size < 1:
        raise InvalidInput("sampleSize", "required, a positive integer")
    out["sampleSize"] = size
    out["evaluatedAt"] = (timestamp(body["evaluatedAt"], "evaluatedAt", now)
                          if "evaluatedAt" in body else now)
    return out


def edges(value: Any, field: str = "bins") -> list[float]:
    """Histogram bin edges: at least 3 strictly increasing finite numbers (>= 2 bins)."""
    if not isinstance(value, list) or not 3 <= len(value) <= MAX_BINS + 1:
        raise InvalidInput(field, f"must be a list of 3 to {MAX_BINS + 1} bin edges")
    out = [number(v, f"{field}[{i}]") for i, v in enumerate(value)]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise InvalidInput(f"{field}[{i}]", "bin edges must be strictly increasing")
    return out


def counts(value: Any, n_bins: int, field: str = "counts") -> list[int]:
    """One non-negative integer count per bin."""
    if not isinstance(value, list):
        raise InvalidInput(field, "must be a list of counts")
    if len(value) != n_bins:
        raise InvalidInput(field, f"expected {n_bins} counts (one per bin), got {len(value)}")
    return [count(v, f"{field}[{i}]") for i, v in enumerate(value)]


def reference(body: Any, now: float) -> dict:
    """A DriftReference: model, feature, bin edges and the reference counts per bin."""
    body = require_object(body)
    check_keys(body, {"model", "feature", "bins", "counts", "capturedAt"})
    out = {"model": name(body, "model"), "feature": name(body, "feature")}
    out["edges"] = edges(body.get("bins"))
    out["counts"] = counts(body.get("counts"), len(out["edges"]) - 1)
    if sum(out["counts"]) == 0:
        raise InvalidInput("counts", "the reference needs at least one observation")
    out["registeredAt"] = (timestamp(body["capturedAt"], "capturedAt", now)
                           if "capturedAt" in body else now)
    return out


def observations(body: Any, ref_lookup) -> dict:
    """DriftObservations: counts per reference bin, or raw values to bin."""
    body = require_object(body)
    check_keys(body, {"model", "feature", "bins", "counts", "values"})
    model, feature = name(body, "model"), name(body, "feature")
    ref = ref_lookup(model, feature)
    if ref is None:
        raise InvalidInput("feature", f"no reference registered for model {model!r} and "
                           f"feature {feature!r} (POST /api/analytics/ai/drift/reference first)",
                           status=404)
    if "bins" in body and edges(body["bins"]) != ref["edges"]:
        raise InvalidInput("bins", "the bins do not match the registered reference's bins")
    if ("counts" in body) == ("values" in body):
        raise InvalidInput("counts", "give exactly one of counts (per bin) or values")
    if "counts" in body:
        binned = counts(body["counts"], len(ref["counts"]))
        values = None
    else:
        raw = body["values"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VALUES:
            raise InvalidInput("values", f"must be a list of 1 to {MAX_VALUES} numbers")
        values = _numbers(raw, "values")
        binned = None
    return {"model": model, "feature": feature, "counts": binned, "values": values,
            "edges": ref["edges"]}


def inference(body: Any) -> dict:
    """InferenceReport: a model and durations in seconds to observe."""
    body = require_object(body)
    check_keys(body, {"model", "durations"})
    model = name(body, "model")
    raw = body.get("durations")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 10_000:
        raise InvalidInput("durations", "must be a list of 1 to 10000 durations in seconds")
    durations = []
    for i, v in enumerate(raw):
        d = number(v, f"durations[{i}]")
        if d < 0:
            raise InvalidInput(f"durations[{i}]", "must not be negative")
        durations.append(d)
    return {"model": model, "durations": durations}
