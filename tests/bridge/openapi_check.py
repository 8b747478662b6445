"""Validate a response body against a schema of the served OpenAPI 3.0 document."""

from __future__ import annotations

import copy

from jsonschema import Draft202012Validator


def _convert(node):
    """OpenAPI 3.0 schema -> JSON Schema (nullable, $ref targets, exclusiveMinimum: true)."""
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v) for k, v in node.items() if k not in ("nullable", "example")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    if out.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    return out


def validate_response(doc: dict, schema_name: str, body) -> None:
    """Raise jsonschema.ValidationError when body does not fit components.schemas[name]."""
    defs = {k: _convert(v) for k, v in copy.deepcopy(doc["components"]["schemas"]).items()}
    Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{schema_name}"}).validate(body)
