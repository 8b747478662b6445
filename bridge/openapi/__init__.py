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
            doc["components"].setdefault(section, {}).update(items)
    return doc


@bp.get("/api/openapi.json")
def openapi():
    """The OpenAPI 3 document of the whole bridge."""
    return document()
