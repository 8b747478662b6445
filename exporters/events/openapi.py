"""The intake's OpenAPI document: openapi.yaml, the published event schema and /v1/* paths."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import yaml

from exporters.events.gateway import SEGMENT_PATHS
from exporters.events.intake import EVENT_SCHEMA

HERE = Path(__file__).resolve().parent


def _segment_operation(path: str, kind: str | None) -> dict:
    schema = "SegmentBatch" if kind is None else "SegmentSingle"
    name = path.rsplit("/", 1)[1]
    return {"post": {
        "operationId": f"segment_{name}",
        "summary": f"Segment {'batch' if kind is None else kind} (docs/events.md#segment).",
        "security": [{"writeKey": []}, {}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "responses": {
            "200": {"$ref": "#/components/responses/Success"},
            **{code: {"$ref": "#/components/responses/SegmentError"}
               for code in ("400", "401", "403")},
            **{code: {"$ref": "#/components/responses/SegmentLimited"}
               for code in ("429", "503")}}}}


@cache
def document() -> dict:
    """The whole document (built once)."""
    doc = yaml.safe_load((HERE / "openapi.yaml").read_text())
    event = json.loads(EVENT_SCHEMA.read_text())
    for key in ("$schema", "$id"):
        event.pop(key, None)
    doc["components"]["schemas"]["AnalyticsEvent"] = event
    for path, kind in SEGMENT_PATHS.items():
        doc["paths"][path] = _segment_operation(path, kind)
    return doc
