"""Industry benchmarks from the file the user supplies (reports.benchmarks.file in pulse.yml).

No figure ships with Pulse: a benchmark is only as good as its source, so each one names
its metric, value, source and date, and the file is validated by `SCHEMA`. Without a file
a report says "no industry benchmark configured".
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import jsonschema
import yaml

NOT_CONFIGURED = "no industry benchmark configured"
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["benchmarks"],
    "properties": {
        "benchmarks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["metric", "value", "source", "date"],
                "properties": {
                    "metric": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$",
                               "description": "feature_adoption (uses per session of "
                                              "labels.feature) or a report metric"},
                    "labels": {"type": "object",
                               "additionalProperties": {"type": "string", "maxLength": 64}},
                    "value": {"type": "number"},
                    "unit": {"type": "string", "maxLength": 32},
                    "source": {"type": "string", "minLength": 3, "maxLength": 300},
                    "date": {"type": "string", "pattern": r"^\d{4}-\d{2}(-\d{2})?$"},
                },
            },
        },
    },
}


def load(path: str | None) -> tuple[list[dict], str | None]:
    """(figures, problem): the validated figures of the file, or why there are none."""
    if not path:
        return [], NOT_CONFIGURED
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [], f"benchmark file {path} unreadable: {exc}"
    # YAML reads an unquoted 2025-06-01 as a date; the schema wants the text.
    for item in (doc or {}).get("benchmarks", []) if isinstance(doc, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("date"), date):
            item["date"] = item["date"].isoformat()
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        return [], f"benchmark file {path} is invalid at {where}: {exc.message}"
    return doc["benchmarks"], None


def compare(items: dict[str, dict], figures: list[dict]) -> list[dict]:
    """Each benchmark beside the report's own figure for the same metric and labels."""
    sessions = items.get("sessions")
    per_session = (sessions["series"][0]["value"]
                   if sessions and sessions["series"] else None)
    rows = []
    for b in figures:
        labels = b.get("labels", {})
        ours = None
        if b["metric"] == "feature_adoption":
            usage = items.get("feature_usage") or {"series": []}
            uses = next((s["value"] for s in usage["series"]
                         if s["labels"].get("feature") == labels.get("feature")), None)
            ours = uses / per_session if uses is not None and per_session else None
        elif b["metric"] in items:
            ours = next((s["value"] for s in items[b["metric"]]["series"]
                         if all(s["labels"].get(k) == v for k, v in labels.items())), None)
        rows.append({"metric": b["metric"], "labels": labels, "ours": ours,
                     "industry": b["value"], "unit": b.get("unit"), "source": b["source"],
                     "date": b["date"],
                     "difference": ours - b["value"] if ours is not None else None,
                     "position": None if ours is None else "above" if ours > b["value"]
                     else "below" if ours < b["value"] else "at"})
    return rows
