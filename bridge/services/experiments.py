"""A/B experiments of AI models: definition, store, deterministic assignment, results."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask

from bridge.services import EXPERIMENTS, stats
from bridge.services.errors import Conflict, NotFound, invalid
from pulse.config import parse_duration
from pulse.profiles.experiments import UnitStore
from pulse.profiles.experiments import db_path as unit_db_path

MODEL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION = re.compile(r"^v?[0-9]{1,6}(\.[0-9]{1,6}){0,2}(-[a-z0-9]{1,16}(\.[a-z0-9]{1,16})?)?$")
EXPERIMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
PLATFORMS = ("ios", "android", "web")
MIN_DURATION, MAX_DURATION = 3600, 365 * 86400
# Below this many exposures in a variant a comparison says "not enough data".
MIN_SAMPLE = 100


# -- validation (pure) -----------------------------------------------------
# The body has passed the published ExperimentRequest schema (bridge.validation's
# request_body: types, lengths, patterns, enums, item counts, unknown keys of the nested
# objects). What follows is what a schema cannot say.
def slug(name: str) -> str:
    """A label-safe experiment id from its name ('Workout Gen v2!' -> 'workout_gen_v2')."""
    text = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if text and not text[0].isalpha():
        text = f"exp_{text}"
    return text[:48].rstrip("_")


def validate_experiment(body: dict) -> dict:
    """A schema-checked ExperimentRequest, checked further and normalised; raises Invalid
    naming the field."""
    # The response schema Experiment is allOf(ExperimentRequest, ...), so the request schema
    # cannot close its own keys: unknown top-level fields are refused here.
    allowed = {"name", "description", "modelVariants", "trafficSplit", "successMetrics",
               "duration", "targetAudience"}
    for key in body:
        if key not in allowed:
            raise invalid(f"{key}: unknown field", key,
                          f"unknown field (allowed: {', '.join(sorted(allowed))})")
    name = body["name"]
    if not name.strip():
        raise invalid("name is invalid", "name",
                      "required, a non-empty string of at most 100 characters")
    exp_id = slug(name)
    if not EXPERIMENT_ID.match(exp_id or "-"):
        raise invalid("name has no letters or digits", "name",
                      "must contain letters or digits (it becomes the experiment id)")

    out_variants, seen = [], set()
    for i, v in enumerate(body["modelVariants"]):
        f = f"modelVariants[{i}]"
        vname = v["name"]
        if vname in seen:
            raise invalid(f"{f}.name is a duplicate", f"{f}.name",
                          f"variant names must be unique; {vname!r} appears twice")
        seen.add(vname)
        if not VERSION.match(v["modelVersion"]):
            raise invalid(f"{f}.modelVersion is invalid", f"{f}.modelVersion",
                          "unknown model version format (expected e.g. 1.4.2, v3)")
        out_variants.append({"name": vname, "model": v["model"],
                             "modelVersion": v["modelVersion"],
                             "control": v.get("control", False),
                             "description": v.get("description", "")})
    controls = [v["name"] for v in out_variants if v["control"]]
    if len(controls) > 1:
        raise invalid("more than one control variant", "modelVariants",
                      f"at most one variant may be the control; got {controls}")
    if not controls:
        out_variants[0]["control"] = True  # the first variant is the control by convention

    weights: dict[str, float] = {}
    for i, s in enumerate(body["trafficSplit"]):
        f = f"trafficSplit[{i}]"
        vname = s["variant"]
        if vname not in seen:
            raise invalid(f"{f}.variant is unknown", f"{f}.variant",
                          f"must name one of the modelVariants ({', '.join(sorted(seen))})")
        if vname in weights:
            raise invalid(f"{f}.variant is a duplicate", f"{f}.variant",
                          f"{vname!r} has more than one split")
        if not math.isfinite(s["percentage"]):  # Python's JSON reads NaN, which no bound stops
            raise invalid(f"{f}.percentage is invalid", f"{f}.percentage",
                          "must be a number above 0 and at most 100")
        weights[vname] = float(s["percentage"])
    missing = seen - set(weights)
    if missing:
        raise invalid("trafficSplit misses variants", "trafficSplit",
                      f"every variant needs a split; missing {sorted(missing)}")
    total = sum(weights.values())
    if abs(total - 100.0) > 1e-6:
        raise invalid("trafficSplit does not sum to 100", "trafficSplit",
                      f"percentages sum to {total:g}, must sum to 100")

    metrics = body["successMetrics"]
    if len(set(metrics)) != len(metrics):
        raise invalid("successMetrics has duplicates", "successMetrics",
                      "each metric may appear once")

    duration = body["duration"]
    try:
        seconds = parse_duration(duration)
    except ValueError:
        seconds = None
    if seconds is None or not MIN_DURATION <= seconds <= MAX_DURATION:
        raise invalid("duration is invalid", "duration",
                      "must be a duration like 14d, 2w or 36h, between 1h and 365d")

    audience = body.get("targetAudience")
    if audience is not None:
        audience = _audience(audience)
    return {
        "id": exp_id, "name": name, "description": body.get("description", ""),
        "modelVariants": out_variants,
        "trafficSplit": [{"variant": v["name"], "percentage": weights[v["name"]]}
                         for v in out_variants],
        "successMetrics": list(metrics), "duration": duration, "durationSeconds": seconds,
        "targetAudience": audience,
    }


def _audience(audience: dict) -> dict:
    f = "targetAudience"
    out: dict[str, Any] = {}
    if "platforms" in audience:
        out["platforms"] = sorted(set(audience["platforms"]))
    if "plans" in audience:
        if not all(MODEL.match(x) for x in audience["plans"]):
            raise invalid(f"{f}.plans is invalid", f"{f}.plans",
                          "must be a non-empty list of plan names (^[a-z][a-z0-9_]*$)")
        out["plans"] = sorted(set(audience["plans"]))
    if "newUsersOnly" in audience:
        out["newUsersOnly"] = audience["newUsersOnly"]
    return out


# -- audience (pure) -------------------------------------------------------
def audience_reason(exp: dict, platform: str | None, plan: str | None,
                    new_user: bool | None) -> str | None:
    """Why a unit with these attributes is outside the targetAudience; None when inside.

    An attribute the audience restricts and the caller does not know counts as outside:
    the unit cannot be shown to belong.
    """
    audience = exp.get("targetAudience") or {}
    if "platforms" in audience:
        if platform is None:
            return "platform unknown; the audience is limited to " + ", ".join(
                audience["platforms"])
        if platform not in audience["platforms"]:
            allowed = ", ".join(audience["platforms"])
            return f"platform {platform} is not in the audience ({allowed})"
    if "plans" in audience:
        if plan is None:
            return "plan unknown; the audience is limited to " + ", ".join(audience["plans"])
        if plan not in audience["plans"]:
            return f"plan {plan} is not in the audience ({', '.join(audience['plans'])})"
    if audience.get("newUsersOnly"):
        if new_user is None:
            return "newUser unknown; the audience is new users only"
        if not new_user:
            return "not a new user; the audience is new users only"
    return None


# -- results (pure) --------------------------------------------------------
DAY = 86400.0
MIN_PRE_COVERAGE = 0.5  # CUPED when at least this share of the units has a pre-period value


def compute_results(exp: dict, exposure_rows: list[tuple], conversion_rows: list[tuple],
                    end: float, confidence: float = 0.95, min_sample: int = MIN_SAMPLE,
                    relative_mde: float = 0.1, power: float = 0.8) -> dict:
    """Per-unit results: interval, sequential test, CUPED, Bayes, SRM, Holm and power.

    exposure_rows: (unit, variant, ts, platform, plan, new_user, pre_value) — one per unit
    and variant (pulse.profiles.experiments); conversion_rows: (unit, variant, metric, ts).
    A unit that saw two variants is excluded and reported; a unit outside the audience is
    excluded and reported; exposures outside [startedAt, end] are not counted, nor are
    conversions before the unit's exposure or after `end`.
    """
    alpha = 1 - confidence
    names = [v["variant"] for v in exp["trafficSplit"]]
    weights = [v["percentage"] for v in exp["trafficSplit"]]
    control = next(v["name"] for v in exp["modelVariants"] if v["control"])
    start = exp["startedAt"]
    seen: dict[bytes, list[tuple]] = {}
    for row in exposure_rows:
        if row[1] in names and start <= row[2] <= end:
            seen.setdefault(row[0], []).append(row)
    units: dict[bytes, tuple] = {}
    multi = dict.fromkeys(names, 0)
    outside = 0
    for unit, rows in seen.items():
        if len({r[1] for r in rows}) > 1:
            for r in rows:
                multi[r[1]] += 1
            continue
        first = min(rows, key=lambda r: r[2])
        new_user = None if first[5] is None else bool(first[5])
        if audience_reason(exp, first[3], first[4], new_user) is not None:
            outside += 1
            continue
        units[unit] = first
    converted: dict[tuple[bytes, str], float] = {}
    for unit, variant, metric, ts in conversion_rows:
        row = units.get(unit)
        if row is None or row[1] != variant or not row[2] <= ts <= end:
            continue
        key = (unit, metric)
        converted[key] = min(ts, converted.get(key, ts))

    looks = np.arange(start + DAY, end, DAY).tolist() + [end]
    per_variant: dict[str, dict] = {}
    for name in names:
        rows = [r for r in units.values() if r[1] == name]
        per_variant[name] = {"units": [r[0] for r in rows],
                             "times": np.sort(np.array([r[2] for r in rows], float)),
                             "pre": np.array([np.nan if r[6] is None else r[6] for r in rows])}
    n = {v: len(per_variant[v]["units"]) for v in names}
    total = sum(n.values())
    variants = []
    for name, weight in zip(names, weights, strict=True):
        metrics = {}
        for m in exp["successMetrics"]:
            k = sum(1 for u in per_variant[name]["units"] if (u, m) in converted)
            metrics[m] = {"conversions": k, "rate": k / n[name] if n[name] else None}
        variants.append({"variant": name, "control": name == control, "units": n[name],
                         "excludedMultipleVariants": multi[name],
                         "expectedShare": weight / 100.0,
                         "observedShare": n[name] / total if total else None,
                         "metrics": metrics})
    by_name = {v["variant"]: v for v in variants}

    def cumulative(name: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        times = per_variant[name]["times"]
        conv = np.sort(np.array([converted[(u, metric)] for u in per_variant[name]["units"]
                                 if (u, metric) in converted], float))
        return (np.searchsorted(conv, looks, side="right"),
                np.searchsorted(times, looks, side="right"))

    comparisons = []
    for v in variants:
        if v["variant"] == control:
            continue
        for m in exp["successMetrics"]:
            row = {"variant": v["variant"], "control": control, "metric": m}
            nc, nv = n[control], n[v["variant"]]
            kc = by_name[control]["metrics"][m]["conversions"]
            kv = v["metrics"][m]["conversions"]
            if nc < min_sample or nv < min_sample:
                row.update(status="not_enough_data",
                           reason=f"each variant needs at least {min_sample} units "
                                  f"(control {nc}, {v['variant']} {nv})")
                comparisons.append(row)
                continue
            diff, low, high = stats.newcombe_difference(kv, nv, kc, nc, confidence)
            lift, lift_low, lift_high = stats.relative_lift(kv, nv, kc, nc, confidence)
            z, p_fixed = stats.z_test(kv, nv, kc, nc)
            kvs, nvs = cumulative(v["variant"], m)
            kcs, ncs = cumulative(control, m)
            p_seq, cs_low, cs_high = stats.sequential(kvs, nvs, kcs, ncs, alpha)
            base = kc / nc
            need = stats.required_sample(base, relative_mde, alpha, power) if 0 < base < 1 \
                else None
            row.update(
                status="ok", controlRate=kc / nc, variantRate=kv / nv,
                absoluteDifference=float(diff), confidenceLevel=confidence,
                confidenceInterval=[float(low), float(high)], intervalMethod="newcombe",
                relativeLift=_num(lift), relativeLiftInterval=[_num(lift_low), _num(lift_high)],
                fixedHorizon={"zScore": float(z), "pValue": float(p_fixed),
                              "note": "valid only if read once, at the planned end"},
                sequential={"method": "mSPRT (normal mixture)", "tau": stats.MSPRT_TAU,
                            "looks": len(looks), "pValue": float(p_seq),
                            "confidenceSequence": [_num(cs_low), _num(cs_high)]},
                bayesian=stats.beta_binomial(kv, nv, kc, nc),
                power={"relativeMde": relative_mde, "power": power,
                       "requiredUnitsPerVariant": need,
                       "achievedPower": stats.achieved_power(base, relative_mde,
                                                             min(nc, nv), alpha)
                       if 0 < base < 1 else None})
            cov = _cuped(per_variant, v["variant"], control, m, converted, confidence)
            if cov is not None:
                row["cuped"] = cov
            comparisons.append(row)
    done = [c for c in comparisons if c["status"] == "ok"]
    for key, adjusted in (("sequential", stats.holm([c["sequential"]["pValue"] for c in done])),
                          ("fixedHorizon",
                           stats.holm([c["fixedHorizon"]["pValue"] for c in done]))):
        for c, p in zip(done, adjusted, strict=True):
            c[key]["holmAdjustedPValue"] = p
    if total < min_sample * len(names):
        srm = {"status": "not_enough_data", "mismatch": None,
               "reason": f"needs at least {min_sample * len(names)} units, has {total}"}
    else:
        srm = {"status": "ok", **stats.sample_ratio_mismatch([n[x] for x in names], weights)}
    for c in comparisons:
        c["verdict"], c["verdictReason"] = _verdict(c, srm, alpha, len(done))
    enough = all(c["status"] == "ok" for c in comparisons)
    return {"status": "ok" if enough else "not_enough_data", "unit": "user",
            "minSample": min_sample, "totalUnits": total,
            "excludedMultipleVariants": len([u for u, r in seen.items()
                                             if len({x[1] for x in r}) > 1]),
            "excludedOutsideAudience": outside, "variants": variants,
            "comparisons": comparisons, "sampleRatioMismatch": srm,
            "multipleComparisons": {"method": "holm", "family": len(done)}}


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _cuped(per_variant: dict, variant: str, control: str, metric: str,
           converted: dict, confidence: float) -> dict | None:
    """CUPED on the conversion indicator with the units' pre-period values, when enough."""
    units = per_variant[variant]["units"] + per_variant[control]["units"]
    pre = np.concatenate([per_variant[variant]["pre"], per_variant[control]["pre"]])
    known = np.isfinite(pre)
    if not units or known.mean() < MIN_PRE_COVERAGE or np.nanvar(pre) == 0:
        return None
    # Units without a pre-period value get the mean: unbiased, they just gain nothing.
    pre = np.where(known, pre, np.nanmean(pre))
    y = np.array([1.0 if (u, metric) in converted else 0.0 for u in units])
    treated = np.arange(len(units)) < len(per_variant[variant]["units"])
    out = stats.cuped(y, pre, treated, confidence)
    out["unitsWithPreValue"] = int(known.sum())
    return out


def _verdict(c: dict, srm: dict, alpha: float, family: int) -> tuple[str, str]:
    # Sequential first: the always-valid p-value may stop an experiment at any look.
    if srm.get("mismatch"):
        return "invalid", "sample ratio mismatch: the assignment or the logging is broken"
    if c["status"] != "ok":
        return "not_enough_data", c["reason"]
    p = c["sequential"]["holmAdjustedPValue"]
    if p < alpha:
        better = c["absoluteDifference"] > 0
        return ("variant_better" if better else "variant_worse",
                f"always-valid p = {p:.4g} (Holm across {family} comparisons)")
    need = c["power"]["requiredUnitsPerVariant"]
    have = min(c["power"]["achievedPower"] or 0, 1)
    if need is not None and c["variantRate"] is not None and have >= c["power"]["power"]:
        return ("no_detectable_difference",
                f"planned sample reached ({need} units per variant for a "
                f"{c['power']['relativeMde']:.0%} lift at {c['power']['power']:.0%} power)")
    return "keep_running", (f"needs {need} units per variant for a "
                            f"{c['power']['relativeMde']:.0%} lift at "
                            f"{c['power']['power']:.0%} power; power now {have:.0%}"
                            if need is not None else "no baseline rate yet")


# -- storage ---------------------------------------------------------------
class ExperimentStore:
    """Experiments in SQLite under the data dir (synchronous=FULL: acknowledged means on disk)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._cache: dict[str, dict] = {}
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, "
                       "created_at REAL NOT NULL, doc TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def create(self, exp: dict) -> bool:
        """Insert; False when the id exists already."""
        with self._lock, self._connect() as db:
            try:
                db.execute("INSERT INTO experiments (id, created_at, doc) VALUES (?, ?, ?)",
                           (exp["id"], exp["startedAt"], json.dumps(exp)))
            except sqlite3.IntegrityError:
                return False
        return True

    def get(self, exp_id: str) -> dict | None:
        """One experiment, or None (experiments are immutable, so reads are cached)."""
        cached = self._cache.get(exp_id)
        if cached is not None:
            return cached
        with self._connect() as db:
            row = db.execute("SELECT doc FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            return None
        # Assignment is the hot path (one call per user session): no SQLite round trip.
        self._cache[exp_id] = json.loads(row[0])
        return self._cache[exp_id]

    def all(self) -> list[dict]:
        """Every experiment, newest first."""
        with self._connect() as db:
            rows = db.execute("SELECT doc FROM experiments ORDER BY created_at DESC").fetchall()
        return [json.loads(r[0]) for r in rows]


def init_app(app: Flask) -> ExperimentStore:
    """Build the app's experiment store under the data dir."""
    path = Path(app.config["PULSE"].data_dir) / "experiments" / "experiments.sqlite"
    store = ExperimentStore(path)
    # The intake writes the per-unit rows (exporters.events.experiments); the bridge reads.
    store.units = UnitStore(unit_db_path(app.config["PULSE"].data_dir))
    app.extensions[EXPERIMENTS] = store
    return store


def create(store: ExperimentStore, exp: dict, now: float) -> dict:
    """Start a validated experiment now; Conflict when its id is taken."""
    exp["startedAt"] = now
    exp["endsAt"] = now + exp["durationSeconds"]
    if not store.create(exp):
        raise Conflict(f"an experiment with id {exp['id']!r} exists",
                       [{"field": "name", "problem": f"experiment id {exp['id']!r} is taken; "
                         "choose another name"}])
    return exp


def get(store: ExperimentStore, exp_id: str) -> dict:
    """One experiment; NotFound naming the id."""
    exp = store.get(exp_id) if EXPERIMENT_ID.match(exp_id) else None
    if exp is None:
        raise NotFound(f"no experiment with id {exp_id!r}",
                       [{"field": "id", "problem": "unknown experiment"}])
    return exp


def iso(ts: float) -> str:
    """Unix seconds -> RFC 3339 UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def public(exp: dict, now: float) -> dict:
    """The Experiment as the API shows it: times in RFC 3339 and its status now."""
    out = {k: v for k, v in exp.items()
           if k not in ("startedAt", "endsAt") and not (k == "targetAudience" and v is None)}
    out["startedAt"] = iso(exp["startedAt"])
    out["endsAt"] = iso(exp["endsAt"])
    out["status"] = "running" if now < exp["endsAt"] else "completed"
    return out


def results(units: UnitStore, exp: dict, now: float, confidence: float, min_sample: int,
            relative_mde: float = 0.1) -> dict:
    """The experiment's results so far, from its per-unit exposures and conversions."""
    end = min(now, exp["endsAt"])
    return {"window": {"start": iso(exp["startedAt"]), "end": iso(end)},
            **compute_results(exp, units.exposures(exp["id"]), units.conversions(exp["id"]),
                              end, confidence, min_sample, relative_mde)}


def assign(exp: dict, unit: str) -> dict:
    """The variant of a unit in the audience: SHA-256 of 'id:unit' onto the cumulative split."""
    split = [(s["variant"], s["percentage"]) for s in exp["trafficSplit"]]
    variant = stats.assign(exp["id"], unit, split)
    return next(v for v in exp["modelVariants"] if v["name"] == variant)
