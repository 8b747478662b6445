"""The OpenAPI document of the bridge: base.yaml plus one fragment per resource."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from flask import Blueprint

HERE = Path(__file__).resolve().parent
bp = Blueprint("openapi", __name__)


@cache
def document() -> dict:
    """base.yaml with every <resource>.yaml fragment's paths and schemas merged in."""
    doc = yaml.safe_load((HERE / "base.yaml").read_text())
    for fragment in sorted(HERE.glob("*.yaml")):
        if fragment.name == "base.yaml":
            continue
        part = yaml.safe_load(fragment.read_text()) or {}
        for path, ops in (part.get("paths") or {}).items():
            doc["paths"].setdefault(path, {}).update(ops)
        for section, items in (part.get("components") or {}).items():
            known = doc["components"].setdefault(section, {})
            for name, item in items.items():
                if name in known and known[name] != item:
                    raise ValueError(f"{fragment.name}: components.{section}.{name} is "
                                     "already defined differently by another fragment")
                known[name] = item
    _document_auth_errors(doc)
    return doc


def _document_auth_errors(doc: dict) -> None:
    """Every operation behind a bearer token may answer 401 and 403 with the error body."""
    for ops in doc["paths"].values():
        for op in ops.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if op.get("security", doc.get("security")) == []:
                continue
            for status, what in (("401", "No valid bearer token."),
                                 ("403", "The token's role lacks the permission.")):
                op["responses"].setdefault(status, {
                    "description": what,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}})


@bp.get("/api/openapi.json")
def openapi():
    """The OpenAPI 3 document of the whole bridge."""
    return document()
